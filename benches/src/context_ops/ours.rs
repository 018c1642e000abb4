//! Our side of the context benchmarks: `contextvars` operations, one `fn` each.
//!
//! Every function is `#[inline(never)]` and is called through a function pointer by
//! [`Repeat`](crate::cases::Repeat), like the peers' functions in
//! [`peers`](super::peers). The `&mut` argument is the case's state, built before the clock
//! starts; the return value feeds a checksum.

use std::hint::black_box;

use contextvars::{Context, LogicalContext, copy_context, run_with_logical_context};

use crate::live::VAR;

/// `VAR.get()`: a cache hit after the first call.
#[inline(never)]
pub fn get(_: &mut ()) -> u64 {
    VAR.get().unwrap_or(0)
}

/// `VAR.with(|v| ..)`: the borrowing read.
#[inline(never)]
pub fn with(_: &mut ()) -> u64 {
    VAR.with(|value| value.copied().unwrap_or(0))
}

/// `ctx.run(|| VAR.get())`: re-entering `ctx` on the thread it last left keeps its cached reads.
#[inline(never)]
pub fn run_get(context: &mut Context) -> u64 {
    context.run(|| VAR.get().unwrap_or(0))
}

/// `ctx.clone().run(|| VAR.get())`: a clone is new to every thread, so its first read of
/// each variable walks its map.
#[inline(never)]
pub fn fresh_run_get(context: &mut Context) -> u64 {
    context.clone().run(|| VAR.get().unwrap_or(0))
}

/// `ctx.clone().run(|| ())`: clone, enter, exit and drop.
#[inline(never)]
pub fn fresh_run(context: &mut Context) -> u64 {
    context.clone().run(|| 0)
}

/// `ctx.run(|| ())`: enter and exit. The closure's `black_box` stands for the code a run
/// exists for: the compiler must assume it reads the context, as with tokio's (see
/// [`peers::tokio_scope`](super::peers::tokio_scope)).
#[inline(never)]
pub fn run(context: &mut Context) -> u64 {
    context.run(|| black_box(0))
}

/// `copy_context()`, then drop the copy.
#[inline(never)]
pub fn snapshot(_: &mut ()) -> u64 {
    let snapshot = copy_context();
    drop(black_box(snapshot));
    0
}

/// `VAR.set(v)` into a context nobody shares, dropping the token (and with it the old value).
#[inline(never)]
pub fn set(next: &mut u64) -> u64 {
    *next = next.wrapping_add(1);
    drop(VAR.set(*next));
    0
}

/// `let s = copy_context(); VAR.set(v); drop(s)`: the set must copy a path, and dropping the
/// snapshot frees the old one.
#[inline(never)]
pub fn snapshot_set(next: &mut u64) -> u64 {
    let snapshot = copy_context();
    *next = next.wrapping_add(1);
    drop(VAR.set(*next));
    drop(black_box(snapshot));
    0
}

/// `VAR.reset(VAR.set(v))`.
#[inline(never)]
pub fn set_reset(next: &mut u64) -> u64 {
    *next = next.wrapping_add(1);
    let token = VAR.set(*next);
    u64::from(VAR.reset(token).is_ok())
}

/// `VAR.scope(v, || ())`: set, run, reset.
#[inline(never)]
pub fn scope(next: &mut u64) -> u64 {
    *next = next.wrapping_add(1);
    VAR.scope(*next, || 0)
}

/// `run_with_logical_context(&mut lc, || ())`: push `lc`, pop it. The closure's
/// `black_box` stands for the code a scope runs, as in [`run`]: with a transparent closure
/// the compiler could fold the lazy push's store and the pop's into nothing.
#[inline(never)]
pub fn push_pop(lc: &mut LogicalContext) -> u64 {
    run_with_logical_context(lc, || black_box(0))
}
