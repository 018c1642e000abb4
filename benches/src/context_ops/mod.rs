//! The context benchmarks: `contextvars` against `thread_local!`, tokio `task_local!`,
//! opentelemetry `Context` and `Arc`, operation by operation.
//!
//! [`cases`] lists every [`Case`]; the report and the criterion benchmark both take their
//! routines from it, so they time the same code. The timed functions are in [`ours`] and
//! [`peers`]; what "10 variables live" means for each contender is in [`crate::live`].

pub mod ours;
pub mod peers;

use std::sync::Arc;

use contextvars::{LogicalContext, copy_context, run_with_logical_context};

use crate::cases::{Case, Repeat};
use crate::harness::Routine;
use crate::live::{Live, NoContext, OTHER, OtelLive, OursLive, TokioLive};

/// Variables live in the current context unless an operation says otherwise.
pub const LIVE_VARS: usize = 10;

/// The live-variable counts of the snapshot operation.
pub const SNAPSHOT_LIVE: [usize; 3] = [1, 10, 1000];

crate::case_ops! {
    /// A benchmarked context operation.
    pub enum Op {
        /// Read a variable whose value is cached.
        GetHit => ("get, cache hit", "get_hit", "ns per read",
            "A read of a `u64` value that the contender already holds for this thread: \
            ours through the per-thread lookup cache (by clone with `get`, by borrow with \
            `with`), the peers from their thread-local slot. Every contender's read is an \
            `#[inline(never)]` function called through a function pointer, so no read can \
            be hoisted out of the loop; the baseline row is that call alone (a function \
            returning a constant), which every other row includes."),
        /// Enter a context and read a variable there, against entering alone.
        GetAfterSwitch => ("get after a context switch", "get_after_switch", "ns per enter + read + exit",
            "`ctx.run(|| VAR.get())` where `ctx` is a copy of the live context, entered again \
            and again on one thread, as an executor re-enters a task's context: a context \
            run again on the thread it last left keeps its cached reads, so the read is a \
            cache hit (a context entered for the first time on a thread walks its map, as \
            shown by the `ctx.clone()` pair: a clone is new to every thread). The cost of \
            the read after a switch is the difference from `ctx.run(|| ())`, shown in the \
            targets. tokio's `sync_scope` pair is for comparison (its read needs no lookup)."),
        /// Snapshot the current context and drop the snapshot.
        Snapshot => ("snapshot (copy_context) + drop", "snapshot", "ns per snapshot + drop",
            "Take a snapshot of the current context and drop it, with 1, 10 and 1000 \
            values live: ours `copy_context()`, opentelemetry `Context::current()` (a \
            clone), and a bare `Arc` clone for the price of one reference-count round trip."),
        /// Enter a context and leave it.
        Run => ("run: enter + exit", "run", "ns per enter + exit",
            "Make a prepared context (10 values) current, run an empty closure, restore the \
            previous one: ours `ctx.run(|| ())`, tokio `sync_scope(v, || ())`, \
            opentelemetry `cx.clone().attach()` and drop the guard. The closures return \
            `black_box(0)`, which the compiler must assume reads memory: otherwise it drops \
            tokio's swap pair altogether."),
        /// Set a variable in a context nobody shares.
        Set => ("set, context not shared", "set", "ns per set",
            "`VAR.set(v)` with a new `v` each time, dropping the token (and with it the \
            replaced value), in a context no snapshot shares: the map is edited in place."),
        /// Snapshot, set, drop the snapshot.
        SetAfterSnapshot => ("set after a snapshot", "set_after_snapshot", "ns per set",
            "`let s = copy_context(); VAR.set(v); drop(s)`: the set must copy a path of the \
            map, and dropping the snapshot frees the old one. opentelemetry's only way to \
            set, `Context::current_with_value(v).attach()` and drop the guard, copies its \
            map of 10 values every time."),
        /// Set and undo.
        SetReset => ("set + reset(token)", "set_reset", "ns per pair",
            "`VAR.reset(VAR.set(v))`, and the scoped form `VAR.scope(v, || ())`. The target \
            is relative to a plain set (the row above)."),
        /// Push a logical context and pop it.
        LcPushPop => ("logical context push + pop", "lc_push_pop", "ns per enter + exit",
            "`run_with_logical_context(&mut lc, || ())`: what a generator step adds. An empty \
            logical context keeps the lookup cache; a non-empty one (one variable set in \
            it) must invalidate it on push and on pop. The target applies to each way, \
            i.e. half the figure."),
    }
}

