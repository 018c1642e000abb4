//! Child processes that start in a chosen context (feature `process`): PEP 371's idea —
//! processes with the threading API — for [`crate::thread::spawn`], on
//! [`procspawn`](https://docs.rs/procspawn).
//!
//! A child process runs a function of the same binary: procspawn starts the current
//! executable again, which must call [`init`] **as the first thing in `main`**; in the child,
//! `init` runs the function and exits instead of returning. Only the *propagated* variables
//! of the [`Registry`] given to `init` cross over (as text, see
//! [`crate::propagate`]); other context variables stay in the parent. Arguments and results
//! cross over with serde, as in procspawn; a function, not a capturing closure, is what runs.
//! procspawn's wire format is not self-describing: a type that needs one
//! (`serde_json::Value`, `#[serde(flatten)]`, untagged enums) fails to cross, as
//! [`ProcessError::Failed`] from [`JoinHandle::join`]; wrap such values in [`Json`].
//!
//! | policy | the child starts with |
//! |---|---|
//! | [`Inheritance::Empty`] | no variables |
//! | [`Inheritance::Inherit`] | the parent's current propagated variables (not those that opted out of inheritance) |
//! | [`Inheritance::Given`] | the propagated variables of the given context |
//!
//! A panic in the child comes back from [`JoinHandle::join`] as [`ProcessError::Panicked`]
//! with its message. Forgetting `init` gives [`ProcessError::NotInitialized`].
//!
//! A child that ends without a result (it calls `std::process::exit`, is killed, or aborts,
//! as a panic does under `panic = "abort"`) gives [`ProcessError::Failed`], whose error's
//! `is_remote_close()` is true: procspawn does not keep the child's exit status. [`spawn`]
//! returns once the child has connected to its parent, and waits for that without a time
//! limit (procspawn's design): a child that ends before it connects (killed as it starts,
//! exiting in code that runs before [`init`], or aborting in `init` on a codec's panic under
//! `panic = "abort"`) leaves `spawn` waiting for good.
//!
//! The values are handed over in the child's environment (as JSON, in
//! `EXEC_CONTEXT_PROPAGATED`), where they stay: a process the child starts itself with
//! [`std::process::Command`] inherits them (this crate's [`init`] in such a grandchild
//! ignores them, on Unix), and they can be read where the child's environment can (on Linux,
//! `/proc/<pid>/environ`, to the same user). Propagate nothing a subprocess of the child
//! must not see, or remove the variable at the start of the spawned function (see the
//! safety rules of [`std::env::remove_var`]).
//!
//! A value the child cannot decode (its codec rejects it, or panics on it) leaves that
//! variable unset in the child, which still runs the function, and is reported in the child
//! through the registry's reporter. The child reports while `init` runs, before anything
//! else in its `main`: the default reporter's `tracing` event reaches no subscriber there
//! unless one is installed before `init`, so give the registry an
//! [`on_error`](crate::propagate::RegistryBuilder::on_error) reporter to see these reports. A
//! panic in the reporter is caught; the child goes on.
//!
//! ```
//! use exec_context::process::{self, Inheritance};
//! use exec_context::propagate::{Propagated, Registry};
//!
//! static TENANT: Propagated<String> = Propagated::text("tenant");
//!
//! fn registry() -> Registry {
//!     Registry::builder().register(&TENANT).build().expect("valid wire names")
//! }
//!
//! fn main() {
//!     // First: in a child process this runs the spawned function and exits.
//!     process::init(registry());
//!
//!     TENANT.set("acme".into());
//!     let child = process::spawn(Inheritance::Inherit, 2, |n: u32| {
//!         format!("{} x{n}", TENANT.get().unwrap_or_default())
//!     });
//!     assert_eq!(child.join().unwrap(), "acme x2");
//! }
//! ```
//!
//! Tests: a child process re-runs the test binary, so the binary's `main` must call `init`
//! first. Use a test target with `harness = false` and a `main` of its own (for instance with
//! `libtest-mimic`), as this crate's `tests/process.rs` does.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use contextvars::{ExecutionContext, get_execution_context};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::propagate::{Carried, Carrier, PropagationError, Registry};
pub use crate::thread::Inheritance;
/// procspawn's wrapper that carries a value across as JSON, for types its own format cannot
/// carry (see the [module docs](self)).
///
/// ```
/// use exec_context::process::{self, Inheritance, Json};
/// use exec_context::propagate::Registry;
///
/// fn main() {
///     process::init(Registry::builder().build().unwrap());
///
///     let doc = serde_json::json!({ "tenant": "acme", "ids": [1, 2] });
///     let child = process::spawn(Inheritance::Empty, Json(doc), |Json(doc)| {
///         Json(doc["ids"].as_array().map_or(0, Vec::len))
///     });
///     assert_eq!(child.join().unwrap().0, 2);
/// }
/// ```
pub use procspawn::serde::Json;

