//! Model-based property tests: random operation sequences applied to a `HamtMap` and to a
//! `std::collections::HashMap` model, compared after every step together with every older
//! version kept along the way.

mod common;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};

use common::{
    assert_same_changes, check_against_model, check_unchanged, model_diff, model_union,
    sorted_changes,
};
use hamt::testing::{HashKey, IdentityState, MaskedState};
use hamt::{Entry, HamtMap};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngAlgorithm};
use quickcheck::{Arbitrary, Gen, QuickCheck};

/// Key seeds are drawn from `0..KEYS`; each hasher configuration maps a seed to a key.
const KEYS: u16 = 64;
/// Values are drawn from `0..VALUES`: few values, so equal re-inserts and unchanged diff
/// entries happen often.
const VALUES: u32 = 4;
/// How many older versions are kept (and re-checked after every step).
const HISTORY: usize = 8;

#[derive(Clone, Debug)]
enum Op {
    Insert(u16, u32),
    Remove(u16),
    /// Persistent insert: the old version goes to the history.
    Update(u16, u32),
    /// Persistent remove: the old version goes to the history.
    Without(u16),
    /// Clone the map, insert into the clone, remove from the original; keep both.
    CloneMutateBoth {
        insert: (u16, u32),
        remove: u16,
    },
    Get(u16),
    GetMut(u16, u32),
    EntryOrInsert(u16, u32),
    EntryAndModify(u16),
    EntryRemove(u16),
    /// An occupied entry read, replaced and changed through `get`, `insert` and `get_mut`.
    EntryInsert(u16, u32),
    /// Retain with a closure that also changes values.
    Retain(u32),
    InsertIfChanged(u16, u32),
    /// Keep a snapshot of the current version.
    Snapshot,
    /// Drop the history, so the map's nodes become uniquely owned again.
    ForgetHistory,
    /// Diff a kept older version against the current one, both ways.
    Diff(usize),
    /// Union with another map: built from scratch or derived from a kept older version.
    Union {
        base: Option<usize>,
        entries: Vec<(u16, u32)>,
        in_place: bool,
    },
    /// `iter_mut` consumed part-way (`take` entries), changing each value it yields; with
    /// `shared`, the current version is kept first, so the walk copies shared nodes lazily.
    IterMut {
        take: u16,
        shared: bool,
    },
    /// `intersection` (0), `difference` (1) or `symmetric_difference` (2) with a kept older
    /// version (or an empty map); the result goes on, the inputs stay in the history.
    Combine {
        kind: u8,
        version: usize,
    },
}

/// Hashes with chosen low and high bits: pairs differ only in bit 30 or 31 (the deepest
/// level), share the low 5 bits (a split at level 1), or are equal (collision nodes).
const TRICKY_HASHES: [u32; 10] = [
    0,
    1 << 30,
    1 << 31,
    0xC000_0000,
    1,
    0x21,
    0x3FFF_FFFF,
    0xFFFF_FFFF,
    0x0200_0000,
    0x1F,
];

fn tricky_key(seed: u16) -> HashKey {
    let hashes = TRICKY_HASHES.len() as u16;
    HashKey::new(
        TRICKY_HASHES[usize::from(seed % hashes)],
        u64::from(seed / hashes),
    )
}

fn int_key(seed: u16) -> u32 {
    u32::from(seed)
}

/// A map under test, its model, and older versions with their models.
struct Harness<K, S> {
    key: fn(u16) -> K,
    map: HamtMap<K, u32, S>,
    model: HashMap<K, u32>,
    history: Vec<Version<K, S>>,
}

/// An older version of the map and the model it must still match.
type Version<K, S> = (HamtMap<K, u32, S>, HashMap<K, u32>);

