//! Error types.

use std::fmt;

/// `ContextVar::delete` found no value for the variable in the topmost logical context
/// (PEP 550 §Setting and restoring context variables: like `del var` raising `NameError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupError {
    pub(crate) name: &'static str,
}

impl LookupError {
    /// The name of the variable that was not found.
    pub fn var_name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "context variable {:?} has no value in the topmost logical context",
            self.name
        )
    }
}

impl std::error::Error for LookupError {}

/// Why `ContextVar::reset` refused a [`Token`](crate::Token).
///
/// PEP 567 has a third token error, "already used": here `reset` takes the token by value,
/// so a second use does not compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The token was created by a different variable.
    WrongVar,
    /// The token was created in a different context than the current one.
    WrongContext,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::WrongVar => "the token was created by a different context variable",
            TokenError::WrongContext => "the token was created in a different context",
        })
    }
}

impl std::error::Error for TokenError {}
