//! What "N variables live" means for each contender of the context benchmarks, and the
//! [`Live`] trait that installs that state around a timed loop.
//!
//! Every context benchmark runs with some values already in the current context (10 unless
//! stated), because an empty context is a special case for several contenders. For each
//! contender that state is built once, when its routine is made, and installed around every
//! timed run by [`Live::run`] — outside the clock — so the contenders' interleaved repetitions
//! never see each other's state:
//!
//! * ours ([`OursLive`]): a `contextvars::Context` in which [`VAR`] and N − 1 of [`LIVE`] are
//!   set, entered with `Context::run`;
//! * tokio ([`TokioLive`]): [`TASK_VALUE`] in a `sync_scope` (task-locals are independent
//!   statics, so the number of other live ones does not change a read);
//! * opentelemetry ([`OtelLive`]): a `Context` holding [`Slot`] values of N distinct types
//!   (otel keys values by type), attached;
//! * the rest ([`NoContext`]): nothing to install (`thread_local!` [`CELL`], `Arc`).

use std::cell::Cell;

use contextvars::{Context, ContextVar};

/// The variable the context benchmarks read and write: one of the live ones.
pub static VAR: ContextVar<u64> = ContextVar::new("bench.var");

/// The other variables that make up the live set (up to 1000 live in all, with [`VAR`]).
pub static LIVE: [ContextVar<u64>; 999] = [const { ContextVar::new("bench.live") }; 999];

/// A variable that is never set in the live contexts (for non-empty logical contexts).
pub static OTHER: ContextVar<u64> = ContextVar::new("bench.other");

thread_local! {
    /// The `thread_local!` peer: a `Cell` with `const` initialisation, the cheapest layout.
    pub static CELL: Cell<u64> = const { Cell::new(1) };
}

tokio::task_local! {
    /// The tokio peer.
    pub static TASK_VALUE: u64;
}

/// The value type of the opentelemetry peer: `Slot<A, B, C>` is a distinct type, and so a
/// distinct key, for every digit triple, which gives up to 1000 values. [`OtelLive`] reads
/// `Slot<0, 0, 0>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot<const A: usize, const B: usize, const C: usize>(pub u64);

/// The key the opentelemetry contenders read and write.
pub type OtelKey = Slot<0, 0, 0>;

/// Installs a contender's live context around a closure.
pub trait Live {
    /// Runs `body` with this contender's live values in the current context, and takes them
    /// out again afterwards.
    fn run<R>(&mut self, body: impl FnOnce() -> R) -> R;
}

/// No state to install.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoContext;

impl Live for NoContext {
    #[inline]
    fn run<R>(&mut self, body: impl FnOnce() -> R) -> R {
        body()
    }
}

/// Ours: a [`Context`] with `live` variables set, [`VAR`] among them.
#[derive(Debug)]
pub struct OursLive {
    context: Context,
}

impl OursLive {
    /// A context in which [`VAR`] (value 1) and `live - 1` of [`LIVE`] are set.
    ///
    /// # Panics
    ///
    /// If `live` is 0 or more than 1000.
    pub fn new(live: usize) -> Self {
        assert!(
            (1..=LIVE.len() + 1).contains(&live),
            "between 1 and 1000 live variables"
        );
        let mut context = Context::new();
        context.run(|| {
            VAR.set(1);
            for (value, var) in (2..).zip(&LIVE[..live - 1]) {
                var.set(value);
            }
        });
        Self { context }
    }

    /// The context itself (for tasks that start from it).
    pub fn context(&self) -> &Context {
        &self.context
    }
}

impl Live for OursLive {
    #[inline]
    fn run<R>(&mut self, body: impl FnOnce() -> R) -> R {
        self.context.run(body)
    }
}

/// tokio: [`TASK_VALUE`] = 1 in a `sync_scope`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioLive;

impl Live for TokioLive {
    #[inline]
    fn run<R>(&mut self, body: impl FnOnce() -> R) -> R {
        TASK_VALUE.sync_scope(1, body)
    }
}

/// opentelemetry: a context with `live` values, [`OtelKey`] among them, attached.
#[derive(Debug)]
pub struct OtelLive {
    context: opentelemetry::Context,
}

