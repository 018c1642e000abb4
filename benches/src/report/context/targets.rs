//! The context bars from `shared/ANCHORS.md` ("Contexts", 10 variables live), and the
//! figures derived from several cases (a read after a switch, one way of a push + pop).

use super::ContextResults;
use crate::cases::Contender::{Baseline, Ours, ThreadLocal};
use crate::context_ops::{LIVE_VARS, Op, SNAPSHOT_LIVE};
use crate::report::cases::{Check, Unit};
use crate::report::table::format_ns;

/// `get`, cache hit: absolute bar in ns (the call included).
pub const GET_HIT_NS: f64 = 2.0;
/// `get`, cache hit: bar relative to a `thread_local!` `Cell` read.
pub const GET_HIT_OVER_THREAD_LOCAL: f64 = 2.0;
/// `get` after a context switch, in ns.
pub const GET_AFTER_SWITCH_NS: f64 = 10.0;
/// `copy_context()` + drop, in ns, at every live count.
pub const SNAPSHOT_NS: f64 = 20.0;
/// "Flat from 1 to 1000 variables": slowest over fastest of the snapshot figures.
pub const SNAPSHOT_FLATNESS: f64 = 1.5;
/// `Context::run` enter + exit, in ns.
pub const RUN_NS: f64 = 5.0;
/// `set` into an unshared context, in ns.
pub const SET_NS: f64 = 60.0;
/// `set` after a snapshot, in ns.
pub const SET_AFTER_SNAPSHOT_NS: f64 = 150.0;
/// `set` + `reset` over `set`.
pub const SET_RESET_OVER_SET: f64 = 2.5;
/// A logical context push, or a pop, in ns.
pub const LC_EACH_WAY_NS: f64 = 5.0;

/// A read after a context switch: (`run` + `get`, `run`, their difference).
pub fn get_after_switch(results: &ContextResults) -> Option<(f64, f64, f64)> {
    let with_get = results.ns(Op::GetAfterSwitch, Ours, "run_get", LIVE_VARS)?;
    let alone = results.ns(Op::GetAfterSwitch, Ours, "run", LIVE_VARS)?;
    Some((with_get, alone, with_get - alone))
}

/// One way of a logical context push + pop of `variant` (`empty`, `non_empty`): half the pair.
pub fn lc_each_way(results: &ContextResults, variant: &str) -> Option<f64> {
    Some(results.ns(Op::LcPushPop, Ours, variant, LIVE_VARS)? / 2.0)
}

/// The call floor every read pays (see [`crate::context_ops::peers::floor`]).
pub fn call_floor(results: &ContextResults) -> Option<f64> {
    results.ns(Op::GetHit, Baseline, "call", LIVE_VARS)
}

fn ours_ns(results: &ContextResults, op: Op, variant: &str) -> Option<f64> {
    results.ns(op, Ours, variant, LIVE_VARS)
}

/// Every target of the context section, checked against `results`.
pub fn evaluate(results: &ContextResults) -> Vec<Check> {
    let floor = call_floor(results);
    let net = |value: Option<f64>| match (value, floor) {
        (Some(value), Some(floor)) => Some(format!("{} net of the call", format_ns(value - floor))),
        _ => None,
    };
    let get = ours_ns(results, Op::GetHit, "get");
    let with = ours_ns(results, Op::GetHit, "with");
    let thread_local = results.ns(Op::GetHit, ThreadLocal, "cell", LIVE_VARS);
    let mut checks = vec![
        with_detail(
            Check::new("get, cache hit: `VAR.get()`", get, GET_HIT_NS, Unit::Ns),
            net(get),
        ),
        with_detail(
            Check::new("get, cache hit: `VAR.with(..)`", with, GET_HIT_NS, Unit::Ns),
            net(with),
        ),
        Check::new(
            "get, cache hit: `VAR.get()` / `thread_local!` read",
            get.zip(thread_local).map(|(ours, tls)| ours / tls),
            GET_HIT_OVER_THREAD_LOCAL,
            Unit::Ratio,
        ),
    ];
    let switch = get_after_switch(results);
    checks.push(with_detail(
        Check::new(
            "get after a context switch (`run` + `get` − `run`)",
            switch.map(|(_, _, read)| read),
            GET_AFTER_SWITCH_NS,
            Unit::Ns,
        ),
        switch
            .map(|(with_get, alone, _)| format!("{} − {}", format_ns(with_get), format_ns(alone))),
    ));
    let snapshots: Vec<Option<f64>> = SNAPSHOT_LIVE
        .iter()
        .map(|&live| results.ns(Op::Snapshot, Ours, "copy_context", live))
        .collect();
    for (&live, &snapshot) in SNAPSHOT_LIVE.iter().zip(&snapshots) {
        checks.push(Check::new(
            format!("`copy_context()` + drop, {live} live"),
            snapshot,
            SNAPSHOT_NS,
            Unit::Ns,
        ));
    }
    let measured: Option<Vec<f64>> = snapshots.iter().copied().collect();
    checks.push(Check::new(
        "`copy_context()` flat from 1 to 1000 live (slowest / fastest)",
        measured.map(|figures| {
            let fastest = figures.iter().copied().fold(f64::INFINITY, f64::min);
            let slowest = figures.iter().copied().fold(0.0, f64::max);
            slowest / fastest
        }),
        SNAPSHOT_FLATNESS,
        Unit::Ratio,
    ));
    let run = results.case(Op::Run, Ours, "run", LIVE_VARS);
    checks.push(Check::new(
        "`ctx.run(|| ())` enter + exit",
        run.map(|case| case.ns()),
        RUN_NS,
        Unit::Ns,
    ));
    checks.push(Check::new(
        "`ctx.run(|| ())` allocates nothing (allocs/op)",
        run.and_then(|case| case.allocations),
        0.0,
        Unit::Allocations,
    ));
    let set = ours_ns(results, Op::Set, "set");
    checks.push(Check::new("set, context not shared", set, SET_NS, Unit::Ns));
    checks.push(Check::new(
        "set after a snapshot (snapshot + set + drop)",
        ours_ns(results, Op::SetAfterSnapshot, "snapshot_set"),
        SET_AFTER_SNAPSHOT_NS,
        Unit::Ns,
    ));
    let set_reset = ours_ns(results, Op::SetReset, "set_reset");
    checks.push(with_detail(
        Check::new(
            "set + reset(token) / set",
            set_reset.zip(set).map(|(pair, set)| pair / set),
            SET_RESET_OVER_SET,
            Unit::Ratio,
        ),
        set_reset
            .zip(set)
            .map(|(pair, set)| format!("{} / {}", format_ns(pair), format_ns(set))),
    ));
    for (variant, label) in [("empty", "empty"), ("non_empty", "non-empty")] {
        let each_way = lc_each_way(results, variant);
        checks.push(with_detail(
            Check::new(
                format!("{label} logical context: push or pop (half the pair)"),
                each_way,
                LC_EACH_WAY_NS,
                Unit::Ns,
            ),
            each_way.map(|half| format!("pair {}", format_ns(2.0 * half))),
        ));
    }
    checks.push(Check::new(
        "empty logical context push + pop allocates nothing (allocs/op)",
        results
            .case(Op::LcPushPop, Ours, "empty", LIVE_VARS)
            .and_then(|case| case.allocations),
        0.0,
        Unit::Allocations,
    ));
    checks
}

fn with_detail(check: Check, detail: Option<String>) -> Check {
    match detail {
        Some(detail) => check.detail(detail),
        None => check,
    }
}
