//! The progress bar on stderr: the current group, steps done and an ETA.
//!
//! One bar per process, started by [`start()`]. [`line()`] prints a progress line above the
//! bar; when stderr is not a terminal the bar is hidden and the lines go to stderr as they
//! are, so logs keep every step.
//!
//! The bar is redrawn only when a step ends or a line is printed, from the measuring thread
//! itself: no ticker thread, whose allocations the counting allocator would charge to the
//! memory figure being taken.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn with_bar(action: impl FnOnce(&ProgressBar)) {
    let guard = BAR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(bar) = guard.as_ref() {
        action(bar);
    }
}

/// Starts a bar of `steps` steps (replacing any earlier one).
pub fn start(steps: u64) {
    let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:<8} [{bar:32}] {pos}/{len} steps, {elapsed} elapsed, ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    *BAR.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bar);
}

/// Names the group being measured.
pub fn group(name: &'static str) {
    with_bar(|bar| bar.set_message(name));
}

/// One step done.
pub fn step() {
    with_bar(|bar| bar.inc(1));
}

/// Prints a progress line above the bar, or to stderr when there is no visible bar.
pub fn line(text: &str) {
    let guard = BAR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match guard.as_ref() {
        Some(bar) if !bar.is_hidden() => bar.println(text),
        _ => eprintln!("{text}"),
    }
}

/// Removes the bar.
pub fn finish() {
    if let Some(bar) = BAR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        bar.finish_and_clear();
    }
}
