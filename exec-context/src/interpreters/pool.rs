//! `InterpreterPool`: a thread pool whose every worker runs its jobs in an interpreter of its
//! own (`concurrent.futures.InterpreterPoolExecutor`).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll, Waker};
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use super::error::{ExecutionFailed, InterpreterError};
use super::shareable::{Share, Shareable};
use super::{Interpreter, create};

/// Why a pool job produced no result.
///
/// ```
/// use exec_context::interpreters::{InterpreterPool, PoolError};
///
/// let pool = InterpreterPool::new(1).unwrap();
/// let job = pool.submit_fallible(|| "x".parse::<i32>()).unwrap();
/// assert!(matches!(job.wait(), Err(PoolError::Failed(_))));
/// pool.shutdown(true);
/// assert!(matches!(pool.submit(|| 1), Err(PoolError::Shutdown)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError {
    /// The job failed (returned an error or panicked); the original is the source.
    Failed(ExecutionFailed),
    /// A worker's initializer failed, or a worker's interpreter was closed from outside the
    /// pool (it is listed by [`list_all`](super::list_all)), so the pool is broken
    /// (`BrokenInterpreterPool`): pending and later jobs are refused.
    Broken(Arc<ExecutionFailed>),
    /// The pool was shut down before the job was submitted.
    Shutdown,
    /// The job was cancelled before it started.
    Cancelled,
    /// [`JobHandle::wait_timeout`] ran out of time; the job goes on, and the handle can be
    /// waited on again.
    Timeout,
    /// The job's result was taken already (by an earlier
    /// [`wait_timeout`](JobHandle::wait_timeout) or poll).
    Taken,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Failed(failed) => write!(f, "the job failed: {failed}"),
            PoolError::Broken(failed) => {
                write!(
                    f,
                    "the interpreter pool is broken (an initializer failed, or a worker's \
                     interpreter was closed): {failed}"
                )
            }
            PoolError::Shutdown => f.write_str("the interpreter pool was shut down"),
            PoolError::Cancelled => f.write_str("the job was cancelled"),
            PoolError::Timeout => f.write_str("the job did not finish in time"),
            PoolError::Taken => f.write_str("the job's result was taken already"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Failed(failed) => Some(failed),
            PoolError::Broken(failed) => Some(&**failed),
            _ => None,
        }
    }
}

impl PoolError {
    /// The job's failure, if it failed.
    ///
    /// ```
    /// use exec_context::interpreters::{InterpreterPool, PoolError};
    ///
    /// let pool = InterpreterPool::new(1).unwrap();
    /// let error = pool.submit_fallible(|| "x".parse::<i32>()).unwrap().wait().unwrap_err();
    /// assert!(error.as_failed().unwrap().type_name().ends_with("ParseIntError"));
    /// assert!(PoolError::Shutdown.as_failed().is_none());
    /// ```
    pub fn as_failed(&self) -> Option<&ExecutionFailed> {
        match self {
            PoolError::Failed(failed) => Some(failed),
            _ => None,
        }
    }
}

fn job_failure(error: InterpreterError, interp: u64) -> PoolError {
    match error {
        InterpreterError::Failed(failed) => PoolError::Failed(failed),
        // A worker's interpreter closed from outside (it is listed by `list_all`): the job
        // fails with it, and the worker then breaks the pool (see `worker`).
        other => PoolError::Failed(ExecutionFailed::from_error(interp, other)),
    }
}

enum SlotState<T> {
    Pending,
    Running,
    Done(Result<T, PoolError>),
    Taken,
}

struct Slot<T> {
    state: Mutex<(SlotState<T>, Option<Waker>)>,
    done: Condvar,
    /// Drops the job, if no worker took it (for `cancel`).
    discard: Box<dyn Fn() + Send + Sync>,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, (SlotState<T>, Option<Waker>)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the job unless it was cancelled.
    fn start(&self) -> bool {
        let mut state = self.lock();
        if matches!(state.0, SlotState::Pending) {
            state.0 = SlotState::Running;
            true
        } else {
            false
        }
    }

