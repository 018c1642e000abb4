//! Rayon integration (feature `rayon`): jobs that run in their spawner's context.
//!
//! A plain rayon job — a `rayon::spawn`, the half of a `rayon::join` that another worker
//! steals, a piece of a parallel iterator — does not carry its spawner's context variables
//! (rayon#1018). It runs in whatever context the thread that picks it up is in at that
//! moment. The wrappers here take a snapshot of the current context when the job is
//! submitted and run the job in it, with a logical context of its own, on whichever thread
//! runs it.
//!
//! # Plain jobs can run inside someone else's context
//!
//! "Whatever context the thread is in" is not always an empty one. A worker thread that
//! waits inside rayon does not sleep: while a [`join`] waits for its other half, or an
//! [`install`] into another pool waits for its result, rayon runs other pending jobs of the
//! waiting thread's pool on that thread, nested inside the call. The thread is then in the
//! caller's context, the one `join` or `install` was called in (the wrapped closures run in
//! snapshots of it, and `join`'s first closure has already left its own). So a plain job run
//! there sees the caller's values, and what it sets lands in the caller's logical context,
//! where the caller finds it once `join` or `install` returns. The same happens while plain
//! rayon code waits (a plain `join`, a `scope`, a parallel iterator): the jobs run meanwhile
//! are in the context of the code that waits. And on an idle worker, a value a plain job sets
//! stays on the thread, where the next plain job run there sees it.
//!
//! This only happens on rayon's worker threads: a thread outside every pool blocks in `join`
//! and `install` without running other jobs. Jobs submitted through this module (and
//! [`crate::thread::job`]) are not affected: each runs in its own captured context and puts
//! the thread's context back when it returns, wherever and whenever it runs. So submit every
//! job that reads or sets context variables through these wrappers; a plain job that never
//! touches one is harmless wherever it runs.
//!
//! For a parallel iterator, wrap its closures with [`crate::bind_fn`], which runs every call
//! in a snapshot of the context current when it wraps (each call with a logical context of
//! its own). Wrap them in the context whose values they should see: a plain
//! `ThreadPool::install` runs its closure in a worker's context, [`install`] in the caller's.
//!
//! ```
//! use contextvars::ContextVar;
//! use rayon::prelude::*;
//!
//! static SCALE: ContextVar<u64> = ContextVar::new("scale");
//!
//! SCALE.set(10);
//! let scaled: Vec<u64> = (1..=4u64)
//!     .into_par_iter()
//!     .map(exec_context::bind_fn(|n: u64| n * SCALE.get().unwrap()))
//!     .collect();
//! assert_eq!(scaled, [10, 20, 30, 40]);
//! ```
//!
//! ```
//! use contextvars::ContextVar;
//!
//! static TRACE: ContextVar<&str> = ContextVar::new("trace");
//!
//! let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
//! let (seen, after) = exec_context::rayon::install(&pool, || {
//!     TRACE.set("request-1");
//!     let (send, receive) = std::sync::mpsc::channel();
//!     exec_context::rayon::join(
//!         || {
//!             // Wrapped: even if this thread runs it while `join` waits, the job's set
//!             // stays in the job.
//!             exec_context::rayon::spawn(move || {
//!                 TRACE.set("cleanup");
//!                 send.send(TRACE.get()).unwrap();
//!             })
//!         },
//!         || (),
//!     );
//!     (receive.recv().unwrap(), TRACE.get())
//! });
//! assert_eq!(seen, Some("cleanup"));
//! assert_eq!(after, Some("request-1"));
//! ```

use crate::thread::job;

/// `rayon::spawn` carrying a snapshot of the current context.
///
/// ```
/// use contextvars::ContextVar;
///
/// static REQUEST: ContextVar<u32> = ContextVar::new("request");
///
/// REQUEST.set(3);
/// let (send, receive) = std::sync::mpsc::channel();
/// exec_context::rayon::spawn(move || send.send(REQUEST.get()).unwrap());
/// assert_eq!(receive.recv().unwrap(), Some(3));
/// ```
pub fn spawn<F>(f: F)
where
    F: FnOnce() + Send + 'static,
{
    rayon::spawn(job(f));
}

/// `rayon::join` where both closures run in a snapshot of the current context (each with a
/// logical context of its own, so their changes stay apart).
///
/// Called on a worker thread, `join` may run other jobs of the pool while it waits, in the
/// caller's context: see
/// [the module docs](crate::rayon#plain-jobs-can-run-inside-someone-elses-context).
///
/// ```
/// use contextvars::ContextVar;
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
///
/// USER.set("ada");
/// let (left, right) = exec_context::rayon::join(
///     || {
///         USER.set("grace");
///         USER.get()
///     },
///     || USER.get(),
/// );
/// assert_eq!(left, Some("grace"));
/// assert_eq!(right, Some("ada")); // the other half does not see the first one's set
/// assert_eq!(USER.get(), Some("ada")); // nor does the caller
/// ```
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let ec = contextvars::get_execution_context().inherited();
    let (ec_a, ec_b) = (ec.clone(), ec);
    rayon::join(
        move || contextvars::run_with_execution_context(&ec_a, a),
        move || contextvars::run_with_execution_context(&ec_b, b),
    )
}

