//! Generators: [`Gen`], an async-bodied coroutine whose every resume runs in its own logical
//! context (PEP 550 §Generators).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};

use contextvars::{Context, LogicalContext, run_with_logical_context};

/// What a resume produced.
///
/// ```
/// use exec_context::{Gen, GeneratorState};
///
/// let mut generator = Gen::new(|co| async move {
///     for word in ["a", "b"] {
///         co.yield_(word).await;
///     }
///     2
/// });
/// let mut words = Vec::new();
/// let count = loop {
///     match generator.resume().unwrap() {
///         GeneratorState::Yielded(word) => words.push(word),
///         GeneratorState::Complete(count) => break count,
///     }
/// };
/// assert_eq!(words, ["a", "b"]);
/// assert_eq!(count, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorState<Y, R> {
    /// The body yielded a value and is suspended.
    Yielded(Y),
    /// The body returned.
    Complete(R),
}

/// Why a generator could not be resumed.
///
/// ```
/// use exec_context::{Co, Gen, GenError, GeneratorState};
///
/// let mut stalled = Gen::new(|co: Co<u32>| async move {
///     std::future::pending::<()>().await; // not a yield
///     co.yield_(1).await;
/// });
/// assert_eq!(stalled.resume(), Err(GenError::Stalled));
/// assert!(!stalled.is_finished()); // it can be resumed again
///
/// let mut finished = Gen::new(|_: Co<u32>| async {});
/// assert_eq!(finished.resume(), Ok(GeneratorState::Complete(())));
/// assert_eq!(finished.resume(), Err(GenError::Finished));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GenError {
    /// The generator already completed (or its body panicked).
    Finished,
    /// The body awaited something other than [`Co::yield_`], which cannot complete inside a
    /// synchronous resume. The generator can be resumed again.
    Stalled,
}

impl fmt::Display for GenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GenError::Finished => "the generator has already finished",
            GenError::Stalled => {
                "the generator body awaited something other than `Co::yield_` and is not ready"
            }
        })
    }
}

impl std::error::Error for GenError {}

/// The generator body's handle for yielding values (and receiving resume arguments).
pub struct Co<Y, A = ()> {
    airlock: airlock::Guest<Y, A>,
}

impl<Y, A> Co<Y, A> {
    /// Yields `value` to the caller and suspends until the next resume, whose argument it
    /// returns.
    ///
    /// The returned future only makes progress when the generator's own resume polls it;
    /// polled anywhere else (by another executor, on another thread, inside another
    /// generator) it stays pending and keeps its value. Await one yield at a time: two polled
    /// in the same step (`join!(co.yield_(1), co.yield_(2))`) hand over the last value only,
    /// and the step after them stalls.
    ///
    /// ```
    /// use exec_context::{Gen, GeneratorState};
    ///
    /// let mut greeter = Gen::with_resume_arg(|co| async move {
    ///     let name = co.yield_("name?").await; // suspended until the next resume
    ///     format!("hello, {name}")
    /// });
    /// assert_eq!(greeter.resume_with(""), Ok(GeneratorState::Yielded("name?")));
    /// let greeting = greeter.resume_with("Ada");
    /// assert_eq!(greeting, Ok(GeneratorState::Complete(String::from("hello, Ada"))));
    /// ```
    pub fn yield_(&self, value: Y) -> Yield<'_, Y, A> {
        Yield {
            co: self,
            value: Some(value),
        }
    }

    /// Runs `inner` to completion, yielding everything it yields (Python's `yield from`):
    /// `inner` keeps its own logical context, so its context changes stay inside it
    /// (PEP 550 §Should "yield from" leak context changes?). Returns `inner`'s result.
    ///
    /// # Errors
    ///
    /// [`GenError`] if `inner` was finished already or stalled.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::{Gen, GeneratorState};
    ///
    /// static VAR: ContextVar<&str> = ContextVar::new("var");
    ///
    /// let mut outer = Gen::new(|co| async move {
    ///     VAR.set("outer");
    ///     let mut inner = Gen::new(|co| async move {
    ///         VAR.set("inner");
    ///         co.yield_(VAR.get()).await;
    ///         42
    ///     });
    ///     let answer = co.yield_from(&mut inner).await;
    ///     co.yield_(VAR.get()).await; // the inner generator's set stayed inside it
    ///     answer
    /// });
    /// assert_eq!(outer.resume(), Ok(GeneratorState::Yielded(Some("inner"))));
    /// assert_eq!(outer.resume(), Ok(GeneratorState::Yielded(Some("outer"))));
    /// assert_eq!(outer.resume(), Ok(GeneratorState::Complete(Ok(42))));
    /// ```
    pub async fn yield_from<R, F>(&self, inner: &mut Gen<Y, R, A, F>) -> Result<R, GenError>
    where
        F: Future<Output = R>,
        A: Default,
    {
        let mut arg = A::default();
        loop {
            match inner.resume_with(arg)? {
                GeneratorState::Yielded(value) => arg = self.yield_(value).await,
                GeneratorState::Complete(result) => return Ok(result),
            }
        }
    }
}

