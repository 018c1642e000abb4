//! Spawn + join on a current-thread tokio runtime.

use std::future::{Ready, ready};
use std::hint::black_box;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::clock::thread_cpu_time;
use crate::harness::Routine;
use crate::live::{Live, OursLive};

/// A spawn function for a task that is ready at once.
pub type Spawn = fn(Ready<u64>) -> JoinHandle<u64>;

/// Spawns a ready task and awaits it, `calls` times, from inside `block_on` on a
/// current-thread runtime (so the whole round trip runs on the timing thread), with the live
/// context current. The runtime is built once and the clock runs inside `block_on`.
pub struct SpawnJoin {
    live: OursLive,
    runtime: Runtime,
    spawn: Spawn,
}

impl SpawnJoin {
    /// Spawns with `spawn`, with `live` variables in the current context.
    ///
    /// # Panics
    ///
    /// If the runtime cannot be built.
    pub fn new(live: usize, spawn: Spawn) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread tokio runtime");
        Self::on(runtime, live, spawn)
    }

    /// Spawns with `spawn` on `runtime` (one with task hooks, say), with `live` variables in
    /// the current context: the same loop as [`new`](Self::new)'s, so the rows compare.
    pub fn on(runtime: Runtime, live: usize, spawn: Spawn) -> Self {
        Self {
            live: OursLive::new(live),
            runtime,
            spawn,
        }
    }
}

impl Routine for SpawnJoin {
    fn run(&mut self, calls: u64) -> Duration {
        let Self {
            live,
            runtime,
            spawn,
        } = self;
        let spawn = black_box(*spawn);
        live.run(|| {
            runtime.block_on(async move {
                let mut checksum = 0u64;
                let start = thread_cpu_time();
                for _ in 0..calls {
                    checksum = checksum.wrapping_add(spawn(ready(1)).await.unwrap_or(0));
                }
                let spent = thread_cpu_time().saturating_sub(start);
                black_box(checksum);
                spent
            })
        })
    }

    fn ops_per_call(&self) -> u64 {
        1
    }
}

/// `tokio::spawn`.
pub fn tokio_spawn(future: Ready<u64>) -> JoinHandle<u64> {
    tokio::spawn(future)
}

/// `exec_context::tokio::spawn`: the task starts from a snapshot of the spawner's context.
pub fn ours_spawn(future: Ready<u64>) -> JoinHandle<u64> {
    exec_context::tokio::spawn(future)
}
