//! Measuring and rendering groups of [`Case`]s (the context and task sections).
//!
//! [`measure`] runs the cases of one operation together, interleaving their repetitions
//! (see [`crate::harness`]), then counts their allocations; [`op_table`] renders one
//! operation's cases as a markdown table; [`Check`] and [`checks_table`] are the targets.

use std::time::Instant;

use crate::alloc;
use crate::cases::{Case, CaseOp, Contender};
use crate::harness::{self, Measurement, Routine, Settings};
use crate::report::table::{Table, format_ns, format_ratio};

/// Repetitions whose slowest run exceeds the fastest by more than this factor are flagged
/// as noisy in the tables.
pub const NOISY_SPREAD: f64 = 1.5;

/// Calls per allocation-counting run; the count is taken from runs of this many calls and of
/// twice as many, and their difference, so that allocations made once per run (setting up
/// the live context, building a wrapper) cancel out.
pub const ALLOCATION_CALLS: u64 = 1_000;

/// What one case measured.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    /// Who.
    pub contender: Contender,
    /// The case's variant (unique within the operation and contender).
    pub variant: &'static str,
    /// The code timed.
    pub code: &'static str,
    /// Variables live.
    pub live: usize,
    /// Time per operation.
    pub measurement: Measurement,
    /// Allocations per operation, when the counting allocator is installed.
    pub allocations: Option<f64>,
}

impl CaseResult {
    /// Median nanoseconds per operation.
    pub fn ns(&self) -> f64 {
        self.measurement.median_ns
    }

    /// Whether the repetitions spread more than [`NOISY_SPREAD`].
    pub fn noisy(&self) -> bool {
        self.measurement.max_ns > NOISY_SPREAD * self.measurement.min_ns.max(1e-12)
    }
}

/// The cases of one operation.
#[derive(Clone, Debug, PartialEq)]
pub struct OpResults<O> {
    /// The operation.
    pub op: O,
    /// Its cases, in the order they were listed.
    pub cases: Vec<CaseResult>,
}

impl<O> OpResults<O> {
    /// The live counts measured, ascending.
    pub fn live_counts(&self) -> Vec<usize> {
        let mut counts: Vec<usize> = self.cases.iter().map(|case| case.live).collect();
        counts.sort_unstable();
        counts.dedup();
        counts
    }

    /// The fastest peer at `live`.
    pub fn best_peer(&self, live: usize) -> Option<&CaseResult> {
        self.cases
            .iter()
            .filter(|case| case.live == live && case.contender.is_peer())
            .min_by(|a, b| a.ns().total_cmp(&b.ns()))
    }

    /// The first baseline case at `live`.
    pub fn baseline(&self, live: usize) -> Option<&CaseResult> {
        self.cases
            .iter()
            .find(|case| case.live == live && case.contender == Contender::Baseline)
    }
}

/// Everything one group measured, per operation.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupResults<O> {
    /// Per operation, in the order of the cases.
    pub ops: Vec<OpResults<O>>,
}

impl<O: CaseOp> GroupResults<O> {
    /// The results of `op`.
    pub fn op(&self, op: O) -> Option<&OpResults<O>> {
        self.ops.iter().find(|results| results.op == op)
    }

    /// One case's result.
    pub fn case(
        &self,
        op: O,
        contender: Contender,
        variant: &str,
        live: usize,
    ) -> Option<&CaseResult> {
        self.op(op)?.cases.iter().find(|case| {
            case.contender == contender && case.variant == variant && case.live == live
        })
    }

    /// One case's median in nanoseconds.
    pub fn ns(&self, op: O, contender: Contender, variant: &str, live: usize) -> Option<f64> {
        self.case(op, contender, variant, live).map(CaseResult::ns)
    }
}

