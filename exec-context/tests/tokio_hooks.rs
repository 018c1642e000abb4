//! Runtime-level propagation (`exec_context::tokio::propagate`, needs
//! `RUSTFLAGS="--cfg tokio_unstable"`): plain tokio spawns on real runtimes.
#![cfg(all(feature = "tokio", tokio_unstable))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contextvars::{ContextVar, get_execution_context};
use tokio::runtime::{Builder, Runtime};
use tokio::task::{JoinSet, yield_now};

/// Code that never names this workspace: it only uses tokio.
mod library {
    /// Runs `read` in a task spawned with plain `tokio::spawn`.
    pub async fn read_in_spawned_task<T: Send + 'static>(
        read: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        tokio::spawn(async move { read() }).await.unwrap()
    }
}

static REQUEST: ContextVar<u64> = ContextVar::new("hooks.request");

/// Counts worker threads that stopped with a non-empty context of their own.
#[derive(Default)]
struct Workers {
    stopped: AtomicUsize,
    dirty: AtomicUsize,
}

fn runtime(multi_thread: Option<usize>) -> (Runtime, Arc<Workers>) {
    let workers = Arc::new(Workers::default());
    let mut builder = match multi_thread {
        Some(threads) => {
            let mut builder = Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        None => Builder::new_current_thread(),
    };
    let seen = workers.clone();
    builder.enable_all().on_thread_stop(move || {
        seen.stopped.fetch_add(1, Ordering::SeqCst);
        let ec = get_execution_context();
        // Pinned variables too, which `is_empty` does not count.
        if !ec.is_empty() || ec.pinned_vars().next().is_some() {
            seen.dirty.fetch_add(1, Ordering::SeqCst);
        }
    });
    exec_context::tokio::propagate(&mut builder);
    (builder.build().unwrap(), workers)
}

#[test]
fn a_plain_spawn_in_a_library_sees_the_callers_values_on_both_runtime_flavours() {
    for flavour in [None, Some(2)] {
        let (runtime, _) = runtime(flavour);
        let seen = runtime.block_on(async {
            REQUEST.set(41);
            library::read_in_spawned_task(|| REQUEST.get()).await
        });
        assert_eq!(seen, Some(41), "flavour {flavour:?}");
    }
}

#[test]
fn ten_thousand_tasks_on_four_workers_keep_their_own_values_and_leave_workers_clean() {
    static PARENT: ContextVar<u64> = ContextVar::new("hooks.parent");
    const TASKS: u64 = 10_000;
    const YIELDS: usize = 20;
    let (runtime, workers) = runtime(Some(4));
    let mismatches = runtime.block_on(async {
        PARENT.set(7);
        let mut handles = Vec::new();
        for id in 0..TASKS {
            handles.push(tokio::spawn(async move {
                let mut mismatches = usize::from(PARENT.get() != Some(7));
                mismatches += usize::from(REQUEST.get().is_some());
                REQUEST.set(id);
                for _ in 0..YIELDS {
                    yield_now().await;
                    mismatches += usize::from(REQUEST.get() != Some(id));
                }
                mismatches
            }));
        }
        let mut mismatches = 0;
        for handle in handles {
            mismatches += handle.await.unwrap();
        }
        mismatches
    });
    assert_eq!(mismatches, 0);
    drop(runtime);
    assert!(workers.stopped.load(Ordering::SeqCst) >= 4);
    assert_eq!(
        workers.dirty.load(Ordering::SeqCst),
        0,
        "a task leaked into a worker"
    );
}

#[test]
fn nested_spawns_inherit_from_the_spawning_task() {
    let (runtime, _) = runtime(Some(2));
    let (nested, sibling) = runtime.block_on(async {
        REQUEST.set(1);
        let nested = tokio::spawn(async {
            REQUEST.set(2);
            yield_now().await;
            tokio::spawn(async {
                yield_now().await;
                REQUEST.get()
            })
            .await
            .unwrap()
        });
        let sibling = tokio::spawn(async { REQUEST.get() });
        (nested.await.unwrap(), sibling.await.unwrap())
    });
    assert_eq!((nested, sibling), (Some(2), Some(1)));
}

#[test]
fn join_set_tasks_are_isolated_from_their_siblings() {
    let (runtime, _) = runtime(Some(2));
    let mismatches = runtime.block_on(async {
        REQUEST.set(1000);
        let mut set = JoinSet::new();
        for id in 0..64 {
            set.spawn(async move {
                let inherited = REQUEST.get() == Some(1000);
                REQUEST.set(id);
                for _ in 0..5 {
                    yield_now().await;
                }
                usize::from(!inherited) + usize::from(REQUEST.get() != Some(id))
            });
        }
        set.join_all().await.into_iter().sum::<usize>()
    });
    assert_eq!(mismatches, 0);
}

#[test]
fn handle_spawn_from_a_thread_outside_the_runtime_captures_that_thread() {
    let (runtime, _) = runtime(Some(2));
    let handle = runtime.handle().clone();
    let task = std::thread::spawn(move || {
        REQUEST.set(77);
        handle.spawn(async { REQUEST.get() })
    })
    .join()
    .unwrap();
    assert_eq!(runtime.block_on(task).unwrap(), Some(77));
}

#[test]
fn timeout_inside_a_task_runs_in_the_tasks_context() {
    let (runtime, _) = runtime(Some(2));
    let seen = runtime.block_on(async {
        REQUEST.set(5);
        tokio::spawn(async {
            REQUEST.set(6);
            tokio::time::timeout(Duration::from_secs(10), async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                REQUEST.get()
            })
            .await
            .unwrap()
        })
        .await
        .unwrap()
    });
    assert_eq!(seen, Some(6));
}

