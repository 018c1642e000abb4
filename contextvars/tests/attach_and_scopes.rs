//! Non-scoped attach / detach, `scope_future` and `set_guard`: values correct across polls
//! and threads, errors for misuse that change nothing, and borrowed values that survive a
//! detach.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll, Wake, Waker};

use contextvars::{
    Context, ContextVar, DetachError, LogicalContext, TokenError, attach, detach,
    get_execution_context, run_with_logical_context,
};

mod common;
use common::on_fresh_thread;

/// Counts drops of a value shared by its clones' `Arc`.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn attach_makes_the_context_current_and_detach_hands_it_back() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.var");
    on_fresh_thread(|| {
        VAR.set(1);
        let mut given = Context::new();
        given.run(|| VAR.set(10));
        let id = attach(given).unwrap();
        assert_eq!(VAR.get(), Some(10));
        VAR.set(11);
        let back = detach(id).unwrap();
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(back.get(&VAR), Some(11));
        assert_eq!(detach(id).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(VAR.get(), Some(1));
    });
}

#[test]
fn attaches_nest_and_must_be_detached_in_order() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.nest");
    on_fresh_thread(|| {
        VAR.set(0);
        let outer = attach(Context::new()).unwrap();
        VAR.set(1);
        let inner = attach(Context::new()).unwrap();
        VAR.set(2);
        // The outer attach is not the current one: refused, nothing changed.
        assert_eq!(detach(outer).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(VAR.get(), Some(2));
        assert_eq!(detach(inner).unwrap().get(&VAR), Some(2));
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(detach(outer).unwrap().get(&VAR), Some(1));
        assert_eq!(VAR.get(), Some(0));
    });
}

#[test]
fn detach_inside_a_later_scope_is_refused() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.scope");
    on_fresh_thread(|| {
        let id = attach(Context::new()).unwrap();
        VAR.set(5);
        let in_run = Context::new().run(|| detach(id));
        assert_eq!(in_run.unwrap_err(), DetachError::NotCurrent);
        let in_push = run_with_logical_context(&mut LogicalContext::new(), || detach(id));
        assert_eq!(in_push.unwrap_err(), DetachError::NotCurrent);
        let on_other_thread = on_fresh_thread(|| detach(id));
        assert_eq!(on_other_thread.unwrap_err(), DetachError::NotCurrent);
        assert_eq!(VAR.get(), Some(5));
        assert_eq!(detach(id).unwrap().get(&VAR), Some(5));
        assert_eq!(VAR.get(), None);
    });
}

#[test]
fn an_attach_abandoned_inside_a_finished_scope_does_not_block_the_one_below() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.abandoned");
    on_fresh_thread(|| {
        let outer = attach(Context::new()).unwrap();
        VAR.set(1);
        let mut scope = Context::new();
        let abandoned = scope.run(|| attach(Context::new()).unwrap());
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(detach(abandoned).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(detach(outer).unwrap().get(&VAR), Some(1));
        assert_eq!(VAR.get(), None);
        assert!(get_execution_context().is_empty());
    });
}

#[test]
fn a_value_borrowed_across_detach_stays_alive_until_the_borrow_ends() {
    static VAR: ContextVar<Counted> = ContextVar::new("attach.borrowed");
    on_fresh_thread(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let id = attach(Context::new()).unwrap();
        VAR.set(Counted(drops.clone()));
        VAR.with(|value| {
            let value = value.expect("set above");
            // Detach and drop the only owner of the borrowed value, inside the borrow.
            drop(detach(id).unwrap());
            assert_eq!(drops.load(Ordering::SeqCst), 0, "freed under a borrow");
            assert_eq!(value.0.load(Ordering::SeqCst), 0);
        });
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "released when the borrow ended"
        );
        assert!(VAR.with(|value| value.is_none()));
    });
}