    /// Records the job's result, unless it was cancelled; returns whether it was not.
    fn finish(&self, result: Result<T, PoolError>) -> bool {
        let (waker, finished) = {
            let mut state = self.lock();
            let finished = matches!(state.0, SlotState::Pending | SlotState::Running);
            if finished {
                state.0 = SlotState::Done(result);
            }
            (state.1.take(), finished)
        };
        self.done.notify_all();
        if let Some(waker) = waker {
            // A waker is the awaiting executor's code: its panic must not end the worker.
            crate::discarding_panics(|| waker.wake());
        }
        finished
    }
}

/// The pending result of a job submitted to an [`InterpreterPool`] (a `Future` in the
/// `concurrent.futures` sense, and a Rust [`Future`] too).
///
/// ```
/// use exec_context::interpreters::InterpreterPool;
///
/// let pool = InterpreterPool::new(1).unwrap();
/// let job = pool.submit(|| 2 + 2).unwrap();
/// assert_eq!(job.wait().unwrap(), 4); // waited on by this thread
/// let job = pool.submit(|| 3 * 3).unwrap();
/// assert_eq!(futures_executor::block_on(job).unwrap(), 9); // or awaited as a future
/// ```
pub struct JobHandle<T> {
    slot: Arc<Slot<T>>,
}

impl<T> JobHandle<T> {
    /// Waits for the job and returns its result.
    ///
    /// # Errors
    ///
    /// [`PoolError::Failed`] with the job's failure; [`PoolError::Broken`];
    /// [`PoolError::Cancelled`]; [`PoolError::Taken`] after a
    /// [`wait_timeout`](Self::wait_timeout) returned the result.
    ///
    /// ```
    /// use exec_context::interpreters::{InterpreterPool, PoolError};
    ///
    /// let pool = InterpreterPool::new(1).unwrap();
    /// let job = pool.submit(|| String::from("done")).unwrap();
    /// assert_eq!(job.wait().unwrap(), "done");
    /// let job = pool.submit_fallible(|| "x".parse::<u8>()).unwrap();
    /// assert!(matches!(job.wait(), Err(PoolError::Failed(_))));
    /// ```
    pub fn wait(self) -> Result<T, PoolError> {
        self.wait_until(None)
    }

    /// Waits at most `timeout` for the job's result: the `*_timeout(.., Duration)` shape of
    /// every timed call in [`interpreters`](super), with the timeout as an error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use exec_context::interpreters::{InterpreterPool, PoolError};
    ///
    /// let pool = InterpreterPool::new(1).unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let job = pool.submit(move || rx.recv().is_ok()).unwrap();
    /// assert!(matches!(job.wait_timeout(Duration::from_millis(1)), Err(PoolError::Timeout)));
    /// tx.send(()).unwrap();
    /// assert_eq!(job.wait_timeout(Duration::from_secs(60)).unwrap(), true);
    /// assert!(matches!(job.wait(), Err(PoolError::Taken)));
    /// ```
    ///
    /// # Errors
    ///
    /// [`PoolError::Timeout`] when the job has not finished in time (it goes on; wait
    /// again or [`cancel`](Self::cancel)); as [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<T, PoolError> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<T, PoolError> {
        let mut state = self.slot.lock();
        loop {
            match std::mem::replace(&mut state.0, SlotState::Taken) {
                SlotState::Done(result) => return result,
                SlotState::Taken => return Err(PoolError::Taken),
                other => state.0 = other,
            }
            state = match deadline {
                None => self
                    .slot
                    .done
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(PoolError::Timeout);
                    }
                    self.slot
                        .done
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Whether the job has finished (or was cancelled).
    ///
    /// ```
    /// use std::time::Duration;
    /// use exec_context::interpreters::InterpreterPool;
    ///
    /// let pool = InterpreterPool::new(1).unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let job = pool.submit(move || rx.recv().is_ok()).unwrap();
    /// assert!(!job.is_finished());
    /// tx.send(()).unwrap();
    /// assert!(job.wait_timeout(Duration::from_secs(60)).unwrap());
    /// assert!(job.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        matches!(self.slot.lock().0, SlotState::Done(_) | SlotState::Taken)
    }

