//! `arbitrary::Arbitrary` for [`HamtMap`] and, when the test support is on (feature
//! `testing`), for `testing::HashKey` (feature `arbitrary`): what a cargo-fuzz target needs to
//! build maps from the fuzzer's bytes.
//!
//! The testing guide (`hamt::testing_guide`, feature `testing`) has a complete fuzz target.

use std::hash::{BuildHasher, Hash};

use ::arbitrary::{Arbitrary, Result, Unstructured};

use crate::map::HamtMap;
#[cfg(any(test, fuzzing, feature = "testing"))]
use crate::testing::HashKey;

/// Entries are drawn one after another, as for `std::collections::HashMap`: an entry whose
/// key was drawn before replaces the earlier value. The same bytes give the same entries, so
/// maps built from one input are equal (their hash builders may differ).
impl<'a, K, V, S> Arbitrary<'a> for HamtMap<K, V, S>
where
    K: Arbitrary<'a> + Hash + Eq + Clone,
    V: Arbitrary<'a> + Clone,
    S: BuildHasher + Default,
{
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        u.arbitrary_iter()?.collect()
    }

    fn arbitrary_take_rest(u: Unstructured<'a>) -> Result<Self> {
        u.arbitrary_take_rest_iter()?.collect()
    }

    #[inline]
    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (0, None)
    }
}

/// Both fields drawn in full. With [`IdentityState`](crate::testing::IdentityState) the
/// fuzzer chooses every key's place in the trie, so it can steer towards collision nodes and
/// deep paths by repeating or sharing hash bits.
#[cfg(any(test, fuzzing, feature = "testing"))]
impl<'a> Arbitrary<'a> for HashKey {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(HashKey::new(u.arbitrary()?, u.arbitrary()?))
    }

    #[inline]
    fn size_hint(depth: usize) -> (usize, Option<usize>) {
        ::arbitrary::size_hint::and(u32::size_hint(depth), u64::size_hint(depth))
    }
}