/// The environment variable that carries the propagated values to the child.
const ENV_CARRIED: &str = "EXEC_CONTEXT_PROPAGATED";
/// The environment variable naming the process the values in [`ENV_CARRIED`] were handed over
/// by. A child's environment passes to the processes it starts itself: a grandchild started
/// another way than [`spawn`] (plain `procspawn`, say) must not take them for its own. Only
/// on Unix, where std gives a process its parent's id: elsewhere such a grandchild takes
/// them (see `handed_to_this_process`).
const ENV_CARRIED_BY: &str = "EXEC_CONTEXT_PROPAGATED_BY";
/// The most bytes of propagated values handed to one child (an environment string must stay
/// well under Linux's 128 KiB limit).
///
/// The hand-over is not a `baggage` header, so the W3C limits (8,192 bytes, 180 members)
/// do not apply: it is JSON in the child's environment, and only this limit does. A
/// hand-over over it does not start the child ([`ProcessError::TooLarge`]) rather than drop
/// variables, as a server drops a member over the W3C limits: a process runs the parent's
/// own code, and one started without part of the context it was given would go on as if
/// its variables had never been set. For the same reason a value whose codec cannot encode
/// it does not start the child either ([`ProcessError::NotEncoded`]).
///
/// On Windows an environment variable holds at most 32,767 characters, so the limit there is
/// 32,000 bytes.
pub const MAX_CARRIED_BYTES: usize = if cfg!(windows) { 32_000 } else { 64 * 1024 };

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Sets up child processes. Call it **first in `main`**: in a child process it installs the
/// values handed over, runs the spawned function and exits; in the parent it records
/// `registry` (the propagated variables children receive) and returns.
///
/// Code before `init` runs again in every child. Calling `init` again in the same process
/// keeps the first registry.
///
/// ```
/// use contextvars::ContextVar;
/// use exec_context::process::{self, Inheritance};
/// use exec_context::propagate::{Propagated, Registry};
///
/// static LOCALE: Propagated<String> = Propagated::text("locale");
/// static SESSION: ContextVar<String> = ContextVar::new("session"); // not propagated
///
/// fn main() {
///     // Nothing before this line: a child process runs it again.
///     process::init(Registry::builder().register(&LOCALE).build().unwrap());
///
///     LOCALE.set("de".into());
///     SESSION.set("s-17".into());
///     let child = process::spawn(Inheritance::Inherit, (), |()| (LOCALE.get(), SESSION.get()));
///     // Only the registry's variables reach the child.
///     assert_eq!(child.join().unwrap(), (Some("de".to_string()), None));
/// }
/// ```
pub fn init(registry: Registry) {
    let registry = REGISTRY.get_or_init(|| registry).clone();
    procspawn::ProcConfig::new()
        .config_callback(move || install(&registry))
        .init();
}

/// In the child, before the function runs: sets the handed-over values in the main thread's
/// context, where procspawn then runs the function.
///
/// This runs before the child has connected to its parent, which waits for that connection
/// without a time limit: had the child exited here, its parent's `spawn` would never return.
/// So nothing in it may end the child. A codec that panics on a value is caught where it
/// decodes (the variable is left unset and reported, as in a server); a panic anywhere else
/// (the registry's reporter, a context watcher) is caught here, after the panic hook has
/// printed it, and the child goes on with the values set so far.
fn install(registry: &Registry) {
    crate::discarding_panics(|| install_carried(registry));
}

