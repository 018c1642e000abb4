//! The executor-author API (`TaskContext`), by hand and on a second real executor
//! (`async-executor`, feature `async-executor`), with the scenarios of the tokio hooks.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use contextvars::{Context, ContextVar, ExecutionContext, get_execution_context};
use exec_context::task_context::{TaskContext, TaskContextError};
use exec_context::thread::Inheritance;

static REQUEST: ContextVar<u64> = ContextVar::new("task_context.request");
static PRIVATE: ContextVar<u64> = ContextVar::new("task_context.private").not_inherited();

struct Counter(Arc<AtomicUsize>);

impl Drop for Counter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

static HELD: ContextVar<Counter> = ContextVar::new("task_context.held");

/// Runs `f` on a new thread, which starts with an empty context.
fn on_fresh_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[test]
fn capture_honours_not_inherited_and_the_policies() {
    on_fresh_thread(|| {
        REQUEST.set(1);
        PRIVATE.set(2);
        let captured = TaskContext::capture();
        assert_eq!(captured.context().get(&REQUEST), Some(1));
        assert_eq!(captured.context().get(&PRIVATE), None);
        assert!(TaskContext::new(Inheritance::Empty).context().is_empty());
        let given = TaskContext::new(Inheritance::Given(ExecutionContext::new()));
        assert!(given.context().is_empty());
    });
}

#[test]
fn enter_and_exit_misuse_is_a_typed_error_that_changes_nothing() {
    on_fresh_thread(|| {
        REQUEST.set(1);
        let mut task = TaskContext::new(Inheritance::Empty);
        assert_eq!(task.exit(), Err(TaskContextError::NotEntered));
        task.enter().unwrap();
        assert_eq!(task.enter(), Err(TaskContextError::AlreadyEntered));
        REQUEST.set(2);
        // Inside a scope that began after `enter`: refused, still entered.
        let inner = Context::new().run(|| task.exit());
        assert_eq!(inner, Err(TaskContextError::NotCurrent));
        assert!(task.is_entered());
        assert_eq!(REQUEST.get(), Some(2));
        task.exit().unwrap();
        assert_eq!(REQUEST.get(), Some(1));
        assert_eq!(task.context().get(&REQUEST), Some(2));
    });
}

#[test]
fn a_task_context_moves_between_threads_and_is_released_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut task = TaskContext::new(Inheritance::Empty);
    for step in 0..4u64 {
        let drops = drops.clone();
        task = on_fresh_thread(move || {
            REQUEST.set(1000); // the thread's own value: never seen by the task
            task.enter().unwrap();
            if step == 0 {
                HELD.set(Counter(drops));
            }
            assert_eq!(REQUEST.get(), step.checked_sub(1));
            REQUEST.set(step);
            task.exit().unwrap();
            assert_eq!(REQUEST.get(), Some(1000));
            task
        });
    }
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(task);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn a_task_context_dropped_while_entered_is_exited_first() {
    on_fresh_thread(|| {
        REQUEST.set(1);
        let mut task = TaskContext::new(Inheritance::Empty);
        task.enter().unwrap();
        REQUEST.set(2);
        drop(task);
        assert_eq!(REQUEST.get(), Some(1));
        assert_eq!(get_execution_context().depth(), 1);
    });
}

#[test]
fn a_step_that_panics_leaves_the_thread_intact_when_the_executor_exits_in_a_guard() {
    on_fresh_thread(|| {
        REQUEST.set(1);
        let mut task = TaskContext::new(Inheritance::Empty);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            struct Exit<'a>(&'a mut TaskContext);
            impl Drop for Exit<'_> {
                fn drop(&mut self) {
                    self.0.exit().unwrap();
                }
            }
            task.enter().unwrap();
            let _exit = Exit(&mut task);
            REQUEST.set(5);
            panic!("the step panics");
        }));
        assert!(outcome.is_err());
        assert_eq!(REQUEST.get(), Some(1));
        assert_eq!(task.context().get(&REQUEST), Some(5));
    });
}

