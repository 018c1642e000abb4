//! Issue 12 §3: the current interpreter travels in the context state (a pinned context
//! variable), so every spawn path — including ones that know nothing of interpreters, such as
//! the tokio runtime hooks and `TaskContext` — keeps work started inside an interpreter in it.

use std::future::Future;
use std::pin::pin;
use std::task::{Context as PollContext, Poll, Waker};

use contextvars::{
    Context, ContextVar, ExecutionContext, copy_context, get_execution_context,
    run_with_execution_context,
};
use exec_context::interpreters::{self, Interpreter};
use exec_context::task_context::TaskContext;
use exec_context::thread::{Builder, Inheritance, spawn};
use exec_context::{FutureExt, Gen, IteratorExt, StreamExt, bind};

static VAR: ContextVar<&'static str> = ContextVar::new("carried.var");

fn current() -> u64 {
    interpreters::get_current().id()
}

/// Polls `future` once with a no-op waker.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut future = pin!(future);
    future
        .as_mut()
        .poll(&mut PollContext::from_waker(Waker::noop()))
}

#[test]
fn a_task_context_captured_inside_runs_in_the_interpreter_on_another_thread() {
    let interp = interpreters::create();
    let id = interp.id();
    let mut captured = None;
    let mut empty = None;
    interp
        .exec(|| {
            VAR.set("inside");
            captured = Some(TaskContext::capture());
            empty = Some(TaskContext::new(Inheritance::Empty));
        })
        .unwrap();
    let (mut captured, mut empty) = (captured.unwrap(), empty.unwrap());
    assert!(empty.context().is_empty());
    let seen = std::thread::spawn(move || {
        let step = |task: &mut TaskContext| {
            task.enter().unwrap();
            let seen = (current(), VAR.get());
            task.exit().unwrap();
            seen
        };
        (step(&mut captured), step(&mut empty), current())
    })
    .join()
    .unwrap();
    assert_eq!(seen, ((id, Some("inside")), (id, None), 0));
}

#[test]
fn threads_spawned_inside_stay_in_the_interpreter_under_every_policy() {
    let interp = interpreters::create();
    let id = interp.id();
    let seen = interp
        .call(|| {
            VAR.set("inside");
            let empty = spawn(Inheritance::Empty, || (current(), VAR.get()));
            let inherit = spawn(Inheritance::Inherit, || (current(), VAR.get()));
            let built = Builder::new(Inheritance::Empty)
                .spawn(|| (current(), get_execution_context().is_empty()))
                .unwrap();
            let job = std::thread::spawn(exec_context::thread::job(current));
            let empty = empty.join().unwrap();
            let inherit = inherit.join().unwrap();
            let built = built.join().unwrap();
            let job = job.join().unwrap();
            assert_eq!(empty, (current(), None));
            assert_eq!(inherit, (current(), Some("inside")));
            // The thread's context lists nothing: the interpreter's mark is not listed.
            assert_eq!(built, (current(), true));
            assert_eq!(job, current());
            current()
        })
        .unwrap();
    assert_eq!(seen, id);
    assert_eq!(current(), 0);
}

/// A thread given another interpreter's context runs in that interpreter, and counts for it:
/// that interpreter cannot be closed under the thread, while the spawner's can.
#[test]
fn a_thread_given_another_interpreters_context_counts_for_that_one() {
    let spawner = interpreters::create();
    let target = interpreters::create();
    let mut target_context = None;
    target
        .exec(|| target_context = Some(get_execution_context()))
        .unwrap();
    let target_context = target_context.expect("captured inside `target`");
    let release = std::sync::Arc::new(std::sync::Barrier::new(2));
    let gate = release.clone();
    let mut thread = None;
    spawner
        .exec(|| {
            thread = Some(spawn(Inheritance::Given(target_context), move || {
                gate.wait();
                current()
            }));
        })
        .unwrap();
    let thread = thread.expect("spawned inside `spawner`");
    assert!(
        matches!(
            target.close(),
            Err(exec_context::interpreters::InterpreterError::HasThreads { threads: 1, .. })
        ),
        "the thread runs in `target`, which must not close under it"
    );
    spawner.close().unwrap();
    release.wait();
    assert_eq!(thread.join().unwrap(), target.id());
    target.close().unwrap();
}

