//! Context watchers: enter / exit / set events, in order, on the thread where they happen;
//! removal; panicking watchers; watchers that change the watcher list.
//!
//! Watchers are process-wide while tests of this file run in parallel threads, so each
//! watcher records into a thread-local log, and each test reads only its own thread's log.

use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicIsize, Ordering};

use contextvars::watch::{self, ContextEvent};
use contextvars::{
    Context, ContextVar, LogicalContext, copy_context, run_with_execution_context,
    run_with_logical_context,
};

mod common;
use common::on_fresh_thread;

thread_local! {
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn log(entry: String) {
    LOG.with(|log| log.borrow_mut().push(entry));
}

fn take_log() -> Vec<String> {
    LOG.with(|log| std::mem::take(&mut *log.borrow_mut()))
}

/// Describes an event with what `VAR` holds when the watcher runs.
fn describe(event: &ContextEvent, var: &ContextVar<u32>) -> String {
    match event {
        ContextEvent::Entered => format!("enter {:?}", var.get()),
        ContextEvent::Exited => format!("exit {:?}", var.get()),
        ContextEvent::Set { var: info } => format!("set {}", info.name()),
        _ => "other".to_string(),
    }
}

/// Serialises the tests that count on no *other* watcher panicking or registering at the
/// wrong moment (each still logs per thread).
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn enter_set_and_exit_are_reported_in_order_with_the_context_current() {
    static VAR: ContextVar<u32> = ContextVar::new("watched");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    on_fresh_thread(|| {
        let guard = watch::add_watcher(|event| log(describe(event, &VAR)));
        VAR.set(1);
        let mut ctx = copy_context();
        ctx.run(|| VAR.set(2));
        run_with_execution_context(&ctx.execution_context(), || ());
        drop(guard);
        ctx.run(|| VAR.set(3));
        assert_eq!(
            take_log(),
            [
                "set watched",
                "enter Some(1)",
                "set watched",
                "exit Some(2)",
                "enter Some(2)",
                "exit Some(2)",
            ]
        );
        assert_eq!(VAR.get(), Some(1));
    });
}

/// The sets `scope_future` makes at each poll are reported like `set`'s.
#[test]
fn a_scope_future_s_sets_are_reported() {
    static VAR: ContextVar<u32> = ContextVar::new("watched.scope");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    on_fresh_thread(|| {
        let guard = watch::add_watcher(|event| {
            if matches!(event, ContextEvent::Set { .. }) {
                log(describe(event, &VAR));
            }
        });
        let mut future = std::pin::pin!(VAR.scope_future(4, async { VAR.get() }));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert_eq!(
            future.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Some(4))
        );
        // Dropping a future never polled sets the variable around the drop: not reported.
        drop(VAR.scope_future(5, async {}));
        drop(guard);
        assert_eq!(take_log(), ["set watched.scope"]);
        assert_eq!(VAR.get(), None);
    });
}

#[test]
fn a_panicking_watcher_is_contained_and_stays_registered() {
    static VAR: ContextVar<u32> = ContextVar::new("panicky");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    on_fresh_thread(|| {
        let guard = watch::add_watcher(|event| {
            log(describe(event, &VAR));
            panic!("watcher panics");
        });
        let mut ctx = Context::new();
        ctx.run(|| VAR.set(5));
        // Exited fires while the closure's panic unwinds: the watcher's own panic must not
        // abort the process.
        let outcome = catch_unwind(AssertUnwindSafe(|| ctx.run(|| panic!("in run"))));
        let payload = outcome.expect_err("the closure's panic comes out");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"in run"));
        drop(guard);
        assert_eq!(
            take_log(),
            [
                "enter None",
                "set panicky",
                "exit Some(5)",
                "enter Some(5)",
                "exit Some(5)"
            ]
        );
        // Everything is back in place.
        assert_eq!(VAR.get(), None);
        assert_eq!(ctx.get(&VAR), Some(5));
    });
}

/// Panics in `Drop` (`Bomb`'s): raised as a watcher's panic payload, or held by a watcher.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("Bomb dropped");
    }
}

