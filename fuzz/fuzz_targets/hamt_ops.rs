//! `hamt_ops`: an arbitrary sequence of map operations applied to a `HamtMap` and to a
//! `std::collections::HashMap` model, compared after every step together with
//! `check_invariants()`.
//!
//! The map hashes with `MaskedState`, whose number of kept hash bits (0..=32) comes from the
//! input: few bits force collision nodes and deep tries, 32 bits behave like a good hash.
//! Older versions (snapshots, the inputs of persistent operations, the other half of a
//! clone-and-mutate) are kept with their models and re-checked after every step too, so a
//! path copy that leaks an edit into a shared node is caught at the step that made it.
#![no_main]

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use arbitrary::Arbitrary;
use hamt::testing::MaskedState;
use hamt::{DiffItem, Entry, HamtMap};
use libfuzzer_sys::fuzz_target;

type Map = HamtMap<u16, u16, MaskedState>;
/// A fixed hash function, so that the model iterates in the same order in every run and an
/// input always replays the same way.
type Model = HashMap<u16, u16, BuildHasherDefault<DefaultHasher>>;

/// Older versions kept at once; the oldest is dropped (after a final check) beyond this.
const HISTORY: usize = 8;
/// Upper bound on the operations of one input, so that a single input cannot run for long.
const MAX_OPS: usize = 512;
/// Trie depth: 7 bitmap levels and a collision level. A diff between a version and its
/// one-edit successor opens at most this many node pairs.
const MAX_DEPTH: usize = 8;

/// A key as the input spells it; reduced into the run's key space before use.
#[derive(Arbitrary, Clone, Copy, Debug)]
struct Key(u16);

/// A value as the input spells it: few distinct values, so that re-inserting an equal value
/// (`insert_if_changed`) and diffs with unchanged keys happen often.
#[derive(Arbitrary, Clone, Copy, Debug)]
struct Value(u8);

impl Value {
    fn get(self) -> u16 {
        u16::from(self.0 % 16)
    }
}

#[derive(Arbitrary, Debug)]
enum EntryOp {
    OrInsert(Value),
    OrInsertWithKey,
    OrDefault,
    AndModifyOrInsert(Value),
    /// `OccupiedEntry::insert` or `VacantEntry::insert`.
    Insert(Value),
    /// `OccupiedEntry::remove` (or `remove_entry`); on a vacant entry, `into_key`.
    Remove {
        entry: bool,
    },
}

