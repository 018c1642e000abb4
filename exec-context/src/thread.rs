//! OS threads that start in a chosen execution context.

use std::io;
use std::sync::OnceLock;
use std::thread::JoinHandle;

use contextvars::{ExecutionContext, get_execution_context, run_with_execution_context};

/// What execution context a new thread starts with.
#[derive(Clone, Debug, Default)]
pub enum Inheritance {
    /// An empty context: PEP 550's rule for new threads (§Multithreaded Code). It keeps the
    /// spawner's [pinned](contextvars::pinned) values only ([`ExecutionContext::pinned`]), so a
    /// thread spawned inside an [interpreter](crate::interpreters) stays in it.
    #[default]
    Empty,
    /// A snapshot of the spawner's context, taken at spawn, without the variables that opted
    /// out of inheritance (Python 3.14's `thread_inherit_context`).
    Inherit,
    /// The given execution context.
    Given(ExecutionContext),
}

impl Inheritance {
    /// The context to start from, resolved in the spawning thread. The thread runs in it
    /// even when it is empty, so that what the thread sets is dropped when its function
    /// returns (a panic in a value's `Drop` reaching `join`), whatever the policy, rather
    /// than later in the thread's teardown.
    fn resolve(self) -> ExecutionContext {
        match self {
            Inheritance::Empty => ExecutionContext::pinned(),
            Inheritance::Inherit => get_execution_context().inherited(),
            Inheritance::Given(ec) => ec,
        }
    }
}

/// Spawns a thread that runs `f` in the context `policy` selects. What `f` sets stays in the
/// new thread. A thread spawned inside an [interpreter](crate::interpreters) runs in that
/// interpreter, which cannot be closed until the thread ends.
///
/// ```
/// use contextvars::ContextVar;
/// use exec_context::thread::{Inheritance, spawn};
///
/// static VAR: ContextVar<&str> = ContextVar::new("var");
///
/// VAR.set("main");
/// let empty = spawn(Inheritance::Empty, || VAR.get()).join().unwrap();
/// let inherited = spawn(Inheritance::Inherit, || VAR.get()).join().unwrap();
/// assert_eq!((empty, inherited), (None, Some("main")));
/// ```
pub fn spawn<F, T>(policy: Inheritance, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let start = policy.resolve();
    let guard = spawn_guard(&start);
    std::thread::spawn(move || {
        let _guard = guard;
        run_with_execution_context(&start, f)
    })
}

/// What a layer above gives every thread spawned here, to hold until it ends.
type SpawnHook = fn() -> Option<Box<dyn Send>>;

static SPAWN_HOOK: OnceLock<SpawnHook> = OnceLock::new();

/// Installs the hook whose result every thread spawned by [`spawn`] or [`Builder::spawn`]
/// holds until it ends (the first hook installed stays). The interpreters use it to count the
/// threads started inside an interpreter, which cannot be closed while they run; this module
/// knows nothing of them.
pub(crate) fn set_spawn_hook(hook: SpawnHook) {
    let _ = SPAWN_HOOK.set(hook);
}

/// The hook's guard for a thread about to be spawned, taken in the spawning thread but in the
/// context the thread will start in, so that a thread given another interpreter's context
/// counts for that interpreter.
fn spawn_guard(start: &ExecutionContext) -> Option<Box<dyn Send>> {
    let hook = SPAWN_HOOK.get()?;
    run_with_execution_context(start, hook)
}

/// A [`std::thread::Builder`] with an [`Inheritance`] policy.
///
/// ```
/// use exec_context::thread::{Builder, Inheritance};
///
/// let handle = Builder::new(Inheritance::Inherit)
///     .name("worker".into())
///     .spawn(|| std::thread::current().name().map(String::from))
///     .unwrap();
/// assert_eq!(handle.join().unwrap().as_deref(), Some("worker"));
/// ```
#[derive(Debug)]
pub struct Builder {
    inner: std::thread::Builder,
    policy: Inheritance,
}

impl Builder {
    /// A builder whose threads start in the context `policy` selects.
    pub fn new(policy: Inheritance) -> Self {
        Builder {
            inner: std::thread::Builder::new(),
            policy,
        }
    }

    /// Names the thread.
    #[must_use]
    pub fn name(mut self, name: String) -> Self {
        self.inner = self.inner.name(name);
        self
    }

    /// Sets the thread's stack size in bytes.
    #[must_use]
    pub fn stack_size(mut self, size: usize) -> Self {
        self.inner = self.inner.stack_size(size);
        self
    }

    /// Spawns the thread.
    ///
    /// # Errors
    ///
    /// As [`std::thread::Builder::spawn`]: the OS refused to create the thread. `f` is then
    /// dropped here, on the calling thread and in its context (what its captured values'
    /// `Drop` sets stays there), as a closure that never ran.
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let start = self.policy.resolve();
        let guard = spawn_guard(&start);
        self.inner.spawn(move || {
            let _guard = guard;
            run_with_execution_context(&start, f)
        })
    }
}

/// Wraps a job for any thread pool so it runs in a snapshot of the current context (taken
/// now, without variables that opted out of inheritance), with its own logical context. A
/// job the pool drops without running it (a pool shut down first) is dropped in that
/// context too.
///
/// ```
/// use contextvars::ContextVar;
///
/// static JOB: ContextVar<u8> = ContextVar::new("job");
/// JOB.set(1);
/// let job = exec_context::thread::job(|| JOB.get());
/// assert_eq!(std::thread::spawn(job).join().unwrap(), Some(1));
/// ```
pub fn job<F, T>(f: F) -> impl FnOnce() -> T + Send + 'static
where
    F: FnOnce() -> T + Send + 'static,
{
    let bound = crate::task::Bound::new(get_execution_context().inherited(), f);
    move || bound.call()
}
