//! Generator semantics for any iterator or stream: each step runs in the value's own logical
//! context (PEP 550 §Generators Transformed into Iterators, §Asynchronous Generators).

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use contextvars::{LogicalContext, run_with_logical_context};

use futures_core::Stream;
use pin_project_lite::pin_project;

/// An iterator whose every `next` runs inside its own logical context, like a generator's
/// resume: what the iterator sets stays with it and is there at its next step.
///
/// Made by [`IteratorExt::with_logical_context`], or by [`ContextualIter::build`] when the
/// iterator's construction should also run inside the logical context (the
/// `CompiledGenSeries` pattern: an initialising `set` must not leak).
///
/// ```
/// use contextvars::ContextVar;
/// use exec_context::ContextualIter;
///
/// static STEP: ContextVar<u32> = ContextVar::new("step");
///
/// let series = ContextualIter::build(|| {
///     STEP.set(10); // runs inside the iterator's logical context
///     (1..4).map(|i| STEP.get().unwrap() * i)
/// });
/// assert_eq!(STEP.get(), None); // the initialising set did not leak
/// assert_eq!(series.collect::<Vec<_>>(), [10, 20, 30]);
/// ```
pub struct ContextualIter<I> {
    iter: Option<I>,
    lc: LogicalContext,
}

impl<I> ContextualIter<I> {
    /// Wraps `iter` with a fresh logical context, which keeps the creator's
    /// [pinned](contextvars::pinned) values (so the iterator runs in the
    /// [interpreter](crate::interpreters) it was made in, wherever it is advanced).
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::ContextualIter;
    ///
    /// static PAGE: ContextVar<u32> = ContextVar::new("page");
    ///
    /// // Each step reads the page the previous step set, like a generator's local state.
    /// let pages = std::iter::from_fn(|| {
    ///     let page = PAGE.get().unwrap_or(0) + 1;
    ///     PAGE.set(page);
    ///     Some(page)
    /// });
    /// let mut pages = ContextualIter::new(pages);
    /// assert_eq!(pages.next(), Some(1));
    /// assert_eq!(pages.next(), Some(2)); // its own set is still there at the next step
    /// assert_eq!(PAGE.get(), None); // and never reaches the caller
    /// ```
    pub fn new(iter: I) -> Self {
        ContextualIter {
            iter: Some(iter),
            lc: LogicalContext::pinned(),
        }
    }

    /// Builds the iterator inside a fresh logical context (as [`new`](Self::new) makes),
    /// then wraps it with that context.
    pub fn build(make: impl FnOnce() -> I) -> Self {
        let (lc, iter) = build_in_logical_context(make);
        ContextualIter {
            iter: Some(iter),
            lc,
        }
    }

    /// The iterator's logical context, where its steps' changes are kept.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::IteratorExt;
    ///
    /// static LINE: ContextVar<usize> = ContextVar::new("line");
    ///
    /// let mut lines = ["a", "b", "c"]
    ///     .into_iter()
    ///     .enumerate()
    ///     .map(|(number, text)| {
    ///         LINE.set(number + 1);
    ///         text
    ///     })
    ///     .with_logical_context();
    /// assert!(lines.logical_context().is_empty());
    /// lines.next();
    /// lines.next();
    /// assert_eq!(lines.logical_context().get(&LINE), Some(2));
    /// assert_eq!(LINE.get(), None);
    /// ```
    pub fn logical_context(&self) -> &LogicalContext {
        &self.lc
    }
}

impl<I: Iterator> Iterator for ContextualIter<I> {
    type Item = I::Item;

    /// The next item, from a step run inside the iterator's logical context. Like a
    /// generator, the iterator is finished once a step returns `None`: it is dropped there
    /// and then, inside its logical context, and later calls return `None` without running
    /// it again. (A step that panics leaves the iterator as the panic left it: a later call
    /// runs it again, as a plain iterator would be.)
    ///
    /// ```
    /// use exec_context::IteratorExt;
    ///
    /// let mut calls = 0;
    /// // An iterator that would go on after a `None`.
    /// let mut flaky = std::iter::from_fn(|| {
    ///     calls += 1;
    ///     (calls != 2).then_some(calls)
    /// })
    /// .with_logical_context();
    /// assert_eq!(flaky.next(), Some(1));
    /// assert_eq!(flaky.next(), None);
    /// assert_eq!(flaky.next(), None); // finished, as a generator is
    /// ```
    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        let slot = &mut self.iter;
        if slot.is_none() {
            return None;
        }
        run_with_logical_context(&mut self.lc, || {
            let item = slot.as_mut().and_then(Iterator::next);
            if item.is_none() {
                drop_ended(slot);
            }
            item
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.iter.as_ref().map_or((0, Some(0)), Iterator::size_hint)
    }
}

/// Drops an iterator that has ended (inside its logical context).
#[cold]
#[inline(never)]
fn drop_ended<I>(slot: &mut Option<I>) {
    *slot = None;
}

impl<I: Iterator> std::iter::FusedIterator for ContextualIter<I> {}

impl<I: ExactSizeIterator> ExactSizeIterator for ContextualIter<I> {}

impl<I: fmt::Debug> fmt::Debug for ContextualIter<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextualIter")
            .field("iter", &self.iter)
            .field("logical_context", &self.lc)
            .finish()
    }
}

