//! Panics and drops: every scoped operation restores the thread's execution context when its
//! closure panics, user `Drop` and `Clone` code may use context variables at any point where a
//! value is dropped or cloned, borrowed values stay intact while their variable changes, and
//! every value is dropped exactly once, as soon as no context holds it.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

use contextvars::{
    Context, ContextVar, ExecutionContext, LogicalContext, TokenError, VarId, copy_context,
    get_execution_context, run_with_execution_context, run_with_logical_context,
};

mod common;
use common::on_fresh_thread;

/// Runs `f`, which must panic, and returns its message.
fn expect_panic<R>(f: impl FnOnce() -> R) -> String {
    let payload = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("the closure did not panic"),
        Err(payload) => payload,
    };
    payload
        .downcast_ref::<&str>()
        .map(|message| message.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

// --- Values that count themselves -------------------------------------------------------------

/// Live values per pool; each test uses its own pool, so tests running in parallel do not
/// disturb each other's counts.
static LIVE: [AtomicIsize; 16] = [const { AtomicIsize::new(0) }; 16];
/// Ids of the values alive now, to catch a double drop.
static ALIVE: Mutex<Option<HashSet<u64>>> = Mutex::new(None);
static DOUBLE_DROPS: AtomicIsize = AtomicIsize::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A value that counts how many of its pool are alive and carries heap data to compare.
#[derive(Debug)]
struct Counted {
    pool: usize,
    id: u64,
    text: String,
}

impl Counted {
    fn new(pool: usize, text: &str) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        ALIVE
            .lock()
            .unwrap()
            .get_or_insert_with(HashSet::new)
            .insert(id);
        LIVE[pool].fetch_add(1, Ordering::SeqCst);
        Counted {
            pool,
            id,
            text: text.to_string(),
        }
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new(self.pool, &self.text)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let removed = ALIVE
            .lock()
            .map(|mut alive| alive.as_mut().is_some_and(|set| set.remove(&self.id)))
            .unwrap_or(false);
        if !removed {
            DOUBLE_DROPS.fetch_add(1, Ordering::SeqCst);
        }
        LIVE[self.pool].fetch_sub(1, Ordering::SeqCst);
    }
}

fn live(pool: usize) -> isize {
    LIVE[pool].load(Ordering::SeqCst)
}

fn assert_no_double_drop() {
    assert_eq!(
        DOUBLE_DROPS.load(Ordering::SeqCst),
        0,
        "a value was dropped twice"
    );
}

// --- Restoring after a panic ------------------------------------------------------------------

static PA: ContextVar<u32> = ContextVar::new("panic_a");
static PB: ContextVar<String> = ContextVar::new("panic_b");
static PC: ContextVar<u32> = ContextVar::with_default("panic_c", 100);

/// Everything a caller can observe of its execution context through these variables.
#[derive(Debug, PartialEq)]
struct Observed {
    values: (Option<u32>, Option<String>, Option<u32>),
    borrowed: (Option<u32>, Option<String>),
    topmost: (Option<u32>, Option<String>, Option<u32>),
    set: (bool, bool, bool),
    vars: Vec<VarId>,
    len: usize,
}

fn observe() -> Observed {
    let mut vars: Vec<VarId> = get_execution_context()
        .vars()
        .map(|info| info.id())
        .collect();
    vars.sort();
    Observed {
        values: (PA.get(), PB.get(), PC.get()),
        borrowed: (PA.with(|v| v.copied()), PB.with(|v| v.cloned())),
        topmost: (PA.get_topmost(), PB.get_topmost(), PC.get_topmost()),
        set: (PA.is_set(), PB.is_set(), PC.is_set()),
        vars,
        len: get_execution_context().depth(),
    }
}

/// Changes everything it can, deep inside nested scopes, then panics.
fn change_everything_and_panic() {
    PA.set(1_000);
    PB.set("changed".to_string());
    let _ = PC.delete();
    run_with_logical_context(&mut LogicalContext::new(), || {
        PC.set(1_001);
        let _ = get_execution_context();
        PA.with(|_| {
            PA.set(1_002);
            panic!("deep panic")
        })
    });
}

/// Sets up a two-level context, runs `scenario` (which must panic) and checks that the
/// context is exactly as before and that the thread keeps working.
fn check_restored_after_panic(scenario: impl FnOnce() + Send) {
    on_fresh_thread(|| {
        PA.set(1);
        PB.set("outer".to_string());
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            PC.set(3);
            let _warm = observe();
            let before = observe();
            let snapshot = get_execution_context();
            assert_eq!(expect_panic(scenario), "deep panic");
            assert_eq!(observe(), before);
            // The snapshot taken before is unchanged, and an equal one is taken now.
            assert_eq!(snapshot.get(&PC), Some(3));
            assert_eq!(get_execution_context().get(&PA), Some(1));

            // The thread keeps working: no borrow was left behind.
            let token = PA.set(2);
            assert_eq!(PA.get(), Some(2));
            PA.reset(token).unwrap();
            PC.delete().unwrap();
            assert_eq!(PC.get(), Some(100));
            PC.set(3);
            Context::new().run(|| {
                assert_eq!(PA.get(), None);
                PA.set(5);
            });
            let seen = run_with_logical_context(&mut LogicalContext::new(), || {
                PB.set("inner".to_string());
                PB.get()
            });
            assert_eq!(seen.as_deref(), Some("inner"));
            assert_eq!(observe(), before);
        });
        assert_eq!(lc.get(&PC), Some(3));
        assert_eq!(PA.get(), Some(1));
        assert_eq!(PC.get(), Some(100));
    });
}

#[test]
fn panic_in_context_run_restores() {
    check_restored_after_panic(|| {
        let mut ctx = copy_context();
        ctx.run(change_everything_and_panic);
    });
}

#[test]
fn panic_in_run_with_empty_logical_context_restores() {
    check_restored_after_panic(|| {
        run_with_logical_context(&mut LogicalContext::new(), change_everything_and_panic);
    });
}

#[test]
fn panic_in_run_with_logical_context_restores_and_keeps_the_changes_in_it() {
    check_restored_after_panic(|| {
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || PA.set(50));
        let result = catch_unwind(AssertUnwindSafe(|| {
            run_with_logical_context(&mut lc, || {
                PB.set("in lc".to_string());
                change_everything_and_panic()
            })
        }));
        // What the closure set before panicking was written back into the logical context.
        assert_eq!(lc.get(&PA), Some(1_000));
        assert_eq!(lc.get(&PB).as_deref(), Some("changed"));
        std::panic::resume_unwind(result.unwrap_err());
    });
}

