//! The executor-author API: one [`TaskContext`] per unit of work, captured when the work is
//! created, entered and exited around each step, released at the end.
//!
//! This is what a runtime needs to give every task its own execution context without
//! wrapping the task's future: asyncio's rule (a task starts from a copy of its creator's
//! context and keeps its changes to itself) as four calls an executor makes at the points it
//! already has.
//!
//! | executor event | call | where it must run |
//! |---|---|---|
//! | spawn | [`TaskContext::capture`] (or [`TaskContext::new`]) | on the spawning thread, before it returns |
//! | before each poll / step | [`TaskContext::enter`] | on the polling thread |
//! | after each poll / step | [`TaskContext::exit`] (or [`TaskContext::end`] in a guard, which also ends attaches the step left behind) | the same thread, the same scope level |
//! | end, abort, shutdown | drop the `TaskContext` | anywhere (exited) |
//!
//! Between `enter` and `exit` the task's context is the thread's current one: what the task
//! sets goes into it, and whatever the thread had before is back after `exit`, so nothing a
//! task sets is seen by the next task polled on the same thread. A task that moves between
//! threads carries its context with it, since the context lives in the `TaskContext`, not
//! in a thread. Entering and exiting move the context in and out of the thread (no
//! allocation, no reference counting; a task's first entry takes an id from a process-wide
//! counter, which later tokens check). `crate::tokio::propagate` (with `--cfg tokio_unstable`)
//! uses the same thread-state moves through `contextvars::attach_deferred`, which enters a
//! task's context only in polls that use it. `crate::async_executor` (feature
//! `async-executor`) shows `TaskContext` on a second executor.
//!
//! ```
//! use contextvars::ContextVar;
//! use exec_context::task_context::TaskContext;
//!
//! static REQUEST: ContextVar<u32> = ContextVar::new("request");
//!
//! // An executor: tasks as (context, steps) pairs, run round-robin on one thread.
//! REQUEST.set(1);
//! let mut tasks: Vec<(TaskContext, u32)> = Vec::new();
//! for id in 10..13 {
//!     tasks.push((TaskContext::capture(), id)); // at spawn, in the spawner's context
//! }
//! REQUEST.set(2); // after the spawns: no task sees it
//! for round in 0..3 {
//!     for (context, id) in &mut tasks {
//!         context.enter().unwrap();
//!         // The task's step.
//!         if round == 0 {
//!             assert_eq!(REQUEST.get(), Some(1));
//!             REQUEST.set(*id);
//!         }
//!         assert_eq!(REQUEST.get(), Some(*id));
//!         context.exit().unwrap();
//!     }
//! }
//! assert_eq!(REQUEST.get(), Some(2)); // the executor's own context never changed
//! ```

use std::fmt;

use contextvars::{AttachId, Context, DetachError, ExecutionContext, attach, detach, end_attach};

use crate::task::spawn_context;
use crate::thread::Inheritance;

/// The execution context of one task, for executors: see the [module docs](self).
pub struct TaskContext {
    /// The task's context while it is not entered (an empty placeholder while it is).
    context: Context,
    /// Set while the context is the current one of some thread.
    entered: Option<AttachId>,
}

/// Why [`TaskContext::enter`] or [`TaskContext::exit`] refused. Nothing changed.
///
/// ```
/// use contextvars::Context;
/// use exec_context::task_context::{TaskContext, TaskContextError};
///
/// let mut task = TaskContext::capture();
/// assert_eq!(task.exit(), Err(TaskContextError::NotEntered));
/// task.enter().unwrap();
/// assert_eq!(task.enter(), Err(TaskContextError::AlreadyEntered));
/// // Inside a run that began after `enter`, the task's context is not the current one.
/// assert_eq!(Context::new().run(|| task.exit()), Err(TaskContextError::NotCurrent));
/// task.exit().unwrap(); // at the level of the `enter`, it is
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskContextError {
    /// `enter` on a context that is already entered.
    AlreadyEntered,
    /// `exit` on a context that is not entered.
    NotEntered,
    /// `exit` where the context is not the current one at this scope level: on another
    /// thread, or inside a scope that began after `enter` and has not ended.
    NotCurrent,
    /// `enter` during thread teardown, after the thread's context state is gone.
    ThreadExiting,
}