impl<K, S> Harness<K, S>
where
    K: Hash + Eq + Clone + Ord + Debug,
    S: BuildHasher + Clone,
{
    fn new(hasher: S, key: fn(u16) -> K) -> Self {
        Harness {
            key,
            map: HamtMap::with_hasher(hasher),
            model: HashMap::new(),
            history: Vec::new(),
        }
    }

    fn keep(&mut self, map: HamtMap<K, u32, S>, model: HashMap<K, u32>) {
        self.history.push((map, model));
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
    }

    fn keep_current(&mut self) {
        self.keep(self.map.clone(), self.model.clone());
    }

    fn kept(&self, index: usize) -> Option<&Version<K, S>> {
        if self.history.is_empty() {
            None
        } else {
            self.history.get(index % self.history.len())
        }
    }

    /// The full comparison for the current version; older versions were fully compared
    /// when kept, and must since have stayed valid and yield exactly the same entries.
    fn check(&self) {
        check_against_model(&self.map, &self.model);
        // Every key of the space, present or not: a key the model lacks is absent.
        for seed in 0..KEYS {
            let k = (self.key)(seed);
            assert_eq!(self.map.get(&k), self.model.get(&k), "get({k:?})");
            assert_eq!(self.map.contains_key(&k), self.model.contains_key(&k));
        }
        for (old, old_model) in &self.history {
            check_unchanged(old, old_model);
        }
    }

    fn run(&mut self, ops: &[Op]) {
        for op in ops {
            self.apply(op);
            self.check();
        }
    }

    fn apply(&mut self, op: &Op) {
        let key = self.key;
        match op {
            Op::Insert(k, v) => {
                assert_eq!(self.map.insert(key(*k), *v), self.model.insert(key(*k), *v));
            }
            Op::Remove(k) => self.remove(&key(*k)),
            Op::Update(k, v) => {
                let next = self.map.update(key(*k), *v);
                self.keep_current();
                self.map = next;
                self.model.insert(key(*k), *v);
            }
            Op::Without(k) => {
                let next = self.map.without(&key(*k));
                if !self.model.contains_key(&key(*k)) {
                    assert!(
                        next.ptr_eq(&self.map),
                        "without a missing key shares the root"
                    );
                }
                self.keep_current();
                self.map = next;
                self.model.remove(&key(*k));
            }
            Op::CloneMutateBoth { insert, remove } => {
                let mut other = self.map.clone();
                let mut other_model = self.model.clone();
                let (k, v) = (key(insert.0), insert.1);
                assert_eq!(other.insert(k.clone(), v), other_model.insert(k, v));
                self.remove(&key(*remove));
                self.keep(other, other_model);
            }
            Op::Get(k) => {
                let k = key(*k);
                assert_eq!(self.map.get(&k), self.model.get(&k));
                assert_eq!(self.map.contains_key(&k), self.model.contains_key(&k));
                if let Some(v) = self.model.get(&k) {
                    assert_eq!(&self.map[&k], v);
                }
            }
            Op::GetMut(k, v) => {
                let k = key(*k);
                match (self.map.get_mut(&k), self.model.get_mut(&k)) {
                    (Some(ours), Some(theirs)) => {
                        *ours = *v;
                        *theirs = *v;
                    }
                    (None, None) => {}
                    (ours, theirs) => panic!("get_mut: {ours:?} but the model has {theirs:?}"),
                }
            }
            Op::EntryOrInsert(k, v) => {
                let k = key(*k);
                let ours = *self.map.entry(k.clone()).or_insert(*v);
                assert_eq!(ours, *self.model.entry(k).or_insert(*v));
            }
            Op::EntryAndModify(k) => {
                let k = key(*k);
                let bump = |v: &mut u32| *v = (*v + 1) % VALUES;
                let ours = *self.map.entry(k.clone()).and_modify(bump).or_insert(0);
                assert_eq!(ours, *self.model.entry(k).and_modify(bump).or_insert(0));
            }
            Op::EntryRemove(k) => {
                let k = key(*k);
                let expected = self.model.remove(&k);
                match self.map.entry(k) {
                    Entry::Occupied(entry) => assert_eq!(Some(entry.remove()), expected),
                    Entry::Vacant(_) => assert_eq!(expected, None),
                }
            }
            Op::EntryInsert(k, v) => {
                let k = key(*k);
                let expected = self.model.insert(k.clone(), *v);
                match self.map.entry(k) {
                    Entry::Occupied(mut entry) => {
                        assert_eq!(Some(*entry.get()), expected, "OccupiedEntry::get");
                        assert_eq!(Some(entry.insert(*v)), expected, "OccupiedEntry::insert");
                        assert_eq!(*entry.get(), *v);
                        *entry.get_mut() += VALUES;
                        *entry.get_mut() -= VALUES;
                        assert_eq!(*entry.get(), *v);
                    }
                    Entry::Vacant(entry) => {
                        assert_eq!(expected, None);
                        assert_eq!(*entry.insert(*v), *v);
                    }
                }
            }
            Op::Retain(modulus) => {
                let rule = |_: &K, v: &mut u32| {
                    *v = (*v + 1) % VALUES;
                    !v.is_multiple_of(*modulus)
                };
                self.map.retain(rule);
                self.model.retain(rule);
            }
            Op::InsertIfChanged(k, v) => {
                let k = key(*k);
                let before = self.map.clone();
                let changed = self.map.insert_if_changed(k.clone(), *v);
                let expected = self.model.insert(k, *v) != Some(*v);
                assert_eq!(changed, expected, "insert_if_changed result");
                if !changed {
                    assert!(self.map.ptr_eq(&before), "unchanged map keeps its root");
                }
            }
            Op::Snapshot => self.keep_current(),
            Op::ForgetHistory => self.history.clear(),
            Op::Diff(index) => {
                if let Some((old, old_model)) = self.kept(*index) {
                    let forward = sorted_changes(old.diff(&self.map));
                    let expected = model_diff(old_model, &self.model);
                    assert_same_changes(&forward, &expected, "old.diff(new)");
                    let backward = sorted_changes(self.map.diff(old));
                    let expected = model_diff(&self.model, old_model);
                    assert_same_changes(&backward, &expected, "new.diff(old)");
                }
                assert_eq!(
                    self.map.diff(&self.map.clone()).count(),
                    0,
                    "diff with itself"
                );
            }
            Op::Union {
                base,
                entries,
                in_place,
            } => self.union(*base, entries, *in_place),
            Op::IterMut { take, shared } => {
                if *shared {
                    self.keep_current();
                }
                let len = self.map.len();
                let take = usize::from(*take) % (len + 1);
                let mut iter = self.map.iter_mut();
                let mut seen = std::collections::HashSet::new();
                for taken in 0..take {
                    assert_eq!(iter.len(), len - taken, "IterMut::len");
                    let (k, v) = iter.next().expect("IterMut yields len entries");
                    assert!(seen.insert(k.clone()), "IterMut yielded {k:?} twice");
                    let expected = self.model.get_mut(k).expect("a key of the model");
                    assert_eq!(*v, *expected, "IterMut value of {k:?}");
                    *v = (*v + 1) % VALUES;
                    *expected = *v;
                }
                assert_eq!(iter.len(), len - take, "IterMut::len after {take}");
            }
            Op::Combine { kind, version } => {
                let (other, other_model) = match self.kept(*version) {
                    Some((map, model)) => (map.clone(), model.clone()),
                    None => (
                        HamtMap::with_hasher(self.map.hasher().clone()),
                        HashMap::new(),
                    ),
                };
                let only = |ours: &HashMap<K, u32>, theirs: &HashMap<K, u32>| -> HashMap<K, u32> {
                    ours.iter()
                        .filter(|(k, _)| !theirs.contains_key(*k))
                        .map(|(k, v)| (k.clone(), *v))
                        .collect()
                };
                let (result, expected) = match kind % 3 {
                    0 => (
                        self.map.intersection(&other),
                        self.model
                            .iter()
                            .filter(|(k, _)| other_model.contains_key(*k))
                            .map(|(k, v)| (k.clone(), *v))
                            .collect(),
                    ),
                    1 => (self.map.difference(&other), only(&self.model, &other_model)),
                    _ => {
                        let mut both = only(&self.model, &other_model);
                        both.extend(only(&other_model, &self.model));
                        (self.map.symmetric_difference(&other), both)
                    }
                };
                self.keep_current();
                self.keep(other, other_model);
                self.map = result;
                self.model = expected;
            }
        }
    }

    /// Removes `k`; removing a missing key must keep the root.
    fn remove(&mut self, k: &K) {
        let expected = self.model.remove(k);
        if expected.is_none() {
            let before = self.map.clone();
            assert_eq!(self.map.remove(k), None);
            assert!(
                self.map.ptr_eq(&before),
                "removing a missing key keeps the root"
            );
        } else {
            assert_eq!(self.map.remove(k), expected);
        }
    }

    fn union(&mut self, base: Option<usize>, entries: &[(u16, u32)], in_place: bool) {
        let (mut other, mut other_model) = match base.and_then(|i| self.kept(i)) {
            Some((map, model)) => (map.clone(), model.clone()),
            None => (
                HamtMap::with_hasher(self.map.hasher().clone()),
                HashMap::new(),
            ),
        };
        for &(k, v) in entries {
            other.insert((self.key)(k), v);
            other_model.insert((self.key)(k), v);
        }
        let expected = model_union(&self.model, &other_model);
        if in_place {
            self.map.merge(&other);
        } else {
            let merged = self.map.union(&other);
            self.keep_current();
            self.map = merged;
        }
        self.model = expected;
        // `other` must come out of it unchanged: keep it and check it from now on.
        self.keep(other, other_model);
    }
}

