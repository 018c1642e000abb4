//! The HAMT section: our map against imbl, im, rpds and std's `HashMap`.
//!
//! [`measure`] runs every [`Op`] at every N, interleaving the contenders (see
//! [`crate::harness`]), then the memory figures ([`crate::memory`]); [`render`] turns the
//! results into markdown and PEP 550's Figures 1 and 2; [`targets`] checks the bars of
//! `benches/targets.toml`.

pub mod render;
pub mod targets;

use crate::cases::CaseOp as _;
use std::time::Instant;

use super::Config;
use crate::harness::{self, Routine};
use crate::keys::KeySet;
use crate::maps::Contender;
use crate::memory::{self, MemoryFigures, MemorySettings};
use crate::ops::{self, AnyFixture, Op};
use crate::sizes;

/// Repetitions whose slowest run exceeds the fastest by more than this factor are flagged
/// as noisy in the tables.
pub const NOISY_SPREAD: f64 = 1.5;

/// One figure per contender per N.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    sizes: Vec<usize>,
    values: Vec<[Option<f64>; Contender::COUNT]>,
    spreads: Vec<[Option<f64>; Contender::COUNT]>,
}

impl Grid {
    /// An empty grid over `sizes`.
    pub fn new(sizes: &[usize]) -> Self {
        Self {
            sizes: sizes.to_vec(),
            values: vec![[None; Contender::COUNT]; sizes.len()],
            spreads: vec![[None; Contender::COUNT]; sizes.len()],
        }
    }

    /// The sizes N, in column order.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The figure of `contender` at the `column`-th size.
    pub fn get(&self, contender: Contender, column: usize) -> Option<f64> {
        self.values.get(column)?[contender.index()]
    }

    /// The figure of `contender` at size `n`.
    pub fn at(&self, contender: Contender, n: usize) -> Option<f64> {
        let column = self.sizes.iter().position(|&size| size == n)?;
        self.get(contender, column)
    }

    /// Records a figure.
    pub fn set(&mut self, contender: Contender, column: usize, value: f64) {
        self.values[column][contender.index()] = Some(value);
    }

    /// Slowest over fastest repetition, where measured.
    pub fn spread(&self, contender: Contender, column: usize) -> Option<f64> {
        self.spreads.get(column)?[contender.index()]
    }

    /// Records the spread of a timing.
    pub fn set_spread(&mut self, contender: Contender, column: usize, spread: f64) {
        self.spreads[column][contender.index()] = Some(spread);
    }

