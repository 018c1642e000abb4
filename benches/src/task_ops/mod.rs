//! The task benchmarks: what `exec-context` adds to generators, iterators, futures, tokio
//! tasks and fibers, against the same work without it and against tokio and opentelemetry.
//!
//! [`cases`] lists every [`Case`], for the report and the criterion benchmark alike.

pub mod generators;
pub mod iters;
pub mod polls;
pub mod runtime;
pub mod spawns;

use exec_context::FutureExt as _;
use exec_context::fiber::FiberContext;

use crate::cases::{Case, CaseOp, Contender, Repeat};
use crate::live::{NoContext, OtelLive, OursLive, TASK_VALUE, TokioLive};
use generators::GenMode;
use polls::Polls;
use runtime::{Mode, RuntimePolls};
use spawns::SpawnJoin;

/// Variables live in the current context (and in every context the work starts from).
pub const LIVE_VARS: usize = 10;

/// A benchmarked task operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Resume a generator that yields at once.
    GenResume,
    /// A five-stage iterator chain, per source element.
    IterChain,
    /// Poll a future through a context-carrying wrapper.
    Poll,
    /// Poll a tokio task that yields, on a current-thread runtime.
    RuntimePoll,
    /// Spawn a ready task on a current-thread tokio runtime and await it.
    SpawnJoin,
    /// Switch to a fiber and back.
    FiberSwitch,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Self; 6] = [
        Self::GenResume,
        Self::IterChain,
        Self::Poll,
        Self::RuntimePoll,
        Self::SpawnJoin,
        Self::FiberSwitch,
    ];
}

impl CaseOp for Op {
    fn name(self) -> &'static str {
        match self {
            Self::GenResume => "generator resume",
            Self::IterChain => "iterator chain, 5 stages",
            Self::Poll => "task poll wrapper",
            Self::RuntimePoll => "tokio task poll, runtime hooks",
            Self::SpawnJoin => "tokio spawn + join",
            Self::FiberSwitch => "fiber switch",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::GenResume => "gen_resume",
            Self::IterChain => "iter_chain",
            Self::Poll => "poll",
            Self::RuntimePoll => "runtime_poll",
            Self::SpawnJoin => "spawn_join",
            Self::FiberSwitch => "fiber_switch",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::GenResume => "ns per resume",
            Self::IterChain => "ns per element",
            Self::Poll => "ns per poll",
            Self::RuntimePoll => "ns per poll",
            Self::SpawnJoin => "ns per spawn + join",
            Self::FiberSwitch => "ns per switch",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::GenResume => {
                "`generator.next()` on an endless `Gen` whose body only yields a counter. The \
                 baseline is the same generator in context manager mode \
                 (`set_logical_context(None)`: no logical context pushed); `Gen::new` pushes an \
                 empty one per resume, and the last row one with a variable set in it (which \
                 must invalidate the lookup cache on push and pop). The peer is genawaiter, \
                 generators on stable Rust, with the same body: its `rc` (single-thread) and \
                 `sync` (`Send`) flavours."
            }
            Self::IterChain => {
                "`(0..1000).map.filter.map.map.map` of cheap integer mixing, folded to a sum; \
                 per source element. Ours puts `.with_logical_context()` after every stage, so \
                 each element pushes and pops five nested empty logical contexts."
            }
            Self::Poll => {
                "A future that returns `Pending` N times, waking itself, polled through \
                 `&mut dyn Future` with a no-op waker until it completes; per poll. The wrapper \
                 is built before the clock starts: ours `.in_current_context()` (swaps the \
                 task's context in and out per poll), tokio `KEY.scope(v, f)` (swaps a \
                 task-local), opentelemetry `f.with_context(cx)` (clones and attaches its \
                 context per poll)."
            }
            Self::RuntimePoll => {
                "One tokio task that loops on `yield_now().await` on a current-thread runtime; \
                 per yield (one poll each), timed inside the task. The baseline is a plain \
                 task on a plain runtime; `hooks` the same plain task on a runtime built with \
                 `exec_context::tokio::propagate` (task hooks enter and exit the task's \
                 context around every poll; needs `--cfg tokio_unstable`); beside them the \
                 task wrapped with `.in_current_context()` and with tokio's `KEY.scope(v, f)`."
            }
            Self::SpawnJoin => {
                "`spawn(ready(1)).await` in `block_on` on a current-thread runtime, with 10 \
                 variables in the spawner's context: `tokio::spawn` against \
                 `exec_context::tokio::spawn`, which snapshots the context and wraps the task, \
                 and against plain `tokio::spawn` on a runtime built with `propagate` (the \
                 spawn hook snapshots the context; needs `--cfg tokio_unstable`)."
            }
            Self::FiberSwitch => {
                "Two fibers whose bodies only yield, switched to in turn from the driver; per \
                 switch (there and back). Ours gives each fiber a context of its own \
                 (`FiberContext::Inherit`, a copy of the 10 live variables), swapped in for the \
                 switch; the baseline fibers share the switcher's (`FiberContext::Share`)."
            }
        }
    }
}