impl<Y, A> fmt::Debug for Co<Y, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Co")
    }
}

/// The future returned by [`Co::yield_`].
///
/// Awaited in the body, it evaluates to the next resume's argument. Polled anywhere but
/// inside a resume of its own generator, it stays pending and keeps its value:
///
/// ```
/// use std::pin::pin;
/// use std::task::{Context, Waker};
/// use exec_context::{Co, Gen};
///
/// let mut stolen = None;
/// let _generator = Gen::new(|co: Co<u32>| {
///     stolen = Some(co); // the `Co` leaves the body
///     async {}
/// });
/// let co = stolen.unwrap();
/// let mut yielded = pin!(co.yield_(7));
/// let mut cx = Context::from_waker(Waker::noop());
/// assert!(yielded.as_mut().poll(&mut cx).is_pending());
/// assert!(yielded.as_mut().poll(&mut cx).is_pending()); // still pending, value kept
/// ```
#[must_use = "a yield does nothing unless awaited"]
pub struct Yield<'a, Y, A> {
    co: &'a Co<Y, A>,
    value: Option<Y>,
}

impl<Y, A> fmt::Debug for Yield<'_, Y, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Yield")
            .field("pending", &self.value.is_some())
            .finish_non_exhaustive()
    }
}

// No field is ever pinned: the future only moves its value into the airlock.
impl<Y, A> Unpin for Yield<'_, Y, A> {}

impl<Y, A> Future for Yield<'_, Y, A> {
    type Output = A;

    /// Pending at the first poll (the value goes out to the resume), ready at the next poll
    /// that finds a resume argument. Polled anywhere but inside a resume of its own generator
    /// (by another executor, on another thread, inside another generator), it stays pending
    /// and keeps its value.
    fn poll(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<A> {
        let this = self.get_mut();
        if let Some(value) = this.value.take() {
            match this.co.airlock.put_yielded(value) {
                // A value yielded before in this step (by another `Yield` of this body) is
                // displaced.
                Ok(displaced) => drop(displaced),
                Err(refused) => this.value = Some(refused),
            }
            return Poll::Pending;
        }
        match this.co.airlock.take_resumed() {
            Some(arg) => Poll::Ready(arg),
            None => Poll::Pending,
        }
    }
}

/// Where a coroutine's steps run.
pub(crate) enum Mode {
    /// Its own logical context, pushed for each step (a generator).
    Logical(LogicalContext),
    /// No context of its own: steps run in the caller's (a context manager, a shared fiber).
    Caller,
    /// A whole context of its own, swapped in for each step (a fiber).
    Full(Context),
}

impl Mode {
    pub(crate) fn run<T>(&mut self, f: impl FnOnce() -> T) -> T {
        match self {
            Mode::Logical(lc) => run_with_logical_context(lc, f),
            Mode::Caller => f(),
            Mode::Full(ctx) => ctx.run(f),
        }
    }
}

/// A generator: a coroutine written as an async block that yields with [`Co::yield_`].
///
/// Each resume polls the body exactly once, inside the generator's own logical context, which
/// is pushed for the step and popped afterwards. So, as PEP 550 §Generators specifies:
/// what the body sets stays in the generator (invisible to the caller) and is still there at
/// the next step; what the caller sets is visible inside unless the generator shadowed it.
///
/// ```
/// use contextvars::ContextVar;
/// use exec_context::Gen;
///
/// static VAR: ContextVar<&str> = ContextVar::new("var");
///
/// let mut counter = Gen::new(|co| async move {
///     VAR.set("gen");
///     for i in 0..3 {
///         co.yield_(i).await;
///         assert_eq!(VAR.get(), Some("gen")); // unaffected by the caller
///     }
/// });
/// VAR.set("main");
/// assert_eq!(counter.next(), Some(0));
/// assert_eq!(VAR.get(), Some("main")); // the generator's set did not leak
/// assert_eq!(counter.collect::<Vec<_>>(), [1, 2]);
/// ```
///
/// [`set_logical_context(None)`](Self::set_logical_context) switches a generator to
/// *context manager mode* (PEP 550 §contextlib.contextmanager): its steps run directly in the
/// caller's context, so its writes reach the caller.
pub struct Gen<Y, R, A, F> {
    mode: Mode,
    airlock: airlock::Owner<Y, A>,
    body: Body<F>,
    _result: PhantomData<fn() -> R>,
}

