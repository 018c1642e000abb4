//! Issue 5's scenarios for interpreters: the seed's PEP 554 examples, the lifecycle errors,
//! context isolation across interpreters, threads, tasks and generators, and failures.

use contextvars::ContextVar;
use exec_context::interpreters::{
    self, InterpreterError, Panicked, RecvError, SendError, Shareable, SharedBuffer,
    create_channel, create_queue,
};
use exec_context::thread::{Inheritance, spawn};
use exec_context::{FutureExt, Gen};
use std::sync::{Arc, Barrier};

static VAR: ContextVar<&'static str> = ContextVar::new("var");
static COUNT: ContextVar<u32> = ContextVar::with_default("count", 0);

#[derive(Debug, PartialEq)]
struct KeyError(String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for KeyError {}

// --- the seed's examples -----------------------------------------------------------------

#[test]
fn run_isolated_code_in_the_current_thread() {
    let interp = interpreters::create();
    let mut log = vec!["before"];
    interp.exec(|| log.push("during")).unwrap();
    log.push("after");
    assert_eq!(log, ["before", "during", "after"]);
}

#[test]
fn run_in_a_thread() {
    let interp = interpreters::create();
    let id = interp.id();
    let worker = interp.clone();
    let thread = std::thread::spawn(move || worker.call(|| interpreters::get_current().id()));
    assert_eq!(thread.join().unwrap().unwrap(), id);
    assert!(!interp.is_running());
}

#[test]
fn pre_populate_then_run_again_keeps_state_and_main() {
    let interp = interpreters::create();
    interp
        .exec(|| {
            VAR.set("set up");
            let me = interpreters::get_current();
            me.set_main_attr("module", "an_expensive_module").unwrap();
        })
        .unwrap();
    // ... wait_for_request() ...
    let (var, module) = interp
        .call(|| {
            let me = interpreters::get_current();
            let module = me.get_main_attr("module").unwrap();
            (VAR.get().map(String::from), module)
        })
        .unwrap();
    assert_eq!(var.as_deref(), Some("set up"));
    assert_eq!(module, Some(Shareable::from("an_expensive_module")));
}

#[test]
fn handling_an_exception() {
    let interp = interpreters::create();
    let error = interp
        .try_exec(|| Err(KeyError("spam".into())))
        .unwrap_err();
    let InterpreterError::Failed(failed) = &error else {
        panic!("expected a failure, got {error:?}");
    };
    assert!(failed.type_name().ends_with("KeyError"));
    assert_eq!(failed.message(), "\"spam\"");
    assert!(failed.formatted().contains("KeyError"));
    assert_eq!(failed.interpreter_id(), interp.id());
    assert!(error.to_string().contains("spam"));
    // The surrogate's source is the original.
    let source = std::error::Error::source(failed).unwrap();
    assert_eq!(
        source.downcast_ref::<KeyError>(),
        Some(&KeyError("spam".into()))
    );
}

#[test]
fn re_raising_an_exception() {
    fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let interp = interpreters::create();
        match interp.try_exec(|| Err(KeyError("k".into()))) {
            Err(InterpreterError::Failed(failed)) => Err(failed.into_source().unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let error = run().unwrap_err();
    assert_eq!(
        error.downcast_ref::<KeyError>(),
        Some(&KeyError("k".into()))
    );
}

#[test]
fn interacting_with_main() {
    let interp = interpreters::create();
    interp
        .set_main_attrs([("a", 1.into()), ("b", 2.into())])
        .unwrap();
    interp
        .exec(|| {
            let me = interpreters::get_current();
            let a: i64 = me.get_main_attr("a").unwrap().unwrap().extract().unwrap();
            let b: i64 = me.get_main_attr("b").unwrap().unwrap().extract().unwrap();
            me.set_main_attr("res", a * 10 + b).unwrap();
        })
        .unwrap();
    assert_eq!(
        interp.get_main_attr("res").unwrap(),
        Some(Shareable::from(12))
    );
    assert_eq!(interp.get_main_attr("missing").unwrap(), None);
    assert_eq!(interp.main_attr_names().unwrap(), ["a", "b", "res"]);
}

#[test]
fn communicating_through_channels_with_twenty_workers() {
    let (tasks_recv, tasks) = create_channel();
    let (results, results_send) = create_channel();
    let workers: Vec<_> = (0..20)
        .map(|_| {
            let (tasks_recv, results_send) = (tasks_recv.clone(), results_send.clone());
            std::thread::spawn(move || {
                let interp = interpreters::create();
                interp
                    .prepare_main([
                        ("tasks", tasks_recv.into()),
                        ("results", results_send.into()),
                    ])
                    .unwrap();
                interp
                    .exec(|| {
                        let me = interpreters::get_current();
                        let tasks: interpreters::RecvChannel = me
                            .get_main_attr("tasks")
                            .unwrap()
                            .unwrap()
                            .extract()
                            .unwrap();
                        let results: interpreters::SendChannel = me
                            .get_main_attr("results")
                            .unwrap()
                            .unwrap()
                            .extract()
                            .unwrap();
                        loop {
                            let request = match tasks.recv() {
                                Ok(request) => request.extract::<i64>().unwrap(),
                                Err(RecvError::Closed) => break,
                                Err(other) => panic!("{other}"),
                            };
                            let response = if request % 7 == 0 {
                                Shareable::from((request, "failed"))
                            } else {
                                Shareable::from((request, request * request))
                            };
                            // Left for the main thread to collect at the end: nobody
                            // is receiving yet, so `send_nowait` would refuse it.
                            results.send_buffered(response).unwrap();
                        }
                    })
                    .unwrap();
                // What the interpreter sent would follow the channel's unbound policy once
                // it closes: keep it open until the results are read.
                interp
            })
        })
        .collect();
    for request in 0..200_i64 {
        tasks.send(request).unwrap(); // returns once a worker received it
    }
    tasks.close();
    let interps: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let mut seen = vec![0_u32; 200];
    loop {
        let result = match results.recv_nowait() {
            Ok(result) => result,
            Err(RecvError::Empty) => break,
            Err(other) => panic!("{other}"),
        };
        let Shareable::Tuple(items) = result else {
            panic!("a tuple");
        };
        let request = items[0].clone().extract::<usize>().unwrap();
        seen[request] += 1;
        if request % 7 == 0 {
            assert_eq!(items[1], Shareable::from("failed"));
        } else {
            assert_eq!(items[1], Shareable::from(request * request));
        }
    }
    assert!(
        seen.iter().all(|&n| n == 1),
        "every request answered once: {seen:?}"
    );
    for interp in interps {
        interp.close().unwrap();
    }
    assert_eq!(tasks.send(1), Err(SendError::Closed));
}

#[test]
fn buffer_sharing_map_reduce_writes_disjoint_slots() {
    let data: Vec<u8> = (0..10_000_u32).map(|i| (i * 31 % 251) as u8).collect();
    let chunk = 256;
    let chunks = data.len().div_ceil(chunk);
    let buf = SharedBuffer::read_only(data.clone());
    let results = SharedBuffer::writable(chunks);
    let (tasks_recv, tasks) = create_channel();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (buf, results, tasks_recv) = (buf.clone(), results.clone(), tasks_recv.clone());
            std::thread::spawn(move || {
                let interp = interpreters::create();
                interp
                    .prepare_main([
                        ("data", buf.into()),
                        ("results", results.into()),
                        ("tasks", tasks_recv.into()),
                    ])
                    .unwrap();
                interp
                    .exec(|| {
                        let me = interpreters::get_current();
                        let attr = |name| me.get_main_attr(name).unwrap().unwrap();
                        let data: SharedBuffer = attr("data").extract().unwrap();
                        let results: SharedBuffer = attr("results").extract().unwrap();
                        let tasks: interpreters::RecvChannel = attr("tasks").extract().unwrap();
                        while let Ok(request) = tasks.recv() {
                            let (index, start, end): (usize, usize, usize) =
                                request.extract().unwrap();
                            let sum = data.as_slice().unwrap()[start..end]
                                .iter()
                                .fold(0_u8, |acc, &b| acc.wrapping_add(b));
                            let mut slot = results.claim(index..index + 1).unwrap();
                            slot.set(0, sum).unwrap();
                        }
                    })
                    .unwrap();
            })
        })
        .collect();
    for index in 0..chunks {
        let start = index * chunk;
        let end = (start + chunk).min(data.len());
        tasks.send((index, start, end)).unwrap();
    }
    tasks.close();
    for worker in workers {
        worker.join().unwrap();
    }
    let expected: Vec<u8> = data
        .chunks(chunk)
        .map(|c| c.iter().fold(0_u8, |acc, &b| acc.wrapping_add(b)))
        .collect();
    assert_eq!(results.to_vec(), expected);
}

// --- lifecycle -----------------------------------------------------------------------------

#[test]
fn is_running_is_true_during_exec_only() {
    let interp = interpreters::create();
    assert!(!interp.is_running());
    let handle = interp.clone();
    let inside = interp.call(move || handle.is_running()).unwrap();
    assert!(inside);
    assert!(!interp.is_running());
    assert!(interpreters::get_main().is_running());
}

#[test]
fn closing_the_current_or_a_running_interpreter_fails() {
    let interp = interpreters::create();
    let me = interp.clone();
    let closed_from_inside = interp
        .call(move || matches!(me.close(), Err(InterpreterError::Current { .. })))
        .unwrap();
    assert!(closed_from_inside);

    let started = Arc::new(Barrier::new(2));
    let finish = Arc::new(Barrier::new(2));
    let runner = {
        let (interp, started, finish) = (interp.clone(), started.clone(), finish.clone());
        std::thread::spawn(move || {
            interp.exec(|| {
                started.wait();
                finish.wait();
            })
        })
    };
    started.wait();
    assert!(matches!(
        interp.close(),
        Err(InterpreterError::Running { .. })
    ));
    // Concurrent exec on one interpreter fails too.
    assert!(matches!(
        interp.exec(|| ()),
        Err(InterpreterError::Running { .. })
    ));
    finish.wait();
    runner.join().unwrap().unwrap();
    interp.close().unwrap();
}

#[test]
fn a_closed_interpreters_handles_return_errors() {
    let interp = interpreters::create();
    let other = interp.clone();
    interp.close().unwrap();
    assert!(other.is_closed());
    assert!(matches!(
        other.exec(|| ()),
        Err(InterpreterError::NotFound { .. })
    ));
    assert!(matches!(
        other.call(|| 1),
        Err(InterpreterError::NotFound { .. })
    ));
    assert!(matches!(
        other.set_main_attr("a", 1),
        Err(InterpreterError::NotFound { .. })
    ));
    assert!(matches!(
        other.get_main_attr("a"),
        Err(InterpreterError::NotFound { .. })
    ));
    assert!(matches!(
        other.close(),
        Err(InterpreterError::NotFound { .. })
    ));
    assert!(!interpreters::list_all().contains(&interp));
}

#[test]
fn the_main_interpreter_cannot_be_modified() {
    let main = interpreters::get_main();
    assert_eq!(main.id(), 0);
    assert!(main.is_main());
    assert!(matches!(main.close(), Err(InterpreterError::Main)));
    assert!(matches!(main.exec(|| ()), Err(InterpreterError::Main)));
    assert!(matches!(
        main.set_main_attr("a", 1),
        Err(InterpreterError::Main)
    ));
}

#[test]
fn ids_are_never_reused_and_list_all_tracks_lifetimes() {
    let a = interpreters::create();
    let a_id = a.id();
    a.close().unwrap();
    let b = interpreters::create();
    assert!(b.id() > a_id);
    let all = interpreters::list_all();
    assert_eq!(all[0], interpreters::get_main());
    assert!(all.contains(&b));
    // Dropping the last handle closes the interpreter.
    let b_id = b.id();
    drop(all);
    drop(b);
    assert!(interpreters::list_all().iter().all(|i| i.id() != b_id));
}

#[test]
fn a_panic_in_exec_is_reported_and_the_interpreter_stays_usable() {
    let interp = interpreters::create();
    interp.exec(|| drop(COUNT.set(5))).unwrap();
    let error = interp
        .exec(|| {
            COUNT.set(6);
            panic!("boom");
        })
        .unwrap_err();
    let failed = error.as_failed().unwrap();
    assert!(failed.is_panic());
    assert_eq!(failed.message(), "boom");
    let source = std::error::Error::source(failed).unwrap();
    assert_eq!(
        source.downcast_ref::<Panicked>().unwrap().payload(),
        &Shareable::from("boom")
    );
    // Usable, not running, and the context kept what was set before the panic.
    assert!(!interp.is_running());
    assert_eq!(interp.call(|| COUNT.get().unwrap()).unwrap(), 6);
    assert_eq!(COUNT.get(), Some(0));
    assert_eq!(interpreters::get_current(), interpreters::get_main());
}

#[test]
fn a_panic_with_an_unshareable_payload_has_no_source() {
    let interp = interpreters::create();
    let error = interp
        .exec(|| std::panic::panic_any(std::sync::Mutex::new(1)))
        .unwrap_err();
    let failed = error.into_failed().unwrap();
    assert!(failed.is_panic());
    assert!(std::error::Error::source(&failed).is_none());
}

#[test]
fn a_panicking_drop_in_main_leaves_close_consistent() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("drop");
        }
    }
    static HELD: ContextVar<Arc<BombBox>> = ContextVar::new("held");
    struct BombBox(#[allow(dead_code)] Bomb);
    let interp = interpreters::create();
    interp
        .exec(|| drop(HELD.set(Arc::new(BombBox(Bomb)))))
        .unwrap();
    let closing = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| interp.close()));
    assert!(closing.is_err(), "the destructor's panic propagates");
    assert!(interp.is_closed());
    assert!(matches!(
        interp.exec(|| ()),
        Err(InterpreterError::NotFound { .. })
    ));
}