/// Measures `cases`, one operation at a time (the cases of an operation are interleaved),
/// printing a progress line per operation to stderr prefixed with `group`.
pub fn measure<O: CaseOp>(group: &str, cases: &[Case<O>], settings: Settings) -> GroupResults<O> {
    let mut ops: Vec<O> = Vec::new();
    for case in cases {
        if !ops.contains(&case.op) {
            ops.push(case.op);
        }
    }
    let count_allocations = alloc::is_installed();
    let mut results = Vec::with_capacity(ops.len());
    for (index, &op) in ops.iter().enumerate() {
        let started = Instant::now();
        let of_op: Vec<&Case<O>> = cases.iter().filter(|case| case.op == op).collect();
        let mut routines: Vec<Box<dyn Routine>> = of_op.iter().map(|case| case.routine()).collect();
        let measured = harness::measure_interleaved(&mut routines, settings);
        let mut op_results = OpResults {
            op,
            cases: Vec::with_capacity(of_op.len()),
        };
        for ((case, routine), measurement) in of_op.iter().zip(&mut routines).zip(measured) {
            op_results.cases.push(CaseResult {
                contender: case.contender,
                variant: case.variant,
                code: case.code,
                live: case.live,
                measurement,
                allocations: count_allocations.then(|| allocations_per_op(&mut **routine)),
            });
        }
        drop(routines);
        let line: Vec<String> = op_results
            .cases
            .iter()
            .map(|case| {
                format!(
                    "{}/{}{} {}",
                    case.contender.name(),
                    case.variant,
                    if of_op.iter().any(|other| other.live != case.live) {
                        format!("@{}", case.live)
                    } else {
                        String::new()
                    },
                    format_ns(case.ns())
                )
            })
            .collect();
        super::progress::line(&format!(
            "{group}: [{}/{}] {}: {}  {} ({:.1} s)",
            index + 1,
            ops.len(),
            op.name(),
            line.join(" | "),
            op.unit(),
            started.elapsed().as_secs_f64()
        ));
        super::progress::step();
        results.push(op_results);
    }
    GroupResults { ops: results }
}

/// Allocations per operation: the difference between a run of `2k` calls and one of `k`
/// calls, per operation (see [`ALLOCATION_CALLS`]). Never negative.
fn allocations_per_op(routine: &mut dyn Routine) -> f64 {
    let (_, once) = alloc::count(|| routine.run(ALLOCATION_CALLS));
    let (_, twice) = alloc::count(|| routine.run(2 * ALLOCATION_CALLS));
    let extra = twice.allocations.saturating_sub(once.allocations);
    extra as f64 / (ALLOCATION_CALLS * routine.ops_per_call().max(1)) as f64
}

/// Allocations per operation for a table cell: `0`, or two decimals.
pub fn format_allocations(allocations: f64) -> String {
    if allocations == 0.0 {
        "0".to_owned()
    } else {
        format!("{allocations:.2}")
    }
}

fn live_header(live: usize) -> String {
    if live == 1 {
        "1 var".to_owned()
    } else {
        format!("{live} vars")
    }
}

/// One operation's table, with its description and any `notes` (derived figures) below it.
pub fn op_table<O: CaseOp>(results: &OpResults<O>, notes: &[String]) -> String {
    let columns = results.live_counts();
    let table = if columns.len() == 1 {
        single_column_table(results, columns[0])
    } else {
        multi_column_table(results, &columns)
    };
    let mut out = format!(
        "#### {} ({})\n\n{}\n\n{}\n{}",
        results.op.name(),
        results.op.unit(),
        results.op.description(),
        table.render(),
        super::cpu_line().trim_end()
    );
    for note in notes {
        out.push_str(&format!("\n{note}\n"));
    }
    out.push('\n');
    out
}

