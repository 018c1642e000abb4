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

/// The table and `index` (which uses the instruction in a build for a CPU with `popcnt`, the
/// table otherwise) both count like `count_ones`, in every build.
#[test]
fn table_rank_counts_like_count_ones() {
    use crate::node::{index, rank_by_table};

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
            let below = map & (bit - 1);
            let expected = below.count_ones() as usize;
            assert_eq!(index(map, bit), expected, "map {map:#x}, bucket {bucket}");
            assert_eq!(
                rank_by_table(below),
                expected,
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

/// The slot count of the root node.
fn root_len<K, V, S>(map: &HamtMap<K, V, S>) -> usize {
    map.root.as_ref().map_or(0, |root| root.slice.len())
}

#[test]
fn dense_nodes_grow_and_shrink_at_the_threshold() {
    use crate::DiffItem;
    use crate::node::{DENSE_LEN, DENSE_MIN};

    // With the identity hash, key `k < 32` lands in root bucket `k`.
    let below = u64::from(DENSE_MIN) - 1;
    let mut map = HamtMap::with_hasher(IdentityState);
    for k in 0..below {
        map.insert(k, k);
    }
    map.check_invariants();
    assert_eq!(root_len(&map), below as usize, "sparse below the threshold");
    let sparse = map.clone();

    // One more bucket: the root turns dense, in the new version only.
    map.insert(below, below);
    map.check_invariants();
    assert_eq!(root_len(&map), DENSE_LEN);
    assert_eq!(root_len(&sparse), below as usize);
    sparse.check_invariants();
    assert_eq!(sparse.get(&below), None);

    // A key sharing bucket 0 with key 0 becomes a child of the dense root, in place.
    map.insert(32, 32);
    map.check_invariants();
    assert_eq!(root_len(&map), DENSE_LEN);
    for k in (0..=below).chain([32]) {
        assert_eq!(map.get(&k), Some(&k));
    }
    assert_eq!(
        map.get(&31),
        None,
        "an empty bucket of a dense node is a miss"
    );
    assert_eq!(map.get(&64), None, "a miss below a dense node's child");

    // A persistent insert into an empty bucket leaves the dense original as it was.
    let dense = map.clone();
    let more = map.update(31, 31);
    more.check_invariants();
    assert_eq!(more.get(&31), Some(&31));
    assert_eq!(map.get(&31), None);

    // Collapsing the child back into an entry keeps the node dense.
    assert_eq!(map.remove(&0), Some(0));
    map.check_invariants();
    assert_eq!(root_len(&map), DENSE_LEN);
    assert_eq!(map.get(&32), Some(&32));

    // Leaving a bucket empty below the threshold turns the root sparse again.
    assert_eq!(map.remove(&below), Some(below));
    map.check_invariants();
    assert_eq!(root_len(&map), below as usize);
    for k in 1..below {
        assert_eq!(map.get(&k), Some(&k));
    }

    // The dense snapshot is intact, and diff and equality see across the two layouts.
    dense.check_invariants();
    assert_eq!(dense.len(), below as usize + 2);
    let changes: Vec<_> = dense.diff(&map).collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes.contains(&DiffItem::Removed(&0, &0)));
    assert!(changes.contains(&DiffItem::Removed(&below, &below)));
    let rebuilt: HamtMap<u64, u64, IdentityState> = dense.iter().map(|(k, v)| (*k, *v)).collect();
    assert!(rebuilt == dense);
    assert!(dense.without(&0).without(&below) == map);
}

mod dense_model {
    use crate::HamtMap;
    use crate::testing::IdentityState;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Keys that fill the root's buckets (1..32), the buckets of the child under root bucket
    /// 0 (`b << 5`), and a level below that (`c << 10`), so that both levels cross the dense
    /// threshold both ways.
    fn key(seed: u8) -> u64 {
        let seed = u64::from(seed) % 66;
        match seed {
            0..=30 => seed + 1,
            31..=62 => (seed - 31) << 5,
            _ => (seed - 62) << 10,
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, u8),
        Remove(u8),
        Update(u8, u8),
        Without(u8),
        Retain(u8),
        Snapshot,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => any::<u8>().prop_map(Op::Remove),
            3 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Update(k, v)),
            3 => any::<u8>().prop_map(Op::Without),
            1 => (6..10u8).prop_map(Op::Retain),
            2 => Just(Op::Snapshot),
        ]
    }

    type Map = HamtMap<u64, u8, IdentityState>;

    fn same(map: &Map, model: &HashMap<u64, u8>) {
        map.check_invariants();
        assert_eq!(map.len(), model.len());
        for seed in 0..66 {
            let k = key(seed);
            assert_eq!(map.get(&k), model.get(&k), "key {k}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: if cfg!(miri) { 2 } else { 128 },
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Dense and sparse nodes against a model after every step, with old versions kept
        /// (so edits copy shared dense nodes) and removals that turn dense nodes sparse.
        #[test]
        fn dense_and_sparse_nodes_match_a_model(ops in proptest::collection::vec(op(), 0..400)) {
            // Start full (both levels dense): the mix of edits then drifts to about 60% of
            // the keys, so that both levels cross the dense threshold, down and back up.
            let mut model: HashMap<u64, u8> = (0..66).map(|seed| (key(seed), seed)).collect();
            let mut map: Map = model.iter().map(|(k, v)| (*k, *v)).collect();
            let mut versions = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(map.insert(key(k), v), model.insert(key(k), v));
                    }
                    Op::Remove(k) => prop_assert_eq!(map.remove(&key(k)), model.remove(&key(k))),
                    Op::Update(k, v) => {
                        let next = map.update(key(k), v);
                        versions.push((map, model.clone()));
                        map = next;
                        model.insert(key(k), v);
                    }
                    Op::Without(k) => {
                        let next = map.without(&key(k));
                        versions.push((map, model.clone()));
                        map = next;
                        model.remove(&key(k));
                    }
                    Op::Retain(m) => {
                        map.retain(|k, _| k % u64::from(m) != 0);
                        model.retain(|k, _| k % u64::from(m) != 0);
                    }
                    Op::Snapshot => versions.push((map.clone(), model.clone())),
                }
                same(&map, &model);
            }
            for (version, expected) in &versions {
                same(version, expected);
                let rebuilt: Map = expected.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert!(rebuilt == *version);
            }
        }
    }
}

