//! [`HamtMap`]: the public map type.

use std::borrow::Borrow;
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::iter::FromIterator;
use std::marker::PhantomData;
use std::ops::Index;

use triomphe::Arc;

use crate::entry::{Anchor, Entry, OccupiedEntry, VacantEntry};
use crate::iter::{IntoIter, Iter, IterMut, Keys, Values, ValuesMut};
use crate::node::{self, HashBits, Node, Removed, Side};

/// A persistent hash map: `clone` is O(1), and versions share structure.
///
/// `HamtMap` is a CHAMP trie (a compressed hash array mapped prefix tree). Its API follows
/// [`std::collections::HashMap`]. Methods taking `&mut self` edit nodes in place when this map
/// owns them alone and copy the path from the root to the edit otherwise, so a clone taken
/// earlier never changes. The persistent forms [`update`](Self::update) and
/// [`without`](Self::without) return a new version and leave `self` as it was.
///
/// # Examples
///
/// ```
/// use hamt::HamtMap;
///
/// let mut v1 = HamtMap::new();
/// v1.insert("answer", 42);
/// let v2 = v1.update("question", 0); // v1 is untouched
///
/// assert_eq!(v1.len(), 1);
/// assert_eq!(v2.get("answer"), Some(&42));
/// assert_eq!(v2.get("question"), Some(&0));
/// assert!(!v1.contains_key("question"));
/// ```
///
/// # Costs
///
/// Lookups visit at most 7 levels plus a collision level. An edit copies one node per level
/// on a shared path (each copy is a single allocation holding the node's entries and child
/// pointers) and allocates only where the node's size changes when the path is uniquely
/// owned. An empty map allocates nothing.
pub struct HamtMap<K, V, S = RandomState> {
    pub(crate) root: Option<Node<K, V>>,
    pub(crate) len: usize,
    pub(crate) hasher: S,
}

impl<K, V> HamtMap<K, V, RandomState> {
    /// Creates an empty map. It does not allocate.
    ///
    /// ```
    /// let map: hamt::HamtMap<u32, String> = hamt::HamtMap::new();
    /// assert!(map.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::with_hasher(RandomState::new())
    }
}

impl<K, V, S> HamtMap<K, V, S> {
    /// Creates an empty map that hashes keys with `hasher`.
    ///
    /// Maps that are compared with `==`, diffed or united run fastest when they share one hash
    /// function: build them from one another (by `clone`, `update`, …) or use a deterministic
    /// [`BuildHasher`].
    ///
    /// ```
    /// use std::hash::BuildHasherDefault;
    /// use std::collections::hash_map::DefaultHasher;
    ///
    /// let map: hamt::HamtMap<u8, u8, BuildHasherDefault<DefaultHasher>> =
    ///     hamt::HamtMap::with_hasher(BuildHasherDefault::default());
    /// assert_eq!(map.len(), 0);
    /// ```
    pub const fn with_hasher(hasher: S) -> Self {
        HamtMap {
            root: None,
            len: 0,
            hasher,
        }
    }

    /// The number of entries.
    ///
    /// ```
    /// let map: hamt::HamtMap<_, _> = [(1, 'a'), (2, 'b')].into_iter().collect();
    /// assert_eq!(map.len(), 2);
    /// ```
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map has no entries.
    ///
    /// ```
    /// assert!(hamt::HamtMap::<u8, u8>::new().is_empty());
    /// ```
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The map's hash builder.
    ///
    /// ```
    /// use std::hash::BuildHasher;
    ///
    /// let map: hamt::HamtMap<&str, u8> = [("a", 1)].into_iter().collect();
    /// // Clones share the hash builder, so they hash every key alike.
    /// let copy = map.clone();
    /// assert_eq!(map.hasher().hash_one("a"), copy.hasher().hash_one("a"));
    /// ```
    pub fn hasher(&self) -> &S {
        &self.hasher
    }

