//! Helpers shared by the integration tests: comparison with a `std::collections::HashMap`
//! model, owned diff results, deterministic shuffling, and drop-tracked values.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hamt::testing::MaskedState;
use hamt::{DiffItem, HamtMap};

/// A deterministic, well-mixed hash builder that counts how many keys it hashes (clones
/// share the count).
#[derive(Clone)]
pub struct CountingState {
    inner: MaskedState,
    calls: Rc<Cell<usize>>,
}

impl CountingState {
    pub fn new() -> Self {
        CountingState {
            inner: MaskedState::new(32),
            calls: Rc::new(Cell::new(0)),
        }
    }

    /// The keys hashed since the last call.
    pub fn take_calls(&self) -> usize {
        self.calls.replace(0)
    }
}

impl BuildHasher for CountingState {
    type Hasher = <MaskedState as BuildHasher>::Hasher;

    fn build_hasher(&self) -> Self::Hasher {
        self.calls.set(self.calls.get() + 1);
        self.inner.build_hasher()
    }
}

/// Asserts that `map` is structurally valid and holds exactly the entries of `model`: same
/// length, every model key found with its value, and iteration (borrowed, keys, values)
/// yields each model entry exactly once.
pub fn check_against_model<K, V, S>(map: &HamtMap<K, V, S>, model: &HashMap<K, V>)
where
    K: Hash + Eq + Debug,
    V: PartialEq + Debug,
    S: BuildHasher,
{
    map.check_invariants();
    assert_eq!(map.len(), model.len(), "len");
    assert_eq!(map.is_empty(), model.is_empty(), "is_empty");
    for (k, v) in model {
        assert_eq!(map.get(k), Some(v), "get({k:?})");
        assert_eq!(map.get_key_value(k), Some((k, v)), "get_key_value({k:?})");
        assert!(map.contains_key(k), "contains_key({k:?})");
    }
    let iter = map.iter();
    assert_eq!(iter.len(), model.len(), "Iter::len");
    let mut seen = HashSet::with_capacity(model.len());
    for (k, v) in iter {
        assert_eq!(model.get(k), Some(v), "iter yielded {k:?} => {v:?}");
        assert!(seen.insert(k), "iter yielded {k:?} twice");
    }
    assert_eq!(seen.len(), model.len(), "iter yielded too few entries");
    assert_eq!(map.keys().count(), model.len(), "keys().count()");
    assert_eq!(map.values().count(), model.len(), "values().count()");
}

/// A cheaper check than [`check_against_model`] for versions already compared once: the
/// trie is valid and iteration yields exactly the model's entries.
pub fn check_unchanged<K, V, S>(map: &HamtMap<K, V, S>, model: &HashMap<K, V>)
where
    K: Hash + Eq + Debug,
    V: PartialEq + Debug,
    S: BuildHasher,
{
    map.check_invariants();
    assert_eq!(map.len(), model.len(), "len of an older version");
    let mut seen = HashSet::with_capacity(model.len());
    for (k, v) in map {
        assert_eq!(
            model.get(k),
            Some(v),
            "older version yielded {k:?} => {v:?}"
        );
        assert!(seen.insert(k), "older version yielded {k:?} twice");
    }
    assert_eq!(
        seen.len(),
        model.len(),
        "older version yielded too few entries"
    );
}

/// A `DiffItem` with owned contents, so results can be sorted and compared.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change<K, V> {
    Added(K, V),
    Removed(K, V),
    Changed(K, V, V),
}

impl<K: Clone, V: Clone> Change<K, V> {
    pub fn of(item: DiffItem<'_, K, V>) -> Self {
        match item {
            DiffItem::Added(k, v) => Change::Added(k.clone(), v.clone()),
            DiffItem::Removed(k, v) => Change::Removed(k.clone(), v.clone()),
            DiffItem::Changed { key, old, new } => {
                Change::Changed(key.clone(), old.clone(), new.clone())
            }
        }
    }
}

