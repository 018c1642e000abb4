//! `InterpreterPool`: jobs, failures, initializers, shared `__main__` names, shutdown.

use std::time::Duration;

use contextvars::ContextVar;
use exec_context::interpreters::{
    self, InterpreterPool, JobHandle, PoolError, Queue, Shareable, create_queue,
};

static WORKER_STATE: ContextVar<u32> = ContextVar::with_default("worker_state", 0);

#[derive(Debug, PartialEq)]
struct Invalid(u32);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid input {}", self.0)
    }
}

impl std::error::Error for Invalid {}

/// Occupies the pool's one worker with a job that waits for an item on the returned gate;
/// returns once the job runs, with its handle.
fn occupy(pool: &InterpreterPool) -> (Queue, JobHandle<Shareable>) {
    let gate = create_queue(0);
    let started = create_queue(0);
    let blocker = {
        let (gate, started) = (gate.clone(), started.clone());
        pool.submit(move || {
            started.put(()).unwrap();
            gate.get().unwrap()
        })
        .unwrap()
    };
    started.get().unwrap();
    (gate, blocker)
}

/// Whether the pool is broken within two seconds (a worker reports its failure itself).
fn becomes_broken(pool: &InterpreterPool) -> bool {
    for _ in 0..400 {
        if pool.is_broken() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    pool.is_broken()
}

#[test]
fn map_returns_results_in_order() {
    let pool = InterpreterPool::new(3).unwrap();
    let results: Vec<u32> = pool
        .map(|n: u32| n + 1, 0..100)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(results, (1..=100).collect::<Vec<_>>());
}

#[test]
fn a_failing_job_reports_execution_failed_with_the_original_as_source() {
    let pool = InterpreterPool::new(2).unwrap();
    let error = pool
        .submit_fallible(|| Err::<u32, _>(Invalid(7)))
        .unwrap()
        .wait()
        .unwrap_err();
    let failed = error.as_failed().expect("a job failure");
    assert!(failed.type_name().ends_with("Invalid"));
    assert_eq!(failed.message(), "invalid input 7");
    assert_eq!(failed.downcast_source::<Invalid>(), Some(&Invalid(7)));
    assert_eq!(
        std::error::Error::source(&error).map(ToString::to_string),
        Some(failed.to_string())
    );
    // The pool goes on.
    assert_eq!(pool.submit(|| 5).unwrap().wait().unwrap(), 5);
}

#[test]
fn a_panicking_job_is_reported_and_the_worker_survives() {
    let pool = InterpreterPool::new(1).unwrap();
    let error = pool
        .submit(|| -> u32 { panic!("job exploded") })
        .unwrap()
        .wait()
        .unwrap_err();
    let failed = error.as_failed().unwrap();
    assert!(failed.is_panic());
    assert_eq!(failed.message(), "job exploded");
    assert_eq!(pool.submit(|| 2).unwrap().wait().unwrap(), 2);
}

#[test]
fn each_worker_keeps_its_own_context_state() {
    let pool = InterpreterPool::new(2).unwrap();
    // Every job increments its worker's variable; the per-worker counts add up to the jobs.
    let handles: Vec<_> = (0..200)
        .map(|_| {
            pool.submit(|| {
                let next = WORKER_STATE.get().unwrap() + 1;
                WORKER_STATE.set(next);
                (interpreters::get_current().id(), next)
            })
            .unwrap()
        })
        .collect();
    let mut last = std::collections::HashMap::new();
    for handle in handles {
        let (interp, count): (u64, u32) = handle.wait().unwrap();
        let seen = last.entry(interp).or_insert(0);
        *seen = (*seen).max(count);
    }
    assert_eq!(last.values().sum::<u32>(), 200);
    assert_eq!(WORKER_STATE.get(), Some(0), "the main context is untouched");
}

#[test]
fn initializer_and_shared_main_attrs_run_in_every_worker() {
    let log = create_queue(0);
    let pool = InterpreterPool::builder()
        .workers(3)
        .main_attrs([("log", log.clone().into()), ("greeting", "hi".into())])
        .initializer(|| {
            let me = interpreters::get_current();
            let log: interpreters::Queue =
                me.get_main_attr("log").unwrap().unwrap().extract().unwrap();
            WORKER_STATE.set(100);
            log.put(me.id()).map_err(|e| Invalid(e as u32))
        })
        .build()
        .unwrap();
    let greeting = pool
        .submit(|| {
            let me = interpreters::get_current();
            (
                me.get_main_attr("greeting").unwrap().unwrap(),
                WORKER_STATE.get().unwrap(),
            )
        })
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(greeting, (Shareable::from("hi"), 100));
    // Read the log while the workers' interpreters are open: once they close, what they put
    // follows the queue's unbound policy.
    let mut ids: Vec<u64> = (0..3)
        .map(|_| log.get().unwrap().extract().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "one interpreter per worker");
    pool.shutdown(true);
    assert!(log.is_empty());
}

#[test]
fn a_broken_initializer_breaks_the_pool() {
    let pool = InterpreterPool::builder()
        .workers(2)
        .initializer(|| Err(Invalid(1)))
        .build()
        .unwrap();
    let first = pool.submit(|| 1);
    // Wait until a worker has reported the failure.
    assert!(becomes_broken(&pool));
    if let Ok(handle) = first {
        match handle.wait() {
            Err(PoolError::Broken(failure)) => {
                assert_eq!(failure.downcast_source::<Invalid>(), Some(&Invalid(1)));
            }
            other => panic!("expected a broken pool, got {other:?}"),
        }
    }
    assert!(matches!(pool.submit(|| 2), Err(PoolError::Broken(_))));
}

/// An error whose `Display` panics (user code, run while the failure is described).
#[derive(Debug)]
struct Loud;

impl std::fmt::Display for Loud {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Display of the error panicked")
    }
}

