//! PEP 567 semantics: CPython's `Lib/test/test_context.py` `ContextTest` scenarios, translated.
//!
//! Scenarios with no Rust counterpart are left out on purpose:
//! - argument type errors (`ContextVar(1)`, `ctx[1]`, `Context(1)`, `ctx.run()` with no
//!   callable) and subclassing: the type system rules them out;
//! - `test_context_run_7` (a recursive `ctx.run` raises "is already entered"): `Context::run`
//!   takes `&mut self`, so running a context inside its own `run` does not compile;
//! - `test_context_getset_5` (a mutable value mutated through one context): values are shared
//!   immutably between contexts, so there is nothing to mutate in place.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use contextvars::{
    Context, ContextVar, ExecutionContext, LogicalContext, TokenError, copy_context,
    get_execution_context, run_with_execution_context, run_with_logical_context,
};

mod common;
use common::on_fresh_thread;

/// The panic message carried by a `catch_unwind` error.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<non-string panic>")
}

// test_context_get_context_1 / test_context_new_1.
#[test]
fn new_context_is_empty_and_copy_context_copies() {
    static VAR: ContextVar<u8> = ContextVar::new("var");

    on_fresh_thread(|| {
        let empty = Context::new();
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert!(empty.vars().next().is_none());
        assert!(copy_context().is_empty());

        VAR.set(1);
        let copy = copy_context();
        assert_eq!(copy.len(), 1);
        assert_eq!(copy.get(&VAR), Some(1));
        assert!(Context::default().is_empty());
    });
}

// test_context_run_2: arguments in, results out.
#[test]
fn run_forwards_the_result() {
    let mut ctx = Context::new();
    assert_eq!(ctx.run(|| 42), 42);
    let owned = String::from("moved in");
    let (text, number) = ctx.run(move || (owned, 7));
    assert_eq!((text.as_str(), number), ("moved in", 7));
    let mut counter = 0;
    ctx.run(|| counter += 1);
    assert_eq!(counter, 1);
}

// test_context_run_3 and test_context_run_5: a panic propagates, the caller's context is
// restored, and the set made before the panic stays in the context that was run.
#[test]
fn panic_in_run_propagates_and_does_not_leak() {
    static VAR: ContextVar<&str> = ContextVar::new("var");

    on_fresh_thread(|| {
        VAR.set("outer");
        let mut ctx = Context::new();
        let result = catch_unwind(AssertUnwindSafe(|| {
            ctx.run(|| {
                VAR.set("spam");
                panic!("boom");
            })
        }));
        let payload = result.expect_err("the panic propagates");
        assert_eq!(panic_message(&*payload), "boom");
        assert_eq!(VAR.get(), Some("outer"));
        assert_eq!(ctx.get(&VAR), Some("spam"));
        // The context still works.
        assert_eq!(ctx.run(|| VAR.get()), Some("spam"));
    });
}

// test_context_run_4.
#[test]
fn sets_in_one_context_are_invisible_in_another() {
    static VAR: ContextVar<i32> = ContextVar::new("var");

    on_fresh_thread(|| {
        let mut ctx1 = Context::new();
        let mut ctx2 = Context::new();

        let inner_copy = ctx1.run(|| {
            assert_eq!(VAR.get(), None);
            VAR.set(1);
            assert_eq!(VAR.get(), Some(1));
            ctx2.run(|| {
                assert_eq!(VAR.get(), None);
                assert!(copy_context().is_empty());
            });
            assert_eq!(VAR.get(), Some(1));
            copy_context()
        });

        assert_eq!(ctx1.get(&VAR), Some(1));
        assert!(ctx1.contains(&VAR));
        assert_eq!(ctx1.len(), 1);
        assert!(ctx2.is_empty());
        assert_eq!(inner_copy.len(), 1);
        // The copy taken inside equals ctx1.
        assert_eq!(inner_copy.get(&VAR), ctx1.get(&VAR));
        assert!(inner_copy.vars().eq(ctx1.vars()));
        assert_eq!(inner_copy, ctx1, "the same values, by identity");
        assert_eq!(VAR.get(), None);
    });
}