/// A generator's body and how far it got, in one field (checked once per resume).
enum Body<F> {
    /// Not resumed yet.
    Fresh(Pin<Box<F>>),
    /// Resumed at least once, not finished.
    Started(Pin<Box<F>>),
    /// Returned or panicked (and dropped).
    Finished,
}

impl<Y, R, F: Future<Output = R>> Gen<Y, R, (), F> {
    /// A generator running `producer`'s body, with a fresh logical context that keeps the
    /// creator's [pinned](contextvars::pinned) values ([`LogicalContext::pinned`]: a
    /// generator made inside an [interpreter](crate::interpreters) runs in it wherever it is
    /// resumed). Nothing of the body runs until the first resume; `producer` itself runs at
    /// once, inside that logical context, so what it sets stays with the generator (as with
    /// [`ContextualIter::build`](crate::ContextualIter::build)). Its `yield_`s return `()`;
    /// see [`with_resume_arg`](Gen::with_resume_arg) for a generator that receives values.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::Gen;
    ///
    /// static STEP: ContextVar<u32> = ContextVar::new("step");
    ///
    /// let mut steps = Gen::new(|co| {
    ///     STEP.set(10); // in the generator's logical context
    ///     async move {
    ///         co.yield_(STEP.get()).await;
    ///     }
    /// });
    /// assert_eq!(STEP.get(), None);
    /// assert_eq!(steps.next(), Some(Some(10)));
    /// ```
    pub fn new(producer: impl FnOnce(Co<Y, ()>) -> F) -> Self {
        Self::with_mode(Mode::Logical(LogicalContext::pinned()), producer)
    }
}

impl<Y, R, A, F: Future<Output = R>> Gen<Y, R, A, F> {
    /// A generator whose `yield_`s return the argument of the next
    /// [`resume_with`](Self::resume_with) (Python's `send()`), with a fresh logical context
    /// (as [`Gen::new`] makes). The first resume's argument has no `yield_` to go to, and
    /// is dropped.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::{Gen, GeneratorState};
    ///
    /// static SEEN: ContextVar<usize> = ContextVar::new("seen");
    ///
    /// // A running average that keeps its count in its own logical context.
    /// let mut average = Gen::with_resume_arg(|co| async move {
    ///     let mut sum = 0.0;
    ///     let mut next = co.yield_(0.0).await;
    ///     loop {
    ///         let seen = SEEN.get().unwrap_or(0) + 1;
    ///         SEEN.set(seen);
    ///         sum += next;
    ///         next = co.yield_(sum / seen as f64).await;
    ///     }
    /// });
    /// assert_eq!(average.resume_with(f64::NAN), Ok(GeneratorState::Yielded(0.0))); // dropped
    /// assert_eq!(average.resume_with(2.0), Ok(GeneratorState::Yielded(2.0)));
    /// assert_eq!(average.resume_with(4.0), Ok(GeneratorState::Yielded(3.0)));
    /// assert_eq!(SEEN.get(), None); // its count stayed in it
    /// # let _: &Gen<f64, (), f64, _> = &average;
    /// ```
    pub fn with_resume_arg(producer: impl FnOnce(Co<Y, A>) -> F) -> Self {
        Self::with_mode(Mode::Logical(LogicalContext::pinned()), producer)
    }

