//! Context variables that leave the process (feature `propagate`): a wire name, a codec, a
//! [`Registry`] of them, and the W3C Baggage header codec ([`baggage`]).
//!
//! A plain [`ContextVar`] never leaves the process. A [`Propagated`] variable is a
//! `ContextVar` (it derefs to one) that also has a *wire name* and a *codec* turning its value
//! into text and back. A [`Registry`] lists the propagated variables a program sends and
//! accepts; the carriers use it:
//!
//! - [`crate::process`] (feature `process`) hands them to a child process;
//! - [`crate::service`] (feature `tower`) sends them in the `baggage` header of outgoing
//!   requests and reads them from incoming ones;
//! - [`Registry::execution_context_from_baggage`] reads `baggage` values from any other
//!   carrier, with the server's rules.
//!
//! Only variables listed in the registry are ever encoded; anything else in the context stays
//! behind. A variable that opted out of inheritance
//! ([`Propagated::not_inherited`]) is not handed to a child process started with
//! [`Inheritance::Inherit`](crate::thread::Inheritance::Inherit) either (one started with
//! `Given` gets every propagated variable of the given context).
//!
//! # Codecs
//!
//! - [`Propagated::text`]: `Display` out, `FromStr` in (ids, names, numbers);
//! - [`Propagated::json`]: serde, as JSON text (structured values);
//! - [`Propagated::with_codec`]: two functions of your own.
//!
//! # Errors: one channel
//!
//! Input from the other side is untrusted. A value that does not decode, an unknown or
//! repeated key, a malformed or oversized header: each leaves the variable concerned unset
//! and never panics. Every problem met while decoding one carrier (one request's `baggage`
//! headers, one process hand-over) or encoding one is gathered into a single [`Report`] and
//! passed to the registry's reporter, set with [`RegistryBuilder::on_error`]. Without one, the
//! report is a `tracing` event at `WARN` level with target `exec_context::propagate`. That
//! callback is the only channel: nothing is returned or logged elsewhere. One exception
//! prints: a codec that panics on a received value is caught and reported as a
//! [`PropagationError::Decode`], but the process's panic hook has run by then (the default
//! hook prints the panic to stderr). A reporter that panics is not caught: its panic reaches
//! whoever decoded or encoded (a server's `call`, a client's `call`, [`Registry::capture`]),
//! except in a child process's start-up, which goes on (see [`crate::process`]).
//!
//! ```
//! use exec_context::propagate::{Propagated, Registry};
//!
//! static REQUEST_ID: Propagated<u64> = Propagated::text("request-id");
//! static TENANT: Propagated<String> = Propagated::text("tenant");
//!
//! let registry = Registry::builder().register(&REQUEST_ID).register(&TENANT).build().unwrap();
//!
//! REQUEST_ID.set(7); // a `Propagated` is a `ContextVar`
//! TENANT.set("acme".to_string());
//! let carried = registry.capture(); // the propagated values of the current context, as text
//! assert_eq!(carried.get("request-id"), Some("7"));
//!
//! // On the other side: a fresh context holding only what was carried.
//! let ec = registry.execution_context(&carried);
//! assert_eq!(ec.get(&TENANT), Some("acme".to_string()));
//! ```

pub mod baggage;
#[cfg(feature = "tower")]
pub(crate) mod shared;

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

use contextvars::{
    Context, ContextBuilder, ContextVar, ExecutionContext, get_execution_context,
    run_with_execution_context,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Turns a value into text for the wire.
pub type Encode<T> = fn(&T) -> Result<String, String>;
/// Turns wire text back into a value.
pub type Decode<T> = fn(&str) -> Result<T, String>;
/// [`Encode`], appending the text to a buffer.
type Append<T> = fn(&T, &mut String) -> Result<(), String>;

/// A context variable that may leave the process: a [`ContextVar`] with a wire name and a
/// codec. Declare it as a `static`, list it in a [`Registry`], and use it as the
/// `ContextVar` it derefs to.
///
/// The wire name is the key in a `baggage` header, so it must be an HTTP token (letters,
/// digits and ``!#$&'*+-.^_`|~``); [`RegistryBuilder::build`] checks it. `%` is a token
/// character too, but it is refused: OpenTelemetry's propagators percent-decode keys, so a
/// name holding one (`a%41`) would reach them as another (`aA`).
///
/// ```
/// use exec_context::propagate::Propagated;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// struct Deadline {
///     unix_ms: u64,
/// }
///
/// static TENANT: Propagated<String> = Propagated::text("tenant");
/// static DEADLINE: Propagated<Deadline> = Propagated::json("deadline");
///
/// TENANT.set("acme".into());
/// assert_eq!(TENANT.get().as_deref(), Some("acme"));
/// assert_eq!(DEADLINE.encode(&Deadline { unix_ms: 5 }).unwrap(), r#"{"unix_ms":5}"#);
/// assert_eq!(DEADLINE.decode(r#"{"unix_ms":5}"#).unwrap(), Deadline { unix_ms: 5 });
/// assert!(DEADLINE.decode("5").is_err());
/// ```
pub struct Propagated<T: 'static> {
    var: ContextVar<T>,
    wire: &'static str,
    encode: Encode<T>,
    decode: Decode<T>,
    /// `encode`, appending to a buffer instead of making a `String` (the text codec's).
    append: Option<Append<T>>,
}

fn encode_text<T: fmt::Display>(value: &T) -> Result<String, String> {
    use std::fmt::Write;
    // Not `to_string`, which panics when `Display` fails.
    let mut text = String::new();
    write!(text, "{value}").map_err(|_| DISPLAY_FAILED.to_string())?;
    Ok(text)
}

/// The message of a text codec whose `Display` failed.
const DISPLAY_FAILED: &str = "its `Display` implementation failed";

fn append_text<T: fmt::Display + 'static>(value: &T, out: &mut String) -> Result<(), String> {
    use std::any::Any;
    use std::fmt::Write;
    // The usual types without the formatting machinery (the type tests are resolved at
    // compile time). The text is the same as `Display`'s.
    let any: &dyn Any = value;
    if let Some(text) = any.downcast_ref::<String>() {
        out.push_str(text);
        return Ok(());
    }
    macro_rules! unsigned {
        ($($t:ty),*) => {$(
            if let Some(&n) = any.downcast_ref::<$t>() {
                push_decimal(u64::from(n), out);
                return Ok(());
            }
        )*};
    }
    unsigned!(u8, u16, u32, u64);
    write!(out, "{value}").map_err(|_| DISPLAY_FAILED.to_string())
}

/// Appends `n` in decimal.
fn push_decimal(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // A digit: below 10.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

fn decode_text<T>(text: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    text.parse().map_err(|err: T::Err| err.to_string())
}

fn encode_json<T: Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|err| err.to_string())
}

fn decode_json<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|err| err.to_string())
}

