//! The bars from `shared/ANCHORS.md`, and the pass/miss checks of the summary table.

use super::{Grid, HamtResults};
use crate::maps::Contender;
use crate::ops::Op;

/// The sizes the anchor figures were measured at.
pub const ANCHOR_SIZES: [usize; 6] = [10, 100, 1_000, 10_000, 100_000, 1_000_000];

/// Our absolute targets in ns (ANCHORS.md, "our target"), per anchor size; for reference
/// rows only, since absolute figures move with the machine and its load.
pub fn anchor_ns(op: Op) -> Option<[f64; 6]> {
    Some(match op {
        Op::LookupHit => [1.8, 2.5, 4.3, 12.0, 38.0, 110.0],
        Op::LookupMiss => [1.9, 2.1, 2.9, 6.5, 22.0, 72.0],
        Op::SnapshotSet => [60.0, 150.0, 600.0, 650.0, 1400.0, 2500.0],
        Op::PersistentInsert => [70.0, 250.0, 400.0, 550.0, 1100.0, 1500.0],
        Op::PersistentRemove => [60.0, 200.0, 550.0, 600.0, 1250.0, 2500.0],
        Op::InPlaceInsert => [45.0, 45.0, 60.0, 43.0, 130.0, 230.0],
        Op::Iterate => [3.0, 3.0, 3.0, 5.0, 20.0, 35.0],
        Op::InPlaceRemove => return None,
    })
}

/// CPython 3.11 `hamt.c`: live bytes per entry (ANCHORS.md, measured with tracemalloc).
pub const CPYTHON_BYTES_PER_ENTRY: [f64; 6] = [45.6, 37.6, 53.4, 30.2, 37.1, 55.5];

/// CPython 3.11 `hamt.c`: bytes retained by one snapshot+set.
pub const CPYTHON_RETAINED_PER_SET: [f64; 6] = [264.0, 512.0, 744.0, 840.0, 1072.0, 1336.0];

/// Live bytes per entry we aim to stay under.
pub const BYTES_PER_ENTRY_LIMIT: f64 = 40.0;

/// Slack on "one allocation per copied node": the ideal count is an expectation over random
/// hashes, and one map's realisation at N = 10 differs from it by about ±5%.
pub const ALLOCATION_SLACK: f64 = 1.1;

/// The value at size `n` of a per-anchor-size table.
pub fn at_anchor(table: &[f64; 6], n: usize) -> Option<f64> {
    ANCHOR_SIZES
        .iter()
        .position(|&size| size == n)
        .map(|index| table[index])
}

/// One checked figure: `ratio` must not exceed `limit`.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The measured ratio.
    pub ratio: f64,
    /// The largest passing ratio.
    pub limit: f64,
    /// The absolute figure behind the ratio, when that helps (e.g. `34 B`).
    pub detail: Option<String>,
}

impl Check {
    /// Whether the target is met.
    pub fn passed(&self) -> bool {
        self.ratio <= self.limit
    }
}

/// One target, checked at every size it applies to.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// What is required, e.g. `snapshot+set: ours / std ≤ 1 (N ≤ 100)`.
    pub name: String,
    /// Per size, in column order; `None` where the target does not apply or was not measured.
    pub checks: Vec<Option<Check>>,
}

/// A timing target: `op`'s time for ours over `reference`'s must not exceed `limit` at the
/// sizes `applies` accepts.
fn timing_target(
    results: &HamtResults,
    op: Op,
    reference: Contender,
    limit: f64,
    scope: &str,
    applies: fn(usize) -> bool,
) -> Target {
    let name = format!(
        "{}: ours / {} ≤ {limit}{scope}",
        op.name(),
        reference.name()
    );
    let checks = match results.timing(op) {
        Some(grid) => ratio_checks(grid, reference, limit, applies),
        None => vec![None; results.sizes.len()],
    };
    Target { name, checks }
}

fn ratio_checks(
    grid: &Grid,
    reference: Contender,
    limit: f64,
    applies: fn(usize) -> bool,
) -> Vec<Option<Check>> {
    grid.sizes()
        .iter()
        .enumerate()
        .map(|(column, &n)| {
            if !applies(n) {
                return None;
            }
            let ours = grid.get(Contender::Ours, column)?;
            let theirs = grid.get(reference, column)?;
            Some(Check {
                ratio: ours / theirs,
                limit,
                detail: None,
            })
        })
        .collect()
}

