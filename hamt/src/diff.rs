//! Differences between two versions of a map, and union.
//!
//! Both walk the two tries side by side and skip every subtree the versions share (one pointer
//! comparison each), so comparing a map with a close relative costs the difference, not the
//! size. Maps whose hash builders disagree cannot be walked side by side; they fall back to a
//! lookup per entry.

use std::hash::{BuildHasher, Hash};
use std::iter::FusedIterator;

use triomphe::Arc;

use crate::iter::Walk;
use crate::map::HamtMap;
use crate::node::{BITS, HASH_BITS, Node, Slot, hash_key, slot_for};

/// One difference between two versions of a map, from [`HamtMap::diff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffItem<'a, K, V> {
    /// The key is only in the new version.
    Added(&'a K, &'a V),
    /// The key is only in the old version.
    Removed(&'a K, &'a V),
    /// The key is in both, with different values.
    Changed {
        /// The key.
        key: &'a K,
        /// Its value in the old version.
        old: &'a V,
        /// Its value in the new version.
        new: &'a V,
    },
}

/// The differences from one map version to another, from [`HamtMap::diff`].
///
/// The comparison runs when the diff is created; the iterator then hands out its results.
#[derive(Debug, Clone)]
pub struct Diff<'a, K, V> {
    items: std::vec::IntoIter<DiffItem<'a, K, V>>,
    nodes_visited: usize,
}

impl<K, V> Diff<'_, K, V> {
    /// How many pairs of nodes the comparison had to open. Shared subtrees are skipped without
    /// being opened, so for a version and its one-edit successor this is at most the trie
    /// depth, whatever the map's size.
    pub fn nodes_visited(&self) -> usize {
        self.nodes_visited
    }
}

impl<'a, K, V> Iterator for Diff<'a, K, V> {
    type Item = DiffItem<'a, K, V>;

    fn next(&mut self) -> Option<Self::Item> {
        self.items.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

impl<K, V> ExactSizeIterator for Diff<'_, K, V> {}
impl<K, V> FusedIterator for Diff<'_, K, V> {}

/// Walks two tries side by side, sorting their entries into definite changes (same key at
/// the same place) and *candidates*: entries with no counterpart at the same place, which
/// are confirmed with a lookup afterwards (a key can sit elsewhere in a map hashed
/// differently).
struct Differ<'a, K, V> {
    changed: Vec<DiffItem<'a, K, V>>,
    only_old: Vec<(&'a K, &'a V)>,
    only_new: Vec<(&'a K, &'a V)>,
    nodes_visited: usize,
}

impl<'a, K: Eq, V: PartialEq> Differ<'a, K, V> {
    fn nodes(&mut self, old: &'a Node<K, V>, new: &'a Node<K, V>, shift: u32) {
        if Arc::ptr_eq(old, new) {
            return;
        }
        self.nodes_visited += 1;
        if shift >= HASH_BITS {
            self.flat(&old.slice, &new.slice);
            return;
        }
        let mut bits =
            old.header.data_map | old.header.node_map | new.header.data_map | new.header.node_map;
        while bits != 0 {
            let bit = bits & bits.wrapping_neg();
            bits ^= bit;
            match (slot_for(old, bit), slot_for(new, bit)) {
                (Some(Slot::Child(a)), Some(Slot::Child(b))) => self.nodes(a, b, shift + BITS),
                (a, b) => self.flat(option_slice(a), option_slice(b)),
            }
        }
    }

    /// Compares two small sets of slots entry by entry (collision nodes, or a bucket where the
    /// two sides hold different kinds of slot).
    fn flat(&mut self, old: &'a [Slot<K, V>], new: &'a [Slot<K, V>]) {
        for (key, old_value) in Walk::new(old) {
            match Walk::new(new).find(|(k, _)| *k == key) {
                None => self.only_old.push((key, old_value)),
                Some((_, new_value)) if new_value != old_value => {
                    self.changed.push(DiffItem::Changed {
                        key,
                        old: old_value,
                        new: new_value,
                    });
                }
                Some(_) => {}
            }
        }
        for (key, new_value) in Walk::new(new) {
            if !Walk::new(old).any(|(k, _)| k == key) {
                self.only_new.push((key, new_value));
            }
        }
    }
}

fn option_slice<T>(slot: Option<&T>) -> &[T] {
    slot.map_or(&[], std::slice::from_ref)
}

impl<K, V, S> HamtMap<K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    /// The differences that turn `self` into `other`: keys only in `other` are
    /// [`Added`](DiffItem::Added), keys only in `self` are [`Removed`](DiffItem::Removed), keys
    /// in both with unequal values are [`Changed`](DiffItem::Changed).
    ///
    /// Subtrees the two versions share are skipped, so the cost is proportional to the
    /// difference. (Maps whose hash builders place keys differently are still diffed exactly,
    /// at the cost of a walk over both.)
    ///
    /// ```
    /// use hamt::{DiffItem, HamtMap};
    ///
    /// let old: HamtMap<u32, char> = (0..1000).map(|i| (i, 'a')).collect();
    /// let new = old.update(7, 'b').without(&8).update(1000, 'c');
    /// let mut changes: Vec<_> = old.diff(&new).collect();
    /// changes.sort_by_key(|item| match item {
    ///     DiffItem::Added(k, _) | DiffItem::Removed(k, _) | DiffItem::Changed { key: k, .. } => **k,
    /// });
    /// assert_eq!(
    ///     changes,
    ///     [
    ///         DiffItem::Changed { key: &7, old: &'a', new: &'b' },
    ///         DiffItem::Removed(&8, &'a'),
    ///         DiffItem::Added(&1000, &'c'),
    ///     ]
    /// );
    /// ```
    pub fn diff<'a>(&'a self, other: &'a Self) -> Diff<'a, K, V> {
        let mut differ = Differ {
            changed: Vec::new(),
            only_old: Vec::new(),
            only_new: Vec::new(),
            nodes_visited: 0,
        };
        match (&self.root, &other.root) {
            (Some(old), Some(new)) => differ.nodes(old, new, 0),
            (old, new) => differ.flat(
                old.as_ref().map_or(&[], |node| &node.slice[..]),
                new.as_ref().map_or(&[], |node| &node.slice[..]),
            ),
        }
        let Differ {
            mut changed,
            only_old,
            only_new,
            nodes_visited,
        } = differ;
        // Confirm the candidates. With one hash function each is a real addition or removal;
        // otherwise the key may be in the other map at another place.
        for (key, old_value) in only_old {
            match other.get(key) {
                None => changed.push(DiffItem::Removed(key, old_value)),
                Some(new_value) if new_value != old_value => changed.push(DiffItem::Changed {
                    key,
                    old: old_value,
                    new: new_value,
                }),
                Some(_) => {}
            }
        }
        for (key, new_value) in only_new {
            if !self.contains_key(key) {
                changed.push(DiffItem::Added(key, new_value));
            }
        }
        Diff {
            items: changed.into_iter(),
            nodes_visited,
        }
    }
}