impl<T: Send + Sync + 'static> Propagated<T> {
    /// A variable whose wire form is its `Display` text, read back with `FromStr`.
    ///
    /// ```
    /// static ATTEMPT: exec_context::propagate::Propagated<u32> =
    ///     exec_context::propagate::Propagated::text("attempt");
    /// assert_eq!(ATTEMPT.encode(&3).unwrap(), "3");
    /// assert!(ATTEMPT.decode("three").is_err());
    /// ```
    pub const fn text(wire: &'static str) -> Self
    where
        T: fmt::Display + FromStr,
        T::Err: fmt::Display,
    {
        let mut var = Self::with_codec(wire, encode_text::<T>, decode_text::<T>);
        // `T: 'static` (the impl's bound): `append_text` may look at its type.
        var.append = Some(append_text::<T>);
        var
    }

    /// A variable whose wire form is its JSON text (serde).
    ///
    /// ```
    /// static TAGS: exec_context::propagate::Propagated<Vec<String>> =
    ///     exec_context::propagate::Propagated::json("tags");
    /// assert_eq!(TAGS.encode(&vec!["a".into()]).unwrap(), r#"["a"]"#);
    /// ```
    pub const fn json(wire: &'static str) -> Self
    where
        T: Serialize + DeserializeOwned,
    {
        Self::with_codec(wire, encode_json::<T>, decode_json::<T>)
    }

    /// A variable with a codec of your own. An `Err` carries a message for the [`Report`].
    ///
    /// ```
    /// use exec_context::propagate::Propagated;
    ///
    /// fn encode(flag: &bool) -> Result<String, String> {
    ///     Ok(if *flag { "1" } else { "0" }.to_string())
    /// }
    /// fn decode(text: &str) -> Result<bool, String> {
    ///     match text {
    ///         "1" => Ok(true),
    ///         "0" => Ok(false),
    ///         other => Err(format!("expected 0 or 1, got {other:?}")),
    ///     }
    /// }
    /// static DEBUG: Propagated<bool> = Propagated::with_codec("debug", encode, decode);
    /// assert_eq!(DEBUG.decode("1"), Ok(true));
    /// ```
    pub const fn with_codec(wire: &'static str, encode: Encode<T>, decode: Decode<T>) -> Self {
        Propagated {
            var: ContextVar::new(wire),
            wire,
            encode,
            decode,
            append: None,
        }
    }

    /// Opts the variable out of inheritance, as [`ContextVar::not_inherited`]: threads, tasks
    /// and child processes spawned with `Inherit` start without it. A server layer still
    /// reads it from an incoming request.
    ///
    /// ```
    /// static TXN: exec_context::propagate::Propagated<u32> =
    ///     exec_context::propagate::Propagated::text("txn").not_inherited();
    /// assert!(!TXN.is_inherited());
    /// ```
    #[must_use]
    pub const fn not_inherited(mut self) -> Self {
        // A `const fn` cannot drop a generic value, so the fresh placeholder is forgotten
        // (it holds nothing: no value, no id yet).
        let var = std::mem::replace(&mut self.var, ContextVar::new(self.wire));
        std::mem::forget(std::mem::replace(&mut self.var, var.not_inherited()));
        self
    }

    /// The underlying context variable (also reachable through `Deref`).
    pub fn var(&self) -> &ContextVar<T> {
        &self.var
    }

    /// The key on the wire.
    pub fn wire_name(&self) -> &'static str {
        self.wire
    }

    /// `value` as wire text (before any header escaping).
    ///
    /// # Errors
    ///
    /// The codec's message, when it cannot encode `value`.
    pub fn encode(&self, value: &T) -> Result<String, String> {
        (self.encode)(value)
    }

    /// Wire text (after header unescaping) as a value.
    ///
    /// This calls the codec directly: a panic in it reaches the caller. Where a registry
    /// decodes what came from outside (a request's header, a parent process's hand-over), a
    /// panicking codec is caught instead and reported as [`PropagationError::Decode`].
    ///
    /// # Errors
    ///
    /// The codec's message, when `text` is not a valid value.
    pub fn decode(&self, text: &str) -> Result<T, String> {
        (self.decode)(text)
    }

    /// [`decode`](Self::decode) of text from outside the process: a panic in the codec (a
    /// `FromStr` or `Deserialize` implementation that panics on some input) becomes an error,
    /// so that no input can panic a receiver. The codec is a plain function of the text, so
    /// nothing it could leave half-changed is observed afterwards.
    fn decode_received(&self, text: &str) -> Result<T, String> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.decode)(text)))
            .unwrap_or_else(|payload| {
                let message = codec_panicked(payload.as_ref());
                // The payload's own `Drop` may panic too.
                crate::discarding_panics(move || drop(payload));
                Err(message)
            })
    }
}

/// The message of a [`PropagationError::Decode`] for a codec that panicked.
fn codec_panicked(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    match message {
        Some(message) => format!("{CODEC_PANICKED}: {message}"),
        None => CODEC_PANICKED.to_string(),
    }
}

/// How the message of a [`PropagationError::Decode`] for a codec that panicked begins.
const CODEC_PANICKED: &str = "the codec panicked";

impl<T> Deref for Propagated<T> {
    type Target = ContextVar<T>;

    fn deref(&self) -> &ContextVar<T> {
        &self.var
    }
}

impl<T> fmt::Debug for Propagated<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Propagated")
            .field("wire", &self.wire)
            .finish_non_exhaustive()
    }
}

/// What tells a propagated variable's value apart, for `service`'s memory of the headers it
/// wrote (which compares these, and nothing else, to send a header again).
#[cfg(feature = "tower")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// No value.
    #[default]
    Absent,
    /// A value by its address: only a comparison with the address of a value kept alive
    /// says anything (see `service`), and a value object belongs to one variable.
    At(usize),
    /// A value of at most 8 bytes by its bits, with its variable (equal bits of two variables
    /// are two members). `contextvars` stores integers, floats and `bool` inline and lends
    /// them as copies, whose addresses say nothing; every type keyed here by value is keyed
    /// so, and the types keyed by address are checked to be lent in place
    /// (`addresses_are_kept_only_for_values_lent_in_place`).
    Value { var: u64, bits: u64 },
}

#[cfg(feature = "tower")]
impl Key {
    /// The bits of a value of a fixed-size type of at most 8 bytes; `None` for other types.
    pub(crate) fn bits_of<T: 'static>(value: &T) -> Option<u64> {
        let any: &dyn std::any::Any = value;
        macro_rules! widen {
            ($($ty:ty => $bits:expr),*) => {
                $(if let Some(&value) = any.downcast_ref::<$ty>() {
                    let widen: fn($ty) -> u64 = $bits;
                    return Some(widen(value));
                })*
            };
        }
        // Each conversion is injective on its type, and a variable has one type.
        widen!(
            u8 => u64::from, u16 => u64::from, u32 => u64::from, u64 => |v| v,
            usize => |v| v as u64, i8 => |v| v as u64, i16 => |v| v as u64,
            i32 => |v| v as u64, i64 => |v| v as u64, isize => |v| v as u64,
            bool => u64::from, char => u64::from, f32 => |v| u64::from(v.to_bits()),
            f64 => f64::to_bits
        );
        None
    }
}