/// A borrow open for a long time (a server's `with` around its event loop) keeps only what
/// it lends: contexts attached and detached inside it let their values go with them.
#[test]
fn contexts_detached_inside_a_long_borrow_let_their_values_go() {
    static CONFIG: ContextVar<String> = ContextVar::new("attach.config");
    static VAR: ContextVar<Counted> = ContextVar::new("attach.per_task");
    on_fresh_thread(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        CONFIG.set("server".into());
        CONFIG.with(|config| {
            for turn in 1..=100 {
                let id = attach(Context::new()).unwrap();
                VAR.set(Counted(drops.clone()));
                let back = detach(id).unwrap();
                assert!(back.contains(&VAR));
                drop(back);
                assert_eq!(
                    drops.load(Ordering::SeqCst),
                    turn,
                    "kept by an unrelated borrow"
                );
            }
            assert_eq!(config.map(String::as_str), Some("server"));
        });
        assert_eq!(drops.load(Ordering::SeqCst), 100);
    });
}

#[test]
fn a_panicking_drop_in_a_detached_context_leaves_the_thread_consistent() {
    static VAR: ContextVar<Bomb> = ContextVar::new("attach.bomb");
    static OTHER: ContextVar<u32> = ContextVar::new("attach.other");
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("bomb");
            }
        }
    }
    on_fresh_thread(|| {
        OTHER.set(3);
        let id = attach(Context::new()).unwrap();
        VAR.set(Bomb);
        let back = detach(id).unwrap();
        assert!(catch_unwind(AssertUnwindSafe(|| drop(back))).is_err());
        assert_eq!(OTHER.get(), Some(3));
        assert!(!VAR.is_set());
        let again = attach(Context::new()).unwrap();
        assert_eq!(OTHER.get(), None);
        assert!(detach(again).unwrap().is_empty());
        assert_eq!(OTHER.get(), Some(3));
    });
}

#[test]
fn a_context_attached_on_one_thread_and_then_another_keeps_its_values() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.migrate");
    let mut context = Context::new();
    for step in 0..4 {
        context = on_fresh_thread(move || {
            let id = attach(context).unwrap();
            assert_eq!(VAR.get(), if step == 0 { None } else { Some(step - 1) });
            VAR.set(step);
            detach(id).unwrap()
        });
    }
    assert_eq!(context.get(&VAR), Some(3));
}

/// A waker that does nothing (the futures here are polled by hand).
struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Yields once, then is ready.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(Noop));
    future.poll(&mut TaskContext::from_waker(&waker))
}

#[test]
fn scope_future_sees_its_value_at_every_poll_and_leaves_the_caller_untouched() {
    static VAR: ContextVar<u32> = ContextVar::new("scope.value");
    on_fresh_thread(|| {
        VAR.set(1);
        let mut future = Box::pin(VAR.scope_future(7, async {
            let mut seen = Vec::new();
            for step in 0..3 {
                seen.push(VAR.get());
                if step == 1 {
                    VAR.set(8); // the future's own change: seen by its later polls
                }
                YieldOnce(false).await;
            }
            seen
        }));
        let mut caller = 1;
        for _ in 0..3 {
            assert!(poll_once(future.as_mut()).is_pending());
            assert_eq!(VAR.get(), Some(caller), "the caller's value between polls");
            caller += 1;
            VAR.set(caller); // the caller's change is invisible to the scope
        }
        match poll_once(future.as_mut()) {
            Poll::Ready(seen) => assert_eq!(seen, [Some(7), Some(7), Some(8)]),
            Poll::Pending => panic!("should be done"),
        }
        assert_eq!(VAR.get(), Some(caller));
    });
}

#[test]
fn scope_future_moves_between_threads_with_its_value() {
    static VAR: ContextVar<u32> = ContextVar::new("scope.threads");
    let mut future = Box::pin(VAR.scope_future(3, async {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(VAR.get());
            YieldOnce(false).await;
        }
        seen
    }));
    for _ in 0..3 {
        future = on_fresh_thread(move || {
            VAR.set(100);
            assert!(poll_once(future.as_mut()).is_pending());
            assert_eq!(VAR.get(), Some(100));
            future
        });
    }
    let seen = on_fresh_thread(move || match poll_once(future.as_mut()) {
        Poll::Ready(seen) => seen,
        Poll::Pending => panic!("should be done"),
    });
    assert_eq!(seen, [Some(3), Some(3), Some(3)]);
}

