//! Task scenarios from PEP 550 §Coroutines and Asynchronous Tasks and §asyncio: awaited
//! futures share their task's context, tasks start from a snapshot taken at creation, a
//! `wait_for`-style implicit task isolates, callbacks run in the context they were bound in,
//! and variables that opted out of inheritance stay behind. Runtime-agnostic tests use
//! `futures_executor` and a toy single-threaded event loop; with feature `tokio` the same
//! scenarios run on real tokio runtimes (worker migration, `repeat()` re-spawns,
//! `spawn_blocking`, panicking tasks, nested `block_on`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use contextvars::{Context, ContextVar, ExecutionContext, copy_context, get_execution_context};
use exec_context::{FutureExt, StreamExt, bind, bind_to};
use futures_executor::block_on;

static VAR: ContextVar<&'static str> = ContextVar::new("var");
static TXN: ContextVar<u32> = ContextVar::new("txn").not_inherited();

/// Runs `f` in an empty context of its own, whatever the test thread had.
fn clean<R>(f: impl FnOnce() -> R) -> R {
    Context::new().run(f)
}

/// Runs `f` on a new OS thread (which starts with an empty execution context).
fn fresh_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    match std::thread::spawn(f).join() {
        Ok(result) => result,
        Err(panic) => resume_unwind(panic),
    }
}

/// `asyncio.sleep(0)`: pending once (waking itself), then ready.
fn yield_now() -> impl Future<Output = ()> {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    YieldNow(false)
}

/// Records the value of [`VAR`] when it is dropped.
struct Recorder(Arc<Mutex<Vec<Option<&'static str>>>>);

impl Drop for Recorder {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(VAR.get());
    }
}

// ---------------------------------------------------------------------------------------------
// A toy asyncio loop: one thread, tasks interleaved, `create_task` carries the context
// ---------------------------------------------------------------------------------------------

type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

#[derive(Clone, Default)]
struct EventLoop {
    ready: Rc<RefCell<VecDeque<LocalTask>>>,
}

impl EventLoop {
    /// `loop.create_task(coro)`: the task starts from a snapshot of the current context.
    fn create_task(&self, coro: impl Future<Output = ()> + 'static) {
        self.ready
            .borrow_mut()
            .push_back(Box::pin(coro.in_current_context()));
    }

