//! The per-thread current execution context, and every operation that changes it.
//!
//! Layout: the topmost logical context (`top`, edited in place by `set` when nobody shares
//! its map), the logical contexts pushed beneath it on this thread (`pushed[floor..]`, bottom
//! to top), and an immutable snapshot under all of them (`base`). A snapshot of the whole
//! stack is built on demand and cached until the stack changes.
//!
//! Pushing a logical context that is empty and has no identity yet (a generator's or an
//! iterator stage's, until its first `set`) only counts it in `LAZY`: such a context changes
//! no lookup, so `LAZY` untouched contexts above `top` stand for `LAZY` default logical
//! contexts pushed above it. The first operation that needs them as real contexts (a `set`,
//! any other push, an attach) *materialises* them, producing exactly the stack the eager
//! representation would hold. Materialising turns all of them into real ones, so a lazy
//! push's pop finds `LAZY` where its push left it if its context is still lazy, and at 0
//! otherwise (then it pops a real one). Every function below gives the same answer from
//! either representation. Over a waiting run (below) the count goes on from where the run
//! found it, so that a run that never needs the thread state leaves `LAZY` alone; entering
//! the run sets the lazy pushes below it apart (see `settle`).
//!
//! Rules every function here follows:
//!
//! - The `RefCell` is borrowed only for moves and map edits that run no user code; anything
//!   that might drop a user value (displaced values, old snapshots, leftover layers) is
//!   carried out of the borrow and dropped afterwards.
//! - A value leaves the topmost logical context only through `ThreadState::insert_top` and
//!   `ThreadState::remove_top` (and `set`'s `insert_top_uncached`, whose caller rewrites the
//!   entry before anything reads the cache). They clear the variable's cache entry and hand
//!   back what they displaced as a [`Displaced`], which drops the value once it is carried
//!   out of the borrow, or retires it while an open borrow lends it (see `cache`).
//! - Every other change that alters what a lookup of some variable would find invalidates the
//!   whole cache.
//! - A deferred attach (`crate::attach_deferred`) waits in `pending` until the state is next
//!   used: every access (`with_state`, `lookup`) enters it first, so no function here ever
//!   sees the context below a pending attach.
//! - A run (`run_in_frame`) waits the same way, in `WAITING`, and so do pushes of logical
//!   contexts that are not untouched (`run_with_waiting_push`), listed in `WAITING_PUSHED`
//!   above the waiting run, until an operation needs the thread state: every access but a
//!   lookup enters them first (`borrow_settled`: the run, then the pushes above it, bottom
//!   first); a lookup reads them where they lie (`find_waiting`). A run's context replaces
//!   the whole current one, so a deferred attach pending below a run is kept aside while the
//!   run is entered, and the runs and pushes waiting below it are hidden until it ends: a
//!   waiting push records the run that waited when it began, and the pushes above a waiting
//!   run are those that record it.

use std::cell::{Cell, RefCell, RefMut};
use std::mem;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::thread;

use crate::cache;
use crate::context::Context;
use crate::execution::{EC_LEN_MAX, ExecutionContext};
use crate::logical::LogicalContext;
use crate::value::{Value, VarId, downcast, inline_bits};
use crate::watch::{self, ContextEvent};

pub(crate) struct ThreadState {
    /// The topmost logical context and the snapshot at the bottom.
    frame: Frame,
    pushed: Vec<LogicalContext>,
    floor: usize,
    /// The cached snapshot of the current context, or an empty one when none is cached (an
    /// empty context is described anew at no cost): one word to save and restore.
    snapshot: ExecutionContext,
    /// The contexts displaced by each non-scoped attach (`crate::attach`), bottom to top.
    levels: Vec<Level>,
    /// How many levels there were when the innermost entered run began: those below belong
    /// to the code around the run, and nothing inside it may end them ([`end_deferred`]).
    run_levels: usize,
    /// A deferred attach not entered yet: entered by the first operation that uses the
    /// current context (see [`attach_deferred`]).
    pending: Option<Pending>,
    /// Values displaced or detached while an open borrow lent them (see `cache`); each is
    /// released at the end of a borrow once no open borrow lends it.
    retired: Vec<Retired>,
}

/// A value displaced from the current context, kept alive until no borrow needs it.
pub(crate) struct Retired(Value);

crate::loom::thread_local_const! {
    static STATE: RefCell<ThreadState> = {
        RefCell::new(ThreadState {
            frame: Frame {
                top: LogicalContext::new(),
                base: ExecutionContext::new(),
            },
            pushed: Vec::new(),
            floor: 0,
            snapshot: ExecutionContext::new(),
            levels: Vec::new(),
            run_levels: 0,
            pending: None,
            retired: Vec::new(),
        })
    };
}

crate::loom::thread_local_const! {
    /// How many untouched (empty, id-less) logical contexts are pushed above the thread
    /// state's topmost one without being materialised (see the module docs). A separate
    /// thread-local without a destructor, so that such a push or pop is one counter update.
    static LAZY: Cell<usize> = Cell::new(0);
}

/// The number of lazily pushed logical contexts (0 during thread teardown).
#[inline]
fn lazy() -> usize {
    LAZY.try_with(Cell::get).unwrap_or(0)
}

/// The number of lazily pushed logical contexts, leaving 0.
#[inline]
fn take_lazy() -> usize {
    LAZY.try_with(|lazy| lazy.replace(0)).unwrap_or(0)
}

#[inline]
fn set_lazy(count: usize) {
    let _ = LAZY.try_with(|lazy| lazy.set(count));
}

impl ThreadState {
    /// What an attach or a detach changes: the levels (their count and the topmost one's id,
    /// which no other attach shares) and the frame's floor. Equal before and after some
    /// code, it ran no attach or detach that it did not undo (a run's or a scope's own
    /// changes are undone when they end).
    fn attach_signature(&self) -> (usize, u64, usize) {
        (
            self.levels.len(),
            self.levels.last().map_or(0, |level| level.id),
            self.floor,
        )
    }
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        // The thread is ending and its context with it: nothing cached may be used again,
        // not even by a context that ran here before and is run again by a later destructor.
        cache::close();
        // Its contexts go in a thread-local's destructor, where a panic (a value's `Drop`)
        // aborts the process and has no caller to reach: each part is dropped on its own,
        // and its panic discarded. (Values' `Drop`s that use a variable find no state.) In
        // the fields' own order. Within one part (one logical context's map), a second
        // panicking `Drop` while the first unwinds still aborts, as in any collection.
        discard_panic(mem::take(&mut self.frame));
        mem::take(&mut self.pushed)
            .into_iter()
            .for_each(discard_panic);
        discard_panic(mem::take(&mut self.snapshot));
        for level in mem::take(&mut self.levels) {
            let Level {
                frame, snapshot, ..
            } = level;
            discard_panic(frame);
            discard_panic(snapshot);
        }
        mem::take(&mut self.retired)
            .into_iter()
            .for_each(discard_panic);
    }
}

/// Whether this thread's state is gone (the thread is being torn down): sets do nothing
/// then, and resets find no context to undo them in.
pub(crate) fn torn_down() -> bool {
    STATE.try_with(|_| ()).is_err()
}

/// Runs `f`, discarding a panic that comes out of it (see [`discard_panic`] for its payload).
pub(crate) fn contain(f: impl FnOnce()) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
        discard_panic(payload);
    }
}

/// Drops `value`, discarding a panic of its `Drop` (see [`discard_payload`]).
pub(crate) fn discard_panic<T>(value: T) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(value))) {
        discard_payload(payload);
    }
}

/// Drops a panic payload, whose own `Drop` may panic in turn (with a payload of its own, and
/// so on): a few levels deep; a payload still panicking past them is leaked, as nothing is
/// left to contain it.
fn discard_payload(mut payload: Box<dyn std::any::Any + Send>) {
    for _ in 0..4 {
        match panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    mem::forget(payload);
}

/// Runs `f` on this thread's state, or returns `None` during thread teardown, after the
/// state is gone.
#[inline]
fn with_state<R>(f: impl FnOnce(&mut ThreadState) -> R) -> Option<R> {
    STATE.try_with(|state| f(&mut borrow_settled(state))).ok()
}

/// A value that left the topmost logical context. Dropping it drops the value, unless an
/// open borrow lends it, in which case it is retired until no open borrow lends it.
///
/// Never drop one inside the state's borrow: the value's `Drop` is user code.
#[must_use = "a displaced value must be dropped outside the thread state's borrow"]
pub(crate) struct Displaced(Option<Value>);

impl Drop for Displaced {
    #[inline]
    fn drop(&mut self) {
        if let Some(value) = self.0.take()
            && is_lent(&value)
        {
            retire(Retired(value));
        }
    }
}

/// Whether an open borrow on this thread may be lending `value` (see `cache`, point 4).
#[inline]
fn is_lent(value: &Value) -> bool {
    // An inline value is never lent: reads lend a copy of it.
    value
        .shared_range()
        .is_some_and(|(start, len)| cache::must_retire(start, len))
}

#[cold]
#[inline(never)]
fn retire(retired: Retired) {
    // During thread teardown the state is gone, and so is every borrow: just drop. The list
    // of retired values does not depend on the current context: nothing waiting is entered
    // first (entering a deferred attach runs its fetch, user code, which may panic and so
    // drop `retired` while a borrow lends it).
    let _ = STATE.try_with(|state| state.borrow_mut().retired.push(retired));
}

/// Releases the retired values that none of the `open` borrows still open on this thread
/// lends (all of them once the last borrow ended; called by `cache` when a borrow ends).
///
/// Every retired value is dropped even if a `Drop` panics. The first panic is passed on once
/// all of them are dropped, unless the thread is already unwinding (the borrow ended because
/// its closure panicked): a second panic would abort the process, so it is swallowed.
pub(crate) fn release_retired(open: usize) {
    // As in `retire`: nothing waiting is entered first.
    let Ok(retired) = STATE.try_with(|state| {
        let mut state = state.borrow_mut();
        let retired = mem::take(&mut state.retired);
        if open == 0 {
            return retired;
        }
        // The values an outer borrow still lends stay; the cache is told they remain before
        // anything is dropped (a `Drop` may panic).
        let mut retired = retired;
        let mut kept_until = None;
        let released: Vec<Retired> = retired
            .extract_if(.., |Retired(value)| {
                let lender = value
                    .shared_range()
                    .and_then(|(start, len)| cache::lent_by_open_borrows(start, len));
                kept_until = kept_until.max(lender);
                lender.is_none()
            })
            .collect();
        if let Some(at) = kept_until {
            cache::keep_retired(at);
        }
        state.retired = retired;
        released
    }) else {
        return;
    };
    let mut first_panic = None;
    for item in retired {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| drop(item))) {
            match first_panic {
                None => first_panic = Some(payload),
                // Its own `Drop` may panic too.
                Some(_) => discard_panic(payload),
            }
        }
    }
    if let Some(payload) = first_panic {
        if thread::panicking() {
            discard_panic(payload);
        } else {
            panic::resume_unwind(payload);
        }
    }
}