impl<K, V, S> HamtMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// The union of two maps; where both hold a key, `self`'s value wins.
    ///
    /// The result starts as `self` (sharing all of its structure) and adds what only `other`
    /// has, skipping subtrees the two share. This is PEP 550's squashing of logical contexts:
    /// `top.union(&below)` merges without replacing existing keys.
    ///
    /// ```
    /// let top: hamt::HamtMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
    /// let below: hamt::HamtMap<_, _> = [("b", 20), ("c", 30)].into_iter().collect();
    /// let merged = top.union(&below);
    /// assert_eq!((merged["a"], merged["b"], merged["c"]), (1, 2, 30));
    /// ```
    #[must_use = "union returns a new map and leaves `self` unchanged"]
    pub fn union(&self, other: &Self) -> Self {
        let mut merged = self.clone();
        merged.merge(other);
        merged
    }

    /// Adds every entry of `other` whose key `self` lacks; `self`'s values win on conflict.
    /// All or nothing: if a key's `Hash`, `Eq` or `Clone` panics, `self` is unchanged.
    ///
    /// ```
    /// let mut map: hamt::HamtMap<_, _> = [("a", 1)].into_iter().collect();
    /// map.merge(&[("a", 10), ("b", 20)].into_iter().collect());
    /// assert_eq!((map["a"], map["b"]), (1, 20));
    /// ```
    pub fn merge(&mut self, other: &Self) {
        if self.is_empty() {
            *self = other.clone();
            return;
        }
        let mut candidates = Vec::new();
        if let (Some(ours), Some(theirs)) = (&self.root, &other.root) {
            collect_missing(ours, theirs, 0, &mut candidates);
        }
        // Confirm each candidate: a map hashed differently may hold the key elsewhere.
        let missing: Vec<(K, V)> = candidates
            .into_iter()
            .filter(|(k, _)| !self.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if missing.is_empty() {
            return;
        }
        // Insert into a version of our own and commit at the end, so that a panicking `Hash`
        // or `Eq` leaves `self` as it was.
        let mut merged = self.clone();
        for (k, v) in missing {
            let hash = hash_key(&merged.hasher, &k);
            merged.insert_hashed(hash, k, v);
        }
        *self = merged;
    }
}

/// Collects the entries under `theirs` whose keys are not under `ours` (both at `shift`).
fn collect_missing<'a, K: Eq, V>(
    ours: &Node<K, V>,
    theirs: &'a Node<K, V>,
    shift: u32,
    out: &mut Vec<(&'a K, &'a V)>,
) {
    if Arc::ptr_eq(ours, theirs) {
        return;
    }
    if shift >= HASH_BITS {
        out.extend(
            Walk::new(&theirs.slice).filter(|(k, _)| !Walk::new(&ours.slice).any(|(o, _)| o == *k)),
        );
        return;
    }
    let mut bits = theirs.header.data_map | theirs.header.node_map;
    while bits != 0 {
        let bit = bits & bits.wrapping_neg();
        bits ^= bit;
        match (slot_for(ours, bit), slot_for(theirs, bit)) {
            (Some(Slot::Child(a)), Some(Slot::Child(b))) => {
                collect_missing(a, b, shift + BITS, out)
            }
            (a, Some(b)) => {
                let ours = option_slice(a);
                out.extend(
                    Walk::new(std::slice::from_ref(b))
                        .filter(|(k, _)| !Walk::new(ours).any(|(o, _)| o == *k)),
                );
            }
            (_, None) => {}
        }
    }
}
