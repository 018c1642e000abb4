//! Which map sizes N to run.
//!
//! Short runs stay short: sizes above 100k only run when asked for (`--full` for the report,
//! `HAMT_BENCH_FULL=1` for criterion), and `HAMT_BENCH_SIZES` picks an explicit list.

/// Sizes of a quick run.
pub const QUICK: [usize; 5] = [10, 100, 1_000, 10_000, 100_000];

/// Sizes of a full run: the quick ones and 1M.
pub const FULL: [usize; 6] = [10, 100, 1_000, 10_000, 100_000, 1_000_000];

/// Environment variable holding an explicit comma-separated size list, e.g. `10,1k,100k`.
pub const SIZES_VAR: &str = "HAMT_BENCH_SIZES";

/// Environment variable that, set to anything but `0` or empty, selects [`FULL`].
pub const FULL_VAR: &str = "HAMT_BENCH_FULL";

/// The sizes chosen by the environment: [`SIZES_VAR`] if set, else [`FULL`] if [`FULL_VAR`]
/// is set, else [`QUICK`].
pub fn from_env() -> Result<Vec<usize>, String> {
    if let Ok(list) = std::env::var(SIZES_VAR) {
        return parse_list(&list);
    }
    let full = std::env::var(FULL_VAR).is_ok_and(|value| !value.is_empty() && value != "0");
    Ok(if full { FULL.to_vec() } else { QUICK.to_vec() })
}

/// Parses a comma-separated list of sizes; `k` and `M` suffixes multiply by 10³ and 10⁶.
pub fn parse_list(list: &str) -> Result<Vec<usize>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse_size)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|sizes| {
            if sizes.is_empty() {
                Err(format!("no sizes in {list:?}"))
            } else {
                Ok(sizes)
            }
        })
}

fn parse_size(item: &str) -> Result<usize, String> {
    let (digits, scale) = match item.as_bytes().last() {
        Some(b'k' | b'K') => (&item[..item.len() - 1], 1_000),
        Some(b'm' | b'M') => (&item[..item.len() - 1], 1_000_000),
        _ => (item, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            format!("bad size {item:?}: expected a positive integer like 100, 10k or 1M")
        })
}

/// A short label for a size: `10`, `1k`, `100k`, `1M`.
pub fn label(n: usize) -> String {
    match n {
        _ if n >= 1_000_000 && n.is_multiple_of(1_000_000) => format!("{}M", n / 1_000_000),
        _ if n >= 1_000 && n.is_multiple_of(1_000) => format!("{}k", n / 1_000),
        _ => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_suffixes() {
        assert_eq!(
            parse_list("10, 1k,100K,1M").unwrap(),
            vec![10, 1_000, 100_000, 1_000_000]
        );
        assert!(parse_list("0").is_err());
        assert!(parse_list("ten").is_err());
        assert!(parse_list(",").is_err());
    }

    #[test]
    fn labels_are_short() {
        let labels: Vec<String> = FULL.iter().map(|&n| label(n)).collect();
        assert_eq!(labels, ["10", "100", "1k", "10k", "100k", "1M"]);
        assert_eq!(label(1_500), "1500");
    }
}
