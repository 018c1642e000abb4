//! Tokio integration (feature `tokio`).
//!
//! Plain `tokio::spawn` runs a task in whatever context the worker thread has, so context
//! variables set by the spawner are lost (tokio#2396, tokio#6659), and what the task sets
//! stays on the worker thread, where the next task polled there sees it. Two ways out:
//!
//! - **Every task, without wrappers** (`RUSTFLAGS="--cfg tokio_unstable"`):
//!   [`propagate`]`(&mut builder)` installs tokio's task hooks so that every task spawned on
//!   the runtime — by your code or inside a library — starts from a snapshot of its
//!   spawner's context and keeps its changes to itself. Without the cfg, `propagate` is a
//!   compile error that says so.
//! - **Per call site** (stable tokio): [`spawn`], [`spawn_local`], [`spawn_blocking`] and
//!   [`carry`] wrap one future or closure. [`check_workers`] catches, on stable too, values
//!   left on a worker thread by an unwrapped task.
//!
//! # What the hooks do not reach
//!
//! | not reached | why | use instead |
//! |---|---|---|
//! | `spawn_blocking` closures | blocking tasks get no spawn or poll hooks | [`spawn_blocking`] |
//! | tasks on a `LocalSet` (`spawn_local`) | tokio runs no task hooks for them | [`spawn_local`] |
//! | the root future of `Runtime::block_on` / `#[tokio::main]` | not a task | it runs in the calling thread's context; wrap it with [`carry`] to isolate it |
//! | the drop of a task's future at runtime shutdown | tokio drops it outside any poll | the context is still released exactly once; code in `Drop` sees the shutting-down thread's context |
//! | other runtimes, `futures::executor`, threads | not this runtime | [`carry`], [`crate::thread`], [`crate::task_context`] |
//!
//! A hook set on the builder after `propagate` replaces ours; pass your own hooks to
//! `propagate_with` (which exists with the flag) to have them chained.

use std::future::Future;

use tokio::task::JoinHandle;

use crate::task::{FutureExt, WithContext};

#[cfg(tokio_unstable)]
mod hooks;
#[cfg(tokio_unstable)]
pub use hooks::{TaskHooks, propagate, propagate_with};
#[cfg(not(tokio_unstable))]
mod unavailable;
#[cfg(not(tokio_unstable))]
pub use unavailable::{TaskHooksAvailable, propagate};
mod workers;
pub use workers::{check_workers, check_workers_with};

/// Spawns `future` on the current tokio runtime as a task of the current context: it sees a
/// snapshot taken now (without variables that opted out of inheritance), and what it sets
/// stays in the task, on whichever worker thread polls it.
///
/// # Panics
///
/// Like [`tokio::spawn`], when called outside a tokio runtime.
///
/// ```
/// use contextvars::ContextVar;
///
/// static TRACE: ContextVar<u64> = ContextVar::new("trace");
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// TRACE.set(42);
/// let seen = exec_context::tokio::spawn(async { TRACE.get() }).await.unwrap();
/// assert_eq!(seen, Some(42));
/// # });
/// ```
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.in_current_context())
}

/// Spawns a `!Send` future on the current [`tokio::task::LocalSet`], carrying the current
/// context.
///
/// # Panics
///
/// Like [`tokio::task::spawn_local`], outside a `LocalSet`.
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    tokio::task::spawn_local(future.in_current_context())
}

/// Runs blocking code on tokio's blocking pool, in a snapshot of the current context.
///
/// # Panics
///
/// Like [`tokio::task::spawn_blocking`], outside a runtime.
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(crate::thread::job(f))
}

/// A future wrapped to carry the current context, for passing to other tokio APIs
/// (`JoinSet::spawn`, `tokio::time::timeout`, …).
pub fn carry<F: Future>(future: F) -> WithContext<F> {
    future.in_current_context()
}
