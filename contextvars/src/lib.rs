//! PEP 550 execution contexts for Rust, with the PEP 567 `contextvars` surface.
//!
//! A [`ContextVar`] is like a thread-local whose value follows the *logical* flow of
//! execution rather than the OS thread: a generator's changes stay in the generator, an
//! async task starts from a snapshot of its creator's context, and a callback runs in the
//! context it was scheduled from.
//!
//! ```
//! use contextvars::{ContextVar, copy_context};
//!
//! static REQUEST: ContextVar<u64> = ContextVar::new("request");
//!
//! REQUEST.set(1);
//! let mut other = copy_context(); // O(1) snapshot
//! other.run(|| {
//!     assert_eq!(REQUEST.get(), Some(1));
//!     REQUEST.set(2);
//! });
//! assert_eq!(REQUEST.get(), Some(1));
//! assert_eq!(other.get(&REQUEST), Some(2));
//! ```
//!
//! # The model (PEP 550)
//!
//! - A **logical context** ([`LogicalContext`]) maps variables to values.
//! - An **execution context** ([`ExecutionContext`]) is a stack of logical contexts; a
//!   lookup walks it top-down and `set` writes the topmost one. Every OS thread has exactly
//!   one current execution context, empty when the thread starts.
//! - [`run_with_logical_context`] pushes a logical context for the duration of a call (how a
//!   generator keeps its own state), [`run_with_execution_context`] runs a call on top of a
//!   snapshot with a fresh logical context (how a task or callback runs), and
//!   [`get_execution_context`] takes the snapshot in O(1).
//! - PEP 567's [`Context`], [`copy_context`] and [`Token`] are the familiar surface over the
//!   same machinery.
//!
//! See the [`docs`] module for how the lookup cache works and why it is safe across threads,
//! [`watch`] for watchers of context switches and sets (debuggers, tracers), and [`pinned`]
//! for variables that stay with code wherever it starts afresh (how `exec-context`'s
//! interpreters know which one code runs in).
//!
//! # Features
//!
//! - `testing`: `contextvars::testing`, a reference model of PEP 550 / 567 and scripts of
//!   context operations replayed against this crate, or against code built on it, and
//!   compared with the model after every step.
//! - `arbitrary`: `arbitrary::Arbitrary` for those scripts, for fuzz targets (implies
//!   `testing`).
//! - `proptest`: proptest strategies for them (implies `testing`).
//!
//! All are off by default.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod attach;
mod build;
mod cache;
mod context;
pub mod docs;
mod entries;
mod error;
mod execution;
mod ids;
mod logical;
mod loom;
#[cfg(all(test, loom))]
mod loom_models;
pub mod pinned;
mod scope;
#[cfg(feature = "testing")]
pub mod testing;
mod thread_state;
mod token;
mod value;
mod var;
pub mod watch;

pub use attach::{
    AttachError, AttachId, DeferredId, DetachError, attach, attach_deferred, detach,
    detach_deferred, end_attach, end_deferred,
};
pub use build::{ContextBuilder, Identities};
pub use context::{Context, copy_context};
pub use entries::{AnyValue, Iter};
pub use error::{LookupError, TokenError};
pub use execution::{EC_LEN_MAX, ExecutionContext};
pub use logical::LogicalContext;
pub use scope::{ScopeFuture, SetGuard};
pub use token::{ResetError, Token};
pub use value::{VarId, VarInfo};
pub use var::ContextVar;

/// A snapshot of the current execution context, in O(1) (PEP 550
/// `get_execution_context()`). Squashed into a single logical context when the stack is
/// deeper than [`EC_LEN_MAX`].
///
/// ```
/// use contextvars::{ContextVar, get_execution_context};
///
/// static VAR: ContextVar<i32> = ContextVar::new("var");
/// VAR.set(1);
/// let ec = get_execution_context();
/// VAR.set(2);
/// assert_eq!(ec.get(&VAR), Some(1));
/// ```
pub fn get_execution_context() -> ExecutionContext {
    thread_state::snapshot()
}

/// Runs `f` in `ec` with a fresh logical context pushed on top, then restores the caller's
/// context (also if `f` panics). Whatever `f` sets lands in the fresh logical context and is
/// discarded afterwards: `ec` itself cannot change (PEP 550
/// `run_with_execution_context()`).
///
/// ```
/// use contextvars::{ContextVar, ExecutionContext, run_with_execution_context};
///
/// static VAR: ContextVar<i32> = ContextVar::new("var");
/// let empty = ExecutionContext::new();
/// run_with_execution_context(&empty, || {
///     VAR.set(1);
///     assert_eq!(VAR.get(), Some(1));
/// });
/// assert!(empty.is_empty());
/// assert_eq!(VAR.get(), None);
/// ```
pub fn run_with_execution_context<R>(ec: &ExecutionContext, f: impl FnOnce() -> R) -> R {
    let mut frame = thread_state::Frame {
        top: LogicalContext::new(),
        base: ec.clone(),
    };
    // A frame run once: its cache stamp is of no further use.
    thread_state::run_in_frame(&mut frame, &mut 0, f)
}

/// Runs `f` with `lc` pushed onto the current execution context, then pops it: the changes
/// `f` made are written back into `lc` and are invisible to the caller (PEP 550
/// `run_with_logical_context()`; this is how a generator step runs). The caller's context is
/// restored also if `f` panics.
///
/// Pushing an empty logical context allocates nothing and keeps the lookup cache warm.
///
/// ```
/// use contextvars::{ContextVar, LogicalContext, run_with_logical_context};
///
/// static VAR: ContextVar<&str> = ContextVar::new("var");
/// VAR.set("main");
/// let mut generator_lc = LogicalContext::new();
/// run_with_logical_context(&mut generator_lc, || {
///     assert_eq!(VAR.get(), Some("main"));
///     VAR.set("gen");
/// });
/// assert_eq!(VAR.get(), Some("main"));
/// assert_eq!(generator_lc.get(&VAR), Some("gen"));
/// ```
pub fn run_with_logical_context<R>(lc: &mut LogicalContext, f: impl FnOnce() -> R) -> R {
    thread_state::run_with_pushed(lc, f)
}