    /// Makes the body by calling `producer` inside `mode`'s context (so what it sets goes
    /// where the steps' changes go, as in `ContextualIter::build`).
    pub(crate) fn with_mode(mut mode: Mode, producer: impl FnOnce(Co<Y, A>) -> F) -> Self {
        let (airlock, guest) = airlock::new();
        let co = Co { airlock: guest };
        let body = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            mode.run(|| producer(co))
        })) {
            Ok(body) => body,
            Err(payload) => {
                // What the producer set before it panicked goes with the generator's
                // context, here: a `Drop` that panics too is discarded (dropped while the
                // panic unwinds, it would abort).
                crate::discarding_panics(move || drop(mode));
                std::panic::resume_unwind(payload);
            }
        };
        Gen {
            mode,
            airlock,
            body: Body::Fresh(Box::pin(body)),
            _result: PhantomData,
        }
    }

    /// Runs the body until its next yield (or its end), passing `arg` as the value of the
    /// `yield_` it is suspended at (Python's `send()`). The argument of the first resume has
    /// no `yield_` to go to and is dropped; so is one the body does not take (it stalled or
    /// returned first), at the end of the resume.
    ///
    /// # Errors
    ///
    /// [`GenError::Finished`] after the body returned or panicked; [`GenError::Stalled`] if
    /// the body awaited something other than a yield.
    ///
    /// ```
    /// use exec_context::{Gen, GeneratorState};
    ///
    /// let mut echo = Gen::with_resume_arg(|co| async move {
    ///     let mut total = 0;
    ///     loop {
    ///         total += co.yield_(total).await;
    ///         if total > 10 {
    ///             return "done";
    ///         }
    ///     }
    /// });
    /// assert_eq!(echo.resume_with(0), Ok(GeneratorState::Yielded(0)));
    /// assert_eq!(echo.resume_with(5), Ok(GeneratorState::Yielded(5)));
    /// assert_eq!(echo.resume_with(6), Ok(GeneratorState::Complete("done")));
    /// ```
    pub fn resume_with(&mut self, arg: A) -> Result<GeneratorState<Y, R>, GenError> {
        if let Body::Started(_) = self.body {
            drop(self.airlock.put_resumed(arg));
        } else {
            // The first resume's argument has no `yield_` to go to.
            drop(arg);
            self.start()?;
        }
        let clear = ClearOnUnwind(&mut self.airlock);
        let airlock = &mut *clear.0;
        let body = &mut self.body;
        // One closure per common mode (not `Mode::run`), so that each is inlined on its own
        // merits; a fiber's whole context is swapped out of line, off their path.
        let poll = match &mut self.mode {
            Mode::Logical(lc) => run_with_logical_context(lc, || airlock.lend(|| step(body))),
            Mode::Caller => airlock.lend(|| step(body)),
            Mode::Full(ctx) => step_in_context(ctx, airlock, body),
        };
        // Not unwinding: the cells are emptied below.
        std::mem::forget(clear);
        let yielded = self.airlock.take_yielded();
        // An argument the body did not take (it stalled, or returned) is dropped.
        let unused = self.airlock.take_resumed();
        let result = match (poll, yielded) {
            (Poll::Pending, Some(value)) => Ok(GeneratorState::Yielded(value)),
            (Poll::Pending, None) => Err(GenError::Stalled),
            (Poll::Ready(result), yielded) => {
                self.body = Body::Finished;
                drop(yielded);
                Ok(GeneratorState::Complete(result))
            }
        };
        drop(unused);
        result
    }

    /// Marks a fresh body started; [`GenError::Finished`] if it finished.
    #[cold]
    fn start(&mut self) -> Result<(), GenError> {
        match std::mem::replace(&mut self.body, Body::Finished) {
            Body::Fresh(body) | Body::Started(body) => {
                self.body = Body::Started(body);
                Ok(())
            }
            Body::Finished => Err(GenError::Finished),
        }
    }

    pub(crate) fn full_context(&self) -> Option<&Context> {
        match &self.mode {
            Mode::Full(context) => Some(context),
            _ => None,
        }
    }

    /// Replaces the mode, handing the old one back (its context's values are the caller's to
    /// drop, outside any borrow of what holds this generator).
    #[must_use = "the old mode holds user values: drop it where their `Drop` may run"]
    pub(crate) fn replace_mode(&mut self, mode: Mode) -> Mode {
        std::mem::replace(&mut self.mode, mode)
    }

    /// Whether the body has returned (or panicked).
    ///
    /// ```
    /// use exec_context::Gen;
    ///
    /// let mut generator = Gen::new(|co| async move {
    ///     co.yield_(()).await;
    /// });
    /// assert!(!generator.is_finished());
    /// generator.next();
    /// assert!(!generator.is_finished()); // suspended at its yield
    /// generator.next();
    /// assert!(generator.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        matches!(self.body, Body::Finished)
    }

    /// The generator's own logical context, or `None` in context manager mode. It stays with
    /// the generator after the body returns (or panics), readable here, and its values go
    /// when the generator is dropped (or given another context with
    /// [`set_logical_context`](Self::set_logical_context)).
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::Gen;
    ///
    /// static VAR: ContextVar<u32> = ContextVar::new("var");
    ///
    /// let mut generator = Gen::new(|co| async move {
    ///     VAR.set(1);
    ///     co.yield_(()).await;
    /// });
    /// generator.next();
    /// // What the body set is kept here between steps.
    /// assert_eq!(generator.logical_context().unwrap().get(&VAR), Some(1));
    /// generator.set_logical_context(None);
    /// assert!(generator.logical_context().is_none());
    /// ```
    pub fn logical_context(&self) -> Option<&LogicalContext> {
        match &self.mode {
            Mode::Logical(lc) => Some(lc),
            _ => None,
        }
    }

    /// Replaces the generator's logical context; `None` selects context manager mode, in which
    /// steps run directly in the caller's context (PEP 550's `__logical_context__ = None`).
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::Gen;
    ///
    /// static VAR: ContextVar<i32> = ContextVar::new("var");
    ///
    /// let mut manager = Gen::new(|co| async move {
    ///     let token = VAR.set(10);
    ///     co.yield_(()).await; // the caller's `with` body runs here
    ///     VAR.reset(token).unwrap();
    /// });
    /// manager.set_logical_context(None);
    /// manager.next();
    /// assert_eq!(VAR.get(), Some(10)); // visible to the caller
    /// manager.next();
    /// assert_eq!(VAR.get(), None);
    /// ```
    pub fn set_logical_context(&mut self, lc: Option<LogicalContext>) {
        self.mode = lc.map_or(Mode::Caller, Mode::Logical);
    }
}

