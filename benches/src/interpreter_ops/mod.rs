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

use crate::cases::{Case, Repeat};
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

crate::case_ops! {
    /// A benchmarked interpreter operation.
    pub enum Op {
        /// One producer thread sends `u64`s to one consumer through an unbounded queue.
        StreamUnbounded => ("SPSC stream, unbounded", "stream_unbounded", "wall ns per message",
            "A producer thread sends the `u64`s `0..n`, the timing thread receives them; \
            wall-clock time from the start (both threads released by a barrier) to the \
            last receive. Ours `Queue::put(i)` / `get()` (`create_queue(0)`) and \
            `SendChannel::send_buffered(i)` / `recv()`; the peers' unbounded channels. Ours \
            carries each value as a `Shareable::Int` and extracts it again, as a user does."),
        /// The same through a queue bounded to [`BOUND`].
        StreamBounded => ("SPSC stream, bounded to 1024", "stream_bounded", "wall ns per message",
            "As the unbounded stream, through queues that hold at most 1024 items, so the \
            producer blocks when it runs ahead: ours `create_queue(1024)`, \
            `sync_channel(1024)`, crossbeam `bounded(1024)`."),
        /// Sends that return once the item was received.
        Rendezvous => ("rendezvous send (returns once received)", "rendezvous", "wall ns per message",
            "A stream whose every send returns only once the item was received (PEP 554's \
            `SendChannel.send`): ours `send(i)` against the peers' zero-capacity \
            channels, `sync_channel(0)` and crossbeam `bounded(0)`."),
        /// A value there and back between two threads.
        RoundTrip => ("round trip between two threads", "round_trip", "wall ns per round trip",
            "The timing thread sends `i` through one unbounded queue (channel), an echo \
            thread receives it and sends `i + 1` back through another; wall-clock time \
            per round trip. Both sides wait for every message, so this is two hand-offs \
            to a waiting thread."),
        /// Create an interpreter and close it.
        CreateClose => ("interpreter create + close", "create_close", "ns per create + close",
            "`interpreters::create()` then `close()`, one thread. Closing applies the \
            unbound-item policies to every live queue and channel of the process, so the \
            second row keeps 100 queues alive."),
        /// Run an empty closure in an interpreter.
        Exec => ("exec: enter + exit", "exec", "ns per enter + exit",
            "`interp.exec(|| ())` and `interp.call(|| 1)` on a thread that has run in \
            `interp` before: swap the thread's context state for the interpreter's, run, \
            swap back. The baseline is `Context::run(|| 0)` on a fresh context, the \
            context switch alone."),
        /// Submit one job to a pool and wait for its result.
        PoolSubmitWait => ("pool: submit + wait, one job at a time", "pool_submit_wait", "wall ns per job",
            "`submit(job)` then `wait()` on its handle, one job at a time, on pools of 2 \
            workers (a new pool per repetition, started off the clock); the job returns a \
            constant. Ours runs it in the worker's interpreter; \
            the baseline is a plain pool of the same design (one `Mutex<VecDeque>` of \
            boxed jobs, a `Condvar`, a result slot per job) without interpreters; rayon \
            `ThreadPool::spawn` with a one-shot channel for the result. Wall-clock time \
            per job: mostly two thread wake-ups, whose cost on a shared two-core VM moves \
            several-fold between runs."),
        /// Submit [`POOL_BATCH`] jobs, then wait for them.
        PoolBatch => ("pool: 32 jobs submitted, then waited for", "pool_batch", "wall ns per job",
            "32 `submit`s, then 32 `wait`s, per batch, on the same pools: the cost per \
            job while the workers are kept busy, where the interpreter's share shows."),
        /// `exec` of a one-line Lua snippet.
        LuaExec => ("Lua exec of a one-line snippet", "lua_exec", "ns per exec",
            "`x = x + 1` compiled and run: `LuaInterpreter::exec` (enter the interpreter, \
            load, run, exit, with the instruction-budget reset) against \
            `lua.load(..).exec()` on a bare `mlua` state (Lua 5.4, vendored), one thread."),
        /// One resume of a Lua coroutine.
        LuaResume => ("Lua coroutine resume", "lua_resume", "ns per resume",
            "One `coroutine.resume` of a coroutine that yields at once, from a Lua loop: \
            Lua's own resume on a bare `mlua` state (the baseline), ours on a coroutine \
            marked `contextvars.no_context` (our Lua-side `coroutine.resume` alone), and ours \
            on a coroutine that set a variable once, so that it has its own logical context \
            (entered lazily, only when a variable is read or set). The `_get` rows read a \
            context variable after every yield, so that each resume enters the context."),
    }
}

impl Op {
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
    // A failure must not be timed as a run: the report stops instead.
    interp.exec(|| ()).expect("exec runs");
    1
}

