//! Errors of the interpreters API.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::fifo::FifoError;
use super::shareable::Shareable;

/// Why an interpreter operation failed (PEP 734's `InterpreterError` family).
///
/// ```
/// use exec_context::interpreters::{self, InterpreterError};
///
/// let interp = interpreters::create();
/// interp.close().unwrap();
/// let error = interp.exec(|| ()).unwrap_err();
/// assert!(matches!(error, InterpreterError::NotFound { id } if id == interp.id()));
/// assert_eq!(error.to_string(), format!("interpreter {} was closed", interp.id()));
/// ```
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
    ///
    /// ```
    /// use exec_context::interpreters::{self, InterpreterError};
    ///
    /// let interp = interpreters::create();
    /// let error = interp.try_exec(|| Err(std::fmt::Error)).unwrap_err();
    /// assert!(error.as_failed().unwrap().type_name().ends_with("fmt::Error"));
    /// assert!(InterpreterError::Main.as_failed().is_none());
    /// ```
    pub fn as_failed(&self) -> Option<&ExecutionFailed> {
        match self {
            InterpreterError::Failed(failed) => Some(failed),
            _ => None,
        }
    }

    /// The failure of the code, if that is what this is.
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// let error = interp.try_call(|| "x".parse::<f64>()).unwrap_err();
    /// let failed = error.into_failed().unwrap(); // owned: to keep or pass on
    /// assert_eq!(failed.message(), "invalid float literal");
    /// ```
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
///
/// ```
/// use exec_context::interpreters::{self, RunFailedError};
///
/// let interp = interpreters::create();
/// let error = interp.run(|| panic!("spam")).unwrap_err();
/// let failed: RunFailedError = error.into_failed().unwrap();
/// assert!(failed.is_panic());
/// assert_eq!(failed.message(), "spam");
/// ```
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

    /// [`from_error`](Self::from_error) or [`from_panic`](Self::from_panic) of what a run
    /// gave, where the user code they run (the error's `Display` and `source`, a payload's
    /// `Drop`) cannot panic out: a panic there is the failure instead, and a panic while
    /// describing that one gives a fixed message (its payload is leaked, not dropped).
    pub(crate) fn describe<E: Error + Send + Sync + 'static>(
        interpreter: u64,
        outcome: Result<E, Box<dyn Any + Send>>,
    ) -> Self {
        let described = catch_unwind(AssertUnwindSafe(|| match outcome {
            Ok(error) => ExecutionFailed::from_error(interpreter, error),
            Err(payload) => ExecutionFailed::from_panic(interpreter, payload),
        }));
        described.unwrap_or_else(|payload| {
            catch_unwind(AssertUnwindSafe(|| {
                ExecutionFailed::from_panic(interpreter, payload)
            }))
            .unwrap_or_else(|payload| {
                std::mem::forget(payload);
                let message = "a panic while describing a failure".to_owned();
                ExecutionFailed {
                    interpreter,
                    type_name: "panic".to_owned(),
                    formatted: format!("panic: {message}"),
                    message,
                    source: None,
                }
            })
        })
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
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// let error = interp.try_exec(|| Err(std::fmt::Error)).unwrap_err();
    /// assert_eq!(error.as_failed().unwrap().interpreter_id(), interp.id());
    /// ```
    pub fn interpreter_id(&self) -> u64 {
        self.interpreter
    }

    /// The original error's type name (`std::any::type_name`), or `"panic"`.
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// let error = interp.try_call(|| "x".parse::<u8>()).unwrap_err();
    /// assert!(error.as_failed().unwrap().type_name().ends_with("ParseIntError"));
    /// let error = interp.exec(|| panic!("boom")).unwrap_err();
    /// assert_eq!(error.as_failed().unwrap().type_name(), "panic");
    /// ```
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The original error's message (its `Display`), or the panic message.
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// let error = interp.try_exec(|| Err(std::io::Error::other("disk full"))).unwrap_err();
    /// assert_eq!(error.as_failed().unwrap().message(), "disk full");
    /// let error = interp.exec(|| panic!("worker {} gave up", 3)).unwrap_err();
    /// assert_eq!(error.as_failed().unwrap().message(), "worker 3 gave up");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The full display of the failure: type, message, and the chain of causes.
    ///
    /// ```
    /// use std::error::Error;
    /// use std::fmt;
    /// use std::num::ParseIntError;
    ///
    /// #[derive(Debug)]
    /// struct PortError(ParseIntError);
    /// impl fmt::Display for PortError {
    ///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    ///         f.write_str("bad port")
    ///     }
    /// }
    /// impl Error for PortError {
    ///     fn source(&self) -> Option<&(dyn Error + 'static)> {
    ///         Some(&self.0)
    ///     }
    /// }
    ///
    /// let interp = exec_context::interpreters::create();
    /// let parse = || "http".parse::<u16>().map(drop).map_err(PortError);
    /// let error = interp.try_exec(parse).unwrap_err();
    /// let formatted = error.as_failed().unwrap().formatted();
    /// let expected = "PortError: bad port\n\nCaused by: invalid digit found in string";
    /// assert!(formatted.ends_with(expected));
    /// ```
    pub fn formatted(&self) -> &str {
        &self.formatted
    }

    /// Whether the code panicked (rather than returning an error).
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// let panicked = interp.exec(|| panic!("boom")).unwrap_err();
    /// assert!(panicked.as_failed().unwrap().is_panic());
    /// let returned = interp.try_exec(|| Err(std::fmt::Error)).unwrap_err();
    /// assert!(!returned.as_failed().unwrap().is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        self.type_name == "panic"
    }

    /// The original error, if it is an `E`.
    ///
    /// ```
    /// use std::io;
    ///
    /// let interp = exec_context::interpreters::create();
    /// let error = interp.try_exec(|| Err(io::Error::from(io::ErrorKind::NotFound))).unwrap_err();
    /// let failed = error.as_failed().unwrap();
    /// assert_eq!(failed.downcast_source::<io::Error>().unwrap().kind(), io::ErrorKind::NotFound);
    /// assert!(failed.downcast_source::<std::fmt::Error>().is_none()); // not an `E`
    /// ```
    pub fn downcast_source<E: Error + 'static>(&self) -> Option<&E> {
        self.source.as_deref()?.downcast_ref::<E>()
    }

    /// Takes the original error out (to re-raise it).
    ///
    /// ```
    /// use std::io;
    ///
    /// let interp = exec_context::interpreters::create();
    /// let error = interp.try_exec(|| Err(io::Error::other("no such table"))).unwrap_err();
    /// let original = error.into_failed().unwrap().into_source().unwrap();
    /// assert_eq!(original.to_string(), "no such table");
    /// assert!(original.downcast::<io::Error>().is_ok());
    /// ```
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
///
/// ```
/// use exec_context::interpreters::{self, Panicked, Shareable};
///
/// let interp = interpreters::create();
/// let error = interp.exec(|| std::panic::panic_any(42_i32)).unwrap_err();
/// let panicked: &Panicked = error.as_failed().unwrap().downcast_source().unwrap();
/// assert_eq!(panicked.payload(), &Shareable::from(42));
/// assert_eq!(panicked.to_string(), "panicked with 42");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Panicked {
    payload: Shareable,
}

