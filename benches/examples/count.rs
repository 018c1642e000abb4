//! Runs one operation of the report many times, for callgrind to count: the driver behind
//! `scripts/count`, which prints instructions per operation (stable where timings are not).
//!
//! `count <case> <iterations>` runs `<case>` with 10 variables live, as the report's context
//! group does. Cases: `set_after_snapshot` (ours: `copy_context(); VAR.set(v); drop(s)`),
//! `otel_set` (opentelemetry: `Context::current_with_value(v).attach()`, dropped), `snapshot`,
//! `set`, `run`, `get`. Each case is one `#[inline(never)]` function of
//! `benches::context_ops`, so `--toggle-collect` on its name counts it and nothing else.

use std::process::ExitCode;

use benches::context_ops::{ours, peers};
use benches::live::{Live, OtelLive, OursLive};

fn repeat<L: Live, S>(mut live: L, mut state: S, op: fn(&mut S) -> u64, iterations: u64) -> u64 {
    live.run(|| {
        (0..iterations)
            .map(|_| op(&mut state))
            .fold(0, u64::wrapping_add)
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(case), Some(Ok(iterations))) = (args.first(), args.get(1).map(|n| n.parse::<u64>()))
    else {
        eprintln!("usage: count <set_after_snapshot|otel_set|snapshot|set|run|get> <iterations>");
        return ExitCode::FAILURE;
    };
    const LIVE: usize = 10;
    let sum = match case.as_str() {
        "set_after_snapshot" => repeat(OursLive::new(LIVE), 1, ours::snapshot_set, iterations),
        "otel_set" => repeat(
            OtelLive::new(LIVE),
            1,
            peers::otel_with_value_attach,
            iterations,
        ),
        "snapshot" => repeat(OursLive::new(LIVE), (), ours::snapshot, iterations),
        "set" => repeat(OursLive::new(LIVE), 1, ours::set, iterations),
        "get" => repeat(OursLive::new(LIVE), (), ours::get, iterations),
        "run" => {
            let live = OursLive::new(LIVE);
            let mut context = live.context().clone();
            (0..iterations)
                .map(|_| ours::run(&mut context))
                .fold(0, u64::wrapping_add)
        }
        other => {
            eprintln!("count: unknown case {other:?}");
            return ExitCode::FAILURE;
        }
    };
    println!("{case}: {iterations} iterations (checksum {sum})");
    ExitCode::SUCCESS
}