impl std::error::Error for Loud {}

/// A failure whose description panics is still a failure: `try_exec` returns it, a pool job's
/// handle gets it (it waited forever: the worker died), and an initializer's breaks the pool.
#[test]
fn an_error_whose_display_panics_is_reported_as_a_failure() {
    let interp = interpreters::create();
    let error = interp.try_exec(|| Err(Loud)).unwrap_err();
    let failed = error.as_failed().expect("a failure");
    assert!(failed.is_panic());
    assert_eq!(failed.message(), "Display of the error panicked");
    interp.exec(|| ()).unwrap();

    let pool = InterpreterPool::new(1).unwrap();
    let outcome = pool
        .submit_fallible(|| Err::<u8, _>(Loud))
        .unwrap()
        .wait_timeout(Duration::from_secs(30));
    match outcome {
        Err(PoolError::Failed(failed)) => assert!(failed.is_panic()),
        other => panic!("expected the job's failure, got {other:?}"),
    }
    let next = pool.submit(|| 1u8).unwrap();
    assert_eq!(
        next.wait_timeout(Duration::from_secs(30)).unwrap(),
        1,
        "the worker survived"
    );

    let pool = InterpreterPool::builder()
        .workers(1)
        .initializer(|| Err(Loud))
        .build()
        .unwrap();
    let answer = pool
        .submit(|| 1u8)
        .and_then(|handle| handle.wait_timeout(Duration::from_secs(30)));
    assert!(
        matches!(answer, Err(PoolError::Broken(_))),
        "expected a broken pool, got {answer:?}"
    );
}

/// A waker that panics when the job finishes does not take its worker down.
#[test]
fn a_waker_that_panics_does_not_end_the_worker() {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Panics;
    impl Wake for Panics {
        fn wake(self: Arc<Self>) {
            panic!("the waker panicked");
        }
    }
    let pool = InterpreterPool::new(1).unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let mut handle = pool
        .submit(move || {
            let _ = wait.recv();
            3u8
        })
        .unwrap();
    let waker = Waker::from(Arc::new(Panics));
    let polled = std::pin::Pin::new(&mut handle).poll(&mut Context::from_waker(&waker));
    assert!(matches!(polled, Poll::Pending));
    go.send(()).unwrap();
    let next = pool.submit(|| 4u8).unwrap();
    assert_eq!(next.wait_timeout(Duration::from_secs(30)).unwrap(), 4);
}