impl Panicked {
    /// The panic's payload (usually its message, as a `str`).
    ///
    /// ```
    /// use exec_context::interpreters::{self, Panicked, Shareable};
    ///
    /// let interp = interpreters::create();
    /// let error = interp.exec(|| panic!("no {}", "input")).unwrap_err();
    /// let panicked = error.as_failed().unwrap().downcast_source::<Panicked>().unwrap();
    /// assert_eq!(panicked.payload(), &Shareable::from("no input"));
    /// ```
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

/// Why sending through a [`Queue`](super::Queue) or a [`SendChannel`](super::SendChannel)
/// failed: one enum for both, so the same outcome reads the same on either. The
/// [module docs](super#sending-and-receiving-one-set-of-outcomes) have the table of which
/// call gives which variant. The value that was not sent is dropped.
///
/// ```
/// use std::time::Duration;
/// use exec_context::interpreters::{self, Queue, SendError};
///
/// let queue = Queue::new(1);
/// queue.put(1).unwrap();
/// assert_eq!(queue.put_nowait(2), Err(SendError::Full));
/// assert_eq!(queue.put_timeout(2, Duration::from_millis(1)), Err(SendError::Timeout));
///
/// let (send, _recv) = interpreters::channel();
/// assert_eq!(send.send_nowait(1), Err(SendError::NotReceiving)); // nobody is receiving
/// assert_eq!(send.send_timeout(1, Duration::from_millis(1)), Err(SendError::Timeout));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendError {
    /// A `put_nowait` found the queue full (PEP 734's `QueueFull`).
    Full,
    /// A `send_nowait` found no receiver waiting (PEP 554: "If the other end is not
    /// currently receiving then raise RuntimeError"). Nothing was buffered.
    NotReceiving,
    /// A timed call ran out of time: `put_timeout` found no room, or what `send_timeout`
    /// sent was not received (it was withdrawn from the channel).
    Timeout,
    /// The queue or channel is closed (or was closed while the call waited).
    Closed,
    /// The current interpreter released this end of the channel (channels only).
    Released,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Full => "the queue is full",
            SendError::NotReceiving => "no receiver is waiting on the channel",
            SendError::Timeout => "the send timed out",
            SendError::Closed => "the queue or channel is closed",
            SendError::Released => "the current interpreter released this end of the channel",
        })
    }
}