/// The items of `diff` (a `hamt::Diff`, or a mutable borrow of one), owned and sorted.
pub fn sorted_changes<'a, K, V>(diff: impl Iterator<Item = DiffItem<'a, K, V>>) -> Vec<Change<K, V>>
where
    K: Clone + Ord + 'a,
    V: Clone + Ord + 'a,
{
    let mut changes: Vec<_> = diff.map(Change::of).collect();
    changes.sort();
    changes
}

/// Asserts two sorted change lists are equal, printing at most a few differing items (a
/// wrong diff of a large map would otherwise print thousands).
pub fn assert_same_changes<K: Debug + Ord, V: Debug + Ord>(
    actual: &[Change<K, V>],
    expected: &[Change<K, V>],
    what: &str,
) {
    if actual == expected {
        return;
    }
    let unexpected: Vec<_> = actual
        .iter()
        .filter(|c| !expected.contains(c))
        .take(5)
        .collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|c| !actual.contains(c))
        .take(5)
        .collect();
    panic!(
        "{what}: {} items instead of {}; unexpected {unexpected:?}..., missing {missing:?}...",
        actual.len(),
        expected.len()
    );
}

/// What `old.diff(new)` must report, computed on models, sorted.
pub fn model_diff<K, V>(old: &HashMap<K, V>, new: &HashMap<K, V>) -> Vec<Change<K, V>>
where
    K: Hash + Eq + Clone + Ord,
    V: Clone + Ord,
{
    let mut changes = Vec::new();
    for (k, v) in old {
        match new.get(k) {
            None => changes.push(Change::Removed(k.clone(), v.clone())),
            Some(n) if n != v => changes.push(Change::Changed(k.clone(), v.clone(), n.clone())),
            Some(_) => {}
        }
    }
    for (k, v) in new {
        if !old.contains_key(k) {
            changes.push(Change::Added(k.clone(), v.clone()));
        }
    }
    changes.sort();
    changes
}

/// The union of two models where `ours` wins on conflict.
pub fn model_union<K, V>(ours: &HashMap<K, V>, theirs: &HashMap<K, V>) -> HashMap<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    let mut union = theirs.clone();
    union.extend(ours.iter().map(|(k, v)| (k.clone(), v.clone())));
    union
}

/// A map and a model built from the same entries, with the given hasher.
pub fn build<K, V, S>(
    hasher: S,
    entries: impl IntoIterator<Item = (K, V)>,
) -> (HamtMap<K, V, S>, HashMap<K, V>)
where
    K: Hash + Eq + Clone,
    V: Clone + PartialEq + Debug,
    S: BuildHasher,
{
    let mut map = HamtMap::with_hasher(hasher);
    let mut model = HashMap::new();
    for (k, v) in entries {
        assert_eq!(map.insert(k.clone(), v.clone()), model.insert(k, v));
    }
    (map, model)
}

/// splitmix64: a small deterministic generator for shuffles and hashes.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Records which tracked instances are alive. Every `Tracked` registers a fresh serial when
/// created or cloned and must find it here when dropped: dropping twice (or dropping
/// something never created) fails an assertion on the spot.
#[derive(Debug, Default)]
pub struct Ledger {
    live: Mutex<HashSet<u64>>,
    next: AtomicU64,
}

impl Ledger {
    pub fn new() -> Arc<Ledger> {
        Arc::new(Ledger::default())
    }

    fn live_set(&self) -> MutexGuard<'_, HashSet<u64>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of tracked instances alive now.
    pub fn live(&self) -> usize {
        self.live_set().len()
    }

    /// A new tracked instance holding `value`.
    pub fn track(self: &Arc<Self>, value: u64) -> Tracked {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        self.live_set().insert(serial);
        Tracked {
            value,
            serial,
            ledger: Arc::clone(self),
        }
    }
}

/// A value (or key) whose live instances are counted by a [`Ledger`]. Equality and hashing
/// look at `value` only.
pub struct Tracked {
    pub value: u64,
    serial: u64,
    ledger: Arc<Ledger>,
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        self.ledger.track(self.value)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let was_live = self.ledger.live_set().remove(&self.serial);
        assert!(
            was_live,
            "Tracked({}) #{} dropped twice",
            self.value, self.serial
        );
    }
}

impl PartialEq for Tracked {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for Tracked {}

impl Hash for Tracked {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracked({})", self.value)
    }
}
