//! Non-scoped entering and leaving of a [`Context`]: [`attach`] and [`detach`], for code that
//! cannot wrap the work in a closure — an executor's "before poll" and "after poll" hooks.
//!
//! [`Context::run`] is the scoped form and should be preferred wherever the work is a call.
//!
//! # How it stays sound
//!
//! Values of the current context may be lent out as `&T` (by [`ContextVar::with`]) while
//! user code runs. A non-scoped API must never let user code drop the frame such a reference
//! points into while the borrow is open:
//!
//! - [`attach`] *moves* the given context into the thread and keeps the context it displaced
//!   inside the thread state (a per-thread stack), never in an object the caller owns.
//! - [`detach`] hands the current context back as a [`Context`] and reinstalls the one
//!   below. If a borrow is open on the thread at that moment, each value of the context handed
//!   back, or of what the detach lets go, that the borrow may be lending (checked by the
//!   value's address) is retired until the borrow ends. The lent value outlives the detach
//!   even if the caller drops the `Context` at once; the other values go as usual.
//! - [`detach`] refuses, changing nothing, unless the attachment it is given is the current
//!   context at the current scope level (not, say, from inside a [`Context::run`] that began
//!   after the attach).
//!
//! [`ContextVar::with`]: crate::ContextVar::with

use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use crate::cache;
use crate::context::Context;
use crate::thread_state::{self, Abandoned, Detached, Frame};

/// Identifies one [`attach`]: pass it to [`detach`] to leave that context. Plain data; using
/// it twice, on another thread or at another scope level is refused by `detach`. Every attach
/// gets an id of its own, also when it attaches a context attached before:
///
/// ```
/// use contextvars::{Context, DetachError, attach, detach};
///
/// let first = attach(Context::new()).unwrap();
/// let context = detach(first).unwrap();
/// let second = attach(context).unwrap();
/// assert_ne!(first, second);
/// assert_eq!(detach(first).unwrap_err(), DetachError::NotCurrent); // used already
/// assert!(detach(second).is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttachId(u64);

/// Why [`attach`] could not make a context current: the thread is exiting and its context
/// state is already gone. The context is handed back.
///
/// A value dropped with the thread's context state, at the thread's exit, is one place this
/// happens:
///
/// ```
/// use std::sync::Mutex;
/// use contextvars::{Context, ContextVar, attach};
///
/// static SEEN: Mutex<Option<String>> = Mutex::new(None);
///
/// struct AttachesOnDrop;
/// impl Drop for AttachesOnDrop {
///     fn drop(&mut self) {
///         if let Err(error) = attach(Context::new()) {
///             *SEEN.lock().unwrap() = Some(error.to_string());
///         }
///     }
/// }
///
/// static AT_EXIT: ContextVar<AttachesOnDrop> = ContextVar::new("at_exit");
///
/// std::thread::spawn(|| AT_EXIT.set(AttachesOnDrop)).join().unwrap();
/// let seen = SEEN.lock().unwrap().take().expect("the attach was refused");
/// assert!(seen.contains("already destroyed"));
/// ```
pub struct AttachError {
    context: Context,
}

impl AttachError {
    /// The context that was not attached, as it was given.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use contextvars::{Context, ContextVar, attach};
    ///
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    /// static HANDED_BACK: Mutex<Option<Context>> = Mutex::new(None);
    ///
    /// // At the thread's exit, attaches the context it holds.
    /// struct AttachesOnDrop(Mutex<Option<Context>>);
    /// impl Drop for AttachesOnDrop {
    ///     fn drop(&mut self) {
    ///         let context = self.0.lock().unwrap().take().unwrap();
    ///         if let Err(error) = attach(context) {
    ///             *HANDED_BACK.lock().unwrap() = Some(error.into_context());
    ///         }
    ///     }
    /// }
    ///
    /// static AT_EXIT: ContextVar<AttachesOnDrop> = ContextVar::new("at_exit");
    ///
    /// std::thread::spawn(|| {
    ///     let mut task = Context::new();
    ///     task.run(|| USER.set("task"));
    ///     AT_EXIT.set(AttachesOnDrop(Mutex::new(Some(task))));
    /// })
    /// .join()
    /// .unwrap();
    /// let task = HANDED_BACK.lock().unwrap().take().expect("the attach was refused");
    /// assert_eq!(task.get(&USER), Some("task"));
    /// ```
    pub fn into_context(self) -> Context {
        self.context
    }
}

