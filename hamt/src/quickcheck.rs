//! `quickcheck::Arbitrary` for [`HamtMap`] (feature `quickcheck`).

use std::hash::{BuildHasher, Hash};
use std::iter;
use std::rc::Rc;

use ::quickcheck::{Arbitrary, Gen};

use crate::map::HamtMap;

/// Generates a map from a `Vec` of entries, as quickcheck does for `HashMap` (so its size
/// follows the generator's `size`).
///
/// [`shrink`](Arbitrary::shrink) yields smaller maps, ordered so that quickcheck reaches a
/// small counterexample quickly:
///
/// 1. maps with entries removed: the empty map, then maps without one half, one quarter, …,
///    of the entries, then without each single entry;
/// 2. then, entry by entry, the map with that entry's key shrunk (skipping shrunk keys the
///    map already holds, which would merge two entries) and with its value shrunk.
///
/// Every candidate has fewer entries, or as many with one key or value replaced by one of its
/// own shrinks, so repeated shrinking ends.
impl<K, V, S> Arbitrary for HamtMap<K, V, S>
where
    K: Arbitrary + Hash + Eq,
    V: Arbitrary,
    S: BuildHasher + Default + Clone + 'static,
{
    fn arbitrary(g: &mut Gen) -> Self {
        let entries: Vec<(K, V)> = Arbitrary::arbitrary(g);
        entries.into_iter().collect()
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        // The iteration order is fixed for a given map, so shrinking is reproducible.
        let entries: Rc<[(K, V)]> = self.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Box::new(fewer_entries(self, &entries).chain(simpler_entries(self, &entries)))
    }
}

/// The map without chunks of its entries: all of them, then halves, quarters, … single ones.
fn fewer_entries<K, V, S>(
    map: &HamtMap<K, V, S>,
    entries: &Rc<[(K, V)]>,
) -> impl Iterator<Item = HamtMap<K, V, S>> + use<K, V, S>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
    S: BuildHasher + Clone + 'static,
{
    let len = entries.len();
    let chunk_sizes = iter::successors((len > 0).then_some(len), |&size| {
        (size > 1).then_some(size / 2)
    });
    let chunks = chunk_sizes.flat_map(move |size| {
        (0..len)
            .step_by(size)
            .map(move |start| start..(start + size).min(len))
    });
    let map = map.clone();
    let entries = Rc::clone(entries);
    chunks.map(move |chunk| {
        let mut smaller = map.clone();
        for (key, _) in &entries[chunk] {
            smaller.remove(key);
        }
        smaller
    })
}

/// The map with one entry's key, then its value, replaced by each of their shrinks.
fn simpler_entries<K, V, S>(
    map: &HamtMap<K, V, S>,
    entries: &Rc<[(K, V)]>,
) -> impl Iterator<Item = HamtMap<K, V, S>> + use<K, V, S>
where
    K: Arbitrary + Hash + Eq,
    V: Arbitrary,
    S: BuildHasher + Clone + 'static,
{
    let map = map.clone();
    let entries = Rc::clone(entries);
    (0..entries.len()).flat_map(move |index| {
        let (key, value) = entries[index].clone();
        let without = map.without(&key);
        let with_value = value.clone();
        let simpler_keys = key
            .shrink()
            .filter({
                let without = without.clone();
                move |shrunk| !without.contains_key(shrunk)
            })
            .map(move |shrunk| without.update(shrunk, with_value.clone()));
        let unchanged = map.clone();
        let simpler_values = value
            .shrink()
            .map(move |shrunk| unchanged.update(key.clone(), shrunk));
        simpler_keys.chain(simpler_values)
    })
}
