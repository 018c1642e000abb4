//! Memory figures: live bytes per entry, bytes retained by one snapshot+set, and
//! allocations per persistent insert, all from the counting allocator ([`crate::alloc`]).
//!
//! These need [`crate::alloc::CountingAllocator`] as the global allocator (the `report`
//! binary installs it); without it every figure reads zero.

use std::collections::HashSet;

use crate::alloc::count;
use crate::keys::{KeySet, SplitMix64};
use crate::maps::{BenchMap, Contender, ContenderVisitor, Hasher};

/// How many repetitions each memory figure averages over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySettings {
    /// In-place builds (each with a new hasher seed) for the bytes per entry.
    pub builds: usize,
    /// Snapshot+set trials (each inserting a different new key) for the retained bytes.
    pub snapshot_trials: usize,
    /// Persistent builds (each with a new hasher seed) for the allocations per insert.
    pub persistent_builds: usize,
}

impl MemorySettings {
    /// Enough repetitions to smooth seed-to-seed variation without making large N slow.
    pub fn for_size(n: usize) -> Self {
        Self {
            builds: if n <= 10_000 {
                5
            } else if n <= 100_000 {
                3
            } else {
                1
            },
            snapshot_trials: if n <= 100_000 { 16 } else { 4 },
            persistent_builds: if n <= 1_000 { 5 } else { 1 },
        }
    }
}

/// One contender's memory figures at one N.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MemoryFigures {
    /// Live bytes after building N entries in place, divided by N.
    pub bytes_per_entry: f64,
    /// Live bytes a snapshot+set adds while the new version is alive (clone included: for
    /// std that is the whole copy).
    pub retained_per_snapshot: f64,
    /// Allocations made by one snapshot+set.
    pub allocations_per_snapshot: f64,
    /// Allocations per persistent insert, averaged over building 0..N; `None` for std.
    pub allocations_per_insert: Option<f64>,
    /// Bytes requested per persistent insert, averaged over building 0..N; `None` for std.
    pub bytes_per_insert: Option<f64>,
}

/// Measures `contender`'s [`MemoryFigures`] on `keys`.
pub fn measure(contender: Contender, keys: &KeySet, settings: MemorySettings) -> MemoryFigures {
    struct Probe<'k>(&'k KeySet, MemorySettings);

    impl ContenderVisitor for Probe<'_> {
        type Output = MemoryFigures;

        fn visit<M: BenchMap + 'static>(self) -> MemoryFigures {
            measure_map::<M>(self.0, self.1)
        }
    }

    contender.visit(Probe(keys, settings))
}

fn measure_map<M: BenchMap>(keys: &KeySet, settings: MemorySettings) -> MemoryFigures {
    let n = keys.len().max(1) as f64;

    let mut live = 0i64;
    let mut base = None;
    for _ in 0..settings.builds.max(1) {
        let hasher = Hasher::default();
        let (map, delta) = count(|| M::build(hasher, &keys.present));
        live += delta.live_bytes();
        base = Some(map);
    }
    let bytes_per_entry = live as f64 / settings.builds.max(1) as f64 / n;

    let base = base.unwrap_or_else(|| M::build(Hasher::default(), &keys.present));
    let trials = settings.snapshot_trials.clamp(1, keys.absent.len().max(1));
    let (mut retained, mut snapshot_allocations) = (0i64, 0u64);
    for &key in keys.absent.iter().cycle().take(trials) {
        let (snapshot, delta) = count(|| {
            let mut snapshot = base.clone();
            snapshot.insert_in_place(key, key);
            snapshot
        });
        drop(snapshot);
        retained += delta.live_bytes();
        snapshot_allocations += delta.allocations;
    }
    drop(base);

    let (allocations_per_insert, bytes_per_insert) = if M::CONTENDER.is_persistent() {
        let builds = settings.persistent_builds.max(1);
        let (mut allocations, mut bytes) = (0u64, 0u64);
        for _ in 0..builds {
            let hasher = Hasher::default();
            let (map, delta) = count(|| {
                let mut map = M::with_hasher(hasher);
                for &key in &keys.present {
                    map = map.persistent_insert(key, key);
                }
                map
            });
            drop(map);
            allocations += delta.allocations;
            bytes += delta.allocated_bytes;
        }
        let inserts = n * builds as f64;
        (
            Some(allocations as f64 / inserts),
            Some(bytes as f64 / inserts),
        )
    } else {
        (None, None)
    };

    MemoryFigures {
        bytes_per_entry,
        retained_per_snapshot: retained as f64 / trials as f64,
        allocations_per_snapshot: snapshot_allocations as f64 / trials as f64,
        allocations_per_insert,
        bytes_per_insert,
    }
}

/// Bits of hash consumed per trie level in the model of [`champ_allocations_per_insert`].
pub const BITS_PER_LEVEL: u32 = 5;

/// Deepest level the model follows: 32 hash bits give 6 full 5-bit levels and a 2-bit one.
const MODEL_LEVELS: u32 = 7;

/// The allocations per persistent insert of an ideal CHAMP map that allocates exactly one
/// node per copied or newly created node, averaged over building 0..`n` with uniformly
/// random 32-bit hashes (`trials` independent builds; more trials, less sampling noise).
///
/// Inserting key `k` copies the root and every sub-node on `k`'s path, and creates one new
/// node per further level at which `k` still shares its hash prefix with the one entry it
/// displaces. Both add up to: one allocation for the root, plus one for every level L ≥ 1 at
/// which some key already in the map shares `k`'s first L digits. Collisions of all 32 bits
/// are ignored (a few pairs at 1M).
pub fn champ_allocations_per_insert(n: usize, trials: usize) -> f64 {
    let trials = trials.max(1);
    let mut total = 0u64;
    for trial in 0..trials {
        let mut rng = SplitMix64::new(0xc4a3_9000 + trial as u64);
        let mut prefixes: Vec<HashSet<u32>> = vec![HashSet::new(); MODEL_LEVELS as usize];
        for _ in 0..n {
            let hash = (rng.next_u64() >> 32) as u32;
            let mut allocations = 1;
            for (level, seen) in (1..=MODEL_LEVELS).zip(&prefixes) {
                if seen.contains(&prefix(hash, level)) {
                    allocations += 1;
                } else {
                    break;
                }
            }
            for (level, seen) in (1..=MODEL_LEVELS).zip(&mut prefixes) {
                seen.insert(prefix(hash, level));
            }
            total += allocations;
        }
    }
    total as f64 / (n.max(1) * trials) as f64
}

/// The first `level` digits of `hash` (low bits first).
fn prefix(hash: u32, level: u32) -> u32 {
    let bits = level * BITS_PER_LEVEL;
    if bits >= 32 {
        hash
    } else {
        hash & ((1 << bits) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_matches_hand_counts() {
        // One key: only the root. Two keys: the second shares the first digit with
        // probability 1/32, costing one more node.
        assert_eq!(champ_allocations_per_insert(1, 10), 1.0);
        let two = champ_allocations_per_insert(2, 20_000);
        assert!((two - (1.0 + 1.0 / 64.0)).abs() < 0.01, "{two}");
        // A trie of 1k keys is about 3 levels deep.
        let thousand = champ_allocations_per_insert(1_000, 2);
        assert!((2.0..3.5).contains(&thousand), "{thousand}");
    }
}
