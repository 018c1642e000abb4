//! The report's measurement loop: calibrated, repeated, interleaved, in thread CPU time.
//!
//! For one (operation, N) every contender gets a [`Routine`]. Each routine is first
//! calibrated to a number of calls that takes about [`Settings::target`] of CPU time (at
//! least one call). Then repetition 1 of every contender runs, then repetition 2, and so on,
//! so a burst of noise from a neighbour hits all contenders alike instead of one of them. The
//! result is the median over repetitions of the time per operation.

use std::time::Duration;

/// Something to time: a benchmarked operation with its inputs already built.
pub trait Routine {
    /// Makes `calls` calls and returns the thread CPU time they took, excluding any setup
    /// and teardown the routine does around them.
    fn run(&mut self, calls: u64) -> Duration;

    /// Operations per call: the time per operation is `run(calls) / (calls * ops_per_call)`.
    fn ops_per_call(&self) -> u64;

    /// For routines that run on several threads, whose [`run`](Self::run) returns elapsed
    /// wall-clock time (a throughput or a hand-off latency has no single thread to clock):
    /// the CPU time all their threads spent in the last run. `None`, the default, for
    /// single-threaded routines, whose `run` already returns thread CPU time.
    fn last_cpu_time(&self) -> Option<Duration> {
        None
    }
}

/// How long and how often to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// CPU time one repetition should take; a repetition is never less than one call.
    pub target: Duration,
    /// Repetitions per routine; the reported figure is their median.
    pub reps: usize,
}

/// The outcome for one routine, in nanoseconds per operation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// Median over the repetitions.
    pub median_ns: f64,
    /// Fastest repetition.
    pub min_ns: f64,
    /// Slowest repetition.
    pub max_ns: f64,
    /// Calls per repetition, as calibrated.
    pub calls: u64,
    /// Median over the repetitions of the CPU time per operation of all the routine's
    /// threads, for routines that report it ([`Routine::last_cpu_time`]).
    pub cpu_median_ns: Option<f64>,
}

/// Never calibrate to more calls than this, whatever the clock says.
const MAX_CALLS: u64 = 1 << 40;

/// The number of calls of `routine` that takes about `target` of CPU time (at least 1).
///
/// The calibration runs double as warm-up.
pub fn calibrate(routine: &mut dyn Routine, target: Duration) -> u64 {
    // Grow until one run takes an eighth of the target, long enough to extrapolate from.
    let floor = target.as_secs_f64() / 8.0;
    let mut calls: u64 = 1;
    loop {
        let spent = routine.run(calls).as_secs_f64();
        if spent >= floor || calls >= MAX_CALLS {
            let scaled = calls as f64 * target.as_secs_f64() / spent.max(1e-9);
            return (scaled.round() as u64).clamp(1, MAX_CALLS);
        }
        let growth = if spent <= 0.0 {
            100.0
        } else {
            (1.5 * floor / spent).clamp(2.0, 100.0)
        };
        calls = ((calls as f64 * growth) as u64).min(MAX_CALLS);
    }
}

/// Calibrates every routine, then runs `settings.reps` interleaved repetitions of all of
/// them; one [`Measurement`] per routine, in order.
pub fn measure_interleaved(
    routines: &mut [Box<dyn Routine + '_>],
    settings: Settings,
) -> Vec<Measurement> {
    let calls: Vec<u64> = routines
        .iter_mut()
        .map(|routine| calibrate(&mut **routine, settings.target))
        .collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(settings.reps); routines.len()];
    let mut cpu_samples: Vec<Vec<f64>> = vec![Vec::new(); routines.len()];
    for _ in 0..settings.reps.max(1) {
        for (((routine, &calls), samples), cpu_samples) in routines
            .iter_mut()
            .zip(&calls)
            .zip(&mut samples)
            .zip(&mut cpu_samples)
        {
            let spent = routine.run(calls);
            let ops = calls.saturating_mul(routine.ops_per_call()).max(1) as f64;
            samples.push(spent.as_secs_f64() * 1e9 / ops);
            if let Some(cpu) = routine.last_cpu_time() {
                cpu_samples.push(cpu.as_secs_f64() * 1e9 / ops);
            }
        }
    }
    samples
        .into_iter()
        .zip(cpu_samples)
        .zip(calls)
        .map(|((mut samples, mut cpu_samples), calls)| {
            samples.sort_by(f64::total_cmp);
            cpu_samples.sort_by(f64::total_cmp);
            Measurement {
                median_ns: median_of_sorted(&samples),
                min_ns: samples[0],
                max_ns: samples[samples.len() - 1],
                calls,
                cpu_median_ns: (cpu_samples.len() == samples.len())
                    .then(|| median_of_sorted(&cpu_samples)),
            }
        })
        .collect()
}

/// The median of a sorted, non-empty slice (the mean of the middle two for even lengths).
pub fn median_of_sorted(sorted: &[f64]) -> f64 {
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    /// Spins for a fixed amount of work per call.
    struct Spin(u64);

    impl Routine for Spin {
        fn run(&mut self, calls: u64) -> Duration {
            clock::time(|| {
                for call in 0..calls {
                    std::hint::black_box((0..self.0).fold(call, |a, b| a ^ b.wrapping_mul(31)));
                }
            })
            .1
        }

        fn ops_per_call(&self) -> u64 {
            1
        }
    }

    #[test]
    fn calibration_reaches_the_target_roughly() {
        let mut spin = Spin(1_000);
        let target = Duration::from_millis(2);
        let calls = calibrate(&mut spin, target);
        let spent = spin.run(calls);
        assert!(
            spent > target / 4 && spent < target * 8,
            "{spent:?} for {calls} calls"
        );
    }

    #[test]
    fn interleaving_measures_every_routine() {
        let mut routines: Vec<Box<dyn Routine>> = vec![Box::new(Spin(100)), Box::new(Spin(10_000))];
        let settings = Settings {
            target: Duration::from_millis(1),
            reps: 3,
        };
        let results = measure_interleaved(&mut routines, settings);
        assert_eq!(results.len(), 2);
        assert!(results[0].median_ns < results[1].median_ns);
        assert!(
            results
                .iter()
                .all(|m| m.min_ns <= m.median_ns && m.median_ns <= m.max_ns)
        );
    }

    #[test]
    fn median_handles_both_parities() {
        assert_eq!(median_of_sorted(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median_of_sorted(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }
}
