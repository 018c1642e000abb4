//! The interpreter checks against the `[interpreters]` bars of `benches/targets.toml` (≥ 1 M
//! msgs/s, within 2× of the faster of crossbeam-channel and std mpsc, throughput against
//! crossbeam-channel), and the figures derived from several cases (ours against the faster
//! peer, the pool's overhead over the plain pool).

use super::{InterpreterResults, msgs_per_s};
use crate::cases::CaseOp as _;
use crate::cases::Contender::{Baseline, Crossbeam, Ours};
use crate::interpreter_ops::{LIVE, Op};
use crate::report::cases::{CaseResult, Check, Unit};
use crate::report::table::format_ns;
use crate::report::targets::InterpreterTargets;

/// Ours, a variant of `op`, and the fastest peer of that operation.
pub fn against_faster_peer<'a>(
    results: &'a InterpreterResults,
    op: Op,
    variant: &str,
) -> Option<(&'a CaseResult, &'a CaseResult)> {
    let ours = results.case(op, Ours, variant, LIVE)?;
    let peer = results.op(op)?.best_peer(LIVE)?;
    Some((ours, peer))
}

/// Ours minus the baseline of `op` (the plain pool, `Context::run`): (ours, baseline).
pub fn over_baseline<'a>(
    results: &'a InterpreterResults,
    op: Op,
    variant: &str,
) -> Option<(&'a CaseResult, &'a CaseResult)> {
    let ours = results.case(op, Ours, variant, LIVE)?;
    let baseline = results.op(op)?.baseline(LIVE)?;
    debug_assert_eq!(baseline.contender, Baseline);
    Some((ours, baseline))
}

/// `3.10 M msgs/s` for a stream case, `1234 ns` otherwise.
pub fn figure(op: Op, case: &CaseResult) -> String {
    if op.is_stream() {
        format!("{} msgs/s", format_rate(msgs_per_s(case)))
    } else {
        format!("{} ns", format_ns(case.ns()))
    }
}

/// A rate with three significant digits: `850k`, `3.10 M`, `12.4 M`.
pub fn format_rate(per_second: f64) -> String {
    match per_second {
        _ if !per_second.is_finite() => "–".to_owned(),
        _ if per_second < 1e6 => format!("{:.0}k", per_second / 1e3),
        _ if per_second < 1e7 => format!("{:.2} M", per_second / 1e6),
        _ => format!("{:.1} M", per_second / 1e6),
    }
}

fn ratio_check(results: &InterpreterResults, bar: f64, op: Op, variant: &str, what: &str) -> Check {
    let pair = against_faster_peer(results, op, variant);
    let check = Check::new(
        format!("{}: {what} / faster peer, within {bar}×", op.name()),
        pair.map(|(ours, peer)| ours.ns() / peer.ns()),
        bar,
        Unit::Ratio,
    );
    match pair {
        Some((ours, peer)) => check.detail(format!(
            "{} vs {} {}",
            figure(op, ours),
            peer.contender.name(),
            figure(op, peer)
        )),
        None => check,
    }
}

fn rate_check(results: &InterpreterResults, bar: f64, op: Op, variant: &str, what: &str) -> Check {
    let ours = results.case(op, Ours, variant, LIVE);
    let check = Check::new(
        format!("{}: {what} ≥ 1 M msgs/s (ns per message)", op.name()),
        ours.map(CaseResult::ns),
        bar,
        Unit::Ns,
    );
    match ours {
        Some(ours) => check.detail(figure(op, ours)),
        None => check,
    }
}

/// A Lua coroutine resume in its own logical context, over the same resume without one
/// (`contextvars.no_context`): what the coroutine's logical context adds, as for `Gen`
/// (issue 14: "a coroutine resume with and without its own logical context"). Lua's own
/// resume, without our `coroutine.resume` in front, is shown beside it.
fn resume_check(results: &InterpreterResults, bar: f64) -> Check {
    let ours = results.case(Op::LuaResume, Ours, "resume_own_context", LIVE);
    let no_context = results.case(Op::LuaResume, Ours, "resume_no_context", LIVE);
    let bare = results.op(Op::LuaResume).and_then(|op| op.baseline(LIVE));
    let check = Check::new(
        format!(
            "{}: own logical context over the same resume without one (`no_context`)",
            Op::LuaResume.name()
        ),
        ours.zip(no_context)
            .map(|(ours, no_context)| ours.ns() - no_context.ns()),
        bar,
        Unit::Ns,
    );
    match (ours, no_context, bare) {
        (Some(ours), Some(no_context), Some(bare)) => check.detail(format!(
            "{} ns own context, {} ns `no_context`; Lua's bare resume {} ns",
            format_ns(ours.ns()),
            format_ns(no_context.ns()),
            format_ns(bare.ns())
        )),
        _ => check,
    }
}

/// Every target of the interpreters section, checked against `results`.
pub fn evaluate(results: &InterpreterResults, bars: &InterpreterTargets) -> Vec<Check> {
    let (rate, peer) = (bars.max_ns_per_message, bars.max_over_faster_peer);
    vec![
        rate_check(results, rate, Op::StreamUnbounded, "queue", "`Queue`"),
        rate_check(results, rate, Op::StreamBounded, "queue_1024", "`Queue`"),
        ratio_check(results, peer, Op::StreamUnbounded, "queue", "`Queue`"),
        ratio_check(
            results,
            peer,
            Op::StreamUnbounded,
            "channel_nowait",
            "channel `send_buffered`",
        ),
        ratio_check(results, peer, Op::StreamBounded, "queue_1024", "`Queue`"),
        ratio_check(results, peer, Op::Rendezvous, "send", "channel `send`"),
        ratio_check(results, peer, Op::RoundTrip, "queue", "`Queue`"),
        throughput_check(
            results,
            bars.unbounded_throughput_over_crossbeam_min,
            (Op::StreamUnbounded, "queue", "unbounded"),
        ),
        throughput_check(
            results,
            bars.bounded_throughput_over_crossbeam_min,
            (Op::StreamBounded, "queue_1024", "bounded_1024"),
        ),
        resume_check(results, bars.max_resume_overhead_ns),
    ]
}

/// `Queue` throughput over crossbeam-channel's in the same stream, at least `bar`.
fn throughput_check(
    results: &InterpreterResults,
    bar: f64,
    (op, ours, theirs): (Op, &str, &str),
) -> Check {
    let ours = results.case(op, Ours, ours, LIVE);
    let peer = results.case(op, Crossbeam, theirs, LIVE);
    Check::at_least(
        format!("{}: `Queue` throughput / crossbeam-channel", op.name()),
        ours.zip(peer)
            .map(|(ours, peer)| msgs_per_s(ours) / msgs_per_s(peer)),
        bar,
        Unit::Ratio,
    )
    .detail_opt(
        ours.zip(peer)
            .map(|(ours, peer)| format!("{} vs {}", figure(op, ours), figure(op, peer))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_keep_three_digits() {
        assert_eq!(
            [850_400.0, 3_104_000.0, 12_440_000.0].map(format_rate),
            ["850k", "3.10 M", "12.4 M"]
        );
    }
}
