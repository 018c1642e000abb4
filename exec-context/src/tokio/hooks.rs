//! Runtime-level propagation: tokio's task hooks drive one [`TaskContext`] per task.
//! Compiled only with `--cfg tokio_unstable` (tokio's task hooks are unstable API).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::mem;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::runtime::{Builder, TaskMeta};
use tokio::task::Id;

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
    let registry = Arc::new(Registry::new());
    let TaskHooks {
        spawn,
        before_poll,
        after_poll,
        terminate,
    } = hooks;
    let on_spawn = {
        let registry = registry.clone();
        move |meta: &TaskMeta<'_>| {
            registry.spawned(key(meta));
            if let Some(hook) = &spawn {
                hook(meta);
            }
        }
    };
    let on_before = {
        let registry = registry.clone();
        move |meta: &TaskMeta<'_>| {
            registry.before_poll(key(meta));
            if let Some(hook) = &before_poll {
                hook(meta);
            }
        }
    };
    let on_after = {
        let registry = registry.clone();
        move |meta: &TaskMeta<'_>| {
            if let Some(hook) = &after_poll {
                hook(meta);
            }
            registry.after_poll(key(meta));
        }
    };
    let on_terminate = move |meta: &TaskMeta<'_>| {
        if let Some(hook) = &terminate {
            hook(meta);
        }
        registry.terminated(key(meta));
    };
    builder
        .on_task_spawn(on_spawn)
        .on_before_task_poll(on_before)
        .on_after_task_poll(on_after)
        .on_task_terminate(on_terminate)
}

/// tokio's task ids are unique for the life of the process and never reused.
#[inline]
fn key(meta: &TaskMeta<'_>) -> Id {
    meta.id()
}

/// Shards of the per-task map: enough that workers rarely meet on one lock.
const SHARDS: usize = 64;

/// A task's entry.
enum Slot {
    /// Between polls: the context waits here.
    Idle(TaskContext),
    /// Being polled: the context is entered on the polling thread.
    Polling,
    /// Terminated during its last poll: released when that poll ends.
    Ended,
}

/// Sequential ids spread over the table by a multiplication.
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

type Shard = Mutex<HashMap<Id, Slot, BuildHasherDefault<IdHasher>>>;

/// The contexts of one runtime's tasks, by task id.
struct Registry {
    shards: Box<[CachePadded<Shard>]>,
}

/// Keeps each shard's lock on a cache line of its own.
#[repr(align(128))]
#[derive(Default)]
struct CachePadded<T>(T);

std::thread_local! {
    /// The tasks being polled on this thread (polls nest when a runtime is driven inside a
    /// task), with their entered contexts.
    static POLLING: RefCell<Vec<(Id, Option<TaskContext>)>> = const { RefCell::new(Vec::new()) };
    /// The last task that terminated here without having been registered: on a runtime that
    /// is shutting down, tokio terminates a new task *before* its spawn hook runs.
    static UNREGISTERED_END: Cell<Option<Id>> = const { Cell::new(None) };
}

impl Registry {
    fn new() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| CachePadded::default()).collect(),
        }
    }

    #[inline]
    fn shard(&self, id: Id) -> &Shard {
        // The top bits of the multiplied id: consecutive ids land on different shards.
        let hash = BuildHasherDefault::<IdHasher>::default().hash_one(id);
        &self.shards[(hash >> 58) as usize % SHARDS].0
    }

    /// On the spawning thread: capture the spawner's context.
    fn spawned(&self, id: Id) {
        if UNREGISTERED_END.with(|end| end.get() == Some(id)) {
            // Already terminated (spawned onto a runtime that is shutting down).
            UNREGISTERED_END.with(|end| end.set(None));
            return;
        }
        let context = TaskContext::capture();
        let displaced = self.shard(id).lock().insert(id, Slot::Idle(context));
        drop(displaced);
    }

    fn before_poll(&self, id: Id) {
        let taken = self
            .shard(id)
            .lock()
            .get_mut(&id)
            .map(|slot| mem::replace(slot, Slot::Polling));
        let context = match taken {
            Some(Slot::Idle(mut context)) => match context.enter() {
                Ok(()) => Some(context),
                Err(_) => {
                    // Thread teardown: nothing can be entered; keep the context for later.
                    self.put_back(id, context);
                    None
                }
            },
            // Not spawned through the hooks (or a repeated poll hook): nothing to enter.
            Some(other) => {
                self.shard(id).lock().insert(id, other);
                None
            }
            None => None,
        };
        POLLING.with(|polling| polling.borrow_mut().push((id, context)));
    }

    fn after_poll(&self, id: Id) {
        let popped = POLLING.with(|polling| {
            let mut polling = polling.borrow_mut();
            match polling.last() {
                Some((top, _)) if *top == id => polling.pop(),
                _ => None,
            }
        });
        let Some((_, Some(mut context))) = popped else {
            return;
        };
        // Fails only if the task left a scope unbalanced; the context then stays entered
        // until the scope below it is left, and is released with the task.
        let _ = context.exit();
        self.put_back(id, context);
    }

    /// Returns a context to its idle slot, or releases it if the task ended meanwhile.
    fn put_back(&self, id: Id, context: TaskContext) {
        let released = {
            let mut shard = self.shard(id).lock();
            match shard.get_mut(&id) {
                Some(slot @ Slot::Polling) => {
                    *slot = Slot::Idle(context);
                    None
                }
                _ => {
                    let ended = shard.remove(&id);
                    Some((context, ended))
                }
            }
        };
        // Dropped outside the lock: a value's `Drop` may run any code.
        drop(released);
    }

    /// The task ended, was aborted, or was dropped at shutdown.
    fn terminated(&self, id: Id) {
        let released = {
            let mut shard = self.shard(id).lock();
            match shard.get_mut(&id) {
                Some(slot @ Slot::Polling) => {
                    // Terminated inside its own poll: released when the poll ends.
                    *slot = Slot::Ended;
                    return;
                }
                Some(_) => shard.remove(&id),
                None => {
                    UNREGISTERED_END.with(|end| end.set(Some(id)));
                    return;
                }
            }
        };
        drop(released);
    }
}
