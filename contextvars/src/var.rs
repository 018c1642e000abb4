//! [`ContextVar`]: a variable whose value lives in the current execution context.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cache;
use crate::error::{LookupError, TokenError};
use crate::ids::IdCell;
use crate::thread_state;
use crate::token::{ResetError, Token};
use crate::value::{Value, VarId, VarInfo, downcast, is_inline};
use crate::watch::{self, ContextEvent};

/// Set once a variable that opted out of inheritance has been given a value, so that
/// [`ExecutionContext::inherited`](crate::ExecutionContext::inherited) stays O(1) otherwise.
static NOT_INHERITED_IN_USE: AtomicBool = AtomicBool::new(false);

pub(crate) fn any_not_inherited() -> bool {
    NOT_INHERITED_IN_USE.load(Ordering::Relaxed)
}

enum Default<T> {
    None,
    Value(T),
    Lazy(fn() -> T),
}

/// A context variable: a key whose value depends on the execution context it is read in.
///
/// Declare variables as `static`s. Reading one walks the current execution context from the
/// topmost logical context down; a per-thread cache answers repeated reads in about the time
/// of a `thread_local!` read. `set` writes the topmost logical context only, so a generator's
/// or task's changes stay its own (PEP 550).
///
/// ```
/// use contextvars::ContextVar;
///
/// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
/// static PRECISION: ContextVar<u32> = ContextVar::with_default("precision", 28);
///
/// assert_eq!(REQUEST_ID.get(), None);
/// assert_eq!(PRECISION.get(), Some(28));
///
/// let token = REQUEST_ID.set(7);
/// assert_eq!(REQUEST_ID.get(), Some(7));
/// REQUEST_ID.with(|id| assert_eq!(id, Some(&7))); // borrows, no clone
/// REQUEST_ID.reset(token).unwrap();
/// assert_eq!(REQUEST_ID.get(), None);
/// ```
pub struct ContextVar<T> {
    name: &'static str,
    default: Default<T>,
    inherit: bool,
    /// See [`pinned`](Self::pinned) (in `pinned.rs`).
    pub(crate) pinned: bool,
    id: IdCell,
    _values: PhantomData<fn() -> T>,
}

