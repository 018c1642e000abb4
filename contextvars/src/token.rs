//! [`Token`]: what `ContextVar::set` returns, to undo that set.

use std::fmt;
use std::marker::PhantomData;

use crate::TokenError;
use crate::value::{Value, VarId, downcast};

/// Undoes one [`ContextVar::set`](crate::ContextVar::set): pass it to
/// [`ContextVar::reset`](crate::ContextVar::reset) to put the topmost logical context back as
/// it was before the set (PEP 567 `Token`).
///
/// [`reset`](crate::ContextVar::reset) takes the token by value, so a token is used at most
/// once by construction: a second use does not compile. It works only with the variable that
/// made it, and only while the logical context it was made in is the current one; anything
/// else is a [`TokenError`](crate::TokenError).
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
/// VAR.reset(second).unwrap();
/// assert_eq!(VAR.get(), Some(1));
/// ```
///
/// Using a token twice is a compile error:
///
/// ```compile_fail,E0382
/// use contextvars::ContextVar;
///
/// static VAR: ContextVar<i32> = ContextVar::new("var");
/// let token = VAR.set(1);
/// VAR.reset(token).unwrap();
/// VAR.reset(token).unwrap(); // use of moved value
/// ```
pub struct Token<T> {
    pub(crate) var: VarId,
    pub(crate) var_name: &'static str,
    pub(crate) context: u64,
    /// What the topmost logical context held before the set: what `reset` puts back.
    pub(crate) old: Option<Value>,
    /// Where the topmost logical context held nothing: the value a lower layer showed, which
    /// is the variable's value before the set (`old_value`).
    pub(crate) below: Option<Value>,
    pub(crate) _type: PhantomData<fn() -> T>,
}

impl<T: Clone + 'static> Token<T> {
    /// The value the variable had before the set (its default does not count), or `None` if
    /// it had none: PEP 567's `Token.old_value`, with `None` for `Token.MISSING`.
    ///
    /// Like CPython, this is the value the variable showed, wherever it came from: after
    /// `VAR.set(1); copy_context().run(|| VAR.set(2))`, the inner token's `old_value` is
    /// `Some(1)`. What [`reset`](crate::ContextVar::reset) puts back is the topmost logical
    /// context as it was: there the copy's own logical context had no value, so a reset
    /// removes the copy's binding and 1 shows through again.
    ///
    /// ```
    /// use contextvars::{ContextVar, copy_context};
    ///
    /// static VAR: ContextVar<i32> = ContextVar::new("var");
    /// VAR.set(1);
    /// copy_context().run(|| {
    ///     let token = VAR.set(2);
    ///     assert_eq!(token.old_value(), Some(1));
    ///     VAR.reset(token).unwrap();
    ///     assert_eq!(VAR.get(), Some(1));
    /// });
    /// ```
    pub fn old_value(&self) -> Option<T> {
        self.old
            .as_ref()
            .or(self.below.as_ref())
            .and_then(downcast::<T>)
            .cloned()
    }
}

impl<T> Token<T> {
    /// The id of the variable that made this token.
    pub fn var_id(&self) -> VarId {
        self.var
    }
}

impl<T> fmt::Debug for Token<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Token var={:?}>", self.var_name)
    }
}

/// Why [`ContextVar::try_reset`](crate::ContextVar::try_reset) refused: the [`TokenError`],
/// and the token, unused.
///
/// ```
/// use contextvars::{ContextVar, TokenError};
///
/// static A: ContextVar<i32> = ContextVar::new("a");
/// static B: ContextVar<i32> = ContextVar::new("b");
/// let refused = B.try_reset(A.set(1)).unwrap_err();
/// assert_eq!(refused.error(), TokenError::WrongVar);
/// assert!(A.try_reset(refused.into_token()).is_ok());
/// ```
pub struct ResetError<T> {
    pub(crate) error: TokenError,
    pub(crate) token: Token<T>,
}

impl<T> ResetError<T> {
    /// Why the reset was refused.
    pub fn error(&self) -> TokenError {
        self.error
    }

    /// The token, unused: it may be reset where it applies.
    pub fn into_token(self) -> Token<T> {
        self.token
    }
}

impl<T> fmt::Debug for ResetError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResetError")
            .field("error", &self.error)
            .field("var", &self.token.var_name)
            .finish()
    }
}

impl<T> fmt::Display for ResetError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<T> std::error::Error for ResetError<T> {}