// test_context_run_6: defaults are not values of the context.
#[test]
fn inside_run_get_gives_the_default_until_set() {
    static VAR: ContextVar<i32> = ContextVar::with_default("a", 0);

    let mut ctx = Context::new();
    ctx.run(|| {
        assert_eq!(VAR.get(), Some(0));
        assert_eq!(copy_context().get(&VAR), None);
        VAR.set(42);
        assert_eq!(VAR.get(), Some(42));
        assert_eq!(copy_context().get(&VAR), Some(42));
    });
    assert_eq!(ctx.get(&VAR), Some(42));
}

// test_context_getset_1.
#[test]
fn get_set_reset_and_tokens() {
    static C: ContextVar<&str> = ContextVar::new("c");

    Context::new().run(|| {
        assert_eq!(C.get(), None);
        assert_eq!(C.get_or("fallback"), "fallback");

        let t0 = C.set("42");
        assert_eq!(C.get(), Some("42"));
        assert_eq!(C.get_or("fallback"), "42");
        assert_eq!(t0.old_value(), None); // Token.MISSING
        assert_eq!(t0.var_id(), C.id());

        let t = C.set("spam");
        assert_eq!(C.get(), Some("spam"));
        assert_eq!(t.old_value(), Some("42"));
        C.reset(t).unwrap();
        assert_eq!(C.get(), Some("42"));
        // A second `C.reset(t)` does not compile: `reset` consumed the token
        // (PEP 567's "already used" RuntimeError; see tests/compile_fail).

        C.set("spam2");
        assert_eq!(C.get(), Some("spam2"));

        let ctx1 = copy_context();
        assert!(ctx1.contains(&C));

        C.reset(t0).unwrap();
        assert_eq!(C.get(), None);

        // The copy taken earlier keeps its value.
        assert!(ctx1.contains(&C));
        assert_eq!(ctx1.get(&C), Some("spam2"));
        assert_eq!(ctx1.len(), 1);
        let names: Vec<&str> = ctx1.vars().map(|info| info.name()).collect();
        assert_eq!(names, ["c"]);
        assert_eq!(ctx1.vars().next().unwrap().id(), C.id());
    });
}

// test_context_getset_2.
#[test]
fn reset_with_another_variables_token_is_an_error() {
    static V1: ContextVar<i32> = ContextVar::new("v1");
    static V2: ContextVar<i32> = ContextVar::new("v2");

    Context::new().run(|| {
        let t1 = V1.set(42);
        assert_eq!(V2.reset(t1), Err(TokenError::WrongVar));
        // Nothing changed (the token was consumed).
        assert_eq!((V1.get(), V2.get()), (Some(42), None));
        let t1 = V1.set(43);
        V1.reset(t1).unwrap();
        assert_eq!(V1.get(), Some(42));
        assert!(TokenError::WrongVar.to_string().contains("different"));
    });
}

// test_context_getset_3: a default is not a key; set adds the key, reset removes it.
#[test]
fn defaults_are_not_keys_and_reset_removes_the_key() {
    static VAR: ContextVar<i32> = ContextVar::with_default("var", 42);

    let mut ctx = Context::new();
    let token = ctx.run(|| {
        assert_eq!(VAR.get(), Some(42));
        assert!(!VAR.is_set());
        let current = copy_context();
        assert!(!current.contains(&VAR) && current.is_empty() && current.vars().next().is_none());
        VAR.set(0)
    });
    assert!(ctx.contains(&VAR));
    assert_eq!(ctx.len(), 1);
    assert_eq!(ctx.get(&VAR), Some(0));

    ctx.run(|| {
        assert!(VAR.is_set());
        VAR.reset(token).unwrap();
        assert_eq!(VAR.get(), Some(42));
        assert!(!copy_context().contains(&VAR));
    });
    assert!(!ctx.contains(&VAR));
    assert_eq!(ctx.len(), 0);
    assert!(ctx.is_empty());
    assert_eq!(ctx.get(&VAR), None);
}