/// `update` builds its version from the shared root directly (`node::insert_copy`), without
/// cloning the map first: every shape it meets (a new entry in a sparse node, one that makes a node dense, a vacant
/// bucket of a dense node, a replaced value, a split bucket, a collision node, a descent into
/// a child) must give the map an in-place `insert` on a clone gives, and leave the original
/// and every earlier version as they were.
#[test]
fn update_matches_insert_on_a_clone_for_every_shape() {
    use crate::testing::MaskedState;
    use std::collections::HashMap;

    // 9 hash bits: 32 root buckets, dense roots, sub-nodes, and collision nodes once keys
    // outnumber 512 hashes.
    let mut map = HamtMap::with_hasher(MaskedState::new(9));
    let mut model: HashMap<u64, u64> = HashMap::new();
    let mut versions = Vec::new();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    // Under Miri, fewer steps over fewer keys (each step compares whole maps).
    let (steps, keys) = if cfg!(miri) { (200, 90) } else { (3000, 900) };
    for step in 0..steps {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let key = state % keys;
        let next = map.update(key, step);
        let mut expected = map.clone();
        let replaced = expected.insert(key, step);
        assert_eq!(replaced, model.insert(key, step));
        next.check_invariants();
        assert_eq!(next, expected, "step {step}");
        assert_eq!(next.len(), model.len());
        assert_eq!(next.get(&key), Some(&step));
        if step % (steps / 10) == 0 {
            versions.push((map.clone(), map.len()));
        }
        map = next;
    }
    for (version, len) in &versions {
        version.check_invariants();
        assert_eq!(version.len(), *len);
        assert_eq!(version.iter().count(), *len);
    }
    for (k, v) in &model {
        assert_eq!(map.get(k), Some(v));
    }
}

