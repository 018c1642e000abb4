//! Unit tests that need the crate's internals.

use crate::HamtMap;
use crate::testing::{HashKey, IdentityState};

#[test]
fn split_and_collapse_keep_canonical_shape() {
    let mut map = HamtMap::with_hasher(IdentityState);
    // Same low 5 bits: the second insert pushes both into a sub-node.
    map.insert(HashKey::new(0b00001, 0), 0);
    map.insert(HashKey::new(0b10_0001, 1), 1);
    map.check_invariants();
    let root = map.root.as_ref().unwrap();
    assert_eq!(root.header.data_map, 0);
    assert_eq!(root.header.node_map, 0b10);
    map.remove(&HashKey::new(0b00001, 0));
    map.check_invariants();
    let root = map.root.as_ref().unwrap();
    assert_eq!(
        root.header.data_map, 0b10,
        "the last entry of the sub-node is inlined"
    );
    assert_eq!(root.header.node_map, 0);
}

/// A quick randomised check against `std::collections::HashMap`, with collisions forced by a
/// 6-bit hash; the thorough model tests live in `tests/model.rs`.
#[test]
fn smoke_against_std_with_collisions() {
    use crate::testing::MaskedState;
    use std::collections::HashMap;

    let mut state = 0x1234_5678_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut map = HamtMap::with_hasher(MaskedState::new(6));
    let mut model = HashMap::new();
    let mut versions = Vec::new();
    for step in 0..4000 {
        let key = next() % 300;
        if next() % 3 == 0 {
            assert_eq!(map.remove(&key), model.remove(&key));
        } else {
            assert_eq!(map.insert(key, step), model.insert(key, step));
        }
        if step % 500 == 0 {
            versions.push((map.clone(), model.clone()));
        }
        assert_eq!(map.len(), model.len());
    }
    map.check_invariants();
    for (version, expected) in &versions {
        version.check_invariants();
        assert_eq!(version.len(), expected.len());
        for (k, v) in expected {
            assert_eq!(version.get(k), Some(v));
        }
    }
    let collected: HashMap<_, _> = map.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(collected, model);
}