impl fmt::Display for TaskContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskContextError::AlreadyEntered => "the task context is already entered",
            TaskContextError::NotEntered => "the task context is not entered",
            TaskContextError::NotCurrent => {
                "the task context is not the current context at this scope level"
            }
            TaskContextError::ThreadExiting => {
                "the thread's context state is already destroyed (thread teardown)"
            }
        })
    }
}

impl std::error::Error for TaskContextError {}

impl TaskContext {
    /// A snapshot of the current context, without the variables that opted out of
    /// inheritance, under a fresh logical context: what a task spawned now should start from.
    /// Call it on the spawning thread. O(1) when no variable opted out of inheritance.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::task_context::TaskContext;
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// static TXN: ContextVar<u32> = ContextVar::new("txn").not_inherited();
    ///
    /// USER.set("alice");
    /// TXN.set(1);
    /// let task = TaskContext::capture();
    /// USER.set("bob"); // after the snapshot
    /// assert_eq!(task.context().get(&USER), Some("alice"));
    /// assert_eq!(task.context().get(&TXN), None); // opted out of inheritance
    /// ```
    pub fn capture() -> Self {
        TaskContext::from_context(spawn_context())
    }

    /// A task context chosen by `policy`: empty, captured now (as [`capture`](Self::capture)),
    /// or the given execution context.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::task_context::TaskContext;
    /// use exec_context::thread::Inheritance;
    ///
    /// static VAR: ContextVar<u8> = ContextVar::new("var");
    /// VAR.set(1);
    /// assert_eq!(TaskContext::new(Inheritance::Empty).context().get(&VAR), None);
    /// assert_eq!(TaskContext::new(Inheritance::Inherit).context().get(&VAR), Some(1));
    /// ```
    pub fn new(policy: Inheritance) -> Self {
        match policy {
            Inheritance::Empty => TaskContext::from_context(Context::new()),
            Inheritance::Inherit => TaskContext::capture(),
            Inheritance::Given(ec) => TaskContext::from_execution_context(ec),
        }
    }

    /// A task context that runs on top of `ec`, with a logical context of its own.
    ///
    /// ```
    /// use contextvars::{ContextVar, get_execution_context};
    /// use exec_context::task_context::TaskContext;
    ///
    /// static VAR: ContextVar<u32> = ContextVar::new("var");
    ///
    /// VAR.set(1);
    /// let ec = get_execution_context();
    /// let mut task = TaskContext::from_execution_context(ec.clone());
    /// task.enter().unwrap();
    /// assert_eq!(VAR.get(), Some(1));
    /// VAR.set(2); // goes into the task's own logical context
    /// task.exit().unwrap();
    /// assert_eq!(task.context().get(&VAR), Some(2));
    /// assert_eq!(ec.get(&VAR), Some(1)); // `ec` is unchanged
    /// ```
    pub fn from_execution_context(ec: ExecutionContext) -> Self {
        TaskContext::from_context(Context::from(ec))
    }

    /// A task context that runs in `context` (its changes go into it).
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    /// use exec_context::task_context::TaskContext;
    ///
    /// static VAR: ContextVar<u32> = ContextVar::new("var");
    ///
    /// let mut task = TaskContext::from_context(Context::new());
    /// task.enter().unwrap();
    /// VAR.set(5);
    /// task.exit().unwrap();
    /// assert_eq!(task.context().get(&VAR), Some(5));
    /// assert_eq!(VAR.get(), None);
    /// ```
    pub fn from_context(context: Context) -> Self {
        TaskContext {
            context,
            entered: None,
        }
    }

