//! [`async-executor`](https://docs.rs/async-executor) (smol's executor) with a context per task
//! (feature `async-executor`): the [`TaskContext`] primitive on a second executor.
//!
//! async-executor has no task hooks, so the primitive sits in the executor's task instead:
//! [`Executor::spawn`] captures the spawner's context on the spawning thread and every poll
//! of the task runs between [`TaskContext::enter`] and [`TaskContext::exit`] (or
//! [`TaskContext::end`] when the step left an attach behind, which ends it too), as the tokio
//! hooks begin and end each poll. The future is dropped inside its context too.
//!
//! ```
//! use contextvars::ContextVar;
//! use exec_context::async_executor::Executor;
//!
//! static USER: ContextVar<&str> = ContextVar::new("user");
//!
//! let executor = Executor::new();
//! USER.set("alice");
//! let task = executor.spawn(async {
//!     let seen = USER.get();
//!     USER.set("task"); // stays in the task
//!     seen
//! });
//! USER.set("bob");
//! assert_eq!(futures_executor::block_on(executor.run(task)), Some("alice"));
//! assert_eq!(USER.get(), Some("bob"));
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as Waker, Poll};

use async_executor::Task;
use pin_project_lite::pin_project;

use crate::task_context::TaskContext;

/// An [`async_executor::Executor`] whose tasks each carry their own context.
#[derive(Default)]
pub struct Executor<'a> {
    inner: async_executor::Executor<'a>,
}

impl<'a> Executor<'a> {
    /// An empty executor.
    ///
    /// ```
    /// use exec_context::async_executor::Executor;
    ///
    /// let executor = Executor::new();
    /// assert!(executor.is_empty());
    /// assert!(!executor.try_tick());
    /// ```
    pub fn new() -> Self {
        Executor {
            inner: async_executor::Executor::new(),
        }
    }

    /// Spawns `future` as a task that starts from a snapshot of the current context (without
    /// variables that opted out of inheritance) and keeps its changes to itself, on whichever
    /// thread runs it.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::async_executor::Executor;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// static TXN: ContextVar<u32> = ContextVar::new("txn").not_inherited();
    ///
    /// let executor = Executor::new();
    /// USER.set("alice");
    /// TXN.set(7);
    /// let task = executor.spawn(async {
    ///     let seen = (USER.get(), TXN.get());
    ///     USER.set("task"); // stays in the task
    ///     seen
    /// });
    /// // Run on another thread, whose own context is empty: the task has its snapshot.
    /// let seen = std::thread::scope(|scope| {
    ///     let runner = scope.spawn(|| futures_executor::block_on(executor.run(task)));
    ///     runner.join().unwrap()
    /// });
    /// assert_eq!(seen, (Some("alice"), None)); // `TXN` opted out of inheritance
    /// assert_eq!(USER.get(), Some("alice"));
    /// ```
    pub fn spawn<T: Send + 'a>(&self, future: impl Future<Output = T> + Send + 'a) -> Task<T> {
        self.inner.spawn(Stepped {
            context: TaskContext::capture(),
            future: Some(future),
        })
    }

    /// Runs the executor until `future` completes (like [`async_executor::Executor::run`]).
    /// `future` itself runs in the caller's context.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::async_executor::Executor;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let executor = Executor::new();
    /// let task = executor.spawn(async {
    ///     USER.set("task"); // stays in the task
    /// });
    /// futures_executor::block_on(executor.run(async {
    ///     task.await;
    ///     USER.set("caller"); // lands in the caller's context
    /// }));
    /// assert_eq!(USER.get(), Some("caller"));
    /// ```
    pub async fn run<T>(&self, future: impl Future<Output = T>) -> T {
        self.inner.run(future).await
    }

    /// Runs one scheduled task, if any (like [`async_executor::Executor::try_tick`]).
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::async_executor::Executor;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let executor = Executor::new();
    /// USER.set("alice");
    /// let task = executor.spawn(async { USER.get() });
    /// USER.set("bob");
    /// assert!(executor.try_tick()); // the task ran, in its own context
    /// assert!(!executor.try_tick()); // nothing is scheduled any more
    /// assert_eq!(futures_executor::block_on(task), Some("alice"));
    /// ```
    pub fn try_tick(&self) -> bool {
        self.inner.try_tick()
    }

    /// Whether no task is left.
    ///
    /// ```
    /// use exec_context::async_executor::Executor;
    ///
    /// let executor = Executor::new();
    /// let task = executor.spawn(async { 1 + 1 });
    /// assert!(!executor.is_empty());
    /// assert_eq!(futures_executor::block_on(executor.run(task)), 2);
    /// assert!(executor.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The underlying executor (tasks spawned on it directly carry no context).
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::async_executor::Executor;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let executor = Executor::new();
    /// let wrapped = executor.spawn(async {
    ///     USER.set("wrapped"); // stays in the task
    /// });
    /// let bare = executor.inner().spawn(async {
    ///     USER.set("bare"); // lands in the context of the thread that polls it
    /// });
    /// futures_executor::block_on(executor.run(async {
    ///     wrapped.await;
    ///     bare.await;
    /// }));
    /// assert_eq!(USER.get(), Some("bare"));
    /// ```
    pub fn inner(&self) -> &async_executor::Executor<'a> {
        &self.inner
    }
}

impl fmt::Debug for Executor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

pin_project! {
    /// A task's future with its context, entered around each poll.
    struct Stepped<F> {
        context: TaskContext,
        #[pin]
        future: Option<F>,
    }

    impl<F> PinnedDrop for Stepped<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let mut future = this.future;
            if future.as_mut().as_pin_mut().is_some() {
                let _step = Step::enter(this.context);
                future.set(None);
            }
        }
    }
}

impl<F: Future> Future for Stepped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Waker<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _step = Step::enter(this.context);
        match this.future.as_pin_mut() {
            Some(future) => future.poll(cx),
            None => Poll::Pending,
        }
    }
}

/// One step: the context entered, and ended on drop (also when the poll panics), with any
/// attach the step left behind.
struct Step<'a> {
    context: &'a mut TaskContext,
}

impl<'a> Step<'a> {
    fn enter(context: &'a mut TaskContext) -> Self {
        // Fails only during thread teardown (every step ends its entry, also when a `Drop`
        // panics as it exits); the step then runs in the thread's context.
        let _ = context.enter();
        Step { context }
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        // `exit` is the common case and the fast path; `end` only when the step left an
        // attach of its own behind.
        if self.context.is_entered() && self.context.exit().is_err() {
            let _ = self.context.end();
        }
    }
}
