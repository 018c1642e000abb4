//! Criterion benchmarks of `contextvars` against `thread_local!`, tokio `task_local!`,
//! opentelemetry `Context` and `Arc`: the same cases, through the same functions, as the
//! report's context section (`benches::context_ops`).
//!
//! ```text
//! cargo bench -p benches --bench context
//! cargo bench -p benches --bench context -- --quick get_hit
//! ```
//!
//! Benchmark ids are `context/<operation>/<contender>/<variant>/<live variables>`. Times are
//! per-thread CPU time per operation, as in the report (see `benches::clock`).

use std::time::Duration;

use benches::context_ops;
use criterion::{Criterion, criterion_group, criterion_main};

fn context(c: &mut Criterion) {
    let mut group = c.benchmark_group("context");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    for case in context_ops::cases() {
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

criterion_group!(benches, context);
criterion_main!(benches);