/// An `update` that replaces a value keeps the stored key, as `insert` does, at the root and
/// below it.
#[test]
fn update_keeps_the_stored_key() {
    /// Equal (and hashed) by the number alone; the tag tells which key object is stored.
    #[derive(Clone, Debug)]
    struct Tagged(u32, &'static str);
    impl PartialEq for Tagged {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }
    impl Eq for Tagged {}
    impl std::hash::Hash for Tagged {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            state.write_u32(self.0);
        }
    }

    // 1 and 33 share the root bucket, so 33 sits in a sub-node.
    let map = HamtMap::with_hasher(IdentityState)
        .update(Tagged(1, "old"), 'a')
        .update(Tagged(33, "old"), 'b')
        .update(Tagged(2, "old"), 'c');
    let next = map
        .update(Tagged(2, "new"), 'C')
        .update(Tagged(33, "new"), 'B');
    next.check_invariants();
    let mut stored: Vec<_> = next.iter().map(|(k, v)| (k.0, k.1, *v)).collect();
    stored.sort_unstable();
    assert_eq!(stored, [(1, "old", 'a'), (2, "old", 'C'), (33, "old", 'B')]);
    let mut before: Vec<_> = map.iter().map(|(k, v)| (k.0, *v)).collect();
    before.sort_unstable();
    assert_eq!(before, [(1, 'a'), (2, 'c'), (33, 'b')]);
}

/// `without` copies the shared path directly (`node::remove_copy`): over growth and
/// shrinking phases (sub-nodes collapsing into their parents, collision nodes emptying) it
/// must give the map an in-place `remove` on a clone gives, share the root when the key is
/// absent, and leave earlier versions as they were. (Dense nodes turning sparse happen in
/// the final drain, which checks the invariants after each step.)
#[test]
fn without_matches_remove_on_a_clone_for_every_shape() {
    use crate::testing::MaskedState;
    use std::collections::HashMap;

    let mut map = HamtMap::with_hasher(MaskedState::new(9));
    let mut model: HashMap<u64, u64> = HashMap::new();
    let mut versions = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut removed = 0;
    // Under Miri, shorter phases over fewer keys (each step compares whole maps).
    let (steps, phase, keys) = if cfg!(miri) {
        (600, 100, 90)
    } else {
        (6000, 1000, 900)
    };
    for step in 0..steps {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let key = state % keys;
        // Grow for a phase, then mostly remove for a phase, and again.
        let growing = (step / phase) % 2 == 0;
        if growing != state.is_multiple_of(8) {
            map = map.update(key, step);
            model.insert(key, step);
            continue;
        }
        let next = map.without(&key);
        let mut expected = map.clone();
        let was = expected.remove(&key);
        assert_eq!(was, model.remove(&key), "step {step}");
        next.check_invariants();
        assert_eq!(next, expected, "step {step}");
        assert_eq!(next.len(), model.len());
        assert_eq!(next.get(&key), None);
        assert_eq!(
            next.ptr_eq(&map),
            was.is_none(),
            "an absent key shares the root"
        );
        removed += usize::from(was.is_some());
        if step % (phase / 2) == 0 {
            versions.push((map.clone(), map.len()));
        }
        map = next;
    }
    assert!(removed as u64 > steps / 6, "the removals ran: {removed}");
    for (version, len) in &versions {
        version.check_invariants();
        assert_eq!(version.iter().count(), *len);
    }
    // Down to empty, the last removal included.
    for key in model.keys() {
        map = map.without(key);
        map.check_invariants();
    }
    assert!(map.is_empty() && map.root.is_none());
}