#[test]
fn scope_future_restores_the_caller_when_a_poll_panics_and_drops_inside_the_scope() {
    static VAR: ContextVar<u32> = ContextVar::new("scope.panic");
    static SEEN_AT_DROP: AtomicUsize = AtomicUsize::new(0);
    struct Probe;
    impl Drop for Probe {
        fn drop(&mut self) {
            SEEN_AT_DROP.store(VAR.get().unwrap_or(0) as usize, Ordering::SeqCst);
        }
    }
    on_fresh_thread(|| {
        VAR.set(1);
        let mut panicking = Box::pin(VAR.scope_future(9, async {
            YieldOnce(false).await;
            panic!("inside the scope");
        }));
        assert!(poll_once(panicking.as_mut()).is_pending());
        assert!(catch_unwind(AssertUnwindSafe(|| poll_once(panicking.as_mut()))).is_err());
        assert_eq!(VAR.get(), Some(1));

        let probe = Probe;
        let pending = Box::pin(VAR.scope_future(4, async move {
            let _probe = probe;
            std::future::pending::<()>().await;
        }));
        let mut pending = pending;
        assert!(poll_once(pending.as_mut()).is_pending());
        drop(pending);
        assert_eq!(
            SEEN_AT_DROP.load(Ordering::SeqCst),
            4,
            "dropped inside the scope"
        );
        assert_eq!(VAR.get(), Some(1));
    });
}

#[test]
fn set_guard_is_held_across_awaits_and_reset_on_drop() {
    static VAR: ContextVar<u32> = ContextVar::with_default("guard.await", 0);
    on_fresh_thread(|| {
        let mut task = Context::new();
        let mut future = Box::pin(async {
            let guard = VAR.set_guard(5);
            YieldOnce(false).await;
            assert_eq!(VAR.get(), Some(5));
            YieldOnce(false).await;
            drop(guard);
            VAR.get()
        });
        // A task: its own context entered around each poll, as executors do.
        let mut outcome = Poll::Pending;
        while outcome.is_pending() {
            outcome = task.run(|| poll_once(future.as_mut()));
            assert_eq!(VAR.get(), Some(0), "nothing leaks to the poller");
        }
        assert_eq!(outcome, Poll::Ready(Some(0)));
        assert!(!task.contains(&VAR), "the guard reset the task's context");
    });
}

#[test]
fn set_guard_in_another_context_changes_nothing() {
    static VAR: ContextVar<u32> = ContextVar::new("guard.other");
    on_fresh_thread(|| {
        let guard = VAR.set_guard(1);
        let mut elsewhere = Context::new();
        // The checked reset: a typed error, nothing changed.
        assert_eq!(
            elsewhere.run(|| guard.reset()),
            Err(TokenError::WrongContext)
        );
        assert_eq!(VAR.get(), Some(1));
        assert!(elsewhere.is_empty());

        // A plain drop elsewhere: nothing changed either; debug builds panic to flag it.
        let guard = VAR.set_guard(2);
        let dropped = catch_unwind(AssertUnwindSafe(|| elsewhere.run(move || drop(guard))));
        assert_eq!(dropped.is_err(), cfg!(debug_assertions));
        assert_eq!(VAR.get(), Some(2));
        assert!(elsewhere.is_empty());
        let ec = get_execution_context();
        assert_eq!(ec.vars().filter(|v| v.name() == "guard.other").count(), 1);
    });
}

