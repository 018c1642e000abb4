//! The interpreter benchmarks: `exec_context::interpreters` queues and channels against
//! `std::sync::mpsc` and crossbeam-channel, interpreter create + close, `exec` enter + exit,
//! and the interpreter pool against a plain thread pool and rayon.
//!
//! [`cases`] lists every [`Case`], for the report and the criterion benchmark alike. The
//! queue and channel contenders implement one trait, [`pipes::Pipe`], and are driven by the
//! same two-thread routines; the pools implement [`pools::Pool`].
//!
//! Two clocks: the single-threaded cases (create + close, exec) are timed in thread CPU
//! time like every other case of the report. A message's trip between two threads, or a
//! job's through a pool, has no single thread to clock — the receiver sleeps while it waits
//! — so those cases are timed in wall-clock time, and the CPU time all their threads spent
//! is reported beside it ([`crate::harness::Routine::last_cpu_time`]).

pub mod lua;
pub mod pipes;
pub mod pools;

use std::hint::black_box;
use std::time::Duration;

use contextvars::Context;
use exec_context::interpreters::{self, Interpreter, Queue};

use crate::cases::{Case, CaseOp, Contender, Repeat};
use crate::clock::thread_cpu_time;
use crate::harness::Routine;
use crate::live::NoContext;
use pipes::{
    CrossbeamBounded, CrossbeamUnbounded, MpscChannel, MpscSyncChannel, OurChannelBuffered,
    OurChannelSend, OurQueue, Pipe, RoundTrip, Stream,
};
use pools::{Jobs, OurPool, PlainPool, Pool, RayonPool};

/// The bound of the bounded queues and channels.
pub const BOUND: usize = 1024;

/// Jobs submitted before waiting, in the batched pool case.
pub const POOL_BATCH: usize = 32;

/// Queues alive in the process during the second create + close case.
pub const LIVE_QUEUES: usize = 100;

/// The `live` of every case: this group has no context variables live.
pub const LIVE: usize = 0;

/// A benchmarked interpreter operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// One producer thread sends `u64`s to one consumer through an unbounded queue.
    StreamUnbounded,
    /// The same through a queue bounded to [`BOUND`].
    StreamBounded,
    /// Sends that return once the item was received.
    Rendezvous,
    /// A value there and back between two threads.
    RoundTrip,
    /// Create an interpreter and close it.
    CreateClose,
    /// Run an empty closure in an interpreter.
    Exec,
    /// Submit one job to a pool and wait for its result.
    PoolSubmitWait,
    /// Submit [`POOL_BATCH`] jobs, then wait for them.
    PoolBatch,
    /// `exec` of a one-line Lua snippet.
    LuaExec,
    /// One resume of a Lua coroutine.
    LuaResume,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Self; 10] = [
        Self::StreamUnbounded,
        Self::StreamBounded,
        Self::Rendezvous,
        Self::RoundTrip,
        Self::CreateClose,
        Self::Exec,
        Self::PoolSubmitWait,
        Self::PoolBatch,
        Self::LuaExec,
        Self::LuaResume,
    ];

    /// Whether the figure is a throughput, reported in messages per second too.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Self::StreamUnbounded | Self::StreamBounded | Self::Rendezvous
        )
    }

    /// Whether the cases run on several threads and are timed in wall-clock time.
    pub fn is_threaded(self) -> bool {
        !matches!(
            self,
            Self::CreateClose | Self::Exec | Self::LuaExec | Self::LuaResume
        )
    }
}

