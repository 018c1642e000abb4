//! Context watchers: callbacks told when a context is entered or exited, and when a variable
//! is set (CPython 3.12's `PyContext_AddWatcher`, for debuggers, profilers and tracers).
//!
//! Watching is opt-in and process-wide. With no watcher registered, the only cost on the
//! paths it observes is one relaxed load of a global flag.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::value::VarInfo;

/// What a watcher is told. The current thread is the one the event happens on, so a watcher
/// can inspect the context itself (for example with
/// [`copy_context`](crate::copy_context) or a `ContextVar::get`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextEvent {
    /// A context was entered: [`Context::run`](crate::Context::run),
    /// [`run_with_execution_context`](crate::run_with_execution_context), and what is built on
    /// them (a task's poll through a wrapper such as `exec-context`'s `in_current_context`, a
    /// thread's start). The entered context is current when the watcher runs.
    ///
    /// Not reported: the switches made by [`attach`](crate::attach) and its relatives
    /// (`detach`, `attach_deferred`, `end_attach`), and so the polls of a runtime that
    /// carries contexts through its hooks (`exec-context`'s `tokio::propagate`). A run is
    /// reported only if it is entered, so never after the thread's state is gone (thread
    /// teardown), and then neither is its exit.
    Entered,
    /// A context is about to be exited (it is still current when the watcher runs), also when
    /// the code run in it panicked.
    ///
    /// The `Entered` and `Exited` of a run pair up for a watcher registered for the whole run.
    /// One added during a run sees the run's exit without its entry, and one removed during
    /// a run sees its entry without its exit.
    Exited,
    /// `var` was set in the current context ([`ContextVar::set`](crate::ContextVar::set), and
    /// the set a [`ScopeFuture`](crate::ScopeFuture) makes at each poll).
    Set {
        /// The variable.
        var: VarInfo,
    },
}

type Callback = dyn Fn(&ContextEvent) + Send + Sync;

struct Registered {
    id: u64,
    callback: Arc<Callback>,
}

/// Whether any watcher is registered: the one thing the observed paths read.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// The registered watchers, replaced as a whole on each change, so that notifying takes a
/// reference count and calls the watchers outside the lock (a watcher may add or remove
/// watchers).
static WATCHERS: Mutex<Option<Arc<[Registered]>>> = Mutex::new(None);

/// Registers `watcher`, to be called on every [`ContextEvent`] on every thread until the
/// returned guard is dropped.
///
/// The watcher runs on the thread where the event happens, synchronously, and must be cheap:
/// with a `Set` watcher, every `ContextVar::set` in the process calls it. A watcher may use
/// context variables (a `set` from inside a watcher is reported too: take care not to recurse
/// without end), and may add or remove watchers. If a watcher panics, the panic is caught and
/// discarded (it may fire while another panic unwinds, where a second panic would abort), and
/// the watcher stays registered. A panic of the payload's own `Drop` is discarded too, and
/// so is one of a removed watcher's captured values when its last handle goes after an
/// event: nothing a watcher does comes out of the switch being reported.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use contextvars::watch::{self, ContextEvent};
/// use contextvars::{ContextVar, Context};
///
/// static VAR: ContextVar<u32> = ContextVar::new("var");
///
/// let entered = Arc::new(AtomicUsize::new(0));
/// let seen = Arc::clone(&entered);
/// let guard = watch::add_watcher(move |event| {
///     if *event == ContextEvent::Entered && VAR.get() == Some(7) {
///         seen.fetch_add(1, Ordering::Relaxed);
///     }
/// });
/// let mut ctx = Context::new();
/// ctx.run(|| VAR.set(7));
/// ctx.run(|| ()); // entered with VAR = 7
/// drop(guard);
/// ctx.run(|| ()); // no longer watched
/// assert_eq!(entered.load(Ordering::Relaxed), 1);
/// ```
#[must_use = "dropping the guard removes the watcher at once; use `leak` to keep it forever"]
pub fn add_watcher(watcher: impl Fn(&ContextEvent) + Send + Sync + 'static) -> WatcherGuard {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    update(|current| {
        current
            .iter()
            .map(|registered| Registered {
                id: registered.id,
                callback: Arc::clone(&registered.callback),
            })
            .chain([Registered {
                id,
                callback: Arc::new(watcher),
            }])
            .collect()
    });
    WatcherGuard { id }
}

/// Replaces the watcher list with `change(current)`, and the flag with whether it is empty.
fn update(change: impl FnOnce(&[Registered]) -> Vec<Registered>) {
    let old = {
        let mut watchers = WATCHERS.lock().unwrap_or_else(PoisonError::into_inner);
        let next = change(watchers.as_deref().unwrap_or_default());
        ACTIVE.store(!next.is_empty(), Ordering::Release);
        std::mem::replace(&mut *watchers, (!next.is_empty()).then(|| next.into()))
    };
    // Outside the lock: the old list may hold the last reference to a removed watcher, whose
    // captures' `Drop` is user code that may add or remove watchers, or set a variable (which
    // notifies), each of which takes the lock.
    drop(old);
}

/// Keeps a watcher registered; dropping it removes the watcher (events already being
/// delivered on other threads may still reach it).
pub struct WatcherGuard {
    id: u64,
}

impl WatcherGuard {
    /// Keeps the watcher registered for the rest of the process.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        let id = self.id;
        update(|current| {
            current
                .iter()
                .filter(|registered| registered.id != id)
                .map(|registered| Registered {
                    id: registered.id,
                    callback: Arc::clone(&registered.callback),
                })
                .collect()
        });
    }
}

impl fmt::Debug for WatcherGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatcherGuard")
            .field("id", &self.id)
            .finish()
    }
}

/// Whether any watcher is registered.
#[inline(always)]
pub(crate) fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Tells the watchers about `event`, if there are any. The check is inlined; the rest is not.
#[inline(always)]
pub(crate) fn notify(event: impl FnOnce() -> ContextEvent) {
    if ACTIVE.load(Ordering::Relaxed) {
        notify_slow(event());
    }
}

#[cold]
#[inline(never)]
fn notify_slow(event: ContextEvent) {
    let watchers = WATCHERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for registered in watchers.iter().flat_map(|list| list.iter()) {
        if let Err(payload) =
            panic::catch_unwind(AssertUnwindSafe(|| (registered.callback)(&event)))
        {
            // The payload's own `Drop` may panic too: nothing may come out of here, since
            // the callers report in the middle of switching the thread's context.
            crate::thread_state::discard_panic(payload);
        }
    }
    // The last handle to a watcher removed meanwhile may be this one: its captured values'
    // `Drop` is user code too.
    crate::thread_state::discard_panic(watchers);
}
