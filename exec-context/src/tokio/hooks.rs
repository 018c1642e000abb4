//! Runtime-level propagation: tokio's task hooks give every task a context of its own,
//! entered lazily (`contextvars::attach_deferred`) around each poll.
//! Compiled only with `--cfg tokio_unstable` (tokio's task hooks are unstable API).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_utils::atomic::AtomicCell;
use parking_lot::Mutex;
use tokio::runtime::{Builder, TaskMeta};

use contextvars::{Context, DeferredId, attach_deferred, end_deferred};

use crate::task::spawn_context;

/// A hook as tokio takes it.
type Hook = Arc<dyn Fn(&TaskMeta<'_>) + Send + Sync>;

/// Your own task hooks, chained with the propagation hooks by [`propagate_with`].
///
/// tokio keeps one callback per hook, and a [`Builder`] cannot say whether one is set, so
/// hooks you need besides propagation (metrics, tracing) go here instead of on the builder.
/// Spawn hooks run in the spawner's context, after the task's snapshot was taken (what they
/// set does not reach the task). Before-poll hooks run in the task's context, before its
/// poll. Terminate hooks run before the task's context is released: in it when the task
/// ends within a poll of its own, and in the terminating thread's context otherwise (a task
/// aborted before it ran, or dropped at the runtime's shutdown). After-poll hooks run after
/// the task's context is put back, where another worker's poll of the task may already take
/// it, in a copy of it as the poll left it: they read the task's variables, and what they
/// set stays in the hook. (After a poll that did not use the context, the copy is fetched
/// only if the hook reads a variable, and that fetch waits, as a poll does, if another
/// worker is polling the task already: an after-poll hook must not read a variable while it
/// holds a lock that a task's poll may wait for.)
///
/// A hook of yours that panics does not strand the task's context: if your before-poll hook
/// panics, the task's context is left again before the panic goes on (tokio then skips the
/// poll); after your after-poll or terminate hook panics, the context is still put back or
/// released. The panic itself reaches tokio, as it would without propagation.
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
    /// No hooks of your own: [`propagate_with`] with these is [`propagate`].
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::tokio::{TaskHooks, propagate_with};
    ///
    /// static TENANT: ContextVar<&str> = ContextVar::new("tenant");
    ///
    /// let mut builder = tokio::runtime::Builder::new_current_thread();
    /// propagate_with(&mut builder, TaskHooks::new());
    /// let runtime = builder.build().unwrap();
    /// let seen = runtime.block_on(async {
    ///     TENANT.set("acme");
    ///     tokio::spawn(async { TENANT.get() }).await.unwrap()
    /// });
    /// assert_eq!(seen, Some("acme"));
    /// ```
    pub fn new() -> Self {
        TaskHooks::default()
    }

    /// Like [`Builder::on_task_spawn`]; runs in the spawner's context, after the task's
    /// was captured.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use contextvars::ContextVar;
    /// use exec_context::tokio::{TaskHooks, propagate_with};
    ///
    /// static TENANT: ContextVar<&str> = ContextVar::new("tenant");
    ///
    /// let spawners = Arc::new(Mutex::new(Vec::new()));
    /// let seen = spawners.clone();
    /// let mut builder = tokio::runtime::Builder::new_current_thread();
    /// propagate_with(
    ///     &mut builder,
    ///     TaskHooks::new().on_task_spawn(move |_| seen.lock().unwrap().push(TENANT.get())),
    /// );
    /// let runtime = builder.build().unwrap();
    /// runtime.block_on(async {
    ///     TENANT.set("acme");
    ///     tokio::spawn(async {}).await.unwrap();
    /// });
    /// assert_eq!(*spawners.lock().unwrap(), [Some("acme")]);
    /// ```
    pub fn on_task_spawn(mut self, f: impl Fn(&TaskMeta<'_>) + Send + Sync + 'static) -> Self {
        self.spawn = Some(Arc::new(f));
        self
    }

    /// Like [`Builder::on_before_task_poll`]; runs inside the task's context.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use contextvars::ContextVar;
    /// use exec_context::tokio::{TaskHooks, propagate_with};
    ///
    /// static TENANT: ContextVar<&str> = ContextVar::new("tenant");
    ///
    /// let polls = Arc::new(AtomicUsize::new(0));
    /// let counter = polls.clone();
    /// let mut builder = tokio::runtime::Builder::new_current_thread();
    /// propagate_with(
    ///     &mut builder,
    ///     TaskHooks::new().on_before_task_poll(move |_| {
    ///         // The task's variables are readable here.
    ///         if TENANT.get() == Some("acme") {
    ///             counter.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     }),
    /// );
    /// let runtime = builder.build().unwrap();
    /// runtime.block_on(async {
    ///     TENANT.set("acme");
    ///     tokio::spawn(async { tokio::task::yield_now().await }).await.unwrap();
    /// });
    /// assert_eq!(polls.load(Ordering::Relaxed), 2); // the task's two polls
    /// ```
    pub fn on_before_task_poll(
        mut self,
        f: impl Fn(&TaskMeta<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.before_poll = Some(Arc::new(f));
        self
    }

    /// Like [`Builder::on_after_task_poll`]; runs after the task's context is put back, in
    /// a copy of it (what it sets does not reach the task; see above).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use contextvars::ContextVar;
    /// use exec_context::tokio::{TaskHooks, propagate_with};
    ///
    /// static TENANT: ContextVar<&str> = ContextVar::new("tenant");
    ///
    /// let polls = Arc::new(AtomicUsize::new(0));
    /// let counter = polls.clone();
    /// let mut builder = tokio::runtime::Builder::new_current_thread();
    /// propagate_with(
    ///     &mut builder,
    ///     TaskHooks::new().on_after_task_poll(move |_| {
    ///         // The task's variables are readable here.
    ///         if TENANT.get() == Some("acme") {
    ///             counter.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     }),
    /// );
    /// let runtime = builder.build().unwrap();
    /// runtime.block_on(async {
    ///     TENANT.set("acme");
    ///     tokio::spawn(async { tokio::task::yield_now().await }).await.unwrap();
    /// });
    /// assert_eq!(polls.load(Ordering::Relaxed), 2); // the task's two polls
    /// ```
    pub fn on_after_task_poll(mut self, f: impl Fn(&TaskMeta<'_>) + Send + Sync + 'static) -> Self {
        self.after_poll = Some(Arc::new(f));
        self
    }

    /// Like [`Builder::on_task_terminate`]; runs before the task's context is released (see
    /// above for the context it runs in).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use contextvars::ContextVar;
    /// use exec_context::tokio::{TaskHooks, propagate_with};
    ///
    /// static TENANT: ContextVar<&str> = ContextVar::new("tenant");
    ///
    /// let ended = Arc::new(Mutex::new(Vec::new()));
    /// let seen = ended.clone();
    /// let mut builder = tokio::runtime::Builder::new_current_thread();
    /// propagate_with(
    ///     &mut builder,
    ///     TaskHooks::new().on_task_terminate(move |_| seen.lock().unwrap().push(TENANT.get())),
    /// );
    /// let runtime = builder.build().unwrap();
    /// runtime.block_on(async {
    ///     TENANT.set("acme");
    ///     tokio::spawn(async { TENANT.set("done") }).await.unwrap();
    /// });
    /// // The task ended within its poll: its hook saw what the task had set.
    /// assert_eq!(*ended.lock().unwrap(), [Some("done")]);
    /// ```
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
/// A task's context is often released inside tokio's after-poll hook (the task ended in that
/// poll), which tokio does not guard against panics. So a value whose `Drop` panics there is
/// stopped in the hook: the panic hook reports it, the task's result is unaffected, and the
/// worker goes on. (With the [`spawn`](crate::tokio::spawn) wrapper that drop happens inside
/// the task's own poll, where tokio catches panics.)
///
/// Sets the builder's `on_task_spawn`, `on_before_task_poll`, `on_after_task_poll` and
/// `on_task_terminate` hooks. They work only as a set: a hook set on the builder *after* this
/// call replaces ours and breaks the others. Without our after-poll hook, a task's context
/// stays current after its poll (the next task polled on that thread runs in it), and a
/// worker that later polls that task waits forever for the context to be put back; without
/// our terminate hook, every task's context is kept for the life of the process. Pass your
/// own hooks to [`propagate_with`] instead, which runs them beside ours. What the hooks do
/// not reach is listed in the [module docs](crate::tokio#what-the-hooks-do-not-reach).
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
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use exec_context::tokio::{TaskHooks, propagate_with};
///
/// let ended = Arc::new(AtomicUsize::new(0));
/// let counter = ended.clone();
/// let mut builder = tokio::runtime::Builder::new_current_thread();
/// propagate_with(
///     &mut builder,
///     TaskHooks::new().on_task_terminate(move |_| {
///         counter.fetch_add(1, Ordering::Relaxed);
///     }),
/// );
/// let runtime = builder.build().unwrap();
/// runtime.block_on(async {
///     let tasks: Vec<_> = (0..4).map(|n| tokio::spawn(async move { n })).collect();
///     for task in tasks {
///         task.await.unwrap();
///     }
/// });
/// drop(runtime);
/// assert_eq!(ended.load(Ordering::Relaxed), 4);
/// ```
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
    // A hook of yours that panics does not leave ours half done: what ours did before it is
    // undone, and what ours does after it runs anyway, as the panic unwinds.
    let on_before = move |meta: &TaskMeta<'_>| {
        let id = key(meta);
        before_poll(id);
        if let Some(hook) = &user_before_poll {
            // The poll will not happen: leave the task's context.
            let undo = Finally(|| after_poll(id));
            hook(meta);
            std::mem::forget(undo);
        }
    };
    // Yours runs after ours has put the task's context back: tokio may already have handed
    // the task to another worker, whose poll waits for that context; a hook of yours that
    // blocked (on a lock that poll holds, say) while it was out would stall or deadlock that
    // worker. It runs in a copy of the context as the poll left it, taken before the
    // put-back; after a poll that did not use the context, in a copy fetched only if the
    // hook reads a variable (the context is then as the poll found it, unless another
    // worker is polling the task already: the fetch then waits for that poll, as a poll
    // would).
    let on_after = move |meta: &TaskMeta<'_>| {
        let id = key(meta);
        let Some(hook) = &user_after_poll else {
            after_poll(id);
            return;
        };
        match after_poll_copying(id) {
            Some(copy) => {
                // Its values may be the last of the task's (which may have ended): dropped
                // in the hook, as a panic of yours unwinds too.
                let mut copy = DroppedInHook(Some(copy));
                if let Some(copy) = &mut copy.0 {
                    copy.run(|| hook(meta));
                }
            }
            None => {
                let attach = attach_deferred(fetch_copy, id).ok();
                let _end = Finally(|| {
                    if let Some(attach) = attach {
                        crate::discarding_panics(|| drop(end_deferred(attach)));
                    }
                });
                hook(meta);
            }
        }
    };
    let on_terminate = move |meta: &TaskMeta<'_>| {
        let id = key(meta);
        let _ours = Finally(|| terminated(id));
        if let Some(hook) = &user_terminate {
            hook(meta);
        }
    };
    builder
        .on_task_spawn(on_spawn)
        .on_before_task_poll(on_before)
        .on_after_task_poll(on_after)
        .on_task_terminate(on_terminate)
}

