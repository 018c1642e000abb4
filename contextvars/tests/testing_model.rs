//! `contextvars::testing`: the model agrees with the PEPs on hand-computed cases, and
//! generated scripts (proptest, and `arbitrary` from fixed bytes) replay on this crate without
//! a mismatch.
#![cfg(feature = "testing")]

use contextvars::testing::{
    ContextOrigin, ContextSource, Divergence, Expected, MAX_DEPTH, Mismatch, Model, Op, Scope,
    Script,
};
use contextvars::{ContextVar, EC_LEN_MAX, TokenError};

static A: ContextVar<u64> = ContextVar::new("a");
static B: ContextVar<u64> = ContextVar::new("b");
static C: ContextVar<u64> = ContextVar::new("c");

fn vars() -> [&'static ContextVar<u64>; 3] {
    [&A, &B, &C]
}

fn run(ops: Vec<Op>) {
    let script = Script::from(ops);
    if let Err(mismatch) = script.run_against_contextvars(&vars()) {
        panic!("{mismatch}\nscript: {script:?}");
    }
}

/// Applies `ops` to a fresh model of three variables and returns the last result.
fn model_after(ops: &[Op]) -> (Model, Expected) {
    let mut model = Model::new(3);
    let mut last = Expected::Skipped;
    for op in ops {
        last = model.apply(op);
    }
    (model, last)
}

fn set(var: u8, value: u64) -> Op {
    Op::Set { var, value }
}

// ---- the model on hand-computed cases ----

#[test]
fn model_set_get_delete_reset() {
    let mut model = Model::new(2);
    assert_eq!(model.apply(&Op::Get(0)), Expected::Value(None));
    assert_eq!(model.apply(&set(0, 1)), Expected::Set { old: None });
    assert_eq!(model.apply(&set(0, 2)), Expected::Set { old: Some(1) });
    assert_eq!(
        model.apply(&Op::Get(2)),
        Expected::Value(Some(2)),
        "var 2 is var 0"
    );
    // The latest token of var 0 puts 1 back; `reset` consumed it, so the same pick now
    // finds the older token, which puts "unset" back.
    let reset = Op::Reset { var: 0, back: 0 };
    assert_eq!(
        model.apply(&reset),
        Expected::Reset {
            token: 1,
            result: Ok(())
        }
    );
    assert_eq!(model.get(0), Some(1));
    assert_eq!(
        model.apply(&reset),
        Expected::Reset {
            token: 0,
            result: Ok(())
        }
    );
    assert_eq!(model.get(0), None);
    // No token of var 0 is left.
    assert_eq!(model.apply(&reset), Expected::Skipped);
    assert_eq!(model.apply(&Op::Delete(0)), Expected::Deleted(false));
    assert_eq!(
        model.apply(&Op::Reset { var: 1, back: 0 }),
        Expected::Skipped
    );
}

/// PEP 550: a generator's logical context hides its sets from the caller, shows the caller's
/// values through, and keeps its own values between steps.
#[test]
fn model_generator_steps() {
    let (mut model, _) = model_after(&[set(0, 1), Op::PushLc, set(1, 7)]);
    assert_eq!(model.get(0), Some(1));
    assert_eq!(model.get_topmost(0), None);
    assert_eq!(model.apply(&Op::Delete(0)), Expected::Deleted(false));
    assert_eq!(
        model.apply(&Op::PopLc),
        Expected::Left(Scope::LogicalContext {
            slot: 0,
            resumed: false
        })
    );
    assert_eq!(model.get(1), None);
    assert_eq!(model.logical_context_get(0, 1), Some(Some(7)));
    assert_eq!(
        model.apply(&Op::ResumeLc(0)),
        Expected::Entered(Scope::LogicalContext {
            slot: 0,
            resumed: true
        })
    );
    assert_eq!(model.get(1), Some(7));
    assert_eq!(model.logical_context_get(0, 1), None, "pushed");
    // The generator's own token still works at its next step.
    assert_eq!(
        model.apply(&Op::Reset { var: 1, back: 0 }),
        Expected::Reset {
            token: 1,
            result: Ok(())
        }
    );
    assert_eq!(model.get(1), None);
    // It cannot be pushed twice.
    assert_eq!(model.apply(&Op::ResumeLc(0)), Expected::Skipped);
}