// --- isolation -----------------------------------------------------------------------------

#[test]
fn a_variable_set_in_one_interpreter_is_invisible_in_others_and_main() {
    let a = interpreters::create();
    let b = interpreters::create();
    VAR.set("main");
    a.exec(|| {
        assert_eq!(VAR.get(), None);
        VAR.set("a");
    })
    .unwrap();
    b.exec(|| {
        assert_eq!(VAR.get(), None);
        VAR.set("b");
    })
    .unwrap();
    assert_eq!(VAR.get(), Some("main"));
    assert_eq!(
        a.call(|| VAR.get().map(String::from)).unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(
        b.call(|| VAR.get().map(String::from)).unwrap().as_deref(),
        Some("b")
    );
    // Nested: B inside A inside main, each restored on the way out.
    let (b2, a_id, b_id) = (b.clone(), a.id(), b.id());
    a.exec(move || {
        b2.exec(move || {
            assert_eq!(VAR.get(), Some("b"));
            assert_eq!(interpreters::get_current().id(), b_id);
        })
        .unwrap();
        assert_eq!(VAR.get(), Some("a"));
        assert_eq!(interpreters::get_current().id(), a_id);
    })
    .unwrap();
    assert_ne!(interpreters::get_current().id(), a_id);
    assert_eq!(VAR.get(), Some("main"));
}

#[test]
fn each_thread_has_its_own_state_in_an_interpreter() {
    let interp = interpreters::create();
    interp.exec(|| drop(VAR.set("thread one"))).unwrap();
    let other = interp.clone();
    let seen = std::thread::spawn(move || other.call(|| VAR.get().map(String::from)).unwrap())
        .join()
        .unwrap();
    assert_eq!(
        seen, None,
        "another thread's state in the same interpreter is separate"
    );
    assert_eq!(
        interp
            .call(|| VAR.get().map(String::from))
            .unwrap()
            .as_deref(),
        Some("thread one")
    );
}

#[test]
fn threads_tasks_and_generators_started_inside_stay_in_it() {
    let interp = interpreters::create();
    let id = interp.id();
    let (thread_id, task_id, gen_ids, var_in_task) = interp
        .call(|| {
            VAR.set("inside");
            let thread = spawn(Inheritance::Empty, || interpreters::get_current().id());
            let task = async { (interpreters::get_current().id(), VAR.get()) }.in_current_context();
            let generator = Gen::new(|co| async move {
                co.yield_(interpreters::get_current().id()).await;
                co.yield_(interpreters::get_current().id()).await;
            });
            let (task_id, var) = futures_executor::block_on(task);
            (
                thread.join().unwrap(),
                task_id,
                Shareable::from(generator.map(Shareable::from).collect::<Vec<_>>()),
                var.map(String::from),
            )
        })
        .unwrap();
    assert_eq!(thread_id, id);
    assert_eq!(task_id, id);
    assert_eq!(gen_ids, Shareable::from((id, id)));
    assert_eq!(var_in_task.as_deref(), Some("inside"));

    // A task made inside and polled outside still reports the interpreter.
    let mut task = None;
    interp
        .exec(|| task = Some(async { interpreters::get_current().id() }.in_current_context()))
        .unwrap();
    assert_eq!(futures_executor::block_on(task.unwrap()), id);
    assert_eq!(interpreters::get_current().id(), 0);
}

#[test]
fn a_generator_made_inside_reports_its_interpreter_when_resumed_outside() {
    let interp = interpreters::create();
    let id = interp.id();
    let mut generator = None;
    interp
        .exec(|| {
            generator = Some(Gen::new(|co| async move {
                loop {
                    co.yield_(interpreters::get_current().id()).await;
                }
            }));
        })
        .unwrap();
    let mut generator = generator.unwrap();
    assert_eq!(generator.next(), Some(id));
    assert_eq!(interpreters::get_current().id(), 0);
}

#[test]
fn an_interpreter_with_running_threads_cannot_be_closed() {
    let interp = interpreters::create();
    let release = Arc::new(Barrier::new(2));
    let mut thread = None;
    interp
        .exec(|| {
            let gate = release.clone();
            thread = Some(spawn(Inheritance::Empty, move || {
                gate.wait();
                interpreters::get_current().id()
            }));
        })
        .unwrap();
    assert!(matches!(
        interp.close(),
        Err(InterpreterError::HasThreads { threads: 1, .. })
    ));
    release.wait();
    assert_eq!(thread.unwrap().join().unwrap(), interp.id());
    interp.close().unwrap();
}

#[test]
fn contexts_are_not_shareable() {
    assert!(!exec_context::is_shareable!(contextvars::copy_context()));
    assert!(!exec_context::is_shareable!(VAR.set("x")));
    assert!(!exec_context::is_shareable!(&VAR));
    assert!(exec_context::is_shareable!((
        1_i32,
        String::new(),
        b"x".to_vec(),
        None::<bool>
    )));
    assert!(exec_context::is_shareable!(create_queue(0)));
    assert!(!interpreters::is_shareable(&contextvars::Context::new()));
    assert!(interpreters::is_shareable(&1.5_f64));
}

// --- attaches left active by the executed code ---------------------------------------------

/// A value whose `Drop` panics while `ARMED` (once: it disarms itself).
struct Bomb;

static ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Drop for Bomb {
    fn drop(&mut self) {
        if ARMED.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("a value's Drop panicked on purpose");
        }
    }
}

