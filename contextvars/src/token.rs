//! [`Token`]: what `ContextVar::set` returns, to undo that set.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use crate::value::{Value, VarId, downcast};

/// Undoes one [`ContextVar::set`](crate::ContextVar::set): pass it to
/// [`ContextVar::reset`](crate::ContextVar::reset) to put the topmost logical context back as
/// it was before the set (PEP 567 `Token`).
///
/// A token can be used once, only with the variable that made it, and only while the logical
/// context it was made in is the current one; anything else is a
/// [`TokenError`](crate::TokenError).
///
/// ```
/// use contextvars::ContextVar;
///
/// static VAR: ContextVar<i32> = ContextVar::new("var");
///
/// let first = VAR.set(1);
/// assert_eq!(first.old_value(), None); // PEP 567's Token.MISSING
/// let second = VAR.set(2);
/// assert_eq!(second.old_value(), Some(1));
/// VAR.reset(&second).unwrap();
/// assert_eq!(VAR.get(), Some(1));
/// assert!(VAR.reset(&second).is_err()); // already used
/// ```
pub struct Token<T> {
    pub(crate) var: VarId,
    pub(crate) var_name: &'static str,
    pub(crate) context: u64,
    pub(crate) old: Option<Value>,
    pub(crate) used: Cell<bool>,
    pub(crate) _type: PhantomData<fn() -> T>,
}

impl<T: Clone + 'static> Token<T> {
    /// The value the variable had in the topmost logical context before the set, or `None`
    /// if it had none there (PEP 567's `Token.MISSING`) — which is what `reset` puts back.
    ///
    /// This differs from CPython where a value came from a lower layer: after
    /// `VAR.set(1); copy_context().run(|| VAR.set(2))`, CPython's flat context reports
    /// `old_value == 1`; here the copy's own logical context had no value, so `None`, and a
    /// reset removes the copy's binding so that 1 shows through again.
    pub fn old_value(&self) -> Option<T> {
        self.old.as_ref().and_then(downcast::<T>).cloned()
    }
}

impl<T> Token<T> {
    /// The id of the variable that made this token.
    pub fn var_id(&self) -> VarId {
        self.var
    }

    /// Whether the token has been used.
    pub fn is_used(&self) -> bool {
        self.used.get()
    }
}

impl<T> fmt::Debug for Token<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<Token{} var={:?}>",
            if self.used.get() { " used" } else { "" },
            self.var_name
        )
    }
}
