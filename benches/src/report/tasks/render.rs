//! The tasks section as markdown.

use super::TaskResults;
use super::targets;
use crate::harness::Settings;
use crate::report::cases::{checks_table, op_table};
use crate::report::table::{format_ns, format_ratio};
use crate::task_ops::{LIVE_VARS, Op};

/// The section's markdown.
pub fn markdown(
    results: &TaskResults,
    settings: Settings,
    bars: &crate::report::targets::TaskTargets,
) -> String {
    let mut out = format!(
        "## Tasks: generators, iterators, futures, tokio tasks and fibers\n\n\
         What `exec-context` adds to each kind of work, against the same work without it \
         (the baseline rows) and, for futures and spawning, against tokio and opentelemetry. \
         {LIVE_VARS} context variables are set in the current context, and so in every \
         context the work starts from. Each figure is the median of {reps} interleaved \
         repetitions of ≈ {target} ms of thread CPU time; bold, † and allocs/op as in the \
         context section.\n\n",
        reps = settings.reps,
        target = settings.target.as_millis(),
    );
    out.push_str(&checks_table(&targets::evaluate(results, bars)));
    out.push_str("### Time\n\n");
    for op_results in &results.ops {
        out.push_str(&op_table(op_results, &notes(results, op_results.op)));
    }
    out
}

/// Said where the runtime-hook rows would be, in a build without the cfg.
const HOOKS_MISSING: &str = "The runtime-hooks rows (`exec_context::tokio::propagate`) need \
     `RUSTFLAGS=\"--cfg tokio_unstable\"`; this build has no such flag.";

/// Figures derived from several cases of `op`, shown under its table.
fn notes(results: &TaskResults, op: Op) -> Vec<String> {
    let mut notes = Vec::new();
    match op {
        Op::IterChain => {
            if let Some((ours, plain, extra)) =
                targets::over_baseline(results, op, "with_logical_context")
            {
                notes.push(format!(
                    "With / without: **{}×**; the logical contexts add {} ns per element, \
                     {} ns per element per stage (per wrapper step: the four stages after \
                     the filter see only the elements it keeps).",
                    format_ratio(ours / plain),
                    format_ns(extra),
                    format_ns(targets::per_wrapper_step(extra))
                ));
            }
        }
        Op::RuntimePoll | Op::RuntimePollGet => {
            if let Some((_, _, extra)) = targets::over_baseline(results, op, "hooks") {
                notes.push(format!(
                    "Runtime-level propagation adds {} ns per poll{}.",
                    format_ns(extra),
                    if op == Op::RuntimePollGet {
                        " that uses its context"
                    } else {
                        " that does not use its context"
                    }
                ));
            }
            if !crate::task_ops::runtime::HOOKS_AVAILABLE {
                notes.push(HOOKS_MISSING.to_owned());
            }
        }
        Op::SpawnJoin => {
            if let Some(extra) = targets::spawn_overhead(results) {
                notes.push(format!(
                    "Carrying the context adds {} ns per spawn + join.",
                    format_ns(extra)
                ));
            }
            if let Some((_, _, extra)) = targets::hooks_spawn_overhead(results) {
                notes.push(format!(
                    "Runtime-level propagation adds {} ns per spawn + join.",
                    format_ns(extra)
                ));
            }
            if !crate::task_ops::runtime::HOOKS_AVAILABLE {
                notes.push(HOOKS_MISSING.to_owned());
            }
        }
        _ => {}
    }
    notes
}
