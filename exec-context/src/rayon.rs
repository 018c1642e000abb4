//! Rayon integration (feature `rayon`): jobs that run in their spawner's context.
//!
//! Rayon's workers are ordinary threads with their own (empty) contexts, so a plain
//! `rayon::spawn` or `join` loses the spawner's context variables (rayon#1018).

use crate::thread::job;

/// `rayon::spawn` carrying a snapshot of the current context.
///
/// ```
/// use contextvars::ContextVar;
///
/// static REQUEST: ContextVar<u32> = ContextVar::new("request");
///
/// REQUEST.set(3);
/// let (send, receive) = std::sync::mpsc::channel();
/// exec_context::rayon::spawn(move || send.send(REQUEST.get()).unwrap());
/// assert_eq!(receive.recv().unwrap(), Some(3));
/// ```
pub fn spawn<F>(f: F)
where
    F: FnOnce() + Send + 'static,
{
    rayon::spawn(job(f));
}

/// `rayon::join` where both closures run in a snapshot of the current context (each with a
/// logical context of its own, so their changes stay apart).
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let ec = contextvars::get_execution_context().inherited();
    let (ec_a, ec_b) = (ec.clone(), ec);
    rayon::join(
        move || contextvars::run_with_execution_context(&ec_a, a),
        move || contextvars::run_with_execution_context(&ec_b, b),
    )
}

/// `ThreadPool::spawn` carrying a snapshot of the current context.
pub fn spawn_in<F>(pool: &rayon::ThreadPool, f: F)
where
    F: FnOnce() + Send + 'static,
{
    pool.spawn(job(f));
}

/// `ThreadPool::install` carrying a snapshot of the current context.
pub fn install<F, R>(pool: &rayon::ThreadPool, f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let ec = contextvars::get_execution_context().inherited();
    pool.install(move || contextvars::run_with_execution_context(&ec, f))
}
