//! Fiber scenarios (PEP 550 §Greenlets; greenlet's `gr_context`, Stackless tasklets): a new
//! fiber's context is empty, a copy of its creator's, shared with whoever switches to it, or
//! given; a fiber's context can be read back and replaced while it is idle but not while it
//! runs; ten thousand fibers switched round-robin each keep their own values; a panicking
//! fiber finishes without disturbing its switcher.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use contextvars::{Context, ContextVar, copy_context, get_execution_context};
use exec_context::GeneratorState;
use exec_context::fiber::{Fiber, FiberContext, FiberError};

static VAR: ContextVar<&'static str> = ContextVar::new("var");
static TXN: ContextVar<u32> = ContextVar::new("txn").not_inherited();

/// Runs `f` in an empty context of its own, whatever the test thread had.
fn clean<R>(f: impl FnOnce() -> R) -> R {
    Context::new().run(f)
}

/// A fiber that reports what it sees, then sets `value` and reports again, forever.
fn reporter(policy: FiberContext, value: &'static str) -> Fiber<Option<&'static str>> {
    Fiber::new(policy, move |co| async move {
        co.yield_(VAR.get()).await;
        VAR.set(value);
        loop {
            co.yield_(VAR.get()).await;
        }
    })
}

#[test]
fn empty_fiber_sees_nothing_and_keeps_its_own_values() {
    clean(|| {
        VAR.set("main");
        let fiber = reporter(FiberContext::Empty, "fiber");
        assert_eq!(fiber.switch(), Ok(Some(None)));
        assert_eq!(fiber.switch(), Ok(Some(Some("fiber"))));
        assert_eq!(VAR.get(), Some("main"));
        VAR.set("main changed");
        assert_eq!(fiber.switch(), Ok(Some(Some("fiber"))));
        let ctx = fiber.context().expect("idle").expect("own context");
        assert_eq!(ctx.get(&VAR), Some("fiber"));
        assert_eq!(ctx.len(), 1);
        assert_eq!(VAR.get(), Some("main changed"));
    });
}

#[test]
fn default_policy_is_empty() {
    clean(|| {
        VAR.set("main");
        let fiber = reporter(FiberContext::default(), "fiber");
        assert_eq!(fiber.switch(), Ok(Some(None)));
    });
}

#[test]
fn inherit_copies_the_creators_context_at_creation() {
    clean(|| {
        VAR.set("creator");
        TXN.set(1);
        let fiber = Fiber::new(FiberContext::Inherit, |co| async move {
            co.yield_((VAR.get(), TXN.get())).await;
            VAR.set("fiber");
            co.yield_((VAR.get(), TXN.get())).await;
        });
        VAR.set("creator changed");
        assert_eq!(fiber.switch(), Ok(Some((Some("creator"), None))));
        assert_eq!(fiber.switch(), Ok(Some((Some("fiber"), None))));
        assert_eq!(fiber.switch(), Ok(None));
        assert!(fiber.is_finished());
        assert_eq!((VAR.get(), TXN.get()), (Some("creator changed"), Some(1)));
    });
}

#[test]
fn stackless_tasklets_inherit_from_the_fiber_that_creates_them() {
    clean(|| {
        VAR.set("main");
        let parent = Fiber::new(FiberContext::Empty, |co| async move {
            VAR.set("parent fiber");
            let children: Vec<_> = (0..3)
                .map(|_| reporter(FiberContext::Inherit, "child"))
                .collect();
            VAR.set("parent changed");
            let seen: Vec<_> = children
                .iter()
                .map(|child| (child.switch(), child.switch()))
                .collect();
            co.yield_((seen, VAR.get())).await;
        });
        let (seen, parent_after) = parent
            .switch()
            .expect("the parent runs")
            .expect("the parent yields");
        assert_eq!(
            seen,
            vec![(Ok(Some(Some("parent fiber"))), Ok(Some(Some("child")))); 3]
        );
        assert_eq!(parent_after, Some("parent changed"));
        assert_eq!(VAR.get(), Some("main"));
    });
}

#[test]
fn share_runs_in_the_switchers_context() {
    clean(|| {
        VAR.set("main");
        let fiber = reporter(FiberContext::Share, "fiber");
        assert_eq!(fiber.switch(), Ok(Some(Some("main"))));
        assert_eq!(fiber.switch(), Ok(Some(Some("fiber"))));
        // Its write landed in the switcher's context.
        assert_eq!(VAR.get(), Some("fiber"));
        assert!(fiber.context().expect("idle").is_none());

        // Switched to from another context, it sees and writes that one.
        let mut other = Context::new();
        let seen = other.run(|| {
            VAR.set("other");
            fiber.switch()
        });
        assert_eq!(seen, Ok(Some(Some("other"))));
        assert_eq!(other.get(&VAR), Some("other"));
        assert_eq!(VAR.get(), Some("fiber"));
    });
}

#[test]
fn given_context_copy_scenario() {
    clean(|| {
        VAR.set("main");
        // greenlet: `glet.gr_context = contextvars.copy_context()`
        let fiber = reporter(FiberContext::Given(copy_context()), "fiber");
        VAR.set("main changed");
        assert_eq!(fiber.switch(), Ok(Some(Some("main"))));
        assert_eq!(fiber.switch(), Ok(Some(Some("fiber"))));
        assert_eq!(VAR.get(), Some("main changed"));

        // A given context with its own values.
        let mut prepared = Context::new();
        prepared.run(|| VAR.set("prepared"));
        let fiber = reporter(FiberContext::Given(prepared.clone()), "fiber");
        assert_eq!(fiber.switch(), Ok(Some(Some("prepared"))));
        assert_eq!(fiber.switch(), Ok(Some(Some("fiber"))));
        assert_eq!(prepared.get(&VAR), Some("prepared")); // the fiber got a copy
    });
}

#[test]
fn run_scenario_inside_a_fiber() {
    clean(|| {
        let fiber = Fiber::new(FiberContext::Empty, |co| async move {
            VAR.set("fiber");
            // `contextvars.copy_context().run(func)` inside the fiber.
            let mut copy = copy_context();
            let inside = copy.run(|| {
                VAR.set("run");
                VAR.get()
            });
            co.yield_((inside, VAR.get(), copy.get(&VAR))).await;
            co.yield_((None, VAR.get(), None)).await;
        });
        assert_eq!(
            fiber.switch(),
            Ok(Some((Some("run"), Some("fiber"), Some("run"))))
        );
        assert_eq!(fiber.switch(), Ok(Some((None, Some("fiber"), None))));
        assert_eq!(VAR.get(), None);
    });
}

#[test]
fn context_can_be_read_and_replaced_while_idle() {
    clean(|| {
        let fiber = reporter(FiberContext::Empty, "fiber");
        assert_eq!(fiber.switch(), Ok(Some(None)));
        assert_eq!(fiber.switch(), Ok(Some(Some("fiber"))));

        // Read back: a copy, isolated from the fiber.
        let mut read = fiber.context().expect("idle").expect("own context");
        assert_eq!(read.get(&VAR), Some("fiber"));
        read.run(|| VAR.set("edited copy"));
        assert_eq!(fiber.switch(), Ok(Some(Some("fiber"))));

        // Replace it while idle: the next switch runs in the new context.
        let mut replacement = Context::new();
        replacement.run(|| VAR.set("replacement"));
        assert_eq!(fiber.set_context(Some(replacement)), Ok(()));
        assert_eq!(fiber.switch(), Ok(Some(Some("replacement"))));
        assert_eq!(
            fiber.context().expect("idle").map(|c| c.get(&VAR)),
            Some(Some("replacement"))
        );

        // `None`: from now on it shares its switcher's context.
        assert_eq!(fiber.set_context(None), Ok(()));
        VAR.set("switcher");
        assert_eq!(fiber.switch(), Ok(Some(Some("switcher"))));
        assert!(fiber.context().expect("idle").is_none());
    });
}

/// What a fiber got when it tried to change or re-enter itself while running.
type SelfOps = (
    Result<(), FiberError>,
    Result<(), FiberError>,
    Result<(), FiberError>,
    bool,
);

type SelfFiber = Fiber<SelfOps, Option<&'static str>>;

#[test]
fn a_running_fiber_cannot_be_changed_or_reentered() {
    clean(|| {
        let cell: Rc<RefCell<Option<SelfFiber>>> = Rc::default();
        let inner_cell = cell.clone();
        let fiber = Fiber::new(FiberContext::Empty, move |co| async move {
            VAR.set("fiber");
            let me = inner_cell
                .borrow()
                .clone()
                .expect("set before the first switch");
            let ops = (
                me.set_context(Some(Context::new())),
                me.context().map(|_| ()),
                me.switch().map(|_| ()),
                me.is_running(),
            );
            drop(me); // no handle cycle through the suspended body
            co.yield_(ops).await;
            VAR.get()
        });
        *cell.borrow_mut() = Some(fiber.clone());

        assert!(!fiber.is_running());
        let ops = fiber.switch().expect("runs").expect("yields");
        assert_eq!(
            ops,
            (
                Err(FiberError::Running),
                Err(FiberError::Running),
                Err(FiberError::Running),
                true
            )
        );
        // The failed attempts changed nothing: the fiber still has its own context.
        assert!(!fiber.is_running());
        assert_eq!(
            fiber.switch_with(()),
            Ok(GeneratorState::Complete(Some("fiber")))
        );
        assert!(fiber.is_finished());
        assert_eq!(fiber.switch(), Err(FiberError::Finished));
        assert_eq!(fiber.set_context(None), Err(FiberError::Finished));
        assert!(fiber.context().expect("not running").is_none());
        cell.borrow_mut().take();
    });
}

#[test]
fn switch_with_passes_values_and_returns_the_result() {
    clean(|| {
        let fiber = Fiber::with_resume_arg(FiberContext::Empty, |co| async move {
            let mut total = 0;
            loop {
                let added: u32 = co.yield_(total).await;
                if added == 0 {
                    return format!("total {total}");
                }
                total += added;
            }
        });
        assert_eq!(fiber.switch_with(99), Ok(GeneratorState::Yielded(0))); // dropped
        assert_eq!(fiber.switch_with(2), Ok(GeneratorState::Yielded(2)));
        assert_eq!(fiber.switch_with(3), Ok(GeneratorState::Yielded(5)));
        assert_eq!(
            fiber.switch_with(0),
            Ok(GeneratorState::Complete("total 5".to_string()))
        );
        assert_eq!(fiber.switch_with(1), Err(FiberError::Finished));
    });
}

#[test]
fn a_fiber_switching_to_another_restores_its_own_context() {
    clean(|| {
        VAR.set("main");
        let inner = reporter(FiberContext::Empty, "inner");
        let outer = Fiber::new(FiberContext::Inherit, move |co| async move {
            VAR.set("outer");
            let first = inner.switch();
            let second = inner.switch();
            co.yield_((first, second, VAR.get())).await;
        });
        assert_eq!(
            outer.switch(),
            Ok(Some((
                Ok(Some(None)),
                Ok(Some(Some("inner"))),
                Some("outer")
            )))
        );
        assert_eq!(VAR.get(), Some("main"));
    });
}

#[test]
fn a_dropped_fiber_drops_its_locals_inside_its_context() {
    use std::sync::{Arc, Mutex};

    struct Recorder(Arc<Mutex<Vec<Option<&'static str>>>>);
    impl Drop for Recorder {
        fn drop(&mut self) {
            self.0.lock().unwrap().push(VAR.get());
        }
    }
    clean(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        VAR.set("main");
        let body_log = log.clone();
        let fiber: Fiber<()> = Fiber::new(FiberContext::Empty, move |co| async move {
            VAR.set("fiber");
            let _recorder = Recorder(body_log);
            loop {
                co.yield_(()).await;
            }
        });
        assert_eq!(fiber.switch(), Ok(Some(())));
        let handle = fiber.clone();
        drop(fiber);
        assert!(log.lock().unwrap().is_empty(), "a handle is still alive");
        drop(handle);
        assert_eq!(*log.lock().unwrap(), [Some("fiber")]);
        assert_eq!(VAR.get(), Some("main"));
    });
}

#[test]
fn a_nested_fiber_panic_caught_inside_a_fiber_restores_the_outer_fiber() {
    clean(|| {
        VAR.set("main");
        let doomed: Fiber<()> = Fiber::new(FiberContext::Empty, |_co| async move {
            VAR.set("doomed");
            panic!("nested fiber panicked on purpose");
        });
        let outer = Fiber::new(FiberContext::Empty, move |co| async move {
            VAR.set("outer");
            let caught = catch_unwind(AssertUnwindSafe(|| doomed.switch())).is_err();
            co.yield_((caught, doomed.is_finished(), VAR.get())).await;
        });
        assert_eq!(outer.switch(), Ok(Some((true, true, Some("outer")))));
        assert_eq!(VAR.get(), Some("main"));
    });
}

#[test]
fn a_stalled_fiber_reports_it() {
    clean(|| {
        let fiber: Fiber<()> = Fiber::new(FiberContext::Empty, |_co| async move {
            std::future::pending::<()>().await;
        });
        assert_eq!(fiber.switch(), Err(FiberError::Stalled));
        assert!(!fiber.is_finished());
        assert!(!fiber.is_running());
    });
}

static ID: ContextVar<u32> = ContextVar::new("id");
static COUNT: ContextVar<u32> = ContextVar::with_default("count", 0);

#[test]
fn ten_thousand_fibers_each_keep_their_own_value() {
    const FIBERS: u32 = 10_000;
    const ROUNDS: u32 = 3;
    clean(|| {
        ID.set(u32::MAX);
        let fibers: Vec<Fiber<(Option<u32>, u32)>> = (0..FIBERS)
            .map(|id| {
                let policy = if id % 2 == 0 {
                    FiberContext::Empty
                } else {
                    FiberContext::Inherit
                };
                Fiber::new(policy, move |co| async move {
                    ID.set(id);
                    loop {
                        COUNT.set(COUNT.get().unwrap_or(0) + 1);
                        co.yield_((ID.get(), COUNT.get().unwrap_or(0))).await;
                    }
                })
            })
            .collect();
        for round in 1..=ROUNDS {
            COUNT.set(1000 * round); // the switcher's own value, invisible to the fibers
            let mut wrong = Vec::new();
            for (id, fiber) in (0..).zip(&fibers) {
                let seen = fiber.switch();
                if seen != Ok(Some((Some(id), round))) {
                    wrong.push((id, seen));
                }
            }
            assert!(
                wrong.is_empty(),
                "round {round}: {:?}",
                &wrong[..wrong.len().min(5)]
            );
        }
        assert_eq!(
            (ID.get(), COUNT.get()),
            (Some(u32::MAX), Some(1000 * ROUNDS))
        );
        assert_eq!(get_execution_context().depth(), 1);
    });
}

#[test]
fn a_panicking_fiber_is_finished_and_the_switcher_is_intact() {
    clean(|| {
        VAR.set("switcher");
        let token = ID.set(1);
        let depth = get_execution_context().depth();
        let fiber: Fiber<()> = Fiber::new(FiberContext::Inherit, |co| async move {
            VAR.set("fiber");
            co.yield_(()).await;
            ID.set(2);
            panic!("fiber panicked on purpose");
        });
        assert_eq!(fiber.switch(), Ok(Some(())));
        let outcome = catch_unwind(AssertUnwindSafe(|| fiber.switch()));
        assert!(outcome.is_err());
        assert!(fiber.is_finished());
        assert!(!fiber.is_running());
        assert_eq!(fiber.switch(), Err(FiberError::Finished));
        assert!(fiber.context().expect("not running").is_none());

        assert_eq!((VAR.get(), ID.get()), (Some("switcher"), Some(1)));
        assert_eq!(get_execution_context().depth(), depth);
        assert_eq!(ID.reset(token), Ok(())); // still the switcher's logical context
    });
}

#[test]
fn a_panicking_shared_fiber_keeps_the_switchers_stack() {
    clean(|| {
        VAR.set("switcher");
        let depth = get_execution_context().depth();
        let fiber: Fiber<()> = Fiber::new(FiberContext::Share, |_co| async move {
            VAR.set("shared write");
            panic!("fiber panicked on purpose");
        });
        assert!(catch_unwind(AssertUnwindSafe(|| fiber.switch())).is_err());
        assert!(fiber.is_finished());
        // A shared fiber writes the switcher's context: its write before the panic stays.
        assert_eq!(VAR.get(), Some("shared write"));
        assert_eq!(get_execution_context().depth(), depth);
    });
}

/// A value whose `Drop` looks at a fiber (through a thread-local handle) and records what it
/// saw, or panics.
mod drops {
    use super::*;

    thread_local! {
        pub static FIBER: RefCell<Option<Fiber<()>>> = const { RefCell::new(None) };
        pub static SEEN: RefCell<Vec<(bool, bool)>> = const { RefCell::new(Vec::new()) };
    }

    pub struct Peek;

    impl Drop for Peek {
        fn drop(&mut self) {
            FIBER.with(|f| {
                if let Some(fiber) = f.borrow().as_ref() {
                    let seen = (fiber.is_running(), fiber.is_finished());
                    // Reading the context too takes the fiber's borrow.
                    let _ = fiber.context();
                    SEEN.with(|s| s.borrow_mut().push(seen));
                }
            });
        }
    }

    pub struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("a value's Drop panicked on purpose");
        }
    }

    /// Runs `f` with `fiber` as the one `Peek` looks at; returns what each `Peek` dropped
    /// meanwhile saw: (running, finished).
    pub fn watching(fiber: &Fiber<()>, f: impl FnOnce()) -> Vec<(bool, bool)> {
        FIBER.with(|slot| *slot.borrow_mut() = Some(fiber.clone()));
        f();
        FIBER.with(|slot| slot.borrow_mut().take());
        SEEN.with(|seen| seen.borrow_mut().split_off(0))
    }

    pub static PEEK: ContextVar<Peek> = ContextVar::new("peek");
    pub static BOMB: ContextVar<Bomb> = ContextVar::new("bomb");
}