#[test]
fn a_panicking_task_leaves_its_workers_context_intact() {
    for flavour in [None, Some(1)] {
        let (runtime, workers) = runtime(flavour);
        let after = runtime.block_on(async {
            let panicked = tokio::spawn(async {
                REQUEST.set(13);
                yield_now().await;
                panic!("task panics with a value set");
            })
            .await;
            assert!(panicked.unwrap_err().is_panic());
            // The next task on the same worker (the only one) starts clean.
            let next = tokio::spawn(async { REQUEST.get() }).await.unwrap();
            (next, REQUEST.get())
        });
        assert_eq!(after, (None, None), "flavour {flavour:?}");
        drop(runtime);
        assert_eq!(workers.dirty.load(Ordering::SeqCst), 0);
    }
}

/// Counts its drops.
struct Counter(Arc<AtomicUsize>);

impl Drop for Counter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

static HELD: ContextVar<Counter> = ContextVar::new("hooks.held");

#[test]
fn aborted_tasks_and_tasks_dropped_at_shutdown_release_their_contexts_once() {
    for flavour in [None, Some(2)] {
        let drops = Arc::new(AtomicUsize::new(0));
        let (runtime, workers) = runtime(flavour);
        let started = Arc::new(tokio::sync::Barrier::new(9));
        let aborted = runtime.block_on(async {
            let mut handles = Vec::new();
            for _ in 0..8 {
                let drops = drops.clone();
                let started = started.clone();
                handles.push(tokio::spawn(async move {
                    HELD.set(Counter(drops));
                    started.wait().await;
                    std::future::pending::<()>().await;
                }));
            }
            started.wait().await;
            // Abort half of them; the rest are still pending when the runtime shuts down.
            for handle in handles.drain(..4) {
                handle.abort();
                assert!(handle.await.unwrap_err().is_cancelled());
            }
            // tokio wakes the `JoinHandle` just before it runs the terminate hook, so on a
            // multi-thread runtime the last release may still be under way: wait for it.
            for _ in 0..1000 {
                if drops.load(Ordering::SeqCst) >= 4 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            drops.load(Ordering::SeqCst)
        });
        assert_eq!(
            aborted, 4,
            "each aborted task's context released once ({flavour:?})"
        );
        drop(runtime);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            8,
            "the rest at shutdown, once each"
        );
        assert_eq!(workers.dirty.load(Ordering::SeqCst), 0);
    }
}

