//! The entry API: look a key up once, then read, insert, change or remove it.

use std::fmt;
use std::hash::{BuildHasher, Hash};

use crate::map::HamtMap;
use crate::node::{HashBits, Location};

/// A view into one key's place in a [`HamtMap`], from [`HamtMap::entry`].
pub enum Entry<'a, K, V, S> {
    /// The key is present.
    Occupied(OccupiedEntry<'a, K, V, S>),
    /// The key is absent.
    Vacant(VacantEntry<'a, K, V, S>),
}

/// A present key, from [`HamtMap::entry`].
pub struct OccupiedEntry<'a, K, V, S> {
    pub(crate) map: &'a mut HamtMap<K, V, S>,
    pub(crate) key: K,
    pub(crate) hash: HashBits,
    /// Where the entry is, so that it is reached again by hash alone: no `Eq` runs after the
    /// lookup that made this entry, so a panicking `Eq` cannot interrupt a half-done edit.
    pub(crate) location: Location,
}

/// An absent key, from [`HamtMap::entry`].
pub struct VacantEntry<'a, K, V, S> {
    pub(crate) map: &'a mut HamtMap<K, V, S>,
    pub(crate) key: K,
    pub(crate) hash: HashBits,
}

const PRESENT: &str = "an entry's place in the map is stable while the entry borrows it";

impl<'a, K, V, S> Entry<'a, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// The entry's key.
    ///
    /// ```
    /// let mut map = hamt::HamtMap::<_, u8>::new();
    /// assert_eq!(map.entry("k").key(), &"k");
    /// ```
    pub fn key(&self) -> &K {
        match self {
            Entry::Occupied(entry) => &entry.key,
            Entry::Vacant(entry) => &entry.key,
        }
    }

    /// The value, inserting `default` first if the key is absent.
    ///
    /// ```
    /// let mut map = hamt::HamtMap::new();
    /// *map.entry("k").or_insert(1) += 1;
    /// assert_eq!(map["k"], 2);
    /// ```
    pub fn or_insert(self, default: V) -> &'a mut V {
        self.or_insert_with(|| default)
    }

    /// The value, inserting `make()` first if the key is absent.
    ///
    /// ```
    /// let mut map = hamt::HamtMap::new();
    /// map.entry(1).or_insert_with(|| String::from("one"));
    /// assert_eq!(map[&1], "one");
    /// ```
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> &'a mut V {
        match self {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(make()),
        }
    }

    /// The value, inserting `make(&key)` first if the key is absent.
    ///
    /// ```
    /// let mut map = hamt::HamtMap::new();
    /// map.entry(3).or_insert_with_key(|k| k * 2);
    /// assert_eq!(map[&3], 6);
    /// ```
    pub fn or_insert_with_key(self, make: impl FnOnce(&K) -> V) -> &'a mut V {
        match self {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let value = make(&entry.key);
                entry.insert(value)
            }
        }
    }

    /// The value, inserting `V::default()` first if the key is absent.
    ///
    /// ```
    /// let mut map = hamt::HamtMap::<_, Vec<u8>>::new();
    /// map.entry("k").or_default().push(1);
    /// assert_eq!(map["k"], [1]);
    /// ```
    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }

    /// Applies `f` to the value if the key is present.
    ///
    /// ```
    /// let mut map: hamt::HamtMap<_, _> = [("k", 1)].into_iter().collect();
    /// map.entry("k").and_modify(|v| *v += 1).or_insert(0);
    /// map.entry("x").and_modify(|v| *v += 1).or_insert(0);
    /// assert_eq!((map["k"], map["x"]), (2, 0));
    /// ```
    pub fn and_modify(self, f: impl FnOnce(&mut V)) -> Self {
        match self {
            Entry::Occupied(mut entry) => {
                f(entry.get_mut());
                Entry::Occupied(entry)
            }
            vacant => vacant,
        }
    }
}

impl<'a, K, V, S> OccupiedEntry<'a, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// The key this entry was looked up with.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The present value.
    ///
    /// ```
    /// use hamt::Entry;
    /// let mut map: hamt::HamtMap<_, _> = [("k", 1)].into_iter().collect();
    /// if let Entry::Occupied(entry) = map.entry("k") {
    ///     assert_eq!(entry.get(), &1);
    /// }
    /// ```
    pub fn get(&self) -> &V {
        // Read-only, so no key comparison matters here; walk by the known place anyway.
        let root = self.map.root.as_ref().expect(PRESENT);
        crate::node::get_located(root, self.hash, self.location).expect(PRESENT)
    }

    /// The present value, mutably (copying shared nodes on its path first).
    pub fn get_mut(&mut self) -> &mut V {
        self.map
            .get_mut_located(self.hash, self.location)
            .expect(PRESENT)
    }

    /// The present value, mutably, for as long as the map is borrowed.
    pub fn into_mut(self) -> &'a mut V {
        self.map
            .get_mut_located(self.hash, self.location)
            .expect(PRESENT)
    }

    /// Replaces the value, returning the old one.
    ///
    /// ```
    /// use hamt::Entry;
    /// let mut map: hamt::HamtMap<_, _> = [("k", 1)].into_iter().collect();
    /// if let Entry::Occupied(mut entry) = map.entry("k") {
    ///     assert_eq!(entry.insert(2), 1);
    /// }
    /// assert_eq!(map["k"], 2);
    /// ```
    pub fn insert(&mut self, value: V) -> V {
        std::mem::replace(self.get_mut(), value)
    }

    /// Removes the entry, returning its value.
    ///
    /// ```
    /// use hamt::Entry;
    /// let mut map: hamt::HamtMap<_, _> = [("k", 1)].into_iter().collect();
    /// if let Entry::Occupied(entry) = map.entry("k") {
    ///     assert_eq!(entry.remove(), 1);
    /// }
    /// assert!(map.is_empty());
    /// ```
    pub fn remove(self) -> V {
        self.remove_entry().1
    }

    /// Removes the entry, returning the stored key and value.
    pub fn remove_entry(self) -> (K, V) {
        self.map.remove_hashed(self.hash, &self.key).expect(PRESENT)
    }
}

impl<'a, K, V, S> VacantEntry<'a, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// The key this entry was looked up with.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Takes the key back.
    pub fn into_key(self) -> K {
        self.key
    }

    /// Inserts `value` for the key and returns it, mutably.
    ///
    /// ```
    /// use hamt::Entry;
    /// let mut map = hamt::HamtMap::new();
    /// if let Entry::Vacant(entry) = map.entry("k") {
    ///     *entry.insert(1) += 1;
    /// }
    /// assert_eq!(map["k"], 2);
    /// ```
    pub fn insert(self, value: V) -> &'a mut V {
        let (_, location) = self.map.insert_located(self.hash, self.key, value);
        self.map
            .get_mut_located(self.hash, location)
            .expect(PRESENT)
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for Entry<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Occupied(entry) => f.debug_tuple("Occupied").field(&entry.key).finish(),
            Entry::Vacant(entry) => f.debug_tuple("Vacant").field(&entry.key).finish(),
        }
    }
}

impl<K: fmt::Debug, V, S> fmt::Debug for OccupiedEntry<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OccupiedEntry")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<K: fmt::Debug, V, S> fmt::Debug for VacantEntry<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VacantEntry")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