#[test]
fn replacing_a_fiber_s_context_drops_the_old_values_outside_the_fiber() {
    clean(|| {
        let fiber: Fiber<()> = Fiber::new(FiberContext::Empty, |co| async move {
            drops::PEEK.set(drops::Peek);
            co.yield_(()).await;
        });
        let seen = drops::watching(&fiber, || {
            assert_eq!(fiber.switch(), Ok(Some(())));
            // The old context's `Peek` sees an idle fiber (it panicked with a borrow error
            // before).
            assert_eq!(fiber.set_context(Some(Context::new())), Ok(()));
        });
        assert_eq!(seen, [(false, false)]);
    });
}

#[test]
fn a_fiber_s_context_dropped_as_it_finishes_sees_it_finished() {
    clean(|| {
        let fiber: Fiber<()> = Fiber::new(FiberContext::Empty, |_co| async move {
            drops::PEEK.set(drops::Peek);
        });
        let seen = drops::watching(&fiber, || assert_eq!(fiber.switch(), Ok(None)));
        assert_eq!(seen, [(false, true)]);
    });
}

#[test]
fn a_panicking_drop_as_a_fiber_finishes_leaves_it_finished() {
    clean(|| {
        VAR.set("switcher");
        let fiber: Fiber<()> = Fiber::new(FiberContext::Empty, |_co| async move {
            drops::BOMB.set(drops::Bomb);
        });
        // The body returned; its context's `Bomb` panics as the context goes: the caller
        // gets that panic, and the fiber is finished (it stayed "running" before).
        assert!(catch_unwind(AssertUnwindSafe(|| fiber.switch())).is_err());
        assert!(fiber.is_finished());
        assert!(!fiber.is_running());
        assert_eq!(fiber.switch(), Err(FiberError::Finished));
        assert_eq!(VAR.get(), Some("switcher"));
    });
}