fn run_int_ops<S: BuildHasher + Clone>(hasher: S, ops: &[Op]) {
    Harness::new(hasher, int_key).run(ops);
}

fn run_tricky_ops(ops: &[Op]) {
    Harness::new(IdentityState, tricky_key).run(ops);
}

// ---- proptest ----

fn key_seed() -> impl Strategy<Value = u16> + Clone {
    0..KEYS
}

fn value() -> impl Strategy<Value = u32> + Clone {
    0..VALUES
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let (k, v) = (key_seed(), value());
    let kv = (k.clone(), v.clone());
    prop_oneof![
        6 => kv.clone().prop_map(|(k, v)| Op::Insert(k, v)),
        4 => k.clone().prop_map(Op::Remove),
        2 => kv.clone().prop_map(|(k, v)| Op::Update(k, v)),
        2 => k.clone().prop_map(Op::Without),
        1 => (kv.clone(), k.clone())
            .prop_map(|(insert, remove)| Op::CloneMutateBoth { insert, remove }),
        1 => k.clone().prop_map(Op::Get),
        1 => kv.clone().prop_map(|(k, v)| Op::GetMut(k, v)),
        1 => kv.clone().prop_map(|(k, v)| Op::EntryOrInsert(k, v)),
        1 => k.clone().prop_map(Op::EntryAndModify),
        1 => k.clone().prop_map(Op::EntryRemove),
        1 => kv.clone().prop_map(|(k, v)| Op::EntryInsert(k, v)),
        1 => (2..5u32).prop_map(Op::Retain),
        2 => kv.clone().prop_map(|(k, v)| Op::InsertIfChanged(k, v)),
        1 => Just(Op::Snapshot),
        1 => Just(Op::ForgetHistory),
        1 => any::<usize>().prop_map(Op::Diff),
        1 => (
            proptest::option::of(any::<usize>()),
            proptest::collection::vec(kv, 0..12),
            any::<bool>(),
        )
            .prop_map(|(base, entries, in_place)| Op::Union {
                base,
                entries,
                in_place,
            }),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(take, shared)| Op::IterMut { take, shared }),
        1 => (any::<u8>(), any::<usize>()).prop_map(|(kind, version)| Op::Combine { kind, version }),
    ]
}