// test_context_getset_4: a token created in another context.
#[test]
fn reset_in_another_context_is_an_error() {
    static VAR: ContextVar<i32> = ContextVar::new("var");

    on_fresh_thread(|| {
        let mut ctx = Context::new();
        let token = ctx.run(|| VAR.set(1));
        assert_eq!(VAR.reset(token), Err(TokenError::WrongContext));
        assert_eq!(VAR.get(), None);
        assert_eq!(ctx.get(&VAR), Some(1));
        // A copy of the context is another context.
        let token = ctx.run(|| VAR.set(1));
        let mut copy = ctx.clone();
        assert_eq!(copy.run(|| VAR.reset(token)), Err(TokenError::WrongContext));
        assert_eq!(copy.get(&VAR), Some(1));
        // In its own context a token works.
        let token = ctx.run(|| {
            VAR.delete().unwrap();
            VAR.set(1)
        });
        ctx.run(|| VAR.reset(token)).unwrap();
        assert_eq!(ctx.get(&VAR), None);
        assert_eq!(copy.get(&VAR), Some(1));

        // The same holds for the thread's own context and a context copied from it.
        let outer = VAR.set(5);
        assert_eq!(
            copy_context().run(|| VAR.reset(outer)),
            Err(TokenError::WrongContext)
        );
        assert_eq!(VAR.get(), Some(5));
        let outer = VAR.set(6);
        VAR.reset(outer).unwrap();
        assert_eq!(VAR.get(), Some(5));
        assert!(TokenError::WrongContext.to_string().contains("different"));
    });
}

#[test]
fn token_old_value_and_debug() {
    static VAR: ContextVar<String> = ContextVar::new("token_var");

    Context::new().run(|| {
        let first = VAR.set("a".to_string());
        let second = VAR.set("b".to_string());
        assert_eq!(first.old_value(), None);
        assert_eq!(second.old_value().as_deref(), Some("a"));

        let repr = format!("{second:?}");
        assert!(repr.contains("token_var"), "{repr}");
        VAR.reset(second).unwrap();
        assert_eq!(VAR.get().as_deref(), Some("a"));

        assert_eq!(VAR.name(), "token_var");
        assert!(format!("{VAR:?}").contains("token_var"));
    });
}

// test_context_copy_1: copies are isolated in both directions.
#[test]
fn copies_are_isolated_both_ways() {
    static VAR: ContextVar<&str> = ContextVar::new("var");

    on_fresh_thread(|| {
        let mut ctx1 = Context::new();
        let mut ctx2 = ctx1.run(|| {
            VAR.set("spam");
            let mut ctx2 = copy_context();
            assert_eq!(ctx2.get(&VAR), Some("spam"));
            VAR.set("ham");
            assert_eq!(ctx2.get(&VAR), Some("spam"));
            ctx2.run(|| {
                assert_eq!(VAR.get(), Some("spam"));
                VAR.set("eggs");
                assert_eq!(VAR.get(), Some("eggs"));
            });
            assert_eq!(VAR.get(), Some("ham"));
            ctx2
        });
        assert_eq!(ctx1.get(&VAR), Some("ham"));
        assert_eq!(ctx2.get(&VAR), Some("eggs"));

        // `clone` is `Context.copy()`.
        let mut ctx3 = ctx1.clone();
        ctx3.run(|| VAR.set("toast"));
        ctx1.run(|| VAR.set("jam"));
        assert_eq!(
            (ctx1.get(&VAR), ctx2.get(&VAR), ctx3.get(&VAR)),
            (Some("jam"), Some("eggs"), Some("toast"))
        );
        ctx2.run(|| assert_eq!(VAR.get(), Some("eggs")));
        assert_eq!(VAR.get(), None);
    });
}

/// A non-zero xorshift state derived from `n`.
fn seed(n: u64) -> u64 {
    (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

/// A small deterministic generator for sleeps.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

// test_context_threads_1: ten threads setting and reading the same variable.
#[test]
fn threads_see_only_their_own_values() {
    static VAR: ContextVar<u64> = ContextVar::new("threaded");
    const THREADS: u64 = 10;

    let rounds = if cfg!(miri) { 1 } else { 5 };
    for round in 0..rounds {
        let barrier = Arc::new(Barrier::new(THREADS as usize));
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let mut random = seed(round * THREADS + thread);
                    // Check only after the barrier: a panic before it would hang the others.
                    barrier.wait();
                    assert_eq!(VAR.get(), None);
                    for step in 0..20 {
                        let mine = thread * 1_000 + step;
                        VAR.set(mine);
                        std::thread::sleep(Duration::from_micros(next_random(&mut random) % 300));
                        assert_eq!(VAR.get(), Some(mine));
                        VAR.with(|value| assert_eq!(value, Some(&mine)));
                        let copy = copy_context();
                        std::thread::sleep(Duration::from_micros(next_random(&mut random) % 100));
                        assert_eq!(copy.get(&VAR), Some(mine));
                    }
                    VAR.get()
                })
            })
            .collect();
        for (thread, handle) in (0..THREADS).zip(handles) {
            let last = handle.join().expect("a worker panicked");
            assert_eq!(last, Some(thread * 1_000 + 19));
        }
    }
}

