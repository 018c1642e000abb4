//! `results.json`: the header and every measured figure, for machines (`--compare`, CI).
//!
//! Layout (`schema` 1):
//!
//! ```text
//! { "schema": 1,
//!   "header": { "date", "cpu_model", "target_cpu", "cores", "load_average", "rustc", "peers", "mode",
//!               "groups", "measured_s", "repetitions": { "hamt" (with "median_of_by_size"), "cases" } },
//!   "groups": {
//!     "hamt":    { "sizes": [..], "figures": [ { "op", "contender", "n", "ns_per_op",
//!                  "spread", "ratio_to_best_peer" } ], "memory": [ { "figure", "unit",
//!                  "contender", "n", "value" } ] },
//!     "context": { "figures": [ { "op", "contender", "case", "live", "ns_per_op",
//!                  "spread", "ratio_to_best_peer", "ratio_to_baseline",
//!                  "allocations_per_op" } ] },
//!     "tasks":   { same as context },
//!     "interpreters": { same as context, plus per figure "clock" ("wall" or
//!                  "thread_cpu"), "cpu_ns_per_op" (two-thread cases: all threads' CPU
//!                  time) and "msgs_per_s" (streams) } } }
//! ```
//!
//! Every figure has a unique `key` (`group/op/contender[/case]/N`) that `--compare` matches
//! on. Ratios are `null` where the tables have none (no peer or baseline measured).

use std::time::Duration;

use serde_json::{Value, json};

use super::cases::{CaseResult, GroupResults};
use super::hamt::HamtResults;
use super::machine::Machine;
use super::{Config, Group};
use crate::cases::CaseOp;
use crate::maps::Contender;
use crate::memory::MemoryFigures;

/// The version of the layout above.
pub const SCHEMA: u64 = 1;

/// The results of the groups that ran.
#[derive(Clone, Copy, Debug)]
pub struct Groups<'a> {
    /// The HAMT section.
    pub hamt: Option<&'a HamtResults>,
    /// The context section.
    pub context: Option<&'a super::context::ContextResults>,
    /// The task section.
    pub tasks: Option<&'a super::tasks::TaskResults>,
    /// The interpreters section.
    pub interpreters: Option<&'a super::interpreters::InterpreterResults>,
}

/// A finite number as JSON, else `null` (JSON has no NaN or infinity).
fn number(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        Value::Null
    }
}

fn optional(value: Option<f64>) -> Value {
    value.map_or(Value::Null, number)
}

/// The whole `results.json` document.
pub fn results(machine: &Machine, config: &Config, elapsed: Duration, groups: Groups<'_>) -> Value {
    let hamt_timing = config
        .mode
        .timing(config.sizes.iter().copied().min().unwrap_or(0));
    let case_timing = config.mode.case_timing();
    let mut sections = serde_json::Map::new();
    if let Some(hamt) = groups.hamt {
        sections.insert(Group::Hamt.name().to_owned(), hamt_json(hamt));
    }
    if let Some(context) = groups.context {
        sections.insert(
            Group::Context.name().to_owned(),
            cases_json(Group::Context, context),
        );
    }
    if let Some(tasks) = groups.tasks {
        sections.insert(
            Group::Tasks.name().to_owned(),
            cases_json(Group::Tasks, tasks),
        );
    }
    if let Some(interpreters) = groups.interpreters {
        sections.insert(
            Group::Interpreters.name().to_owned(),
            interpreters_json(interpreters),
        );
    }
    json!({
        "schema": SCHEMA,
        "header": {
            "date": machine.date,
            "cpu_model": machine.cpu_model,
            "target_cpu": machine.target_cpu,
            "cores": machine.cpus,
            "load_average": machine.load_average,
            "rustc": machine.rustc,
            "peers": machine.peers,
            "mode": config.mode.name(),
            "groups": config.groups.iter().map(|group| group.name()).collect::<Vec<_>>(),
            "measured_s": elapsed.as_secs_f64(),
            "repetitions": {
                "hamt": {
                    "median_of": hamt_timing.reps,
                    // Per size where it differs (fewer repetitions at N ≥ 1M in full mode).
                    "median_of_by_size": config
                        .sizes
                        .iter()
                        .map(|&n| json!({ "n": n, "median_of": config.mode.timing(n).reps }))
                        .collect::<Vec<_>>(),
                    "target_ms": hamt_timing.target.as_secs_f64() * 1e3,
                },
                "cases": {
                    "median_of": case_timing.reps,
                    "target_ms": case_timing.target.as_secs_f64() * 1e3,
                },
            },
        },
        "groups": sections,
    })
}