static HELD: ContextVar<Arc<Bomb>> = ContextVar::new("held");

/// Code that leaves an attach active ends it with the run, which drops the interpreter's
/// own context it displaced: a panicking `Drop` there is the run's failure, and the
/// interpreter stays usable (it stayed "running" for ever, and the panic escaped `exec`).
#[test]
fn a_panic_dropping_what_a_left_attach_displaced_is_a_failure() {
    let interp = interpreters::create();
    ARMED.store(true, std::sync::atomic::Ordering::SeqCst);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        interp.exec(|| {
            drop(HELD.set(Arc::new(Bomb)));
            let _left = contextvars::attach(contextvars::Context::new()).unwrap();
        })
    }));
    let error = outcome
        .expect("the panic comes back as a failure, not out of exec")
        .unwrap_err();
    assert!(error.as_failed().is_some_and(|f| f.is_panic()), "{error}");
    assert!(!interp.is_running());
    assert_eq!(interp.call(|| 5u8).unwrap(), 5);
    assert_eq!(
        interp.call(|| interpreters::get_current().id()).unwrap(),
        interp.id()
    );
    interp.close().unwrap();
}

/// A context attached and left active by executed code becomes the interpreter's state on
/// that thread (as for `Context::run`), but keeps the interpreter's mark: what runs there
/// next is this interpreter's, and what it puts into queues is unbound when it closes (the
/// mark was main's before, when main's context was attached).
#[test]
fn an_attach_left_active_keeps_the_interpreter_s_mark() {
    let interp = interpreters::create();
    VAR.set("main");
    let copy = contextvars::copy_context();
    interp
        .exec(move || {
            let _left = contextvars::attach(copy).unwrap();
        })
        .unwrap();
    let (id, seen) = interp
        .call(|| {
            (
                interpreters::get_current().id(),
                VAR.get().map(String::from),
            )
        })
        .unwrap();
    assert_eq!(id, interp.id());
    // The attached copy's values stay (the code chose them), in the interpreter only.
    assert_eq!(seen.as_deref(), Some("main"));
    let queue = create_queue(0);
    let inside = queue.clone();
    interp.exec(move || inside.put(1u8).unwrap()).unwrap();
    interp.close().unwrap();
    // Put by the interpreter: unbound by its close (the default policy replaces it).
    assert_eq!(queue.get().unwrap(), Shareable::Unbound);
}

