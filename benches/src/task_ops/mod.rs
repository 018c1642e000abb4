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

use crate::cases::{Case, Repeat};
use crate::live::{NoContext, OtelLive, OursLive, TASK_VALUE, TokioLive};
use generators::GenMode;
use polls::Polls;
use runtime::{Mode, RuntimePolls};
use spawns::SpawnJoin;

/// Variables live in the current context (and in every context the work starts from).
pub const LIVE_VARS: usize = 10;

crate::case_ops! {
    /// A benchmarked task operation.
    pub enum Op {
        /// Resume a generator that yields at once.
        GenResume => ("generator resume", "gen_resume", "ns per resume",
            "`generator.next()` on an endless `Gen` whose body only yields a counter. The \
            baseline is the same generator in context manager mode \
            (`set_logical_context(None)`: no logical context pushed); `Gen::new` pushes an \
            empty one per resume, and the last row one with a variable set in it (which \
            must invalidate the lookup cache on push and pop). The peer is genawaiter, \
            generators on stable Rust, with the same body: its `rc` (single-thread) and \
            `sync` (`Send`) flavours."),
        /// A five-stage iterator chain, per source element.
        IterChain => ("iterator chain, 5 stages", "iter_chain", "ns per element",
            "`(0..1000).map.filter.map.map.map` of cheap integer mixing, folded to a sum; \
            per source element. Ours puts `.with_logical_context()` after every stage, so \
            each element pushes and pops five nested empty logical contexts."),
        /// Poll a future through a context-carrying wrapper.
        Poll => ("task poll wrapper", "poll", "ns per poll",
            "A future that returns `Pending` N times, waking itself, polled through \
            `&mut dyn Future` with a no-op waker until it completes; per poll. The wrapper \
            is built before the clock starts: ours `.in_current_context()` (runs each \
            poll in the task's context, which a poll that uses no variable never moves \
            into the thread), tokio `KEY.scope(v, f)` (swaps a \
            task-local), opentelemetry `f.with_context(cx)` (clones and attaches its \
            context per poll)."),
        /// Poll a tokio task that yields, on a current-thread runtime.
        RuntimePoll => ("tokio task poll, runtime hooks", "runtime_poll", "ns per poll",
            "One tokio task that loops on `yield_now().await` on a current-thread runtime; \
            per yield (one poll each), timed inside the task. The baseline is a plain \
            task on a plain runtime; `hooks` the same plain task on a runtime built with \
            `exec_context::tokio::propagate` (needs `--cfg tokio_unstable`; the task \
            touches no variable, so its context is never entered); beside them the \
            task wrapped with `.in_current_context()` and with tokio's `KEY.scope(v, f)`."),
        /// The same, with one `ContextVar::get` per poll.
        RuntimePollGet => ("tokio task poll reading a variable, runtime hooks",
            "runtime_poll_get", "ns per poll",
            "As above, but the task reads one context variable after each yield, so every \
            poll uses its context: on the `propagate` runtime each poll fetches the task's \
            context and enters it (two atomic swaps and the move in and out); on the plain \
            runtime the read sees the thread's context."),
        /// Spawn a ready task on a current-thread tokio runtime and await it.
        SpawnJoin => ("tokio spawn + join", "spawn_join", "ns per spawn + join",
            "`spawn(ready(1)).await` in `block_on` on a current-thread runtime, with 10 \
            variables in the spawner's context: `tokio::spawn` against \
            `exec_context::tokio::spawn`, which snapshots the context and wraps the task, \
            and against plain `tokio::spawn` on a runtime built with `propagate` (the \
            spawn hook snapshots the context) and on one with four empty hooks (tokio's own \
            cost of hooks), all through the same loop (the last two need \
            `--cfg tokio_unstable`)."),
        /// Switch to a fiber and back.
        FiberSwitch => ("fiber switch", "fiber_switch", "ns per switch",
            "Two fibers whose bodies only yield, switched to in turn from the driver; per \
            switch (there and back). Ours gives each fiber a context of its own \
            (`FiberContext::Inherit`, a copy of the 10 live variables), swapped in for the \
            switch; the baseline fibers share the switcher's (`FiberContext::Share`)."),
    }
}