// The same with contexts handed to the threads: each starts from the main thread's values.
#[test]
fn threads_running_copies_of_one_context_stay_isolated() {
    static VAR: ContextVar<u64> = ContextVar::new("shared_start");
    static ORIGIN: ContextVar<&str> = ContextVar::new("origin");

    on_fresh_thread(|| {
        ORIGIN.set("main");
        VAR.set(0);
        let template = copy_context();
        let handles: Vec<_> = (1..=8_u64)
            .map(|thread| {
                let mut ctx = template.clone();
                std::thread::spawn(move || {
                    let mut random = seed(thread);
                    for step in 0..20 {
                        ctx.run(|| {
                            assert_eq!(ORIGIN.get(), Some("main"));
                            let previous = VAR.get().unwrap();
                            assert!(previous == 0 || previous / 100 == thread);
                            VAR.set(thread * 100 + step);
                        });
                        std::thread::sleep(Duration::from_micros(next_random(&mut random) % 200));
                    }
                    assert_eq!(VAR.get(), None);
                    ctx
                })
            })
            .collect();
        for (thread, handle) in (1..=8_u64).zip(handles) {
            let ctx = handle.join().expect("a worker panicked");
            assert_eq!(ctx.get(&VAR), Some(thread * 100 + 19));
        }
        assert_eq!(VAR.get(), Some(0));
        assert_eq!(template.get(&VAR), Some(0));
    });
}

#[test]
fn scope_sets_for_the_closure_and_restores_even_on_panic() {
    static VAR: ContextVar<u32> = ContextVar::with_default("scoped", 0);

    on_fresh_thread(|| {
        assert_eq!(VAR.scope(1, || VAR.get()), Some(1));
        assert_eq!(VAR.get(), Some(0));
        assert!(!VAR.is_set());

        VAR.set(5);
        let nested = VAR.scope(6, || {
            let inner = VAR.scope(7, || VAR.get());
            // Changes inside the scope are undone with it.
            VAR.set(8);
            (inner, VAR.get())
        });
        assert_eq!(nested, (Some(7), Some(8)));
        assert_eq!(VAR.get(), Some(5));

        let result = catch_unwind(|| VAR.scope(9, || panic!("inside scope")));
        assert_eq!(panic_message(&*result.unwrap_err()), "inside scope");
        assert_eq!(VAR.get(), Some(5));
        assert_eq!(VAR.get_topmost(), Some(5));
    });
}

#[test]
fn is_set_ignores_defaults() {
    static PLAIN: ContextVar<u8> = ContextVar::new("plain");
    static DEFAULTED: ContextVar<u8> = ContextVar::with_default("defaulted", 1);
    static LAZY: ContextVar<String> = ContextVar::with_default_fn("lazy", || "made".to_string());

    on_fresh_thread(|| {
        assert!(!PLAIN.is_set() && !DEFAULTED.is_set() && !LAZY.is_set());
        assert_eq!(LAZY.get().as_deref(), Some("made"));
        assert_eq!(PLAIN.get_or(2), 2);

        let token = PLAIN.set(3);
        DEFAULTED.set(4);
        LAZY.set("set".to_string());
        assert!(PLAIN.is_set() && DEFAULTED.is_set() && LAZY.is_set());
        assert_eq!(LAZY.get().as_deref(), Some("set"));
        PLAIN.reset(token).unwrap();
        assert!(!PLAIN.is_set());
        // A value in a lower logical context counts.
        copy_context().run(|| assert!(DEFAULTED.is_set()));
        DEFAULTED.delete().unwrap();
        assert!(!DEFAULTED.is_set());
        assert_eq!(DEFAULTED.get(), Some(1));
    });
}