/// Drops what it holds as [`drop_in_hook`] does, at the end of the scope or as a panic
/// unwinds through it.
struct DroppedInHook<T>(Option<T>);

impl<T> Drop for DroppedInHook<T> {
    fn drop(&mut self) {
        drop_in_hook(self.0.take());
    }
}

/// Runs its closure when dropped: at the end of the scope, or as a panic unwinds through it.
struct Finally<F: FnMut()>(F);

impl<F: FnMut()> Drop for Finally<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// Drops `value`, which may hold a task's context, inside a hook. A value's `Drop` may panic,
/// and tokio does not guard its poll hooks: a panic there would abort a debug build's worker
/// or lose it with its queue. So the panic stops here (the panic hook has reported it; the
/// rest of the value is dropped as the unwinding goes on), as it does when contextvars drops
/// values outside a borrow.
fn drop_in_hook<T>(value: T) {
    crate::discarding_panics(move || drop(value));
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
// are unique across runtimes, never reused, and handed out in sequence).
//
// A task's context waits between polls in a slot. Most tasks get the slot of a direct-mapped
// table picked by their id, claimed with one compare-and-swap of its owner id: live tasks
// rarely collide there, since ids are sequential. A task whose slot is taken by a
// longer-lived one goes to a slab instead, found by a small index that the task keeps for
// its whole life, through a per-thread cache of recent (id, index) pairs filled at spawn and
// on a miss from a sharded map that only spawn, a cache miss and termination lock. A cache
// entry stays right for as long as its task lives (the index is freed only when the task
// terminates). A dead task's id may still be looked up: tokio runs the poll hooks of a
// task still queued on one worker after another worker's shutdown ended it, and code in
// such a "poll" (a before-poll hook of yours, the `Drop` of the task's output) may use the
// context. So each slot, in the table and in the slab, records its owner, and a poll takes
// a context only from a slot its task owns.
//
// A poll does not move the context in and out unless it uses it: the before-poll hook makes
// a *deferred* attach (`contextvars::attach_deferred`), and only the first context
// operation of the poll fetches the context from its slot (one atomic swap) and enters it.
// The after-poll hook then puts it back (another swap). A poll that never reads or writes a
// variable costs two thread-local updates and touches no shared memory.

/// Entries of the direct-mapped table.
const DIRECT: usize = 4096;

/// A slot of the direct-mapped table or of the slab: the owning task's id (0: free) and its
/// context.
struct Owned {
    owner: AtomicU64,
    context: Slot,
}

static TABLE: [Owned; DIRECT] = [const {
    Owned {
        owner: AtomicU64::new(0),
        context: AtomicCell::new(None),
    }
}; DIRECT];

/// Tasks that terminated without being registered, by id (direct-mapped; 0: none). tokio
/// lists a new task before it runs the spawn hook on the spawning thread; a shutdown in
/// between, on another thread (or on the same one, for a spawn onto a closed runtime), ends
/// the task first. A termination that finds the task unregistered notes it here, then tries
/// to unregister it again; the spawn hook registers, then looks here and unregisters if it
/// finds the note. Each writes, then reads what the other wrote, with a fence between, so at
/// least one sees the other's write; [`unregister`] is exclusive, so exactly one releases.
/// A termination of a registered task (the usual one) writes nothing here. Blocking tasks
/// terminate without a spawn hook: their notes stay until replaced, and are harmless (their
/// ids never come to a spawn hook). Only such an unregistered termination, sharing the slot,
/// within the moment between a task's early end and its spawn hook, could hide that task's
/// note.
static ENDED_FIRST: [AtomicU64; DIRECT] = [const { AtomicU64::new(0) }; DIRECT];

/// Whether task `id` terminated before its spawn hook (see [`ENDED_FIRST`]).
fn ended_first(id: u64) -> bool {
    ENDED_FIRST[id as usize % DIRECT].load(Ordering::SeqCst) == id
}

/// Marks an owner that is unregistering its slot (tokio's task ids never reach this bit): the
/// slot is still its own, for a put-back in flight to find, but no second unregister of it
/// can claim it.
const LEAVING: u64 = 1 << 63;

/// Task `id`'s slot in the direct-mapped table, if it owns it (also while unregistering).
#[inline]
fn owned(id: u64) -> Option<&'static Owned> {
    let entry = &TABLE[id as usize % DIRECT];
    // Acquire: pairs with the release that freed the slot for this owner (the slot's
    // context was taken out before).
    (entry.owner.load(Ordering::Acquire) & !LEAVING == id).then_some(entry)
}

