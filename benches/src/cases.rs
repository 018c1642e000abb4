//! Cases of the context and task benchmarks: one contender's way of doing one operation,
//! and the routine that times it.
//!
//! The map benchmarks drive every contender through one trait because every map does the
//! same things. Context systems do not (tokio has no snapshot, `thread_local!` no scope), so
//! here the shared shape is the *case*: a [`Case`] names an operation, a contender and the
//! exact code timed, and builds a [`Routine`]. Most cases are a [`Repeat`]: the contender's
//! live state ([`Live`]) installed around one loop that calls a plain `fn` — the same loop
//! for every contender, so only the called function differs.

use std::hint::black_box;
use std::time::Duration;

use crate::clock::thread_cpu_time;
use crate::harness::Routine;
use crate::live::Live;

/// Who a case measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Contender {
    /// This workspace (`contextvars`, `exec-context`).
    Ours,
    /// The same work without any context machinery (a bare future, a plain iterator chain,
    /// a call that only loads a static): what the overhead is measured from.
    Baseline,
    /// `std::thread_local!`.
    ThreadLocal,
    /// `tokio::task_local!` and tokio's spawn.
    Tokio,
    /// `opentelemetry::Context`.
    Otel,
    /// `std::sync::Arc`: the cost of one reference-count round trip.
    Arc,
    /// `std::sync::mpsc`: `channel` and `sync_channel`.
    Mpsc,
    /// `crossbeam-channel`: `unbounded` and `bounded`.
    Crossbeam,
    /// A `rayon::ThreadPool`.
    Rayon,
    /// `genawaiter`: generators on stable Rust (`rc::Gen`, `sync::Gen`).
    Genawaiter,
}

impl Contender {
    /// Short name, used in benchmark ids and progress lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Baseline => "baseline",
            Self::ThreadLocal => "thread_local",
            Self::Tokio => "tokio",
            Self::Otel => "otel",
            Self::Arc => "arc",
            Self::Mpsc => "mpsc",
            Self::Crossbeam => "crossbeam",
            Self::Rayon => "rayon",
            Self::Genawaiter => "genawaiter",
        }
    }

    /// Name as shown in the report.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ours => "**ours**",
            Self::Baseline => "baseline",
            Self::ThreadLocal => "`thread_local!`",
            Self::Tokio => "tokio",
            Self::Otel => "opentelemetry",
            Self::Arc => "`Arc`",
            Self::Mpsc => "`std::sync::mpsc`",
            Self::Crossbeam => "crossbeam-channel",
            Self::Rayon => "rayon",
            Self::Genawaiter => "genawaiter",
        }
    }

    /// Whether this is another project doing the same job (ratios are taken to the best of
    /// these), as opposed to ours or a baseline.
    pub fn is_peer(self) -> bool {
        !matches!(self, Self::Ours | Self::Baseline)
    }
}

/// An operation of a benchmark group (implemented by each group's `Op` enum).
pub trait CaseOp: Copy + Eq + std::fmt::Debug + 'static {
    /// Human-readable name, used as a table title.
    fn name(self) -> &'static str;

    /// Identifier used in criterion benchmark ids.
    fn slug(self) -> &'static str;

    /// What one operation is, e.g. `ns per get`.
    fn unit(self) -> &'static str;

    /// What exactly is timed, for the report.
    fn description(self) -> &'static str;
}

/// One contender's way of doing one operation, with the number of live variables.
#[derive(Clone, Copy, Debug)]
pub struct Case<O> {
    /// The operation.
    pub op: O,
    /// Who.
    pub contender: Contender,
    /// Identifies the case within its operation (and in benchmark ids), e.g. `get`.
    pub variant: &'static str,
    /// The code timed per operation, shown in the report.
    pub code: &'static str,
    /// Variables (or values) live in the contender's context.
    pub live: usize,
    build: fn(usize) -> Box<dyn Routine>,
}

impl<O: CaseOp> Case<O> {
    /// A case whose routine `build(live)` makes.
    pub const fn new(
        op: O,
        contender: Contender,
        variant: &'static str,
        code: &'static str,
        live: usize,
        build: fn(usize) -> Box<dyn Routine>,
    ) -> Self {
        Self {
            op,
            contender,
            variant,
            code,
            live,
            build,
        }
    }

    /// The same case with `live` variables.
    pub const fn with_live(mut self, live: usize) -> Self {
        self.live = live;
        self
    }

    /// Builds the state and returns the routine that times this case.
    pub fn routine(&self) -> Box<dyn Routine> {
        (self.build)(self.live)
    }

