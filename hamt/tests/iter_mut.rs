//! `iter_mut` and `values_mut`: copy-on-write per node, so clones keep their values, and a
//! uniquely owned map is changed in place without copying.

mod common;

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};

use common::check_against_model;
use hamt::HamtMap;
use hamt::testing::{HashKey, IdentityState, MaskedState};

thread_local! {
    static CLONES: Cell<usize> = const { Cell::new(0) };
    /// Clones left before `Counted::clone` panics (`usize::MAX`: never).
    static CLONES_BEFORE_PANIC: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A value that counts its clones (per thread), and can be told to panic in one.
#[derive(Debug, PartialEq, Eq)]
struct Counted(u64);

/// Drop glue: the map guards the copies of nodes whose keys or values have destructors
/// against panicking clones (the half-built copy is dropped, not leaked; without drop glue
/// the crate docs allow the copy's memory to leak, and the leak check would flag it).
impl Drop for Counted {
    fn drop(&mut self) {}
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        let left = CLONES_BEFORE_PANIC.get();
        if left == 0 {
            panic!("Counted::clone told to panic");
        }
        CLONES_BEFORE_PANIC.set(left.saturating_sub(1));
        CLONES.set(CLONES.get() + 1);
        Counted(self.0)
    }
}

fn take_clones() -> usize {
    CLONES.replace(0)
}

const N: u64 = if cfg!(miri) { 300 } else { 3_000 };

/// Keys hashed with 9 bits: deep tries and many collision nodes.
fn sample() -> (HamtMap<u64, Counted, MaskedState>, HashMap<u64, u64>) {
    let mut map = HamtMap::with_hasher(MaskedState::new(9));
    let mut model = HashMap::new();
    for i in 0..N {
        map.insert(i, Counted(i));
        model.insert(i, i);
    }
    (map, model)
}

fn plain(map: &HamtMap<u64, Counted, MaskedState>) -> HamtMap<u64, u64, MaskedState> {
    let mut out = HamtMap::with_hasher(*map.hasher());
    for (k, v) in map {
        out.insert(*k, v.0);
    }
    out
}

#[test]
fn iter_mut_changes_every_value_and_leaves_clones_alone() {
    let (mut map, model) = sample();
    let snapshot = map.clone();
    take_clones();
    let mut seen = 0;
    for (k, v) in map.iter_mut() {
        assert_eq!(*k, v.0);
        v.0 += 1_000_000;
        seen += 1;
    }
    assert_eq!(seen, N);
    // The whole trie was shared: every node was copied once, so every value cloned once.
    assert_eq!(take_clones(), N as usize);
    let changed: HashMap<u64, u64> = model.iter().map(|(k, v)| (*k, v + 1_000_000)).collect();
    check_against_model(&plain(&map), &changed);
    map.check_invariants();
    // The clone still sees the old values.
    check_against_model(&plain(&snapshot), &model);
    snapshot.check_invariants();
}

#[test]
fn iter_mut_on_a_uniquely_owned_map_copies_nothing() {
    let (mut map, model) = sample();
    take_clones();
    for (_, v) in &mut map {
        v.0 *= 2;
    }
    assert_eq!(take_clones(), 0);
    let doubled: HashMap<u64, u64> = model.iter().map(|(k, v)| (*k, v * 2)).collect();
    check_against_model(&plain(&map), &doubled);
    // A map sharing only part of its trie copies only that part: one edit of a clone
    // unshares one path, and iterating the clone copies the rest.
    let snapshot = map.clone();
    map.insert(0, Counted(7));
    take_clones();
    map.values_mut().for_each(|v| v.0 += 1);
    let copied = take_clones();
    assert!(copied > 0 && copied < N as usize, "copied {copied} values");
    assert_eq!(snapshot.get(&0), Some(&Counted(0)));
    assert_eq!(map.get(&0), Some(&Counted(8)));
    map.check_invariants();
    snapshot.check_invariants();
}

#[test]
fn values_mut_and_a_partial_iteration() {
    let (mut map, model) = sample();
    let snapshot = map.clone();
    let mut values = map.values_mut();
    assert_eq!(values.len(), N as usize);
    for v in values.by_ref().take(10) {
        v.0 = u64::MAX;
    }
    assert_eq!(values.len(), N as usize - 10);
    assert_eq!(map.values().filter(|v| v.0 == u64::MAX).count(), 10);
    map.check_invariants();
    check_against_model(&plain(&snapshot), &model);
}

#[test]
fn iter_mut_reaches_collision_nodes_and_the_deepest_level() {
    let keys: Vec<HashKey> = (0..5)
        .map(|id| HashKey::new(0, id))
        .chain([HashKey::new(1 << 31, 9), HashKey::new(1 << 30, 10)])
        .collect();
    let mut map: HamtMap<HashKey, u64, IdentityState> = HamtMap::with_hasher(IdentityState);
    for k in &keys {
        map.insert(*k, k.id);
    }
    let snapshot = map.clone();
    map.values_mut().for_each(|v| *v += 100);
    for k in &keys {
        assert_eq!(map[k], k.id + 100);
        assert_eq!(snapshot[k], k.id);
    }
    map.check_invariants();
    let mut empty: HamtMap<u8, u8> = HamtMap::new();
    assert_eq!(empty.iter_mut().next(), None);
    assert_eq!(empty.values_mut().len(), 0);
}

/// A `Clone` panicking while `iter_mut` copies a shared node leaves both versions valid: the
/// clone unchanged, the map with each value either changed or as it was.
#[test]
fn a_panicking_clone_during_iter_mut_leaves_both_versions_valid() {
    let (base, model) = sample();
    for allowed in [0, 1, 40, N as usize / 2, N as usize - 1] {
        let mut map = base.clone();
        let snapshot = map.clone();
        CLONES_BEFORE_PANIC.set(allowed);
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            for (_, v) in map.iter_mut() {
                v.0 += 1_000_000;
            }
        }));
        CLONES_BEFORE_PANIC.set(usize::MAX);
        assert!(result.is_err(), "no panic with {allowed} clones allowed");
        map.check_invariants();
        snapshot.check_invariants();
        check_against_model(&plain(&snapshot), &model);
        assert_eq!(map.len(), model.len());
        for (k, v) in &map {
            assert!(v.0 == *k || v.0 == *k + 1_000_000, "{k} => {}", v.0);
        }
        // The map is still usable, and a second pass finishes.
        map.values_mut().for_each(|v| v.0 %= 1_000_000);
        check_against_model(&plain(&map), &model);
    }
    take_clones();
}