impl fmt::Debug for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachError").finish_non_exhaustive()
    }
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot attach a context: the thread's context state is already destroyed")
    }
}

impl std::error::Error for AttachError {}

/// Why [`detach`] refused. Nothing changed.
///
/// ```
/// use contextvars::{Context, DetachError, attach, detach};
///
/// let id = attach(Context::new()).unwrap();
/// // Not current on another thread.
/// let elsewhere = std::thread::spawn(move || detach(id)).join().unwrap();
/// assert_eq!(elsewhere.unwrap_err(), DetachError::NotCurrent);
/// assert!(detach(id).is_ok());
/// // Nor once detached.
/// assert_eq!(detach(id).unwrap_err(), DetachError::NotCurrent);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetachError {
    /// The attachment is not the current context at the current scope level: it was already
    /// detached, was made on another thread, or a scope entered after it (a
    /// [`Context::run`], a logical context pushed by a generator step, a later attach) is
    /// still running.
    NotCurrent,
}

impl fmt::Display for DetachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DetachError::NotCurrent => {
                "the attached context is not the current one at this scope level"
            }
        })
    }
}

impl std::error::Error for DetachError {}

/// Makes `context` the thread's current context until [`detach`] is called with the returned
/// id; the context that was current is kept by the thread meanwhile. What runs in between
/// sees and changes `context`, and [`detach`] hands it back with those changes.
///
/// Attaches nest: each `detach` must come on the same thread, in last-in first-out order,
/// and at the scope level of its `attach` (an attach made inside a [`Context::run`] must be
/// detached before the closure returns). An attach left behind when its scope ends ends
/// with it: the context it displaced is dropped then, and its `detach` is refused with
/// [`DetachError::NotCurrent`].
///
/// # Errors
///
/// [`AttachError`] (holding `context`) during thread teardown, after the thread's context
/// state is gone.
///
/// ```
/// use contextvars::{Context, ContextVar, attach, detach};
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
///
/// USER.set("main");
/// let id = attach(Context::new()).unwrap(); // e.g. an executor's "before poll" hook
/// assert_eq!(USER.get(), None);
/// USER.set("task");
/// let task = detach(id).unwrap(); // its "after poll" hook
/// assert_eq!(USER.get(), Some("main"));
/// assert_eq!(task.get(&USER), Some("task"));
/// assert!(detach(id).is_err()); // already detached
/// ```
#[inline]
pub fn attach(context: Context) -> Result<AttachId, AttachError> {
    match thread_state::attach_frame(context.frame, context.stamp) {
        Ok(id) => Ok(AttachId(id)),
        Err(frame) => Err(AttachError {
            context: Context { frame, stamp: 0 },
        }),
    }
}

/// Leaves the context made current by the [`attach`] that returned `id`, hands it back with
/// every change made while it was attached, and reinstalls the context that was current
/// before.
///
/// # Errors
///
/// [`DetachError::NotCurrent`] if that attach is not the current context at this scope level
/// (see the error's docs). Nothing changes then.
///
/// ```
/// use contextvars::{Context, ContextVar, DetachError, attach, detach};
///
/// static VAR: ContextVar<u8> = ContextVar::new("var");
///
/// let id = attach(Context::new()).unwrap();
/// // Inside a scope that began after the attach, the attach is not current.
/// let inner = Context::new().run(|| detach(id));
/// assert_eq!(inner.unwrap_err(), DetachError::NotCurrent);
/// VAR.set(1);
/// assert_eq!(detach(id).unwrap().get(&VAR), Some(1));
/// ```
#[inline]
pub fn detach(id: AttachId) -> Result<Context, DetachError> {
    match thread_state::detach_frame(id.0) {
        Some(detached) => Ok(finish_detach(detached)),
        None => Err(DetachError::NotCurrent),
    }
}

