//! Pinned variables (`ContextVar::pinned`, `contextvars::pinned`): kept by every context made
//! afresh, always inherited, never listed — and PEP 567's observable behaviour unchanged.

use std::collections::BTreeSet;

use contextvars::{
    Context, ContextVar, ExecutionContext, LogicalContext, copy_context, get_execution_context,
    run_with_execution_context, run_with_logical_context,
};
use proptest::prelude::*;

static ZONE: ContextVar<u32> = ContextVar::new("pinned.zone").pinned();
/// Asked not to be inherited, but pinned: pinning wins.
static STUBBORN: ContextVar<u32> = ContextVar::new("pinned.stubborn").pinned().not_inherited();
static PLAIN: [ContextVar<u32>; 4] = [
    ContextVar::new("pinned.plain0"),
    ContextVar::new("pinned.plain1"),
    ContextVar::new("pinned.plain2"),
    ContextVar::new("pinned.plain3"),
];

/// Runs `f` on a new thread, which starts with an empty context.
fn on_fresh_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The names a context lists.
fn listed(ctx: &Context) -> BTreeSet<&'static str> {
    ctx.vars().map(|var| var.name()).collect()
}

#[test]
fn declaration_flags() {
    assert!(ZONE.is_pinned() && ZONE.is_inherited());
    assert!(STUBBORN.is_pinned() && STUBBORN.is_inherited());
    assert!(!PLAIN[0].is_pinned());
}

#[test]
fn without_pinned_values_fresh_contexts_are_empty_through_and_through() {
    on_fresh_thread(|| {
        PLAIN[0].set(1);
        assert_eq!(ExecutionContext::pinned().depth(), 0);
        assert!(ExecutionContext::pinned().ptr_eq(&ExecutionContext::new()));
        let mut lc = LogicalContext::pinned();
        assert!(lc.is_empty());
        assert_eq!(
            run_with_logical_context(&mut lc, || PLAIN[0].get()),
            Some(1)
        );
        let mut fresh = Context::new();
        assert_eq!(fresh.execution_context().depth(), 0);
        assert_eq!(fresh.run(|| (PLAIN[0].get(), ZONE.get())), (None, None));
        assert_eq!(fresh, Context::default());
    });
}

#[test]
fn context_new_keeps_the_creators_pinned_values_and_nothing_else() {
    on_fresh_thread(|| {
        ZONE.set(7);
        PLAIN[0].set(1);
        let mut fresh = Context::new();
        assert_eq!(fresh.get(&ZONE), Some(7));
        assert!(fresh.contains(&ZONE));
        assert_eq!(fresh.get(&PLAIN[0]), None);
        assert_eq!(fresh.run(|| (ZONE.get(), PLAIN[0].get())), (Some(7), None));
        // PEP 567: `Context()` is empty.
        assert_eq!(fresh.len(), 0);
        assert!(fresh.is_empty());
        assert_eq!(fresh.iter().count(), 0);
        assert_eq!(fresh.values().count(), 0);
        assert!(!format!("{fresh:?}").contains("pinned.zone"));
        // A later change in the creator does not reach the context made before it.
        ZONE.set(8);
        assert_eq!(fresh.run(|| ZONE.get()), Some(7));
        // Inside, the pinned variable can be shadowed like any other, and stays shadowed there.
        fresh.run(|| ZONE.set(9));
        assert_eq!(fresh.get(&ZONE), Some(9));
        assert_eq!(ZONE.get(), Some(8));
        assert!(fresh.is_empty());
        // A context made inside the context keeps its values, not the creator's.
        let nested = fresh.run(Context::new);
        assert_eq!(nested.get(&ZONE), Some(9));
    });
}

#[test]
fn a_context_made_where_nothing_is_pinned_has_no_pinned_value() {
    on_fresh_thread(|| ZONE.set(1));
    on_fresh_thread(|| {
        assert_eq!(Context::new().get(&ZONE), None);
        assert_eq!(ExecutionContext::pinned().get(&ZONE), None);
    });
}

