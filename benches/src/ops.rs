//! The benchmarked map operations, as [`Routine`]s over a prebuilt map.
//!
//! A [`Fixture`] holds one contender's map of N entries, built once per (contender, N) and
//! shared by all operations; [`Fixture::routine`] returns the routine of one operation.
//! Each routine times only the operation: inputs are built before the clock starts and the
//! results (maps) are dropped after it stops, unless dropping is part of the operation.

use std::hint::black_box;
use std::time::Duration;

use crate::clock::thread_cpu_time;
use crate::harness::Routine;
use crate::keys::KeySet;
use crate::maps::{BenchMap, Contender, ContenderVisitor, Hasher};

crate::case_ops! {
    /// A benchmarked map operation.
    pub enum Op {
        /// `get` of a present key, cycling through the N keys.
        LookupHit => ("lookup hit", "lookup_hit", "ns per operation",
            "`get` of a present key, cycling through the N keys."),
        /// `get` of an absent key, cycling through N absent keys.
        LookupMiss => ("lookup miss", "lookup_miss", "ns per operation",
            "`get` of an absent key, cycling through N other random keys."),
        /// Clone the map, insert one new key into the clone, drop the clone: one
        /// `copy_context()` + `set` in PEP 550 terms, whole lifecycle included.
        SnapshotSet => ("snapshot + set", "snapshot_set", "ns per operation",
            "`let mut s = m.clone(); s.insert(new_key, v); drop(s)`: one PEP 550 \
            `copy_context()` + `set`, including dropping the new version. For std this is \
            a full copy."),
        /// Build the map from empty with `m = m.update(k, k)`: the old version is alive during
        /// each insert and dropped right after. Per insert, so averaged over sizes 0..N.
        PersistentInsert => ("persistent insert", "persistent_insert", "ns per operation",
            "Build from empty with `m = m.update(k, k)` (old version alive during the \
            insert, dropped after); per insert, i.e. averaged over sizes 0..N. Not run \
            for std (a full copy per insert)."),
        /// From a clone of the N-entry map (so the first step must copy), `m = m.without(k)` for
        /// every key, each old version dropped after the next exists.
        PersistentRemove => ("persistent remove", "persistent_remove", "ns per operation",
            "From a clone of the N-entry map, `m = m.without(k)` for every key; per \
            remove. Not run for std."),
        /// Build the map from empty with `insert` on a uniquely owned map; per insert.
        InPlaceInsert => ("in-place insert", "inplace_insert", "ns per operation",
            "Build from empty with `insert` on a uniquely owned map; per insert."),
        /// Remove every key from a uniquely owned map built before the clock starts.
        InPlaceRemove => ("in-place remove", "inplace_remove", "ns per operation",
            "Remove every key from a uniquely owned map (built outside the timed region); \
            per remove."),
        /// Visit every entry; per entry.
        Iterate => ("iteration", "iter", "ns per entry",
            "Visit every entry of the N-entry map; per entry."),
    }
}

impl Op {
    /// Whether `contender` runs this operation: std has no structural persistent update, and
    /// the `Arc`-valued maps (std's and ours) are only measured for snapshot + set, where
    /// they compare as a context's map.
    pub fn applies_to(self, contender: Contender) -> bool {
        match self {
            _ if matches!(contender, Contender::StdArc | Contender::OursArc) => {
                self == Self::SnapshotSet
            }
            Self::PersistentInsert | Self::PersistentRemove => contender.is_persistent(),
            _ => true,
        }
    }

    /// Operations in one call of the routine on a map of `n` entries.
    pub fn ops_per_call(self, n: usize) -> u64 {
        match self {
            Self::LookupHit | Self::LookupMiss | Self::SnapshotSet => 1,
            _ => n.max(1) as u64,
        }
    }
}

/// One contender's map of N entries, built once and shared by every operation's routine.
#[derive(Debug)]
pub struct Fixture<'k, M> {
    keys: &'k KeySet,
    hasher: Hasher,
    base: M,
}

impl<'k, M: BenchMap> Fixture<'k, M> {
    /// Builds `key → key` for every present key, in place, with the key set's hasher (the
    /// seed every contender over these keys shares).
    pub fn new(keys: &'k KeySet) -> Self {
        let hasher = keys.hasher.clone();
        let base = M::build(hasher.clone(), &keys.present);
        Self { keys, hasher, base }
    }

    /// The routine of `op` on this map, or `None` when `op` does not apply to `M`.
    pub fn routine(&self, op: Op) -> Option<OpRoutine<'_, M>> {
        op.applies_to(M::CONTENDER).then_some(OpRoutine {
            op,
            keys: self.keys,
            hasher: &self.hasher,
            base: &self.base,
            cursor: 0,
        })
    }
}

/// A [`Fixture`] with its map type erased, so the contenders of one run can share a `Vec`.
pub trait AnyFixture {
    /// Whose map this is.
    fn contender(&self) -> Contender;

    /// The routine of `op` on this map, or `None` when `op` does not apply to it.
    fn routine(&self, op: Op) -> Option<Box<dyn Routine + '_>>;
}

impl<M: BenchMap> AnyFixture for Fixture<'_, M> {
    fn contender(&self) -> Contender {
        M::CONTENDER
    }

    fn routine(&self, op: Op) -> Option<Box<dyn Routine + '_>> {
        Fixture::routine(self, op).map(|routine| Box::new(routine) as Box<dyn Routine + '_>)
    }
}