#[test]
fn a_value_captured_at_spawn_is_dropped_once_after_every_task_ended() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (runtime, _) = runtime(Some(2));
    runtime.block_on(async {
        let token = HELD.set(Counter(drops.clone()));
        let mut set = JoinSet::new();
        for _ in 0..100 {
            set.spawn(async { HELD.with(|held| held.is_some()) });
        }
        assert!(set.join_all().await.into_iter().all(|seen| seen));
        HELD.reset(token).unwrap();
        // tokio wakes a task's `JoinHandle` just before it runs the terminate hook, so on a
        // multi-thread runtime the last release may still be under way: wait for it.
        for _ in 0..1000 {
            if drops.load(Ordering::SeqCst) >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop(runtime);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn chained_hooks_run_and_see_the_tasks_context() {
    use exec_context::tokio::{TaskHooks, propagate_with};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let spawned = Arc::new(AtomicUsize::new(0));
    let terminated = Arc::new(AtomicUsize::new(0));
    let mut builder = Builder::new_current_thread();
    let (sink, spawns, ends) = (seen.clone(), spawned.clone(), terminated.clone());
    propagate_with(
        &mut builder,
        TaskHooks::new()
            .on_task_spawn(move |_| {
                spawns.fetch_add(1, Ordering::SeqCst);
            })
            .on_before_task_poll(move |_| sink.lock().unwrap().push(REQUEST.get()))
            .on_task_terminate(move |_| {
                ends.fetch_add(1, Ordering::SeqCst);
            }),
    );
    let runtime = builder.build().unwrap();
    runtime.block_on(async {
        REQUEST.set(9);
        tokio::spawn(async { yield_now().await }).await.unwrap();
    });
    assert_eq!(spawned.load(Ordering::SeqCst), 1);
    assert_eq!(terminated.load(Ordering::SeqCst), 1);
    assert_eq!(*seen.lock().unwrap(), [Some(9), Some(9)]);
}

/// A server that spawns a task per connection (with plain `tokio::spawn`), as servers do.
mod server {
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use http_body_util::{BodyExt, Empty, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpStream};

    /// Serves `handler` on 127.0.0.1 (an ephemeral port) until the runtime ends.
    pub async fn serve<F, Fut>(handler: F) -> SocketAddr
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = String> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let reply = handler(request);
                        async move {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(reply.await))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        address
    }

    /// One GET on a connection of its own; the response body.
    pub async fn get(address: SocketAddr, path: &str) -> String {
        let stream = TcpStream::connect(address).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::get(path).body(Empty::<Bytes>::new()).unwrap();
        let response = sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }
}

#[test]
fn a_real_server_sees_the_value_set_before_serving_and_keeps_requests_apart() {
    static SERVICE: ContextVar<&str> = ContextVar::new("hooks.service");
    let (runtime, workers) = runtime(Some(4));
    let replies = runtime.block_on(async {
        SERVICE.set("orders");
        let address = server::serve(
            |request: hyper::Request<hyper::body::Incoming>| async move {
                let id: u64 = request.uri().path()[1..].parse().unwrap();
                let before = REQUEST.get();
                REQUEST.set(id);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                yield_now().await;
                format!("{:?} {:?} {:?}", SERVICE.get(), before, REQUEST.get())
            },
        )
        .await;
        let mut clients = JoinSet::new();
        for id in 0..100u64 {
            clients.spawn(async move { (id, server::get(address, &format!("/{id}")).await) });
        }
        tokio::time::timeout(Duration::from_secs(60), clients.join_all())
            .await
            .expect("100 requests within a minute")
    });
    assert_eq!(replies.len(), 100);
    for (id, reply) in replies {
        assert_eq!(reply, format!("Some(\"orders\") None Some({id})"));
    }
    drop(runtime);
    assert_eq!(workers.dirty.load(Ordering::SeqCst), 0);
}

#[test]
fn a_spawn_onto_a_shut_down_runtime_captures_nothing_that_could_leak() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (runtime, _) = runtime(Some(1));
    let handle = runtime.handle().clone();
    // Waits for the workers, which close the task list on their way out.
    runtime.shutdown_timeout(Duration::from_secs(30));
    std::thread::spawn(move || {
        let token = HELD.set(Counter(drops.clone()));
        // tokio terminates the task at once, before its spawn hook runs.
        let task = handle.spawn(async { HELD.with(|held| held.is_some()) });
        // The reset consumes the token, and the value with it.
        HELD.reset(token).unwrap();
        // The handle (and so the runtime's hooks) is still alive: nothing holds the value.
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(task);
        drop(handle);
    })
    .join()
    .unwrap();
}

#[test]
fn tasks_that_use_their_context_only_in_some_polls_keep_it_across_workers() {
    // A poll enters the task's context only when it uses it: polls that skip it must not
    // lose it, whichever worker runs the next one.
    static SKIPPED: ContextVar<u64> = ContextVar::new("hooks.skipped");
    let (runtime, workers) = runtime(Some(4));
    let mismatches = runtime.block_on(async {
        SKIPPED.set(1);
        let mut set = JoinSet::new();
        for id in 0..500u64 {
            set.spawn(async move {
                let mut expected = Some(1);
                let mut mismatches = 0;
                for round in 0..12u64 {
                    yield_now().await;
                    if (round + id) % 3 == 0 {
                        mismatches += usize::from(SKIPPED.get() != expected);
                        let next = 1000 * id + round;
                        SKIPPED.set(next);
                        expected = Some(next);
                    }
                    // The other polls never touch the context.
                }
                mismatches
            });
        }
        let mismatches = set.join_all().await.into_iter().sum::<usize>();
        (mismatches, SKIPPED.get())
    });
    assert_eq!(mismatches, (0, Some(1)));
    drop(runtime);
    assert_eq!(workers.dirty.load(Ordering::SeqCst), 0);
}

#[test]
fn more_live_tasks_than_the_direct_table_holds_each_keep_their_own_context() {
    // Task ids map onto a table of 4,096 slots; with more tasks alive at once, some share a
    // slot's position and live in the overflow slab instead. Each must keep its own values,
    // and every captured value must be released exactly once, used or not.
    const TASKS: u64 = 4_096 + 904;
    let drops = Arc::new(AtomicUsize::new(0));
    let (runtime, workers) = runtime(None);
    let mismatches = runtime.block_on(async {
        let token = HELD.set(Counter(drops.clone()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut set = JoinSet::new();
        for id in 0..TASKS {
            let gate = gate.clone();
            set.spawn(async move {
                if id % 2 == 0 {
                    REQUEST.set(id);
                }
                // Every task is alive here at once.
                let _permit = gate.acquire().await.unwrap();
                let expected = (id % 2 == 0).then_some(id);
                usize::from(REQUEST.get() != expected)
                    + usize::from(HELD.with(|held| held.is_none()))
            });
        }
        yield_now().await;
        gate.add_permits(TASKS as usize);
        let mismatches = set.join_all().await.into_iter().sum::<usize>();
        HELD.reset(token).unwrap();
        mismatches
    });
    assert_eq!(mismatches, 0);
    drop(runtime);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(workers.dirty.load(Ordering::SeqCst), 0);
}

#[test]
fn aborted_tasks_that_never_used_their_context_release_it_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (runtime, _) = runtime(Some(2));
    runtime.block_on(async {
        {
            let _held = HELD.set(Counter(drops.clone()));
            let mut handles = Vec::new();
            for _ in 0..50 {
                // Captures the spawner's `HELD`, never reads it.
                handles.push(tokio::spawn(std::future::pending::<()>()));
            }
            yield_now().await;
            for handle in handles {
                handle.abort();
                assert!(handle.await.unwrap_err().is_cancelled());
            }
        }
        HELD.delete().unwrap();
        for _ in 0..1000 {
            if drops.load(Ordering::SeqCst) >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    drop(runtime);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

/// Counts its drops, then panics.
struct Boom(Arc<AtomicUsize>);

impl Drop for Boom {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("a value that panics when dropped");
    }
}

static BOOM: ContextVar<Boom> = ContextVar::new("hooks.boom");

/// A task's context is released in tokio's after-poll hook when the task ends there, and
/// tokio does not guard that hook: a value whose `Drop` panics would abort a debug build's
/// worker (multi-thread) or come out of `block_on` (current-thread).
#[test]
fn a_value_that_panics_when_its_task_ends_stays_inside_the_hook() {
    for flavour in [None, Some(1)] {
        let drops = Arc::new(AtomicUsize::new(0));
        let (runtime, workers) = runtime(flavour);
        let (result, next) = runtime.block_on(async {
            let task_drops = drops.clone();
            let result = tokio::spawn(async move {
                BOOM.set(Boom(task_drops));
                yield_now().await;
                7
            })
            .await;
            let next = tokio::spawn(async { REQUEST.get() }).await;
            (result.ok(), next.ok())
        });
        assert_eq!((result, next), (Some(7), Some(None)), "{flavour:?}");
        assert_eq!(drops.load(Ordering::SeqCst), 1, "{flavour:?}");
        drop(runtime);
        assert_eq!(workers.dirty.load(Ordering::SeqCst), 0);
    }
}

thread_local! {
    /// A current-thread runtime held by a thread-local: dropped during thread teardown.
    static HELD_RUNTIME: Runtime = {
        let mut builder = Builder::new_current_thread();
        exec_context::tokio::propagate(&mut builder);
        builder.build().unwrap()
    };
}

/// tokio supports dropping a runtime in a thread-local's destructor; its tasks are then
/// terminated after this thread's record of polls may already be gone.
#[test]
fn a_runtime_dropped_at_thread_teardown_releases_its_tasks_contexts() {
    let drops = Arc::new(AtomicUsize::new(0));
    let task_drops = drops.clone();
    std::thread::spawn(move || {
        HELD_RUNTIME.with(|runtime| {
            runtime.spawn(async move {
                HELD.set(Counter(task_drops));
                std::future::pending::<()>().await;
            });
            runtime.block_on(yield_now());
        });
    })
    .join()
    .unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

const BEFORE: usize = 1;
const AFTER: usize = 2;

/// A current-thread runtime whose before- and after-poll hooks of yours panic once when
/// `panic_in` names them (then it is reset).
fn runtime_with_panicking_hooks(panic_in: &'static AtomicUsize) -> Runtime {
    use exec_context::tokio::{TaskHooks, propagate_with};
    let panic_once = move |hook| {
        if panic_in
            .compare_exchange(hook, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            panic!("your hook panics");
        }
    };
    let mut builder = Builder::new_current_thread();
    propagate_with(
        &mut builder,
        TaskHooks::new()
            .on_before_task_poll(move |_| panic_once(BEFORE))
            .on_after_task_poll(move |_| panic_once(AFTER)),
    );
    builder.build().unwrap()
}

/// Runs `test` on a thread of its own, failing (instead of hanging) after a minute.
fn within_a_minute<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(test());
    });
    result
        .recv_timeout(Duration::from_secs(60))
        .expect("finished within a minute")
}

/// An after-poll hook of yours that panics still leaves the task's context where its next
/// poll finds it (ours runs as the panic unwinds).
#[test]
fn a_chained_after_poll_hook_that_panics_leaves_the_tasks_context_in_place() {
    static PANIC_IN: AtomicUsize = AtomicUsize::new(0);
    let (panicked, seen, outside) = within_a_minute(|| {
        let runtime = runtime_with_panicking_hooks(&PANIC_IN);
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let handle = {
            let _entered = runtime.enter();
            REQUEST.set(21);
            let handle = tokio::spawn(async {
                let before = REQUEST.get();
                REQUEST.set(22);
                wait.await.unwrap();
                (before, REQUEST.get())
            });
            // The thread's own context holds nothing again; the task keeps what it captured.
            REQUEST.delete().unwrap();
            handle
        };
        // The task's first poll ends with the panic, which leaves `block_on`.
        PANIC_IN.store(AFTER, Ordering::SeqCst);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(async {
                for _ in 0..3 {
                    yield_now().await;
                }
            })
        }));
        go.send(()).unwrap();
        let seen = runtime.block_on(handle).unwrap();
        (panicked.is_err(), seen, REQUEST.get())
    });
    assert!(panicked);
    assert_eq!(seen, (Some(21), Some(22)));
    assert_eq!(outside, None);
}

