//! The entry API: look a key up once, then read, insert, change or remove it.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

use crate::map::HamtMap;
use crate::node::{self, HashBits, Location, Node, Removed};

/// A view into one key's place in a [`HamtMap`], from [`HamtMap::entry`].
///
/// ```
/// use hamt::{Entry, HamtMap};
///
/// let mut stock: HamtMap<&str, u32> = [("apple", 3)].into_iter().collect();
/// match stock.entry("apple") {
///     Entry::Occupied(mut entry) => *entry.get_mut() += 1,
///     Entry::Vacant(entry) => panic!("{} should be present", entry.key()),
/// }
/// assert!(matches!(stock.entry("pear"), Entry::Vacant(_)));
/// assert_eq!(stock["apple"], 4);
/// ```
pub enum Entry<'a, K, V, S> {
    /// The key is present.
    Occupied(OccupiedEntry<'a, K, V, S>),
    /// The key is absent.
    Vacant(VacantEntry<'a, K, V, S>),
}

/// A present key, from [`HamtMap::entry`].
///
/// The entry keeps the place the lookup found, so its methods do not search again from the
/// root: it holds the *anchor*, the node on the key's path that a removal edits (the node
/// holding the entry, or, when removing it would leave that node with a single entry, the
/// ancestor that entry moves up into). Making the entry copies the shared nodes above the
/// anchor (as any edit of the key would); [`get`](Self::get) reads from the anchor,
/// [`get_mut`](Self::get_mut), [`insert`](Self::insert) and [`into_mut`](Self::into_mut)
/// copy what is still shared from the anchor down, and [`remove`](Self::remove) edits the
/// anchor. No `Eq` or `Hash` runs after the lookup.
pub struct OccupiedEntry<'a, K, V, S> {
    pub(crate) hash: HashBits,
    /// Where the entry is below the anchor: its index when it is in a collision node.
    pub(crate) location: Location,
    pub(crate) anchor: Anchor<'a, K, V>,
    /// The anchor's level, in hash bits.
    pub(crate) anchor_shift: u32,
    pub(crate) len: &'a mut usize,
    pub(crate) hasher: PhantomData<&'a mut S>,
}