impl<I> Drop for ContextualIter<I> {
    /// The iterator is dropped inside its logical context, like a generator's body.
    fn drop(&mut self) {
        if let Some(iter) = self.iter.take() {
            run_with_logical_context(&mut self.lc, move || drop(iter));
        }
    }
}

/// Adds [`with_logical_context`](IteratorExt::with_logical_context) to every iterator.
pub trait IteratorExt: Iterator + Sized {
    /// Gives this iterator generator semantics: each `next` runs in its own logical context.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::IteratorExt;
    ///
    /// static LAST: ContextVar<i32> = ContextVar::new("last");
    ///
    /// let doubled: Vec<_> = (1..=3)
    ///     .map(|i| {
    ///         LAST.set(i);
    ///         i * 2
    ///     })
    ///     .with_logical_context()
    ///     .collect();
    /// assert_eq!(doubled, [2, 4, 6]);
    /// assert_eq!(LAST.get(), None);
    /// ```
    fn with_logical_context(self) -> ContextualIter<Self> {
        ContextualIter::new(self)
    }
}

impl<I: Iterator> IteratorExt for I {}

/// Runs `make` inside a fresh logical context (keeping the creator's pinned values), and
/// hands back both. If `make` panics, the logical context, with what `make` set, is dropped
/// before the panic goes on, a `Drop` that panics too discarded (dropped while the panic
/// unwinds, it would abort).
fn build_in_logical_context<T>(make: impl FnOnce() -> T) -> (LogicalContext, T) {
    let mut lc = LogicalContext::pinned();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_with_logical_context(&mut lc, make)
    })) {
        Ok(made) => (lc, made),
        Err(payload) => {
            crate::discarding_panics(move || drop(lc));
            std::panic::resume_unwind(payload)
        }
    }
}

pin_project! {
    /// A stream whose every poll runs inside its own logical context: an async generator
    /// (PEP 550 §Asynchronous Generators). Made by [`StreamExt::with_logical_context`]. Like
    /// a generator's body, the stream is also dropped inside its logical context.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::StreamExt;
    /// use futures_lite::{StreamExt as _, stream};
    ///
    /// static BATCH: ContextVar<u32> = ContextVar::new("batch");
    ///
    /// BATCH.set(0);
    /// let batches = stream::repeat_with(|| {
    ///     let batch = BATCH.get().unwrap() + 1;
    ///     BATCH.set(batch); // lands in the stream's logical context
    ///     batch
    /// });
    /// let batches = batches.take(3).with_logical_context();
    /// let seen: Vec<_> = futures_executor::block_on(batches.collect());
    /// assert_eq!(seen, [1, 2, 3]);
    /// assert_eq!(BATCH.get(), Some(0));
    /// ```
    #[project = Projection]
    pub struct ContextualStream<S> {
        #[pin]
        stream: Option<S>,
        lc: LogicalContext,
    }

    impl<S> PinnedDrop for ContextualStream<S> {
        fn drop(this: Pin<&mut Self>) {
            let Projection { mut stream, lc } = this.project();
            if stream.as_mut().as_pin_mut().is_some() {
                run_with_logical_context(lc, || stream.set(None));
            }
        }
    }
}

impl<S: Stream> Stream for ContextualStream<S> {
    type Item = S::Item;

    /// Polls the stream in its logical context. A stream that ends is dropped at once,
    /// inside that context (what it holds does not wait for the wrapper's drop); later polls
    /// give `None`. The logical context stays readable.
    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<S::Item>> {
        let Projection { stream, lc } = self.project();
        if stream.is_none() {
            return Poll::Ready(None);
        }
        run_with_logical_context(lc, || poll_dropping_ended(stream, cx))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.as_ref().map_or((0, Some(0)), Stream::size_hint)
    }
}

/// Polls the stream in `slot`, if any, and drops it as soon as it ends, in the context the
/// caller runs this in: the stream wrappers' shared poll.
pub(crate) fn poll_dropping_ended<S: Stream>(
    mut slot: Pin<&mut Option<S>>,
    cx: &mut TaskContext<'_>,
) -> Poll<Option<S::Item>> {
    let Some(stream) = slot.as_mut().as_pin_mut() else {
        return Poll::Ready(None);
    };
    let polled = stream.poll_next(cx);
    if let Poll::Ready(None) = polled {
        slot.set(None);
    }
    polled
}

impl<S: fmt::Debug> fmt::Debug for ContextualStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextualStream")
            .field("stream", &self.stream)
            .field("logical_context", &self.lc)
            .finish()
    }
}

