//! The peers' side of the context benchmarks, and the call floor: one `fn` per operation,
//! `#[inline(never)]` and called through a function pointer like ours (see
//! [`ours`](super::ours)).

use std::hint::black_box;
use std::sync::Arc;

use opentelemetry::Context;

use crate::live::{CELL, OtelKey, Slot, TASK_VALUE};

/// The call floor: an opaque call that returns a constant. Every other function pays this
/// call too.
#[inline(never)]
pub fn floor(_: &mut ()) -> u64 {
    1
}

/// `CELL.get()` on a `thread_local!` `Cell<u64>` with `const` initialisation.
#[inline(never)]
pub fn cell_get(_: &mut ()) -> u64 {
    CELL.get()
}

/// tokio `TASK_VALUE.with(|v| *v)` (inside the live `sync_scope`).
#[inline(never)]
pub fn tokio_with(_: &mut ()) -> u64 {
    TASK_VALUE.with(|value| *value)
}

/// opentelemetry `Context::map_current(|cx| cx.get::<K>())`: a borrow of the current context.
#[inline(never)]
pub fn otel_map_current(_: &mut ()) -> u64 {
    Context::map_current(|cx| cx.get::<OtelKey>().map_or(0, |slot| slot.0))
}

/// opentelemetry `Context::current().get::<K>()`: clones the current context (one `Arc`).
#[inline(never)]
pub fn otel_current_get(_: &mut ()) -> u64 {
    Context::current().get::<OtelKey>().map_or(0, |slot| slot.0)
}

/// tokio `TASK_VALUE.sync_scope(2, || TASK_VALUE.with(|v| *v))`.
#[inline(never)]
pub fn tokio_scope_with(_: &mut ()) -> u64 {
    TASK_VALUE.sync_scope(2, || TASK_VALUE.with(|value| *value))
}

/// tokio `TASK_VALUE.sync_scope(2, || ())`: enter and exit. With a closure the compiler can
/// see through, it removes the swap in and the swap back as a pair (nothing reads the slot
/// between them) and measures the call alone; the closure's `black_box` may read any memory,
/// the task-local's slot too, so both swaps stay, as they do around real code.
#[inline(never)]
pub fn tokio_scope(_: &mut ()) -> u64 {
    TASK_VALUE.sync_scope(2, || black_box(0))
}

/// opentelemetry `Context::current()`, dropped: its snapshot.
#[inline(never)]
pub fn otel_current(_: &mut ()) -> u64 {
    drop(black_box(Context::current()));
    0
}

/// `Arc::clone`, dropped: one reference-count round trip.
#[inline(never)]
pub fn arc_clone(arc: &mut Arc<[u64]>) -> u64 {
    drop(black_box(Arc::clone(arc)));
    0
}

/// opentelemetry `cx.clone().attach()` and drop the guard: enter and exit a prepared context.
#[inline(never)]
pub fn otel_attach(context: &mut Context) -> u64 {
    drop(context.clone().attach());
    0
}

/// opentelemetry `Context::current_with_value(K(v)).attach()` and drop the guard: otel's
/// "set" (it copies the current context's map).
#[inline(never)]
pub fn otel_with_value_attach(next: &mut u64) -> u64 {
    *next = next.wrapping_add(1);
    drop(Context::current_with_value(Slot::<0, 0, 0>(*next)).attach());
    0
}