/// In debug builds, `cache::read` calls this on a hit: the cached address must lie inside
/// the value the current context holds for `id`, or the cached bits must be that value's.
pub(crate) fn check_cached(id: VarId, cached: cache::Held) {
    let matches = lookup(id, |found| {
        found.is_some_and(|value| match (cached, value.shared_range()) {
            (cache::Held::At(at), Some((start, len))) => {
                (start.addr()..=start.addr() + len).contains(&at.addr())
            }
            (cache::Held::Bits(bits), _) => value.kind_bits() == Some(bits),
            (cache::Held::At(_), None) => false,
        })
    });
    assert!(
        matches,
        "the lookup cache disagrees with the value the current context holds for {id:?}"
    );
}

impl ThreadState {
    /// Turns the lazily pushed logical contexts into real ones: what an eager push would have
    /// built. Runs no user code (the contexts moved are empty or stay installed).
    fn materialize(&mut self) {
        let count = lazy();
        if count > 0 {
            self.materialize_slow(count);
        }
    }

    #[cold]
    #[inline(never)]
    fn materialize_slow(&mut self, count: usize) {
        self.pushed.reserve(count);
        self.pushed.push(mem::take(&mut self.frame.top));
        for _ in 1..count {
            self.pushed.push(LogicalContext::new());
        }
        set_lazy(0);
    }

    /// The topmost value for `id` in the current execution context.
    fn find(&self, id: VarId) -> Option<&Value> {
        match self.frame.top.map.get(&id) {
            Some(value) => Some(value),
            None => self.find_below_top(id),
        }
    }

    /// The topmost value for `id` under the topmost logical context.
    fn find_below_top(&self, id: VarId) -> Option<&Value> {
        for lc in self.pushed[self.floor..].iter().rev() {
            if let Some(value) = lc.map.get(&id) {
                return Some(value);
            }
        }
        self.frame.base.find(id)
    }

    fn take_snapshot(&mut self) -> ExecutionContext {
        mem::take(&mut self.snapshot)
    }

    /// Forgets the cached snapshot before the current context is edited. Dropping it here,
    /// inside the borrow, runs no user code: the cached snapshot always describes the current
    /// context, so every value it holds is also held by the state. Dropping it *before* the
    /// edit lets a map that only the cache shared be edited in place.
    #[inline]
    fn forget_snapshot(&mut self) {
        if self.snapshot.head.is_some() {
            drop_snapshot(mem::take(&mut self.snapshot));
        }
    }

    /// Stores `value` for `id` in the topmost logical context: one of the two ways a value
    /// leaves it. The variable's cache entry is cleared; the caller may store a fresh one.
    fn insert_top(&mut self, id: VarId, value: Value) -> Displaced {
        cache::forget(id);
        self.insert_top_uncached(id, value)
    }

    /// `insert_top` for a caller that rewrites the variable's cache entry itself before
    /// anything reads the cache (`set`): the entry is written once instead of cleared and
    /// written.
    fn insert_top_uncached(&mut self, id: VarId, value: Value) -> Displaced {
        self.forget_snapshot();
        Displaced(self.frame.top.map.insert(id, value))
    }

    /// Removes `id` from the topmost logical context: the other way a value leaves it.
    fn remove_top(&mut self, id: VarId) -> Displaced {
        // A lazily pushed topmost logical context is empty.
        if lazy() > 0 || !self.frame.top.map.contains_key(&id) {
            return Displaced(None);
        }
        self.forget_snapshot();
        cache::forget(id);
        Displaced(self.frame.top.map.remove(&id))
    }
}

/// Drops a cached snapshot that was forgotten (see `ThreadState::forget_snapshot`), out of
/// line: most edits find none cached.
#[cold]
#[inline(never)]
fn drop_snapshot(snapshot: ExecutionContext) {
    drop(snapshot);
}

/// Looks `id` up in the current execution context (no cache) and hands the value to `f`
/// outside of any borrow that user code could trip over: `f` must not run user code.
#[inline]
pub(crate) fn lookup<R>(id: VarId, f: impl FnOnce(Option<&Value>) -> R) -> R {
    let mut f = Some(f);
    let result = STATE.try_with(|state| {
        let f = f.take().expect("called once");
        // Waiting pushes and a waiting run are read where they wait: a read enters nothing.
        find_waiting(state, waiting_pushed(), waiting(), id, f)
    });
    match result {
        Ok(r) => r,
        Err(_) => (f.take().expect("called once"))(None),
    }
}

/// Enters the pending deferred attach if a lookup would (nothing waits above it), so that a
/// read the cache could not answer before may be answered now: entering it brings back the
/// cache version of its context's last attach or run on this thread. Whether it entered one.
pub(crate) fn enter_pending_for_read() -> bool {
    // The two plain thread-locals first: cheaper than reaching the state, whose thread-local
    // has a destructor to check for.
    if !waiting().is_null() || !waiting_pushed().is_null() {
        return false;
    }
    STATE
        .try_with(|state| {
            if state.try_borrow().is_ok_and(|ts| ts.pending.is_some()) {
                enter_pending(state);
                return true;
            }
            false
        })
        .unwrap_or(false)
}

/// The value for `id` in the topmost logical context only.
pub(crate) fn lookup_topmost(id: VarId) -> Option<Value> {
    // A lazily pushed topmost logical context is empty: nothing needs entering.
    if lazy_above_top() > 0 {
        return None;
    }
    with_state(|ts| ts.frame.top.map.get(&id).cloned()).flatten()
}

/// How many logical contexts are pushed lazily above the topmost real or waiting one, whether
/// or not a run waits: over a waiting run without a waiting push above it, the count goes on
/// from the run's (see [`Run`]).
#[allow(unsafe_code)]
fn lazy_above_top() -> usize {
    let run = waiting();
    let floor = if !run.is_null() && !made_while(waiting_pushed(), run) {
        // SAFETY: the waiting run, as in `find_waiting`: one field is read.
        unsafe { (*run).lazy }
    } else {
        0
    };
    lazy().saturating_sub(floor)
}

/// What a variable held before a `set`, for its token.
#[derive(Default)]
pub(crate) struct Previous {
    /// The topmost logical context's id (0 during thread teardown: no reset will match).
    pub(crate) context: u64,
    /// The value the topmost logical context held (what a reset puts back).
    pub(crate) top: Option<Value>,
    /// If it held none, the value a lower layer showed.
    pub(crate) below: Option<Value>,
}

/// Stores the value in `value`, a `T`, for `id` in the topmost logical context and points
/// the cache at it. Returns what the variable held before, or `None` during thread teardown
/// (the value is then left in `value`, as it is if entering what waits panics).
pub(crate) fn set<T: 'static>(id: VarId, value: &mut Option<Value>) -> Option<Previous> {
    // What the cache will hold: the bits of a value of an inline kind (which the cache
    // copies, however the value is stored), or where the `T` lies in its `Arc` (which the
    // move into the map leaves in place).
    let Some(typed) = value.as_ref().and_then(downcast::<T>) else {
        unreachable!("set with no value, or one of another type than {id:?}'s");
    };
    let held = match inline_bits(typed) {
        Some(bits) => cache::Held::Bits(bits),
        None => cache::Held::At(ptr::from_ref(typed).cast()),
    };
    let previous = with_state(|ts| {
        ts.materialize();
        let context = ts.frame.top.ensure_id();
        // The cache entry is rewritten below, before anything can read it. Taken only now,
        // once whatever waited was entered (entering a deferred attach runs its fetch, user
        // code that may panic): until then the value stays with the caller.
        let value = value.take().expect("checked above");
        let top = ts.insert_top_uncached(id, value).0.take();
        // Only the first set of a variable in a logical context looks further down.
        let below = match &top {
            // The token keeps the displaced value; if an open borrow lends it, a retired
            // reference keeps it alive until that borrow ends, whatever the token does.
            Some(displaced) => {
                if is_lent(displaced) {
                    ts.retired.push(Retired(displaced.clone()));
                }
                None
            }
            None => ts.find_below_top(id).cloned(),
        };
        Previous {
            context,
            top,
            below,
        }
    })?;
    // SAFETY: `held` describes `value`, which the topmost logical context now holds for
    // `id`; `set`'s callers pass the `T` of `id`'s variable. A later removal goes through
    // `insert_top` / `remove_top`, which clear this entry. The entry was not cleared by the
    // insert: nothing between it and this store reads the cache (no user code runs), and
    // this store replaces whatever the entry held for the displaced value.
    #[allow(unsafe_code)]
    unsafe {
        cache::store_held(id, Some(held));
    }
    Some(previous)
}