impl<S> ContextualStream<S> {
    /// Wraps `stream` with a fresh logical context (as
    /// [`StreamExt::with_logical_context`] does), which keeps the creator's
    /// [pinned](contextvars::pinned) values.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::ContextualStream;
    /// use futures_lite::{StreamExt as _, stream};
    ///
    /// static SEEN: ContextVar<u32> = ContextVar::new("seen");
    ///
    /// let counted = ContextualStream::new(stream::iter([1, 2]).map(|n| {
    ///     SEEN.set(n);
    ///     n
    /// }));
    /// assert_eq!(futures_executor::block_on(counted.collect::<Vec<_>>()), [1, 2]);
    /// assert_eq!(SEEN.get(), None);
    /// ```
    pub fn new(stream: S) -> Self {
        ContextualStream {
            stream: Some(stream),
            lc: LogicalContext::pinned(),
        }
    }

    /// Builds the stream inside a fresh logical context (as [`new`](Self::new) makes), then
    /// wraps it with that context: what `make` sets stays with the stream, as for an async
    /// generator's setup (see [`ContextualIter::build`]).
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::ContextualStream;
    /// use futures_lite::{StreamExt as _, stream};
    ///
    /// static LIMIT: ContextVar<u32> = ContextVar::new("limit");
    ///
    /// let limited = ContextualStream::build(|| {
    ///     LIMIT.set(2); // the stream's own setting
    ///     stream::iter(1..).take_while(|n| *n <= LIMIT.get().unwrap())
    /// });
    /// assert_eq!(LIMIT.get(), None);
    /// assert_eq!(futures_executor::block_on(limited.collect::<Vec<_>>()), [1, 2]);
    /// ```
    pub fn build(make: impl FnOnce() -> S) -> Self {
        let (lc, stream) = build_in_logical_context(make);
        ContextualStream {
            stream: Some(stream),
            lc,
        }
    }

    /// The stream's logical context, where its polls' changes are kept.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::StreamExt;
    /// use futures_lite::{StreamExt as _, stream};
    ///
    /// static BATCH: ContextVar<u32> = ContextVar::new("batch");
    ///
    /// let mut batches = stream::iter([10, 20])
    ///     .map(|batch| {
    ///         BATCH.set(batch);
    ///         batch
    ///     })
    ///     .with_logical_context();
    /// assert!(batches.logical_context().is_empty());
    /// assert_eq!(futures_executor::block_on(batches.next()), Some(10));
    /// assert_eq!(batches.logical_context().get(&BATCH), Some(10));
    /// assert_eq!(BATCH.get(), None);
    /// ```
    pub fn logical_context(&self) -> &LogicalContext {
        &self.lc
    }
}

/// Adds context-carrying adapters to every [`Stream`].
pub trait StreamExt: Stream + Sized {
    /// Gives this stream async-generator semantics: each poll runs in its own logical context
    /// (which keeps the creator's [pinned](contextvars::pinned) values, as
    /// [`ContextualIter::new`] does).
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::StreamExt;
    /// use futures_lite::{StreamExt as _, stream};
    ///
    /// static CURSOR: ContextVar<&str> = ContextVar::new("cursor");
    ///
    /// CURSOR.set("start");
    /// let rows = stream::iter(["r1", "r2"])
    ///     .map(|row| {
    ///         let after = CURSOR.get(); // the caller's value, then the stream's own
    ///         CURSOR.set(row);
    ///         (after, row)
    ///     })
    ///     .with_logical_context();
    /// let rows: Vec<_> = futures_executor::block_on(rows.collect());
    /// assert_eq!(rows, [(Some("start"), "r1"), (Some("r1"), "r2")]);
    /// assert_eq!(CURSOR.get(), Some("start"));
    /// ```
    fn with_logical_context(self) -> ContextualStream<Self> {
        ContextualStream::new(self)
    }

    /// Runs every poll of this stream in a snapshot of the current context (taken now) plus
    /// a logical context of its own, like a task.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::StreamExt;
    /// use futures_lite::{StreamExt as _, stream};
    ///
    /// static LOCALE: ContextVar<&str> = ContextVar::new("locale");
    ///
    /// LOCALE.set("en");
    /// let greetings = stream::iter(["hello", "bye"])
    ///     .map(|word| format!("{word} ({})", LOCALE.get().unwrap()))
    ///     .in_current_context(); // the snapshot is taken here
    /// LOCALE.set("fr");
    /// let greetings: Vec<_> = futures_executor::block_on(greetings.collect());
    /// assert_eq!(greetings, ["hello (en)", "bye (en)"]);
    /// ```
    fn in_current_context(self) -> crate::task::WithContext<Self> {
        crate::task::WithContext::new(self, crate::task::spawn_context())
    }
}

impl<S: Stream> StreamExt for S {}
