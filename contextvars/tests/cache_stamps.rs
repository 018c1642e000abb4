//! The lookup cache across context switches: a `Context` left on a thread keeps its cache
//! entries for its next `run` there, and the context below a `run` gets its entries back when
//! the run ends. Pushing and popping logical contexts, with attaches inside, must not serve
//! stale entries either. These tests check that neither ever serves a value the current context does
//! not hold: after changes made in between, in clones, on other threads, after attaches.
//! (Debug builds also check every cache hit against a plain lookup.)

use contextvars::{
    Context, ContextBuilder, ContextVar, LogicalContext, attach, attach_deferred, copy_context,
    detach, detach_deferred, get_execution_context, run_with_logical_context,
};

mod common;
use common::on_fresh_thread;

static A: ContextVar<String> = ContextVar::new("a");
static B: ContextVar<u64> = ContextVar::new("b");

/// What a read through the cache gives inside `ctx`, and what the context holds.
fn read(ctx: &mut Context) -> (Option<String>, Option<String>) {
    let cached = ctx.run(|| {
        let first = A.get();
        // A second read is a cache hit.
        assert_eq!(A.with(|value| value.cloned()), first);
        first
    });
    (cached, ctx.get(&A))
}

#[test]
fn a_context_reentered_reads_its_latest_values() {
    on_fresh_thread(|| {
        let mut ctx = Context::new();
        ctx.run(|| drop(A.set("one".into())));
        assert_eq!(read(&mut ctx), (Some("one".into()), Some("one".into())));
        A.set("outer".into());
        assert_eq!(A.get().as_deref(), Some("outer"));
        ctx.run(|| {
            assert_eq!(A.get().as_deref(), Some("one"));
            // Replaces (and drops) the value the cache pointed to.
            drop(A.set("two".into()));
        });
        assert_eq!(A.get().as_deref(), Some("outer"));
        assert_eq!(read(&mut ctx), (Some("two".into()), Some("two".into())));
        ctx.run(|| A.delete().unwrap());
        assert_eq!(read(&mut ctx), (None, None));
    });
}

#[test]
fn the_context_below_a_run_reads_right_after_it() {
    on_fresh_thread(|| {
        A.set("below".into());
        B.set(1);
        assert_eq!(A.get().as_deref(), Some("below"));
        let mut ctx = copy_context();
        ctx.run(|| {
            assert_eq!(A.get().as_deref(), Some("below"));
            A.set("inside".into());
            B.set(2);
            A.get()
        });
        assert_eq!(A.get().as_deref(), Some("below"));
        assert_eq!(B.get(), Some(1));
        A.set("changed".into());
        assert_eq!(A.get().as_deref(), Some("changed"));
        assert_eq!(read(&mut ctx).0.as_deref(), Some("inside"));
        assert_eq!(A.get().as_deref(), Some("changed"));
    });
}

#[test]
fn clones_never_share_cached_values() {
    on_fresh_thread(|| {
        let mut first = Context::new();
        first.run(|| drop(A.set("first".into())));
        assert_eq!(read(&mut first).0.as_deref(), Some("first"));
        let mut second = first.clone();
        second.run(|| {
            assert_eq!(A.get().as_deref(), Some("first"));
            drop(A.set("second".into()));
        });
        assert_eq!(read(&mut first).0.as_deref(), Some("first"));
        assert_eq!(read(&mut second).0.as_deref(), Some("second"));
        drop(second);
        assert_eq!(read(&mut first).0.as_deref(), Some("first"));
        // A new context in the place of the dropped one.
        let mut third = Context::new();
        assert_eq!(read(&mut third), (None, None));
    });
}

#[test]
fn a_context_changed_on_another_thread_is_read_afresh() {
    on_fresh_thread(|| {
        let mut ctx = Context::new();
        ctx.run(|| drop(A.set("here".into())));
        assert_eq!(read(&mut ctx).0.as_deref(), Some("here"));
        let mut ctx = std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    assert_eq!(read(&mut ctx).0.as_deref(), Some("here"));
                    // Drops the value this thread's cache pointed to.
                    ctx.run(|| drop(A.set("there".into())));
                    ctx
                })
                .join()
                .unwrap()
        });
        assert_eq!(read(&mut ctx), (Some("there".into()), Some("there".into())));
        // And back again, with a change on each side.
        let mut ctx = std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    ctx.run(|| drop(A.set("again".into())));
                    ctx
                })
                .join()
                .unwrap()
        });
        ctx.run(|| assert_eq!(A.get().as_deref(), Some("again")));
        ctx.run(|| drop(A.set("home".into())));
        assert_eq!(read(&mut ctx), (Some("home".into()), Some("home".into())));
    });
}

