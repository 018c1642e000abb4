//! Errors of the interpreters API.

use std::any::Any;
use std::error::Error;
use std::fmt;

use super::shareable::Shareable;

/// Why an interpreter operation failed (PEP 734's `InterpreterError` family).
#[derive(Debug)]
#[non_exhaustive]
pub enum InterpreterError {
    /// The interpreter was closed (`InterpreterNotFoundError`).
    NotFound {
        /// Its ID.
        id: u64,
    },
    /// The interpreter is running an `exec`/`call` already (on this thread or another), so it
    /// cannot run another or be closed.
    Running {
        /// Its ID.
        id: u64,
    },
    /// Closing the interpreter the current thread is running in.
    Current {
        /// Its ID.
        id: u64,
    },
    /// Closing an interpreter that threads started inside it are still running in.
    HasThreads {
        /// Its ID.
        id: u64,
        /// How many such threads are running.
        threads: usize,
    },
    /// The main interpreter cannot be run in, prepared or closed through this API (PEP 734:
    /// interpreters not created by `create()` cannot be modified).
    Main,
    /// The code run in the interpreter failed: PEP 734's `ExecutionFailed` (PEP 554's
    /// `RunFailedError`).
    Failed(ExecutionFailed),
}

impl InterpreterError {
    /// The failure of the code, if that is what this is.
    pub fn as_failed(&self) -> Option<&ExecutionFailed> {
        match self {
            InterpreterError::Failed(failed) => Some(failed),
            _ => None,
        }
    }

    /// The failure of the code, if that is what this is.
    pub fn into_failed(self) -> Option<ExecutionFailed> {
        match self {
            InterpreterError::Failed(failed) => Some(failed),
            _ => None,
        }
    }
}

impl fmt::Display for InterpreterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterpreterError::NotFound { id } => write!(f, "interpreter {id} was closed"),
            InterpreterError::Running { id } => write!(f, "interpreter {id} is already running"),
            InterpreterError::Current { id } => {
                write!(f, "interpreter {id} is the current interpreter")
            }
            InterpreterError::HasThreads { id, threads } => {
                write!(
                    f,
                    "interpreter {id} still has {threads} thread(s) running in it"
                )
            }
            InterpreterError::Main => {
                f.write_str("the main interpreter cannot be run in, prepared or closed")
            }
            InterpreterError::Failed(failed) => fmt::Display::fmt(failed, f),
        }
    }
}

impl Error for InterpreterError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            InterpreterError::Failed(failed) => Some(failed),
            _ => None,
        }
    }
}

impl From<ExecutionFailed> for InterpreterError {
    fn from(failed: ExecutionFailed) -> Self {
        InterpreterError::Failed(failed)
    }
}

/// The surrogate of an uncaught failure inside an interpreter (PEP 734's `ExecutionFailed`,
/// PEP 554's `RunFailedError`): the original error's type name, message and full display,
/// with the original itself as [`source`](Error::source) — the Rust counterpart of PEP 554's
/// `raise exc.__cause__` idiom is [`downcast_source`](Self::downcast_source).
///
/// A panic is reported the same way: `type_name` is `"panic"`, the message is the panic's
/// message, and the source is a [`Panicked`] holding the payload when it is shareable (a
/// string, a number, ...).
///
/// ```
/// use exec_context::interpreters;
///
/// #[derive(Debug)]
/// struct KeyError(&'static str);
/// impl std::fmt::Display for KeyError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "{:?}", self.0)
///     }
/// }
/// impl std::error::Error for KeyError {}
///
/// let interp = interpreters::create();
/// let error = interp.try_exec(|| Err(KeyError("spam"))).unwrap_err();
/// let failed = error.as_failed().unwrap();
/// assert!(failed.type_name().ends_with("KeyError"));
/// assert_eq!(failed.message(), "\"spam\"");
/// assert_eq!(failed.downcast_source::<KeyError>().unwrap().0, "spam"); // re-raise it
/// interp.exec(|| ()).unwrap(); // the interpreter is still usable
/// ```
pub struct ExecutionFailed {
    interpreter: u64,
    type_name: String,
    message: String,
    formatted: String,
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

/// The alias PEP 554 users know.
pub type RunFailedError = ExecutionFailed;

impl ExecutionFailed {
    pub(crate) fn from_error<E: Error + Send + Sync + 'static>(interpreter: u64, error: E) -> Self {
        let message = error.to_string();
        let mut formatted = format!("{}: {message}", std::any::type_name::<E>());
        let mut cause = error.source();
        while let Some(inner) = cause {
            formatted.push_str("\n\nCaused by: ");
            formatted.push_str(&inner.to_string());
            cause = inner.source();
        }
        ExecutionFailed {
            interpreter,
            type_name: std::any::type_name::<E>().to_owned(),
            message,
            formatted,
            source: Some(Box::new(error)),
        }
    }

    pub(crate) fn from_panic(interpreter: u64, payload: Box<dyn Any + Send>) -> Self {
        let shared = Shareable::from_any(payload).ok();
        let message = match &shared {
            Some(Shareable::Str(text)) => text.to_string(),
            Some(other) => format!("{other:?}"),
            None => "a panic with a payload that cannot be shared".to_owned(),
        };
        ExecutionFailed {
            interpreter,
            type_name: "panic".to_owned(),
            formatted: format!("panic: {message}"),
            message,
            source: shared.map(|payload| {
                Box::new(Panicked { payload }) as Box<dyn Error + Send + Sync + 'static>
            }),
        }
    }

    /// The ID of the interpreter the failure happened in.
    pub fn interpreter_id(&self) -> u64 {
        self.interpreter
    }

    /// The original error's type name (`std::any::type_name`), or `"panic"`.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The original error's message (its `Display`), or the panic message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The full display of the failure: type, message, and the chain of causes.
    pub fn formatted(&self) -> &str {
        &self.formatted
    }

    /// Whether the code panicked (rather than returning an error).
    pub fn is_panic(&self) -> bool {
        self.type_name == "panic"
    }

    /// The original error, if it is an `E`.
    pub fn downcast_source<E: Error + 'static>(&self) -> Option<&E> {
        self.source.as_deref()?.downcast_ref::<E>()
    }

    /// Takes the original error out (to re-raise it).
    pub fn into_source(self) -> Option<Box<dyn Error + Send + Sync + 'static>> {
        self.source
    }
}

impl fmt::Display for ExecutionFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (uncaught in interpreter {})",
            self.type_name, self.message, self.interpreter
        )
    }
}

impl fmt::Debug for ExecutionFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutionFailed")
            .field("interpreter", &self.interpreter)
            .field("type_name", &self.type_name)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl Error for ExecutionFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// The source of an [`ExecutionFailed`] reporting a panic whose payload was shareable.
#[derive(Debug, Clone, PartialEq)]
pub struct Panicked {
    payload: Shareable,
}

impl Panicked {
    /// The panic's payload (usually its message, as a `str`).
    pub fn payload(&self) -> &Shareable {
        &self.payload
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.payload {
            Shareable::Str(text) => write!(f, "panicked: {text}"),
            other => write!(f, "panicked with {other:?}"),
        }
    }
}

impl Error for Panicked {}