impl Error for SendError {}

impl SendError {
    pub(crate) fn from_fifo(error: FifoError) -> Self {
        match error {
            FifoError::Full => SendError::Full,
            FifoError::NotReceiving => SendError::NotReceiving,
            // A put or send never meets `Empty` or `Destroyed`; a timeout is the closest.
            FifoError::Timeout | FifoError::Empty | FifoError::Destroyed => SendError::Timeout,
            FifoError::Closed => SendError::Closed,
            FifoError::Released => SendError::Released,
        }
    }
}

/// Why receiving from a [`Queue`](super::Queue) or a [`RecvChannel`](super::RecvChannel)
/// failed: one enum for both, with `std::sync::mpsc`'s distinction between "nothing now"
/// ([`Empty`](Self::Empty), from the `*_nowait` calls) and "nothing in time"
/// ([`Timeout`](Self::Timeout), from the `*_timeout` calls). The
/// [module docs](super#sending-and-receiving-one-set-of-outcomes) have the table.
///
/// ```
/// use std::time::Duration;
/// use exec_context::interpreters::{self, Queue, RecvError};
///
/// let queue = Queue::new(0);
/// let (_send, recv) = interpreters::channel();
/// assert_eq!(queue.get_nowait(), Err(RecvError::Empty));
/// assert_eq!(recv.recv_nowait(), Err(RecvError::Empty));
/// let short = Duration::from_millis(1);
/// assert_eq!(queue.get_timeout(short), Err(RecvError::Timeout));
/// assert_eq!(recv.recv_timeout(short), Err(RecvError::Timeout));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecvError {
    /// A `*_nowait` call found nothing to take (PEP 734's `QueueEmpty`; PEP 554's
    /// `recv_nowait` default).
    Empty,
    /// A `*_timeout` call got nothing in time.
    Timeout,
    /// The queue or channel is closed and drained: nothing will ever come.
    Closed,
    /// The current interpreter released this end of the channel (channels only).
    Released,
    /// The item's interpreter was closed before the item was taken, and the item's policy
    /// is [`UnboundPolicy::Error`](super::UnboundPolicy::Error) (PEP 734's
    /// `ItemInterpreterDestroyed`). The item is consumed.
    ItemInterpreterDestroyed,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvError::Empty => "nothing to receive",
            RecvError::Timeout => "the receive timed out",
            RecvError::Closed => "the queue or channel is closed",
            RecvError::Released => "the current interpreter released this end of the channel",
            RecvError::ItemInterpreterDestroyed => {
                "the interpreter that sent the item was closed before it was taken"
            }
        })
    }
}

impl Error for RecvError {}

impl RecvError {
    pub(crate) fn from_fifo(error: FifoError) -> Self {
        match error {
            FifoError::Empty => RecvError::Empty,
            // A get never meets `Full` or `NotReceiving`; a timeout is the closest.
            FifoError::Timeout | FifoError::Full | FifoError::NotReceiving => RecvError::Timeout,
            FifoError::Closed => RecvError::Closed,
            FifoError::Destroyed => RecvError::ItemInterpreterDestroyed,
            FifoError::Released => RecvError::Released,
        }
    }
}
