//! Pinned variables: context variables that stay with code wherever it starts afresh.
//!
//! A variable declared with [`ContextVar::pinned`] describes *where* code runs rather than
//! *what* it works on — the isolation domain it belongs to (the `exec-context` crate's
//! interpreters keep "the current interpreter" in one), a tenant, a sandbox. Such a value must
//! follow every piece of work started from code that has it, even work that asks for a clean
//! slate. So, besides being a normal context variable:
//!
//! - it is always inherited ([`ContextVar::not_inherited`] has no effect on it), so every
//!   snapshot that spawned work captures ([`ExecutionContext::inherited`]) carries it;
//! - a new [`Context`](crate::Context) ([`Context::new`](crate::Context::new)) starts with the
//!   creator's pinned values;
//! - [`ExecutionContext::pinned`] is the empty context for work that must start without the
//!   creator's variables (a new thread's "empty" policy) but keep its pinned ones;
//! - [`LogicalContext::pinned`] is the fresh logical context for a generator: it runs with
//!   its creator's pinned values wherever it is resumed.
//!
//! # Not listed
//!
//! Pinned values belong to a context's surroundings, not to its contents, so code that lists
//! a context does not see them: the iterators (`iter`, `vars`, `values`), `len`, `is_empty`,
//! `Debug` and `Context`'s equality skip them, everywhere. `Context::new().len()` is 0 and
//! `Context::new().is_empty()` holds, as PEP 567 specifies, whatever is pinned. They are found
//! by the variable itself: `get`, `with`, `get_ref` and `contains` see them as usual, and
//! listed apart, by [`Context::pinned_vars`](crate::Context::pinned_vars) and
//! [`ExecutionContext::pinned_vars`].
//! [`ExecutionContext::depth`] counts structure and does count a logical context that holds
//! only pinned values.
//!
//! Values set with [`ContextVar::set`] are carried into new contexts, and so is a value that
//! exists only for the polls of a [`ContextVar::scope_future`], while a poll runs: a context
//! made during one starts with it (it stays there after the poll, as a value of that
//! context's surroundings when it was made).
//!
//! # Cost
//!
//! Nothing until a pinned variable is first set in the process: `Context::new`,
//! `ExecutionContext::pinned` and `LogicalContext::pinned` then check one atomic flag and
//! allocate nothing, and `get`, `set`, `run` and the push and pop of logical contexts never
//! look at pinned variables at all. Once one is set, making a context looks each pinned
//! variable up in the current context (one lookup per pinned variable ever set in the process)
//! and allocates a layer for the values found; `is_empty` and `LogicalContext::len` walk the
//! entries instead of reading a count.
//!
//! ```
//! use contextvars::{Context, ContextVar, ExecutionContext, run_with_execution_context};
//!
//! static TENANT: ContextVar<&str> = ContextVar::new("tenant").pinned();
//! static USER: ContextVar<&str> = ContextVar::new("user");
//!
//! TENANT.set("acme");
//! USER.set("alice");
//! let fresh = Context::new();
//! assert_eq!(fresh.get(&TENANT), Some("acme")); // kept from the creator
//! assert_eq!(fresh.get(&USER), None); // nothing else
//! assert!(fresh.is_empty()); // and nothing listed
//! assert_eq!(fresh.len(), 0);
//! run_with_execution_context(&ExecutionContext::pinned(), || {
//!     assert_eq!((TENANT.get(), USER.get()), (Some("acme"), None));
//! });
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::execution::ExecutionContext;
use crate::logical::LogicalContext;
use crate::thread_state;
use crate::value::{VarId, VarIdHasher, VarMap};
use crate::var::ContextVar;

/// Set when a pinned variable is first given a value; until then nothing here costs more than
/// reading it.
static IN_USE: AtomicBool = AtomicBool::new(false);

/// How many pinned variables are read without a lock (a process declares few).
const SLOTS: usize = 8;

/// The pinned variables that have been set in the process: the first [`SLOTS`] in `IDS`
/// (published by `COUNT`), any further ones in `MORE`. Written under `MORE`'s lock.
static IDS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static COUNT: AtomicUsize = AtomicUsize::new(0);
static MORE: Mutex<Vec<VarId>> = Mutex::new(Vec::new());