    /// Whether `self` and `other` are the same version: their roots are one allocation (or
    /// both are empty). `true` implies the maps are equal; the check is O(1).
    ///
    /// ```
    /// let a: hamt::HamtMap<_, _> = [(1, 1)].into_iter().collect();
    /// let b = a.clone();
    /// assert!(a.ptr_eq(&b));
    /// assert!(!a.ptr_eq(&a.update(2, 2)));
    /// ```
    pub fn ptr_eq(&self, other: &Self) -> bool {
        match (&self.root, &other.root) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// An iterator over the entries, in unspecified order. It does not allocate.
    ///
    /// ```
    /// let map: hamt::HamtMap<_, _> = [(1, 10), (2, 20)].into_iter().collect();
    /// let mut entries: Vec<_> = map.iter().map(|(k, v)| (*k, *v)).collect();
    /// entries.sort();
    /// assert_eq!(entries, [(1, 10), (2, 20)]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter::new(self.root.as_ref(), self.len)
    }

    /// An iterator over the keys, in unspecified order.
    ///
    /// ```
    /// let map: hamt::HamtMap<_, _> = [("a", 1)].into_iter().collect();
    /// assert_eq!(map.keys().collect::<Vec<_>>(), [&"a"]);
    /// ```
    pub fn keys(&self) -> Keys<'_, K, V> {
        Keys { inner: self.iter() }
    }

    /// An iterator over the values, in unspecified order.
    ///
    /// ```
    /// let map: hamt::HamtMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
    /// assert_eq!(map.values().sum::<i32>(), 3);
    /// ```
    pub fn values(&self) -> Values<'_, K, V> {
        Values { inner: self.iter() }
    }

    /// Removes every entry. Nodes shared with other versions stay alive there.
    ///
    /// ```
    /// let mut map: hamt::HamtMap<_, _> = [(1, 1)].into_iter().collect();
    /// map.clear();
    /// assert!(map.is_empty());
    /// ```
    pub fn clear(&mut self) {
        // The length first: dropping the entries runs their `Drop`, which may panic.
        self.len = 0;
        drop(self.root.take());
    }
}

impl<K: Clone, V: Clone, S> HamtMap<K, V, S> {
    /// An iterator over the entries with mutable values, in unspecified order.
    ///
    /// Copy-on-write: each node is made uniquely owned when the iterator reaches it, and a
    /// node shared with another version (a clone) is copied first, so that version keeps
    /// its values. The cost follows from that: on a map that shares nothing the iterator
    /// copies nothing and does not allocate; on a map whose whole trie is shared (a fresh
    /// clone) a full iteration copies every node, like [`get_mut`](Self::get_mut) on every
    /// key. An iterator dropped early has copied only the nodes it reached.
    ///
    /// ```
    /// let mut map: hamt::HamtMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
    /// let snapshot = map.clone();
    /// for (_, value) in map.iter_mut() {
    ///     *value *= 10;
    /// }
    /// assert_eq!((map["a"], map["b"]), (10, 20));
    /// assert_eq!((snapshot["a"], snapshot["b"]), (1, 2)); // the clone is untouched
    /// ```
    pub fn iter_mut(&mut self) -> IterMut<'_, K, V> {
        IterMut::new(self.root.as_mut(), self.len)
    }

    /// An iterator over mutable values, in unspecified order. It unshares nodes as
    /// [`iter_mut`](Self::iter_mut) does.
    ///
    /// ```
    /// let mut map: hamt::HamtMap<_, _> = [(1, String::from("a"))].into_iter().collect();
    /// let snapshot = map.clone();
    /// map.values_mut().for_each(|v| v.push('!'));
    /// assert_eq!(map[&1], "a!");
    /// assert_eq!(snapshot[&1], "a");
    /// ```
    pub fn values_mut(&mut self) -> ValuesMut<'_, K, V> {
        ValuesMut {
            inner: self.iter_mut(),
        }
    }
}