#[test]
fn panic_in_run_with_execution_context_restores() {
    check_restored_after_panic(|| {
        let ec = get_execution_context();
        run_with_execution_context(&ec, change_everything_and_panic);
    });
}

#[test]
fn panic_in_scope_restores() {
    check_restored_after_panic(|| {
        // Each scope undoes only its own variable: all three are scoped.
        PC.scope(7, || {
            PA.scope(8, || {
                PB.scope("scoped".to_string(), change_everything_and_panic)
            })
        });
    });
}

#[test]
fn panic_in_with_restores() {
    check_restored_after_panic(|| {
        PB.with(|outer| {
            PA.with(|_| {
                PC.scope(9, || {
                    assert_eq!(outer.map(String::as_str), Some("outer"));
                    panic!("deep panic")
                })
            })
        });
    });
}

#[test]
fn panic_through_every_kind_of_scope_restores() {
    check_restored_after_panic(|| {
        let ec = get_execution_context();
        let mut ctx = Context::new();
        ctx.run(|| {
            PA.set(10);
            run_with_logical_context(&mut LogicalContext::new(), || {
                run_with_execution_context(&ec, || {
                    PB.scope("scoped".to_string(), || {
                        PB.with(|value| {
                            assert_eq!(value.map(String::as_str), Some("scoped"));
                            change_everything_and_panic()
                        })
                    })
                })
            })
        });
    });
}

/// A value whose `Clone` panics while armed.
#[derive(Debug)]
struct PanicsOnClone {
    armed: bool,
}

impl Clone for PanicsOnClone {
    fn clone(&self) -> Self {
        if self.armed {
            panic!("deep panic");
        }
        PanicsOnClone { armed: false }
    }
}

#[test]
fn panic_in_clone_inside_get_restores() {
    static VAR: ContextVar<PanicsOnClone> = ContextVar::new("panics_on_clone");

    check_restored_after_panic(|| {
        VAR.scope(PanicsOnClone { armed: true }, || {
            let _ = VAR.get();
        });
    });
}

#[test]
fn borrows_are_released_after_a_panic_so_drops_stay_immediate() {
    const POOL: usize = 0;
    static VAR: ContextVar<Counted> = ContextVar::new("released");
    static CLONE_PANICS: ContextVar<PanicsOnClone> = ContextVar::new("clone_panics");

    on_fresh_thread(|| {
        VAR.set(Counted::new(POOL, "first"));
        assert_eq!(
            expect_panic(|| VAR.with(|_| {
                // Replaced while borrowed: retired until the borrow ends.
                drop(VAR.set(Counted::new(POOL, "second")));
                assert_eq!(live(POOL), 2);
                panic!("in with")
            })),
            "in with"
        );
        // The borrow ended with the panic, and the retired value went with it.
        assert_eq!(live(POOL), 1);

        CLONE_PANICS.set(PanicsOnClone { armed: true });
        assert_eq!(expect_panic(|| CLONE_PANICS.get()), "deep panic");

        // No borrow is left open: a replaced value is dropped at once.
        drop(VAR.set(Counted::new(POOL, "third")));
        assert_eq!(live(POOL), 1);
        VAR.delete().unwrap();
        assert_eq!(live(POOL), 0);
    });
    assert_eq!(live(POOL), 0);
    assert_no_double_drop();
}

/// A value whose `Drop` panics while armed.
#[derive(Debug)]
struct PanicsOnDrop {
    armed: bool,
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            panic!("panicking drop");
        }
    }
}

#[test]
fn a_panicking_drop_during_delete_leaves_a_working_thread() {
    static VAR: ContextVar<PanicsOnDrop> = ContextVar::new("panics_on_drop");
    static OTHER: ContextVar<u32> = ContextVar::new("other");

    on_fresh_thread(|| {
        OTHER.set(1);
        VAR.set(PanicsOnDrop { armed: true });
        assert_eq!(expect_panic(|| VAR.delete()), "panicking drop");
        assert!(!VAR.is_set());
        assert!(VAR.with(|value| value.is_none()));
        assert_eq!(OTHER.get(), Some(1));

        let token = VAR.set(PanicsOnDrop { armed: false });
        let replaced = VAR.set(PanicsOnDrop { armed: true });
        assert_eq!(
            expect_panic(|| VAR.reset(replaced)),
            "panicking drop",
            "the displaced value's drop panics"
        );
        assert!(VAR.with(|value| value.is_some_and(|value| !value.armed)));
        VAR.reset(token).unwrap();
        assert!(!VAR.is_set());
        OTHER.set(2);
        assert_eq!(OTHER.get(), Some(2));
    });
}

// --- Drop code that uses context variables ----------------------------------------------------

static TOUCHED: ContextVar<u64> = ContextVar::new("touched");

/// A value whose `Drop` reads and sets another context variable.
#[derive(Debug)]
struct TouchesOtherOnDrop {
    tag: u64,
}

impl Drop for TouchesOtherOnDrop {
    fn drop(&mut self) {
        let _ = TOUCHED.get();
        let _ = TOUCHED.with(|value| value.copied());
        let _ = get_execution_context();
        TOUCHED.set(self.tag);
    }
}