impl CaseOp for Op {
    fn name(self) -> &'static str {
        match self {
            Self::StreamUnbounded => "SPSC stream, unbounded",
            Self::StreamBounded => "SPSC stream, bounded to 1024",
            Self::Rendezvous => "rendezvous send (returns once received)",
            Self::RoundTrip => "round trip between two threads",
            Self::CreateClose => "interpreter create + close",
            Self::Exec => "exec: enter + exit",
            Self::PoolSubmitWait => "pool: submit + wait, one job at a time",
            Self::PoolBatch => "pool: 32 jobs submitted, then waited for",
            Self::LuaExec => "Lua exec of a one-line snippet",
            Self::LuaResume => "Lua coroutine resume",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::StreamUnbounded => "stream_unbounded",
            Self::StreamBounded => "stream_bounded",
            Self::Rendezvous => "rendezvous",
            Self::RoundTrip => "round_trip",
            Self::CreateClose => "create_close",
            Self::Exec => "exec",
            Self::PoolSubmitWait => "pool_submit_wait",
            Self::PoolBatch => "pool_batch",
            Self::LuaExec => "lua_exec",
            Self::LuaResume => "lua_resume",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::StreamUnbounded | Self::StreamBounded | Self::Rendezvous => "wall ns per message",
            Self::RoundTrip => "wall ns per round trip",
            Self::CreateClose => "ns per create + close",
            Self::Exec => "ns per enter + exit",
            Self::PoolSubmitWait | Self::PoolBatch => "wall ns per job",
            Self::LuaExec => "ns per exec",
            Self::LuaResume => "ns per resume",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::StreamUnbounded => {
                "A producer thread sends the `u64`s `0..n`, the timing thread receives them; \
                 wall-clock time from the start (both threads released by a barrier) to the \
                 last receive. Ours `Queue::put(i)` / `get()` (`create_queue(0)`) and \
                 `SendChannel::send_buffered(i)` / `recv()`; the peers' unbounded channels. Ours \
                 carries each value as a `Shareable::Int` and extracts it again, as a user does."
            }
            Self::StreamBounded => {
                "As the unbounded stream, through queues that hold at most 1024 items, so the \
                 producer blocks when it runs ahead: ours `create_queue(1024)`, \
                 `sync_channel(1024)`, crossbeam `bounded(1024)`."
            }
            Self::Rendezvous => {
                "A stream whose every send returns only once the item was received (PEP 554's \
                 `SendChannel.send`): ours `send(i)` against the peers' zero-capacity \
                 channels, `sync_channel(0)` and crossbeam `bounded(0)`."
            }
            Self::RoundTrip => {
                "The timing thread sends `i` through one unbounded queue (channel), an echo \
                 thread receives it and sends `i + 1` back through another; wall-clock time \
                 per round trip. Both sides wait for every message, so this is two hand-offs \
                 to a waiting thread."
            }
            Self::CreateClose => {
                "`interpreters::create()` then `close()`, one thread. Closing applies the \
                 unbound-item policies to every live queue and channel of the process, so the \
                 second row keeps 100 queues alive."
            }
            Self::Exec => {
                "`interp.exec(|| ())` and `interp.call(|| 1)` on a thread that has run in \
                 `interp` before: swap the thread's context state for the interpreter's, run, \
                 swap back. The baseline is `Context::run(|| 0)` on a fresh context, the \
                 context switch alone."
            }
            Self::PoolSubmitWait => {
                "`submit(job)` then `wait()` on its handle, one job at a time, on pools of 2 \
                 workers (a new pool per repetition, started off the clock); the job returns a \
                 constant. Ours runs it in the worker's interpreter; \
                 the baseline is a plain pool of the same design (one `Mutex<VecDeque>` of \
                 boxed jobs, a `Condvar`, a result slot per job) without interpreters; rayon \
                 `ThreadPool::spawn` with a one-shot channel for the result. Wall-clock time \
                 per job: mostly two thread wake-ups, whose cost on a shared two-core VM moves \
                 several-fold between runs."
            }
            Self::PoolBatch => {
                "32 `submit`s, then 32 `wait`s, per batch, on the same pools: the cost per \
                 job while the workers are kept busy, where the interpreter's share shows."
            }
            Self::LuaExec => {
                "`x = x + 1` compiled and run: `LuaInterpreter::exec` (enter the interpreter, \
                 load, run, exit, with the instruction-budget reset) against \
                 `lua.load(..).exec()` on a bare `mlua` state (Lua 5.4, vendored), one thread."
            }
            Self::LuaResume => {
                "One `coroutine.resume` of a coroutine that yields at once, from a Lua loop: \
                 Lua's own resume on a bare `mlua` state (the baseline), ours on a coroutine \
                 marked `contextvars.no_context` (the Rust wrapper alone), and ours with the \
                 coroutine's own logical context pushed and popped around the resume."
            }
        }
    }
}

/// `interpreters::create()` then `close()`.
#[inline(never)]
pub fn create_close() -> u64 {
    let interp = interpreters::create();
    let id = interp.id();
    interp.close().expect("a fresh, idle interpreter closes");
    id
}

/// [`create_close`] in a loop, with `queues` queues alive in the process during the run
/// only: the cases of an operation are built together, so queues held by the routine would
/// be alive in the other case's runs too.
pub struct CreateClose {
    /// Queues made before the clock starts and dropped after it stops.
    pub queues: usize,
}

impl Routine for CreateClose {
    fn run(&mut self, calls: u64) -> Duration {
        let queues: Vec<Queue> = (0..self.queues)
            .map(|_| interpreters::create_queue(0))
            .collect();
        let create_close = black_box(create_close as fn() -> u64);
        let mut checksum = 0u64;
        let start = thread_cpu_time();
        for _ in 0..calls {
            checksum = checksum.wrapping_add(create_close());
        }
        let spent = thread_cpu_time().saturating_sub(start);
        black_box(checksum);
        drop(queues);
        spent
    }

