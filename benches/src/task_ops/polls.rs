//! The per-poll cost of task wrappers: a future that is pending a given number of times,
//! polled by a minimal executor loop.

use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use crate::clock::thread_cpu_time;
use crate::harness::Routine;
use crate::live::Live;

/// A future that returns `Pending` `remaining` times, waking itself each time (as a task
/// that yields to its executor does), then `Ready(remaining polls)`.
#[derive(Clone, Copy, Debug)]
pub struct SelfWaking {
    remaining: u64,
}

impl SelfWaking {
    /// Pending `remaining` times, then ready.
    pub fn new(remaining: u64) -> Self {
        Self { remaining }
    }
}

impl Future for SelfWaking {
    type Output = u64;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<u64> {
        if self.remaining == 0 {
            return Poll::Ready(0);
        }
        self.remaining -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Polls a wrapped [`SelfWaking`] until it completes: one operation per poll.
///
/// The wrapper is built by `wrap(&state, pending)` inside the live context and before the
/// clock starts, and dropped after it stops. Polls go through `&mut dyn Future`, as an
/// executor's task harness does, with a no-op waker.
pub struct Polls<L, S, F> {
    live: L,
    state: S,
    wrap: fn(&S, SelfWaking) -> F,
}

impl<L, S, F> Polls<L, S, F> {
    /// Polls of `wrap(&state, future)` inside `live`.
    pub fn new(live: L, state: S, wrap: fn(&S, SelfWaking) -> F) -> Self {
        Self { live, state, wrap }
    }
}

impl<L: Live, S, F: Future<Output = u64>> Routine for Polls<L, S, F> {
    fn run(&mut self, calls: u64) -> Duration {
        let Self { live, state, wrap } = self;
        live.run(|| {
            let mut future = pin!(wrap(state, SelfWaking::new(calls.saturating_sub(1))));
            let mut future: Pin<&mut dyn Future<Output = u64>> = black_box(future.as_mut());
            let mut cx = TaskContext::from_waker(Waker::noop());
            let start = thread_cpu_time();
            let output = loop {
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    break output;
                }
            };
            let spent = thread_cpu_time().saturating_sub(start);
            black_box(output);
            spent
        })
    }

    fn ops_per_call(&self) -> u64 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::NoContext;

    #[test]
    fn one_poll_per_call() {
        let mut polls = Polls::new(NoContext, (), |_, future| future);
        polls.run(1);
        polls.run(5);
        let mut future = pin!(SelfWaking::new(2));
        let mut cx = TaskContext::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(0));
    }
}
