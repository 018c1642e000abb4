//! The pass/miss checks of the HAMT summary table, against the `[hamt]` bars of
//! `benches/targets.toml`.

use super::{Grid, HamtResults};
use crate::cases::CaseOp as _;
use crate::maps::Contender;
use crate::report::targets::{HamtTargets, RatioTarget};

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
    /// A figure the target needs that this run did not measure: a miss, not a gap.
    pub fn not_measured(limit: f64) -> Self {
        Check {
            ratio: f64::NAN,
            limit,
            detail: None,
        }
    }

    /// Whether a figure was measured.
    pub fn is_measured(&self) -> bool {
        !self.ratio.is_nan()
    }

    /// Whether the target is met (never without a figure).
    pub fn passed(&self) -> bool {
        self.ratio <= self.limit
    }
}

/// One target, checked at every size it applies to.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// What is required, e.g. `snapshot+set: ours / std ≤ 1 (N ≤ 100)`.
    pub name: String,
    /// Per size, in column order; `None` where the target does not apply (a figure it needs
    /// but this run lacks is a [`Check::not_measured`]).
    pub checks: Vec<Option<Check>>,
    /// The sizes measured, when they do not reach both ends of the sizes the target
    /// applies to (a `--smoke` or `--sizes` run): its verdict then covers those alone.
    pub partial: Option<String>,
}

/// A timing target: ours over the reference, at the sizes it applies to.
fn timing_target(results: &HamtResults, ratio: &RatioTarget) -> Target {
    let (op, reference) = (ratio.op(), ratio.over());
    let name = format!(
        "{}: {} / {} ≤ {}{}{}",
        op.name(),
        numerator(reference).name(),
        reference.name(),
        ratio.max,
        ratio.scope(),
        ratio.origin()
    );
    let checks = match results.timing(op) {
        Some(grid) => ratio_checks(grid, reference, ratio.max, |n| ratio.applies(n)),
        None => results
            .sizes
            .iter()
            .map(|&n| ratio.applies(n).then(|| Check::not_measured(ratio.max)))
            .collect(),
    };
    // A bar without an upper size applies up to the largest size the report measures.
    let largest = ratio
        .n_max
        .unwrap_or(crate::sizes::FULL[crate::sizes::FULL.len() - 1]);
    let covers = results.sizes.iter().any(|&n| n >= largest)
        && ratio
            .n_min
            .is_none_or(|min| results.sizes.iter().any(|&n| n <= min));
    let partial = (!covers).then(|| {
        let measured: Vec<String> = results
            .sizes
            .iter()
            .filter(|&&n| ratio.applies(n))
            .map(|&n| crate::sizes::label(n))
            .collect();
        format!("N = {} only", measured.join(", "))
    });
    Target {
        name,
        checks,
        partial,
    }
}

/// Ours as compared with `reference`: the `Arc`-valued map against the `Arc`-valued peer
/// (both store the same values), the `u64` one against the others.
pub fn numerator(reference: Contender) -> Contender {
    if reference == Contender::StdArc {
        Contender::OursArc
    } else {
        Contender::Ours
    }
}

fn ratio_checks(
    grid: &Grid,
    reference: Contender,
    limit: f64,
    applies: impl Fn(usize) -> bool,
) -> Vec<Option<Check>> {
    grid.sizes()
        .iter()
        .enumerate()
        .map(|(column, &n)| {
            if !applies(n) {
                return None;
            }
            let (Some(ours), Some(theirs)) = (
                grid.get(numerator(reference), column),
                grid.get(reference, column),
            ) else {
                return Some(Check::not_measured(limit));
            };
            Some(Check {
                ratio: ours / theirs,
                limit,
                detail: None,
            })
        })
        .collect()
}