    /// Makes the task's context the thread's current one, until [`exit`](Self::exit).
    ///
    /// # Errors
    ///
    /// [`TaskContextError::AlreadyEntered`], or [`TaskContextError::ThreadExiting`] during
    /// thread teardown. Nothing changes on error.
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    /// use exec_context::task_context::{TaskContext, TaskContextError};
    ///
    /// static VAR: ContextVar<u32> = ContextVar::new("var");
    ///
    /// VAR.set(1);
    /// let mut task = TaskContext::from_context(Context::new());
    /// task.enter().unwrap();
    /// assert_eq!(VAR.get(), None); // the task's (empty) context is current
    /// assert_eq!(task.enter(), Err(TaskContextError::AlreadyEntered));
    /// task.exit().unwrap();
    /// assert_eq!(VAR.get(), Some(1));
    /// ```
    #[inline]
    pub fn enter(&mut self) -> Result<(), TaskContextError> {
        if self.entered.is_some() {
            return Err(TaskContextError::AlreadyEntered);
        }
        match attach(std::mem::take(&mut self.context)) {
            Ok(id) => {
                self.entered = Some(id);
                Ok(())
            }
            Err(error) => {
                self.context = error.into_context();
                Err(TaskContextError::ThreadExiting)
            }
        }
    }

    /// Takes the task's context back from the thread (with what the step set) and restores
    /// the thread's previous context.
    ///
    /// # Errors
    ///
    /// [`TaskContextError::NotEntered`], or [`TaskContextError::NotCurrent`] if this is not
    /// the thread and scope level of the `enter`. Nothing changes on error: the context stays
    /// entered, and a later `exit` in the right place succeeds, as long as that place still
    /// exists. An `enter` made inside a scope (a [`Context::run`], a generator step, a
    /// [`WithContext`](crate::WithContext) poll) ends with that scope, as every attach does:
    /// the task's context (and what the step set) goes with it, and from then on `exit` and
    /// [`end`](Self::end) answer `NotCurrent` and [`enter`](Self::enter) `AlreadyEntered`.
    /// Enter at the level where the step's guard will exit.
    ///
    /// # Panics
    ///
    /// If a `Drop` of a value the exit lets go panics (one the step replaced, or for
    /// [`end`](Self::end) one of a context the step left attached, which it discards), the
    /// panic comes out once the exit is made: the thread's previous context
    /// is current again and this one is no longer entered, but the task's context is
    /// dropped with the panic (as [`contextvars::end_attach`] does), and the task goes on
    /// from an empty one. Unless the thread is unwinding already: then the panic is
    /// discarded.
    ///
    /// ```
    /// use contextvars::Context;
    /// use exec_context::task_context::{TaskContext, TaskContextError};
    ///
    /// let mut task = TaskContext::capture();
    /// Context::new().run(|| task.enter().unwrap());
    /// // The run ended the attach, and the task's context with it.
    /// assert_eq!(task.exit(), Err(TaskContextError::NotCurrent));
    /// assert_eq!(task.enter(), Err(TaskContextError::AlreadyEntered));
    /// ```
    #[inline]
    pub fn exit(&mut self) -> Result<(), TaskContextError> {
        self.leave(detach)
    }

    /// Ends the entry with `finish` (`detach` or `end_attach`), taking the context back.
    #[inline]
    fn leave(
        &mut self,
        finish: fn(AttachId) -> Result<Context, DetachError>,
    ) -> Result<(), TaskContextError> {
        // Taken first: if a `Drop` of what the exit lets go panics, the attach has ended, and
        // so has the entry.
        let id = self.entered.take().ok_or(TaskContextError::NotEntered)?;
        match finish(id) {
            Ok(context) => {
                self.context = context;
                Ok(())
            }
            Err(_) => {
                self.entered = Some(id);
                Err(TaskContextError::NotCurrent)
            }
        }
    }

