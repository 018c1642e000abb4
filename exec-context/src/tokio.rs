//! Tokio integration (feature `tokio`): spawn functions that carry the current context.
//!
//! Plain `tokio::spawn` runs a task in whatever context the worker thread has, so context
//! variables set by the spawner are lost (tokio#2396, tokio#6659). These start the task from
//! a snapshot of the spawner's context instead, as asyncio's `create_task` does.

use std::future::Future;

use tokio::task::JoinHandle;

use crate::task::{FutureExt, WithContext};

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