#[test]
fn a_run_that_leaves_an_attach_hands_back_what_reads_right() {
    on_fresh_thread(|| {
        let mut attached = Context::new();
        attached.run(|| drop(A.set("attached".into())));
        let mut ctx = Context::new();
        ctx.run(|| drop(A.set("own".into())));
        assert_eq!(read(&mut ctx).0.as_deref(), Some("own"));
        let mut slot = Some(attached);
        let id = ctx.run(|| {
            assert_eq!(A.get().as_deref(), Some("own"));
            let id = attach(slot.take().unwrap()).unwrap();
            assert_eq!(A.get().as_deref(), Some("attached"));
            id
        });
        // Whatever `ctx` holds now, a run reads what it holds.
        let (cached, held) = read(&mut ctx);
        assert_eq!(cached, held);
        ctx.run(|| drop(A.set("later".into())));
        let (cached, held) = read(&mut ctx);
        assert_eq!(
            (cached.as_deref(), held.as_deref()),
            (Some("later"), Some("later"))
        );
        // The attach is not current here.
        assert!(detach(id).is_err());
    });
}

#[test]
fn a_panicking_run_keeps_both_sides_readable() {
    on_fresh_thread(|| {
        A.set("below".into());
        assert_eq!(A.get().as_deref(), Some("below"));
        let mut ctx = Context::new();
        ctx.run(|| drop(A.set("before".into())));
        assert_eq!(read(&mut ctx).0.as_deref(), Some("before"));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ctx.run(|| {
                drop(A.set("during".into()));
                assert_eq!(A.get().as_deref(), Some("during"));
                panic!("in run");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(A.get().as_deref(), Some("below"));
        assert_eq!(
            read(&mut ctx),
            (Some("during".into()), Some("during".into()))
        );
    });
}

#[test]
fn the_context_below_a_pushed_logical_context_reads_right_after_the_pop() {
    on_fresh_thread(|| {
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || drop(B.set(100)));
        for round in 0..4u64 {
            A.set(format!("below {round}"));
            B.set(round);
            assert_eq!(B.get(), Some(round));
            let seen = run_with_logical_context(&mut lc, || {
                let seen = (A.get(), B.get());
                // Shadows `A` in the pushed logical context, replaces its `B`.
                drop(A.set(format!("pushed {round}")));
                drop(B.set(100 + round + 1));
                assert_eq!(A.get(), Some(format!("pushed {round}")));
                seen
            });
            let expected_a = if round == 0 {
                format!("below {round}")
            } else {
                format!("pushed {}", round - 1)
            };
            assert_eq!(seen, (Some(expected_a), Some(100 + round)));
            assert_eq!(A.get(), Some(format!("below {round}")));
            assert_eq!(B.get(), Some(round));
        }
    });
}

#[test]
fn attaches_inside_a_pushed_logical_context_never_leave_stale_reads() {
    on_fresh_thread(|| {
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || drop(B.set(5)));
        B.set(1);
        A.set("below".into());
        assert_eq!((B.get(), A.get().as_deref()), (Some(1), Some("below")));
        let mut attached = Context::new();
        attached.run(|| drop(B.set(9)));
        let attached = run_with_logical_context(&mut lc, || {
            assert_eq!(B.get(), Some(5));
            let id = attach(attached).unwrap();
            assert_eq!((B.get(), A.get()), (Some(9), None));
            // Replaces (and drops) the value just read through the cache.
            drop(B.set(10));
            assert_eq!(B.get(), Some(10));
            detach(id).unwrap()
        });
        assert_eq!(attached.get(&B), Some(10));
        assert_eq!((B.get(), A.get().as_deref()), (Some(1), Some("below")));
        let snapshot = get_execution_context();
        assert_eq!(
            (snapshot.get(&B), snapshot.get(&A).as_deref()),
            (Some(1), Some("below"))
        );
        assert_eq!(lc.get(&B), Some(5));
    });
}

/// A small deterministic generator (xorshift), so that the random walk below needs no
/// dependency and replays the same way everywhere.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn a_random_walk_over_contexts_always_reads_what_they_hold() {
    on_fresh_thread(random_walk);
    // Inside a run the thread's own context has a version a stamp can name (a fresh thread's
    // first one is no stamp's), so a stamp that wrongly named it would be caught.
    on_fresh_thread(|| Context::new().run(random_walk));
}