impl<K, V, S> HamtMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    #[inline]
    pub(crate) fn hash_of<Q: Hash + ?Sized>(&self, key: &Q) -> HashBits {
        node::hash_key(&self.hasher, key)
    }

    /// The value stored for `key`.
    ///
    /// ```
    /// let map: hamt::HamtMap<_, _> = [(String::from("k"), 1)].into_iter().collect();
    /// assert_eq!(map.get("k"), Some(&1));
    /// assert_eq!(map.get("x"), None);
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).map(|(_, v)| v)
    }

    /// The stored key and value for `key`.
    ///
    /// ```
    /// let map: hamt::HamtMap<_, _> = [(1, 'a')].into_iter().collect();
    /// assert_eq!(map.get_key_value(&1), Some((&1, &'a')));
    /// ```
    #[inline]
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let root = self.root.as_ref()?;
        node::get(root, self.hash_of(key), key)
    }

    /// Whether the map holds `key`.
    ///
    /// ```
    /// let map: hamt::HamtMap<_, _> = [(1, 'a')].into_iter().collect();
    /// assert!(map.contains_key(&1));
    /// assert!(!map.contains_key(&2));
    /// ```
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).is_some()
    }

    /// Checks every structural invariant: bitmaps against node sizes, entries in the buckets
    /// their hashes select, canonical shape (no non-root node reduced to a single entry),
    /// collision nodes only below the last hash bit, and `len`.
    ///
    /// Meant for tests and fuzzers of this crate and of code built on it: test support, not
    /// API, so it exists only with the `testing` feature (and in this crate's own tests and
    /// under `cfg(fuzzing)`).
    ///
    /// # Panics
    ///
    /// When an invariant is broken, with a message naming it.
    ///
    /// ```
    /// let map: hamt::HamtMap<_, _> = (0..1000).map(|i| (i, i)).collect();
    /// map.check_invariants();
    /// ```
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub fn check_invariants(&self) {
        let counted = match &self.root {
            Some(root) => node::check(root, 0, 0, true, &self.hasher),
            None => 0,
        };
        assert_eq!(
            counted, self.len,
            "len disagrees with the entries in the trie"
        );
        if self.len > 0 {
            assert!(self.root.is_some(), "a non-empty map without a root");
        }
    }
}