/// A context holding `VAR = value`, whose drop the counter sees.
fn counted_context(var: &'static ContextVar<Arc<Counted>>, drops: &Arc<AtomicUsize>) -> Context {
    let mut context = Context::new();
    let value = Arc::new(Counted(Arc::clone(drops)));
    context.run(|| var.set(value));
    context
}

#[test]
fn an_attach_left_inside_a_logical_context_scope_ends_with_the_scope() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.lc_scope");
    on_fresh_thread(|| {
        VAR.set(1);
        let mut lc = LogicalContext::new();
        let left = run_with_logical_context(&mut lc, || {
            VAR.set(2);
            let mut given = Context::new();
            given.run(|| VAR.set(10));
            let id = attach(given).unwrap();
            assert_eq!(VAR.get(), Some(10));
            VAR.set(11);
            id
        });
        // The scope's context is back, with the logical context popped into `lc`.
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(lc.get(&VAR), Some(2));
        assert_eq!(get_execution_context().get(&VAR), Some(1));
        assert_eq!(get_execution_context().depth(), 1);
        // The attach went with the scope.
        assert_eq!(detach(left).unwrap_err(), DetachError::NotCurrent);
        // The logical context can be pushed again and reads its own value.
        run_with_logical_context(&mut lc, || assert_eq!(VAR.get(), Some(2)));
        assert_eq!(VAR.get(), Some(1));
    });
}

#[test]
fn nested_attaches_left_inside_nested_scopes_end_with_their_scopes() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.lc_nested");
    on_fresh_thread(|| {
        VAR.set(0);
        let outer_attach = attach(Context::new()).unwrap();
        VAR.set(1);
        let mut outer = LogicalContext::new();
        let mut inner = LogicalContext::new();
        run_with_logical_context(&mut outer, || {
            // Nothing set in `outer` before the attach: it was pushed lazily.
            let first = attach(Context::new()).unwrap();
            VAR.set(20);
            let second = attach(Context::new()).unwrap();
            VAR.set(30);
            run_with_logical_context(&mut inner, || {
                VAR.set(40);
                let third = attach(Context::new()).unwrap();
                assert_eq!(VAR.get(), None);
                VAR.set(50);
                let _ = third;
            });
            // The inner scope took its attach with it: `second`'s context is current.
            assert_eq!(VAR.get(), Some(30));
            assert_eq!(inner.get(&VAR), Some(40));
            let _ = (first, second);
        });
        assert_eq!(VAR.get(), Some(1));
        assert!(outer.is_empty());
        // The attach made before the scopes is still the current one, and detaches.
        assert_eq!(detach(outer_attach).unwrap().get(&VAR), Some(1));
        assert_eq!(VAR.get(), Some(0));
        assert_eq!(get_execution_context().depth(), 1);
    });
}

#[test]
fn an_attach_left_inside_a_run_inside_a_logical_context_keeps_the_run_rule() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.lc_run");
    on_fresh_thread(|| {
        VAR.set(1);
        let mut lc = LogicalContext::new();
        let mut scope = Context::new();
        run_with_logical_context(&mut lc, || {
            VAR.set(2);
            // Left attached inside a finished `run`: the run restores its caller.
            let abandoned = scope.run(|| attach(Context::new()).unwrap());
            assert_eq!(VAR.get(), Some(2));
            assert_eq!(detach(abandoned).unwrap_err(), DetachError::NotCurrent);
            // And one left directly in the scope.
            let _left = attach(Context::new()).unwrap();
            VAR.set(3);
        });
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(lc.get(&VAR), Some(2));
        let id = attach(Context::new()).unwrap();
        assert_eq!(VAR.get(), None);
        detach(id).unwrap();
        assert_eq!(VAR.get(), Some(1));
    });
}