    /// Polls the tasks round-robin until none is left.
    fn run_until_complete(&self) {
        let mut cx = TaskContext::from_waker(Waker::noop());
        loop {
            let next = self.ready.borrow_mut().pop_front();
            let Some(mut task) = next else { break };
            if task.as_mut().poll(&mut cx).is_pending() {
                self.ready.borrow_mut().push_back(task);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime-agnostic scenarios
// ---------------------------------------------------------------------------------------------

async fn sub() {
    assert_eq!(VAR.get(), Some("main"));
    yield_now().await;
    VAR.set("sub");
    assert_eq!(VAR.get(), Some("sub"));
}

#[test]
fn single_task_propagation() {
    clean(|| {
        let main = async {
            VAR.set("main");
            sub().await;
            // Coroutines have no logical context (PEP 550 v5): the effect of sub() is visible.
            VAR.get()
        };
        assert_eq!(block_on(main.in_current_context()), Some("sub"));
        // The task's changes stayed in the task.
        assert_eq!(VAR.get(), None);
        assert!(get_execution_context().is_empty());
    });
}

/// Who saw what.
type Observed = (&'static str, Option<&'static str>);

#[test]
fn spawned_task_sees_a_snapshot() {
    clean(|| {
        let event_loop = EventLoop::default();
        let log: Rc<RefCell<Vec<Observed>>> = Rc::default();

        let (lp, main_log) = (event_loop.clone(), log.clone());
        event_loop.create_task(async move {
            VAR.set("main");
            let sub_log = main_log.clone();
            lp.create_task(async move {
                // Runs after "var" was modified in main().
                yield_now().await;
                // Inherited from main(), without the changes made after the task was created.
                sub_log.borrow_mut().push(("sub sees", VAR.get()));
                // Local to sub().
                VAR.set("sub");
                sub_log.borrow_mut().push(("sub set", VAR.get()));
            });
            assert_eq!(VAR.get(), Some("main"));
            VAR.set("main changed");
            for _ in 0..3 {
                yield_now().await;
            }
            main_log.borrow_mut().push(("main after sub", VAR.get()));
        });
        event_loop.run_until_complete();

        assert_eq!(
            *log.borrow(),
            [
                ("sub sees", Some("main")),
                ("sub set", Some("sub")),
                ("main after sub", Some("main changed")),
            ]
        );
        // Nothing leaked into the loop's thread.
        assert_eq!(VAR.get(), None);
    });
}

#[test]
fn interleaved_tasks_on_one_thread_keep_their_own_values() {
    static ID: ContextVar<u32> = ContextVar::new("id");
    clean(|| {
        let event_loop = EventLoop::default();
        let mismatches = Rc::new(RefCell::new(0));
        for id in 0..10 {
            let mismatches = mismatches.clone();
            event_loop.create_task(async move {
                ID.set(id);
                for _ in 0..20 {
                    yield_now().await;
                    if ID.get() != Some(id) {
                        *mismatches.borrow_mut() += 1;
                    }
                }
            });
        }
        event_loop.run_until_complete();
        assert_eq!(*mismatches.borrow(), 0);
        assert_eq!(ID.get(), None);
    });
}

async fn set_later(value: &'static str) {
    yield_now().await;
    VAR.set(value);
}

#[test]
fn wait_for_style_implicit_task_isolates() {
    clean(|| {
        let main = async {
            VAR.set("main");
            // Waiting for sub() directly: the change is visible.
            set_later("sub-1").await;
            assert_eq!(VAR.get(), Some("sub-1"));
            // `wait_for` wraps its argument in an implicit task: the change is isolated.
            set_later("sub-2").in_current_context().await;
            VAR.get()
        };
        assert_eq!(block_on(main), Some("sub-1"));
    });
}

#[test]
fn a_task_created_inside_a_generator_step_captures_the_generators_values() {
    clean(|| {
        VAR.set("main");
        let mut g = exec_context::Gen::new(|co| async move {
            VAR.set("gen");
            // The snapshot includes the generator's logical context.
            for _ in 0..2 {
                co.yield_(Box::pin(async { VAR.get() }.in_current_context()))
                    .await;
            }
        });
        let task = g.next().expect("yields a task");
        VAR.set("main changed");
        // Run outside the generator, after the caller changed: still the generator's value.
        assert_eq!(block_on(task), Some("gen"));
        let second = g.next().expect("yields a task");
        drop(g); // the generator is gone; its task still has the snapshot
        assert_eq!(block_on(second), Some("gen"));
        assert_eq!(VAR.get(), Some("main changed"));
    });
}

#[test]
fn a_panicking_poll_leaves_the_thread_context_unchanged() {
    clean(|| {
        VAR.set("thread");
        let depth = get_execution_context().depth();
        let task = async {
            VAR.set("task");
            yield_now().await;
            panic!("task panicked on purpose");
        }
        .in_current_context();
        let outcome = catch_unwind(AssertUnwindSafe(|| block_on(task)));
        assert!(outcome.is_err());
        assert_eq!(VAR.get(), Some("thread"));
        assert_eq!(get_execution_context().depth(), depth);
    });
}

#[test]
fn a_task_is_dropped_inside_its_context() {
    clean(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        VAR.set("spawner");
        let recorder = Recorder(log.clone());
        let mut task = Box::pin(
            async move {
                let _recorder = recorder;
                VAR.set("task");
                std::future::pending::<()>().await;
            }
            .in_current_context(),
        );
        let mut cx = TaskContext::from_waker(Waker::noop());
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(task.context().get(&VAR), Some("task"));
        drop(task);
        assert_eq!(*log.lock().unwrap(), [Some("task")]);
        assert_eq!(VAR.get(), Some("spawner"));
    });
}

#[test]
fn with_execution_context_runs_in_the_given_snapshot() {
    clean(|| {
        VAR.set("snapshot");
        let ec = get_execution_context();
        VAR.set("later");
        let task = async {
            let seen = VAR.get();
            VAR.set("task");
            seen
        }
        .with_execution_context(ec.clone());
        assert_eq!(block_on(task), Some("snapshot"));
        assert_eq!(ec.get(&VAR), Some("snapshot")); // the snapshot itself cannot change

        let mut ctx = copy_context();
        block_on(
            async {
                VAR.set("in ctx");
            }
            .with_context(ctx.clone()),
        );
        assert_eq!(ctx.get(&VAR), Some("later")); // a clone was given, not `ctx`
        let task = async {
            VAR.set("in ctx");
        }
        .with_context(std::mem::take(&mut ctx));
        let mut task = Box::pin(task);
        block_on(task.as_mut());
        assert_eq!(task.context().get(&VAR), Some("in ctx"));
        assert_eq!(VAR.get(), Some("later"));
    });
}

#[test]
fn nested_contexts_and_block_on_restore_lifo() {
    clean(|| {
        VAR.set("thread");
        let mut a = Context::new();
        let mut b = copy_context();
        let trail = a.run(|| {
            VAR.set("a");
            let inner = b.run(|| {
                assert_eq!(VAR.get(), Some("thread"));
                VAR.set("b");
                let in_task = block_on(
                    async {
                        let seen = VAR.get();
                        VAR.set("task");
                        let mut c = Context::new();
                        let in_c = c.run(|| {
                            VAR.set("c");
                            VAR.get()
                        });
                        (seen, in_c, VAR.get())
                    }
                    .in_current_context(),
                );
                (in_task, VAR.get())
            });
            (inner, VAR.get())
        });
        assert_eq!(
            trail,
            (
                (
                    (Some("b"), Some("c"), Some("task")), // inside the task
                    Some("b")                             // back in b
                ),
                Some("a") // back in a
            )
        );
        assert_eq!(VAR.get(), Some("thread"));
        assert_eq!(a.get(&VAR), Some("a"));
        assert_eq!(b.get(&VAR), Some("b"));
    });
}

#[test]
fn bind_runs_callbacks_in_the_context_they_were_scheduled_from() {
    clean(|| {
        VAR.set("main");
        let callback = bind(|| {
            let seen = VAR.get();
            VAR.set("callback");
            (seen, VAR.get())
        });
        VAR.set("later");
        assert_eq!(callback(), (Some("main"), Some("callback")));
        assert_eq!(VAR.get(), Some("later"));

        // `call_soon` from another thread.
        let callback = bind(|| VAR.get());
        assert_eq!(fresh_thread(callback), Some("later"));

        // `call_soon(..., context=ec)`
        let ec = get_execution_context();
        VAR.set("even later");
        assert_eq!(bind_to(ec.clone(), || VAR.get())(), Some("later"));
        assert_eq!(bind_to(ExecutionContext::new(), || VAR.get())(), None);
        // On another thread and here: `ec`'s values, plus a logical context of the
        // callback's own for its set, which reaches neither caller.
        let depth = ec.depth();
        let callback = move || {
            let seen = VAR.get();
            VAR.set("cb");
            (seen, VAR.get(), get_execution_context().depth())
        };
        let expected = (Some("later"), Some("cb"), depth + 1);
        assert_eq!(fresh_thread(bind_to(ec.clone(), callback)), expected);
        assert_eq!(bind_to(ec, callback)(), expected);
        assert_eq!(VAR.get(), Some("even later"));
    });
}

#[test]
fn not_inherited_variable_stays_with_the_spawner() {
    clean(|| {
        TXN.set(1);
        VAR.set("main");
        assert_eq!(TXN.get(), Some(1));
        let both = || (VAR.get(), TXN.get());
        let expected = (Some("main"), None);

        assert_eq!(block_on(async { both() }.in_current_context()), expected);
        assert_eq!(bind(both)(), expected);
        assert_eq!(fresh_thread(exec_context::thread::job(both)), expected);
        let mut stream = futures_stream_once(both).in_current_context();
        let polled = block_on(std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(Pin::new(&mut stream), cx)
        }));
        assert_eq!(polled, Some(expected));

        // The spawner still has it, and a generator (not spawned work) sees it.
        assert_eq!(both(), (Some("main"), Some(1)));
        let mut g = exec_context::Gen::new(|co| async move { co.yield_(both()).await });
        assert_eq!(g.next(), Some((Some("main"), Some(1))));
    });
}

/// A stream that yields `f()` once.
fn futures_stream_once<T>(f: impl FnMut() -> T + Unpin) -> impl futures_core::Stream<Item = T> {
    struct Once<F>(Option<F>);
    impl<T, F: FnMut() -> T + Unpin> futures_core::Stream for Once<F> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<T>> {
            Poll::Ready(self.0.take().map(|mut f| f()))
        }
    }
    Once(Some(f))
}