/// A step that panicked between an `attach` of its own and the `detach`: `exit` refuses (the
/// attach is on top) and changes nothing, `end` ends both, and the thread's context is its
/// own again, for the next task too.
#[test]
fn a_step_that_leaves_an_attach_behind_ends_with_it() {
    use contextvars::attach;
    on_fresh_thread(|| {
        REQUEST.set(1);
        let mut task = TaskContext::new(Inheritance::Empty);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            task.enter().unwrap();
            REQUEST.set(5);
            let _left = attach(Context::new()).unwrap();
            REQUEST.set(99);
            panic!("the step panics between attach and detach");
        }));
        assert!(outcome.is_err());
        assert_eq!(REQUEST.get(), Some(99), "the attach left behind is current");
        assert_eq!(task.exit(), Err(TaskContextError::NotCurrent));
        assert!(task.is_entered(), "a refused exit changes nothing");
        task.end().unwrap();
        assert!(!task.is_entered());
        assert_eq!(REQUEST.get(), Some(1));
        assert_eq!(get_execution_context().depth(), 1);
        // The task goes on in the context that was current when its step ended.
        assert_eq!(task.context().get(&REQUEST), Some(99));
        assert_eq!(task.end(), Err(TaskContextError::NotEntered));
        let mut next = TaskContext::capture();
        next.enter().unwrap();
        assert_eq!(REQUEST.get(), Some(1));
        next.exit().unwrap();
        // Inside a run opened after `enter`, `end` refuses like `exit`.
        task.enter().unwrap();
        let inner = Context::new().run(|| task.end());
        assert_eq!(inner, Err(TaskContextError::NotCurrent));
        task.end().unwrap();
        assert_eq!(REQUEST.get(), Some(1));
    });
}

/// An `end` whose discarding of the step's own context panics (a `Drop` there panics) has
/// still ended the entry: the task context is not stuck entered, and enters again.
#[test]
fn an_end_that_panics_in_a_drop_leaves_the_task_context_usable() {
    use std::sync::atomic::AtomicBool;

    use contextvars::attach;
    static ARMED: AtomicBool = AtomicBool::new(false);
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            if ARMED.swap(false, Ordering::SeqCst) {
                panic!("Bomb dropped");
            }
        }
    }
    static BOOM: ContextVar<Bomb> = ContextVar::new("task_context.boom");
    on_fresh_thread(|| {
        REQUEST.set(1);
        let mut task = TaskContext::new(Inheritance::Empty);
        task.enter().unwrap();
        BOOM.set(Bomb);
        ARMED.store(true, Ordering::SeqCst);
        // The step leaves an attach behind: `end` discards the step's own context.
        let _left = attach(Context::new()).unwrap();
        REQUEST.set(99);
        let ended = catch_unwind(AssertUnwindSafe(|| task.end()));
        assert!(ended.is_err(), "the Drop's panic comes out");
        assert!(!ARMED.load(Ordering::SeqCst), "the Bomb was dropped");
        assert!(!task.is_entered(), "stuck entered");
        assert_eq!(REQUEST.get(), Some(1), "the thread's own context");
        assert_eq!(get_execution_context().depth(), 1);
        task.enter().unwrap();
        REQUEST.set(2);
        task.exit().unwrap();
        assert_eq!(REQUEST.get(), Some(1));
        assert_eq!(task.context().get(&REQUEST), Some(2));
    });
}

/// A task context dropped while its step's leftover attach is on top ends both.
#[test]
fn a_task_context_dropped_under_an_attach_left_behind_ends_both() {
    use contextvars::attach;
    on_fresh_thread(|| {
        REQUEST.set(1);
        let mut task = TaskContext::new(Inheritance::Empty);
        task.enter().unwrap();
        let _left = attach(Context::new()).unwrap();
        REQUEST.set(99);
        drop(task);
        assert_eq!(REQUEST.get(), Some(1));
        assert_eq!(get_execution_context().depth(), 1);
    });
}

#[cfg(feature = "async-executor")]
mod on_async_executor {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use contextvars::{ContextVar, get_execution_context};
    use exec_context::async_executor::Executor;
    use futures_lite::future::{block_on, yield_now};

    use super::{Counter, HELD, REQUEST};

