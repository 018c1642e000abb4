//! Thread pools behind one trait, [`Pool`], and the routine that submits jobs to any of
//! them and waits for their results: [`Jobs`].
//!
//! The contenders: our [`InterpreterPool`] (every job runs in its worker's interpreter and
//! comes back through a [`JobHandle`]); [`PlainPool`], the same design without interpreters
//! — one `Mutex<VecDeque>` of boxed jobs, one `Condvar`, a result slot per job — so the
//! difference is what the interpreters cost; and a `rayon::ThreadPool` whose jobs send their
//! result through a one-shot crossbeam channel. Every pool has [`WORKERS`] threads and runs
//! the same job, a `fn() -> u64` that returns a constant.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use exec_context::interpreters::{InterpreterPool, JobHandle};

use crate::clock::process_cpu_time;
use crate::harness::Routine;

/// How long a run waits, after its clock stopped, for idle workers to go to sleep.
pub const SETTLE: Duration = Duration::from_millis(1);

/// Batches of 64 jobs each new pool runs before the clock starts.
pub const WARM_UP_BATCHES: usize = 4;

/// Worker threads of every pool (the cores of the machine the report is written on).
pub const WORKERS: usize = 2;

/// A job: a plain function, so every pool boxes a closure of the same size.
pub type Job = fn() -> u64;

/// The job every pool runs: nothing but returning a value.
#[inline(never)]
pub fn trivial_job() -> u64 {
    black_box(1)
}

/// One contender's thread pool: submit a job, wait for its result.
pub trait Pool {
    /// What a submit returns to wait on.
    type Handle;

    /// Queues `job` for a worker.
    fn submit(&self, job: Job) -> Self::Handle;

    /// Waits for the job behind `handle` and returns its result.
    fn wait(&self, handle: Self::Handle) -> u64;
}

/// Ours: [`InterpreterPool::submit`] and [`JobHandle::wait`].
pub struct OurPool(InterpreterPool);

impl OurPool {
    /// A pool of [`WORKERS`] workers, each with an interpreter of its own.
    ///
    /// # Panics
    ///
    /// If the OS refuses a thread.
    pub fn new() -> Self {
        Self(InterpreterPool::new(WORKERS).expect("the OS starts the pool's threads"))
    }
}

impl Default for OurPool {
    fn default() -> Self {
        Self::new()
    }
}

impl Pool for OurPool {
    type Handle = JobHandle<u64>;

    fn submit(&self, job: Job) -> JobHandle<u64> {
        self.0
            .submit(job)
            .expect("the benchmark never shuts its pool down")
    }

    fn wait(&self, handle: JobHandle<u64>) -> u64 {
        handle.wait().expect("the job cannot fail")
    }
}

type PlainJob = Box<dyn FnOnce() + Send>;

struct PlainQueue {
    jobs: VecDeque<PlainJob>,
    shutdown: bool,
}

struct PlainShared {
    queue: Mutex<PlainQueue>,
    available: Condvar,
}

