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

/// How many wrapper steps (a logical context pushed and popped) [`contextual`] makes per
/// source element: the first wrapper runs for every element, the four after the filter only
/// for the elements it keeps (and each once more for the end).
pub fn wrapper_steps_per_element() -> f64 {
    let kept = (0..CHAIN_LEN).map(scramble).filter(keep).count() as f64;
    let len = CHAIN_LEN as f64;
    ((len + 1.0) + 4.0 * (kept + 1.0)) / len
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

    /// Counts the `next` calls of the iterator it wraps.
    struct Counted<'a, I>(I, &'a std::cell::Cell<u64>);

    impl<I: Iterator> Iterator for Counted<'_, I> {
        type Item = I::Item;
        fn next(&mut self) -> Option<I::Item> {
            self.1.set(self.1.get() + 1);
            self.0.next()
        }
    }

    /// The chain with a counter where `contextual` has its wrappers: their `next` calls per
    /// source element are what `wrapper_steps_per_element` says.
    #[test]
    fn wrapper_steps_are_counted_per_source_element() {
        let calls = std::cell::Cell::new(0);
        let sum = Counted(
            Counted(
                Counted(
                    Counted(
                        Counted((0..CHAIN_LEN).map(scramble), &calls).filter(keep),
                        &calls,
                    )
                    .map(fold_high),
                    &calls,
                )
                .map(rotate),
                &calls,
            )
            .map(offset),
            &calls,
        )
        .fold(0, u64::wrapping_add);
        assert_eq!(sum, plain(&mut ()));
        let per_element = calls.get() as f64 / CHAIN_LEN as f64;
        assert!(
            (per_element - wrapper_steps_per_element()).abs() < 1e-9,
            "{per_element}"
        );
        assert!(per_element < 4.9, "{per_element}");
    }

    #[test]
    fn both_chains_compute_the_same() {
        assert_eq!(plain(&mut ()), contextual(&mut ()));
        let kept = (0..CHAIN_LEN).map(scramble).filter(keep).count();
        assert!(kept > 800 && kept < 950, "{kept}");
    }
}
