//! Per-thread CPU time.
//!
//! The machines this project benchmarks on are shared: wall-clock time includes whatever
//! else the cores were doing, and a wall-clock run was observed to spread 2-3x. The CPU time
//! of the benchmarking thread only advances while that thread runs, so it is the clock of
//! both the report and the criterion benchmarks. It still includes cache and TLB misses
//! caused by neighbours, and page faults, which is why repetitions are also interleaved
//! (see [`crate::harness`]).

use std::time::Duration;

/// CPU time consumed so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
///
/// Only differences between two readings on the same thread are meaningful.
#[cfg(unix)]
#[allow(unsafe_code)]
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable `timespec` that outlives the call, which is all
    // `clock_gettime` writes to; `CLOCK_THREAD_CPUTIME_ID` is a clock id every supported
    // Unix accepts.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    Duration::new(seconds, nanos)
}

/// Elsewhere there is no portable thread CPU clock: fall back to monotonic wall time since
/// the first call.
#[cfg(not(unix))]
pub fn thread_cpu_time() -> Duration {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

/// CPU time consumed so far by every thread of the process (`CLOCK_PROCESS_CPUTIME_ID`): for
/// work spread over threads the caller does not own, such as a thread pool's workers.
///
/// Only differences are meaningful, and only while no other thread of the process is busy.
#[cfg(unix)]
#[allow(unsafe_code)]
pub fn process_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `thread_cpu_time`: `now` is a valid, writable `timespec` that outlives
    // the call, and `CLOCK_PROCESS_CPUTIME_ID` is a clock id every supported Unix accepts.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    Duration::new(seconds, nanos)
}

/// Elsewhere: the same fallback as [`thread_cpu_time`].
#[cfg(not(unix))]
pub fn process_cpu_time() -> Duration {
    thread_cpu_time()
}

/// Runs `f` and returns its result with the thread CPU time it took.
pub fn time<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = thread_cpu_time();
    let result = f();
    (result, thread_cpu_time().saturating_sub(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_advances_with_work() {
        let (sum, spent) = time(|| (0..5_000_000u64).map(std::hint::black_box).sum::<u64>());
        assert!(sum > 0);
        assert!(spent > Duration::ZERO);
    }
}