/// `prepare_main` runs the caller's iterator before it takes the interpreter's lock: an
/// iterator that reads the same interpreter does not deadlock.
#[test]
fn prepare_main_with_an_iterator_that_reads_the_interpreter() {
    let interp = interpreters::create();
    interp.set_main_attr("a", Shareable::from(1)).unwrap();
    let reader = interp.clone();
    interp
        .prepare_main(["a"].into_iter().map(move |name| {
            let value = reader.get_main_attr(name).unwrap().unwrap();
            (format!("{name}_copy"), value)
        }))
        .unwrap();
    assert_eq!(
        interp.get_main_attr("a_copy").unwrap(),
        Some(Shareable::from(1))
    );
}

/// A cancelled job's captures go at once, not when a worker reaches its queue entry.
#[test]
fn a_cancelled_job_drops_what_it_captured_at_once() {
    let pool = InterpreterPool::new(1).unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (started, running) = std::sync::mpsc::channel::<()>();
    let busy = pool
        .submit(move || {
            let _ = started.send(());
            let _ = wait.recv();
        })
        .unwrap();
    running.recv().unwrap();
    let big = std::sync::Arc::new(());
    let watch = std::sync::Arc::downgrade(&big);
    let job = pool
        .submit(move || {
            let _ = &big;
        })
        .unwrap();
    assert!(job.cancel());
    assert!(
        watch.upgrade().is_none(),
        "the captures outlived the cancel"
    );
    // Jobs the pool cancels itself go with their queue entries, while their handles live.
    let big = std::sync::Arc::new(());
    let watch = std::sync::Arc::downgrade(&big);
    let queued = pool
        .submit(move || {
            let _ = &big;
        })
        .unwrap();
    // The job cancelled above is still queued, but not counted again (see
    // `pending_jobs_can_be_cancelled`).
    assert_eq!(pool.cancel_pending(), 1);
    assert!(
        watch.upgrade().is_none(),
        "the captures outlived cancel_pending"
    );
    go.send(()).unwrap();
    busy.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(matches!(job.wait(), Err(PoolError::Cancelled)));
    assert!(matches!(queued.wait(), Err(PoolError::Cancelled)));
}

#[test]
fn shutdown_finishes_queued_jobs_and_refuses_new_ones() {
    let pool = InterpreterPool::new(1).unwrap();
    let handles: Vec<_> = (0..50)
        .map(|n| pool.submit(move || n * 2).unwrap())
        .collect();
    pool.shutdown(true);
    let results: Vec<u32> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(results, (0..50).map(|n| n * 2).collect::<Vec<_>>());
    assert!(matches!(pool.submit(|| 1), Err(PoolError::Shutdown)));
}

#[test]
fn pending_jobs_can_be_cancelled() {
    let pool = InterpreterPool::new(1).unwrap();
    let (gate, blocker) = occupy(&pool);
    let queued: Vec<_> = (0..5).map(|n| pool.submit(move || n).unwrap()).collect();
    assert!(queued[0].cancel());
    let cancelled = pool.cancel_pending();
    assert_eq!(
        cancelled, 4,
        "the one cancelled already through its handle is not counted again"
    );
    gate.put("go").unwrap();
    assert_eq!(blocker.wait().unwrap(), Shareable::from("go"));
    for handle in queued {
        assert!(matches!(handle.wait(), Err(PoolError::Cancelled)));
    }
}