    /// Cancels the job if it has not started; returns whether it was cancelled. What the job
    /// captured is dropped now, on this thread and in its context (the job never ran: its
    /// interpreter's context is not entered for it), or, if a worker had just taken the job
    /// when it was cancelled, by that worker, which then does not run it. A panic of that
    /// drop is discarded.
    ///
    /// ```
    /// use exec_context::interpreters::{InterpreterPool, PoolError};
    ///
    /// let pool = InterpreterPool::new(1).unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let busy = pool.submit(move || rx.recv().is_ok()).unwrap(); // holds the one worker
    /// let queued = pool.submit(|| 1).unwrap();
    /// assert!(queued.cancel());
    /// assert!(matches!(queued.wait(), Err(PoolError::Cancelled)));
    /// tx.send(()).unwrap();
    /// assert!(busy.wait().unwrap());
    /// ```
    pub fn cancel(&self) -> bool {
        let cancelled = {
            let mut state = self.slot.lock();
            if matches!(state.0, SlotState::Pending) {
                state.0 = SlotState::Done(Err(PoolError::Cancelled));
                true
            } else {
                false
            }
        };
        if cancelled {
            self.slot.done.notify_all();
            // What the job captured goes now (a panicking destructor stays here).
            crate::discarding_panics(|| (self.slot.discard)());
        }
        cancelled
    }
}