#[test]
fn a_bare_std_thread_starts_in_the_main_interpreter() {
    let interp = interpreters::create();
    let seen = interp
        .call(|| std::thread::spawn(current).join().unwrap())
        .unwrap();
    assert_eq!(seen, 0);
}

#[test]
fn generators_and_iterators_made_in_one_interpreter_report_it_wherever_resumed() {
    let a = interpreters::create();
    let b = interpreters::create();
    let mut generator = None;
    let mut iter = None;
    let mut stream = None;
    a.exec(|| {
        generator = Some(Gen::new(|co| async move {
            loop {
                co.yield_(current()).await;
            }
        }));
        iter = Some(std::iter::repeat_with(current).with_logical_context());
        stream = Some(futures_util_free_stream().with_logical_context());
    })
    .unwrap();
    let (mut generator, mut iter, mut stream) =
        (generator.unwrap(), iter.unwrap(), stream.unwrap());
    // In main.
    assert_eq!(generator.next(), Some(a.id()));
    assert_eq!(iter.next(), Some(a.id()));
    assert_eq!(poll_next(&mut stream), Some(a.id()));
    assert_eq!(current(), 0);
    // Inside another interpreter.
    let in_b = b
        .call(|| {
            let seen = (
                generator.next().unwrap(),
                iter.next().unwrap(),
                poll_next(&mut stream).unwrap(),
            );
            assert_eq!(current(), interpreters::get_current().id());
            (seen, current())
        })
        .unwrap();
    assert_eq!(in_b, ((a.id(), a.id(), a.id()), b.id()));
    // On another thread.
    let moved = std::thread::spawn(move || (generator.next(), iter.next()))
        .join()
        .unwrap();
    assert_eq!(moved, (Some(a.id()), Some(a.id())));
    // Nothing listed in their logical contexts.
    assert!(stream.logical_context().is_empty());
}

/// A stream yielding the current interpreter's ID forever, written by hand.
fn futures_util_free_stream() -> impl futures_core::Stream<Item = u64> {
    struct Ids;
    impl futures_core::Stream for Ids {
        type Item = u64;
        fn poll_next(self: std::pin::Pin<&mut Self>, _: &mut PollContext<'_>) -> Poll<Option<u64>> {
            Poll::Ready(Some(current()))
        }
    }
    Ids
}

fn poll_next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    match std::pin::Pin::new(stream).poll_next(&mut PollContext::from_waker(Waker::noop())) {
        Poll::Ready(item) => item,
        Poll::Pending => None,
    }
}

#[test]
fn tasks_and_callbacks_made_inside_run_in_the_interpreter_wherever_polled() {
    let interp = interpreters::create();
    let id = interp.id();
    let mut made = None;
    interp
        .exec(|| {
            let task = async { current() }.in_current_context();
            let given = async { current() }.with_context(Context::new());
            let callback = bind(current);
            made = Some((task, given, callback));
        })
        .unwrap();
    let (task, given, callback) = made.unwrap();
    let seen =
        std::thread::spawn(move || (poll_once(task), poll_once(given), callback(), current()))
            .join()
            .unwrap();
    assert_eq!(seen, (Poll::Ready(id), Poll::Ready(id), id, 0));
}

#[test]
fn an_explicit_context_decides_the_interpreter() {
    // A context carries its interpreter: work given a context made elsewhere runs there.
    let interp = interpreters::create();
    let id = interp.id();
    let main_snapshot = get_execution_context();
    let seen = interp
        .call(move || {
            let in_main = run_with_execution_context(&main_snapshot, current);
            let in_pinned = run_with_execution_context(&ExecutionContext::pinned(), current);
            let fresh = Context::new().run(current);
            let placeholder = Context::default().run(current);
            (in_main, in_pinned, fresh, placeholder)
        })
        .unwrap();
    assert_eq!(seen, (0, id, id, 0));
}

