//! The contenders, and the one trait every benchmark drives them through.
//!
//! All maps store `u64 → u64` and hash with foldhash's `fast::RandomState`, so differences
//! come from the data structures, not from the hash function.

/// The hasher every contender uses.
pub type Hasher = foldhash::fast::RandomState;

/// Ours: the CHAMP map of the `hamt` crate.
pub type OursMap = hamt::HamtMap<u64, u64, Hasher>;

/// `imbl` with its default shared pointer (`Arc`, unless imbl's `triomphe` feature is on).
pub type ImblMap = imbl::GenericHashMap<u64, u64, Hasher, imbl::shared_ptr::DefaultSharedPtr>;

/// `im` (unmaintained, still widely used); its nodes are `Arc`-shared.
pub type ImMap = im::HashMap<u64, u64, Hasher>;

/// `rpds` with `Send + Sync` pointers (triomphe `Arc`), default degree 64.
pub type RpdsMap = rpds::HashTrieMapSync<u64, u64, Hasher>;

/// `std`'s flat table: a snapshot of it is a full copy. The baseline persistent maps must beat
/// for snapshots (PEP 550's `dict.copy()`), and approach for lookups.
pub type StdMap = std::collections::HashMap<u64, u64, Hasher>;

/// A map as the benchmarks see it: every contender implements this, so every operation is
/// written once.
///
/// Keys and values are `u64`; inputs are passed by value and results returned by value so
/// that the trait adds no indirection (every method is `#[inline]`).
pub trait BenchMap: Clone {
    /// Which contender this is.
    const CONTENDER: Contender;

    /// An empty map hashing with `hasher`.
    fn with_hasher(hasher: Hasher) -> Self;

    /// The number of entries.
    fn len(&self) -> usize;

    /// Whether the map has no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value stored for `key`.
    fn lookup(&self, key: u64) -> Option<u64>;

    /// Inserts through `&mut self`: in place when the map is uniquely owned, a path copy when
    /// it shares structure with a clone.
    fn insert_in_place(&mut self, key: u64, value: u64);

    /// Removes through `&mut self`; whether `key` was present.
    fn remove_in_place(&mut self, key: u64) -> bool;

    /// A new version with `key → value`; `self` is left unchanged.
    ///
    /// For [`StdMap`] this is a full copy, which is why [`Contender::is_persistent`] is false
    /// for it and the persistent benchmarks skip it.
    fn persistent_insert(&self, key: u64, value: u64) -> Self;

    /// A new version without `key`; `self` is left unchanged.
    fn persistent_remove(&self, key: u64) -> Self;

    /// Visits every entry and folds the keys and values into a checksum, so the iteration
    /// cannot be optimised away.
    fn fold_entries(&self) -> u64;

    /// A map holding `key → key` for every key, built in place.
    fn build(hasher: Hasher, keys: &[u64]) -> Self {
        let mut map = Self::with_hasher(hasher);
        for &key in keys {
            map.insert_in_place(key, key);
        }
        map
    }
}

/// The checksum step of [`BenchMap::fold_entries`].
#[inline]
fn fold_step(acc: u64, key: u64, value: u64) -> u64 {
    acc.wrapping_add(key ^ value.rotate_left(7))
}

/// Ours with shared values, the shape of a context (values behind an `Arc`): what
/// [`StdArcMap`] is compared with, so that both store the same values.
pub type OursArcMap = hamt::HamtMap<u64, std::sync::Arc<u64>, Hasher>;

/// `std`'s flat table with shared values, the shape of a context (values behind an `Arc`):
/// its copy bumps one reference count per entry.
pub type StdArcMap = std::collections::HashMap<u64, std::sync::Arc<u64>, Hasher>;

