//! OS threads and thread pools (PEP 550 §Multithreaded Code): the three start policies of
//! [`exec_context::thread::spawn`] and [`exec_context::thread::Builder`], job wrapping with
//! [`exec_context::thread::job`], and, with feature `rayon`, jobs on a real rayon pool that see
//! their spawner's snapshot without leaking into the pool's worker threads.

use std::panic::resume_unwind;
use std::sync::mpsc;

use contextvars::{Context, ContextVar, ExecutionContext, get_execution_context};
use exec_context::thread::{Builder, Inheritance, job, spawn};

static VAR: ContextVar<&'static str> = ContextVar::new("var");
static TXN: ContextVar<u32> = ContextVar::new("txn").not_inherited();

/// Runs `f` in an empty context of its own, whatever the test thread had.
fn clean<R>(f: impl FnOnce() -> R) -> R {
    Context::new().run(f)
}

fn join<T>(handle: std::thread::JoinHandle<T>) -> T {
    match handle.join() {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic),
    }
}

/// What a new thread sees, and whether its own set stays its own.
fn probe() -> (Option<&'static str>, Option<u32>, bool) {
    let seen = (VAR.get(), TXN.get());
    VAR.set("thread");
    (seen.0, seen.1, VAR.get() == Some("thread"))
}

#[test]
fn empty_policy_starts_from_nothing() {
    clean(|| {
        VAR.set("main");
        assert_eq!(join(spawn(Inheritance::Empty, probe)), (None, None, true));
        let empty = join(spawn(Inheritance::default(), || {
            get_execution_context().is_empty()
        }));
        assert!(empty);
        assert_eq!(VAR.get(), Some("main"));
    });
}

#[test]
fn inherit_policy_takes_a_snapshot_at_spawn() {
    clean(|| {
        VAR.set("main");
        TXN.set(1);
        let (go, wait) = mpsc::channel::<()>();
        let handle = spawn(Inheritance::Inherit, move || {
            wait.recv().expect("the spawner sends");
            probe()
        });
        VAR.set("changed after spawn");
        go.send(()).expect("the thread waits");
        // The snapshot was taken at spawn; the opted-out variable was left behind.
        assert_eq!(join(handle), (Some("main"), None, true));
        assert_eq!(VAR.get(), Some("changed after spawn"));
        assert_eq!(TXN.get(), Some(1));
    });
}

#[test]
fn given_policy_runs_in_the_given_context() {
    clean(|| {
        VAR.set("given");
        let ec = get_execution_context();
        VAR.set("main");
        let handle = spawn(Inheritance::Given(ec.clone()), probe);
        assert_eq!(join(handle), (Some("given"), None, true));
        assert_eq!(ec.get(&VAR), Some("given")); // the thread's set did not touch it
        let empty = spawn(Inheritance::Given(ExecutionContext::new()), probe);
        assert_eq!(join(empty), (None, None, true));
    });
}

#[test]
fn builder_applies_the_policy() {
    clean(|| {
        VAR.set("main");
        let named = |policy| {
            let handle = Builder::new(policy)
                .name("exec-context-test".into())
                .stack_size(256 * 1024)
                .spawn(|| (std::thread::current().name().map(String::from), VAR.get()))
                .expect("the OS creates the thread");
            join(handle)
        };
        let name = Some("exec-context-test".to_string());
        assert_eq!(named(Inheritance::Empty), (name.clone(), None));
        assert_eq!(named(Inheritance::Inherit), (name.clone(), Some("main")));
        VAR.set("given");
        let ec = get_execution_context();
        VAR.set("main");
        assert_eq!(named(Inheritance::Given(ec)), (name, Some("given")));
    });
}

#[test]
fn a_thread_does_not_inherit_by_default_even_when_spawned_from_a_task() {
    clean(|| {
        VAR.set("main");
        let seen = futures_executor::block_on(exec_context::FutureExt::in_current_context(async {
            join(spawn(Inheritance::default(), || VAR.get()))
        }));
        assert_eq!(seen, None);
        assert!(matches!(Inheritance::default(), Inheritance::Empty));
    });
}