/// Where the other operand of a union comes from.
#[derive(Arbitrary, Debug)]
enum Other {
    /// A kept older version (same hash function: shared subtrees are skipped).
    Version(u8),
    /// A map built from scratch, possibly with a different hash function (keys sit at other
    /// places, so every candidate needs the confirming lookup).
    Fresh {
        entries: Vec<(Key, Value)>,
        hash_bits: Option<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Insert(Key, Value),
    Remove(Key),
    RemoveEntry(Key),
    /// Persistent insert; the old version is kept.
    Update(Key, Value),
    /// Persistent remove; the old version is kept.
    Without(Key),
    /// Clone, insert into one copy and remove from the other; keep one, continue with the
    /// other.
    CloneMutateBoth {
        insert: (Key, Value),
        remove: Key,
        continue_with_clone: bool,
    },
    Get(Key),
    GetMut(Key, Value),
    Entry(Key, EntryOp),
    /// `retain` with a closure that also changes values.
    Retain {
        modulus: u8,
        add: u8,
    },
    ForEachValueMut {
        add: u8,
    },
    InsertIfChanged(Key, Value),
    /// `extend` with a run of consecutive keys: grows the map quickly.
    InsertRange {
        start: Key,
        count: u8,
        value: Value,
    },
    RemoveRange {
        start: Key,
        count: u8,
    },
    Snapshot,
    /// Drop one kept version (its nodes may become uniquely owned again).
    DropVersion(u8),
    /// Drop every kept version, so edits happen in place again.
    ForgetHistory,
    /// Continue with a kept version as the current map (the current one is kept instead).
    SwitchTo(u8),
    /// `diff` between a kept version and the current map, in either direction; with
    /// `hash_bits`, the kept version is rebuilt with another hash function first.
    Diff {
        version: u8,
        reverse: bool,
        hash_bits: Option<u8>,
    },
    /// `==` and `Hash` between a kept version (or a rebuild of the current map with another
    /// hash function) and the current map.
    Compare {
        version: u8,
        rebuild_with_bits: Option<u8>,
    },
    /// `union` or `merge`; `other_wins` swaps the operands.
    Union {
        other: Other,
        in_place: bool,
        other_wins: bool,
    },
    /// `into_iter` on the map itself (entries moved out of owned nodes) or on a clone
    /// (entries cloned from shared ones), consuming `take` entries and dropping the rest.
    IntoIter {
        of_clone: bool,
        take: u8,
    },
    Clear,
    /// `iter_mut` consumed part-way, changing each value it yields; with `shared`, the
    /// current version is kept first (the walk copies shared nodes as it goes).
    IterMut {
        take: u16,
        add: u8,
        shared: bool,
    },
    /// `intersection` (0), `difference` (1) or `symmetric_difference` (2) with a kept
    /// version; the inputs are kept, the result goes on.
    Combine {
        kind: u8,
        version: u8,
    },
}

/// One fuzz case: the map, its model, and older versions with theirs.
struct Harness {
    bits: u32,
    /// The key space is `0..1 << key_bits`.
    key_bits: u32,
    keys: u16,
    map: Map,
    model: Model,
    history: Vec<(Map, Model)>,
}

/// The hash bits a `MaskedState` keeps, from the input's choice: any of 0..=32, but at least
/// enough that the key space spreads over 32 collision nodes or more. Collision nodes are
/// scanned linearly, so without this floor a large key space with few bits would make every
/// operation (and the per-step check) quadratic and the fuzzer slow, while collision nodes of
/// up to ~32 keys exercise the same code.
fn hash_bits(raw: u8, key_bits: u32) -> u32 {
    u32::from(raw % 33).max(key_bits.saturating_sub(5))
}

fn check(map: &Map, model: &Model) {
    map.check_invariants();
    assert_eq!(map.len(), model.len(), "len");
    assert_eq!(map.is_empty(), model.is_empty(), "is_empty");
    let iter = map.iter();
    assert_eq!(iter.len(), model.len(), "iter().len()");
    check_entries(map, model);
    let mut keys: Vec<u16> = map.keys().copied().collect();
    let mut expected_keys: Vec<u16> = model.keys().copied().collect();
    keys.sort_unstable();
    expected_keys.sort_unstable();
    assert_eq!(keys, expected_keys, "keys");
    let mut values: Vec<u16> = map.values().copied().collect();
    let mut expected_values: Vec<u16> = model.values().copied().collect();
    values.sort_unstable();
    expected_values.sort_unstable();
    assert_eq!(values, expected_values, "values");
    for (k, v) in model {
        // `get` and `Index` are `get_key_value` underneath.
        assert_eq!(map.get_key_value(k), Some((k, v)), "get_key_value({k})");
    }
}

/// The entries `iter` yields are the model's, each once (keys are below `1 << 10`): a
/// repeated entry with a missing one would keep the count. Cheap enough to run on every kept
/// version after every step.
fn check_entries(map: &Map, model: &Model) {
    let mut yielded = [0u64; 1 << 10 >> 6];
    let mut count = 0;
    for (k, v) in map.iter() {
        assert_eq!(model.get(k), Some(v), "entry {k} from iter");
        let (word, bit) = (usize::from(*k) >> 6, 1u64 << (k & 63));
        assert_eq!(yielded[word] & bit, 0, "entry {k} yielded twice");
        yielded[word] |= bit;
        count += 1;
    }
    assert_eq!(count, model.len(), "iter yields the model's entries");
}

fn hash_of(map: &Map) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    map.hash(&mut hasher);
    hasher.finish()
}

/// The expected diff from `old` to `new`, as sorted `(key, old value, new value)`.
type Change = (u16, Option<u16>, Option<u16>);

fn model_diff(old: &Model, new: &Model) -> Vec<Change> {
    let mut changes: Vec<Change> = old
        .iter()
        .filter(|(k, v)| new.get(k) != Some(v))
        .map(|(k, v)| (*k, Some(*v), new.get(k).copied()))
        .chain(
            new.iter()
                .filter(|(k, _)| !old.contains_key(k))
                .map(|(k, v)| (*k, None, Some(*v))),
        )
        .collect();
    changes.sort_unstable();
    changes
}