#[test]
fn a_panicking_drop_while_a_fiber_s_panic_unwinds_does_not_abort() {
    clean(|| {
        VAR.set("switcher");
        let fiber: Fiber<()> = Fiber::new(FiberContext::Empty, |_co| async move {
            drops::BOMB.set(drops::Bomb);
            panic!("the body panicked on purpose");
        });
        // The process aborted here before: the `Bomb` panicked while the body's panic unwound.
        let payload = catch_unwind(AssertUnwindSafe(|| fiber.switch())).expect_err("panics");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"the body panicked on purpose")
        );
        assert!(fiber.is_finished());
        assert_eq!(VAR.get(), Some("switcher"));
    });
}

/// A fiber's producer runs in the fiber's context: what it sets stays with the fiber, except
/// for a fiber that shares the caller's context.
#[test]
fn the_producer_runs_in_the_fibers_context() {
    static MADE: ContextVar<&str> = ContextVar::new("fiber.producer");
    clean(|| {
        MADE.set("caller");
        let own = Fiber::new(FiberContext::Inherit, |co| {
            MADE.set("fiber");
            async move {
                co.yield_(MADE.get()).await;
            }
        });
        assert_eq!(MADE.get(), Some("caller"));
        assert_eq!(own.switch(), Ok(Some(Some("fiber"))));
        assert_eq!(MADE.get(), Some("caller"));
        let shared = Fiber::new(FiberContext::Share, |co| {
            MADE.set("shared");
            async move {
                co.yield_(MADE.get()).await;
            }
        });
        assert_eq!(MADE.get(), Some("shared"));
        assert_eq!(shared.switch(), Ok(Some(Some("shared"))));
    });
}
