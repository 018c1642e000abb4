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
//!   below. If a borrow is open on the thread at that moment, a snapshot of the context handed
//!   back is retired until the borrow ends, so the lent value outlives it even if the caller
//!   drops the `Context` at once.
//! - [`detach`] refuses, changing nothing, unless the attachment it is given is the current
//!   context at the current scope level (not, say, from inside a [`Context::run`] that began
//!   after the attach).
//!
//! [`ContextVar::with`]: crate::ContextVar::with

use std::cell::RefCell;
use std::fmt;

use crate::cache;
use crate::context::Context;
use crate::thread_state::{self, Frame, Level};

crate::loom::thread_local_const! {
    /// The levels below each attached context, bottom to top.
    static LEVELS: RefCell<Vec<Level>> = RefCell::new(Vec::new());
}

/// Identifies one [`attach`]: pass it to [`detach`] to leave that context. Plain data; using
/// it twice, on another thread or at another scope level is refused by `detach`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttachId(u64);

/// Why [`attach`] could not make a context current: the thread is exiting and its context
/// state is already gone. The context is handed back.
pub struct AttachError {
    context: Context,
}

impl AttachError {
    /// The context that was not attached.
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
/// detached before the closure returns). An attach left behind when its scope ends is
/// discarded by the next `detach` below it.
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
    let mut given = Some(context);
    let attached = LEVELS.try_with(|levels| {
        let mut levels = levels.borrow_mut();
        let frame = given
            .take()
            .map(|context| context.frame)
            .unwrap_or_default();
        // Pushing may allocate but runs no user code; the frames are then swapped in place.
        levels.push(Level {
            frame,
            floor: 0,
            snapshot: None,
            top_id: 0,
        });
        let level = levels.last_mut().expect("just pushed");
        if thread_state::enter_level(level) {
            Ok(AttachId(level.top_id))
        } else {
            let level = levels.pop().expect("just pushed");
            Err(Context { frame: level.frame })
        }
    });
    match attached {
        Ok(Ok(id)) => {
            cache::invalidate_all();
            Ok(id)
        }
        Ok(Err(context)) => Err(AttachError { context }),
        // Thread teardown: the closure never ran.
        Err(_) => Err(AttachError {
            context: given.take().unwrap_or_default(),
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
    let left = LEVELS
        .try_with(|levels| {
            let mut levels = levels.borrow_mut();
            let index = match levels.last() {
                Some(top) if top.top_id == id.0 => levels.len() - 1,
                // Anything above the level was attached inside a scope that has ended.
                _ => levels.iter().rposition(|level| level.top_id == id.0)?,
            };
            let leftovers = thread_state::leave_level(&mut levels[index])?;
            let abandoned = if index + 1 < levels.len() {
                levels.split_off(index + 1)
            } else {
                Vec::new()
            };
            let level = levels.pop().expect("found above");
            Some((level, leftovers, abandoned))
        })
        .ok()
        .flatten();
    let Some((level, leftovers, abandoned)) = left else {
        return Err(DetachError::NotCurrent);
    };
    cache::invalidate_all();
    let Level {
        frame, snapshot, ..
    } = level;
    let context = Context { frame };
    // The one place this module asks whether a borrowed value may be in use: if so, nothing
    // that may hold it is dropped before the borrow ends.
    if cache::must_retire_any() {
        retire_detached(&context, snapshot, leftovers, abandoned);
    } else {
        // Dropped here, outside every borrow of the thread state (a value's `Drop` may panic;
        // the state is already consistent).
        drop(snapshot);
        drop(leftovers);
        drop(abandoned);
    }
    Ok(context)
}

/// A borrow is open: keep everything `detach` displaced alive until it ends.
#[cold]
#[inline(never)]
fn retire_detached(
    context: &Context,
    snapshot: Option<crate::ExecutionContext>,
    leftovers: Vec<crate::LogicalContext>,
    abandoned: Vec<Level>,
) {
    thread_state::retire_snapshot(context.execution_context());
    if let Some(snapshot) = snapshot {
        thread_state::retire_snapshot(snapshot);
    }
    for lc in leftovers {
        thread_state::retire_snapshot(crate::ExecutionContext::new().with_layer(lc.map));
    }
    for level in abandoned {
        retire_level(level);
    }
}

fn retire_level(level: Level) {
    let Level {
        frame: Frame { top, base },
        snapshot,
        ..
    } = level;
    thread_state::retire_snapshot(base.with_layer(top.map));
    if let Some(snapshot) = snapshot {
        thread_state::retire_snapshot(snapshot);
    }
}
