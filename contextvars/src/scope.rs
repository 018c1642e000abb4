//! Async scopes: [`ContextVar::scope_future`] (a value for every poll of one future) and
//! [`ContextVar::set_guard`] (a set undone on drop, which may be held across `.await`).
//! Runtime-agnostic: only `std::future::Future`.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use pin_project_lite::pin_project;

use crate::error::TokenError;
use crate::thread_state;
use crate::token::Token;
use crate::value::Value;
use crate::var::ContextVar;

impl<T: Send + Sync + 'static> ContextVar<T> {
    /// Wraps `future` so that every poll of it sees the variable set to `value`, like
    /// [`tokio::task::LocalKey::scope`](https://docs.rs/tokio/latest/tokio/task/struct.LocalKey.html#method.scope).
    ///
    /// Around each poll the value is set in the poller's topmost logical context and the
    /// previous binding is put back afterwards (also when the poll panics), so the caller's
    /// context is untouched between polls, on whichever thread polls. If the future sets the
    /// variable itself, its last value is what later polls see; if it deletes it, later
    /// polls see the caller's value. The future is also dropped inside the scope. Attaches a
    /// poll leaves attached ([`attach`](crate::attach)) end with the poll, as with
    /// [`ContextVar::scope`], while the scope has a value: the polls after the future deleted
    /// the variable set nothing, so nothing scopes them.
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static REQUEST: ContextVar<u32> = ContextVar::new("request");
    ///
    /// let future = REQUEST.scope_future(7, async { REQUEST.get() });
    /// assert_eq!(REQUEST.get(), None);
    /// assert_eq!(futures_executor::block_on(future), Some(7));
    /// assert_eq!(REQUEST.get(), None);
    /// ```
    pub fn scope_future<F: Future>(&'static self, value: T, future: F) -> ScopeFuture<T, F> {
        // What `set` records for an unusual variable, which the value is set like.
        if !self.is_inherited() || self.is_pinned() {
            self.note_flags(self.id());
        }
        let stored = Value::new(self.name(), self.is_inherited(), self.is_pinned(), value);
        ScopeFuture {
            var: self,
            value: Some(stored),
            future: Some(future),
        }
    }

    /// Sets the variable and returns a guard that undoes the set when dropped (like
    /// [`reset`](Self::reset) with the set's token). The guard may be held across `.await`
    /// inside one task whose context is the same at every poll, so that the reset finds it:
    /// a task that carries its context (wrapped with `exec-context`'s `in_current_context`, or
    /// run by a runtime that carries contexts through its hooks, such as `exec-context`'s
    /// `tokio::propagate`), or one whose polls all run on one thread in one context (as under
    /// `futures_executor::block_on`). Otherwise each poll sees the context of the thread that
    /// polls it: on a multi-thread runtime, a poll on another thread than the set's is in
    /// another context (see below).
    ///
    /// # Dropped in another context
    ///
    /// The reset only applies in the logical context the set was made in. Dropped anywhere
    /// else (moved to another task, kept after the task's context was left), the guard
    /// changes nothing — no context is ever corrupted — and, in debug builds, panics to
    /// point at the bug (unless the thread is already panicking). Use [`SetGuard::reset`] to
    /// get the [`TokenError`] instead.
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static TENANT: ContextVar<&str> = ContextVar::new("tenant");
    ///
    /// futures_executor::block_on(async {
    ///     {
    ///         let _tenant = TENANT.set_guard("acme");
    ///         std::future::ready(()).await;
    ///         assert_eq!(TENANT.get(), Some("acme"));
    ///     }
    ///     assert_eq!(TENANT.get(), None);
    /// });
    /// ```
    pub fn set_guard(&self, value: T) -> SetGuard<'_, T> {
        SetGuard {
            var: self,
            token: Some(self.set(value)),
        }
    }
}

