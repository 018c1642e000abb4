//! `Context::run` and `run_with_logical_context` move their context into the thread only
//! when the code they run needs it there (a set, a snapshot, a scope, an attach): until then
//! the run or the push *waits*, and reads are served from the lookup cache or from the
//! waiting context where it lies. These tests pin what that must not change: every read,
//! set, scope, nested run, panic and thread teardown sees exactly what moving the context in
//! at once would show. (A deferred attach below, whose source counts its fetches, shows
//! which contexts a read had to enter.)

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use contextvars::{
    Context, ContextVar, DetachError, LogicalContext, attach_deferred, copy_context,
    detach_deferred, end_deferred, get_execution_context, run_with_logical_context,
};

mod common;
use common::on_fresh_thread;

static A: ContextVar<u64> = ContextVar::new("waiting.a");
static B: ContextVar<String> = ContextVar::new("waiting.b");

thread_local! {
    static PARKED: RefCell<Option<Context>> = const { RefCell::new(None) };
    static FETCHES: Cell<usize> = const { Cell::new(0) };
}

fn fetch(_key: u64) -> Option<Context> {
    FETCHES.with(|fetches| fetches.set(fetches.get() + 1));
    PARKED.with(|parked| parked.borrow_mut().take())
}

fn fetches() -> usize {
    FETCHES.with(Cell::get)
}

/// A context holding `A = a` and `B = b`.
fn context(a: u64, b: &str) -> Context {
    let mut context = Context::new();
    context.run(|| {
        A.set(a);
        B.set(b.to_owned());
    });
    context
}

#[test]
fn a_run_shows_its_own_context_whether_or_not_it_was_entered() {
    on_fresh_thread(|| {
        A.set(1);
        B.set("thread".into());
        let mut ctx = context(2, "ctx");
        for round in 0..3 {
            // The first round misses the cache (and enters); later ones are served from it.
            let seen = ctx.run(|| (A.get(), B.get()));
            assert_eq!(seen, (Some(2), Some("ctx".into())), "round {round}");
            assert_eq!((A.get(), B.get()), (Some(1), Some("thread".into())));
        }
        // A set after cached reads lands in the run's context, and nowhere else.
        ctx.run(|| {
            assert_eq!(A.get(), Some(2));
            A.set(3);
            assert_eq!(A.get(), Some(3));
        });
        assert_eq!(ctx.get(&A), Some(3));
        assert_eq!(A.get(), Some(1));
        // Snapshots taken inside describe the run's context.
        let inner = ctx.run(|| {
            assert_eq!(A.get(), Some(3));
            copy_context()
        });
        assert_eq!(inner.get(&A), Some(3));
        assert_eq!(inner.get(&B).as_deref(), Some("ctx"));
    });
}

#[test]
fn a_run_never_fetches_a_deferred_attach_waiting_below_it() {
    on_fresh_thread(|| {
        A.set(1);
        let mut ctx = context(2, "ctx");
        PARKED.with(|parked| *parked.borrow_mut() = Some(context(9, "attached")));
        let id = attach_deferred(fetch, 0).unwrap();
        // Runs above the waiting attach: the run's context replaces the whole current one,
        // so the attach is never needed, whether the run reads (a miss, then hits) or not.
        for _ in 0..3 {
            assert_eq!(ctx.run(|| A.get()), Some(2));
            ctx.run(|| ());
        }
        assert_eq!(fetches(), 0);
        // Inside a run, the attach made below it is not the current one.
        ctx.run(|| {
            let refused = detach_deferred(id);
            assert_eq!(refused.unwrap_err(), DetachError::NotCurrent);
        });
        assert_eq!(fetches(), 0);
        // After the runs the attach still waits, and is fetched by the first use.
        assert_eq!(A.get(), Some(9));
        assert_eq!(fetches(), 1);
        let back = detach_deferred(id).unwrap().expect("it was used");
        assert_eq!(back.get(&A), Some(9));
        assert_eq!(A.get(), Some(1));
    });
}

