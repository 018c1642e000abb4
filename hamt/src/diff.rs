//! Differences between two versions of a map, and union.
//!
//! Both walk the two tries side by side and skip every subtree the versions share (one pointer
//! comparison each), so comparing a map with a close relative costs the difference, not the
//! size. Maps whose hash builders disagree cannot be walked side by side; they fall back to a
//! lookup per entry.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::iter::FusedIterator;

use triomphe::Arc;

use crate::iter::Walk;
use crate::map::HamtMap;
use crate::node::{
    BITS, HASH_BITS, Header, Node, Slot, child_index, entry_index, hash_key, slot_for,
};

/// One difference between two versions of a map, from [`HamtMap::diff`].
///
/// It only borrows from the two maps, so it is `Copy` whatever the key and value types.
///
/// ```
/// use hamt::{DiffItem, HamtMap};
///
/// let old: HamtMap<String, u8> = [("kept".to_string(), 1)].into_iter().collect();
/// let new = old.update("added".to_string(), 2);
/// let items: Vec<DiffItem<'_, String, u8>> = old.diff(&new).collect();
/// let item = items[0];
/// let copy = item; // a copy: `item` stays usable although `String` is not `Copy`
/// assert_eq!(item, copy);
/// assert_eq!(copy, DiffItem::Added(&"added".to_string(), &2));
/// ```
#[derive(Debug, PartialEq, Eq)]
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

impl<K, V> Clone for DiffItem<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for DiffItem<'_, K, V> {}

/// The differences from one map version to another, from [`HamtMap::diff`].
///
/// The comparison is lazy: each call to `next` walks the two tries only as far as the next
/// difference, with a fixed-size stack (no allocation), skipping every subtree the versions
/// share. Taking the first few differences of two large maps therefore costs only the part
/// of the walk that finds them.
///
/// If a key's `Hash` or `Eq`, or a value's `PartialEq`, panics during a step, the iterator
/// may be used again: it goes on after the entry it was comparing, which it does not report
/// (whether it differed is unknown); it never reports a difference twice or one that is not
/// there.
///
/// ```
/// use hamt::{DiffItem, HamtMap};
///
/// let old: HamtMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
/// let mut new = old.clone();
/// for i in (0..10_000).step_by(3) {
///     new.insert(i, i + 1);
/// }
/// let mut diff = old.diff(&new);
/// // Only the nodes on the way to the first difference are opened.
/// assert!(matches!(diff.next(), Some(DiffItem::Changed { .. })));
/// assert!(diff.nodes_visited() <= 8);
/// assert_eq!(diff.count(), 3333); // the rest
/// ```
pub struct Diff<'a, K, V, S = RandomState> {
    /// The node pairs being compared, root first, each with the buckets still to visit.
    stack: [Frame<'a, K, V>; LEVELS],
    depth: usize,
    /// A bucket (or collision node) being compared entry by entry.
    flat: Option<Flat<'a, K, V>>,
    /// The two maps, for confirming an entry with no counterpart at the same place.
    old: &'a HamtMap<K, V, S>,
    new: &'a HamtMap<K, V, S>,
    nodes_visited: usize,
}

/// Bitmap levels: the stack of node pairs never holds more (collision nodes are compared flat).
const LEVELS: usize = HASH_BITS.div_ceil(BITS) as usize;

/// A pair of nodes at one level and the buckets of either that are still to be compared.
struct Frame<'a, K, V> {
    old: &'a [Slot<K, V>],
    old_header: Header,
    new: &'a [Slot<K, V>],
    new_header: Header,
    bits: u32,
}

impl<K, V> Clone for Frame<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for Frame<'_, K, V> {}

impl<K, V> Frame<'_, K, V> {
    const EMPTY: Self = Frame {
        old: &[],
        old_header: EMPTY_HEADER,
        new: &[],
        new_header: EMPTY_HEADER,
        bits: 0,
    };
}

const EMPTY_HEADER: Header = Header {
    data_map: 0,
    node_map: 0,
};

/// Two small sets of slots compared entry by entry: first each old entry against the new
/// slots, then each new entry against the old ones.
struct Flat<'a, K, V> {
    old: &'a [Slot<K, V>],
    new: &'a [Slot<K, V>],
    old_walk: Walk<'a, K, V>,
    new_walk: Walk<'a, K, V>,
}

impl<K, V> Clone for Flat<'_, K, V> {
    fn clone(&self) -> Self {
        Flat {
            old: self.old,
            new: self.new,
            old_walk: self.old_walk.clone(),
            new_walk: self.new_walk.clone(),
        }
    }
}

impl<K, V, S> Diff<'_, K, V, S> {
    /// How many pairs of nodes the comparison has opened so far. Shared subtrees are skipped
    /// without being opened, so once a version and its one-edit successor are fully diffed
    /// this is at most the trie depth, whatever the map's size.
    ///
    /// ```
    /// let old: hamt::HamtMap<u32, u32> = (0..100_000).map(|i| (i, i)).collect();
    /// let new = old.update(7, 0);
    /// let mut diff = old.diff(&new);
    /// assert_eq!(diff.by_ref().count(), 1);
    /// assert!(diff.nodes_visited() <= 8);
    /// ```
    pub fn nodes_visited(&self) -> usize {
        self.nodes_visited
    }
}

impl<'a, K: Hash + Eq, V: PartialEq, S: BuildHasher> Diff<'a, K, V, S> {
    fn push(&mut self, old: &'a Node<K, V>, new: &'a Node<K, V>) {
        if Arc::ptr_eq(old, new) {
            return;
        }
        self.nodes_visited += 1;
        if self.depth >= LEVELS {
            // Below the last bitmap level: collision nodes, compared entry by entry.
            self.flat = Some(Flat::new(&old.slice, &new.slice));
            return;
        }
        let (old_header, new_header) = (old.header, new.header);
        self.stack[self.depth] = Frame {
            old: &old.slice,
            old_header,
            new: &new.slice,
            new_header,
            bits: old_header.data_map
                | old_header.node_map
                | new_header.data_map
                | new_header.node_map,
        };
        self.depth += 1;
    }

