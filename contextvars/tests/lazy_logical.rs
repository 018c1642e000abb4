//! The lazily pushed logical context: pushing an untouched logical context (empty, never
//! given an identity) only counts it, and the first operation that needs it as a real one
//! materialises it. These tests replay every short sequence of the operations that cross
//! those transitions (push an untouched or a used logical context, set, delete, reset, pop,
//! snapshot, enter and leave a context, run in a snapshot), compared with the reference model
//! after every step, and check the cases the scripts cannot express (attach and detach across
//! a lazy push, panics, threads).
#![cfg(feature = "testing")]

use contextvars::testing::{ContextSource, Op, Script};
use contextvars::{
    Context, ContextVar, DetachError, LogicalContext, TokenError, attach, copy_context, detach,
    get_execution_context, run_with_logical_context,
};

static A: ContextVar<u64> = ContextVar::new("lazy.a");
static B: ContextVar<u64> = ContextVar::new("lazy.b");

/// The alphabet: every transition of a lazy logical context, and its neighbours.
fn alphabet(step: u64) -> Vec<Op> {
    vec![
        Op::PushLc,
        Op::ResumeLc(0),
        Op::PopLc,
        Op::Set {
            var: 0,
            value: step,
        },
        Op::Set {
            var: 1,
            value: 100 + step,
        },
        Op::Delete(0),
        Op::Reset { var: 0, back: 0 },
        Op::GetTopmost(0),
        Op::Snapshot,
        Op::RunInSnapshot(0),
        Op::End,
        Op::EnterContext(ContextSource::Copy),
        Op::EnterContext(ContextSource::Saved(0)),
        Op::ExitContext,
    ]
}

/// Replays every script of exactly `len` operations drawn from [`alphabet`], each compared
/// with the model after every step (a mismatch panics with the script).
fn replay_all(len: usize) {
    let width = alphabet(0).len();
    let total = width.pow(u32::try_from(len).expect("short"));
    for mut index in 0..total {
        let mut ops = Vec::with_capacity(len);
        for step in 0..len {
            let step_u64 = u64::try_from(step).expect("short");
            ops.push(alphabet(step_u64 + 1)[index % width]);
            index /= width;
        }
        let script = Script::from(ops);
        if let Err(mismatch) = script.run_against_contextvars(&[&A, &B]) {
            panic!("{mismatch}\nscript: {script:?}");
        }
    }
}

#[test]
fn every_short_script_of_lazy_transitions_agrees_with_the_model() {
    let longest = if cfg!(miri) { 2 } else { 5 };
    for len in 1..=longest {
        replay_all(len);
    }
}

#[test]
fn scripts_that_push_several_untouched_contexts_then_set_agree_with_the_model() {
    // Nested lazy pushes materialised together by one set, then popped one by one, with
    // checks between every step (the exhaustive test is too short to nest three deep).
    let set = |value| Op::Set { var: 0, value };
    let scripts = [
        vec![
            Op::PushLc,
            Op::PushLc,
            Op::PushLc,
            set(1),
            Op::PopLc,
            Op::GetTopmost(0),
            Op::Reset { var: 0, back: 0 },
            Op::PopLc,
            set(2),
            Op::PopLc,
            Op::ResumeLc(0),
            Op::ResumeLc(1),
            Op::Snapshot,
            Op::PopLc,
            Op::PopLc,
        ],
        vec![
            set(1),
            Op::PushLc,
            Op::Snapshot,
            Op::PushLc,
            Op::EnterContext(ContextSource::Copy),
            Op::PushLc,
            set(2),
            Op::PopLc,
            Op::ExitContext,
            Op::Delete(0),
            set(3),
            Op::PopLc,
            Op::Reset { var: 0, back: 1 },
            Op::PopLc,
            Op::RunInSnapshot(0),
            Op::PushLc,
            Op::Get(0),
        ],
    ];
    for ops in scripts {
        let script = Script::from(ops);
        if let Err(mismatch) = script.run_against_contextvars(&[&A, &B]) {
            panic!("{mismatch}\nscript: {script:?}");
        }
    }
}