/// `interp.call(|| 1)`.
#[inline(never)]
pub fn call(interp: &mut Interpreter) -> u64 {
    interp.call(|| 1u64).expect("call runs")
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
    crate::case_table! { LIVE;
        StreamUnbounded Ours "queue" "`Queue::put(i)` / `get()`"
            => |_| stream(OurQueue { maxsize: 0 });
        // The ID the report keys on predates `send_buffered` (then `send_nowait`).
        StreamUnbounded Ours "channel_nowait" "`SendChannel::send_buffered(i)` / `recv()`"
            => |_| stream(OurChannelBuffered);
        StreamUnbounded Mpsc "channel" "`mpsc::channel()`" => |_| stream(MpscChannel);
        StreamUnbounded Crossbeam "unbounded" "`unbounded()`" => |_| stream(CrossbeamUnbounded);
        StreamBounded Ours "queue_1024" "`create_queue(1024)`"
            => |_| stream(OurQueue { maxsize: BOUND });
        StreamBounded Mpsc "sync_channel_1024" "`mpsc::sync_channel(1024)`"
            => |_| stream(MpscSyncChannel { bound: BOUND });
        StreamBounded Crossbeam "bounded_1024" "`bounded(1024)`"
            => |_| stream(CrossbeamBounded { capacity: BOUND });
        Rendezvous Ours "send" "`SendChannel::send(i)` / `recv()`" => |_| stream(OurChannelSend);
        Rendezvous Mpsc "sync_channel_0" "`mpsc::sync_channel(0)`"
            => |_| stream(MpscSyncChannel { bound: 0 });
        Rendezvous Crossbeam "bounded_0" "`bounded(0)`"
            => |_| stream(CrossbeamBounded { capacity: 0 });
        RoundTrip Ours "queue" "two `create_queue(0)`" => |_| round_trip(OurQueue { maxsize: 0 });
        RoundTrip Mpsc "channel" "two `mpsc::channel()`" => |_| round_trip(MpscChannel);
        RoundTrip Crossbeam "unbounded" "two `unbounded()`" => |_| round_trip(CrossbeamUnbounded);
        CreateClose Ours "create_close" "`create()` + `close()`"
            => |_| Box::new(CreateClose { queues: 0 });
        CreateClose Ours "create_close_100_queues" "the same, 100 queues alive"
            => |_| Box::new(CreateClose { queues: LIVE_QUEUES });
        Exec Baseline "context_run" "`Context::run(|| 0)`"
            => |_| Repeat::new(NoContext, Context::new(), context_run).boxed();
        Exec Ours "exec" "`interp.exec(|| ())`"
            => |_| Repeat::new(NoContext, visited_interpreter(), exec).boxed();
        Exec Ours "call" "`interp.call(|| 1)`"
            => |_| Repeat::new(NoContext, visited_interpreter(), call).boxed();
        PoolSubmitWait Baseline "plain_pool" "plain `Mutex<VecDeque>` + `Condvar` pool"
            => |_| jobs(PlainPool::new, 1);
        PoolSubmitWait Ours "interpreter_pool" "`InterpreterPool::submit(f).wait()`"
            => |_| jobs(OurPool::new, 1);
        PoolSubmitWait Rayon "spawn_oneshot" "`ThreadPool::spawn` + one-shot channel"
            => |_| jobs(RayonPool::new, 1);
        PoolBatch Baseline "plain_pool" "plain `Mutex<VecDeque>` + `Condvar` pool"
            => |_| jobs(PlainPool::new, POOL_BATCH);
        PoolBatch Ours "interpreter_pool" "`InterpreterPool::submit(f)` × 32, `wait()` × 32"
            => |_| jobs(OurPool::new, POOL_BATCH);
        PoolBatch Rayon "spawn_oneshot" "`ThreadPool::spawn` + one-shot channel, × 32"
            => |_| jobs(RayonPool::new, POOL_BATCH);
        LuaExec Baseline "mlua_exec" "`lua.load(\"x = x + 1\").exec()`, bare `mlua`"
            => |_| Repeat::new(NoContext, lua::bare_state(), lua::mlua_exec).boxed();
        LuaExec Ours "lua_exec" "`LuaInterpreter::exec(\"x = x + 1\")`"
            => |_| Repeat::new(NoContext, lua::interpreter(), lua::lua_exec).boxed();
        LuaResume Baseline "bare_resume" "Lua's `coroutine.resume`, bare `mlua`"
            => |_| resume_loop(lua::Resume::Bare);
        LuaResume Ours "resume_no_context" "our `coroutine.resume`, `no_context` coroutine"
            => |_| resume_loop(lua::Resume::NoContext);
        LuaResume Ours "resume_own_context" "our `coroutine.resume`, own logical context"
            => |_| resume_loop(lua::Resume::OwnContext);
        LuaResume Ours "resume_no_context_get" "as `no_context`, `VAR:get(0)` per resume"
            => |_| resume_loop(lua::Resume::NoContextGet);
        LuaResume Ours "resume_own_context_get" "own logical context, `VAR:get(0)` per resume"
            => |_| resume_loop(lua::Resume::OwnContextGet);
    }
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