/// What a registry needs of a propagated variable, whatever its type.
trait Entry: Send + Sync {
    fn wire(&self) -> &'static str;
    fn inherited(&self) -> bool;
    /// The variable's value in `ec`, encoded; `None` where it has no value.
    fn encode_in(&self, ec: &ExecutionContext) -> Option<Result<String, String>>;
    /// Appends the variable's value in the current context, encoded, to `out`; `None` (and
    /// `out` untouched) where it has no value. On an error `out` may hold part of the text.
    #[cfg(feature = "tower")]
    fn append_current(&self, ec: &ExecutionContext, out: &mut String)
    -> Option<Result<(), String>>;
    /// Decodes `text` and sets the variable in the current context.
    #[cfg(feature = "process")]
    fn decode_set(&self, text: &str) -> Result<(), String>;
    /// Decodes `text` and gives the variable that value in the context `builder` builds.
    fn decode_into(&self, text: &str, builder: &mut ContextBuilder) -> Result<(), String>;
    /// The variable's identity.
    #[cfg(feature = "tower")]
    fn var_id(&self) -> contextvars::VarId;
    /// What tells the variable's value in the current context apart (see [`Key`]), read
    /// through the variable's own lookup (no snapshot of the context is made).
    #[cfg(feature = "tower")]
    fn key_current(&self) -> Key;
    /// Whether its decoded values may be shared between requests (see `shared`): a text
    /// codec of a plain standard type.
    #[cfg(feature = "tower")]
    fn shareable(&self) -> bool;
}

impl<T: Send + Sync + 'static> Entry for Propagated<T> {
    fn wire(&self) -> &'static str {
        self.wire
    }

    fn inherited(&self) -> bool {
        self.var.is_inherited()
    }

    fn encode_in(&self, ec: &ExecutionContext) -> Option<Result<String, String>> {
        ec.get_ref(&self.var).map(|value| (self.encode)(value))
    }

    #[cfg(feature = "tower")]
    fn append_current(
        &self,
        ec: &ExecutionContext,
        out: &mut String,
    ) -> Option<Result<(), String>> {
        ec.get_ref(&self.var).map(|value| match self.append {
            Some(append) => append(value, out),
            None => (self.encode)(value).map(|text| out.push_str(&text)),
        })
    }

    #[cfg(feature = "tower")]
    fn shareable(&self) -> bool {
        // Only `text` sets `append`: the codec is `T`'s own `Display` / `FromStr`.
        self.append.is_some() && shared::is_plain::<T>()
    }

    #[cfg(feature = "tower")]
    fn var_id(&self) -> contextvars::VarId {
        self.var.id()
    }

    #[cfg(feature = "tower")]
    fn key_current(&self) -> Key {
        // A propagated variable has no default: `with` lends exactly the context's value.
        self.var.with(|value| match value {
            None => Key::Absent,
            Some(value) => match Key::bits_of(value) {
                Some(bits) => Key::Value {
                    var: self.var.id().get(),
                    bits,
                },
                None => Key::At(std::ptr::from_ref(value).addr()),
            },
        })
    }

    fn decode_into(&self, text: &str, builder: &mut ContextBuilder) -> Result<(), String> {
        let value = self.decode_received(text)?;
        builder.set(&self.var, value);
        Ok(())
    }

    #[cfg(feature = "process")]
    fn decode_set(&self, text: &str) -> Result<(), String> {
        let value = self.decode_received(text)?;
        // The token is not needed: the context being built is discarded as a whole.
        let _token = self.var.set(value);
        Ok(())
    }
}

/// A problem met while encoding or decoding propagated variables. Each leaves the variable
/// concerned unset (or unsent); they reach the user through the registry's reporter, grouped
/// in a [`Report`].
///
/// ```
/// use exec_context::propagate::PropagationError;
///
/// let error = PropagationError::DuplicateKey { key: "tenant".into() };
/// assert_eq!(error.to_string(), "`tenant` came more than once; left unset");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PropagationError {
    /// The `baggage` headers together are longer than the W3C limit; all of them were ignored.
    TooLong {
        /// Their length in bytes.
        bytes: usize,
    },
    /// The `baggage` headers together hold more list-members than the W3C limit; all of them
    /// were ignored.
    TooManyMembers {
        /// How many there were.
        members: usize,
    },
    /// A list-member that does not follow the W3C grammar; it was ignored.
    Malformed {
        /// The member's position in the combined list (from 0).
        index: usize,
        /// What is wrong with it.
        reason: baggage::Syntax,
    },
    /// A value whose percent-decoded bytes are not UTF-8.
    InvalidUtf8 {
        /// The wire name.
        key: String,
    },
    /// A key no registered variable has; it was ignored.
    UnknownKey {
        /// The key.
        key: String,
    },
    /// A key that came more than once; the variable was left unset.
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A value the variable's codec rejected, or panicked on; the variable was left unset.
    Decode {
        /// The wire name.
        key: String,
        /// The codec's message (for a panic: "the codec panicked", then the panic's message).
        message: String,
    },
    /// A value the variable's codec could not encode; it was not sent.
    Encode {
        /// The wire name.
        key: String,
        /// The codec's message.
        message: String,
    },
    /// A value left out of an outgoing `baggage` header because the header would otherwise
    /// pass a W3C limit (8,192 bytes, 180 members).
    OverLimit {
        /// The wire name.
        key: String,
    },
}

impl fmt::Display for PropagationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropagationError::TooLong { bytes } => write!(
                f,
                "baggage is {bytes} bytes long, over the limit of {}",
                baggage::MAX_BYTES
            ),
            PropagationError::TooManyMembers { members } => write!(
                f,
                "baggage has {members} list-members, over the limit of {}",
                baggage::MAX_MEMBERS
            ),
            PropagationError::Malformed { index, reason } => {
                write!(f, "baggage list-member {index} is malformed: {reason}")
            }
            PropagationError::InvalidUtf8 { key } => {
                write!(f, "the value of `{key}` is not UTF-8 once percent-decoded")
            }
            PropagationError::UnknownKey { key } => {
                write!(f, "`{key}` is not a registered propagated variable")
            }
            PropagationError::DuplicateKey { key } => {
                write!(f, "`{key}` came more than once; left unset")
            }
            PropagationError::Decode { key, message } => {
                write!(f, "the value of `{key}` does not decode: {message}")
            }
            PropagationError::Encode { key, message } => {
                write!(f, "the value of `{key}` does not encode: {message}")
            }
            PropagationError::OverLimit { key } => write!(
                f,
                "`{key}` was left out: the baggage would pass {} bytes or {} members",
                baggage::MAX_BYTES,
                baggage::MAX_MEMBERS
            ),
        }
    }
}