#[test]
fn nested_runs_each_see_their_own_context_entered_or_not() {
    on_fresh_thread(|| {
        A.set(1);
        let mut outer = context(2, "outer");
        let mut inner = context(3, "inner");
        // Warm both contexts' cache entries.
        outer.run(|| A.get());
        inner.run(|| A.get());
        outer.run(|| {
            // `outer` waits (a cached read) while `inner` runs and is entered by a set.
            assert_eq!(A.get(), Some(2));
            inner.run(|| {
                assert_eq!(A.get(), Some(3));
                A.set(30);
                assert_eq!(B.get().as_deref(), Some("inner"));
            });
            // Back in `outer`, still waiting: its reads and its own set are its own.
            assert_eq!(A.get(), Some(2));
            assert_eq!(B.get().as_deref(), Some("outer"));
            A.set(20);
            // And a run nested in an entered one.
            inner.run(|| assert_eq!(A.get(), Some(30)));
            assert_eq!(A.get(), Some(20));
        });
        assert_eq!(outer.get(&A), Some(20));
        assert_eq!(inner.get(&A), Some(30));
        assert_eq!(A.get(), Some(1));
    });
}

#[test]
fn a_logical_context_pushed_in_a_waiting_run_takes_the_set_made_inside_it() {
    on_fresh_thread(|| {
        let mut ctx = context(2, "ctx");
        ctx.run(|| A.get());
        let mut lc = LogicalContext::new();
        ctx.run(|| {
            assert_eq!(A.get(), Some(2));
            // Pushed lazily while the run waits; the set enters the run, then materialises
            // the pushed context above the run's own.
            run_with_logical_context(&mut lc, || {
                assert_eq!(A.get(), Some(2));
                A.set(5);
                assert_eq!(A.get(), Some(5));
            });
            assert_eq!(A.get(), Some(2));
        });
        assert_eq!(lc.get(&A), Some(5));
        assert_eq!(ctx.get(&A), Some(2));
        assert_eq!(A.get(), None);
    });
}

