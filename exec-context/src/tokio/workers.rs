//! Stable tokio: worker threads marked at start, their own context checked at each park.

use std::cell::Cell;
use std::sync::Arc;

use contextvars::{AttachId, Context, VarInfo, attach, detach, end_attach};
use tokio::runtime::Builder;

std::thread_local! {
    /// On a marked worker thread: the attach of the thread's own (empty) context, and the
    /// runtime that marked it (its hooks' `report`, by address). Another runtime's hooks may
    /// run on the same thread (a current-thread runtime's park, on a blocking thread of this
    /// one that calls its `block_on`): they leave the marker alone.
    static WORKER: Cell<Option<(AttachId, usize)>> = const { Cell::new(None) };
}

/// Catches context variables left on tokio's worker threads, with stable tokio.
///
/// Without [`propagate`](crate::tokio) (which needs `--cfg tokio_unstable`), a task spawned
/// with plain `tokio::spawn` runs in its worker thread's own context: what it sets stays
/// there and is seen by the next tasks polled on that thread — one request's tenant id
/// visible to another request. This uses the stable `on_thread_start` and `on_thread_park`
/// hooks: each worker thread starts in an empty context of its own, and whenever a worker
/// parks (runs out of work), a non-empty context is reported, naming the variables
/// ([pinned](contextvars::pinned) ones included), and cleared. In debug builds the report
/// is a warning on standard error.
///
/// It catches the leak at the next park, not before the next task runs: tasks polled in
/// between still see the value. Wrap spawns ([`spawn`](super::spawn), [`carry`](super::carry))
/// or use `propagate` to prevent it.
///
/// What it does not cover:
/// - **A current-thread runtime**: its tasks run on the thread that calls `block_on`, in that
///   thread's own context, which tokio gives no start hook to mark; nothing is checked there
///   (also when that thread is a marked thread of another runtime, such as one of its
///   blocking threads: each runtime checks only the threads it marked). Runtimes built
///   from one `Builder` share its hooks, and so count as one here: build a current-thread
///   runtime driven inside another from a builder of its own.
/// - **Blocking threads** (`spawn_blocking`) are checked when they stop, not between
///   closures: a value a closure leaves is seen by the later closures on that thread.
/// - **A task that left an attach of its own behind** (it panicked between
///   [`attach`](contextvars::attach) and its detach): the context left on top is reported
///   and cleared; the worker's own context under it is cleared with it, unreported.
///
/// Sets the builder's `on_thread_start`, `on_thread_park` and `on_thread_stop` hooks,
/// replacing any set before; a later call to any of them replaces ours (and then the checks
/// stop, or the first one after a restart finds nothing to check). A panic in `report`, or in
/// the `Drop` of a value cleared, is caught: the worker goes on.
///
/// ```
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// exec_context::tokio::check_workers(&mut builder);
/// let runtime = builder.worker_threads(1).build().unwrap();
/// runtime.block_on(async { tokio::spawn(async {}).await.unwrap() });
/// ```
pub fn check_workers(builder: &mut Builder) -> &mut Builder {
    check_workers_with(builder, |vars| {
        if cfg!(debug_assertions) {
            let names: Vec<&str> = vars.iter().map(VarInfo::name).collect();
            eprintln!(
                "exec-context: context variable(s) {names:?} were set on a tokio worker thread \
                 outside any task context and would leak into the next tasks polled there; \
                 cleared (wrap the spawn, or use exec_context::tokio::propagate)"
            );
        }
    })
}

/// [`check_workers`], calling `report` with the leaked variables instead of the default
/// warning.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use contextvars::ContextVar;
///
/// static TENANT: ContextVar<u32> = ContextVar::new("tenant");
///
/// let leaked = Arc::new(Mutex::new(Vec::new()));
/// let sink = leaked.clone();
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// exec_context::tokio::check_workers_with(&mut builder, move |vars| {
///     sink.lock().unwrap().extend(vars.iter().map(|v| v.name()));
/// });
/// let runtime = builder.worker_threads(1).build().unwrap();
/// runtime.block_on(async {
///     tokio::spawn(async { TENANT.set(7); }).await.unwrap(); // a plain spawn leaks
/// });
/// drop(runtime); // workers park (and stop) on shutdown at the latest
/// assert_eq!(*leaked.lock().unwrap(), ["tenant"]);
/// ```
pub fn check_workers_with(
    builder: &mut Builder,
    report: impl Fn(&[VarInfo]) + Send + Sync + 'static,
) -> &mut Builder {
    let report = Arc::new(report);
    // The runtime's identity, for the marker (the allocation lives as long as its hooks).
    let owner = Arc::as_ptr(&report).cast::<()>().addr();
    let on_stop = report.clone();
    builder
        .on_thread_start(move || mark(owner))
        .on_thread_park(move || check(&*report, owner, true))
        .on_thread_stop(move || check(&*on_stop, owner, false))
}

/// Marks this thread as a worker of the runtime `owner`: its own context, attached.
fn mark(owner: usize) {
    if let Ok(id) = attach(Context::new()) {
        WORKER.with(|worker| worker.set(Some((id, owner))));
    }
}

/// Reports and clears what is left in this worker's own context, if the runtime `owner`
/// marked it; re-arms if `again`.
fn check(report: &dyn Fn(&[VarInfo]), owner: usize, again: bool) {
    let Some((id, marked_by)) = WORKER.with(Cell::get) else {
        return;
    };
    if marked_by != owner {
        return;
    }
    // Detached if nothing was left above it; ended otherwise: a task that panicked between an
    // `attach` and its `detach` (or forgot the `detach`) left that attach on top, and it ends
    // here too. What is reported then is the context that attach left current (the worker's
    // own context under it is cleared with it).
    // Ending the attach drops what it displaced (with an attach left on top, the worker's
    // own context): a `Drop` that panics there is contained like the ones below. Nothing
    // else in `detach` or `end_attach` runs user code (neither enters what waits to be
    // entered), so the attach has ended by then; that context's values are gone, unreported.
    let ended = std::panic::catch_unwind(|| match detach(id) {
        Ok(own) => Some(own),
        // Parked inside some scope of its own: nothing to check at this level.
        Err(_) => end_attach(id).ok(),
    });
    let leaked = match ended {
        Ok(Some(leaked)) => leaked,
        Ok(None) => return,
        Err(payload) => {
            // Its own `Drop` may panic too.
            crate::discarding_panics(move || drop(payload));
            Context::default()
        }
    };
    WORKER.with(|worker| worker.set(None));
    // tokio does not guard its thread hooks: a panic here would abort a debug build's worker
    // (or lose it with its queue in a release build). So a panicking `report`, or a leaked
    // value whose `Drop` panics, stops here (the panic hook has printed it), and the worker
    // is re-armed all the same.
    // (Apart: the values must not be dropped while a panic of `report` unwinds, where a
    // panicking `Drop` would abort.)
    // Pinned variables too (a tenant, an interpreter): the worker's own context starts with
    // none (it is made on the worker thread, whose root context holds nothing).
    let vars: Vec<VarInfo> = leaked.vars().chain(leaked.pinned_vars()).collect();
    if !vars.is_empty() {
        crate::discarding_panics(|| report(&vars));
    }
    crate::discarding_panics(move || drop(leaked));
    if again {
        mark(owner);
    }
}