/// Removes `id` from the topmost logical context; `false` if it was not there.
pub(crate) fn delete(id: VarId) -> bool {
    match with_state(|ts| ts.remove_top(id)) {
        Some(displaced) => {
            let removed = displaced.0.is_some();
            drop(displaced);
            removed
        }
        None => false,
    }
}

/// Puts the topmost logical context's binding for `id` back to `old` (absent if `None`),
/// provided the topmost logical context is `context`. The value it displaces is handed back
/// to be dropped once the caller has recorded the change (its `Drop` may panic). Refused,
/// `old` comes back, for the caller to drop outside the borrow (its `Drop` is user code,
/// which may use context variables) or to keep.
pub(crate) fn restore(
    id: VarId,
    old: Option<Value>,
    context: u64,
) -> Result<Displaced, Option<Value>> {
    let mut old = Some(old);
    let restored = with_state(|ts| {
        // A lazily pushed topmost logical context has no id yet, so no token matches it.
        if ts.frame.top.id != context || context == 0 || lazy() > 0 {
            return None;
        }
        Some(match old.take().flatten() {
            Some(value) => ts.insert_top(id, value),
            None => ts.remove_top(id),
        })
    })
    .flatten();
    match restored {
        Some(displaced) => Ok(displaced),
        None => Err(old.flatten()),
    }
}

/// The current execution context as an immutable snapshot (O(1) when nothing changed since
/// the last one). Squashed into one logical context when the chain exceeds [`EC_LEN_MAX`].
pub(crate) fn snapshot() -> ExecutionContext {
    with_state(|ts| {
        if ts.snapshot.head.is_some() {
            return ts.snapshot.clone();
        }
        let mut ec = ts.frame.base.clone();
        for lc in &ts.pushed[ts.floor..] {
            ec = ec.with_layer(lc.map.clone());
        }
        ec = ec.with_layer(ts.frame.top.map.clone());
        if ec.depth() > EC_LEN_MAX {
            ec = ec.squashed();
        }
        ts.snapshot = ec.clone();
        ec
    })
    .unwrap_or_default()
}

/// A logical context and the stack under it: what a [`Context`] holds while
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

/// A [`run_in_frame`] in progress, on its stack. Until the first operation that needs the
/// thread state, the run's context is not entered: the run *waits* in [`WAITING`], and only
/// the lookup cache describes its context. Entering it ([`enter_run`]) fills in `pushed` and
/// `entered`.
struct Run {
    /// The context being run, borrowed by `run_in_frame` for the whole run.
    frame: *mut Frame,
    /// The run that was waiting when this one began (null if none): it waits again once this
    /// one ends. Its context is not needed meanwhile, since this run's replaces it whole.
    below: *mut Run,
    /// Once entered, the pushes that were waiting when this one began (see [`Pushed`]):
    /// hidden for the same reason, and listed again once this run ends. While the run waits
    /// they stay listed, below the pushes made inside it (which record this run), and the
    /// run touches neither: a run that never enters saves and restores two thread-locals
    /// fewer.
    pushed: *mut Pushed,
    /// The cache version of the context below (from `cache::enter`).
    outer: u64,
    /// `LAZY` when the run began: the lazily pushed logical contexts of the context below.
    /// While the run waits, the count goes on from there; entering the run materialises the
    /// lazy pushes made inside it, so the count restarts from 0 over the run's context, and
    /// leaving an entered run puts this back.
    lazy: usize,
    /// Once entered: what the level below had.
    entered: Option<Entered>,
}

/// What entering a run displaced from the thread state, put back when the run ends.
struct Entered {
    floor: usize,
    snapshot: ExecutionContext,
    /// How many attach levels there were.
    levels: usize,
    /// [`ThreadState::run_levels`] outside the run.
    run_levels: usize,
    /// A deferred attach of the level below, not entered: it waits again after the run.
    pending: Option<Pending>,
}

crate::loom::thread_local_const! {
    /// The run whose context waits to be entered (see [`Run`]), or null. A separate
    /// thread-local without a destructor, so that a run that never uses its context touches
    /// neither the thread state nor its `RefCell`.
    static WAITING: Cell<*mut Run> = Cell::new(std::ptr::null_mut());
}

/// The waiting run, or null (also during thread teardown).
#[inline(always)]
fn waiting() -> *mut Run {
    WAITING.try_with(Cell::get).unwrap_or(std::ptr::null_mut())
}

#[inline(always)]
fn set_waiting(run: *mut Run) {
    let _ = WAITING.try_with(|waiting| waiting.set(run));
}

/// Borrows the thread state for an operation that uses the current context, entering first
/// whatever waits to be entered (see [`settle`]).
#[inline(always)]
fn borrow_settled(state: &RefCell<ThreadState>) -> RefMut<'_, ThreadState> {
    let ts = state.borrow_mut();
    if ts.pending.is_none() && waiting().is_null() && waiting_pushed().is_null() {
        return ts;
    }
    drop(ts);
    settle(state);
    state.borrow_mut()
}

/// Enters what waits to be entered on this thread: a waiting run's context (the newest: a
/// deferred attach waiting below it is kept in the run until it ends, as the run's context
/// replaces the whole current one), else a deferred attach; then the pushes waiting above
/// it, bottom first. The logical contexts pushed lazily while the run waited are
/// materialised above its context (those below a waiting push, as that push enters; those
/// above the topmost push stay lazy, counted from 0 again), and the count the run found is
/// the caller's, put back when the run ends.
#[cold]
#[inline(never)]
fn settle(state: &RefCell<ThreadState>) {
    let run = waiting();
    // The waiting pushes to enter are those above `stop`, and the lazy count the run found
    // is `floor` (see [`Run`]).
    let pushed = waiting_pushed();
    let (stop, floor) = if run.is_null() {
        // A deferred attach lies below every waiting push (an attach enters those first).
        enter_pending(state);
        (std::ptr::null_mut(), None)
    } else {
        set_waiting(std::ptr::null_mut());
        let stop = below_run(pushed, run);
        (stop, Some(enter_run(&mut state.borrow_mut(), run, stop)))
    };
    // The pushes below the run, if one was entered, are hidden until it ends.
    set_waiting_pushed(std::ptr::null_mut());
    if pushed != stop {
        // The lazily pushed logical contexts above the topmost waiting push stay above it.
        let above = take_lazy();
        enter_pushed(&mut state.borrow_mut(), pushed, stop, floor.unwrap_or(0));
        set_lazy(above);
    } else if let Some(floor) = floor {
        // Those pushed lazily while the run waited lie above its context: materialised, as
        // the count restarts from 0 over an entered context (and a lazy pop that finds
        // another count than its own pops a real one).
        set_lazy(lazy().saturating_sub(floor));
        state.borrow_mut().materialize();
    }
}

/// Hands `f` the value for `id` in the current context: the waiting pushes (`pushed`, null if
/// none) made since the waiting run began (all of them if none waits), topmost first, then
/// the waiting run's context (`run`, null if none), else the thread state's (the logical
/// contexts pushed lazily in between are empty), entering only a pending deferred attach,
/// and only when the thread state is read.
#[inline]
#[allow(unsafe_code)]
fn find_waiting<R>(
    state: &RefCell<ThreadState>,
    mut pushed: *mut Pushed,
    run: *mut Run,
    id: VarId,
    f: impl FnOnce(Option<&Value>) -> R,
) -> R {
    // The pushes made while the waiting run waits, if one does, else all of them; those
    // below the run are hidden by it.
    while made_while(pushed, run) {
        // SAFETY: a waiting push, published by `run_with_waiting_push` and still on its stack
        // (see `enter_pushed`); only its `run`, `lc` and `below` fields are read, and the
        // logical context is borrowed by `run_with_waiting_push`, which does not use it while
        // `f` runs. Nothing else refers to either mutably meanwhile: entering them, the one
        // other access, happens only from an operation on the thread state, and `f` runs no
        // user code.
        let (lc, below) = unsafe { (&*(*pushed).lc, (*pushed).below) };
        if let Some(value) = lc.map.get(&id) {
            return f(Some(value));
        }
        pushed = below;
    }
    if !run.is_null() {
        // SAFETY: as above, for the waiting run (see `enter_run`): only its `frame` is read.
        let frame = unsafe { &*(*run).frame };
        return f(match frame.top.map.get(&id) {
            Some(value) => Some(value),
            None => frame.base.find(id),
        });
    }
    let mut ts = state.borrow();
    if ts.pending.is_some() {
        drop(ts);
        enter_pending(state);
        ts = state.borrow();
    }
    f(ts.find(id))
}

