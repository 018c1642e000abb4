//! The PEP 567 surface: [`Context`] and [`copy_context`].

use std::fmt;

use crate::entries::{AnyValue, Iter};
use crate::execution::{EC_LEN_MAX, ExecutionContext};
use crate::logical::LogicalContext;
use crate::thread_state::{self, Frame};
use crate::value::{Value, VarInfo, downcast};
use crate::var::ContextVar;

/// A mutable context that code can run in: PEP 567's `contextvars.Context`.
///
/// [`run`](Self::run) makes it the thread's current context for the duration of a closure;
/// whatever the closure sets stays in this `Context` and is there at the next `run`. The
/// context is moved into the thread (and back out when `run` returns) only once the closure
/// needs it there: to set or delete a variable (also for a [`ContextVar::scope`]), take a
/// snapshot or attach. Reads are served where the context lies, and neither a nested `run`
/// nor a logical context pushed with
/// [`run_with_logical_context`](crate::run_with_logical_context) moves it in, so a run that
/// only reads, or uses no variable, costs little more than the call (no allocation and no
/// reference-count traffic either way). With a context watcher registered ([`crate::watch`]),
/// the context is moved in at once. Because `run` takes `&mut self`, a context cannot be
/// entered twice at once — PEP 567's "already entered" `RuntimeError` cannot happen.
///
/// Reads stay cached across runs: a `Context` run again on the thread it last ran on finds
/// the variables it read there still in the thread's lookup cache (a task polled repeatedly
/// on one worker, for instance), and so does the caller's context once `run` returns.
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
    /// The lookup cache's stamp for `frame` (see `thread_state::run_in_frame`): kept by
    /// `run`, 0 for a context built any other way.
    pub(crate) stamp: u64,
}

impl Context {
    /// An empty context (PEP 567's `Context()`), which keeps the creator's
    /// [pinned](crate::pinned) values: code run in it stays where its creator runs. Pinned
    /// values are not listed, so it is empty to `len`, `is_empty` and iteration. It does not
    /// allocate unless a pinned variable has a value here.
    ///
    /// [`Context::default`] is empty without exception (no pinned values): a placeholder, such
    /// as what `std::mem::take` leaves behind, and it never reads the current context.
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static VAR: ContextVar<u8> = ContextVar::new("var");
    /// VAR.set(1);
    /// let mut ctx = Context::new();
    /// assert!(ctx.is_empty());
    /// assert_eq!(ctx.run(|| VAR.get()), None);
    /// ```
    #[inline]
    pub fn new() -> Self {
        if !crate::pinned::in_use() {
            return Context::default();
        }
        Context::from(ExecutionContext::pinned())
    }