impl std::error::Error for PropagationError {}

/// Which carrier a [`Report`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Carrier {
    /// The `baggage` headers of one incoming request (or the values given to
    /// [`Registry::execution_context_from_baggage`]).
    IncomingBaggage,
    /// The `baggage` header of one outgoing request.
    OutgoingBaggage,
    /// Values handed to one child process (checked when the child starts).
    Process,
    /// A [`Carried`]: encoded by [`Registry::capture`] / [`Registry::capture_from`], or
    /// decoded by [`Registry::execution_context`].
    Carried,
}

/// Every problem met while encoding or decoding one carrier: what the reporter receives, once
/// per carrier that had any. [`Carrier`] says which.
///
/// ```
/// use exec_context::propagate::{Carrier, PropagationError, Report};
///
/// let report = Report {
///     carrier: Carrier::IncomingBaggage,
///     errors: vec![PropagationError::UnknownKey { key: "x".into() }],
/// };
/// assert_eq!(report.to_string(), "IncomingBaggage: `x` is not a registered propagated variable");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The carrier.
    pub carrier: Carrier,
    /// The problems, in the order met (never empty).
    pub errors: Vec<PropagationError>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: ", self.carrier)?;
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

/// A mistake in the list given to [`RegistryBuilder`] (see [`Registry`] for an example).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two variables share a wire name.
    DuplicateWireName(&'static str),
    /// A wire name that is not an HTTP token (so not a valid `baggage` key), or that holds a
    /// `%` (see [`Propagated`]).
    InvalidWireName(&'static str),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::DuplicateWireName(name) => {
                write!(f, "two propagated variables use the wire name `{name}`")
            }
            RegistryError::InvalidWireName(name) => write!(
                f,
                "`{name}` is not a valid wire name (an HTTP token without `%`: letters, digits, !#$&'*+-.^_`|~)"
            ),
        }
    }
}

impl std::error::Error for RegistryError {}

type Reporter = Arc<dyn Fn(&Report) + Send + Sync>;

/// Registries with at most this many variables find a wire name by scanning, not hashing.
const LINEAR_LOOKUP_MAX: usize = 8;
/// Up to this many variables (and pairs), decoding keeps its bookkeeping on the stack.
const SMALL: usize = 16;

/// A decoded `(key, text)` pair, whatever holds it: `Err` for a value that was not UTF-8.
pub(crate) trait Pair {
    fn key(&self) -> &str;
    fn value(&self) -> Result<&str, baggage::NotUtf8>;
}

impl Pair for (&str, Result<String, baggage::NotUtf8>) {
    fn key(&self) -> &str {
        self.0
    }

    fn value(&self) -> Result<&str, baggage::NotUtf8> {
        self.1.as_deref().map_err(|&e| e)
    }
}

impl Pair for baggage::Member<'_> {
    fn key(&self) -> &str {
        self.key
    }

    fn value(&self) -> Result<&str, baggage::NotUtf8> {
        self.value.as_deref().map_err(|&e| e)
    }
}

fn default_reporter(report: &Report) {
    tracing::warn!(
        target: "exec_context::propagate",
        carrier = ?report.carrier,
        errors = report.errors.len(),
        "propagated variables dropped: {report}"
    );
}

struct Inner {
    entries: Vec<&'static dyn Entry>,
    by_wire: HashMap<&'static str, usize>,
    reporter: Reporter,
    /// Unique in the process (never reused).
    #[cfg(feature = "tower")]
    id: u64,
    /// One bit per entry (the first 64): its values may be shared between requests (see
    /// `shared`).
    #[cfg(feature = "tower")]
    shareable: u64,
    /// The bits of `shareable` whose variables are inherited: a decoded context holding only
    /// these may be remembered for its header. (A not-inherited variable is set inside the
    /// new context, which watchers see: `ContextBuilder`. A remembered copy would not be.)
    #[cfg(feature = "tower")]
    remembered: u64,
}

/// The propagated variables a program sends and accepts, keyed by wire name, with the
/// reporter that receives every [`Report`]. Cheap to clone (shared).
///
/// ```
/// use exec_context::propagate::{Propagated, Registry, RegistryError};
///
/// static A: Propagated<u8> = Propagated::text("a");
/// static ALSO_A: Propagated<u8> = Propagated::text("a");
/// static SPACED: Propagated<u8> = Propagated::text("not a token");
/// static ESCAPED: Propagated<u8> = Propagated::text("a%41");
///
/// assert!(Registry::builder().register(&A).build().is_ok());
/// assert_eq!(
///     Registry::builder().register(&A).register(&ALSO_A).build().err(),
///     Some(RegistryError::DuplicateWireName("a"))
/// );
/// assert_eq!(
///     Registry::builder().register(&SPACED).build().err(),
///     Some(RegistryError::InvalidWireName("not a token"))
/// );
/// assert_eq!(
///     Registry::builder().register(&ESCAPED).build().err(),
///     Some(RegistryError::InvalidWireName("a%41"))
/// );
/// ```
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("wire_names", &self.wire_names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Registry`]: see [`Registry::builder`], [`register`](Self::register),
/// [`on_error`](Self::on_error).
#[must_use]
pub struct RegistryBuilder {
    entries: Vec<&'static dyn Entry>,
    reporter: Option<Reporter>,
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field(
                "wire_names",
                &self.entries.iter().map(|e| e.wire()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RegistryBuilder {
    /// Adds a propagated variable.
    pub fn register<T: Send + Sync + 'static>(mut self, var: &'static Propagated<T>) -> Self {
        self.entries.push(var);
        self
    }

    /// Sets the reporter: the one channel through which every [`Report`] arrives. The
    /// default emits a `tracing` `WARN` event (target `exec_context::propagate`).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use exec_context::propagate::{Carried, Propagated, Registry};
    ///
    /// static PORT: Propagated<u16> = Propagated::text("port");
    /// let reports = Arc::new(AtomicUsize::new(0));
    /// let counter = reports.clone();
    /// let registry = Registry::builder()
    ///     .register(&PORT)
    ///     .on_error(move |_report| {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .build()
    ///     .unwrap();
    ///
    /// let carried: Carried = [("port", "http")].into_iter().collect();
    /// let ec = registry.execution_context(&carried);
    /// assert_eq!(ec.get(&PORT), None);
    /// assert_eq!(reports.load(Ordering::Relaxed), 1);
    /// ```
    pub fn on_error(mut self, reporter: impl Fn(&Report) + Send + Sync + 'static) -> Self {
        self.reporter = Some(Arc::new(reporter));
        self
    }

    /// The registry.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] when a wire name is not an HTTP token (or holds a `%`) or is used
    /// twice.
    pub fn build(self) -> Result<Registry, RegistryError> {
        let mut by_wire = HashMap::with_capacity(self.entries.len());
        for (i, entry) in self.entries.iter().enumerate() {
            let wire = entry.wire();
            if !baggage::is_token(wire.as_bytes()) || wire.contains('%') {
                return Err(RegistryError::InvalidWireName(wire));
            }
            if by_wire.insert(wire, i).is_some() {
                return Err(RegistryError::DuplicateWireName(wire));
            }
        }
        // One bit per entry among the first 64 (the rest are never remembered).
        #[cfg(feature = "tower")]
        let mask = |keep: fn(&dyn Entry) -> bool| {
            self.entries
                .iter()
                .take(u64::BITS as usize)
                .enumerate()
                .filter(|(_, entry)| keep(**entry))
                .fold(0u64, |bits, (i, _)| bits | 1 << i)
        };
        #[cfg(feature = "tower")]
        let shareable = mask(|entry| entry.shareable());
        #[cfg(feature = "tower")]
        let remembered = mask(|entry| entry.inherited()) & shareable;
        #[cfg(feature = "tower")]
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Registry {
            inner: Arc::new(Inner {
                entries: self.entries,
                by_wire,
                reporter: self.reporter.unwrap_or_else(|| Arc::new(default_reporter)),
                #[cfg(feature = "tower")]
                id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                #[cfg(feature = "tower")]
                shareable,
                #[cfg(feature = "tower")]
                remembered,
            }),
        })
    }
}