#[test]
fn job_runs_in_the_submitters_snapshot_on_a_plain_thread() {
    clean(|| {
        VAR.set("submitter");
        TXN.set(9);
        let wrapped = job(probe);
        VAR.set("later");

        // A long-lived "pool" thread that runs jobs one after another.
        let (submit, jobs) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (report, results) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            for job in jobs {
                job();
            }
        });
        let first = report.clone();
        submit
            .send(Box::new(move || first.send(wrapped()).unwrap()))
            .unwrap();
        // A plain job afterwards sees the worker's own, still empty, context.
        let second = report.clone();
        submit
            .send(Box::new(move || {
                second
                    .send((VAR.get(), TXN.get(), get_execution_context().is_empty()))
                    .unwrap()
            }))
            .unwrap();
        drop(submit);
        join(worker);

        assert_eq!(results.recv().unwrap(), (Some("submitter"), None, true));
        assert_eq!(results.recv().unwrap(), (None, None, true));
        assert_eq!((VAR.get(), TXN.get()), (Some("later"), Some(9)));
    });
}

/// Sends what `VAR` holds when it is dropped, then sets it: a probe of the context in which
/// a wrapped job's captures are dropped.
struct DropProbe(mpsc::Sender<Option<&'static str>>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        let _ = self.0.send(VAR.get());
        VAR.set("set by a drop");
    }
}

/// A job or callback dropped without being called (a pool shut down first) drops what it
/// captured in its own context, as it would have run: the drop sees the snapshot and changes
/// nothing of the thread that drops it.
#[test]
fn a_job_or_callback_dropped_unrun_drops_its_captures_in_its_context() {
    clean(|| {
        let (report, dropped) = mpsc::channel();
        VAR.set("submitter");
        let captured = DropProbe(report.clone());
        let wrapped = job(move || drop(captured));
        let captured = DropProbe(report.clone());
        let callback = exec_context::bind(move || drop(captured));
        let captured = DropProbe(report.clone());
        let function = exec_context::bind_fn(move |()| {
            let _ = &captured;
        });
        VAR.set("dropper");
        drop((wrapped, callback, function));
        assert_eq!(
            dropped.try_iter().collect::<Vec<_>>(),
            [Some("submitter"); 3]
        );
        assert_eq!(VAR.get(), Some("dropper"));
        // Called, each drops its captures in the same context, as before.
        let captured = DropProbe(report);
        job(move || drop(captured))();
        assert_eq!(dropped.try_iter().collect::<Vec<_>>(), [Some("dropper")]);
        assert_eq!(VAR.get(), Some("dropper"));
    });
}

/// A function without drop glue enters no context when its `bind_fn` wrapper is dropped (one
/// with captures to drop does): a watcher sees the difference.
#[test]
fn a_bound_function_without_drop_glue_enters_no_context_when_dropped() {
    use std::cell::Cell;

    use contextvars::watch::{ContextEvent, add_watcher};
    thread_local! {
        static ENTERED: Cell<usize> = const { Cell::new(0) };
    }
    fn entered() -> usize {
        ENTERED.with(Cell::get)
    }
    let _watcher = add_watcher(|event| {
        if *event == ContextEvent::Entered {
            ENTERED.with(|entered| entered.set(entered.get() + 1));
        }
    });
    fn double(n: u32) -> u32 {
        n * 2
    }
    let plain = exec_context::bind_fn(double);
    assert_eq!(plain(2), 4);
    let before = entered();
    drop(plain);
    assert_eq!(entered(), before, "entered a context to drop nothing");
    let (report, _dropped) = mpsc::channel();
    let captured = DropProbe(report);
    let capturing = exec_context::bind_fn(move |()| {
        let _ = &captured;
    });
    let before = entered();
    drop(capturing);
    assert_eq!(
        entered(),
        before + 1,
        "dropped its captures outside its context"
    );
}