/// Makes the waiting run's context the thread's current one, hiding the waiting pushes made
/// before it began (`pushed`, their topmost); returns the lazy count the run found. Runs no
/// user code.
#[allow(unsafe_code)]
fn enter_run(ts: &mut ThreadState, run: *mut Run, pushed: *mut Pushed) -> usize {
    // SAFETY: `run` was published in `WAITING` by `run_in_frame`, whose stack holds it
    // until its guard has taken it out of `WAITING` (also when unwinding), and nothing else
    // refers to it while this runs: `run_in_frame` reaches it only through this pointer,
    // once `f` is over, and this is the only other place that does (`WAITING` was cleared
    // before this call, so it is entered once). Lookups read its `frame`, `pushed` and
    // `lazy` only while it waits; the pushes made while it waited hold its address only to
    // compare it.
    let run = unsafe { &mut *run };
    run.pushed = pushed;
    // SAFETY: `run.frame` comes from the `&mut Frame` that `run_in_frame` holds, unused,
    // for the whole run.
    let frame = unsafe { &mut *run.frame };
    ts.frame.swap(frame);
    let floor = mem::replace(&mut ts.floor, ts.pushed.len());
    run.entered = Some(Entered {
        floor,
        snapshot: mem::take(&mut ts.snapshot),
        levels: ts.levels.len(),
        run_levels: mem::replace(&mut ts.run_levels, ts.levels.len()),
        pending: ts.pending.take(),
    });
    run.lazy
}

/// Runs `f` with `frame` as the thread's current context; the changes `f` makes are written
/// back into `frame`, and the previous context is restored, even if `f` panics.
///
/// The context is entered only if `f` uses it (reads the thread state, or a variable that
/// the lookup cache does not answer): until then the run waits (see [`Run`]), and ending it
/// only puts back the cache version and the waiting run below. With a watcher registered,
/// the context is entered at once, so that watchers see it current.
///
/// `stamp` is the frame's lookup-cache stamp (see `cache::enter`): 0 for a frame never run, or
/// what the last run left there. Whoever changes the frame other than through this function
/// must reset it to 0.
#[inline]
pub(crate) fn run_in_frame<R>(frame: &mut Frame, stamp: &mut u64, f: impl FnOnce() -> R) -> R {
    struct Guard<'a> {
        run: *mut Run,
        stamp: &'a mut u64,
    }

    impl Drop for Guard<'_> {
        #[inline(always)]
        fn drop(&mut self) {
            leave_run(self.run, self.stamp);
        }
    }

    let mut run = Run {
        frame,
        below: waiting(),
        // Known once the run is entered (see `Run`).
        pushed: std::ptr::null_mut(),
        // The lookup cache describes the run's context from here on: the entries stamped
        // with its stamp are warm again (see `cache`, point 1).
        outer: cache::enter(*stamp),
        lazy: lazy(),
        entered: None,
    };
    let run: *mut Run = &raw mut run;
    set_waiting(run);
    let _guard = Guard { run, stamp };
    // Reported only if entered: after the thread state is gone (thread teardown) the run
    // is never entered, and its end reports no exit either.
    if watch::active() && STATE.try_with(settle).is_ok() {
        watch::notify(|| ContextEvent::Entered);
    }
    f()
}

/// Ends the run `run` (see [`run_in_frame`]): the thread's previous context is current
/// again, and `stamp` is what the next run of the frame gives `cache::enter`.
#[inline(always)]
#[allow(unsafe_code)]
fn leave_run(run: *mut Run, stamp: &mut u64) {
    // SAFETY: `run` points to the record on the calling `run_in_frame`'s stack, which
    // outlives this call, and no reference to it is live (`enter_run`'s ended with it); this
    // reads one field.
    if unsafe { (*run).entered.is_none() } {
        if !watch::active() {
            // SAFETY: as above; the reference ends before anything else can reach the
            // record.
            let record = unsafe { &*run };
            // Never entered: the thread state is as the run found it. Nested runs that
            // began since have ended and put this one back as the waiting one.
            // The pushes and lazy pushes made inside have ended too: the waiting pushes and
            // the lazy count are as the run found them.
            debug_assert_eq!(waiting(), run);
            debug_assert!(!made_while(waiting_pushed(), run));
            debug_assert_eq!(lazy(), record.lazy);
            set_waiting(record.below);
            *stamp = cache::leave(record.outer);
            return;
        }
        // A watcher came since the run began: the run is entered now, so that the watcher
        // sees its context current as it exits. `settle` reaches the record through
        // `WAITING`: no reference to it may be held across this call.
        let _ = STATE.try_with(settle);
    }
    leave_entered(run, stamp);
}

/// [`leave_run`] for a run whose context was entered (or is entered now, for a watcher).
#[cold]
#[inline(never)]
#[allow(unsafe_code)]
fn leave_entered(run: *mut Run, stamp: &mut u64) {
    // The stamp stays 0 unless leaving completes.
    *stamp = 0;
    // SAFETY: as in `leave_run`. The record is reached through this one reference, which
    // ends here: once it is entered, `WAITING` no longer points to it, so only this
    // function does, and the user code run below (a watcher, drops) cannot reach it.
    let (entered, below, pushed, lazy, outer, frame) = unsafe {
        let run = &mut *run;
        (
            run.entered.take(),
            run.below,
            run.pushed,
            run.lazy,
            run.outer,
            run.frame,
        )
    };
    let Some(entered) = entered else {
        // Thread teardown: the state is gone, and the run was never entered, so it left the
        // waiting pushes and the lazy count as they were (its `pushed` is not filled in).
        set_waiting(below);
        cache::leave(outer);
        return;
    };
    let restore = || {
        set_waiting(below);
        set_waiting_pushed(pushed);
        set_lazy(lazy);
        cache::leave(outer)
    };
    watch::notify(|| ContextEvent::Exited);
    // SAFETY: as in `enter_run`: `run_in_frame` holds the frame's `&mut` for the whole run,
    // and uses it only through this pointer.
    let frame = unsafe { &mut *frame };
    let Entered {
        floor,
        mut snapshot,
        levels,
        run_levels,
        pending,
    } = entered;
    let Ok((ended, leftovers)) = STATE.try_with(|state| {
        let mut ts = state.borrow_mut();
        // A deferred attach made inside `f`, never used and never detached, ends with the
        // run like any attach left inside it; as it was never entered, the frame is as it
        // was and nothing is fetched (no user code runs while leaving). The one waiting
        // below the run waits again.
        ts.pending = pending;
        // An attach made inside `f` and left attached ends with the run: its frame goes
        // back into the caller's `Context`, so a later run of that context would make its
        // top logical context current again, and a `detach` made there, at another depth,
        // must not match this level (it would reinstate this level's floor and displaced
        // frame in a stack that has changed since). So the levels made inside `f` leave the
        // thread with the run (nothing can detach them now), and what they displaced is
        // dropped below, outside the borrow.
        let ended = (ts.levels.len() > levels).then(|| split_levels(&mut ts, levels));
        ts.run_levels = run_levels;
        ts.frame.swap(frame);
        // Scoped pushes are balanced, so normally nothing is left above the floor.
        let leftovers = (ts.pushed.len() > ts.floor).then(|| split_leftovers(&mut ts));
        ts.floor = floor;
        mem::swap(&mut ts.snapshot, &mut snapshot);
        (ended, leftovers)
    }) else {
        // Thread teardown began inside the run: nothing to put back.
        restore();
        return;
    };
    let inner = restore();
    // The cache describes the current context, which is the frame handed back unless `f`
    // left logical contexts pushed above it. (After an attach left attached, the frame
    // handed back is the attached one: still the current context.)
    *stamp = if leftovers.is_none() { inner } else { 0 };
    // The inner snapshot, any leftovers and the ended levels drop here, outside the borrow.
    drop(snapshot);
    drop(leftovers);
    if let Some(ended) = ended {
        drop_ended(ended);
    }
}

/// The attach levels above the first `from`: those of the attaches made inside a run that is
/// ending (see `run_in_frame`). No `detach` or `detach_deferred` can match them once they are
/// gone (it is refused with `NotCurrent`).
#[cold]
#[inline(never)]
fn split_levels(ts: &mut ThreadState, from: usize) -> Vec<Level> {
    ts.levels.split_off(from)
}

/// Drops the levels a run's end took off the thread: the frames its attaches displaced (the
/// context the run began in, and any attached in between), outside the state's borrow, so
/// their values leave memory with the run, not with the thread. No open borrow lends from
/// them: a borrow open across the run lends from the caller's context, which holds its own
/// reference.
#[cold]
#[inline(never)]
fn drop_ended(levels: Vec<Level>) {
    drop_unwinding_safely(levels);
}

/// Drops `taken` (contexts a scope or a run took off the thread, dropped outside the state's
/// borrow). A `Drop` that panics while the thread is already unwinding is discarded, not an
/// abort.
fn drop_unwinding_safely<T>(taken: T) {
    if thread::panicking() {
        contain(|| drop(taken));
    } else {
        drop(taken);
    }
}