fn random_walk() {
    const CONTEXTS: usize = 4;
    let steps = if cfg!(miri) { 60 } else { 3000 };
    {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut contexts: Vec<Context> = (0..CONTEXTS).map(|_| Context::new()).collect();
        // The model: each context's value of `B`, and the thread's own.
        let mut model: Vec<Option<u64>> = vec![None; CONTEXTS];
        let mut outer: Option<u64> = None;
        for step in 0..steps {
            let i = rng.below(CONTEXTS as u64) as usize;
            match rng.below(10) {
                0 | 1 => {
                    contexts[i].run(|| drop(B.set(step)));
                    model[i] = Some(step);
                }
                2 => {
                    let seen = contexts[i].run(|| (B.get(), B.get()));
                    assert_eq!(seen, (model[i], model[i]), "step {step}");
                }
                3 => {
                    let j = rng.below(CONTEXTS as u64) as usize;
                    contexts[j] = contexts[i].clone();
                    model[j] = model[i];
                }
                4 => {
                    drop(B.set(step));
                    outer = Some(step);
                    assert_eq!(B.get(), outer);
                }
                5 => {
                    // Nested: run `j` inside `i`; both read right, and `i` again after.
                    let j = (i + 1 + rng.below(CONTEXTS as u64 - 1) as usize) % CONTEXTS;
                    let (left, right) = contexts.split_at_mut(i.max(j));
                    let (a, b) = if i < j {
                        (&mut left[i], &mut right[0])
                    } else {
                        (&mut right[0], &mut left[j])
                    };
                    let (mi, mj) = (model[i], model[j]);
                    a.run(|| {
                        assert_eq!(B.get(), mi, "step {step}");
                        b.run(|| {
                            assert_eq!(B.get(), mj, "step {step}");
                            drop(B.set(step));
                        });
                        assert_eq!(B.get(), mi, "step {step}");
                    });
                    model[j] = Some(step);
                }
                7 | 8 => {
                    // Attached (deferred or not), read, maybe changed, detached: the context
                    // keeps its stamp for its next attach or run, and the thread's context
                    // reads right after.
                    let set = rng.below(2) == 0;
                    let context = std::mem::take(&mut contexts[i]);
                    let back = if rng.below(2) == 0 {
                        let id = attach(context).unwrap();
                        assert_eq!((B.get(), B.get()), (model[i], model[i]), "step {step}");
                        if set {
                            drop(B.set(step));
                        }
                        detach(id).unwrap()
                    } else {
                        PARKED.with(|parked| *parked.borrow_mut() = Some(context));
                        let id = attach_deferred(fetch_parked, 0).unwrap();
                        assert_eq!((B.get(), B.get()), (model[i], model[i]), "step {step}");
                        if set {
                            drop(B.set(step));
                        }
                        detach_deferred(id).unwrap().expect("it was used")
                    };
                    contexts[i] = back;
                    if set {
                        model[i] = Some(step);
                    }
                    assert_eq!(B.get(), outer, "step {step}");
                }
                _ => {
                    if contexts[i].run(|| B.delete()).is_ok() {
                        model[i] = None;
                    }
                    assert_eq!(contexts[i].run(|| B.get()), None, "step {step}");
                    assert_eq!(model[i], None);
                }
            }
            assert_eq!(B.get(), outer, "step {step}");
            for (ctx, expected) in contexts.iter().zip(&model) {
                assert_eq!(ctx.get(&B), *expected, "step {step}");
            }
        }
    }
}

thread_local! {
    /// The context a deferred attach of the random walk fetches.
    static PARKED: std::cell::RefCell<Option<Context>> = const { std::cell::RefCell::new(None) };
}

fn fetch_parked(_key: u64) -> Option<Context> {
    PARKED.with(|parked| parked.borrow_mut().take())
}

static BUILT_PLAIN: ContextVar<String> = ContextVar::new("stamps.built_plain");
static BUILT_LOCAL: ContextVar<u8> = ContextVar::new("stamps.built_local").not_inherited();

thread_local! {
    /// Set on the one test thread whose context entries the watcher below reads in.
    static ARMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[test]
fn a_builder_that_ran_and_then_changed_its_context_reads_its_latest_values() {
    // A watcher reads `BUILT_PLAIN` whenever a context is entered on the armed thread: so the
    // builder's own run (for the not-inherited variable) caches what its context holds.
    let _watcher = contextvars::watch::add_watcher(|event| {
        if matches!(event, contextvars::watch::ContextEvent::Entered) && ARMED.with(|a| a.get()) {
            let _ = BUILT_PLAIN.get();
        }
    });
    on_fresh_thread(|| {
        ARMED.with(|a| a.set(true));
        let mut builder = ContextBuilder::new();
        builder.set(&BUILT_PLAIN, "first".to_string());
        // Set by running the context: the watcher reads "first" there.
        builder.set(&BUILT_LOCAL, 1);
        // A direct insert: "first" is replaced and dropped.
        builder.set(&BUILT_PLAIN, "second".to_string());
        ARMED.with(|a| a.set(false));
        let mut context = builder.build();
        assert_eq!(context.run(|| BUILT_PLAIN.get()).as_deref(), Some("second"));
        assert_eq!(context.get(&BUILT_PLAIN).as_deref(), Some("second"));
    });
}
