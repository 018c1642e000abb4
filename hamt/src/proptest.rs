//! proptest strategies for [`HamtMap`] (feature `proptest`).
//!
//! [`hamt_map`] generates maps whose entry count lies in a size range, from a key strategy and
//! a value strategy; `any::<HamtMap<K, V>>()` does the same with the types' own strategies.
//! Shrinking first removes entries one at a time, then shrinks the keys and values left:
//!
//! ```
//! use hamt::HamtMap;
//! use proptest::prelude::*;
//!
//! proptest!(|(map in hamt::proptest::hamt_map(any::<u16>(), any::<u8>(), 0..50))| {
//!     prop_assert_eq!(map.iter().count(), map.len());
//!     let doubled: HamtMap<u16, u32> =
//!         map.iter().map(|(k, v)| (*k, u32::from(*v) * 2)).collect();
//!     prop_assert_eq!(doubled.len(), map.len());
//! });
//! ```

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::mem;

use ::proptest::arbitrary::{Arbitrary, any_with};
use ::proptest::collection::SizeRange;
use ::proptest::strategy::{NewTree, Strategy, ValueTree};
use ::proptest::test_runner::TestRunner;

use crate::map::HamtMap;

/// A strategy for maps with between `size.start()` and `size.end_incl()` entries, keys from
/// `key` and values from `value`, hashed with a [`RandomState`] (so, as for `HashMap`, a
/// replayed case has the same entries but may have another trie shape; for reproducible
/// shapes use [`hamt_map_with_hasher`] with a deterministic hash builder).
///
/// Keys are drawn until the map has the chosen number of *distinct* keys. If `key` cannot
/// produce enough distinct keys to reach the range's minimum (say `0..3u8` for five entries),
/// generating fails and proptest aborts the test with a message saying so.
///
/// # Shrinking
///
/// Entries are removed one at a time while the map stays within the range (each step makes
/// the map exactly one entry smaller), then each remaining key is shrunk — never onto a key
/// another entry holds, so the entry count stays — and then each value.
///
/// # Panics
///
/// If `size` is an empty range.
///
/// ```
/// use hamt::proptest::hamt_map;
/// use proptest::prelude::*;
/// use proptest::strategy::ValueTree;
/// use proptest::test_runner::TestRunner;
///
/// let mut runner = TestRunner::deterministic();
/// let map = hamt_map("[a-z]{1,4}", any::<u32>(), 5..=10)
///     .new_tree(&mut runner)
///     .unwrap()
///     .current();
/// assert!((5..=10).contains(&map.len()));
/// ```
pub fn hamt_map<K, V>(
    key: K,
    value: V,
    size: impl Into<SizeRange>,
) -> HamtMapStrategy<K, V, RandomState>
where
    K: Strategy,
    K::Value: Hash + Eq + Clone,
    V: Strategy,
    V::Value: Clone,
{
    hamt_map_with_hasher(key, value, size, RandomState::new())
}

/// [`hamt_map`] with maps that hash with (clones of) `hasher`: a deterministic one, or one of
/// the shape-forcing builders in `hamt::testing` (feature `testing`).
///
/// ```
/// # #[cfg(feature = "testing")] {
/// use hamt::proptest::hamt_map_with_hasher;
/// use hamt::testing::MaskedState;
/// use proptest::prelude::*;
///
/// // Four hash bits: at most 16 buckets, so any map of more than 16 keys has collision nodes.
/// let strategy = hamt_map_with_hasher(any::<u64>(), any::<u8>(), 20..40, MaskedState::new(4));
/// proptest!(|(map in strategy)| {
///     map.check_invariants();
///     prop_assert!(map.len() >= 20);
/// });
/// # }
/// ```
///
/// # Panics
///
/// If `size` is an empty range.
pub fn hamt_map_with_hasher<K, V, S>(
    key: K,
    value: V,
    size: impl Into<SizeRange>,
    hasher: S,
) -> HamtMapStrategy<K, V, S>
where
    K: Strategy,
    K::Value: Hash + Eq + Clone,
    V: Strategy,
    V::Value: Clone,
    S: BuildHasher + Clone + fmt::Debug,
{
    let size = size.into();
    assert!(
        size.start() < size.end_excl(),
        "hamt_map: empty size range {}..{}",
        size.start(),
        size.end_excl()
    );
    HamtMapStrategy {
        key,
        value,
        size,
        hasher,
    }
}