/// Ends the [`attach`] that returned `id` the way a [`Context::run`](crate::Context::run)
/// ends: attaches made since and still attached end with it. For an executor's end of a
/// step, where the step may have left an attach of its own behind (its code panicked between
/// an [`attach`] and its [`detach`]); [`end_deferred`] is the same for [`attach_deferred`].
///
/// With nothing left attached above, this is [`detach`]. Otherwise the context handed back
/// is the topmost one left attached (still the current one, as at the end of a run), and
/// the contexts those attaches displaced, the one `id` attached among them, are dropped here
/// (or, those a borrow lends, when the last borrow lending them ends). No [`detach`] can
/// match those attaches any more. Either way the context that `id`'s attach displaced is
/// current again.
///
/// # Panics
///
/// If a `Drop` of a value among the contexts dropped here panics (and the thread is not
/// panicking already), the panic comes out of this call once the attaches have ended: the
/// context that `id`'s attach displaced is current again, and the context that would have
/// been handed back is dropped (a panic of its own `Drop`s is discarded). Called while the
/// thread is panicking, the `Drop`'s panic is discarded and the context is handed back.
///
/// # Errors
///
/// [`DetachError::NotCurrent`], with nothing changed, if `id` is no longer attached on this
/// thread (it was detached or ended, or a run or scope around it ended), or if a
/// [`Context::run`](crate::Context::run) or a logical-context scope opened since the attach is
/// still open around the caller (its own end restores what it changed).
///
/// ```
/// use contextvars::{Context, ContextVar, attach, detach, end_attach};
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
///
/// USER.set("main");
/// let step = attach(Context::new()).unwrap();
/// USER.set("task");
/// // The step attaches a context of its own and never detaches it.
/// let _left = attach(Context::new()).unwrap();
/// USER.set("left behind");
/// assert!(detach(step).is_err()); // not the current attach
/// let ended = end_attach(step).unwrap();
/// assert_eq!(ended.get(&USER), Some("left behind"));
/// assert_eq!(USER.get(), Some("main")); // the thread's own context again
/// assert!(end_attach(step).is_err()); // already ended
/// ```
pub fn end_attach(id: AttachId) -> Result<Context, DetachError> {
    thread_state::end_frame(id.0)
        .map(finish_detach)
        .map_err(|()| DetachError::NotCurrent)
}

/// Identifies one [`attach_deferred`]: pass it to [`detach_deferred`]. Plain data, like
/// [`AttachId`], and every deferred attach gets an id of its own:
///
/// ```
/// use contextvars::{DetachError, attach_deferred, detach_deferred};
///
/// let first = attach_deferred(|_key| None, 0).unwrap();
/// assert!(detach_deferred(first).unwrap().is_none());
/// let second = attach_deferred(|_key| None, 0).unwrap();
/// assert_ne!(first, second);
/// assert_eq!(detach_deferred(first).unwrap_err(), DetachError::NotCurrent); // used already
/// assert!(detach_deferred(second).is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeferredId(u64);

/// [`attach`] for a context that may not be needed: `fetch(key)` gives the context, and is
/// called on this thread by the first operation that uses the current context (a lookup, a
/// `set`, a snapshot, entering a scope), or never, if nothing uses it before
/// [`detach_deferred`]. Until then the thread's context is untouched.
///
/// This is for an executor whose tasks often run a step without reading their context: a
/// step that never uses it costs two thread-local updates instead of moving the context in
/// and out. `fetch` runs at an arbitrary point of the step, in the context below; it must
/// not use context variables itself. If it returns `None`, the step runs in an empty
/// context (never in the one below). If it panics, the panic reaches the operation that
/// used the context, and the attach is over: the context below is current, as if the attach
/// had never been made, `fetch` is not called again, and [`detach_deferred`] and
/// [`end_deferred`] refuse `id` with [`DetachError::NotCurrent`]. Nesting and ordering rules
/// are those of [`attach`].
///
/// # Errors
///
/// [`AttachError`] during thread teardown (its context is empty: nothing was fetched).
///
/// ```
/// use std::sync::Mutex;
/// use contextvars::{Context, ContextVar, attach_deferred, detach_deferred};
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
/// static PARKED: Mutex<Option<Context>> = Mutex::new(None);
///
/// fn fetch(_key: u64) -> Option<Context> {
///     PARKED.lock().unwrap().take()
/// }
///
/// USER.set("main");
/// *PARKED.lock().unwrap() = Some(Context::new());
///
/// // A step that never reads its context: `fetch` is not called.
/// let id = attach_deferred(fetch, 0).unwrap();
/// assert!(detach_deferred(id).unwrap().is_none());
/// assert!(PARKED.lock().unwrap().is_some());
///
/// // A step that does: the context is fetched on first use and handed back at the end.
/// let id = attach_deferred(fetch, 0).unwrap();
/// assert_eq!(USER.get(), None);
/// USER.set("task");
/// let task = detach_deferred(id).unwrap().expect("it was used");
/// assert_eq!(task.get(&USER), Some("task"));
/// assert_eq!(USER.get(), Some("main"));
/// ```
#[inline]
pub fn attach_deferred(
    fetch: fn(u64) -> Option<Context>,
    key: u64,
) -> Result<DeferredId, AttachError> {
    match thread_state::attach_deferred(fetch, key) {
        Some(id) => Ok(DeferredId(id)),
        None => Err(AttachError {
            context: Context::default(),
        }),
    }
}

