//! Hash builders that force the hard shapes: chosen hashes, few hash bits, deep tries and
//! collision nodes. For tests and fuzzers of this crate and of code built on it.
//!
//! ```
//! use hamt::HamtMap;
//! use hamt::testing::{HashKey, IdentityState};
//!
//! // Three keys with one hash: they end up in a collision node.
//! let mut map = HamtMap::with_hasher(IdentityState);
//! for id in 0..3 {
//!     map.insert(HashKey::new(0xABCD, id), id);
//! }
//! map.check_invariants();
//! assert_eq!(map.get(&HashKey::new(0xABCD, 2)), Some(&2));
//! ```

use std::hash::{BuildHasher, Hash, Hasher};

/// A key whose hash is chosen by the test: it hashes as its `hash` field alone, and two keys
/// are equal when both fields are. Use it with [`IdentityState`] to place keys exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HashKey {
    /// The hash the key reports (with [`IdentityState`], the trie hash exactly).
    pub hash: u32,
    /// Tells keys with the same hash apart.
    pub id: u64,
}

impl HashKey {
    /// A key with the given hash and identity.
    ///
    /// ```
    /// use std::hash::BuildHasher;
    /// use hamt::testing::{HashKey, IdentityState};
    ///
    /// let (a, b) = (HashKey::new(42, 0), HashKey::new(42, 1));
    /// // Same hash, different keys.
    /// assert_eq!(IdentityState.hash_one(a), 42);
    /// assert_eq!(IdentityState.hash_one(a), IdentityState.hash_one(b));
    /// assert_ne!(a, b);
    /// ```
    pub const fn new(hash: u32, id: u64) -> Self {
        HashKey { hash, id }
    }
}

impl Hash for HashKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u32(self.hash);
    }
}

/// A hash builder whose hashes are the integers written to it, unchanged (the last one wins).
///
/// With [`HashKey`], `u32` or `u64` keys, this puts every key exactly where the test wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdentityState;

/// The hasher of [`IdentityState`].
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = n as u64;
    }
}

impl BuildHasher for IdentityState {
    type Hasher = IdentityHasher;

    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

/// A deterministic hash builder that keeps only the low `bits` bits of a well-mixed hash.
///
/// `bits = 32` behaves like a good hash; `bits = 10` makes a trie two levels deep with
/// frequent collision nodes once there are more than a thousand keys; `bits = 0` puts every
/// key in one collision node at the bottom of the deepest possible trie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaskedState {
    bits: u32,
}

impl MaskedState {
    /// Keeps `bits` bits (at most 32) of each hash.
    ///
    /// ```
    /// use std::hash::BuildHasher;
    /// use hamt::testing::MaskedState;
    ///
    /// // Four bits of hash: at most 16 distinct hashes.
    /// let state = MaskedState::new(4);
    /// assert!((0..1000u32).all(|i| state.hash_one(i) < 16));
    /// // With no bits left, every key hashes alike (one collision node).
    /// let mut map = hamt::HamtMap::with_hasher(MaskedState::new(0));
    /// map.extend((0..5).map(|i| (i, i)));
    /// assert_eq!((map.len(), map.get(&3)), (5, Some(&3)));
    /// ```
    pub const fn new(bits: u32) -> Self {
        MaskedState {
            bits: if bits > 32 { 32 } else { bits },
        }
    }
}

/// The hasher of [`MaskedState`].
#[derive(Clone, Copy, Debug)]
pub struct MaskedHasher {
    state: u64,
    mask: u64,
}

impl Hasher for MaskedHasher {
    fn finish(&self) -> u64 {
        // splitmix64's finaliser: every input bit moves every output bit.
        let mut z = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The mask keeps the result within 32 bits, which the map's fold leaves as they are.
        z & self.mask
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.state = (self.state ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl BuildHasher for MaskedState {
    type Hasher = MaskedHasher;

    fn build_hasher(&self) -> MaskedHasher {
        let mask = if self.bits >= 32 {
            u64::from(u32::MAX)
        } else {
            (1u64 << self.bits) - 1
        };
        MaskedHasher {
            state: 0xcbf2_9ce4_8422_2325,
            mask,
        }
    }
}