#[test]
fn drop_code_may_use_other_variables_wherever_a_value_is_dropped() {
    static VAR: ContextVar<TouchesOtherOnDrop> = ContextVar::new("touches_other");

    on_fresh_thread(|| {
        // Overwritten with `set`: the old value goes with the token.
        VAR.set(TouchesOtherOnDrop { tag: 1 });
        drop(VAR.set(TouchesOtherOnDrop { tag: 2 }));
        assert_eq!(TOUCHED.get(), Some(1));

        // `delete`.
        VAR.delete().unwrap();
        assert_eq!(TOUCHED.get(), Some(2));

        // `reset`: the displaced value is dropped by the reset.
        let token = VAR.set(TouchesOtherOnDrop { tag: 3 });
        VAR.reset(token).unwrap();
        assert_eq!(TOUCHED.get(), Some(3));

        // A reset refused in another context, or under a logical context pushed since: the
        // token's old value is dropped with it.
        VAR.set(TouchesOtherOnDrop { tag: 31 });
        let token = VAR.set(TouchesOtherOnDrop { tag: 32 });
        let refused = Context::new().run(|| (VAR.reset(token), TOUCHED.get()));
        assert_eq!(refused, (Err(TokenError::WrongContext), Some(31)));
        let token = VAR.set(TouchesOtherOnDrop { tag: 33 });
        let refused = run_with_logical_context(&mut LogicalContext::new(), || {
            (VAR.reset(token), TOUCHED.get())
        });
        assert_eq!(refused, (Err(TokenError::WrongContext), Some(32)));

        // A context dropped after running.
        Context::new().run(|| VAR.set(TouchesOtherOnDrop { tag: 4 }));
        assert_eq!(TOUCHED.get(), Some(4));

        // A logical context dropped after being popped.
        run_with_logical_context(&mut LogicalContext::new(), || {
            VAR.set(TouchesOtherOnDrop { tag: 5 });
        });
        assert_eq!(TOUCHED.get(), Some(5));

        // The fresh logical context of `run_with_execution_context`.
        run_with_execution_context(&ExecutionContext::new(), || {
            VAR.set(TouchesOtherOnDrop { tag: 6 });
        });
        assert_eq!(TOUCHED.get(), Some(6));

        // The last snapshot holding a value.
        let snapshot = run_with_logical_context(&mut LogicalContext::new(), || {
            VAR.set(TouchesOtherOnDrop { tag: 7 });
            get_execution_context()
        });
        assert_eq!(TOUCHED.get(), Some(6));
        drop(snapshot);
        assert_eq!(TOUCHED.get(), Some(7));

        // Dropped inside a context that is running: the drop's set lands there.
        let mut ctx = Context::new();
        ctx.run(|| {
            VAR.set(TouchesOtherOnDrop { tag: 8 });
            VAR.delete().unwrap();
            assert_eq!(TOUCHED.get(), Some(8));
        });
        assert_eq!(ctx.get(&TOUCHED), Some(8));
        assert_eq!(TOUCHED.get(), Some(7));

        // Still set when the thread exits: dropped during thread teardown.
        VAR.set(TouchesOtherOnDrop { tag: 9 });
    });
}

static THREAD_EXIT_DROPS: AtomicIsize = AtomicIsize::new(0);

/// Counts its drops and uses context variables while being dropped.
struct CountsTeardownDrop;

impl Drop for CountsTeardownDrop {
    fn drop(&mut self) {
        let _ = TOUCHED.get();
        TOUCHED.set(99);
        let _ = copy_context();
        Context::new().run(|| TOUCHED.set(100));
        run_with_logical_context(&mut LogicalContext::new(), || TOUCHED.set(101));
        THREAD_EXIT_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn values_left_at_thread_exit_are_dropped_once_and_may_use_variables() {
    static VAR: ContextVar<CountsTeardownDrop> = ContextVar::new("teardown");
    static KEPT_LC: ContextVar<CountsTeardownDrop> = ContextVar::new("teardown_lc");

    let before = THREAD_EXIT_DROPS.load(Ordering::SeqCst);
    std::thread::spawn(|| {
        TOUCHED.set(1);
        VAR.set(CountsTeardownDrop);
        // One dropped on the thread, with the logical context it was set in.
        let ec = get_execution_context();
        run_with_execution_context(&ec, || {
            run_with_logical_context(&mut LogicalContext::new(), || {
                KEPT_LC.set(CountsTeardownDrop);
            });
        });
        // A snapshot sharing the remaining value, gone before the teardown.
        let _snapshot = get_execution_context();
    })
    .join()
    .expect("the thread (or its teardown) panicked");
    assert_eq!(THREAD_EXIT_DROPS.load(Ordering::SeqCst) - before, 2);
}

/// Remembers each dropped value's tag and what its variable read while it was being dropped.
static SELF_SEEN: Mutex<Vec<(u64, Option<u64>)>> = Mutex::new(Vec::new());

thread_local! {
    static SELF_SEEN_LOCAL: RefCell<Vec<Option<u64>>> = const { RefCell::new(Vec::new()) };
}

/// A value whose `Drop` reads the very variable it was stored in.
#[derive(Debug)]
struct ReadsItselfOnDrop {
    tag: u64,
}

static READS_ITSELF: ContextVar<ReadsItselfOnDrop> = ContextVar::new("reads_itself");

impl Drop for ReadsItselfOnDrop {
    fn drop(&mut self) {
        let seen = READS_ITSELF.with(|value| value.map(|value| value.tag));
        let _ = READS_ITSELF.is_set();
        let _ = SELF_SEEN_LOCAL.try_with(|log| log.borrow_mut().push(seen));
        if let Ok(mut log) = SELF_SEEN.lock() {
            log.push((self.tag, seen));
        }
    }
}

impl Clone for ReadsItselfOnDrop {
    fn clone(&self) -> Self {
        ReadsItselfOnDrop {
            tag: self.tag + 1_000,
        }
    }
}

#[test]
fn drop_code_may_read_the_variable_being_overwritten() {
    fn take_log() -> Vec<Option<u64>> {
        SELF_SEEN_LOCAL.with(|log| std::mem::take(&mut *log.borrow_mut()))
    }

    on_fresh_thread(|| {
        READS_ITSELF.set(ReadsItselfOnDrop { tag: 1 });
        drop(READS_ITSELF.set(ReadsItselfOnDrop { tag: 2 }));
        assert_eq!(take_log(), [Some(2)]);

        READS_ITSELF.delete().unwrap();
        assert_eq!(take_log(), [None]);

        READS_ITSELF.set(ReadsItselfOnDrop { tag: 3 });
        let token = READS_ITSELF.set(ReadsItselfOnDrop { tag: 4 });
        READS_ITSELF.reset(token).unwrap();
        // Tag 4 was dropped, seeing tag 3 back; the token's reference to tag 3 went into
        // the context.
        assert_eq!(take_log(), [Some(3)]);

        // Replaced while borrowed: dropped when the borrow ends, seeing the new value.
        READS_ITSELF.with(|value| {
            drop(READS_ITSELF.set(ReadsItselfOnDrop { tag: 5 }));
            assert_eq!(value.map(|value| value.tag), Some(3));
        });
        assert_eq!(take_log(), [Some(5)]);

        // A clone made by `get` is dropped like any value.
        let clone = READS_ITSELF.get().unwrap();
        assert_eq!(clone.tag, 1_005);
        drop(clone);
        assert_eq!(take_log(), [Some(5)]);

        // Popping a logical context drops what it held.
        run_with_logical_context(&mut LogicalContext::new(), || {
            READS_ITSELF.set(ReadsItselfOnDrop { tag: 6 });
        });
        assert_eq!(take_log(), [Some(5)]);
        // Exiting and dropping a context.
        Context::new().run(|| READS_ITSELF.set(ReadsItselfOnDrop { tag: 7 }));
        assert_eq!(take_log(), [Some(5)]);
    });
}

/// A value whose `Drop` sets the variable it was stored in, to `tag + 100` (if `sets`; the
/// replacement's drop does nothing).
#[derive(Debug)]
struct SetsItselfOnDrop {
    tag: u64,
    sets: bool,
}

static SETS_ITSELF: ContextVar<SetsItselfOnDrop> = ContextVar::new("sets_itself");

impl Drop for SetsItselfOnDrop {
    fn drop(&mut self) {
        if self.sets {
            let _ = SETS_ITSELF.set(SetsItselfOnDrop {
                tag: self.tag + 100,
                sets: false,
            });
        }
    }
}

#[test]
fn drop_code_may_set_the_variable_being_overwritten() {
    fn current() -> Option<u64> {
        SETS_ITSELF.with(|value| value.map(|value| value.tag))
    }
    fn value(tag: u64, sets: bool) -> SetsItselfOnDrop {
        SetsItselfOnDrop { tag, sets }
    }

    on_fresh_thread(|| {
        SETS_ITSELF.set(value(1, true));
        drop(SETS_ITSELF.set(value(2, false)));
        assert_eq!(current(), Some(101));

        SETS_ITSELF.set(value(3, true));
        SETS_ITSELF.delete().unwrap();
        // The removed value's drop set the variable again.
        assert_eq!(current(), Some(103));
        assert!(SETS_ITSELF.is_set());

        let token = SETS_ITSELF.set(value(4, true));
        SETS_ITSELF.reset(token).unwrap();
        assert_eq!(current(), Some(104));

        SETS_ITSELF.set(value(5, true));
        SETS_ITSELF.with(|borrowed| {
            drop(SETS_ITSELF.set(value(6, false)));
            assert_eq!(current(), Some(6));
            assert_eq!(borrowed.map(|value| value.tag), Some(5));
        });
        // Value 5 was dropped when the borrow ended, and set the variable then.
        assert_eq!(current(), Some(105));

        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            SETS_ITSELF.set(value(7, true));
        });
        assert_eq!(current(), Some(105));
        drop(lc);
        // The popped logical context's value set the variable in the caller's context.
        assert_eq!(current(), Some(107));

        Context::new().run(|| SETS_ITSELF.set(value(8, true)));
        assert_eq!(current(), Some(108));
    });
}