#[test]
fn pinned_values_are_always_inherited() {
    on_fresh_thread(|| {
        STUBBORN.set(3);
        ZONE.set(4);
        let inherited = get_execution_context().inherited();
        assert_eq!(inherited.get(&STUBBORN), Some(3));
        assert_eq!(inherited.get(&ZONE), Some(4));
        assert!(inherited.is_empty());
        assert_eq!(copy_context().len(), 0);
        assert!(copy_context().is_empty());
    });
}

#[test]
fn the_empty_policys_context_holds_the_pinned_values_only() {
    on_fresh_thread(|| {
        ZONE.set(5);
        STUBBORN.set(6);
        PLAIN[1].set(1);
        let ec = ExecutionContext::pinned();
        assert_eq!(ec.depth(), 1);
        assert!(ec.is_empty());
        assert_eq!(ec.iter().count(), 0);
        assert_eq!((ec.get(&ZONE), ec.get(&STUBBORN)), (Some(5), Some(6)));
        assert_eq!(ec.get(&PLAIN[1]), None);
        let seen = std::thread::spawn(move || {
            run_with_execution_context(&ec, || {
                (
                    ZONE.get(),
                    PLAIN[1].get(),
                    get_execution_context().is_empty(),
                )
            })
        })
        .join()
        .unwrap();
        assert_eq!(seen, (Some(5), None, true));
    });
}

#[test]
fn a_generators_logical_context_keeps_the_pinned_values_of_its_creation() {
    on_fresh_thread(|| {
        ZONE.set(1);
        let mut generator_lc = LogicalContext::pinned();
        assert!(generator_lc.is_empty());
        assert_eq!(generator_lc.len(), 0);
        assert_eq!(generator_lc.get(&ZONE), Some(1));
        ZONE.set(2);
        // Resumed where the zone has changed: it still runs with its creator's.
        assert_eq!(
            run_with_logical_context(&mut generator_lc, || {
                PLAIN[2].set(10);
                ZONE.get()
            }),
            Some(1)
        );
        assert_eq!(generator_lc.len(), 1);
        assert_eq!(
            generator_lc.vars().map(|v| v.name()).collect::<Vec<_>>(),
            ["pinned.plain2"]
        );
        assert_eq!(ZONE.get(), Some(2));
        assert_eq!(PLAIN[2].get(), None);
        // Resumed on another thread, in a context that never had the zone.
        let moved = std::thread::spawn(move || {
            run_with_logical_context(&mut generator_lc, || (ZONE.get(), PLAIN[2].get()))
        })
        .join()
        .unwrap();
        assert_eq!(moved, (Some(1), Some(10)));
    });
}

#[test]
fn equality_is_about_the_listed_variables() {
    on_fresh_thread(|| {
        ZONE.set(1);
        // Nothing listed on either side: equal, whatever is pinned.
        assert_eq!(Context::new(), Context::default());
        PLAIN[3].set(1);
        let snapshot = copy_context();
        assert_eq!(snapshot, snapshot.clone());
        assert_ne!(snapshot, Context::new());
    });
}

/// One step of a scenario: what the current code does.
#[derive(Clone, Debug)]
enum Step {
    SetPlain(usize, u32),
    SetZone(u32),
    /// Runs the rest in a `Context::new()`.
    Fresh,
    /// Runs the rest in a generator-like logical context made now.
    Generator,
    /// Runs the rest in the empty policy's context, on a new thread.
    EmptyThread,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..PLAIN.len(), any::<u32>()).prop_map(|(i, v)| Step::SetPlain(i, v)),
        any::<u32>().prop_map(Step::SetZone),
        Just(Step::Fresh),
        Just(Step::Generator),
        Just(Step::EmptyThread),
    ]
}

/// The model: the zone and the plain variables as the code sees them.
#[derive(Clone, Default)]
struct Model {
    zone: Option<u32>,
    plain: [Option<u32>; 4],
}

