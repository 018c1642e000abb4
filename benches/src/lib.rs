//! Benchmarks of the workspace crates against their peers, and the harness behind the
//! `report` binary.
//!
//! Two front ends share the code in this crate:
//!
//! * `cargo bench -p benches --bench hamt`: criterion benchmarks (`benches/hamt.rs`);
//! * `cargo run --release -p benches --bin report [-- --full]`: the project report, written
//!   to `target/report/` with its own small harness ([`harness`]) that interleaves the
//!   contenders' repetitions and times them in per-thread CPU time, because the machines this
//!   runs on are shared and noisy.
//!
//! Every contender is driven through one trait, [`maps::BenchMap`], so each operation is the
//! same code for every map: only the map type changes.
//!
//! Modules:
//!
//! * [`keys`]: deterministic key sets (a tiny SplitMix64, no `rand`);
//! * [`maps`]: the contenders and the [`maps::BenchMap`] trait;
//! * [`ops`]: the benchmarked operations, as [`harness::Routine`]s over a built map;
//! * [`clock`]: per-thread CPU time;
//! * [`harness`]: calibration and interleaved, repeated measurement;
//! * [`alloc`]: a counting global allocator for the memory measurements;
//! * [`memory`]: bytes per entry, bytes retained per snapshot, allocations per insert;
//! * [`sizes`]: the map sizes to run, from the command line or the environment;
//! * [`report`]: the report itself (markdown tables, SVG plots, the machine header).
#![deny(unsafe_code)]

pub mod alloc;
pub mod clock;
pub mod harness;
pub mod keys;
pub mod maps;
pub mod memory;
pub mod ops;
pub mod report;
pub mod sizes;