#[test]
fn a_panic_in_a_run_restores_the_caller_whether_or_not_it_was_entered() {
    on_fresh_thread(|| {
        A.set(1);
        let mut ctx = context(2, "ctx");
        ctx.run(|| A.get());
        // Waiting when it panics.
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            ctx.run(|| {
                assert_eq!(A.get(), Some(2));
                panic!("waiting");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(A.get(), Some(1));
        // Entered when it panics: the change made before the panic stays in `ctx`.
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            ctx.run(|| {
                A.set(4);
                panic!("entered");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(A.get(), Some(1));
        assert_eq!(ctx.run(|| A.get()), Some(4));
        A.set(6);
        assert_eq!(A.get(), Some(6));
        assert_eq!(ctx.get(&A), Some(4));
    });
}

/// What a `Context` run by a thread-local's destructor saw: inside the run, and outside it.
static SEEN_AT_TEARDOWN: Mutex<Option<(Option<u64>, Option<u64>)>> = Mutex::new(None);

struct RunsAtTeardown(Context);

impl Drop for RunsAtTeardown {
    fn drop(&mut self) {
        let inside = self.0.run(|| A.get());
        let outside = A.get();
        *SEEN_AT_TEARDOWN.lock().unwrap() = Some((inside, outside));
    }
}

thread_local! {
    static HOLDER: RefCell<Option<RunsAtTeardown>> = const { RefCell::new(None) };
}

/// A context run after the thread state is gone sees no value, even one its earlier runs on
/// the thread left in the lookup cache; run before, it sees its own.
#[test]
fn a_run_during_thread_teardown_shows_nothing_stale() {
    std::thread::spawn(|| {
        // The holder's destructor is registered before the thread state's, so on this
        // platform it runs after the state is gone (the assertion below holds either way).
        HOLDER.with(|holder| holder.borrow_mut().is_none());
        A.set(1);
        let mut ctx = context(2, "ctx");
        assert_eq!(ctx.run(|| A.get()), Some(2));
        HOLDER.with(|holder| *holder.borrow_mut() = Some(RunsAtTeardown(ctx)));
    })
    .join()
    .unwrap();
    let (inside, outside) = SEEN_AT_TEARDOWN.lock().unwrap().take().expect("it ran");
    match outside {
        // The state was gone: no context at all.
        None => assert_eq!(inside, None),
        Some(value) => {
            assert_eq!(value, 1);
            assert_eq!(inside, Some(2));
        }
    }
}

/// A logical context holding `A = a`.
fn logical(a: u64) -> LogicalContext {
    let mut lc = LogicalContext::new();
    run_with_logical_context(&mut lc, || A.set(a));
    lc
}

#[test]
fn nested_waiting_pushes_show_the_topmost_value_and_take_the_sets_made_in_them() {
    on_fresh_thread(|| {
        A.set(1);
        B.set("thread".into());
        let (mut l1, mut l2) = (logical(10), LogicalContext::new());
        run_with_logical_context(&mut l2, || B.set("l2".into()));
        let mut l3 = logical(30);
        run_with_logical_context(&mut l1, || {
            assert_eq!((A.get(), B.get().as_deref()), (Some(10), Some("thread")));
            run_with_logical_context(&mut l2, || {
                assert_eq!((A.get(), B.get().as_deref()), (Some(10), Some("l2")));
                run_with_logical_context(&mut l3, || {
                    assert_eq!((A.get(), B.get().as_deref()), (Some(30), Some("l2")));
                    // Enters all three, bottom first.
                    B.set("l3".into());
                    assert_eq!((A.get(), B.get().as_deref()), (Some(30), Some("l3")));
                    let snapshot = get_execution_context();
                    assert_eq!(snapshot.get(&A), Some(30));
                    assert_eq!(snapshot.get(&B).as_deref(), Some("l3"));
                });
                assert_eq!((A.get(), B.get().as_deref()), (Some(10), Some("l2")));
                A.set(20);
            });
            assert_eq!((A.get(), B.get().as_deref()), (Some(10), Some("thread")));
        });
        assert_eq!((A.get(), B.get().as_deref()), (Some(1), Some("thread")));
        assert_eq!((l1.get(&A), l1.get(&B)), (Some(10), None));
        assert_eq!((l2.get(&A), l2.get(&B).as_deref()), (Some(20), Some("l2")));
        assert_eq!((l3.get(&A), l3.get(&B).as_deref()), (Some(30), Some("l3")));
    });
}

#[test]
fn lazy_pushes_around_a_waiting_one_keep_their_order_when_a_set_enters_them() {
    on_fresh_thread(|| {
        let (mut below, mut waiting, mut above) =
            (LogicalContext::new(), logical(2), LogicalContext::new());
        A.set(1);
        run_with_logical_context(&mut below, || {
            run_with_logical_context(&mut waiting, || {
                run_with_logical_context(&mut above, || {
                    assert_eq!(A.get(), Some(2));
                    A.set(3);
                    assert_eq!(A.get(), Some(3));
                });
                assert_eq!(A.get(), Some(2));
                B.set("waiting".into());
            });
            assert_eq!((A.get(), B.get()), (Some(1), None));
            B.set("below".into());
        });
        assert_eq!((A.get(), B.get()), (Some(1), None));
        assert_eq!((above.get(&A), above.get(&B)), (Some(3), None));
        assert_eq!(
            (waiting.get(&A), waiting.get(&B).as_deref()),
            (Some(2), Some("waiting"))
        );
        assert_eq!(
            (below.get(&A), below.get(&B).as_deref()),
            (None, Some("below"))
        );
    });
}

#[test]
fn a_run_inside_a_waiting_push_hides_it_and_a_push_inside_a_waiting_run_lies_above_it() {
    on_fresh_thread(|| {
        A.set(1);
        let mut lc = logical(2);
        let mut ctx = context(3, "ctx");
        run_with_logical_context(&mut lc, || {
            assert_eq!(A.get(), Some(2));
            ctx.run(|| {
                assert_eq!((A.get(), B.get().as_deref()), (Some(3), Some("ctx")));
                let mut inner = logical(4);
                run_with_logical_context(&mut inner, || {
                    assert_eq!((A.get(), B.get().as_deref()), (Some(4), Some("ctx")));
                    // Enters the run, then the push above it.
                    B.set("inner".into());
                    assert_eq!(B.get().as_deref(), Some("inner"));
                });
                assert_eq!((A.get(), B.get().as_deref()), (Some(3), Some("ctx")));
                assert_eq!(inner.get(&B).as_deref(), Some("inner"));
            });
            // The push waits again under the run that ended.
            assert_eq!((A.get(), B.get()), (Some(2), None));
        });
        assert_eq!(A.get(), Some(1));
        assert_eq!(ctx.get(&B).as_deref(), Some("ctx"));
    });
}

/// Lazy pushes below a run belong to the caller's context; those made inside belong to the
/// run's. Entering the run (here by a `set`) must tell them apart, with and without a
/// waiting push in between.
#[test]
fn entering_a_run_leaves_the_lazy_pushes_below_it_to_the_caller() {
    on_fresh_thread(|| {
        A.set(1);
        let mut ctx = context(2, "ctx");
        let (mut outer, mut inner) = (LogicalContext::new(), LogicalContext::new());
        run_with_logical_context(&mut outer, || {
            ctx.run(|| {
                run_with_logical_context(&mut inner, || {
                    assert_eq!(A.get(), Some(2));
                    A.set(3);
                    assert_eq!(A.get(), Some(3));
                });
                // The set went into `inner`, which has ended.
                assert_eq!(A.get(), Some(2));
                B.set("run".into());
            });
            assert_eq!((A.get(), B.get()), (Some(1), None));
            // `outer` is still the caller's topmost logical context.
            A.set(4);
            assert_eq!(A.get(), Some(4));
        });
        assert_eq!((A.get(), B.get()), (Some(1), None));
        assert_eq!(outer.get(&A), Some(4));
        assert_eq!(inner.get(&A), Some(3));
        assert_eq!(
            (ctx.get(&A), ctx.get(&B).as_deref()),
            (Some(2), Some("run"))
        );

        // The same with a waiting push above the lazy ones inside the run, and two lazy
        // pushes below it.
        let mut ctx = context(2, "ctx");
        let (mut low, mut high) = (LogicalContext::new(), LogicalContext::new());
        let (mut lazy, mut waiting) = (LogicalContext::new(), logical(5));
        run_with_logical_context(&mut low, || {
            run_with_logical_context(&mut high, || {
                ctx.run(|| {
                    run_with_logical_context(&mut lazy, || {
                        run_with_logical_context(&mut waiting, || {
                            assert_eq!(A.get(), Some(5));
                            // Enters the run, `lazy` above it, then `waiting`.
                            B.set("waiting".into());
                            assert_eq!((A.get(), B.get().as_deref()), (Some(5), Some("waiting")));
                        });
                        assert_eq!((A.get(), B.get().as_deref()), (Some(2), Some("ctx")));
                        A.set(6);
                    });
                    assert_eq!((A.get(), B.get().as_deref()), (Some(2), Some("ctx")));
                });
                assert_eq!((A.get(), B.get()), (Some(1), None));
                A.set(7);
            });
            assert_eq!(A.get(), Some(1));
            A.set(8);
        });
        assert_eq!(A.get(), Some(1));
        assert_eq!((low.get(&A), high.get(&A)), (Some(8), Some(7)));
        assert_eq!(lazy.get(&A), Some(6));
        assert_eq!(waiting.get(&B).as_deref(), Some("waiting"));
        assert_eq!(
            (ctx.get(&A), ctx.get(&B).as_deref()),
            (Some(2), Some("ctx"))
        );
    });
}

/// A run hides the pushes that waited when it began, entered or not, and they wait again
/// once it ends; pushes made inside it lie above it.
#[test]
fn a_nested_run_hides_the_pushes_made_in_the_run_around_it() {
    on_fresh_thread(|| {
        A.set(1);
        let (mut outer_ctx, mut inner_ctx) = (context(2, "outer"), context(3, "inner"));
        let (mut first, mut second) = (logical(10), logical(20));
        outer_ctx.run(|| {
            run_with_logical_context(&mut first, || {
                assert_eq!(A.get(), Some(10));
                inner_ctx.run(|| {
                    // `first` waits below this run: hidden.
                    assert_eq!((A.get(), B.get().as_deref()), (Some(3), Some("inner")));
                    run_with_logical_context(&mut second, || {
                        assert_eq!(A.get(), Some(20));
                        // Enters `inner_ctx` and `second` only.
                        B.set("second".into());
                    });
                    assert_eq!((A.get(), B.get().as_deref()), (Some(3), Some("inner")));
                });
                // `first` waits again (never entered), over the outer run's context.
                assert_eq!((A.get(), B.get().as_deref()), (Some(10), Some("outer")));
                B.set("first".into());
                assert_eq!(B.get().as_deref(), Some("first"));
            });
            assert_eq!((A.get(), B.get().as_deref()), (Some(2), Some("outer")));
        });
        assert_eq!((A.get(), B.get()), (Some(1), None));
        assert_eq!(first.get(&B).as_deref(), Some("first"));
        assert_eq!(second.get(&B).as_deref(), Some("second"));
        assert_eq!(inner_ctx.get(&B).as_deref(), Some("inner"));
        assert_eq!(outer_ctx.get(&B).as_deref(), Some("outer"));
    });
}

#[test]
fn a_read_answered_by_a_waiting_push_does_not_fetch_the_attach_below_it() {
    on_fresh_thread(|| {
        A.set(1);
        let mut lc = logical(2);
        PARKED.with(|parked| *parked.borrow_mut() = Some(context(9, "attached")));
        let id = attach_deferred(fetch, 0).unwrap();
        run_with_logical_context(&mut lc, || {
            assert_eq!(A.get(), Some(2));
            assert_eq!(fetches(), 0);
            // `B` is not in `lc`: the read needs the context below, so the attach is entered.
            assert_eq!(B.get().as_deref(), Some("attached"));
            assert_eq!(fetches(), 1);
            A.set(3);
        });
        assert_eq!(lc.get(&A), Some(3));
        assert_eq!(A.get(), Some(9));
        let back = detach_deferred(id).unwrap().expect("it was used");
        assert_eq!(back.get(&A), Some(9));
        assert_eq!(A.get(), Some(1));
    });
}

#[test]
fn a_value_borrowed_from_a_waiting_push_survives_a_set_that_enters_it() {
    on_fresh_thread(|| {
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || B.set("borrowed".into()));
        run_with_logical_context(&mut lc, || {
            B.with(|value| {
                let value = value.expect("set");
                B.set("replacement".into());
                assert_eq!(value, "borrowed");
            });
            assert_eq!(B.get().as_deref(), Some("replacement"));
        });
        assert_eq!(lc.get(&B).as_deref(), Some("replacement"));
        assert_eq!(B.get(), None);
    });
}

#[test]
fn a_panic_in_a_push_restores_the_caller_whether_or_not_it_was_entered() {
    on_fresh_thread(|| {
        A.set(1);
        let mut lc = logical(2);
        for set_first in [false, true] {
            let panicked = catch_unwind(AssertUnwindSafe(|| {
                run_with_logical_context(&mut lc, || {
                    assert_eq!(A.get(), Some(2));
                    if set_first {
                        B.set("inside".into());
                    }
                    panic!("in the push");
                })
            }));
            assert!(panicked.is_err());
            assert_eq!((A.get(), B.get()), (Some(1), None));
        }
        assert_eq!(
            (lc.get(&A), lc.get(&B).as_deref()),
            (Some(2), Some("inside"))
        );
        A.set(5);
        run_with_logical_context(&mut lc, || assert_eq!(A.get(), Some(2)));
        assert_eq!(A.get(), Some(5));
    });
}

/// A deferred attach entered while a non-empty push waits above it (by a read the push
/// cannot answer, or by a set) must not bring back the attached context's cache stamp: the
/// current context is the push over it. Found by review: a read then served the attached
/// context's old cached value of a variable the push holds.
#[test]
fn a_deferred_attach_entered_under_a_waiting_push_keeps_the_push_on_top() {
    static X: ContextVar<u64> = ContextVar::new("waiting.x");
    static Y: ContextVar<u64> = ContextVar::new("waiting.y");
    for set_first in [false, true] {
        on_fresh_thread(|| {
            let mut lc = LogicalContext::new();
            run_with_logical_context(&mut lc, || Y.set(1));
            // The attached context has run here, so its stamp names cached entries (Y = 10).
            let mut attached = Context::new();
            attached.run(|| {
                Y.set(10);
                assert_eq!(Y.get(), Some(10));
            });
            PARKED.with(|parked| *parked.borrow_mut() = Some(attached));
            let id = attach_deferred(fetch, 0).unwrap();
            run_with_logical_context(&mut lc, || {
                if set_first {
                    X.set(5);
                } else {
                    assert_eq!(X.get(), None);
                }
                assert_eq!(fetches(), 1);
                assert_eq!(Y.get(), Some(1));
                assert_eq!(Y.with(|y| y.copied()), Some(1));
            });
            assert_eq!(Y.get(), Some(10));
            let back = detach_deferred(id).unwrap().expect("it was used");
            assert_eq!(back.get(&Y), Some(10));
            assert_eq!(lc.get(&X), set_first.then_some(5));
        });
    }
}

thread_local! {
    static REATTACHED: Cell<Option<contextvars::DeferredId>> = const { Cell::new(None) };
}

/// A source that (against its docs) records a deferred attach of its own.
fn fetch_and_attach(_key: u64) -> Option<Context> {
    REATTACHED.with(|id| id.set(Some(attach_deferred(fetch, 1).unwrap())));
    Some(context(20, "outer attach"))
}

/// A fetch that attaches again while a push waits sees the context below the attach, and
/// the push stays on top of both attaches: each detaches in order afterwards.
#[test]
fn a_fetch_that_attaches_under_a_waiting_push_leaves_the_push_on_top() {
    on_fresh_thread(|| {
        A.set(1);
        let mut lc = logical(2);
        PARKED.with(|parked| *parked.borrow_mut() = Some(context(30, "inner attach")));
        let outer = attach_deferred(fetch_and_attach, 0).unwrap();
        run_with_logical_context(&mut lc, || {
            B.set("set".into());
            assert_eq!((A.get(), B.get().as_deref()), (Some(2), Some("set")));
        });
        assert_eq!(lc.get(&B).as_deref(), Some("set"));
        // The attach the fetch made is entered first, below the outer one.
        assert_eq!(A.get(), Some(20));
        let back = detach_deferred(outer).unwrap().expect("it was used");
        assert_eq!(back.get(&A), Some(20));
        let inner = REATTACHED.with(Cell::get).expect("the fetch attached");
        assert_eq!(A.get(), Some(30));
        assert!(detach_deferred(inner).unwrap().is_some());
        assert_eq!(A.get(), Some(1));
    });
}

thread_local! {
    /// Calls of `panicking_fetch` on this thread.
    static PANICKING_FETCHES: Cell<u32> = const { Cell::new(0) };
}

fn panicking_fetch(_key: u64) -> Option<Context> {
    PANICKING_FETCHES.with(|fetches| fetches.set(fetches.get() + 1));
    panic!("the source failed");
}

/// A deferred attach's fetch runs with the pushes waiting above it hidden; a fetch that
/// panics must list them again, or their ends (which expect to find themselves listed) and
/// later lookups see a broken list.
#[test]
fn a_fetch_that_panics_under_a_waiting_push_leaves_the_push_listed() {
    on_fresh_thread(|| {
        A.set(1);
        let (mut lc, mut outer) = (logical(2), logical(3));
        let id = attach_deferred(panicking_fetch, 0).unwrap();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            run_with_logical_context(&mut lc, || {
                assert_eq!(A.get(), Some(2));
                // Needs the thread state: enters the pending attach first, whose fetch panics.
                B.set("lost".into());
            });
        }));
        assert!(caught.is_err());
        assert_eq!((A.get(), B.get()), (Some(1), None));
        run_with_logical_context(&mut outer, || {
            run_with_logical_context(&mut lc, || {
                assert_eq!(A.get(), Some(2));
                B.set("kept".into());
                assert_eq!(B.get().as_deref(), Some("kept"));
            });
            assert_eq!((A.get(), B.get()), (Some(3), None));
        });
        assert_eq!((A.get(), B.get()), (Some(1), None));
        assert_eq!(lc.get(&B).as_deref(), Some("kept"));
        // The attach whose fetch panicked is over: never fetched again, and not current.
        assert_eq!(PANICKING_FETCHES.with(Cell::get), 1);
        assert_eq!(detach_deferred(id).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(end_deferred(id).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(A.get(), Some(1));
    });
}
