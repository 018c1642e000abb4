//! Misuse that must not compile: PEP 567's run-time errors that the types rule out here.
//! Each case's expected compiler output is in `tests/compile_fail/*.stderr`
//! (regenerate with `TRYBUILD=overwrite` after a compiler upgrade, and read the diff).
//! Not built under Miri: these cases run the compiler, not this crate's code.
#![cfg(not(miri))]

#[test]
fn misuse_does_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/compile_fail/*.rs");
}