/// Every target of the HAMT section, checked against `results`.
pub fn evaluate(results: &HamtResults, bars: &HamtTargets) -> Vec<Target> {
    let mut targets: Vec<Target> = bars
        .ratios
        .iter()
        .map(|ratio| timing_target(results, ratio))
        .collect();
    let Some(memory) = &results.memory else {
        // Issue 13's memory bar is a miss without its figures (`--no-memory`), not a row
        // that disappears.
        let limit = bars.bytes_per_entry_max;
        targets.push(Target {
            partial: None,
            name: format!("live bytes per entry ≤ {limit} (ratio to {limit} B)"),
            checks: results
                .sizes
                .iter()
                .map(|_| Some(Check::not_measured(1.0)))
                .collect(),
        });
        return targets;
    };
    let ours = |column: usize| memory.figures[column][Contender::Ours.index()];
    let columns = 0..memory.sizes.len();
    let limit = bars.bytes_per_entry_max;
    targets.push(Target {
        partial: None,
        name: format!("live bytes per entry ≤ {limit} (ratio to {limit} B)"),
        checks: columns
            .clone()
            .map(|column| {
                let bytes = ours(column).bytes_per_entry;
                Some(Check {
                    ratio: bytes / limit,
                    limit: 1.0,
                    detail: Some(format!("{bytes:.1} B")),
                })
            })
            .collect(),
    });
    let reference = &bars.reference;
    targets.push(Target {
        partial: None,
        name: "bytes retained per snapshot+set ≤ CPython hamt.c (ratio to CPython)".to_owned(),
        checks: columns
            .clone()
            .map(|column| {
                let cpython =
                    reference.at(&reference.cpython_retained_per_set, memory.sizes[column])?;
                let bytes = ours(column).retained_per_snapshot;
                Some(Check {
                    ratio: bytes / cpython,
                    limit: 1.0,
                    detail: Some(format!("{bytes:.0} B")),
                })
            })
            .collect(),
    });
    let slack = bars.allocation_slack;
    targets.push(Target {
        partial: None,
        name: format!(
            "allocations per persistent insert: one per copied node (ratio to ideal CHAMP, ≤ {slack})"
        ),
        checks: columns
            .map(|column| {
                let measured = ours(column).allocations_per_insert?;
                let ideal = memory.ideal_allocations_per_insert[column];
                Some(Check {
                    ratio: measured / ideal,
                    limit: slack,
                    detail: Some(format!("{measured:.2} vs {ideal:.2}")),
                })
            })
            .collect(),
    });
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
        // A peer without a figure where the target applies: a miss, not a gap.
        let missing = ratio_checks(&grid, Contender::Im, 1.0, |_| true);
        let first = missing[0].as_ref().expect("applies");
        assert!(!first.is_measured() && !first.passed());
    }

    /// A run whose sizes stop short of a bar's range says which sizes its verdict covers.
    #[test]
    fn a_target_measured_at_part_of_its_sizes_says_so() {
        use crate::ops::Op;
        let mut grid = Grid::new(&[10, 100]);
        for column in 0..2 {
            grid.set(Contender::Ours, column, 30.0);
            grid.set(Contender::Std, column, 40.0);
        }
        let results = HamtResults {
            sizes: vec![10, 100],
            timings: vec![(Op::LookupHit, grid)],
            memory: None,
        };
        let bar = |n_max| RatioTarget {
            op: "lookup_hit".into(),
            over: Contender::Std.name().into(),
            max: 1.0,
            n_min: None,
            n_max,
            by: None,
        };
        let short = timing_target(&results, &bar(Some(100_000)));
        assert_eq!(short.partial.as_deref(), Some("N = 10, 100 only"));
        assert!(timing_target(&results, &bar(Some(100))).partial.is_none());
        // Without an upper size, the bar applies up to the report's largest (1M).
        let unbounded = timing_target(&results, &bar(None));
        assert_eq!(unbounded.partial.as_deref(), Some("N = 10, 100 only"));
        let table = super::super::render::targets_table(&[short], &results.sizes);
        assert!(table.contains("PASS (N = 10, 100 only)"), "{table}");
    }
}
