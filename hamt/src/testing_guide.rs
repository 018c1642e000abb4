//! Testing with our types: generating [`HamtMap`](crate::HamtMap)s in your own property tests
//! and fuzz targets.
//!
//! Code built on this crate can generate maps with the framework it already uses. Each
//! integration is a feature of `hamt`, off by default:
//!
//! | feature      | what you get                                                         |
//! |--------------|----------------------------------------------------------------------|
//! | `proptest`   | `hamt::proptest::hamt_map(keys, values, sizes)`, and `any::<HamtMap<K, V>>()` |
//! | `quickcheck` | `quickcheck::Arbitrary for HamtMap`, with shrinking                  |
//! | `arbitrary`  | `arbitrary::Arbitrary for HamtMap` and for [`HashKey`](crate::testing::HashKey), for cargo-fuzz |
//!
//! Enable them for your tests only, with the `testing` feature (this module, the shape-forcing
//! hash builders of [`crate::testing`], and `check_invariants`):
//!
//! ```toml
//! [dev-dependencies]
//! hamt = { version = "0.1", features = ["proptest", "testing"] }
//! ```
//!
//! Whatever the framework, end every case with
//! [`check_invariants`](crate::HamtMap::check_invariants): it panics, naming the broken rule,
//! if a map's trie is not in the one shape its keys allow. For the shapes that random keys
//! rarely make (collision nodes, deep paths), hash with the builders of [`crate::testing`].
//!
//! Code built on the `contextvars` crate can also check itself against the PEP 550 / 567
//! reference model in `contextvars::testing` (feature `testing` of that crate), which replays
//! generated scripts of context operations.
//!
//! # proptest
//!
//! `hamt::proptest::hamt_map` takes a key strategy, a value strategy and a size range. The
//! map has exactly as many entries as the size it drew (keys are drawn until that many are
//! distinct). When a case fails, shrinking removes one entry at a time, as long as the map
//! stays in the size range and the test still fails, then shrinks the remaining keys and
//! values; so the counterexample proptest reports has no entry it does not need.
//!
//! In your test files, use it inside `proptest! { #[test] fn … }` as usual. Here the property
//! runs in place:
//!
//! ```
//! # #[cfg(feature = "proptest")] {
//! use hamt::HamtMap;
//! use hamt::proptest::hamt_map;
//! use proptest::prelude::*;
//!
//! /// The code under test: keeps the entries whose value is even.
//! fn evens(map: &HamtMap<u32, u8>) -> HamtMap<u32, u8> {
//!     let mut evens = map.clone();
//!     evens.retain(|_, v| *v % 2 == 0);
//!     evens
//! }
//!
//! proptest!(|(map in hamt_map(any::<u32>(), any::<u8>(), 0..100))| {
//!     let entries = |map: &HamtMap<u32, u8>| map.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>();
//!     let before = entries(&map);
//!     let kept = evens(&map);
//!     kept.check_invariants();
//!     prop_assert!(kept.values().all(|v| v % 2 == 0));
//!     prop_assert_eq!(kept.len(), map.values().filter(|v| *v % 2 == 0).count());
//!     // The original is a different version: retain did not change it.
//!     prop_assert_eq!(entries(&map), before);
//! });
//! # }
//! ```
//!
//! `hamt::proptest::hamt_map_with_hasher` takes a hash builder too, such as
//! [`MaskedState`](crate::testing::MaskedState) to force collisions.
//!
//! # quickcheck
//!
//! `HamtMap<K, V, S>` is `quickcheck::Arbitrary` when `K` and `V` are (and `S` is a
//! `Default + Clone` hash builder). Its `shrink` yields the empty map first, then maps with
//! halves, quarters, … of the entries removed, then each entry removed on its own, and last
//! the map with one key or value shrunk.
//!
//! ```
//! # #[cfg(feature = "quickcheck")] {
//! use hamt::HamtMap;
//! use quickcheck::QuickCheck;
//!
//! fn union_keeps_both_sides(a: HamtMap<u8, u16>, b: HamtMap<u8, u16>) -> bool {
//!     let mut union = a.clone();
//!     union.extend(b.iter());
//!     union.check_invariants();
//!     a.keys().chain(b.keys()).all(|k| union.contains_key(k))
//!         && b.iter().all(|(k, v)| union.get(k) == Some(v))
//! }
//!
//! QuickCheck::new()
//!     .tests(50)
//!     .quickcheck(union_keeps_both_sides as fn(HamtMap<u8, u16>, HamtMap<u8, u16>) -> bool);
//! # }
//! ```
//!
//! # Fuzzing with `arbitrary`
//!
//! With the `arbitrary` feature a fuzz target can take maps straight from the fuzzer's bytes:
//! `HamtMap::<K, V, S>::arbitrary(&mut u)`, where `K` and `V` are `arbitrary::Arbitrary` and
//! `S` is a `Default` hash builder. The same bytes always give the same entries, so a crash
//! replays. Keying the map by [`HashKey`](crate::testing::HashKey) with
//! [`IdentityState`](crate::testing::IdentityState) lets the fuzzer choose each key's hash,
//! and so reach collision nodes and deep tries on purpose.
//!
//! A cargo-fuzz target is a file in `fuzz/fuzz_targets/` (with `hamt` in `fuzz/Cargo.toml`'s
//! dependencies, with the `arbitrary` and `testing` features) whose whole content is the
//! function below and `libfuzzer_sys::fuzz_target!(|data: &[u8]| map_against_std(data));`.
//! Run it with `cargo fuzz run map_against_std`. Here the function runs on inputs made up on
//! the spot:
//!
//! ```
//! # #[cfg(feature = "arbitrary")] {
//! use std::collections::HashMap;
//!
//! use arbitrary::{Arbitrary, Unstructured};
//! use hamt::HamtMap;
//! use hamt::testing::{HashKey, IdentityState};
//!
//! /// Builds a map from the input, then inserts and removes what the rest of the input
//! /// says, comparing with `std`'s map after every step and checking that the first
//! /// version never changes.
//! pub fn map_against_std(data: &[u8]) {
//!     let mut u = Unstructured::new(data);
//!     let Ok(start) = HamtMap::<HashKey, u8, IdentityState>::arbitrary(&mut u) else {
//!         return;
//!     };
//!     start.check_invariants();
//!     let start_model: HashMap<HashKey, u8> = start.iter().map(|(k, v)| (*k, *v)).collect();
//!     assert_eq!(start.len(), start_model.len());
//!
//!     let mut map = start.clone();
//!     let mut model = start_model.clone();
//!     let Ok(edits) = u.arbitrary_iter::<(HashKey, Option<u8>)>() else {
//!         return;
//!     };
//!     for edit in edits {
//!         let Ok((key, value)) = edit else { break };
//!         match value {
//!             Some(value) => assert_eq!(map.insert(key, value), model.insert(key, value)),
//!             None => assert_eq!(map.remove(&key), model.remove(&key)),
//!         }
//!         assert_eq!(map.len(), model.len());
//!     }
//!     map.check_invariants();
//!     assert!(model.iter().all(|(k, v)| map.get(k) == Some(v)));
//!     // Edits of a clone never show through in the version it was cloned from.
//!     start.check_invariants();
//!     assert!(start_model.iter().all(|(k, v)| start.get(k) == Some(v)));
//! }
//!
//! map_against_std(&[]);
//! // A stand-in for the fuzzer: pseudo-random inputs (xorshift).
//! let mut state = 0x2545_f491_4f6c_dd1d_u64;
//! for _ in 0..200 {
//!     let input: Vec<u8> = (0..96)
//!         .map(|_| {
//!             state ^= state << 13;
//!             state ^= state >> 7;
//!             state ^= state << 17;
//!             state.to_le_bytes()[0]
//!         })
//!         .collect();
//!     map_against_std(&input);
//! }
//! # }
//! ```
//!
//! The fuzzer's bytes feed the map in the order `arbitrary` consumes them, so starting the
//! target with the map, as above, lets a corpus of maps be reused across targets.