#[test]
fn nested_interpreters_and_what_their_contexts_list() {
    let a = interpreters::create();
    let b = interpreters::create();
    let b_inside = b.clone();
    let seen = a
        .call(move || {
            // Nothing of the mark is listed: a fresh interpreter's context is empty.
            assert!(copy_context().is_empty());
            assert_eq!(copy_context().len(), 0);
            assert!(get_execution_context().is_empty());
            let before = current();
            let inner = b_inside
                .call(|| {
                    let thread = spawn(Inheritance::Empty, current).join().unwrap();
                    (current(), thread)
                })
                .unwrap();
            (before, inner.0, inner.1, current())
        })
        .unwrap();
    assert_eq!(seen, (a.id(), b.id(), b.id(), a.id()));
    assert_eq!(current(), 0);
}

#[test]
fn a_generator_made_in_main_runs_in_the_interpreter_that_resumes_it() {
    // It has no interpreter of its own: it sees the resumer's context variables, and the
    // resumer's interpreter.
    let interp = interpreters::create();
    let mut generator = Gen::new(|co| async move {
        loop {
            co.yield_((current(), VAR.get())).await;
        }
    });
    VAR.set("main");
    assert_eq!(generator.next(), Some((0, Some("main"))));
    let inside = interp
        .call(|| {
            VAR.set("inside");
            let (id, var) = generator.next().unwrap();
            (id, var.map(String::from))
        })
        .unwrap();
    assert_eq!(inside, (interp.id(), Some("inside".to_string())));
}

#[test]
fn closing_the_interpreter_then_polling_its_task_reports_a_closed_interpreter() {
    let interp = interpreters::create();
    let id = interp.id();
    let mut task = None;
    interp
        .exec(|| task = Some(async { interpreters::get_current() }.in_current_context()))
        .unwrap();
    interp.close().unwrap();
    let Poll::Ready(seen): Poll<Interpreter> = poll_once(task.unwrap()) else {
        panic!("the task is ready at once");
    };
    assert_eq!(seen.id(), id);
    assert!(seen.is_closed());
}

#[cfg(feature = "rayon")]
#[test]
fn rayon_jobs_started_inside_run_in_the_interpreter() {
    let interp = interpreters::create();
    let id = interp.id();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let seen = interp
        .call(|| {
            let (send, receive) = std::sync::mpsc::channel();
            exec_context::rayon::spawn_in(&pool, move || send.send(current()).unwrap());
            let spawned = receive.recv().unwrap();
            let joined = exec_context::rayon::join(current, current);
            let installed = exec_context::rayon::install(&pool, current);
            (spawned, joined.0, joined.1, installed)
        })
        .unwrap();
    assert_eq!(seen, (id, id, id, id));
    assert_eq!(exec_context::rayon::install(&pool, current), 0);
}

#[cfg(all(feature = "tokio", tokio_unstable))]
mod runtime_hooks {
    use super::*;
    use tokio::runtime::Builder as RuntimeBuilder;

    /// A plain `tokio::spawn` inside an interpreter, on a runtime with the context hooks and
    /// no wrapper: the task runs on a worker thread, in the interpreter.
    #[test]
    fn a_plain_tokio_spawn_inside_an_interpreter_stays_in_it_on_both_flavours() {
        for workers in [None, Some(2)] {
            let mut builder = match workers {
                Some(threads) => {
                    let mut builder = RuntimeBuilder::new_multi_thread();
                    builder.worker_threads(threads);
                    builder
                }
                None => RuntimeBuilder::new_current_thread(),
            };
            exec_context::tokio::propagate(&mut builder);
            let runtime = builder.enable_all().build().unwrap();
            let interp = interpreters::create();
            let id = interp.id();
            let mut seen = Vec::new();
            interp
                .exec(|| {
                    VAR.set("inside");
                    seen = runtime.block_on(async {
                        let mut handles = Vec::new();
                        for _ in 0..8 {
                            handles.push(tokio::spawn(async {
                                tokio::task::yield_now().await;
                                let nested = tokio::spawn(async { current() }).await.unwrap();
                                (current(), nested, VAR.get())
                            }));
                        }
                        let mut seen = Vec::new();
                        for handle in handles {
                            seen.push(handle.await.unwrap());
                        }
                        seen
                    });
                })
                .unwrap();
            assert_eq!(seen.len(), 8);
            for task in seen {
                assert_eq!(task, (id, id, Some("inside")), "{workers:?}");
            }
            // Outside, a spawn is in the main interpreter again.
            let outside = runtime.block_on(async { tokio::spawn(async { current() }).await });
            assert_eq!(outside.unwrap(), 0);
        }
    }
}