impl<K, V, S> HamtMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Inserts `value` for `key`, returning the value it replaces.
    ///
    /// In place when this map owns the nodes on the key's path alone; otherwise the path is
    /// copied and other versions keep their values.
    ///
    /// ```
    /// let mut map = hamt::HamtMap::new();
    /// assert_eq!(map.insert(1, "one"), None);
    /// let before = map.clone();
    /// assert_eq!(map.insert(1, "uno"), Some("one"));
    /// assert_eq!(before[&1], "one");
    /// assert_eq!(map[&1], "uno");
    /// ```
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = self.hash_of(&key);
        self.insert_hashed(hash, key, value)
    }

    pub(crate) fn insert_hashed(&mut self, hash: HashBits, key: K, value: V) -> Option<V> {
        self.insert_located(hash, key, value).0
    }

    /// Inserts, and tells where the entry landed (for reaching it again without `Eq`).
    pub(crate) fn insert_located(
        &mut self,
        hash: HashBits,
        key: K,
        value: V,
    ) -> (Option<V>, node::Location) {
        let mut placed = None;
        let old = match &mut self.root {
            Some(root) => node::insert(root, 0, hash, key, value, &self.hasher, &mut placed),
            None => {
                self.root = Some(node::singleton(hash, key, value));
                None
            }
        };
        if old.is_none() {
            self.len += 1;
        }
        (old, placed)
    }

    /// The value at a place found earlier, without comparing keys.
    pub(crate) fn get_mut_located(
        &mut self,
        hash: HashBits,
        location: node::Location,
    ) -> Option<&mut V> {
        node::get_mut_located(self.root.as_mut()?, 0, hash, location)
    }

    /// Inserts `value` for `key` unless the map already holds an equal value there; returns
    /// whether the map changed.
    ///
    /// When nothing changes the map keeps its root, so `ptr_eq` with earlier clones still
    /// holds (setting a context variable to its current value costs no allocation).
    ///
    /// ```
    /// let map: hamt::HamtMap<_, _> = [(1, "a")].into_iter().collect();
    /// let mut next = map.clone();
    /// assert!(!next.insert_if_changed(1, "a"));
    /// assert!(next.ptr_eq(&map));
    /// assert!(next.insert_if_changed(1, "b"));
    /// assert!(!next.ptr_eq(&map));
    /// ```
    pub fn insert_if_changed(&mut self, key: K, value: V) -> bool
    where
        V: PartialEq,
    {
        let hash = self.hash_of(&key);
        if let Some(root) = &self.root
            && let Some((_, present)) = node::get(root, hash, &key)
            && *present == value
        {
            return false;
        }
        self.insert_hashed(hash, key, value);
        true
    }

    /// Removes `key`, returning its value. The map is unchanged (and keeps its root) when the
    /// key is absent.
    ///
    /// ```
    /// let mut map: hamt::HamtMap<_, _> = [(1, 'a'), (2, 'b')].into_iter().collect();
    /// let before = map.clone();
    /// assert_eq!(map.remove(&1), Some('a'));
    /// assert_eq!(map.remove(&1), None);
    /// assert_eq!(map.len(), 1);
    /// assert_eq!(before.len(), 2);
    /// ```
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Removes `key`, returning the stored key and value.
    ///
    /// ```
    /// let mut map: hamt::HamtMap<_, _> = [(1, 'a')].into_iter().collect();
    /// assert_eq!(map.remove_entry(&1), Some((1, 'a')));
    /// ```
    pub fn remove_entry<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash_of(key);
        self.remove_hashed(hash, key)
    }

    pub(crate) fn remove_hashed<Q>(&mut self, hash: HashBits, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let root = self.root.as_mut()?;
        // Look first: removing walks the path copying shared nodes, which must not happen
        // for a key that is not there.
        node::get(root, hash, key)?;
        match node::remove(root, 0, hash, key) {
            Removed::Done(k, v)
            | Removed::Collapse {
                removed: (k, v), ..
            } => {
                self.len -= 1;
                if self.len == 0 {
                    self.root = None;
                }
                Some((k, v))
            }
            Removed::NotFound => None,
        }
    }

    /// A mutable reference to the value for `key`, copying shared nodes on its path first.
    ///
    /// ```
    /// let mut map: hamt::HamtMap<_, _> = [(1, 10)].into_iter().collect();
    /// let before = map.clone();
    /// *map.get_mut(&1).unwrap() += 1;
    /// assert_eq!(map[&1], 11);
    /// assert_eq!(before[&1], 10);
    /// ```
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash_of(key);
        self.get_mut_hashed(hash, key)
    }

    pub(crate) fn get_mut_hashed<Q>(&mut self, hash: HashBits, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let root = self.root.as_mut()?;
        // Find the entry first (no copying), then walk to it by hash, copying shared nodes.
        let location = node::locate(root, hash, key)?;
        node::get_mut_located(root, 0, hash, location)
    }

    /// The entry for `key`, for in-place inspection and update.
    ///
    /// An entry for a present key copies the nodes on its path that another version shares
    /// when it is made, since it may hand the value out mutably: to only read, use
    /// [`get`](Self::get), which keeps the map's structure shared.
    ///
    /// ```
    /// let mut counts = hamt::HamtMap::new();
    /// for word in ["a", "b", "a"] {
    ///     *counts.entry(word).or_insert(0) += 1;
    /// }
    /// assert_eq!(counts["a"], 2);
    /// assert_eq!(counts["b"], 1);
    /// ```
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V, S> {
        let hash = self.hash_of(&key);
        let found = self
            .root
            .as_ref()
            .and_then(|root| node::locate_anchor(root, hash, &key));
        let Some((location, anchor_level)) = found else {
            return Entry::Vacant(VacantEntry {
                map: self,
                key,
                hash,
            });
        };
        let HamtMap { root, len, .. } = self;
        let anchor = if anchor_level == 0 {
            Anchor::Root(root)
        } else {
            let Some(node) = root.as_mut() else {
                unreachable!("a key was found in an empty map");
            };
            Anchor::Inner(node::descend_mut(node, hash, anchor_level))
        };
        // The key looked up with is dropped here: the entry's key is the one in the map.
        drop(key);
        Entry::Occupied(OccupiedEntry {
            hash,
            location,
            anchor,
            anchor_shift: anchor_level as u32 * node::BITS,
            len,
            hasher: PhantomData,
        })
    }

    /// Keeps only the entries for which `keep` returns `true`. `keep` may change values.
    ///
    /// Since `keep` gets each value mutably, every node another version shares is copied
    /// first, even if nothing changes: the map then shares nothing with its other versions
    /// (see [`ptr_eq`](Self::ptr_eq)), and comparing or diffing them costs O(n). To drop
    /// entries without that, collect the keys to remove and [`remove`](Self::remove) them.
    ///
    /// If `keep` panics, the map stays valid: entries already visited may have been changed,
    /// none has been removed. The rejected entries' keys are cloned as they are visited, and
    /// the entries removed one by one once every entry has been: if a key's `Clone`, `Hash`
    /// or `Eq`, or a removed key's or value's `Drop`, panics meanwhile, the map stays valid
    /// too, with the changes `keep` made and some of the rejected entries removed (not all of
    /// them).
    ///
    /// ```
    /// let mut map: hamt::HamtMap<_, _> = (0..10).map(|i| (i, i)).collect();
    /// map.retain(|_, v| {
    ///     *v *= 10;
    ///     *v % 20 == 0
    /// });
    /// assert_eq!(map.len(), 5);
    /// assert_eq!(map[&2], 20);
    /// ```
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let Some(root) = &mut self.root else {
            return;
        };
        let mut doomed = Vec::new();
        node::for_each_mut(root, &mut |k, v| {
            if !keep(k, v) {
                doomed.push(k.clone());
            }
        });
        for key in doomed {
            self.remove(&key);
        }
    }

    /// Calls `f` on every entry with a mutable value, copying shared nodes first.
    ///
    /// ```
    /// let mut map: hamt::HamtMap<_, _> = [(1, 1), (2, 2)].into_iter().collect();
    /// map.for_each_value_mut(|_, v| *v += 1);
    /// assert_eq!(map[&2], 3);
    /// ```
    pub fn for_each_value_mut(&mut self, mut f: impl FnMut(&K, &mut V)) {
        if let Some(root) = &mut self.root {
            node::for_each_mut(root, &mut f);
        }
    }

    /// A new version with `value` stored for `key`; `self` is unchanged.
    ///
    /// ```
    /// let empty = hamt::HamtMap::new();
    /// let one = empty.update("k", 1);
    /// assert!(empty.is_empty());
    /// assert_eq!(one["k"], 1);
    /// ```
    #[must_use = "update returns a new map and leaves `self` unchanged"]
    #[inline]
    pub fn update(&self, key: K, value: V) -> Self
    where
        S: Clone,
    {
        let Some(root) = &self.root else {
            let mut next = self.clone();
            next.insert(key, value);
            return next;
        };
        // Build the new root from the shared one directly: cloning the map first would add
        // a reference count increment and decrement on the root for nothing.
        let hash = self.hash_of(&key);
        let mut placed = None;
        let (root, old) = node::insert_copy(root, 0, hash, key, value, &self.hasher, &mut placed);
        HamtMap {
            root: Some(root),
            len: self.len + usize::from(old.is_none()),
            hasher: self.hasher.clone(),
        }
    }

    /// A new version without `key`; `self` is unchanged. When `key` is absent the result
    /// shares `self`'s root (`ptr_eq`).
    ///
    /// ```
    /// let one: hamt::HamtMap<_, _> = [("k", 1)].into_iter().collect();
    /// let none = one.without("k");
    /// assert!(none.is_empty());
    /// assert!(one.without("x").ptr_eq(&one));
    /// ```
    #[must_use = "without returns a new map and leaves `self` unchanged"]
    #[inline]
    pub fn without<Q>(&self, key: &Q) -> Self
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        S: Clone,
    {
        let Some(root) = &self.root else {
            return self.clone();
        };
        // Copy the path from the shared root directly (see `update`); an absent key copies
        // nothing.
        let hash = self.hash_of(key);
        match node::remove_copy(root, 0, hash, key) {
            None => self.clone(),
            Some(node::RemovedCopy::Node(root)) => HamtMap {
                root: (self.len > 1).then_some(root),
                len: self.len - 1,
                hasher: self.hasher.clone(),
            },
            Some(node::RemovedCopy::Collapse(..)) => unreachable!("the root never collapses"),
        }
    }
}

