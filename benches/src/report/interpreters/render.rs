//! The interpreters section as markdown: the targets, a summary of ours against the faster
//! peer and the baseline (the shape of the README's tables), then one table per operation.

use super::targets::{self, figure, format_rate};
use super::{InterpreterResults, msgs_per_s};
use crate::cases::{CaseOp, Contender};
use crate::harness::Settings;
use crate::interpreter_ops::{LIVE, Op, POOL_BATCH, pools::WORKERS};
use crate::report::cases::{CaseResult, OpResults, checks_table, format_allocations, op_table};
use crate::report::table::{Table, format_ns, format_ratio};

/// The section's markdown.
pub fn markdown(
    results: &InterpreterResults,
    settings: Settings,
    bars: &crate::report::targets::InterpreterTargets,
) -> String {
    let mut out = format!(
        "## Interpreters: queues and channels against `std::sync::mpsc` and crossbeam-channel, \
         exec, the interpreter pool\n\n\
         Messages are `u64`s (ours carries them as `Shareable::Int`). Cases on two threads — \
         streams, round trips, pools — are timed in wall-clock time, since the receiving side \
         sleeps while it waits; their \"CPU\" column is the CPU time all their threads spent \
         (both threads for queues and channels, the whole process for pools of {WORKERS} \
         workers), which also shows who spins while waiting. Create + close and exec run on one \
         thread and are timed in thread CPU time. Each figure is the median of {reps} \
         interleaved repetitions of ≈ {target} ms; bold is the fastest of its table, † marks \
         a figure whose slowest repetition took more than 1.5× its fastest, allocs/op count \
         every thread's allocations. On a machine of two shared cores the wall-clock figures \
         move more between runs than the CPU ones.\n\n",
        reps = settings.reps,
        target = settings.target.as_millis(),
    );
    out.push_str(&checks_table(&targets::evaluate(results, bars)));
    out.push_str(&summary(results));
    out.push_str("### Time\n\n");
    for op_results in &results.ops {
        if op_results.op.is_threaded() {
            out.push_str(&threaded_table(op_results));
        } else {
            out.push_str(&op_table(op_results, &notes(results, op_results.op)));
        }
    }
    out
}

/// The rows of the summary: (operation, our variant, what it is).
const SUMMARY: [(Op, &str, &str); 15] = [
    (Op::StreamUnbounded, "queue", "`Queue` stream, unbounded"),
    (
        Op::StreamUnbounded,
        "channel_nowait",
        "channel `send_buffered` stream",
    ),
    (
        Op::StreamBounded,
        "queue_1024",
        "`Queue` stream, maxsize 1024",
    ),
    (Op::Rendezvous, "send", "channel `send` (rendezvous)"),
    (Op::RoundTrip, "queue", "`Queue` round trip"),
    (Op::CreateClose, "create_close", "`create()` + `close()`"),
    (
        Op::CreateClose,
        "create_close_100_queues",
        "`create()` + `close()`, 100 queues alive",
    ),
    (Op::Exec, "exec", "`exec(|| ())` enter + exit"),
    (Op::Exec, "call", "`call(|| 1)` enter + exit"),
    (
        Op::PoolSubmitWait,
        "interpreter_pool",
        "pool job, submit + wait (ns per job)",
    ),
    (
        Op::PoolBatch,
        "interpreter_pool",
        "pool job, batches of 32 (ns per job)",
    ),
    (Op::LuaExec, "lua_exec", "Lua `exec` of a one-line snippet"),
    (
        Op::LuaResume,
        "resume_no_context",
        "Lua coroutine resume, `no_context`",
    ),
    (
        Op::LuaResume,
        "resume_own_context",
        "Lua coroutine resume, own logical context",
    ),
    (
        Op::LuaResume,
        "resume_own_context_get",
        "Lua coroutine resume reading a variable, own logical context",
    ),
];

