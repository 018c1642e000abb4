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

use crate::cases::{Case, CaseOp, Contender, Repeat};
use crate::harness::Routine;
use crate::live::{Live, NoContext, OTHER, OtelLive, OursLive, TokioLive};

/// Variables live in the current context unless an operation says otherwise.
pub const LIVE_VARS: usize = 10;

/// The live-variable counts of the snapshot operation.
pub const SNAPSHOT_LIVE: [usize; 3] = [1, 10, 1000];

/// A benchmarked context operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read a variable whose value is cached.
    GetHit,
    /// Enter a context and read a variable there (the cache cannot answer), against entering
    /// alone.
    GetAfterSwitch,
    /// Snapshot the current context and drop the snapshot.
    Snapshot,
    /// Enter a context and leave it.
    Run,
    /// Set a variable in a context nobody shares.
    Set,
    /// Snapshot, set, drop the snapshot.
    SetAfterSnapshot,
    /// Set and undo.
    SetReset,
    /// Push a logical context and pop it.
    LcPushPop,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Self; 8] = [
        Self::GetHit,
        Self::GetAfterSwitch,
        Self::Snapshot,
        Self::Run,
        Self::Set,
        Self::SetAfterSnapshot,
        Self::SetReset,
        Self::LcPushPop,
    ];
}

impl CaseOp for Op {
    fn name(self) -> &'static str {
        match self {
            Self::GetHit => "get, cache hit",
            Self::GetAfterSwitch => "get after a context switch",
            Self::Snapshot => "snapshot (copy_context) + drop",
            Self::Run => "run: enter + exit",
            Self::Set => "set, context not shared",
            Self::SetAfterSnapshot => "set after a snapshot",
            Self::SetReset => "set + reset(token)",
            Self::LcPushPop => "logical context push + pop",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::GetHit => "get_hit",
            Self::GetAfterSwitch => "get_after_switch",
            Self::Snapshot => "snapshot",
            Self::Run => "run",
            Self::Set => "set",
            Self::SetAfterSnapshot => "set_after_snapshot",
            Self::SetReset => "set_reset",
            Self::LcPushPop => "lc_push_pop",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::GetHit => "ns per read",
            Self::GetAfterSwitch => "ns per enter + read + exit",
            Self::Snapshot => "ns per snapshot + drop",
            Self::Run | Self::LcPushPop => "ns per enter + exit",
            Self::Set | Self::SetAfterSnapshot => "ns per set",
            Self::SetReset => "ns per pair",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::GetHit => {
                "A read of a `u64` value that the contender already holds for this thread: \
                 ours through the per-thread lookup cache (by clone with `get`, by borrow with \
                 `with`), the peers from their thread-local slot. Every contender's read is an \
                 `#[inline(never)]` function called through a function pointer, so no read can \
                 be hoisted out of the loop; the baseline row is that call alone (a function \
                 returning a constant), which every other row includes."
            }
            Self::GetAfterSwitch => {
                "`ctx.run(|| VAR.get())` where `ctx` is a copy of the live context: entering \
                 invalidates the lookup cache, so the read walks the context's map. The cost of \
                 the read after a switch is the difference from `ctx.run(|| ())`, shown in the \
                 targets. tokio's `sync_scope` pair is for comparison (its read needs no lookup)."
            }
            Self::Snapshot => {
                "Take a snapshot of the current context and drop it, with 1, 10 and 1000 \
                 values live: ours `copy_context()`, opentelemetry `Context::current()` (a \
                 clone), and a bare `Arc` clone for the price of one reference-count round trip."
            }
            Self::Run => {
                "Make a prepared context (10 values) current, run an empty closure, restore the \
                 previous one: ours `ctx.run(|| ())`, tokio `sync_scope(v, || ())`, \
                 opentelemetry `cx.clone().attach()` and drop the guard."
            }
            Self::Set => {
                "`VAR.set(v)` with a new `v` each time, dropping the token (and with it the \
                 replaced value), in a context no snapshot shares: the map is edited in place."
            }
            Self::SetAfterSnapshot => {
                "`let s = copy_context(); VAR.set(v); drop(s)`: the set must copy a path of the \
                 map, and dropping the snapshot frees the old one. opentelemetry's only way to \
                 set, `Context::current_with_value(v).attach()` and drop the guard, copies its \
                 map of 10 values every time."
            }
            Self::SetReset => {
                "`VAR.reset(VAR.set(v))`, and the scoped form `VAR.scope(v, || ())`. The target \
                 is relative to a plain set (the row above)."
            }
            Self::LcPushPop => {
                "`run_with_logical_context(&mut lc, || ())`: what a generator step adds. An empty \
                 logical context keeps the lookup cache; a non-empty one (one variable set in \
                 it) must invalidate it on push and on pop. The target applies to each way, \
                 i.e. half the figure."
            }
        }
    }
}

