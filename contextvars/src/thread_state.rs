//! The per-thread current execution context, and every operation that changes it.
//!
//! Layout: the topmost logical context (`top`, edited in place by `set` when nobody shares
//! its map), the logical contexts pushed beneath it on this thread (`pushed[floor..]`, bottom
//! to top), and an immutable snapshot under all of them (`base`). A snapshot of the whole
//! stack is built on demand and cached until the stack changes.
//!
//! Rules every function here follows:
//!
//! - The `RefCell` is borrowed only for moves and map edits that run no user code; anything
//!   that might drop a user value (displaced values, old snapshots, leftover layers) is
//!   carried out of the borrow and dropped afterwards (or retired, see `cache`).
//! - Every change that alters what a lookup of some variable would find either refreshes that
//!   variable's cache entry or invalidates the whole cache.

use std::cell::RefCell;
use std::mem;

use crate::cache;
use crate::execution::{EC_LEN_MAX, ExecutionContext};
use crate::logical::LogicalContext;
use crate::value::{Value, VarId};

pub(crate) struct ThreadState {
    /// The topmost logical context and the snapshot at the bottom.
    frame: Frame,
    pushed: Vec<LogicalContext>,
    floor: usize,
    snapshot: Option<ExecutionContext>,
    /// Values and snapshots displaced while a borrowed value was in use (see `cache`).
    retired: Vec<Retired>,
}

/// Something displaced from the current context, kept alive until no borrow needs it.
#[expect(dead_code, reason = "the fields are held only to delay their drop")]
pub(crate) enum Retired {
    Value(Value),
    Snapshot(ExecutionContext),
}

crate::loom::thread_local_const! {
    static STATE: RefCell<ThreadState> = {
        RefCell::new(ThreadState {
            frame: Frame {
                top: LogicalContext::new(),
                base: ExecutionContext::new(),
            },
            pushed: Vec::new(),
            floor: 0,
            snapshot: None,
            retired: Vec::new(),
        })
    };
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        // The thread is ending and its context with it: nothing cached may be used again.
        cache::invalidate_all();
    }
}

/// Runs `f` on this thread's state, or returns `None` during thread teardown, after the
/// state is gone.
#[inline]
fn with_state<R>(f: impl FnOnce(&mut ThreadState) -> R) -> Option<R> {
    STATE.try_with(|state| f(&mut state.borrow_mut())).ok()
}

/// Drops what was displaced, or retires it if a borrowed value may still point into it.
/// Must be called outside the state's borrow.
#[inline(always)]
fn dispose(value: Option<Value>, snapshot: Option<ExecutionContext>) {
    if value.is_some() || snapshot.is_some() {
        dispose_slow(value, snapshot);
    }
}

#[cold]
#[inline(never)]
fn dispose_slow(value: Option<Value>, snapshot: Option<ExecutionContext>) {
    if cache::must_retire() {
        let retired = value
            .map(Retired::Value)
            .into_iter()
            .chain(snapshot.map(Retired::Snapshot));
        // During thread teardown the state is gone, and so is every borrow: just drop.
        let _ = with_state(|ts| ts.retired.extend(retired));
    }
}

/// Releases retired values once the last borrow ended (called by `cache`).
pub(crate) fn release_retired() {
    let retired = with_state(|ts| mem::take(&mut ts.retired));
    drop(retired);
}

impl ThreadState {
    /// The topmost value for `id` in the current execution context.
    fn find(&self, id: VarId) -> Option<&Value> {
        if let Some(value) = self.frame.top.map.get(&id) {
            return Some(value);
        }
        for lc in self.pushed[self.floor..].iter().rev() {
            if let Some(value) = lc.map.get(&id) {
                return Some(value);
            }
        }
        self.frame.base.find(id)
    }

    fn take_snapshot(&mut self) -> Option<ExecutionContext> {
        self.snapshot.take()
    }

    /// Forgets the cached snapshot before the current context is edited. Dropping it here,
    /// inside the borrow, runs no user code: the cached snapshot always describes the current
    /// context, so every value it holds is also held by the state. Dropping it *before* the
    /// edit lets a map that only the cache shared be edited in place.
    fn forget_snapshot(&mut self) {
        self.snapshot = None;
    }
}

/// Looks `id` up in the current execution context (no cache) and hands the value to `f`
/// outside of any borrow that user code could trip over: `f` must not run user code.
#[inline]
pub(crate) fn lookup<R>(id: VarId, f: impl FnOnce(Option<&Value>) -> R) -> R {
    let mut f = Some(f);
    let result = STATE.try_with(|state| {
        let ts = state.borrow();
        (f.take().expect("called once"))(ts.find(id))
    });
    match result {
        Ok(r) => r,
        Err(_) => (f.take().expect("called once"))(None),
    }
}