/// The strategy made by [`hamt_map`] and [`hamt_map_with_hasher`].
#[derive(Clone, Debug)]
#[must_use = "strategies do nothing unless used"]
pub struct HamtMapStrategy<K, V, S> {
    key: K,
    value: V,
    size: SizeRange,
    hasher: S,
}

impl<K, V, S> Strategy for HamtMapStrategy<K, V, S>
where
    K: Strategy,
    K::Value: Hash + Eq + Clone,
    V: Strategy,
    V::Value: Clone,
    S: BuildHasher + Clone + fmt::Debug,
{
    type Tree = HamtMapValueTree<K::Tree, V::Tree, S>;
    type Value = HamtMap<K::Value, V::Value, S>;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let (min, max) = self.size.start_end_incl();
        let target = (min..=max).new_tree(runner)?.current();
        // Enough draws to collect `target` distinct keys from any key space a little larger
        // than `target`, while a key space that is too small fails in bounded time.
        let patience = 64 + 4 * target;
        let mut seen = HashSet::with_capacity(target);
        let mut entries = Vec::with_capacity(target);
        let mut duplicates = 0;
        while entries.len() < target && duplicates < patience {
            let key_tree = self.key.new_tree(runner)?;
            let key = key_tree.current();
            if !seen.insert(key.clone()) {
                duplicates += 1;
                continue;
            }
            entries.push(EntryTree {
                key_tree,
                key,
                value_tree: self.value.new_tree(runner)?,
                included: true,
            });
        }
        if entries.len() < min {
            return Err(format!(
                "hamt_map: the key strategy gave {} distinct keys in {} draws, and the size \
                 range needs at least {min}",
                entries.len(),
                entries.len() + duplicates,
            )
            .into());
        }
        Ok(HamtMapValueTree {
            included: entries.len(),
            entries,
            min,
            hasher: self.hasher.clone(),
            phase: Phase::Remove(0),
            last: None,
        })
    }
}

/// `any::<HamtMap<K, V, S>>()`: maps of the default size range (`0..100`) with keys and
/// values from their types' own strategies; the parameters are the size range and those of
/// `K` and `V`.
///
/// ```
/// use hamt::HamtMap;
/// use proptest::prelude::*;
///
/// proptest!(|(map: HamtMap<u8, String>)| {
///     prop_assert!(map.len() < 100);
/// });
/// ```
impl<K, V, S> Arbitrary for HamtMap<K, V, S>
where
    K: Arbitrary + Hash + Eq + Clone,
    V: Arbitrary + Clone,
    S: BuildHasher + Default + Clone + fmt::Debug,
{
    type Parameters = (SizeRange, K::Parameters, V::Parameters);
    type Strategy = HamtMapStrategy<K::Strategy, V::Strategy, S>;

    fn arbitrary_with((size, key, value): Self::Parameters) -> Self::Strategy {
        hamt_map_with_hasher(any_with::<K>(key), any_with::<V>(value), size, S::default())
    }
}

/// One generated entry: its key's and value's trees, and the key last accepted.
struct EntryTree<KT: ValueTree, VT> {
    key_tree: KT,
    /// The key the map holds: the key tree's value unless that would duplicate another key.
    key: KT::Value,
    value_tree: VT,
    /// Whether shrinking has kept this entry.
    included: bool,
}

/// Where shrinking stands: removing entries, then shrinking keys, then values.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Remove(usize),
    Key(usize),
    Value(usize),
    Done,
}

/// The last simplification, which `complicate` undoes.
enum Last<K> {
    Removed(usize),
    /// The key changed; the key it replaced.
    Key(usize, K),
    Value(usize),
}