/// tokio drops a blocking closure unrun when its runtime has shut down: the drop happens on
/// the spawning thread, in the closure's own context.
#[cfg(feature = "tokio")]
#[test]
fn a_spawn_blocking_closure_dropped_by_a_shut_down_runtime_drops_in_its_context() {
    clean(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        runtime.shutdown_background();
        let _entered = handle.enter();
        let (report, dropped) = mpsc::channel();
        VAR.set("spawner");
        let captured = DropProbe(report);
        let joined = exec_context::tokio::spawn_blocking(move || drop(captured));
        let seen = dropped
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("dropped");
        assert_eq!(seen, Some("spawner"));
        assert_eq!(
            VAR.get(),
            Some("spawner"),
            "the drop's set reached the spawner"
        );
        drop(joined);
    });
}

#[test]
fn a_panicking_job_leaves_the_pool_thread_clean() {
    clean(|| {
        VAR.set("submitter");
        let wrapped = job(|| -> u32 {
            VAR.set("job");
            if VAR.get() == Some("job") {
                panic!("job panicked on purpose");
            }
            0
        });
        let worker = std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(wrapped));
            (
                outcome.is_err(),
                VAR.get(),
                get_execution_context().is_empty(),
            )
        });
        assert_eq!(join(worker), (true, None, true));
        assert_eq!(VAR.get(), Some("submitter"));
    });
}

#[cfg(feature = "rayon")]
mod on_rayon {
    use rayon::{ThreadPool, ThreadPoolBuilder};

    use super::*;

    fn pool() -> ThreadPool {
        ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("the pool starts")
    }

    /// Whether every worker of `pool` has an empty context.
    fn workers_are_clean(pool: &ThreadPool) -> bool {
        pool.broadcast(|_| get_execution_context().is_empty() && VAR.get().is_none())
            .into_iter()
            .all(|clean| clean)
    }

    #[test]
    fn spawn_in_sees_the_spawners_snapshot() {
        clean(|| {
            let pool = pool();
            VAR.set("spawner");
            TXN.set(1);
            let (send, receive) = mpsc::channel();
            for _ in 0..8 {
                let send = send.clone();
                exec_context::rayon::spawn_in(&pool, move || send.send(probe()).unwrap());
            }
            VAR.set("after spawn");
            drop(send);
            let results: Vec<_> = receive.iter().collect();
            assert_eq!(results, vec![(Some("spawner"), None, true); 8]);
            assert!(workers_are_clean(&pool));
            assert_eq!(pool.install(|| VAR.get()), None);
            assert_eq!(TXN.get(), Some(1));
        });
    }

    #[test]
    fn plain_rayon_spawn_loses_the_context() {
        clean(|| {
            let pool = pool();
            VAR.set("spawner");
            let (send, receive) = mpsc::channel();
            pool.spawn(move || send.send(VAR.get()).unwrap());
            assert_eq!(receive.recv().unwrap(), None); // rayon#1018
        });
    }

    #[test]
    fn global_spawn_sees_the_spawners_snapshot() {
        clean(|| {
            VAR.set("spawner");
            TXN.set(2);
            let (send, receive) = mpsc::channel();
            exec_context::rayon::spawn(move || send.send(probe()).unwrap());
            assert_eq!(receive.recv().unwrap(), (Some("spawner"), None, true));
        });
    }