impl PlainShared {
    fn lock(&self) -> MutexGuard<'_, PlainQueue> {
        // Jobs run outside the lock, so it is never poisoned by one.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a [`PlainPool`] job leaves its result.
pub struct PlainSlot {
    result: Mutex<Option<u64>>,
    done: Condvar,
}

/// The baseline: a minimal pool of the same design as ours, without interpreters.
pub struct PlainPool {
    shared: Arc<PlainShared>,
    workers: Vec<JoinHandle<()>>,
}

impl PlainPool {
    /// A pool of [`WORKERS`] workers.
    pub fn new() -> Self {
        let shared = Arc::new(PlainShared {
            queue: Mutex::new(PlainQueue {
                jobs: VecDeque::new(),
                shutdown: false,
            }),
            available: Condvar::new(),
        });
        let workers = (0..WORKERS)
            .map(|_| {
                let shared = shared.clone();
                std::thread::spawn(move || plain_worker(&shared))
            })
            .collect();
        Self { shared, workers }
    }
}

impl Default for PlainPool {
    fn default() -> Self {
        Self::new()
    }
}

fn plain_worker(shared: &PlainShared) {
    loop {
        let job = {
            let mut queue = shared.lock();
            loop {
                if let Some(job) = queue.jobs.pop_front() {
                    break job;
                }
                if queue.shutdown {
                    return;
                }
                queue = shared
                    .available
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        job();
    }
}

impl Pool for PlainPool {
    type Handle = Arc<PlainSlot>;

    fn submit(&self, job: Job) -> Arc<PlainSlot> {
        let slot = Arc::new(PlainSlot {
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        let filled = slot.clone();
        let run: PlainJob = Box::new(move || {
            let value = job();
            *filled.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
            filled.done.notify_one();
        });
        self.shared.lock().jobs.push_back(run);
        self.shared.available.notify_one();
        slot
    }

    fn wait(&self, slot: Arc<PlainSlot>) -> u64 {
        let mut result = slot.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(value) = result.take() {
                return value;
            }
            result = slot
                .done
                .wait(result)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for PlainPool {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.available.notify_all();
        for worker in self.workers.drain(..) {
            // A worker only runs the benchmark's jobs, which do not panic.
            let _ = worker.join();
        }
    }
}

/// rayon: `ThreadPool::spawn`, the result sent back through a one-shot channel per job.
pub struct RayonPool(rayon::ThreadPool);

impl RayonPool {
    /// A pool of [`WORKERS`] threads.
    ///
    /// # Panics
    ///
    /// If the OS refuses a thread.
    pub fn new() -> Self {
        Self(
            rayon::ThreadPoolBuilder::new()
                .num_threads(WORKERS)
                .build()
                .expect("the OS starts the pool's threads"),
        )
    }
}

impl Default for RayonPool {
    fn default() -> Self {
        Self::new()
    }
}

impl Pool for RayonPool {
    type Handle = crossbeam_channel::Receiver<u64>;

    fn submit(&self, job: Job) -> crossbeam_channel::Receiver<u64> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.0.spawn(move || {
            // The receiver waits for this value, so the send cannot fail.
            let _ = tx.send(job());
        });
        rx
    }

    fn wait(&self, rx: crossbeam_channel::Receiver<u64>) -> u64 {
        rx.recv().expect("every spawned job sends its result")
    }
}

/// Submits `batch` jobs, then waits for all of them, per call: with a batch of 1, the
/// latency of one job through the pool; with more, the cost per job when the workers are
/// kept busy. Wall-clock time (the submitting thread sleeps while it waits); the CPU time
/// of the whole process, i.e. of the workers too, is kept for [`Routine::last_cpu_time`].
///
/// Every run starts a new pool, off the clock, and shuts it down afterwards. Pools kept
/// alive side by side were measured to favour the later-started one several-fold: on two
/// cores the order in which their threads start decides where the scheduler puts them, and
/// a wake-up across cores costs more than one on the waker's core. A pool per run gives
/// every contender the same chances. Each run also ends with a pause of [`SETTLE`] for idle
/// workers to go to sleep.
pub struct Jobs<P: Pool> {
    make: fn() -> P,
    batch: usize,
    handles: Vec<P::Handle>,
    cpu: Duration,
}

impl<P: Pool> Jobs<P> {
    /// Batches of `batch` jobs (at least 1) through pools that `make` starts.
    pub fn new(make: fn() -> P, batch: usize) -> Self {
        let batch = batch.max(1);
        Self {
            make,
            batch,
            handles: Vec::with_capacity(batch),
            cpu: Duration::ZERO,
        }
    }
}

impl<P: Pool> Routine for Jobs<P> {
    fn run(&mut self, calls: u64) -> Duration {
        let pool = (self.make)();
        let mut checksum = 0u64;
        // Every worker started, its allocator arena and stack warm, before the clock starts.
        for _ in 0..WARM_UP_BATCHES {
            let warm: Vec<P::Handle> = (0..64).map(|_| pool.submit(trivial_job)).collect();
            for handle in warm {
                checksum = checksum.wrapping_add(pool.wait(handle));
            }
        }
        let cpu = process_cpu_time();
        let began = Instant::now();
        for _ in 0..calls {
            self.handles
                .extend((0..self.batch).map(|_| pool.submit(trivial_job)));
            for handle in self.handles.drain(..) {
                checksum = checksum.wrapping_add(pool.wait(handle));
            }
        }
        let spent = began.elapsed();
        self.cpu = process_cpu_time().saturating_sub(cpu);
        black_box(checksum);
        drop(pool);
        // Idle rayon workers yield in a loop for a while before they sleep; let them (and
        // any other pool's) settle, off the clock, so they do not take CPU from the next
        // routine of the interleaved repetitions — or show up in its CPU time.
        std::thread::sleep(SETTLE);
        spent
    }

    fn ops_per_call(&self) -> u64 {
        self.batch as u64
    }

    fn last_cpu_time(&self) -> Option<Duration> {
        Some(self.cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs_every_job<P: Pool>(make: fn() -> P) {
        let mut one = Jobs::new(make, 1);
        one.run(20);
        one.run(1);
        let mut batched = Jobs::new(make, 8);
        batched.run(5);
        assert_eq!(batched.ops_per_call(), 8);
        assert!(batched.last_cpu_time().is_some());
    }

    #[test]
    fn every_pool_runs_jobs() {
        runs_every_job(OurPool::new);
        runs_every_job(PlainPool::new);
        runs_every_job(RayonPool::new);
    }
}