macro_rules! constructor {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $default:expr) => {
        $(#[$meta])*
        #[cfg(not(loom))]
        pub const fn $name(name: &'static str $(, $arg: $ty)*) -> Self {
            ContextVar { name, default: $default, inherit: true, pinned: false, id: IdCell::new(), _values: PhantomData }
        }

        $(#[$meta])*
        #[cfg(loom)]
        pub fn $name(name: &'static str $(, $arg: $ty)*) -> Self {
            ContextVar { name, default: $default, inherit: true, pinned: false, id: IdCell::new(), _values: PhantomData }
        }
    };
}

impl<T: Send + Sync + 'static> ContextVar<T> {
    constructor! {
        /// A variable with no default: `get` returns `None` until it is set.
        fn new() -> Default::None
    }

    constructor! {
        /// A variable whose `get` returns `default` where it has no value.
        ///
        /// ```
        /// static LEVEL: contextvars::ContextVar<&str> =
        ///     contextvars::ContextVar::with_default("level", "info");
        /// assert_eq!(LEVEL.get(), Some("info"));
        /// ```
        fn with_default(default: T) -> Default::Value(default)
    }

    constructor! {
        /// A variable whose `get` returns `make()` where it has no value (for defaults that
        /// cannot be built in a `const`, such as a `String`).
        ///
        /// ```
        /// static NAME: contextvars::ContextVar<String> =
        ///     contextvars::ContextVar::with_default_fn("name", || "anonymous".to_string());
        /// assert_eq!(NAME.get().as_deref(), Some("anonymous"));
        /// ```
        fn with_default_fn(make: fn() -> T) -> Default::Lazy(make)
    }

    /// Opts this variable out of inheritance: work spawned through `exec-context` (threads,
    /// tasks, pool jobs), which captures
    /// [`ExecutionContext::inherited`](crate::ExecutionContext::inherited), starts without
    /// its value. Use it for things that must not leak into other work, such as a
    /// transaction handle.
    ///
    /// ```
    /// use contextvars::{ContextVar, get_execution_context};
    ///
    /// static TXN: ContextVar<u32> = ContextVar::new("txn").not_inherited();
    /// TXN.set(1);
    /// assert_eq!(get_execution_context().get(&TXN), Some(1));
    /// assert_eq!(get_execution_context().inherited().get(&TXN), None);
    /// ```
    #[must_use]
    pub const fn not_inherited(mut self) -> Self {
        self.inherit = false;
        self
    }

    /// The name given at creation (for debugging and introspection only).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The variable's own default: the value given to
    /// [`with_default`](Self::with_default), a fresh one from the function given to
    /// [`with_default_fn`](Self::with_default_fn), or `None` for a variable made with
    /// [`new`](Self::new). The current context plays no part.
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static LEVEL: ContextVar<&str> = ContextVar::with_default("level", "info");
    /// static NAME: ContextVar<String> = ContextVar::with_default_fn("name", String::new);
    /// static ID: ContextVar<u64> = ContextVar::new("id");
    /// LEVEL.set("debug");
    /// assert_eq!(LEVEL.default_value(), Some("info"));
    /// assert_eq!(NAME.default_value(), Some(String::new()));
    /// assert_eq!(ID.default_value(), None);
    /// ```
    pub fn default_value(&self) -> Option<T>
    where
        T: Clone,
    {
        match &self.default {
            Default::None => None,
            Default::Value(value) => Some(value.clone()),
            Default::Lazy(make) => Some(make()),
        }
    }

    /// Whether the variable has a default.
    pub fn has_default(&self) -> bool {
        !matches!(self.default, Default::None)
    }

    /// Whether spawned work inherits this variable's value.
    pub fn is_inherited(&self) -> bool {
        self.inherit || self.pinned
    }

    /// The variable's identity, unique in the process.
    #[inline]
    pub fn id(&self) -> VarId {
        VarId(self.id.get())
    }

    /// Calls `f` with a reference to the variable's value in the current context (or to its
    /// default, or `None`), without cloning it.
    ///
    /// `f` may itself get, set or switch contexts; the value it was given stays valid until
    /// it returns.
    ///
    /// What is deferred while `f` runs: only the value `f` was lent. If `f` (or anything it
    /// calls) replaces or removes that value from the context that lent it, the value is kept
    /// until the `with` (or `get`) that lent it returns, or the outermost one lending the same
    /// value, and dropped then. Every other value displaced meanwhile, of any variable, is
    /// dropped at once, so a `with` that lasts for the life of a server holds no memory and
    /// delays no destructor but its own value's, whatever the borrows nested in it lend.
    /// (Beyond 16 nested borrows on one thread, displaced values wait for the nesting to
    /// unwind.) If such a deferred drop panics, the panic comes out of the `with` that
    /// released it once every value released there is dropped; if `f` itself panicked, the
    /// drop's panic is discarded, so the process does not abort.
    ///
    /// A value of an integer type of up to 64 bits, `f32`, `f64` or `bool` is lent as a copy
    /// (such values are stored inline, where they have no lasting address): such a `with`
    /// lends nothing of the context, defers no drop (nor makes an outer one of its own: the
    /// reads inside it defer as if it were not there), and the address it passes says
    /// nothing about which value it is.
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static CONFIG: ContextVar<Vec<String>> = ContextVar::new("config");
    /// CONFIG.set(vec!["a".into(), "b".into()]);
    /// assert_eq!(CONFIG.with(|c| c.map_or(0, Vec::len)), 2);
    /// ```
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        self.with_value(f, true)
    }

    /// `with`, falling back to the variable's default only if `use_default`.
    #[inline(always)]
    fn with_value<R>(&self, f: impl FnOnce(Option<&T>) -> R, use_default: bool) -> R {
        // The raw id: 0 before first use, which the cache never matches, so the miss path
        // assigns it.
        Self::try_cached(
            self.id.peek(),
            f,
            |f| self.with_absent(f, use_default),
            |f| self.with_miss(f, use_default),
        )
    }

    /// The cache knows the current context holds no value.
    #[inline(always)]
    fn with_absent<R>(&self, f: impl FnOnce(Option<&T>) -> R, use_default: bool) -> R {
        if use_default {
            self.call_with_default(f)
        } else {
            f(None)
        }
    }

    /// The cache had nothing valid. If a deferred attach waited to be entered (a task's
    /// context, on its poll's first read), entering it may have made the cache valid again;
    /// otherwise look the variable up.
    #[cold]
    #[inline(never)]
    fn with_miss<R>(&self, f: impl FnOnce(Option<&T>) -> R, use_default: bool) -> R {
        let id = self.id();
        if thread_state::enter_pending_for_read() {
            return Self::try_cached(
                id.0,
                f,
                |f| self.with_absent(f, use_default),
                |f| self.with_lookup(id, f, use_default),
            );
        }
        self.with_lookup(id, f, use_default)
    }

    /// Looks the variable up, remembers the answer, and reads it back through the cache so
    /// `f` runs under the cache's borrow protection.
    fn with_lookup<R>(&self, id: VarId, f: impl FnOnce(Option<&T>) -> R, use_default: bool) -> R {
        thread_state::lookup(id, |found| {
            // SAFETY: `found` is what the current context holds for `id`, a `T` since only
            // this variable has `id`; it leaves the context only through the thread state's
            // mutators, which clear the entry.
            #[allow(unsafe_code)]
            unsafe {
                cache::store(id, found.and_then(downcast::<T>));
            }
        });
        Self::try_cached(
            id.0,
            f,
            |f| self.with_absent(f, use_default),
            |f| self.with_owned(id, f, use_default),
        )
    }

    #[inline(always)]
    fn try_cached<R, F: FnOnce(Option<&T>) -> R>(
        id: u64,
        f: F,
        absent: impl FnOnce(F) -> R,
        unknown: impl FnOnce(F) -> R,
    ) -> R {
        // SAFETY: `id` is this `ContextVar<T>`'s (or 0, which matches nothing), so every value
        // stored for it is a `T`.
        #[allow(unsafe_code)]
        unsafe {
            cache::read::<T, R, F>(
                id,
                f,
                absent,
                unknown,
                thread_state::release_retired,
                thread_state::check_cached,
            )
        }
    }

    /// The slow path when the cache cannot be used (thread teardown): hold a reference.
    #[cold]
    fn with_owned<R>(&self, id: VarId, f: impl FnOnce(Option<&T>) -> R, use_default: bool) -> R {
        let owned: Option<Value> = thread_state::lookup(id, |found| found.cloned());
        match owned.as_ref().and_then(downcast::<T>) {
            Some(value) => f(Some(value)),
            None if use_default => self.call_with_default(f),
            None => f(None),
        }
    }

    /// `get` of a primitive that the cache could not serve: the default if the cache knows
    /// the context holds no value (`absent`), else the general path's miss (what its own
    /// read would find). One call out of the hit path, so the hit keeps no register.
    #[cold]
    #[inline(never)]
    fn get_plain_cold(&self, absent: bool) -> Option<T>
    where
        T: Clone,
    {
        if absent {
            return self.call_with_default(|value| value.cloned());
        }
        self.with_miss(|value| value.cloned(), true)
    }

    #[inline]
    fn call_with_default<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        match &self.default {
            Default::None => f(None),
            Default::Value(value) => f(Some(value)),
            Default::Lazy(make) => f(Some(&make())),
        }
    }

    /// The variable's value in the current context, else its default, else `None`.
    ///
    /// The value is lent to `T::clone` as by [`with`](Self::with), with the same (only)
    /// deferral: if the clone replaces the very value it is cloning, the old value is dropped
    /// when `get` returns. A primitive (an integer, a float, `bool`, `char` or
    /// `&'static str`), whose `Clone` is the standard library's and runs no user code, is
    /// copied straight out of the lookup cache instead, without lending it.
    ///
    /// ```
    /// static N: contextvars::ContextVar<u8> = contextvars::ContextVar::new("n");
    /// assert_eq!(N.get(), None);
    /// N.set(3);
    /// assert_eq!(N.get(), Some(3));
    /// ```
    #[inline(always)]
    pub fn get(&self) -> Option<T>
    where
        T: Clone,
    {
        if is_plain::<T>() {
            // SAFETY: every value stored under this variable's id is a `T` (0, the id before
            // first use, matches no entry), and `T` is a primitive whose `Clone` is std's.
            #[allow(unsafe_code)]
            match unsafe { cache::read_plain::<T>(self.id.peek(), thread_state::check_cached) } {
                cache::Plain::Value(value) => return Some(value),
                other => return self.get_plain_cold(matches!(other, cache::Plain::Absent)),
            }
        }
        self.with(|value| value.cloned())
    }
}

