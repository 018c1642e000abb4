//! `diff` and `union`: exact results against a model, and cost proportional to the
//! difference (a one-edit successor opens at most one node per trie level).

mod common;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};

use common::{
    Change, CountingState, assert_same_changes, build, check_against_model, model_diff,
    model_union, sorted_changes,
};
use hamt::testing::{HashKey, IdentityState, MaskedState};
use hamt::{DiffItem, HamtMap};
use proptest::prelude::*;
use proptest::test_runner::RngAlgorithm;

/// The trie depth: 7 bitmap levels and a collision level.
const MAX_DEPTH: usize = 8;

fn inverse<K: Clone, V: Clone>(change: &Change<K, V>) -> Change<K, V> {
    match change.clone() {
        Change::Added(k, v) => Change::Removed(k, v),
        Change::Removed(k, v) => Change::Added(k, v),
        Change::Changed(k, old, new) => Change::Changed(k, new, old),
    }
}

/// Asserts that `old.diff(new)` reports exactly `expected` after opening at most one node
/// per level, and the reverse diff reports its inverse.
fn assert_one_change<K, V, S>(
    old: &HamtMap<K, V, S>,
    new: &HamtMap<K, V, S>,
    expected: Change<K, V>,
) where
    K: Hash + Eq + Clone + Ord + Debug,
    V: PartialEq + Clone + Ord + Debug,
    S: BuildHasher,
{
    for (from, to, want) in [(old, new, expected.clone()), (new, old, inverse(&expected))] {
        let mut diff = from.diff(to);
        assert_eq!(sorted_changes(&mut diff), std::slice::from_ref(&want));
        // The diff is lazy: count the nodes it opened once it is exhausted.
        let visited = diff.nodes_visited();
        assert!(
            (1..=MAX_DEPTH).contains(&visited),
            "{want:?} opened {visited} nodes (len {})",
            old.len()
        );
    }
}

/// Insert, change and remove one key of a map holding `0..n`, persistently and in place.
fn one_edit_successors<S: BuildHasher + Clone>(hasher: S, n: u64) {
    let (base, _) = build(hasher, (0..n).map(|i| (i, i)));
    assert_one_change(&base, &base.update(n, 7), Change::Added(n, 7));
    assert_one_change(
        &base,
        &base.update(0, 12_345),
        Change::Changed(0, 0, 12_345),
    );
    assert_one_change(&base, &base.without(&1), Change::Removed(1, 1));

    let mut edited = base.clone();
    edited.insert(n / 2, 0);
    assert_one_change(&base, &edited, Change::Changed(n / 2, n / 2, 0));
    edited = base.clone();
    *edited.get_mut(&(n - 1)).unwrap() += 1;
    assert_one_change(&base, &edited, Change::Changed(n - 1, n - 1, n));

    let same = base.clone();
    let mut diff = base.diff(&same);
    assert_eq!(
        (diff.by_ref().count(), diff.nodes_visited()),
        (0, 0),
        "a map against its clone"
    );
    // Setting a key to its current value copies a path but reports nothing.
    assert_eq!(base.diff(&base.update(2, 2)).count(), 0);
}

#[test]
fn one_edit_diff_is_exact_and_bounded_by_depth_at_10_1000_100000() {
    // Miri interprets every instruction: keep its sizes small.
    let sizes: &[u64] = if cfg!(miri) {
        &[10, 200]
    } else {
        &[10, 1000, 100_000]
    };
    for &n in sizes {
        one_edit_successors(RandomState::new(), n);
    }
    // A deterministic hasher keeping few bits: deep tries with collision nodes.
    for n in [10, 1000, 10_000] {
        one_edit_successors(MaskedState::new(12), n);
    }
}