/// Implements [`BenchMap`] for one contender: `$new` makes an empty map from a hasher, `$len`,
/// `$get`, `$put` and `$take` are its `len`, `get`, in-place insert and in-place remove
/// (returning whether the key was present), `$wrap` turns a `u64` into a stored value, and
/// `persistent` is either `structural($update, $without)` or `copy` (clone, then edit in place).
macro_rules! bench_map {
    ($map:ty, $contender:ident, $new:path, $len:ident, $put:ident, $take:ident($($is:tt)*),
     $wrap:expr, persistent: $($persistent:tt)*) => {
        impl BenchMap for $map {
            const CONTENDER: Contender = Contender::$contender;

            #[inline]
            fn with_hasher(hasher: Hasher) -> Self {
                $new(hasher)
            }

            #[inline]
            fn len(&self) -> usize {
                self.$len()
            }

            #[inline]
            fn lookup(&self, key: u64) -> Option<u64> {
                self.get(&key).map(load)
            }

            #[inline]
            fn insert_in_place(&mut self, key: u64, value: u64) {
                self.$put(key, $wrap(value));
            }

            #[inline]
            fn remove_in_place(&mut self, key: u64) -> bool {
                self.$take(&key)$($is)*
            }

            bench_map!(@persistent $wrap, $($persistent)*);

            #[inline]
            fn fold_entries(&self) -> u64 {
                self.iter().fold(0, |acc, (k, v)| fold_step(acc, *k, load(v)))
            }
        }
    };
    (@persistent $wrap:expr, structural($update:ident, $without:ident)) => {
        #[inline]
        fn persistent_insert(&self, key: u64, value: u64) -> Self {
            self.$update(key, $wrap(value))
        }

        #[inline]
        fn persistent_remove(&self, key: u64) -> Self {
            self.$without(&key)
        }
    };
    (@persistent $wrap:expr, copy) => {
        #[inline]
        fn persistent_insert(&self, key: u64, value: u64) -> Self {
            let mut copy = self.clone();
            copy.insert_in_place(key, value);
            copy
        }

        #[inline]
        fn persistent_remove(&self, key: u64) -> Self {
            let mut copy = self.clone();
            copy.remove_in_place(key);
            copy
        }
    };
}

fn same(value: u64) -> u64 {
    value
}

/// A stored value as the `u64` it holds.
#[inline]
fn load(value: &impl std::borrow::Borrow<u64>) -> u64 {
    *value.borrow()
}

bench_map!(OursMap, Ours, hamt::HamtMap::with_hasher, len, insert, remove(.is_some()),
    same, persistent: structural(update, without));
bench_map!(OursArcMap, OursArc, hamt::HamtMap::with_hasher, len, insert, remove(.is_some()),
    std::sync::Arc::new, persistent: structural(update, without));
bench_map!(ImblMap, Imbl, imbl::GenericHashMap::with_hasher, len, insert, remove(.is_some()),
    same, persistent: structural(update, without));
bench_map!(ImMap, Im, im::HashMap::with_hasher, len, insert, remove(.is_some()),
    same, persistent: structural(update, without));
bench_map!(RpdsMap, Rpds, rpds::HashTrieMap::new_with_hasher_and_ptr_kind, size, insert_mut,
    remove_mut(), same, persistent: structural(insert, remove));
bench_map!(StdMap, Std, std::collections::HashMap::with_hasher, len, insert, remove(.is_some()),
    same, persistent: copy);
bench_map!(StdArcMap, StdArc, std::collections::HashMap::with_hasher, len, insert,
    remove(.is_some()), std::sync::Arc::new, persistent: copy);

/// One of the maps under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Contender {
    /// [`OursMap`].
    Ours,
    /// [`ImblMap`].
    Imbl,
    /// [`ImMap`].
    Im,
    /// [`RpdsMap`].
    Rpds,
    /// [`StdMap`].
    Std,
    /// [`StdArcMap`].
    StdArc,
    /// [`OursArcMap`].
    OursArc,
}

