//! Generator scenarios from PEP 550: §Generators (the `var1`/`var2` example, the detailed
//! `gen`/`nested_gen` walk and the decimal `fractions()` example), §contextlib.contextmanager,
//! §Should "yield from" leak context changes?, §Generators Transformed into Iterators and
//! §Asynchronous Generators, on [`Gen`], [`ContextualIter`] and [`ContextualStream`].
//!
//! [`ContextualStream`]: exec_context::ContextualStream

use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use contextvars::{Context, ContextVar, Token, TokenError, get_execution_context};
use exec_context::{Co, ContextualIter, Gen, GenError, GeneratorState, IteratorExt, StreamExt};
use futures_core::Stream;

static VAR1: ContextVar<&'static str> = ContextVar::new("var1");
static VAR2: ContextVar<&'static str> = ContextVar::new("var2");
static OUTER: ContextVar<u32> = ContextVar::new("outer");
static VAR: ContextVar<&'static str> = ContextVar::new("var");

/// Runs `f` in an empty context of its own, whatever the test thread had.
fn clean<R>(f: impl FnOnce() -> R) -> R {
    Context::new().run(f)
}

fn depth() -> usize {
    get_execution_context().depth()
}

/// Runs a generator to its end, returning what it yielded and what it returned.
fn drain<Y, R, F: Future<Output = R>>(generator: &mut Gen<Y, R, (), F>) -> (Vec<Y>, R) {
    let mut yielded = Vec::new();
    loop {
        match generator.resume() {
            Ok(GeneratorState::Yielded(value)) => yielded.push(value),
            Ok(GeneratorState::Complete(result)) => return (yielded, result),
            Err(error) => panic!("the generator failed: {error}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PEP 550 §Generators (high-level specification)
// ---------------------------------------------------------------------------------------------

#[test]
fn pep550_generators_var1_var2_example() {
    clean(|| {
        let mut g = Gen::new(|co| async move {
            VAR1.set("gen");
            assert_eq!(VAR1.get(), Some("gen"));
            assert_eq!(VAR2.get(), Some("main"));
            co.yield_(1).await;

            // Modification to var1 in main() is shielded by gen()'s local modification.
            assert_eq!(VAR1.get(), Some("gen"));
            // But modifications to var2 are visible.
            assert_eq!(VAR2.get(), Some("main modified"));
            co.yield_(2).await;
        });

        VAR1.set("main");
        VAR2.set("main");
        assert_eq!(g.next(), Some(1));

        // Modification of var1 in gen() is not visible.
        assert_eq!(VAR1.get(), Some("main"));

        VAR1.set("main modified");
        VAR2.set("main modified");
        assert_eq!(g.next(), Some(2));
        assert_eq!(g.resume(), Ok(GeneratorState::Complete(())));
        assert_eq!(g.next(), None);

        assert_eq!(VAR1.get(), Some("main modified"));
        assert_eq!(VAR2.get(), Some("main modified"));
        // The generator kept its own change in its logical context.
        let lc = g
            .logical_context()
            .expect("a generator has a logical context");
        assert_eq!(lc.get(&VAR1), Some("gen"));
        assert_eq!(lc.get(&VAR2), None);
    });
}

// ---------------------------------------------------------------------------------------------
// PEP 550 §Detailed Specification §Generators: the EC stack through `gen` and `nested_gen`
// ---------------------------------------------------------------------------------------------

/// What `nested_gen` saw at one of its steps.
#[derive(Debug, PartialEq)]
struct Seen {
    var1: Option<&'static str>,
    var2: Option<&'static str>,
    depth: usize,
}

fn seen() -> Seen {
    Seen {
        var1: VAR1.get(),
        var2: VAR2.get(),
        depth: depth(),
    }
}

fn nested_gen() -> Gen<Seen, (), (), impl Future<Output = ()>> {
    Gen::new(|co| async move {
        // EC = [outer_LC({outer}), gen_LC({var1: 'var1-gen', var2: 'var2-gen'}), nested_gen_LC()]
        // (an empty logical context is not a layer of a snapshot)
        assert_eq!(
            seen(),
            Seen {
                var1: Some("var1-gen"),
                var2: Some("var2-gen"),
                depth: 2,
            }
        );
        VAR1.set("var1-nested-gen");
        // EC = [outer_LC, gen_LC(..), nested_gen_LC({var1: 'var1-nested-gen'})]
        co.yield_(seen()).await;

        // EC = [outer_LC, gen_LC({var1: 'var1-gen-mod', var2: 'var2-gen-mod'}),
        //       nested_gen_LC({var1: 'var1-nested-gen'})]
        co.yield_(seen()).await;
    })
}

#[test]
fn pep550_nested_generator_walk() {
    clean(|| {
        OUTER.set(0);
        assert_eq!(depth(), 1); // EC = [outer_LC()]

        // gen_LC is created for the generator object `g`; `gen` hands on what `nested_gen`
        // yields so the walk can be checked from outside too.
        let mut g = Gen::new(|co| async move {
            VAR1.set("var1-gen");
            VAR2.set("var2-gen");
            // EC = [outer_LC(), gen_LC({var1: 'var1-gen', var2: 'var2-gen'})]
            assert_eq!(depth(), 2);

            let mut n = nested_gen(); // nested_gen_LC is created
            let first = n.next().expect("nested_gen yields twice");
            // Back in gen: the nested generator's change is not visible.
            assert_eq!(VAR1.get(), Some("var1-gen"));
            assert_eq!(VAR2.get(), Some("var2-gen"));
            assert_eq!(depth(), 2);
            co.yield_(first).await;

            VAR1.set("var1-gen-mod");
            VAR2.set("var2-gen-mod");
            let second = n.next().expect("nested_gen yields twice");
            assert_eq!(VAR1.get(), Some("var1-gen-mod"));
            co.yield_(second).await;

            assert_eq!(n.next(), None);
            let nested_lc = n
                .logical_context()
                .expect("nested_gen has a logical context");
            (nested_lc.get(&VAR1), nested_lc.get(&VAR2))
        });

        let (steps, nested_lc) = drain(&mut g);
        assert_eq!(
            steps,
            [
                Seen {
                    var1: Some("var1-nested-gen"),
                    var2: Some("var2-gen"),
                    depth: 3,
                },
                Seen {
                    var1: Some("var1-nested-gen"),
                    var2: Some("var2-gen-mod"),
                    depth: 3,
                },
            ]
        );
        assert_eq!(nested_lc, (Some("var1-nested-gen"), None));

        // EC = [outer_LC()]
        assert_eq!(depth(), 1);
        assert_eq!((VAR1.get(), VAR2.get(), OUTER.get()), (None, None, Some(0)));
    });
}

// ---------------------------------------------------------------------------------------------
// PEP 550 §Generators: decimal precision in interleaved generators (`fractions()`)
// ---------------------------------------------------------------------------------------------

/// A tiny stand-in for `decimal.Context`: only the precision matters here.
#[derive(Clone, Copy, Debug, PartialEq)]
struct DecimalContext {
    prec: usize,
}

static DECIMAL_CTX: ContextVar<DecimalContext> =
    ContextVar::with_default("decimal context", DecimalContext { prec: 28 });

fn getcontext() -> DecimalContext {
    DECIMAL_CTX.get().expect("the variable has a default")
}

/// `Decimal(x) / Decimal(y)` rounded to the current context's significant digits.
fn divide(x: u64, y: u64) -> String {
    let value = x as f64 / y as f64;
    let magnitude = value.abs().log10().floor() as i64;
    let decimals = (getcontext().prec as i64 - 1 - magnitude).max(0) as usize;
    format!("{value:.decimals$}")
}

/// `decimal.localcontext()`: sets a precision until dropped.
struct LocalContext {
    token: Option<Token<DecimalContext>>,
}

fn localcontext(prec: usize) -> LocalContext {
    LocalContext {
        token: Some(DECIMAL_CTX.set(DecimalContext { prec })),
    }
}

impl Drop for LocalContext {
    fn drop(&mut self) {
        // A failed reset is recorded as a visible wrong precision rather than a panic in drop.
        let reset = self.token.take().map(|token| DECIMAL_CTX.reset(token));
        if matches!(reset, Some(Err(_))) {
            DECIMAL_CTX.set(DecimalContext { prec: usize::MAX });
        }
    }
}

fn fractions(precision: usize, x: u64, y: u64) -> Gen<String, (), (), impl Future<Output = ()>> {
    Gen::new(move |co| async move {
        let _ctx = localcontext(precision);
        co.yield_(divide(x, y)).await;
        co.yield_(divide(x, y * y)).await;
    })
}

#[test]
fn pep550_fractions_keep_their_own_precision() {
    clean(|| {
        let g1 = fractions(2, 1, 3);
        let g2 = fractions(6, 2, 3);
        let items: Vec<(String, String)> = g1.zip(g2).collect();
        assert_eq!(
            items,
            [
                ("0.33".to_string(), "0.666667".to_string()),
                ("0.11".to_string(), "0.222222".to_string()),
            ]
        );
        assert_eq!(getcontext(), DecimalContext { prec: 28 });
        assert_eq!(depth(), 0);
    });
}

#[test]
fn fractions_without_logical_contexts_get_each_others_precision() {
    // The same generators in context manager mode behave like thread-local state does: the
    // precisions overwrite each other. This is the bug PEP 550 exists to fix.
    clean(|| {
        let mut g1 = fractions(2, 1, 3);
        let mut g2 = fractions(6, 2, 3);
        g1.set_logical_context(None);
        g2.set_logical_context(None);
        assert_eq!(g1.next().as_deref(), Some("0.33"));
        assert_eq!(g2.next().as_deref(), Some("0.666667"));
        assert_eq!(g1.next().as_deref(), Some("0.111111")); // g2's precision
        assert_eq!(g2.next().as_deref(), Some("0.222222"));
    });
}

#[test]
fn decimal_helper_rounds_to_significant_digits() {
    clean(|| {
        let _ctx = localcontext(3);
        assert_eq!(divide(10, 3), "3.33");
        assert_eq!(divide(100, 3), "33.3");
        assert_eq!(divide(1, 30), "0.0333");
    });
}

// ---------------------------------------------------------------------------------------------
// PEP 550 §contextlib.contextmanager
// ---------------------------------------------------------------------------------------------

static CM_VAR: ContextVar<i32> = ContextVar::new("var");

/// PEP 550's `var_context(value)`: set for the `with` body, restore in `finally`.
fn var_context(value: i32) -> Gen<(), (), (), impl Future<Output = ()>> {
    Gen::new(move |co| async move {
        let original = CM_VAR.get();
        CM_VAR.set(value);
        co.yield_(()).await;
        match original {
            Some(original) => drop(CM_VAR.set(original)),
            None => CM_VAR.delete().expect("set above, in the same context"),
        }
    })
}

#[test]
fn contextmanager_mode_reaches_the_with_body() {
    clean(|| {
        OUTER.set(1);
        let depth_before = depth();

        let mut manager = var_context(10);
        manager.set_logical_context(None);
        assert!(manager.logical_context().is_none());

        assert_eq!(manager.next(), Some(())); // __enter__
        // EC = [{}, {var: 10}]: no logical context was pushed for the generator.
        assert_eq!(CM_VAR.get(), Some(10));
        assert_eq!(depth(), depth_before);
        assert_eq!(manager.resume(), Ok(GeneratorState::Complete(()))); // __exit__
        assert_eq!(CM_VAR.get(), None);
    });
}

#[test]
fn contextmanager_with_its_own_logical_context_does_not_reach_the_with_body() {
    clean(|| {
        CM_VAR.set(1);
        let mut manager = var_context(10);
        assert_eq!(manager.next(), Some(()));
        assert_eq!(CM_VAR.get(), Some(1)); // PEP 550's "AssertionError!" case
        assert_eq!(manager.next(), None);
        assert_eq!(CM_VAR.get(), Some(1));
    });
}

#[test]
fn contextmanager_mode_restores_an_outer_value() {
    clean(|| {
        CM_VAR.set(5);
        let mut manager = var_context(10);
        manager.set_logical_context(None);
        manager.next();
        assert_eq!(CM_VAR.get(), Some(10));
        manager.next();
        assert_eq!(CM_VAR.get(), Some(5));
    });
}

// ---------------------------------------------------------------------------------------------
// PEP 550 §Should "yield from" leak context changes?
// ---------------------------------------------------------------------------------------------

static YF: ContextVar<&'static str> = ContextVar::new("var");

fn inner_gen() -> Gen<u32, (), (), impl Future<Output = ()>> {
    Gen::new(|co| async move {
        for i in 0..10 {
            YF.set("gen");
            co.yield_(i).await;
        }
    })
}

#[test]
fn yield_from_a_partially_iterated_generator_does_not_leak() {
    clean(|| {
        let mut outer = Gen::new(|co| async move {
            YF.set("outer_gen");
            let mut g = inner_gen();

            co.yield_(g.next().expect("gen yields")).await;
            // Changes not visible during partial iteration.
            let partial = YF.get();

            co.yield_from(&mut g).await.expect("gen runs to its end");
            let inner_lc = g.logical_context().map(|lc| lc.get(&YF));
            (partial, YF.get(), inner_lc)
        });
        let (yielded, (partial, after, inner_lc)) = drain(&mut outer);
        assert_eq!(yielded, (0..10).collect::<Vec<_>>());
        assert_eq!(partial, Some("outer_gen"));
        assert_eq!(after, Some("outer_gen"));
        assert_eq!(inner_lc, Some(Some("gen"))); // the change stayed inside `gen`
        assert_eq!(YF.get(), None);
    });
}

#[test]
fn for_in_yield_and_yield_from_agree() {
    clean(|| {
        let mut with_for = Gen::new(|co| async move {
            YF.set("outer_gen");
            for i in inner_gen() {
                co.yield_(i).await;
            }
            YF.get()
        });
        let mut with_yield_from = Gen::new(|co| async move {
            YF.set("outer_gen");
            co.yield_from(&mut inner_gen())
                .await
                .expect("gen runs to its end");
            YF.get()
        });
        let (for_yielded, for_result) = drain(&mut with_for);
        let (from_yielded, from_result) = drain(&mut with_yield_from);
        assert_eq!(for_yielded, (0..10).collect::<Vec<_>>());
        assert_eq!(from_yielded, for_yielded);
        assert_eq!(for_result, Some("outer_gen"));
        assert_eq!(from_result, Some("outer_gen"));
    });
}

#[test]
fn yield_from_passes_sent_values_and_returns_the_result() {
    clean(|| {
        let mut outer = Gen::with_resume_arg(|co: Co<u32, u32>| async move {
            let mut inner = Gen::with_resume_arg(|co: Co<u32, u32>| async move {
                let a = co.yield_(1).await;
                let b = co.yield_(2).await;
                a + b
            });
            let sum = co.yield_from(&mut inner).await;
            let again = co.yield_from(&mut inner).await;
            (sum, again)
        });
        assert_eq!(outer.resume_with(0), Ok(GeneratorState::Yielded(1)));
        assert_eq!(outer.resume_with(0), Ok(GeneratorState::Yielded(2)));
        assert_eq!(
            outer.resume_with(40),
            Ok(GeneratorState::Complete((Ok(40), Err(GenError::Finished))))
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Outer changes, shadowing, tokens
// ---------------------------------------------------------------------------------------------

static A: ContextVar<&'static str> = ContextVar::new("a");
static B: ContextVar<&'static str> = ContextVar::new("b");

#[test]
fn outer_changes_are_visible_unless_shadowed() {
    clean(|| {
        let mut g = Gen::new(|co| async move {
            co.yield_((A.get(), B.get())).await;
            A.set("gen");
            co.yield_((A.get(), B.get())).await;
            co.yield_((A.get(), B.get())).await;
            A.delete().expect("set by this generator");
            co.yield_((A.get(), B.get())).await;
        });
        A.set("main-1");
        B.set("main-1");
        assert_eq!(g.next(), Some((Some("main-1"), Some("main-1"))));
        A.set("main-2");
        B.set("main-2");
        assert_eq!(g.next(), Some((Some("gen"), Some("main-2"))));
        A.set("main-3");
        B.set("main-3");
        assert_eq!(g.next(), Some((Some("gen"), Some("main-3")))); // shadowed
        A.set("main-4");
        assert_eq!(g.next(), Some((Some("main-4"), Some("main-3")))); // shadow removed
        B.delete().expect("set by the caller");
        assert_eq!(A.get(), Some("main-4"));
        assert_eq!(g.next(), None);
    });
}

#[test]
fn tokens_follow_the_generator_logical_context() {
    clean(|| {
        let outer_token = VAR.set("main");
        let mut g = Gen::new(|co| async move {
            let token = VAR.set("gen");
            co.yield_(VAR.get()).await;
            // Next step, same logical context: the token still applies.
            VAR.reset(token).expect("same logical context");
            co.yield_(VAR.get()).await;
        });
        assert_eq!(g.next(), Some(Some("gen")));
        assert_eq!(g.next(), Some(Some("main")));
        assert_eq!(g.next(), None);

        // A caller's token cannot be used inside the generator.
        let mut misuse = Gen::new(|co: Co<Result<(), TokenError>>| async move {
            co.yield_(VAR.reset(outer_token)).await;
        });
        assert_eq!(misuse.next(), Some(Err(TokenError::WrongContext)));
        assert!(matches!(misuse.resume(), Ok(GeneratorState::Complete(()))));
        // Nothing changed outside; a token of the caller's own works there.
        assert_eq!(VAR.get(), Some("main"));
        let token = VAR.set("again");
        assert_eq!(VAR.reset(token), Ok(()));
        assert_eq!(VAR.get(), Some("main"));
    });
}

#[test]
fn resume_with_has_send_semantics() {
    static FACTOR: ContextVar<u32> = ContextVar::new("factor");
    clean(|| {
        let mut acc = Gen::with_resume_arg(|co: Co<u32, u32>| async move {
            let mut total = 0;
            loop {
                let sent = co.yield_(total).await;
                // The caller's context is visible at every step.
                total += sent * FACTOR.get().unwrap_or(1);
                if total > 100 {
                    return format!("done at {total}");
                }
            }
        });
        // The first argument has no yield to go to: it is dropped (Python's `send(None)`).
        assert_eq!(acc.resume_with(999), Ok(GeneratorState::Yielded(0)));
        assert_eq!(acc.resume_with(5), Ok(GeneratorState::Yielded(5)));
        FACTOR.set(10);
        assert_eq!(acc.resume_with(5), Ok(GeneratorState::Yielded(55)));
        assert_eq!(
            acc.resume_with(5),
            Ok(GeneratorState::Complete("done at 105".to_string()))
        );
        assert!(acc.is_finished());
        assert_eq!(acc.resume_with(1), Err(GenError::Finished));
    });
}

#[test]
fn first_resume_argument_is_dropped() {
    clean(|| {
        let dropped = Arc::new(Mutex::new(false));
        struct FlagOnDrop(Arc<Mutex<bool>>);
        impl Drop for FlagOnDrop {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = true;
            }
        }
        let mut g = Gen::with_resume_arg(|co: Co<(), FlagOnDrop>| async move {
            let _kept = co.yield_(()).await;
        });
        assert_eq!(
            g.resume_with(FlagOnDrop(dropped.clone())).ok(),
            Some(GeneratorState::Yielded(()))
        );
        assert!(*dropped.lock().unwrap());
    });
}

// ---------------------------------------------------------------------------------------------
// Panics, drops and stalls
// ---------------------------------------------------------------------------------------------

fn sorted_vars() -> Vec<&'static str> {
    let mut names: Vec<_> = get_execution_context().vars().map(|v| v.name()).collect();
    names.sort_unstable();
    names
}

#[test]
fn panic_during_resume_leaves_the_caller_context_unchanged() {
    clean(|| {
        OUTER.set(7);
        let token = VAR1.set("main");
        let (depth_before, vars_before) = (depth(), sorted_vars());

        let mut g = Gen::new(|co| async move {
            VAR1.set("gen");
            co.yield_(()).await;
            VAR2.set("gen");
            if VAR1.get() == Some("gen") {
                panic!("generator body panicked on purpose");
            }
        });
        assert_eq!(g.next(), Some(()));
        let outcome = catch_unwind(AssertUnwindSafe(|| g.resume()));
        assert!(outcome.is_err(), "the panic reaches the caller");

        assert_eq!(depth(), depth_before);
        assert_eq!(sorted_vars(), vars_before);
        assert_eq!(
            (VAR1.get(), VAR2.get(), OUTER.get()),
            (Some("main"), None, Some(7))
        );
        // The caller's logical context is the topmost one again: its token still works.
        assert_eq!(VAR1.reset(token), Ok(()));
        assert_eq!(VAR1.get(), None);

        assert!(g.is_finished());
        assert_eq!(g.resume(), Err(GenError::Finished));
        assert_eq!(g.next(), None);
    });
}

/// Records the value of [`VAR`] when it is dropped.
struct Recorder {
    log: Arc<Mutex<Vec<Option<&'static str>>>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.log.lock().unwrap().push(VAR.get());
    }
}

#[test]
fn a_panicking_body_is_dropped_inside_its_logical_context() {
    clean(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder { log: log.clone() };
        VAR.set("main");
        let mut g = Gen::new(move |co| async move {
            let _recorder = recorder;
            VAR.set("gen");
            co.yield_(()).await;
            panic!("on purpose");
        });
        g.next();
        assert!(catch_unwind(AssertUnwindSafe(|| g.resume())).is_err());
        assert_eq!(*log.lock().unwrap(), [Some("gen")]);
        assert_eq!(VAR.get(), Some("main"));
    });
}

#[test]
fn dropping_a_suspended_generator_drops_its_locals_inside_its_logical_context() {
    clean(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        VAR.set("main");
        let body_log = log.clone();
        let mut g = Gen::new(move |co| async move {
            VAR.set("gen");
            let _recorder = Recorder { log: body_log };
            co.yield_(1).await;
            co.yield_(2).await;
        });
        assert_eq!(g.next(), Some(1));
        assert!(log.lock().unwrap().is_empty());
        drop(g);
        assert_eq!(*log.lock().unwrap(), [Some("gen")]);
        assert_eq!(VAR.get(), Some("main"));
    });
}

/// A generator never resumed drops what its producer captured inside its logical context
/// too, where the producer ran: its destructors see what the producer set, as a suspended
/// body's do.
#[test]
fn dropping_a_generator_never_resumed_drops_its_captures_inside_its_logical_context() {
    clean(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        VAR.set("main");
        let body_log = log.clone();
        let g = Gen::new(move |co: Co<()>| {
            VAR.set("gen");
            let recorder = Recorder { log: body_log };
            async move {
                let _recorder = recorder;
                co.yield_(()).await;
            }
        });
        assert!(log.lock().unwrap().is_empty());
        drop(g);
        assert_eq!(*log.lock().unwrap(), [Some("gen")]);
        assert_eq!(VAR.get(), Some("main"));
    });
}

/// A body that returns while holding a value (a future that is not an `async` block keeps
/// its state after `Ready`): the body is dropped inside the generator's logical context, at
/// its last step, as a suspended or panicking body is.
#[test]
fn a_body_that_returns_is_dropped_inside_its_logical_context() {
    clean(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder { log: log.clone() };
        VAR.set("main");
        let mut g = Gen::new(move |_co: Co<()>| {
            poll_fn(move |_| {
                let _ = &recorder;
                VAR.set("gen");
                Poll::Ready(7)
            })
        });
        assert_eq!(g.resume(), Ok(GeneratorState::Complete(7)));
        assert_eq!(
            *log.lock().unwrap(),
            [Some("gen")],
            "dropped at its last step"
        );
        assert_eq!(VAR.get(), Some("main"));
        drop(g);
        assert_eq!(log.lock().unwrap().len(), 1);
    });
}

/// A step that panics before the body takes its resume argument drops the argument then,
/// not when the finished generator goes.
#[test]
fn an_argument_a_panicking_step_did_not_take_is_dropped_with_the_panic() {
    clean(|| {
        let drops = Arc::new(Mutex::new(0));
        struct Counted(Arc<Mutex<u32>>);
        impl Drop for Counted {
            fn drop(&mut self) {
                *self.0.lock().unwrap() += 1;
            }
        }
        let mut g = Gen::with_resume_arg(|_co: Co<(), Counted>| async move {
            PendingOnce(false).await;
            panic!("before taking the argument");
        });
        assert_eq!(
            g.resume_with(Counted(drops.clone())),
            Err(GenError::Stalled)
        );
        assert_eq!(
            *drops.lock().unwrap(),
            1,
            "the first argument has no yield to go to"
        );
        let outcome = catch_unwind(AssertUnwindSafe(|| g.resume_with(Counted(drops.clone()))));
        assert!(outcome.is_err());
        assert_eq!(
            *drops.lock().unwrap(),
            2,
            "dropped with the panic, not kept by the generator"
        );
        assert_eq!(
            g.resume_with(Counted(drops.clone())),
            Err(GenError::Finished)
        );
        assert_eq!(*drops.lock().unwrap(), 3);
        drop(g);
        assert_eq!(*drops.lock().unwrap(), 3);
    });
}

/// A future that is pending at its first poll and ready at its second.
struct PendingOnce(bool);

impl Future for PendingOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

#[test]
fn awaiting_a_never_ready_future_stalls() {
    clean(|| {
        VAR.set("main");
        let mut g = Gen::new(|co| async move {
            VAR.set("gen");
            std::future::pending::<()>().await;
            co.yield_(1).await;
        });
        assert_eq!(g.resume(), Err(GenError::Stalled));
        assert!(!g.is_finished());
        assert_eq!(g.resume(), Err(GenError::Stalled));
        assert_eq!(VAR.get(), Some("main"));
        assert_eq!(g.logical_context().and_then(|lc| lc.get(&VAR)), Some("gen"));
        assert_eq!(g.next(), None); // the Iterator view ends at a stall
    });
}

#[test]
fn a_stalled_generator_can_be_resumed_again() {
    clean(|| {
        let mut g = Gen::new(|co| async move {
            VAR.set("gen");
            PendingOnce(false).await;
            co.yield_(VAR.get()).await;
        });
        assert_eq!(g.resume(), Err(GenError::Stalled));
        assert_eq!(g.resume(), Ok(GeneratorState::Yielded(Some("gen"))));
        assert_eq!(g.resume(), Ok(GeneratorState::Complete(())));
        assert_eq!(VAR.get(), None);
    });
}

#[test]
fn yield_from_reports_a_finished_inner_generator() {
    clean(|| {
        let mut outer = Gen::new(|co| async move {
            let mut inner = Gen::new(|co| async move { co.yield_(1).await });
            let first = co.yield_from(&mut inner).await;
            let second = co.yield_from(&mut inner).await;
            (first, second)
        });
        let (yielded, results) = drain(&mut outer);
        assert_eq!(yielded, [1]);
        assert_eq!(results, (Ok(()), Err(GenError::Finished)));
    });
}

// ---------------------------------------------------------------------------------------------
// PEP 550 §Generators Transformed into Iterators
// ---------------------------------------------------------------------------------------------

static SERIES: ContextVar<u32> = ContextVar::new("var");

/// PEP 550's `CompiledGenSeries`: `gen_series(n)` hand-compiled into an iterator.
struct CompiledGenSeries {
    i: u32,
    n: u32,
}

impl CompiledGenSeries {
    fn init(n: u32) -> Self {
        SERIES.set(10);
        CompiledGenSeries { i: 1, n }
    }
}

impl Iterator for CompiledGenSeries {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.i == self.n {
            return None;
        }
        let result = SERIES.get().expect("set by init") * self.i;
        self.i += 1;
        Some(result)
    }
}

