//! Tasks: futures and streams that carry an execution context (PEP 550 §Coroutines and
//! Asynchronous Tasks, §asyncio), for any executor.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use contextvars::{Context, ExecutionContext, get_execution_context, run_with_execution_context};
use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::iter::poll_dropping_ended;

/// The context spawned work starts from: a snapshot of the current one, without the
/// variables that opted out of inheritance, under a fresh logical context.
pub(crate) fn spawn_context() -> Context {
    Context::from(get_execution_context().inherited())
}

pin_project! {
    /// A future (or stream) that runs every poll inside its own [`Context`]: PEP 550's task.
    ///
    /// The context is installed for each poll and taken back after it, so what the future
    /// sets persists across its polls and never leaks into the executor's thread — whichever
    /// worker thread polls it. The inner future is also dropped inside the context.
    /// A poll that only reads variables, or uses none, does not move the context at all (see
    /// [`Context::run`]); one that sets a variable, takes a snapshot or opens a scope moves
    /// it in and out. No allocation, no atomic operation either way.
    ///
    /// Made by [`FutureExt::in_current_context`], [`FutureExt::with_execution_context`] or
    /// [`FutureExt::with_context`].
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::FutureExt;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// USER.set("alice");
    /// let task = async {
    ///     let seen = USER.get();
    ///     USER.set("task"); // stays in the task
    ///     seen
    /// }
    /// .in_current_context();
    /// USER.set("bob"); // after the snapshot: invisible to the task
    /// assert_eq!(futures_executor::block_on(task), Some("alice"));
    /// assert_eq!(USER.get(), Some("bob"));
    /// ```
    #[project = Projection]
    pub struct WithContext<F> {
        #[pin]
        inner: Option<F>,
        context: Context,
    }

    impl<F> PinnedDrop for WithContext<F> {
        fn drop(this: Pin<&mut Self>) {
            let Projection { mut inner, context } = this.project();
            if inner.as_mut().as_pin_mut().is_some() {
                context.run(|| inner.set(None));
            }
        }
    }
}

impl<F> WithContext<F> {
    /// Wraps `inner` to run in `context` (and so in the [interpreter](crate::interpreters)
    /// `context` belongs to, which its pinned values name).
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    /// use exec_context::WithContext;
    ///
    /// static STEP: ContextVar<u32> = ContextVar::new("step");
    ///
    /// let mut context = Context::new();
    /// context.run(|| STEP.set(1));
    /// let task = WithContext::new(async { STEP.get() }, context);
    /// assert_eq!(futures_executor::block_on(task), Some(1));
    /// assert_eq!(STEP.get(), None);
    /// ```
    pub fn new(inner: F, context: Context) -> Self {
        WithContext {
            inner: Some(inner),
            context,
        }
    }

    /// The task's context: what its polls have set so far, over the snapshot it started from.
    ///
    /// ```
    /// use std::pin::pin;
    ///
    /// use contextvars::ContextVar;
    /// use exec_context::FutureExt;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// static STEP: ContextVar<u32> = ContextVar::new("step");
    ///
    /// USER.set("alice");
    /// let mut task = pin!(async { STEP.set(1); }.in_current_context());
    /// futures_executor::block_on(task.as_mut());
    /// assert_eq!(task.context().get(&STEP), Some(1)); // what its poll set
    /// assert_eq!(task.context().get(&USER), Some("alice")); // over the snapshot
    /// assert_eq!(STEP.get(), None);
    /// ```
    pub fn context(&self) -> &Context {
        &self.context
    }
}

impl<F: Future> Future for WithContext<F> {
    type Output = F::Output;

    /// Polls the future in its context. A future that completes is dropped at once, in its
    /// context (what it holds does not wait for the wrapper's drop).
    ///
    /// # Panics
    ///
    /// Polled again after it completed, as std's futures do (a correct executor never
    /// does): silently pending instead would hang the task.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let Projection { inner, context } = self.project();
        context.run(|| poll_dropping_ready(inner, cx))
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn polled_after_completion() -> ! {
    panic!(
        "a future wrapped by `in_current_context` or `with_context` was polled after it completed"
    )
}

/// Polls the future in `slot`, dropping it (and emptying `slot`) once it completes; panics
/// if it already did.
#[inline(always)]
fn poll_dropping_ready<F: Future>(
    mut slot: Pin<&mut Option<F>>,
    cx: &mut TaskContext<'_>,
) -> Poll<F::Output> {
    let Some(future) = slot.as_mut().as_pin_mut() else {
        polled_after_completion();
    };
    let polled = future.poll(cx);
    if polled.is_ready() {
        slot.set(None);
    }
    polled
}

impl<S: Stream> Stream for WithContext<S> {
    type Item = S::Item;