/// The logical contexts left pushed above the floor when a frame is left (unbalanced pushes
/// cannot happen with the scoped API; an attach left attached can leave some).
#[cold]
#[inline(never)]
fn split_leftovers(ts: &mut ThreadState) -> Vec<LogicalContext> {
    ts.pushed.split_off(ts.floor)
}

/// Runs `f` with `lc` pushed on top of the current execution context, then pops it back into
/// `lc`, even if `f` panics.
///
/// An untouched `lc` is pushed lazily (a count, see the module docs). Any other waits, as a
/// run does (see [`Pushed`]): it is moved into the thread state only if `f` needs it there.
#[inline]
pub(crate) fn run_with_pushed<R>(lc: &mut LogicalContext, f: impl FnOnce() -> R) -> R {
    /// Pops a lazy push. Pushes and pops nest, and materialising turns every lazy logical
    /// context into a real one (the count drops to 0), so the count is back at `pushed` (what
    /// this push made it) if and only if `lc` is still lazy; otherwise it was materialised and
    /// is popped as a real one.
    struct Lazy<'a> {
        lc: &'a mut LogicalContext,
        pushed: usize,
    }

    impl Drop for Lazy<'_> {
        #[inline]
        fn drop(&mut self) {
            // The count stored is the one this push found, held in a register, not one
            // derived from the count read here: the read only steers the branch. A chain of
            // nested stages (an iterator's) then pops without waiting for each inner pop's
            // store to reach its load.
            if lazy() == self.pushed {
                // Still untouched: `lc` is as it was pushed.
                set_lazy(self.pushed - 1);
                return;
            }
            pop(self.lc, &Below::NONE);
        }
    }

    if lc.is_untouched() {
        // Thread teardown: there is no current context to push onto.
        let Ok(pushed) = LAZY.try_with(|lazy| {
            let pushed = lazy.get() + 1;
            lazy.set(pushed);
            pushed
        }) else {
            return f();
        };
        let _guard = Lazy { lc, pushed };
        return f();
    }
    run_with_waiting_push(lc, f)
}

/// [`run_with_pushed`] of a logical context that is not untouched: `lc` waits on this
/// function's stack. Out of line, so that the lazy push, which most pushes are (an iterator
/// stage, a generator's resume), saves only the registers it needs itself: inlined, this
/// path's state made every caller save all six callee-saved registers.
#[inline(never)]
fn run_with_waiting_push<R>(lc: &mut LogicalContext, f: impl FnOnce() -> R) -> R {
    /// Ends a waiting push.
    struct Waiting {
        pushed: *mut Pushed,
    }

    impl Drop for Waiting {
        #[inline(always)]
        fn drop(&mut self) {
            leave_pushed(self.pushed);
        }
    }

    let nonempty = !lc.map.is_empty();
    let mut pushed = Pushed {
        lc,
        run: waiting(),
        below: waiting_pushed(),
        // The lazily pushed logical contexts lie below this one.
        lazy: take_lazy(),
        // A non-empty logical context changes lookups: the cache describes the context with
        // it on top from here on (see `cache`, point 1).
        version: if nonempty { cache::renew() } else { 0 },
        entered: None,
    };
    let pushed: *mut Pushed = &raw mut pushed;
    set_waiting_pushed(pushed);
    let _guard = Waiting { pushed };
    f()
}

/// A logical context pushed by [`run_with_waiting_push`] and not moved into the thread state yet:
/// it *waits* on the pushing function's stack, listed in [`WAITING_PUSHED`], until an
/// operation needs the thread state, as a [`Run`] waits. Reads look it up where it lies.
struct Pushed {
    /// The logical context, borrowed by `run_with_waiting_push` for the whole push.
    lc: *mut LogicalContext,
    /// The run that was waiting when this push began (null if none): the pushes that wait
    /// above a waiting run are those made while it waits.
    run: *mut Run,
    /// The push that was waiting when this one began (null if none): it lies below.
    below: *mut Pushed,
    /// The lazily pushed logical contexts below this one.
    lazy: usize,
    /// The cache version of the context below, if `lc` is not empty (else 0: lookups are
    /// unchanged, and so is the version).
    version: u64,
    /// Once entered: what its pop needs.
    entered: Option<Below>,
}

crate::loom::thread_local_const! {
    /// The topmost waiting push (see [`Pushed`]), or null. A run hides the pushes that waited
    /// when it began (its context replaces the whole current one): lookups skip them while
    /// it waits, and entering it takes them off this list until it ends.
    static WAITING_PUSHED: Cell<*mut Pushed> = Cell::new(std::ptr::null_mut());
}

/// The topmost waiting push, or null (also during thread teardown).
#[inline(always)]
fn waiting_pushed() -> *mut Pushed {
    WAITING_PUSHED
        .try_with(Cell::get)
        .unwrap_or(std::ptr::null_mut())
}

#[inline(always)]
fn set_waiting_pushed(pushed: *mut Pushed) {
    let _ = WAITING_PUSHED.try_with(|waiting| waiting.set(pushed));
}

/// Whether `pushed` is a waiting push (not null) made while `run` waited (or, with `run` null,
/// while no run waited).
#[inline(always)]
#[allow(unsafe_code)]
fn made_while(pushed: *mut Pushed, run: *mut Run) -> bool {
    // SAFETY: a waiting push, as in `find_waiting`: one field is read.
    !pushed.is_null() && unsafe { (*pushed).run } == run
}

/// The topmost of the waiting pushes `pushed` (topmost first) that were made before `run`
/// began: the first not made while it waited.
#[allow(unsafe_code)]
fn below_run(mut pushed: *mut Pushed, run: *mut Run) -> *mut Pushed {
    while made_while(pushed, run) {
        // SAFETY: a waiting push, as in `find_waiting`; one field is read.
        pushed = unsafe { (*pushed).below };
    }
    pushed
}

/// Moves the waiting push `pushed` and those below it down to `stop` (not included) into the
/// thread state, bottom first, each above the lazily pushed logical contexts it lies on; the
/// bottom one's count includes `floor`, the count a run entered just below it found. Runs no
/// user code.
#[allow(unsafe_code)]
fn enter_pushed(ts: &mut ThreadState, pushed: *mut Pushed, stop: *mut Pushed, floor: usize) {
    // SAFETY: `pushed` is a waiting push: `run_with_waiting_push` published it (directly, or
    // as the `below` of a later waiting push) and its stack holds it until its guard has taken
    // it off the list, also when unwinding. Nothing else refers to it while this runs:
    // `run_with_waiting_push` reaches it only through this pointer once `f` is over, lookups
    // (and `below_run`, `lazy_above_top`) only read its `run`, `lc` and `below`, and never
    // while this runs, and the list was cleared before this call, so each push is entered
    // once.
    let pushed = unsafe { &mut *pushed };
    if pushed.below == stop {
        // The bottom one: the count it took includes the lazy pushes below the run it lies
        // on, which belong to the context that run left (see `Run`).
        set_lazy(pushed.lazy.saturating_sub(floor));
    } else {
        enter_pushed(ts, pushed.below, stop, floor);
        set_lazy(pushed.lazy);
    }
    ts.materialize();
    // SAFETY: `pushed.lc` comes from the `&mut LogicalContext` that `run_with_waiting_push`
    // holds, unused, for the whole push.
    let lc = unsafe { &mut *pushed.lc };
    // Field by field, so that each logical context is moved once, not through a copy.
    let mut lower = LogicalContext::new();
    ts.frame.top.swap(&mut lower);
    ts.frame.top.swap(lc);
    ts.pushed.push(lower);
    if pushed.version != 0 {
        // Runs no user code: see `forget_snapshot`.
        ts.forget_snapshot();
    }
    pushed.entered = Some(Below {
        // The version the push took stays: it describes the same context.
        version: pushed.version,
        depth: NonZeroUsize::new(ts.pushed.len()).unwrap_or(NonZeroUsize::MAX),
    });
}

/// Ends the push `pushed` (see [`run_with_waiting_push`]): if it never entered the thread state,
/// puts back the cache version, the lazy count and the waiting push below; else pops it.
#[inline(always)]
#[allow(unsafe_code)]
fn leave_pushed(pushed: *mut Pushed) {
    // SAFETY: `pushed` points to the record on the calling `run_with_waiting_push`'s stack, which
    // outlives this call; no reference to it is live (`enter_pushed`'s ended with it).
    let record = unsafe { &mut *pushed };
    match record.entered {
        None => {
            // Nested pushes and runs that began since have ended and listed this one again.
            debug_assert_eq!(waiting_pushed(), pushed);
            set_waiting_pushed(record.below);
            set_lazy(record.lazy);
            if record.version != 0 {
                cache::leave(record.version);
            }
        }
        // SAFETY: as in `enter_pushed`: the `&mut` that `record.lc` comes from is unused
        // until `run_with_waiting_push` returns.
        Some(below) => pop(unsafe { &mut *record.lc }, &below),
    }
}

/// What a real push hands to its pop: the cache version of the context below, if the push
/// replaced it (else 0), and how many logical contexts the pushed stack held after the push.
#[derive(Clone, Copy)]
struct Below {
    version: u64,
    /// Non-zero, so that an `Option<Below>` fits in two registers.
    depth: NonZeroUsize,
}

