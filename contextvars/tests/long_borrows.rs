//! A long borrow (`ContextVar::with`, or `get`'s clone) delays no drop but the one it must:
//! every value displaced on the thread while the borrow is open is dropped at once, unless the
//! borrow lends that very value. Memory stays flat under a borrow that never ends, and a
//! panicking `Drop` of a retired value never aborts the process.
#![allow(unsafe_code)] // the byte-counting global allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use contextvars::ContextVar;

mod common;
use common::on_fresh_thread;

/// Counts the bytes allocated and not yet freed by each thread, then defers to the system
/// allocator.
struct LiveBytes;

thread_local! {
    // `const` and without a destructor: reading it never allocates.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get() + delta));
}

// SAFETY: every method forwards to `System` with the arguments it was given, so `LiveBytes`
// upholds the `GlobalAlloc` contract exactly as `System` does; counting touches only a
// thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        // SAFETY: the caller upholds `alloc`'s contract, passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        // SAFETY: the caller upholds `alloc_zeroed`'s contract, passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        // SAFETY: the caller upholds `realloc`'s contract, passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        // SAFETY: the caller upholds `dealloc`'s contract, passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: LiveBytes = LiveBytes;

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

thread_local! {
    static DROPPED: Cell<u64> = const { Cell::new(0) };
}

fn dropped() -> u64 {
    DROPPED.with(Cell::get)
}

/// A value that counts its drops (per thread) and carries heap data, so a retained one
/// shows in the live bytes.
#[derive(Debug)]
struct Counted {
    id: u64,
    _payload: Vec<u8>,
}

