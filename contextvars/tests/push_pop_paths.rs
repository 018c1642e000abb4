//! Pushing and popping a non-empty logical context: the fast path (one borrow of the thread
//! state) and every case that must leave it for the general one — a deferred attach pending
//! at the push, lazily pushed logical contexts below, a full pushed stack, an attach left
//! inside the scope, a pending deferred attach recorded inside it, a panic inside it, a
//! logical context that has an identity but no values. Each test reads values (through the
//! lookup cache) and snapshots on both sides of the scope, so a pop that restored the wrong
//! cache version or kept a stale snapshot shows up as a wrong value.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use contextvars::{
    Context, ContextVar, DetachError, LogicalContext, attach, attach_deferred, detach,
    detach_deferred, get_execution_context, run_with_logical_context,
};

mod common;
use common::on_fresh_thread;

/// A logical context holding `var = value`.
fn holding(var: &'static ContextVar<u32>, value: u32) -> LogicalContext {
    let mut lc = LogicalContext::new();
    run_with_logical_context(&mut lc, || drop(var.set(value)));
    lc
}

/// Pushes and pops a non-empty logical context once, so that the thread's pushed stack has
/// room and later pushes can take the fast path.
fn warm_up() {
    static WARM: ContextVar<u32> = ContextVar::new("paths.warm");
    let mut lc = holding(&WARM, 1);
    run_with_logical_context(&mut lc, || assert_eq!(WARM.get(), Some(1)));
    assert_eq!(WARM.get(), None);
}

#[test]
fn a_fast_push_and_pop_switch_values_snapshots_and_cached_reads() {
    static VAR: ContextVar<u32> = ContextVar::new("paths.basic");
    static BELOW: ContextVar<u32> = ContextVar::new("paths.basic.below");
    on_fresh_thread(|| {
        warm_up();
        VAR.set(1);
        BELOW.set(9);
        // Cached reads and a cached snapshot of the context below.
        assert_eq!((VAR.get(), BELOW.get()), (Some(1), Some(9)));
        let before = get_execution_context();
        let mut lc = holding(&VAR, 2);
        for round in 0..3 {
            run_with_logical_context(&mut lc, || {
                assert_eq!(VAR.get(), Some(2 + round));
                assert_eq!(BELOW.get(), Some(9));
                assert_eq!(get_execution_context().get(&VAR), Some(2 + round));
                assert_eq!(get_execution_context().depth(), 2);
                VAR.set(3 + round);
                assert_eq!(VAR.get(), Some(3 + round));
            });
            assert_eq!(VAR.get(), Some(1));
            assert_eq!(BELOW.get(), Some(9));
            assert_eq!(get_execution_context().get(&VAR), Some(1));
            assert_eq!(get_execution_context().depth(), 1);
            assert_eq!(lc.get(&VAR), Some(3 + round));
        }
        assert_eq!(before.get(&VAR), Some(1));
    });
}