// --- Borrowed values stay intact ----------------------------------------------------------------

thread_local! {
    static SET_ON_NEXT_CLONE: Cell<bool> = const { Cell::new(false) };
}

/// A value whose `Clone` replaces the variable it is being read from.
#[derive(Debug)]
struct SetsOnClone(String);

static SETS_ON_CLONE: ContextVar<SetsOnClone> = ContextVar::new("sets_on_clone");

impl Clone for SetsOnClone {
    fn clone(&self) -> Self {
        if SET_ON_NEXT_CLONE.replace(false) {
            // Replace and drop the old value's token at once: `self` must survive.
            drop(SETS_ON_CLONE.set(SetsOnClone("replacement ".repeat(50))));
            let _ = SETS_ON_CLONE.delete();
            drop(SETS_ON_CLONE.set(SetsOnClone("second replacement ".repeat(50))));
        }
        SetsOnClone(self.0.clone())
    }
}

#[test]
fn clone_inside_get_may_replace_the_value_being_cloned() {
    on_fresh_thread(|| {
        let original = "the original value ".repeat(40);
        SETS_ON_CLONE.set(SetsOnClone(original.clone()));
        SET_ON_NEXT_CLONE.set(true);
        let got = SETS_ON_CLONE.get().unwrap();
        assert_eq!(got.0, original);
        let now = SETS_ON_CLONE.get().unwrap();
        assert_eq!(now.0, "second replacement ".repeat(50));
    });
}

#[test]
fn with_closure_may_change_the_variable_it_is_reading() {
    static TEXT: ContextVar<String> = ContextVar::new("text");

    on_fresh_thread(|| {
        let original = "borrowed text that must survive ".repeat(32);
        TEXT.set(original.clone());
        let token = TEXT.set(original.clone());
        let length = TEXT.with(move |value| {
            let value = value.expect("set");
            // Replace it, reset the token, delete, switch contexts, and fill the heap with
            // other strings.
            drop(TEXT.set("x".repeat(1024)));
            assert_eq!(value, &original);
            TEXT.reset(token).unwrap();
            TEXT.delete().unwrap();
            assert_eq!(TEXT.get(), None);
            let mut ctx = copy_context();
            ctx.run(|| TEXT.set("in a context".to_string()));
            drop(ctx);
            run_with_logical_context(&mut LogicalContext::new(), || {
                TEXT.set("pushed".to_string());
            });
            let filler: Vec<String> = (0..64).map(|i| format!("{i:0>1024}")).collect();
            assert_eq!(value, &original);
            // Nested borrows of the same variable see the current value.
            TEXT.set("new".to_string());
            TEXT.with(|inner| {
                drop(TEXT.set("newer".to_string()));
                assert_eq!(inner.map(String::as_str), Some("new"));
                assert_eq!(value, &original);
            });
            drop(filler);
            assert_eq!(value, &original);
            value.len()
        });
        assert_eq!(length, "borrowed text that must survive ".len() * 32);
        assert_eq!(TEXT.get().as_deref(), Some("newer"));
    });
}

// --- Every value is dropped exactly once, as soon as no context holds it --------------------------

