//! The PEP 567 surface: [`Context`] and [`copy_context`].

use std::fmt;

use crate::execution::{EC_LEN_MAX, ExecutionContext};
use crate::logical::LogicalContext;
use crate::thread_state::{self, Frame};
use crate::value::{VarInfo, VarMap, downcast, info};
use crate::var::ContextVar;

/// A mutable context that code can run in: PEP 567's `contextvars.Context`.
///
/// [`run`](Self::run) makes it the thread's current context for the duration of a closure;
/// whatever the closure sets stays in this `Context` and is there at the next `run`. Entering
/// and leaving moves the context in and out of the thread (no allocation, no reference-count
/// traffic). Because `run` takes `&mut self`, a context cannot be entered twice at once —
/// PEP 567's "already entered" `RuntimeError` cannot happen.
///
/// `clone` is PEP 567's `Context.copy()`: O(1), and the copy is isolated from the original
/// in both directions.
///
/// ```
/// use contextvars::{ContextVar, copy_context};
///
/// static VAR: ContextVar<&str> = ContextVar::new("var");
///
/// VAR.set("spam");
/// let mut ctx = copy_context();
/// ctx.run(|| {
///     assert_eq!(VAR.get(), Some("spam"));
///     VAR.set("ham");
/// });
/// assert_eq!(VAR.get(), Some("spam")); // the caller's context is untouched
/// assert_eq!(ctx.get(&VAR), Some("ham")); // the change stayed in `ctx`
/// ```
#[derive(Default)]
pub struct Context {
    pub(crate) frame: Frame,
}

impl Context {
    /// An empty context. It does not allocate.
    pub fn new() -> Self {
        Context::default()
    }

    /// Runs `f` with this context as the thread's current one and returns its result. Changes
    /// `f` makes to context variables stay in this context. The previous context is back when
    /// `run` returns — also when `f` panics (the changes made before the panic are kept here).
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static COUNT: ContextVar<u32> = ContextVar::with_default("count", 0);
    ///
    /// let mut ctx = Context::new();
    /// for _ in 0..3 {
    ///     ctx.run(|| COUNT.set(COUNT.get().unwrap() + 1));
    /// }
    /// assert_eq!(ctx.get(&COUNT), Some(3));
    /// assert_eq!(COUNT.get(), Some(0));
    /// ```
    pub fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        thread_state::run_in_frame(&mut self.frame, f)
    }

    /// `var`'s value in this context (its default does not count).
    pub fn get<T: Clone + Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<T> {
        let id = var.id();
        match self.frame.top.map.get(&id) {
            Some(value) => downcast::<T>(value).cloned(),
            None => self.frame.base.get(var),
        }
    }

    /// Whether `var` has a value in this context.
    pub fn contains<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> bool {
        self.frame.top.contains(var) || self.frame.base.contains(var)
    }

    /// The number of variables with a value in this context.
    pub fn len(&self) -> usize {
        self.merged().len()
    }

    /// Whether no variable has a value in this context.
    pub fn is_empty(&self) -> bool {
        self.frame.top.is_empty() && self.frame.base.is_empty()
    }

    /// The variables with a value in this context, in no particular order.
    pub fn vars(&self) -> Vec<VarInfo> {
        self.merged()
            .iter()
            .map(|(id, value)| info(*id, value))
            .collect()
    }

    /// This context as an immutable execution context (for `run_with_execution_context`, or
    /// to hand to spawned work).
    /// Like [`get_execution_context`](crate::get_execution_context), the result is squashed
    /// into one logical context when it would be deeper than [`EC_LEN_MAX`].
    pub fn execution_context(&self) -> ExecutionContext {
        let ec = self.frame.base.with_layer(self.frame.top.map.clone());
        if ec.len() > EC_LEN_MAX {
            ec.squashed()
        } else {
            ec
        }
    }

    fn merged(&self) -> VarMap {
        let mut merged = self.frame.top.map.clone();
        merged.merge(&self.frame.base.merged());
        merged
    }
}

impl Clone for Context {
    /// PEP 567's `Context.copy()`: O(1); the copy is a distinct context.
    fn clone(&self) -> Self {
        Context {
            frame: Frame {
                top: self.frame.top.clone(),
                base: self.frame.base.clone(),
            },
        }
    }
}

impl From<ExecutionContext> for Context {
    /// A context that runs on top of `ec` (with a logical context of its own for its changes).
    fn from(ec: ExecutionContext) -> Self {
        Context {
            frame: Frame {
                top: LogicalContext::new(),
                base: ec,
            },
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("vars", &self.vars())
            .finish()
    }
}

/// A copy of the current context (PEP 567 `copy_context()`): O(1), sharing structure with
/// the current context; changes on either side stay on that side.
///
/// ```
/// use contextvars::{ContextVar, copy_context};
///
/// static VAR: ContextVar<i32> = ContextVar::new("var");
/// VAR.set(1);
/// let ctx = copy_context();
/// VAR.set(2);
/// assert_eq!(ctx.get(&VAR), Some(1));
/// ```
pub fn copy_context() -> Context {
    Context::from(thread_state::snapshot())
}
