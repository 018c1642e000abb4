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

mod common;

use benches::context_ops;
use criterion::{Criterion, criterion_group, criterion_main};

fn context(c: &mut Criterion) {
    common::bench_cases(c, "context", context_ops::cases(), false);
}

criterion_group!(benches, context);
criterion_main!(benches);
