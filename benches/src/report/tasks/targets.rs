//! The task checks against the `[tasks]` bars of `benches/targets.toml` (per-poll wrapper,
//! generator resume and its logical context, iterator stages, runtime hooks), with the
//! overheads derived from the cases.

use super::TaskResults;
use crate::cases::Contender::{Baseline, Ours, Tokio};
use crate::report::cases::{Check, Unit};
use crate::report::table::format_ns;
use crate::report::targets::TaskTargets;
use crate::task_ops::{LIVE_VARS, Op};

/// The extra time of the iterator chain per source element, per wrapper step (see
/// [`crate::task_ops::iters::wrapper_steps_per_element`]: the filter's later stages see
/// fewer elements, so this is not the extra time divided by the five stages).
pub fn per_wrapper_step(extra_per_element: f64) -> f64 {
    extra_per_element / crate::task_ops::iters::wrapper_steps_per_element()
}

/// Ours minus the baseline for `op`, per operation: (ours, baseline, difference).
pub fn over_baseline(results: &TaskResults, op: Op, ours_variant: &str) -> Option<(f64, f64, f64)> {
    let ours = results.ns(op, Ours, ours_variant, LIVE_VARS)?;
    let baseline = results.op(op)?.baseline(LIVE_VARS)?.ns();
    Some((ours, baseline, ours - baseline))
}

/// `exec_context::tokio::spawn` minus `tokio::spawn`, per spawn + join.
pub fn spawn_overhead(results: &TaskResults) -> Option<f64> {
    let ours = results.ns(Op::SpawnJoin, Ours, "exec_context_spawn", LIVE_VARS)?;
    let tokio = results.ns(Op::SpawnJoin, Tokio, "tokio_spawn", LIVE_VARS)?;
    Some(ours - tokio)
}

/// Plain `tokio::spawn` on a `propagate` runtime minus `tokio::spawn` on a plain one, both
/// through the same loop (`SpawnJoin`).
pub fn hooks_spawn_overhead(results: &TaskResults) -> Option<(f64, f64, f64)> {
    let hooks = results.ns(Op::SpawnJoin, Ours, "hooks", LIVE_VARS)?;
    let plain = results.ns(Op::SpawnJoin, Tokio, "tokio_spawn", LIVE_VARS)?;
    Some((hooks, plain, hooks - plain))
}

fn difference_detail(figures: Option<(f64, f64, f64)>) -> Option<String> {
    figures.map(|(ours, baseline, _)| format!("{} − {}", format_ns(ours), format_ns(baseline)))
}

/// A check of the difference in `figures` (ours, baseline, difference) against `bar`, in ns,
/// with both figures as its detail.
fn difference_check(name: &str, figures: Option<(f64, f64, f64)>, bar: f64) -> Check {
    Check::new(name, figures.map(|figures| figures.2), bar, Unit::Ns)
        .detail_opt(difference_detail(figures))
}

/// Why the runtime-hook rows are missing from a build without the cfg.
fn needs_unstable() -> Option<String> {
    (!crate::task_ops::runtime::HOOKS_AVAILABLE)
        .then(|| "needs `RUSTFLAGS=\"--cfg tokio_unstable\"`".to_owned())
}

/// Every target of the tasks section, checked against `results`.
pub fn evaluate(results: &TaskResults, bars: &TaskTargets) -> Vec<Check> {
    let empty = over_baseline(results, Op::GenResume, "empty_lc");
    let non_empty = over_baseline(results, Op::GenResume, "non_empty_lc");
    let chain = over_baseline(results, Op::IterChain, "with_logical_context");
    let poll = over_baseline(results, Op::Poll, "in_current_context");
    // The same wrapper on a poll that reads a variable, which moves the context in and out
    // (one that uses none moves nothing): on a runtime, a `yield_now` per poll.
    let poll_get = over_baseline(results, Op::RuntimePollGet, "in_current_context");
    let hooks_poll = over_baseline(results, Op::RuntimePoll, "hooks");
    let hooks_spawn = hooks_spawn_overhead(results);
    let allocations = |op: Op, contender, variant: &str| {
        results
            .case(op, contender, variant, LIVE_VARS)
            .and_then(|case| case.allocations)
    };
    let resume_extra_allocations = allocations(Op::GenResume, Ours, "empty_lc")
        .zip(allocations(Op::GenResume, Baseline, "no_lc"))
        .map(|(ours, baseline)| ours - baseline);
    let resume = results.case(Op::GenResume, Ours, "empty_lc", LIVE_VARS);
    let crate_peer = results
        .op(Op::GenResume)
        .and_then(|op| op.best_peer(LIVE_VARS));
    let poll_check = |bar, whose: &str| {
        difference_check(
            &format!("task poll: `in_current_context` over the bare future ({whose})"),
            poll,
            bar,
        )
    };
    vec![
        Check::new(
            "generator resume: `Gen::new` / the fastest generator crate",
            resume
                .zip(crate_peer)
                .map(|(ours, peer)| ours.ns() / peer.ns()),
            bars.resume_over_fastest_generator_crate,
            Unit::Ratio,
        )
        .detail_opt(resume.zip(crate_peer).map(|(ours, peer)| {
            format!(
                "{} / {} `{}` {} ns",
                format_ns(ours.ns()),
                peer.contender.name(),
                peer.variant,
                format_ns(peer.ns())
            )
        })),
        difference_check(
            "generator resume: empty logical context overhead",
            empty,
            bars.resume_empty_lc_ns,
        ),
        difference_check(
            "generator resume: non-empty logical context overhead (push + pop)",
            non_empty,
            bars.resume_non_empty_lc_ns,
        ),
        Check::new(
            "generator resume: allocations added by the empty logical context (per resume)",
            resume_extra_allocations,
            0.0,
            Unit::Allocations,
        ),
        Check::new(
            "iterator chain: `.with_logical_context()` on 5 stages / plain (project bar: PEP 550's 1-2%)",
            chain.map(|(ours, plain, _)| ours / plain),
            bars.chain_ratio,
            Unit::Ratio,
        )
        .detail_opt(chain.map(|(_, _, extra)| {
            format!(
                "+{} ns per element per stage (per wrapper step)",
                format_ns(per_wrapper_step(extra))
            )
        })),
        Check::new(
            "iterator chain: `.with_logical_context()`, extra ns per element per stage (per wrapper step)",
            chain.map(|(_, _, extra)| per_wrapper_step(extra)),
            bars.chain_stage_ns,
            Unit::Ns,
        )
        .detail_opt(difference_detail(chain)),
        poll_check(bars.poll_overhead_ns, "project bar"),
        poll_check(bars.poll_overhead_strict_ns, "issue 13's bar"),
        difference_check(
            "tokio task poll with a `get`: `in_current_context` over the bare task (issue 13's bar)",
            poll_get,
            bars.poll_overhead_strict_ns,
        ),
        difference_check(
            "tokio task poll: runtime hooks (`propagate`) over the plain task",
            hooks_poll,
            bars.hooks_poll_overhead_ns,
        )
        .unavailable(needs_unstable()),
        difference_check(
            "tokio spawn + join: runtime hooks (`propagate`) over `tokio::spawn`",
            hooks_spawn,
            bars.hooks_spawn_overhead_ns,
        )
        .unavailable(needs_unstable()),
        Check::new(
            "task poll: `in_current_context` allocates nothing per poll",
            allocations(Op::Poll, Ours, "in_current_context"),
            0.0,
            Unit::Allocations,
        ),
    ]
}