impl Below {
    /// Nothing to put back (a lazy push, or an empty logical context). Its depth matches
    /// no stack, so its pop takes the general path ([`pop_into`]).
    const NONE: Below = Below {
        version: 0,
        depth: NonZeroUsize::MAX,
    };
}

/// Pops the topmost real logical context into `lc` (see [`pop_into`]): in one borrow of the
/// thread state when the pushed stack is as the push left it (no attach made inside the scope
/// is still current), which moves each logical context once; through [`pop_into`] otherwise.
#[inline(never)]
fn pop(lc: &mut LogicalContext, below: &Below) {
    let popped = STATE.try_with(|state| {
        let ts = &mut *state.borrow_mut();
        let len = ts.pushed.len();
        // Not at the depth the push left, or at the floor: an attach made inside the scope
        // is current (or the push was lazy, then materialised): `pop_into` sorts that out.
        if len != below.depth.get() || len <= ts.floor {
            return false;
        }
        // As in `pop_into`: a deferred attach still pending was recorded inside this scope
        // and ends with it, never entered.
        ts.pending = None;
        let Some(lower) = ts.pushed.pop() else {
            return false;
        };
        // What `lc` held is dropped: nothing, since the push took it.
        *lc = mem::replace(&mut ts.frame.top, lower);
        // The cached snapshot describes the context with `lc` on top: forgotten (inside the
        // borrow, see `forget_snapshot`) unless `lc` left the lookups unchanged. Forgetting
        // it is always correct, so a push that was non-empty need not look again.
        if below.version != 0 {
            ts.forget_snapshot();
            cache::leave(below.version);
        } else if !lc.map.is_empty() {
            ts.forget_snapshot();
            cache::invalidate_all();
        }
        true
    });
    if let Ok(false) = popped {
        pop_into(lc, *below);
    }
}

/// Pops the topmost real logical context into `lc` (which is empty: its content was moved
/// out by the push, or it was pushed lazily and then materialised). `below` is what the push
/// returned (0 for a lazy push): the cache version to put back, unless 0.
///
/// If an attach made inside the scope is still the current context (it was never detached),
/// the scope takes it with it: the context the scope pushed into is reinstalled first, and
/// what the attach held is dropped (see [`abandon_attaches`]); the cache is then invalidated.
#[cold]
#[inline(never)]
fn pop_into(lc: &mut LogicalContext, below: Below) {
    let popped = STATE.try_with(|state| {
        let ts = &mut *state.borrow_mut();
        // A deferred attach still pending was recorded inside this scope (every real push
        // enters a pending one first, and so does materialising a lazy one): like any attach
        // left inside the scope, it ends with it, and as it was never entered, nothing is
        // fetched (no user code runs while the scope ends).
        ts.pending = None;
        // Our push left the logical context below ours above the floor; at the floor means
        // the current context is an attach made after the push.
        let intact = ts.pushed.len() > ts.floor;
        let abandoned = if intact { None } else { abandon_attaches(ts) };
        // The version below is put back only if the stack is as the push left it (a belt
        // to the braces above: nothing inside the scope can change what lies below it).
        let intact = intact && ts.pushed.len() == below.depth.get();
        let lower = ts.pushed.pop().unwrap_or_default();
        *lc = mem::replace(&mut ts.frame.top, lower);
        // An empty logical context changes no lookup: keep the cache and snapshot.
        let stale = if lc.map.is_empty() {
            ExecutionContext::new()
        } else {
            ts.take_snapshot()
        };
        (stale, abandoned, intact)
    });
    let Ok((stale, abandoned, intact)) = popped else {
        return;
    };
    if !intact {
        cache::invalidate_all();
    } else if below.version != 0 {
        cache::leave(below.version);
    } else if !lc.map.is_empty() {
        cache::invalidate_all();
    }
    // A stale snapshot never holds the last reference to a value a borrow lends: the
    // popped logical context is in `lc`, everything else is still installed.
    drop(stale);
    if let Some(abandoned) = abandoned {
        drop_abandoned(abandoned);
    }
}

/// What a logical context scope took with it when it ended under an attach made inside it:
/// the attached frame (and its cached snapshot), and whatever lay above it. Held only to be
/// dropped.
struct LeftAttached {
    _frame: Frame,
    _snapshot: ExecutionContext,
    _rest: Abandoned,
}

/// Reinstalls the context that was current when the logical context now on top of the
/// pushed stack was pushed, abandoning every attach made since (those still current, and
/// those left inside scopes that have ended). `None`, with nothing changed, if no attach
/// lies between (not reachable through the scoped API).
///
/// The level that displaced the pushing context is found by walking down the levels: each
/// level of the current chain made its frame current at `attached_floor`, the floor of the
/// frame above it in the chain (a level that does not match is skipped: none is left by the
/// scoped API, since a `run` that ends takes its levels with it). The first chain level
/// whose displaced frame had logical contexts pushed (its floor is below the attach's)
/// displaced the pushing context: a frame made current by an attach has none pushed until
/// a scope pushes one.
#[cold]
#[inline(never)]
fn abandon_attaches(ts: &mut ThreadState) -> Option<Box<LeftAttached>> {
    let mut floor = ts.floor;
    let index = ts.levels.iter().rposition(|level| {
        if level.attached_floor != floor {
            return false;
        }
        if level.floor < floor {
            return true;
        }
        floor = level.floor;
        false
    })?;
    let mut levels = ts.levels.split_off(index);
    let Level {
        mut frame,
        floor,
        mut snapshot,
        attached_floor,
        ..
    } = levels.remove(0);
    let leftovers = ts.pushed.split_off(attached_floor.min(ts.pushed.len()));
    ts.frame.swap(&mut frame);
    ts.floor = floor;
    mem::swap(&mut ts.snapshot, &mut snapshot);
    Some(Box::new(LeftAttached {
        _frame: frame,
        _snapshot: snapshot,
        _rest: Abandoned { leftovers, levels },
    }))
}

/// Drops what a scope took with it, outside the state's borrow. No open borrow lends from
/// it: a borrow open across the scope began before the attach, in a context the scope
/// reinstalled (a value displaced meanwhile is retired by the displacing operation). A
/// `Drop` that panics while the thread is already unwinding is discarded, not an abort.
#[cold]
#[inline(never)]
fn drop_abandoned(abandoned: Box<LeftAttached>) {
    drop_unwinding_safely(abandoned);
}

/// What one non-scoped attach (`crate::attach`) displaced: the frame, floor and cached
/// snapshot of the level below, the id of the attached frame's top logical context, and the
/// attach's own id.
pub(crate) struct Level {
    pub(crate) frame: Frame,
    pub(crate) floor: usize,
    /// Empty if none was cached.
    pub(crate) snapshot: ExecutionContext,
    pub(crate) top_id: u64,
    /// The attach's id: a deferred attach's (with [`DEFERRED`]), or for a plain attach a
    /// number no other attach in the process gets (so an id used again after its detach,
    /// or on another thread, matches nothing, even when the same context is attached again).
    pub(crate) id: u64,
    /// The attached frame's floor: how many logical contexts were pushed when it became
    /// current.
    pub(crate) attached_floor: usize,
    /// The lookup cache's version for the displaced context, or 0 if unknown: detaching
    /// puts it back, as leaving a run does (nothing can change the displaced context while
    /// it is kept here).
    pub(crate) outer: u64,
}

/// Makes `frame` the current context at a new level, keeping the displaced one in the thread
/// state, and returns the attach's id (see [`Level::id`]). `stamp` is the frame's
/// lookup-cache stamp (see `run_in_frame`). `Err(frame)`, with nothing changed, during
/// thread teardown. Runs no user code: nothing is dropped.
#[inline]
pub(crate) fn attach_frame(frame: Frame, stamp: u64) -> Result<u64, Frame> {
    let mut given = Some(frame);
    let attached = with_state(|ts| {
        ts.materialize();
        let (outer, id) = cache::enter_with_id(stamp);
        push_level(ts, given.take().unwrap_or_default(), id, outer);
        id
    });
    attached.ok_or_else(|| given.take().unwrap_or_default())
}

/// Makes `frame` the current context at a new level (see [`attach_frame`]), on a state whose
/// lazily pushed logical contexts that belong below it are materialised.
#[inline]
fn push_level(ts: &mut ThreadState, mut frame: Frame, id: u64, outer: u64) {
    let top_id = frame.top.ensure_id();
    ts.frame.swap(&mut frame);
    let attached_floor = ts.pushed.len();
    let floor = mem::replace(&mut ts.floor, attached_floor);
    let snapshot = mem::take(&mut ts.snapshot);
    ts.levels.push(Level {
        frame,
        floor,
        snapshot,
        top_id,
        id,
        attached_floor,
        outer,
    });
}

/// Where a deferred attach's context comes from: `fetch(key)`, called once, on first use.
struct Pending {
    fetch: fn(u64) -> Option<Context>,
    key: u64,
    id: u64,
    /// The lookup cache's version for the context below (see [`Level::outer`]). While the
    /// attach is pending, the cache has a fresh version: nothing is cached for it.
    outer: u64,
}

/// Deferred attach ids carry this bit; logical context ids never reach it.
const DEFERRED: u64 = 1 << 63;

