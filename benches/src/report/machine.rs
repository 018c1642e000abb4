//! The report header: machine, toolchain, date.

use std::time::{SystemTime, UNIX_EPOCH};

/// Facts about where and when the report was measured.
#[derive(Clone, Debug)]
pub struct Machine {
    /// Date and time of the run, UTC, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// CPU model from `/proc/cpuinfo`, or `unknown`.
    pub cpu_model: String,
    /// The 1-, 5- and 15-minute load averages at the start, from `/proc/loadavg`.
    pub load_average: String,
    /// `rustc -V` of the compiler that built this binary.
    pub rustc: &'static str,
    /// Versions of the peer crates in `Cargo.lock`.
    pub peers: &'static str,
    /// The CPU level this binary was compiled for ([`target_cpu`]).
    pub target_cpu: &'static str,
}

/// The x86-64 level this binary was compiled for, from the target features enabled at
/// compile time: `x86-64-v3` (AVX2), `x86-64-v2` (POPCNT, SSE4.2), `x86-64 + popcnt`, else
/// `x86-64 (default)`,
/// which is what a crate gets in a user's build unless they pass `-C target-cpu`.
pub fn target_cpu() -> &'static str {
    if cfg!(not(target_arch = "x86_64")) {
        std::env::consts::ARCH
    } else if cfg!(all(
        target_feature = "avx2",
        target_feature = "bmi2",
        target_feature = "fma"
    )) {
        "x86-64-v3"
    } else if cfg!(all(target_feature = "popcnt", target_feature = "sse4.2")) {
        "x86-64-v2"
    } else if cfg!(target_feature = "popcnt") {
        // Not the default: the map's lookups use the instruction.
        "x86-64 + popcnt"
    } else {
        "x86-64 (default)"
    }
}

impl Machine {
    /// Reads the facts of this machine now.
    pub fn collect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|text| {
                text.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or(0);
        Self {
            date: utc_date_time(seconds),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            load_average,
            rustc: env!("BENCHES_RUSTC_VERSION"),
            peers: env!("BENCHES_PEER_VERSIONS"),
            target_cpu: target_cpu(),
        }
    }
}

/// `YYYY-MM-DD HH:MM UTC` for a count of seconds since the Unix epoch.
pub fn utc_date_time(seconds: u64) -> String {
    let (mut days, of_day) = (seconds / 86_400, seconds % 86_400);
    let mut year = 1970;
    loop {
        let length = if is_leap(year) { 366 } else { 365 };
        if days < length {
            break;
        }
        days -= length;
        year += 1;
    }
    let february = if is_leap(year) { 29 } else { 28 };
    let lengths = [31, february, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for length in lengths {
        if days < length {
            break;
        }
        days -= length;
        month += 1;
    }
    format!(
        "{year:04}-{month:02}-{:02} {:02}:{:02} UTC",
        days + 1,
        of_day / 3600,
        of_day % 3600 / 60
    )
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert() {
        assert_eq!(utc_date_time(0), "1970-01-01 00:00 UTC");
        // 2000-02-29 12:34 UTC, a leap day in a year divisible by 400.
        assert_eq!(utc_date_time(951_827_640), "2000-02-29 12:34 UTC");
        // 2024-12-31 23:59 UTC.
        assert_eq!(utc_date_time(1_735_689_540), "2024-12-31 23:59 UTC");
    }
}
