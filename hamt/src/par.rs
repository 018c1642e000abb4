//! Parallel iteration with rayon (feature `rayon`).

use rayon::prelude::*;

use crate::iter::Walk;
use crate::map::HamtMap;

impl<K: Send + Sync, V: Send + Sync, S> HamtMap<K, V, S> {
    /// A parallel iterator over the entries. Work is split by the root's buckets (up to 32
    /// subtrees), each walked sequentially without allocating.
    ///
    /// ```
    /// use rayon::prelude::*;
    ///
    /// let map: hamt::HamtMap<u64, u64> = (0..10_000).map(|i| (i, i)).collect();
    /// let sum: u64 = map.par_iter().map(|(_, v)| *v).sum();
    /// assert_eq!(sum, (0..10_000).sum());
    /// ```
    pub fn par_iter(&self) -> impl ParallelIterator<Item = (&K, &V)> {
        let slots = self.root.as_ref().map_or(&[][..], |root| &root.slice[..]);
        slots
            .par_iter()
            .flat_map_iter(|slot| Walk::new(std::slice::from_ref(slot)))
    }
}
