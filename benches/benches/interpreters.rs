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

use std::time::Duration;

use benches::interpreter_ops;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn interpreters(c: &mut Criterion) {
    let mut group = c.benchmark_group("interpreters");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
        // Times are per operation, so one element per "iteration" reads as operations (messages,
        // round trips, jobs) per second.
        .throughput(Throughput::Elements(1));
    for case in interpreter_ops::cases() {
        // Criterion calls the closure once per sample: build the routine on the first call
        // only, and only if the benchmark is selected.
        let mut routine = None;
        group.bench_function(case.id(), |bencher| {
            let routine = routine.get_or_insert_with(|| case.routine());
            let ops_per_call = u32::try_from(routine.ops_per_call()).unwrap_or(u32::MAX);
            bencher.iter_custom(|calls| routine.run(calls) / ops_per_call);
        });
    }
    group.finish();
}

criterion_group!(benches, interpreters);
criterion_main!(benches);