/// Ours against the faster peer and against the baseline, one row per measure.
fn summary(results: &InterpreterResults) -> String {
    let mut table = Table::new([
        "measure",
        "ours",
        "faster peer",
        "ours / peer",
        "baseline",
        "ours / baseline",
    ]);
    table.left_columns(1);
    let mut rows = 0;
    for (op, variant, label) in SUMMARY {
        let Some(ours) = results.case(op, Contender::Ours, variant, LIVE) else {
            continue;
        };
        let op_results = results.op(op);
        let peer = op_results.and_then(|op_results| op_results.best_peer(LIVE));
        let baseline = op_results.and_then(|op_results| op_results.baseline(LIVE));
        let dash = || "–".to_owned();
        table.row([
            label.to_owned(),
            figure(op, ours),
            peer.map_or_else(dash, |peer| {
                format!("{} {}", peer.contender.name(), figure(op, peer))
            }),
            peer.map_or_else(dash, |peer| format_ratio(ours.ns() / peer.ns())),
            baseline.map_or_else(dash, |baseline| format!("{} ns", format_ns(baseline.ns()))),
            baseline.map_or_else(dash, |baseline| {
                let difference = ours.ns() - baseline.ns();
                format!(
                    "{} ({}{} ns)",
                    format_ratio(ours.ns() / baseline.ns()),
                    if difference < 0.0 { "−" } else { "+" },
                    format_ns(difference.abs())
                )
            }),
        ]);
        rows += 1;
    }
    if rows == 0 {
        return String::new();
    }
    format!(
        "### Summary\n\nOurs against the faster of `std::sync::mpsc` and crossbeam-channel (rayon \
         for the pool), and against the same work without interpreters (`Context::run` for \
         exec, a plain pool of the same design for the pool). Streams in messages per second \
         (wall clock), the rest in ns; ratios are of times, so below 1 is faster.\n\n{}\n{}",
        table.render(),
        crate::report::cpu_line()
    )
}

/// Notes under the single-threaded tables.
fn notes(results: &InterpreterResults, op: Op) -> Vec<String> {
    match op {
        Op::CreateClose => {
            let alone = results.ns(op, Contender::Ours, "create_close", LIVE);
            let with_queues = results.ns(op, Contender::Ours, "create_close_100_queues", LIVE);
            match (alone, with_queues) {
                (Some(alone), Some(with_queues)) => vec![format!(
                    "Each live queue or channel adds {} ns to a close.",
                    format_ns((with_queues - alone) / crate::interpreter_ops::LIVE_QUEUES as f64)
                )],
                _ => Vec::new(),
            }
        }
        Op::LuaResume => {
            let ns = |variant| results.ns(op, Contender::Ours, variant, LIVE);
            let mut notes = Vec::new();
            if let (Some(own), Some(shared)) = (ns("resume_own_context"), ns("resume_no_context")) {
                notes.push(format!(
                    "The coroutine's own logical context adds {} ns to our resume (it is \
                     entered only when a variable is used); the rest of the difference from \
                     the bare resume is our Lua-side `coroutine.resume` recording the \
                     resumer in a weak table.",
                    format_ns(own - shared)
                ));
            }
            if let (Some(own), Some(shared)) =
                (ns("resume_own_context_get"), ns("resume_no_context_get"))
            {
                notes.push(format!(
                    "With a variable read after each yield, entering the coroutine's logical \
                     context adds {} ns per resume.",
                    format_ns(own - shared)
                ));
            }
            notes
        }
        _ => Vec::new(),
    }
}

/// `ns` formatted, bold if it is the table's fastest, with † if noisy.
fn wall_cell(case: &CaseResult, fastest: f64) -> String {
    let shown = format!(
        "{}{}",
        format_ns(case.ns()),
        if case.noisy() { "†" } else { "" }
    );
    if case.ns() <= fastest {
        format!("**{shown}**")
    } else {
        shown
    }
}