/// Whether a pinned variable has ever been set in the process.
#[inline]
pub(crate) fn in_use() -> bool {
    IN_USE.load(Ordering::Relaxed)
}

/// The pinned variables known so far, lock-free for the first [`SLOTS`]. `f` runs with no
/// lock held (it may look a variable up, which may enter a deferred attach and run its
/// `fetch`, user code that may make a context and so come back here): the further ones are
/// copied out of `MORE` first.
fn for_each_id(mut f: impl FnMut(VarId)) {
    let count = COUNT.load(Ordering::Acquire);
    for slot in &IDS[..count.min(SLOTS)] {
        f(VarId(slot.load(Ordering::Relaxed)));
    }
    if count > SLOTS {
        let more = MORE.lock().unwrap_or_else(PoisonError::into_inner).clone();
        more.into_iter().for_each(f);
    }
}

/// Remembers that the pinned variable `id` has been set (before the value is stored, so a
/// context made afterwards on any thread looks for it).
pub(crate) fn note_set(id: VarId) {
    if !is_known(id) {
        let mut more = MORE.lock().unwrap_or_else(PoisonError::into_inner);
        let mut again = false;
        for_each_id_locked(&more, |seen| again |= seen == id);
        if !again {
            let count = COUNT.load(Ordering::Relaxed);
            if count < SLOTS {
                IDS[count].store(id.0, Ordering::Relaxed);
            } else {
                more.push(id);
            }
            COUNT.store(count + 1, Ordering::Release);
        }
    }
    // A load first: once set, the flag's cache line stays shared by every reader.
    if !IN_USE.load(Ordering::Relaxed) {
        IN_USE.store(true, Ordering::Release);
    }
}

/// Whether `id` is among the pinned variables known (read in place: no user code runs).
fn is_known(id: VarId) -> bool {
    let count = COUNT.load(Ordering::Acquire);
    IDS[..count.min(SLOTS)]
        .iter()
        .any(|slot| slot.load(Ordering::Relaxed) == id.0)
        || (count > SLOTS
            && MORE
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&id))
}

/// [`for_each_id`] for the writer, which holds `MORE`'s lock already.
fn for_each_id_locked(more: &[VarId], mut f: impl FnMut(VarId)) {
    let count = COUNT.load(Ordering::Relaxed);
    for slot in &IDS[..count.min(SLOTS)] {
        f(VarId(slot.load(Ordering::Relaxed)));
    }
    more.iter().copied().for_each(f);
}

/// The pinned values of the current context, or `None` when there are none: one atomic read
/// until a pinned variable is first set in the process.
#[inline]
fn current_values() -> Option<VarMap> {
    if !IN_USE.load(Ordering::Acquire) {
        return None;
    }
    lookup_values()
}

#[cold]
#[inline(never)]
fn lookup_values() -> Option<VarMap> {
    let mut map: Option<VarMap> = None;
    for_each_id(|id| {
        if let Some(value) = thread_state::lookup(id, |found| found.cloned()) {
            map.get_or_insert_with(|| VarMap::with_hasher(VarIdHasher))
                .insert(id, value);
        }
    });
    map
}

impl<T: Send + Sync + 'static> ContextVar<T> {
    /// Pins this variable: its value stays with code wherever that code starts afresh — in a
    /// [`Context::new`](crate::Context::new), an [`ExecutionContext::pinned`] (a new thread's
    /// empty context), a generator's [`LogicalContext::pinned`] — and is always inherited. The
    /// iterators, `len`, `is_empty` and equality do not list it. See the
    /// [module](crate::pinned) for the whole contract.
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static SANDBOX: ContextVar<u32> = ContextVar::new("sandbox").pinned();
    ///
    /// SANDBOX.set(7);
    /// let mut ctx = Context::new();
    /// assert_eq!(ctx.run(|| SANDBOX.get()), Some(7));
    /// assert_eq!(ctx.vars().count(), 0);
    /// assert!(SANDBOX.is_pinned() && SANDBOX.is_inherited());
    /// ```
    #[must_use]
    pub const fn pinned(mut self) -> Self {
        self.pinned = true;
        self
    }

    /// Whether the variable is [pinned](Self::pinned).
    ///
    /// ```
    /// static PLAIN: contextvars::ContextVar<u8> = contextvars::ContextVar::new("plain");
    /// assert!(!PLAIN.is_pinned());
    /// ```
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }
}

