//! The HAMT section as markdown, and PEP 550's Figures 1 and 2 as SVG.

use super::targets::{self, Target};
use super::{Grid, HamtResults, MemoryResults, NOISY_SPREAD};
use crate::cases::CaseOp as _;
use crate::maps::Contender;
use crate::memory::MemoryFigures;
use crate::ops::Op;
use crate::report::cpu_line;
use crate::report::svg::{LogLogPlot, Series};
use crate::report::table::{Table, format_amount, format_ns, format_ratio};
use crate::report::targets::{HamtReference, HamtTargets};
use crate::sizes;
use plotters::style::RGBColor;

/// File name of Figure 1 (snapshot+set cost vs N).
pub const SNAPSHOT_FIGURE: &str = "hamt_snapshot_set.svg";

/// File name of Figure 2 (lookup cost vs N).
pub const LOOKUP_FIGURE: &str = "hamt_lookup.svg";

/// The section's markdown.
pub fn markdown(results: &HamtResults, bars: &HamtTargets) -> String {
    let mut out = String::from(
        "## HAMT: `hamt::HamtMap` against imbl, im, rpds and std `HashMap`\n\n\
         Ratios below 1 mean ours is faster or smaller. \"Best peer\" is the fastest of imbl, \
         im and rpds at that N. In the timing tables the lowest figure of each column is bold, \
         and † marks a figure whose slowest repetition took more than 1.5× its fastest (noise).\n\n",
    );

    let targets = targets::evaluate(results, bars);
    out.push_str(&targets_table(&targets, &results.sizes));

    out.push_str(&format!(
        "### Figures\n\n\
         ![Figure 1: snapshot + set vs N]({SNAPSHOT_FIGURE})\n\n\
         ![Figure 2: lookup hit vs N]({LOOKUP_FIGURE})\n\n"
    ));

    out.push_str("### Time\n\n");
    for (op, grid) in &results.timings {
        out.push_str(&timing_table(*op, grid, &bars.reference));
    }

    match &results.memory {
        Some(memory) => out.push_str(&memory_tables(memory, &bars.reference)),
        None => out.push_str("### Memory\n\nNot measured in this run.\n\n"),
    }
    out
}

fn size_header(title: &str, sizes: &[usize]) -> Vec<String> {
    std::iter::once(title.to_owned())
        .chain(sizes.iter().map(|&n| format!("N={}", sizes::label(n))))
        .collect()
}

pub(super) fn targets_table(targets: &[Target], sizes: &[usize]) -> String {
    let mut header = size_header("target", sizes);
    header.push("verdict".to_owned());
    let mut table = Table::new(header);
    let (mut passed, mut checked) = (0, 0);
    for target in targets {
        let mut row = vec![target.name.clone()];
        let mut all_passed = true;
        let mut any = false;
        for check in &target.checks {
            row.push(match check {
                Some(check) => {
                    any = true;
                    checked += 1;
                    if check.passed() {
                        passed += 1;
                    } else {
                        all_passed = false;
                    }
                    let verdict = if check.passed() { "PASS" } else { "MISS" };
                    match &check.detail {
                        _ if !check.is_measured() => format!("not measured {verdict}"),
                        Some(detail) => {
                            format!("{} {verdict} ({detail})", format_ratio(check.ratio))
                        }
                        None => format!("{} {verdict}", format_ratio(check.ratio)),
                    }
                }
                None => "–".to_owned(),
            });
        }
        let verdict = match (any, all_passed) {
            (false, _) => "–",
            (true, true) => "PASS",
            (true, false) => "MISS",
        };
        row.push(match (&target.partial, any) {
            (Some(partial), true) => format!("{verdict} ({partial})"),
            _ => verdict.to_owned(),
        });
        table.row(row);
    }
    format!(
        "### Targets\n\nEach cell is the measured ratio and whether it meets the target \
         (bars from the targets file: `benches/targets.toml`, unless `--targets` named another). **{passed} of {checked} checks pass.**\n\n{}\n{}",
        table.render(),
        cpu_line()
    )
}

/// The contenders that run `op`.
fn contenders_of(op: Op) -> impl Iterator<Item = Contender> {
    Contender::ALL
        .into_iter()
        .filter(move |&contender| op.applies_to(contender))
}

