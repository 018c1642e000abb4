//! A persistent, structurally shared hash map: a CHAMP trie.
//!
//! [`HamtMap`] is a hash map whose `clone` is one reference count increment. Versions share
//! structure, so a snapshot is O(1) and an edit of a snapshot copies only the nodes on one
//! root-to-leaf path (at most 8, usually 2-4). It is the storage under the `contextvars`
//! crate's logical contexts, where maps are small (a handful of variables) and copied often.
//!
//! ```
//! use hamt::HamtMap;
//!
//! let mut config = HamtMap::new();
//! config.insert("threads", 4);
//! let snapshot = config.clone(); // O(1)
//! config.insert("threads", 8); // copies one path; the snapshot is untouched
//! assert_eq!(snapshot["threads"], 4);
//! assert_eq!(config["threads"], 8);
//!
//! // What changed between two versions, visiting only the nodes they do not share:
//! let changes: Vec<_> = snapshot.diff(&config).collect();
//! assert_eq!(changes.len(), 1);
//! ```
//!
//! [`diff`](HamtMap::diff) is a lazy iterator, and [`union`](HamtMap::union),
//! [`intersection`](HamtMap::intersection), [`difference`](HamtMap::difference) and
//! [`symmetric_difference`](HamtMap::symmetric_difference) treat the subtrees two versions
//! share as wholes in the same way, so their cost follows what the versions do not share.
//!
//! # Design
//!
//! The trie follows CHAMP (Steindorfer & Vinju, OOPSLA 2015):
//!
//! - **Compact nodes.** Each node is a single allocation: two 32-bit bitmaps (`data_map` for
//!   buckets holding an entry inline, `node_map` for buckets holding a child), then exactly as
//!   many slots as bits set, entries first. No per-entry boxes, and 32-slot arrays only for
//!   nodes with at least 28 buckets occupied: those are indexed by the hash directly (no rank),
//!   at a cost of at most four empty slots.
//! - **Canonical shape.** Removal inlines a sub-node left with a single entry into its parent,
//!   so a set of keys has exactly one shape. Equality and [`diff`](HamtMap::diff) rely on it
//!   to compare node by node and skip pointer-equal subtrees.
//! - **32 hash bits, 5 per level.** The 64-bit hash is folded to 32 bits, giving 7 bitmap
//!   levels (the last 2 bits wide) and then a collision node holding keys with equal hashes.
//!   Walks therefore need a stack of 8 and iteration never allocates. 32 bits keep the trie
//!   shallow; collisions past them (about one pair per 8 billion / N² keys) cost a short scan.
//! - **Reference-counted nodes without a weak count** ([`triomphe::Arc`]): `Send + Sync` when
//!   `K`, `V` and `S` are, and uniquely owned nodes are edited in place rather than copied.
//!   Building a fresh map with `insert` allocates only where a node grows.
//! - **No `unsafe` in this crate.** Node allocation, exact sizing and reference counting come
//!   from `triomphe`; moving entries out of uniquely owned nodes uses a transient vacant slot.
//!
//! # Panics in user code
//!
//! `Hash`, `Eq` and `Clone` of keys and values run only before a node is changed, or while a
//! fresh copy is being built. If they panic, the map and all of its versions are as they were,
//! and nothing is dropped twice. (One exception: [`HamtMap::retain`] visits every entry,
//! then removes the rejected ones one by one; a panic partway, there or in a removed key's
//! or value's `Drop`, leaves the map valid, with the changes `keep` made and some of the
//! rejected entries removed. A [`Diff`] resumed after a panic goes on past the entry it was comparing,
//! without reporting it.) When keys or values have a destructor, nothing leaks either:
//! whatever was cloned into the partial copy is dropped once. When neither has one (their
//! `Clone` panicking is rare then), the partial copy is not unwound: its memory leaks, and in
//! a dense node (the 32-slot form of a node with at least 28 occupied buckets, where entries
//! and children mix) so does one reference to each subtree already copied into it, with
//! those subtrees' memory. (A landing pad per copied slot would cost every such map on its
//! hot paths; building dense nodes through vacant slots instead, which leaks nothing, made
//! persistent inserts and snapshot + set 7-15% slower at N = 100 to 100k in the benchmark
//! report.)
//!
//! # Features
//!
//! - `serde`: `Serialize` / `Deserialize` as a map.
//! - `rayon`: [`HamtMap::par_iter`] splits the walk by the root's subtrees.
//! - `arbitrary`: `arbitrary::Arbitrary` for `HamtMap` (and for `testing::HashKey` when
//!   `testing` is on too), for fuzz targets.
//! - `proptest`: the `hamt::proptest::hamt_map` strategy (shrinking removes entries) and
//!   `proptest::arbitrary::Arbitrary` for `HamtMap`.
//! - `quickcheck`: `quickcheck::Arbitrary` for `HamtMap`, shrinking to smaller maps.
//!
//! - `testing`: test support, not API: the `testing` module (hash builders that force deep
//!   tries and collisions, keys with chosen hashes), `HamtMap::check_invariants`, and the
//!   `testing_guide` module, which shows the integrations above at work. It is also on in this
//!   crate's own tests and under `cfg(fuzzing)`. Turn it on in `[dev-dependencies]` only.
//!
//! All are off by default.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "arbitrary")]
mod arbitrary;
mod diff;
mod entry;
mod iter;
mod map;
mod node;
#[cfg(feature = "rayon")]
mod par;
#[cfg(feature = "proptest")]
pub mod proptest;
#[cfg(feature = "quickcheck")]
mod quickcheck;
#[cfg(feature = "serde")]
mod serde_impls;
mod set_ops;
#[cfg(any(test, fuzzing, feature = "testing"))]
pub mod testing;
#[cfg(any(test, fuzzing, feature = "testing"))]
pub mod testing_guide;

pub use diff::{Diff, DiffItem};
pub use entry::{Entry, OccupiedEntry, VacantEntry};
pub use iter::{IntoIter, Iter, IterMut, Keys, Values, ValuesMut};
pub use map::HamtMap;

#[cfg(test)]
mod tests;