#[test]
fn values_are_dropped_exactly_once_and_none_leak() {
    const POOL: usize = 1;
    static A: ContextVar<Counted> = ContextVar::new("counted_a");
    static B: ContextVar<Counted> = ContextVar::new("counted_b");

    on_fresh_thread(|| {
        let mut tokens = Vec::new();
        let mut contexts = Vec::new();
        let mut snapshots = Vec::new();
        let mut lcs = Vec::new();
        for round in 0..20_u32 {
            let text = format!("round {round}");
            tokens.push(A.set(Counted::new(POOL, &text)));
            if round % 3 == 0 {
                let _ = B.delete();
            }
            B.set(Counted::new(POOL, &text));
            snapshots.push(get_execution_context());
            let mut ctx = copy_context();
            ctx.run(|| {
                A.set(Counted::new(POOL, "in context"));
                snapshots.push(get_execution_context().squashed());
                B.scope(Counted::new(POOL, "scoped"), || {
                    let _ = B.get();
                });
            });
            contexts.push(ctx.clone());
            contexts.push(ctx);
            let mut lc = LogicalContext::new();
            run_with_logical_context(&mut lc, || {
                A.set(Counted::new(POOL, "in lc"));
                let ec = get_execution_context();
                run_with_execution_context(&ec, || {
                    B.set(Counted::new(POOL, "in task"));
                    A.with(|_| drop(A.set(Counted::new(POOL, "replaced while borrowed"))));
                });
                snapshots.push(ec);
            });
            lcs.push(lc);
            if round % 4 == 1 {
                let token = tokens.pop().unwrap();
                A.reset(token).unwrap();
            }
        }
        assert!(live(POOL) > 0);
        drop(tokens);
        drop(contexts);
        drop(snapshots);
        drop(lcs);
        // Only the thread's own values are left: A's and B's current ones.
        assert_eq!(live(POOL), 2);
        A.delete().unwrap();
        assert_eq!(live(POOL), 1);
        // B stays set: the thread's teardown drops it.
    });
    assert_eq!(live(POOL), 0, "values leaked");
    assert_no_double_drop();
}

#[test]
fn the_cache_does_not_keep_values_alive() {
    const POOL: usize = 2;
    static VAR: ContextVar<Counted> = ContextVar::new("cached");

    on_fresh_thread(|| {
        let first = VAR.set(Counted::new(POOL, "first"));
        assert!(VAR.with(|value| value.is_some_and(|value| value.text == "first")));
        let second = VAR.set(Counted::new(POOL, "second"));
        assert_eq!(
            VAR.get().map(|value| value.text.clone()).as_deref(),
            Some("second")
        );
        // The clone made by `get` is gone; "first" lives in `second`'s token.
        assert_eq!(live(POOL), 2);
        drop(first);
        assert_eq!(live(POOL), 2);
        drop(second);
        assert_eq!(
            live(POOL),
            1,
            "the replaced value is dropped with its token"
        );

        // Deleting drops the value at once, though the cache pointed at it.
        assert!(VAR.with(|value| value.is_some()));
        VAR.delete().unwrap();
        assert_eq!(live(POOL), 0);
        assert!(VAR.with(|value| value.is_none()));

        // A value read inside a context is dropped with the context.
        let mut ctx = Context::new();
        ctx.run(|| {
            VAR.set(Counted::new(POOL, "in context"));
            assert!(VAR.with(|value| value.is_some()));
        });
        assert_eq!(live(POOL), 1);
        drop(ctx);
        assert_eq!(live(POOL), 0);

        // A value read through a snapshot is dropped with the snapshot.
        let snapshot = Context::new().run(|| {
            VAR.set(Counted::new(POOL, "in snapshot"));
            get_execution_context()
        });
        run_with_execution_context(&snapshot, || assert!(VAR.is_set()));
        assert_eq!(live(POOL), 1);
        drop(snapshot);
        assert_eq!(live(POOL), 0);

        // A value replaced while borrowed is dropped when the borrow ends.
        VAR.set(Counted::new(POOL, "borrowed"));
        VAR.with(|value| {
            drop(VAR.set(Counted::new(POOL, "replacement")));
            assert_eq!(live(POOL), 2);
            assert_eq!(value.map(|value| value.text.as_str()), Some("borrowed"));
        });
        assert_eq!(live(POOL), 1);

        // A popped logical context's values go with it.
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            VAR.set(Counted::new(POOL, "in lc"));
            assert!(VAR.with(|value| value.is_some_and(|value| value.text == "in lc")));
        });
        assert_eq!(live(POOL), 2);
        drop(lc);
        assert_eq!(live(POOL), 1);
        assert_eq!(
            VAR.with(|value| value.map(|v| v.text.clone())).as_deref(),
            Some("replacement")
        );
    });
    assert_eq!(live(POOL), 0);
    assert_no_double_drop();
}

/// A thread-local whose destructor sets a context variable on a thread that never touched
/// one before: the value must still be dropped, once.
#[test]
fn a_set_from_another_thread_local_destructor_does_not_leak() {
    const POOL: usize = 3;
    static LATE: ContextVar<Counted> = ContextVar::new("late");

    struct SetsLate;

    impl Drop for SetsLate {
        fn drop(&mut self) {
            let _ = LATE.get();
            LATE.set(Counted::new(POOL, "set during teardown"));
        }
    }

    thread_local! {
        static SETS_LATE: RefCell<Option<SetsLate>> = const { RefCell::new(None) };
    }

    std::thread::spawn(|| SETS_LATE.with(|slot| *slot.borrow_mut() = Some(SetsLate)))
        .join()
        .expect("the thread panicked");
    assert_eq!(live(POOL), 0, "the value set during teardown leaked");

    // The same after the thread used context variables first.
    std::thread::spawn(|| {
        LATE.set(Counted::new(POOL, "early"));
        SETS_LATE.with(|slot| *slot.borrow_mut() = Some(SetsLate));
    })
    .join()
    .expect("the thread panicked");
    assert_eq!(live(POOL), 0, "a value leaked");
    assert_no_double_drop();
}

#[test]
fn self_reading_drops_at_thread_exit_do_not_panic() {
    const TAG: u64 = 424_242;
    std::thread::spawn(|| {
        READS_ITSELF.set(ReadsItselfOnDrop { tag: TAG });
        let _ctx = copy_context();
    })
    .join()
    .expect("the thread (or its teardown) panicked");
    let log = SELF_SEEN.lock().unwrap();
    // The value was dropped once, at the thread's teardown.
    assert_eq!(log.iter().filter(|(tag, _)| *tag == TAG).count(), 1);
}

