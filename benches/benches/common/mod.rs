//! What the criterion benchmarks of the case groups (context, tasks, interpreters) share.

use std::time::Duration;

use benches::cases::{Case, CaseOp};
use criterion::{Criterion, Throughput};

/// Benchmarks every case in the criterion group `name`, timing each the way the report does
/// (its routine's own clock, per operation). With `per_operation_throughput`, criterion's
/// throughput line ("elem/s") reads as operations (messages, round trips, jobs) per second.
pub fn bench_cases<O: CaseOp>(
    c: &mut Criterion,
    name: &str,
    cases: Vec<Case<O>>,
    per_operation_throughput: bool,
) {
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    if per_operation_throughput {
        group.throughput(Throughput::Elements(1));
    }
    for case in cases {
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