#[test]
fn one_edit_diff_inside_the_deepest_collision_node() {
    let keys: Vec<_> = (0..6)
        .map(|id| HashKey::new(0, id))
        .chain([
            HashKey::new(1 << 30, 10),
            HashKey::new(1 << 31, 11),
            HashKey::new(1, 12),
        ])
        .collect();
    let (base, _) = build(IdentityState, keys.iter().map(|k| (*k, k.id)));
    let collided = HashKey::new(0, 3);
    assert_one_change(
        &base,
        &base.update(collided, 99),
        Change::Changed(collided, 3, 99),
    );
    assert_one_change(
        &base,
        &base.without(&collided),
        Change::Removed(collided, 3),
    );
    let new = HashKey::new(0, 50);
    assert_one_change(&base, &base.update(new, 1), Change::Added(new, 1));
    let deepest = HashKey::new(1 << 31, 11);
    assert_one_change(&base, &base.without(&deepest), Change::Removed(deepest, 11));
}

#[test]
fn diff_against_an_empty_map_lists_everything() {
    let (full, model) = build(MaskedState::new(6), (0..300u32).map(|i| (i, i)));
    let empty = HamtMap::with_hasher(MaskedState::new(6));
    assert_eq!(
        sorted_changes(empty.diff(&full)),
        model_diff(&HashMap::new(), &model)
    );
    assert_eq!(
        sorted_changes(full.diff(&empty)),
        model_diff(&model, &HashMap::new())
    );
    assert_eq!(empty.diff(&empty).count(), 0);
}

/// The diff is lazy: the first item of a diff between two large maps that differ in many
/// places costs a walk down to one difference, not a comparison of everything. Measured in
/// node pairs opened and in keys hashed (each removal is confirmed by one lookup).
#[test]
fn the_first_item_of_a_large_diff_does_not_walk_everything() {
    let n: u64 = if cfg!(miri) { 3_000 } else { 60_000 };
    let state = CountingState::new();
    let (old, _) = build(state.clone(), (0..n).map(|i| (i, i)));
    let mut new = old.clone();
    for i in (0..n).step_by(3) {
        new.remove(&i);
    }
    let removed = n.div_ceil(3) as usize;

    state.take_calls();
    let mut diff = old.diff(&new);
    assert_eq!(state.take_calls(), 0, "creating a diff hashes nothing");
    assert!(matches!(diff.next(), Some(DiffItem::Removed(..))));
    let (first_hashes, first_nodes) = (state.take_calls(), diff.nodes_visited());
    assert!(
        first_hashes <= 1,
        "the first item hashed {first_hashes} keys"
    );
    assert!(
        (1..=MAX_DEPTH).contains(&first_nodes),
        "the first item opened {first_nodes} node pairs"
    );

    assert_eq!(diff.by_ref().count(), removed - 1);
    let (all_hashes, all_nodes) = (state.take_calls(), diff.nodes_visited());
    // The whole walk: one confirming lookup per removal, and a node pair per changed node.
    assert!(all_hashes + first_hashes >= removed);
    assert!(
        all_nodes > 50 * first_nodes,
        "the full diff opened {all_nodes} node pairs, the first item {first_nodes}"
    );
    // A diff that is dropped early does no more work.
    let mut partial = old.diff(&new);
    assert!(partial.nth(9).is_some());
    assert!(state.take_calls() <= 10);
    assert!(partial.nodes_visited() < all_nodes / 10);
}

/// `old.diff(new)`, `old.union(new)`, `old.merge(new)` and `==` against the models.
fn check_pair<K, S>(
    old: (&HamtMap<K, u8, S>, &HashMap<K, u8>),
    new: (&HamtMap<K, u8, S>, &HashMap<K, u8>),
) where
    K: Hash + Eq + Clone + Ord + Debug,
    S: BuildHasher + Clone,
{
    let ((old, old_model), (new, new_model)) = (old, new);
    let forward = sorted_changes(old.diff(new));
    assert_same_changes(&forward, &model_diff(old_model, new_model), "old.diff(new)");
    let backward = sorted_changes(new.diff(old));
    assert_same_changes(
        &backward,
        &model_diff(new_model, old_model),
        "new.diff(old)",
    );
    let expected = model_union(old_model, new_model);
    check_against_model(&old.union(new), &expected);
    let mut merged = old.clone();
    merged.merge(new);
    check_against_model(&merged, &expected);
    assert_eq!(old == new, old_model == new_model);
    check_against_model(old, old_model);
    check_against_model(new, new_model);
}