/// A before-poll hook of yours that panics (tokio then skips the poll) leaves nothing of the
/// task's on the thread: the code that runs next there does not find the task's context.
#[test]
fn a_chained_before_poll_hook_that_panics_leaves_nothing_on_the_thread() {
    static PANIC_IN: AtomicUsize = AtomicUsize::new(0);
    let (panicked, next, root) = within_a_minute(|| {
        let runtime = runtime_with_panicking_hooks(&PANIC_IN);
        runtime.block_on(async {
            REQUEST.set(31);
            drop(tokio::spawn(std::future::pending::<()>()));
            REQUEST.delete().unwrap();
        });
        PANIC_IN.store(BEFORE, Ordering::SeqCst);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(async {
                for _ in 0..3 {
                    yield_now().await;
                }
            })
        }));
        let (next, root) = runtime.block_on(async {
            let root = REQUEST.get();
            let next = tokio::spawn(async { REQUEST.get() }).await.unwrap();
            (next, root)
        });
        (panicked.is_err(), next, root)
    });
    assert!(panicked);
    assert_eq!((next, root), (None, None));
}

/// A task whose code panics between `attach` and `detach` leaves nothing on its worker: the
/// poll's end ends that attach, as the end of a `Context::run` would.
#[test]
fn an_attach_a_task_left_behind_ends_with_its_poll() {
    for flavour in [None, Some(1)] {
        let drops = Arc::new(AtomicUsize::new(0));
        let (runtime, workers) = runtime(flavour);
        let (panicked, root, next) = runtime.block_on(async {
            let task_drops = drops.clone();
            let panicked = tokio::spawn(async move {
                HELD.set(Counter(task_drops));
                let _left = contextvars::attach(contextvars::Context::new()).unwrap();
                REQUEST.set(17);
                panic!("before its detach");
            })
            .await;
            let next = tokio::spawn(async { REQUEST.get() }).await.unwrap();
            (panicked.unwrap_err().is_panic(), REQUEST.get(), next)
        });
        assert!(panicked);
        assert_eq!((root, next), (None, None), "{flavour:?}");
        assert_eq!(drops.load(Ordering::SeqCst), 1, "{flavour:?}");
        drop(runtime);
        assert_eq!(workers.dirty.load(Ordering::SeqCst), 0, "{flavour:?}");
    }
}