/// Empties the airlock if a step panics: an argument the body did not take, or a value it
/// yielded before panicking, is dropped then, not kept until the finished generator is.
struct ClearOnUnwind<'a, Y, A>(&'a mut airlock::Owner<Y, A>);

impl<Y, A> Drop for ClearOnUnwind<'_, Y, A> {
    fn drop(&mut self) {
        let yielded = self.0.take_yielded();
        let resumed = self.0.take_resumed();
        // Already unwinding: a `Drop` of theirs that panics too is discarded, not an abort.
        crate::discarding_panics(move || {
            drop(yielded);
            drop(resumed);
        });
    }
}

/// Polls the body once. If the poll panics or the body returns, the body is dropped here,
/// so still inside the step's context (as a suspended body is dropped inside it), and the
/// generator is finished.
#[inline]
fn step<F: Future>(body: &mut Body<F>) -> Poll<F::Output> {
    struct FinishOnUnwind<'a, F>(&'a mut Body<F>);

    impl<F> Drop for FinishOnUnwind<'_, F> {
        fn drop(&mut self) {
            *self.0 = Body::Finished;
        }
    }

    let finish = FinishOnUnwind(body);
    let poll = match &mut *finish.0 {
        Body::Started(running) => running
            .as_mut()
            .poll(&mut TaskContext::from_waker(Waker::noop())),
        _ => Poll::Pending,
    };
    if poll.is_pending() {
        // Suspended: the body stays.
        std::mem::forget(finish);
    }
    // Returned: `finish` drops the body now, before the step's context is left.
    poll
}

/// A step in a whole context of the coroutine's own (a fiber's), out of line.
#[cold]
#[inline(never)]
fn step_in_context<F: Future, Y, A>(
    ctx: &mut Context,
    airlock: &mut airlock::Owner<Y, A>,
    body: &mut Body<F>,
) -> Poll<F::Output> {
    ctx.run(|| airlock.lend(|| step(body)))
}

impl<Y, R, F: Future<Output = R>> Gen<Y, R, (), F> {
    /// Runs the body until its next yield or its end.
    ///
    /// # Errors
    ///
    /// As [`resume_with`](Self::resume_with).
    ///
    /// ```
    /// use exec_context::{Gen, GenError, GeneratorState};
    ///
    /// let mut countdown = Gen::new(|co| async move {
    ///     co.yield_(1).await;
    ///     "liftoff"
    /// });
    /// assert_eq!(countdown.resume(), Ok(GeneratorState::Yielded(1)));
    /// assert_eq!(countdown.resume(), Ok(GeneratorState::Complete("liftoff")));
    /// assert_eq!(countdown.resume(), Err(GenError::Finished));
    /// ```
    pub fn resume(&mut self) -> Result<GeneratorState<Y, R>, GenError> {
        self.resume_with(())
    }
}

impl<Y, R, F: Future<Output = R>> Iterator for Gen<Y, R, (), F> {
    type Item = Y;

    /// The next yielded value; `None` once the body returned (or stalled).
    fn next(&mut self) -> Option<Y> {
        match self.resume() {
            Ok(GeneratorState::Yielded(value)) => Some(value),
            _ => None,
        }
    }
}

impl<Y, R, A, F> Drop for Gen<Y, R, A, F> {
    /// A suspended body, or one never resumed (holding what its producer captured, which
    /// ran in the generator's context too), is dropped inside the generator's context, so the
    /// destructors of its locals see the same context variables its steps did.
    fn drop(&mut self) {
        if let Body::Fresh(body) | Body::Started(body) =
            std::mem::replace(&mut self.body, Body::Finished)
        {
            self.mode.run(move || drop(body));
        }
    }
}

