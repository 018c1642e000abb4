//! Set operations on maps, by key: [`intersection`](HamtMap::intersection),
//! [`difference`](HamtMap::difference) and
//! [`symmetric_difference`](HamtMap::symmetric_difference).
//!
//! Each walks `self`'s trie beside `other`'s and treats a subtree the two share (one pointer
//! comparison) as a whole: all of its keys are in both maps, so an intersection keeps it and a
//! difference drops it without looking inside. Everywhere else each entry of `self` is checked
//! against `other` (at the same place first, then by a lookup, which keeps maps with different
//! hash builders exact), and the result is rebuilt only where something was dropped: a node
//! whose entries all stay is reused as it is. The cost is therefore proportional to the part
//! of `self` the two maps do not share.

use std::hash::{BuildHasher, Hash};

use triomphe::Arc;

use crate::map::HamtMap;
use crate::node::{BITS, HASH_BITS, Header, Node, Slot, build_bitmap_node, new_node, slot_for};

/// What filtering a subtree left of it.
enum Filtered<K, V> {
    /// Every entry stays: the subtree is reused as it is.
    Unchanged,
    /// No entry stays.
    Empty,
    /// One entry stays and no child: the (non-root) node is dropped and its parent inlines the
    /// entry, keeping the trie canonical.
    Single(K, V),
    /// A new node holding what stays.
    Node(Node<K, V>),
}

/// What became of one bucket of a node.
enum Bucket<K, V> {
    KeepEntry,
    DropEntry,
    Child(Filtered<K, V>),
}

/// Keeps the entries of one map whose keys are (or are not) in another.
struct Filter<'o, K, V, S> {
    other: &'o HamtMap<K, V, S>,
    /// Keep the entries whose keys `other` holds (an intersection), or the others.
    keep_present: bool,
    /// Entries looked at and kept.
    kept: usize,
    /// Entries looked at and dropped.
    dropped: usize,
}

impl<K, V, S> Filter<'_, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Whether the entry with key `key` stays; `beside` is what `other` holds at its place.
    fn keeps(&mut self, key: &K, beside: &[Slot<K, V>]) -> bool {
        let at_same_place = beside
            .iter()
            .any(|slot| matches!(slot, Slot::Entry(k, _) if k == key));
        let present = at_same_place || self.other.contains_key(key);
        let keep = present == self.keep_present;
        if keep {
            self.kept += 1;
        } else {
            self.dropped += 1;
        }
        keep
    }

    /// Filters the subtree `ours` at `shift`; `theirs` is `other`'s subtree at the same place.
    fn node(
        &mut self,
        ours: &Node<K, V>,
        theirs: Option<&Node<K, V>>,
        shift: u32,
        is_root: bool,
    ) -> Filtered<K, V> {
        if theirs.is_some_and(|theirs| Arc::ptr_eq(ours, theirs)) {
            // Shared: every key is in both maps.
            return if self.keep_present {
                Filtered::Unchanged
            } else {
                Filtered::Empty
            };
        }
        if shift >= HASH_BITS {
            return self.collision(ours, theirs);
        }
        let header = ours.header;
        let mut buckets = Vec::with_capacity(ours.slice.len());
        let mut bits = header.data_map | header.node_map;
        while bits != 0 {
            let bit = bits & bits.wrapping_neg();
            bits ^= bit;
            let beside = theirs.and_then(|theirs| slot_for(theirs, bit));
            let bucket = match slot_for(ours, bit) {
                Some(Slot::Entry(k, _)) => {
                    if self.keeps(k, beside.map_or(&[], std::slice::from_ref)) {
                        Bucket::KeepEntry
                    } else {
                        Bucket::DropEntry
                    }
                }
                Some(Slot::Child(child)) => {
                    let theirs = match beside {
                        Some(Slot::Child(theirs)) => Some(theirs),
                        _ => None,
                    };
                    Bucket::Child(self.node(child, theirs, shift + BITS, false))
                }
                _ => Bucket::DropEntry,
            };
            buckets.push((bit, bucket));
        }
        let unchanged = buckets.iter().all(|(_, bucket)| {
            matches!(
                bucket,
                Bucket::KeepEntry | Bucket::Child(Filtered::Unchanged)
            )
        });
        if unchanged {
            return Filtered::Unchanged;
        }

        // Rebuild from the kept slots in bucket order.
        let mut kept = Vec::new();
        let mut data_map = 0;
        let mut node_map = 0;
        for (bit, bucket) in buckets {
            match bucket {
                Bucket::DropEntry | Bucket::Child(Filtered::Empty) => {}
                Bucket::KeepEntry => {
                    if let Some(slot @ Slot::Entry(..)) = slot_for(ours, bit) {
                        kept.push((bit, slot.clone()));
                        data_map |= bit;
                    }
                }
                Bucket::Child(Filtered::Single(k, v)) => {
                    kept.push((bit, Slot::Entry(k, v)));
                    data_map |= bit;
                }
                Bucket::Child(Filtered::Unchanged) => {
                    if let Some(slot @ Slot::Child(_)) = slot_for(ours, bit) {
                        kept.push((bit, slot.clone()));
                        node_map |= bit;
                    }
                }
                Bucket::Child(Filtered::Node(node)) => {
                    kept.push((bit, Slot::Child(node)));
                    node_map |= bit;
                }
            }
        }
        if kept.is_empty() {
            return Filtered::Empty;
        }
        if !is_root
            && node_map == 0
            && kept.len() == 1
            && let Some((_, Slot::Entry(k, v))) = kept.pop()
        {
            return Filtered::Single(k, v);
        }
        Filtered::Node(build_bitmap_node(Header { data_map, node_map }, kept))
    }

    /// Filters a collision node entry by entry.
    fn collision(&mut self, ours: &Node<K, V>, theirs: Option<&Node<K, V>>) -> Filtered<K, V> {
        let beside = theirs.map_or(&[][..], |theirs| &theirs.slice[..]);
        let keep: Vec<bool> = ours
            .slice
            .iter()
            .map(|slot| match slot {
                Slot::Entry(k, _) => self.keeps(k, beside),
                _ => false,
            })
            .collect();
        let kept = keep.iter().filter(|&&keep| keep).count();
        if kept == ours.slice.len() {
            return Filtered::Unchanged;
        }
        let mut slots: Vec<Slot<K, V>> = ours
            .slice
            .iter()
            .zip(&keep)
            .filter(|(_, keep)| **keep)
            .map(|(slot, _)| slot.clone())
            .collect();
        match (kept, slots.pop()) {
            (0, _) | (_, None) => Filtered::Empty,
            (1, Some(Slot::Entry(k, v))) => Filtered::Single(k, v),
            (_, Some(last)) => {
                slots.push(last);
                Filtered::Node(new_node(Header::COLLISION, slots))
            }
        }
    }
}

