//! Values of the inline kinds (integers of up to 64 bits, `f32`, `f64`, `bool`) are stored in
//! the map's entries for variables of the usual kind, and in an `Arc` for pinned and
//! not-inherited ones; the lookup cache copies them in both cases. Either way they answer as
//! shared values do, except that they have no identity: they compare by value.

use contextvars::{
    Context, ContextVar, ExecutionContext, LogicalContext, copy_context, get_execution_context,
    run_with_logical_context,
};

static COUNT: ContextVar<u64> = ContextVar::new("count");
static FLAG: ContextVar<bool> = ContextVar::new("flag");
static RATIO: ContextVar<f32> = ContextVar::with_default("ratio", 0.5);
static SMALL: ContextVar<i8> = ContextVar::new("small").not_inherited();
static ZONE: ContextVar<u64> = ContextVar::new("zone").pinned();
static TEXT: ContextVar<String> = ContextVar::new("text");
static NOTE: ContextVar<String> = ContextVar::new("note").not_inherited();

/// A context that sets and resets a variable holds the same values as before: equal,
/// although the set copied the node its other values sit in.
#[test]
fn a_set_undone_leaves_the_context_equal() {
    let mut context = Context::new();
    context.run(|| {
        COUNT.set(7);
        FLAG.set(true);
    });
    let before = context.clone();
    context.run(|| {
        let token = RATIO.set(0.25);
        RATIO.reset(token).unwrap();
    });
    assert_eq!(context, before);
    context.run(|| COUNT.set(8));
    assert_ne!(context, before);
}

/// Contexts that hold equal inline values are equal, however they got them; shared values
/// must be the same objects.
#[test]
fn inline_values_compare_by_value() {
    let mut one = Context::new();
    let mut other = Context::new();
    one.run(|| FLAG.set(true));
    other.run(|| FLAG.set(true));
    assert_eq!(one, other);
    other.run(|| FLAG.set(false));
    assert_ne!(one, other);
    one.run(|| TEXT.set("x".into()));
    other.run(|| {
        FLAG.set(true);
        TEXT.set("x".into());
    });
    assert_ne!(one, other, "two `String` objects");
}

/// Values of the inline kinds compare by value however their variable stores them: in an
/// `Arc` for a not-inherited variable, as in the map's entry for the usual kind. Other
/// values of not-inherited variables still compare by identity.
#[test]
fn values_of_inline_kinds_compare_by_value_in_an_arc_too() {
    let mut one = Context::new();
    let mut other = Context::new();
    one.run(|| SMALL.set(-3));
    other.run(|| SMALL.set(-3));
    assert_eq!(one, other, "two `Arc`s holding -3");
    assert_eq!(other, one);
    other.run(|| SMALL.set(3));
    assert_ne!(one, other);
    assert_ne!(other, one);
    other.run(|| SMALL.set(-3));
    assert_eq!(one, other);
    one.run(|| NOTE.set("n".into()));
    other.run(|| NOTE.set("n".into()));
    assert_ne!(
        one, other,
        "two `String` objects of a not-inherited variable"
    );
    assert_ne!(other, one);
}

/// A squashed execution context holds the same values as the chain it was squashed from.
#[test]
fn squashing_keeps_the_values_equal() {
    let ec = Context::new().run(|| {
        COUNT.set(1);
        run_with_logical_context(&mut LogicalContext::new(), || {
            FLAG.set(true);
            COUNT.set(2);
            get_execution_context()
        })
    });
    assert_eq!(ec.depth(), 2);
    let squashed = ec.squashed();
    assert_eq!(Context::from(ec.clone()), Context::from(squashed.clone()));
    assert_eq!(squashed.get(&COUNT), Some(2));
    let selected = ec.select(&[COUNT.id()]);
    assert_eq!(selected.get(&COUNT), Some(2));
    assert_eq!(selected.get(&FLAG), None);
}