// PEP 567 §contextvars.ContextVar: where the variable has no value, `get(default)` returns the
// `default` argument if one is given, and only otherwise the variable's own default. The docs
// of `get_or` say the same ("else `default`").
#[test]
fn get_or_prefers_the_given_default_over_the_variables_default() {
    static DEFAULTED: ContextVar<u8> = ContextVar::with_default("defaulted", 1);
    static LAZY: ContextVar<String> = ContextVar::with_default_fn("lazy", || "made".to_string());

    on_fresh_thread(|| {
        assert_eq!(DEFAULTED.get(), Some(1));
        assert_eq!(
            DEFAULTED.get_or(2),
            2,
            "the argument wins over the variable's default"
        );
        assert_eq!(LAZY.get_or("given".to_string()), "given");
        DEFAULTED.set(3);
        assert_eq!(DEFAULTED.get_or(2), 3);
    });
}

#[test]
fn context_execution_context_is_a_snapshot_of_the_context() {
    static VAR: ContextVar<u32> = ContextVar::new("var");
    static OTHER: ContextVar<u32> = ContextVar::new("other");

    on_fresh_thread(|| {
        VAR.set(1);
        let mut ctx = copy_context();
        ctx.run(|| OTHER.set(2));
        let ec = ctx.execution_context();
        assert_eq!((ec.get(&VAR), ec.get(&OTHER)), (Some(1), Some(2)));
        assert_eq!(ec.vars().count(), 2);

        // Later changes to the context do not reach the snapshot, nor the other way round.
        ctx.run(|| {
            VAR.set(10);
            OTHER.set(20);
        });
        assert_eq!((ec.get(&VAR), ec.get(&OTHER)), (Some(1), Some(2)));
        let seen = run_with_execution_context(&ec, || {
            let seen = (VAR.get(), OTHER.get());
            VAR.set(100);
            seen
        });
        assert_eq!(seen, (Some(1), Some(2)));
        assert_eq!(ec.get(&VAR), Some(1));
        assert_eq!((ctx.get(&VAR), ctx.get(&OTHER)), (Some(10), Some(20)));

        assert!(Context::new().execution_context().is_empty());
    });
}

#[test]
fn context_from_an_execution_context_runs_on_top_of_it() {
    static VAR: ContextVar<u32> = ContextVar::new("var");
    static OTHER: ContextVar<u32> = ContextVar::new("other");

    on_fresh_thread(|| {
        VAR.set(1);
        let ec = get_execution_context();
        let mut ctx = Context::from(ec.clone());
        assert_eq!(ctx.get(&VAR), Some(1));
        assert_eq!(ctx.len(), 1);
        let token = ctx.run(|| {
            assert_eq!(VAR.get(), Some(1));
            OTHER.set(3);
            VAR.set(2)
        });
        // PEP 567: the value the variable had, though it came from the snapshot beneath.
        assert_eq!(token.old_value(), Some(1));
        assert_eq!((ctx.get(&VAR), ctx.get(&OTHER)), (Some(2), Some(3)));
        assert_eq!(ctx.len(), 2);
        assert_eq!((ec.get(&VAR), ec.get(&OTHER)), (Some(1), None));
        // Resetting the token uncovers the snapshot's value again.
        ctx.run(|| VAR.reset(token)).unwrap();
        assert_eq!(ctx.get(&VAR), Some(1));
        assert!(Context::from(ExecutionContext::new()).is_empty());
    });
}

#[test]
fn context_debug_lists_its_variables() {
    static VAR: ContextVar<u8> = ContextVar::new("debugged_var");

    let mut ctx = Context::new();
    ctx.run(|| VAR.set(1));
    let repr = format!("{ctx:?}");
    assert!(repr.contains("debugged_var"), "{repr}");
    assert!(format!("{:?}", ctx.execution_context()).contains("debugged_var"));
}