fn ops_strategy() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op_strategy(), 0..if cfg!(miri) { 30 } else { 200 })
}

/// 256 cases per hasher, with a fast generator; failures are saved under `tests/proptest-regressions/` (the path is
/// relative to the package root, where `cargo test` runs integration tests) and replayed first.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 256 },
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/model.txt",
        ))),
        // ChaCha is the default and dominates the run time in debug builds.
        rng_algorithm: RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn proptest_random_state(ops in ops_strategy()) {
        run_int_ops(RandomState::new(), &ops);
    }

    #[test]
    fn proptest_masked_4_bits(ops in ops_strategy()) {
        run_int_ops(MaskedState::new(4), &ops);
    }

    #[test]
    fn proptest_masked_10_bits(ops in ops_strategy()) {
        run_int_ops(MaskedState::new(10), &ops);
    }

    #[test]
    fn proptest_chosen_hashes(ops in ops_strategy()) {
        run_tricky_ops(&ops);
    }
}

// ---- quickcheck ----

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        let k = |g: &mut Gen| u16::arbitrary(g) % KEYS;
        let v = |g: &mut Gen| u32::arbitrary(g) % VALUES;
        match u8::arbitrary(g) % 22 {
            0..=4 => Op::Insert(k(g), v(g)),
            5..=7 => Op::Remove(k(g)),
            8 => Op::Update(k(g), v(g)),
            9 => Op::Without(k(g)),
            10 => Op::CloneMutateBoth {
                insert: (k(g), v(g)),
                remove: k(g),
            },
            11 => Op::Get(k(g)),
            12 => Op::GetMut(k(g), v(g)),
            13 => match u8::arbitrary(g) % 4 {
                0 => Op::EntryOrInsert(k(g), v(g)),
                1 => Op::EntryAndModify(k(g)),
                2 => Op::EntryInsert(k(g), v(g)),
                _ => Op::EntryRemove(k(g)),
            },
            14 => Op::Retain(2 + u32::arbitrary(g) % 3),
            15 => Op::InsertIfChanged(k(g), v(g)),
            16 => {
                if bool::arbitrary(g) {
                    Op::Snapshot
                } else {
                    Op::ForgetHistory
                }
            }
            17 => Op::Diff(usize::arbitrary(g)),
            18 => Op::IterMut {
                take: u16::arbitrary(g),
                shared: bool::arbitrary(g),
            },
            19 => Op::Combine {
                kind: u8::arbitrary(g),
                version: usize::arbitrary(g),
            },
            _ => {
                let count = usize::arbitrary(g) % 12;
                Op::Union {
                    base: Option::<usize>::arbitrary(g),
                    entries: (0..count).map(|_| (k(g), v(g))).collect(),
                    in_place: bool::arbitrary(g),
                }
            }
        }
    }
}

