//! Benchmarks of the workspace crates against their peers, and the harness behind the
//! `report` binary.
//!
//! Two front ends share the code in this crate:
//!
//! * `cargo bench -p benches --bench hamt|context|tasks|interpreters`: criterion benchmarks
//!   (`benches/*.rs`);
//! * `cargo run --release -p benches --bin report [-- --full] [-- --only context]`: the
//!   project report, written
//!   to `target/report/` with its own small harness ([`harness`]) that interleaves the
//!   contenders' repetitions and times them in per-thread CPU time, because the machines this
//!   runs on are shared and noisy.
//!
//! Every map is driven through one trait, [`maps::BenchMap`], so each operation is the
//! same code for every map: only the map type changes. Context systems do not share an API,
//! so the context and task benchmarks are [`cases::Case`]s instead: one loop
//! ([`cases::Repeat`]) calling one plain function per contender, inside that contender's
//! live context ([`live::Live`]).
//!
//! Modules:
//!
//! * [`keys`]: deterministic key sets (a tiny SplitMix64, no `rand`);
//! * [`maps`]: the contenders and the [`maps::BenchMap`] trait;
//! * [`ops`]: the benchmarked operations, as [`harness::Routine`]s over a built map;
//! * [`cases`]: the shape of the context and task benchmarks;
//! * [`live`]: what "10 variables live" means for each context contender;
//! * [`context_ops`]: the context operations (get, snapshot, run, set, …) of every contender;
//! * [`task_ops`]: generators, iterator chains, task wrappers, spawning, fibers;
//! * [`interpreter_ops`]: interpreter queues and channels against `std::sync::mpsc` and
//!   crossbeam-channel, create + close, exec, the interpreter pool against plain pools;
//! * [`clock`]: per-thread CPU time;
//! * [`harness`]: calibration and interleaved, repeated measurement;
//! * [`alloc`]: a counting global allocator for the memory measurements;
//! * [`memory`]: bytes per entry, bytes retained per snapshot, allocations per insert;
//! * [`sizes`]: the map sizes to run, from the command line or the environment;
//! * [`report`]: the report itself (markdown tables, SVG plots drawn with `plotters`, the
//!   machine header), checked against the bars of `benches/targets.toml`.
#![deny(unsafe_code)]

pub mod alloc;
pub mod cases;
pub mod clock;
pub mod context_ops;
pub mod harness;
pub mod interpreter_ops;
pub mod keys;
pub mod live;
pub mod maps;
pub mod memory;
pub mod ops;
pub mod report;
pub mod sizes;
pub mod task_ops;