/// A set undone when dropped: made by [`ContextVar::set_guard`].
///
/// ```
/// use contextvars::ContextVar;
///
/// static LEVEL: ContextVar<u8> = ContextVar::new("level");
///
/// LEVEL.set(1);
/// let guard = LEVEL.set_guard(2);
/// assert_eq!(LEVEL.get(), Some(2));
/// drop(guard);
/// assert_eq!(LEVEL.get(), Some(1));
///
/// let guard = LEVEL.set_guard(3);
/// assert_eq!(guard.reset(), Ok(())); // the same, with the outcome
/// assert_eq!(LEVEL.get(), Some(1));
/// ```
#[must_use = "the variable is reset as soon as the guard is dropped"]
pub struct SetGuard<'a, T: Send + Sync + 'static> {
    var: &'a ContextVar<T>,
    token: Option<Token<T>>,
}

impl<T: Send + Sync + 'static> SetGuard<'_, T> {
    /// Undoes the set now.
    ///
    /// # Errors
    ///
    /// [`TokenError::WrongContext`] if the current logical context is not the one the set was
    /// made in; nothing changes then.
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, TokenError};
    ///
    /// static VAR: ContextVar<u8> = ContextVar::new("var");
    ///
    /// let guard = VAR.set_guard(1);
    /// let outcome = Context::new().run(move || guard.reset());
    /// assert_eq!(outcome, Err(TokenError::WrongContext));
    /// assert_eq!(VAR.get(), Some(1)); // untouched
    /// ```
    pub fn reset(mut self) -> Result<(), TokenError> {
        self.undo()
    }

    fn undo(&mut self) -> Result<(), TokenError> {
        match self.token.take() {
            // As `try_reset`: the set is undone before the token's values drop, so a `Drop`
            // of theirs that panics leaves it undone (`reset` drops the token's copy of the
            // value below first, and would leave the set in place).
            Some(token) => self.var.try_reset(token).map_err(|refused| refused.error()),
            None => Ok(()),
        }
    }
}

impl<T: Send + Sync + 'static> Drop for SetGuard<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Dropped while unwinding: a `Drop` of the displaced value that panics too is
            // discarded, not an abort (the reset is recorded before it runs).
            crate::thread_state::contain(|| {
                let _ = self.undo();
            });
            return;
        }
        // During the thread's teardown (a guard held by another thread-local's value) there
        // is no context left to undo the set in, nor to make it in: nothing to report, and a
        // panic there would abort the process.
        if let Err(error) = self.undo()
            && cfg!(debug_assertions)
            && !std::thread::panicking()
            && !crate::thread_state::torn_down()
        {
            panic!(
                "SetGuard for context variable {:?} dropped outside the context it was set in \
                 ({error}); the variable was left as it is",
                self.var.name()
            );
        }
    }
}

impl<T: Send + Sync + 'static> fmt::Debug for SetGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetGuard").field("var", &self.var).finish()
    }
}

pin_project! {
    /// A future that sees a context variable set to its own value at every poll: made by
    /// [`ContextVar::scope_future`].
    ///
    /// ```
    /// use std::future::Future;
    /// use std::pin::pin;
    /// use std::task::{Context, Poll, Waker};
    /// use contextvars::ContextVar;
    ///
    /// static REQUEST: ContextVar<u32> = ContextVar::new("request");
    ///
    /// REQUEST.set(1);
    /// let mut first = true;
    /// let inner = std::future::poll_fn(move |_| {
    ///     if std::mem::take(&mut first) {
    ///         assert_eq!(REQUEST.get(), Some(7));
    ///         REQUEST.set(8); // what the later polls see
    ///         Poll::Pending
    ///     } else {
    ///         Poll::Ready(REQUEST.get())
    ///     }
    /// });
    /// let mut future = pin!(REQUEST.scope_future(7, inner));
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(future.as_mut().poll(&mut cx).is_pending());
    /// assert_eq!(REQUEST.get(), Some(1)); // between polls, the caller's value
    /// assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(Some(8)));
    /// assert_eq!(REQUEST.get(), Some(1));
    /// ```
    pub struct ScopeFuture<T, F>
    where
        T: Send,
        T: Sync,
        T: 'static,
    {
        var: &'static ContextVar<T>,
        value: Option<Value>,
        #[pin]
        future: Option<F>,
    }

    impl<T, F> PinnedDrop for ScopeFuture<T, F>
    where
        T: Send,
        T: Sync,
        T: 'static,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let mut future = this.future;
            if future.as_mut().as_pin_mut().is_some() {
                let _scope = Scope::enter(this.var, this.value);
                future.set(None);
            }
        }
    }
}