/// Every case of the task group, in report order.
pub fn cases() -> Vec<Case<Op>> {
    use Contender::{Baseline, Otel, Ours, Tokio};
    let live = LIVE_VARS;
    vec![
        Case::new(
            Op::GenResume,
            Baseline,
            "no_lc",
            "`set_logical_context(None)`: no LC",
            live,
            |live| generator(live, GenMode::Caller),
        ),
        Case::new(
            Op::GenResume,
            Ours,
            "empty_lc",
            "`Gen::new`: empty LC pushed per resume",
            live,
            |live| generator(live, GenMode::EmptyLc),
        ),
        Case::new(
            Op::GenResume,
            Ours,
            "non_empty_lc",
            "LC with one variable set",
            live,
            |live| generator(live, GenMode::NonEmptyLc),
        ),
        Case::new(
            Op::GenResume,
            Contender::Genawaiter,
            "rc",
            "`genawaiter::rc::Gen`, `next()`",
            live,
            |live| {
                Repeat::new(
                    OursLive::new(live),
                    generators::genawaiter_rc(),
                    generators::resume,
                )
                .boxed()
            },
        ),
        Case::new(
            Op::GenResume,
            Contender::Genawaiter,
            "sync",
            "`genawaiter::sync::Gen`, `next()`",
            live,
            |live| {
                Repeat::new(
                    OursLive::new(live),
                    generators::genawaiter_sync(),
                    generators::resume,
                )
                .boxed()
            },
        ),
        Case::new(
            Op::IterChain,
            Baseline,
            "plain",
            "plain chain",
            live,
            |live| Repeat::batched(OursLive::new(live), (), iters::plain, iters::CHAIN_LEN).boxed(),
        ),
        Case::new(
            Op::IterChain,
            Ours,
            "with_logical_context",
            "`.with_logical_context()` on each stage",
            live,
            |live| {
                Repeat::batched(OursLive::new(live), (), iters::contextual, iters::CHAIN_LEN)
                    .boxed()
            },
        ),
        Case::new(Op::Poll, Baseline, "bare", "the bare future", live, |_| {
            Box::new(Polls::new(NoContext, (), |_, future| future))
        }),
        Case::new(
            Op::Poll,
            Ours,
            "in_current_context",
            "`f.in_current_context()`",
            live,
            |live| {
                Box::new(Polls::new(OursLive::new(live), (), |_, future| {
                    future.in_current_context()
                }))
            },
        ),
        Case::new(Op::Poll, Tokio, "scope", "`KEY.scope(v, f)`", live, |_| {
            Box::new(Polls::new(TokioLive, (), |_, future| {
                TASK_VALUE.scope(2, future)
            }))
        }),
        Case::new(
            Op::Poll,
            Otel,
            "with_context",
            "`f.with_context(cx)`",
            live,
            |live| {
                let env = OtelLive::new(live);
                let context = env.context().clone();
                Box::new(Polls::new(env, context, |context, future| {
                    opentelemetry::context::FutureExt::with_context(future, context.clone())
                }))
            },
        ),
        Case::new(
            Op::RuntimePoll,
            Baseline,
            "bare",
            "plain task, plain runtime",
            live,
            |live| Box::new(RuntimePolls::new(live, Mode::Bare)),
        ),
        #[cfg(tokio_unstable)]
        Case::new(
            Op::RuntimePoll,
            Ours,
            "hooks",
            "plain task, `propagate` runtime",
            live,
            |live| Box::new(RuntimePolls::new(live, Mode::Hooks)),
        ),
        #[cfg(tokio_unstable)]
        Case::new(
            Op::RuntimePoll,
            Tokio,
            "empty_hooks",
            "plain task, runtime with 4 empty hooks",
            live,
            |live| Box::new(RuntimePolls::new(live, Mode::EmptyHooks)),
        ),
        Case::new(
            Op::RuntimePoll,
            Ours,
            "in_current_context",
            "`f.in_current_context()`, plain runtime",
            live,
            |live| Box::new(RuntimePolls::new(live, Mode::Wrapper)),
        ),
        Case::new(
            Op::RuntimePoll,
            Tokio,
            "scope",
            "`KEY.scope(v, f)`, plain runtime",
            live,
            |live| Box::new(RuntimePolls::new(live, Mode::TokioScope)),
        ),
        Case::new(
            Op::SpawnJoin,
            Tokio,
            "tokio_spawn",
            "`tokio::spawn(f).await`",
            live,
            |live| Box::new(SpawnJoin::new(live, spawns::tokio_spawn)),
        ),
        Case::new(
            Op::SpawnJoin,
            Ours,
            "exec_context_spawn",
            "`exec_context::tokio::spawn(f).await`",
            live,
            |live| Box::new(SpawnJoin::new(live, spawns::ours_spawn)),
        ),
        #[cfg(tokio_unstable)]
        Case::new(
            Op::SpawnJoin,
            Tokio,
            "empty_hooks",
            "`tokio::spawn(f).await`, runtime with 4 empty hooks",
            live,
            |live| Box::new(runtime::RuntimeSpawnJoin::new(live, Mode::EmptyHooks)),
        ),
        #[cfg(tokio_unstable)]
        Case::new(
            Op::SpawnJoin,
            Ours,
            "hooks",
            "`tokio::spawn(f).await`, `propagate` runtime",
            live,
            |live| Box::new(runtime::RuntimeSpawnJoin::new(live, Mode::Hooks)),
        ),
        Case::new(
            Op::FiberSwitch,
            Baseline,
            "shared",
            "`FiberContext::Share`",
            live,
            |live| fibers(live, || FiberContext::Share),
        ),
        Case::new(
            Op::FiberSwitch,
            Ours,
            "own_context",
            "`FiberContext::Inherit`",
            live,
            |live| fibers(live, || FiberContext::Inherit),
        ),
    ]
}