/// Every case of the context group, in report order: [`LIVE_VARS`] live unless stated.
pub fn cases() -> Vec<Case<Op>> {
    let live = LIVE_VARS;
    let mut cases = crate::case_table! { live;
        GetHit Baseline "call" "opaque call returning a constant"
            => |_| Repeat::new(NoContext, (), peers::floor).boxed();
        GetHit Ours "get" "`VAR.get()`"
            => |live| Repeat::new(OursLive::new(live), (), ours::get).boxed();
        GetHit Ours "with" "`VAR.with(|v| *v)`"
            => |live| Repeat::new(OursLive::new(live), (), ours::with).boxed();
        GetHit ThreadLocal "cell" "`CELL.get()` (const `Cell<u64>`)"
            => |_| Repeat::new(NoContext, (), peers::cell_get).boxed();
        GetHit Tokio "with" "`KEY.with(|v| *v)` in `sync_scope`"
            => |_| Repeat::new(TokioLive, (), peers::tokio_with).boxed();
        GetHit Otel "map_current" "`Context::map_current(|cx| cx.get::<K>())`"
            => |live| Repeat::new(OtelLive::new(live), (), peers::otel_map_current).boxed();
        GetHit Otel "current_get" "`Context::current().get::<K>()`"
            => |live| Repeat::new(OtelLive::new(live), (), peers::otel_current_get).boxed();
        GetAfterSwitch Ours "run_get" "`ctx.run(|| VAR.get())`"
            => |live| entered_copy(live, ours::run_get);
        GetAfterSwitch Ours "run" "`ctx.run(|| ())`" => |live| entered_copy(live, ours::run);
        GetAfterSwitch Ours "fresh_run_get" "`ctx.clone().run(|| VAR.get())`"
            => |live| entered_copy(live, ours::fresh_run_get);
        GetAfterSwitch Ours "fresh_run" "`ctx.clone().run(|| ())`"
            => |live| entered_copy(live, ours::fresh_run);
        GetAfterSwitch Tokio "scope_with" "`sync_scope(v, || KEY.with(|v| *v))`"
            => |_| Repeat::new(TokioLive, (), peers::tokio_scope_with).boxed();
        GetAfterSwitch Tokio "scope" "`sync_scope(v, || ())`"
            => |_| Repeat::new(TokioLive, (), peers::tokio_scope).boxed();
    };
    for live in SNAPSHOT_LIVE {
        cases.extend(crate::case_table! { live;
            Snapshot Ours "copy_context" "`drop(copy_context())`"
                => |live| Repeat::new(OursLive::new(live), (), ours::snapshot).boxed();
            Snapshot Otel "current" "`drop(Context::current())`"
                => |live| Repeat::new(OtelLive::new(live), (), peers::otel_current).boxed();
            Snapshot Arc "clone" "`drop(arc.clone())`" => |live| {
                let arc: Arc<[u64]> = (0..live as u64).collect();
                Repeat::new(NoContext, arc, peers::arc_clone).boxed()
            };
        });
    }
    cases.extend(crate::case_table! { live;
        // The floor again, interleaved with the runs it is subtracted from.
        Run Baseline "call" "opaque call returning a constant"
            => |_| Repeat::new(NoContext, (), peers::floor).boxed();
        Run Ours "run" "`ctx.run(|| ())`" => |live| entered_copy(live, ours::run);
        Run Tokio "sync_scope" "`sync_scope(v, || ())`"
            => |_| Repeat::new(TokioLive, (), peers::tokio_scope).boxed();
        Run Otel "attach" "`drop(cx.clone().attach())`" => |live| {
            let env = OtelLive::new(live);
            let context = env.context().clone();
            Repeat::new(env, context, peers::otel_attach).boxed()
        };
        Set Ours "set" "`drop(VAR.set(v))`"
            => |live| Repeat::new(OursLive::new(live), 1u64, ours::set).boxed();
        SetAfterSnapshot Ours "snapshot_set" "`let s = copy_context(); VAR.set(v); drop(s)`"
            => |live| Repeat::new(OursLive::new(live), 1u64, ours::snapshot_set).boxed();
        SetAfterSnapshot Otel "with_value_attach"
            "`drop(Context::current_with_value(K(v)).attach())`" => |live| {
            Repeat::new(OtelLive::new(live), 1u64, peers::otel_with_value_attach).boxed()
        };
        SetReset Ours "set_reset" "`VAR.reset(VAR.set(v))`"
            => |live| Repeat::new(OursLive::new(live), 1u64, ours::set_reset).boxed();
        SetReset Ours "scope" "`VAR.scope(v, || ())`"
            => |live| Repeat::new(OursLive::new(live), 1u64, ours::scope).boxed();
        LcPushPop Ours "empty" "`run_with_logical_context(&mut empty_lc, || ())`"
            => |live| Repeat::new(OursLive::new(live), LogicalContext::new(), ours::push_pop)
                .boxed();
        LcPushPop Ours "non_empty" "the same with one variable set in `lc`" => |live| {
            let mut lc = LogicalContext::new();
            run_with_logical_context(&mut lc, || drop(OTHER.set(1)));
            Repeat::new(OursLive::new(live), lc, ours::push_pop).boxed()
        };
    });
    cases
}

/// A routine calling `op` on a copy of the live context, from inside the live context (so
/// each call switches from one to the other and back).
fn entered_copy(live: usize, op: fn(&mut contextvars::Context) -> u64) -> Box<dyn Routine> {
    let mut env = OursLive::new(live);
    let copy = env.run(copy_context);
    Repeat::new(env, copy, op).boxed()
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
            routine.run(3);
            assert_eq!(routine.ops_per_call(), 1);
        }
        for op in Op::ALL {
            assert!(cases.iter().any(|case| case.op == op), "{op:?} has no case");
        }
    }

    #[test]
    fn the_timed_functions_see_the_live_values() {
        let mut env = OursLive::new(LIVE_VARS);
        assert_eq!(env.run(|| ours::get(&mut ())), 1);
        assert_eq!(env.run(|| ours::with(&mut ())), 1);
        let mut copy = env.run(copy_context);
        assert_eq!(env.run(|| ours::run_get(&mut copy)), 1);
        let mut next = 5;
        assert_eq!(env.run(|| ours::set_reset(&mut next)), 1);
        env.run(|| ours::set(&mut next));
        assert_eq!(env.context().get(&crate::live::VAR), Some(7));
        assert_eq!(TokioLive.run(|| peers::tokio_with(&mut ())), 1);
        assert_eq!(TokioLive.run(|| peers::tokio_scope_with(&mut ())), 2);
        let mut otel = OtelLive::new(LIVE_VARS);
        assert_eq!(otel.run(|| peers::otel_map_current(&mut ())), 1);
        assert_eq!(otel.run(|| peers::otel_current_get(&mut ())), 1);
        assert_eq!(peers::cell_get(&mut ()), 1);
    }
}