/// Records a deferred attach: `fetch(key)` gives the context to make current, and is called
/// by the first operation on this thread that uses the current context, or never if none
/// does before [`detach_deferred`]. Any deferred attach still pending is entered first, and
/// lazily pushed logical contexts are materialised (they belong below). Returns the attach's
/// id, or `None` during thread teardown. Runs no user code.
#[inline]
pub(crate) fn attach_deferred(fetch: fn(u64) -> Option<Context>, key: u64) -> Option<u64> {
    with_state(|ts| {
        ts.materialize();
        // An id no other attach in the process gets, on this thread or another (versions
        // never reach `DEFERRED`).
        let (outer, unique) = cache::renew_with_id();
        let id = DEFERRED | unique;
        ts.pending = Some(Pending {
            fetch,
            key,
            id,
            outer,
        });
        id
    })
}

/// Enters the pending deferred attach: fetches its context (outside the borrow: the fetch
/// is the caller's code and sees the context below) and makes it current at a new level,
/// below the logical contexts lazily pushed since the attach.
#[cold]
#[inline(never)]
fn enter_pending(state: &RefCell<ThreadState>) {
    let Some(pending) = state.borrow_mut().pending.take() else {
        return;
    };
    /// Lists the hidden pushes again, also if the fetch panics (each waiting push's end
    /// expects to find itself listed).
    struct Relist(*mut Pushed);

    impl Drop for Relist {
        fn drop(&mut self) {
            set_waiting_pushed(self.0);
        }
    }

    // The fetch sees the context below the attach: pushes waiting above it are hidden
    // meanwhile, as an entered run hides those below it, and it runs under a version of its
    // own, so that what it might read (it must not) is cached under no version that
    // describes another context.
    let pushed = waiting_pushed();
    set_waiting_pushed(std::ptr::null_mut());
    let relist = Relist(pushed);
    cache::invalidate_all();
    // The fetch is user code: it must not attach or detach, but if it does, the context
    // below this attach is no longer the one `outer` describes (a detach may even have
    // dropped it), and `outer` must not come back when the attach ends.
    let before = state.borrow().attach_signature();
    // A source with nothing to give: an empty context, never the one below.
    let context = (pending.fetch)(pending.key).unwrap_or_default();
    drop(relist);
    let mut ts = state.borrow_mut();
    let mut outer = pending.outer;
    if ts.attach_signature() != before {
        outer = 0;
    }
    if ts.pending.is_some() {
        // The fetch attached again (it must not): enter that first, so levels stay ordered.
        // The context below this attach is then that one, whose version is not `outer`.
        drop(ts);
        enter_pending(state);
        ts = state.borrow_mut();
        outer = 0;
    }
    let lazy = take_lazy();
    push_level(&mut ts, context.frame, pending.id, outer);
    set_lazy(lazy);
    drop(ts);
    if pushed.is_null() {
        // The context's entries from its last attach or run on this thread are warm again.
        cache::enter(context.stamp);
    } else {
        // Pushes wait above the attached context: the current context is they over it,
        // which no stamp of the attached context describes.
        cache::invalidate_all();
    }
}

/// Leaves the deferred attach `id`: `Ok(None)` if it was never entered (nothing changed but
/// the pending record), `Ok(Some(..))` with what [`detach_frame`] hands back if it was.
/// `Err(())`, with nothing changed, if it is not the current attach at this scope level.
#[inline]
pub(crate) fn detach_deferred(id: u64) -> Result<Option<Detached>, ()> {
    leave_deferred(id, false)
}

/// [`detach_deferred`], except that attaches made above it and still attached end with it,
/// as at the end of a run (see [`end_level`]).
pub(crate) fn end_deferred(id: u64) -> Result<Option<Detached>, ()> {
    leave_deferred(id, true)
}

/// [`detach_deferred`] (`end`: [`end_deferred`]).
#[inline]
fn leave_deferred(id: u64, end: bool) -> Result<Option<Detached>, ()> {
    STATE
        .try_with(|state| {
            // A waiting run or logical context push began after the attach (an attach enters
            // what waits first) and has not ended: the attach is not current at this scope
            // level. Refused as it is, without entering anything: entering a pending attach
            // runs its fetch, user code that a refusal must not run.
            if !waiting().is_null() || !waiting_pushed().is_null() {
                return Err(());
            }
            let ts = &mut *state.borrow_mut();
            // A lazily pushed logical context lies above the attach: it is still in a scope,
            // which will pop it, so the attach is not current at this scope level.
            if lazy() > 0 {
                return Err(());
            }
            if let Some(pending) = &ts.pending
                && pending.id == id
            {
                // Never entered: the context below is as the attach found it, and so are
                // its cache entries.
                cache::leave(pending.outer);
                ts.pending = None;
                return Ok(None);
            }
            let index = match ts.levels.last() {
                Some(top) if top.id == id => ts.levels.len() - 1,
                _ => match ts.levels.iter().rposition(|level| level.id == id) {
                    Some(index) => index,
                    None => return Err(()),
                },
            };
            if !end {
                if ts.pending.is_some() {
                    // Another deferred attach waits above it.
                    return Err(());
                }
                return leave(ts, id).map(Some).ok_or(());
            }
            end_checked(ts, index).map(Some)
        })
        .unwrap_or(Err(()))
}

/// [`detach_frame`], except that attaches made above it and still attached end with it, as
/// at the end of a run (see [`end_level`]). `Err(())`, with nothing changed, if the attach
/// `id` is not on this thread's stack, or if a run or a logical-context scope opened since
/// it is still open.
pub(crate) fn end_frame(id: u64) -> Result<Detached, ()> {
    STATE
        .try_with(|state| {
            // As in `leave_deferred`: a run or push that waits began after the attach and is
            // still open; refused without entering anything.
            if !waiting().is_null() || !waiting_pushed().is_null() {
                return Err(());
            }
            let ts = &mut *state.borrow_mut();
            if id == 0 || lazy() > 0 {
                return Err(());
            }
            let index = ts
                .levels
                .iter()
                .rposition(|level| level.id == id)
                .ok_or(())?;
            end_checked(ts, index)
        })
        .unwrap_or(Err(()))
}

/// Ends attach level `index` and what lies above it, if nothing opened since at this scope
/// level is still open; `Err(())`, with nothing changed, otherwise.
fn end_checked(ts: &mut ThreadState, index: usize) -> Result<Detached, ()> {
    // Only what was made at this scope level since the attach ends with it: a run entered
    // since, or a logical context pushed since, is still open around the caller, and its
    // own end will restore what it changed (ending the attach under it would leave that end
    // nothing consistent to restore).
    if index < ts.run_levels || ts.pushed.len() != ts.levels[index].attached_floor {
        return Err(());
    }
    if let Some(pending) = ts.pending.take() {
        // A deferred attach made above it, never entered, ends with it (as with the end of
        // a run): the frame is as that attach found it.
        cache::leave(pending.outer);
    }
    Ok(end_level(ts, index))
}

/// At the end of a scope that set a variable when it began (`ContextVar::scope`, a
/// `ScopeFuture`'s poll), before anything else: the set entered whatever waited, so a
/// deferred attach still pending was made by the scope's code and never used. Like the
/// attaches that code left (see [`end_attaches_over`]), it ends with the scope, and as it
/// was never entered, nothing is fetched (no user code runs), as at the end of a run.
///
/// `context` is the id of the logical context the scope's set was made in: only if it is
/// still the current one, or one that an attach made at this scope level displaced, did the
/// pending attach come from the scope's code. (If that code detached the context the scope
/// began in, the scope leaves everything as the code left it.)
#[inline]
pub(crate) fn discard_pending(context: u64) {
    let _ = STATE.try_with(|state| {
        if let Ok(mut ts) = state.try_borrow_mut()
            && ts.pending.is_some()
            && waiting().is_null()
            && waiting_pushed().is_null()
            && (ts.frame.top.id == context
                || ts.levels[ts.run_levels..]
                    .iter()
                    .any(|level| level.frame.top.id == context))
            && let Some(pending) = ts.pending.take()
        {
            cache::leave(pending.outer);
        }
    });
}

/// Ends the attaches made since `context` (a logical context's id) was the topmost logical
/// context at this scope level, and left attached: the level that displaced it and every
/// level above. For a scope whose code left an attach behind (`ContextVar::scope`, a
/// `ScopeFuture`'s poll): the scope's reset then applies where its set was made, as a run's
/// end takes the attaches made inside it. Refused (`None`, nothing changed) when no level
/// at this scope level displaced `context`, or when a run or logical-context scope opened
/// since is still open (see [`end_checked`]). Runs no user code when nothing waits to be
/// entered (after [`discard_pending`], and the reset before it, which entered the rest).
#[cold]
#[inline(never)]
pub(crate) fn end_attaches_over(context: u64) -> Option<Detached> {
    with_state(|ts| {
        if context == 0 || lazy() > 0 {
            return None;
        }
        let index = ts.run_levels
            + ts.levels[ts.run_levels..]
                .iter()
                .position(|level| level.frame.top.id == context)?;
        end_checked(ts, index).ok()
    })
    .flatten()
}

/// What [`detach_frame`] took off the thread: the attached frame, its stale cached
/// snapshot, and whatever was left above it (normally nothing). The caller drops or retires
/// all but the frame, outside the borrow.
pub(crate) struct Detached {
    pub(crate) frame: Frame,
    /// Empty if none was cached.
    pub(crate) snapshot: ExecutionContext,
    pub(crate) rest: Option<Box<Abandoned>>,
    /// The cache version of the context reinstalled, if it is known and still describes it
    /// (nothing was left above the detached level), else 0.
    pub(crate) outer: u64,
}

