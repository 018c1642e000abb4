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

mod common;

use benches::task_ops;
use criterion::{Criterion, criterion_group, criterion_main};

fn tasks(c: &mut Criterion) {
    common::bench_cases(c, "tasks", task_ops::cases(), false);
}

criterion_group!(benches, tasks);
criterion_main!(benches);