impl Registry {
    /// A builder with no variables and the default reporter.
    ///
    /// ```
    /// let registry = exec_context::propagate::Registry::builder().build().unwrap();
    /// assert_eq!(registry.wire_names().count(), 0);
    /// ```
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder {
            entries: Vec::new(),
            reporter: None,
        }
    }

    /// The wire names, in registration order.
    ///
    /// ```
    /// use exec_context::propagate::{Propagated, Registry};
    ///
    /// static A: Propagated<u8> = Propagated::text("a");
    /// static B: Propagated<u8> = Propagated::text("b");
    /// let registry = Registry::builder().register(&A).register(&B).build().unwrap();
    /// assert_eq!(registry.wire_names().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn wire_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.inner.entries.iter().map(|entry| entry.wire())
    }

    /// Passes `report` to the reporter (for carriers of your own).
    ///
    /// ```
    /// use exec_context::propagate::{Carrier, PropagationError, Registry, Report};
    ///
    /// let registry = Registry::builder()
    ///     .on_error(|report| assert_eq!(report.errors.len(), 1))
    ///     .build()
    ///     .unwrap();
    /// registry.report(&Report {
    ///     carrier: Carrier::Carried,
    ///     errors: vec![PropagationError::UnknownKey { key: "x".into() }],
    /// });
    /// ```
    pub fn report(&self, report: &Report) {
        (self.inner.reporter)(report);
    }

    pub(crate) fn report_errors(&self, carrier: Carrier, errors: Vec<PropagationError>) {
        if !errors.is_empty() {
            self.report(&Report { carrier, errors });
        }
    }

    /// The registered variables' values in the current context, encoded (see
    /// [`capture_from`](Self::capture_from)).
    pub fn capture(&self) -> Carried {
        self.capture_from(&get_execution_context())
    }

    /// The registered variables' values in `ec`, encoded. Variables without a value are left
    /// out; a value the codec cannot encode is left out and reported.
    ///
    /// ```
    /// use contextvars::Context;
    /// use exec_context::propagate::{Propagated, Registry};
    ///
    /// static ATTEMPT: Propagated<u32> = Propagated::text("attempt");
    /// let registry = Registry::builder().register(&ATTEMPT).build().unwrap();
    /// let mut ctx = Context::new();
    /// ctx.run(|| ATTEMPT.set(3));
    /// let carried = registry.capture_from(&ctx.execution_context());
    /// assert_eq!(carried.get("attempt"), Some("3"));
    /// assert!(registry.capture_from(&Context::new().execution_context()).is_empty());
    /// ```
    pub fn capture_from(&self, ec: &ExecutionContext) -> Carried {
        let (carried, errors) = self.encode_all(ec, false);
        self.report_errors(Carrier::Carried, errors);
        carried
    }

    /// As `capture_from`, without the variables that opted out of inheritance when
    /// `inherited_only`; errors are returned, not reported.
    pub(crate) fn encode_all(
        &self,
        ec: &ExecutionContext,
        inherited_only: bool,
    ) -> (Carried, Vec<PropagationError>) {
        let mut carried = Carried::default();
        let mut errors = Vec::new();
        for entry in &self.inner.entries {
            if inherited_only && !entry.inherited() {
                continue;
            }
            match entry.encode_in(ec) {
                None => {}
                Some(Ok(text)) => carried.entries.push((entry.wire().to_string(), text)),
                Some(Err(message)) => errors.push(PropagationError::Encode {
                    key: entry.wire().to_string(),
                    message,
                }),
            }
        }
        (carried, errors)
    }

    /// The registered variables' values in `ec`, encoded and escaped for a `baggage` header,
    /// with the encoding errors.
    #[cfg(feature = "tower")]
    pub(crate) fn encode_escaped(
        &self,
        ec: &ExecutionContext,
    ) -> (Vec<(&'static str, String)>, Vec<PropagationError>) {
        let mut members = Vec::with_capacity(self.inner.entries.len());
        let mut errors = Vec::new();
        for entry in &self.inner.entries {
            match entry.encode_in(ec) {
                None => {}
                Some(Ok(text)) => {
                    // Most values (ids, names, numbers) need no escape: keep their text.
                    let escaped = if baggage::is_unreserved(&text) {
                        text
                    } else {
                        baggage::escape(&text)
                    };
                    members.push((entry.wire(), escaped));
                }
                Some(Err(message)) => errors.push(PropagationError::Encode {
                    key: entry.wire().to_string(),
                    message,
                }),
            }
        }
        (members, errors)
    }

    /// Appends `key=escaped-value,` to `out` for each registered variable with a value in
    /// `ec` (the current context), in registration order, keeping whole members only and the
    /// list within the W3C limits (the last comma not counted). Returns how many members it
    /// wrote. Codec failures, then the members left out, are added to `errors`.
    #[cfg(feature = "tower")]
    pub(crate) fn write_current(
        &self,
        ec: &ExecutionContext,
        out: &mut String,
        errors: &mut Vec<PropagationError>,
    ) -> usize {
        let (mut bytes, mut count) = (0, 0);
        let mut dropped = Vec::new();
        for entry in &self.inner.entries {
            let start = out.len();
            out.push_str(entry.wire());
            out.push('=');
            let text = out.len();
            match entry.append_current(ec, out) {
                None => out.truncate(start),
                Some(Ok(())) => {
                    if !baggage::is_unreserved(&out[text..]) {
                        let raw = out.split_off(text);
                        baggage::escape_into(&raw, out);
                    }
                    let len = out.len() - start + usize::from(count > 0);
                    if count < baggage::MAX_MEMBERS && bytes + len <= baggage::MAX_BYTES {
                        out.push(',');
                        bytes += len;
                        count += 1;
                    } else {
                        out.truncate(start);
                        dropped.push(entry.wire());
                    }
                }
                Some(Err(message)) => {
                    out.truncate(start);
                    errors.push(PropagationError::Encode {
                        key: entry.wire().to_string(),
                        message,
                    });
                }
            }
        }
        errors.extend(dropped.into_iter().map(|key| PropagationError::OverLimit {
            key: key.to_string(),
        }));
        count
    }

    /// A fresh execution context holding the registered values of `baggage` header values
    /// (one or several, combined into one list as the W3C specification says) from any
    /// carrier: a message's metadata, a job's record. The rules are the server layer's
    /// ([`crate::service`]): [`baggage::parse`], then each registered key that came once,
    /// well-formed, with a value that decodes, is set; malformed members, unknown or repeated
    /// keys (a malformed member still naming a key counts as a copy of it), values that do
    /// not decode and the W3C limits are reported, once for the call
    /// ([`Carrier::IncomingBaggage`]), and leave their variables unset.
    ///
    /// ```
    /// use exec_context::propagate::{Propagated, Registry};
    ///
    /// static TENANT: Propagated<String> = Propagated::text("tenant");
    /// static ATTEMPT: Propagated<u32> = Propagated::text("attempt");
    /// let registry = Registry::builder()
    ///     .register(&TENANT)
    ///     .register(&ATTEMPT)
    ///     .on_error(|_| {})
    ///     .build()
    ///     .unwrap();
    /// let ec = registry.execution_context_from_baggage([&b"tenant=acme%20corp"[..], b"attempt=2"]);
    /// assert_eq!(ec.get(&TENANT).as_deref(), Some("acme corp"));
    /// assert_eq!(ec.get(&ATTEMPT), Some(2));
    /// // `tenant` came twice (once malformed): left unset, and reported.
    /// let ec = registry.execution_context_from_baggage([&b"tenant=a,tenant=b c,attempt=3"[..]]);
    /// assert_eq!(ec.get(&TENANT), None);
    /// assert_eq!(ec.get(&ATTEMPT), Some(3));
    /// ```
    pub fn execution_context_from_baggage<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> ExecutionContext {
        let parsed = baggage::parse(values);
        let mut errors = parsed.errors;
        let (context, decode_errors) = self.decode_context(&parsed.members, &parsed.malformed_keys);
        errors.extend(decode_errors);
        self.report_errors(Carrier::IncomingBaggage, errors);
        context.execution_context()
    }

    /// A fresh execution context holding exactly the decodable values of `carried`. Unknown
    /// or repeated keys and values that do not decode are left out and reported (one
    /// [`Report`] for the call).
    ///
    /// ```
    /// use exec_context::propagate::{Carried, Propagated, Registry};
    ///
    /// static ATTEMPT: Propagated<u32> = Propagated::text("attempt");
    /// let registry = Registry::builder().register(&ATTEMPT).on_error(|_| {}).build().unwrap();
    /// let good: Carried = [("attempt", "2")].into_iter().collect();
    /// let bad: Carried = [("attempt", "two"), ("other", "1")].into_iter().collect();
    /// assert_eq!(registry.execution_context(&good).get(&ATTEMPT), Some(2));
    /// assert_eq!(registry.execution_context(&bad).get(&ATTEMPT), None);
    /// ```
    pub fn execution_context(&self, carried: &Carried) -> ExecutionContext {
        let pairs: Vec<_> = carried
            .entries
            .iter()
            .map(|(k, v)| (k.as_str(), Ok(v.clone())))
            .collect();
        let (ec, errors) = self.decode_all(&pairs);
        self.report_errors(Carrier::Carried, errors);
        ec
    }

    /// Decodes `(key, text)` pairs (`Err` for a value that was not UTF-8) into a fresh
    /// execution context.
    pub(crate) fn decode_all<P: Pair>(
        &self,
        pairs: &[P],
    ) -> (ExecutionContext, Vec<PropagationError>) {
        let (context, errors) = self.decode_context(pairs, &[]);
        (context.execution_context(), errors)
    }

    /// As `decode_all`, as a [`Context`] to run a task in, with the keys of the members
    /// dropped as malformed (see [`decode_pairs`](Self::decode_pairs)).
    /// The values go straight into the new context ([`ContextBuilder`]): the codecs run in
    /// the caller's context.
    pub(crate) fn decode_context<P: Pair>(
        &self,
        pairs: &[P],
        malformed_keys: &[&str],
    ) -> (Context, Vec<PropagationError>) {
        let mut builder = ContextBuilder::new();
        if pairs.is_empty() {
            return (builder.build(), Vec::new());
        }
        let errors = self.decode_pairs(pairs, malformed_keys, |entry, text| {
            entry.decode_into(text, &mut builder)
        });
        (builder.build(), errors)
    }

    /// Decodes the list-members of one `baggage` header into a fresh [`Context`], with the
    /// problems met (as [`baggage::parse`] and [`decode_context`](Self::decode_context)
    /// together would report them).
    #[cfg(feature = "tower")]
    pub(crate) fn decode_baggage(&self, header: &[u8]) -> (Context, Vec<PropagationError>) {
        // A context decoded from the same header may be shared (see `shared`), unless a
        // fresh context would take pinned values from the current one.
        let share = self.inner.remembered != 0
            && header.len() <= shared::MAX_LEN
            && ExecutionContext::pinned().depth() == 0;
        let hash = if share { shared::hash(header) } else { 0 };
        if share && let Some(context) = shared::get(self.inner.id, hash, header) {
            return (context, Vec::new());
        }
        if let Some((context, errors, remembered)) = self.decode_clean_baggage(header) {
            if share && remembered && errors.is_empty() {
                shared::put(self.inner.id, hash, header, &context);
            }
            return (context, errors);
        }
        let parsed = baggage::parse([header]);
        let mut errors = parsed.errors;
        let (context, decode_errors) = self.decode_context(&parsed.members, &parsed.malformed_keys);
        errors.extend(decode_errors);
        (context, errors)
    }

    /// The usual case of [`decode_baggage`](Self::decode_baggage), in one pass over the
    /// header and without a list of members: every member well-formed, registered, unique and
    /// UTF-8 once decoded, values without escapes borrowed from the header. `None` as soon
    /// as a member is not, before any codec runs: the general path then reports each problem.
    /// Only the codecs' own errors can come back from here, in the order of the members, as
    /// from the general path; with them, whether every member's variable may be remembered
    /// (`Inner::remembered`).
    #[cfg(feature = "tower")]
    fn decode_clean_baggage(
        &self,
        header: &[u8],
    ) -> Option<(Context, Vec<PropagationError>, bool)> {
        if header.len() > baggage::MAX_BYTES || self.inner.entries.len() > u64::BITS as usize {
            return None;
        }
        if baggage::trim_ows(header).is_empty() {
            return Some((Context::new(), Vec::new(), false));
        }
        let mut found = [const { (0, std::borrow::Cow::Borrowed("")) }; SMALL];
        let mut len = 0;
        // One bit per entry: whose key came already.
        let mut seen = 0u64;
        for raw in header.split(|&b| b == b',') {
            let slot = found.get_mut(len)?;
            let member = baggage::scan_member(raw).ok()?;
            let index = self.index_of_bytes(member.key)?;
            let bit = 1 << index;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            *slot = (index, member.decoded().ok()?);
            len += 1;
        }
        let mut builder = ContextBuilder::new();
        let mut errors = Vec::new();
        for (index, text) in &found[..len] {
            let entry = self.inner.entries[*index];
            if let Err(message) = entry.decode_into(text, &mut builder) {
                errors.push(PropagationError::Decode {
                    key: entry.wire().to_string(),
                    message,
                });
            }
        }
        Some((builder.build(), errors, seen & !self.inner.remembered == 0))
    }

    /// Whether every variable is shareable (see `shared`) and there are at most `max`.
    #[cfg(feature = "tower")]
    pub(crate) fn all_shareable(&self, max: usize) -> bool {
        let len = self.inner.entries.len();
        len <= max && len < u64::BITS as usize && self.inner.shareable == (1u64 << len) - 1
    }

    /// How many variables.
    #[cfg(feature = "tower")]
    pub(crate) fn var_count(&self) -> usize {
        self.inner.entries.len()
    }

    /// The [`Key`]s of the variables' values in the current context, in registration order,
    /// into `out` (as long as the registry, or shorter), read without a snapshot of the
    /// context.
    #[cfg(feature = "tower")]
    pub(crate) fn keys_current(&self, out: &mut [Key]) {
        for (entry, key) in self.inner.entries.iter().zip(out) {
            *key = entry.key_current();
        }
    }

    /// Weak handles on the registered variables' values in `ec`: their addresses stay
    /// theirs while the handles live, but the values are not kept alive.
    #[cfg(feature = "tower")]
    pub(crate) fn identities(&self, ec: &ExecutionContext) -> contextvars::Identities {
        let ids: Vec<_> = self.inner.entries.iter().map(|e| e.var_id()).collect();
        ec.identities(&ids)
    }

    /// The index of the entry with wire name `key`. Small registries (the usual case) are
    /// scanned, which costs less than hashing the key.
    fn index_of(&self, key: &str) -> Option<usize> {
        if self.inner.entries.len() <= LINEAR_LOOKUP_MAX {
            self.inner
                .entries
                .iter()
                .position(|entry| entry.wire() == key)
        } else {
            self.inner.by_wire.get(key).copied()
        }
    }

    /// [`index_of`](Self::index_of) for a key as bytes (not UTF-8: no entry).
    #[cfg(feature = "tower")]
    pub(crate) fn index_of_bytes(&self, key: &[u8]) -> Option<usize> {
        if self.inner.entries.len() <= LINEAR_LOOKUP_MAX {
            self.inner
                .entries
                .iter()
                .position(|entry| entry.wire().as_bytes() == key)
        } else {
            self.index_of(std::str::from_utf8(key).ok()?)
        }
    }

    /// Decodes `(key, text)` pairs and sets the variables in the current context. A key that
    /// is unknown, repeated, not UTF-8 or not decodable sets nothing and comes back as an
    /// error (a repeated key once).
    #[cfg(feature = "process")]
    pub(crate) fn decode_here<P: Pair>(&self, pairs: &[P]) -> Vec<PropagationError> {
        self.decode_pairs(pairs, &[], |entry, text| entry.decode_set(text))
    }

    /// [`decode_here`](Self::decode_here), with `set` decoding a text for an entry and
    /// keeping the value. `malformed_keys` are the keys of members that were dropped as
    /// malformed ([`baggage::Parsed::malformed_keys`]): they count as copies of their key,
    /// so a registered key among them that also came well-formed is a repeated key.
    fn decode_pairs<P: Pair>(
        &self,
        pairs: &[P],
        malformed_keys: &[&str],
        mut set: impl FnMut(&dyn Entry, &str) -> Result<(), String>,
    ) -> Vec<PropagationError> {
        let mut errors = Vec::new();
        let entries = self.inner.entries.len();
        // Per entry: how often its key came; per pair: its entry. On the stack for the usual
        // sizes.
        let mut counts_small = [0u32; SMALL];
        let mut counts_large = Vec::new();
        let counts: &mut [u32] = if entries <= SMALL {
            &mut counts_small[..entries]
        } else {
            counts_large.resize(entries, 0);
            &mut counts_large
        };
        let mut indices_small = [None; SMALL];
        let mut indices_large = Vec::new();
        let indices: &mut [Option<usize>] = if pairs.len() <= SMALL {
            &mut indices_small[..pairs.len()]
        } else {
            indices_large.resize(pairs.len(), None);
            &mut indices_large
        };
        for (pair, slot) in pairs.iter().zip(indices.iter_mut()) {
            let key = pair.key();
            *slot = self.index_of(key);
            match *slot {
                Some(i) => counts[i] += 1,
                None => errors.push(PropagationError::UnknownKey {
                    key: key.to_string(),
                }),
            }
        }
        // Already reported as malformed: only their count matters.
        for &key in malformed_keys {
            if let Some(i) = self.index_of(key) {
                counts[i] += 1;
            }
        }
        for (pair, index) in pairs.iter().zip(indices.iter()) {
            let Some(index) = *index else { continue };
            let key = pair.key();
            match counts[index] {
                1 => {}
                // Repeated, and already reported.
                0 => continue,
                _ => {
                    errors.push(PropagationError::DuplicateKey {
                        key: key.to_string(),
                    });
                    counts[index] = 0;
                    continue;
                }
            }
            match pair.value() {
                Err(baggage::NotUtf8) => errors.push(PropagationError::InvalidUtf8 {
                    key: key.to_string(),
                }),
                Ok(text) => {
                    if let Err(message) = set(self.inner.entries[index], text) {
                        errors.push(PropagationError::Decode {
                            key: key.to_string(),
                            message,
                        });
                    }
                }
            }
        }
        errors
    }

    /// Runs `f` in a fresh execution context holding the decodable values of `carried` (see
    /// [`execution_context`](Self::execution_context)).
    ///
    /// ```
    /// use exec_context::propagate::{Carried, Propagated, Registry};
    ///
    /// static TENANT: Propagated<String> = Propagated::text("tenant");
    /// let registry = Registry::builder().register(&TENANT).build().unwrap();
    /// let carried: Carried = [("tenant", "acme")].into_iter().collect();
    /// let seen = registry.run_with(&carried, || TENANT.get());
    /// assert_eq!(seen.as_deref(), Some("acme"));
    /// assert_eq!(TENANT.get(), None);
    /// ```
    pub fn run_with<R>(&self, carried: &Carried, f: impl FnOnce() -> R) -> R {
        run_with_execution_context(&self.execution_context(carried), f)
    }
}