#[test]
fn a_watcher_panic_whose_payload_panics_when_dropped_changes_nothing() {
    static VAR: ContextVar<u32> = ContextVar::new("bomb_payload");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    on_fresh_thread(|| {
        VAR.set(1);
        let guard = watch::add_watcher(|event| {
            log(describe(event, &VAR));
            std::panic::panic_any(Bomb);
        });
        let mut ctx = Context::new();
        // Nothing comes out of the run, and each side keeps its own value: the payload's
        // panic used to escape the report of the exit, before the thread's context was
        // switched back.
        let outcome = catch_unwind(AssertUnwindSafe(|| ctx.run(|| VAR.set(2))));
        assert!(outcome.is_ok(), "a watcher's panic came out of the run");
        // And within a scope: the set's report is contained, so the scope resets.
        let scoped = catch_unwind(AssertUnwindSafe(|| VAR.scope(3, || VAR.get())));
        assert_eq!(scoped.ok(), Some(Some(3)));
        drop(guard);
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(ctx.get(&VAR), Some(2));
        assert_eq!(
            take_log(),
            [
                "enter None",
                "set bomb_payload",
                "exit Some(2)",
                "set bomb_payload"
            ]
        );
    });
}

#[test]
fn a_watcher_removed_during_an_event_whose_drop_panics_changes_nothing() {
    static VAR: ContextVar<u32> = ContextVar::new("bomb_held");
    static HELD: Mutex<Option<watch::WatcherGuard>> = Mutex::new(None);
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    on_fresh_thread(|| {
        VAR.set(1);
        let bomb = Bomb;
        let holder = watch::add_watcher(move |_| {
            let _ = &bomb;
        });
        *HELD.lock().unwrap() = Some(holder);
        // At the exit, this one removes the holder, whose last handle is then the event's
        // own list: its `Bomb` is dropped when the report ends, in the middle of the switch.
        let remover = watch::add_watcher(|event| {
            if *event == ContextEvent::Exited {
                let holder = HELD.lock().unwrap().take();
                drop(holder);
            }
        });
        let mut ctx = Context::new();
        let outcome = catch_unwind(AssertUnwindSafe(|| ctx.run(|| VAR.set(2))));
        assert!(
            outcome.is_ok(),
            "a removed watcher's drop came out of the run"
        );
        drop(remover);
        assert!(HELD.lock().unwrap().is_none(), "the holder was not removed");
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(ctx.get(&VAR), Some(2));
    });
}

#[test]
fn watchers_may_add_and_remove_watchers_and_guards_remove_exactly_theirs() {
    static VAR: ContextVar<u32> = ContextVar::new("nested_watchers");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    on_fresh_thread(|| {
        let first = watch::add_watcher(|event| {
            if *event == ContextEvent::Entered {
                log("first".to_string());
                // Registering and removing from inside a watcher does not deadlock.
                drop(watch::add_watcher(|_| log("short-lived".to_string())));
            }
        });
        let second = watch::add_watcher(|event| {
            if *event == ContextEvent::Entered {
                log("second".to_string());
            }
        });
        Context::new().run(|| ());
        assert_eq!(take_log(), ["first", "second"]);
        drop(first);
        Context::new().run(|| ());
        assert_eq!(take_log(), ["second"]);
        drop(second);
        Context::new().run(|| VAR.set(1));
        assert!(take_log().is_empty());
    });
}

/// Removing a watcher drops its captures, user code that may itself remove a watcher (a
/// captured guard) or set a variable: both take the watcher list's lock, which the removal
/// no longer holds by then (it deadlocked before).
#[test]
fn a_removed_watcher_s_captures_may_remove_watchers_and_set_variables() {
    static VAR: ContextVar<u32> = ContextVar::new("watch.drop_sets");
    struct SetsOnDrop;
    impl Drop for SetsOnDrop {
        fn drop(&mut self) {
            VAR.set(9);
        }
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let inner = watch::add_watcher(|_| {});
        let captured = (inner, SetsOnDrop);
        let outer = watch::add_watcher(move |_| {
            let _ = &captured;
        });
        drop(outer);
        done.send(VAR.get()).unwrap();
    });
    let seen = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("removing the watcher deadlocked");
    assert_eq!(seen, Some(9));
}