fn quickcheck_ops(property: fn(Vec<Op>)) {
    QuickCheck::new()
        .tests(if cfg!(miri) { 2 } else { 100 })
        .rng(Gen::new(150))
        .quickcheck(property);
}

#[test]
fn quickcheck_random_state() {
    quickcheck_ops(|ops| run_int_ops(RandomState::new(), &ops));
}

#[test]
fn quickcheck_masked_4_bits() {
    quickcheck_ops(|ops| run_int_ops(MaskedState::new(4), &ops));
}

#[test]
fn quickcheck_chosen_hashes() {
    quickcheck_ops(|ops| run_tricky_ops(&ops));
}

/// A fixed sequence, so the model machinery is exercised identically on every run: fill,
/// snapshot, edit through every operation, diff and union against the snapshot.
#[test]
fn fixed_sequence_against_model() {
    let mut ops: Vec<Op> = (0..KEYS)
        .map(|k| Op::Insert(k, u32::from(k) % VALUES))
        .collect();
    ops.push(Op::Snapshot);
    for k in (0..KEYS).step_by(3) {
        ops.extend([
            Op::Update(k, 3),
            Op::Without(k + 1),
            Op::EntryAndModify(k + 2),
            Op::InsertIfChanged(k, 3),
            Op::Diff(0),
        ]);
    }
    ops.push(Op::Union {
        base: Some(0),
        entries: vec![(1, 0), (500, 1)],
        in_place: false,
    });
    ops.push(Op::Retain(2));
    ops.push(Op::Diff(0));
    run_int_ops(MaskedState::new(4), &ops);
    run_tricky_ops(&ops);
}