/// One two-thread operation: wall and CPU time, messages per second for streams, the ratio
/// to the faster peer and the difference from the baseline.
fn threaded_table(results: &OpResults<Op>) -> String {
    let op = results.op;
    let peer = results.best_peer(LIVE);
    let baseline = results.baseline(LIVE);
    let any_allocations = results.cases.iter().any(|case| case.allocations.is_some());
    let mut header = vec!["contender", "timed code"];
    if op.is_stream() {
        header.push("msgs/s");
    }
    header.extend(["wall ns/op", "CPU ns/op"]);
    if peer.is_some() {
        header.push("× faster peer");
    }
    if baseline.is_some() {
        header.push("over baseline (ns)");
    }
    if any_allocations {
        header.push("allocs/op");
    }
    let fastest = results
        .cases
        .iter()
        .map(CaseResult::ns)
        .fold(f64::INFINITY, f64::min);
    let mut table = Table::new(header);
    table.left_columns(2);
    for case in &results.cases {
        let mut row = vec![case.contender.label().to_owned(), case.code.to_owned()];
        if op.is_stream() {
            row.push(format_rate(msgs_per_s(case)));
        }
        row.push(wall_cell(case, fastest));
        row.push(
            case.measurement
                .cpu_median_ns
                .map_or_else(|| "–".to_owned(), format_ns),
        );
        if let Some(peer) = peer {
            row.push(format_ratio(case.ns() / peer.ns()));
        }
        if let Some(baseline) = baseline {
            row.push(if case.contender == Contender::Baseline {
                "–".to_owned()
            } else {
                format!("{:+.0}", case.ns() - baseline.ns())
            });
        }
        if any_allocations {
            row.push(
                case.allocations
                    .map_or_else(|| "–".to_owned(), format_allocations),
            );
        }
        table.row(row);
    }
    let batch_note = if op == Op::PoolBatch {
        format!(" A batch is {POOL_BATCH} jobs; figures are per job.")
    } else {
        String::new()
    };
    format!(
        "#### {} ({})\n\n{}{batch_note}\n\n{}\n{}",
        op.name(),
        op.unit(),
        op.description(),
        table.render(),
        crate::report::cpu_line()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Measurement;
    use crate::report::cases::GroupResults;

    fn result(contender: Contender, variant: &'static str, ns: f64) -> CaseResult {
        CaseResult {
            contender,
            variant,
            code: "code",
            live: LIVE,
            measurement: Measurement {
                median_ns: ns,
                min_ns: ns,
                max_ns: ns,
                calls: 1,
                cpu_median_ns: Some(2.0 * ns),
            },
            allocations: Some(0.0),
        }
    }

    #[test]
    fn tables_show_rates_ratios_and_overheads() {
        let results = GroupResults {
            ops: vec![
                OpResults {
                    op: Op::StreamUnbounded,
                    cases: vec![
                        result(Contender::Ours, "queue", 400.0),
                        result(Contender::Mpsc, "channel", 100.0),
                        result(Contender::Crossbeam, "unbounded", 50.0),
                    ],
                },
                OpResults {
                    op: Op::PoolBatch,
                    cases: vec![
                        result(Contender::Baseline, "plain_pool", 1000.0),
                        result(Contender::Ours, "interpreter_pool", 1500.0),
                        result(Contender::Rayon, "spawn_oneshot", 800.0),
                    ],
                },
            ],
        };
        let text = markdown(
            &results,
            Settings {
                target: std::time::Duration::from_millis(1),
                reps: 3,
            },
            &crate::report::targets::Targets::load(&crate::report::targets::default_path())
                .unwrap()
                .interpreters,
        );
        // 400 ns per message is 2.5 M msgs/s, 8× crossbeam's 20 M.
        assert!(text.contains("2.50 M msgs/s"), "{text}");
        assert!(text.contains("crossbeam 20.0 M msgs/s"), "{text}");
        assert!(text.contains(" 8.00 |"), "{text}");
        assert!(text.contains("1.50 (+500 ns)"), "{text}");
        assert!(text.contains("+500"), "{text}");
        assert!(text.contains("MISS"), "{text}");
        assert!(text.contains("CPU ns/op"), "{text}");
    }
}