#[test]
fn events_happen_on_the_thread_that_switches() {
    static VAR: ContextVar<u32> = ContextVar::new("threads_watched");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    let guard = watch::add_watcher(|event| log(describe(event, &VAR)));
    let logs: Vec<Vec<String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|n| {
                scope.spawn(move || {
                    let mut ctx = Context::new();
                    ctx.run(|| VAR.set(n));
                    take_log()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    drop(guard);
    for (n, log) in logs.into_iter().enumerate() {
        assert_eq!(
            log,
            [
                "enter None".to_string(),
                "set threads_watched".to_string(),
                format!("exit Some({n})")
            ]
        );
    }
    take_log();
}

/// A run that began while no watcher was registered and ends with one (registered inside
/// it, or by another thread meanwhile) is left like any other: the thread's context and the
/// run's are each back where they belong, and the watcher sees the run's context as it exits.
/// (A run that waited and was entered only for the watcher once swapped nothing back: the
/// run's context stayed the thread's, and the thread's went into the `Context`.)
#[test]
fn a_run_that_ends_with_a_watcher_it_began_without_is_left_in_place() {
    static VAR: ContextVar<u32> = ContextVar::new("late_watcher");
    static TEXT: ContextVar<String> = ContextVar::new("late_watcher.text");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    on_fresh_thread(|| {
        VAR.set(1);
        TEXT.set("the thread's".into());
        assert_eq!(TEXT.get().as_deref(), Some("the thread's"));
        let mut ctx = Context::new();
        ctx.run(|| VAR.set(2));
        for read_first in [false, true] {
            let mut guard = None;
            let seen = ctx.run(|| {
                // The run waits: a read does not enter it.
                let seen = read_first.then(|| VAR.get());
                guard = Some(watch::add_watcher(|event| log(describe(event, &VAR))));
                seen
            });
            drop(guard);
            assert_eq!(seen, read_first.then_some(Some(2)));
            assert_eq!(take_log(), ["exit Some(2)"]);
            assert_eq!(VAR.get(), Some(1));
            assert_eq!(ctx.get(&VAR), Some(2));
        }
        // The thread's values are its own: dropping the run's context frees none of them.
        drop(ctx);
        assert_eq!(TEXT.get().as_deref(), Some("the thread's"));
        assert_eq!(VAR.get(), Some(1));
    });
}

static TEARDOWN_VAR: ContextVar<u32> = ContextVar::new("teardown");

/// What a run inside a waiting push saw in a thread-local's destructor: inside the run, and
/// inside the push after it.
static SEEN_AT_TEARDOWN: Mutex<Option<(Option<u32>, Option<u32>)>> = Mutex::new(None);

struct PushAndRunAtTeardown(Context, LogicalContext);

impl Drop for PushAndRunAtTeardown {
    fn drop(&mut self) {
        let Self(ctx, lc) = self;
        let seen = run_with_logical_context(lc, || {
            let inside = ctx.run(|| TEARDOWN_VAR.get());
            (inside, TEARDOWN_VAR.get())
        });
        *SEEN_AT_TEARDOWN.lock().unwrap() = Some(seen);
    }
}

thread_local! {
    static TEARDOWN_HOLDER: RefCell<Option<PushAndRunAtTeardown>> = const { RefCell::new(None) };
}

/// With a watcher registered, a run is entered as it begins and, failing that, as it ends.
/// After the thread state is gone neither can happen; the run must still end leaving the push
/// it ran in listed as waiting (the push's end checks it, and a panic in a thread-local's
/// destructor aborts the process).
#[test]
fn a_run_in_a_waiting_push_at_thread_teardown_with_a_watcher_leaves_the_push_listed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Entered and Exited events, which must pair up (a tracer keeping a stack relies on it).
    static BALANCE: AtomicIsize = AtomicIsize::new(0);
    let guard = watch::add_watcher(|event| match event {
        ContextEvent::Entered => _ = BALANCE.fetch_add(1, Ordering::Relaxed),
        ContextEvent::Exited => _ = BALANCE.fetch_sub(1, Ordering::Relaxed),
        _ => {}
    });
    std::thread::spawn(|| {
        // Registered before the thread state's destructor, so on this platform it runs after
        // the state is gone (the assertion below holds either way).
        TEARDOWN_HOLDER.with(|holder| holder.borrow_mut().is_none());
        let mut ctx = Context::new();
        ctx.run(|| TEARDOWN_VAR.set(2));
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || TEARDOWN_VAR.set(3));
        TEARDOWN_HOLDER.with(|holder| *holder.borrow_mut() = Some(PushAndRunAtTeardown(ctx, lc)));
    })
    .join()
    .unwrap();
    drop(guard);
    assert_eq!(
        BALANCE.load(Ordering::Relaxed),
        0,
        "unpaired enter/exit events"
    );
    let seen = SEEN_AT_TEARDOWN.lock().unwrap().take().expect("it ran");
    // The state gone: no context at all; else each its own value.
    assert!(
        matches!(seen, (None, None) | (Some(2), Some(3))),
        "seen at teardown: {seen:?}"
    );
}
