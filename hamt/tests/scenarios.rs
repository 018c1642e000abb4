//! Hand-placed shapes with chosen hashes (after the `HashKey` cases of CPython's and
//! immutables' `test_map.py`), root sharing, and the std-like trait surface.

mod common;

use std::collections::HashMap;
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::hash::{BuildHasher, BuildHasherDefault};

use common::{CountingState, SplitMix64, build, check_against_model};
use hamt::HamtMap;
use hamt::testing::{HashKey, IdentityState, MaskedState};

type Map = HamtMap<HashKey, u64, IdentityState>;
type Model = HashMap<HashKey, u64>;

fn key(hash: u32, id: u64) -> HashKey {
    HashKey::new(hash, id)
}

/// Builds a map and its model from keys, each valued by its id.
fn map_of(keys: &[HashKey]) -> (Map, Model) {
    build(IdentityState, keys.iter().map(|k| (*k, k.id)))
}

/// A version of a map together with the contents it must keep.
struct Version {
    map: Map,
    model: Model,
}

impl Version {
    fn check(&self) {
        check_against_model(&self.map, &self.model);
    }
}

/// Applies each edit persistently to the latest version, keeping every version, and checks
/// all of them after each edit.
fn versions(edits: &[(HashKey, Option<u64>)]) -> Vec<Version> {
    let mut all = vec![Version {
        map: Map::with_hasher(IdentityState),
        model: Model::new(),
    }];
    for &(k, value) in edits {
        let last = all.last().unwrap();
        let (mut map, mut model) = (last.map.clone(), last.model.clone());
        match value {
            Some(v) => {
                map = map.update(k, v);
                model.insert(k, v);
            }
            None => {
                map = map.without(&k);
                model.remove(&k);
            }
        }
        all.push(Version { map, model });
        all.iter().for_each(Version::check);
    }
    all
}

/// Removes `keys` one at a time, checking the map against the model (with its invariants,
/// canonical shape among them) and that it equals a fresh map built from the keys left.
fn remove_one_by_one(map: &mut Map, model: &mut Model, keys: &[HashKey]) {
    for k in keys {
        assert_eq!(map.remove(k), model.remove(k), "remove({k:?})");
        check_against_model(map, model);
        let (fresh, _) = build(IdentityState, model.iter().map(|(k, v)| (*k, *v)));
        assert!(
            *map == fresh,
            "after removing {k:?}, not the map of the keys left"
        );
    }
}

#[test]
fn three_keys_with_one_hash_then_overwrite_keep_every_version() {
    let h = 0x0ABC_DEF1;
    let all = versions(&[
        (key(h, 0), Some(0)),
        (key(h, 1), Some(1)),
        (key(h, 2), Some(2)),
        (key(h, 1), Some(100)),
        (key(h, 0), None),
        (key(h, 2), None),
    ]);
    assert_eq!(all[3].map.len(), 3);
    assert_eq!(all[4].map.get(&key(h, 1)), Some(&100));
    assert_eq!(all[3].map.get(&key(h, 1)), Some(&1));
    assert_eq!(all[6].map.len(), 1);
}

#[test]
fn collision_node_below_a_key_sharing_25_bits() {
    let h = 0x0ABC_DEF1;
    let sharing_25_bits = key(h ^ (1 << 25), 2);
    let sharing_30_bits = key(h ^ (1 << 30), 3);
    let all = versions(&[
        (key(h, 0), Some(0)),
        (key(h, 1), Some(1)),
        (sharing_25_bits, Some(2)),
        (sharing_30_bits, Some(3)),
        (key(h, 0), None),
        (sharing_25_bits, None),
    ]);
    // Removing the keys added after the collision gives back the collision's shape.
    let (mut map, mut model) = (all[4].map.clone(), all[4].model.clone());
    remove_one_by_one(&mut map, &mut model, &[sharing_30_bits, sharing_25_bits]);
    assert!(map == all[2].map);
    // Emptying the collision node instead leaves the two other keys, canonically placed.
    let (mut map, mut model) = (all[4].map.clone(), all[4].model.clone());
    remove_one_by_one(&mut map, &mut model, &[key(h, 1), key(h, 0)]);
    assert_eq!(map.len(), 2);
}