    /// The next difference found by comparing entry by entry, if the current flat
    /// comparison has one left.
    fn next_flat(&mut self) -> Option<DiffItem<'a, K, V>> {
        let flat = self.flat.as_mut()?;
        for (key, old_value) in flat.old_walk.by_ref() {
            match Walk::new(flat.new).find(|(k, _)| *k == key) {
                Some((_, new_value)) if new_value != old_value => {
                    return Some(DiffItem::Changed {
                        key,
                        old: old_value,
                        new: new_value,
                    });
                }
                Some(_) => {}
                // No counterpart here. With one hash function that means the key is gone;
                // a map hashed differently may hold it elsewhere, so confirm with a lookup.
                None => match self.new.get(key) {
                    None => return Some(DiffItem::Removed(key, old_value)),
                    Some(new_value) if new_value != old_value => {
                        return Some(DiffItem::Changed {
                            key,
                            old: old_value,
                            new: new_value,
                        });
                    }
                    Some(_) => {}
                },
            }
        }
        for (key, new_value) in flat.new_walk.by_ref() {
            // A key the old map holds anywhere was reported (or found equal) from its side.
            if !Walk::new(flat.old).any(|(k, _)| k == key) && !self.old.contains_key(key) {
                return Some(DiffItem::Added(key, new_value));
            }
        }
        self.flat = None;
        None
    }
}

impl<'a, K: Eq, V: PartialEq> Flat<'a, K, V> {
    fn new(old: &'a [Slot<K, V>], new: &'a [Slot<K, V>]) -> Self {
        Flat {
            old,
            new,
            old_walk: Walk::new(old),
            new_walk: Walk::new(new),
        }
    }
}

impl<'a, K: Hash + Eq, V: PartialEq, S: BuildHasher> Iterator for Diff<'a, K, V, S> {
    type Item = DiffItem<'a, K, V>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.next_flat() {
                return Some(item);
            }
            let frame = self.stack[..self.depth].last_mut()?;
            if frame.bits == 0 {
                self.depth -= 1;
                continue;
            }
            let bit = frame.bits & frame.bits.wrapping_neg();
            frame.bits ^= bit;
            let Frame {
                old,
                old_header,
                new,
                new_header,
                ..
            } = *frame;
            let old_slot = slot_in(old, old_header, bit);
            let new_slot = slot_in(new, new_header, bit);
            match (old_slot, new_slot) {
                (Some(Slot::Child(a)), Some(Slot::Child(b))) => self.push(a, b),
                (a, b) => self.flat = Some(Flat::new(option_slice(a), option_slice(b))),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Nothing is known until the walk is over.
        if self.depth == 0 && self.flat.is_none() {
            (0, Some(0))
        } else {
            (0, None)
        }
    }
}

impl<K: Hash + Eq, V: PartialEq, S: BuildHasher> FusedIterator for Diff<'_, K, V, S> {}

impl<K, V, S> Clone for Diff<'_, K, V, S> {
    fn clone(&self) -> Self {
        Diff {
            stack: self.stack,
            depth: self.depth,
            flat: self.flat.clone(),
            old: self.old,
            new: self.new,
            nodes_visited: self.nodes_visited,
        }
    }
}

impl<K, V, S> fmt::Debug for Diff<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Diff")
            .field("nodes_visited", &self.nodes_visited)
            .finish_non_exhaustive()
    }
}

/// The slot for `bit` in a bitmap node given as its header and slots.
fn slot_in<K, V>(slots: &[Slot<K, V>], header: Header, bit: u32) -> Option<&Slot<K, V>> {
    if header.data_map & bit != 0 {
        slots.get(entry_index(slots.len(), header.data_map, bit))
    } else if header.node_map & bit != 0 {
        slots.get(child_index(slots.len(), header.node_map, bit))
    } else {
        None
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
    /// The iterator is lazy and skips the subtrees the two versions share, so the cost is
    /// proportional to the difference, and to the part of it actually consumed. (Maps whose
    /// hash builders place keys differently are still diffed exactly, at the cost of a walk
    /// over both.) The order of the items is unspecified. Values are compared with `==`
    /// only outside the shared subtrees, so a value unequal to itself (a NaN) is reported as
    /// changed or not depending on what the versions share: as with `==` on maps, such values
    /// are assumed equal to themselves.
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
    pub fn diff<'a>(&'a self, other: &'a Self) -> Diff<'a, K, V, S> {
        let mut diff = Diff {
            stack: [Frame::EMPTY; LEVELS],
            depth: 0,
            flat: None,
            old: self,
            new: other,
            nodes_visited: 0,
        };
        match (&self.root, &other.root) {
            (Some(old), Some(new)) => diff.push(old, new),
            (old, new) => {
                diff.flat = Some(Flat::new(
                    old.as_ref().map_or(&[], |node| &node.slice[..]),
                    new.as_ref().map_or(&[], |node| &node.slice[..]),
                ));
            }
        }
        diff
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
    /// `top.union(&below)` merges without replacing existing keys. If `self` is empty, the
    /// result is a copy of `other` (O(1)), with `other`'s hasher.
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
    /// All or nothing: if a key's `Hash`, `Eq` or `Clone` panics, `self` is unchanged. An
    /// empty `self` becomes a copy of `other` (O(1)), hasher included: its nodes are placed
    /// by that hasher.
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