/// Replays `steps`, checking after each against the model: a fresh start keeps only the zone;
/// a generator's logical context sees everything below it; nothing pinned is ever listed.
fn replay(steps: &[Step], mut model: Model) {
    let Some((first, rest)) = steps.split_first() else {
        return;
    };
    match first {
        Step::SetPlain(i, v) => {
            PLAIN[*i].set(*v);
            model.plain[*i] = Some(*v);
            check(&model);
            replay(rest, model);
        }
        Step::SetZone(v) => {
            ZONE.set(*v);
            model.zone = Some(*v);
            check(&model);
            replay(rest, model);
        }
        Step::Fresh => {
            let fresh = Model {
                zone: model.zone,
                ..Model::default()
            };
            Context::new().run(|| {
                check(&fresh);
                replay(rest, fresh.clone());
            });
            check(&model);
        }
        Step::Generator => {
            let mut lc = LogicalContext::pinned();
            run_with_logical_context(&mut lc, || {
                check(&model);
                replay(rest, model.clone());
            });
            check(&model);
        }
        Step::EmptyThread => {
            let ec = ExecutionContext::pinned();
            let fresh = Model {
                zone: model.zone,
                ..Model::default()
            };
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        run_with_execution_context(&ec, || {
                            check(&fresh);
                            replay(rest, fresh.clone());
                        })
                    })
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            });
            check(&model);
        }
    }
}

fn check(model: &Model) {
    assert_eq!(ZONE.get(), model.zone);
    for (var, value) in PLAIN.iter().zip(model.plain) {
        assert_eq!(var.get(), value);
    }
    let listed_now = listed(&copy_context());
    let expected: BTreeSet<&str> = PLAIN
        .iter()
        .zip(model.plain)
        .filter(|(_, value)| value.is_some())
        .map(|(var, _)| var.name())
        .collect();
    assert_eq!(listed_now, expected);
    assert_eq!(copy_context().len(), expected.len());
    assert_eq!(copy_context().is_empty(), expected.is_empty());
    assert_eq!(get_execution_context().is_empty(), expected.is_empty());
    let fresh = Context::new();
    assert_eq!(fresh.get(&ZONE), model.zone);
    assert!(fresh.is_empty());
    assert_eq!(fresh.len(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 64 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn scenarios_of_fresh_starts_keep_the_zone_and_list_only_plain_variables(
        steps in prop::collection::vec(step(), 0..if cfg!(miri) { 4 } else { 12 })
    ) {
        on_fresh_thread(|| replay(&steps, Model::default()));
    }
}

/// More pinned variables than the registry reads without a lock: all are kept.
static MANY: [ContextVar<usize>; 10] = [const { ContextVar::new("pinned.many").pinned() }; 10];

#[test]
fn every_pinned_variable_is_kept_however_many_there_are() {
    on_fresh_thread(|| {
        for (i, var) in MANY.iter().enumerate() {
            var.set(i);
        }
        PLAIN[0].set(1);
        let fresh = Context::new();
        let pinned = ExecutionContext::pinned();
        let lc = LogicalContext::pinned();
        for (i, var) in MANY.iter().enumerate() {
            assert_eq!(fresh.get(var), Some(i));
            assert_eq!(pinned.get(var), Some(i));
            assert_eq!(lc.get(var), Some(i));
        }
        assert!(fresh.is_empty() && pinned.is_empty() && lc.is_empty());
        assert_eq!(copy_context().len(), 1);
    });
}

/// `scope_future` records what `set` records for an unusual variable: a pinned value it sets
/// is not listed but is carried into contexts made during its polls, and a not-inherited
/// one stays out of what spawned work inherits, also when no `set` of such a variable came
/// first in the process (each nextest test is a process).
#[test]
fn scope_future_notes_pinned_and_not_inherited_variables_as_set_does() {
    static SCOPED_ZONE: ContextVar<u32> = ContextVar::new("pinned.scoped_zone").pinned();
    static SCOPED_TXN: ContextVar<u32> = ContextVar::new("pinned.scoped_txn").not_inherited();
    on_fresh_thread(|| {
        let (empty, len, fresh) = futures_executor::block_on(SCOPED_ZONE.scope_future(3, async {
            let context = copy_context();
            (
                context.is_empty(),
                context.len(),
                Context::new().get(&SCOPED_ZONE),
            )
        }));
        assert_eq!((empty, len), (true, 0));
        // Carried into a context made during a poll, as a `set` value is; not after.
        assert_eq!(fresh, Some(3));
        assert_eq!(Context::new().get(&SCOPED_ZONE), None);
        let inherited = futures_executor::block_on(SCOPED_TXN.scope_future(1, async {
            get_execution_context().inherited().get(&SCOPED_TXN)
        }));
        assert_eq!(inherited, None);
    });
}
