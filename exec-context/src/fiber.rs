//! Fibers (greenlets, Stackless tasklets — PEP 219): coroutines that are switched to
//! explicitly, each with a whole execution context of its own.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use contextvars::Context;

use crate::generator::{Co, Gen, GenError, GeneratorState, Mode};

/// What context a new fiber runs in.
///
/// ```
/// use contextvars::{ContextBuilder, ContextVar};
/// use exec_context::fiber::{Fiber, FiberContext};
///
/// static VAR: ContextVar<&str> = ContextVar::new("var");
///
/// // What a new fiber sees, and whether what it sets reaches its switcher.
/// let run = |policy| {
///     let fiber = Fiber::new(policy, |co| async move {
///         let seen = VAR.get();
///         VAR.set("fiber");
///         co.yield_(seen).await;
///     });
///     let seen = fiber.switch().unwrap().unwrap();
///     (seen, VAR.get() == Some("fiber"))
/// };
/// let mut given = ContextBuilder::new();
/// given.set(&VAR, "given");
/// VAR.set("creator");
/// assert_eq!(run(FiberContext::Empty), (None, false));
/// assert_eq!(run(FiberContext::Inherit), (Some("creator"), false));
/// assert_eq!(run(FiberContext::Given(given.build())), (Some("given"), false));
/// assert_eq!(run(FiberContext::Share), (Some("creator"), true));
/// ```
#[derive(Clone, Debug, Default)]
pub enum FiberContext {
    /// An empty context of its own (greenlet's default).
    #[default]
    Empty,
    /// A copy of the creator's context, taken at creation (Stackless `bind`), without the
    /// variables that opted out of inheritance.
    Inherit,
    /// No context of its own: it runs in whatever context switches to it, and its writes land
    /// there (a greenlet sharing its parent's context).
    Share,
    /// The given context.
    Given(Context),
}

/// Why a fiber could not be switched to or changed.
///
/// ```
/// use exec_context::Co;
/// use exec_context::fiber::{Fiber, FiberContext, FiberError};
///
/// let done = Fiber::new(FiberContext::Empty, |_: Co<()>| async {});
/// assert_eq!(done.switch(), Ok(None));
/// assert_eq!(done.switch(), Err(FiberError::Finished));
/// assert_eq!(done.set_context(None), Err(FiberError::Finished));
///
/// let stalled = Fiber::new(FiberContext::Empty, |_: Co<()>| std::future::pending::<()>());
/// assert_eq!(stalled.switch(), Err(FiberError::Stalled));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FiberError {
    /// The fiber is running: it cannot be switched to again, nor its context replaced.
    Running,
    /// The fiber's body returned (or panicked).
    Finished,
    /// The body awaited something other than a yield (see [`GenError::Stalled`]).
    Stalled,
}

impl fmt::Display for FiberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FiberError::Running => "the fiber is running",
            FiberError::Finished => "the fiber has finished",
            FiberError::Stalled => "the fiber awaited something other than a yield",
        })
    }
}

impl std::error::Error for FiberError {}

type Body<R> = Pin<Box<dyn Future<Output = R>>>;

enum Slot<Y, R, A> {
    Idle(Gen<Y, R, A, Body<R>>),
    Running,
    Finished,
}

/// A fiber: a coroutine with its own execution context, switched to explicitly.
///
/// Switching to a fiber installs its context for as long as it runs and saves it back when
/// it yields, so every fiber keeps its own variables however fibers interleave. A `Fiber` is a
/// cheap handle (clones refer to the same fiber); it belongs to the thread that made it.
///
/// A fiber and its context are freed when its last handle goes (or when its body
/// finishes). Handles are strong references, like `Rc`'s: a suspended body that holds a
/// handle to its own fiber, or two suspended fibers whose bodies hold each other's, keep
/// each other alive, with their contexts' values, until one of them finishes. Drop such a
/// handle before suspending, or let a third party switch between them.
///
/// ```
/// use contextvars::ContextVar;
/// use exec_context::fiber::{Fiber, FiberContext};
///
/// static NAME: ContextVar<&str> = ContextVar::new("name");
///
/// let ping = Fiber::new(FiberContext::Empty, |co| async move {
///     NAME.set("ping");
///     loop {
///         co.yield_(NAME.get()).await;
///     }
/// });
/// let pong = Fiber::new(FiberContext::Empty, |co| async move {
///     NAME.set("pong");
///     loop {
///         co.yield_(NAME.get()).await;
///     }
/// });
/// for _ in 0..3 {
///     assert_eq!(ping.switch(), Ok(Some(Some("ping"))));
///     assert_eq!(pong.switch(), Ok(Some(Some("pong"))));
/// }
/// assert_eq!(NAME.get(), None); // the switcher's context is its own
/// ```
pub struct Fiber<Y, R = (), A = ()> {
    slot: Rc<RefCell<Slot<Y, R, A>>>,
}