/// A reset whose displaced value's `Drop` panics has still been applied, and the context
/// is left consistent.
#[test]
fn a_reset_interrupted_by_a_panicking_drop_is_still_applied() {
    static VAR: ContextVar<PanicsOnDrop> = ContextVar::new("reset_panics_on_drop");

    on_fresh_thread(|| {
        VAR.set(PanicsOnDrop { armed: false });
        let token = VAR.set(PanicsOnDrop { armed: true });
        assert_eq!(expect_panic(|| VAR.reset(token)), "panicking drop");
        // The reset took effect: the old value is back, and the variable works normally.
        assert!(VAR.with(|value| value.is_some_and(|value| !value.armed)));
        let token = VAR.set(PanicsOnDrop { armed: false });
        VAR.reset(token).unwrap();
        assert!(VAR.with(|value| value.is_some_and(|value| !value.armed)));
    });
}

/// A `scope` or a `SetGuard` ended by a panic drops its own value while unwinding: a `Drop`
/// of that value that panics too is discarded (not an abort), and the variable is reset.
#[test]
fn a_panicking_drop_of_a_scoped_value_while_unwinding_does_not_abort() {
    static BOMB: ContextVar<PanicsOnDrop> = ContextVar::new("bomb");
    on_fresh_thread(|| {
        let outcome = std::panic::catch_unwind(|| {
            BOMB.scope(PanicsOnDrop { armed: true }, || panic!("inner"))
        });
        assert!(outcome.is_err());
        assert!(BOMB.with(|value| value.is_none()));
        let outcome = std::panic::catch_unwind(|| {
            let _guard = BOMB.set_guard(PanicsOnDrop { armed: true });
            panic!("inner");
        });
        assert!(outcome.is_err());
        assert!(BOMB.with(|value| value.is_none()));
        TOUCHED.set(5);
        assert_eq!(TOUCHED.get(), Some(5));
    });
}

/// A `Drop` that panics at the normal end of a `scope` or `SetGuard`, or when a `Context`, a
/// `LogicalContext` or the temporary frame of a run is dropped: the panic reaches the caller
/// after the operation has taken effect, and the thread's context is consistent and works.
#[test]
fn panicking_drops_at_the_normal_end_of_scopes_and_runs_leave_a_working_thread() {
    static BOMB: ContextVar<PanicsOnDrop> = ContextVar::new("bomb_normal_end");
    static OTHER: ContextVar<u32> = ContextVar::new("other_normal_end");
    let works = |expected_other: Option<u32>| {
        assert_eq!(OTHER.get(), expected_other);
        OTHER.set(99);
        assert_eq!(OTHER.get(), Some(99));
        match expected_other {
            Some(value) => drop(OTHER.set(value)),
            None => OTHER.delete().unwrap(),
        }
        assert!(BOMB.with(|value| value.is_none_or(|value| !value.armed)));
    };
    on_fresh_thread(|| {
        OTHER.set(1);
        // `scope`: the reset at its end drops the scoped value.
        assert_eq!(
            expect_panic(|| BOMB.scope(PanicsOnDrop { armed: true }, || OTHER.get())),
            "panicking drop"
        );
        assert!(
            BOMB.with(|value| value.is_none()),
            "the scope's value is gone"
        );
        works(Some(1));

        // `SetGuard` dropped normally.
        assert_eq!(
            expect_panic(|| drop(BOMB.set_guard(PanicsOnDrop { armed: true }))),
            "panicking drop"
        );
        assert!(BOMB.with(|value| value.is_none()));
        works(Some(1));

        // A context holding the value, dropped after a run.
        let mut context = Context::new();
        context.run(|| BOMB.set(PanicsOnDrop { armed: true }));
        assert!(context.get_ref(&BOMB).is_some_and(|value| value.armed));
        assert_eq!(expect_panic(|| drop(context)), "panicking drop");
        works(Some(1));

        // A logical context holding it.
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            BOMB.set(PanicsOnDrop { armed: true });
        });
        assert!(
            BOMB.with(|value| value.is_none()),
            "popped with its logical context"
        );
        assert_eq!(expect_panic(|| drop(lc)), "panicking drop");
        works(Some(1));

        // The temporary frame of `run_with_execution_context`, dropped as the run ends.
        let ec = get_execution_context();
        assert_eq!(
            expect_panic(|| run_with_execution_context(&ec, || {
                BOMB.set(PanicsOnDrop { armed: true });
                OTHER.set(7);
            })),
            "panicking drop"
        );
        assert!(
            BOMB.with(|value| value.is_none()),
            "the run's changes stay in it"
        );
        works(Some(1));
    });
}

/// A `scope_future` whose body panics after leaving an attach of its own: the scope's reset
/// is refused (another context is current), and the refused token's value (the caller's,
/// displaced by the scope) is dropped while the panic unwinds. A `Drop` of it that panics
/// too is discarded, as for `scope` and `SetGuard`, not an abort.
#[test]
fn a_scope_future_ended_by_a_panic_under_an_attach_left_behind_does_not_abort() {
    use std::future::Future;
    use std::task::{Context as TaskContext, Poll, Waker};
    static BOMB: ContextVar<PanicsOnDrop> = ContextVar::new("bomb_scope_future");
    on_fresh_thread(|| {
        BOMB.set(PanicsOnDrop { armed: true });
        let future = BOMB.scope_future(PanicsOnDrop { armed: false }, async {
            let _left = contextvars::attach(Context::new()).unwrap();
            panic!("the body panicked");
        });
        let mut future = std::pin::pin!(future);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _: Poll<()> = future
                .as_mut()
                .poll(&mut TaskContext::from_waker(Waker::noop()));
        }));
        assert!(outcome.is_err());
        TOUCHED.set(3);
        assert_eq!(TOUCHED.get(), Some(3));
    });
}