impl Counted {
    fn new(id: u64) -> Self {
        Counted {
            id,
            _payload: vec![0; 64],
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        DROPPED.with(|count| count.set(count.get() + 1));
    }
}

const SETS: u64 = if cfg!(miri) { 300 } else { 1_000_000 };

#[test]
fn sets_of_another_variable_inside_a_long_with_drop_at_once_and_memory_stays_flat() {
    static CONFIG: ContextVar<String> = ContextVar::new("config");
    static WORK: ContextVar<Counted> = ContextVar::new("work");

    on_fresh_thread(|| {
        CONFIG.set("serving".to_string());
        drop(WORK.set(Counted::new(0)));
        CONFIG.with(|config| {
            assert_eq!(config.map(String::as_str), Some("serving"));
            // Warm up: the first sets may grow the trie and the thread state once.
            for id in 1..=8 {
                drop(WORK.set(Counted::new(id)));
            }
            let baseline = live_bytes();
            let mut peak = baseline;
            for id in 9..=SETS {
                drop(WORK.set(Counted::new(id)));
                // Every displaced value was dropped by the time `set` and its token are gone.
                assert_eq!(dropped(), id, "displaced values are dropped at once");
                peak = peak.max(live_bytes());
            }
            assert_eq!(WORK.with(|work| work.map(|work| work.id)), Some(SETS));
            // Flat: what the loop retains at its peak is not proportional to its length
            // (one value and a path of the trie at most, never the displaced values).
            assert!(
                peak - baseline <= 512,
                "live bytes grew by {} over {SETS} sets under one borrow",
                peak - baseline
            );
            // The borrowed value itself was never touched.
            assert_eq!(config.map(String::as_str), Some("serving"));
        });
        assert_eq!(
            dropped(),
            SETS,
            "nothing was left for the end of the borrow"
        );
        WORK.delete().unwrap();
        assert_eq!(dropped(), SETS + 1);
    });
}

#[test]
fn deletes_and_resets_under_a_long_get_clone_drop_at_once() {
    /// Sets and resets another variable every time it is cloned: `get` lends the value to
    /// `Clone`, which is user code running under a borrow.
    #[derive(Debug)]
    struct BusyClone;

    impl Clone for BusyClone {
        fn clone(&self) -> Self {
            for id in 0..100 {
                let before = dropped();
                let token = OTHER.set(Counted::new(id));
                OTHER.reset(token).unwrap();
                // Reset displaced the new value: dropped now.
                assert_eq!(dropped(), before + 1);
                OTHER.set(Counted::new(id));
                OTHER.delete().unwrap();
                assert_eq!(dropped(), before + 2);
            }
            BusyClone
        }
    }

    static BUSY: ContextVar<BusyClone> = ContextVar::new("busy");
    static OTHER: ContextVar<Counted> = ContextVar::new("other");

    on_fresh_thread(|| {
        BUSY.set(BusyClone);
        assert!(BUSY.get().is_some());
        assert_eq!(dropped(), 200);
    });
}

/// A read-modify-write through `with` inside a borrow that lasts: each value the inner
/// borrow lent, then displaced, goes when that borrow ends, not when the outer one does.
#[test]
fn values_inner_borrows_lent_go_when_those_borrows_end_under_a_long_with() {
    static CONFIG: ContextVar<String> = ContextVar::new("config_rmw");
    static LOG: ContextVar<Counted> = ContextVar::new("log_rmw");

    on_fresh_thread(|| {
        CONFIG.set("serving".to_string());
        LOG.set(Counted::new(0));
        CONFIG.with(|config| {
            let step = |id| {
                LOG.with(|log| {
                    assert_eq!(log.map(|log| log.id), Some(id - 1));
                    // The lent value is displaced: retired while this borrow lends it.
                    drop(LOG.set(Counted::new(id)));
                    assert_eq!(log.map(|log| log.id), Some(id - 1), "still valid");
                });
            };
            for id in 1..=8 {
                step(id);
            }
            let baseline = live_bytes();
            let mut peak = baseline;
            for id in 9..=SETS {
                step(id);
                assert_eq!(dropped(), id, "released when the inner borrow ended");
                peak = peak.max(live_bytes());
            }
            assert!(
                peak - baseline <= 512,
                "live bytes grew by {} over {SETS} inner borrows under one borrow",
                peak - baseline
            );
            assert_eq!(config.map(String::as_str), Some("serving"));
        });
        assert_eq!(dropped(), SETS);
        LOG.delete().unwrap();
        assert_eq!(dropped(), SETS + 1);
    });
}

#[test]
fn the_lent_value_itself_is_kept_until_its_borrow_ends() {
    static VAR: ContextVar<Counted> = ContextVar::new("lent");
    static OTHER: ContextVar<Counted> = ContextVar::new("other_lent");

    on_fresh_thread(|| {
        VAR.set(Counted::new(1));
        OTHER.set(Counted::new(10));
        VAR.with(|outer| {
            OTHER.with(|other| {
                // Both values are lent: replacing them keeps both alive.
                drop(VAR.set(Counted::new(2)));
                drop(OTHER.set(Counted::new(11)));
                assert_eq!(dropped(), 0);
                assert_eq!(other.map(|value| value.id), Some(10));
                // A value of a variable nobody borrows goes at once, even now.
                drop(VAR.set(Counted::new(3)));
                assert_eq!(dropped(), 1, "value 2 was never lent");
            });
            // The inner borrow ended: value 10, which only it lent, goes; value 1, which the
            // outer borrow still lends, stays.
            assert_eq!(
                dropped(),
                2,
                "value 10 goes when the borrow that lent it ends"
            );
            assert_eq!(outer.map(|value| value.id), Some(1));
        });
        assert_eq!(
            dropped(),
            3,
            "value 1 goes when the borrow that lent it ends"
        );
        assert_eq!(VAR.with(|value| value.map(|value| value.id)), Some(3));
    });
}

#[test]
fn nesting_deeper_than_the_recorded_borrows_retires_conservatively_then_releases() {
    // Not an inline kind: `with` lends the value itself, so each borrow is recorded (an
    // inline value would be lent as a copy, opening no borrow at all).
    static VAR: ContextVar<String> = ContextVar::new("nested");
    static WORK: ContextVar<Counted> = ContextVar::new("work_nested");

    fn nest(depth: u32, inside: &mut dyn FnMut()) {
        if depth == 0 {
            inside();
        } else {
            VAR.with(|value| {
                assert_eq!(value.map(String::as_str), Some("seven"));
                nest(depth - 1, inside);
            });
        }
    }

    /// As `nest`, recording after each borrow ends how many stay open and how many values
    /// have been dropped.
    fn nest_observing(
        depth: u32,
        total: u32,
        inside: &mut dyn FnMut(),
        seen: &mut Vec<(u32, u64)>,
    ) {
        if depth == 0 {
            inside();
        } else {
            VAR.with(|_| nest_observing(depth - 1, total, inside, seen));
            seen.push((total - depth, dropped()));
        }
    }

    on_fresh_thread(|| {
        VAR.set("seven".to_string());
        WORK.set(Counted::new(0));
        let mut sets = 0;
        // 40 nested borrows: past the exactly recorded ones, drops wait (never unsound).
        nest(40, &mut || {
            for id in 1..=10 {
                drop(WORK.set(Counted::new(id)));
                sets += 1;
            }
            assert_eq!(dropped(), 0, "dropped under more borrows than are recorded");
        });
        assert_eq!(sets, 10);
        assert_eq!(dropped(), 10, "released once the nesting fell back");
        // Released as soon as no more borrows are open than are recorded (16), none of
        // which lends them: not at the end of the outermost borrow.
        let mut seen = Vec::new();
        nest_observing(
            24,
            24,
            &mut || {
                for id in 12..=21 {
                    drop(WORK.set(Counted::new(id)));
                }
            },
            &mut seen,
        );
        for (open, dropped) in seen {
            let expected = if open > 16 { 10 } else { 20 };
            assert_eq!(dropped, expected, "with {open} borrows open");
        }
        // Shallow nesting: exact again.
        nest(3, &mut || {
            drop(WORK.set(Counted::new(22)));
            assert_eq!(dropped(), 21);
        });
    });
}

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(true) };
}