impl<T: Send + Sync + 'static> ContextVar<T> {
    /// The variable's value in the current context, else `default` — which takes precedence
    /// over the variable's own default, like Python's `var.get(default)`.
    ///
    /// ```
    /// static N: contextvars::ContextVar<u8> = contextvars::ContextVar::with_default("n", 1);
    /// assert_eq!(N.get_or(5), 5);
    /// N.set(2);
    /// assert_eq!(N.get_or(5), 2);
    /// ```
    pub fn get_or(&self, default: T) -> T
    where
        T: Clone,
    {
        self.with_value(|value| value.cloned(), false)
            .unwrap_or(default)
    }

    /// Whether the variable has a value in the current context (its default does not count).
    ///
    /// ```
    /// static N: contextvars::ContextVar<u8> = contextvars::ContextVar::with_default("n", 1);
    /// assert!(!N.is_set());
    /// N.set(2);
    /// assert!(N.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        self.with_value(|value| value.is_some(), false)
    }

    /// The variable's value in the topmost logical context only — PEP 550's
    /// `get(topmost=True)` — or `None` if it has none there (defaults do not apply).
    ///
    /// ```
    /// use contextvars::{ContextVar, LogicalContext, run_with_logical_context};
    ///
    /// static VAR: ContextVar<i32> = ContextVar::new("var");
    /// VAR.set(1);
    /// run_with_logical_context(&mut LogicalContext::new(), || {
    ///     assert_eq!(VAR.get(), Some(1));
    ///     assert_eq!(VAR.get_topmost(), None);
    /// });
    /// ```
    pub fn get_topmost(&self) -> Option<T>
    where
        T: Clone,
    {
        let value = thread_state::lookup_topmost(self.id())?;
        downcast::<T>(&value).cloned()
    }

    /// Sets the variable's value in the topmost logical context, returning a [`Token`] that
    /// can undo it with [`reset`](Self::reset).
    ///
    /// When the topmost logical context is not shared with a snapshot, its map is edited in
    /// place; otherwise one trie path is copied and snapshots keep their values.
    ///
    /// ```
    /// static VAR: contextvars::ContextVar<&str> = contextvars::ContextVar::new("var");
    /// let _ = VAR.set("main");
    /// assert_eq!(VAR.get(), Some("main"));
    /// ```
    pub fn set(&self, value: T) -> Token<T> {
        let id = self.id();
        if !self.inherit || self.pinned {
            self.note_flags(id);
        }
        let mut value = Some(Value::new(
            self.name,
            self.inherit | self.pinned,
            self.pinned,
            value,
        ));
        let previous = thread_state::set::<T>(id, &mut value).unwrap_or_default();
        watch::notify(|| ContextEvent::Set {
            var: VarInfo {
                id,
                name: self.name,
            },
        });
        Token {
            var: id,
            var_name: self.name,
            context: previous.context,
            old: previous.top,
            below: previous.below,
            _type: PhantomData,
        }
    }

    /// Records, once per set of an unusual variable, what the process-wide fast paths check:
    /// a variable that opted out of inheritance, a pinned one.
    #[cold]
    pub(crate) fn note_flags(&self, id: VarId) {
        if self.pinned {
            crate::pinned::note_set(id);
        } else {
            if !NOT_INHERITED_IN_USE.load(Ordering::Relaxed) {
                NOT_INHERITED_IN_USE.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Undoes the [`set`](Self::set) that made `token`: the topmost logical context gets back
    /// the value it had then, or loses the variable if it had none (so a value from a lower
    /// logical context shows through again).
    ///
    /// The token is consumed, so it cannot be used twice (PEP 567's "already used" error is a
    /// compile error here), also when the reset fails.
    ///
    /// # Errors
    ///
    /// [`TokenError::WrongVar`] if another variable made the token,
    /// [`TokenError::WrongContext`] if the current topmost logical context is not the one it
    /// was made in. Nothing changes on error.
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, TokenError};
    ///
    /// static VAR: ContextVar<i32> = ContextVar::new("var");
    /// let token = Context::new().run(|| VAR.set(1));
    /// assert_eq!(VAR.reset(token), Err(TokenError::WrongContext));
    /// ```
    pub fn reset(&self, token: Token<T>) -> Result<(), TokenError> {
        let id = self.id();
        if token.var != id {
            return Err(TokenError::WrongVar);
        }
        let Token {
            context,
            old,
            below,
            ..
        } = token;
        // Not part of the context: dropped first, so that a panic in its `Drop` leaves the
        // context as it was.
        drop(below);
        let displaced = thread_state::restore(id, old, context).map_err(|old| {
            // Refused: the token's old value goes with it, outside the thread state's borrow.
            drop(old);
            TokenError::WrongContext
        })?;
        drop(displaced);
        Ok(())
    }

    /// [`reset`](Self::reset), except that a refused token comes back in the error, unused,
    /// to be reset where it applies: PEP 567's `reset`, which leaves a token it refuses
    /// unused (for bindings of the PEP's API, such as the Lua one). One difference: the
    /// token's copy of a lower layer's value (for [`Token::old_value`]) is dropped after the
    /// reset, not before (the token must come back whole if the reset is refused), so a
    /// `Drop` of it that panics reaches the caller with the reset applied.
    ///
    /// # Errors
    ///
    /// [`ResetError`], holding the [`TokenError`] and the token. Nothing changes on error.
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, TokenError};
    ///
    /// static VAR: ContextVar<i32> = ContextVar::new("var");
    /// let token = VAR.set(1);
    /// let refused = Context::new().run(|| VAR.try_reset(token)).unwrap_err();
    /// assert_eq!(refused.error(), TokenError::WrongContext);
    /// VAR.try_reset(refused.into_token()).unwrap(); // here it applies
    /// assert_eq!(VAR.get(), None);
    /// ```
    pub fn try_reset(&self, token: Token<T>) -> Result<(), ResetError<T>> {
        if token.var != self.id() {
            return Err(ResetError {
                error: TokenError::WrongVar,
                token,
            });
        }
        let mut token = token;
        match thread_state::restore(token.var, token.old.take(), token.context) {
            Ok(displaced) => {
                // The displaced value first (it is retired if a borrow lends it), then the
                // token, whose value below may run any code in its `Drop`.
                drop(displaced);
                drop(token);
                Ok(())
            }
            Err(old) => {
                token.old = old;
                Err(ResetError {
                    error: TokenError::WrongContext,
                    token,
                })
            }
        }
    }

    /// Removes the variable from the topmost logical context (PEP 550's `delete()`), so a
    /// value from a lower logical context, or the default, shows through again.
    ///
    /// # Errors
    ///
    /// [`LookupError`] if the topmost logical context has no value for the variable.
    ///
    /// ```
    /// static VAR: contextvars::ContextVar<i32> = contextvars::ContextVar::new("var");
    /// assert!(VAR.delete().is_err());
    /// let _ = VAR.set(1);
    /// VAR.delete().unwrap();
    /// assert_eq!(VAR.get(), None);
    /// ```
    pub fn delete(&self) -> Result<(), LookupError> {
        if thread_state::delete(self.id()) {
            Ok(())
        } else {
            Err(LookupError { name: self.name })
        }
    }

    /// Runs `f` with the variable set to `value`, then resets it — also when `f` panics.
    ///
    /// ```
    /// static DEPTH: contextvars::ContextVar<u32> = contextvars::ContextVar::with_default("depth", 0);
    /// let inner = DEPTH.scope(1, || DEPTH.get());
    /// assert_eq!(inner, Some(1));
    /// assert_eq!(DEPTH.get(), Some(0));
    /// ```
    ///
    /// Like [`Context::run`](crate::Context::run), the scope takes with it the attaches `f`
    /// made and left attached ([`attach`](crate::attach)): they end, the context that was
    /// current when the scope began is current again, and the variable is reset there. What
    /// the contexts left attached held is dropped.
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, attach};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// USER.set("main");
    /// USER.scope("scoped", || {
    ///     attach(Context::new()).unwrap(); // never detached
    ///     USER.set("attached");
    /// });
    /// assert_eq!(USER.get(), Some("main"));
    /// ```
    ///
    /// One case stays as `f` leaves it: if `f` [`detach`](crate::detach)es the attach the
    /// scope began in, the scope's value goes with the detached [`Context`](crate::Context)
    /// (the reset finds another context current, and changes nothing).
    pub fn scope<R>(&self, value: T, f: impl FnOnce() -> R) -> R {
        struct Reset<'a, T: Send + Sync + 'static> {
            var: &'a ContextVar<T>,
            token: Option<Token<T>>,
        }

        impl<T: Send + Sync + 'static> Drop for Reset<'_, T> {
            fn drop(&mut self) {
                // Fails only if `f` detached the context the set was made in (an attach made
                // before the scope); there is nothing better to do with the error in a drop.
                if let Some(token) = self.token.take() {
                    if std::thread::panicking() {
                        // `f` panicked: a `Drop` of the displaced value that panics too is
                        // discarded, not an abort (the reset is recorded before it runs).
                        crate::thread_state::contain(|| {
                            let _ = self.var.reset_scoped(token, || {});
                        });
                    } else {
                        let _ = self.var.reset_scoped(token, || {});
                    }
                }
            }
        }

        let _reset = Reset {
            var: self,
            token: Some(self.set(value)),
        };
        f()
    }
}

