//! Deterministic key sets.
//!
//! Keys come from SplitMix64 with a fixed seed. SplitMix64's output is a bijection of its
//! counter, so the first 2^64 outputs of one generator are pairwise distinct: taking the first
//! N outputs as the present keys and the next N as the misses gives N distinct keys and N
//! misses that are certainly absent, with no deduplication pass.

/// Seed of every key set, so every run and every contender sees the same keys.
pub const KEY_SEED: u64 = 0x5045_5035_3530_2021;

/// The SplitMix64 generator (Steele, Lea and Flood, 2014): a 64-bit counter advanced by an
/// odd constant, followed by a bijective mixing function.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose first output depends only on `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next pseudo-random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// N distinct random keys and N random keys that are not among them.
#[derive(Clone, Debug)]
pub struct KeySet {
    /// The keys stored in the map (values equal the keys).
    pub present: Vec<u64>,
    /// Keys never stored: lookups of these miss, and inserting one always adds an entry.
    pub absent: Vec<u64>,
    /// The hash builder of every contender's map over these keys: one random seed per key
    /// set, shared, so that every contender hashes the keys alike (each map's shape still
    /// depends on the seed, and on how the map uses the hash's bits).
    pub hasher: crate::maps::Hasher,
}

impl KeySet {
    /// The key set of size `n` from [`KEY_SEED`].
    pub fn new(n: usize) -> Self {
        Self::with_seed(n, KEY_SEED)
    }

    /// The key set of size `n` from `seed`.
    pub fn with_seed(n: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let present = (0..n).map(|_| rng.next_u64()).collect();
        let absent = (0..n).map(|_| rng.next_u64()).collect();
        Self {
            present,
            absent,
            hasher: crate::maps::Hasher::default(),
        }
    }

    /// The number of present keys, N.
    pub fn len(&self) -> usize {
        self.present.len()
    }

    /// Whether N is zero.
    pub fn is_empty(&self) -> bool {
        self.present.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn present_and_absent_keys_are_distinct() {
        let keys = KeySet::new(10_000);
        let all: HashSet<u64> = keys.present.iter().chain(&keys.absent).copied().collect();
        assert_eq!(all.len(), 20_000);
    }

    #[test]
    fn key_sets_are_reproducible() {
        assert_eq!(KeySet::new(100).present, KeySet::new(100).present);
        assert_ne!(KeySet::with_seed(100, 1).present, KeySet::new(100).present);
    }
}
