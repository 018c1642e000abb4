//! Runtime-level propagation: tokio's task hooks drive one [`TaskContext`] per task.
//! Compiled only with `--cfg tokio_unstable` (tokio's task hooks are unstable API).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_utils::atomic::AtomicCell;
use parking_lot::Mutex;
use tokio::runtime::{Builder, TaskMeta};

use contextvars::Context;

use crate::task_context::TaskContext;

/// A hook as tokio takes it.
type Hook = Arc<dyn Fn(&TaskMeta<'_>) + Send + Sync>;

/// Your own task hooks, chained with the propagation hooks by [`propagate_with`].
///
/// tokio keeps one callback per hook, and a [`Builder`] cannot say whether one is set, so
/// hooks you need besides propagation (metrics, tracing) go here instead of on the builder.
/// Spawn and before-poll hooks run after the task's context is captured or entered, so
/// they see it; after-poll and terminate hooks run before it is exited or released.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use exec_context::tokio::{TaskHooks, propagate_with};
///
/// let spawned = Arc::new(AtomicUsize::new(0));
/// let counter = spawned.clone();
/// let mut builder = tokio::runtime::Builder::new_current_thread();
/// propagate_with(
///     &mut builder,
///     TaskHooks::new().on_task_spawn(move |_| {
///         counter.fetch_add(1, Ordering::Relaxed);
///     }),
/// );
/// let runtime = builder.build().unwrap();
/// runtime.block_on(async { tokio::spawn(async {}).await.unwrap() });
/// assert_eq!(spawned.load(Ordering::Relaxed), 1);
/// ```
#[derive(Clone, Default)]
pub struct TaskHooks {
    spawn: Option<Hook>,
    before_poll: Option<Hook>,
    after_poll: Option<Hook>,
    terminate: Option<Hook>,
}

impl TaskHooks {
    /// No hooks of your own.
    pub fn new() -> Self {
        TaskHooks::default()
    }

    /// Like [`Builder::on_task_spawn`]; runs after the task's context was captured.
    pub fn on_task_spawn(mut self, f: impl Fn(&TaskMeta<'_>) + Send + Sync + 'static) -> Self {
        self.spawn = Some(Arc::new(f));
        self
    }

    /// Like [`Builder::on_before_task_poll`]; runs inside the task's context.
    pub fn on_before_task_poll(
        mut self,
        f: impl Fn(&TaskMeta<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.before_poll = Some(Arc::new(f));
        self
    }

    /// Like [`Builder::on_after_task_poll`]; runs inside the task's context.
    pub fn on_after_task_poll(mut self, f: impl Fn(&TaskMeta<'_>) + Send + Sync + 'static) -> Self {
        self.after_poll = Some(Arc::new(f));
        self
    }

    /// Like [`Builder::on_task_terminate`]; runs before the task's context is released.
    pub fn on_task_terminate(mut self, f: impl Fn(&TaskMeta<'_>) + Send + Sync + 'static) -> Self {
        self.terminate = Some(Arc::new(f));
        self
    }
}

impl fmt::Debug for TaskHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHooks")
            .field("on_task_spawn", &self.spawn.is_some())
            .field("on_before_task_poll", &self.before_poll.is_some())
            .field("on_after_task_poll", &self.after_poll.is_some())
            .field("on_task_terminate", &self.terminate.is_some())
            .finish()
    }
}

/// Gives every task spawned on the runtime `builder` builds its own execution context: a
/// snapshot of its spawner's context taken at spawn (without variables that opted out of
/// inheritance), current during each of its polls, carried across worker threads, and
/// released when the task ends, is aborted or is dropped at shutdown. Plain `tokio::spawn`,
/// `JoinSet::spawn`, `Handle::spawn` and spawns inside libraries all get it.
///
/// Sets the builder's `on_task_spawn`, `on_before_task_poll`, `on_after_task_poll` and
/// `on_task_terminate` hooks: a hook set on the builder *after* this call replaces ours (pass
/// your hooks to [`propagate_with`] instead). What the hooks do not reach is listed in the
/// [module docs](crate::tokio#what-the-hooks-do-not-reach).
///
/// ```
/// use contextvars::ContextVar;
///
/// static TENANT: ContextVar<&str> = ContextVar::new("tenant");
///
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// exec_context::tokio::propagate(&mut builder);
/// let runtime = builder.worker_threads(2).build().unwrap();
/// runtime.block_on(async {
///     TENANT.set("acme");
///     let seen = tokio::spawn(async { TENANT.get() }).await.unwrap(); // no wrapper
///     assert_eq!(seen, Some("acme"));
/// });
/// ```
pub fn propagate(builder: &mut Builder) -> &mut Builder {
    propagate_with(builder, TaskHooks::new())
}

/// [`propagate`], with your own task hooks chained to ours (see [`TaskHooks`]).
pub fn propagate_with(builder: &mut Builder, hooks: TaskHooks) -> &mut Builder {
    let TaskHooks {
        spawn: user_spawn,
        before_poll: user_before_poll,
        after_poll: user_after_poll,
        terminate: user_terminate,
    } = hooks;
    let on_spawn = move |meta: &TaskMeta<'_>| {
        spawned(key(meta));
        if let Some(hook) = &user_spawn {
            hook(meta);
        }
    };
    let on_before = move |meta: &TaskMeta<'_>| {
        before_poll(key(meta));
        if let Some(hook) = &user_before_poll {
            hook(meta);
        }
    };
    let on_after = move |meta: &TaskMeta<'_>| {
        if let Some(hook) = &user_after_poll {
            hook(meta);
        }
        after_poll(key(meta));
    };
    let on_terminate = move |meta: &TaskMeta<'_>| {
        if let Some(hook) = &user_terminate {
            hook(meta);
        }
        terminated(key(meta));
    };
    builder
        .on_task_spawn(on_spawn)
        .on_before_task_poll(on_before)
        .on_after_task_poll(on_after)
        .on_task_terminate(on_terminate)
}