impl<K, V, S: Clone> Clone for HamtMap<K, V, S> {
    /// O(1): one reference count increment.
    #[inline]
    fn clone(&self) -> Self {
        HamtMap {
            root: self.root.clone(),
            len: self.len,
            hasher: self.hasher.clone(),
        }
    }
}

impl<K, V, S: Default> Default for HamtMap<K, V, S> {
    fn default() -> Self {
        Self::with_hasher(S::default())
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for HamtMap<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Equal maps hold the same keys with equal values. Subtrees the two maps share are equal
/// without comparing their values, so `==` assumes that every value equals itself (`V: Eq` in
/// spirit): a map holding a NaN may compare equal to its copy and unequal to a map built
/// apart with the same contents.
impl<K, V, S> PartialEq for HamtMap<K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    /// Equal when both hold the same keys with equal values. The tries are compared node by
    /// node and pointer-equal subtrees are skipped, so comparing a map with a recent version
    /// of itself costs the difference; it never allocates. (Maps whose hash builders differ
    /// are recognised by a confirming lookup and compared entry by entry.)
    fn eq(&self, other: &Self) -> bool {
        if self.len != other.len {
            return false;
        }
        let (Some(a), Some(b)) = (&self.root, &other.root) else {
            return true; // equal lengths and one side empty: both are empty
        };
        let witnessed = match node::first_difference(a, b, 0) {
            None => return true,
            Some((Side::Left, k, v)) => other.get(k) == Some(v),
            Some((Side::Right, k, v)) => self.get(k) == Some(v),
        };
        // A witness the other map does hold means the two place keys differently, so they
        // must be compared key by key.
        witnessed
            && self
                .iter()
                .all(|(k, v)| other.get(k).is_some_and(|ov| ov == v))
    }
}

impl<K, V, S> Eq for HamtMap<K, V, S>
where
    K: Hash + Eq,
    V: Eq,
    S: BuildHasher,
{
}

impl<K: Hash, V: Hash, S> Hash for HamtMap<K, V, S> {
    /// Order-independent, like Python's `frozenset`: each entry is hashed on its own with a
    /// fixed hasher and the results are summed, so equal maps hash equally whatever their
    /// hash builders or insertion orders.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut sum = 0u64;
        for (k, v) in self.iter() {
            let mut entry = DefaultHasher::new();
            k.hash(&mut entry);
            v.hash(&mut entry);
            sum = sum.wrapping_add(entry.finish());
        }
        state.write_usize(self.len);
        state.write_u64(sum);
    }
}