#[test]
fn an_untouched_logical_context_gets_the_values_set_while_it_was_pushed() {
    Context::new().run(|| {
        A.set(1);
        let mut outer = LogicalContext::new();
        let mut inner = LogicalContext::new();
        run_with_logical_context(&mut outer, || {
            run_with_logical_context(&mut inner, || {
                assert_eq!(A.get(), Some(1));
                assert_eq!(A.get_topmost(), None);
                assert!(A.delete().is_err());
                A.set(2);
                assert_eq!(A.get_topmost(), Some(2));
            });
            // The outer one was materialised with the inner one, and is still untouched.
            assert_eq!(A.get(), Some(1));
            assert_eq!(A.get_topmost(), None);
        });
        assert!(outer.is_empty());
        assert_eq!(inner.get(&A), Some(2));
        assert_eq!(A.get(), Some(1));
        assert_eq!(get_execution_context().depth(), 1);
    });
}

#[test]
fn a_token_made_below_a_lazy_push_does_not_reset_inside_it() {
    Context::new().run(|| {
        let token = A.set(1);
        let token = run_with_logical_context(&mut LogicalContext::new(), || {
            let result = A.reset(token);
            assert_eq!(result, Err(TokenError::WrongContext));
            A.set(5)
        });
        // Reset outside the logical context that made it: still the wrong context.
        assert_eq!(A.reset(token), Err(TokenError::WrongContext));
        assert_eq!(A.get(), Some(1));
    });
}

#[test]
fn attach_inside_a_lazy_push_materialises_it_and_detach_restores_it() {
    Context::new().run(|| {
        A.set(1);
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            let id = attach(Context::new()).expect("not during teardown");
            assert_eq!(A.get(), None);
            A.set(2);
            let task = detach(id).expect("attached last");
            assert_eq!(task.get(&A), Some(2));
            assert_eq!(A.get(), Some(1));
            assert_eq!(A.get_topmost(), None);
            B.set(3);
        });
        assert_eq!(lc.get(&B), Some(3));
        assert_eq!(B.get(), None);
        assert_eq!(A.get(), Some(1));
    });
}

#[test]
fn detach_under_a_lazy_push_is_not_current() {
    Context::new().run(|| {
        let id = attach(Context::new()).expect("not during teardown");
        run_with_logical_context(&mut LogicalContext::new(), || {
            assert_eq!(detach(id).unwrap_err(), DetachError::NotCurrent);
        });
        assert!(detach(id).is_ok());
    });
}

#[test]
fn a_context_entered_inside_a_lazy_push_keeps_its_own_count() {
    Context::new().run(|| {
        A.set(1);
        let mut copy = copy_context();
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            copy.run(|| {
                // Lazily pushed inside the entered context, then set: materialised there.
                run_with_logical_context(&mut LogicalContext::new(), || A.set(2));
                // The copy's own logical context is fresh: 1 is in its base.
                assert_eq!(A.get_topmost(), None);
                assert_eq!(A.get(), Some(1));
                A.set(3);
            });
            assert_eq!(A.get_topmost(), None);
            A.set(4);
        });
        assert_eq!(copy.get(&A), Some(3));
        assert_eq!(lc.get(&A), Some(4));
        assert_eq!(A.get(), Some(1));
    });
}

#[test]
fn a_panic_inside_a_lazy_push_pops_it() {
    Context::new().run(|| {
        A.set(1);
        let mut lc = LogicalContext::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_with_logical_context(&mut lc, || {
                run_with_logical_context(&mut LogicalContext::new(), || -> () { panic!("inside") })
            })
        }));
        assert!(result.is_err());
        assert_eq!(A.get_topmost(), Some(1));
        // A lazy push that was materialised before the panic pops for real.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_with_logical_context(&mut lc, || {
                A.set(2);
                panic!("after a set")
            })
        }));
        assert!(result.is_err());
        assert_eq!(lc.get(&A), Some(2));
        assert_eq!(A.get_topmost(), Some(1));
        assert_eq!(get_execution_context().depth(), 1);
    });
}

#[test]
fn lazy_pushes_on_another_thread_are_its_own() {
    Context::new().run(|| {
        run_with_logical_context(&mut LogicalContext::new(), || {
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    // A fresh thread has nothing pushed: this set lands in its own top.
                    A.set(9);
                    assert_eq!(A.get_topmost(), Some(9));
                });
            });
            assert_eq!(A.get(), None);
            assert_eq!(A.get_topmost(), None);
        });
    });
}