impl<T: Send + Sync + 'static> ContextVar<T> {
    /// [`reset`](Self::reset) at the end of a scope that made the set (`scope`, a
    /// `ScopeFuture`'s poll): if the scope's code left attaches above the logical context the
    /// set was made in, they end first, as at the end of a run, and the reset then applies.
    /// A deferred attach it left pending ends without being fetched (see
    /// `thread_state::discard_pending`). `ended` runs between the two, when attaches ended.
    ///
    /// The reset is made whatever panics: a `Drop` among what the ended attaches displaced
    /// (raised once they have ended), the reset's own displaced value, or the context the
    /// attaches leave, dropped last. The first such panic then goes on; a later one is
    /// discarded.
    pub(crate) fn reset_scoped(
        &self,
        token: Token<T>,
        ended: impl FnOnce(),
    ) -> Result<(), TokenError> {
        use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

        thread_state::discard_pending(token.context);
        let refused = match self.try_reset(token) {
            Ok(()) => return Ok(()),
            Err(refused) if refused.error() == TokenError::WrongContext => refused,
            Err(refused) => return Err(refused.error()),
        };
        let token = refused.into_token();
        let context = token.context;
        let (left, mut panic) = match catch_unwind(|| crate::attach::end_attaches_over(context)) {
            Ok(Some(left)) => (Some(left), None),
            Ok(None) => {
                drop(token);
                return Err(TokenError::WrongContext);
            }
            // The attaches ended, then a `Drop` of what they displaced panicked.
            Err(payload) => (None, Some(payload)),
        };
        ended();
        // As `try_reset` does, restored before the token's values drop: a `Drop` of theirs that
        // panics leaves the reset done.
        let reset = match catch_unwind(AssertUnwindSafe(|| {
            self.try_reset(token).map_err(|refused| refused.error())
        })) {
            Ok(reset) => reset,
            Err(payload) => {
                // Recorded before the displaced value's (or the token's) `Drop` ran.
                match panic {
                    None => panic = Some(payload),
                    Some(_) => thread_state::discard_panic(payload),
                }
                Ok(())
            }
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(left))) {
            match panic {
                None => panic = Some(payload),
                Some(_) => thread_state::discard_panic(payload),
            }
        }
        if let Some(payload) = panic {
            resume_unwind(payload);
        }
        reset
    }
}

