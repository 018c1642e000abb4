//! A five-stage iterator chain, plain and with a logical context on every stage.

use std::hint::black_box;

use exec_context::IteratorExt;

/// Source elements per call.
pub const CHAIN_LEN: u64 = 1000;

fn scramble(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn keep(x: &u64) -> bool {
    x >> 61 != 0
}

fn fold_high(x: u64) -> u64 {
    x ^ (x >> 29)
}

fn rotate(x: u64) -> u64 {
    x.rotate_left(17)
}

fn offset(x: u64) -> u64 {
    x.wrapping_add(0x5851_F42D_4C95_7F2D)
}

/// `map → filter (keeps 7/8) → map → map → map`, summed.
#[inline(never)]
pub fn plain(_: &mut ()) -> u64 {
    (0..black_box(CHAIN_LEN))
        .map(scramble)
        .filter(keep)
        .map(fold_high)
        .map(rotate)
        .map(offset)
        .fold(0, u64::wrapping_add)
}

/// The same chain with `.with_logical_context()` after every stage: each element's `next`
/// pushes and pops five (nested) empty logical contexts.
#[inline(never)]
pub fn contextual(_: &mut ()) -> u64 {
    (0..black_box(CHAIN_LEN))
        .map(scramble)
        .with_logical_context()
        .filter(keep)
        .with_logical_context()
        .map(fold_high)
        .with_logical_context()
        .map(rotate)
        .with_logical_context()
        .map(offset)
        .with_logical_context()
        .fold(0, u64::wrapping_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_chains_compute_the_same() {
        assert_eq!(plain(&mut ()), contextual(&mut ()));
        let kept = (0..CHAIN_LEN).map(scramble).filter(keep).count();
        assert!(kept > 800 && kept < 950, "{kept}");
    }
}
