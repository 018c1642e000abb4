//! Criterion benchmarks of what `exec-context` adds to generators, iterator chains, futures,
//! tokio spawns and fibers, against the same work without it and against tokio and
//! opentelemetry: the same cases, through the same functions, as the report's tasks section
//! (`benches::task_ops`).
//!
//! ```text
//! cargo bench -p benches --bench tasks
//! cargo bench -p benches --bench tasks -- --quick poll
//! ```
//!
//! Benchmark ids are `tasks/<operation>/<contender>/<variant>/<live variables>`. Times are
//! per-thread CPU time per operation, as in the report (see `benches::clock`).

use std::time::Duration;

use benches::task_ops;
use criterion::{Criterion, criterion_group, criterion_main};

fn tasks(c: &mut Criterion) {
    let mut group = c.benchmark_group("tasks");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    for case in task_ops::cases() {
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

criterion_group!(benches, tasks);
criterion_main!(benches);