/// The smallest map using the last trie level: two keys whose hashes differ only in bit 31.
#[test]
fn keys_differing_only_in_bit_31_pass_check_invariants() {
    let (map, model) = map_of(&[key(0, 0), key(1 << 31, 1)]);
    check_against_model(&map, &model);
}

#[test]
fn deepest_trie_with_a_collision_node_iterates_completely() {
    let keys = [
        key(0, 0),
        key(0, 1),
        key(0, 2),
        key(1 << 30, 3),
        key(1 << 31, 4),
        key(3 << 30, 5),
        key(1 << 25, 6),
        key(1 << 29, 7),
    ];
    let (map, model) = map_of(&keys);
    check_against_model(&map, &model);

    let shared = map.clone();
    let mut owned: Vec<_> = shared.clone().into_iter().collect();
    owned.sort();
    let mut expected: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
    expected.sort();
    assert_eq!(owned, expected, "owned iteration of a shared deepest trie");
    let mut owned_unique: Vec<_> = map.into_iter().collect();
    owned_unique.sort();
    assert_eq!(
        owned_unique, expected,
        "owned iteration of a unique deepest trie"
    );

    let empty = Map::with_hasher(IdentityState);
    assert_eq!(empty.diff(&shared).count(), keys.len());
    assert_eq!(shared.union(&empty), shared);
    let (mut map, mut model) = (shared.clone(), model);
    remove_one_by_one(&mut map, &mut model, &keys);
    assert!(map.is_empty());
    check_against_model(&shared, &expected.into_iter().collect());
}

#[test]
fn seventeen_keys_then_delete_down_to_empty() {
    let keys: Vec<_> = (0..17).map(|i| key(i, u64::from(i))).collect();
    let (mut map, mut model) = map_of(&keys);
    check_against_model(&map, &model);
    let full = map.clone();
    // The same hashes shifted up a level, so the keys sit in sub-nodes instead.
    let deep: Vec<_> = (0..17).map(|i| key(i << 5 | 7, u64::from(i))).collect();
    let (mut deep_map, mut deep_model) = map_of(&deep);

    let mut order = keys.clone();
    SplitMix64(17).shuffle(&mut order);
    remove_one_by_one(&mut map, &mut model, &order);
    remove_one_by_one(&mut deep_map, &mut deep_model, &deep);
    assert!(map.is_empty() && deep_map.is_empty());
    check_against_model(&full, &keys.iter().map(|k| (*k, k.id)).collect());
}

#[test]
fn emptying_a_collision_node_one_key_at_a_time() {
    let h = 0x8000_0003;
    let mut keys: Vec<_> = (0..5).map(|id| key(h, id)).collect();
    // Neighbours sharing 5, 20 and 30 low bits with the collision's hash.
    keys.extend([
        key(h ^ (1 << 5), 10),
        key(h ^ (1 << 20), 11),
        key(h ^ (1 << 30), 12),
    ]);
    let (mut map, mut model) = map_of(&keys);
    let before = map.clone();
    remove_one_by_one(&mut map, &mut model, &keys[..5]);
    assert_eq!(map.len(), 3);
    remove_one_by_one(&mut map, &mut model, &keys[5..]);
    check_against_model(&before, &keys.iter().map(|k| (*k, k.id)).collect());
}

/// Hashes from a 12-bit random value repeated across the word: keys with equal values
/// collide in all 32 bits (about 1.7 keys per hash for 7000 keys), others split near the root.
fn stress_key(i: u64) -> HashKey {
    let r = (SplitMix64(i).next_u64() % 4096) as u32;
    key(r | r << 12 | r << 24, i)
}