#[test]
fn a_job_handle_is_a_future() {
    let pool = InterpreterPool::new(1).unwrap();
    let handle = pool.submit(|| "async").unwrap();
    let value = futures_executor::block_on(handle).unwrap();
    assert_eq!(value, "async");
    // The job cannot finish before the gate opens, so the first wait times out however the
    // threads are scheduled. If an assertion fails first, `open` is dropped before `pool`
    // (declared later), the job's wait ends, and the pool's drop can join its worker.
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let slow = pool
        .submit(move || {
            let _ = gate.recv_timeout(Duration::from_secs(60));
            1
        })
        .unwrap();
    assert!(matches!(
        slow.wait_timeout(Duration::from_millis(1)),
        Err(PoolError::Timeout)
    ));
    open.send(()).unwrap();
    assert_eq!(slow.wait_timeout(Duration::from_secs(600)).unwrap(), 1);
    assert!(matches!(
        slow.wait_timeout(Duration::from_millis(1)),
        Err(PoolError::Taken)
    ));
    assert!(slow.is_finished());
    assert!(matches!(slow.wait(), Err(PoolError::Taken)));
}

#[test]
fn a_job_handle_taken_by_wait_timeout_is_spent_as_a_future_too() {
    let pool = InterpreterPool::new(1).unwrap();
    let handle = pool.submit(|| 5_u8).unwrap();
    assert_eq!(handle.wait_timeout(Duration::from_secs(600)).unwrap(), 5);
    assert!(matches!(
        futures_executor::block_on(handle),
        Err(PoolError::Taken)
    ));
}

#[test]
fn a_cancelled_job_whose_captures_panic_on_drop_leaves_the_pool_working() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("drop");
            }
        }
    }
    let pool = InterpreterPool::new(1).unwrap();
    let (gate, blocker) = occupy(&pool);
    let bomb = PanicOnDrop;
    let doomed = pool
        .submit(move || {
            let _keep = &bomb;
            1
        })
        .unwrap();
    assert!(doomed.cancel());
    gate.put(()).unwrap();
    blocker.wait().unwrap();
    assert!(matches!(doomed.wait(), Err(PoolError::Cancelled)));
    // The worker dropped the cancelled job (its destructor panicked) and goes on.
    assert_eq!(pool.submit(|| 3).unwrap().wait().unwrap(), 3);
}

/// An error whose `Drop` panics (and only outside another panic).
#[derive(Debug)]
struct PanicsOnDrop;

impl std::fmt::Display for PanicsOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an error whose Drop panics")
    }
}

impl std::error::Error for PanicsOnDrop {}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the error's Drop panicked on purpose");
        }
    }
}

/// A job whose handle was dropped leaves its failure to the worker, which drops it: a
/// panicking `Drop` there does not end the worker (it did, and every later job waited for
/// ever).
#[test]
fn a_failure_nobody_waits_for_is_dropped_without_ending_the_worker() {
    let pool = InterpreterPool::new(1).unwrap();
    let gate = create_queue(0);
    let waiting = gate.clone();
    let blocker = pool.submit(move || waiting.get().unwrap()).unwrap();
    // Queued behind the blocker, its handle gone before it runs.
    drop(pool.submit_fallible(|| Err::<u8, _>(PanicsOnDrop)).unwrap());
    gate.put(()).unwrap();
    blocker.wait_timeout(Duration::from_secs(30)).unwrap();
    let next = pool.submit(|| 3u8).unwrap();
    assert_eq!(
        next.wait_timeout(Duration::from_secs(30))
            .expect("the worker survived"),
        3
    );
}

