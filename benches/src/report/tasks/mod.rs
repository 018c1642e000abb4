//! The tasks section: what `exec-context` adds to generators, iterators, futures, tokio
//! tasks and fibers.
//!
//! [`measure`] runs every case of [`crate::task_ops::cases`]; [`targets`] checks the bars
//! of `benches/targets.toml`; [`render`] writes the markdown.

pub mod render;
pub mod targets;

use super::Config;
use super::cases::{self, GroupResults};
use crate::task_ops::{self, Op};

/// Everything the tasks section measured.
pub type TaskResults = GroupResults<Op>;

/// Measures the tasks section.
pub fn measure(config: &Config) -> TaskResults {
    cases::measure("tasks", &task_ops::cases(), config.mode.case_timing())
}