impl crate::Context {
    /// The [pinned](ContextVar::pinned) variables with a value in this context, each once,
    /// in no particular order: those that [`vars`](crate::Context::vars) does not list.
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static TENANT: ContextVar<&str> = ContextVar::new("tenant").pinned();
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let mut ctx = Context::new();
    /// ctx.run(|| {
    ///     TENANT.set("acme");
    ///     USER.set("alice");
    /// });
    /// let pinned: Vec<_> = ctx.pinned_vars().map(|var| var.name()).collect();
    /// let listed: Vec<_> = ctx.vars().map(|var| var.name()).collect();
    /// assert_eq!((pinned, listed), (vec!["tenant"], vec!["user"]));
    /// ```
    pub fn pinned_vars(&self) -> impl Iterator<Item = crate::VarInfo> + '_ {
        crate::entries::Iter::pinned(Some(&self.frame.top.map), self.frame.base.head.as_deref())
            .map(|(var, _)| var)
    }
}

impl ExecutionContext {
    /// The [pinned](ContextVar::pinned) variables with a value in this context, each once,
    /// in no particular order: those that [`vars`](ExecutionContext::vars) does not list.
    ///
    /// ```
    /// use contextvars::{ContextVar, ExecutionContext, get_execution_context};
    ///
    /// static ZONE: ContextVar<&str> = ContextVar::new("zone").pinned();
    ///
    /// std::thread::spawn(|| {
    ///     assert_eq!(get_execution_context().pinned_vars().count(), 0);
    ///     ZONE.set("eu");
    ///     let names: Vec<_> = ExecutionContext::pinned().pinned_vars().map(|v| v.name()).collect();
    ///     assert_eq!(names, ["zone"]);
    /// })
    /// .join()
    /// .unwrap();
    /// ```
    pub fn pinned_vars(&self) -> impl Iterator<Item = crate::VarInfo> + '_ {
        crate::entries::Iter::pinned(None, self.head.as_deref()).map(|(var, _)| var)
    }

    /// An execution context holding only the current context's values of
    /// [pinned](ContextVar::pinned) variables: the empty context for work that must start
    /// without its creator's variables but stay where the creator runs (a new thread's empty
    /// policy). Without pinned values it is [`ExecutionContext::new`], and costs one atomic
    /// read.
    ///
    /// ```
    /// use contextvars::{ContextVar, ExecutionContext};
    ///
    /// static ZONE: ContextVar<&str> = ContextVar::new("zone").pinned();
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// std::thread::spawn(|| {
    ///     assert_eq!(ExecutionContext::pinned().depth(), 0); // nothing pinned here yet
    ///     ZONE.set("eu");
    ///     USER.set("alice");
    ///     let ec = ExecutionContext::pinned();
    ///     assert_eq!((ec.get(&ZONE), ec.get(&USER)), (Some("eu"), None));
    ///     assert!(ec.is_empty()); // pinned values are not listed
    /// })
    /// .join()
    /// .unwrap();
    /// ```
    #[inline]
    pub fn pinned() -> Self {
        match current_values() {
            Some(map) => ExecutionContext::new().with_layer(map),
            None => ExecutionContext::new(),
        }
    }
}

impl LogicalContext {
    /// A fresh logical context holding the current context's values of
    /// [pinned](ContextVar::pinned) variables: a generator made with it runs with its
    /// creator's pinned values wherever it is resumed. Without pinned values it is
    /// [`LogicalContext::new`] (no allocation, one atomic read).
    ///
    /// ```
    /// use contextvars::{ContextVar, LogicalContext, run_with_logical_context};
    ///
    /// static ZONE: ContextVar<&str> = ContextVar::new("zone").pinned();
    ///
    /// ZONE.set("eu");
    /// let mut generator_lc = LogicalContext::pinned();
    /// ZONE.set("us");
    /// assert_eq!(run_with_logical_context(&mut generator_lc, || ZONE.get()), Some("eu"));
    /// assert!(generator_lc.is_empty()); // not listed
    /// ```
    #[inline]
    pub fn pinned() -> Self {
        match current_values() {
            Some(map) => LogicalContext::from_map(map),
            None => LogicalContext::new(),
        }
    }
}
