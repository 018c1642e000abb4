//! Task polls and spawns on a real tokio runtime, with and without runtime-level propagation
//! (`exec_context::tokio::propagate`, which exists only with `--cfg tokio_unstable`).

use std::future::Future;
use std::hint::black_box;
use std::time::Duration;

use tokio::runtime::{Builder, Runtime};
use tokio::task::yield_now;

use crate::clock::thread_cpu_time;
use crate::harness::Routine;
use crate::live::{LIVE, Live, OursLive, TASK_VALUE};

/// How a task is made and which runtime runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A plain runtime, a plain task.
    Bare,
    /// A runtime with `propagate`, a plain task (needs `--cfg tokio_unstable`).
    Hooks,
    /// A runtime with four task hooks that do nothing, a plain task: tokio's own cost of
    /// having hooks (needs `--cfg tokio_unstable`).
    EmptyHooks,
    /// A plain runtime, the task wrapped with `in_current_context`.
    Wrapper,
    /// A plain runtime, the task wrapped with tokio's `TASK_VALUE.scope`.
    TokioScope,
}

/// Whether this build can measure [`Mode::Hooks`].
pub const HOOKS_AVAILABLE: bool = cfg!(tokio_unstable);

/// A current-thread runtime for `mode` (the hooks it has, if any).
pub fn runtime(mode: Mode) -> Runtime {
    let mut builder = Builder::new_current_thread();
    #[cfg(tokio_unstable)]
    match mode {
        Mode::Hooks => {
            exec_context::tokio::propagate(&mut builder);
        }
        Mode::EmptyHooks => {
            builder
                .on_task_spawn(|meta| {
                    black_box(meta);
                })
                .on_before_task_poll(|meta| {
                    black_box(meta);
                })
                .on_after_task_poll(|meta| {
                    black_box(meta);
                })
                .on_task_terminate(|meta| {
                    black_box(meta);
                });
        }
        _ => {}
    }
    #[cfg(not(tokio_unstable))]
    let _ = mode;
    builder.build().expect("a current-thread tokio runtime")
}

/// Spawns `future` the way `mode` says.
fn spawn<F>(mode: Mode, future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    use exec_context::FutureExt as _;
    match mode {
        Mode::Bare | Mode::Hooks | Mode::EmptyHooks => tokio::spawn(future),
        Mode::Wrapper => tokio::spawn(future.in_current_context()),
        Mode::TokioScope => tokio::spawn(TASK_VALUE.scope(2, future)),
    }
}

/// One task that yields `calls` times (`tokio::task::yield_now`); the clock runs inside the
/// task, so each operation is one yield and one poll, hooks included.
pub struct RuntimePolls {
    live: OursLive,
    runtime: Runtime,
    mode: Mode,
    reads: bool,
}

impl RuntimePolls {
    /// Polls in `mode`, with `live` variables in the spawner's context.
    pub fn new(live: usize, mode: Mode) -> Self {
        Self {
            live: OursLive::new(live),
            runtime: runtime(mode),
            mode,
            reads: false,
        }
    }

    /// The task also reads one context variable (`ContextVar::get`) after each yield.
    pub fn reading(mut self) -> Self {
        self.reads = true;
        self
    }
}

impl Routine for RuntimePolls {
    fn run(&mut self, calls: u64) -> Duration {
        let Self {
            live,
            runtime,
            mode,
            reads,
        } = self;
        let (mode, reads) = (*mode, *reads);
        live.run(|| {
            runtime.block_on(async move {
                spawn(mode, async move {
                    let start = thread_cpu_time();
                    for _ in 0..calls {
                        yield_now().await;
                        if reads {
                            black_box(LIVE[0].get());
                        }
                    }
                    thread_cpu_time().saturating_sub(start)
                })
                .await
                .unwrap_or_default()
            })
        })
    }

    fn ops_per_call(&self) -> u64 {
        1
    }
}