#[test]
fn zero_sized_values_are_values() {
    static UNIT: ContextVar<()> = ContextVar::new("unit");

    on_fresh_thread(|| {
        assert_eq!(UNIT.get(), None);
        assert!(UNIT.with(|value| value.is_none()));
        let token = UNIT.set(());
        assert_eq!(UNIT.get(), Some(()));
        assert!(UNIT.with(|value| value.is_some()));
        assert!(UNIT.is_set());
        assert_eq!(token.old_value(), None);
        let mut ctx = copy_context();
        assert_eq!(ctx.get(&UNIT), Some(()));
        UNIT.reset(token).unwrap();
        assert_eq!(UNIT.get(), None);
        assert!(ctx.run(|| UNIT.is_set()));
        ctx.run(|| UNIT.delete()).unwrap_err();
    });
}

// PEP 567's `ctx.items()`, `keys()`, `values()`, iteration and `==`.
#[test]
fn contexts_list_their_items_each_variable_once_and_compare_by_value_identity() {
    static A: ContextVar<u32> = ContextVar::new("items_a");
    static B: ContextVar<String> = ContextVar::new("items_b");
    static C: ContextVar<u32> = ContextVar::with_default("items_c", 9);

    on_fresh_thread(|| {
        A.set(1);
        B.set("below".to_string());
        run_with_logical_context(&mut LogicalContext::new(), || {
            // A is set again above: only the upper value is listed.
            A.set(2);
            let ctx = copy_context();
            let mut items: Vec<(String, String)> = ctx
                .iter()
                .map(|(var, value)| {
                    let shown = match (value.downcast_ref::<u32>(), value.downcast_ref::<String>())
                    {
                        (Some(n), _) => n.to_string(),
                        (_, Some(text)) => text.clone(),
                        _ => panic!("unexpected type for {var:?}"),
                    };
                    (var.name().to_string(), shown)
                })
                .collect();
            items.sort();
            assert_eq!(
                items,
                [
                    ("items_a".to_string(), "2".to_string()),
                    ("items_b".to_string(), "below".to_string())
                ]
            );
            assert_eq!(ctx.len(), 2);
            assert_eq!(ctx.vars().count(), 2);
            assert_eq!(ctx.values().count(), 2);
            assert_eq!((&ctx).into_iter().count(), 2);
            // A default is not an item.
            assert!(ctx.vars().all(|var| var.id() != C.id()));

            // Typed access, without cloning.
            assert_eq!(ctx.get_ref(&A), Some(&2));
            assert_eq!(ctx.get_ref(&B).map(String::as_str), Some("below"));
            assert_eq!(ctx.get_ref(&C), None);

            // The execution context lists the same, with its depth.
            let ec = get_execution_context();
            assert_eq!(ec.depth(), 2);
            assert_eq!(ec.iter().count(), 2);
            assert_eq!(ec.get_ref(&A), Some(&2));

            // Equality: the same values by identity (inline ones, such as `A`'s, by value).
            let copy = ctx.clone();
            assert_eq!(copy, ctx);
            assert_eq!(copy_context(), ctx);
            let mut changed = ctx.clone();
            changed.run(|| A.set(2)); // an integer: equal by value
            assert_eq!(changed, ctx);
            changed.run(|| B.set("below".into())); // equal, but another value object
            assert_ne!(changed, ctx);
            let mut more = ctx.clone();
            more.run(|| C.set(9));
            assert_ne!(more, ctx);
            assert_ne!(ctx, more);
            assert_eq!(Context::new(), Context::new());
            assert_ne!(Context::new(), ctx);
        });
    });
}

#[test]
fn a_variable_reports_its_own_default() {
    static PLAIN: ContextVar<u8> = ContextVar::new("plain_default");
    static VALUE: ContextVar<u8> = ContextVar::with_default("value_default", 3);
    static LAZY: ContextVar<Vec<u8>> = ContextVar::with_default_fn("lazy_default", || vec![1]);

    on_fresh_thread(|| {
        VALUE.set(4);
        LAZY.set(vec![]);
        assert_eq!(PLAIN.default_value(), None);
        assert!(!PLAIN.has_default());
        assert_eq!(VALUE.default_value(), Some(3));
        assert!(VALUE.has_default());
        assert_eq!(LAZY.default_value(), Some(vec![1]));
        assert_eq!(VALUE.get(), Some(4));
    });
}