/// `shutdown(true)` called by two threads at once: both return only once the workers have
/// finished (the second returned at once before, with a job still running).
#[test]
fn concurrent_shutdowns_both_wait_for_the_workers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let pool = Arc::new(InterpreterPool::new(1).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let gate = create_queue(0);
    let (waiting, finished) = (gate.clone(), done.clone());
    let job = pool
        .submit(move || {
            waiting.get().unwrap();
            finished.store(true, Ordering::SeqCst);
        })
        .unwrap();
    drop(job);
    let first = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.shutdown(true))
    };
    // Give the first one time to start joining (if it has not, the second joins: the
    // assertion holds either way).
    std::thread::sleep(Duration::from_millis(100));
    let second = {
        let (pool, done) = (pool.clone(), done.clone());
        std::thread::spawn(move || {
            pool.shutdown(true);
            done.load(Ordering::SeqCst)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    gate.put(()).unwrap();
    first.join().unwrap();
    assert!(
        second.join().unwrap(),
        "the second shutdown returned before the job finished"
    );
}

/// A job that shuts its own pool down with `wait` cannot wait for its own worker: it returns
/// (rather than deadlock), and the pool finishes.
#[test]
fn a_job_shutting_its_own_pool_down_does_not_wait_for_itself() {
    use std::sync::Arc;

    let pool = Arc::new(InterpreterPool::new(2).unwrap());
    let inside = pool.clone();
    let job = pool
        .submit(move || {
            inside.shutdown(true);
            7u8
        })
        .unwrap();
    assert_eq!(job.wait_timeout(Duration::from_secs(30)).unwrap(), 7);
    assert!(matches!(pool.submit(|| 1u8), Err(PoolError::Shutdown)));
    pool.shutdown(true);
}

/// `cancel_pending` with two queued jobs whose captures always panic on drop: both handles
/// are cancelled, both captures dropped, the first panic reaches the caller, and the process
/// does not abort (it did: the second panic came while the first unwound).
#[test]
fn cancelling_two_jobs_whose_captures_panic_on_drop_does_not_abort() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct AlwaysPanics(Arc<AtomicUsize>);
    impl Drop for AlwaysPanics {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            panic!("a capture's Drop panicked on purpose (always)");
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let pool = InterpreterPool::new(1).unwrap();
    let (gate, blocker) = occupy(&pool);
    let doomed: Vec<_> = (0..2)
        .map(|_| {
            let capture = AlwaysPanics(dropped.clone());
            pool.submit(move || {
                let _keep = &capture;
                1u8
            })
            .unwrap()
        })
        .collect();
    let cancelled =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.cancel_pending()));
    assert!(cancelled.is_err(), "the first panic reaches the caller");
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    for handle in doomed {
        assert!(matches!(handle.wait(), Err(PoolError::Cancelled)));
    }
    gate.put(()).unwrap();
    blocker.wait().unwrap();
    assert_eq!(pool.submit(|| 3u8).unwrap().wait().unwrap(), 3);
}

/// A worker's interpreter closed from outside the pool (it is listed by `list_all`, so a
/// teardown that closes every interpreter reaches it): the job that meets it fails, and the
/// pool breaks instead of failing every later job on that worker.
#[test]
fn a_worker_interpreter_closed_from_outside_breaks_the_pool() {
    let pool = InterpreterPool::builder().workers(1).build().unwrap();
    let id = pool
        .submit(|| interpreters::get_current().id())
        .unwrap()
        .wait()
        .unwrap();
    let worker = interpreters::list_all()
        .into_iter()
        .find(|interp| interp.id() == id)
        .unwrap();
    // Idle once its job is done; retried while the worker may still be finishing it.
    let mut closed = worker.close();
    for _ in 0..400 {
        if closed.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        closed = worker.close();
    }
    closed.unwrap();
    // The job fails by meeting the closed interpreter, or is refused by the pool if the
    // worker, still finishing the first job, found it closed first.
    match pool.submit(|| 1).map(JobHandle::wait) {
        Err(PoolError::Broken(failure)) | Ok(Err(PoolError::Broken(failure))) => {
            assert_eq!(failure.interpreter_id(), id);
        }
        Ok(Err(PoolError::Failed(failure))) => assert_eq!(failure.interpreter_id(), id),
        other => panic!("expected the job to fail, got {other:?}"),
    }
    assert!(becomes_broken(&pool));
    assert!(matches!(pool.submit(|| 2), Err(PoolError::Broken(_))));
}
