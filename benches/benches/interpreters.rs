//! Criterion benchmarks of `exec_context::interpreters`: queues and channels against
//! `std::sync::mpsc` and crossbeam-channel, interpreter create + close, `exec` enter + exit,
//! and the interpreter pool against a plain pool and rayon — the same cases, through the same
//! functions, as the report's interpreters section (`benches::interpreter_ops`).
//!
//! ```text
//! cargo bench -p benches --bench interpreters
//! cargo bench -p benches --bench interpreters -- --quick stream_unbounded
//! ```
//!
//! Benchmark ids are `interpreters/<operation>/<contender>/<variant>/0`. Cases on two threads
//! (streams, round trips, pools) are timed in wall-clock time per message, round trip or job;
//! the others in per-thread CPU time per operation, as in the report (see `benches::clock`).
//! Criterion's throughput line ("elem/s") is operations per second: messages per second for
//! the streams.

mod common;

use benches::interpreter_ops;
use criterion::{Criterion, criterion_group, criterion_main};

fn interpreters(c: &mut Criterion) {
    common::bench_cases(c, "interpreters", interpreter_ops::cases(), true);
}

criterion_group!(benches, interpreters);
criterion_main!(benches);