/// Leaves the [`attach_deferred`] that returned `id`: `Ok(None)` if its context was never
/// fetched (the thread's context is as it was), or `Ok(Some(context))` with every change
/// made while it was current, as [`detach`] hands back.
///
/// # Errors
///
/// [`DetachError::NotCurrent`] under the same rules as [`detach`]. Nothing changes then.
///
/// ```
/// use std::sync::Mutex;
/// use contextvars::{Context, ContextVar, DetachError, attach_deferred, detach_deferred};
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
/// static PARKED: Mutex<Option<Context>> = Mutex::new(None);
///
/// fn fetch(_key: u64) -> Option<Context> {
///     PARKED.lock().unwrap().take()
/// }
///
/// let mut task = Context::new();
/// task.run(|| USER.set("task"));
/// *PARKED.lock().unwrap() = Some(task);
///
/// let id = attach_deferred(fetch, 0).unwrap();
/// // Inside a scope that began after the attach, the attach is not current.
/// let inner = Context::new().run(|| detach_deferred(id));
/// assert_eq!(inner.unwrap_err(), DetachError::NotCurrent);
/// assert!(PARKED.lock().unwrap().is_some()); // not fetched yet
/// assert_eq!(USER.get(), Some("task")); // fetched here
/// USER.set("changed");
/// let task = detach_deferred(id).unwrap().expect("it was fetched");
/// assert_eq!(task.get(&USER), Some("changed"));
/// assert_eq!(USER.get(), None);
/// ```
#[inline]
pub fn detach_deferred(id: DeferredId) -> Result<Option<Context>, DetachError> {
    match thread_state::detach_deferred(id.0) {
        Err(()) => Err(DetachError::NotCurrent),
        // Nothing was entered: the context below and its cache entries are as they were.
        Ok(None) => Ok(None),
        Ok(Some(detached)) => Ok(Some(finish_detach(detached))),
    }
}

/// Ends the [`attach_deferred`] that returned `id` the way a [`Context::run`](crate::Context::run)
/// ends: attaches made since and still attached end with it. For an executor's end of a
/// step, where the step may have left an attach of its own behind (its code panicked between
/// an [`attach`] and its [`detach`]).
///
/// - `Ok(None)`: the context was never fetched; the thread's context is as it was.
/// - `Ok(Some(context))`: the context that was current when the step ended, with every
///   change made to it. With nothing left attached above, that is what [`detach_deferred`]
///   hands back. Otherwise it is the topmost context left attached (still the current one,
///   as at the end of a run), and the contexts those attaches displaced, the fetched one
///   among them, are dropped here (or, those a borrow lends, when the last borrow lending
///   them ends). No [`detach`] can match those attaches any more.
///
/// Either way the context that `attach_deferred` displaced is current again.
///
/// # Panics
///
/// As [`end_attach`]: if a `Drop` of a value among the contexts dropped here panics (and the
/// thread is not panicking already), the panic comes out of this call once the attaches have
/// ended, and the context that would have been handed back is dropped. Called while the
/// thread is panicking, the `Drop`'s panic is discarded and the context is handed back.
///
/// # Errors
///
/// [`DetachError::NotCurrent`], with nothing changed, if `id` is no longer attached on this
/// thread (it was detached or ended, or a run or scope around it ended), or if a
/// [`Context::run`](crate::Context::run) or a logical-context scope opened since the attach is
/// still open around the caller (its own end restores what it changed).
///
/// ```
/// use std::sync::Mutex;
/// use contextvars::{Context, ContextVar, attach, attach_deferred, detach_deferred, end_deferred};
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
/// static PARKED: Mutex<Option<Context>> = Mutex::new(None);
///
/// fn fetch(_key: u64) -> Option<Context> {
///     PARKED.lock().unwrap().take()
/// }
///
/// *PARKED.lock().unwrap() = Some(Context::new());
/// let step = attach_deferred(fetch, 0).unwrap();
/// USER.set("task");
/// // The step attaches a context of its own and never detaches it.
/// let _left = attach(Context::new()).unwrap();
/// USER.set("left behind");
/// assert!(detach_deferred(step).is_err()); // not the current attach
/// let ended = end_deferred(step).unwrap().expect("it was used");
/// assert_eq!(ended.get(&USER), Some("left behind"));
/// assert_eq!(USER.get(), None); // the thread's own context again
/// ```
pub fn end_deferred(id: DeferredId) -> Result<Option<Context>, DetachError> {
    match thread_state::end_deferred(id.0) {
        Err(()) => Err(DetachError::NotCurrent),
        Ok(None) => Ok(None),
        Ok(Some(detached)) => Ok(Some(finish_detach(detached))),
    }
}