/// Left behind above a detached level: logical contexts pushed and never popped, and
/// attach levels above it (neither is left by the scoped API: scopes and runs that end take
/// theirs with them).
pub(crate) struct Abandoned {
    pub(crate) leftovers: Vec<LogicalContext>,
    pub(crate) levels: Vec<Level>,
}

/// Leaves the attach `id` (see [`Level::id`]), if the context it attached is the current one
/// at this scope level: reinstalls what the attach displaced and hands back the attached
/// frame. Attaches above it (made inside scopes that have ended) are discarded with it.
/// `None`, with nothing changed, otherwise. Runs no user code.
#[inline]
pub(crate) fn detach_frame(id: u64) -> Option<Detached> {
    STATE
        .try_with(|state| {
            // What waits began after every attach level (an attach enters it first), and a
            // pending deferred attach lies above them all: the attach is not current, and
            // the refusal enters nothing (a pending attach's fetch is user code).
            if !waiting().is_null() || !waiting_pushed().is_null() {
                return None;
            }
            let ts = &mut *state.borrow_mut();
            if ts.pending.is_some() {
                return None;
            }
            leave(ts, id)
        })
        .ok()
        .flatten()
}

/// [`detach_frame`] on a borrowed state.
#[inline]
fn leave(ts: &mut ThreadState, id: u64) -> Option<Detached> {
    // A lazily pushed logical context is above the attached one.
    if id == 0 || lazy() > 0 {
        return None;
    }
    let index = match ts.levels.last() {
        Some(top) if top.id == id => ts.levels.len() - 1,
        _ => ts.levels.iter().rposition(|level| level.id == id)?,
    };
    // The attached frame must be the current one (not a run's or a scope's opened since).
    if ts.frame.top.id != ts.levels[index].top_id {
        return None;
    }
    Some(end_level(ts, index))
}

/// Ends the attach level `index` and every level above it: what the level displaced is the
/// current context again, and the current context is handed back as the attached frame. So
/// when attaches made above it are still attached, the frame handed back is the topmost of
/// them (still the current context), as at the end of a run, and what they displaced
/// (including the level's own attached frame) goes with [`Detached::rest`]. Runs no user code.
fn end_level(ts: &mut ThreadState, index: usize) -> Detached {
    let rest = if index + 1 < ts.levels.len() || ts.pushed.len() > ts.floor {
        Some(abandon_above(ts, index))
    } else {
        None
    };
    let Level {
        mut frame,
        floor,
        mut snapshot,
        outer,
        ..
    } = ts.levels.pop().expect("the level is on the stack");
    ts.frame.swap(&mut frame);
    ts.floor = floor;
    mem::swap(&mut ts.snapshot, &mut snapshot);
    Detached {
        frame,
        snapshot,
        outer: if rest.is_none() { outer } else { 0 },
        rest,
    }
}

/// Splits off what lies above level `index` and the current floor (see [`Abandoned`]).
#[cold]
#[inline(never)]
fn abandon_above(ts: &mut ThreadState, index: usize) -> Box<Abandoned> {
    Box::new(Abandoned {
        leftovers: ts.pushed.split_off(ts.floor.min(ts.pushed.len())),
        levels: ts.levels.split_off(index + 1),
    })
}

/// Keeps alive, until no borrow open on this thread lends it, each value of `maps` that a
/// borrow may be lending (see [`is_lent`]); the others may be dropped at once. For
/// callers that were told a borrow is open by `cache::check_borrowed` (or
/// `invalidate_all_and_check_borrowed`), and are about to let go of these maps.
///
/// A value already retired is not retired again: a long borrow lends a value that every
/// context detached under it may share (one inherited by tasks, say), and the list must not
/// grow with each detach.
pub(crate) fn retire_lent<'a>(maps: impl IntoIterator<Item = &'a crate::value::VarMap>) {
    for map in maps {
        for (_, value) in map {
            if is_lent(value) {
                let _ = STATE.try_with(|state| {
                    let retired = &mut state.borrow_mut().retired;
                    let start = value.shared_range().map(|(start, _)| start);
                    let known = retired
                        .iter()
                        .any(|Retired(held)| held.shared_range().map(|(start, _)| start) == start);
                    if !known {
                        // Cloning an `Arc` runs no user code inside the borrow.
                        retired.push(Retired(value.clone()));
                    }
                });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::panic::{self, AssertUnwindSafe};

    use crate::cache::is_cached;
    use crate::{ContextVar, LogicalContext, get_execution_context, run_with_logical_context};

    /// After a non-empty logical context is popped, the reads made below it before the push
    /// are cache hits again (unless a read inside took their entry), and serve what the
    /// context below holds, also when the pushed one set the same variable or the scope
    /// panicked.
    #[test]
    fn the_cache_below_a_popped_logical_context_is_warm_again() {
        static A: ContextVar<String> = ContextVar::new("a");
        static B: [ContextVar<u64>; 2] = [ContextVar::new("b0"), ContextVar::new("b1")];
        std::thread::spawn(|| {
            // `b` must not share A's cache slot, or its reads would evict A's entry. Variable
            // ids come from a process-wide counter, which other tests draw from meanwhile;
            // two taken one after the other cannot both share A's slot unless 32 ids were
            // drawn in between.
            let (b0, b1) = (B[0].id(), B[1].id());
            let b = if crate::cache::same_slot(A.id(), b0) {
                &B[1]
            } else {
                &B[0]
            };
            assert!(!crate::cache::same_slot(A.id(), b.id()), "{b0:?} {b1:?}");
            A.set("below".into());
            assert_eq!(A.get().as_deref(), Some("below"));
            assert!(is_cached(A.id()));
            let mut lc = LogicalContext::new();
            run_with_logical_context(&mut lc, || drop(b.set(1)));
            // That pop invalidated the cache (see the next test): read again.
            assert_eq!(A.get().as_deref(), Some("below"));
            assert!(is_cached(A.id()));
            // Non-empty: pushing it changes lookups.
            run_with_logical_context(&mut lc, || {
                assert!(!is_cached(A.id()));
                assert_eq!(b.get(), Some(1));
                b.set(2);
            });
            assert!(is_cached(A.id()));
            assert_eq!(A.get().as_deref(), Some("below"));
            assert_eq!(b.get(), None);
            assert_eq!(lc.get(b), Some(2));
            // A read inside takes the variable's entry; the pop does not bring it back.
            run_with_logical_context(&mut lc, || {
                assert_eq!(A.get().as_deref(), Some("below"));
                A.set("inside".into());
                assert_eq!(A.get().as_deref(), Some("inside"));
                assert!(is_cached(A.id()));
            });
            assert!(!is_cached(A.id()));
            assert_eq!(A.get().as_deref(), Some("below"));
            assert_eq!(lc.get(&A).as_deref(), Some("inside"));
            // The snapshot of the context below is right too.
            assert_eq!(get_execution_context().get(&A).as_deref(), Some("below"));
            assert!(is_cached(A.id()));
            let panicked = panic::catch_unwind(AssertUnwindSafe(|| {
                run_with_logical_context(&mut lc, || {
                    b.set(3);
                    panic!("inside the scope");
                })
            }));
            assert!(panicked.is_err());
            assert!(is_cached(A.id()));
            assert_eq!(A.get().as_deref(), Some("below"));
            assert_eq!(b.get(), None);
            assert_eq!(lc.get(b), Some(3));
        })
        .join()
        .unwrap();
    }

    /// A logical context pushed empty and set inside changes lookups only from the set on:
    /// its pop invalidates the cache, since the push kept the version.
    #[test]
    fn a_logical_context_pushed_empty_and_set_inside_invalidates_on_pop() {
        static A: ContextVar<u64> = ContextVar::new("a");
        std::thread::spawn(|| {
            A.set(1);
            assert_eq!(A.get(), Some(1));
            let mut lc = LogicalContext::new();
            run_with_logical_context(&mut lc, || {
                // Pushed lazily: the cache is kept.
                assert!(is_cached(A.id()));
                A.set(2);
                assert_eq!(A.get(), Some(2));
            });
            assert!(!is_cached(A.id()));
            assert_eq!(A.get(), Some(1));
            assert_eq!(lc.get(&A), Some(2));
        })
        .join()
        .unwrap();
    }

    /// Contexts detached under a long borrow that share the lent value (inherited by every
    /// task, say) retire it once, not once per detach.
    #[test]
    fn detaches_under_a_long_borrow_retire_a_shared_lent_value_once() {
        static CONFIG: ContextVar<String> = ContextVar::new("config");
        static V: ContextVar<u64> = ContextVar::new("v");
        std::thread::spawn(|| {
            CONFIG.set("server".into());
            CONFIG.with(|config| {
                for turn in 0..50 {
                    let id = crate::attach(crate::copy_context()).unwrap();
                    V.set(turn);
                    drop(crate::detach(id).unwrap());
                }
                let retired = super::STATE.with(|state| state.borrow().retired.len());
                assert_eq!(retired, 1);
                assert_eq!(config.map(String::as_str), Some("server"));
            });
            assert_eq!(super::STATE.with(|state| state.borrow().retired.len()), 0);
        })
        .join()
        .unwrap();
    }
}