    /// Runs `executor` on `threads` threads until `main` completes.
    fn run_on_threads<T: Send>(
        executor: &Executor<'_>,
        threads: usize,
        main: impl Future<Output = T> + Send,
    ) -> T {
        let stopped = Arc::new(AtomicBool::new(false));
        std::thread::scope(|scope| {
            let mut workers = Vec::new();
            for _ in 0..threads {
                let stopped = stopped.clone();
                workers.push(scope.spawn(move || {
                    block_on(executor.run(async {
                        while !stopped.load(Ordering::SeqCst) {
                            yield_now().await;
                        }
                    }));
                    // Each worker thread's own context after the run: empty.
                    get_execution_context().is_empty()
                }));
            }
            let out = block_on(executor.run(main));
            stopped.store(true, Ordering::SeqCst);
            for worker in workers {
                assert!(worker.join().unwrap(), "a task leaked into a worker thread");
            }
            out
        })
    }

    #[test]
    fn tasks_see_the_spawners_values_and_keep_their_own_across_threads() {
        static PARENT: ContextVar<u64> = ContextVar::new("async_executor.parent");
        const TASKS: u64 = 2_000;
        let executor = Executor::new();
        let mismatches = run_on_threads(&executor, 3, async {
            PARENT.set(7);
            let tasks: Vec<_> = (0..TASKS)
                .map(|id| {
                    executor.spawn(async move {
                        let mut mismatches = usize::from(PARENT.get() != Some(7));
                        mismatches += usize::from(REQUEST.get().is_some());
                        REQUEST.set(id);
                        for _ in 0..20 {
                            yield_now().await;
                            mismatches += usize::from(REQUEST.get() != Some(id));
                        }
                        mismatches
                    })
                })
                .collect();
            let mut mismatches = 0;
            for task in tasks {
                mismatches += task.await;
            }
            mismatches
        });
        assert_eq!(mismatches, 0);
    }

    /// A task cancelled before it finished has its future dropped inside its context: what
    /// its `Drop` reads is the task's, what it sets stays there.
    #[test]
    fn a_cancelled_task_is_dropped_inside_its_context() {
        static SEEN: std::sync::Mutex<Vec<Option<u64>>> = std::sync::Mutex::new(Vec::new());
        struct Recorder;
        impl Drop for Recorder {
            fn drop(&mut self) {
                SEEN.lock().unwrap().push(REQUEST.get());
                REQUEST.set(666);
            }
        }
        super::on_fresh_thread(|| {
            REQUEST.set(1);
            let executor = Executor::new();
            let task = executor.spawn(async {
                let _recorder = Recorder;
                REQUEST.set(5);
                std::future::pending::<()>().await;
            });
            assert!(executor.try_tick(), "the task's first poll");
            // Cancelled: the executor drops the future at its next tick.
            drop(task);
            while executor.try_tick() {}
            assert_eq!(*SEEN.lock().unwrap(), [Some(5)]);
            assert_eq!(REQUEST.get(), Some(1));
        });
    }