/// [`install`], which may panic.
fn install_carried(registry: &Registry) {
    let text = match std::env::var(ENV_CARRIED) {
        Ok(text) => text,
        Err(std::env::VarError::NotPresent) => return,
        Err(std::env::VarError::NotUnicode(_)) => {
            if handed_to_this_process() {
                report_undecodable(registry, "not UTF-8".to_owned());
            }
            return;
        }
    };
    if !handed_to_this_process() {
        return;
    }
    let carried: Carried = match serde_json::from_str(&text) {
        Ok(carried) => carried,
        Err(err) => {
            report_undecodable(registry, err.to_string());
            return;
        }
    };
    let pairs: Vec<_> = carried
        .iter()
        .map(|(key, value)| (key, Ok(value.to_string())))
        .collect();
    // At the top of the main thread's context: procspawn runs the function right after.
    let errors = registry.decode_here(&pairs);
    registry.report_errors(Carrier::Process, errors);
}

/// Reports a hand-over that is not what [`start`] writes (no variable is set from it).
fn report_undecodable(registry: &Registry, message: String) {
    registry.report_errors(
        Carrier::Process,
        vec![PropagationError::Decode {
            key: ENV_CARRIED.to_string(),
            message,
        }],
    );
}

/// Whether the values in the environment were handed over by this process's parent (on
/// platforms where std gives the parent's id; elsewhere they are taken as they are).
fn handed_to_this_process() -> bool {
    #[cfg(unix)]
    {
        let by = std::env::var(ENV_CARRIED_BY).ok();
        by.and_then(|by| by.parse::<u32>().ok()) == Some(std::os::unix::process::parent_id())
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Why a child process gave no result.
///
/// ```
/// use exec_context::process::ProcessError;
///
/// let missing = ProcessError::NotInitialized;
/// assert!(missing.to_string().starts_with("exec_context::process::init was not called"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ProcessError {
    /// [`init`] was not called in this process (it must be the first call in `main`, and in
    /// a test binary's own `main`).
    NotInitialized,
    /// The child panicked.
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The propagated values take more than [`MAX_CARRIED_BYTES`]; the child was not started.
    TooLarge {
        /// Their size, in bytes.
        bytes: usize,
    },
    /// A propagated value's codec could not encode it; the child was not started (it would
    /// run as if that variable had never been set). The registry's reporter is told too.
    NotEncoded {
        /// What failed ([`PropagationError::Encode`], one per value).
        errors: Vec<PropagationError>,
    },
    /// Starting the child or talking to it failed (procspawn's error).
    Failed(procspawn::SpawnError),
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::NotInitialized => f.write_str(
                "exec_context::process::init was not called: call it first in `main` \
                 (a child process re-runs the binary and must reach it before anything else)",
            ),
            ProcessError::Panicked { message } => {
                write!(f, "the child process panicked: {message}")
            }
            ProcessError::TooLarge { bytes } => write!(
                f,
                "the propagated values take {bytes} bytes, over the limit of {MAX_CARRIED_BYTES}"
            ),
            ProcessError::NotEncoded { errors } => {
                f.write_str("the child process was not started: ")?;
                for (n, error) in errors.iter().enumerate() {
                    if n > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{error}")?;
                }
                Ok(())
            }
            ProcessError::Failed(err) => write!(f, "the child process failed: {err}"),
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProcessError::Failed(err) => Some(err),
            _ => None,
        }
    }
}

impl From<procspawn::SpawnError> for ProcessError {
    fn from(err: procspawn::SpawnError) -> Self {
        match err.panic_info() {
            Some(info) => ProcessError::Panicked {
                message: info.message().to_string(),
            },
            None => ProcessError::Failed(err),
        }
    }
}

/// An owned permission to wait for a child process's result, from [`spawn`]. Dropping it
/// kills the child.
pub struct JoinHandle<R> {
    inner: Result<procspawn::JoinHandle<R>, NotStarted>,
}