fn timing_table(op: Op, grid: &Grid, reference: &HamtReference) -> String {
    let sizes = grid.sizes();
    let mut table = Table::new(size_header("map", sizes));
    for contender in contenders_of(op) {
        let cells = (0..sizes.len()).map(|column| {
            let Some(ns) = grid.get(contender, column) else {
                return "–".to_owned();
            };
            let fastest = contenders_of(op)
                .filter_map(|other| grid.get(other, column))
                .fold(f64::INFINITY, f64::min);
            let noisy = grid
                .spread(contender, column)
                .is_some_and(|spread| spread > NOISY_SPREAD);
            let shown = format!("{}{}", format_ns(ns), if noisy { "†" } else { "" });
            if ns <= fastest {
                format!("**{shown}**")
            } else {
                shown
            }
        });
        table.row(std::iter::once(contender.label().to_owned()).chain(cells));
    }

    let best_peer = (0..sizes.len()).map(|column| {
        match (grid.get(Contender::Ours, column), grid.best_peer(column)) {
            (Some(ours), Some((peer, theirs))) => {
                format!("{} ({})", format_ratio(ours / theirs), peer.name())
            }
            _ => "–".to_owned(),
        }
    });
    table.row(std::iter::once("ours / best peer".to_owned()).chain(best_peer));
    if matches!(op, Op::LookupHit | Op::LookupMiss | Op::SnapshotSet) {
        for flat in [Contender::Std, Contender::StdArc] {
            if !op.applies_to(flat) {
                continue;
            }
            let ours = super::targets::numerator(flat);
            let ratios = (0..sizes.len()).map(|column| {
                match (grid.get(ours, column), grid.get(flat, column)) {
                    (Some(ours), Some(theirs)) => format_ratio(ours / theirs),
                    _ => "–".to_owned(),
                }
            });
            table.row(std::iter::once(format!("{} / {}", ours.name(), flat.name())).chain(ratios));
        }
    }
    if let Some(aims) = reference.ns(op) {
        table.row(
            std::iter::once("aim (targets.toml)".to_owned()).chain(sizes.iter().map(|&n| {
                reference
                    .at(aims, n)
                    .map_or_else(|| "–".to_owned(), |ns| format!("≤ {}", format_ns(ns)))
            })),
        );
    }
    format!(
        "#### {} ({})\n\n{}\n\n{}\n{}",
        op.name(),
        op.unit(),
        op.description(),
        table.render(),
        cpu_line()
    )
}

/// A reference row under a memory table.
#[derive(Clone, Copy)]
enum Reference {
    None,
    /// CPython's figures at the reference sizes.
    CPython(fn(&HamtReference) -> &[f64]),
    /// The ideal CHAMP allocation count.
    IdealAllocations,
}

/// One memory table: a title, what it measures, and which figure it shows.
struct MemoryTable {
    title: &'static str,
    description: &'static str,
    figure: fn(&MemoryFigures) -> Option<f64>,
    reference: Reference,
}

const MEMORY_TABLES: [MemoryTable; 5] = [
    MemoryTable {
        title: "live bytes per entry",
        description: "After building N entries in place; averaged over several builds with \
                      different hasher seeds. Target ≤ 40 B.",
        figure: |figures| Some(figures.bytes_per_entry),
        reference: Reference::CPython(|reference| &reference.cpython_bytes_per_entry),
    },
    MemoryTable {
        title: "bytes retained by one snapshot + set",
        description: "Live bytes added by `let mut s = m.clone(); s.insert(new_key, v)` while `s` \
                      is alive (for std: the whole copy); averaged over several new keys. \
                      Target ≤ CPython.",
        figure: |figures| Some(figures.retained_per_snapshot),
        reference: Reference::CPython(|reference| &reference.cpython_retained_per_set),
    },
    MemoryTable {
        title: "allocations per snapshot + set",
        description: "Allocations made by the same clone + insert.",
        figure: |figures| Some(figures.allocations_per_snapshot),
        reference: Reference::None,
    },
    MemoryTable {
        title: "allocations per persistent insert",
        description: "Averaged over building 0..N with `m = m.update(k, k)`. Target: one \
                      allocation per copied (or newly created) node; the ideal row counts \
                      exactly that for a CHAMP trie with 5 hash bits per level and random \
                      hashes.",
        figure: |figures| figures.allocations_per_insert,
        reference: Reference::IdealAllocations,
    },
    MemoryTable {
        title: "bytes allocated per persistent insert",
        description: "Averaged over the same persistent build (allocated, not retained).",
        figure: |figures| figures.bytes_per_insert,
        reference: Reference::None,
    },
];