/// Where task `id`'s context waits, if it is registered: its slot in the table, or the slab
/// slot of its index (which, for a task that has ended, may be free or another task's: see
/// [`take_owned`]).
#[inline]
fn entry_of(id: u64) -> Option<&'static Owned> {
    match owned(id) {
        Some(entry) => Some(entry),
        None => index_of(id).map(slab_entry),
    }
}

/// Shards of the id → index map: enough that spawning threads rarely meet on one lock.
const SHARDS: usize = 64;

/// Entries of the per-thread (id, index) cache.
const CACHED: usize = 64;

/// The first slab chunk holds `1 << FIRST_BITS` slots; each next one twice as many.
const FIRST_BITS: u32 = 6;

/// Chunks of the slab: up to 2^32 slots in all.
const CHUNKS: usize = 32 - FIRST_BITS as usize;

/// Where a task's context waits between polls: `None` while a poll holds it.
type Slot = AtomicCell<Option<Box<Context>>>;

/// The slab's chunks, allocated on first use and never moved or freed.
static SLAB: [OnceLock<Box<[Owned]>>; CHUNKS] = [const { OnceLock::new() }; CHUNKS];

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
    /// Where the poll fetched the task's context from, once it did.
    slot: Option<&'static Slot>,
    /// The poll's deferred attach (`None` during thread teardown).
    attach: Option<DeferredId>,
    /// The task terminated during this poll: release the context when the poll ends.
    ended: bool,
}