/// PEP 567: a context keeps its changes between runs, a copy is isolated both ways, and a
/// token made in one context cannot reset in another.
#[test]
fn model_contexts_and_tokens() {
    let (mut model, entered) = model_after(&[set(0, 1), Op::EnterContext(ContextSource::Copy)]);
    assert_eq!(
        entered,
        Expected::Entered(Scope::Context {
            slot: 0,
            origin: ContextOrigin::Copy
        })
    );
    assert_eq!(model.get(0), Some(1));
    assert_eq!(model.get_topmost(0), None);
    model.apply(&set(0, 2));
    // The root's token, inside the context: wrong context.
    assert_eq!(
        model.apply(&Op::Reset { var: 0, back: 1 }),
        Expected::Reset {
            token: 0,
            result: Err(TokenError::WrongContext)
        }
    );
    assert_eq!(
        model.apply(&Op::PopLc),
        Expected::Skipped,
        "not a logical context"
    );
    model.apply(&Op::ExitContext);
    assert_eq!(model.get(0), Some(1));
    assert_eq!(model.context_get(0, 0), Some(Some(2)));
    // The context's token, outside it: wrong context (and consumed, like every token a
    // reset is given).
    assert_eq!(
        model.apply(&Op::Reset { var: 0, back: 0 }),
        Expected::Reset {
            token: 1,
            result: Err(TokenError::WrongContext)
        }
    );
    // A token made in the saved context is refused by a clone of it.
    model.apply(&Op::EnterContext(ContextSource::Saved(0)));
    model.apply(&set(0, 3));
    model.apply(&Op::ExitContext);
    model.apply(&Op::EnterContext(ContextSource::CloneOfSaved(0)));
    assert_eq!(model.get(0), Some(3), "a clone has the same values");
    assert_eq!(
        model.apply(&Op::Reset { var: 0, back: 0 }),
        Expected::Reset {
            token: 2,
            result: Err(TokenError::WrongContext)
        },
        "but is a different context"
    );
    model.apply(&Op::ExitContext);
    // Back in the saved context, its own token works.
    model.apply(&Op::EnterContext(ContextSource::Saved(0)));
    model.apply(&set(0, 4));
    assert_eq!(
        model.apply(&Op::Reset { var: 0, back: 0 }),
        Expected::Reset {
            token: 3,
            result: Ok(())
        }
    );
    assert_eq!(model.get(0), Some(3));
    model.apply(&Op::ExitContext);
    assert_eq!(model.context_get(0, 0), Some(Some(3)));
    assert_eq!(model.contexts(), 2);
}

#[test]
fn model_snapshots_are_immutable() {
    let (mut model, taken) = model_after(&[set(0, 1), Op::PushLc, set(1, 2), Op::Snapshot]);
    assert_eq!(taken, Expected::Snapshot(0));
    model.apply(&set(1, 3));
    assert_eq!(model.snapshot_get(0, 1), Some(2));
    model.apply(&Op::PopLc);
    model.apply(&Op::RunInSnapshot(0));
    assert_eq!(model.get(0), Some(1));
    assert_eq!(model.get(1), Some(2));
    assert_eq!(model.get_topmost(1), None, "a fresh logical context on top");
    model.apply(&set(0, 9));
    assert_eq!(
        model.apply(&Op::End),
        Expected::Left(Scope::Snapshot { snapshot: 0 })
    );
    assert_eq!(model.snapshot_get(0, 0), Some(1));
    assert_eq!(model.get(0), Some(1));
    assert_eq!(model.apply(&Op::End), Expected::Skipped, "nothing to end");
}

#[test]
fn model_limits_nesting() {
    let mut model = Model::new(1);
    for _ in 0..MAX_DEPTH {
        assert!(matches!(model.apply(&Op::PushLc), Expected::Entered(_)));
    }
    assert_eq!(model.apply(&Op::PushLc), Expected::Skipped);
    assert_eq!(model.open_scopes().count(), MAX_DEPTH);
}

// ---- replaying on contextvars ----

#[test]
fn replays_generators_contexts_and_snapshots() {
    run(vec![
        set(0, 1),
        Op::PushLc,
        set(0, 2),
        set(1, 3),
        Op::Snapshot,
        Op::PopLc,
        Op::EnterContext(ContextSource::Copy),
        Op::ResumeLc(0),
        Op::Reset { var: 0, back: 0 },
        Op::Get(0),
        Op::Delete(1),
        Op::PopLc,
        Op::RunInSnapshot(0),
        set(2, 4),
        Op::EnterContext(ContextSource::Empty),
        Op::Get(0),
        Op::ExitContext,
        Op::End,
        Op::ExitContext,
        Op::EnterContext(ContextSource::Saved(0)),
        Op::Reset { var: 0, back: 1 },
        Op::EnterContext(ContextSource::CloneOfSaved(0)),
        Op::Reset { var: 0, back: 1 },
        // Left open: the end of the script closes both contexts.
    ]);
}