    /// A step that leaves an attach behind, over a task context holding a value whose `Drop`
    /// panics: ending the step discards the task's context, and the panic comes out of the
    /// poll. async-task then drops the future: in what is left of the task's context (an
    /// empty one), not in the worker thread's (the task context used to be left entered, so
    /// the drop could not enter it).
    #[test]
    fn a_task_whose_step_end_panics_is_dropped_outside_the_workers_context() {
        use std::panic::{AssertUnwindSafe, catch_unwind};

        use contextvars::Context;

        static SEEN: std::sync::Mutex<Vec<Option<u64>>> = std::sync::Mutex::new(Vec::new());
        static ARMED: AtomicBool = AtomicBool::new(false);
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                if ARMED.swap(false, Ordering::SeqCst) {
                    panic!("Bomb dropped");
                }
            }
        }
        static BOOM: ContextVar<Bomb> = ContextVar::new("async_executor.boom");
        struct Recorder;
        impl Drop for Recorder {
            fn drop(&mut self) {
                SEEN.lock().unwrap().push(REQUEST.get());
                REQUEST.set(666);
            }
        }
        super::on_fresh_thread(|| {
            REQUEST.set(1);
            let executor = Executor::new();
            let task = executor.spawn(async {
                let _recorder = Recorder;
                REQUEST.set(5);
                BOOM.set(Bomb);
                ARMED.store(true, Ordering::SeqCst);
                let _left = contextvars::attach(Context::new()).unwrap();
                std::future::pending::<()>().await;
            });
            while executor.try_tick() {}
            assert!(!ARMED.load(Ordering::SeqCst), "the Bomb was dropped");
            assert_eq!(*SEEN.lock().unwrap(), [None]);
            assert_eq!(REQUEST.get(), Some(1));
            // The task's panic reaches whoever awaits it.
            assert!(catch_unwind(AssertUnwindSafe(|| block_on(task))).is_err());
        });
    }

    #[test]
    fn nested_spawns_inherit_from_the_spawning_task() {
        let executor = Arc::new(Executor::new());
        let inner = executor.clone();
        let seen = block_on(executor.run(async move {
            REQUEST.set(1);
            let spawner = inner.clone();
            let nested = inner.spawn(async move {
                REQUEST.set(2);
                yield_now().await;
                spawner.spawn(async { REQUEST.get() }).await
            });
            let sibling = inner.spawn(async { REQUEST.get() });
            (nested.await, sibling.await)
        }));
        assert_eq!(seen, (Some(2), Some(1)));
    }

    #[test]
    fn a_panicking_task_leaves_the_thread_intact() {
        let executor = Executor::new();
        REQUEST.set(3);
        let task = executor.spawn(async {
            REQUEST.set(13);
            yield_now().await;
            panic!("task panics");
        });
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            block_on(executor.run(task))
        }));
        assert!(panicked.is_err());
        assert_eq!(REQUEST.get(), Some(3));
        let next = block_on(executor.run(executor.spawn(async { REQUEST.get() })));
        assert_eq!(next, Some(3));
    }

    /// A task that panicked between an `attach` of its own and the `detach`: the executor's
    /// code and the next task see nothing of it.
    #[test]
    fn a_task_that_panics_between_attach_and_detach_leaves_nothing_on_the_thread() {
        let executor = Executor::new();
        REQUEST.set(3);
        let task = executor.spawn(async {
            let _id = contextvars::attach(contextvars::Context::new()).unwrap();
            REQUEST.set(99);
            panic!("between attach and detach");
        });
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            block_on(executor.run(task))
        }));
        assert!(panicked.is_err());
        assert_eq!(REQUEST.get(), Some(3));
        assert_eq!(get_execution_context().depth(), 1);
        let next = block_on(executor.run(executor.spawn(async { REQUEST.get() })));
        assert_eq!(next, Some(3));
    }

    /// A step that returns with an attach of its own still on top (its `detach` comes in a
    /// later step, or never): the step ends with it, so the executor's code between steps
    /// sees nothing of it, and the task goes on in the context its step ended in.
    #[test]
    fn a_step_that_returns_with_an_attach_on_top_ends_it() {
        let executor = Executor::new();
        REQUEST.set(3);
        let task = executor.spawn(async {
            let id = contextvars::attach(contextvars::Context::new()).unwrap();
            REQUEST.set(99);
            yield_now().await;
            (REQUEST.get(), contextvars::detach(id).is_err())
        });
        assert!(executor.try_tick());
        assert_eq!(REQUEST.get(), Some(3));
        assert_eq!(get_execution_context().depth(), 1);
        assert_eq!(block_on(executor.run(task)), (Some(99), true));
        assert_eq!(REQUEST.get(), Some(3));
    }

    #[test]
    fn cancelled_and_unfinished_tasks_release_their_contexts_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let executor = Executor::new();
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let drops = drops.clone();
            tasks.push(executor.spawn(async move {
                HELD.set(Counter(drops));
                std::future::pending::<()>().await;
            }));
        }
        while executor.try_tick() {}
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        for task in tasks.drain(..3) {
            block_on(executor.run(task.cancel()));
        }
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        drop(tasks); // dropping a `Task` cancels it too
        while executor.try_tick() {}
        drop(executor);
        assert_eq!(drops.load(Ordering::SeqCst), 6);
    }
}