impl<Y: 'static, R: 'static> Fiber<Y, R, ()> {
    /// A fiber running `producer`'s body in the context `policy` selects. The body runs from
    /// the first switch; `producer` itself runs at once, in that context, so what it sets
    /// stays with the fiber (with [`FiberContext::Share`], in the caller's context).
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::fiber::{Fiber, FiberContext};
    ///
    /// static VAR: ContextVar<u32> = ContextVar::new("var");
    ///
    /// VAR.set(1);
    /// let copy = Fiber::new(FiberContext::Inherit, |co| async move {
    ///     co.yield_(VAR.get()).await;
    /// });
    /// let shared = Fiber::new(FiberContext::Share, |co| async move {
    ///     co.yield_(VAR.get()).await;
    /// });
    /// VAR.set(2);
    /// assert_eq!(copy.switch(), Ok(Some(Some(1)))); // the copy was taken at creation
    /// assert_eq!(shared.switch(), Ok(Some(Some(2)))); // the body first ran at the switch
    /// ```
    pub fn new<F>(policy: FiberContext, producer: impl FnOnce(Co<Y, ()>) -> F) -> Self
    where
        F: Future<Output = R> + 'static,
    {
        Self::with_resume_arg(policy, producer)
    }

    /// Switches to the fiber until it yields (`Some(value)`) or returns (`None`: the body's
    /// result is dropped; switch with [`switch_with`](Self::switch_with) to receive it as
    /// `Complete`).
    ///
    /// # Errors
    ///
    /// [`FiberError::Running`] when switching to a fiber that is running (including itself),
    /// [`FiberError::Finished`] after it returned, [`FiberError::Stalled`].
    pub fn switch(&self) -> Result<Option<Y>, FiberError> {
        match self.switch_with(())? {
            GeneratorState::Yielded(value) => Ok(Some(value)),
            GeneratorState::Complete(_) => Ok(None),
        }
    }
}