/// The value for `id` in the topmost logical context only.
pub(crate) fn lookup_topmost(id: VarId) -> Option<Value> {
    with_state(|ts| ts.frame.top.map.get(&id).cloned()).flatten()
}

/// Stores `value` for `id` in the topmost logical context. Returns the value it displaced
/// there and the logical context's id (for the token), or `None` during thread teardown.
pub(crate) fn set(id: VarId, value: Value) -> Option<(Option<Value>, u64)> {
    let (displaced, context) = with_state(|ts| {
        ts.forget_snapshot();
        let context = ts.frame.top.ensure_id();
        let displaced = ts.frame.top.map.insert(id, value);
        (displaced, context)
    })?;
    // A borrow may point at the displaced value; the token takes the value itself, so a
    // retired reference keeps it alive until the borrow ends. (Without a borrow nothing is
    // cloned: the token's reference is the last one.)
    if let Some(old) = &displaced
        && cache::must_retire()
    {
        dispose_slow(Some(old.clone()), None);
    }
    Some((displaced, context))
}

/// Removes `id` from the topmost logical context; `false` if it was not there.
pub(crate) fn delete(id: VarId) -> bool {
    let removed = with_state(|ts| {
        if !ts.frame.top.map.contains_key(&id) {
            return None;
        }
        ts.forget_snapshot();
        ts.frame.top.map.remove(&id)
    })
    .flatten();
    cache::forget(id);
    match removed {
        Some(removed) => {
            dispose(Some(removed), None);
            true
        }
        None => false,
    }
}

/// Why a token could not be applied.
pub(crate) enum RestoreError {
    WrongContext,
}

/// A value displaced from the current context; dropping it disposes of it properly (retired
/// while a borrow is open).
pub(crate) struct Displaced(Option<Value>);

impl Drop for Displaced {
    fn drop(&mut self) {
        dispose(self.0.take(), None);
    }
}

/// Puts the topmost logical context's binding for `id` back to `old` (absent if `None`),
/// provided the topmost logical context is `context`. The value it displaces is handed back
/// to be dropped once the caller has recorded the change (its `Drop` may panic).
pub(crate) fn restore(
    id: VarId,
    old: Option<Value>,
    context: u64,
) -> Result<Displaced, RestoreError> {
    let outcome = with_state(|ts| {
        if ts.frame.top.id != context || context == 0 {
            return Err(RestoreError::WrongContext);
        }
        ts.forget_snapshot();
        let displaced = match old {
            Some(value) => ts.frame.top.map.insert(id, value),
            None => ts.frame.top.map.remove(&id),
        };
        Ok(displaced)
    })
    .unwrap_or(Err(RestoreError::WrongContext));
    let displaced = outcome?;
    cache::forget(id);
    Ok(Displaced(displaced))
}

/// The current execution context as an immutable snapshot (O(1) when nothing changed since
/// the last one). Squashed into one logical context when the chain exceeds [`EC_LEN_MAX`].
pub(crate) fn snapshot() -> ExecutionContext {
    with_state(|ts| {
        if let Some(snapshot) = &ts.snapshot {
            return snapshot.clone();
        }
        let mut ec = ts.frame.base.clone();
        for lc in &ts.pushed[ts.floor..] {
            ec = ec.with_layer(lc.map.clone());
        }
        ec = ec.with_layer(ts.frame.top.map.clone());
        if ec.len() > EC_LEN_MAX {
            ec = ec.squashed();
        }
        ts.snapshot = Some(ec.clone());
        ec
    })
    .unwrap_or_default()
}

/// A logical context and the stack under it: what a [`Context`](crate::Context) holds while
/// it is not running, and what `run_in_frame` installs.
#[derive(Default)]
pub(crate) struct Frame {
    pub(crate) top: LogicalContext,
    pub(crate) base: ExecutionContext,
}

impl Frame {
    /// Exchanges two frames, field by field (cheaper than a generic swap of the whole).
    #[inline(always)]
    fn swap(&mut self, other: &mut Frame) {
        self.top.swap(&mut other.top);
        mem::swap(&mut self.base, &mut other.base);
    }
}