/// tokio's task ids are unique for the life of the process and never reused; this is the
/// id's number (tokio hashes it as one `u64`).
#[inline]
fn key(meta: &TaskMeta<'_>) -> u64 {
    let mut bits = IdBits(0);
    meta.id().hash(&mut bits);
    bits.0
}

/// Reads the number out of a task id.
struct IdBits(u64);

impl Hasher for IdBits {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0 << 8 | u64::from(byte);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

/// Sequential ids spread over a table by a multiplication.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8 | u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

// The registry: one process-wide table for every runtime built with `propagate` (task ids
// are unique across runtimes).
//
// A task's context waits between polls in a slot of a slab, found by a small index that the
// task keeps for its whole life. Moving the context out of the slot and back is one atomic
// swap each way: the only synchronisation on the poll path. The index is found through a
// per-thread cache of recent (id, index) pairs, filled at spawn and on a miss from a sharded
// map that only spawn, a cache miss and termination lock. An entry of that cache stays right
// for as long as its task lives (the index is freed only when the task terminates, and ids
// are never reused), and a dead task's id is never looked up again.

/// Shards of the id → index map: enough that spawning threads rarely meet on one lock.
const SHARDS: usize = 64;

/// Entries of the per-thread (id, index) cache.
const CACHED: usize = 64;

/// The first slab chunk holds `1 << FIRST_BITS` slots; each next one twice as many.
const FIRST_BITS: u32 = 6;

/// Chunks of the slab: up to 2^32 slots in all.
const CHUNKS: usize = 32 - FIRST_BITS as usize;

/// Where a task's context waits between polls: `None` while a poll holds it.
type Slot = AtomicCell<Option<Box<TaskContext>>>;

/// The slab's chunks, allocated on first use and never moved or freed.
static SLAB: [OnceLock<Box<[Slot]>>; CHUNKS] = [const { OnceLock::new() }; CHUNKS];

/// Indices never handed out yet start here.
static NEXT_INDEX: AtomicU32 = AtomicU32::new(0);

/// One shard of the id → index map, with the indices its terminated tasks freed.
struct Shard {
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    free: Vec<u32>,
}

static MAP: [CachePadded<Mutex<Shard>>; SHARDS] = [const {
    CachePadded(parking_lot::const_mutex(Shard {
        index: HashMap::with_hasher(BuildHasherDefault::new()),
        free: Vec::new(),
    }))
}; SHARDS];

/// Keeps each shard's lock on a cache line of its own.
#[repr(align(128))]
struct CachePadded<T>(T);

/// A poll in progress on this thread.
struct Polled {
    id: u64,
    index: u32,
    /// The entered context (`None`: the task has none, or it could not be entered).
    context: Option<Box<TaskContext>>,
    /// The task terminated during this poll: release the context when the poll ends.
    ended: bool,
}

std::thread_local! {
    /// Recent tasks' slab indices, by id (direct-mapped).
    static INDICES: [Cell<(u64, u32)>; CACHED] = const { [const { Cell::new((0, 0)) }; CACHED] };
    /// The tasks being polled on this thread (polls nest when a runtime is driven inside a
    /// task), with their entered contexts.
    static POLLING: RefCell<Vec<Polled>> = const { RefCell::new(Vec::new()) };
    /// The last task that terminated here without having been registered: on a runtime that
    /// is shutting down, tokio terminates a new task *before* its spawn hook runs.
    static UNREGISTERED_END: Cell<u64> = const { Cell::new(0) };
    /// Boxes of released contexts (emptied), reused by the next spawns on this thread.
    #[allow(clippy::vec_box, reason = "the boxes are what is reused")]
    static SPARE: RefCell<Vec<Box<TaskContext>>> = const { RefCell::new(Vec::new()) };
}

/// Spare boxes kept per thread.
const SPARE_MAX: usize = 64;

/// A box holding `context`: a spare one if this thread has one.
fn boxed(context: TaskContext) -> Box<TaskContext> {
    match SPARE.try_with(|spare| spare.borrow_mut().pop()) {
        Ok(Some(mut spare)) => {
            // The spare holds an empty, exited context: replacing it drops nothing of note.
            *spare = context;
            spare
        }
        _ => Box::new(context),
    }
}

/// Releases a task's context (its values are dropped here, outside every borrow) and keeps
/// the box for a later spawn.
fn release(mut context: Box<TaskContext>) {
    if context.is_entered() {
        // Left entered by an unbalanced scope: dropping it exits it if it can.
        drop(context);
        return;
    }
    drop(std::mem::replace(
        &mut *context,
        // `Context::default()`: an empty placeholder that reads nothing from the current
        // context (`Context::new()` would copy its pinned values into the spare box).
        TaskContext::from_context(Context::default()),
    ));
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_MAX {
            spare.push(context);
        }
    });
}