impl<T> Future for JobHandle<T> {
    type Output = Result<T, PoolError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.lock();
        match std::mem::replace(&mut state.0, SlotState::Taken) {
            SlotState::Done(result) => Poll::Ready(result),
            SlotState::Taken => Poll::Ready(Err(PoolError::Taken)),
            other => {
                state.0 = other;
                state.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

type Job = Box<dyn FnOnce(&Interpreter) + Send>;
/// Fails a queued job's handle (a job that will never run); returns whether the job was
/// still pending (not cancelled).
type Refuse = Box<dyn FnOnce(PoolError) -> bool + Send>;
type Initializer = Arc<dyn Fn(&Interpreter) -> Result<(), InterpreterError> + Send + Sync>;

struct Shared {
    state: Mutex<PoolState>,
    available: Condvar,
}

struct PoolState {
    jobs: VecDeque<(Job, Refuse)>,
    shutdown: bool,
    broken: Option<Arc<ExecutionFailed>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Configures an [`InterpreterPool`].
///
/// ```
/// use exec_context::interpreters::{self, InterpreterPool};
///
/// let pool = InterpreterPool::builder()
///     .workers(2)
///     .thread_name_prefix("scaler")
///     .main_attrs([("scale", 10.into())])
///     .build()
///     .unwrap();
/// let job = pool.submit(|| {
///     let scale = interpreters::get_current().get_main_attr("scale").unwrap().unwrap();
///     scale.extract::<i64>().unwrap() * 2
/// });
/// assert_eq!(job.unwrap().wait().unwrap(), 20);
/// ```
pub struct PoolBuilder {
    workers: usize,
    thread_name_prefix: String,
    initializer: Option<Initializer>,
    main_attrs: Vec<(String, Shareable)>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("thread_name_prefix", &self.thread_name_prefix)
            .field("initializer", &self.initializer.is_some())
            .field("main_attrs", &self.main_attrs)
            .finish()
    }
}

/// The most workers a pool starts: each is an OS thread with an interpreter, started at
/// once (more is refused rather than left to the OS's thread limit, or to an allocation of
/// the thread list that cannot succeed).
///
/// ```
/// use exec_context::interpreters::{InterpreterPool, MAX_WORKERS};
///
/// let error = InterpreterPool::new(MAX_WORKERS + 1).unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
/// ```
pub const MAX_WORKERS: usize = 1 << 16;

impl PoolBuilder {
    /// The number of workers (default: the available parallelism); at least one.
    ///
    /// ```
    /// use exec_context::interpreters::InterpreterPool;
    ///
    /// let pool = InterpreterPool::builder().workers(3).build().unwrap();
    /// assert_eq!(pool.workers(), 3);
    /// let pool = InterpreterPool::builder().workers(0).build().unwrap();
    /// assert_eq!(pool.workers(), 1); // at least one
    /// ```
    #[must_use]
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The prefix of the worker threads' names (`<prefix>-<n>`).
    ///
    /// ```
    /// use exec_context::interpreters::InterpreterPool;
    ///
    /// let pool = InterpreterPool::builder()
    ///     .workers(1)
    ///     .thread_name_prefix("parser")
    ///     .build()
    ///     .unwrap();
    /// let name = pool.submit(|| std::thread::current().name().map(str::to_owned)).unwrap();
    /// assert_eq!(name.wait().unwrap().as_deref(), Some("parser-0"));
    /// ```
    #[must_use]
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = prefix.into();
        self
    }

    /// Code each worker runs in its interpreter before its first job. If it fails in any
    /// worker, the pool is broken.
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use exec_context::interpreters::InterpreterPool;
    ///
    /// static LOCALE: ContextVar<&str> = ContextVar::new("locale");
    ///
    /// let pool = InterpreterPool::builder()
    ///     .workers(2)
    ///     .initializer(|| {
    ///         LOCALE.set("fr");
    ///         Ok::<(), std::io::Error>(())
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let job = pool.submit(|| LOCALE.get() == Some("fr")).unwrap();
    /// assert!(job.wait().unwrap()); // what the initializer set is there for the jobs
    /// assert_eq!(LOCALE.get(), None); // and only in the workers' interpreters
    /// ```
    #[must_use]
    pub fn initializer<E>(
        mut self,
        init: impl Fn() -> Result<(), E> + Send + Sync + 'static,
    ) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.initializer = Some(Arc::new(move |interp: &Interpreter| interp.try_exec(&init)));
        self
    }

    /// Names bound in every worker's `__main__` before the initializer runs (the `shared`
    /// argument python/cpython#124694 planned).
    ///
    /// ```
    /// use exec_context::interpreters::{self, InterpreterPool, Queue, Shareable};
    ///
    /// let results = Queue::new(0);
    /// let pool = InterpreterPool::builder()
    ///     .workers(2)
    ///     .main_attrs([("results", results.clone().into())])
    ///     .build()
    ///     .unwrap();
    /// let job = pool.submit(|| {
    ///     let results = interpreters::get_current().get_main_attr("results").unwrap().unwrap();
    ///     results.extract::<Queue>().unwrap().put("done").unwrap();
    /// });
    /// job.unwrap().wait().unwrap();
    /// assert_eq!(results.get(), Ok(Shareable::from("done")));
    /// ```
    #[must_use]
    pub fn main_attrs<I, K>(mut self, attrs: I) -> Self
    where
        I: IntoIterator<Item = (K, Shareable)>,
        K: Into<String>,
    {
        self.main_attrs
            .extend(attrs.into_iter().map(|(k, v)| (k.into(), v)));
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// The OS refused to start a thread; `InvalidInput` for more than [`MAX_WORKERS`]
    /// workers, or for a thread name prefix with a NUL byte (a thread name cannot hold one).
    ///
    /// ```
    /// use exec_context::interpreters::InterpreterPool;
    ///
    /// let error = InterpreterPool::new(usize::MAX).unwrap_err();
    /// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    /// let error = InterpreterPool::builder().thread_name_prefix("a\0b").build().unwrap_err();
    /// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    /// ```
    pub fn build(self) -> std::io::Result<InterpreterPool> {
        if self.thread_name_prefix.contains('\0') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the thread name prefix {:?} holds a NUL byte",
                    self.thread_name_prefix
                ),
            ));
        }
        if self.workers > MAX_WORKERS {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "an interpreter pool of {} workers (at most {MAX_WORKERS})",
                    self.workers
                ),
            ));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(PoolState {
                jobs: VecDeque::new(),
                shutdown: false,
                broken: None,
            }),
            available: Condvar::new(),
        });
        let mut threads = Vec::with_capacity(self.workers);
        for n in 0..self.workers {
            let worker_shared = shared.clone();
            let init = self.initializer.clone();
            let attrs = self.main_attrs.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{n}", self.thread_name_prefix))
                .spawn(move || worker(&worker_shared, init, attrs));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    let pool = InterpreterPool {
                        shared,
                        worker_ids: threads.iter().map(|t| t.thread().id()).collect(),
                        threads: Mutex::new(threads),
                        workers: n,
                    };
                    pool.shutdown(true);
                    return Err(error);
                }
            }
        }
        Ok(InterpreterPool {
            shared,
            worker_ids: threads.iter().map(|t| t.thread().id()).collect(),
            threads: Mutex::new(threads),
            workers: self.workers,
        })
    }
}