/// The node an [`OccupiedEntry`] works from.
pub(crate) enum Anchor<'a, K, V> {
    /// The map's root, held with the map's root slot so that removing the last entry can
    /// empty the map.
    Root(&'a mut Option<Node<K, V>>),
    /// A node below the root; the nodes above it were made uniquely owned.
    Inner(&'a mut Node<K, V>),
}

impl<'a, K, V> Anchor<'a, K, V> {
    fn node(&self) -> &Node<K, V> {
        match self {
            Anchor::Root(root) => root.as_ref().expect(PRESENT),
            Anchor::Inner(node) => node,
        }
    }

    fn node_mut(&mut self) -> &mut Node<K, V> {
        match self {
            Anchor::Root(root) => root.as_mut().expect(PRESENT),
            Anchor::Inner(node) => node,
        }
    }

    fn into_node(self) -> &'a mut Node<K, V> {
        match self {
            Anchor::Root(root) => root.as_mut().expect(PRESENT),
            Anchor::Inner(node) => node,
        }
    }
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
    /// The entry's key: the one in the map if the key is present (as std's), else the one
    /// it was looked up with.
    ///
    /// ```
    /// let mut map = hamt::HamtMap::<_, u8>::new();
    /// assert_eq!(map.entry("k").key(), &"k");
    /// ```
    pub fn key(&self) -> &K {
        match self {
            Entry::Occupied(entry) => entry.key(),
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

impl<K, V, S> OccupiedEntry<'_, K, V, S> {
    /// The entry's key and value, as stored.
    fn located(&self) -> (&K, &V) {
        node::get_located(
            self.anchor.node(),
            self.anchor_shift,
            self.hash,
            self.location,
        )
        .expect(PRESENT)
    }
}

impl<'a, K, V, S> OccupiedEntry<'a, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// The key in the map (as std's: for a key type whose `Eq` ignores some of its fields,
    /// it may differ from the one the entry was looked up with).
    ///
    /// ```
    /// use std::hash::{Hash, Hasher};
    /// use hamt::Entry;
    ///
    /// /// A name compared without regard to case.
    /// #[derive(Clone, Debug)]
    /// struct Name(&'static str);
    /// impl PartialEq for Name {
    ///     fn eq(&self, other: &Self) -> bool {
    ///         self.0.eq_ignore_ascii_case(other.0)
    ///     }
    /// }
    /// impl Eq for Name {}
    /// impl Hash for Name {
    ///     fn hash<H: Hasher>(&self, state: &mut H) {
    ///         self.0.to_ascii_lowercase().hash(state);
    ///     }
    /// }
    ///
    /// let mut map = hamt::HamtMap::new();
    /// map.insert(Name("Alice"), 1);
    /// let Entry::Occupied(entry) = map.entry(Name("ALICE")) else {
    ///     unreachable!("the key is there");
    /// };
    /// assert_eq!(entry.key().0, "Alice");
    /// ```
    pub fn key(&self) -> &K {
        self.located().0
    }

    /// The present value.
    ///
    /// ```
    /// use hamt::Entry;
    /// let mut map: hamt::HamtMap<_, _> = [("k", 1)].into_iter().collect();
    /// let Entry::Occupied(entry) = map.entry("k") else {
    ///     unreachable!("the key is there");
    /// };
    /// assert_eq!(entry.get(), &1);
    /// ```
    pub fn get(&self) -> &V {
        self.located().1
    }

    /// The present value, mutably (copying shared nodes between the anchor and the entry
    /// first).
    ///
    /// ```
    /// use hamt::Entry;
    /// let mut map: hamt::HamtMap<_, _> = [("k", 1)].into_iter().collect();
    /// let before = map.clone();
    /// let Entry::Occupied(mut entry) = map.entry("k") else {
    ///     unreachable!("the key is there");
    /// };
    /// *entry.get_mut() += 1;
    /// *entry.get_mut() += 1;
    /// assert_eq!((map["k"], before["k"]), (3, 1));
    /// ```
    pub fn get_mut(&mut self) -> &mut V {
        node::get_mut_located(
            self.anchor.node_mut(),
            self.anchor_shift,
            self.hash,
            self.location,
        )
        .expect(PRESENT)
    }

    /// The present value, mutably, for as long as the map is borrowed.
    ///
    /// ```
    /// use hamt::Entry;
    /// let mut map: hamt::HamtMap<_, _> = [("k", 1)].into_iter().collect();
    /// let value = match map.entry("k") {
    ///     Entry::Occupied(entry) => entry.into_mut(),
    ///     Entry::Vacant(entry) => entry.insert(0),
    /// };
    /// *value += 1;
    /// assert_eq!(map["k"], 2);
    /// ```
    pub fn into_mut(self) -> &'a mut V {
        node::get_mut_located(
            self.anchor.into_node(),
            self.anchor_shift,
            self.hash,
            self.location,
        )
        .expect(PRESENT)
    }

    /// Replaces the value, returning the old one.
    ///
    /// ```
    /// use hamt::Entry;
    /// let mut map: hamt::HamtMap<_, _> = [("k", 1)].into_iter().collect();
    /// let Entry::Occupied(mut entry) = map.entry("k") else {
    ///     unreachable!("the key is there");
    /// };
    /// assert_eq!(entry.insert(2), 1);
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
    /// let Entry::Occupied(entry) = map.entry("k") else {
    ///     unreachable!("the key is there");
    /// };
    /// assert_eq!(entry.remove(), 1);
    /// assert!(map.is_empty());
    /// ```
    pub fn remove(self) -> V {
        self.remove_entry().1
    }

    /// Removes the entry, returning the stored key and value.
    ///
    /// ```
    /// use hamt::Entry;
    /// let mut map: hamt::HamtMap<_, _> = [(String::from("k"), 1)].into_iter().collect();
    /// let Entry::Occupied(entry) = map.entry(String::from("k")) else {
    ///     unreachable!("the key is there");
    /// };
    /// assert_eq!(entry.remove_entry(), (String::from("k"), 1));
    /// assert!(map.is_empty());
    /// ```
    pub fn remove_entry(self) -> (K, V) {
        let OccupiedEntry {
            hash,
            location,
            mut anchor,
            anchor_shift,
            len,
            ..
        } = self;
        let removed = node::remove_located(anchor.node_mut(), anchor_shift, hash, location);
        let (k, v) = match removed {
            Removed::Done(k, v) => (k, v),
            // The anchor is the root (which never collapses) or a node that keeps something
            // else besides the removed entry.
            Removed::Collapse { .. } => unreachable!("an entry's anchor collapsed"),
            Removed::NotFound => unreachable!("{PRESENT}"),
        };
        *len -= 1;
        if *len == 0
            && let Anchor::Root(root) = anchor
        {
            *root = None;
        }
        (k, v)
    }
}

impl<'a, K, V, S> VacantEntry<'a, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// The key the entry was looked up with, which an insert puts in the map.
    ///
    /// ```
    /// use hamt::Entry;
    /// let mut map = hamt::HamtMap::<_, u8>::new();
    /// if let Entry::Vacant(entry) = map.entry("k") {
    ///     assert_eq!(entry.key(), &"k");
    /// }
    /// ```
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Takes the key back, inserting nothing.
    ///
    /// ```
    /// use hamt::Entry;
    /// let mut map = hamt::HamtMap::<String, u8>::new();
    /// if let Entry::Vacant(entry) = map.entry("k".to_string()) {
    ///     assert_eq!(entry.into_key(), "k");
    /// }
    /// assert!(map.is_empty());
    /// ```
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
            Entry::Occupied(entry) => f.debug_tuple("Occupied").field(entry).finish(),
            Entry::Vacant(entry) => f.debug_tuple("Vacant").field(&entry.key).finish(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for OccupiedEntry<'_, K, V, S> {
    /// The key and the value as stored (as `key` and `get` give them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (key, value) = self.located();
        f.debug_struct("OccupiedEntry")
            .field("key", key)
            .field("value", value)
            .finish()
    }
}

impl<K: fmt::Debug, V, S> fmt::Debug for VacantEntry<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VacantEntry")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