#[test]
fn a_deferred_attach_left_inside_a_logical_context_scope_ends_with_the_scope() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.lc_deferred");
    fn fetch(key: u64) -> Option<Context> {
        let mut context = Context::new();
        context.run(|| VAR.set(key as u32));
        Some(context)
    }
    on_fresh_thread(|| {
        VAR.set(1);
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            VAR.set(2);
            let _entered = contextvars::attach_deferred(fetch, 7).unwrap();
            assert_eq!(VAR.get(), Some(7));
            let _pending = contextvars::attach_deferred(fetch, 8).unwrap();
        });
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(lc.get(&VAR), Some(2));
        assert_eq!(get_execution_context().depth(), 1);
    });
}

#[test]
fn what_an_abandoned_attach_holds_is_dropped_when_its_scope_ends() {
    static VAR: ContextVar<Arc<Counted>> = ContextVar::new("attach.lc_drops");
    let drops = Arc::new(AtomicUsize::new(0));
    on_fresh_thread(|| {
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            let _left = attach(counted_context(&VAR, &drops)).unwrap();
            let _above = attach(counted_context(&VAR, &drops)).unwrap();
            assert_eq!(drops.load(Ordering::SeqCst), 0);
        });
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert!(VAR.get().is_none());
        // A borrow open across the scope lends from the context below the attach: what the
        // attach held is not kept for it.
        let mut lc = LogicalContext::new();
        VAR.set(Arc::new(Counted(Arc::clone(&drops))));
        VAR.with(|held| {
            run_with_logical_context(&mut lc, || {
                let _left = attach(counted_context(&VAR, &drops)).unwrap();
            });
            assert_eq!(drops.load(Ordering::SeqCst), 3);
            assert!(held.is_some());
        });
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    });
    // Everything is gone with the thread.
    assert_eq!(drops.load(Ordering::SeqCst), 4);
}