    #[test]
    fn install_sees_the_callers_snapshot_and_leaks_nothing() {
        clean(|| {
            let pool = pool();
            VAR.set("caller");
            TXN.set(3);
            let (seen, inner) = exec_context::rayon::install(&pool, || {
                let seen = probe();
                // Nested join inside the installed job: both halves see the job's context.
                let inner = exec_context::rayon::join(
                    || {
                        let seen = VAR.get();
                        VAR.set("a");
                        (seen, VAR.get())
                    },
                    || {
                        let seen = VAR.get();
                        VAR.set("b");
                        (seen, VAR.get())
                    },
                );
                (seen, (inner, VAR.get()))
            });
            assert_eq!(seen, (Some("caller"), None, true));
            assert_eq!(
                inner,
                (
                    ((Some("thread"), Some("a")), (Some("thread"), Some("b"))),
                    Some("thread")
                )
            );
            assert_eq!(VAR.get(), Some("caller"));
            assert_eq!(TXN.get(), Some(3));
            // A later plain install sees the worker's own, empty, context.
            assert_eq!(pool.install(|| VAR.get()), None);
            assert!(workers_are_clean(&pool));
        });
    }

    #[test]
    fn join_halves_see_the_snapshot_and_stay_apart() {
        clean(|| {
            VAR.set("caller");
            TXN.set(4);
            let (a, b) = exec_context::rayon::join(
                || {
                    let seen = (VAR.get(), TXN.get());
                    VAR.set("a");
                    (seen, VAR.get())
                },
                || {
                    let seen = (VAR.get(), TXN.get());
                    VAR.set("b");
                    (seen, VAR.get())
                },
            );
            assert_eq!(a, ((Some("caller"), None), Some("a")));
            assert_eq!(b, ((Some("caller"), None), Some("b")));
            assert_eq!((VAR.get(), TXN.get()), (Some("caller"), Some(4)));

            // The same inside a plain pool job, whose worker context is empty.
            let pool = pool();
            let inside = pool.install(|| {
                VAR.set("worker job");
                let halves = exec_context::rayon::join(|| VAR.get(), || VAR.get());
                VAR.delete().expect("set above");
                halves
            });
            assert_eq!(inside, (Some("worker job"), Some("worker job")));
            assert!(workers_are_clean(&pool));
        });
    }