std::thread_local! {
    /// Recent tasks' slab indices, by id (direct-mapped).
    static INDICES: [Cell<(u64, u32)>; CACHED] = const { [const { Cell::new((0, 0)) }; CACHED] };
    /// The tasks being polled on this thread (polls nest when a runtime is driven inside a
    /// task).
    static POLLING: RefCell<Vec<Polled>> = const { RefCell::new(Vec::new()) };
    /// Emptied boxes, reused by the next spawns and put-backs on this thread.
    #[allow(clippy::vec_box, reason = "the boxes are what is reused")]
    static SPARE: RefCell<Vec<Box<Context>>> = const { RefCell::new(Vec::new()) };
}

/// Spare boxes kept per thread.
const SPARE_MAX: usize = 64;

/// A box holding `context`: a spare one if this thread has one.
fn boxed(context: Context) -> Box<Context> {
    match SPARE.try_with(|spare| spare.borrow_mut().pop()) {
        Ok(Some(mut spare)) => {
            // The spare holds an empty placeholder: replacing it drops nothing of note.
            *spare = context;
            spare
        }
        _ => Box::new(context),
    }
}

/// Keeps an emptied box for a later [`boxed`].
fn keep_spare(spare: Box<Context>) {
    let _ = SPARE.try_with(|boxes| {
        let mut boxes = boxes.borrow_mut();
        if boxes.len() < SPARE_MAX {
            boxes.push(spare);
        }
    });
}