#[test]
fn compiled_gen_series_initialises_inside_its_logical_context() {
    clean(|| {
        let series = ContextualIter::build(|| CompiledGenSeries::init(5));
        assert_eq!(SERIES.get(), None); // `var.set(10)` in `_init` did not leak
        assert_eq!(series.logical_context().get(&SERIES), Some(10));
        SERIES.set(1000); // shadowed by the iterator's own value
        assert_eq!(series.collect::<Vec<_>>(), [10, 20, 30, 40]);
        assert_eq!(SERIES.get(), Some(1000));
    });
}

/// An iterator given generator semantics is finished, as a generator is, once a step
/// returns `None`: it is dropped there and then, inside its logical context (what it holds
/// does not wait for the wrapper's drop), and never runs again. A step that panics leaves
/// it to be run again.
#[test]
fn a_contextual_iterator_that_ends_is_dropped_at_once_and_stays_finished() {
    clean(|| {
        VAR.set("main");
        for panics in [false, true] {
            let log = Arc::new(Mutex::new(Vec::new()));
            let recorder = Recorder { log: log.clone() };
            let mut calls = 0;
            let mut iter = std::iter::from_fn(move || {
                let _held = &recorder;
                calls += 1;
                VAR.set("iter");
                match calls {
                    1 => Some(calls),
                    2 if panics => panic!("a step panics"),
                    _ => None, // and would go on after that, were it called
                }
            })
            .with_logical_context();
            assert_eq!(iter.next(), Some(1));
            let second = catch_unwind(AssertUnwindSafe(|| iter.next()));
            assert_eq!(second.is_err(), panics);
            if panics {
                assert!(log.lock().unwrap().is_empty(), "kept after a panic");
                assert_eq!(iter.next(), None, "run again: it ends");
            }
            let dropped = log.lock().unwrap().clone();
            assert_eq!(dropped, [Some("iter")], "dropped at its last step, inside");
            assert_eq!(iter.next(), None);
            assert_eq!(iter.next(), None);
            assert_eq!(iter.size_hint(), (0, Some(0)));
            assert_eq!(VAR.get(), Some("main"));
            drop(iter);
            assert_eq!(log.lock().unwrap().len(), 1, "dropped once");
        }
    });
}