/// Yields to the scheduler this many times while waiting for a context that a poll ending
/// on another thread is about to put back, then sleeps between looks.
const HANDOVER_SPINS: u32 = 1_000;

#[inline]
fn shard(id: u64) -> &'static Mutex<Shard> {
    // The top bits of the multiplied id: consecutive ids land on different shards.
    &MAP[(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS].0
}

#[inline]
fn slot(index: u32) -> &'static Slot {
    let position = u64::from(index) + (1 << FIRST_BITS);
    let chunk = (63 - position.leading_zeros() - FIRST_BITS) as usize;
    let offset = (position - ((1 << FIRST_BITS) << chunk)) as usize;
    let slots = SLAB[chunk].get_or_init(|| {
        (0..(1usize << FIRST_BITS) << chunk)
            .map(|_| AtomicCell::new(None))
            .collect()
    });
    &slots[offset]
}

#[inline]
fn remember(id: u64, index: u32) {
    INDICES.with(|cache| cache[id as usize % CACHED].set((id, index)));
}

/// The slab index of live task `id`, if it was registered.
#[inline]
fn index_of(id: u64) -> Option<u32> {
    let cached = INDICES.with(|cache| cache[id as usize % CACHED].get());
    if cached.0 == id {
        return Some(cached.1);
    }
    let index = shard(id).lock().index.get(&id).copied()?;
    remember(id, index);
    Some(index)
}

