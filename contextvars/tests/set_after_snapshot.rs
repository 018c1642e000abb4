//! A set after a snapshot copies one node when the context holds up to 32 variables whose ids
//! are consecutive (ids are handed out in order of first use): the variable-id hash gives
//! such variables a root bucket each, so the copied path is the root alone. Counted with a
//! counting global allocator, per thread. This file holds one test, so that no other test
//! takes variable ids in between.

use contextvars::{ContextVar, copy_context, get_execution_context};

mod counting;
use counting::allocations;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

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
                    // The snapshot itself was built by `copy_context`; the set allocates one
                    // copy of the root node, nothing more (an integer is stored inline).
                    let made = allocations(|| var.set(value));
                    assert_eq!(made, 1, "a set after a snapshot copied more than the root");
                    assert_eq!(snapshot.get(var), Some(value - 100));
                    assert_eq!(var.get(), Some(value));
                    drop(snapshot);
                }
                // Unshared again: edited in place.
                drop(get_execution_context());
                assert_eq!(allocations(|| VARS[0].set(7)), 0);
            })
            .join()
            .unwrap();
    });
}