/// Propagated values as text, keyed by wire name: what crosses a process boundary. Made by
/// [`Registry::capture`]; turned back into a context by [`Registry::execution_context`].
///
/// ```
/// use exec_context::propagate::Carried;
///
/// let carried: Carried = [("tenant", "acme")].into_iter().collect();
/// assert_eq!(carried.get("tenant"), Some("acme"));
/// assert_eq!(carried.len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carried {
    entries: Vec<(String, String)>,
}

impl Carried {
    /// The text under `wire_name`, if any (the first, if repeated).
    pub fn get(&self, wire_name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == wire_name)
            .map(|(_, v)| v.as_str())
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `(wire name, text)` entries.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Carried {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Carried {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

#[cfg(all(test, feature = "tower"))]
mod tests {
    use super::*;

    static TEXT: Propagated<String> = Propagated::text("t");
    static NUMBER: Propagated<u32> = Propagated::text("n");
    static LIST: Propagated<Vec<u8>> = Propagated::json("l");

    fn registry() -> Registry {
        Registry::builder()
            .register(&TEXT)
            .register(&NUMBER)
            .register(&LIST)
            .on_error(|_| {})
            .build()
            .unwrap()
    }

    /// The text codec's fast path for unsigned integers writes what `Display` writes.
    #[test]
    fn decimals_are_written_as_display_writes_them() {
        let mut n = 1u64;
        let mut values = vec![0, 9, 10, 99, 100, u64::MAX, u64::MAX - 1];
        while let Some(next) = n.checked_mul(7) {
            values.extend([next - 1, next, next + 1]);
            n = next;
        }
        for value in values {
            let mut out = String::from("x=");
            push_decimal(value, &mut out);
            assert_eq!(out, format!("x={value}"));
        }
        let mut out = String::new();
        append_text(&u8::MAX, &mut out).unwrap();
        append_text(&u16::MAX, &mut out).unwrap();
        assert_eq!(out, format!("{}{}", u8::MAX, u16::MAX));
    }

    /// What the general path (parse every member, then decode the list) makes of `header`.
    fn general(registry: &Registry, header: &[u8]) -> (Context, Vec<PropagationError>) {
        let parsed = baggage::parse([header]);
        let mut errors = parsed.errors;
        let (context, decode_errors) =
            registry.decode_context(&parsed.members, &parsed.malformed_keys);
        errors.extend(decode_errors);
        (context, errors)
    }

    fn values(context: &Context) -> (Option<String>, Option<u32>, Option<Vec<u8>>) {
        (context.get(&TEXT), context.get(&NUMBER), context.get(&LIST))
    }

    /// The one-pass decoder answers exactly as the general path wherever it answers, and it
    /// answers for clean headers.
    #[test]
    fn clean_baggage_decodes_as_the_general_path() {
        let registry = registry();
        let fixed: &[&[u8]] = &[
            b"",
            b" \t ",
            b"t=a,n=1",
            b" t = a%20b ; p ; q=1 , n=7",
            b"n=x",
            b"n=x,t=y,l=%5B1%2C2%5D",
            b"l=%5B1,t=a",
            b"t=%FF",
            b"t=a,t=b",
            b"u=1",
            b"t=a;",
            b"t=a b",
            b"t=%2",
            b",",
            b"t",
        ];
        // A small generator (xorshift) over the characters that matter to the grammar.
        let alphabet = b"tnlu=,; \t%2F0Ax1\x7f\xc3[]";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut random = Vec::new();
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            random.push(
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect::<Vec<u8>>(),
            );
        }
        let mut answered = 0;
        for header in fixed
            .iter()
            .copied()
            .chain(random.iter().map(Vec::as_slice))
        {
            let (general_context, general_errors) = general(&registry, header);
            let (context, errors) = registry.decode_baggage(header);
            assert_eq!(
                errors,
                general_errors,
                "{:?}",
                String::from_utf8_lossy(header)
            );
            assert_eq!(values(&context), values(&general_context));
            if let Some((context, errors, _)) = registry.decode_clean_baggage(header) {
                answered += 1;
                assert_eq!(errors, general_errors);
                assert_eq!(values(&context), values(&general_context));
            }
        }
        assert!(
            answered >= 500,
            "only {answered} headers took the one-pass path"
        );
        let clean = registry.decode_clean_baggage(b" t = a%20b ; p ; q=1 , n=7");
        let (context, errors, _) = clean.expect("a clean header");
        assert!(errors.is_empty());
        assert_eq!(values(&context), (Some("a b".into()), Some(7), None));
        assert!(registry.decode_clean_baggage(b"t=a,t=a").is_none());
    }

    static TOUCHY: Propagated<u32> = Propagated::with_codec("touchy", encode_touchy, decode_touchy);

    fn encode_touchy(n: &u32) -> Result<String, String> {
        Ok(n.to_string())
    }

    fn decode_touchy(text: &str) -> Result<u32, String> {
        match text {
            "boom" => panic!("touchy about {text}"),
            "bang" => std::panic::panic_any(7u8),
            "nasty" => std::panic::panic_any(NastyPayload),
            _ => text.parse().map_err(|_| "not a number".to_string()),
        }
    }

    /// A panic payload whose own `Drop` panics.
    struct NastyPayload;

    impl Drop for NastyPayload {
        fn drop(&mut self) {
            panic!("the payload's drop panicked on purpose");
        }
    }

    /// A codec that panics on some header text leaves its variable unset and is reported,
    /// on both decoding paths; the other members still decode.
    #[test]
    fn a_codec_that_panics_on_a_header_leaves_its_variable_unset() {
        let registry = Registry::builder()
            .register(&TEXT)
            .register(&TOUCHY)
            .on_error(|_| {})
            .build()
            .unwrap();
        for (header, message) in [
            (
                &b"t=a,touchy=boom"[..],
                "the codec panicked: touchy about boom",
            ),
            (b"touchy=bang,t=a", "the codec panicked"),
            // The payload's own panic is contained too: nothing comes out of the decode.
            (b"touchy=nasty,t=a", "the codec panicked"),
        ] {
            let (context, errors) = registry.decode_baggage(header);
            assert_eq!(context.get(&TEXT).as_deref(), Some("a"));
            assert_eq!(context.get(&TOUCHY), None);
            assert_eq!(
                errors,
                [PropagationError::Decode {
                    key: "touchy".into(),
                    message: message.into(),
                }]
            );
            let parsed = baggage::parse([header]);
            let (context, errors) =
                registry.decode_context(&parsed.members, &parsed.malformed_keys);
            assert_eq!(context.get(&TOUCHY), None);
            assert_eq!(errors.len(), 1);
        }
        let (context, errors) = registry.decode_baggage(b"touchy=5");
        assert_eq!((context.get(&TOUCHY), errors), (Some(5), Vec::new()));
    }
}