    fn ops_per_call(&self) -> u64 {
        1
    }
}

/// `interp.exec(|| ())`.
#[inline(never)]
pub fn exec(interp: &mut Interpreter) -> u64 {
    u64::from(interp.exec(|| ()).is_ok())
}

/// `interp.call(|| 1)`.
#[inline(never)]
pub fn call(interp: &mut Interpreter) -> u64 {
    interp.call(|| 1u64).unwrap_or(0)
}

/// `ctx.run(|| 0)`: the baseline of [`exec`].
#[inline(never)]
pub fn context_run(context: &mut Context) -> u64 {
    context.run(|| 0)
}

/// An interpreter this thread has run in once, so the timed `exec`s find its saved state.
fn visited_interpreter() -> Interpreter {
    let interp = interpreters::create();
    interp.exec(|| ()).expect("a fresh interpreter runs");
    interp
}

fn stream<P: Pipe + 'static>(pipe: P) -> Box<dyn Routine> {
    Box::new(Stream::new(&pipe))
}

fn round_trip<P: Pipe + 'static>(pipe: P) -> Box<dyn Routine> {
    Box::new(RoundTrip::new(&pipe))
}

fn jobs<P: Pool + 'static>(make: fn() -> P, batch: usize) -> Box<dyn Routine> {
    Box::new(Jobs::new(make, batch))
}

fn resume_loop(kind: lua::Resume) -> Box<dyn Routine> {
    Box::new(lua::ResumeLoop::new(kind))
}

