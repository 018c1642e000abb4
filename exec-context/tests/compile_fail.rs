//! Compile-fail tests: what the type system must refuse. Each `compile_fail/*.rs` must fail to
//! compile with the error recorded next to it in `*.stderr`.
//!
//! The recorded errors come from the stable compiler these were generated with (1.95); a
//! newer compiler may word them differently. Regenerate with
//! `TRYBUILD=overwrite cargo test -p exec-context --test compile_fail`, then read the new
//! `.stderr` files to check they still show the intended error.

#[test]
fn compile_fail() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/compile_fail/*.rs");
}