    /// The lowest figure among the persistent peers at the `column`-th size.
    pub fn best_peer(&self, column: usize) -> Option<(Contender, f64)> {
        Contender::PEERS
            .iter()
            .filter_map(|&peer| Some((peer, self.get(peer, column)?)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// The memory figures of every contender at every N.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryResults {
    /// Sizes N, in column order.
    pub sizes: Vec<usize>,
    /// `figures[column][contender.index()]`.
    pub figures: Vec<[MemoryFigures; Contender::COUNT]>,
    /// Allocations per persistent insert of an ideal CHAMP map, per column
    /// ([`memory::champ_allocations_per_insert`]).
    pub ideal_allocations_per_insert: Vec<f64>,
}

impl MemoryResults {
    /// One figure of every contender as a [`Grid`].
    pub fn grid(&self, figure: impl Fn(&MemoryFigures) -> Option<f64>) -> Grid {
        let mut grid = Grid::new(&self.sizes);
        for (column, figures) in self.figures.iter().enumerate() {
            for contender in Contender::ALL {
                if let Some(value) = figure(&figures[contender.index()]) {
                    grid.set(contender, column, value);
                }
            }
        }
        grid
    }
}

/// Everything the HAMT section measured.
#[derive(Clone, Debug, PartialEq)]
pub struct HamtResults {
    /// Sizes N, in column order.
    pub sizes: Vec<usize>,
    /// Nanoseconds per operation, per operation in [`Op::ALL`] order.
    pub timings: Vec<(Op, Grid)>,
    /// `None` when the counting allocator is not installed or memory was not asked for.
    pub memory: Option<MemoryResults>,
}

impl HamtResults {
    /// The timings of `op`.
    pub fn timing(&self, op: Op) -> Option<&Grid> {
        self.timings
            .iter()
            .find(|(measured, _)| *measured == op)
            .map(|(_, grid)| grid)
    }
}

/// Measures the HAMT section.
pub fn measure(config: &Config) -> HamtResults {
    let timings = measure_timings(config);
    let memory = if !config.memory {
        None
    } else if crate::alloc::is_installed() {
        Some(measure_memory(&config.sizes))
    } else {
        super::progress::line(
            "hamt: memory skipped: the counting allocator is not this binary's global allocator",
        );
        None
    };
    HamtResults {
        sizes: config.sizes.clone(),
        timings,
        memory,
    }
}

fn measure_timings(config: &Config) -> Vec<(Op, Grid)> {
    let mut timings: Vec<(Op, Grid)> = Op::ALL
        .iter()
        .map(|&op| (op, Grid::new(&config.sizes)))
        .collect();
    let steps = config.sizes.len() * Op::ALL.len();
    let mut step = 0;
    for (column, &n) in config.sizes.iter().enumerate() {
        let started = Instant::now();
        let keys = KeySet::new(n);
        let fixtures: Vec<Box<dyn AnyFixture + '_>> = Contender::ALL
            .iter()
            .map(|&contender| ops::fixture(contender, &keys))
            .collect();
        super::progress::line(&format!(
            "hamt: N={}: built the maps in {:.1} s",
            sizes::label(n),
            started.elapsed().as_secs_f64()
        ));
        let settings = config.mode.timing(n);
        for (op, grid) in &mut timings {
            let started = Instant::now();
            let (contenders, mut routines): (Vec<Contender>, Vec<Box<dyn Routine + '_>>) = fixtures
                .iter()
                .filter_map(|fixture| Some((fixture.contender(), fixture.routine(*op)?)))
                .unzip();
            let measured = harness::measure_interleaved(&mut routines, settings);
            drop(routines);
            let mut line = Vec::new();
            for (&contender, measurement) in contenders.iter().zip(&measured) {
                grid.set(contender, column, measurement.median_ns);
                grid.set_spread(
                    contender,
                    column,
                    measurement.max_ns / measurement.min_ns.max(1e-12),
                );
                line.push(format!(
                    "{} {}",
                    contender.name(),
                    super::table::format_ns(measurement.median_ns)
                ));
            }
            step += 1;
            super::progress::line(&format!(
                "hamt: [{step:>2}/{steps}] N={:<5} {:<18} {}  {} ({:.1} s)",
                sizes::label(n),
                op.name(),
                line.join(" | "),
                op.unit(),
                started.elapsed().as_secs_f64()
            ));
            super::progress::step();
        }
    }
    timings
}

fn measure_memory(sizes: &[usize]) -> MemoryResults {
    let mut figures = Vec::with_capacity(sizes.len());
    let mut ideal = Vec::with_capacity(sizes.len());
    for &n in sizes {
        let started = Instant::now();
        let keys = KeySet::new(n);
        let settings = MemorySettings::for_size(n);
        let mut row = [MemoryFigures::default(); Contender::COUNT];
        for contender in Contender::ALL {
            row[contender.index()] = memory::measure(contender, &keys, settings);
        }
        let trials = (100_000 / n.max(1)).clamp(1, 5_000);
        ideal.push(memory::champ_allocations_per_insert(n, trials));
        let ours = row[Contender::Ours.index()];
        super::progress::line(&format!(
            "hamt: memory N={:<5} ours {:.1} B/entry, {:.0} B retained per snapshot+set, {:.2} allocations per persistent insert ({:.1} s)",
            sizes::label(n),
            ours.bytes_per_entry,
            ours.retained_per_snapshot,
            ours.allocations_per_insert.unwrap_or(f64::NAN),
            started.elapsed().as_secs_f64()
        ));
        super::progress::step();
        figures.push(row);
    }
    MemoryResults {
        sizes: sizes.to_vec(),
        figures,
        ideal_allocations_per_insert: ideal,
    }
}