#[test]
fn a_push_with_a_deferred_attach_pending_enters_it_below_the_pushed_context() {
    static VAR: ContextVar<u32> = ContextVar::new("paths.deferred");
    static FETCHED: ContextVar<u32> = ContextVar::new("paths.deferred.fetched");
    static FETCHES: AtomicUsize = AtomicUsize::new(0);
    fn fetch(key: u64) -> Option<Context> {
        FETCHES.fetch_add(1, Ordering::SeqCst);
        let mut context = Context::new();
        context.run(|| {
            VAR.set(key as u32);
            FETCHED.set(key as u32);
        });
        Some(context)
    }
    on_fresh_thread(|| {
        warm_up();
        VAR.set(1);
        assert_eq!(VAR.get(), Some(1));
        let mut lc = holding(&VAR, 2);
        let id = attach_deferred(fetch, 7).unwrap();
        run_with_logical_context(&mut lc, || {
            // The fetched context lies below `lc`, not above it.
            assert_eq!(VAR.get(), Some(2));
            assert_eq!(FETCHED.get(), Some(7));
            assert_eq!(get_execution_context().depth(), 2);
            VAR.set(3);
        });
        assert_eq!(FETCHES.load(Ordering::SeqCst), 1);
        assert_eq!(lc.get(&VAR), Some(3));
        // Back in the fetched context, which detaches as the current one.
        assert_eq!(VAR.get(), Some(7));
        assert_eq!(get_execution_context().get(&VAR), Some(7));
        let fetched = detach_deferred(id).unwrap().expect("it was entered");
        assert_eq!(fetched.get(&FETCHED), Some(7));
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(FETCHED.get(), None);
        assert_eq!(FETCHES.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_push_above_lazily_pushed_contexts_materialises_them_first() {
    static VAR: ContextVar<u32> = ContextVar::new("paths.lazy");
    on_fresh_thread(|| {
        warm_up();
        VAR.set(1);
        let mut lc = holding(&VAR, 2);
        let (mut outer, mut middle) = (LogicalContext::new(), LogicalContext::new());
        run_with_logical_context(&mut outer, || {
            run_with_logical_context(&mut middle, || {
                assert_eq!(VAR.get(), Some(1));
                run_with_logical_context(&mut lc, || {
                    assert_eq!(VAR.get(), Some(2));
                    assert_eq!(get_execution_context().depth(), 2);
                });
                // `lc` is popped, not one of the lazy contexts in its place.
                assert_eq!(VAR.get(), Some(1));
                assert_eq!(lc.get(&VAR), Some(2));
                VAR.set(4);
                assert_eq!(VAR.get(), Some(4));
            });
            assert_eq!(VAR.get(), Some(1));
            assert_eq!(middle.get(&VAR), Some(4));
        });
        assert!(outer.is_empty());
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(get_execution_context().depth(), 1);
    });
}

#[test]
fn pushes_that_grow_the_pushed_stack_nest_and_unwind_in_order() {
    static VAR: ContextVar<u32> = ContextVar::new("paths.grow");
    const DEPTH: u32 = if cfg!(miri) { 6 } else { 40 };
    fn nest(lcs: &mut [LogicalContext], level: u32) {
        let Some((lc, rest)) = lcs.split_first_mut() else {
            return;
        };
        run_with_logical_context(lc, || {
            assert_eq!(VAR.get(), Some(level));
            nest(rest, level + 1);
            assert_eq!(VAR.get(), Some(level));
            VAR.set(level + 100);
        });
    }
    on_fresh_thread(|| {
        // No warm-up: the first push finds no room.
        VAR.set(0);
        let mut lcs: Vec<_> = (1..=DEPTH).map(|level| holding(&VAR, level)).collect();
        for _ in 0..2 {
            nest(&mut lcs, 1);
            assert_eq!(VAR.get(), Some(0));
            for (level, lc) in (1..).zip(&mut lcs) {
                assert_eq!(lc.get(&VAR), Some(level + 100));
                *lc = holding(&VAR, level);
            }
        }
        assert_eq!(get_execution_context().depth(), 1);
    });
}

#[test]
fn an_attach_left_inside_a_fast_scope_ends_with_it() {
    static VAR: ContextVar<u32> = ContextVar::new("paths.attach_left");
    on_fresh_thread(|| {
        warm_up();
        VAR.set(1);
        assert_eq!(VAR.get(), Some(1));
        let mut lc = holding(&VAR, 2);
        let mut inner = holding(&VAR, 20);
        let left = run_with_logical_context(&mut lc, || {
            let mut given = Context::new();
            given.run(|| VAR.set(10));
            let id = attach(given).unwrap();
            assert_eq!(VAR.get(), Some(10));
            // A push and pop in the attached context, above its floor.
            run_with_logical_context(&mut inner, || assert_eq!(VAR.get(), Some(20)));
            assert_eq!(VAR.get(), Some(10));
            VAR.set(11);
            id
        });
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(lc.get(&VAR), Some(2));
        assert_eq!(get_execution_context().get(&VAR), Some(1));
        assert_eq!(get_execution_context().depth(), 1);
        assert_eq!(detach(left).unwrap_err(), DetachError::NotCurrent);
        // The stack is whole: the next push and pop take the fast path again.
        run_with_logical_context(&mut lc, || assert_eq!(VAR.get(), Some(2)));
        assert_eq!(VAR.get(), Some(1));
    });
}

#[test]
fn an_attach_detached_inside_a_fast_scope_leaves_it_whole() {
    static VAR: ContextVar<u32> = ContextVar::new("paths.attach_detached");
    on_fresh_thread(|| {
        warm_up();
        VAR.set(1);
        assert_eq!(VAR.get(), Some(1));
        let mut lc = holding(&VAR, 2);
        run_with_logical_context(&mut lc, || {
            let id = attach(Context::new()).unwrap();
            assert_eq!(VAR.get(), None);
            VAR.set(10);
            assert_eq!(detach(id).unwrap().get(&VAR), Some(10));
            assert_eq!(VAR.get(), Some(2));
            VAR.set(3);
        });
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(lc.get(&VAR), Some(3));
        assert_eq!(get_execution_context().depth(), 1);
    });
}

#[test]
fn a_deferred_attach_left_pending_inside_a_fast_scope_is_never_fetched() {
    static VAR: ContextVar<u32> = ContextVar::new("paths.pending_inside");
    static FETCHES: AtomicUsize = AtomicUsize::new(0);
    fn fetch(_: u64) -> Option<Context> {
        FETCHES.fetch_add(1, Ordering::SeqCst);
        panic!("a source that fails");
    }
    on_fresh_thread(|| {
        warm_up();
        VAR.set(1);
        let mut lc = holding(&VAR, 2);
        let left = run_with_logical_context(&mut lc, || attach_deferred(fetch, 1).unwrap());
        assert_eq!(FETCHES.load(Ordering::SeqCst), 0);
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(lc.get(&VAR), Some(2));
        assert_eq!(detach_deferred(left).unwrap_err(), DetachError::NotCurrent);
        run_with_logical_context(&mut lc, || assert_eq!(VAR.get(), Some(2)));
        assert_eq!(FETCHES.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_panic_inside_a_fast_scope_pops_it() {
    static VAR: ContextVar<u32> = ContextVar::new("paths.panic");
    on_fresh_thread(|| {
        warm_up();
        VAR.set(1);
        assert_eq!(VAR.get(), Some(1));
        let before = get_execution_context();
        let mut lc = holding(&VAR, 2);
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            run_with_logical_context(&mut lc, || {
                VAR.set(3);
                assert_eq!(VAR.get(), Some(3));
                let _snapshot = get_execution_context();
                panic!("inside the scope");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(get_execution_context().get(&VAR), Some(1));
        assert_eq!(get_execution_context().depth(), 1);
        assert_eq!(lc.get(&VAR), Some(3));
        assert_eq!(before.get(&VAR), Some(1));
        run_with_logical_context(&mut lc, || assert_eq!(VAR.get(), Some(3)));
        assert_eq!(VAR.get(), Some(1));
    });
}

#[test]
fn a_context_with_an_identity_but_no_values_invalidates_what_it_gained() {
    static VAR: ContextVar<u32> = ContextVar::new("paths.identity");
    on_fresh_thread(|| {
        warm_up();
        VAR.set(1);
        // A set and its reset: the logical context has an identity and no values, so its
        // push is real but changes no lookup.
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || VAR.reset(VAR.set(5)).unwrap());
        assert!(lc.is_empty());
        assert_eq!(VAR.get(), Some(1));
        run_with_logical_context(&mut lc, || {
            assert_eq!(VAR.get(), Some(1));
            VAR.set(6);
            // Cached inside: the pop must not let this entry describe the context below.
            assert_eq!(VAR.get(), Some(6));
        });
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(get_execution_context().get(&VAR), Some(1));
        assert_eq!(lc.get(&VAR), Some(6));
        // And the other way: a non-empty context emptied inside.
        run_with_logical_context(&mut lc, || {
            VAR.delete().unwrap();
            assert_eq!(VAR.get(), Some(1));
        });
        assert!(lc.is_empty());
        assert_eq!(VAR.get(), Some(1));
        assert_eq!(get_execution_context().depth(), 1);
    });
}

/// A `with` borrow open across fast pushes and pops keeps its value, and so does one opened
/// inside the scope on a value the scope then displaces.
#[test]
fn with_borrows_open_across_fast_scopes_keep_their_values() {
    static S: ContextVar<String> = ContextVar::new("paths.with_borrows");
    on_fresh_thread(|| {
        warm_up();
        S.set("below".repeat(10));
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || S.set("lc".repeat(10)));
        S.with(|outer| {
            let outer = outer.unwrap();
            for _ in 0..3 {
                run_with_logical_context(&mut lc, || {
                    S.with(|inner| {
                        let inner = inner.unwrap();
                        // The lent value leaves the pushed context while lent.
                        S.set("lc2".repeat(10));
                        assert_eq!(inner, &"lc".repeat(10));
                        assert_eq!(S.get().unwrap(), "lc2".repeat(10));
                    });
                    S.set("lc".repeat(10));
                });
                assert_eq!(outer, &"below".repeat(10));
                assert_eq!(S.get().unwrap(), "below".repeat(10));
            }
            // The outer lent value itself displaced, then a push and pop.
            S.set("new below".into());
            run_with_logical_context(&mut lc, || assert_eq!(S.get().unwrap(), "lc".repeat(10)));
            assert_eq!(outer, &"below".repeat(10));
            assert_eq!(S.get().unwrap(), "new below");
        });
        assert_eq!(S.get().unwrap(), "new below");
    });
}