#[test]
fn with_logical_context_gives_any_iterator_generator_semantics() {
    clean(|| {
        // Two interleaved series, each keeping its own value between steps.
        let counting = |start: u32| {
            (0..3)
                .map(move |i| {
                    if i == 0 {
                        SERIES.set(start);
                    } else {
                        SERIES.set(SERIES.get().unwrap() + 1);
                    }
                    (SERIES.get().unwrap(), OUTER.get())
                })
                .with_logical_context()
        };
        let mut a = counting(100);
        let mut b = counting(200);
        OUTER.set(1);
        assert_eq!(a.next(), Some((100, Some(1))));
        assert_eq!(b.next(), Some((200, Some(1))));
        OUTER.set(2); // outer changes are visible
        assert_eq!(a.next(), Some((101, Some(2))));
        assert_eq!(b.next(), Some((201, Some(2))));
        assert_eq!(a.next(), Some((102, Some(2))));
        assert_eq!(a.next(), None);
        assert_eq!(SERIES.get(), None);
        assert_eq!(b.logical_context().get(&SERIES), Some(201));
    });
}

#[test]
fn a_contextual_iter_is_dropped_inside_its_logical_context() {
    clean(|| {
        struct Dropping {
            _recorder: Recorder,
        }
        impl Iterator for Dropping {
            type Item = ();
            fn next(&mut self) -> Option<()> {
                Some(())
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        VAR.set("main");
        let iter_log = log.clone();
        let mut iter = ContextualIter::build(move || {
            VAR.set("iter");
            Dropping {
                _recorder: Recorder { log: iter_log },
            }
        });
        assert_eq!(iter.next(), Some(()));
        drop(iter);
        assert_eq!(*log.lock().unwrap(), [Some("iter")]);
        assert_eq!(VAR.get(), Some("main"));
    });
}

// ---------------------------------------------------------------------------------------------
// PEP 550 §Asynchronous Generators: streams
// ---------------------------------------------------------------------------------------------

/// A hand-written async generator: `fractions()` as a stream that is pending before each
/// item (so an item takes two polls) and sets its precision at its first poll.
struct FractionStream {
    precision: usize,
    x: u64,
    y: u64,
    step: u32,
    ready: bool,
    _recorder: Option<Recorder>,
}

impl FractionStream {
    fn new(precision: usize, x: u64, y: u64) -> Self {
        FractionStream {
            precision,
            x,
            y,
            step: 0,
            ready: false,
            _recorder: None,
        }
    }
}

impl Stream for FractionStream {
    type Item = String;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<String>> {
        if self.step == 0 && !self.ready {
            DECIMAL_CTX.set(DecimalContext {
                prec: self.precision,
            });
        }
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        self.step += 1;
        let item = match self.step {
            1 => Some(divide(self.x, self.y)),
            2 => Some(divide(self.x, self.y * self.y)),
            _ => None,
        };
        Poll::Ready(item)
    }
}

/// `anext(stream)` on the calling thread.
fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    futures_executor::block_on(poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)))
}

