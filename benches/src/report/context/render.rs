//! The context section as markdown.

use super::ContextResults;
use super::targets;
use crate::cases::Contender::{Ours, Tokio};
use crate::context_ops::{LIVE_VARS, Op};
use crate::harness::Settings;
use crate::report::cases::{checks_table, op_table};
use crate::report::table::{format_ns, format_ratio};
use crate::report::targets::ContextTargets;

/// The section's markdown.
pub fn markdown(results: &ContextResults, settings: Settings, bars: &ContextTargets) -> String {
    let mut out = format!(
        "## Contexts: `contextvars` against `thread_local!`, tokio `task_local!`, opentelemetry \
         `Context` and `Arc`\n\n\
         {LIVE_VARS} values live in each contender's current context unless a table says \
         otherwise (ours: {LIVE_VARS} context variables set; opentelemetry: {LIVE_VARS} values \
         attached; tokio: one task-local in scope). Each figure is the median of {reps} \
         interleaved repetitions of ≈ {target} ms of thread CPU time. Every timed operation is \
         an `#[inline(never)]` function called through a function pointer, the same for every \
         contender, so nothing can be hoisted out of the loop; the first row of the first table \
         is that call alone. \"× best peer\" divides by the fastest of `thread_local!`, tokio, \
         opentelemetry and `Arc` for that operation; the fastest figure of each column is bold, \
         and † marks a figure whose slowest repetition took more than 1.5× its fastest. \
         allocs/op come from a counting allocator (runs of 1000 and 2000 calls, differenced).\n\n",
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

/// Figures derived from several cases of `op`, shown under its table.
fn notes(results: &ContextResults, op: Op) -> Vec<String> {
    let mut notes = Vec::new();
    match op {
        Op::GetHit => {
            if let Some(floor) = targets::call_floor(results) {
                let net: Vec<String> = results
                    .op(op)
                    .into_iter()
                    .flat_map(|op_results| &op_results.cases)
                    .filter(|case| case.variant != "call")
                    .map(|case| {
                        format!(
                            "{} `{}` {}",
                            case.contender.name(),
                            case.variant,
                            format_ns(case.ns() - floor)
                        )
                    })
                    .collect();
                notes.push(format!(
                    "Net of the {} ns call: {}.",
                    format_ns(floor),
                    net.join(", ")
                ));
            }
        }
        Op::GetAfterSwitch => {
            if let Some((with_get, alone, read)) = targets::get_after_switch(results) {
                let tokio = results
                    .ns(op, Tokio, "scope_with", LIVE_VARS)
                    .zip(results.ns(op, Tokio, "scope", LIVE_VARS))
                    .map(|(with_get, alone)| {
                        format!(
                            "; tokio's read in a fresh scope: {}",
                            format_ns(with_get - alone)
                        )
                    })
                    .unwrap_or_default();
                notes.push(format!(
                    "Ours, the read after a switch: {} − {} = **{} ns**{tokio}.",
                    format_ns(with_get),
                    format_ns(alone),
                    format_ns(read)
                ));
            }
            let fresh = results
                .ns(op, Ours, "fresh_run_get", LIVE_VARS)
                .zip(results.ns(op, Ours, "fresh_run", LIVE_VARS));
            if let Some((with_get, alone)) = fresh {
                notes.push(format!(
                    "Ours, the first read in a context new to the thread (a clone): {} − {} = \
                     **{} ns**.",
                    format_ns(with_get),
                    format_ns(alone),
                    format_ns(with_get - alone)
                ));
            }
        }
        Op::SetReset => {
            let pair = results.ns(op, Ours, "set_reset", LIVE_VARS);
            let set = results.ns(Op::Set, Ours, "set", LIVE_VARS);
            if let Some((pair, set)) = pair.zip(set) {
                notes.push(format!(
                    "(set + reset) / set = {} / {} = **{}**.",
                    format_ns(pair),
                    format_ns(set),
                    format_ratio(pair / set)
                ));
            }
        }
        Op::LcPushPop => {
            let each: Vec<String> = [("empty", "empty"), ("non_empty", "non-empty")]
                .iter()
                .filter_map(|&(variant, label)| {
                    Some(format!(
                        "{label} **{} ns**",
                        format_ns(targets::lc_each_way(results, variant)?)
                    ))
                })
                .collect();
            if !each.is_empty() {
                notes.push(format!("Each way (half the pair): {}.", each.join(", ")));
            }
        }
        _ => {}
    }
    notes
}