/// Every case of the interpreter group, in report order.
pub fn cases() -> Vec<Case<Op>> {
    use Contender::{Baseline, Crossbeam, Mpsc, Ours, Rayon};
    vec![
        Case::new(
            Op::StreamUnbounded,
            Ours,
            "queue",
            "`Queue::put(i)` / `get()`",
            LIVE,
            |_| stream(OurQueue { maxsize: 0 }),
        ),
        Case::new(
            Op::StreamUnbounded,
            Ours,
            // The ID the report keys on predates `send_buffered` (then `send_nowait`).
            "channel_nowait",
            "`SendChannel::send_buffered(i)` / `recv()`",
            LIVE,
            |_| stream(OurChannelBuffered),
        ),
        Case::new(
            Op::StreamUnbounded,
            Mpsc,
            "channel",
            "`mpsc::channel()`",
            LIVE,
            |_| stream(MpscChannel),
        ),
        Case::new(
            Op::StreamUnbounded,
            Crossbeam,
            "unbounded",
            "`unbounded()`",
            LIVE,
            |_| stream(CrossbeamUnbounded),
        ),
        Case::new(
            Op::StreamBounded,
            Ours,
            "queue_1024",
            "`create_queue(1024)`",
            LIVE,
            |_| stream(OurQueue { maxsize: BOUND }),
        ),
        Case::new(
            Op::StreamBounded,
            Mpsc,
            "sync_channel_1024",
            "`mpsc::sync_channel(1024)`",
            LIVE,
            |_| stream(MpscSyncChannel { bound: BOUND }),
        ),
        Case::new(
            Op::StreamBounded,
            Crossbeam,
            "bounded_1024",
            "`bounded(1024)`",
            LIVE,
            |_| stream(CrossbeamBounded { capacity: BOUND }),
        ),
        Case::new(
            Op::Rendezvous,
            Ours,
            "send",
            "`SendChannel::send(i)` / `recv()`",
            LIVE,
            |_| stream(OurChannelSend),
        ),
        Case::new(
            Op::Rendezvous,
            Mpsc,
            "sync_channel_0",
            "`mpsc::sync_channel(0)`",
            LIVE,
            |_| stream(MpscSyncChannel { bound: 0 }),
        ),
        Case::new(
            Op::Rendezvous,
            Crossbeam,
            "bounded_0",
            "`bounded(0)`",
            LIVE,
            |_| stream(CrossbeamBounded { capacity: 0 }),
        ),
        Case::new(
            Op::RoundTrip,
            Ours,
            "queue",
            "two `create_queue(0)`",
            LIVE,
            |_| round_trip(OurQueue { maxsize: 0 }),
        ),
        Case::new(
            Op::RoundTrip,
            Mpsc,
            "channel",
            "two `mpsc::channel()`",
            LIVE,
            |_| round_trip(MpscChannel),
        ),
        Case::new(
            Op::RoundTrip,
            Crossbeam,
            "unbounded",
            "two `unbounded()`",
            LIVE,
            |_| round_trip(CrossbeamUnbounded),
        ),
        Case::new(
            Op::CreateClose,
            Ours,
            "create_close",
            "`create()` + `close()`",
            LIVE,
            |_| Box::new(CreateClose { queues: 0 }),
        ),
        Case::new(
            Op::CreateClose,
            Ours,
            "create_close_100_queues",
            "the same, 100 queues alive",
            LIVE,
            |_| {
                Box::new(CreateClose {
                    queues: LIVE_QUEUES,
                })
            },
        ),
        Case::new(
            Op::Exec,
            Baseline,
            "context_run",
            "`Context::run(|| 0)`",
            LIVE,
            |_| Repeat::new(NoContext, Context::new(), context_run).boxed(),
        ),
        Case::new(Op::Exec, Ours, "exec", "`interp.exec(|| ())`", LIVE, |_| {
            Repeat::new(NoContext, visited_interpreter(), exec).boxed()
        }),
        Case::new(Op::Exec, Ours, "call", "`interp.call(|| 1)`", LIVE, |_| {
            Repeat::new(NoContext, visited_interpreter(), call).boxed()
        }),
        Case::new(
            Op::PoolSubmitWait,
            Baseline,
            "plain_pool",
            "plain `Mutex<VecDeque>` + `Condvar` pool",
            LIVE,
            |_| jobs(PlainPool::new, 1),
        ),
        Case::new(
            Op::PoolSubmitWait,
            Ours,
            "interpreter_pool",
            "`InterpreterPool::submit(f).wait()`",
            LIVE,
            |_| jobs(OurPool::new, 1),
        ),
        Case::new(
            Op::PoolSubmitWait,
            Rayon,
            "spawn_oneshot",
            "`ThreadPool::spawn` + one-shot channel",
            LIVE,
            |_| jobs(RayonPool::new, 1),
        ),
        Case::new(
            Op::PoolBatch,
            Baseline,
            "plain_pool",
            "plain `Mutex<VecDeque>` + `Condvar` pool",
            LIVE,
            |_| jobs(PlainPool::new, POOL_BATCH),
        ),
        Case::new(
            Op::PoolBatch,
            Ours,
            "interpreter_pool",
            "`InterpreterPool::submit(f)` × 32, `wait()` × 32",
            LIVE,
            |_| jobs(OurPool::new, POOL_BATCH),
        ),
        Case::new(
            Op::PoolBatch,
            Rayon,
            "spawn_oneshot",
            "`ThreadPool::spawn` + one-shot channel, × 32",
            LIVE,
            |_| jobs(RayonPool::new, POOL_BATCH),
        ),
        Case::new(
            Op::LuaExec,
            Baseline,
            "mlua_exec",
            "`lua.load(\"x = x + 1\").exec()`, bare `mlua`",
            LIVE,
            |_| Repeat::new(NoContext, lua::bare_state(), lua::mlua_exec).boxed(),
        ),
        Case::new(
            Op::LuaExec,
            Ours,
            "lua_exec",
            "`LuaInterpreter::exec(\"x = x + 1\")`",
            LIVE,
            |_| Repeat::new(NoContext, lua::interpreter(), lua::lua_exec).boxed(),
        ),
        Case::new(
            Op::LuaResume,
            Baseline,
            "bare_resume",
            "Lua's `coroutine.resume`, bare `mlua`",
            LIVE,
            |_| resume_loop(lua::Resume::Bare),
        ),
        Case::new(
            Op::LuaResume,
            Ours,
            "resume_no_context",
            "our `coroutine.resume`, `no_context` coroutine",
            LIVE,
            |_| resume_loop(lua::Resume::NoContext),
        ),
        Case::new(
            Op::LuaResume,
            Ours,
            "resume_own_context",
            "our `coroutine.resume`, own logical context",
            LIVE,
            |_| resume_loop(lua::Resume::OwnContext),
        ),
    ]
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
            assert_eq!(
                routine.last_cpu_time().is_some(),
                case.op.is_threaded(),
                "{}",
                case.id()
            );
        }
        for op in Op::ALL {
            assert!(cases.iter().any(|case| case.op == op), "{op:?} has no case");
        }
    }

    #[test]
    fn lifecycle_operations_succeed() {
        assert!(create_close() > 0);
        let mut interp = visited_interpreter();
        assert_eq!(exec(&mut interp), 1);
        assert_eq!(call(&mut interp), 1);
        assert_eq!(context_run(&mut Context::new()), 0);
    }
}