#[test]
fn async_generators_keep_their_own_precision() {
    clean(|| {
        let mut s1 = FractionStream::new(2, 1, 3).with_logical_context();
        let mut s2 = FractionStream::new(6, 2, 3).with_logical_context();
        let mut items = Vec::new();
        while let (Some(a), Some(b)) = (next(&mut s1), next(&mut s2)) {
            items.push((a, b));
        }
        assert_eq!(
            items,
            [
                ("0.33".to_string(), "0.666667".to_string()),
                ("0.11".to_string(), "0.222222".to_string()),
            ]
        );
        assert_eq!(getcontext().prec, 28);
        assert_eq!(
            s1.logical_context().get(&DECIMAL_CTX).map(|c| c.prec),
            Some(2)
        );
        assert_eq!(
            s2.logical_context().get(&DECIMAL_CTX).map(|c| c.prec),
            Some(6)
        );
    });
}

#[test]
fn async_generator_polls_interleave_with_the_caller() {
    clean(|| {
        let mut s = FractionStream::new(3, 1, 3).with_logical_context();
        let mut s = Pin::new(&mut s);
        let waker = std::task::Waker::noop();
        let mut cx = TaskContext::from_waker(waker);
        // First poll: pending, the stream's precision is set in its own logical context.
        assert_eq!(s.as_mut().poll_next(&mut cx), Poll::Pending);
        assert_eq!(getcontext().prec, 28);
        let _ctx = localcontext(9); // the caller's precision, between two polls
        assert_eq!(
            s.as_mut().poll_next(&mut cx),
            Poll::Ready(Some("0.333".to_string()))
        );
        assert_eq!(getcontext().prec, 9);
    });
}