impl<K, Q, V, S> Index<&Q> for HamtMap<K, V, S>
where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ?Sized,
    S: BuildHasher,
{
    type Output = V;

    /// # Panics
    ///
    /// If the key is absent, like `HashMap`'s `Index`.
    fn index(&self, key: &Q) -> &V {
        match self.get(key) {
            Some(value) => value,
            None => panic!("key not found in HamtMap"),
        }
    }
}

impl<K, V, S> FromIterator<(K, V)> for HamtMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Default,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = Self::default();
        map.extend(entries);
        map
    }
}

impl<K, V, S> Extend<(K, V)> for HamtMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        for (k, v) in entries {
            self.insert(k, v);
        }
    }
}

impl<'a, K, V, S> Extend<(&'a K, &'a V)> for HamtMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, entries: I) {
        for (k, v) in entries {
            self.insert(k.clone(), v.clone());
        }
    }
}

impl<'a, K, V, S> IntoIterator for &'a HamtMap<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

impl<'a, K: Clone, V: Clone, S> IntoIterator for &'a mut HamtMap<K, V, S> {
    type Item = (&'a K, &'a mut V);
    type IntoIter = IterMut<'a, K, V>;

    /// See [`HamtMap::iter_mut`]: shared nodes are copied as they are reached.
    fn into_iter(self) -> IterMut<'a, K, V> {
        self.iter_mut()
    }
}

impl<K: Clone, V: Clone, S> IntoIterator for HamtMap<K, V, S> {
    type Item = (K, V);
    type IntoIter = IntoIter<K, V>;

    /// Moves entries out of nodes this map owns alone and clones them from shared ones.
    fn into_iter(self) -> IntoIter<K, V> {
        IntoIter::new(self.root, self.len)
    }
}

impl<K, V, S, T> From<std::collections::HashMap<K, V, T>> for HamtMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Default,
{
    /// Moves the entries of a `std` map into a new map hashed with `S::default()`.
    ///
    /// ```
    /// use std::collections::HashMap;
    ///
    /// let std_map = HashMap::from([("a", 1), ("b", 2)]);
    /// let map: hamt::HamtMap<_, _> = hamt::HamtMap::from(std_map.clone());
    /// assert_eq!(map.len(), 2);
    /// assert!(std_map.iter().all(|(k, v)| map.get(k) == Some(v)));
    /// ```
    fn from(entries: std::collections::HashMap<K, V, T>) -> Self {
        entries.into_iter().collect()
    }
}

impl<K, V, S, const N: usize> From<[(K, V); N]> for HamtMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Default,
{
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}