#[test]
fn stress_7000_keys_set_and_delete_in_shuffled_order() {
    // Miri interprets every instruction: keep its size small.
    const N: u64 = if cfg!(miri) { 300 } else { 7000 };
    let mut rng = SplitMix64(0x5EED);
    let mut order: Vec<u64> = (0..N).collect();
    rng.shuffle(&mut order);

    let mut map = Map::with_hasher(IdentityState);
    let mut model = Model::new();
    let mut snapshots = Vec::new();
    for (step, &i) in order.iter().enumerate() {
        let k = stress_key(i);
        assert_eq!(map.insert(k, i), None);
        model.insert(k, i);
        assert_eq!(map.get(&k), Some(&i));
        assert_eq!(map.len(), model.len());
        if step % 1000 == 0 {
            check_against_model(&map, &model);
        }
        if step as u64 == N / 2 {
            snapshots.push((map.clone(), model.clone()));
        }
    }
    check_against_model(&map, &model);

    rng.shuffle(&mut order);
    for (step, &i) in order.iter().enumerate() {
        let k = stress_key(i);
        assert_eq!(map.remove(&k), Some(i));
        model.remove(&k);
        assert_eq!(map.get(&k), None);
        assert_eq!(map.len(), model.len());
        if step % 1000 == 0 {
            check_against_model(&map, &model);
        }
        if step as u64 == N / 2 {
            snapshots.push((map.clone(), model.clone()));
        }
    }
    assert!(map.is_empty());
    assert!(
        map.ptr_eq(&Map::with_hasher(IdentityState)),
        "an empty map has no root"
    );
    for (snapshot, snapshot_model) in &snapshots {
        check_against_model(snapshot, snapshot_model);
    }
}

#[test]
fn removing_a_missing_key_keeps_the_root() {
    let h = 0x0000_0421;
    let (map, _) = map_of(&[key(h, 0), key(h, 1), key(h ^ (1 << 12), 2), key(5, 3)]);
    let missing = [
        key(h, 9),             // same hash: looked for in the collision node
        key(h ^ (1 << 12), 9), // an entry's bucket, another key
        key(h ^ (1 << 20), 9), // down a shared path, absent below
        key(6, 9),             // an empty root bucket
        key(5 | 1 << 31, 9),   // an entry's root bucket, another key
    ];
    for k in &missing {
        let mut edited = map.clone();
        assert_eq!(edited.remove(k), None);
        assert!(edited.ptr_eq(&map), "remove({k:?}) changed the root");
        assert!(edited == map);
        assert!(
            map.without(k).ptr_eq(&map),
            "without({k:?}) changed the root"
        );
    }
    assert!(
        Map::with_hasher(IdentityState)
            .without(&key(0, 0))
            .is_empty()
    );
}

#[test]
fn insert_if_changed_with_an_equal_value_keeps_the_root() {
    let h = 0x0000_0421;
    let (map, model) = map_of(&[key(h, 0), key(h, 1), key(7, 2)]);
    for (k, v) in &model {
        let mut edited = map.clone();
        assert!(!edited.insert_if_changed(*k, *v));
        assert!(
            edited.ptr_eq(&map),
            "insert_if_changed({k:?}, {v}) changed the root"
        );
        assert!(edited.insert_if_changed(*k, v + 1));
        assert!(!edited.ptr_eq(&map));
        assert_eq!(edited[k], v + 1);
        assert_eq!(map[k], *v);
    }
    let mut edited = map.clone();
    assert!(
        edited.insert_if_changed(key(h, 5), 5),
        "a new key is a change"
    );
    assert_eq!(edited.len(), 4);
}

