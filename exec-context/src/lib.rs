//! Execution contexts carried through generators, async tasks, threads, thread pools and
//! fibers — PEP 550's integration layer, on top of [`contextvars`].
//!
//! | work | what it gets | API |
//! |---|---|---|
//! | generator / iterator | its own logical context, pushed per step | [`Gen`], [`IteratorExt::with_logical_context`], [`ContextualIter`] |
//! | async generator / stream | the same, per poll | [`StreamExt::with_logical_context`] |
//! | task (any executor) | a snapshot at creation + its own logical context, per poll | [`FutureExt::in_current_context`] |
//! | callback | a snapshot at scheduling | [`bind`], [`bind_to`] |
//! | thread | empty, inherited or given | [`thread::spawn`], [`thread::Builder`] |
//! | pool job | a snapshot at submission | [`thread::job`], [`crate::rayon`] (feature) |
//! | tokio task | a snapshot at spawn | [`crate::tokio`] (feature; with `--cfg tokio_unstable`, every task of a runtime built with `propagate`) |
//! | task of any executor, without a wrapper | a snapshot at spawn, entered per poll | [`task_context::TaskContext`] (the executor-author API) |
//! | fiber | a whole context of its own, switched with it | [`fiber::Fiber`] |
//! | child process | propagated variables: empty, inherited or given | [`crate::process`] (feature `process`) |
//! | request to another service | propagated variables, in the W3C `baggage` header | [`crate::service`] (feature `tower`) |
//! | interpreter | a context state of its own per thread, `__main__`, queues and channels | [`interpreters`] |
//!
//! Every spawn path honours [`ContextVar::not_inherited`](contextvars::ContextVar::not_inherited).
//!
//! ```
//! use contextvars::ContextVar;
//! use exec_context::{FutureExt, Gen};
//!
//! static PRECISION: ContextVar<u32> = ContextVar::with_default("precision", 28);
//!
//! // Two interleaved generators, each with its own precision (PEP 550's `fractions`).
//! let fractions = |precision: u32| {
//!     Gen::new(move |co| async move {
//!         PRECISION.set(precision);
//!         co.yield_(PRECISION.get()).await;
//!         co.yield_(PRECISION.get()).await;
//!     })
//! };
//! let pairs: Vec<_> = fractions(2).zip(fractions(6)).collect();
//! assert_eq!(pairs, [(Some(2), Some(6)), (Some(2), Some(6))]);
//! assert_eq!(PRECISION.get(), Some(28));
//!
//! // A task starts from a snapshot of its creator's context.
//! PRECISION.set(10);
//! let task = async { PRECISION.get() }.in_current_context();
//! assert_eq!(futures_executor::block_on(task), Some(10));
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "async-executor")]
pub mod async_executor;
pub mod fiber;
mod generator;
pub mod interpreters;
mod iter;
#[cfg(feature = "lua")]
pub mod lua;
#[cfg(feature = "process")]
pub mod process;
#[cfg(feature = "propagate")]
pub mod propagate;
#[cfg(feature = "rayon")]
pub mod rayon;
#[cfg(feature = "tower")]
pub mod service;
mod task;
pub mod task_context;
pub mod thread;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use contextvars;
pub use generator::{Co, Gen, GenError, GeneratorState, Yield};
pub use iter::{ContextualIter, ContextualStream, IteratorExt, StreamExt};
pub use task::{FutureExt, WithContext, bind, bind_fn, bind_to};

/// Runs `f`, discarding a panic out of it, and those out of that panic's payload's own
/// `Drop` (and its payload's, a few levels deep; one still panicking past them is leaked:
/// nothing is left to contain it). For user code whose panic has no one to reach: a
/// thread-local's destructor, a runtime's hook, a drop while the thread unwinds.
pub(crate) fn discarding_panics(f: impl FnOnce()) {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let Err(mut payload) = catch_unwind(AssertUnwindSafe(f)) else {
        return;
    };
    for _ in 0..4 {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    std::mem::forget(payload);
}

/// The workspace README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