/// Deeper than `EC_LEN_MAX`, so snapshots are squashed; then run in one.
#[test]
fn replays_deep_stacks() {
    let mut ops = Vec::new();
    for depth in 0..EC_LEN_MAX as u64 + 4 {
        ops.push(Op::PushLc);
        ops.push(set((depth % 3) as u8, depth));
        ops.push(Op::Snapshot);
    }
    ops.push(Op::Delete(0));
    ops.push(Op::RunInSnapshot(u8::MAX));
    ops.push(Op::GetTopmost(1));
    run(ops);
}

#[test]
fn rejects_unusable_variables() {
    static WITH_DEFAULT: ContextVar<u64> = ContextVar::with_default("with_default", 3);
    let script = Script::from(vec![Op::Get(0)]);
    assert_eq!(
        script.run_against_contextvars(&[&A, &WITH_DEFAULT]),
        Err(Mismatch::UnusableVariable {
            index: 1,
            reason: "it has a default value"
        })
    );
    let error = script.run_against_contextvars(&[&A, &B, &A]).unwrap_err();
    assert!(matches!(error, Mismatch::UnusableVariable { index: 2, .. }));
    assert!(error.to_string().contains("vars[2]"), "{error}");
}

#[test]
fn leaves_the_callers_context_alone() {
    A.set(42);
    run(vec![set(0, 1), Op::Delete(0), Op::PushLc, set(0, 2)]);
    assert_eq!(A.get(), Some(42));
}

#[test]
fn mismatches_say_where_and_what() {
    let mismatch = Mismatch::Diverged(Box::new(Divergence {
        step: 4,
        op: Op::Get(1),
        check: "vars[1].get()".into(),
        expected: "Some(2)".into(),
        actual: "None".into(),
        model: "Model { .. }".into(),
    }));
    let text = mismatch.to_string();
    assert!(
        text.starts_with(
            "after step 4 (Get(1)): vars[1].get() gave None, the model expects Some(2)"
        ),
        "{text}"
    );
}

// ---- generated scripts ----

/// Deterministic pseudo-random bytes (xorshift).
#[cfg(feature = "arbitrary")]
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[5]
        })
        .collect()
}

/// Fuzz-style: scripts read from fixed bytes replay cleanly, and the same bytes give the same
/// script.
#[cfg(feature = "arbitrary")]
#[test]
fn scripts_from_bytes_replay_cleanly() {
    use arbitrary::{Arbitrary, Unstructured};

    let inputs = if cfg!(miri) { 2 } else { 200 };
    // Under Miri every step's check costs milliseconds: shorter scripts.
    let length = if cfg!(miri) { 200 } else { 600 };
    let mut nested = 0;
    for seed in 0..inputs {
        let data = bytes(seed, length);
        let script = Script::arbitrary_take_rest(Unstructured::new(&data)).unwrap();
        let again = Script::arbitrary_take_rest(Unstructured::new(&data)).unwrap();
        assert_eq!(script, again);
        if let Err(mismatch) = script.run_against_contextvars(&vars()) {
            panic!("seed {seed}: {mismatch}\nscript: {script:?}");
        }
        let mut model = Model::new(3);
        let deepest = script
            .ops
            .iter()
            .map(|op| {
                model.apply(op);
                model.open_scopes().count()
            })
            .max()
            .unwrap_or(0);
        nested += usize::from(deepest >= 3);
    }
    assert!(
        nested > inputs as usize / 4,
        "scripts rarely nest: {nested}"
    );
}

#[cfg(feature = "proptest")]
mod generated {
    use contextvars::testing::Script;
    use proptest::prelude::*;
    use proptest::test_runner::{FileFailurePersistence, RngAlgorithm};

    use super::{C, vars};

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: if cfg!(miri) { 2 } else { 128 },
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
                "tests/proptest-regressions/testing_model.txt",
            ))),
            rng_algorithm: RngAlgorithm::XorShift,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn generated_scripts_match_the_model(script in Script::strategy(0..150)) {
            let result = script.run_against_contextvars(&vars());
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }

        #[test]
        fn one_variable_scripts_match_the_model(script in any::<Script>()) {
            let result = script.run_against_contextvars(&[&C]);
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
    }
}