fn memory_tables(memory: &MemoryResults, reference: &HamtReference) -> String {
    let mut out = String::from(
        "### Memory\n\nRequested bytes from a counting global allocator (malloc headers and \
         rounding not included), u64 → u64 entries.\n\n",
    );
    let columns = 0..memory.sizes.len();
    for section in &MEMORY_TABLES {
        let grid = memory.grid(section.figure);
        let mut table = Table::new(size_header("map", &memory.sizes));
        for contender in Contender::ALL {
            if columns
                .clone()
                .all(|column| grid.get(contender, column).is_none())
            {
                continue;
            }
            let cells = columns.clone().map(|column| {
                grid.get(contender, column)
                    .map_or_else(|| "–".to_owned(), format_amount)
            });
            table.row(std::iter::once(contender.label().to_owned()).chain(cells));
        }
        let ours_over_best = columns.clone().map(|column| {
            match (grid.get(Contender::Ours, column), grid.best_peer(column)) {
                (Some(ours), Some((peer, theirs))) if theirs > 0.0 => {
                    format!("{} ({})", format_ratio(ours / theirs), peer.name())
                }
                _ => "–".to_owned(),
            }
        });
        table.row(std::iter::once("ours / best peer".to_owned()).chain(ours_over_best));
        match section.reference {
            Reference::None => {}
            Reference::CPython(list) => {
                let cells = memory.sizes.iter().map(|&n| {
                    reference
                        .at(list(reference), n)
                        .map_or_else(|| "–".to_owned(), format_amount)
                });
                table.row(std::iter::once("CPython hamt.c".to_owned()).chain(cells));
            }
            Reference::IdealAllocations => {
                let cells = memory
                    .ideal_allocations_per_insert
                    .iter()
                    .map(|ideal| format!("{ideal:.2}"));
                table.row(std::iter::once("ideal CHAMP (one per node)".to_owned()).chain(cells));
            }
        }
        out.push_str(&format!(
            "#### {}\n\n{}\n\n{}\n{}",
            section.title,
            section.description,
            table.render(),
            cpu_line()
        ));
    }
    out
}

/// The plot colour of each contender.
fn color(contender: Contender) -> RGBColor {
    match contender {
        Contender::Ours => RGBColor(0xd6, 0x27, 0x28),
        Contender::Imbl => RGBColor(0x1f, 0x77, 0xb4),
        Contender::Im => RGBColor(0x2c, 0xa0, 0x2c),
        Contender::Rpds => RGBColor(0x94, 0x67, 0xbd),
        Contender::Std => RGBColor(0x7f, 0x7f, 0x7f),
        Contender::StdArc => RGBColor(0x8c, 0x56, 0x4b),
        Contender::OursArc => RGBColor(0xff, 0x98, 0x96),
    }
}

fn ns_tick(ns: f64) -> String {
    match ns {
        _ if ns >= 1e6 => format!("{} ms", ns / 1e6),
        _ if ns >= 1e3 => format!("{} µs", ns / 1e3),
        _ => format!("{ns} ns"),
    }
}

fn plot(results: &HamtResults, op: Op, title: &str) -> String {
    let series = match results.timing(op) {
        Some(grid) => contenders_of(op)
            .map(|contender| Series {
                label: contender.label().to_owned(),
                color: color(contender),
                dashed: !contender.is_persistent(),
                emphasised: contender == Contender::Ours,
                points: grid
                    .sizes()
                    .iter()
                    .enumerate()
                    .filter_map(|(column, &n)| Some((n as f64, grid.get(contender, column)?)))
                    .collect(),
            })
            .collect(),
        None => Vec::new(),
    };
    LogLogPlot {
        title: title.to_owned(),
        x_label: format!(
            "entries in the map (N); build target CPU: {}",
            super::super::machine::target_cpu()
        ),
        y_label: format!("{}, thread CPU time", op.unit()),
        x_tick: |n| sizes::label(n.round() as usize),
        y_tick: ns_tick,
        series,
    }
    .render()
}

/// PEP 550's Figure 1: the cost of a snapshot + set against N, per contender.
pub fn snapshot_plot(results: &HamtResults) -> String {
    plot(
        results,
        Op::SnapshotSet,
        "Figure 1: snapshot + set (clone, insert 1 key, drop)",
    )
}

/// PEP 550's Figure 2: the cost of a successful lookup against N, per contender.
pub fn lookup_plot(results: &HamtResults) -> String {
    plot(results, Op::LookupHit, "Figure 2: lookup hit")
}