    /// Polls the stream in its context. A stream that ends is dropped at once, in its
    /// context (what it holds does not wait for the wrapper's drop); later polls give
    /// `None`.
    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<S::Item>> {
        let Projection { inner, context } = self.project();
        if inner.is_none() {
            return Poll::Ready(None);
        }
        context.run(|| poll_dropping_ended(inner, cx))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.as_ref().map_or((0, Some(0)), Stream::size_hint)
    }
}

/// Adds context-carrying adapters to every future.
pub trait FutureExt: Future + Sized {
    /// Runs this future as a task of the current context: it starts from a snapshot taken
    /// now (without variables that opted out of inheritance) and keeps its changes to itself.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::FutureExt;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// static NONCE: ContextVar<u64> = ContextVar::new("nonce").not_inherited();
    ///
    /// USER.set("alice");
    /// NONCE.set(7);
    /// let task = async {
    ///     let seen = (USER.get(), NONCE.get());
    ///     USER.set("bob"); // the task's own
    ///     seen
    /// }
    /// .in_current_context();
    /// USER.set("carol"); // after the snapshot: not seen
    /// assert_eq!(futures_executor::block_on(task), (Some("alice"), None));
    /// assert_eq!(USER.get(), Some("carol"));
    /// ```
    fn in_current_context(self) -> WithContext<Self> {
        WithContext::new(self, spawn_context())
    }

    /// Runs this future as a task of `ec`, with a fresh logical context for its changes.
    ///
    /// ```
    /// use contextvars::{ContextVar, get_execution_context};
    /// use exec_context::FutureExt;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// USER.set("alice");
    /// let ec = get_execution_context();
    /// USER.set("bob");
    /// let task = async {
    ///     let seen = USER.get();
    ///     USER.set("task"); // lands in the task's own logical context
    ///     seen
    /// }
    /// .with_execution_context(ec.clone());
    /// assert_eq!(futures_executor::block_on(task), Some("alice"));
    /// assert_eq!(ec.get(&USER), Some("alice")); // `ec` itself never changes
    /// assert_eq!(USER.get(), Some("bob"));
    /// ```
    fn with_execution_context(self, ec: ExecutionContext) -> WithContext<Self> {
        WithContext::new(self, Context::from(ec))
    }