/// Releases a task's context (its values are dropped here, outside every borrow) and keeps
/// the box for a later spawn.
fn release(mut context: Box<Context>) {
    // `Context::default()`: an empty placeholder that reads nothing from the current
    // context (`Context::new()` would copy its pinned values into the spare box).
    drop_in_hook(std::mem::take(&mut *context));
    keep_spare(context);
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
fn slab_entry(index: u32) -> &'static Owned {
    let position = u64::from(index) + (1 << FIRST_BITS);
    let chunk = (63 - position.leading_zeros() - FIRST_BITS) as usize;
    let offset = (position - ((1 << FIRST_BITS) << chunk)) as usize;
    let slots = SLAB[chunk].get_or_init(|| {
        (0..(1usize << FIRST_BITS) << chunk)
            .map(|_| Owned {
                owner: AtomicU64::new(0),
                context: AtomicCell::new(None),
            })
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

/// Takes the context out of `slot`. An empty slot means a poll of the task that just ended
/// on another thread has not put it back yet (tokio may hand the task to another worker
/// before that poll's after-poll hook runs): wait for it.
#[inline]
fn take(slot: &Slot) -> Box<Context> {
    if let Some(context) = slot.take() {
        return context;
    }
    take_slow(slot)
}

#[cold]
#[inline(never)]
fn take_slow(slot: &Slot) -> Box<Context> {
    // No time limit: the other thread is one hook call away from putting the context back
    // (tokio runs the after-poll hook right after the poll, also when the future panicked).
    // Giving up would run the task without its context, or free the slot under a late
    // put-back that would then land in another task's slot.
    let mut looks = 0u32;
    loop {
        wait_for_handover(&mut looks);
        if let Some(context) = slot.take() {
            return context;
        }
    }
}

/// Takes task `id`'s context out of `entry`, as [`take`] does, provided the task owns the
/// entry and is not unregistering: `None` for a task that has ended (its entry is free,
/// another task's, or being freed), without waiting for a put-back that will not come.
fn take_owned(entry: &Owned, id: u64) -> Option<Box<Context>> {
    let mut looks = 0u32;
    loop {
        if entry.owner.load(Ordering::Acquire) != id {
            return None;
        }
        if let Some(context) = entry.context.take() {
            if entry.owner.load(Ordering::Acquire) == id {
                return Some(context);
            }
            // Between the two looks the task ended and the entry went to another task:
            // that task's context goes back.
            drop(entry.context.swap(Some(context)));
            return None;
        }
        // A poll ending on another thread has not put the context back yet (see `take`).
        wait_for_handover(&mut looks);
    }
}

/// One wait for a context being put back: a yield for the first [`HANDOVER_SPINS`] looks,
/// then a short sleep.
fn wait_for_handover(looks: &mut u32) {
    if *looks < HANDOVER_SPINS {
        *looks += 1;
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// The deferred attach's source: task `id`'s context, fetched on its poll's first context
/// operation. `None` (the poll then runs in an empty context) for a task that was never
/// registered or has ended.
fn fetch(id: u64) -> Option<Context> {
    let entry = entry_of(id)?;
    let mut context = take_owned(entry, id)?;
    // Remembered for the put-back, which must not look the task up again: a termination
    // on another thread may be unregistering it meanwhile, waiting for this very put-back.
    // (During thread teardown the record is gone, and the poll with it: nothing is put back.)
    let _ = POLLING.try_with(|polling| {
        if let Some(polled) = polling.borrow_mut().iter_mut().rev().find(|p| p.id == id) {
            polled.slot = Some(&entry.context);
        }
    });
    let fetched = std::mem::take(&mut *context);
    keep_spare(context);
    Some(fetched)
}

/// On the spawning thread: capture the spawner's context.
fn spawned(id: u64) {
    if ended_first(id) {
        // Already terminated (spawned onto a runtime that is shutting down): nothing to
        // register.
        return;
    }
    register(id);
    // A termination on another thread that found the task not yet registered (see
    // `ENDED_FIRST`): the context just registered is released here, unless that termination
    // saw the registration and released it.
    fence(Ordering::SeqCst);
    if ended_first(id) {
        unregister(id, None);
    }
}

/// Registers task `id` with its spawner's context.
fn register(id: u64) {
    let context = boxed(spawn_context());
    let entry = &TABLE[id as usize % DIRECT];
    if entry
        .owner
        .compare_exchange(0, id, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        // Always `None`: a freed slot is empty.
        drop(entry.context.swap(Some(context)));
        return;
    }
    let (index, displaced) = {
        let mut shard = shard(id).lock();
        let index = match shard.free.pop() {
            Some(index) => index,
            None => NEXT_INDEX.fetch_add(1, Ordering::Relaxed),
        };
        let entry = slab_entry(index);
        // Release: pairs with a stale lookup's acquire (see `take_owned`).
        entry.owner.store(id, Ordering::Release);
        let displaced = entry.context.swap(Some(context));
        shard.index.insert(id, index);
        (index, displaced)
    };
    // Always `None`: a freed slot is empty. Dropped outside the lock regardless.
    drop(displaced);
    remember(id, index);
}

fn before_poll(id: u64) {
    // A poll during thread teardown (a runtime dropped by a thread-local's destructor) may
    // find the record of polls gone: the task is then not entered, since nothing could leave
    // it at the end of the poll.
    let _ = POLLING.try_with(|polling| {
        let attach = attach_deferred(fetch, id).ok();
        polling.borrow_mut().push(Polled {
            id,
            slot: None,
            attach,
            ended: false,
        });
    });
}

/// Ends task `id`'s poll on this thread: leaves its context and puts it back (or releases
/// it, for a task that ended during the poll).
fn after_poll(id: u64) {
    end_poll::<false>(id);
}

/// [`after_poll`], returning a copy of the context as the poll left it, if the poll used it
/// or ended the task (for an after-poll hook of yours).
fn after_poll_copying(id: u64) -> Option<Context> {
    end_poll::<true>(id)
}

/// [`after_poll`], or with `COPY` [`after_poll_copying`]: two copies of the code, so that the
/// one every poll runs has nothing of the copy (which cost it ≈ 10 ns a poll as a flag).
#[inline(always)]
fn end_poll<const COPY: bool>(id: u64) -> Option<Context> {
    let popped = POLLING
        .try_with(|polling| {
            let mut polling = polling.borrow_mut();
            match polling.last() {
                Some(top) if top.id == id => polling.pop(),
                _ => None,
            }
        })
        .ok()
        .flatten();
    let Some(Polled {
        attach: Some(attach),
        ended,
        slot,
        ..
    }) = popped
    else {
        return None;
    };
    // The poll ends as a `Context::run` does: an attach the task left behind (its code
    // panicked between `attach` and `detach`) ends with it, and the task goes on in the
    // context that was current then.
    // Ending an attach the task left behind drops what that attach displaced, the task's
    // fetched context among it: a value's `Drop` that panics there stops here too (the task
    // then goes on in an empty context).
    let result = std::panic::catch_unwind(|| end_deferred(attach));
    let used = match result {
        Ok(Ok(used)) => used,
        // Not this thread's current attach any more (a scope around the poll ended it), or a
        // drop panicked: a context this poll fetched is lost, and the task goes on in an
        // empty one, never in the worker's. One it never fetched is still in its slot.
        Ok(Err(_)) => slot.is_some().then(Context::default),
        Err(payload) => {
            // Its own `Drop` may panic too, which tokio would not catch either.
            drop_in_hook(payload);
            slot.is_some().then(Context::default)
        }
    };
    // A poll that fetched nothing (the task had ended, or was never registered) but used a
    // context ran in an empty one of its own: it goes here, and nothing goes back (the slot
    // its id once had may be another task's by now).
    let copied = match (COPY, &used) {
        (false, _) => None,
        (true, Some(used)) => Some(used.clone()),
        // A poll that ended the task without using its context: the copy comes from its
        // slot, which it is released from just below (the hook could not fetch it later).
        (true, None) if ended => fetch_copy(id),
        (true, None) => None,
    };
    let (fetched, own) = match slot {
        Some(slot) => (used.map(|context| (slot, context)), None),
        None => (None, used),
    };
    drop_in_hook(own);
    if ended {
        unregister(id, fetched.map(|(_, context)| context));
    } else if let Some((slot, context)) = fetched {
        // Always `None` (this poll took the context out).
        drop(slot.swap(Some(boxed(context))));
    }
    copied
}

/// The deferred attach's source for an after-poll hook of yours that runs after a poll
/// that did not use task `id`'s context: a copy of it, taken out of its slot (waiting, as
/// [`fetch`] does, for a poll on another thread to put it back) and put straight back.
fn fetch_copy(id: u64) -> Option<Context> {
    let entry = entry_of(id)?;
    let context = take_owned(entry, id)?;
    let copy = (*context).clone();
    // Always `None` (taken out just above).
    drop(entry.context.swap(Some(context)));
    Some(copy)
}

/// Forgets task `id` and releases its context: `fetched` if a poll holds it, else the one
/// in its slot. `false` if the task was not registered.
fn unregister(id: u64, fetched: Option<Context>) -> bool {
    let entry = &TABLE[id as usize % DIRECT];
    // Claimed first: a termination and the spawn hook may both try (see `ENDED_FIRST`), and
    // only one may take the context.
    let taken = if entry
        .owner
        .compare_exchange(id, id | LEAVING, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        // Empty if a poll holds the context; else wait for any put-back in flight.
        let taken = fetched.is_none().then(|| take(&entry.context));
        // Release: the next owner finds the slot empty.
        entry.owner.store(0, Ordering::Release);
        taken
    } else {
        let Some(index) = shard(id).lock().index.remove(&id) else {
            return false;
        };
        let entry = slab_entry(index);
        // Marked first, so that a poll of the ended task (see `take_owned`) leaves the entry
        // alone; the context is still found by a put-back in flight.
        entry.owner.store(id | LEAVING, Ordering::Release);
        // Waited for outside the lock, which other spawns need.
        let taken = fetched.is_none().then(|| take(&entry.context));
        // Release: the next owner finds the entry empty.
        entry.owner.store(0, Ordering::Release);
        shard(id).lock().free.push(index);
        taken
    };
    // Released outside every lock: a value's `Drop` may run any code.
    drop_in_hook(fetched);
    if let Some(context) = taken {
        release(context);
    }
    true
}

/// The task ended, was aborted, or was dropped at shutdown.
fn terminated(id: u64) {
    // During thread teardown (a runtime dropped by a thread-local's destructor) the record
    // of polls may be gone: no poll is running then.
    let in_own_poll = POLLING
        .try_with(|polling| {
            let mut polling = polling.borrow_mut();
            match polling.iter_mut().rev().find(|polled| polled.id == id) {
                Some(polled) => {
                    // Released when the poll ends: what runs until then still uses it.
                    polled.ended = true;
                    true
                }
                None => false,
            }
        })
        .unwrap_or(false);
    if in_own_poll {
        return;
    }
    if unregister(id, None) {
        return;
    }
    // Not registered: a blocking task, or a task ended before its spawn hook registered it.
    // Noted for the spawn hook, then tried again (see `ENDED_FIRST`).
    ENDED_FIRST[id as usize % DIRECT].store(id, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    let _ = unregister(id, None);
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use contextvars::ContextVar;

    use super::*;

    static VAR: ContextVar<u64> = ContextVar::new("hooks.test");

    /// Ids no tokio task of this test process reaches, so these tests own their slots.
    const BASE: u64 = 1 << 40;

    /// Runs `f` on a thread of its own, failing if it does not return within a minute (a
    /// fetch that waits for a put-back that never comes spins for ever).
    fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || done.send(f()).unwrap());
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("the lookup of an ended task hung")
    }

    /// Registers task `id` with a context holding `VAR = value`.
    fn register_with(id: u64, value: u64) {
        VAR.set(value);
        register(id);
    }

    /// A poll of a task that ended (tokio runs the poll hooks of a task still queued on one
    /// worker after another worker's shutdown ended it) finds nothing to fetch: not a wait
    /// for ever on its freed slab slot, nor the context of the task that got the slot next.
    #[test]
    fn a_poll_of_an_ended_slab_task_fetches_nothing() {
        bounded(|| {
            let ended = BASE + 1;
            // Holds `ended`'s slot of the direct table, so that `ended` goes to the slab.
            let holder = ended + DIRECT as u64;
            register_with(holder, 1);
            register_with(ended, 2);
            assert!(owned(ended).is_none(), "in the slab");
            let index = index_of(ended).expect("registered");
            assert!(unregister(ended, None));
            // This thread still remembers `ended`'s index.
            assert_eq!(index_of(ended), Some(index));
            assert!(fetch(ended).is_none());
            // A task of the same shard, whose table slot is taken too, reuses the index.
            let next = (2..)
                .map(|k| ended + k * DIRECT as u64)
                .find(|&id| std::ptr::eq(shard(id), shard(ended)))
                .unwrap();
            register_with(next, 3);
            assert_eq!(index_of(next), Some(index));
            // Another worker's cache may still hold `ended`'s entry (here it shares
            // `next`'s, which replaced it).
            remember(ended, index);
            assert!(fetch(ended).is_none());
            // A whole poll of the ended task that uses the context: it runs in an empty one,
            // and leaves the slot's next owner its context.
            VAR.set(9);
            before_poll(ended);
            assert_eq!(VAR.get(), None);
            VAR.set(4);
            after_poll(ended);
            assert_eq!(VAR.get(), Some(9));
            let context = fetch(next).expect("the live task's context");
            assert_eq!(context.get(&VAR), Some(3));
            drop(slab_entry(index).context.swap(Some(boxed(context))));
            assert!(unregister(next, None));
            assert!(unregister(holder, None));
        });
    }

    /// A poll of a task whose termination is under way on another thread (its slot marked
    /// as leaving) takes nothing: the termination takes the context.
    #[test]
    fn a_poll_of_a_task_being_unregistered_fetches_nothing() {
        bounded(|| {
            let id = BASE + 2;
            register_with(id, 5);
            let entry = entry_of(id).expect("registered");
            let owner = entry.owner.load(Ordering::Acquire);
            entry.owner.store(id | LEAVING, Ordering::Release);
            assert!(fetch(id).is_none());
            entry.owner.store(owner, Ordering::Release);
            let context = fetch(id).expect("live again");
            assert_eq!(context.get(&VAR), Some(5));
            drop(entry.context.swap(Some(boxed(context))));
            assert!(unregister(id, None));
            assert!(fetch(id).is_none());
        });
    }
}