/// A value whose `Drop` panics while its thread is armed (disarmed before the thread ends,
/// since a panic in a thread-local destructor aborts).
#[derive(Debug)]
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        DROPPED.with(|count| count.set(count.get() + 1));
        if ARMED.with(Cell::get) {
            panic!("panicking drop");
        }
    }
}

#[test]
fn a_retired_value_whose_drop_panics_during_unwinding_does_not_abort() {
    static VAR: ContextVar<PanicsOnDrop> = ContextVar::new("panics_on_drop");
    static AFTER: ContextVar<u32> = ContextVar::new("after");

    on_fresh_thread(|| {
        drop(VAR.set(PanicsOnDrop));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            VAR.with(|_| {
                // The lent value is displaced: retired until the borrow ends, which happens
                // while this panic unwinds; its own panic must not abort the process.
                drop(VAR.set(PanicsOnDrop));
                assert_eq!(dropped(), 0, "lent, so kept");
                panic!("inside with");
            })
        }));
        let payload = outcome.expect_err("the closure's panic comes out");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"inside with"));
        assert_eq!(
            dropped(),
            1,
            "the retired value was dropped during the unwinding"
        );

        // The thread works normally afterwards.
        AFTER.set(5);
        assert_eq!(AFTER.get(), Some(5));
        assert!(VAR.with(|value| value.is_some()));
        ARMED.with(|armed| armed.set(false));
    });
}

#[test]
fn a_retired_value_whose_drop_panics_after_the_closure_returns_passes_the_panic_on() {
    static VAR: ContextVar<PanicsOnDrop> = ContextVar::new("panics_on_drop_late");
    static NEXT: ContextVar<Counted> = ContextVar::new("next_late");

    on_fresh_thread(|| {
        drop(VAR.set(PanicsOnDrop));
        NEXT.set(Counted::new(1));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            VAR.with(|_| {
                NEXT.with(|_| {
                    drop(VAR.set(PanicsOnDrop));
                    // Also lent and retired, dropped after the panicking one.
                    drop(NEXT.set(Counted::new(2)));
                });
                "closure result"
            })
        }));
        let payload = outcome.expect_err("the drop's panic comes out of `with`");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"panicking drop"));
        // Both retired values were dropped despite the panic: nothing leaked.
        assert_eq!(dropped(), 2);
        assert_eq!(NEXT.with(|next| next.map(|next| next.id)), Some(2));
        ARMED.with(|armed| armed.set(false));
    });
}