/// `ns` formatted, bold if it is the column's fastest, with † if noisy.
fn ns_cell(case: &CaseResult, fastest: f64) -> String {
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

fn single_column_table<O: CaseOp>(results: &OpResults<O>, live: usize) -> Table {
    let best_peer = results.best_peer(live);
    let baseline = results.baseline(live);
    let any_allocations = results.cases.iter().any(|case| case.allocations.is_some());
    let mut header = vec![
        "contender".to_owned(),
        "timed code".to_owned(),
        "ns/op".to_owned(),
    ];
    if best_peer.is_some() {
        header.push("× best peer".to_owned());
    }
    if baseline.is_some() {
        header.push("over baseline (ns)".to_owned());
    }
    if any_allocations {
        header.push("allocs/op".to_owned());
    }
    let fastest = results
        .cases
        .iter()
        .map(CaseResult::ns)
        .fold(f64::INFINITY, f64::min);
    let mut table = Table::new(header);
    table.left_columns(2);
    for case in &results.cases {
        let mut row = vec![
            case.contender.label().to_owned(),
            case.code.to_owned(),
            ns_cell(case, fastest),
        ];
        if let Some(peer) = best_peer {
            row.push(format_ratio(case.ns() / peer.ns()));
        }
        if let Some(baseline) = baseline {
            row.push(if case.contender == Contender::Baseline {
                "–".to_owned()
            } else {
                format!("{:+.1}", case.ns() - baseline.ns())
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
    table
}

fn multi_column_table<O: CaseOp>(results: &OpResults<O>, columns: &[usize]) -> Table {
    let mut header = vec!["contender".to_owned(), "timed code".to_owned()];
    header.extend(columns.iter().map(|&live| live_header(live)));
    let any_allocations = results.cases.iter().any(|case| case.allocations.is_some());
    if any_allocations {
        header.push("allocs/op (max)".to_owned());
    }
    let mut table = Table::new(header);
    table.left_columns(2);
    let mut rows: Vec<(Contender, &str, &str)> = Vec::new();
    for case in &results.cases {
        if !rows
            .iter()
            .any(|&(contender, variant, _)| contender == case.contender && variant == case.variant)
        {
            rows.push((case.contender, case.variant, case.code));
        }
    }
    let find = |contender: Contender, variant: &str, live: usize| {
        results.cases.iter().find(|case| {
            case.contender == contender && case.variant == variant && case.live == live
        })
    };
    for &(contender, variant, code) in &rows {
        let mut row = vec![contender.label().to_owned(), code.to_owned()];
        for &live in columns {
            let fastest = results
                .cases
                .iter()
                .filter(|case| case.live == live)
                .map(CaseResult::ns)
                .fold(f64::INFINITY, f64::min);
            row.push(
                find(contender, variant, live)
                    .map_or_else(|| "–".to_owned(), |case| ns_cell(case, fastest)),
            );
        }
        if any_allocations {
            let most = columns
                .iter()
                .filter_map(|&live| find(contender, variant, live)?.allocations)
                .fold(None, |most: Option<f64>, value| {
                    Some(most.map_or(value, |most| most.max(value)))
                });
            row.push(most.map_or_else(|| "–".to_owned(), format_allocations));
        }
        table.row(row);
    }
    for &(contender, variant, code) in rows.iter().filter(|row| row.0 == Contender::Ours) {
        let mut row = vec![format!("ours / best peer"), code.to_owned()];
        for &live in columns {
            row.push(
                match (find(contender, variant, live), results.best_peer(live)) {
                    (Some(ours), Some(peer)) => format!(
                        "{} ({})",
                        format_ratio(ours.ns() / peer.ns()),
                        peer.contender.name()
                    ),
                    _ => "–".to_owned(),
                },
            );
        }
        table.row(row);
    }
    table
}

/// What a target's figure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Nanoseconds.
    Ns,
    /// A ratio of two timings.
    Ratio,
    /// Allocations per operation.
    Allocations,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            // Two decimals below 100 ns, so a near miss does not print as the bar itself.
            Self::Ns if value < 100.0 => format!("{value:.2} ns"),
            Self::Ns => format!("{} ns", format_ns(value)),
            Self::Ratio => format!("{}×", format_ratio(value)),
            Self::Allocations => format_allocations(value),
        }
    }
}

/// One target from `benches/targets.toml`, checked: `value` must not exceed `limit` (or,
/// with [`Check::at_least`], must reach it).
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// What is required, in words.
    pub target: String,
    /// The measured (or derived) figure; `None` if its cases were not measured.
    pub value: Option<f64>,
    /// The largest passing value.
    pub limit: f64,
    /// The unit of `value` and `limit`.
    pub unit: Unit,
    /// How `value` was obtained, when it is derived (e.g. `11.2 − 3.1`).
    pub detail: Option<String>,
    /// Whether `limit` is a floor rather than a ceiling.
    pub at_least: bool,
    /// Why this build cannot measure the figure at all (e.g. a `cfg` it lacks): the check is
    /// then not counted. Any other missing figure is a miss.
    pub unavailable: Option<String>,
}

impl Check {
    /// A check without detail.
    pub fn new(target: impl Into<String>, value: Option<f64>, limit: f64, unit: Unit) -> Self {
        Self {
            target: target.into(),
            value,
            limit,
            unit,
            detail: None,
            at_least: false,
            unavailable: None,
        }
    }

    /// The same check, marked as one this build cannot measure (`Some(reason)`), which the
    /// table shows and does not count when the figure is missing.
    pub fn unavailable(mut self, reason: Option<String>) -> Self {
        self.unavailable = reason;
        self
    }

    /// A check that passes when `value` is at least `limit` (a throughput ratio).
    pub fn at_least(target: impl Into<String>, value: Option<f64>, limit: f64, unit: Unit) -> Self {
        Self {
            at_least: true,
            ..Self::new(target, value, limit, unit)
        }
    }

    /// The same check with a detail, if there is one.
    pub fn detail_opt(self, detail: Option<String>) -> Self {
        match detail {
            Some(detail) => self.detail(detail),
            None => self,
        }
    }

    /// The same check with a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// `Some(true)` if met, `None` if not measured (which the table counts as a miss). A
    /// ratio that is not positive and finite is a miss: no ratio of two timings is, so a
    /// subtraction (net of a floor) left a figure at or below zero, which must not pass a
    /// `≤` bar.
    pub fn passed(&self) -> Option<bool> {
        self.value.map(|value| {
            if !self.measurable() {
                false
            } else if self.at_least {
                value >= self.limit
            } else {
                value <= self.limit
            }
        })
    }

    /// Whether the figure can be what its unit says (see [`passed`](Self::passed)).
    fn measurable(&self) -> bool {
        self.unit != Unit::Ratio
            || self
                .value
                .is_none_or(|value| value.is_finite() && value > 0.0)
    }

    /// The figure as the table shows it: with as many more decimals as it takes (up to six)
    /// not to read as the bar when it is not the bar (0.604 against ≤ 0.6 reads `0.604×`,
    /// not `0.60×`).
    fn format_value(&self, value: f64) -> String {
        if !self.measurable() {
            return format!("not measurable ({value:.3}: not a positive ratio)");
        }
        let printed = self.unit.format(value);
        let suffix = match self.unit {
            Unit::Ratio => "×",
            Unit::Ns => " ns",
            Unit::Allocations => "",
        };
        // Whether `text` reads as the bar: its number (without the unit) is the bar's, since
        // the bar may print with other decimals (`100 ns`, `100.00 ns`), or it is the bar's
        // own text (`10.0k ns`, which does not parse).
        let bar_text = self.unit.format(self.limit);
        let reads_as_bar = |text: &str| {
            text == bar_text
                || text
                    .strip_suffix(suffix)
                    .and_then(|number| number.parse::<f64>().ok())
                    .is_some_and(|number| number == self.limit)
        };
        if value == self.limit || !reads_as_bar(&printed) {
            return printed;
        }
        // More decimals than the printed text has (never fewer, which would round further).
        let shown = printed
            .strip_suffix(suffix)
            .and_then(|number| number.split_once('.'))
            .map_or(0, |(_, decimals)| decimals.len());
        (shown + 1..=shown.max(5) + 1)
            .map(|decimals| format!("{value:.decimals$}{suffix}"))
            .find(|text| !reads_as_bar(text))
            // The shortest text that gives the value back exactly.
            .unwrap_or_else(|| format!("{value}{suffix}"))
    }
}

/// The targets table, with a count of passing checks.
pub fn checks_table(checks: &[Check]) -> String {
    let mut table = Table::new(["target", "measured", "bar", "verdict"]);
    let mut passed = 0;
    let mut checked = 0;
    let mut unavailable = 0;
    for check in checks {
        let value = match (check.value, &check.detail, &check.unavailable) {
            (Some(value), Some(detail), _) => format!("{} ({detail})", check.format_value(value)),
            (Some(value), None, _) => check.format_value(value),
            (None, _, Some(reason)) => format!("not measured in this build ({reason})"),
            (None, _, None) => "not measured".to_owned(),
        };
        // A bar without its figure is a miss: it counts, and fails; unless this build
        // cannot measure it at all.
        let verdict = match check.passed() {
            Some(true) => {
                passed += 1;
                checked += 1;
                "PASS"
            }
            None if check.unavailable.is_some() => {
                unavailable += 1;
                "n/a"
            }
            Some(false) | None => {
                checked += 1;
                "MISS"
            }
        };
        table.row([
            check.target.clone(),
            value,
            format!(
                "{} {}",
                if check.at_least { "≥" } else { "≤" },
                check.unit.format(check.limit)
            ),
            verdict.to_owned(),
        ]);
    }
    let not_checked = match unavailable {
        0 => String::new(),
        n => format!(" ({n} more not checked: this build cannot measure them, n/a)"),
    };
    format!(
        "### Targets\n\nEach row is a bar from the targets file (`benches/targets.toml`, unless \
         `--targets` named another), checked against this run. **{passed} of {checked} checks \
         pass.**{not_checked}\n\n{}\n{}",
        table.render(),
        super::cpu_line()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(contender: Contender, variant: &'static str, live: usize, ns: f64) -> CaseResult {
        CaseResult {
            contender,
            variant,
            code: "code",
            live,
            measurement: Measurement {
                median_ns: ns,
                min_ns: ns,
                max_ns: ns * 2.0,
                calls: 1,
                cpu_median_ns: None,
            },
            allocations: Some(0.0),
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Probe;

    impl CaseOp for Probe {
        fn name(self) -> &'static str {
            "probe"
        }
        fn slug(self) -> &'static str {
            "probe"
        }
        fn unit(self) -> &'static str {
            "ns per probe"
        }
        fn description(self) -> &'static str {
            "A probe."
        }
    }

    #[test]
    fn tables_show_ratios_to_the_best_peer() {
        let results = OpResults {
            op: Probe,
            cases: vec![
                result(Contender::Ours, "a", 10, 2.0),
                result(Contender::Tokio, "b", 10, 1.0),
                result(Contender::Otel, "c", 10, 4.0),
            ],
        };
        assert_eq!(results.best_peer(10).unwrap().variant, "b");
        let text = op_table(&results, &["note".to_owned()]);
        assert!(text.contains("× best peer"), "{text}");
        assert!(text.contains("2.00"), "{text}");
        assert!(text.contains("**1.00†**"), "{text}");
        assert!(text.ends_with("note\n\n"), "{text}");

        let wide = OpResults {
            op: Probe,
            cases: vec![
                result(Contender::Ours, "a", 1, 2.0),
                result(Contender::Arc, "b", 1, 4.0),
                result(Contender::Ours, "a", 1000, 3.0),
                result(Contender::Arc, "b", 1000, 4.0),
            ],
        };
        let text = op_table(&wide, &[]);
        assert!(text.contains("1000 vars"), "{text}");
        assert!(
            text.contains("0.50 (arc)") && text.contains("0.75 (arc)"),
            "{text}"
        );
    }

    #[test]
    fn checks_count_passes() {
        let checks = [
            Check::new("fast", Some(1.0), 2.0, Unit::Ns),
            Check::new("slow", Some(3.0), 2.0, Unit::Ratio).detail("3 / 1"),
            Check::new("absent", None, 1.0, Unit::Allocations),
            Check::new("elsewhere", None, 1.0, Unit::Ns).unavailable(Some("a cfg".into())),
            Check::at_least("floor", Some(0.9), 0.8, Unit::Ratio),
            Check::at_least("below the floor", Some(0.7), 0.8, Unit::Ratio),
        ];
        let text = checks_table(&checks);
        // The bar without a figure counts, as a miss.
        assert!(text.contains("2 of 5 checks pass"), "{text}");
        assert!(
            text.lines().any(|line| line.contains("absent")
                && line.contains("not measured")
                && line.contains("MISS")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|line| line.contains("elsewhere") && line.contains("n/a")),
            "{text}"
        );
        assert!(text.contains("≥ 0.80×"), "{text}");
        assert!(text.contains("Build target CPU: x86-64"), "{text}");
        assert!(text.contains("3.00× (3 / 1)"), "{text}");
        assert!(text.contains("(1 more not checked"), "{text}");
    }

    #[test]
    fn a_ratio_at_or_below_zero_misses_and_a_near_miss_never_reads_as_its_bar() {
        let checks = [
            // A net-of-floor ratio whose denominator came out negative.
            Check::new("negative", Some(-2.0), 2.0, Unit::Ratio),
            Check::new("not a number", Some(f64::NAN), 2.0, Unit::Ratio),
            Check::new("near miss", Some(0.604), 0.6, Unit::Ratio),
            Check::new("near pass", Some(0.598), 0.6, Unit::Ratio),
            // A negative overhead in ns is a real figure (faster than the baseline).
            Check::new("faster", Some(-0.5), 5.0, Unit::Ns),
            Check::new("closer miss", Some(0.6004), 0.6, Unit::Ratio),
            Check::new("ns miss", Some(5.004), 5.0, Unit::Ns),
            Check::new("clear miss", Some(0.75), 0.6, Unit::Ratio),
            // One stray allocation in a thousand calls, against none.
            Check::new("stray allocation", Some(0.001), 0.0, Unit::Allocations),
            // Printed with other decimals than the bar (`100.00 ns`, `100 ns`).
            Check::new("just under", Some(99.996), 100.0, Unit::Ns),
            Check::new("very close", Some(0.600_000_01), 0.6, Unit::Ratio),
            // Printed in thousands, like its bar.
            Check::new("thousands", Some(10_030.0), 10_000.0, Unit::Ns),
            // Printed with four decimals below 0.01: never rounded to fewer.
            Check::new("tiny", Some(0.005_51), 0.005_5, Unit::Ratio),
        ];
        let text = checks_table(&checks);
        assert!(text.contains("3 of 13 checks pass"), "{text}");
        let line = |name: &str| {
            text.lines()
                .find(|line| line.starts_with(&format!("| {name} ")))
                .unwrap_or_else(|| panic!("no row {name}: {text}"))
                .to_owned()
        };
        assert!(line("negative").contains("not measurable"), "{text}");
        assert!(line("negative").ends_with("MISS |"), "{text}");
        assert!(line("not a number").ends_with("MISS |"), "{text}");
        assert!(line("near miss").contains("0.604×"), "{text}");
        assert!(line("near miss").ends_with("MISS |"), "{text}");
        assert!(line("near pass").contains("0.598×"), "{text}");
        assert!(line("faster").ends_with("PASS |"), "{text}");
        assert!(line("closer miss").contains("0.6004×"), "{text}");
        assert!(line("ns miss").contains("5.004 ns"), "{text}");
        assert!(line("clear miss").contains("0.75×"), "{text}");
        assert!(line("stray allocation").contains("0.001"), "{text}");
        assert!(line("just under").contains("99.996 ns"), "{text}");
        assert!(line("very close").contains("0.60000001×"), "{text}");
        assert!(line("thousands").contains("10030.000 ns"), "{text}");
        assert!(line("tiny").contains("0.00551×"), "{text}");
    }
}
