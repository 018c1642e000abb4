//! Criterion benchmarks of `hamt::HamtMap` against imbl, im, rpds and std's `HashMap`, every
//! contender in the same run and through the same code (`benches::maps::BenchMap`).
//!
//! ```text
//! cargo bench -p benches --bench hamt                       # N = 10 .. 100k
//! HAMT_BENCH_FULL=1 cargo bench -p benches --bench hamt     # adds N = 1M
//! HAMT_BENCH_SIZES=10,1k cargo bench -p benches --bench hamt -- --quick snapshot_set
//! ```
//!
//! Benchmark ids are `hamt/<operation>/<contender>/<N>`. Two departures from criterion's
//! defaults, so the figures read like the `report` binary's:
//!
//! * times are **per-thread CPU time** (the machines are shared; see `benches::clock`),
//!   returned through `iter_custom`;
//! * times are **per operation**: one criterion iteration is one call of the operation's
//!   routine (a whole build of N entries for the build and remove operations), and its time is
//!   divided by the operations in that call.

use std::time::Duration;

use benches::cases::CaseOp as _;
use benches::keys::KeySet;
use benches::maps::Contender;
use benches::ops::{self, AnyFixture, Op};
use benches::sizes;
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};

fn hamt(c: &mut Criterion) {
    let sizes =
        sizes::from_env().unwrap_or_else(|message| panic!("{}: {message}", sizes::SIZES_VAR));
    let key_sets: Vec<KeySet> = sizes.iter().map(|&n| KeySet::new(n)).collect();
    for op in Op::ALL {
        let mut group = c.benchmark_group(format!("hamt/{}", op.slug()));
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for keys in &key_sets {
            let n = keys.len();
            // A call that builds or walks a large map takes milliseconds: take few samples
            // of one size each rather than criterion's linear ramp of call counts.
            let heavy = op.ops_per_call(n) >= 10_000;
            group
                .sample_size(if heavy { 10 } else { 30 })
                .sampling_mode(if heavy {
                    SamplingMode::Flat
                } else {
                    SamplingMode::Auto
                });
            for contender in Contender::ALL
                .into_iter()
                .filter(|&contender| op.applies_to(contender))
            {
                // Criterion calls the closure once per sample: build the map on the first call
                // only, and only if the benchmark is selected at all.
                let mut fixture: Option<Box<dyn AnyFixture + '_>> = None;
                group.bench_function(BenchmarkId::new(contender.name(), n), |bencher| {
                    let fixture = fixture.get_or_insert_with(|| ops::fixture(contender, keys));
                    let Some(mut routine) = fixture.routine(op) else {
                        return;
                    };
                    let ops_per_call = u32::try_from(routine.ops_per_call()).unwrap_or(u32::MAX);
                    bencher.iter_custom(|calls| routine.run(calls) / ops_per_call);
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, hamt);
criterion_main!(benches);