/// `end_attach` that drops displaced contexts whose values' `Drop` panics: the panic reaches
/// the caller, and the context it would have handed back (whose value panics on drop too) is
/// dropped where that second panic is contained, not while unwinding (an abort).
#[test]
fn end_attach_with_panicking_drops_on_both_sides_does_not_abort() {
    static BOMB: ContextVar<PanicsOnDrop> = ContextVar::new("bomb_end_attach");
    on_fresh_thread(|| {
        let step = contextvars::attach(Context::new()).unwrap();
        BOMB.set(PanicsOnDrop { armed: true }); // in the step's context: displaced
        let _left = contextvars::attach(Context::new()).unwrap();
        BOMB.set(PanicsOnDrop { armed: true }); // in the context left on top: handed back
        assert_eq!(
            expect_panic(|| contextvars::end_attach(step)),
            "panicking drop"
        );
        assert!(
            BOMB.with(|value| value.is_none()),
            "the thread's own context again"
        );
        TOUCHED.set(4);
        assert_eq!(TOUCHED.get(), Some(4));
    });
}

/// More pinned variables than are read without a lock, and a deferred attach entered while
/// they are collected (for a new context): its `fetch` may make a context itself, which
/// collects them again. No lock may be held across that.
#[test]
fn a_fetch_entered_while_pinned_values_are_collected_does_not_deadlock() {
    static PINNED: [ContextVar<u32>; 12] = [const { ContextVar::new("pinned_many").pinned() }; 12];
    fn fetch(_key: u64) -> Option<Context> {
        Some(Context::new())
    }
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The first eight are read without the lock (in a process of their own, as under
        // nextest) and have values here; the others are known, with no value here.
        for (n, var) in PINNED[..8].iter().enumerate() {
            var.set(n as u32);
        }
        std::thread::spawn(|| {
            for var in &PINNED[8..] {
                var.set(8);
            }
        })
        .join()
        .unwrap();
        let mut pinned = LogicalContext::pinned();
        let _id = contextvars::attach_deferred(fetch, 0).unwrap();
        let made = run_with_logical_context(&mut pinned, Context::new);
        done.send(made.len()).unwrap();
    });
    let outcome = finished.recv_timeout(std::time::Duration::from_secs(20));
    assert!(outcome.is_ok(), "no answer: {outcome:?}");
}

/// A `scope_future` polled while a deferred attach waits whose `fetch` panics: the poll
/// panics before the scope's value is stored, and the value stays with the future, which the
/// next poll sets as before.
#[test]
fn a_scope_future_keeps_its_value_through_a_poll_a_panicking_fetch_ended() {
    use std::future::Future;
    use std::task::{Context as TaskContext, Poll, Waker};
    static SCOPED: ContextVar<String> = ContextVar::new("scoped_through_fetch");
    fn failing_fetch(_key: u64) -> Option<Context> {
        panic!("the source failed");
    }
    on_fresh_thread(|| {
        let future = SCOPED.scope_future("scoped".to_string(), async { SCOPED.get() });
        let mut future = std::pin::pin!(future);
        let mut task = TaskContext::from_waker(Waker::noop());
        let _id = contextvars::attach_deferred(failing_fetch, 0).unwrap();
        assert_eq!(
            expect_panic(|| future.as_mut().poll(&mut task)),
            "the source failed"
        );
        assert_eq!(
            future.as_mut().poll(&mut task),
            Poll::Ready(Some("scoped".to_string()))
        );
        assert_eq!(SCOPED.get(), None);
    });
}

/// A `scope_future` whose body leaves a deferred attach with a panicking `fetch`, never
/// used: it ends with the poll, like an attach left attached, and as it was never entered
/// its fetch is not called (before, the end of the poll entered it to look up what the
/// future left, and the fetch's panic reached the poller). The caller's value is back, and
/// the attach cannot be detached any more. The same for `ContextVar::scope`.
#[test]
fn a_deferred_attach_left_pending_in_a_scope_ends_unfetched() {
    use std::future::Future;
    use std::task::{Context as TaskContext, Waker};
    static SCOPED: ContextVar<String> = ContextVar::new("scoped_leave_fetch");
    static FETCHES: AtomicIsize = AtomicIsize::new(0);
    fn failing_fetch(_key: u64) -> Option<Context> {
        FETCHES.fetch_add(1, Ordering::SeqCst);
        panic!("the source failed");
    }
    on_fresh_thread(|| {
        SCOPED.set("caller".to_string());
        let future = SCOPED.scope_future("scoped".to_string(), async {
            let seen = SCOPED.get();
            (
                seen,
                contextvars::attach_deferred(failing_fetch, 0).unwrap(),
            )
        });
        let mut future = std::pin::pin!(future);
        let mut task = TaskContext::from_waker(Waker::noop());
        let std::task::Poll::Ready((seen, id)) = future.as_mut().poll(&mut task) else {
            panic!("the future is ready at once");
        };
        assert_eq!(seen.as_deref(), Some("scoped"));
        assert_eq!(SCOPED.get().as_deref(), Some("caller"));
        assert!(contextvars::detach_deferred(id).is_err());

        let id = SCOPED.scope("scoped".to_string(), || {
            contextvars::attach_deferred(failing_fetch, 1).unwrap()
        });
        assert_eq!(SCOPED.get().as_deref(), Some("caller"));
        assert!(contextvars::end_deferred(id).is_err());
        assert_eq!(FETCHES.load(Ordering::SeqCst), 0, "nothing fetched");
    });
}

// --- Thread exit ----------------------------------------------------------------------------

/// A value whose `Drop` panics, counting its drops.
struct PanicsWhenDropped(&'static AtomicIsize);

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("a value's Drop panicked on purpose at thread exit");
    }
}

static AT_EXIT: ContextVar<PanicsWhenDropped> = ContextVar::new("at exit");
static AT_EXIT_TOO: ContextVar<PanicsWhenDropped> = ContextVar::new("at exit too");

/// A thread that ends with values whose `Drop` panics in its context (its own, and one an
/// attach it never ended displaced): its context goes in a thread-local's destructor, where a
/// panic aborts the process. Every value is dropped and the process goes on.
#[test]
fn a_thread_ending_with_panicking_values_in_its_context_does_not_abort() {
    static DROPPED: AtomicIsize = AtomicIsize::new(0);
    std::thread::spawn(|| {
        AT_EXIT.set(PanicsWhenDropped(&DROPPED));
        let mut held = Context::new();
        held.run(|| AT_EXIT_TOO.set(PanicsWhenDropped(&DROPPED)));
        // Never detached: the thread's own context stays displaced until the thread ends.
        let _left = contextvars::attach(held).unwrap();
        assert!(AT_EXIT.with(|v| v.is_none()));
        // A snapshot of the attached context, cached by the thread.
        let _ = get_execution_context();
    })
    .join()
    .expect("the thread itself does not panic");
    assert_eq!(DROPPED.load(Ordering::SeqCst), 2);
}