fn hamt_json(results: &HamtResults) -> Value {
    let mut figures = Vec::new();
    for (op, grid) in &results.timings {
        for (column, &n) in grid.sizes().iter().enumerate() {
            let best = grid.best_peer(column).map(|(_, ns)| ns);
            for contender in Contender::ALL {
                let Some(ns) = grid.get(contender, column) else {
                    continue;
                };
                figures.push(json!({
                    "key": format!("hamt/{}/{}/{n}", op.name(), contender.name()),
                    "op": op.name(),
                    "contender": contender.name(),
                    "n": n,
                    "ns_per_op": number(ns),
                    "spread": optional(grid.spread(contender, column)),
                    "ratio_to_best_peer": optional(best.map(|best| ns / best)),
                }));
            }
        }
    }
    let mut memory = Vec::new();
    if let Some(results) = &results.memory {
        type Figure = fn(&MemoryFigures) -> Option<f64>;
        let kinds: [(&str, &str, Figure); 5] = [
            ("bytes_per_entry", "bytes", |f| Some(f.bytes_per_entry)),
            ("retained_per_snapshot", "bytes", |f| {
                Some(f.retained_per_snapshot)
            }),
            ("allocations_per_snapshot", "allocations", |f| {
                Some(f.allocations_per_snapshot)
            }),
            ("allocations_per_insert", "allocations", |f| {
                f.allocations_per_insert
            }),
            ("bytes_per_insert", "bytes", |f| f.bytes_per_insert),
        ];
        for (column, &n) in results.sizes.iter().enumerate() {
            for (figure, unit, read) in kinds {
                for contender in Contender::ALL {
                    let Some(value) = read(&results.figures[column][contender.index()]) else {
                        continue;
                    };
                    memory.push(json!({
                        "key": format!("hamt/memory/{figure}/{}/{n}", contender.name()),
                        "figure": figure,
                        "unit": unit,
                        "contender": contender.name(),
                        "n": n,
                        "value": number(value),
                    }));
                }
            }
        }
    }
    json!({ "sizes": results.sizes, "figures": figures, "memory": memory })
}

fn cases_json<O: CaseOp>(group: Group, results: &GroupResults<O>) -> Value {
    cases_json_with(group, results, |_, _| Vec::new())
}

fn interpreters_json(results: &super::interpreters::InterpreterResults) -> Value {
    cases_json_with(Group::Interpreters, results, |op, case| {
        let mut extra = vec![
            (
                "clock",
                json!(if op.is_threaded() {
                    "wall"
                } else {
                    "thread_cpu"
                }),
            ),
            ("cpu_ns_per_op", optional(case.measurement.cpu_median_ns)),
        ];
        if op.is_stream() {
            extra.push(("msgs_per_s", number(super::interpreters::msgs_per_s(case))));
        }
        extra
    })
}

/// The figures of a case group; `extra` adds fields of the group's own to each figure.
fn cases_json_with<O: CaseOp>(
    group: Group,
    results: &GroupResults<O>,
    extra: impl Fn(O, &CaseResult) -> Vec<(&'static str, Value)>,
) -> Value {
    let mut figures = Vec::new();
    for op in &results.ops {
        for case in &op.cases {
            let ns = case.ns();
            let best = op.best_peer(case.live).map(|peer| peer.ns());
            let baseline = op.baseline(case.live).map(|base| base.ns());
            let mut figure = json!({
                "key": format!(
                    "{}/{}/{}/{}/{}",
                    group.name(),
                    op.op.name(),
                    case.contender.name(),
                    case.variant,
                    case.live
                ),
                "op": op.op.name(),
                "contender": case.contender.name(),
                "case": case.variant,
                "code": case.code,
                "live": case.live,
                "ns_per_op": number(ns),
                "spread": number(case.measurement.max_ns / case.measurement.min_ns.max(1e-12)),
                "ratio_to_best_peer": optional(best.map(|best| ns / best)),
                "ratio_to_baseline": optional(baseline.map(|base| ns / base)),
                "allocations_per_op": optional(case.allocations),
            });
            for (name, value) in extra(op.op, case) {
                figure[name] = value;
            }
            figures.push(figure);
        }
    }
    json!({ "figures": figures })
}
