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
//! | tasks on a `LocalSet` (`spawn_local`) | tokio runs no task hooks for them (a `LocalRuntime`, from `Builder::build_local`, does: its `spawn_local` tasks are reached) | [`spawn_local`] |
//! | the root future of `Runtime::block_on` / `#[tokio::main]` | not a task | it runs in the calling thread's context; wrap it with [`carry`] to isolate it |
//! | the drop of a task's future at runtime shutdown | tokio drops it outside any poll | the context is still released exactly once; code in `Drop` runs in the shutting-down thread's context: it reads that thread's values, what it sets stays there (on a current-thread runtime, the thread that drops the `Runtime`), and a [`SetGuard`](contextvars::SetGuard) held across an `.await` cannot reset (a debug build panics, and tokio reports the task as panicked instead of cancelled) |
//! | tasks of a runtime built by `#[tokio::main]` or `#[tokio::test]` | the macros build the runtime without the hooks | build the runtime with a [`Builder`](tokio::runtime::Builder) and [`propagate`] |
//! | other runtimes, `futures::executor`, threads | not this runtime | [`carry`], [`crate::thread`], [`crate::task_context`] |
//!
//! A hook set on the builder after `propagate` replaces ours; pass your own hooks to
//! `propagate_with` (which exists with the flag) to have them chained. Your before-poll hook
//! then runs inside the task's context:
//!
//! ```
//! # #[cfg(tokio_unstable)]
//! # fn main() {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use contextvars::ContextVar;
//! use exec_context::tokio::{TaskHooks, propagate_with};
//!
//! static TENANT: ContextVar<&str> = ContextVar::new("tenant");
//!
//! let acme_polls = Arc::new(AtomicUsize::new(0));
//! let counter = acme_polls.clone();
//! // The spawned task runs on the worker thread, the root future on this one.
//! let mut builder = tokio::runtime::Builder::new_multi_thread();
//! builder.worker_threads(1);
//! propagate_with(
//!     &mut builder,
//!     TaskHooks::new().on_before_task_poll(move |_| {
//!         if TENANT.get() == Some("acme") {
//!             counter.fetch_add(1, Ordering::Relaxed);
//!         }
//!     }),
//! );
//! let runtime = builder.build().unwrap();
//! runtime.block_on(async {
//!     TENANT.set("acme");
//!     let seen = tokio::spawn(async { TENANT.get() }).await.unwrap(); // no wrapper
//!     assert_eq!(seen, Some("acme"));
//! });
//! assert!(acme_polls.load(Ordering::Relaxed) >= 1);
//! # }
//! # #[cfg(not(tokio_unstable))]
//! # fn main() {}
//! ```

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
/// let seen = exec_context::tokio::spawn(async {
///     let seen = TRACE.get();
///     TRACE.set(7); // the task's own: on this runtime, a plain spawn's would reach us
///     seen
/// })
/// .await
/// .unwrap();
/// assert_eq!(seen, Some(42));
/// assert_eq!(TRACE.get(), Some(42));
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
///
/// ```
/// use std::rc::Rc;
/// use contextvars::ContextVar;
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let local = tokio::task::LocalSet::new();
/// USER.set("ada");
/// let greeting = local
///     .run_until(async {
///         let prefix = Rc::new("hello"); // not `Send`: needs a `LocalSet`
///         exec_context::tokio::spawn_local(async move {
///             let user = USER.get().unwrap(); // the spawner's value
///             USER.set("changed by the task");
///             format!("{prefix}, {user}")
///         })
///         .await
///         .unwrap()
///     })
///     .await;
/// assert_eq!(greeting, "hello, ada");
/// assert_eq!(USER.get(), Some("ada")); // the task's set stayed in the task
/// # });
/// ```
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
///
/// ```
/// use contextvars::ContextVar;
///
/// static REQUEST: ContextVar<u64> = ContextVar::new("request");
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// REQUEST.set(7);
/// let seen = exec_context::tokio::spawn_blocking(|| {
///     let seen = REQUEST.get(); // on a blocking-pool thread, in the spawner's context
///     REQUEST.set(8); // stays in the closure's own logical context
///     seen
/// })
/// .await
/// .unwrap();
/// assert_eq!(seen, Some(7));
/// assert_eq!(REQUEST.get(), Some(7));
/// # });
/// ```
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(crate::thread::job(f))
}

/// A future wrapped to carry the current context, for passing to other tokio APIs
/// (`JoinSet::spawn`, `tokio::time::timeout`, …).
///
/// It also isolates the root future of `Runtime::block_on`, which is not a task and otherwise
/// runs in the calling thread's context:
///
/// ```
/// use contextvars::ContextVar;
/// use exec_context::tokio::carry;
/// use tokio::task::JoinSet;
///
/// static TENANT: ContextVar<&str> = ContextVar::new("tenant");
///
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// TENANT.set("acme");
/// let seen = runtime.block_on(carry(async {
///     TENANT.set("globex"); // stays in the carried root future
///     let mut tasks = JoinSet::new();
///     tasks.spawn(carry(async { TENANT.get() }));
///     tasks.join_next().await.unwrap().unwrap()
/// }));
/// assert_eq!(seen, Some("globex"));
/// assert_eq!(TENANT.get(), Some("acme"));
/// ```
pub fn carry<F: Future>(future: F) -> WithContext<F> {
    future.in_current_context()
}