    /// [`exit`](Self::exit) for the end of a step that may have left an attach of its own
    /// behind (its code panicked between a [`contextvars::attach`] and its `detach`, or it
    /// entered another `TaskContext` and never exited it): those attaches end with this one,
    /// as at the end of a [`Context::run`], and the thread's previous context is current
    /// again. The task's context is then the one current when the step ended, the topmost
    /// context left attached (see [`contextvars::end_attach`]). With nothing left above,
    /// this is `exit`. An executor's guard around a poll should call this.
    ///
    /// # Errors
    ///
    /// [`TaskContextError::NotEntered`], or [`TaskContextError::NotCurrent`] on another
    /// thread or inside a run or scope that began after `enter` and has not ended. Nothing
    /// changes on error.
    ///
    /// # Panics
    ///
    /// As [`exit`](Self::exit).
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    /// use exec_context::task_context::TaskContext;
    ///
    /// static REQUEST: ContextVar<u32> = ContextVar::new("request");
    ///
    /// REQUEST.set(1);
    /// let mut task = TaskContext::capture();
    /// task.enter().unwrap();
    /// // The step attaches a context and never detaches it (say its code panicked).
    /// let _left = contextvars::attach(Context::new()).unwrap();
    /// REQUEST.set(99);
    /// assert!(task.exit().is_err()); // not the current attach: nothing changed
    /// task.end().unwrap();
    /// assert_eq!(REQUEST.get(), Some(1)); // the thread's own context again
    /// ```
    pub fn end(&mut self) -> Result<(), TaskContextError> {
        self.leave(end_attach)
    }

    /// Whether the context is entered: [`enter`](Self::enter) succeeded and no
    /// [`exit`](Self::exit) or [`end`](Self::end) has taken it back yet. (An enter made in a
    /// scope that has since ended still counts: the context is then current nowhere, and
    /// only dropping the `TaskContext` releases it.)
    ///
    /// ```
    /// use exec_context::task_context::TaskContext;
    ///
    /// let mut task = TaskContext::capture();
    /// assert!(!task.is_entered());
    /// task.enter().unwrap();
    /// assert!(task.is_entered());
    /// task.exit().unwrap();
    /// assert!(!task.is_entered());
    /// ```
    pub fn is_entered(&self) -> bool {
        self.entered.is_some()
    }

    /// The task's context while it is not entered (empty while it is).
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::task_context::TaskContext;
    ///
    /// static VAR: ContextVar<u32> = ContextVar::new("var");
    ///
    /// VAR.set(1);
    /// let mut task = TaskContext::capture();
    /// assert_eq!(task.context().get(&VAR), Some(1));
    /// task.enter().unwrap();
    /// assert!(task.context().is_empty()); // the thread holds it
    /// task.exit().unwrap();
    /// assert_eq!(task.context().get(&VAR), Some(1));
    /// ```
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The task's context, for a task that has ended.
    ///
    /// # Errors
    ///
    /// Gives `self` back while the context is entered.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::task_context::TaskContext;
    ///
    /// static VAR: ContextVar<u32> = ContextVar::new("var");
    ///
    /// let mut task = TaskContext::capture();
    /// task.enter().unwrap();
    /// VAR.set(1);
    /// let mut task = task.into_context().unwrap_err(); // entered: handed back
    /// task.exit().unwrap();
    /// let context = task.into_context().unwrap();
    /// assert_eq!(context.get(&VAR), Some(1));
    /// assert_eq!(VAR.get(), None);
    /// ```
    pub fn into_context(self) -> Result<Context, Self> {
        if self.entered.is_some() {
            return Err(self);
        }
        let mut this = self;
        Ok(std::mem::take(&mut this.context))
    }
}

impl Drop for TaskContext {
    /// Releases the context. If it is still entered (an executor dropping a task in the
    /// middle of a step), it is ended first when this is its thread and scope level (see
    /// [`end`](Self::end): attaches the step left above it end too); otherwise it stays
    /// current where it was entered until the scope below it is left.
    ///
    /// # Panics
    ///
    /// As [`exit`](Self::exit) and [`end`](Self::end): when the `Drop` of a value they drop
    /// panics (what attaches left above the context displaced). Dropping several entered
    /// `TaskContext`s in one go (a `Vec` of them) can then panic twice, which aborts: exit
    /// or end them one at a time first.
    fn drop(&mut self) {
        if self.entered.is_some() && self.exit().is_err() {
            let _ = self.end();
        }
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("entered", &self.entered.is_some())
            .field("context", &self.context)
            .finish()
    }
}