/// Takes task `id`'s context out of its slot. An empty slot means a poll of the task that
/// just ended on another thread has not put it back yet (tokio may hand the task to
/// another worker before that poll's after-poll hook runs): wait for it.
fn take(index: u32, id: u64) -> Option<Box<TaskContext>> {
    let slot = slot(index);
    if let Some(context) = slot.take() {
        return Some(context);
    }
    take_slow(slot, id)
}

#[cold]
#[inline(never)]
fn take_slow(slot: &Slot, id: u64) -> Option<Box<TaskContext>> {
    if polling_here(id) {
        // A repeated poll hook for a task this thread is polling: nothing to enter.
        return None;
    }
    // No time limit: the other thread is one hook call away from putting the context back
    // (tokio runs the after-poll hook right after the poll, also when the future panicked).
    // Giving up would poll the task without its context, or free the slot under a late
    // put-back that would then land in another task's slot.
    let mut looks = 0u32;
    loop {
        if looks < HANDOVER_SPINS {
            looks += 1;
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
        if let Some(context) = slot.take() {
            return Some(context);
        }
    }
}

fn polling_here(id: u64) -> bool {
    POLLING.with(|polling| polling.borrow().iter().any(|polled| polled.id == id))
}

/// On the spawning thread: capture the spawner's context.
fn spawned(id: u64) {
    if UNREGISTERED_END.with(|end| end.get() == id) {
        // Already terminated (spawned onto a runtime that is shutting down).
        UNREGISTERED_END.with(|end| end.set(0));
        return;
    }
    let context = boxed(TaskContext::capture());
    let (index, displaced) = {
        let mut shard = shard(id).lock();
        let index = match shard.free.pop() {
            Some(index) => index,
            None => NEXT_INDEX.fetch_add(1, Ordering::Relaxed),
        };
        let displaced = slot(index).swap(Some(context));
        shard.index.insert(id, index);
        (index, displaced)
    };
    // Always `None`: a freed slot is empty. Dropped outside the lock regardless.
    drop(displaced);
    remember(id, index);
}

fn before_poll(id: u64) {
    let (index, context) = match index_of(id) {
        Some(index) => (index, take(index, id)),
        None => (0, None),
    };
    let context = context.and_then(|mut context| match context.enter() {
        Ok(()) => Some(context),
        Err(_) => {
            // Thread teardown: nothing can be entered; keep the context for later.
            drop(slot(index).swap(Some(context)));
            None
        }
    });
    POLLING.with(|polling| {
        polling.borrow_mut().push(Polled {
            id,
            index,
            context,
            ended: false,
        });
    });
}

fn after_poll(id: u64) {
    let popped = POLLING.with(|polling| {
        let mut polling = polling.borrow_mut();
        match polling.last() {
            Some(top) if top.id == id => polling.pop(),
            _ => None,
        }
    });
    let Some(Polled {
        index,
        context: Some(mut context),
        ended,
        ..
    }) = popped
    else {
        return;
    };
    // Fails only if the task left a scope unbalanced; the context then stays entered
    // until the scope below it is left, and is released with the task.
    let _ = context.exit();
    if ended {
        release(context);
    } else {
        // Always `None` (this poll took the context out).
        drop(slot(index).swap(Some(context)));
    }
}

/// The task ended, was aborted, or was dropped at shutdown.
fn terminated(id: u64) {
    // `Some(whether the poll holds the context)` when terminated inside its own poll here.
    let in_own_poll = POLLING.with(|polling| {
        let mut polling = polling.borrow_mut();
        let polled = polling.iter_mut().rev().find(|polled| polled.id == id)?;
        // Released when the poll ends.
        polled.ended = true;
        Some(polled.context.is_some())
    });
    let Some(index) = shard(id).lock().index.remove(&id) else {
        if in_own_poll.is_none() {
            UNREGISTERED_END.with(|end| end.set(id));
        }
        return;
    };
    let context = match in_own_poll {
        Some(true) => None,
        // That poll could not enter the context and left it in the slot.
        Some(false) => slot(index).take(),
        None => take(index, id),
    };
    shard(id).lock().free.push(index);
    // Released outside every lock: a value's `Drop` may run any code.
    if let Some(context) = context {
        release(context);
    }
}