/// A panic payload whose own `Drop` panics: what `panic_any` raises from [`Retiring`].
struct NastyPayload;

impl Drop for NastyPayload {
    fn drop(&mut self) {
        panic!("the payload's drop panicked on purpose");
    }
}

/// A value whose `Drop` panics with a [`NastyPayload`] when armed.
struct Retiring {
    armed: bool,
    dropped: &'static AtomicU64,
}

impl Drop for Retiring {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        if self.armed {
            std::panic::panic_any(NastyPayload);
        }
    }
}

/// Values displaced while a `with` borrow lends them are retired, and dropped when the
/// outermost borrow ends: if several `Drop`s panic there, with payloads whose own `Drop`
/// panics, every value is still dropped, the first panic comes out, and the process goes on
/// (the later payloads used to be dropped bare, mid-loop, and the rest of the values while
/// that panic unwound: an abort).
#[test]
fn retired_values_whose_drops_panic_with_panicking_payloads_are_all_dropped() {
    static DROPPED: AtomicU64 = AtomicU64::new(0);
    static A: ContextVar<Retiring> = ContextVar::new("retiring.a");
    static B: ContextVar<Retiring> = ContextVar::new("retiring.b");
    static C: ContextVar<Retiring> = ContextVar::new("retiring.c");
    on_fresh_thread(|| {
        let armed = || Retiring {
            armed: true,
            dropped: &DROPPED,
        };
        let calm = || Retiring {
            armed: false,
            dropped: &DROPPED,
        };
        A.set(armed());
        B.set(armed());
        C.set(armed());
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            A.with(|_| {
                B.with(|_| {
                    C.with(|_| {
                        // Each displaces the value its borrow lends: retired, not dropped.
                        A.set(calm());
                        B.set(calm());
                        C.set(calm());
                        assert_eq!(DROPPED.load(Ordering::SeqCst), 0);
                    });
                });
            });
        }));
        assert_eq!(
            DROPPED.load(Ordering::SeqCst),
            3,
            "every retired value dropped"
        );
        let payload = outcome.expect_err("the first panic comes out");
        // Dropping it would panic: it is looked at and leaked.
        assert!(payload.is::<NastyPayload>());
        std::mem::forget(payload);
        assert!(A.with(|a| a.is_some_and(|a| !a.armed)));
    });
}

/// As above, while a panic of the borrowing code unwinds: every retired value is dropped
/// and every panic of theirs (and of their payloads) is discarded; the code's own panic
/// comes out (the first retired value's payload was dropped bare while unwinding: an abort).
#[test]
fn retired_values_dropped_while_unwinding_discard_their_panics() {
    static DROPPED: AtomicU64 = AtomicU64::new(0);
    static A: ContextVar<Retiring> = ContextVar::new("retiring_unwind.a");
    static B: ContextVar<Retiring> = ContextVar::new("retiring_unwind.b");
    on_fresh_thread(|| {
        let value = |armed| Retiring {
            armed,
            dropped: &DROPPED,
        };
        A.set(value(true));
        B.set(value(true));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            A.with(|_| {
                B.with(|_| {
                    A.set(value(false));
                    B.set(value(false));
                    panic!("the borrowing code panics");
                });
            });
        }));
        assert_eq!(
            DROPPED.load(Ordering::SeqCst),
            2,
            "every retired value dropped"
        );
        let payload = outcome.expect_err("the code's panic comes out");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"the borrowing code panics")
        );
    });
}

/// A `SetGuard` undoes its set before the token's copy of the value below it drops: when
/// that copy is the last of a value whose `Drop` panics (the caller replaced it meanwhile),
/// the panic comes out of the guard's drop with the set undone.
#[test]
fn a_set_guard_undoes_its_set_before_a_panicking_value_below_drops() {
    static LAYERED: ContextVar<PanicsOnDrop> = ContextVar::new("layered_guard");
    static MARK: ContextVar<u8> = ContextVar::new("layered_mark");

    on_fresh_thread(|| {
        LAYERED.set(PanicsOnDrop { armed: true });
        let mut lc = LogicalContext::new();
        // A generator's step: the guard's token holds the caller's value as the one below.
        let guard = run_with_logical_context(&mut lc, || {
            MARK.set(1);
            LAYERED.set_guard(PanicsOnDrop { armed: false })
        });
        // The caller replaces its value: the token's copy is now the last one.
        LAYERED.set(PanicsOnDrop { armed: false });
        let message = run_with_logical_context(&mut lc, || expect_panic(|| drop(guard)));
        assert_eq!(message, "panicking drop");
        // The set is undone: the generator's layer holds no value of its own, so the
        // caller's shows through.
        let (own, mark) = run_with_logical_context(&mut lc, || {
            (
                LAYERED.with(|value| value.map(|value| value.armed)),
                MARK.get(),
            )
        });
        assert_eq!(own, Some(false), "the caller's value shows through");
        assert_eq!(mark, Some(1));
        assert!(
            lc.iter().all(|(var, _)| var.id() != LAYERED.id()),
            "nothing left in the layer"
        );
    });
}

/// A `SetGuard` dropped during the thread's teardown, after the thread's context state is
/// gone (it is held by another thread-local's value), neither panics nor aborts.
#[test]
fn a_set_guard_made_and_dropped_during_thread_teardown_is_quiet() {
    static LATE: ContextVar<u8> = ContextVar::new("late_guard");

    struct MakesAGuard;
    impl Drop for MakesAGuard {
        fn drop(&mut self) {
            let _guard = LATE.set_guard(1);
        }
    }
    thread_local! {
        static HOLDER: RefCell<Option<MakesAGuard>> = const { RefCell::new(None) };
    }

    let joined = std::thread::spawn(|| {
        // Registered before the context state, so destroyed after it (on Linux).
        HOLDER.with(|holder| *holder.borrow_mut() = Some(MakesAGuard));
        LATE.set(0);
    })
    .join();
    assert!(joined.is_ok());
}