/// Builds `contender`'s fixture over `keys`.
pub fn fixture(contender: Contender, keys: &KeySet) -> Box<dyn AnyFixture + '_> {
    struct Build<'k>(&'k KeySet);

    impl<'k> ContenderVisitor for Build<'k> {
        type Output = Box<dyn AnyFixture + 'k>;

        fn visit<M: BenchMap + 'static>(self) -> Self::Output {
            Box::new(Fixture::<M>::new(self.0))
        }
    }

    contender.visit(Build(keys))
}

/// The timed loop of one operation over one contender's map.
#[derive(Debug)]
pub struct OpRoutine<'f, M> {
    op: Op,
    keys: &'f KeySet,
    hasher: &'f Hasher,
    base: &'f M,
    /// Where the cycling operations (lookups, snapshot+set) resume in their key list.
    cursor: usize,
}

impl<M: BenchMap> Routine for OpRoutine<'_, M> {
    fn run(&mut self, calls: u64) -> Duration {
        match self.op {
            Op::LookupHit => self.lookups(&self.keys.present, calls),
            Op::LookupMiss => self.lookups(&self.keys.absent, calls),
            Op::SnapshotSet => self.snapshot_set(calls),
            Op::PersistentInsert => self.persistent_insert(calls),
            Op::PersistentRemove => self.persistent_remove(calls),
            Op::InPlaceInsert => self.in_place_insert(calls),
            Op::InPlaceRemove => self.in_place_remove(calls),
            Op::Iterate => self.iterate(calls),
        }
    }

    fn ops_per_call(&self) -> u64 {
        self.op.ops_per_call(self.keys.len())
    }
}

impl<M: BenchMap> OpRoutine<'_, M> {
    fn lookups(&mut self, keys: &[u64], calls: u64) -> Duration {
        let mut index = self.cursor % keys.len().max(1);
        let mut checksum = 0u64;
        let start = thread_cpu_time();
        for _ in 0..calls {
            if let Some(value) = self.base.lookup(black_box(keys[index])) {
                checksum = checksum.wrapping_add(value);
            } else {
                checksum = checksum.wrapping_add(1);
            }
            index += 1;
            if index == keys.len() {
                index = 0;
            }
        }
        let spent = thread_cpu_time().saturating_sub(start);
        black_box(checksum);
        self.cursor = index;
        spent
    }

    fn snapshot_set(&mut self, calls: u64) -> Duration {
        let keys = &self.keys.absent;
        let mut index = self.cursor % keys.len().max(1);
        let start = thread_cpu_time();
        for _ in 0..calls {
            let mut snapshot = self.base.clone();
            snapshot.insert_in_place(keys[index], keys[index]);
            drop(black_box(snapshot));
            index += 1;
            if index == keys.len() {
                index = 0;
            }
        }
        let spent = thread_cpu_time().saturating_sub(start);
        self.cursor = index;
        spent
    }

    /// Times `calls` runs of `step`, keeping what they return alive until the clock has
    /// stopped, so the drops of whole maps stay outside the timed region.
    fn timed_builds(calls: u64, mut step: impl FnMut() -> M) -> Duration {
        let mut finished = Vec::with_capacity(usize::try_from(calls).unwrap_or(usize::MAX));
        let start = thread_cpu_time();
        for _ in 0..calls {
            finished.push(step());
        }
        let spent = thread_cpu_time().saturating_sub(start);
        drop(black_box(finished));
        spent
    }

    fn persistent_insert(&mut self, calls: u64) -> Duration {
        let (keys, hasher) = (&self.keys.present, self.hasher);
        Self::timed_builds(calls, || {
            let mut map = M::with_hasher(hasher.clone());
            for &key in keys {
                map = map.persistent_insert(key, key);
            }
            map
        })
    }

    fn persistent_remove(&mut self, calls: u64) -> Duration {
        let (keys, base) = (&self.keys.present, self.base);
        Self::timed_builds(calls, || {
            let mut map = base.clone();
            for &key in keys {
                map = map.persistent_remove(key);
            }
            map
        })
    }

    fn in_place_insert(&mut self, calls: u64) -> Duration {
        let (keys, hasher) = (&self.keys.present, self.hasher);
        Self::timed_builds(calls, || {
            let mut map = M::with_hasher(hasher.clone());
            for &key in keys {
                map.insert_in_place(key, key);
            }
            map
        })
    }

    fn in_place_remove(&mut self, calls: u64) -> Duration {
        let keys = &self.keys.present;
        let mut maps: Vec<M> = (0..calls)
            .map(|_| M::build(self.hasher.clone(), keys))
            .collect();
        let mut removed = 0u64;
        let start = thread_cpu_time();
        for map in &mut maps {
            for &key in keys {
                removed += u64::from(map.remove_in_place(key));
            }
        }
        let spent = thread_cpu_time().saturating_sub(start);
        black_box(removed);
        drop(maps);
        spent
    }

    fn iterate(&mut self, calls: u64) -> Duration {
        let mut checksum = 0u64;
        let start = thread_cpu_time();
        for _ in 0..calls {
            checksum = checksum.wrapping_add(black_box(self.base).fold_entries());
        }
        let spent = thread_cpu_time().saturating_sub(start);
        black_box(checksum);
        spent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_routine_runs_for_every_contender() {
        let keys = KeySet::new(50);
        for contender in Contender::ALL {
            let fixture = fixture(contender, &keys);
            assert_eq!(fixture.contender(), contender);
            for op in Op::ALL {
                match fixture.routine(op) {
                    Some(mut routine) => {
                        routine.run(3);
                        assert_eq!(routine.ops_per_call(), op.ops_per_call(50));
                    }
                    None => assert!(!op.applies_to(contender)),
                }
            }
        }
    }
}