impl<Y, R, A, F> fmt::Debug for Gen<Y, R, A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gen")
            .field("started", &!matches!(self.body, Body::Fresh(_)))
            .field("finished", &matches!(self.body, Body::Finished))
            .finish_non_exhaustive()
    }
}

/// The slot a resume argument and a yielded value pass through: two [`Cell`](std::cell::Cell)s
/// shared by the generator ([`Owner`](airlock::Owner)) and its body's [`Co`]
/// ([`Guest`](airlock::Guest)), with no lock and no atomic operation. This module holds the
/// crate's only `unsafe`: one `Sync` impl.
///
/// The argument and the value have a cell each, so that each side reads only the part it
/// takes (a whole-slot read right after the other side's smaller write cannot be served from
/// the store buffer and stalls).
///
/// # Why the cells are never touched by two threads at once
///
/// - The owner's end is not `Clone` and reaches the cells only through `&mut self`, so at
///   most one thread holds it, and while it is lent (below) it is mutably borrowed and cannot
///   be used at all.
/// - The guest's end may travel anywhere (the body can move its `Co` to another thread or
///   into another generator), so it reaches the cells only after checking that this thread is
///   inside [`Owner::lend`](airlock::Owner::lend) for this very slot: `lend` records the
///   slot's address in a thread-local for the duration of the closure and restores the
///   previous address afterwards, also when the closure unwinds. Only the thread holding the
///   owner's `&mut` can be inside its `lend`, and a slot's address names no other live slot.
///
/// So every access happens on the thread that currently holds the owner exclusively; moving
/// the owner to another thread hands over the cells with it (the move itself synchronises).
/// No access runs user code while it touches a cell: each is one [`Cell::replace`] (or
/// `take`), and the displaced value is dropped by the caller afterwards, so even a destructor
/// that re-enters the airlock on the same thread meets consistent cells.
///
/// [`Cell::replace`]: std::cell::Cell::replace
mod airlock {
    use std::cell::Cell;
    use std::ptr;
    use std::sync::Arc;

    thread_local! {
        /// The address of the slot whose owner is lending it on this thread, or null.
        static LENT: Cell<*const ()> = const { Cell::new(ptr::null()) };
    }

    /// The shared cells: the value the body yielded, the argument of the resume.
    pub(super) struct Slot<Y, A> {
        yielded: Cell<Option<Y>>,
        resumed: Cell<Option<A>>,
    }

    // SAFETY: `Slot` is reached only through `Owner` and `Guest`. `Owner` uses the cells
    // through `&mut self` (and is not `Clone`); `Guest` uses them only on a thread that is
    // inside `Owner::lend` of the same slot, during which the owner is mutably borrowed. So all
    // accesses happen on the one thread that holds the owner, one at a time, and none lends
    // a reference into a cell (only `Cell::replace`/`take`). Values move between threads with
    // the owner, hence `Y: Send, A: Send`, the bound `Mutex<T>: Sync` has as well.
    #[allow(unsafe_code)]
    unsafe impl<Y: Send, A: Send> Sync for Slot<Y, A> {}

    /// The generator's end of an airlock.
    pub(super) struct Owner<Y, A>(Arc<Slot<Y, A>>);

    /// The body's end of an airlock.
    pub(super) struct Guest<Y, A>(Arc<Slot<Y, A>>);

    /// An empty airlock: its owner's end and its guest's end.
    pub(super) fn new<Y, A>() -> (Owner<Y, A>, Guest<Y, A>) {
        let slot = Arc::new(Slot {
            yielded: Cell::new(None),
            resumed: Cell::new(None),
        });
        (Owner(slot.clone()), Guest(slot))
    }

    #[inline]
    fn address<Y, A>(slot: &Arc<Slot<Y, A>>) -> *const () {
        Arc::as_ptr(slot).cast()
    }

    /// Restores the previously lent address when a `lend` ends, also by unwinding.
    struct Restore(*const ());

    impl Drop for Restore {
        #[inline]
        fn drop(&mut self) {
            LENT.set(self.0);
        }
    }

    impl<Y, A> Owner<Y, A> {
        /// Puts the resume argument in and returns the one that was there.
        #[inline]
        pub(super) fn put_resumed(&mut self, arg: A) -> Option<A> {
            self.0.resumed.replace(Some(arg))
        }

        /// Takes the resume argument out (one the body did not take).
        #[inline]
        pub(super) fn take_resumed(&mut self) -> Option<A> {
            self.0.resumed.take()
        }

        /// Takes the yielded value out.
        #[inline]
        pub(super) fn take_yielded(&mut self) -> Option<Y> {
            self.0.yielded.take()
        }