#[test]
fn maps_built_in_different_orders_are_equal() {
    let mut order: Vec<u64> = (0..600).collect();
    let forward: Vec<_> = order.iter().map(|&i| (i, i * 2)).collect();
    SplitMix64(3).shuffle(&mut order);
    let shuffled: Vec<_> = order.iter().map(|&i| (i, i * 2)).collect();

    fn both<S: BuildHasher + Clone>(s: S, a: &[(u64, u64)], b: &[(u64, u64)]) {
        let (x, _) = build(s.clone(), a.iter().copied());
        let (y, _) = build(s, b.iter().copied());
        assert!(x == y, "same entries, different insertion orders");
        assert!(y == x, "equality is symmetric");
        let mut z = y.clone();
        z.insert(0, 1);
        assert!(x != z, "a changed value");
        z.remove(&0);
        assert!(x != z, "a missing key");
        z.insert(10_000, 0);
        assert!(x != z, "another key");
    }
    both(RandomState::new(), &forward, &shuffled);
    // Few hash bits: collision nodes, whose entries are kept in insertion order.
    both(MaskedState::new(5), &forward, &shuffled);
    both(IdentityState, &forward, &shuffled);

    // The shape is the same too (canonical form): `==` falls back to lookups where shapes
    // differ, so equality alone would not show it. Equal shapes compare without hashing.
    let state = CountingState::new();
    let (x, _) = build(state.clone(), forward.iter().copied());
    let (y, _) = build(state.clone(), shuffled.iter().copied());
    x.check_invariants();
    y.check_invariants();
    state.take_calls();
    assert!(x == y);
    assert_eq!(
        state.take_calls(),
        0,
        "keys were looked up: the shapes differ"
    );
}

#[test]
fn maps_with_different_random_seeds_compare_by_contents() {
    let a: HamtMap<u64, u64> = (0..500).map(|i| (i, i)).collect();
    let b: HamtMap<u64, u64> = (0..500).rev().map(|i| (i, i)).collect();
    assert!(a == b, "same contents, different seeds");
    assert!(a != b.update(3, 4));
    assert!(a != b.without(&3));
    assert!(a.without(&3) != b.without(&4));
}

/// `MaskedState::new(11)` and `new(12)` hash the equality probe values alike, but place keys
/// whose 12-bit hash has bit 11 set differently. Equal contents must still compare equal.
#[test]
fn maps_with_differently_masked_hashers_compare_by_contents() {
    let (a, _) = build(MaskedState::new(11), (0..200u32).map(|i| (i, i)));
    let (b, _) = build(MaskedState::new(12), (0..200u32).map(|i| (i, i)));
    assert!(a == b, "equal contents under two hashers compare unequal");
}

#[test]
fn equal_maps_hash_equally() {
    let fixed = BuildHasherDefault::<DefaultHasher>::default();
    let a: HamtMap<u64, u64> = (0..300).map(|i| (i, i)).collect();
    let b: HamtMap<u64, u64> = (0..300).rev().map(|i| (i, i)).collect();
    let (c, _) = build(MaskedState::new(4), (0..300u64).map(|i| (i, i)));
    assert_eq!(fixed.hash_one(&a), fixed.hash_one(&b));
    assert_eq!(
        fixed.hash_one(&a),
        fixed.hash_one(&c),
        "the hash ignores the hash builder"
    );
    assert_ne!(fixed.hash_one(&a), fixed.hash_one(a.update(1, 2)));
    let empty: HamtMap<u64, u64> = HamtMap::new();
    assert_eq!(
        fixed.hash_one(&empty),
        fixed.hash_one(HamtMap::<u64, u64>::new())
    );
}