fn generator(live: usize, mode: GenMode) -> Box<dyn crate::harness::Routine> {
    Repeat::new(
        OursLive::new(live),
        generators::counter(mode),
        generators::resume,
    )
    .boxed()
}

fn fibers(live: usize, policy: fn() -> FiberContext) -> Box<dyn crate::harness::Routine> {
    use crate::live::Live as _;
    let mut env = OursLive::new(live);
    // Made inside the live context, so `Inherit` copies it.
    let pair = env.run(|| {
        [
            generators::idle_fiber(policy()),
            generators::idle_fiber(policy()),
        ]
    });
    Repeat::batched(env, pair, generators::ping_pong, 2).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_runs_and_ids_are_unique() {
        let cases = cases();
        let mut ids = std::collections::HashSet::new();
        for case in &cases {
            assert!(ids.insert(case.id()), "duplicate id {}", case.id());
            let mut routine = case.routine();
            routine.run(1);
            routine.run(4);
        }
        for op in Op::ALL {
            assert!(cases.iter().any(|case| case.op == op), "{op:?} has no case");
        }
    }

    #[test]
    fn generators_and_fibers_keep_going() {
        let mut plain = generators::counter(GenMode::Caller);
        let mut own = generators::counter(GenMode::NonEmptyLc);
        for expected in 0..3 {
            assert_eq!(generators::resume(&mut plain), expected);
            assert_eq!(generators::resume(&mut own), expected);
        }
        assert_eq!(crate::live::OTHER.get(), None);
        let mut pair = [
            generators::idle_fiber(FiberContext::Inherit),
            generators::idle_fiber(FiberContext::Share),
        ];
        assert_eq!(generators::ping_pong(&mut pair), 2);
        assert_eq!(generators::ping_pong(&mut pair), 2);
    }
}
