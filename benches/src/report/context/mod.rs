//! The context section: `contextvars` against `thread_local!`, tokio `task_local!`,
//! opentelemetry `Context` and `Arc`.
//!
//! [`measure`] runs every case of [`crate::context_ops::cases`]; [`targets`] checks the bars
//! of `benches/targets.toml`; [`render`] writes the markdown.

pub mod render;
pub mod targets;

use super::Config;
use super::cases::{self, GroupResults};
use crate::context_ops::{self, Op};

/// Everything the context section measured.
pub type ContextResults = GroupResults<Op>;

/// Measures the context section.
pub fn measure(config: &Config) -> ContextResults {
    cases::measure("context", &context_ops::cases(), config.mode.case_timing())
}