impl<T: Send + Sync + 'static, F: Future> Future for ScopeFuture<T, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this
            .future
            .as_pin_mut()
            .expect("ScopeFuture polled after it was dropped");
        let _scope = Scope::enter_reported(this.var, this.value);
        future.poll(cx)
    }
}

impl<T: Send + Sync + 'static, F> fmt::Debug for ScopeFuture<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeFuture")
            .field("var", &self.var)
            .finish_non_exhaustive()
    }
}

/// The scope's value, set for the duration of one poll (or of the drop).
struct Scope<'a, T: Send + Sync + 'static> {
    var: &'static ContextVar<T>,
    slot: &'a mut Option<Value>,
    token: Option<Token<T>>,
}

impl<'a, T: Send + Sync + 'static> Scope<'a, T> {
    fn enter(var: &'static ContextVar<T>, slot: &'a mut Option<Value>) -> Self {
        let id = var.id();
        // The value is this variable's, so it holds a `T`. It leaves the slot only once it
        // is stored: a panic before (entering a deferred attach runs its fetch) keeps it for
        // the next poll.
        let token = slot
            .is_some()
            .then(|| thread_state::set::<T>(id, slot))
            .flatten()
            .map(|previous| Token {
                var: id,
                var_name: var.name(),
                context: previous.context,
                old: previous.top,
                below: previous.below,
                _type: PhantomData,
            });
        Scope { var, slot, token }
    }

    /// [`enter`](Self::enter) for a poll: the set is reported to watchers like
    /// `ContextVar::set`'s (the one made to drop the future is not). Reported once the scope
    /// exists, so that a panic out of the report still resets the variable.
    fn enter_reported(var: &'static ContextVar<T>, slot: &'a mut Option<Value>) -> Self {
        let scope = Self::enter(var, slot);
        if scope.token.is_some() {
            crate::watch::notify(|| crate::watch::ContextEvent::Set {
                var: crate::VarInfo {
                    id: var.id(),
                    name: var.name(),
                },
            });
        }
        scope
    }

    fn leave(&mut self, token: Token<T>) {
        let id = self.var.id();
        // A deferred attach the poll left pending ends unfetched (the lookup below would
        // enter it; see `thread_state::discard_pending`).
        thread_state::discard_pending(token.context);
        // What the future left (its own later `set`, or nothing after a `delete`). Looking
        // it up may enter a deferred attach the future left, whose fetch (user code) may
        // panic: that attach is then over, and the lookup is made again, so that neither the
        // value nor the reset is lost; the panic goes on after the reset.
        let (left, panic) = match std::panic::catch_unwind(|| thread_state::lookup_topmost(id)) {
            Ok(left) => (left, None),
            Err(payload) => (thread_state::lookup_topmost(id), Some(payload)),
        };
        *self.slot = left;
        // Attaches the poll left behind end first (as at the end of a run), and what the
        // future left is then the value in the context the set was made in. Fails only if
        // the poll detached that context; nothing better can be done in a drop.
        // The value the slot held then (a copy of what the future set in a context left
        // attached, maybe the last one) is dropped after the reset: its `Drop` may panic.
        let slot = &mut *self.slot;
        let var = self.var;
        let mut stale = None;
        let reset = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = var.reset_scoped(token, || {
                stale = std::mem::replace(slot, thread_state::lookup_topmost(id));
            });
        }));
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(stale)));
        // The first panic goes on, after the reset; a later one is discarded.
        let mut panic = panic;
        for payload in [reset.err(), dropped.err()].into_iter().flatten() {
            match panic {
                None => panic = Some(payload),
                Some(_) => thread_state::discard_panic(payload),
            }
        }
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
    }
}

impl<T: Send + Sync + 'static> Drop for Scope<'_, T> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            if std::thread::panicking() {
                // The poll panicked: a `Drop` that panics too (of a value the refused reset
                // drops) is discarded, not an abort, as for `scope` and `SetGuard`.
                crate::thread_state::contain(|| self.leave(token));
            } else {
                self.leave(token);
            }
        }
    }
}
