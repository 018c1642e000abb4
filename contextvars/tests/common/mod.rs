//! Helpers shared by the integration tests.

/// Runs `f` on a new thread (so it starts with an empty execution context, and its thread
/// state is torn down before this returns) and returns its result, re-raising its panic.
pub fn on_fresh_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