impl<T> fmt::Debug for ContextVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<ContextVar name={:?}>", self.name)
    }
}

/// Whether `T` is a primitive type whose `Clone` is the standard library's, which copies
/// bits and runs no code of ours or the user's: `get` then clones its value inside the cache
/// access, without the borrow that protects a user-written `Clone` (which may change the
/// very variable it reads). The inline kinds, and a few primitives too wide for a `u64` or
/// not stored inline. A constant after monomorphisation.
#[inline(always)]
fn is_plain<T: 'static>() -> bool {
    use std::any::TypeId;
    let t = TypeId::of::<T>();
    is_inline::<T>()
        || t == TypeId::of::<u128>()
        || t == TypeId::of::<i128>()
        || t == TypeId::of::<char>()
        || t == TypeId::of::<&'static str>()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use super::{ContextVar, is_plain};

    #[test]
    fn only_std_primitives_read_without_a_borrow() {
        assert!(is_plain::<u64>() && is_plain::<i8>() && is_plain::<bool>());
        assert!(is_plain::<char>() && is_plain::<f64>() && is_plain::<&'static str>());
        assert!(is_plain::<u8>() && is_plain::<u16>() && is_plain::<u32>() && is_plain::<u128>());
        assert!(is_plain::<usize>() && is_plain::<i16>() && is_plain::<i32>());
        assert!(is_plain::<i64>() && is_plain::<i128>() && is_plain::<isize>());
        assert!(is_plain::<f32>());
        // A `Clone` written by a user may change the variable it reads: never plain.
        #[derive(Clone, Copy)]
        struct Mine(#[allow(dead_code)] u64);
        assert!(!is_plain::<Mine>());
        assert!(!is_plain::<String>() && !is_plain::<Arc<u64>>() && !is_plain::<Option<u64>>());
    }

    /// `get` of a primitive takes the plain read on a cache hit, and the general path on a
    /// miss; both give the same answers, with and without defaults.
    #[test]
    fn a_plain_get_answers_as_the_general_path_does() {
        static WITH_DEFAULT: ContextVar<u32> = ContextVar::with_default("with_default", 7);
        static WITHOUT: ContextVar<&str> = ContextVar::new("without");
        for _ in 0..2 {
            // The first read of each is a miss, the second a hit.
            assert_eq!(WITH_DEFAULT.get(), Some(7));
            assert_eq!(WITHOUT.get(), None);
        }
        let mut context = crate::Context::new();
        context.run(|| {
            for round in 0..3 {
                WITH_DEFAULT.set(round);
                WITHOUT.set("set");
                assert_eq!(WITH_DEFAULT.get(), Some(round));
                assert_eq!(WITH_DEFAULT.get(), Some(round));
                assert_eq!(WITHOUT.get(), Some("set"));
                WITH_DEFAULT.delete().unwrap();
                assert_eq!(WITH_DEFAULT.get(), Some(7));
            }
        });
        assert_eq!(WITH_DEFAULT.get(), Some(7));
        assert_eq!(WITHOUT.get(), None);
    }
}