/// The [`ValueTree`] of [`HamtMapStrategy`].
pub struct HamtMapValueTree<KT: ValueTree, VT, S> {
    entries: Vec<EntryTree<KT, VT>>,
    /// How many entries are included.
    included: usize,
    min: usize,
    hasher: S,
    phase: Phase,
    last: Option<Last<KT::Value>>,
}

impl<KT, VT, S> HamtMapValueTree<KT, VT, S>
where
    KT: ValueTree,
    KT::Value: Hash + Eq + Clone,
    VT: ValueTree,
{
    /// Whether an included entry other than `index` holds `key`.
    fn key_taken(&self, index: usize, key: &KT::Value) -> bool {
        self.entries
            .iter()
            .enumerate()
            .any(|(other, entry)| other != index && entry.included && entry.key == *key)
    }

    /// Takes the key tree's new value for entry `index` if no other entry holds it; otherwise
    /// treats it as a passing case (backs the tree off with `complicate`) and tries again.
    /// `moved` is whether the tree just moved. Returns whether the key changed.
    fn accept_distinct_key(&mut self, index: usize, mut moved: bool) -> bool {
        while moved {
            let candidate = self.entries[index].key_tree.current();
            if !self.key_taken(index, &candidate) {
                let replaced = mem::replace(&mut self.entries[index].key, candidate);
                self.last = Some(Last::Key(index, replaced));
                return true;
            }
            moved = self.entries[index].key_tree.complicate();
        }
        false
    }
}

impl<KT, VT, S> ValueTree for HamtMapValueTree<KT, VT, S>
where
    KT: ValueTree,
    KT::Value: Hash + Eq + Clone,
    VT: ValueTree,
    VT::Value: Clone,
    S: BuildHasher + Clone,
{
    type Value = HamtMap<KT::Value, VT::Value, S>;

    fn current(&self) -> Self::Value {
        let mut map = HamtMap::with_hasher(self.hasher.clone());
        for entry in self.entries.iter().filter(|entry| entry.included) {
            map.insert(entry.key.clone(), entry.value_tree.current());
        }
        map
    }

    fn simplify(&mut self) -> bool {
        // The last simplification still failed the test: it stays.
        self.last = None;
        let len = self.entries.len();
        loop {
            match self.phase {
                Phase::Remove(index) if index >= len => self.phase = Phase::Key(0),
                Phase::Remove(index) => {
                    self.phase = Phase::Remove(index + 1);
                    if self.included > self.min && self.entries[index].included {
                        self.entries[index].included = false;
                        self.included -= 1;
                        self.last = Some(Last::Removed(index));
                        return true;
                    }
                }
                Phase::Key(index) if index >= len => self.phase = Phase::Value(0),
                Phase::Key(index) => {
                    if self.entries[index].included {
                        let moved = self.entries[index].key_tree.simplify();
                        if self.accept_distinct_key(index, moved) {
                            return true;
                        }
                    }
                    self.phase = Phase::Key(index + 1);
                }
                Phase::Value(index) if index >= len => self.phase = Phase::Done,
                Phase::Value(index) => {
                    let entry = &mut self.entries[index];
                    if entry.included && entry.value_tree.simplify() {
                        self.last = Some(Last::Value(index));
                        return true;
                    }
                    self.phase = Phase::Value(index + 1);
                }
                Phase::Done => return false,
            }
        }
    }

    fn complicate(&mut self) -> bool {
        match self.last.take() {
            None => false,
            Some(Last::Removed(index)) => {
                self.entries[index].included = true;
                self.included += 1;
                true
            }
            Some(Last::Key(index, replaced)) => {
                // Back to the key that last failed, then let the tree search above it.
                self.entries[index].key = replaced;
                let moved = self.entries[index].key_tree.complicate();
                self.accept_distinct_key(index, moved)
            }
            Some(Last::Value(index)) => {
                let moved = self.entries[index].value_tree.complicate();
                if moved {
                    self.last = Some(Last::Value(index));
                }
                moved
            }
        }
    }
}
