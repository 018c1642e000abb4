//! Generator resumes and fiber switches.

use std::future::Future;

use contextvars::{LogicalContext, run_with_logical_context};
use exec_context::Gen;
use exec_context::fiber::{Fiber, FiberContext};

use crate::live::OTHER;

/// How a generator runs its steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenMode {
    /// Context manager mode (`set_logical_context(None)`): steps run in the caller's context,
    /// with no logical context pushed. The baseline.
    Caller,
    /// Its own logical context, empty (what `Gen::new` gives).
    EmptyLc,
    /// Its own logical context with one variable set in it.
    NonEmptyLc,
}

/// An endless generator yielding 0, 1, 2, … in `mode`.
pub fn counter(mode: GenMode) -> Gen<u64, (), (), impl Future<Output = ()>> {
    let mut generator = Gen::new(|co| async move {
        let mut next = 0u64;
        loop {
            co.yield_(next).await;
            next = next.wrapping_add(1);
        }
    });
    match mode {
        GenMode::Caller => generator.set_logical_context(None),
        GenMode::EmptyLc => {}
        GenMode::NonEmptyLc => {
            let mut lc = LogicalContext::new();
            run_with_logical_context(&mut lc, || drop(OTHER.set(1)));
            generator.set_logical_context(Some(lc));
        }
    }
    generator
}

/// `genawaiter`'s reference-counted generator with the same body, as an iterator.
pub fn genawaiter_rc() -> impl Iterator<Item = u64> {
    genawaiter::rc::Gen::new(|co| async move {
        let mut next = 0u64;
        loop {
            co.yield_(next).await;
            next = next.wrapping_add(1);
        }
    })
    .into_iter()
}

/// `genawaiter`'s thread-safe (`Send`) generator with the same body, as an iterator.
pub fn genawaiter_sync() -> impl Iterator<Item = u64> {
    genawaiter::sync::Gen::new(|co| async move {
        let mut next = 0u64;
        loop {
            co.yield_(next).await;
            next = next.wrapping_add(1);
        }
    })
    .into_iter()
}

/// One resume: `generator.next()`.
#[inline(never)]
pub fn resume<I: Iterator<Item = u64>>(generator: &mut I) -> u64 {
    generator.next().unwrap_or(0)
}

/// A fiber that yields forever.
pub fn idle_fiber(policy: FiberContext) -> Fiber<()> {
    Fiber::new(policy, |co| async move {
        loop {
            co.yield_(()).await;
        }
    })
}

/// Switches to each of two fibers in turn: two switches (each one there and back).
#[inline(never)]
pub fn ping_pong(fibers: &mut [Fiber<()>; 2]) -> u64 {
    let [ping, pong] = fibers;
    u64::from(ping.switch().is_ok()) + u64::from(pong.switch().is_ok())
}