/// `ThreadPool::spawn` carrying a snapshot of the current context.
///
/// ```
/// use std::sync::mpsc::channel;
/// use contextvars::ContextVar;
///
/// static REQUEST: ContextVar<u32> = ContextVar::new("request");
///
/// let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
/// REQUEST.set(3);
/// let (send, receive) = channel();
/// let plain = send.clone();
/// exec_context::rayon::spawn_in(&pool, move || send.send(REQUEST.get()).unwrap());
/// assert_eq!(receive.recv().unwrap(), Some(3));
/// pool.spawn(move || plain.send(REQUEST.get()).unwrap()); // not wrapped
/// assert_eq!(receive.recv().unwrap(), None);
/// ```
pub fn spawn_in<F>(pool: &rayon::ThreadPool, f: F)
where
    F: FnOnce() + Send + 'static,
{
    pool.spawn(job(f));
}

/// `ThreadPool::install` carrying a snapshot of the current context.
///
/// Only `f` itself runs in the snapshot: the rayon jobs it starts (a plain `rayon::join`, the
/// pieces of a parallel iterator) are plain jobs, which see the snapshot only when they run on
/// `f`'s own thread. Called on a worker of another pool, `install` may run that pool's jobs
/// while it waits, in the caller's context: see
/// [the module docs](crate::rayon#plain-jobs-can-run-inside-someone-elses-context).
///
/// ```
/// use contextvars::ContextVar;
///
/// static LIMIT: ContextVar<u32> = ContextVar::new("limit");
///
/// let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
/// LIMIT.set(3);
/// let seen = exec_context::rayon::install(&pool, || {
///     assert!(pool.current_thread_index().is_some()); // on one of `pool`'s workers
///     let seen = LIMIT.get();
///     LIMIT.set(0); // stays in `f`
///     seen
/// });
/// assert_eq!(seen, Some(3));
/// assert_eq!(LIMIT.get(), Some(3));
/// ```
pub fn install<F, R>(pool: &rayon::ThreadPool, f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let ec = contextvars::get_execution_context().inherited();
    pool.install(move || contextvars::run_with_execution_context(&ec, f))
}

/// `rayon::scope` carrying the context: `op` runs in a snapshot of the current context, and
/// so does every job spawned through the [`Scope`] it is given, in a snapshot of the context
/// current where the job was spawned (each with a logical context of its own, so their
/// changes stay apart, and none reaches the caller). Scoped jobs may borrow from the caller's
/// stack, as rayon's do; like rayon's, `scope` returns once all of them have run.
///
/// Jobs spawned on the inner `rayon::Scope` by other means are plain jobs (see
/// [the module docs](crate::rayon#plain-jobs-can-run-inside-someone-elses-context)).
///
/// ```
/// use std::sync::Mutex;
/// use contextvars::ContextVar;
///
/// static TENANT: ContextVar<&str> = ContextVar::new("tenant");
///
/// TENANT.set("acme");
/// let seen = Mutex::new(Vec::new()); // borrowed by the jobs
/// exec_context::rayon::scope(|s| {
///     for n in 0..4 {
///         let seen = &seen;
///         s.spawn(move |_| {
///             let tenant = TENANT.get();
///             TENANT.set("changed"); // stays in this job
///             seen.lock().unwrap().push((n, tenant));
///         });
///     }
/// });
/// let mut seen = seen.into_inner().unwrap();
/// seen.sort();
/// assert_eq!(seen, [(0, Some("acme")), (1, Some("acme")), (2, Some("acme")), (3, Some("acme"))]);
/// assert_eq!(TENANT.get(), Some("acme"));
/// ```
pub fn scope<'scope, OP, R>(op: OP) -> R
where
    OP: FnOnce(&Scope<'_, 'scope>) -> R + Send,
    R: Send,
{
    let ec = contextvars::get_execution_context().inherited();
    rayon::scope(move |inner| contextvars::run_with_execution_context(&ec, || op(&Scope { inner })))
}

/// The scope [`scope`] gives its closure and its jobs: a `rayon::Scope` whose
/// [`spawn`](Self::spawn) carries the context.
pub struct Scope<'a, 'scope> {
    inner: &'a rayon::Scope<'scope>,
}

impl<'scope> Scope<'_, 'scope> {
    /// `rayon::Scope::spawn` carrying a snapshot of the current context (the job runs in it
    /// with a logical context of its own); the job is given this scope again, to spawn more.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use contextvars::ContextVar;
    ///
    /// static DEPTH: ContextVar<usize> = ContextVar::new("depth");
    ///
    /// let deepest = AtomicUsize::new(0);
    /// DEPTH.set(0);
    /// exec_context::rayon::scope(|s| {
    ///     s.spawn(|s| {
    ///         DEPTH.set(DEPTH.get().unwrap() + 1);
    ///         // Spawned from this job: starts from its context.
    ///         s.spawn(|_| {
    ///             deepest.fetch_max(DEPTH.get().unwrap() + 1, Ordering::Relaxed);
    ///         });
    ///     });
    /// });
    /// assert_eq!(deepest.load(Ordering::Relaxed), 2);
    /// assert_eq!(DEPTH.get(), Some(0));
    /// ```
    pub fn spawn<BODY>(&self, body: BODY)
    where
        BODY: for<'a> FnOnce(&Scope<'a, 'scope>) + Send + 'scope,
    {
        let ec = contextvars::get_execution_context().inherited();
        self.inner.spawn(move |inner| {
            contextvars::run_with_execution_context(&ec, || body(&Scope { inner }));
        });
    }

    /// The `rayon::Scope` underneath: what is spawned on it directly is a plain job.
    ///
    /// ```
    /// exec_context::rayon::scope(|s| {
    ///     s.rayon_scope().spawn(|_| { /* runs in whatever context its thread has */ });
    /// });
    /// ```
    pub fn rayon_scope(&self) -> &rayon::Scope<'scope> {
        self.inner
    }
}

impl std::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}
