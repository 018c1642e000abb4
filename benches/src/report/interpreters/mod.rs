//! The interpreters section: queues and channels against `std::sync::mpsc` and
//! crossbeam-channel, interpreter create + close, `exec`, and the interpreter pool against a
//! plain pool and rayon.
//!
//! [`measure`] runs every case of [`crate::interpreter_ops::cases`]; [`targets`] holds the
//! bars of `benches/targets.toml`; [`render`] writes the markdown.

pub mod render;
pub mod targets;

use super::Config;
use super::cases::{self, CaseResult, GroupResults};
use crate::interpreter_ops::{self, Op};

/// Everything the interpreters section measured.
pub type InterpreterResults = GroupResults<Op>;

/// Measures the interpreters section.
pub fn measure(config: &Config) -> InterpreterResults {
    cases::measure(
        "interpreters",
        &interpreter_ops::cases(),
        config.mode.case_timing(),
    )
}

/// Messages per second of a stream case (from its wall-clock time per message).
pub fn msgs_per_s(case: &CaseResult) -> f64 {
    1e9 / case.ns()
}