    #[test]
    fn panicking_jobs_leave_the_workers_clean() {
        clean(|| {
            let pool = pool();
            VAR.set("caller");
            let installed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                exec_context::rayon::install(&pool, || {
                    VAR.set("doomed install");
                    exec_context::rayon::join(
                        || VAR.set("doomed a"),
                        || -> u32 {
                            VAR.set("doomed b");
                            panic!("join half panicked on purpose")
                        },
                    )
                })
            }));
            assert!(installed.is_err());
            assert_eq!(VAR.get(), Some("caller"));
            assert!(workers_are_clean(&pool));
        });
    }

    #[test]
    fn many_jobs_each_see_their_own_spawners_snapshot() {
        static ID: ContextVar<u32> = ContextVar::new("id");
        clean(|| {
            let pool = pool();
            let (send, receive) = mpsc::channel();
            for id in 0..200 {
                ID.set(id);
                let send = send.clone();
                exec_context::rayon::spawn_in(&pool, move || {
                    let seen = ID.get();
                    ID.set(id + 1000);
                    send.send((id, seen)).unwrap();
                });
            }
            drop(send);
            let mut wrong: Vec<_> = receive
                .iter()
                .filter(|(id, seen)| *seen != Some(*id))
                .collect();
            wrong.sort_unstable();
            assert!(wrong.is_empty(), "jobs saw another snapshot: {wrong:?}");
            assert!(workers_are_clean(&pool));
        });
    }

    /// A parallel iterator's closure wrapped with `bind_fn`: every item, on whichever worker
    /// (or the calling thread) runs it, sees the snapshot taken when it was wrapped, its sets
    /// stay in its own call, and the workers are left clean.
    #[test]
    fn a_parallel_iterator_through_bind_fn_sees_the_callers_snapshot() {
        use rayon::prelude::*;

        clean(|| {
            let pool = pool();
            VAR.set("caller");
            TXN.set(1);
            // Wrapped here: a plain `install` runs its closure in a worker's context.
            let item = exec_context::bind_fn(|_: u32| probe());
            let seen: Vec<_> = pool.install(|| (0..256).into_par_iter().map(&item).collect());
            assert!(
                seen.iter()
                    .all(|&seen| seen == (Some("caller"), None, true)),
                "{seen:?}"
            );
            assert_eq!((VAR.get(), TXN.get()), (Some("caller"), Some(1)));
            assert!(workers_are_clean(&pool));
        });
    }

    /// `scope`: the scope's closure and every job spawned through it (from the closure or
    /// from another job) see the snapshot of where they were spawned, keep their sets apart,
    /// and leave the pool's workers clean, also when a job panics.
    #[test]
    fn scope_jobs_see_their_spawners_snapshot_and_stay_apart() {
        clean(|| {
            let pool = pool();
            VAR.set("caller");
            TXN.set(5);
            let seen = std::sync::Mutex::new(Vec::new());
            pool.install(|| {
                // A plain install runs in a worker's empty context: set what the scope sees.
                VAR.set("installed");
                exec_context::rayon::scope(|s| {
                    let seen = &seen;
                    for n in 0..8 {
                        s.spawn(move |s| {
                            seen.lock().unwrap().push((n, VAR.get()));
                            VAR.set("job");
                            s.spawn(move |_| seen.lock().unwrap().push((n + 100, VAR.get())));
                        });
                    }
                    VAR.set("closure"); // after the spawns: the jobs do not see it
                });
                assert_eq!(VAR.get(), Some("installed"), "the scope's sets stay in it");
                VAR.delete().expect("set above");
            });
            let mut seen = seen.into_inner().unwrap();
            seen.sort();
            let expected: Vec<_> = (0..8)
                .map(|n| (n, Some("installed")))
                .chain((0..8).map(|n| (n + 100, Some("job"))))
                .collect();
            assert_eq!(seen, expected);
            assert_eq!((VAR.get(), TXN.get()), (Some("caller"), Some(5)));
            assert!(workers_are_clean(&pool));

            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.install(|| {
                    exec_context::rayon::scope(|s| {
                        s.spawn(|_| {
                            VAR.set("panicking job");
                            panic!("a scoped job panics");
                        });
                    })
                })
            }));
            assert!(panicked.is_err());
            assert!(workers_are_clean(&pool));
            assert_eq!(VAR.get(), Some("caller"));
        });
    }
}

/// What a thread sets is dropped when its function returns, under every policy: a `Drop`
/// that panics reaches `join` (it once did not under `Empty`, whose thread ran in its own
/// root context, dropped in the thread's teardown, where panics are discarded), and one that
/// reads a variable can (it sees the context the thread's function was called in).
#[test]
fn what_a_thread_sets_is_dropped_when_it_returns_under_every_policy() {
    use std::sync::Arc;

    static SEEN: ContextVar<&'static str> = ContextVar::new("seen");
    static HELD: ContextVar<Arc<Noisy>> = ContextVar::new("held");

    /// Sends what `SEEN` holds when it drops, then panics if asked to.
    struct Noisy {
        seen: mpsc::Sender<Option<&'static str>>,
        panics: bool,
    }

    impl Drop for Noisy {
        fn drop(&mut self) {
            let _ = self.seen.send(SEEN.get());
            if self.panics {
                panic!("drop of a value the thread set");
            }
        }
    }

    for policy in [
        Inheritance::Empty,
        Inheritance::Inherit,
        Inheritance::Given(ExecutionContext::new()),
    ] {
        let name = format!("{policy:?}");
        for panics in [false, true] {
            let (seen, dropped) = mpsc::channel();
            let handle = spawn(policy.clone(), move || {
                SEEN.set("thread");
                HELD.set(Arc::new(Noisy { seen, panics }));
            });
            let joined = handle.join();
            assert_eq!(
                joined.is_err(),
                panics,
                "{name}: the drop's panic reaches join"
            );
            assert_eq!(
                dropped.try_recv(),
                Ok(None),
                "{name}: dropped before join returned, outside the thread's context"
            );
        }
    }
}