/// Every case of the context group, in report order: [`LIVE_VARS`] live unless stated.
pub fn cases() -> Vec<Case<Op>> {
    use Contender::{Arc as ArcPeer, Baseline, Otel, Ours, ThreadLocal, Tokio};
    let live = LIVE_VARS;
    let mut cases = vec![
        Case::new(
            Op::GetHit,
            Baseline,
            "call",
            "opaque call returning a constant",
            live,
            |_| Repeat::new(NoContext, (), peers::floor).boxed(),
        ),
        Case::new(Op::GetHit, Ours, "get", "`VAR.get()`", live, |live| {
            Repeat::new(OursLive::new(live), (), ours::get).boxed()
        }),
        Case::new(
            Op::GetHit,
            Ours,
            "with",
            "`VAR.with(|v| *v)`",
            live,
            |live| Repeat::new(OursLive::new(live), (), ours::with).boxed(),
        ),
        Case::new(
            Op::GetHit,
            ThreadLocal,
            "cell",
            "`CELL.get()` (const `Cell<u64>`)",
            live,
            |_| Repeat::new(NoContext, (), peers::cell_get).boxed(),
        ),
        Case::new(
            Op::GetHit,
            Tokio,
            "with",
            "`KEY.with(|v| *v)` in `sync_scope`",
            live,
            |_| Repeat::new(TokioLive, (), peers::tokio_with).boxed(),
        ),
        Case::new(
            Op::GetHit,
            Otel,
            "map_current",
            "`Context::map_current(|cx| cx.get::<K>())`",
            live,
            |live| Repeat::new(OtelLive::new(live), (), peers::otel_map_current).boxed(),
        ),
        Case::new(
            Op::GetHit,
            Otel,
            "current_get",
            "`Context::current().get::<K>()`",
            live,
            |live| Repeat::new(OtelLive::new(live), (), peers::otel_current_get).boxed(),
        ),
        Case::new(
            Op::GetAfterSwitch,
            Ours,
            "run_get",
            "`ctx.run(|| VAR.get())`",
            live,
            |live| entered_copy(live, ours::run_get),
        ),
        Case::new(
            Op::GetAfterSwitch,
            Ours,
            "run",
            "`ctx.run(|| ())`",
            live,
            |live| entered_copy(live, ours::run),
        ),
        Case::new(
            Op::GetAfterSwitch,
            Tokio,
            "scope_with",
            "`sync_scope(v, || KEY.with(|v| *v))`",
            live,
            |_| Repeat::new(TokioLive, (), peers::tokio_scope_with).boxed(),
        ),
        Case::new(
            Op::GetAfterSwitch,
            Tokio,
            "scope",
            "`sync_scope(v, || ())`",
            live,
            |_| Repeat::new(TokioLive, (), peers::tokio_scope).boxed(),
        ),
    ];
    for live in SNAPSHOT_LIVE {
        cases.extend([
            Case::new(
                Op::Snapshot,
                Ours,
                "copy_context",
                "`drop(copy_context())`",
                live,
                |live| Repeat::new(OursLive::new(live), (), ours::snapshot).boxed(),
            ),
            Case::new(
                Op::Snapshot,
                Otel,
                "current",
                "`drop(Context::current())`",
                live,
                |live| Repeat::new(OtelLive::new(live), (), peers::otel_current).boxed(),
            ),
            Case::new(
                Op::Snapshot,
                ArcPeer,
                "clone",
                "`drop(arc.clone())`",
                live,
                |live| {
                    let arc: Arc<[u64]> = (0..live as u64).collect();
                    Repeat::new(NoContext, arc, peers::arc_clone).boxed()
                },
            ),
        ]);
    }
    cases.extend([
        Case::new(Op::Run, Ours, "run", "`ctx.run(|| ())`", live, |live| {
            entered_copy(live, ours::run)
        }),
        Case::new(
            Op::Run,
            Tokio,
            "sync_scope",
            "`sync_scope(v, || ())`",
            live,
            |_| Repeat::new(TokioLive, (), peers::tokio_scope).boxed(),
        ),
        Case::new(
            Op::Run,
            Otel,
            "attach",
            "`drop(cx.clone().attach())`",
            live,
            |live| {
                let env = OtelLive::new(live);
                let context = env.context().clone();
                Repeat::new(env, context, peers::otel_attach).boxed()
            },
        ),
        Case::new(Op::Set, Ours, "set", "`drop(VAR.set(v))`", live, |live| {
            Repeat::new(OursLive::new(live), 1u64, ours::set).boxed()
        }),
        Case::new(
            Op::SetAfterSnapshot,
            Ours,
            "snapshot_set",
            "`let s = copy_context(); VAR.set(v); drop(s)`",
            live,
            |live| Repeat::new(OursLive::new(live), 1u64, ours::snapshot_set).boxed(),
        ),
        Case::new(
            Op::SetAfterSnapshot,
            Otel,
            "with_value_attach",
            "`drop(Context::current_with_value(K(v)).attach())`",
            live,
            |live| Repeat::new(OtelLive::new(live), 1u64, peers::otel_with_value_attach).boxed(),
        ),
        Case::new(
            Op::SetReset,
            Ours,
            "set_reset",
            "`VAR.reset(VAR.set(v))`",
            live,
            |live| Repeat::new(OursLive::new(live), 1u64, ours::set_reset).boxed(),
        ),
        Case::new(
            Op::SetReset,
            Ours,
            "scope",
            "`VAR.scope(v, || ())`",
            live,
            |live| Repeat::new(OursLive::new(live), 1u64, ours::scope).boxed(),
        ),
        Case::new(
            Op::LcPushPop,
            Ours,
            "empty",
            "`run_with_logical_context(&mut empty_lc, || ())`",
            live,
            |live| Repeat::new(OursLive::new(live), LogicalContext::new(), ours::push_pop).boxed(),
        ),
        Case::new(
            Op::LcPushPop,
            Ours,
            "non_empty",
            "the same with one variable set in `lc`",
            live,
            |live| {
                let mut lc = LogicalContext::new();
                run_with_logical_context(&mut lc, || drop(OTHER.set(1)));
                Repeat::new(OursLive::new(live), lc, ours::push_pop).boxed()
            },
        ),
    ]);
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