/// Ending an attach a task left behind drops the task's own context, which it displaced: a
/// value there whose `Drop` panics stays inside the hook as well.
#[test]
fn a_panicking_drop_in_the_context_an_attach_left_behind_displaced_stays_inside_the_hook() {
    for flavour in [None, Some(1)] {
        let drops = Arc::new(AtomicUsize::new(0));
        let (runtime, workers) = runtime(flavour);
        let (result, root) = runtime.block_on(async {
            let task_drops = drops.clone();
            let result = tokio::spawn(async move {
                BOOM.set(Boom(task_drops));
                let _left = contextvars::attach(contextvars::Context::new()).unwrap();
                REQUEST.set(3);
                yield_now().await;
                // The poll's end ended the attach; the displaced context was dropped.
                (BOOM.with(|boom| boom.is_some()), REQUEST.get())
            })
            .await;
            (result.ok(), REQUEST.get())
        });
        assert_eq!(result, Some((false, None)), "{flavour:?}");
        assert_eq!(root, None, "{flavour:?}");
        assert_eq!(drops.load(Ordering::SeqCst), 1, "{flavour:?}");
        drop(runtime);
        assert_eq!(workers.dirty.load(Ordering::SeqCst), 0, "{flavour:?}");
    }
}

/// A task spawned from another thread while the runtime shuts down: tokio lists the task,
/// and the shutdown may end it (on its own thread) before the spawner's hook has taken the
/// context. That context must still be released, once, and not kept for the life of the
/// process.
#[test]
fn a_spawn_racing_the_shutdown_releases_its_context() {
    for round in 0..200 {
        let drops = Arc::new(AtomicUsize::new(0));
        let (runtime, _) = runtime(Some(2));
        let handle = runtime.handle().clone();
        let spawner = {
            let drops = drops.clone();
            std::thread::spawn(move || {
                let _token = HELD.set(Counter(drops));
                // Spawns until the runtime is gone (a spawn then returns a handle that is
                // already cancelled), or very many.
                for _ in 0..200_000 {
                    let task = handle.spawn(async {});
                    if task.is_finished()
                        && futures_executor::block_on(task).is_err_and(|e| e.is_cancelled())
                    {
                        break;
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_micros(100 * (round % 7)));
        drop(runtime);
        spawner.join().unwrap();
        // The spawner's own context ended with its thread; every task's was released.
        assert_eq!(drops.load(Ordering::SeqCst), 1, "round {round}");
    }
}

/// An after-poll hook of yours runs after the task's context is put back (another worker may
/// take it for its next poll meanwhile), in a snapshot of it: it reads the task's variables,
/// and what it sets does not reach the task.
/// A current-thread runtime whose after-poll hook of yours records what `REQUEST` holds in
/// `seen`, then sets it to `then`.
fn recording_after_polls(seen: &'static Mutex<Vec<Option<u64>>>, then: u64) -> Runtime {
    use exec_context::tokio::{TaskHooks, propagate_with};
    let mut builder = Builder::new_current_thread();
    propagate_with(
        &mut builder,
        TaskHooks::new().on_after_task_poll(move |_| {
            seen.lock().unwrap().push(REQUEST.get());
            REQUEST.set(then);
        }),
    );
    builder.build().unwrap()
}

#[test]
fn a_chained_after_poll_hook_reads_a_snapshot_of_the_tasks_context() {
    static SEEN: Mutex<Vec<Option<u64>>> = Mutex::new(Vec::new());
    let (seen_by_task, seen_by_hook) = within_a_minute(|| {
        let runtime = recording_after_polls(&SEEN, 99);
        let handle = {
            let _entered = runtime.enter();
            REQUEST.set(41);
            let handle = tokio::spawn(async {
                let mut seen = vec![REQUEST.get()];
                REQUEST.set(42);
                yield_now().await;
                seen.push(REQUEST.get());
                seen
            });
            REQUEST.delete().unwrap();
            handle
        };
        let seen = runtime.block_on(handle).unwrap();
        (seen, std::mem::take(&mut *SEEN.lock().unwrap()))
    });
    assert_eq!(
        seen_by_task,
        [Some(41), Some(42)],
        "the hook's set stays in the hook"
    );
    // The task's two polls (the block_on future's polls are not a task's).
    assert_eq!(seen_by_hook, [Some(42), Some(42)]);
    assert_eq!(REQUEST.get(), None);
}

/// After a poll that did not use the task's context, an after-poll hook of yours that reads
/// a variable still sees the task's (fetched for the hook, then put back), and what it sets
/// does not reach the task.
#[test]
fn a_chained_after_poll_hook_sees_the_context_of_a_poll_that_did_not_use_it() {
    static SEEN: Mutex<Vec<Option<u64>>> = Mutex::new(Vec::new());
    let (seen_at_end, seen_by_hook) = within_a_minute(|| {
        let runtime = recording_after_polls(&SEEN, 98);
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let handle = {
            let _entered = runtime.enter();
            REQUEST.set(51);
            let handle = tokio::spawn(async {
                // Two polls that touch no variable.
                yield_now().await;
                wait.await.unwrap();
                REQUEST.get()
            });
            REQUEST.delete().unwrap();
            handle
        };
        runtime.block_on(async {
            for _ in 0..3 {
                yield_now().await;
            }
        });
        go.send(()).unwrap();
        let seen = runtime.block_on(handle).unwrap();
        (seen, std::mem::take(&mut *SEEN.lock().unwrap()))
    });
    assert_eq!(seen_at_end, Some(51), "the hook's sets stay in the hook");
    assert!(seen_by_hook.len() >= 3, "{seen_by_hook:?}");
    assert!(
        seen_by_hook.iter().all(|seen| *seen == Some(51)),
        "{seen_by_hook:?}"
    );
    assert_eq!(REQUEST.get(), None);
}

/// Tasks on four workers, half of them using their context in every poll and half never,
/// with an after-poll hook of yours that reads each task's variable after every poll: the
/// hook always sees the value of the task it runs for, and what it sets never reaches a
/// task, while tasks move between workers.
#[test]
fn a_chained_after_poll_hook_on_four_workers_sees_each_tasks_own_value() {
    use exec_context::tokio::{TaskHooks, propagate_with};
    use std::collections::{HashMap, HashSet};
    const TASKS: u64 = 400;
    const YIELDS: usize = 20;
    type Seen = Mutex<HashMap<tokio::task::Id, HashSet<Option<u64>>>>;
    static SEEN: std::sync::LazyLock<Seen> = std::sync::LazyLock::new(Seen::default);
    let (mismatches, ids) = within_a_minute(|| {
        let mut builder = Builder::new_multi_thread();
        builder.worker_threads(4);
        propagate_with(
            &mut builder,
            TaskHooks::new().on_after_task_poll(|meta| {
                let seen = REQUEST.get();
                REQUEST.set(u64::MAX);
                SEEN.lock()
                    .unwrap()
                    .entry(meta.id())
                    .or_default()
                    .insert(seen);
            }),
        );
        let runtime = builder.build().unwrap();
        let mut handles = Vec::new();
        let mut ids = HashMap::new();
        {
            let _entered = runtime.enter();
            for n in 0..TASKS {
                REQUEST.set(n);
                let handle = tokio::spawn(async move {
                    let mut mismatches = 0;
                    for _ in 0..YIELDS {
                        yield_now().await;
                        if n % 2 == 0 {
                            mismatches += usize::from(REQUEST.get() != Some(n));
                        }
                    }
                    mismatches + usize::from(REQUEST.get() != Some(n))
                });
                ids.insert(handle.id(), n);
                handles.push(handle);
            }
            REQUEST.delete().unwrap();
        }
        let mismatches: usize = runtime.block_on(async {
            let mut total = 0;
            for handle in handles {
                total += handle.await.unwrap();
            }
            total
        });
        (mismatches, ids)
    });
    assert_eq!(mismatches, 0, "a hook's set reached a task");
    let seen = SEEN.lock().unwrap();
    for (id, n) in &ids {
        let values = &seen[id];
        assert_eq!(values, &HashSet::from([Some(*n)]), "task {n}");
    }
}

/// A `LocalRuntime` (`Builder::build_local`) runs the task hooks for its `spawn_local` tasks,
/// so they carry their spawner's context as `tokio::spawn` tasks do (a `LocalSet` does not).
#[test]
fn spawn_local_on_a_local_runtime_carries_the_spawners_context() {
    let (seen, outside) = within_a_minute(|| {
        let mut builder = Builder::new_current_thread();
        exec_context::tokio::propagate(&mut builder);
        let runtime = builder
            .build_local(tokio::runtime::LocalOptions::default())
            .unwrap();
        runtime.block_on(async {
            REQUEST.set(61);
            let task = tokio::task::spawn_local(async {
                let seen = REQUEST.get();
                REQUEST.set(62);
                yield_now().await;
                (seen, REQUEST.get())
            });
            REQUEST.set(63);
            let seen = task.await.unwrap();
            (seen, REQUEST.get())
        })
    });
    assert_eq!(seen, (Some(61), Some(62)));
    assert_eq!(outside, Some(63));
}