fn diff_as_changes<'a>(items: impl Iterator<Item = DiffItem<'a, u16, u16>>) -> Vec<Change> {
    let mut changes: Vec<Change> = items
        .map(|item| match item {
            DiffItem::Added(k, v) => (*k, None, Some(*v)),
            DiffItem::Removed(k, v) => (*k, Some(*v), None),
            DiffItem::Changed { key, old, new } => {
                assert_ne!(old, new, "Changed with equal values");
                (*key, Some(*old), Some(*new))
            }
        })
        .collect();
    let before = changes.len();
    changes.sort_unstable();
    changes.dedup_by_key(|change| change.0);
    assert_eq!(before, changes.len(), "a key reported twice by diff");
    changes
}

fn rebuild(model: &Model, bits: u32) -> Map {
    let mut map = Map::with_hasher(MaskedState::new(bits));
    map.extend(model.iter());
    map
}

impl Harness {
    fn key(&self, key: Key) -> u16 {
        key.0 % self.keys
    }

    fn keep(&mut self, map: Map, model: Model) {
        if self.history.len() == HISTORY {
            let (old, old_model) = self.history.remove(0);
            check(&old, &old_model);
        }
        self.history.push((map, model));
    }

    fn version(&self, index: u8) -> Option<usize> {
        (!self.history.is_empty()).then(|| usize::from(index) % self.history.len())
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Insert(k, v) => {
                let (k, v) = (self.key(k), v.get());
                assert_eq!(self.map.insert(k, v), self.model.insert(k, v), "insert");
            }
            Op::Remove(k) => {
                let k = self.key(k);
                if self.model.contains_key(&k) {
                    assert_eq!(self.map.remove(&k), self.model.remove(&k), "remove");
                } else {
                    let before = self.map.clone();
                    assert_eq!(self.map.remove(&k), None, "remove of an absent key");
                    assert!(self.map.ptr_eq(&before), "remove of an absent key copied");
                }
            }
            Op::RemoveEntry(k) => {
                let k = self.key(k);
                let expected = self.model.remove_entry(&k);
                assert_eq!(self.map.remove_entry(&k), expected, "remove_entry");
            }
            Op::Update(k, v) => {
                let (k, v) = (self.key(k), v.get());
                let next = self.map.update(k, v);
                let mut next_model = self.model.clone();
                let old_value = next_model.insert(k, v);
                let mut diff = self.map.diff(&next);
                let expected: Vec<Change> = if old_value == Some(v) {
                    Vec::new()
                } else {
                    vec![(k, old_value, Some(v))]
                };
                assert_eq!(diff_as_changes(&mut diff), expected, "diff after update");
                // The diff is lazy: what it opened is known once it is exhausted.
                assert!(
                    diff.nodes_visited() <= MAX_DEPTH,
                    "diff after one update opened {} node pairs",
                    diff.nodes_visited()
                );
                let old = std::mem::replace(&mut self.map, next);
                let old_model = std::mem::replace(&mut self.model, next_model);
                self.keep(old, old_model);
            }
            Op::Without(k) => {
                let k = self.key(k);
                let next = self.map.without(&k);
                if !self.model.contains_key(&k) {
                    assert!(next.ptr_eq(&self.map), "without an absent key copied");
                }
                let mut next_model = self.model.clone();
                next_model.remove(&k);
                let old = std::mem::replace(&mut self.map, next);
                let old_model = std::mem::replace(&mut self.model, next_model);
                self.keep(old, old_model);
            }
            Op::CloneMutateBoth {
                insert: (ik, iv),
                remove,
                continue_with_clone,
            } => {
                let (ik, iv, rk) = (self.key(ik), iv.get(), self.key(remove));
                let mut copy = self.map.clone();
                let mut copy_model = self.model.clone();
                assert_eq!(
                    copy.insert(ik, iv),
                    copy_model.insert(ik, iv),
                    "clone insert"
                );
                assert_eq!(self.map.remove(&rk), self.model.remove(&rk), "clone remove");
                check(&copy, &copy_model);
                if continue_with_clone {
                    std::mem::swap(&mut self.map, &mut copy);
                    std::mem::swap(&mut self.model, &mut copy_model);
                }
                self.keep(copy, copy_model);
            }
            Op::Get(k) => {
                let k = self.key(k);
                assert_eq!(self.map.get(&k), self.model.get(&k), "get");
                if let Some(v) = self.model.get(&k) {
                    assert_eq!(&self.map[&k], v, "index");
                }
                assert_eq!(
                    self.map.contains_key(&k),
                    self.model.contains_key(&k),
                    "contains_key"
                );
            }
            Op::GetMut(k, v) => {
                let (k, v) = (self.key(k), v.get());
                match (self.map.get_mut(&k), self.model.get_mut(&k)) {
                    (Some(value), Some(expected)) => {
                        assert_eq!(*value, *expected, "get_mut");
                        *value = v;
                        *expected = v;
                    }
                    (None, None) => {}
                    (found, expected) => panic!("get_mut: {found:?} vs {expected:?}"),
                }
            }
            Op::Entry(k, action) => self.entry(k, action),
            Op::Retain { modulus, add } => {
                let modulus = u16::from(modulus.max(1));
                let add = u16::from(add);
                let mut keep = |k: &u16, v: &mut u16| {
                    *v = v.wrapping_add(add) % 16;
                    !(k ^ *v).is_multiple_of(modulus)
                };
                self.map.retain(&mut keep);
                self.model.retain(|k, v| keep(k, v));
            }
            Op::ForEachValueMut { add } => {
                let add = u16::from(add);
                self.map
                    .for_each_value_mut(|_, v| *v = v.wrapping_add(add) % 16);
                for v in self.model.values_mut() {
                    *v = v.wrapping_add(add) % 16;
                }
            }
            Op::InsertIfChanged(k, v) => {
                let (k, v) = (self.key(k), v.get());
                if self.model.get(&k) == Some(&v) {
                    let before = self.map.clone();
                    assert!(
                        !self.map.insert_if_changed(k, v),
                        "insert_if_changed: equal"
                    );
                    assert!(self.map.ptr_eq(&before), "insert_if_changed copied");
                } else {
                    assert!(self.map.insert_if_changed(k, v), "insert_if_changed");
                    self.model.insert(k, v);
                }
            }
            Op::InsertRange {
                start,
                count,
                value,
            } => {
                let start = self.key(start);
                let v = value.get();
                let keys: Vec<u16> = (0..u16::from(count))
                    .map(|i| start.wrapping_add(i) % self.keys)
                    .collect();
                self.map.extend(keys.iter().map(|&k| (k, v)));
                self.model.extend(keys.iter().map(|&k| (k, v)));
            }
            Op::RemoveRange { start, count } => {
                let start = self.key(start);
                for i in 0..u16::from(count) {
                    let k = start.wrapping_add(i) % self.keys;
                    assert_eq!(self.map.remove(&k), self.model.remove(&k), "remove range");
                }
            }
            Op::Snapshot => self.keep(self.map.clone(), self.model.clone()),
            Op::DropVersion(index) => {
                if let Some(i) = self.version(index) {
                    let (old, old_model) = self.history.remove(i);
                    check(&old, &old_model);
                }
            }
            Op::ForgetHistory => {
                for (old, old_model) in self.history.drain(..) {
                    check(&old, &old_model);
                }
            }
            Op::SwitchTo(index) => {
                if let Some(i) = self.version(index) {
                    let (old, old_model) = &mut self.history[i];
                    std::mem::swap(&mut self.map, old);
                    std::mem::swap(&mut self.model, old_model);
                }
            }
            Op::Diff {
                version,
                reverse,
                hash_bits: bits,
            } => {
                let Some(i) = self.version(version) else {
                    return;
                };
                let (old, old_model) = &self.history[i];
                let rebuilt;
                let old = match bits {
                    Some(bits) => {
                        rebuilt = rebuild(old_model, hash_bits(bits, self.key_bits));
                        &rebuilt
                    }
                    None => old,
                };
                let (from, to, from_model, to_model) = if reverse {
                    (&self.map, old, &self.model, old_model)
                } else {
                    (old, &self.map, old_model, &self.model)
                };
                let diff = from.diff(to);
                assert_eq!(
                    diff_as_changes(diff),
                    model_diff(from_model, to_model),
                    "diff"
                );
            }
            Op::Compare {
                version,
                rebuild_with_bits,
            } => {
                let (other, other_model) = match rebuild_with_bits {
                    Some(bits) => {
                        let bits = hash_bits(bits, self.key_bits);
                        (rebuild(&self.model, bits), self.model.clone())
                    }
                    None => match self.version(version) {
                        Some(i) => self.history[i].clone(),
                        None => return,
                    },
                };
                let equal = other_model == self.model;
                assert_eq!(self.map == other, equal, "==");
                assert_eq!(other == self.map, equal, "== (swapped)");
                if equal {
                    assert_eq!(hash_of(&self.map), hash_of(&other), "Hash of equal maps");
                }
            }
            Op::Union {
                other,
                in_place,
                other_wins,
            } => self.union(other, in_place, other_wins),
            Op::IntoIter { of_clone, take } => {
                let (source, keep) = if of_clone {
                    (self.map.clone(), Some(self.map.clone()))
                } else {
                    let empty = Map::with_hasher(*self.map.hasher());
                    (std::mem::replace(&mut self.map, empty), None)
                };
                let mut iter = source.into_iter();
                assert_eq!(iter.len(), self.model.len(), "into_iter len");
                let mut taken = Model::default();
                for (k, v) in iter.by_ref().take(usize::from(take)) {
                    assert_eq!(self.model.get(&k), Some(&v), "into_iter entry");
                    assert!(taken.insert(k, v).is_none(), "into_iter repeats {k}");
                }
                assert_eq!(iter.len(), self.model.len() - taken.len(), "into_iter rest");
                if of_clone {
                    drop(iter);
                    if let Some(kept) = keep {
                        self.map = kept;
                    }
                } else {
                    // Finish the walk and rebuild the map from what it yielded.
                    for (k, v) in iter {
                        assert_eq!(self.model.get(&k), Some(&v), "into_iter entry");
                        assert!(taken.insert(k, v).is_none(), "into_iter repeats {k}");
                    }
                    assert_eq!(taken, self.model, "into_iter yields every entry");
                    self.map.extend(taken.iter());
                }
            }
            Op::Clear => {
                self.map.clear();
                self.model.clear();
            }
            Op::IterMut { take, add, shared } => {
                if shared {
                    self.keep(self.map.clone(), self.model.clone());
                }
                let len = self.model.len();
                let take = usize::from(take) % (len + 1);
                let mut iter = self.map.iter_mut();
                let mut yielded = Model::default();
                for taken in 0..take {
                    assert_eq!(iter.len(), len - taken, "iter_mut len");
                    let (k, v) = iter.next().expect("iter_mut yields len entries");
                    assert_eq!(self.model.get(k), Some(&*v), "iter_mut entry");
                    assert!(yielded.insert(*k, *v).is_none(), "iter_mut repeats {k}");
                    *v = v.wrapping_add(u16::from(add)) % 16;
                    self.model.insert(*k, *v);
                }
                assert_eq!(iter.len(), len - take, "iter_mut rest");
            }
            Op::Combine { kind, version } => {
                let Some(v) = self.version(version) else {
                    return;
                };
                let (other, other_model) = self.history[v].clone();
                let only = |ours: &Model, theirs: &Model| -> Model {
                    ours.iter()
                        .filter(|(k, _)| !theirs.contains_key(*k))
                        .map(|(k, v)| (*k, *v))
                        .collect()
                };
                let (result, expected) = match kind % 3 {
                    0 => (
                        self.map.intersection(&other),
                        self.model
                            .iter()
                            .filter(|(k, _)| other_model.contains_key(*k))
                            .map(|(k, v)| (*k, *v))
                            .collect(),
                    ),
                    1 => (self.map.difference(&other), only(&self.model, &other_model)),
                    _ => {
                        let mut both = only(&self.model, &other_model);
                        both.extend(only(&other_model, &self.model));
                        (self.map.symmetric_difference(&other), both)
                    }
                };
                let previous = std::mem::replace(&mut self.map, result);
                let previous_model = std::mem::replace(&mut self.model, expected);
                self.keep(previous, previous_model);
            }
        }
    }

    fn entry(&mut self, k: Key, action: EntryOp) {
        let k = self.key(k);
        let present = self.model.contains_key(&k);
        let entry = self.map.entry(k);
        assert_eq!(entry.key(), &k, "Entry::key");
        assert_eq!(
            matches!(entry, Entry::Occupied(_)),
            present,
            "entry occupancy"
        );
        match action {
            EntryOp::OrInsert(v) => {
                let value = entry.or_insert(v.get());
                let expected = self.model.entry(k).or_insert(v.get());
                assert_eq!(*value, *expected, "or_insert");
                // Write through the returned reference as well.
                *value = (*value + 1) % 16;
                *expected = (*expected + 1) % 16;
            }
            EntryOp::OrInsertWithKey => {
                let value = entry.or_insert_with_key(|key| key % 16);
                let expected = self.model.entry(k).or_insert(k % 16);
                assert_eq!(*value, *expected, "or_insert_with_key");
            }
            EntryOp::OrDefault => {
                let value = entry.or_default();
                let expected = self.model.entry(k).or_default();
                assert_eq!(*value, *expected, "or_default");
            }
            EntryOp::AndModifyOrInsert(v) => {
                let bump = |value: &mut u16| *value = (*value + 3) % 16;
                let value = entry.and_modify(bump).or_insert(v.get());
                let expected = self.model.entry(k).and_modify(bump).or_insert(v.get());
                assert_eq!(*value, *expected, "and_modify");
            }
            EntryOp::Insert(v) => match entry {
                Entry::Occupied(mut occupied) => {
                    assert_eq!(occupied.get(), &self.model[&k], "OccupiedEntry::get");
                    let old = occupied.insert(v.get());
                    assert_eq!(Some(old), self.model.insert(k, v.get()), "Occupied insert");
                    assert_eq!(*occupied.get_mut(), v.get(), "OccupiedEntry::get_mut");
                    assert_eq!(*occupied.into_mut(), v.get(), "OccupiedEntry::into_mut");
                }
                Entry::Vacant(vacant) => {
                    let value = vacant.insert(v.get());
                    assert_eq!(*value, v.get(), "VacantEntry::insert");
                    self.model.insert(k, v.get());
                }
            },
            EntryOp::Remove { entry: whole } => match entry {
                Entry::Occupied(occupied) => {
                    let expected = self.model.remove(&k);
                    if whole {
                        assert_eq!(Some(occupied.remove_entry()), expected.map(|v| (k, v)));
                    } else {
                        assert_eq!(Some(occupied.remove()), expected, "Occupied remove");
                    }
                }
                Entry::Vacant(vacant) => assert_eq!(vacant.into_key(), k, "into_key"),
            },
        }
    }

    fn union(&mut self, other: Other, in_place: bool, other_wins: bool) {
        let (other, other_model) = match other {
            Other::Version(index) => match self.version(index) {
                Some(i) => self.history[i].clone(),
                None => return,
            },
            Other::Fresh {
                entries,
                hash_bits: bits,
            } => {
                let bits = bits.map_or(self.bits, |raw| hash_bits(raw, self.key_bits));
                let mut map = Map::with_hasher(MaskedState::new(bits));
                let mut model = Model::default();
                for (k, v) in entries.into_iter().take(MAX_OPS) {
                    let (k, v) = (self.key(k), v.get());
                    map.insert(k, v);
                    model.insert(k, v);
                }
                check(&map, &model);
                (map, model)
            }
        };
        // The winner's values are kept where both hold a key.
        let (winner, loser, winner_model, loser_model) = if other_wins {
            (other, self.map.clone(), other_model, self.model.clone())
        } else {
            (self.map.clone(), other, self.model.clone(), other_model)
        };
        let mut expected = loser_model.clone();
        expected.extend(winner_model.iter().map(|(k, v)| (*k, *v)));
        let result = if in_place {
            let mut merged = winner.clone();
            merged.merge(&loser);
            merged
        } else {
            winner.union(&loser)
        };
        // Neither operand may change.
        check(&winner, &winner_model);
        check(&loser, &loser_model);
        drop((winner, loser));
        check(&result, &expected);
        let old = std::mem::replace(&mut self.map, result);
        let old_model = std::mem::replace(&mut self.model, expected);
        self.keep(old, old_model);
    }
}

/// One fuzz case: the hash function and key space, then the operations.
#[derive(Arbitrary, Debug)]
struct Input {
    /// Hash bits the `MaskedState` keeps (see [`hash_bits`]).
    hash_bits: u8,
    /// The key space is `1 << (key_bits % 11)`: 1 to 1024 distinct keys. A small space
    /// makes removals hit; a large one makes tries wide (the hash bits make them deep).
    key_bits: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let key_bits = u32::from(input.key_bits % 11);
    let bits = hash_bits(input.hash_bits, key_bits);
    let mut harness = Harness {
        bits,
        key_bits,
        keys: 1 << key_bits,
        map: Map::with_hasher(MaskedState::new(bits)),
        model: Model::default(),
        history: Vec::new(),
    };
    for op in input.ops.into_iter().take(MAX_OPS) {
        harness.apply(op);
        check(&harness.map, &harness.model);
        // The versions kept: an edit that wrote into a node they share shows at once (their
        // structure is checked in full when they leave the history, and at the end).
        for (old, old_model) in &harness.history {
            assert_eq!(old.len(), old_model.len(), "a kept version's len");
            check_entries(old, old_model);
        }
    }
    for (old, old_model) in &harness.history {
        check(old, old_model);
    }
});