        /// Runs `f` with the guest's end usable on this thread (and only here).
        #[inline]
        pub(super) fn lend<R>(&mut self, f: impl FnOnce() -> R) -> R {
            let _restore = Restore(LENT.replace(address(&self.0)));
            f()
        }
    }

    impl<Y, A> Guest<Y, A> {
        /// Whether this thread is inside the owner's [`lend`](Owner::lend).
        #[inline]
        fn lent(&self) -> bool {
            LENT.get() == address(&self.0)
        }

        /// Puts a yielded value in and returns the one it displaced, if this thread is inside
        /// the owner's [`lend`](Owner::lend); otherwise hands `value` back untouched.
        #[inline]
        pub(super) fn put_yielded(&self, value: Y) -> Result<Option<Y>, Y> {
            if self.lent() {
                Ok(self.0.yielded.replace(Some(value)))
            } else {
                Err(value)
            }
        }

        /// Takes the resume argument out, if this thread is inside the owner's
        /// [`lend`](Owner::lend) and there is one.
        #[inline]
        pub(super) fn take_resumed(&self) -> Option<A> {
            if self.lent() {
                self.0.resumed.take()
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier, Mutex};
    use std::task::{Context as TaskContext, Poll, Waker};

    use super::{Co, Gen, GenError, GeneratorState};

    fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
        let mut future = pin!(future);
        future
            .as_mut()
            .poll(&mut TaskContext::from_waker(Waker::noop()))
    }

    /// A generator whose producer hands its `Co` out instead of using it.
    fn stolen_co() -> (Gen<u32, (), (), impl Future<Output = ()>>, Co<u32>) {
        let stash = Arc::new(Mutex::new(None));
        let put = stash.clone();
        let generator = Gen::new(move |co| {
            *put.lock().unwrap() = Some(co);
            async {}
        });
        let co = stash.lock().unwrap().take().unwrap();
        (generator, co)
    }

    #[test]
    fn a_yield_polled_outside_any_resume_stays_pending() {
        let (generator, co) = stolen_co();
        let mut yielded = co.yield_(7);
        assert!(poll_once(&mut yielded).is_pending());
        assert!(poll_once(&mut yielded).is_pending());
        assert_eq!(yielded.value, Some(7), "the value is kept");
        drop(generator);
    }

    #[test]
    fn a_yield_polled_inside_another_generator_does_not_reach_its_own() {
        let (mut owner, stolen) = stolen_co();
        let mut other = Gen::new(move |co| async move {
            // `stolen` belongs to `owner`, not to `other`: its yield is refused and keeps
            // its value, while `other`'s own `co` works.
            let mut refused = stolen.yield_(5);
            let pending = poll_once(&mut refused).is_pending();
            co.yield_((pending, refused.value)).await;
        });
        assert_eq!(other.resume(), Ok(GeneratorState::Yielded((true, Some(5)))));
        assert_eq!(other.resume(), Ok(GeneratorState::Complete(())));
        assert_eq!(owner.resume(), Ok(GeneratorState::Complete(())));
    }