#[test]
fn a_deferred_attach_left_unused_inside_a_run_is_never_fetched() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.run_deferred");
    static FETCHES: AtomicUsize = AtomicUsize::new(0);
    fn fetch(_: u64) -> Option<Context> {
        FETCHES.fetch_add(1, Ordering::SeqCst);
        panic!("a source that fails");
    }
    on_fresh_thread(|| {
        VAR.set(1);
        let mut scope = Context::new();
        scope.run(|| VAR.set(2));
        let left = scope.run(|| contextvars::attach_deferred(fetch, 1).unwrap());
        // Leaving the run fetched nothing, and the attach ended with it.
        assert_eq!(FETCHES.load(Ordering::SeqCst), 0);
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(scope.get(&VAR), Some(2));
        assert_eq!(
            contextvars::detach_deferred(left).unwrap_err(),
            DetachError::NotCurrent
        );
        assert_eq!(scope.run(|| VAR.get()), Some(2));
        assert_eq!(FETCHES.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_deferred_attach_left_unused_inside_a_logical_context_scope_is_never_fetched() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.lc_unused_deferred");
    static FETCHES: AtomicUsize = AtomicUsize::new(0);
    fn fetch(_: u64) -> Option<Context> {
        FETCHES.fetch_add(1, Ordering::SeqCst);
        panic!("a source that fails");
    }
    on_fresh_thread(|| {
        VAR.set(1);
        let mut lc = LogicalContext::new();
        let left = run_with_logical_context(&mut lc, || {
            VAR.set(2);
            contextvars::attach_deferred(fetch, 1).unwrap()
        });
        // The scope ended without fetching, and the attach ended with it.
        assert_eq!(FETCHES.load(Ordering::SeqCst), 0);
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(lc.get(&VAR), Some(2));
        assert_eq!(
            contextvars::detach_deferred(left).unwrap_err(),
            DetachError::NotCurrent
        );
        assert_eq!(get_execution_context().depth(), 1);
        run_with_logical_context(&mut lc, || assert_eq!(VAR.get(), Some(2)));
        assert_eq!(FETCHES.load(Ordering::SeqCst), 0);
    });
}

/// A logical context holding `var = value`.
fn holding(var: &'static ContextVar<String>, value: &str) -> LogicalContext {
    let mut lc = LogicalContext::new();
    run_with_logical_context(&mut lc, || drop(var.set(value.to_owned())));
    lc
}

/// An attach left inside a finished `run` goes back into the `Context` with the run's frame.
/// Running that context again, at another depth, makes the attached frame current again;
/// a `detach` made there must still be refused (it would reinstate the attach's floor and
/// displaced frame in a stack that has changed since), and every read stays right.
#[test]
fn an_attach_left_inside_a_run_cannot_be_detached_from_a_later_run_of_that_context() {
    static X: ContextVar<String> = ContextVar::new("attach.later_run.x");
    static Y: ContextVar<u64> = ContextVar::new("attach.later_run.y");
    on_fresh_thread(|| {
        X.set("t0".into());
        let mut ctx = Context::new();
        let mut p1 = holding(&X, "p1");
        let id = run_with_logical_context(&mut p1, || ctx.run(|| attach(Context::new()).unwrap()));
        assert_eq!(X.get().as_deref(), Some("t0"));
        let mut q1 = holding(&X, "q1");
        let mut q2 = LogicalContext::new();
        run_with_logical_context(&mut q2, || drop(Y.set(1)));
        run_with_logical_context(&mut q1, || {
            // Cached at the version of the context below `q2`.
            assert_eq!(X.get().as_deref(), Some("q1"));
            run_with_logical_context(&mut q2, || {
                assert_eq!(X.get().as_deref(), Some("q1"));
                assert_eq!(ctx.run(|| detach(id)).unwrap_err(), DetachError::NotCurrent);
                assert_eq!(X.get().as_deref(), Some("q1"));
                assert_eq!(Y.get(), Some(1));
            });
            assert_eq!(X.get().as_deref(), Some("q1"));
            assert_eq!(Y.get(), None);
        });
        assert_eq!(X.get().as_deref(), Some("t0"));
        // Nor at the depth it was made at.
        run_with_logical_context(&mut p1, || {
            assert_eq!(ctx.run(|| detach(id)).unwrap_err(), DetachError::NotCurrent);
            assert_eq!(X.get().as_deref(), Some("p1"));
        });
        assert_eq!(get_execution_context().get(&X).as_deref(), Some("t0"));
    });
}

/// The context an attach left inside a `Context::run` displaced (the one the run began in)
/// leaves memory when the run ends, not when the thread does: nothing can detach that attach
/// any more. A worker that keeps doing this must not accumulate those contexts.
#[test]
fn what_an_attach_left_inside_a_run_displaced_is_dropped_when_the_run_ends() {
    static D: ContextVar<Arc<Counted>> = ContextVar::new("attach.left_in_run.dropped");
    static L: ContextVar<u64> = ContextVar::new("attach.left_in_run.lc");
    let drops = Arc::new(AtomicUsize::new(0));
    let seen = drops.clone();
    on_fresh_thread(move || {
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || drop(L.set(1)));
        for round in 0..3 {
            let mut ctx = Context::new();
            ctx.run(|| drop(D.set(Arc::new(Counted(seen.clone())))));
            // Plain, and inside a logical context pushed around the run.
            if round % 2 == 0 {
                ctx.run(|| {
                    attach(Context::new()).unwrap();
                });
            } else {
                run_with_logical_context(&mut lc, || {
                    ctx.run(|| {
                        attach(Context::new()).unwrap();
                    });
                    assert_eq!(L.get(), Some(1));
                });
            }
            // `ctx` now holds the attached (empty) context; its own one has gone.
            assert_eq!(seen.load(Ordering::SeqCst), round + 1);
            assert!(ctx.run(|| D.get()).is_none());
            drop(ctx);
        }
        // A panic inside the run ends it the same way.
        let mut ctx = Context::new();
        ctx.run(|| drop(D.set(Arc::new(Counted(seen.clone())))));
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            ctx.run(|| {
                attach(Context::new()).unwrap();
                panic!("inside the run");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(seen.load(Ordering::SeqCst), 4);
        assert_eq!(L.get(), None);
    });
    assert_eq!(drops.load(Ordering::SeqCst), 4);
}

/// The same for a deferred attach entered inside a run and left there.
#[test]
fn a_deferred_attach_left_inside_a_run_cannot_be_detached_from_a_later_run() {
    static X: ContextVar<String> = ContextVar::new("attach.later_run.deferred");
    fn fetch(_: u64) -> Option<Context> {
        Some(Context::new())
    }
    on_fresh_thread(|| {
        X.set("t0".into());
        let mut ctx = Context::new();
        let mut p1 = holding(&X, "p1");
        let id = run_with_logical_context(&mut p1, || {
            ctx.run(|| {
                let id = contextvars::attach_deferred(fetch, 1).unwrap();
                // Entered: the attached context is current.
                assert_eq!(X.get(), None);
                id
            })
        });
        let mut q1 = holding(&X, "q1");
        run_with_logical_context(&mut q1, || {
            assert!(ctx.run(|| contextvars::detach_deferred(id)).is_err());
            assert_eq!(X.get().as_deref(), Some("q1"));
        });
        assert_eq!(X.get().as_deref(), Some("t0"));
    });
}

/// `ContextVar::scope` whose closure leaves an attach behind: the attach ends with the scope,
/// as with a run, so the scope's reset applies and the variable is back to its value before;
/// the context left attached, and its values, go.
#[test]
fn an_attach_left_inside_scope_ends_with_it() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.scope_left");
    static HELD: ContextVar<Arc<Counted>> = ContextVar::new("attach.scope_left.held");
    on_fresh_thread(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        VAR.set(1);
        let seen = VAR.scope(2, || {
            attach(counted_context(&HELD, &drops)).unwrap();
            VAR.set(20);
            VAR.get()
        });
        assert_eq!(seen, Some(20));
        assert_eq!(VAR.get(), Some(1));
        assert!(HELD.get().is_none());
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the context left attached is dropped"
        );
        // Two attaches deep, and under an attach made before the scope, which stays.
        let before = attach(Context::new()).unwrap();
        VAR.set(5);
        VAR.scope(6, || {
            attach(Context::new()).unwrap();
            attach(counted_context(&HELD, &drops)).unwrap();
        });
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(VAR.get(), Some(5));
        assert_eq!(detach(before).unwrap().get(&VAR), Some(5));
        assert_eq!(VAR.get(), Some(1));
    });
}