impl Contender {
    /// Every contender, in table order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::Ours,
        Self::Imbl,
        Self::Im,
        Self::Rpds,
        Self::Std,
        Self::StdArc,
        Self::OursArc,
    ];

    /// How many contenders there are.
    pub const COUNT: usize = 7;

    /// The persistent peers that "best peer" ratios compare against.
    pub const PEERS: [Self; 3] = [Self::Imbl, Self::Im, Self::Rpds];

    /// A short name, used in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ours => "hamt",
            Self::Imbl => "imbl",
            Self::Im => "im",
            Self::Rpds => "rpds",
            Self::Std => "std",
            Self::StdArc => "std_arc",
            Self::OursArc => "hamt_arc",
        }
    }

    /// A name with the variant, used in tables and plot legends.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ours => "hamt (ours)",
            Self::Imbl => "imbl (Arc)",
            Self::Im => "im (Arc)",
            Self::Rpds => "rpds (Sync)",
            Self::Std => "std HashMap (flat copy)",
            Self::StdArc => "std HashMap, Arc values (flat copy)",
            Self::OursArc => "hamt, Arc values (ours)",
        }
    }

    /// Whether a persistent update is structural (cheap). False for the `std` maps, whose
    /// persistent insert or remove is a full copy: O(N) per operation, O(N²) for a build.
    pub fn is_persistent(self) -> bool {
        !matches!(self, Self::Std | Self::StdArc)
    }

    /// The position of this contender in [`Contender::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Calls `visitor.visit::<M>()` with this contender's map type `M`: the one place that
    /// maps a runtime choice of contender to a monomorphised benchmark.
    pub fn visit<V: ContenderVisitor>(self, visitor: V) -> V::Output {
        match self {
            Self::Ours => visitor.visit::<OursMap>(),
            Self::Imbl => visitor.visit::<ImblMap>(),
            Self::Im => visitor.visit::<ImMap>(),
            Self::Rpds => visitor.visit::<RpdsMap>(),
            Self::Std => visitor.visit::<StdMap>(),
            Self::StdArc => visitor.visit::<StdArcMap>(),
            Self::OursArc => visitor.visit::<OursArcMap>(),
        }
    }
}

/// Code generic over the map type, run for a contender chosen at runtime by
/// [`Contender::visit`].
pub trait ContenderVisitor {
    /// What the visit returns.
    type Output;

    /// Runs with `M`, the map type of the visited contender.
    fn visit<M: BenchMap + 'static>(self) -> Self::Output;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySet;

    /// Every contender agrees with the others on every operation the benchmarks use.
    struct Conformance<'k>(&'k KeySet);

    impl ContenderVisitor for Conformance<'_> {
        type Output = ();

        fn visit<M: BenchMap + 'static>(self) {
            let keys = self.0;
            let map = M::build(Hasher::default(), &keys.present);
            assert_eq!(map.len(), keys.len());
            for &key in &keys.present {
                assert_eq!(map.lookup(key), Some(key), "{:?}", M::CONTENDER);
            }
            for &key in &keys.absent {
                assert_eq!(map.lookup(key), None);
            }
            let expected = keys.present.iter().fold(0, |acc, &k| fold_step(acc, k, k));
            assert_eq!(map.fold_entries(), expected);

            let grown = map.persistent_insert(keys.absent[0], 1);
            assert_eq!((grown.len(), map.len()), (keys.len() + 1, keys.len()));
            assert_eq!(map.lookup(keys.absent[0]), None);
            let shrunk = map.persistent_remove(keys.present[0]);
            assert_eq!(
                (shrunk.len(), map.lookup(keys.present[0])),
                (keys.len() - 1, Some(keys.present[0]))
            );

            let mut snapshot = map.clone();
            snapshot.insert_in_place(keys.absent[1], 2);
            assert_eq!(
                (snapshot.lookup(keys.absent[1]), map.lookup(keys.absent[1])),
                (Some(2), None)
            );

            let mut owned = map;
            for &key in &keys.present {
                assert!(owned.remove_in_place(key));
            }
            assert!(owned.is_empty());
        }
    }

    #[test]
    fn contenders_agree() {
        let keys = KeySet::new(2_000);
        for contender in Contender::ALL {
            contender.visit(Conformance(&keys));
        }
    }
}