/// Pinned and not-inherited variables keep their values in an `Arc`, but the cache copies
/// them as it copies inline ones: every read answers what the context holds, through sets,
/// resets, snapshots, runs and logical contexts.
#[test]
fn shared_values_of_inline_kinds_read_back_everywhere() {
    std::thread::spawn(|| {
        for round in 0..3_i8 {
            ZONE.set(u64::from(round.unsigned_abs()) + 10);
            let token = SMALL.set(-round);
            assert_eq!(
                (ZONE.get(), SMALL.get()),
                (Some(10 + round as u64), Some(-round))
            );
            assert_eq!(SMALL.with(|value| value.copied()), Some(-round));
            let snapshot = copy_context();
            SMALL.set(i8::MIN);
            assert_eq!(SMALL.get(), Some(i8::MIN));
            assert_eq!(snapshot.get(&SMALL), Some(-round));
            SMALL.reset(token).unwrap();
            assert_eq!(SMALL.get(), None);
            let mut lc = LogicalContext::new();
            run_with_logical_context(&mut lc, || {
                assert_eq!(ZONE.get(), Some(10 + round as u64));
                SMALL.set(5);
                assert_eq!(SMALL.get(), Some(5));
            });
            assert_eq!(SMALL.get(), None);
            assert_eq!(lc.get(&SMALL), Some(5));
            // A thread started here inherits the pinned value, not the other.
            let ec = get_execution_context();
            assert_eq!(ec.inherited().get(&ZONE), Some(10 + round as u64));
            assert_eq!(ec.inherited().get(&SMALL), None);
        }
    })
    .join()
    .unwrap();
}

/// A value read by `with` is a copy for the inline kinds: changing the variable inside the
/// closure leaves the copy as it was, and nothing is retired.
#[test]
fn with_lends_a_copy_that_outlives_changes() {
    let mut context = Context::new();
    context.run(|| {
        COUNT.set(1);
        COUNT.with(|value| {
            COUNT.set(2);
            COUNT.delete().unwrap();
            assert_eq!(value, Some(&1));
        });
        assert_eq!(COUNT.get(), None);
        assert_eq!(RATIO.with(|value| value.copied()), Some(0.5), "the default");
    });
}

/// Iteration shows inline values as their own types, pinned ones not at all.
#[test]
fn iteration_shows_inline_values_as_their_types() {
    let mut context = Context::new();
    context.run(|| {
        COUNT.set(u64::MAX);
        FLAG.set(false);
        RATIO.set(-1.5);
        ZONE.set(3);
    });
    let mut seen: Vec<String> = context
        .iter()
        .map(|(var, value)| {
            let shown = if let Some(n) = value.downcast_ref::<u64>() {
                n.to_string()
            } else if let Some(flag) = value.downcast_ref::<bool>() {
                flag.to_string()
            } else if let Some(ratio) = value.downcast_ref::<f32>() {
                ratio.to_string()
            } else {
                "?".into()
            };
            format!("{}={shown}", var.name())
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        ["count=18446744073709551615", "flag=false", "ratio=-1.5"]
    );
    let ec: ExecutionContext = context.execution_context();
    assert_eq!(ec.get(&ZONE), Some(3));
}

/// `get` of a primitive answers from each of its three paths the same way: a cache hit, a
/// cached absence (the default, out of line), and a miss (looked up, then cached). Each read
/// is made twice, so that the second is served by what the first cached.
#[test]
fn get_of_a_primitive_answers_alike_from_hit_absence_and_miss() {
    static LIMIT: ContextVar<u32> = ContextVar::with_default("limit", 7);
    static NAME: ContextVar<&'static str> = ContextVar::new("name");
    static LAZY: ContextVar<i64> = ContextVar::with_default_fn("lazy", || -3);

    Context::new().run(|| {
        for _ in 0..2 {
            assert_eq!(LIMIT.get(), Some(7), "the default, while unset");
            assert_eq!(NAME.get(), None, "no default: nothing");
            assert_eq!(LAZY.get(), Some(-3), "a lazy default");
        }
        let token = LIMIT.set(9);
        NAME.set("n");
        for _ in 0..2 {
            assert_eq!(LIMIT.get(), Some(9));
            assert_eq!(NAME.get(), Some("n"));
        }
        // A snapshot taken now, entered elsewhere: its first reads miss the cache.
        let mut snapshot = copy_context();
        LIMIT.reset(token).unwrap();
        for _ in 0..2 {
            assert_eq!(LIMIT.get(), Some(7), "the default again after the reset");
        }
        snapshot.run(|| {
            for _ in 0..2 {
                assert_eq!(LIMIT.get(), Some(9));
                assert_eq!(NAME.get(), Some("n"));
                assert_eq!(LAZY.get(), Some(-3));
            }
            LAZY.set(4);
            assert_eq!(LAZY.get(), Some(4));
        });
        assert_eq!(LAZY.get(), Some(-3), "the snapshot's set stays in it");
        assert_eq!(snapshot.get(&LAZY), Some(4));
    });
}