// ---------------------------------------------------------------------------------------------
// Real tokio runtimes
// ---------------------------------------------------------------------------------------------

/// A wrapped future polled again after it completed panics (as std's futures do) rather
/// than hang its task in a `Pending` that no waker ends.
#[test]
fn a_wrapped_future_polled_after_completion_panics() {
    let mut task = Box::pin(async { 1 }.in_current_context());
    let mut cx = TaskContext::from_waker(Waker::noop());
    assert_eq!(task.as_mut().poll(&mut cx), Poll::Ready(1));
    let again = catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(&mut cx)));
    assert!(again.is_err(), "polled after completion");
}

/// A wrapped future that completes is dropped at once, inside the task's context: what it
/// holds does not wait for the wrapper's drop, and the wrapper says it is finished.
#[test]
fn a_wrapped_future_is_dropped_inside_its_context_as_it_completes() {
    /// Sends what `VAR` holds when it drops.
    struct Noisy(std::sync::mpsc::Sender<Option<&'static str>>);
    impl Drop for Noisy {
        fn drop(&mut self) {
            let _ = self.0.send(VAR.get());
        }
    }

    clean(|| {
        VAR.set("spawner");
        let (send, dropped) = std::sync::mpsc::channel();
        let noisy = Noisy(send);
        // Not an async block: a future that keeps its state after `Ready`.
        let mut task = Box::pin(
            std::future::poll_fn(move |_| {
                let _held = &noisy;
                VAR.set("task");
                Poll::Ready(1)
            })
            .in_current_context(),
        );
        VAR.set("caller");
        assert_eq!(block_on(task.as_mut()), 1);
        assert_eq!(
            dropped.try_recv(),
            Ok(Some("task")),
            "dropped at completion, inside"
        );
        assert!(format!("{task:?}").contains("finished: true"), "{task:?}");
        assert_eq!(
            task.context().get(&VAR),
            Some("task"),
            "the context stays readable"
        );
        drop(task);
        assert!(dropped.try_recv().is_err(), "dropped once");
        assert_eq!(VAR.get(), Some("caller"));
    });
}

#[cfg(feature = "tokio")]
mod on_tokio {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use contextvars::EC_LEN_MAX;
    use tokio::runtime::{Builder, Runtime};
    use tokio::sync::mpsc;

    use super::*;

    fn multi_thread(workers: usize) -> Runtime {
        Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_time()
            .build()
            .expect("runtime")
    }

    fn current_thread() -> Runtime {
        Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    /// Runs `root` as a task of the calling context on `rt`, from a fresh OS thread, so that
    /// nothing the root sets lands in a thread tokio also polls other tasks on.
    fn run<R: Send + 'static>(rt: Runtime, root: impl Future<Output = R> + Send + 'static) -> R {
        fresh_thread(move || {
            let result = rt.block_on(root.in_current_context());
            drop(rt);
            result
        })
    }

    #[test]
    fn tokio_single_task_propagation_and_implicit_task() {
        let result = run(current_thread(), async {
            VAR.set("main");
            sub().await;
            let after_sub = VAR.get();
            // `asyncio.wait_for`: tokio's timeout around a carried future is an implicit task.
            tokio::time::timeout(
                Duration::from_secs(60),
                exec_context::tokio::carry(set_later("sub-2")),
            )
            .await
            .expect("completes at once");
            let after_carried = VAR.get();
            // Without carrying, the timeout's future is part of this task and leaks.
            tokio::time::timeout(Duration::from_secs(60), set_later("sub-3"))
                .await
                .expect("completes at once");
            (after_sub, after_carried, VAR.get())
        });
        assert_eq!(result, (Some("sub"), Some("sub"), Some("sub-3")));
    }

    #[test]
    fn tokio_spawn_sees_a_snapshot() {
        let result = run(multi_thread(2), async {
            VAR.set("main");
            let (go, wait) = tokio::sync::oneshot::channel::<()>();
            let child = exec_context::tokio::spawn(async move {
                wait.await.expect("the parent sends");
                let seen = VAR.get();
                VAR.set("sub");
                (seen, VAR.get())
            });
            assert_eq!(VAR.get(), Some("main"));
            VAR.set("main changed");
            go.send(()).expect("the child waits");
            let child = child.await.expect("the child completes");
            // Plain tokio::spawn loses the context (tokio#2396).
            let plain = tokio::spawn(async { VAR.get() }).await.expect("completes");
            (child, VAR.get(), plain)
        });
        assert_eq!(
            result,
            ((Some("main"), Some("sub")), Some("main changed"), None)
        );
    }

    /// A value that counts how many of its kind are alive.
    struct Tracked {
        n: u32,
    }

    static LIVE: AtomicUsize = AtomicUsize::new(0);

    impl Tracked {
        fn new(n: u32) -> Self {
            LIVE.fetch_add(1, Ordering::SeqCst);
            Tracked { n }
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }

    static CHAIN: ContextVar<Tracked> = ContextVar::new("chain");

    /// One step of what each task saw.
    #[derive(Debug)]
    struct Step {
        n: u32,
        parent: Option<u32>,
        depth: usize,
        live: usize,
    }

    const REPEATS: u32 = 1000;

    /// PEP 550's `repeat()`: each task sets the variable and spawns the next one.
    fn repeat(
        n: u32,
        steps: mpsc::UnboundedSender<Step>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let parent = CHAIN.with(|value| value.map(|v| v.n));
            CHAIN.set(Tracked::new(n));
            let step = Step {
                n,
                parent,
                depth: get_execution_context().depth(),
                live: LIVE.load(Ordering::SeqCst),
            };
            if n < REPEATS {
                drop(exec_context::tokio::spawn(repeat(n + 1, steps.clone())));
            }
            let _ = steps.send(step);
        })
    }

    fn run_repeat(rt: Runtime) -> Vec<Step> {
        let steps = run(rt, async {
            let (send, mut receive) = mpsc::unbounded_channel();
            drop(exec_context::tokio::spawn(repeat(0, send)));
            let mut steps = Vec::new();
            while let Some(step) = receive.recv().await {
                steps.push(step);
            }
            steps
        });
        assert_eq!(steps.len(), REPEATS as usize + 1);
        for step in &steps {
            assert_eq!(step.parent, step.n.checked_sub(1), "{step:?}");
            assert!(step.depth <= EC_LEN_MAX, "{step:?}");
        }
        // The runtime is gone: every value is freed.
        assert_eq!(LIVE.load(Ordering::SeqCst), 0);
        steps
    }

    #[test]
    fn repeat_respawning_keeps_depth_and_memory_bounded() {
        // One thread: each task is dropped before the next one runs, so what stays alive is
        // exactly what the newest task's context can reach.
        let steps = run_repeat(current_thread());
        for step in &steps {
            // The values reachable from the unsquashed part of the chain, not the whole chain.
            assert!(step.live <= EC_LEN_MAX + 2, "{step:?}");
        }
        // Two workers: tasks migrate and overlap; the chain of values stays correct.
        run_repeat(multi_thread(2));
    }

    static MIGRANT: ContextVar<u32> = ContextVar::new("migrant");

    #[test]
    fn context_survives_worker_migration() {
        // Which worker polls a task is tokio's choice: runs repeat until some task moved.
        let mut migrated = 0;
        for _ in 0..20 {
            migrated += migration_round();
            if migrated > 0 {
                break;
            }
        }
        assert!(
            migrated > 0,
            "no task ran on more than one worker in 20 runs"
        );
    }

    /// One run: no task sees another's value; returns how many tasks ran on more than one
    /// worker.
    fn migration_round() -> usize {
        let report = run(multi_thread(2), async {
            let mut carried = Vec::new();
            for id in 0..8 {
                carried.push(exec_context::tokio::spawn(async move {
                    MIGRANT.set(id);
                    let mut threads = HashSet::new();
                    let mut wrong = 0;
                    for _ in 0..200 {
                        tokio::task::yield_now().await;
                        threads.insert(std::thread::current().id());
                        if MIGRANT.get() != Some(id) {
                            wrong += 1;
                        }
                    }
                    (wrong, threads.len())
                }));
            }
            // Noise: plain tasks that write straight into the worker threads' contexts.
            let mut noise = Vec::new();
            for k in 0..4 {
                noise.push(tokio::spawn(async move {
                    for _ in 0..200 {
                        MIGRANT.set(10_000 + k);
                        tokio::task::yield_now().await;
                    }
                }));
            }
            let mut results = Vec::new();
            for handle in carried {
                results.push(handle.await.expect("the task completes"));
            }
            for handle in noise {
                handle.await.expect("the task completes");
            }
            results
        });
        let wrong: usize = report.iter().map(|(wrong, _)| wrong).sum();
        assert_eq!(wrong, 0, "a task saw another task's value: {report:?}");
        report.iter().filter(|(_, threads)| *threads > 1).count()
    }

    #[test]
    fn a_token_made_in_one_poll_resets_in_a_later_poll_on_any_worker() {
        let result = run(multi_thread(2), async {
            VAR.set("root");
            exec_context::tokio::spawn(async {
                let before = VAR.get();
                let token = VAR.set("task");
                for _ in 0..50 {
                    tokio::task::yield_now().await;
                }
                let reset = VAR.reset(token);
                (before, reset, VAR.get())
            })
            .await
            .expect("completes")
        });
        assert_eq!(result, (Some("root"), Ok(()), Some("root")));
    }

    #[test]
    fn block_in_place_inside_a_carried_task_keeps_the_context() {
        let result = run(multi_thread(2), async {
            VAR.set("root");
            exec_context::tokio::spawn(async {
                VAR.set("task");
                let inside = tokio::task::block_in_place(|| {
                    let seen = VAR.get();
                    VAR.set("blocking section"); // part of the task, like any synchronous code
                    seen
                });
                tokio::task::yield_now().await;
                (inside, VAR.get())
            })
            .await
            .expect("completes")
        });
        assert_eq!(result, (Some("task"), Some("blocking section")));
    }

    #[test]
    fn tokio_spawn_from_a_generator_step_captures_the_generators_values() {
        let result = run(multi_thread(2), async {
            VAR.set("task");
            let mut g = exec_context::Gen::new(|co| async move {
                VAR.set("gen");
                co.yield_(exec_context::tokio::spawn(async { VAR.get() }))
                    .await;
            });
            let handle = g.next().expect("yields a handle");
            drop(g);
            (handle.await.expect("completes"), VAR.get())
        });
        assert_eq!(result, (Some("gen"), Some("task")));
    }

    #[test]
    fn spawn_blocking_with_and_without_carrying() {
        let result = run(multi_thread(2), async {
            VAR.set("main");
            let carried = exec_context::tokio::spawn_blocking(|| {
                let seen = VAR.get();
                VAR.set("blocking");
                (seen, VAR.get())
            })
            .await
            .expect("completes");
            let plain =
                tokio::task::spawn_blocking(|| (VAR.get(), get_execution_context().is_empty()))
                    .await
                    .expect("completes");
            (carried, plain, VAR.get())
        });
        assert_eq!(
            result,
            ((Some("main"), Some("blocking")), (None, true), Some("main"))
        );
    }

    #[test]
    fn a_panicking_task_leaks_nothing_into_the_worker_thread() {
        for rt in [current_thread(), multi_thread(1)] {
            let result = run(rt, async {
                VAR.set("main");
                let doomed = exec_context::tokio::spawn(async {
                    VAR.set("doomed");
                    tokio::task::yield_now().await;
                    VAR.set("doomed again");
                    panic!("task panicked on purpose");
                });
                let error = doomed.await.expect_err("the task panicked");
                assert!(error.is_panic());
                let plain = tokio::spawn(async { (VAR.get(), get_execution_context().is_empty()) })
                    .await
                    .expect("completes");
                (plain, VAR.get())
            });
            assert_eq!(result, ((None, true), Some("main")));
        }
    }

    /// A runtime of one worker, with timers, whose worker `check_workers_with` checks.
    fn checked_runtime(
        report: impl Fn(&[contextvars::VarInfo]) + Send + Sync + 'static,
    ) -> Runtime {
        let mut builder = Builder::new_multi_thread();
        exec_context::tokio::check_workers_with(&mut builder, report);
        builder
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("runtime")
    }

    /// [`checked_runtime`] whose reports are recorded, by variable name.
    fn recording_checked_runtime() -> (Runtime, Arc<Mutex<Vec<String>>>) {
        let leaked = Arc::new(Mutex::new(Vec::new()));
        let sink = leaked.clone();
        let rt = checked_runtime(move |vars| {
            sink.lock()
                .unwrap()
                .extend(vars.iter().map(|v| v.name().to_owned()));
        });
        (rt, leaked)
    }

    /// After a plain task leaked a value on the worker: lets the worker park until a report
    /// came and `look`, run by a task on that worker, finds nothing (a second at most), and
    /// returns what it found last.
    async fn after_the_next_park(
        leaked: &Mutex<Vec<String>>,
        look: fn() -> Option<&'static str>,
    ) -> Option<&'static str> {
        let mut seen = look();
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            seen = tokio::spawn(async move { look() }).await.unwrap();
            if seen.is_none() && !leaked.lock().unwrap().is_empty() {
                break;
            }
        }
        seen
    }

    /// `check_workers`: a plain-spawned task that attached a context of its own and never
    /// detached it left that attach on its worker; the next park reports what it set and
    /// ends it, so the worker's later tasks see nothing of it.
    #[test]
    fn check_workers_ends_an_attach_a_task_left_on_its_worker() {
        let (rt, leaked) = recording_checked_runtime();
        let seen = rt.block_on(async {
            tokio::spawn(async {
                let _never_detached = contextvars::attach(Context::new()).unwrap();
                VAR.set("left");
            })
            .await
            .unwrap();
            after_the_next_park(&leaked, || VAR.get()).await
        });
        drop(rt);
        assert_eq!(seen, None);
        assert_eq!(
            leaked.lock().unwrap().first().map(String::as_str),
            Some("var")
        );
    }

    /// `check_workers`: a pinned variable (a tenant) that a plain task set on its worker is
    /// reported by name and cleared at the next park, as any other variable is.
    #[test]
    fn check_workers_reports_a_leaked_pinned_variable() {
        static TENANT: ContextVar<&str> = ContextVar::new("tenant.leaked").pinned();
        let (rt, leaked) = recording_checked_runtime();
        let seen = rt.block_on(async {
            tokio::spawn(async { TENANT.set("acme") }).await.unwrap();
            after_the_next_park(&leaked, || TENANT.get()).await
        });
        drop(rt);
        assert_eq!(seen, None, "cleared");
        assert_eq!(*leaked.lock().unwrap(), ["tenant.leaked"]);
    }

    /// `check_workers`: a value a plain task leaked into its worker's context, under an empty
    /// attach another task left behind, is cleared at the next park (the empty context on
    /// top hid it from the check before, for the life of the worker).
    #[test]
    fn check_workers_clears_a_leak_hidden_under_an_empty_attach_left_behind() {
        static HELD: ContextVar<Arc<()>> = ContextVar::new("held");
        let rt = checked_runtime(|_| {});
        let value = Arc::new(());
        let watch = Arc::downgrade(&value);
        let released = rt.block_on(async move {
            tokio::spawn(async move {
                HELD.set(value);
                let _never_detached = contextvars::attach(Context::new()).unwrap();
            })
            .await
            .unwrap();
            for _ in 0..200 {
                if watch.upgrade().is_none() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                tokio::spawn(async {}).await.unwrap();
            }
            false
        });
        drop(rt);
        assert!(released, "the leaked value stayed on the worker");
    }

    /// `check_workers` on two runtimes: a current-thread runtime driven by `block_on` on a
    /// blocking thread of another one parks there, and its check leaves that thread's
    /// marker (the other runtime's) alone: what the blocking closure set is still there, and
    /// nothing is reported.
    #[test]
    fn check_workers_of_one_runtime_leave_another_runtimes_threads_alone() {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let outer = checked_runtime(|_| {});
        let seen = outer.block_on(async move {
            tokio::task::spawn_blocking(move || {
                VAR.set("blocking");
                let mut builder = Builder::new_current_thread();
                exec_context::tokio::check_workers_with(&mut builder, move |vars| {
                    let names = vars.iter().map(|v| v.name().to_owned());
                    sink.lock().unwrap().extend(names);
                });
                let inner = builder.enable_time().build().expect("runtime");
                // The sleep parks the inner runtime on this thread.
                let seen = inner.block_on(async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    VAR.get()
                });
                drop(inner);
                (seen, VAR.get())
            })
            .await
            .unwrap()
        });
        assert_eq!(seen, (Some("blocking"), Some("blocking")));
        assert!(reports.lock().unwrap().is_empty(), "{reports:?}");
    }

    /// `check_workers`: a leaked value whose `Drop` panics with a payload whose own `Drop`
    /// panics is contained too (the payload was dropped bare inside tokio's park hook, which
    /// aborted the process in a debug build).
    #[test]
    fn check_workers_contains_a_panic_whose_payload_panics_when_dropped() {
        struct NastyPayload;
        impl Drop for NastyPayload {
            fn drop(&mut self) {
                panic!("the payload's drop panicked on purpose");
            }
        }
        struct Nasty;
        impl Drop for Nasty {
            fn drop(&mut self) {
                std::panic::panic_any(NastyPayload);
            }
        }
        static NASTY: ContextVar<Nasty> = ContextVar::new("nasty");
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let rt = checked_runtime(move |vars| {
            let names = vars.iter().map(|v| v.name().to_owned());
            sink.lock().unwrap().extend(names);
        });
        let seen = rt.block_on(async {
            tokio::spawn(async { drop(NASTY.set(Nasty)) })
                .await
                .unwrap();
            for _ in 0..400 {
                if !reports.lock().unwrap().is_empty() {
                    // The worker goes on, and the value is gone from it.
                    return tokio::spawn(async { NASTY.with(|nasty| nasty.is_some()) })
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                tokio::spawn(async {}).await.unwrap();
            }
            panic!("no report came");
        });
        assert!(!seen);
        drop(rt);
        assert_eq!(*reports.lock().unwrap(), ["nasty"]);
    }

    /// `check_workers`: a `report` that panics, and a leaked value whose `Drop` panics, are
    /// contained: tokio does not guard its park hook (a debug build's worker aborts the
    /// process on a panic there), and the worker goes on being checked.
    #[test]
    fn check_workers_survives_a_panicking_report_and_drop() {
        struct Boom;
        impl Drop for Boom {
            fn drop(&mut self) {
                panic!("a leaked value's drop panicked on purpose");
            }
        }
        static BOOM: ContextVar<Boom> = ContextVar::new("boom");
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let rt = checked_runtime(move |vars| {
            let mut reports = sink.lock().unwrap();
            reports.push(vars.iter().map(|v| v.name().to_owned()).collect::<Vec<_>>());
            if reports.len() == 1 {
                drop(reports);
                panic!("the report panicked on purpose");
            }
        });
        // Leaks, waits for the report, then tells whether a task on the worker still sees
        // the leaked variable.
        let leak_and_wait = |leak: fn(), reports_wanted: usize, seen: fn() -> bool| {
            rt.block_on(async {
                tokio::spawn(async move { leak() }).await.unwrap();
                for _ in 0..400 {
                    if reports.lock().unwrap().len() >= reports_wanted {
                        return tokio::spawn(async move { seen() }).await.unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    tokio::spawn(async {}).await.unwrap();
                }
                panic!("no report came");
            })
        };
        let boom_seen = || BOOM.with(|boom| boom.is_some());
        assert!(!leak_and_wait(|| drop(BOOM.set(Boom)), 1, boom_seen));
        let var_seen = || VAR.get().is_some();
        assert!(!leak_and_wait(|| drop(VAR.set("second")), 2, var_seen));
        drop(rt);
        let reports = reports.lock().unwrap();
        assert_eq!(reports[0], ["boom"]);
        assert_eq!(reports[1], ["var"]);
    }

    /// `check_workers`: a value whose `Drop` panics, in the worker's own context under an
    /// attach a task left behind, is contained too: ending that attach drops the worker's
    /// context with it, and the panic escaped tokio's park hook before (the worker died, and
    /// with it every task queued there).
    #[test]
    fn check_workers_survives_a_panicking_drop_under_an_attach_left_behind() {
        struct Boom(Arc<AtomicUsize>);
        impl Drop for Boom {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
                panic!("a leaked value's drop panicked on purpose");
            }
        }
        static BOOM: ContextVar<Boom> = ContextVar::new("boom.under");
        let dropped = Arc::new(AtomicUsize::new(0));
        let (done, finished) = std::sync::mpsc::channel();
        let counter = dropped.clone();
        std::thread::spawn(move || {
            let rt = checked_runtime(|_| {});
            let ran_after = rt.block_on(async move {
                tokio::spawn(async move {
                    drop(BOOM.set(Boom(counter)));
                    let _never_detached = contextvars::attach(Context::new()).unwrap();
                })
                .await
                .unwrap();
                for _ in 0..400 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if dropped.load(Ordering::SeqCst) == 1 {
                        // The worker parked, dropped the value, and still runs tasks.
                        return tokio::spawn(async { 7 }).await.unwrap();
                    }
                }
                panic!("the worker never parked");
            });
            drop(rt);
            let _ = done.send(ran_after);
        });
        let ran_after = finished
            .recv_timeout(Duration::from_secs(60))
            .expect("the worker died in its park hook");
        assert_eq!(ran_after, 7);
    }

    #[test]
    fn nested_block_on_restores_lifo() {
        let result = fresh_thread(|| {
            VAR.set("thread");
            let rt = current_thread();
            let outer = rt.block_on(
                async {
                    VAR.set("tokio task");
                    // Another executor inside a task of this one.
                    let inner = block_on(
                        async {
                            let seen = VAR.get();
                            VAR.set("futures task");
                            let in_ctx = Context::new().run(|| {
                                VAR.set("ctx");
                                VAR.get()
                            });
                            (seen, in_ctx, VAR.get())
                        }
                        .in_current_context(),
                    );
                    (inner, VAR.get())
                }
                .in_current_context(),
            );
            drop(rt);

            // And a tokio runtime inside a futures_executor task.
            let reverse = block_on(
                async {
                    VAR.set("futures task");
                    let rt = current_thread();
                    let inner = rt.block_on(
                        async {
                            let seen = VAR.get();
                            VAR.set("tokio task");
                            let child = exec_context::tokio::spawn(async { VAR.get() })
                                .await
                                .expect("completes");
                            (seen, child, VAR.get())
                        }
                        .in_current_context(),
                    );
                    drop(rt);
                    (inner, VAR.get())
                }
                .in_current_context(),
            );
            (outer, reverse, VAR.get())
        });
        assert_eq!(
            result,
            (
                (
                    (Some("tokio task"), Some("ctx"), Some("futures task")),
                    Some("tokio task")
                ),
                (
                    (Some("futures task"), Some("tokio task"), Some("tokio task")),
                    Some("futures task")
                ),
                Some("thread")
            )
        );
    }

    #[test]
    fn spawn_local_carries_the_context() {
        let result = fresh_thread(|| {
            let rt = current_thread();
            let local = tokio::task::LocalSet::new();
            local.block_on(
                &rt,
                async {
                    VAR.set("main");
                    TXN.set(3);
                    let seen = Rc::new(RefCell::new(None)); // !Send: a local task
                    let child_seen = seen.clone();
                    let child = exec_context::tokio::spawn_local(async move {
                        *child_seen.borrow_mut() = Some((VAR.get(), TXN.get()));
                        VAR.set("local");
                    });
                    VAR.set("main changed");
                    child.await.expect("completes");
                    let seen = seen.borrow_mut().take();
                    (seen, VAR.get(), TXN.get())
                }
                .in_current_context(),
            )
        });
        assert_eq!(
            result,
            (Some((Some("main"), None)), Some("main changed"), Some(3))
        );
    }

    #[test]
    fn not_inherited_variable_is_absent_in_tokio_work() {
        let result = run(multi_thread(2), async {
            TXN.set(7);
            VAR.set("main");
            let both = || (VAR.get(), TXN.get());
            let spawned = exec_context::tokio::spawn(async move { both() })
                .await
                .expect("completes");
            let blocking = exec_context::tokio::spawn_blocking(both)
                .await
                .expect("completes");
            let carried = exec_context::tokio::carry(async move { both() }).await;
            let mut set = tokio::task::JoinSet::new();
            set.spawn(exec_context::tokio::carry(async move { both() }));
            let joined = set.join_next().await.expect("one task").expect("completes");
            (spawned, blocking, carried, joined, both())
        });
        let expected = (Some("main"), None);
        assert_eq!(
            result,
            (
                expected,
                expected,
                expected,
                expected,
                (Some("main"), Some(7))
            )
        );
    }
}