/// Ends the attaches left attached above the logical context `context` at this scope level
/// (see `thread_state::end_attaches_over`), and hands back the context that was current,
/// for the caller to drop once it has reset what its scope set. `None`, with nothing
/// changed, if there are none. A panic of a `Drop` among what they displaced comes out once
/// they have ended (as from [`end_attach`]).
pub(crate) fn end_attaches_over(context: u64) -> Option<Context> {
    thread_state::end_attaches_over(context).map(finish_detach)
}

/// Hands back a detached context, dropping what it displaced unless a borrow is open.
#[inline]
fn finish_detach(detached: Detached) -> Context {
    let Detached {
        frame,
        snapshot,
        rest,
        outer,
    } = detached;
    // The reinstalled context's entries are warm again when its version is known; the
    // detached context keeps the version that described it, for its next attach or run.
    let (stamp, borrowed) = if outer != 0 {
        (cache::leave(outer), cache::check_borrowed())
    } else {
        (0, cache::invalidate_all_and_check_borrowed())
    };
    let context = Context { frame, stamp };
    // The one place this module asks whether a borrowed value may be in use: if so, nothing
    // that may be lent is dropped before the borrow ends.
    if borrowed {
        retire_lent(&context, &snapshot, rest.as_deref());
    }
    // Dropped here, outside every borrow of the thread state (a value's `Drop` may panic;
    // the state is already consistent).
    let displaced = panic::catch_unwind(AssertUnwindSafe(move || {
        drop(snapshot);
        drop(rest);
    }));
    if let Err(payload) = displaced {
        // Already unwinding: the panic is discarded (a second one would abort), as where
        // scopes drop what they took. Otherwise the caller gets the panic instead of the
        // context, which is dropped here, where a panicking `Drop` of its own values is
        // contained, not while the panic unwinds (an abort).
        if !std::thread::panicking() {
            thread_state::discard_panic(context);
            panic::resume_unwind(payload);
        }
        // A `Drop` of the payload may panic too.
        thread_state::discard_panic(payload);
    }
    context
}

/// A borrow is open: keep alive, until it ends, each value it may be lending from the
/// detached context or from what `detach` displaced. The rest goes as usual: the context
/// with its caller, what was displaced at once.
#[cold]
#[inline(never)]
fn retire_lent(context: &Context, snapshot: &crate::ExecutionContext, rest: Option<&Abandoned>) {
    fn frame_maps(frame: &Frame) -> impl Iterator<Item = &crate::value::VarMap> {
        std::iter::once(&frame.top.map).chain(frame.base.maps())
    }
    let leftovers = rest.into_iter().flat_map(|rest| &rest.leftovers);
    let levels = rest.into_iter().flat_map(|rest| &rest.levels);
    thread_state::retire_lent(
        frame_maps(&context.frame)
            .chain(snapshot.maps())
            .chain(leftovers.map(|lc| &lc.map))
            .chain(levels.flat_map(|level| frame_maps(&level.frame).chain(level.snapshot.maps()))),
    );
}