/// The same when the closure panics after its attach: the scope's reset, made while
/// unwinding, still applies.
#[test]
fn an_attach_left_by_a_panicking_scope_ends_with_it() {
    static VAR: ContextVar<String> = ContextVar::new("attach.scope_left.panic");
    on_fresh_thread(|| {
        VAR.set("outer".into());
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            VAR.scope("inner".into(), || {
                attach(Context::new()).unwrap();
                panic!("after the attach");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(VAR.get().as_deref(), Some("outer"));
        // The thread's context is the one it had: a set and a reset work on it.
        let token = VAR.set("again".into());
        VAR.reset(token).unwrap();
        assert_eq!(VAR.get().as_deref(), Some("outer"));
    });
}

/// A poll of a `scope_future` that leaves an attach behind: the attach ends with the poll,
/// so the caller's context between polls is untouched and the next poll sees the value.
#[test]
fn an_attach_left_by_a_scope_future_poll_ends_with_the_poll() {
    static VAR: ContextVar<u32> = ContextVar::new("attach.scope_future_left");
    on_fresh_thread(|| {
        VAR.set(1);
        let mut first = true;
        let mut future = Box::pin(VAR.scope_future(
            7,
            std::future::poll_fn(move |cx| {
                if first {
                    first = false;
                    attach(Context::new()).unwrap();
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(VAR.get())
            }),
        ));
        assert!(poll_once(future.as_mut()).is_pending());
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(poll_once(future.as_mut()), Poll::Ready(Some(7)));
        assert_eq!(VAR.get(), Some(1));
    });
}

/// A value whose `Drop` panics.
struct Boom;

impl Drop for Boom {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("Boom dropped");
        }
    }
}

/// The scope's reset is made whatever panics while the attaches left inside end: a `Drop`
/// among what they displaced (a context attached, then displaced by a later attach), the
/// scope's own value, and the context left attached, dropped last; the first panic reaches
/// the caller (a second would abort if not discarded).
#[test]
fn a_scope_resets_whatever_panics_as_its_attaches_end() {
    static V: ContextVar<u32> = ContextVar::new("attach.scope_panics.v");
    static B: ContextVar<Boom> = ContextVar::new("attach.scope_panics.b");
    fn holding_boom() -> Context {
        let mut context = Context::new();
        context.run(|| B.set(Boom));
        context
    }
    on_fresh_thread(|| {
        V.set(1);
        let displaced = catch_unwind(AssertUnwindSafe(|| {
            V.scope(2, || {
                attach(holding_boom()).unwrap();
                attach(Context::new()).unwrap();
            })
        }));
        assert!(displaced.is_err());
        assert_eq!(V.get(), Some(1));

        // Both the scope's value (displaced by the reset) and the context left attached
        // panic when dropped.
        let both = catch_unwind(AssertUnwindSafe(|| {
            B.scope(Boom, || {
                attach(holding_boom()).unwrap();
            })
        }));
        assert!(both.is_err());
        assert!(B.with(|boom| boom.is_none()));
        let token = V.set(3);
        V.reset(token).unwrap();
        assert_eq!(V.get(), Some(1));
    });
}

/// A `ScopeFuture` poll whose attaches left behind displaced a context whose `Drop` panics,
/// and whose own last set (in the context left attached) is a value whose `Drop` panics too:
/// the scope's reset is still made, and the first panic reaches the poller.
#[test]
fn a_scope_future_resets_whatever_panics_as_its_attaches_end() {
    /// Panics when a value numbered 9 is dropped.
    struct Loud(u32);
    impl Drop for Loud {
        fn drop(&mut self) {
            if self.0 == 9 && !std::thread::panicking() {
                panic!("Loud(9) dropped");
            }
        }
    }
    static V: ContextVar<Loud> = ContextVar::new("attach.scope_future_panics.v");
    static B: ContextVar<Boom> = ContextVar::new("attach.scope_future_panics.b");
    on_fresh_thread(|| {
        V.set(Loud(0));
        let mut holding_boom = Context::new();
        holding_boom.run(|| B.set(Boom));
        let mut future = Box::pin(V.scope_future(
            Loud(1),
            std::future::poll_fn(move |_| {
                attach(std::mem::take(&mut holding_boom)).unwrap();
                attach(Context::new()).unwrap();
                V.set(Loud(9));
                Poll::Ready(())
            }),
        ));
        let polled = catch_unwind(AssertUnwindSafe(|| poll_once(future.as_mut())));
        let payload = polled.expect_err("a Drop panicked");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"Boom dropped"));
        assert_eq!(V.with(|v| v.map(|v| v.0)), Some(0));
    });
}

/// The documented exception: a scope whose code detached the context the scope began in
/// leaves everything as the code left it, a deferred attach made afterwards included (it
/// can still be detached).
#[test]
fn a_scope_that_detached_its_context_leaves_a_later_deferred_attach() {
    static V: ContextVar<u32> = ContextVar::new("attach.scope_detached.v");
    fn fetch(_: u64) -> Option<Context> {
        Some(Context::new())
    }
    on_fresh_thread(|| {
        let before = attach(Context::new()).unwrap();
        let (detached, deferred) = V.scope(1, || {
            let detached = detach(before).unwrap();
            (detached, contextvars::attach_deferred(fetch, 0).unwrap())
        });
        assert_eq!(detached.get(&V), Some(1), "the scope's value went with it");
        assert!(contextvars::detach_deferred(deferred).is_ok());
        assert_eq!(V.get(), None);
    });
}
