//! Generators: [`Gen`], an async-bodied coroutine whose every resume runs in its own logical
//! context (PEP 550 §Generators).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};

use contextvars::{Context, LogicalContext, run_with_logical_context};
use parking_lot::Mutex;

/// What a resume produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorState<Y, R> {
    /// The body yielded a value and is suspended.
    Yielded(Y),
    /// The body returned.
    Complete(R),
}

/// Why a generator could not be resumed.
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

/// Values passed between a generator and its caller.
enum Exchange<Y, A> {
    Empty,
    Yielded(Y),
    Resumed(A),
}

/// The slot a resume argument and a yielded value pass through. `&mut Gen` already
/// serialises resumes, so the lock is never contended: each access is one uncontended
/// acquire and release (`parking_lot`'s, which has no poisoning to check), never held while
/// user code runs.
type Airlock<Y, A> = Arc<Mutex<Exchange<Y, A>>>;

/// The generator body's handle for yielding values (and receiving resume arguments).
pub struct Co<Y, A = ()> {
    airlock: Airlock<Y, A>,
}

impl<Y, A> Co<Y, A> {
    /// Yields `value` to the caller and suspends until the next resume, whose argument it
    /// returns.
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

    fn poll(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<A> {
        let this = self.get_mut();
        let mut exchange = this.co.airlock.lock();
        if let Some(value) = this.value.take() {
            *exchange = Exchange::Yielded(value);
            return Poll::Pending;
        }
        match std::mem::replace(&mut *exchange, Exchange::Empty) {
            Exchange::Resumed(arg) => Poll::Ready(arg),
            other => {
                *exchange = other;
                Poll::Pending
            }
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
    airlock: Airlock<Y, A>,
    body: Option<Pin<Box<F>>>,
    started: bool,
    _result: PhantomData<fn() -> R>,
}

impl<Y, R, F: Future<Output = R>> Gen<Y, R, (), F> {
    /// A generator running `producer`'s body, with a fresh logical context that keeps the
    /// creator's [pinned](contextvars::pinned) values ([`LogicalContext::pinned`]: a
    /// generator made inside an [interpreter](crate::interpreters) runs in it wherever it is
    /// resumed). Nothing of the body runs until the first resume. Its `yield_`s return `()`; see
    /// [`with_resume_arg`](Gen::with_resume_arg) for a generator that receives values.
    pub fn new(producer: impl FnOnce(Co<Y, ()>) -> F) -> Self {
        Self::with_mode(Mode::Logical(LogicalContext::pinned()), producer)
    }
}

impl<Y, R, A, F: Future<Output = R>> Gen<Y, R, A, F> {
    /// A generator whose `yield_`s return the argument of the next
    /// [`resume_with`](Self::resume_with) (Python's `send()`), with a fresh logical context
    /// (as [`Gen::new`] makes).
    pub fn with_resume_arg(producer: impl FnOnce(Co<Y, A>) -> F) -> Self {
        Self::with_mode(Mode::Logical(LogicalContext::pinned()), producer)
    }

    pub(crate) fn with_mode(mode: Mode, producer: impl FnOnce(Co<Y, A>) -> F) -> Self {
        let airlock: Airlock<Y, A> = Arc::new(Mutex::new(Exchange::Empty));
        let co = Co {
            airlock: airlock.clone(),
        };
        Gen {
            mode,
            airlock,
            body: Some(Box::pin(producer(co))),
            started: false,
            _result: PhantomData,
        }
    }

    /// Runs the body until its next yield (or its end), passing `arg` as the value of the
    /// `yield_` it is suspended at (Python's `send()`). The argument of the first resume has
    /// no `yield_` to go to and is dropped.
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
        let Some(mut body) = self.body.take() else {
            return Err(GenError::Finished);
        };
        if self.started {
            *self.airlock.lock() = Exchange::Resumed(arg);
        } else {
            self.started = true;
            drop(arg);
        }
        // The body moves into the step so that, if it panics, it is dropped during unwinding
        // inside the generator's context.
        let (poll, body) = self.mode.run(move || {
            let mut task = TaskContext::from_waker(Waker::noop());
            (body.as_mut().poll(&mut task), body)
        });
        match poll {
            Poll::Ready(result) => {
                *self.airlock.lock() = Exchange::Empty;
                Ok(GeneratorState::Complete(result))
            }
            Poll::Pending => {
                self.body = Some(body);
                match std::mem::replace(&mut *self.airlock.lock(), Exchange::Empty) {
                    Exchange::Yielded(value) => Ok(GeneratorState::Yielded(value)),
                    _ => Err(GenError::Stalled),
                }
            }
        }
    }

    pub(crate) fn full_context(&self) -> Option<&Context> {
        match &self.mode {
            Mode::Full(context) => Some(context),
            _ => None,
        }
    }

    pub(crate) fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// Whether the body has returned (or panicked).
    pub fn is_finished(&self) -> bool {
        self.body.is_none()
    }

    /// The generator's own logical context, or `None` in context manager mode.
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

impl<Y, R, F: Future<Output = R>> Gen<Y, R, (), F> {
    /// Runs the body until its next yield or its end.
    ///
    /// # Errors
    ///
    /// As [`resume_with`](Self::resume_with).
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
    /// A suspended body is dropped inside the generator's context, so the destructors of its
    /// locals see the same context variables its steps did.
    fn drop(&mut self) {
        if let Some(body) = self.body.take()
            && self.started
        {
            self.mode.run(move || drop(body));
        }
    }
}

impl<Y, R, A, F> fmt::Debug for Gen<Y, R, A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gen")
            .field("started", &self.started)
            .field("finished", &self.body.is_none())
            .finish_non_exhaustive()
    }
}