#[test]
fn a_stream_in_current_context_is_a_task() {
    clean(|| {
        VAR.set("main");
        struct Probe(u32);
        impl Stream for Probe {
            type Item = Option<&'static str>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                _: &mut TaskContext<'_>,
            ) -> Poll<Option<Self::Item>> {
                self.0 += 1;
                if self.0 > 2 {
                    return Poll::Ready(None);
                }
                let seen = VAR.get();
                VAR.set("stream");
                Poll::Ready(Some(seen))
            }
        }
        let mut s = Probe(0).in_current_context(); // snapshot taken here
        VAR.set("changed");
        assert_eq!(next(&mut s), Some(Some("main")));
        assert_eq!(next(&mut s), Some(Some("stream"))); // its own change persists
        assert_eq!(next(&mut s), None);
        assert_eq!(VAR.get(), Some("changed"));
        assert_eq!(s.context().get(&VAR), Some("stream"));
    });
}

#[test]
fn a_contextual_stream_is_dropped_inside_its_logical_context() {
    // PEP 550 §Asynchronous Generators: "The execution context semantics in asynchronous
    // generators does not differ from that of regular generators" — and a suspended `Gen` or
    // `ContextualIter` is dropped inside its logical context, so a stream's should be too.
    clean(|| {
        struct Setter {
            _recorder: Recorder,
        }
        impl Stream for Setter {
            type Item = ();
            fn poll_next(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<()>> {
                VAR.set("stream");
                Poll::Ready(Some(()))
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        VAR.set("main");
        let mut s = Setter {
            _recorder: Recorder { log: log.clone() },
        }
        .with_logical_context();
        assert_eq!(next(&mut s), Some(()));
        drop(s);
        assert_eq!(VAR.get(), Some("main"));
        assert_eq!(
            *log.lock().unwrap(),
            [Some("stream")],
            "the stream's state was dropped outside its logical context"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Interleaved and nested generators against a model of PEP 550's logical context stack
// ---------------------------------------------------------------------------------------------

mod model {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::rc::{Rc, Weak};

    use contextvars::{Context, ContextVar, copy_context, get_execution_context};
    use exec_context::Gen;

    const N_VARS: usize = 4;
    const N_GENS: usize = 3;

    static VARS: [ContextVar<u32>; N_VARS] = [
        ContextVar::new("v0"),
        ContextVar::new("v1"),
        ContextVar::new("v2"),
        ContextVar::new("v3"),
    ];

    type View = [Option<u32>; N_VARS];

    /// What a step saw: the result of a delete, every variable, the topmost logical
    /// context's values, and the depth of the execution context.
    type Obs = (Option<bool>, View, View, usize);

    #[derive(Clone, Copy, Debug)]
    enum Action {
        Set(usize, u32),
        Delete(usize),
        Get,
    }

    enum Instr {
        Act(Action),
        Resume(usize),
    }

    type DynGen = Gen<Obs, (), (), Pin<Box<dyn Future<Output = ()>>>>;

    struct Shared {
        queues: Vec<RefCell<VecDeque<Instr>>>,
        gens: Vec<RefCell<Option<DynGen>>>,
    }

    fn view() -> View {
        std::array::from_fn(|k| VARS[k].get())
    }

    fn topmost() -> View {
        std::array::from_fn(|k| VARS[k].get_topmost())
    }

    fn perform(action: Action) -> Obs {
        let deleted = match action {
            Action::Set(k, v) => {
                VARS[k].set(v);
                None
            }
            Action::Delete(k) => Some(VARS[k].delete().is_ok()),
            Action::Get => None,
        };
        (deleted, view(), topmost(), get_execution_context().depth())
    }

    fn generator(index: usize, shared: Weak<Shared>) -> DynGen {
        Gen::new(move |co| {
            Box::pin(async move {
                loop {
                    let obs = {
                        let Some(shared) = shared.upgrade() else {
                            return;
                        };
                        let instr = shared.queues[index]
                            .borrow_mut()
                            .pop_front()
                            .expect("scripted");
                        match instr {
                            Instr::Act(action) => perform(action),
                            Instr::Resume(other) => shared.gens[other]
                                .borrow_mut()
                                .as_mut()
                                .expect("present")
                                .next()
                                .expect("generators loop forever"),
                        }
                    };
                    co.yield_(obs).await;
                }
            }) as Pin<Box<dyn Future<Output = ()>>>
        })
    }

    /// The model: logical context 0 is the caller's, `1 + i` is generator `i`'s.
    struct Model {
        lcs: [View; N_GENS + 1],
    }

    impl Model {
        /// What `action` sees when run with `stack` (bottom to top) as the execution context.
        fn apply(&mut self, stack: &[usize], action: Action) -> Obs {
            let top = *stack.last().expect("never empty");
            let deleted = match action {
                Action::Set(k, v) => {
                    self.lcs[top][k] = Some(v);
                    None
                }
                Action::Delete(k) => Some(self.lcs[top][k].take().is_some()),
                Action::Get => None,
            };
            let view = std::array::from_fn(|k| stack.iter().rev().find_map(|&lc| self.lcs[lc][k]));
            let depth = stack
                .iter()
                .filter(|&&lc| self.lcs[lc].iter().any(Option::is_some))
                .count();
            (deleted, view, self.lcs[top], depth)
        }
    }

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn run(seed: u64, steps: usize) {
        let shared = Rc::new(Shared {
            queues: (0..N_GENS).map(|_| RefCell::default()).collect(),
            gens: (0..N_GENS).map(|_| RefCell::new(None)).collect(),
        });
        for i in 0..N_GENS {
            *shared.gens[i].borrow_mut() = Some(generator(i, Rc::downgrade(&shared)));
        }
        let mut model = Model {
            lcs: [[None; N_VARS]; N_GENS + 1],
        };
        let mut rng = Rng(seed);
        for step in 0..steps {
            let k = rng.below(N_VARS as u64) as usize;
            let action = match rng.below(5) {
                0 | 1 => Action::Set(k, rng.below(1000) as u32),
                2 => Action::Delete(k),
                _ => Action::Get,
            };
            // Who runs the action: the caller, a generator, or a generator resumed by another.
            let outer = rng.below(N_GENS as u64) as usize;
            let inner = (outer + 1 + rng.below(N_GENS as u64 - 1) as usize) % N_GENS;
            let (stack, actual) = match rng.below(10) {
                0..=2 => (vec![0], perform(action)),
                3..=7 => {
                    shared.queues[outer]
                        .borrow_mut()
                        .push_back(Instr::Act(action));
                    let obs = shared.gens[outer].borrow_mut().as_mut().unwrap().next();
                    (vec![0, 1 + outer], obs.expect("loops forever"))
                }
                _ => {
                    shared.queues[outer]
                        .borrow_mut()
                        .push_back(Instr::Resume(inner));
                    shared.queues[inner]
                        .borrow_mut()
                        .push_back(Instr::Act(action));
                    let obs = shared.gens[outer].borrow_mut().as_mut().unwrap().next();
                    (vec![0, 1 + outer, 1 + inner], obs.expect("loops forever"))
                }
            };
            let expected = model.apply(&stack, action);
            assert_eq!(
                actual, expected,
                "seed {seed}, step {step}: {action:?} with stack {stack:?}"
            );
            // The caller's view, also through snapshots, is the caller's logical context.
            let caller = model.apply(&[0], Action::Get);
            assert_eq!(view(), caller.1, "seed {seed}, step {step}: caller view");
            let ec = get_execution_context();
            let from_ec: View = std::array::from_fn(|k| ec.get(&VARS[k]));
            assert_eq!(from_ec, caller.1, "seed {seed}, step {step}: snapshot");
            let copy = copy_context();
            let from_copy: View = std::array::from_fn(|k| copy.get(&VARS[k]));
            assert_eq!(from_copy, caller.1, "seed {seed}, step {step}: copy");
        }
        for i in 0..N_GENS {
            let gens = shared.gens[i].borrow();
            let lc = gens.as_ref().unwrap().logical_context().unwrap();
            let stored: View = std::array::from_fn(|k| lc.get(&VARS[k]));
            assert_eq!(
                stored,
                model.lcs[1 + i],
                "seed {seed}: generator {i}'s context"
            );
        }
    }

    #[test]
    fn interleaved_and_nested_generators_match_the_model() {
        for seed in [1, 2, 3, 0x5eed, 0xdead_beef] {
            Context::new().run(|| run(seed, 400));
        }
    }
}

#[test]
fn a_generator_can_move_between_threads() {
    let g = clean(|| {
        VAR.set("creator thread");
        let mut g = Gen::new(|co| async move {
            let first = VAR.get();
            VAR.set("gen");
            co.yield_(first).await;
            co.yield_(VAR.get()).await;
            A.get()
        });
        assert_eq!(g.next(), Some(Some("creator thread")));
        g
    });
    let result = std::thread::spawn(move || {
        let mut g = g;
        A.set("other thread");
        let second = g.next();
        let end = g.resume();
        (second, end, VAR.get())
    })
    .join()
    .expect("the thread completes");
    assert_eq!(
        result,
        (
            Some(Some("gen")),
            Ok(GeneratorState::Complete(Some("other thread"))),
            None
        )
    );
}

static LEVELS: [ContextVar<usize>; 40] = [const { ContextVar::new("level") }; 40];

type BoxedGen = Gen<Vec<Option<usize>>, (), (), Pin<Box<dyn Future<Output = ()>>>>;

/// A generator at nesting `level` that sets its own variable and delegates to the next level;
/// the innermost one reports what it sees directly and through a snapshot.
fn nesting(level: usize) -> BoxedGen {
    Gen::new(move |co| {
        Box::pin(async move {
            LEVELS[level].set(level);
            if level + 1 < LEVELS.len() {
                co.yield_from(&mut nesting(level + 1))
                    .await
                    .expect("the nested generators run to their end");
            } else {
                let direct = LEVELS.iter().map(|var| var.get()).collect();
                co.yield_(direct).await;
                let ec = get_execution_context();
                assert!(ec.depth() <= contextvars::EC_LEN_MAX, "{ec:?}");
                co.yield_(LEVELS.iter().map(|var| ec.get(var)).collect())
                    .await;
                let in_task =
                    futures_executor::block_on(exec_context::FutureExt::in_current_context(
                        async { LEVELS.iter().map(|var| var.get()).collect() },
                    ));
                co.yield_(in_task).await;
            }
        }) as Pin<Box<dyn Future<Output = ()>>>
    })
}

#[test]
fn deeply_nested_generators_see_every_level_and_snapshots_squash() {
    clean(|| {
        let expected: Vec<_> = (0..LEVELS.len()).map(Some).collect();
        let (seen, ()) = drain(&mut nesting(0));
        assert_eq!(seen, [expected.clone(), expected.clone(), expected]);
        assert!(LEVELS.iter().all(|var| var.get().is_none()));
        assert_eq!(depth(), 0);
    });
}

#[test]
fn a_given_logical_context_is_what_the_generator_runs_in() {
    clean(|| {
        let mut prepared = contextvars::LogicalContext::new();
        contextvars::run_with_logical_context(&mut prepared, || VAR.set("prepared"));
        VAR.set("main");
        let mut g = Gen::new(|co| async move {
            co.yield_(VAR.get()).await;
            VAR.set("gen");
            co.yield_(VAR.get()).await;
        });
        g.set_logical_context(Some(prepared.clone()));
        assert_eq!(g.next(), Some(Some("prepared")));
        assert_eq!(g.next(), Some(Some("gen")));
        assert_eq!(VAR.get(), Some("main"));
        assert_eq!(prepared.get(&VAR), Some("prepared")); // the generator had a copy
        assert_eq!(g.logical_context().and_then(|lc| lc.get(&VAR)), Some("gen"));
    });
}

/// Every public type formats with `{:?}`: the adapters and the yield future included.
#[test]
fn adapters_and_the_yield_future_are_debug() {
    let iter = (1..3).with_logical_context();
    let shown = format!("{iter:?}");
    assert!(
        shown.starts_with("ContextualIter") && shown.contains("1..3"),
        "{shown}"
    );

    #[derive(Debug)]
    struct Once(Option<u8>);
    impl Stream for Once {
        type Item = u8;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<u8>> {
            Poll::Ready(self.0.take())
        }
    }
    let stream = Once(Some(1)).with_logical_context();
    let shown = format!("{stream:?}");
    assert!(
        shown.starts_with("ContextualStream") && shown.contains("Once"),
        "{shown}"
    );

    let task = exec_context::FutureExt::in_current_context(async { 1 });
    assert!(format!("{task:?}").starts_with("WithContext"));

    let mut generator = Gen::new(|co: Co<String>| async move {
        let pending = co.yield_(String::from("y"));
        let shown = format!("{pending:?}");
        pending.await;
        co.yield_(shown).await;
    });
    let _ = generator.resume();
    let Ok(GeneratorState::Yielded(shown)) = generator.resume() else {
        panic!("the generator yields the Debug of its yield future");
    };
    assert!(
        shown.starts_with("Yield") && shown.contains("pending: true"),
        "{shown}"
    );
}

/// The producer (the code before the body's `async` block) runs inside the generator's own
/// logical context: what it sets stays there, seen by the body and not by the caller.
#[test]
fn the_producer_runs_in_the_generators_logical_context() {
    static MADE: ContextVar<u32> = ContextVar::new("gen.producer");
    clean(|| {
        MADE.set(1);
        let mut generator = Gen::new(|co| {
            assert_eq!(MADE.get(), Some(1), "the caller's values show through");
            MADE.set(2);
            async move {
                co.yield_(MADE.get()).await;
            }
        });
        assert_eq!(MADE.get(), Some(1));
        assert_eq!(
            generator.logical_context().unwrap().get(&MADE),
            Some(2),
            "kept in the generator's logical context"
        );
        assert_eq!(generator.next(), Some(Some(2)));
        assert_eq!(MADE.get(), Some(1));
    });
}

/// A stream of numbers up to `end` that, when dropped, records what `VAR` read there.
struct Ending {
    next: u32,
    end: u32,
    dropped_with: Arc<Mutex<Vec<Option<&'static str>>>>,
}

impl Stream for Ending {
    type Item = u32;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<u32>> {
        VAR.set("stream");
        if self.next == self.end {
            return Poll::Ready(None);
        }
        self.next += 1;
        Poll::Ready(Some(self.next))
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.dropped_with.lock().unwrap().push(VAR.get());
    }
}

/// A stream that ends is dropped at once, inside its own context, by both stream wrappers;
/// later polls give `None`, and the wrappers' contexts stay readable.
#[test]
fn an_ended_stream_is_dropped_at_once_in_its_context() {
    clean(|| {
        VAR.set("caller");
        let dropped_with = Arc::new(Mutex::new(Vec::new()));
        let ending = || Ending {
            next: 0,
            end: 2,
            dropped_with: dropped_with.clone(),
        };
        let mut own = ending().with_logical_context();
        assert_eq!(own.size_hint(), (0, None));
        assert_eq!((next(&mut own), next(&mut own)), (Some(1), Some(2)));
        assert!(dropped_with.lock().unwrap().is_empty());
        assert_eq!(next(&mut own), None);
        assert_eq!(*dropped_with.lock().unwrap(), [Some("stream")]);
        assert_eq!(next(&mut own), None);
        assert_eq!(own.size_hint(), (0, Some(0)));
        assert_eq!(own.logical_context().get(&VAR), Some("stream"));

        let mut task = ending().in_current_context();
        assert_eq!(task.size_hint(), (0, None));
        assert_eq!(next(&mut task), Some(1));
        assert_eq!((next(&mut task), next(&mut task)), (Some(2), None));
        assert_eq!(
            *dropped_with.lock().unwrap(),
            [Some("stream"), Some("stream")]
        );
        assert_eq!(next(&mut task), None);
        assert_eq!(task.size_hint(), (0, Some(0)));
        assert_eq!(task.context().get(&VAR), Some("stream"));
        drop((own, task));
        assert_eq!(dropped_with.lock().unwrap().len(), 2, "dropped once each");
        assert_eq!(VAR.get(), Some("caller"));
    });
}

/// `ContextualStream::build` makes the stream inside its logical context: what the setup
/// sets is the stream's, not the caller's.
#[test]
fn a_stream_built_in_its_logical_context_keeps_its_setup() {
    clean(|| {
        VAR.set("caller");
        let mut built = exec_context::ContextualStream::build(|| {
            assert_eq!(VAR.get(), Some("caller"));
            VAR.set("setup");
            Probe
        });
        assert_eq!(VAR.get(), Some("caller"));
        assert_eq!(built.logical_context().get(&VAR), Some("setup"));
        assert_eq!(next(&mut built), Some(Some("setup")));
        assert_eq!(VAR.get(), Some("caller"));
    });

    /// Yields what `VAR` reads at each poll.
    struct Probe;

    impl Stream for Probe {
        type Item = Option<&'static str>;

        fn poll_next(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(Some(VAR.get()))
        }
    }
}

/// A producer that panics after setting a value whose `Drop` panics: the generator's
/// logical context, which holds the value, is dropped while the producer's panic is caught,
/// so the second panic is discarded instead of aborting; the caller's context is untouched.
#[test]
fn a_panicking_producer_whose_value_panics_on_drop_does_not_abort() {
    struct Boom;
    impl Drop for Boom {
        fn drop(&mut self) {
            panic!("Boom dropped");
        }
    }
    static HELD: ContextVar<Boom> = ContextVar::new("gen.producer_boom");
    clean(|| {
        VAR.set("caller");
        let made = catch_unwind(AssertUnwindSafe(|| {
            Gen::new(|_: Co<u32>| -> std::future::Ready<()> {
                HELD.set(Boom);
                panic!("the producer failed")
            })
        }));
        let payload = made.expect_err("the producer's panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"the producer failed"));
        assert!(HELD.with(|held| held.is_none()));
        assert_eq!(VAR.get(), Some("caller"));
    });
}

/// The same for `ContextualIter::build` and `ContextualStream::build`: a setup that sets a
/// value whose `Drop` panics, then panics itself, does not abort.
#[test]
fn a_panicking_build_whose_value_panics_on_drop_does_not_abort() {
    struct Boom;
    impl Drop for Boom {
        fn drop(&mut self) {
            panic!("Boom dropped");
        }
    }
    static HELD: ContextVar<Boom> = ContextVar::new("iter.build_boom");
    clean(|| {
        let iter = catch_unwind(AssertUnwindSafe(|| {
            ContextualIter::build(|| -> std::iter::Empty<u8> {
                HELD.set(Boom);
                panic!("the setup failed")
            })
        }));
        let payload = iter.expect_err("the setup's panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"the setup failed"));
        let stream = catch_unwind(AssertUnwindSafe(|| {
            exec_context::ContextualStream::build(|| -> futures_lite::stream::Empty<u8> {
                HELD.set(Boom);
                panic!("the setup failed")
            })
        }));
        let payload = stream.expect_err("the setup's panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"the setup failed"));
        assert!(HELD.with(|held| held.is_none()));
    });
}
