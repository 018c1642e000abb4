//! `intersection`, `difference` and `symmetric_difference`: exact results against a
//! `std::collections::HashMap` model (with hashers that force collisions, and with maps hashed
//! differently), and shared subtrees kept or dropped whole.

mod common;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};

use common::{CountingState, build, check_against_model};
use hamt::HamtMap;
use hamt::testing::{HashKey, IdentityState, MaskedState};
use proptest::prelude::*;
use proptest::test_runner::RngAlgorithm;

/// The three operations on the models: (intersection, difference, symmetric difference).
fn model_ops<K: Hash + Eq + Clone, V: Clone>(
    a: &HashMap<K, V>,
    b: &HashMap<K, V>,
) -> [HashMap<K, V>; 3] {
    let only = |x: &HashMap<K, V>, y: &HashMap<K, V>| -> HashMap<K, V> {
        x.iter()
            .filter(|(k, _)| !y.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let both = a
        .iter()
        .filter(|(k, _)| b.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut either = only(a, b);
    either.extend(only(b, a));
    [both, only(a, b), either]
}

/// Checks all three operations both ways (`check_against_model` runs `check_invariants`),
/// and that neither input changed.
fn check_ops<K, V, S>(
    a: (&HamtMap<K, V, S>, &HashMap<K, V>),
    b: (&HamtMap<K, V, S>, &HashMap<K, V>),
) where
    K: Hash + Eq + Clone + Debug,
    V: Clone + PartialEq + Debug,
    S: BuildHasher + Clone,
{
    for ((x, x_model), (y, y_model)) in [(a, b), (b, a)] {
        let [both, only_x, either] = model_ops(x_model, y_model);
        check_against_model(&x.intersection(y), &both);
        check_against_model(&x.difference(y), &only_x);
        check_against_model(&x.symmetric_difference(y), &either);
        check_against_model(x, x_model);
    }
}

fn check_unrelated<S: BuildHasher + Clone>(a: &HashMap<u16, u8>, b: &HashMap<u16, u8>, s: S, t: S) {
    let (x, x_model) = build(s, a.iter().map(|(k, v)| (*k, *v)));
    let (y, y_model) = build(t, b.iter().map(|(k, v)| (*k, *v)));
    check_ops((&x, &x_model), (&y, &y_model));
}

/// A map and a version of it derived by edits: they share most of their structure.
fn check_derived<S: BuildHasher + Clone>(a: &HashMap<u16, u8>, edits: &[(u16, Option<u8>)], s: S) {
    let (x, x_model) = build(s, a.iter().map(|(k, v)| (*k, *v)));
    let (mut y, mut y_model) = (x.clone(), x_model.clone());
    for &(k, v) in edits {
        match v {
            Some(v) => assert_eq!(y.insert(k, v), y_model.insert(k, v)),
            None => assert_eq!(y.remove(&k), y_model.remove(&k)),
        }
    }
    check_ops((&x, &x_model), (&y, &y_model));
    // The same version on both sides.
    check_ops((&x, &x_model), (&x.clone(), &x_model));
}

fn entries() -> impl Strategy<Value = HashMap<u16, u8>> {
    proptest::collection::hash_map(0..300u16, 0..3u8, 0..120)
}

fn edits() -> impl Strategy<Value = Vec<(u16, Option<u8>)>> {
    proptest::collection::vec((0..300u16, proptest::option::of(0..3u8)), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 128 },
        rng_algorithm: RngAlgorithm::XorShift,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn set_ops_of_unrelated_maps_with_one_hasher(a in entries(), b in entries()) {
        // 5 and 3 hash bits: collision nodes at the bottom of deep tries everywhere.
        check_unrelated(&a, &b, MaskedState::new(5), MaskedState::new(5));
        check_unrelated(&a, &b, MaskedState::new(3), MaskedState::new(3));
        check_unrelated(&a, &b, IdentityState, IdentityState);
    }

    #[test]
    fn set_ops_of_maps_hashed_differently(a in entries(), b in entries()) {
        check_unrelated(&a, &b, MaskedState::new(4), MaskedState::new(32));
        check_unrelated(&a, &b, RandomState::new(), RandomState::new());
    }

    #[test]
    fn set_ops_of_a_map_and_its_edited_version(a in entries(), e in edits()) {
        check_derived(&a, &e, MaskedState::new(4));
        check_derived(&a, &e, RandomState::new());
    }
}

/// Shared subtrees are kept or dropped without being looked into: no key is hashed.
#[test]
fn a_map_against_itself_costs_one_pointer_comparison() {
    let state = CountingState::new();
    let n = if cfg!(miri) { 500 } else { 20_000 };
    let (a, _) = build(state.clone(), (0..n).map(|i| (i, i)));
    let same = a.clone();
    state.take_calls();
    assert!(a.intersection(&same).ptr_eq(&a));
    assert!(a.difference(&same).is_empty());
    assert!(a.symmetric_difference(&same).is_empty());
    assert_eq!(state.take_calls(), 0, "an entry was looked at");
    a.difference(&same).check_invariants();
}

/// Against an edited version, the cost is the part the maps do not share, and the result
/// reuses `self`'s untouched nodes.
#[test]
fn set_ops_with_an_edited_version_cost_the_edit() {
    let state = CountingState::new();
    let n: u64 = if cfg!(miri) { 2_000 } else { 50_000 };
    let (a, model) = build(state.clone(), (0..n).map(|i| (i, i)));
    let b = a.update(n, 0).without(&7);
    state.take_calls();

    // Everything of `a` but key 7 is in `b`.
    let both = a.intersection(&b);
    let hashed = state.take_calls();
    assert!(hashed < 300, "intersection hashed {hashed} keys of {n}");
    assert_eq!(both.len() as u64, n - 1);
    assert!(!both.contains_key(&7));
    // Most of the trie is `a`'s: the diff opens only the rebuilt path.
    let mut diff = a.diff(&both);
    assert_eq!(diff.by_ref().count(), 1);
    assert!(diff.nodes_visited() <= 8);

    let only_a = a.difference(&b);
    let only_b = b.difference(&a);
    let either = a.symmetric_difference(&b);
    let hashed = state.take_calls();
    assert!(
        hashed < 1_000,
        "the differences hashed {hashed} keys of {n}"
    );
    assert_eq!(only_a.into_iter().collect::<Vec<_>>(), [(7, 7)]);
    assert_eq!(only_b.into_iter().collect::<Vec<_>>(), [(n, 0)]);
    let mut either: Vec<_> = either.into_iter().collect();
    either.sort();
    assert_eq!(either, [(7, 7), (n, 0)]);

    // An intersection with a superset is `self` itself.
    let bigger = a.update(n + 1, 1);
    assert!(a.intersection(&bigger).ptr_eq(&a));
    check_against_model(&a, &model);
}

/// Collision nodes and the deepest level, with chosen hashes: a collision node reduced to
/// one entry is inlined up the path, and emptied sub-tries disappear.
#[test]
fn set_ops_keep_chosen_shapes_canonical() {
    let keys: Vec<HashKey> = (0..4)
        .map(|id| HashKey::new(0, id))
        .chain([
            HashKey::new(1 << 30, 10),
            HashKey::new(1 << 31, 11),
            HashKey::new(1, 12),
            HashKey::new(1 | 1 << 5, 13),
        ])
        .collect();
    let (full, full_model) = build(IdentityState, keys.iter().map(|k| (*k, k.id)));
    for mask in 0u32..(1 << keys.len()) {
        let subset = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, k)| (*k, k.id + 100));
        let (part, part_model) = build(IdentityState, subset);
        check_ops((&full, &full_model), (&part, &part_model));
        // A subset derived from the full map shares its structure.
        let mut derived = full.clone();
        let mut derived_model = full_model.clone();
        for (i, k) in keys.iter().enumerate() {
            if mask & (1 << i) == 0 {
                derived.remove(k);
                derived_model.remove(k);
            }
        }
        check_ops((&full, &full_model), (&derived, &derived_model));
    }
}

#[test]
fn from_std_hash_map() {
    let std_map: HashMap<u32, String> = (0..500).map(|i| (i, i.to_string())).collect();
    let map: HamtMap<u32, String, IdentityState> = HamtMap::from(std_map.clone());
    check_against_model(&map, &std_map);
    let empty: HamtMap<u32, String> = HashMap::new().into();
    assert!(empty.is_empty());
}
