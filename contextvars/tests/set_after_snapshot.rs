//! A set after a snapshot copies one node when the context holds up to 32 variables whose ids
//! are consecutive (ids are handed out in order of first use): the variable-id hash gives
//! such variables a root bucket each, so the copied path is the root alone. Counted with a
//! counting global allocator, per thread. This file holds one test, so that no other test
//! takes variable ids in between.
#![allow(unsafe_code)] // the counting global allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use contextvars::{ContextVar, copy_context, get_execution_context};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every method forwards to `System` with the arguments it was given, so `Counting`
// upholds the `GlobalAlloc` contract exactly as `System` does; counting touches only a
// thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `alloc`'s contract, passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `alloc_zeroed`'s contract, passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `realloc`'s contract, passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `dealloc`'s contract, passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How many allocations `f` made on this thread (what it returns is dropped afterwards).
fn allocations<R>(f: impl FnOnce() -> R) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    let made = ALLOCATIONS.with(Cell::get) - before;
    drop(result);
    made
}

/// 32 variables: as many as the root of the trie has buckets.
static VARS: [ContextVar<u64>; 32] = [const { ContextVar::new("consecutive") }; 32];

#[test]
fn a_set_after_a_snapshot_copies_only_the_root() {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // Ids are taken here, in order, by the only test of this binary.
                for (value, var) in (0..).zip(&VARS) {
                    var.set(value);
                }
                // The premise: consecutive ids (else two may share a bucket for another reason).
                let first = VARS[0].id().get();
                for (offset, var) in (0..).zip(&VARS) {
                    assert_eq!(var.id().get(), first + offset, "ids not consecutive");
                }
                for (value, var) in (100..).zip(&VARS) {
                    let snapshot = copy_context();
                    // The snapshot itself was built by `copy_context`; the set allocates the
                    // value and one copy of the root node, nothing more.
                    let made = allocations(|| var.set(value));
                    assert_eq!(made, 2, "a set after a snapshot copied more than the root");
                    assert_eq!(snapshot.get(var), Some(value - 100));
                    assert_eq!(var.get(), Some(value));
                    drop(snapshot);
                }
                // Unshared again: the value alone.
                drop(get_execution_context());
                assert_eq!(allocations(|| VARS[0].set(7)), 1);
            })
            .join()
            .unwrap();
    });
}