impl<Y: 'static, R: 'static, A: 'static> Fiber<Y, R, A> {
    /// A fiber whose yields receive the argument of the next [`switch_with`](Self::switch_with).
    ///
    /// ```
    /// use exec_context::GeneratorState;
    /// use exec_context::fiber::{Fiber, FiberContext};
    ///
    /// let adder = Fiber::with_resume_arg(FiberContext::Empty, |co| async move {
    ///     let mut sum = 0;
    ///     while sum < 5 {
    ///         sum += co.yield_(sum).await;
    ///     }
    ///     sum
    /// });
    /// assert_eq!(adder.switch_with(0), Ok(GeneratorState::Yielded(0))); // no yield takes it
    /// assert_eq!(adder.switch_with(2), Ok(GeneratorState::Yielded(2)));
    /// assert_eq!(adder.switch_with(3), Ok(GeneratorState::Complete(5)));
    /// ```
    pub fn with_resume_arg<F>(policy: FiberContext, producer: impl FnOnce(Co<Y, A>) -> F) -> Self
    where
        F: Future<Output = R> + 'static,
    {
        let mode = match policy {
            FiberContext::Empty => Mode::Full(Context::new()),
            FiberContext::Inherit => Mode::Full(Context::from(
                contextvars::get_execution_context().inherited(),
            )),
            FiberContext::Share => Mode::Caller,
            FiberContext::Given(context) => Mode::Full(context),
        };
        let generator = Gen::with_mode(mode, |co| Box::pin(producer(co)) as Body<R>);
        Fiber {
            slot: Rc::new(RefCell::new(Slot::Idle(generator))),
        }
    }

    /// Switches to the fiber, passing `arg` as the value of the yield it is suspended at.
    ///
    /// When the body finishes, the fiber is marked finished, then its context is dropped.
    ///
    /// # Errors
    ///
    /// As [`switch`](Fiber::switch).
    ///
    /// # Panics
    ///
    /// A panic of the body reaches the caller, and the fiber is finished; so does a panic of
    /// a `Drop` among the finished fiber's values (discarded if the body itself panicked:
    /// a second panic while one unwinds would abort). The switcher's context is restored
    /// either way.
    ///
    /// ```
    /// use exec_context::GeneratorState;
    /// use exec_context::fiber::{Fiber, FiberContext, FiberError};
    ///
    /// let fiber = Fiber::with_resume_arg(FiberContext::Empty, |co| async move {
    ///     let word: &str = co.yield_(()).await;
    ///     word.len()
    /// });
    /// assert_eq!(fiber.switch_with(""), Ok(GeneratorState::Yielded(())));
    /// assert_eq!(fiber.switch_with("fiber"), Ok(GeneratorState::Complete(5)));
    /// assert!(fiber.is_finished());
    /// assert_eq!(fiber.switch_with("again"), Err(FiberError::Finished));
    /// ```
    pub fn switch_with(&self, arg: A) -> Result<GeneratorState<Y, R>, FiberError> {
        let taken = std::mem::replace(&mut *self.slot.borrow_mut(), Slot::Running);
        let generator = match taken {
            Slot::Idle(generator) => generator,
            Slot::Running => return Err(FiberError::Running),
            Slot::Finished => {
                *self.slot.borrow_mut() = Slot::Finished;
                return Err(FiberError::Finished);
            }
        };
        // Put the fiber back however the step ends, panics included (a body that panicked
        // is finished).
        struct Restore<'a, Y, R, A> {
            slot: &'a RefCell<Slot<Y, R, A>>,
            generator: Option<Gen<Y, R, A, Body<R>>>,
        }
        impl<Y, R, A> Drop for Restore<'_, Y, R, A> {
            fn drop(&mut self) {
                let finished = match self.generator.take() {
                    Some(generator) if !generator.is_finished() => {
                        *self.slot.borrow_mut() = Slot::Idle(generator);
                        return;
                    }
                    finished => finished,
                };
                // The fiber is finished before its context goes: the values' `Drop`s run
                // user code, which may look at this fiber (no borrow is held) or panic.
                *self.slot.borrow_mut() = Slot::Finished;
                if std::thread::panicking() {
                    // The body panicked: a second panic from a value's `Drop` would abort.
                    // It is discarded, as where contexts drop what they displaced.
                    crate::discarding_panics(move || drop(finished));
                } else {
                    drop(finished);
                }
            }
        }
        let mut restore = Restore {
            slot: &self.slot,
            generator: Some(generator),
        };
        let outcome = match restore.generator.as_mut() {
            Some(generator) => generator.resume_with(arg),
            None => Err(GenError::Finished),
        };
        drop(restore);
        outcome.map_err(|error| match error {
            GenError::Finished => FiberError::Finished,
            GenError::Stalled => FiberError::Stalled,
        })
    }

    /// Whether the fiber is running now.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use exec_context::fiber::{Fiber, FiberContext};
    ///
    /// let handle: Rc<RefCell<Option<Fiber<bool>>>> = Rc::default();
    /// let inside = handle.clone();
    /// let fiber = Fiber::new(FiberContext::Empty, move |co| async move {
    ///     let me = inside.take().unwrap(); // a handle to this very fiber
    ///     let running = me.is_running();
    ///     drop(me); // not kept across the yield: the fiber would keep itself alive
    ///     co.yield_(running).await;
    /// });
    /// *handle.borrow_mut() = Some(fiber.clone());
    /// assert!(!fiber.is_running());
    /// assert_eq!(fiber.switch(), Ok(Some(true)));
    /// assert!(!fiber.is_running()); // suspended at its yield
    /// ```
    pub fn is_running(&self) -> bool {
        matches!(*self.slot.borrow(), Slot::Running)
    }

    /// Whether the fiber's body has returned (or panicked).
    ///
    /// ```
    /// use exec_context::fiber::{Fiber, FiberContext, FiberError};
    ///
    /// let fiber = Fiber::new(FiberContext::Empty, |co| async move {
    ///     co.yield_(1).await;
    /// });
    /// assert_eq!(fiber.switch(), Ok(Some(1)));
    /// assert!(!fiber.is_finished());
    /// assert_eq!(fiber.switch(), Ok(None)); // the body returned
    /// assert!(fiber.is_finished());
    /// assert_eq!(fiber.switch(), Err(FiberError::Finished));
    /// ```
    pub fn is_finished(&self) -> bool {
        matches!(*self.slot.borrow(), Slot::Finished)
    }

    /// A copy of the fiber's context (greenlet's `gr_context`), or `None` for a fiber that
    /// shares its switcher's context or has finished.
    ///
    /// # Errors
    ///
    /// [`FiberError::Running`]: a running fiber's context is the thread's current one.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::fiber::{Fiber, FiberContext};
    ///
    /// static VAR: ContextVar<&str> = ContextVar::new("var");
    ///
    /// let fiber = Fiber::new(FiberContext::Empty, |co| async move {
    ///     VAR.set("fiber");
    ///     co.yield_(()).await;
    /// });
    /// fiber.switch().unwrap();
    /// let context = fiber.context().unwrap().unwrap();
    /// assert_eq!(context.get(&VAR), Some("fiber"));
    /// assert_eq!(VAR.get(), None);
    ///
    /// let shared = Fiber::new(FiberContext::Share, |co| async move {
    ///     co.yield_(()).await;
    /// });
    /// assert_eq!(shared.context(), Ok(None));
    /// ```
    pub fn context(&self) -> Result<Option<Context>, FiberError> {
        match &*self.slot.borrow() {
            Slot::Idle(generator) => Ok(generator.full_context().cloned()),
            Slot::Running => Err(FiberError::Running),
            Slot::Finished => Ok(None),
        }
    }

    /// Replaces the fiber's context (`None`: share the switcher's). The old context is dropped
    /// once the fiber is released, so its values' `Drop`s may use the fiber; a panic among
    /// them reaches the caller, with the new context already in place.
    ///
    /// # Errors
    ///
    /// [`FiberError::Running`] if the fiber is running; [`FiberError::Finished`] after it
    /// returned.
    ///
    /// ```
    /// use contextvars::{ContextBuilder, ContextVar};
    /// use exec_context::fiber::{Fiber, FiberContext};
    ///
    /// static VAR: ContextVar<&str> = ContextVar::new("var");
    ///
    /// let fiber = Fiber::new(FiberContext::Empty, |co| async move {
    ///     loop {
    ///         co.yield_(VAR.get()).await;
    ///     }
    /// });
    /// assert_eq!(fiber.switch(), Ok(Some(None)));
    /// let mut given = ContextBuilder::new();
    /// given.set(&VAR, "given");
    /// fiber.set_context(Some(given.build())).unwrap();
    /// assert_eq!(fiber.switch(), Ok(Some(Some("given"))));
    /// VAR.set("switcher");
    /// fiber.set_context(None).unwrap(); // share the switcher's context
    /// assert_eq!(fiber.switch(), Ok(Some(Some("switcher"))));
    /// ```
    pub fn set_context(&self, context: Option<Context>) -> Result<(), FiberError> {
        let replaced = match &mut *self.slot.borrow_mut() {
            Slot::Idle(generator) => {
                generator.replace_mode(context.map_or(Mode::Caller, Mode::Full))
            }
            Slot::Running => return Err(FiberError::Running),
            Slot::Finished => return Err(FiberError::Finished),
        };
        // The old context's values go once the fiber is released: their `Drop`s may look at
        // it. A panic among them reaches the caller, with the new context in place.
        drop(replaced);
        Ok(())
    }
}

impl<Y, R, A> Clone for Fiber<Y, R, A> {
    fn clone(&self) -> Self {
        Fiber {
            slot: self.slot.clone(),
        }
    }
}

impl<Y, R, A> fmt::Debug for Fiber<Y, R, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.slot.try_borrow().as_deref() {
            Ok(Slot::Idle(_)) => "idle",
            Ok(Slot::Running) | Err(_) => "running",
            Ok(Slot::Finished) => "finished",
        };
        f.debug_struct("Fiber").field("state", &state).finish()
    }
}
