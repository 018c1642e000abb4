//! Runs one operation of the report many times, for callgrind to count: the driver behind
//! `scripts/count`, which prints instructions per operation (stable where timings are not).
//!
//! `count <case> <iterations>` runs `<case>` with 10 variables live, as the report's context
//! group does. Cases: `set_after_snapshot` (ours: `copy_context(); VAR.set(v); drop(s)`),
//! `otel_set` (opentelemetry: `Context::current_with_value(v).attach()`, dropped), `snapshot`,
//! `set`, `run`, `get` (each one `#[inline(never)]` function of `benches::context_ops`), and
//! the propagation round trip of one service request, `request_new_id` and `request_same_id`
//! (this file's [`request`]: set the request id, `Registry::inject` into a fresh `HeaderMap`,
//! `Registry::extract` on the other side, read the id in the context it gives; the tenant is
//! the second variable), so `--toggle-collect` on the function's name counts the case and
//! nothing else.

use std::process::ExitCode;

use benches::context_ops::{ours, peers};
use benches::live::{Live, OtelLive, OursLive};
use benches::report::service::{REQUEST_ID, TENANT, registry};
use exec_context::propagate::Registry;
use http::HeaderMap;

fn repeat<L: Live, S>(mut live: L, mut state: S, op: fn(&mut S) -> u64, iterations: u64) -> u64 {
    live.run(|| {
        (0..iterations)
            .map(|_| op(&mut state))
            .fold(0, u64::wrapping_add)
    })
}

/// One request's propagation: the caller sets its request id (a new one when `next` is set),
/// the client side writes the header, the server side decodes it into a fresh context, and
/// the handler reads the id there.
#[inline(never)]
fn request((registry, id, next): &mut (Registry, u64, bool)) -> u64 {
    if *next {
        *id += 1;
    }
    REQUEST_ID.var().set(*id);
    let mut headers = HeaderMap::new();
    registry.inject(&mut headers);
    let (context, problems) = registry.extract(&headers);
    assert!(!problems, "the header decodes");
    context.get(REQUEST_ID.var()).unwrap_or(0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(case), Some(Ok(iterations))) = (args.first(), args.get(1).map(|n| n.parse::<u64>()))
    else {
        eprintln!(
            "usage: count <set_after_snapshot|otel_set|snapshot|set|run|get|request_new_id|request_same_id> <iterations>"
        );
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
        "request_new_id" | "request_same_id" => {
            TENANT.var().set("acme".to_owned());
            let state = (registry(), 1, case == "request_new_id");
            repeat(benches::live::NoContext, state, request, iterations)
        }
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