impl<K, V, S> HamtMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// The entries of `self` whose keys `other` holds (or, with `keep_present` false, lacks).
    fn filter_by(&self, other: &Self, keep_present: bool) -> Self {
        let Some(ours) = &self.root else {
            return self.clone();
        };
        let mut filter = Filter {
            other,
            keep_present,
            kept: 0,
            dropped: 0,
        };
        let root = match filter.node(ours, other.root.as_ref(), 0, true) {
            Filtered::Unchanged => return self.clone(),
            Filtered::Empty => None,
            Filtered::Node(node) => Some(node),
            Filtered::Single(..) => unreachable!("the root is never inlined"),
        };
        // Shared subtrees were not looked into: an intersection keeps all of their entries,
        // a difference none.
        let len = if keep_present {
            self.len - filter.dropped
        } else {
            filter.kept
        };
        HamtMap {
            root,
            len,
            hasher: self.hasher.clone(),
        }
    }

    /// The entries of `self` whose keys are also in `other` (with `self`'s values).
    ///
    /// Subtrees the two maps share are kept without being looked into, and the nodes of `self`
    /// that lose nothing are reused, so the cost is proportional to what the maps do not
    /// share: `a.intersection(&a.clone())` is `a` itself (`ptr_eq`), found with one pointer
    /// comparison.
    ///
    /// ```
    /// use hamt::HamtMap;
    ///
    /// let a: HamtMap<_, _> = [(1, 'a'), (2, 'b'), (3, 'c')].into_iter().collect();
    /// let b: HamtMap<_, _> = [(2, 'x'), (3, 'y'), (4, 'z')].into_iter().collect();
    /// let both = a.intersection(&b);
    /// assert_eq!(both.len(), 2);
    /// assert_eq!((both[&2], both[&3]), ('b', 'c'));
    /// assert!(a.intersection(&a.clone()).ptr_eq(&a));
    /// ```
    #[must_use = "intersection returns a new map and leaves `self` unchanged"]
    pub fn intersection(&self, other: &Self) -> Self {
        if other.is_empty() {
            return HamtMap::with_hasher(self.hasher.clone());
        }
        self.filter_by(other, true)
    }

    /// The entries of `self` whose keys are not in `other`.
    ///
    /// Subtrees the two maps share are dropped without being looked into, and the nodes of
    /// `self` that lose nothing are reused: `a.difference(&a)` is empty after one pointer
    /// comparison, and the difference between a version and its edited successor costs the
    /// edit, not the map's size.
    ///
    /// ```
    /// use hamt::HamtMap;
    ///
    /// let a: HamtMap<_, _> = [(1, 'a'), (2, 'b'), (3, 'c')].into_iter().collect();
    /// let b: HamtMap<_, _> = [(2, 'x'), (4, 'z')].into_iter().collect();
    /// let only_a = a.difference(&b);
    /// assert_eq!(only_a.len(), 2);
    /// assert_eq!((only_a[&1], only_a[&3]), ('a', 'c'));
    ///
    /// let next = a.update(9, 'n');
    /// assert_eq!(next.difference(&a).into_iter().collect::<Vec<_>>(), [(9, 'n')]);
    /// assert!(a.difference(&a).is_empty());
    /// ```
    #[must_use = "difference returns a new map and leaves `self` unchanged"]
    pub fn difference(&self, other: &Self) -> Self {
        if other.is_empty() {
            return self.clone();
        }
        self.filter_by(other, false)
    }

    /// The entries whose keys are in exactly one of the two maps, with their values.
    ///
    /// It is `self.difference(other)` united with `other.difference(self)`, so subtrees the
    /// maps share are skipped on both sides and the cost is proportional to what they do not
    /// share.
    ///
    /// ```
    /// use hamt::HamtMap;
    ///
    /// let a: HamtMap<_, _> = [(1, 'a'), (2, 'b')].into_iter().collect();
    /// let b: HamtMap<_, _> = [(2, 'x'), (3, 'y')].into_iter().collect();
    /// let either = a.symmetric_difference(&b);
    /// assert_eq!(either.len(), 2);
    /// assert_eq!((either[&1], either[&3]), ('a', 'y'));
    /// assert!(a.symmetric_difference(&a.clone()).is_empty());
    /// ```
    #[must_use = "symmetric_difference returns a new map and leaves `self` unchanged"]
    pub fn symmetric_difference(&self, other: &Self) -> Self {
        let mut out = self.difference(other);
        out.merge(&other.difference(self));
        out
    }
}