/// Why [`spawn`] started no child: what every join of its handle answers.
#[derive(Clone, Debug)]
enum NotStarted {
    NotInitialized,
    TooLarge { bytes: usize },
    NotEncoded { errors: Vec<PropagationError> },
}

impl From<NotStarted> for ProcessError {
    fn from(reason: NotStarted) -> Self {
        match reason {
            NotStarted::NotInitialized => ProcessError::NotInitialized,
            NotStarted::TooLarge { bytes } => ProcessError::TooLarge { bytes },
            NotStarted::NotEncoded { errors } => ProcessError::NotEncoded { errors },
        }
    }
}

impl<R> fmt::Debug for JoinHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("pid", &self.pid())
            .finish()
    }
}

impl<R> JoinHandle<R> {
    /// The child's process id, if it started.
    ///
    /// ```
    /// use exec_context::process::{self, Inheritance};
    /// use exec_context::propagate::Registry;
    ///
    /// fn main() {
    ///     process::init(Registry::builder().build().unwrap());
    ///
    ///     let child = process::spawn(Inheritance::Empty, (), |()| std::process::id());
    ///     let pid = child.pid();
    ///     assert!(pid.is_some_and(|pid| pid != std::process::id()));
    ///     assert_eq!(Some(child.join().unwrap()), pid); // the child reports the same id
    /// }
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.inner
            .as_ref()
            .ok()
            .and_then(procspawn::JoinHandle::pid)
    }

    /// Kills the child.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Failed`] when the signal could not be sent.
    ///
    /// ```
    /// use std::time::Duration;
    /// use exec_context::process::{self, Inheritance, ProcessError};
    /// use exec_context::propagate::Registry;
    ///
    /// fn main() {
    ///     process::init(Registry::builder().build().unwrap());
    ///
    ///     let mut stuck = process::spawn(Inheritance::Empty, (), |()| {
    ///         std::thread::sleep(Duration::from_secs(600));
    ///     });
    ///     stuck.kill().unwrap();
    ///     // A killed child gives no result.
    ///     assert!(matches!(stuck.join(), Err(ProcessError::Failed(_))));
    /// }
    /// ```
    pub fn kill(&mut self) -> Result<(), ProcessError> {
        match &mut self.inner {
            Ok(handle) => handle.kill().map_err(ProcessError::from),
            Err(_) => Ok(()),
        }
    }
}

impl<R: Serialize + DeserializeOwned> JoinHandle<R> {
    /// Waits for the child's result.
    ///
    /// # Errors
    ///
    /// [`ProcessError`]: not initialized, too much to hand over or a value that does not
    /// encode (the child was not started), a panic in the child (with its message), or a
    /// failure to start or reach it ([`ProcessError::Failed`]): among them a child that
    /// ended without a result (`is_remote_close()`: it exited, was killed or aborted; its
    /// exit status is not kept), and arguments or a result that did not cross over (see
    /// [`Json`]).
    ///
    /// ```
    /// use exec_context::process::{self, Inheritance, ProcessError};
    /// use exec_context::propagate::Registry;
    ///
    /// fn main() {
    ///     process::init(Registry::builder().build().unwrap());
    ///
    ///     let words = process::spawn(Inheritance::Empty, "a b c".to_string(), |text: String| {
    ///         text.split_whitespace().count()
    ///     });
    ///     assert_eq!(words.join().unwrap(), 3);
    ///
    ///     let failing = process::spawn(Inheritance::Empty, 0, |n: u32| -> u32 {
    ///         panic!("no data for shard {n}")
    ///     });
    ///     match failing.join() {
    ///         Err(ProcessError::Panicked { message }) => {
    ///             assert!(message.contains("no data for shard 0"))
    ///         }
    ///         other => panic!("expected the child's panic, got {other:?}"),
    ///     }
    /// }
    /// ```
    pub fn join(self) -> Result<R, ProcessError> {
        self.inner?.join().map_err(ProcessError::from)
    }