impl OtelLive {
    /// A context holding `live` values: `Slot<A, B, C>(1)` for the first `live` triples in
    /// counting order, so [`OtelKey`] is always present.
    ///
    /// # Panics
    ///
    /// If `live` is 0 or more than 1000.
    pub fn new(live: usize) -> Self {
        assert!((1..=1000).contains(&live), "between 1 and 1000 live values");
        Self {
            context: otel_context(live),
        }
    }

    /// The context (for wrappers that attach it themselves).
    pub fn context(&self) -> &opentelemetry::Context {
        &self.context
    }
}

impl Live for OtelLive {
    #[inline]
    fn run<R>(&mut self, body: impl FnOnce() -> R) -> R {
        let _guard = self.context.clone().attach();
        body()
    }
}

/// An opentelemetry context with `Slot` values of the first `live` (≤ 1000) digit triples.
fn otel_context(live: usize) -> opentelemetry::Context {
    let mut builder = OtelBuilder {
        context: opentelemetry::Context::new(),
        left: live,
    };
    thousand(&mut builder);
    builder.context
}

/// Adds values until `left` reaches 0.
struct OtelBuilder {
    context: opentelemetry::Context,
    left: usize,
}

impl OtelBuilder {
    fn add<const A: usize, const B: usize, const C: usize>(&mut self) {
        if self.left > 0 {
            self.context = self.context.with_value(Slot::<A, B, C>(1));
            self.left -= 1;
        }
    }
}

// Types are chosen at compile time, so the 1000 keys come from three nested digit loops
// written out: 10 values per `tens`, 10 `tens` per `hundreds`, 10 `hundreds`.
fn tens<const A: usize, const B: usize>(builder: &mut OtelBuilder) {
    builder.add::<A, B, 0>();
    builder.add::<A, B, 1>();
    builder.add::<A, B, 2>();
    builder.add::<A, B, 3>();
    builder.add::<A, B, 4>();
    builder.add::<A, B, 5>();
    builder.add::<A, B, 6>();
    builder.add::<A, B, 7>();
    builder.add::<A, B, 8>();
    builder.add::<A, B, 9>();
}

fn hundreds<const A: usize>(builder: &mut OtelBuilder) {
    tens::<A, 0>(builder);
    tens::<A, 1>(builder);
    tens::<A, 2>(builder);
    tens::<A, 3>(builder);
    tens::<A, 4>(builder);
    tens::<A, 5>(builder);
    tens::<A, 6>(builder);
    tens::<A, 7>(builder);
    tens::<A, 8>(builder);
    tens::<A, 9>(builder);
}

fn thousand(builder: &mut OtelBuilder) {
    hundreds::<0>(builder);
    hundreds::<1>(builder);
    hundreds::<2>(builder);
    hundreds::<3>(builder);
    hundreds::<4>(builder);
    hundreds::<5>(builder);
    hundreds::<6>(builder);
    hundreds::<7>(builder);
    hundreds::<8>(builder);
    hundreds::<9>(builder);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_holds_the_live_variables() {
        let mut live = OursLive::new(10);
        let seen = live.run(|| (VAR.get(), LIVE[8].get(), LIVE[9].get()));
        assert_eq!(seen, (Some(1), Some(10), None));
        assert_eq!(live.context().len(), 10);
        assert_eq!(VAR.get(), None);
    }

    #[test]
    fn otel_holds_distinct_values() {
        let mut live = OtelLive::new(1000);
        let seen = live.run(|| {
            opentelemetry::Context::map_current(|cx| {
                (
                    cx.get::<OtelKey>().copied(),
                    cx.get::<Slot<9, 9, 9>>().copied(),
                )
            })
        });
        assert_eq!(seen, (Some(Slot(1)), Some(Slot(1))));
        let small = OtelLive::new(10);
        assert!(small.context().get::<Slot<0, 0, 9>>().is_some());
        assert!(small.context().get::<Slot<0, 1, 0>>().is_none());
    }

    #[test]
    fn tokio_scopes_the_value() {
        assert_eq!(TokioLive.run(|| TASK_VALUE.get()), 1);
        assert!(TASK_VALUE.try_with(|_| ()).is_err());
    }
}