/// Fails every job in `jobs` with `error()`: first all the handles, then the jobs' captures
/// are dropped (a panicking destructor cannot leave a handle waiting forever; the first such
/// panic reaches the caller once all are dropped).
/// Returns how many of them were still pending (not cancelled through their handles).
fn refuse_all(jobs: VecDeque<(Job, Refuse)>, error: impl Fn() -> PoolError) -> usize {
    let (jobs, refusals): (Vec<Job>, Vec<Refuse>) = jobs.into_iter().unzip();
    let pending = refusals
        .into_iter()
        .map(|refuse| refuse(error()))
        .filter(|&pending| pending)
        .count();
    // One by one: two captures whose destructors panic must not abort the process.
    super::drop_each(jobs);
    pending
}

fn worker(shared: &Shared, init: Option<Initializer>, attrs: Vec<(String, Shareable)>) {
    let interp = create();
    let prepared = interp.prepare_main(attrs);
    // The initializer is user code: a panic out of it (outside its runs in the
    // interpreter, which catch their own) breaks the pool like an error, rather than end
    // the worker with the pool neither broken nor served.
    let ready = prepared.and_then(|()| {
        init.map_or(Ok(()), |init| {
            catch_unwind(AssertUnwindSafe(|| init(&interp))).unwrap_or_else(|payload| {
                Err(InterpreterError::Failed(ExecutionFailed::describe::<
                    ExecutionFailed,
                >(
                    interp.id(), Err(payload)
                )))
            })
        })
    });
    if let Err(error) = ready {
        break_pool(shared, &interp, error);
        return;
    }
    loop {
        let job = {
            let mut state = shared.lock();
            loop {
                if state.broken.is_some() {
                    return;
                }
                if let Some((job, _)) = state.jobs.pop_front() {
                    break job;
                }
                if state.shutdown {
                    return;
                }
                state = shared
                    .available
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        job(&interp);
        // Its interpreter was closed from outside (while idle, since a running interpreter
        // cannot be closed): every later job would fail the same way, so the pool breaks,
        // as when an initializer fails.
        if super::registry::is_closed(interp.id()) {
            let error = InterpreterError::NotFound { id: interp.id() };
            break_pool(shared, &interp, error);
            return;
        }
    }
}

/// Marks the pool broken by `error` (met by the worker running `interp`) and fails every
/// queued job with it.
fn break_pool(shared: &Shared, interp: &Interpreter, error: InterpreterError) {
    let failure = Arc::new(match error {
        InterpreterError::Failed(failed) => failed,
        other => ExecutionFailed::from_error(interp.id(), other),
    });
    let orphans = {
        let mut state = shared.lock();
        state.broken.get_or_insert(failure.clone());
        std::mem::take(&mut state.jobs)
    };
    shared.available.notify_all();
    // Every handle is refused first; a panicking capture's `Drop` ends here, not the
    // worker (which ends anyway).
    crate::discarding_panics(|| {
        refuse_all(orphans, || PoolError::Broken(failure.clone()));
    });
}

/// A pool of worker threads, each running jobs in an interpreter of its own
/// (`concurrent.futures.InterpreterPoolExecutor`): a job sees its worker's context state and
/// `__main__`, never another worker's. Failures come back as [`ExecutionFailed`] with the
/// original as source.
///
/// Items a job puts in a queue or channel belong to its worker's interpreter: once the pool
/// is shut down or dropped and that interpreter closes, the ones not taken yet are
/// [unbound](super::UnboundPolicy) (with the default policy, read back as
/// [`Shareable::Unbound`](super::Shareable::Unbound)), as in CPython. Take them first, or
/// put them with another policy:
///
/// ```
/// use exec_context::interpreters::{InterpreterPool, Queue, Shareable, UnboundPolicy};
///
/// let results = Queue::new(0);
/// let pool = InterpreterPool::new(1).unwrap();
/// let (plain, kept) = (results.clone(), results.clone());
/// pool.submit(move || plain.put(1).unwrap()).unwrap().wait().unwrap();
/// pool.submit(move || kept.put_with_policy(2, UnboundPolicy::Remove).unwrap())
///     .unwrap()
///     .wait()
///     .unwrap();
/// drop(pool); // the worker's interpreter closes
/// assert_eq!(results.get_nowait(), Ok(Shareable::Unbound)); // the first item, unbound
/// assert!(results.is_empty()); // the second was removed with its interpreter
/// ```
///
/// ```
/// use exec_context::interpreters::InterpreterPool;
///
/// let pool = InterpreterPool::builder().workers(2).build().unwrap();
/// let squares: Vec<u64> = pool
///     .map(|x: u64| x * x, 1..=4)
///     .unwrap()
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(squares, [1, 4, 9, 16]);
/// let job = pool.submit(|| exec_context::interpreters::get_current().id()).unwrap();
/// assert_ne!(job.wait().unwrap(), 0); // not the main interpreter
/// pool.shutdown(true);
/// ```
pub struct InterpreterPool {
    shared: Arc<Shared>,
    /// The workers' threads, joined by `shutdown(true)`, which holds the lock until they
    /// are: a concurrent `shutdown(true)` waits for it.
    threads: Mutex<Vec<ThreadHandle<()>>>,
    /// The workers' thread ids: a worker (a job) never waits for the workers.
    worker_ids: Vec<std::thread::ThreadId>,
    workers: usize,
}

impl InterpreterPool {
    /// A pool with `workers` workers and no initializer.
    ///
    /// # Errors
    ///
    /// The OS refused to start a thread.
    ///
    /// ```
    /// use exec_context::interpreters::InterpreterPool;
    ///
    /// let pool = InterpreterPool::new(2).unwrap();
    /// assert_eq!(pool.workers(), 2);
    /// assert_eq!(pool.submit(|| 1 + 1).unwrap().wait().unwrap(), 2);
    /// ```
    pub fn new(workers: usize) -> std::io::Result<Self> {
        Self::builder().workers(workers).build()
    }

    /// A builder, for the initializer, the shared `__main__` names and thread names.
    ///
    /// ```
    /// use exec_context::interpreters::InterpreterPool;
    ///
    /// let pool = InterpreterPool::builder().build().unwrap(); // the default number of workers
    /// let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    /// assert_eq!(pool.workers(), cpus);
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            thread_name_prefix: "interpreter-pool".to_owned(),
            initializer: None,
            main_attrs: Vec::new(),
        }
    }

    /// The number of workers.
    ///
    /// ```
    /// use exec_context::interpreters::InterpreterPool;
    ///
    /// let pool = InterpreterPool::new(3).unwrap();
    /// assert_eq!(pool.workers(), 3);
    /// ```
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Whether the pool is broken: an initializer failed, a worker's interpreter was closed
    /// from outside the pool, or setting up a worker's `__main__` failed ([`PoolError::Broken`]).
    ///
    /// ```
    /// use exec_context::interpreters::{InterpreterPool, PoolError};
    ///
    /// let pool = InterpreterPool::builder()
    ///     .workers(1)
    ///     .initializer(|| Err(std::io::Error::other("no config")))
    ///     .build()
    ///     .unwrap();
    /// let outcome = pool.submit(|| 1).and_then(|job| job.wait());
    /// assert!(matches!(outcome, Err(PoolError::Broken(_))));
    /// assert!(pool.is_broken());
    /// ```
    pub fn is_broken(&self) -> bool {
        self.shared.lock().broken.is_some()
    }

    /// Submits a job; its result comes back through the handle.
    ///
    /// # Errors
    ///
    /// [`PoolError::Shutdown`]; [`PoolError::Broken`].
    ///
    /// ```
    /// use exec_context::interpreters::{self, InterpreterPool, PoolError};
    ///
    /// let pool = InterpreterPool::new(1).unwrap();
    /// let job = pool.submit(|| interpreters::get_current().is_main()).unwrap();
    /// assert!(!job.wait().unwrap()); // it ran in the worker's interpreter
    /// pool.shutdown(false);
    /// assert!(matches!(pool.submit(|| ()), Err(PoolError::Shutdown)));
    /// ```
    pub fn submit<T, F>(&self, job: F) -> Result<JobHandle<T>, PoolError>
    where
        T: Share,
        F: FnOnce() -> T + Send + 'static,
    {
        self.submit_fallible(move || Ok::<T, std::convert::Infallible>(job()))
    }

    /// Submits a job that can fail: its `Err` comes back as [`PoolError::Failed`], with the
    /// error as the source of the [`ExecutionFailed`].
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// ```
    /// use exec_context::interpreters::InterpreterPool;
    ///
    /// let pool = InterpreterPool::new(1).unwrap();
    /// let job = pool.submit_fallible(|| "12".parse::<u32>()).unwrap();
    /// assert_eq!(job.wait().unwrap(), 12);
    /// let job = pool.submit_fallible(|| "twelve".parse::<u32>()).unwrap();
    /// let error = job.wait().unwrap_err();
    /// let failed = error.as_failed().unwrap();
    /// assert!(failed.downcast_source::<std::num::ParseIntError>().is_some());
    /// ```
    pub fn submit_fallible<T, E, F>(&self, job: F) -> Result<JobHandle<T>, PoolError>
    where
        T: Share,
        E: std::error::Error + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E> + Send + 'static,
    {
        // The job waits here, not in the queue's entry, so that `cancel` can drop what it
        // captured at once, not when a worker reaches the entry.
        // The queue entry owns it; `cancel` reaches it through a weak handle, so that a job
        // the pool refuses (at shutdown, or broken) goes with its entry, not with its handle.
        let queued = Arc::new(parking_lot::Mutex::new(Some(job)));
        let discarded = Arc::downgrade(&queued);
        let slot = Arc::new(Slot {
            state: Mutex::new((SlotState::Pending, None)),
            done: Condvar::new(),
            discard: Box::new(move || {
                if let Some(queued) = discarded.upgrade() {
                    drop(queued.lock().take());
                }
            }),
        });
        let runner = slot.clone();
        let run: Job = Box::new(move |interp: &Interpreter| {
            // Whatever the job leaves is dropped in here, where a panicking `Drop` cannot take
            // the worker down: its result or failure (which the slot keeps, and drops with
            // the runner when no handle is left to take it; a failure holds the job's own
            // error), or, for a cancelled job (normally already dropped by `cancel`), what
            // it captured.
            crate::discarding_panics(move || {
                let job = queued.lock().take();
                match job {
                    Some(job) if runner.start() => {
                        let result = interp
                            .try_call(job)
                            .map_err(|e| job_failure(e, interp.id()));
                        let _ = runner.finish(result);
                    }
                    job => drop(job),
                }
                drop(runner);
            });
        });
        let refused = slot.clone();
        let refuse: Refuse = Box::new(move |error: PoolError| refused.finish(Err(error)));
        {
            let mut state = self.shared.lock();
            if let Some(failure) = &state.broken {
                return Err(PoolError::Broken(failure.clone()));
            }
            if state.shutdown {
                return Err(PoolError::Shutdown);
            }
            state.jobs.push_back((run, refuse));
        }
        self.shared.available.notify_one();
        Ok(JobHandle { slot })
    }

    /// Runs `f` over `items` in the pool; the results come back in the order of `items`
    /// (`Executor.map`). All jobs are submitted before this returns.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit), if the pool refuses a job (those already submitted run).
    ///
    /// ```
    /// use exec_context::interpreters::InterpreterPool;
    ///
    /// let pool = InterpreterPool::new(2).unwrap();
    /// let lengths: Vec<usize> = pool
    ///     .map(|word: &str| word.len(), ["a", "bb", "ccc"])
    ///     .unwrap()
    ///     .collect::<Result<_, _>>()
    ///     .unwrap();
    /// assert_eq!(lengths, [1, 2, 3]);
    /// ```
    pub fn map<T, A, F, I>(
        &self,
        f: F,
        items: I,
    ) -> Result<impl Iterator<Item = Result<T, PoolError>>, PoolError>
    where
        T: Share,
        A: Send + 'static,
        F: Fn(A) -> T + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
    {
        let f = Arc::new(f);
        let handles = items
            .into_iter()
            .map(|item| {
                let f = f.clone();
                self.submit(move || f(item))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(handles.into_iter().map(JobHandle::wait))
    }

    /// Cancels every job that has not started; returns how many this call cancelled (jobs
    /// cancelled before through their handles are not counted again). What they captured is
    /// dropped on this thread, in its context, as with [`JobHandle::cancel`], except that a
    /// panic of one of those drops comes out of this call once they are all dropped (the
    /// first panic; the others are discarded).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use exec_context::interpreters::{InterpreterPool, PoolError};
    ///
    /// let pool = InterpreterPool::new(1).unwrap();
    /// let (started, is_started) = mpsc::channel();
    /// let (go, wait_for_go) = mpsc::channel::<()>();
    /// let busy = pool
    ///     .submit(move || {
    ///         started.send(()).unwrap();
    ///         wait_for_go.recv().is_ok()
    ///     })
    ///     .unwrap();
    /// is_started.recv().unwrap(); // the one worker is busy
    /// let queued: Vec<_> = (0..3).map(|n| pool.submit(move || n).unwrap()).collect();
    /// assert!(queued[0].cancel());
    /// assert_eq!(pool.cancel_pending(), 2); // the one cancelled already is not counted
    /// assert!(queued.into_iter().all(|job| matches!(job.wait(), Err(PoolError::Cancelled))));
    /// go.send(()).unwrap();
    /// assert!(busy.wait().unwrap());
    /// ```
    pub fn cancel_pending(&self) -> usize {
        let pending = std::mem::take(&mut self.shared.lock().jobs);
        refuse_all(pending, || PoolError::Cancelled)
    }

    /// Stops accepting jobs; the workers finish the queued ones, then let go of their
    /// interpreters, which close once no other handle holds them (see
    /// [`InterpreterPool`] for what that does to the items their jobs put in queues).
    /// With `wait`, returns once they have, however many threads call it at once; called by
    /// one of the pool's own jobs, it cannot wait for its own worker and does not wait.
    /// Dropping the pool does `shutdown(true)`.
    ///
    /// ```
    /// use exec_context::interpreters::{InterpreterPool, PoolError};
    ///
    /// let pool = InterpreterPool::new(1).unwrap();
    /// let job = pool.submit(|| 42).unwrap();
    /// pool.shutdown(true); // the queued job runs first
    /// assert_eq!(job.wait().unwrap(), 42);
    /// assert!(matches!(pool.submit(|| 0), Err(PoolError::Shutdown)));
    /// ```
    pub fn shutdown(&self, wait: bool) {
        self.shared.lock().shutdown = true;
        self.shared.available.notify_all();
        if wait && !self.worker_ids.contains(&std::thread::current().id()) {
            // Held while joining: another `shutdown(true)` returns only once they are joined.
            // No worker takes this lock (see above), so the joins cannot wait for it.
            let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
            for thread in threads.drain(..) {
                // A worker never panics: jobs' panics (and their failures' descriptions) are
                // caught by `try_call`, what they leave is dropped under a catch (see
                // `submit_fallible`), the initializer's, wakers' and refused captures' panics
                // where they run.
                let _ = thread.join();
            }
        }
    }
}

impl Drop for InterpreterPool {
    fn drop(&mut self) {
        self.shutdown(true);
    }
}

impl fmt::Debug for InterpreterPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterpreterPool")
            .field("workers", &self.workers)
            .field("broken", &self.is_broken())
            .finish()
    }
}