/// Unrelated maps built with one hasher (walked side by side) and with two (compared entry
/// by entry).
fn check_unrelated<S: BuildHasher + Clone>(a: &HashMap<u16, u8>, b: &HashMap<u16, u8>, s: S, t: S) {
    let (x, x_model) = build(s, a.iter().map(|(k, v)| (*k, *v)));
    let (y, y_model) = build(t, b.iter().map(|(k, v)| (*k, *v)));
    check_pair((&x, &x_model), (&y, &y_model));
}

/// `b` derived from `a` by edits, so the two share most of their structure.
fn check_derived<S: BuildHasher + Clone>(a: &HashMap<u16, u8>, edits: &[(u16, Option<u8>)], s: S) {
    let (x, x_model) = build(s, a.iter().map(|(k, v)| (*k, *v)));
    let (mut y, mut y_model) = (x.clone(), x_model.clone());
    for &(k, v) in edits {
        match v {
            Some(v) => assert_eq!(y.insert(k, v), y_model.insert(k, v)),
            None => assert_eq!(y.remove(&k), y_model.remove(&k)),
        }
    }
    check_pair((&x, &x_model), (&y, &y_model));
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
    fn diff_and_union_of_unrelated_maps_with_one_hasher(a in entries(), b in entries()) {
        let shared = RandomState::new();
        check_unrelated(&a, &b, shared.clone(), shared);
        check_unrelated(&a, &b, MaskedState::new(5), MaskedState::new(5));
        check_unrelated(&a, &b, IdentityState, IdentityState);
    }

    #[test]
    fn diff_and_union_with_different_random_seeds(a in entries(), b in entries()) {
        check_unrelated(&a, &b, RandomState::new(), RandomState::new());
    }

    #[test]
    fn diff_and_union_of_a_map_and_its_edited_version(a in entries(), e in edits()) {
        check_derived(&a, &e, RandomState::new());
        check_derived(&a, &e, MaskedState::new(4));
    }
}

#[test]
fn union_keeps_the_left_value_on_conflict() {
    let left: HashMap<u16, u8> = (0..100).map(|k| (k, 1)).collect();
    let right: HashMap<u16, u8> = (50..150).map(|k| (k, 2)).collect();
    check_unrelated(&left, &right, RandomState::new(), RandomState::new());
    let shared = RandomState::new();
    check_unrelated(&left, &right, shared.clone(), shared);
    check_unrelated(&left, &right, MaskedState::new(3), MaskedState::new(3));
}

/// `MaskedState::new(11)` and `new(12)` agree on the hasher probe values but place keys whose
/// 12-bit hash has bit 11 set differently: diff and union must still follow the contents.
#[test]
fn diff_and_union_with_differently_masked_hashers() {
    let a: HashMap<u16, u8> = (0..200).map(|k| (k, 1)).collect();
    let b: HashMap<u16, u8> = (100..300).map(|k| (k, 2)).collect();
    check_unrelated(&a, &b, MaskedState::new(11), MaskedState::new(12));
}

/// The same two hashers, union alone: where both maps hold a key, the left value must win
/// and no key may appear twice.
#[test]
fn union_with_differently_masked_hashers_keeps_left_values() {
    let (left, left_model) = build(MaskedState::new(11), (0..200u16).map(|k| (k, 1u8)));
    let mut right = HamtMap::with_hasher(MaskedState::new(12));
    let mut right_model = HashMap::new();
    for k in 100..300u16 {
        right.insert(k, 2u8);
        right_model.insert(k, 2u8);
    }
    check_against_model(&left.union(&right), &model_union(&left_model, &right_model));
}