/// Every target of the HAMT section, checked against `results`.
pub fn evaluate(results: &HamtResults) -> Vec<Target> {
    let everywhere: fn(usize) -> bool = |_| true;
    let mut targets = vec![
        timing_target(
            results,
            Op::SnapshotSet,
            Contender::Std,
            1.0,
            " (N ≤ 100)",
            |n| n <= 100,
        ),
        timing_target(
            results,
            Op::SnapshotSet,
            Contender::Imbl,
            0.5,
            " (N ≥ 1k)",
            |n| n >= 1_000,
        ),
        timing_target(results, Op::LookupHit, Contender::Im, 1.0, "", everywhere),
        timing_target(results, Op::LookupMiss, Contender::Im, 1.0, "", everywhere),
        timing_target(
            results,
            Op::LookupHit,
            Contender::Std,
            1.4,
            " (N ≤ 1k)",
            |n| n <= 1_000,
        ),
        timing_target(
            results,
            Op::LookupMiss,
            Contender::Std,
            1.4,
            " (N ≤ 1k)",
            |n| n <= 1_000,
        ),
        timing_target(
            results,
            Op::PersistentInsert,
            Contender::Imbl,
            0.6,
            "",
            everywhere,
        ),
        timing_target(
            results,
            Op::PersistentRemove,
            Contender::Imbl,
            0.6,
            "",
            everywhere,
        ),
    ];
    if let Some(memory) = &results.memory {
        let ours = |column: usize| memory.figures[column][Contender::Ours.index()];
        let columns = 0..memory.sizes.len();
        targets.push(Target {
            name: format!("live bytes per entry ≤ {BYTES_PER_ENTRY_LIMIT} (ratio to {BYTES_PER_ENTRY_LIMIT} B)"),
            checks: columns
                .clone()
                .map(|column| {
                    let bytes = ours(column).bytes_per_entry;
                    Some(Check {
                        ratio: bytes / BYTES_PER_ENTRY_LIMIT,
                        limit: 1.0,
                        detail: Some(format!("{bytes:.1} B")),
                    })
                })
                .collect(),
        });
        targets.push(Target {
            name: "bytes retained per snapshot+set ≤ CPython hamt.c (ratio to CPython)".to_owned(),
            checks: columns
                .clone()
                .map(|column| {
                    let cpython = at_anchor(&CPYTHON_RETAINED_PER_SET, memory.sizes[column])?;
                    let bytes = ours(column).retained_per_snapshot;
                    Some(Check {
                        ratio: bytes / cpython,
                        limit: 1.0,
                        detail: Some(format!("{bytes:.0} B")),
                    })
                })
                .collect(),
        });
        targets.push(Target {
            name: format!(
                "allocations per persistent insert: one per copied node (ratio to ideal CHAMP, ≤ {ALLOCATION_SLACK})"
            ),
            checks: columns
                .map(|column| {
                    let measured = ours(column).allocations_per_insert?;
                    let ideal = memory.ideal_allocations_per_insert[column];
                    Some(Check {
                        ratio: measured / ideal,
                        limit: ALLOCATION_SLACK,
                        detail: Some(format!("{measured:.2} vs {ideal:.2}")),
                    })
                })
                .collect(),
        });
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_checks_respect_scope_and_limit() {
        let mut grid = Grid::new(&[10, 1_000]);
        grid.set(Contender::Ours, 0, 30.0);
        grid.set(Contender::Std, 0, 40.0);
        grid.set(Contender::Ours, 1, 50.0);
        grid.set(Contender::Std, 1, 40.0);
        let checks = ratio_checks(&grid, Contender::Std, 1.0, |n| n <= 100);
        assert_eq!(checks.len(), 2);
        let first = checks[0].as_ref().unwrap();
        assert!(first.passed() && (first.ratio - 0.75).abs() < 1e-9);
        assert!(checks[1].is_none());
        let everywhere = ratio_checks(&grid, Contender::Std, 1.0, |_| true);
        assert!(!everywhere[1].as_ref().unwrap().passed());
    }

    #[test]
    fn anchors_cover_the_anchor_sizes() {
        assert_eq!(at_anchor(&CPYTHON_RETAINED_PER_SET, 1_000), Some(744.0));
        assert_eq!(at_anchor(&CPYTHON_RETAINED_PER_SET, 2_000), None);
        assert!(anchor_ns(Op::InPlaceRemove).is_none());
    }
}
