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

/// An occupied entry keeps the node its removal edits (the anchor) and works from there: the
/// node holding the entry, or the ancestor a collapsing node's last entry moves into.
#[test]
fn occupied_entries_work_from_their_anchor() {
    use crate::Entry;

    let shapes: [(u32, u64, u32); 12] = [
        // (hash, id, the anchor's level)
        (1, 0, 0),           // an entry in the root
        (2, 0, 0),           //
        (3 | 1 << 5, 0, 0),  // a two-entry node below the root collapses into it
        (3 | 2 << 5, 0, 0),  //
        (4 | 1 << 5, 0, 1),  // a three-entry node stays
        (5, 0, 0),           // two entries at level 6 under single-child nodes: the root
        (5 | 1 << 31, 0, 0), //
        (6, 0, 2),           // the same, but level 2 also holds an entry
        (6 | 1 << 10, 0, 2), // that entry: its node keeps a child
        (7, 0, 0),           // a two-entry collision node collapses up to the root
        (8, 0, 7),           // a three-entry collision node stays
        (4 | 2 << 5 | 1 << 31, 0, 1),
    ];
    let mut base = HamtMap::with_hasher(IdentityState);
    for &(hash, id, _) in &shapes {
        base.insert(HashKey::new(hash, id), u64::from(hash));
    }
    base.insert(HashKey::new(4 | 3 << 5, 0), 0);
    base.insert(HashKey::new(6 | 1 << 31, 0), 0);
    base.insert(HashKey::new(7, 1), 0);
    base.insert(HashKey::new(8, 1), 0);
    base.insert(HashKey::new(8, 2), 0);
    base.check_invariants();

    for &(hash, id, level) in &shapes {
        let key = HashKey::new(hash, id);
        let value = u64::from(hash);
        let mut map = base.clone();
        let Entry::Occupied(entry) = map.entry(key) else {
            panic!("{key:?} is in the map");
        };
        assert_eq!(entry.anchor_shift, level * crate::node::BITS, "{key:?}");
        assert_eq!(*entry.get(), value);
        if level == 0 {
            // Nothing above the root to copy: a read-only entry leaves the map shared.
            assert!(map.ptr_eq(&base), "{key:?}");
        }

        let Entry::Occupied(mut entry) = map.entry(key) else {
            unreachable!()
        };
        assert_eq!(entry.insert(value + 1), value);
        *entry.get_mut() += 1;
        assert_eq!(*entry.get(), value + 2);
        map.check_invariants();
        assert_eq!(map[&key], value + 2);
        assert_eq!(base[&key], value, "the clone keeps its value");

        let Entry::Occupied(entry) = map.entry(key) else {
            unreachable!()
        };
        assert_eq!(entry.remove_entry(), (key, value + 2));
        map.check_invariants();
        assert_eq!(map.len(), base.len() - 1);
        assert_eq!(map.get(&key), None);
        assert_eq!(base[&key], value);
        base.check_invariants();
    }

    // Removing the last entry through an entry empties the map.
    let mut one = HamtMap::with_hasher(IdentityState);
    one.insert(HashKey::new(9, 0), 1);
    if let Entry::Occupied(entry) = one.entry(HashKey::new(9, 0)) {
        assert_eq!(entry.remove(), 1);
    }
    assert!(one.is_empty() && one.root.is_none());
    one.check_invariants();
}

#[test]
fn table_rank_counts_like_count_ones() {
    use crate::node::index;

    let mut state = 0x9e37_79b9_u32;
    let mut maps = vec![0, u32::MAX, 0x8000_0000, 0x7ff, 0x3f_f800, 0xffc0_0000];
    for _ in 0..2_000 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        maps.push(state);
    }
    for map in maps {
        for bucket in 0..32 {
            let bit = 1u32 << bucket;
            assert_eq!(
                index(map, bit),
                (map & (bit - 1)).count_ones() as usize,
                "map {map:#x}, bucket {bucket}"
            );
        }
    }
}

/// A root whose 32 buckets all hold children takes the lookup path that finds a child from
/// the hash alone; hits and misses through it must agree with the entries.
#[test]
fn lookups_through_a_node_of_32_children() {
    let mut map = HamtMap::with_hasher(IdentityState);
    for bucket in 0..32u32 {
        // Two keys per root bucket, apart at the next level: every root bucket is a child.
        map.insert(HashKey::new(bucket, 0), bucket);
        map.insert(HashKey::new(bucket | (1 << 5), 1), bucket + 100);
    }
    map.check_invariants();
    let root = map.root.as_ref().unwrap();
    assert_eq!(root.header.node_map, u32::MAX);
    assert_eq!(root.header.data_map, 0);
    for bucket in 0..32u32 {
        assert_eq!(map.get(&HashKey::new(bucket, 0)), Some(&bucket));
        assert_eq!(
            map.get(&HashKey::new(bucket | (1 << 5), 1)),
            Some(&(bucket + 100))
        );
        // Same slot, another key; an empty bucket of the child; a deeper miss.
        assert_eq!(map.get(&HashKey::new(bucket, 7)), None);
        assert_eq!(map.get(&HashKey::new(bucket | (2 << 5), 0)), None);
        assert_eq!(map.get(&HashKey::new(bucket | (1 << 10), 0)), None);
    }
    // A third level under one child: still found through the full root.
    map.insert(HashKey::new(3 | (1 << 10), 2), 7);
    assert_eq!(map.get(&HashKey::new(3 | (1 << 10), 2)), Some(&7));
    map.check_invariants();
}