    /// Runs this future inside `context`.
    ///
    /// ```
    /// use contextvars::{ContextBuilder, ContextVar};
    /// use exec_context::FutureExt;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let mut context = ContextBuilder::new();
    /// context.set(&USER, "alice");
    /// let task = async { USER.get() }.with_context(context.build());
    /// assert_eq!(futures_executor::block_on(task), Some("alice"));
    /// assert_eq!(USER.get(), None);
    /// ```
    fn with_context(self, context: Context) -> WithContext<Self> {
        WithContext::new(self, context)
    }
}

impl<F: Future> FutureExt for F {}

/// Wraps a callback to run later in the context current now (asyncio's `call_soon` with the
/// default `context=` of a snapshot): the snapshot is taken when `bind` is called, without
/// the variables that opted out of inheritance ([`ContextVar::not_inherited`]; asyncio
/// copies every variable), and the callback runs on top of it with a fresh logical context,
/// wherever it is called.
///
/// [`ContextVar::not_inherited`]: contextvars::ContextVar::not_inherited
///
/// ```
/// use contextvars::ContextVar;
///
/// static REQUEST: ContextVar<u32> = ContextVar::new("request");
///
/// REQUEST.set(7);
/// let callback = exec_context::bind(|| REQUEST.get());
/// REQUEST.set(8);
/// assert_eq!(callback(), Some(7));
/// ```
pub fn bind<R>(callback: impl FnOnce() -> R) -> impl FnOnce() -> R {
    bind_to(get_execution_context().inherited(), callback)
}

/// Wraps a callback to run in `ec` (asyncio's `call_soon(..., context=ec)`), with a fresh
/// logical context for its changes.
///
/// ```
/// use contextvars::{ContextVar, get_execution_context};
///
/// static REQUEST: ContextVar<u32> = ContextVar::new("request");
///
/// REQUEST.set(7);
/// let ec = get_execution_context();
/// REQUEST.set(8);
/// let callback = exec_context::bind_to(ec, || {
///     let seen = REQUEST.get();
///     REQUEST.set(9); // discarded when the callback returns
///     seen
/// });
/// assert_eq!(callback(), Some(7));
/// assert_eq!(REQUEST.get(), Some(8));
/// ```
pub fn bind_to<R>(ec: ExecutionContext, callback: impl FnOnce() -> R) -> impl FnOnce() -> R {
    let bound = Bound::new(ec, callback);
    move || bound.call()
}

/// Wraps a function called many times, from any thread, so that every call runs in the
/// context current now, each with a fresh logical context of its own: the snapshot is taken
/// when `bind_fn` is called (without the variables that opted out of inheritance, as for
/// [`bind`]), and what one call sets reaches neither the caller nor the other calls.
/// [`bind`] for a closure called once.
///
/// For the closures of a rayon parallel iterator (feature `rayon`), which run on whichever
/// worker picks up each piece, in whatever context that thread is in (see
/// [`crate::rayon`]):
///
/// ```
/// use contextvars::ContextVar;
///
/// static TENANT: ContextVar<&str> = ContextVar::new("tenant");
///
/// TENANT.set("acme");
/// let label = exec_context::bind_fn(|n: u32| {
///     let label = format!("{}-{n}", TENANT.get().unwrap());
///     TENANT.set("changed"); // this call's own
///     label
/// });
/// TENANT.set("later");
/// let labels: Vec<_> = std::thread::scope(|scope| {
///     let label = &label;
///     let threads: Vec<_> = (0..2).map(|n| scope.spawn(move || label(n))).collect();
///     threads.into_iter().map(|thread| thread.join().unwrap()).collect()
/// });
/// assert_eq!(labels, ["acme-0", "acme-1"]);
/// assert_eq!(label(2), "acme-2");
/// assert_eq!(TENANT.get(), Some("later"));
/// ```
pub fn bind_fn<T, R>(f: impl Fn(T) -> R) -> impl Fn(T) -> R {
    let bound = Bound::new(get_execution_context().inherited(), f);
    move |arg| match &bound.callback {
        Some(f) => run_with_execution_context(&bound.ec, || f(arg)),
        None => unreachable!("taken only by the drop"),
    }
}

/// A callback and the context it runs in ([`bind`], [`bind_to`], [`bind_fn`],
/// [`thread::job`](crate::thread::job)). Dropped without being called, it drops the callback
/// (what it captured) in that context too, as a [`WithContext`] drops its future: a job a
/// pool discards unrun (tokio's blocking pool at shutdown) changes nothing of the thread
/// that drops it.
pub(crate) struct Bound<F> {
    ec: ExecutionContext,
    /// Taken only by `call` and the drop.
    callback: Option<F>,
}

impl<F> Bound<F> {
    pub(crate) fn new(ec: ExecutionContext, callback: F) -> Self {
        Bound {
            ec,
            callback: Some(callback),
        }
    }

    /// Calls the callback in its context, with a fresh logical context.
    pub(crate) fn call<R>(mut self) -> R
    where
        F: FnOnce() -> R,
    {
        match self.callback.take() {
            Some(callback) => run_with_execution_context(&self.ec, callback),
            None => unreachable!("taken only by `call`, which consumes the value"),
        }
    }
}

impl<F> Drop for Bound<F> {
    fn drop(&mut self) {
        // A callback without drop glue runs no code when dropped: no context is entered.
        if std::mem::needs_drop::<F>()
            && let Some(callback) = self.callback.take()
        {
            run_with_execution_context(&self.ec, move || drop(callback));
        }
    }
}

impl<F> std::fmt::Debug for WithContext<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithContext")
            .field("finished", &self.inner.is_none())
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}