    /// `op/contender/variant/live`, for criterion.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.op.slug(),
            self.contender.name(),
            self.variant,
            self.live
        )
    }
}

/// Declares a group's operation enum as a table, one line per operation:
/// `Variant => ("name", "slug", "unit", "description"),` with the variant's doc comment
/// above it. Generates the enum, `ALL` (every operation, in report order) and [`CaseOp`].
#[macro_export]
macro_rules! case_ops {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident => ($title:literal, $slug:literal, $unit:literal,
            $description:expr),)*
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every operation, in report order.
            pub const ALL: [Self; [$(stringify!($variant)),*].len()] = [$(Self::$variant),*];
        }

        impl $crate::cases::CaseOp for $name {
            fn name(self) -> &'static str {
                match self { $(Self::$variant => $title,)* }
            }

            fn slug(self) -> &'static str {
                match self { $(Self::$variant => $slug,)* }
            }

            fn unit(self) -> &'static str {
                match self { $(Self::$variant => $unit,)* }
            }

            fn description(self) -> &'static str {
                match self { $(Self::$variant => $description,)* }
            }
        }
    };
}

/// A case list as a table, one case per line:
/// `Op Contender "variant" "timed code" => |live| routine;`, each line optionally preceded by
/// attributes (`#[cfg(..)]`). `$live` is the live count of every case; `Op` must be in scope.
#[macro_export]
macro_rules! case_table {
    ($live:expr; $($(#[$attr:meta])* $op:ident $contender:ident $variant:literal $code:literal
        => $build:expr;)*) => {
        vec![$($(#[$attr])* $crate::cases::Case::new(
            Op::$op,
            $crate::cases::Contender::$contender,
            $variant,
            $code,
            $live,
            $build,
        ),)*]
    };
}

/// The common routine: `op(&mut state)` called in a loop, inside `live`'s context.
///
/// `op` is a function pointer, so every call is an opaque call for every contender alike:
/// the compiler cannot inline the operation into the loop, hoist a thread-local read out of
/// it or merge iterations. The cost of the call itself is what a `Baseline` case that only
/// loads a static measures.
pub struct Repeat<L, S> {
    live: L,
    state: S,
    op: fn(&mut S) -> u64,
    ops_per_call: u64,
}

impl<L: Live, S> Repeat<L, S> {
    /// One operation per call of `op`.
    pub fn new(live: L, state: S, op: fn(&mut S) -> u64) -> Self {
        Self::batched(live, state, op, 1)
    }

    /// `ops_per_call` operations per call of `op` (e.g. elements of an iterator chain).
    pub fn batched(live: L, state: S, op: fn(&mut S) -> u64, ops_per_call: u64) -> Self {
        Self {
            live,
            state,
            op,
            ops_per_call,
        }
    }

    /// Boxed as a routine.
    pub fn boxed(self) -> Box<dyn Routine>
    where
        L: 'static,
        S: 'static,
    {
        Box::new(self)
    }
}

impl<L: Live, S> Routine for Repeat<L, S> {
    fn run(&mut self, calls: u64) -> Duration {
        let op = black_box(self.op);
        let state = &mut self.state;
        self.live.run(|| {
            let mut checksum = 0u64;
            let start = thread_cpu_time();
            for _ in 0..calls {
                checksum = checksum.wrapping_add(op(state));
            }
            let spent = thread_cpu_time().saturating_sub(start);
            black_box(checksum);
            spent
        })
    }

    fn ops_per_call(&self) -> u64 {
        self.ops_per_call
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::NoContext;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Probe;

    impl CaseOp for Probe {
        fn name(self) -> &'static str {
            "probe"
        }
        fn slug(self) -> &'static str {
            "probe"
        }
        fn unit(self) -> &'static str {
            "ns per call"
        }
        fn description(self) -> &'static str {
            "counts calls"
        }
    }

    fn count(state: &mut u64) -> u64 {
        *state += 1;
        *state
    }

    #[test]
    fn repeat_calls_the_op_once_per_call() {
        let mut repeat = Repeat::new(NoContext, 0u64, count);
        repeat.run(7);
        assert_eq!(repeat.state, 7);
        let case = Case::new(Probe, Contender::Baseline, "count", "n += 1", 1, |_| {
            Repeat::new(NoContext, 0u64, count).boxed()
        });
        assert_eq!(case.with_live(3).id(), "probe/baseline/count/3");
        assert_eq!(case.routine().ops_per_call(), 1);
    }
}