    #[test]
    fn a_yield_polled_on_another_thread_during_resumes_stays_pending() {
        // Another thread polls yields of the very generator this thread keeps resuming:
        // while a resume lends the airlock, only the resuming thread may reach it (a yield
        // that got through would replace the body's value, or come back ready).
        let rounds = if cfg!(miri) { 5 } else { 100_000 };
        let stash = Arc::new(Mutex::new(None));
        let put = stash.clone();
        let mut counter = Gen::new(move |co: Co<u32>| {
            let co = Arc::new(co);
            *put.lock().unwrap() = Some(co.clone());
            async move {
                for i in 0..rounds {
                    co.yield_(i).await;
                }
            }
        });
        let co = stash.lock().unwrap().take().unwrap();
        let start = Barrier::new(2);
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                start.wait();
                // Polls for as long as the resumes go on.
                while !done.load(Ordering::Relaxed) {
                    assert!(poll_once(co.yield_(u32::MAX)).is_pending());
                }
            });
            start.wait();
            // Stops the poller also when an assertion here fails.
            struct Done<'a>(&'a AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _done = Done(&done);
            for i in 0..rounds {
                assert_eq!(counter.next(), Some(i));
            }
        });
        assert_eq!(counter.next(), None);
    }

    #[test]
    fn a_yield_polled_from_a_thread_inside_a_resume_stays_pending() {
        // The body itself polls a yield of its own `Co` on another thread while this thread is
        // inside the resume: only this thread may use the airlock.
        let mut generator = Gen::new(|co: Co<u32>| async move {
            let pending = std::thread::scope(|scope| {
                scope
                    .spawn(|| poll_once(co.yield_(1)).is_pending())
                    .join()
                    .unwrap()
            });
            co.yield_(u32::from(pending)).await;
        });
        assert_eq!(generator.resume(), Ok(GeneratorState::Yielded(1)));
        assert_eq!(generator.resume(), Ok(GeneratorState::Complete(())));
    }

    /// A yielded value whose drop yields 99 through the `Co` it carries.
    struct Reentrant(u32, Option<Arc<Co<Reentrant>>>);

    impl Drop for Reentrant {
        fn drop(&mut self) {
            if let Some(co) = self.1.take() {
                assert!(poll_once(co.yield_(Reentrant(99, None))).is_pending());
            }
        }
    }

    /// Pending at its first poll, ready at its second.
    struct PendingOnce(bool);

    impl Future for PendingOnce {
        type Output = ();
        fn poll(mut self: std::pin::Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<()> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn a_displaced_value_dropped_inside_a_resume_may_reenter_the_airlock() {
        let mut generator = Gen::new(|co: Co<Reentrant>| {
            let co = Arc::new(co);
            let carried = co.clone();
            async move {
                // Polled by hand inside the step, this yield leaves its value in the airlock;
                // the next one displaces it, and its drop yields 99 over the 2.
                assert!(poll_once(co.yield_(Reentrant(1, Some(carried)))).is_pending());
                co.yield_(Reentrant(2, None)).await;
            }
        });
        match generator.resume() {
            Ok(GeneratorState::Yielded(value)) => assert_eq!(value.0, 99),
            _ => panic!("expected a yield"),
        }
        assert!(matches!(
            generator.resume(),
            Ok(GeneratorState::Complete(()))
        ));
    }

    /// A resume argument that counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn an_argument_the_body_does_not_take_is_dropped_by_its_resume() {
        let drops = Arc::new(AtomicUsize::new(0));
        let arg = || Counted(drops.clone());
        let mut generator = Gen::with_resume_arg(|co: Co<u32, Counted>| async move {
            PendingOnce(false).await;
            co.yield_(1).await;
            drop(co.yield_(2).await);
        });
        // The first argument has no `yield_` to go to.
        assert_eq!(generator.resume_with(arg()).err(), Some(GenError::Stalled));
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        // The body leaves its stall and yields: nothing took this argument either.
        assert!(matches!(
            generator.resume_with(arg()),
            Ok(GeneratorState::Yielded(1))
        ));
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        // This one is taken by the first yield and dropped by the body.
        assert!(matches!(
            generator.resume_with(arg()),
            Ok(GeneratorState::Yielded(2))
        ));
        assert_eq!(drops.load(Ordering::Relaxed), 3);
        assert!(matches!(
            generator.resume_with(arg()),
            Ok(GeneratorState::Complete(()))
        ));
        assert_eq!(drops.load(Ordering::Relaxed), 4);
        // A finished generator drops the argument too.
        assert_eq!(generator.resume_with(arg()).err(), Some(GenError::Finished));
        assert_eq!(drops.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_panicking_inner_step_hands_the_airlock_back_to_the_outer_generator() {
        let mut outer = Gen::new(|co| async move {
            let mut inner = Gen::new(|co: Co<u32>| async move {
                co.yield_(1).await;
                panic!("inner body");
            });
            assert_eq!(inner.resume(), Ok(GeneratorState::Yielded(1)));
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.resume()));
            assert!(unwound.is_err());
            assert!(inner.is_finished());
            // The outer body's own yield still reaches the outer resume.
            co.yield_(2).await;
        });
        assert_eq!(outer.resume(), Ok(GeneratorState::Yielded(2)));
        assert_eq!(outer.resume(), Ok(GeneratorState::Complete(())));
    }

    #[test]
    fn generators_and_their_handles_stay_send_and_sync() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        let generator = Gen::with_resume_arg(|co: Co<String, Vec<u8>>| async move {
            send_sync(&co);
            let yielded = co.yield_(String::from("a"));
            send_sync(&yielded);
            yielded.await.len()
        });
        send_sync(&generator);
        drop(generator);
    }

    #[test]
    fn a_generator_resumes_on_several_threads_in_turn() {
        let mut generator = Gen::new(|co| async move {
            for i in 0..4u32 {
                co.yield_(i).await;
            }
        });
        for i in 0..4 {
            generator = std::thread::spawn(move || {
                assert_eq!(generator.next(), Some(i));
                generator
            })
            .join()
            .unwrap();
        }
        assert_eq!(generator.next(), None);
    }
}