    /// Waits at most `timeout` for the child's result; after a timeout the handle can be
    /// joined again. A handle whose child never started answers every join with the same
    /// error.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join); a timeout is [`ProcessError::Failed`] with
    /// `is_timeout()` true.
    ///
    /// ```
    /// use std::time::Duration;
    /// use exec_context::process::{self, Inheritance, ProcessError};
    /// use exec_context::propagate::Registry;
    ///
    /// fn main() {
    ///     process::init(Registry::builder().build().unwrap());
    ///
    ///     let mut slow = process::spawn(Inheritance::Empty, 500, |millis: u64| {
    ///         std::thread::sleep(Duration::from_millis(millis));
    ///         "done".to_string()
    ///     });
    ///     match slow.join_timeout(Duration::from_millis(10)) {
    ///         Err(ProcessError::Failed(err)) => assert!(err.is_timeout()),
    ///         other => panic!("expected a timeout, got {other:?}"),
    ///     }
    ///     // The handle is still usable: wait again, longer.
    ///     assert_eq!(slow.join_timeout(Duration::from_secs(60)).unwrap(), "done");
    /// }
    /// ```
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, ProcessError> {
        match &mut self.inner {
            Ok(handle) => handle.join_timeout(timeout).map_err(ProcessError::from),
            Err(reason) => Err(reason.clone().into()),
        }
    }
}

/// Runs `f(args)` in a child process that starts in the context `policy` selects (its
/// propagated variables only). `args` and the result cross over with serde.
///
/// Errors surface from [`JoinHandle::join`], as procspawn does. `spawn` returns once the
/// child has connected, and waits for that without a time limit (see the
/// [module docs](self)).
///
/// ```
/// use exec_context::process::{Inheritance, spawn};
/// use exec_context::propagate::Registry;
///
/// fn main() {
///     // First in `main`: in the child, this runs the function and exits.
///     exec_context::process::init(Registry::builder().build().unwrap());
///
///     let sum = spawn(Inheritance::Empty, vec![1, 2, 3], |v: Vec<i64>| v.iter().sum::<i64>());
///     assert_eq!(sum.join().unwrap(), 6);
/// }
/// ```
pub fn spawn<A, R>(policy: Inheritance, args: A, f: fn(A) -> R) -> JoinHandle<R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    JoinHandle {
        inner: start(policy, args, f),
    }
}

fn start<A, R>(
    policy: Inheritance,
    args: A,
    f: fn(A) -> R,
) -> Result<procspawn::JoinHandle<R>, NotStarted>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    let registry = REGISTRY.get().ok_or(NotStarted::NotInitialized)?;
    let carried = match policy {
        Inheritance::Empty => Carried::default(),
        Inheritance::Inherit => encode(registry, &get_execution_context(), true)?,
        Inheritance::Given(ec) => encode(registry, &ec, false)?,
    };
    // Always set, so that a grandchild never sees its parent's hand-over by accident.
    let text = serde_json::to_string(&carried).unwrap_or_else(|_| "{\"entries\":[]}".into());
    if text.len() > MAX_CARRIED_BYTES {
        return Err(NotStarted::TooLarge { bytes: text.len() });
    }
    Ok(procspawn::Builder::new()
        .env(ENV_CARRIED, text)
        .env(ENV_CARRIED_BY, std::process::id().to_string())
        .spawn(args, f))
}

/// The values of `ec` to hand over; an error if any does not encode (reported to the
/// registry's reporter as well), since the child would miss it.
fn encode(
    registry: &Registry,
    ec: &ExecutionContext,
    inherited_only: bool,
) -> Result<Carried, NotStarted> {
    let (carried, errors) = registry.encode_all(ec, inherited_only);
    if errors.is_empty() {
        return Ok(carried);
    }
    registry.report_errors(Carrier::Process, errors.clone());
    Err(NotStarted::NotEncoded { errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawning_without_init_is_a_clear_error() {
        // This unit-test binary never calls `init`.
        let result = spawn(Inheritance::Inherit, 1u8, |x: u8| x).join();
        let err = result.unwrap_err();
        assert!(matches!(err, ProcessError::NotInitialized));
        assert!(err.to_string().contains("first in `main`"), "{err}");
    }
}