/// Every case of the task group, in report order.
pub fn cases() -> Vec<Case<Op>> {
    let live = LIVE_VARS;
    crate::case_table! { live;
        GenResume Baseline "no_lc" "`set_logical_context(None)`: no LC"
            => |live| generator(live, GenMode::Caller);
        GenResume Ours "empty_lc" "`Gen::new`: empty LC pushed per resume"
            => |live| generator(live, GenMode::EmptyLc);
        GenResume Ours "non_empty_lc" "LC with one variable set"
            => |live| generator(live, GenMode::NonEmptyLc);
        GenResume Genawaiter "rc" "`genawaiter::rc::Gen`, `next()`" => |live| {
            Repeat::new(OursLive::new(live), generators::genawaiter_rc(), generators::resume)
                .boxed()
        };
        GenResume Genawaiter "sync" "`genawaiter::sync::Gen`, `next()`" => |live| {
            Repeat::new(OursLive::new(live), generators::genawaiter_sync(), generators::resume)
                .boxed()
        };
        IterChain Baseline "plain" "plain chain"
            => |live| Repeat::batched(OursLive::new(live), (), iters::plain, iters::CHAIN_LEN)
                .boxed();
        IterChain Ours "with_logical_context" "`.with_logical_context()` on each stage" => |live| {
            Repeat::batched(OursLive::new(live), (), iters::contextual, iters::CHAIN_LEN).boxed()
        };
        Poll Baseline "bare" "the bare future"
            => |_| Box::new(Polls::new(NoContext, (), |_, future| future));
        Poll Ours "in_current_context" "`f.in_current_context()`" => |live| {
            Box::new(Polls::new(OursLive::new(live), (), |_, f| f.in_current_context()))
        };
        Poll Tokio "scope" "`KEY.scope(v, f)`" => |_| {
            Box::new(Polls::new(TokioLive, (), |_, future| TASK_VALUE.scope(2, future)))
        };
        Poll Otel "with_context" "`f.with_context(cx)`" => |live| {
            let env = OtelLive::new(live);
            let context = env.context().clone();
            Box::new(Polls::new(env, context, |context, future| {
                opentelemetry::context::FutureExt::with_context(future, context.clone())
            }))
        };
        RuntimePoll Baseline "bare" "plain task, plain runtime"
            => |live| Box::new(RuntimePolls::new(live, Mode::Bare));
        #[cfg(tokio_unstable)]
        RuntimePoll Ours "hooks" "plain task, `propagate` runtime"
            => |live| Box::new(RuntimePolls::new(live, Mode::Hooks));
        #[cfg(tokio_unstable)]
        RuntimePoll Tokio "empty_hooks" "plain task, runtime with 4 empty hooks"
            => |live| Box::new(RuntimePolls::new(live, Mode::EmptyHooks));
        RuntimePoll Ours "in_current_context" "`f.in_current_context()`, plain runtime"
            => |live| Box::new(RuntimePolls::new(live, Mode::Wrapper));
        RuntimePoll Tokio "scope" "`KEY.scope(v, f)`, plain runtime"
            => |live| Box::new(RuntimePolls::new(live, Mode::TokioScope));
        RuntimePollGet Baseline "bare" "plain task, plain runtime, `get` per poll"
            => |live| Box::new(RuntimePolls::new(live, Mode::Bare).reading());
        #[cfg(tokio_unstable)]
        RuntimePollGet Ours "hooks" "plain task, `propagate` runtime, `get` per poll"
            => |live| Box::new(RuntimePolls::new(live, Mode::Hooks).reading());
        RuntimePollGet Ours "in_current_context" "`f.in_current_context()`, `get` per poll"
            => |live| Box::new(RuntimePolls::new(live, Mode::Wrapper).reading());
        SpawnJoin Tokio "tokio_spawn" "`tokio::spawn(f).await`"
            => |live| Box::new(SpawnJoin::new(live, spawns::tokio_spawn));
        SpawnJoin Ours "exec_context_spawn" "`exec_context::tokio::spawn(f).await`"
            => |live| Box::new(SpawnJoin::new(live, spawns::ours_spawn));
        #[cfg(tokio_unstable)]
        SpawnJoin Tokio "empty_hooks" "`tokio::spawn(f).await`, runtime with 4 empty hooks"
            => |live| {
                let runtime = runtime::runtime(Mode::EmptyHooks);
                Box::new(SpawnJoin::on(runtime, live, spawns::tokio_spawn))
            };
        #[cfg(tokio_unstable)]
        SpawnJoin Ours "hooks" "`tokio::spawn(f).await`, `propagate` runtime"
            => |live| {
                Box::new(SpawnJoin::on(runtime::runtime(Mode::Hooks), live, spawns::tokio_spawn))
            };
        FiberSwitch Baseline "shared" "`FiberContext::Share`"
            => |live| fibers(live, || FiberContext::Share);
        FiberSwitch Ours "own_context" "`FiberContext::Inherit`"
            => |live| fibers(live, || FiberContext::Inherit);
    }
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