/// A value whose `Drop` always panics, even while another panic unwinds, counting its drops.
struct AlwaysPanics(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for AlwaysPanics {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        panic!("a value's Drop panicked on purpose (always)");
    }
}

static ALWAYS: ContextVar<Arc<AlwaysPanics>> = ContextVar::new("always panics");

/// Closing an interpreter whose contexts on two threads hold values whose `Drop` panics:
/// every value is dropped, the first panic reaches the caller, and the process does not
/// abort (the second panic, while the first unwound, aborted it).
#[test]
fn closing_with_two_panicking_values_drops_both_without_aborting() {
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let interp = interpreters::create();
    let set = |dropped: Arc<std::sync::atomic::AtomicUsize>| {
        move || drop(ALWAYS.set(Arc::new(AlwaysPanics(dropped))))
    };
    interp.exec(set(dropped.clone())).unwrap();
    // The other thread stays until the interpreter is closed: its context is the
    // interpreter's to drop, not its own exit's.
    let (ran, closed_tx) = (Barrier::new(2), Barrier::new(2));
    let closed = std::thread::scope(|scope| {
        let (interp, dropped) = (&interp, dropped.clone());
        let (ran, closed_tx) = (&ran, &closed_tx);
        scope.spawn(move || {
            interp.exec(set(dropped)).unwrap();
            ran.wait();
            closed_tx.wait();
        });
        ran.wait();
        let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| interp.close()));
        closed_tx.wait();
        closed
    });
    assert!(closed.is_err(), "the first panic reaches the caller");
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(matches!(
        interp.exec(|| ()),
        Err(InterpreterError::NotFound { .. })
    ));
}

/// A thread that ran in an interpreter ends: the context it left there goes with it, in a
/// thread-local's destructor. A value whose `Drop` panics there is dropped and the process
/// goes on (it aborted).
#[test]
fn a_thread_leaving_a_panicking_value_in_an_interpreter_ends_without_aborting() {
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let interp = interpreters::create();
    std::thread::scope(|scope| {
        let (interp, dropped) = (&interp, dropped.clone());
        scope
            .spawn(move || {
                interp
                    .exec(move || drop(ALWAYS.set(Arc::new(AlwaysPanics(dropped)))))
                    .unwrap();
            })
            .join()
            .expect("the thread itself does not panic");
    });
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 1);
    interp.close().unwrap();
}
