//! `propagate` without `--cfg tokio_unstable`: a compile error that says why.

mod sealed {
    pub trait Sealed {}
}

/// Implemented by nothing: it stands for "tokio's task hooks are compiled in", which needs
/// `RUSTFLAGS="--cfg tokio_unstable"`. Its only purpose is the error message of
/// [`propagate`] in a build without that flag: no type, tokio's `Builder` included, meets
/// the bound.
///
/// ```compile_fail,E0277
/// fn needs_hooks<B: exec_context::tokio::TaskHooksAvailable>() {}
/// needs_hooks::<tokio::runtime::Builder>();
/// ```
#[diagnostic::on_unimplemented(
    message = "exec_context::tokio::propagate needs tokio's task hooks, which exist only with `RUSTFLAGS=\"--cfg tokio_unstable\"`",
    label = "this build has no `--cfg tokio_unstable`",
    note = "build with RUSTFLAGS=\"--cfg tokio_unstable\", or wrap each spawn with `exec_context::tokio::spawn` / `carry`"
)]
pub trait TaskHooksAvailable: sealed::Sealed {}

/// Gives every task of a runtime its own context — but only with
/// `RUSTFLAGS="--cfg tokio_unstable"`, where tokio has task hooks. In this build (without the
/// flag) any call is a compile error naming the flag, never a silent no-op:
///
/// ```compile_fail,E0277
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// exec_context::tokio::propagate(&mut builder);
/// ```
///
/// Without the flag, wrap spawns instead: [`spawn`](super::spawn), [`carry`](super::carry).
pub fn propagate<B: TaskHooksAvailable>(builder: &mut B) -> &mut B {
    // No type implements the bound: this cannot be called.
    builder
}