/// Runs `f` with `frame` as the thread's current context; the changes `f` makes are written
/// back into `frame`, and the previous context is restored, even if `f` panics.
#[inline]
pub(crate) fn run_in_frame<R>(frame: &mut Frame, f: impl FnOnce() -> R) -> R {
    /// Holds the caller's frame while `f` runs (the two are swapped in and out).
    struct Guard<'a> {
        frame: &'a mut Frame,
        floor: usize,
        snapshot: Option<ExecutionContext>,
        entered: bool,
    }

    impl Drop for Guard<'_> {
        #[inline]
        fn drop(&mut self) {
            if !self.entered {
                return;
            }
            let leftovers = with_state(|ts| {
                ts.frame.swap(self.frame);
                // Scoped pushes are balanced, so normally nothing is left above the floor.
                let leftovers = (ts.pushed.len() > ts.floor).then(|| ts.pushed.split_off(ts.floor));
                ts.floor = self.floor;
                mem::swap(&mut ts.snapshot, &mut self.snapshot);
                leftovers
            });
            cache::invalidate_all();
            // The inner snapshot (now in `self.snapshot`) and any leftovers drop here,
            // outside the borrow.
            drop(leftovers);
        }
    }

    let mut guard = Guard {
        frame,
        floor: 0,
        snapshot: None,
        entered: false,
    };
    with_state(|ts| {
        ts.frame.swap(guard.frame);
        guard.floor = mem::replace(&mut ts.floor, ts.pushed.len());
        guard.snapshot = ts.snapshot.take();
        guard.entered = true;
    });
    cache::invalidate_all();
    f()
}

/// Runs `f` with `lc` pushed on top of the current execution context, then pops it back into
/// `lc`, even if `f` panics.
#[inline]
pub(crate) fn run_with_pushed<R>(lc: &mut LogicalContext, f: impl FnOnce() -> R) -> R {
    struct Guard<'a> {
        lc: &'a mut LogicalContext,
        pushed: bool,
    }

    impl Drop for Guard<'_> {
        #[inline]
        fn drop(&mut self) {
            if !self.pushed {
                return;
            }
            let lc = &mut *self.lc;
            let stale = with_state(|ts| {
                let below = ts.pushed.pop().unwrap_or_default();
                *lc = mem::replace(&mut ts.frame.top, below);
                // An empty logical context changes no lookup: keep the cache and snapshot.
                if lc.is_empty() {
                    None
                } else {
                    ts.take_snapshot()
                }
            })
            .flatten();
            if !lc.is_empty() {
                cache::invalidate_all();
            }
            dispose(None, stale);
        }
    }

    let nonempty = !lc.is_empty();
    let mut guard = Guard { lc, pushed: false };
    let stale = with_state(|ts| {
        mem::swap(&mut ts.frame.top, guard.lc);
        ts.pushed.push(mem::take(guard.lc));
        guard.pushed = true;
        if nonempty { ts.take_snapshot() } else { None }
    })
    .flatten();
    if nonempty {
        cache::invalidate_all();
    }
    dispose(None, stale);
    f()
}

/// One non-scoped attach (`crate::attach`): before `enter_level`, the frame to attach; while
/// attached, the frame, floor and cached snapshot of the level below, and the id of the
/// attached frame's top logical context; after `leave_level`, the frame that was attached
/// and its stale snapshot.
pub(crate) struct Level {
    pub(crate) frame: Frame,
    pub(crate) floor: usize,
    pub(crate) snapshot: Option<ExecutionContext>,
    pub(crate) top_id: u64,
}

/// Makes `level.frame` the current context at a new level, keeping the displaced one in
/// `level` (swapped in place). `false`, with nothing changed, during thread teardown. Runs no
/// user code: nothing is dropped.
#[inline]
pub(crate) fn enter_level(level: &mut Level) -> bool {
    with_state(|ts| {
        ts.frame.swap(&mut level.frame);
        level.top_id = ts.frame.top.ensure_id();
        level.floor = mem::replace(&mut ts.floor, ts.pushed.len());
        mem::swap(&mut ts.snapshot, &mut level.snapshot);
    })
    .is_some()
}

/// Reinstalls what `level` saved if the current topmost logical context is the one `level`
/// attached, leaving the attached frame and its stale snapshot in `level`, and returns the
/// logical contexts left pushed above the level's floor (normally none). `None`, with
/// nothing changed, otherwise. Runs no user code: the caller drops or retires what it gets.
#[inline]
pub(crate) fn leave_level(level: &mut Level) -> Option<Vec<LogicalContext>> {
    with_state(|ts| {
        if ts.frame.top.id != level.top_id || level.top_id == 0 {
            return None;
        }
        ts.frame.swap(&mut level.frame);
        let leftovers = if ts.pushed.len() > ts.floor {
            ts.pushed.split_off(ts.floor)
        } else {
            Vec::new()
        };
        ts.floor = level.floor;
        mem::swap(&mut ts.snapshot, &mut level.snapshot);
        Some(leftovers)
    })
    .flatten()
}

/// Keeps `snapshot` alive until the outermost open borrow on this thread ends. Only for
/// callers that were told to retire by `cache::must_retire`.
pub(crate) fn retire(snapshot: ExecutionContext) {
    let _ = with_state(|ts| ts.retired.push(Retired::Snapshot(snapshot)));
}