    /// Runs `f` with this context as the thread's current one and returns its result. Changes
    /// `f` makes to context variables stay in this context. The previous context is back when
    /// `run` returns — also when `f` panics (the changes made before the panic are kept here).
    ///
    /// An [`attach`](crate::attach()) made inside `f` and not detached ends with the run: this
    /// context then holds the attached one, and the one it displaced (this context as it was)
    /// is dropped as `run` returns, so a `Drop` of one of its values runs then (and a panic
    /// there comes out of `run`).
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
        thread_state::run_in_frame(&mut self.frame, &mut self.stamp, f)
    }

    /// `var`'s value in this context (its default does not count): PEP 567's
    /// `Context.get(var)` / `ctx[var]`.
    pub fn get<T: Clone + Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<T> {
        self.get_ref(var).cloned()
    }

    /// A reference to `var`'s value in this context, without cloning it (its default does not
    /// count).
    ///
    /// ```
    /// use contextvars::{ContextVar, copy_context};
    ///
    /// static CONFIG: ContextVar<Vec<u8>> = ContextVar::new("config");
    /// CONFIG.set(vec![1, 2, 3]);
    /// let ctx = copy_context();
    /// assert_eq!(ctx.get_ref(&CONFIG).map(Vec::len), Some(3));
    /// ```
    pub fn get_ref<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<&T> {
        match self.frame.top.map.get(&var.id()) {
            Some(value) => downcast::<T>(value),
            None => self.frame.base.get_ref(var),
        }
    }

    /// Whether `var` has a value in this context (PEP 567's `var in ctx`).
    pub fn contains<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> bool {
        self.frame.top.contains(var) || self.frame.base.contains(var)
    }

    /// The number of variables with a value in this context (PEP 567's `len(ctx)`);
    /// [pinned](crate::pinned) variables are not counted.
    ///
    /// Cost: it counts what [`iter`](Self::iter) yields, O(n × depth) map lookups for n
    /// variables in a context of the given depth (at most [`EC_LEN_MAX`] + 1); it allocates
    /// nothing. Use [`is_empty`](Self::is_empty), which is O(1), where it will do.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no variable has a value in this context, in O(1) ([pinned](crate::pinned)
    /// variables are not counted; once one has been set in the process, this looks for the
    /// first listed variable).
    pub fn is_empty(&self) -> bool {
        if crate::pinned::in_use() {
            return self.iter().next().is_none();
        }
        self.frame.top.is_empty() && self.frame.base.is_empty()
    }

    /// The variables with a value in this context, in no particular order (PEP 567's
    /// `ctx.keys()`).
    ///
    /// ```
    /// use contextvars::{ContextVar, copy_context};
    ///
    /// static A: ContextVar<u8> = ContextVar::new("a");
    /// std::thread::spawn(|| {
    ///     A.set(1);
    ///     let names: Vec<_> = copy_context().vars().map(|var| var.name()).collect();
    ///     assert_eq!(names, ["a"]);
    /// })
    /// .join()
    /// .unwrap();
    /// ```
    pub fn vars(&self) -> impl Iterator<Item = VarInfo> + '_ {
        self.iter().map(|(var, _)| var)
    }

    /// The values in this context, type-erased, in no particular order (PEP 567's
    /// `ctx.values()`).
    ///
    /// ```
    /// use contextvars::{ContextVar, copy_context};
    ///
    /// static A: ContextVar<u8> = ContextVar::new("a");
    /// std::thread::spawn(|| {
    ///     A.set(1);
    ///     let ctx = copy_context();
    ///     let values: Vec<_> = ctx.values().filter_map(|v| v.downcast_ref::<u8>()).collect();
    ///     assert_eq!(values, [&1]);
    /// })
    /// .join()
    /// .unwrap();
    /// ```
    pub fn values(&self) -> impl Iterator<Item = &AnyValue> + '_ {
        self.iter().map(|(_, value)| value)
    }

    /// The variables with a value in this context and their values, type-erased, each
    /// variable once, in no particular order (PEP 567's `ctx.items()` and iteration). Downcast
    /// a value to its variable's type with `downcast_ref`; see [`Iter`] for the cost.
    ///
    /// ```
    /// use contextvars::{ContextVar, Context};
    ///
    /// static N: ContextVar<u32> = ContextVar::new("n");
    /// let mut ctx = Context::new();
    /// ctx.run(|| N.set(4));
    /// for (var, value) in &ctx {
    ///     assert_eq!(var.id(), N.id());
    ///     assert_eq!(value.downcast_ref::<u32>(), Some(&4));
    /// }
    /// ```
    pub fn iter(&self) -> Iter<'_> {
        Iter::new(Some(&self.frame.top.map), self.frame.base.head.as_deref())
    }

    /// This context as an immutable execution context (for `run_with_execution_context`, or
    /// to hand to spawned work).
    /// Like [`get_execution_context`](crate::get_execution_context), the result is squashed
    /// into one logical context when it would be deeper than [`EC_LEN_MAX`].
    pub fn execution_context(&self) -> ExecutionContext {
        let ec = self.frame.base.with_layer(self.frame.top.map.clone());
        if ec.depth() > EC_LEN_MAX {
            ec.squashed()
        } else {
            ec
        }
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
            stamp: 0,
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
            stamp: 0,
        }
    }
}

impl PartialEq for Context {
    /// Two contexts are equal when they hold the same variables bound to the same value
    /// *objects* (values are type-erased and need not implement `PartialEq`, so they are
    /// compared by identity: a copy of a context equals it until either side sets something,
    /// except as follows).
    /// A value of an inline kind (an integer of up to 64 bits, `f32`, `f64` or `bool`) has no
    /// identity of its own: it is compared by its bits, so two contexts that set it to the
    /// same value are equal, whether the variable stores it inline (the usual kind) or in an
    /// `Arc` (a not-inherited variable). Bit for bit: a NaN equals the same NaN, and `0.0`
    /// does not equal `-0.0` (unlike `f64`'s `==`), which keeps `Eq` lawful.
    /// [Pinned](crate::ContextVar::pinned) variables are not compared, as they are not listed.
    ///
    /// ```
    /// use contextvars::{ContextVar, copy_context};
    ///
    /// static A: ContextVar<String> = ContextVar::new("a");
    /// static N: ContextVar<u8> = ContextVar::new("n");
    /// A.set("x".into());
    /// let mut copy = copy_context();
    /// assert_eq!(copy, copy_context());
    /// copy.run(|| N.set(2));
    /// N.set(2); // inline: compared by value
    /// assert_eq!(copy, copy_context());
    /// copy.run(|| A.set("x".into())); // an equal value, but another object
    /// assert_ne!(copy, copy_context());
    /// ```
    fn eq(&self, other: &Self) -> bool {
        if std::ptr::eq(self, other) {
            return true;
        }
        let mut count = 0;
        let mut mine = self.iter();
        while let Some((var, value)) = mine.next_stored() {
            count += 1;
            if !other.find(var).is_some_and(|theirs| value.same(theirs)) {
                return false;
            }
        }
        count == other.len()
    }
}

impl Eq for Context {}

impl Context {
    /// The value for `var` as stored, as a lookup would find it.
    fn find(&self, var: VarInfo) -> Option<&Value> {
        self.frame
            .top
            .map
            .get(&var.id)
            .or_else(|| self.frame.base.find(var.id))
    }
}

impl<'a> IntoIterator for &'a Context {
    type Item = (VarInfo, &'a AnyValue);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("vars", &self.vars().collect::<Vec<_>>())
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