#[test]
fn debug_output_lists_the_entries() {
    let empty: HamtMap<u32, &str> = HamtMap::new();
    assert_eq!(format!("{empty:?}"), "{}");
    let one: HamtMap<u32, &str> = [(1, "a")].into();
    assert_eq!(format!("{one:?}"), r#"{1: "a"}"#);
    let two: HamtMap<u32, &str> = [(1, "a"), (2, "b")].into();
    let text = format!("{two:?}");
    assert!(
        text == r#"{1: "a", 2: "b"}"# || text == r#"{2: "b", 1: "a"}"#,
        "{text}"
    );
}

#[test]
fn index_returns_the_value() {
    let map: HamtMap<String, u32> = [("a".to_string(), 1)].into();
    assert_eq!(map["a"], 1);
}

#[test]
#[should_panic(expected = "key not found")]
fn index_panics_on_a_missing_key() {
    let map: HamtMap<String, u32> = [("a".to_string(), 1)].into();
    std::hint::black_box(map["b"]);
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

#[test]
fn owned_iteration_of_shared_and_unique_maps() {
    let (map, model) = build(MaskedState::new(6), (0..500u64).map(|i| (i, i + 1)));
    let expected = sorted(model.clone().into_iter().collect());

    let shared = map.clone();
    let mut iter = map.clone().into_iter();
    assert_eq!(iter.len(), 500);
    let first: Vec<_> = iter.by_ref().take(100).collect();
    assert_eq!(iter.len(), 400);
    let rest: Vec<_> = iter.collect();
    assert_eq!(
        sorted([first, rest].concat()),
        expected,
        "owned iteration of a shared map"
    );
    check_against_model(&shared, &model);

    let after_edit = shared.update(1000, 0); // partly shared with `shared`
    let mut with_edit = sorted(after_edit.into_iter().collect());
    with_edit.retain(|&(k, _)| k != 1000);
    assert_eq!(
        with_edit, expected,
        "owned iteration of a partly shared map"
    );
    check_against_model(&shared, &model);

    drop(map);
    assert_eq!(
        sorted(shared.into_iter().collect()),
        expected,
        "owned iteration of a unique map"
    );

    let mut borrowed = 0;
    let (map, _) = build(MaskedState::new(6), (0..500u64).map(|i| (i, i + 1)));
    for (k, v) in &map {
        assert_eq!(*v, k + 1);
        borrowed += 1;
    }
    assert_eq!(borrowed, 500);
}

#[test]
fn from_iterator_and_extend_follow_hashmap() {
    let map: HamtMap<u32, char> = [(1, 'a'), (2, 'b'), (1, 'c')].into_iter().collect();
    assert_eq!(map.len(), 2);
    assert_eq!(map[&1], 'c', "the last value for a key wins");

    let mut extended = map.clone();
    extended.extend([(3, 'd'), (2, 'e')]);
    let other: HamtMap<u32, char> = [(4, 'f')].into();
    extended.extend(&other);
    let expected: HashMap<u32, char> = [(1, 'c'), (2, 'e'), (3, 'd'), (4, 'f')].into();
    check_against_model(&extended, &expected);
    check_against_model(&map, &[(1, 'c'), (2, 'b')].into());

    let defaulted: HamtMap<u32, char, IdentityState> = HamtMap::default();
    assert!(defaulted.is_empty());
}

#[cfg(feature = "serde")]
#[test]
fn serde_round_trip_through_json() {
    let (map, model): (HamtMap<String, u32>, _) =
        build(RandomState::new(), (0..200).map(|i| (format!("key{i}"), i)));
    let json = serde_json::to_string(&map).unwrap();
    let back: HamtMap<String, u32> = serde_json::from_str(&json).unwrap();
    check_against_model(&back, &model);
    assert!(back == map);
    let as_std: HashMap<String, u32> = serde_json::from_str(&json).unwrap();
    assert_eq!(as_std, model);

    let literal: HamtMap<String, u32> = serde_json::from_str(r#"{"a": 1, "b": 2}"#).unwrap();
    check_against_model(&literal, &[("a".into(), 1), ("b".into(), 2)].into());
    assert!(serde_json::from_str::<HamtMap<String, u32>>("[1, 2]").is_err());
}

#[cfg(feature = "rayon")]
#[test]
fn par_iter_sum_equals_iter_sum() {
    use rayon::iter::ParallelIterator;

    let (map, _) = build(MaskedState::new(8), (0..5000u64).map(|i| (i, i * 3)));
    let sequential: u64 = map.values().sum();
    let parallel: u64 = map.par_iter().map(|(_, v)| *v).sum();
    assert_eq!(parallel, sequential);
    assert_eq!(map.par_iter().count(), map.len());
    let deep = map_of(&[key(0, 0), key(0, 1), key(1 << 31, 2)]).0;
    assert_eq!(deep.par_iter().map(|(_, v)| *v).sum::<u64>(), 3);
    assert_eq!(Map::with_hasher(IdentityState).par_iter().count(), 0);
}
