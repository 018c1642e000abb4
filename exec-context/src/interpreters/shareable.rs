//! Shareable data: the only values that cross between interpreters (PEP 554 §Shared data,
//! PEP 734 §Shareable Objects).

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::channel::{RecvChannel, SendChannel};
use super::queue::Queue;

/// Calls `$m!` with the types the dynamic checks ([`Shareable::from_any`], [`is_shareable`])
/// recognise, after the tokens given: one list for both.
macro_rules! with_dynamic_types {
    ($m:ident!($($prefix:tt)*)) => {
        $m!($($prefix)* Shareable, String, &'static str, i128, i64, i32, i16, i8, u64, u32, u16,
            u8, usize, isize, f64, f32, bool, (), Vec<u8>, Arc<str>, Arc<[u8]>, Vec<Shareable>,
            SharedBuffer, Queue, SendChannel, RecvChannel)
    };
}

/// A value that may cross from one interpreter to another.
///
/// The immutable kinds (`None`, `bool`, `int`, `float`, `str`, `bytes` and tuples of them) are
/// shared as they are: nothing can change them, so a copy and the original are
/// indistinguishable. [`SharedBuffer`]s, [`Queue`]s and channel ends are genuinely shared: both
/// sides see the same buffer, the same queue. Nothing else is shareable — in particular not
/// [`ContextVar`](contextvars::ContextVar), [`Context`](contextvars::Context) or
/// [`Token`](contextvars::Token): a context belongs to the interpreter it was made in.
///
/// Convert with [`From`] (`Shareable::from(1)`, `"text".into()`) or [`Share::into_shareable`];
/// extract with [`Shareable::extract`].
///
/// ```
/// use exec_context::interpreters::Shareable;
///
/// let value = Shareable::from((1, "two", 3.0));
/// let (a, b, c): (i64, String, f64) = value.extract().unwrap();
/// assert_eq!((a, b.as_str(), c), (1, "two", 3.0));
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Shareable {
    /// Python's `None`; Rust's `()` and `Option::None`.
    None,
    /// A boolean.
    Bool(bool),
    /// An integer (every Rust integer type up to 64 bits fits; so does `i128`).
    Int(i128),
    /// A float.
    Float(f64),
    /// An immutable string.
    Str(Arc<str>),
    /// Immutable bytes.
    Bytes(Arc<[u8]>),
    /// A tuple of shareable values.
    Tuple(Arc<[Shareable]>),
    /// A buffer shared without copying.
    Buffer(SharedBuffer),
    /// A queue (the same queue on both sides).
    Queue(Queue),
    /// The sending end of a channel.
    SendChannel(SendChannel),
    /// The receiving end of a channel.
    RecvChannel(RecvChannel),
    /// `UNBOUND` (CPython 3.14): what a queue or channel returns in place of an item whose
    /// interpreter was closed before the item was taken, under
    /// [`UnboundPolicy::Replace`](super::UnboundPolicy::Replace), the default.
    Unbound,
}

impl Shareable {
    /// The kind of value, as Python would name its type.
    ///
    /// ```
    /// use exec_context::interpreters::{Queue, Shareable};
    ///
    /// assert_eq!(Shareable::from(1).type_name(), "int");
    /// assert_eq!(Shareable::from("a").type_name(), "str");
    /// assert_eq!(Shareable::from(Queue::new(0)).type_name(), "Queue");
    /// assert_eq!(Shareable::Unbound.type_name(), "UNBOUND");
    /// ```
    pub fn type_name(&self) -> &'static str {
        match self {
            Shareable::None => "NoneType",
            Shareable::Bool(_) => "bool",
            Shareable::Int(_) => "int",
            Shareable::Float(_) => "float",
            Shareable::Str(_) => "str",
            Shareable::Bytes(_) => "bytes",
            Shareable::Tuple(_) => "tuple",
            Shareable::Buffer(_) => "memoryview",
            Shareable::Queue(_) => "Queue",
            Shareable::SendChannel(_) => "SendChannel",
            Shareable::RecvChannel(_) => "RecvChannel",
            Shareable::Unbound => "UNBOUND",
        }
    }

    /// Converts to `T`, or says which kind of value this is instead.
    ///
    /// # Errors
    ///
    /// [`ShareError::WrongType`] when the value is of another kind (or an integer out of
    /// `T`'s range).
    ///
    /// ```
    /// use exec_context::interpreters::{ShareError, Shareable};
    ///
    /// assert_eq!(Shareable::from(7).extract::<u8>(), Ok(7));
    /// assert!(matches!(Shareable::from(300).extract::<u8>(), Err(ShareError::WrongType { .. })));
    /// assert_eq!(Shareable::from("x").extract::<Option<String>>(), Ok(Some("x".to_owned())));
    /// ```
    #[inline]
    pub fn extract<T: Share>(self) -> Result<T, ShareError> {
        T::from_shareable(self)
    }

    /// The value of a dynamically typed Rust value, when its type is one of the shareable
    /// kinds (`()`, `bool`, the integers, the floats, `String`, `&'static str`, `Arc<str>`,
    /// `Vec<u8>`, `Arc<[u8]>`, `Vec<Shareable>`, [`SharedBuffer`], [`Queue`], the channel ends,
    /// `Shareable` itself).
    ///
    /// # Errors
    ///
    /// [`ShareError::NotShareable`] for any other type; the value is dropped.
    ///
    /// ```
    /// use exec_context::interpreters::Shareable;
    ///
    /// assert_eq!(Shareable::from_any(Box::new("boom")), Ok(Shareable::from("boom")));
    /// assert!(Shareable::from_any(Box::new(std::sync::Mutex::new(1))).is_err());
    /// ```
    pub fn from_any(value: Box<dyn Any + Send>) -> Result<Shareable, ShareError> {
        macro_rules! try_types {
            ($value:ident; $($ty:ty),*) => {
                $(
                    let $value = match $value.downcast::<$ty>() {
                        Ok(v) => return Ok(Shareable::from(*v)),
                        Err(other) => other,
                    };
                )*
            };
        }
        with_dynamic_types!(try_types!(value;));
        drop(value);
        Err(ShareError::NotShareable {
            type_name: "a value of an unshareable type",
        })
    }
}

impl fmt::Debug for Shareable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shareable::None => f.write_str("None"),
            Shareable::Bool(v) => fmt::Debug::fmt(v, f),
            Shareable::Int(v) => fmt::Debug::fmt(v, f),
            Shareable::Float(v) => fmt::Debug::fmt(v, f),
            Shareable::Str(v) => fmt::Debug::fmt(v, f),
            Shareable::Bytes(v) => write!(f, "b{:?}", v.escape_ascii().to_string()),
            Shareable::Tuple(items) => {
                let mut tuple = f.debug_tuple("");
                for item in items.iter() {
                    tuple.field(item);
                }
                tuple.finish()
            }
            Shareable::Buffer(v) => fmt::Debug::fmt(v, f),
            Shareable::Queue(v) => fmt::Debug::fmt(v, f),
            Shareable::SendChannel(v) => fmt::Debug::fmt(v, f),
            Shareable::RecvChannel(v) => fmt::Debug::fmt(v, f),
            Shareable::Unbound => f.write_str("UNBOUND"),
        }
    }
}

/// Why a value could not be shared or extracted.
///
/// ```
/// use exec_context::interpreters::{ShareError, Shareable};
///
/// let error = Shareable::from("text").extract::<i64>().unwrap_err();
/// assert_eq!(error, ShareError::WrongType { expected: "i64", found: "str" });
/// let error = Shareable::from_any(Box::new(vec![1_u32])).unwrap_err();
/// assert!(matches!(error, ShareError::NotShareable { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShareError {
    /// The value's type is not shareable (PEP 734's `NotShareableError`).
    NotShareable {
        /// What was offered.
        type_name: &'static str,
    },
    /// The value is shareable but not of the requested kind.
    WrongType {
        /// The kind asked for.
        expected: &'static str,
        /// The kind found.
        found: &'static str,
    },
}

impl fmt::Display for ShareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareError::NotShareable { type_name } => {
                write!(f, "{type_name} does not support cross-interpreter data")
            }
            ShareError::WrongType { expected, found } => {
                write!(f, "expected a shareable {expected}, found {found}")
            }
        }
    }
}

impl std::error::Error for ShareError {}

/// Types whose values may cross between interpreters: the statically checked side of
/// [`Shareable`]. Every API that sends a value (`put`, `send`, `prepare_main`, `call`'s
/// result) takes a `Share` type, so sending anything else is a compile error:
///
/// ```compile_fail
/// use contextvars::ContextVar;
/// use exec_context::interpreters::create_queue;
///
/// static VAR: ContextVar<i32> = ContextVar::new("var");
/// let queue = create_queue(0);
/// queue.put(&VAR).unwrap(); // error: `&ContextVar<i32>` is not `Share`
/// ```
///
/// Implemented for `()`, `bool`, the integer and float types, `String`, `Arc<str>`,
/// `&'static str` (sending only),
/// `Vec<u8>` and `Arc<[u8]>` (bytes), `Option<T>`, tuples of up to eight shareable types,
/// `Vec<Shareable>` (a tuple of any length), [`SharedBuffer`], [`Queue`], the channel ends and
/// [`Shareable`] itself.
///
/// ```
/// use exec_context::interpreters::{Share, Shareable};
///
/// let value: Shareable = (1_u8, String::from("a")).into_shareable();
/// assert_eq!(value.type_name(), "tuple");
/// assert_eq!(<(u8, String)>::from_shareable(value), Ok((1, "a".to_owned())));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross between interpreters: it does not implement `Share`",
    label = "not shareable",
    note = "shareable: (), bool, integers, floats, String, &'static str, Arc<str>, Vec<u8> and \
            Arc<[u8]> (bytes), Option and tuples of shareable types, Vec<Shareable>, \
            SharedBuffer, Queue, SendChannel, RecvChannel, Shareable"
)]
pub trait Share: Sized + Send + 'static {
    /// The value as a [`Shareable`].
    fn into_shareable(self) -> Shareable;

    /// The value back from a [`Shareable`].
    ///
    /// # Errors
    ///
    /// [`ShareError::WrongType`] when `value` is of another kind.
    fn from_shareable(value: Shareable) -> Result<Self, ShareError>;
}

#[cold]
fn wrong<T>(expected: &'static str, found: &Shareable) -> Result<T, ShareError> {
    Err(ShareError::WrongType {
        expected,
        found: found.type_name(),
    })
}

impl Share for Shareable {
    #[inline]
    fn into_shareable(self) -> Shareable {
        self
    }

    #[inline]
    fn from_shareable(value: Shareable) -> Result<Self, ShareError> {
        Ok(value)
    }
}

impl Share for () {
    fn into_shareable(self) -> Shareable {
        Shareable::None
    }

    fn from_shareable(value: Shareable) -> Result<Self, ShareError> {
        match value {
            Shareable::None => Ok(()),
            other => wrong("NoneType", &other),
        }
    }
}

/// `Share` for a type that is one `Shareable` variant: `$into` turns a value `$v` into the
/// variant's contents, `$from` the contents `$c` back into a value.
macro_rules! share_as {
    ($($ty:ty => $variant:ident($expected:literal), |$v:ident| $into:expr, |$c:ident| $from:expr;)*) => {$(
        impl Share for $ty {
            #[inline]
            fn into_shareable(self) -> Shareable {
                let $v = self;
                Shareable::$variant($into)
            }

            #[inline]
            fn from_shareable(value: Shareable) -> Result<Self, ShareError> {
                match value {
                    Shareable::$variant($c) => Ok($from),
                    other => wrong($expected, &other),
                }
            }
        }
    )*};
}

share_as! {
    bool => Bool("bool"), |v| v, |c| c;
    f64 => Float("float"), |v| v, |c| c;
    String => Str("str"), |v| v.into(), |c| String::from(&*c);
    Arc<str> => Str("str"), |v| v, |c| c;
    Vec<u8> => Bytes("bytes"), |v| v.into(), |c| c.to_vec();
    Arc<[u8]> => Bytes("bytes"), |v| v, |c| c;
    Vec<Shareable> => Tuple("tuple"), |v| v.into(), |c| c.to_vec();
    SharedBuffer => Buffer("memoryview"), |v| v, |c| c;
    Queue => Queue("Queue"), |v| v, |c| c;
    SendChannel => SendChannel("SendChannel"), |v| v, |c| c;
    RecvChannel => RecvChannel("RecvChannel"), |v| v, |c| c;
}

macro_rules! share_int {
    ($($ty:ty),*) => {$(
        impl Share for $ty {
            #[inline]
            fn into_shareable(self) -> Shareable {
                Shareable::Int(self as i128)
            }

            #[inline]
            fn from_shareable(value: Shareable) -> Result<Self, ShareError> {
                match value {
                    Shareable::Int(v) => {
                        // A number owns nothing: skipping its drop skips an out-of-line call.
                        std::mem::forget(value);
                        <$ty>::try_from(v).map_err(|_| ShareError::WrongType {
                        expected: stringify!($ty),
                        found: "int out of range",
                        })
                    }
                    other => wrong(stringify!($ty), &other),
                }
            }
        }

        impl From<$ty> for Shareable {
            #[inline]
            fn from(value: $ty) -> Self {
                value.into_shareable()
            }
        }
    )*};
}

share_int!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, usize);

macro_rules! share_plain {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Shareable {
            #[inline]
            fn from(value: $ty) -> Self {
                value.into_shareable()
            }
        }
    )*};
}

impl Share for f32 {
    fn into_shareable(self) -> Shareable {
        Shareable::Float(f64::from(self))
    }

    /// Rounds to the nearest `f32`.
    fn from_shareable(value: Shareable) -> Result<Self, ShareError> {
        match value {
            #[allow(clippy::cast_possible_truncation)]
            Shareable::Float(v) => Ok(v as f32),
            other => wrong("float", &other),
        }
    }
}

impl<T: Share> Share for Option<T> {
    fn into_shareable(self) -> Shareable {
        self.map_or(Shareable::None, Share::into_shareable)
    }

    fn from_shareable(value: Shareable) -> Result<Self, ShareError> {
        match value {
            Shareable::None => Ok(None),
            other => T::from_shareable(other).map(Some),
        }
    }
}

impl<T: Share> From<Option<T>> for Shareable {
    fn from(value: Option<T>) -> Self {
        value.into_shareable()
    }
}

share_plain!(
    (),
    bool,
    f64,
    f32,
    String,
    Arc<str>,
    Vec<u8>,
    Arc<[u8]>,
    Vec<Shareable>,
    SharedBuffer,
    Queue,
    SendChannel,
    RecvChannel
);

impl From<&str> for Shareable {
    fn from(value: &str) -> Self {
        Shareable::Str(value.into())
    }
}

impl Share for &'static str {
    fn into_shareable(self) -> Shareable {
        Shareable::Str(self.into())
    }

    /// Always fails: a received string is not `'static`. Extract a `String` or `Arc<str>`.
    fn from_shareable(value: Shareable) -> Result<Self, ShareError> {
        wrong(
            "&'static str (extract a String or Arc<str> instead)",
            &value,
        )
    }
}

impl From<&[u8]> for Shareable {
    fn from(value: &[u8]) -> Self {
        Shareable::Bytes(value.into())
    }
}

macro_rules! share_tuple {
    ($len:literal; $($name:ident),+) => {
        impl<$($name: Share),+> Share for ($($name,)+) {
            fn into_shareable(self) -> Shareable {
                #[allow(non_snake_case)]
                let ($($name,)+) = self;
                Shareable::Tuple(Arc::from([$($name.into_shareable()),+]))
            }

            fn from_shareable(value: Shareable) -> Result<Self, ShareError> {
                match value {
                    Shareable::Tuple(items) if items.len() == $len => {
                        let mut items = items.iter().cloned();
                        Ok(($($name::from_shareable(items.next().unwrap_or(Shareable::None))?,)+))
                    }
                    other => wrong(concat!("tuple of ", $len), &other),
                }
            }
        }

        impl<$($name: Share),+> From<($($name,)+)> for Shareable {
            fn from(value: ($($name,)+)) -> Self {
                value.into_shareable()
            }
        }
    };
}

share_tuple!(1; A);
share_tuple!(2; A, B);
share_tuple!(3; A, B, C);
share_tuple!(4; A, B, C, D);
share_tuple!(5; A, B, C, D, E);
share_tuple!(6; A, B, C, D, E, F);
share_tuple!(7; A, B, C, D, E, F, G);
share_tuple!(8; A, B, C, D, E, F, G, H);

/// Whether a value of a dynamically known type is shareable (PEP 554/734's
/// `is_shareable(obj)`). True for the types [`Shareable::from_any`] accepts. For a statically
/// known type — including tuples, which no dynamic check can enumerate — use
/// [`is_shareable!`](crate::is_shareable) or the [`Share`] bound.
///
/// ```
/// use exec_context::interpreters::is_shareable;
///
/// assert!(is_shareable(&42_i64));
/// assert!(is_shareable(&String::from("text")));
/// assert!(!is_shareable(&std::cell::Cell::new(1)));
/// assert!(!is_shareable(&contextvars::Context::new()));
/// ```
pub fn is_shareable(value: &dyn Any) -> bool {
    macro_rules! any_of {
        ($($ty:ty),*) => { false $(|| value.is::<$ty>())* };
    }
    with_dynamic_types!(any_of!())
}

/// Whether an expression's (statically known) type is shareable: `true` when it implements
/// [`Share`], `false` otherwise — a compile-time answer for any type, tuples included.
///
/// ```
/// use exec_context::is_shareable;
/// use contextvars::{ContextVar, copy_context};
///
/// static VAR: ContextVar<i32> = ContextVar::new("var");
///
/// assert!(is_shareable!((1_u8, String::from("a"), Some(2.5))));
/// assert!(!is_shareable!(copy_context()));
/// assert!(!is_shareable!(VAR.set(1))); // a Token
/// assert!(!is_shareable!(vec![1_u32])); // only Vec<u8> (bytes) is shareable
/// ```
#[macro_export]
macro_rules! is_shareable {
    ($value:expr) => {{
        #[allow(unused_imports)]
        use $crate::interpreters::__private::{ViaAnything as _, ViaShare as _};
        (&&$value).__is_shareable()
    }};
}

#[doc(hidden)]
pub mod __private {
    use super::Share;

    /// Chosen by autoref when the value's type implements [`Share`].
    pub trait ViaShare {
        fn __is_shareable(&self) -> bool {
            true
        }
    }

    impl<T: Share> ViaShare for &T {}

    /// The fallback for every other type.
    pub trait ViaAnything {
        fn __is_shareable(&self) -> bool {
            false
        }
    }

    impl<T> ViaAnything for &&T {}
}

/// A byte buffer shared between interpreters without copying (PEP 3118 / `memoryview`).
///
/// A *read-only* buffer is plain bytes every holder can borrow ([`as_slice`](Self::as_slice)).
/// A *writable* buffer is written through exclusive [`claim`](Self::claim)s of disjoint
/// ranges, so interpreters writing result slots in parallel never overlap (the seed's
/// map-reduce); anyone may read it at any time (bytes being written may be seen old or new).
/// Clones share the same memory.
///
/// ```
/// use exec_context::interpreters::SharedBuffer;
///
/// let results = SharedBuffer::writable(4);
/// let worker_view = results.clone(); // what another interpreter would receive
/// let mut slot = worker_view.claim(1..3).unwrap();
/// slot.write(0, &[7, 8]).unwrap();
/// assert!(results.claim(2..4).is_err()); // overlaps the slot held by the worker
/// drop(slot);
/// assert_eq!(results.to_vec(), [0, 7, 8, 0]);
/// ```
#[derive(Clone)]
pub struct SharedBuffer {
    inner: Arc<BufferInner>,
}

struct BufferInner {
    data: Data,
    claims: Mutex<Vec<Range<usize>>>,
}

enum Data {
    ReadOnly(Box<[u8]>),
    Writable(Box<[AtomicU8]>),
}

/// Why a buffer operation was refused.
///
/// ```
/// use exec_context::interpreters::{BufferError, SharedBuffer};
///
/// let buffer = SharedBuffer::writable(4);
/// let _held = buffer.claim(0..2).unwrap();
/// let overlap = buffer.claim(1..3).unwrap_err();
/// assert_eq!(overlap, BufferError::Overlap { requested: 1..3, held: 0..2 });
/// let outside = buffer.claim(2..9).unwrap_err();
/// assert_eq!(outside, BufferError::OutOfBounds { range: 2..9, len: 4 });
/// let read_only = SharedBuffer::read_only(vec![1]);
/// assert_eq!(read_only.claim(0..1).unwrap_err(), BufferError::ReadOnly);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BufferError {
    /// The buffer is read-only.
    ReadOnly,
    /// The range does not fit the buffer (or the slot).
    OutOfBounds {
        /// The range asked for.
        range: Range<usize>,
        /// The length available.
        len: usize,
    },
    /// The range overlaps a range someone else has claimed.
    Overlap {
        /// The range asked for.
        requested: Range<usize>,
        /// The claimed range it overlaps.
        held: Range<usize>,
    },
}

impl fmt::Display for BufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BufferError::ReadOnly => f.write_str("the buffer is read-only"),
            BufferError::OutOfBounds { range, len } => {
                write!(f, "range {range:?} is out of bounds for length {len}")
            }
            BufferError::Overlap { requested, held } => {
                write!(f, "range {requested:?} overlaps the claimed range {held:?}")
            }
        }
    }
}

impl std::error::Error for BufferError {}

impl SharedBuffer {
    /// A read-only buffer holding `bytes`.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::read_only(b"abc".to_vec());
    /// assert!(!buffer.is_writable());
    /// assert_eq!(buffer.as_slice(), Some(&b"abc"[..]));
    /// ```
    pub fn read_only(bytes: impl Into<Box<[u8]>>) -> Self {
        SharedBuffer::new(Data::ReadOnly(bytes.into()))
    }

    /// A writable buffer of `len` zero bytes.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::writable(3);
    /// assert!(buffer.is_writable());
    /// assert_eq!(buffer.to_vec(), [0, 0, 0]);
    /// ```
    pub fn writable(len: usize) -> Self {
        SharedBuffer::new(Data::Writable((0..len).map(|_| AtomicU8::new(0)).collect()))
    }

    /// A writable buffer starting with a copy of `bytes`.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::writable_from(b"hi");
    /// buffer.claim(0..1).unwrap().set(0, b'H').unwrap();
    /// assert_eq!(buffer.to_vec(), b"Hi");
    /// ```
    pub fn writable_from(bytes: &[u8]) -> Self {
        SharedBuffer::new(Data::Writable(
            bytes.iter().map(|&b| AtomicU8::new(b)).collect(),
        ))
    }

    fn new(data: Data) -> Self {
        SharedBuffer {
            inner: Arc::new(BufferInner {
                data,
                claims: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The length in bytes.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// assert_eq!(SharedBuffer::writable(8).len(), 8);
    /// assert_eq!(SharedBuffer::read_only(vec![1, 2]).len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        match &self.inner.data {
            Data::ReadOnly(bytes) => bytes.len(),
            Data::Writable(bytes) => bytes.len(),
        }
    }

    /// Whether the buffer holds no bytes.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// assert!(SharedBuffer::writable(0).is_empty());
    /// assert!(!SharedBuffer::read_only(vec![0]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the buffer can be written (through claims).
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// assert!(SharedBuffer::writable(1).is_writable());
    /// assert!(!SharedBuffer::read_only(vec![1]).is_writable());
    /// ```
    pub fn is_writable(&self) -> bool {
        matches!(self.inner.data, Data::Writable(_))
    }

    /// The bytes of a read-only buffer, borrowed without copying; `None` for a writable one
    /// (read it with [`get`](Self::get), [`read_into`](Self::read_into) or
    /// [`to_vec`](Self::to_vec)).
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let bytes = SharedBuffer::read_only(vec![1, 2, 3]);
    /// assert_eq!(bytes.as_slice(), Some(&[1, 2, 3][..]));
    /// assert_eq!(SharedBuffer::writable(3).as_slice(), None);
    /// ```
    pub fn as_slice(&self) -> Option<&[u8]> {
        match &self.inner.data {
            Data::ReadOnly(bytes) => Some(bytes),
            Data::Writable(_) => None,
        }
    }

    /// The byte at `index`.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::writable_from(&[5, 6]);
    /// assert_eq!(buffer.get(1), Some(6));
    /// assert_eq!(buffer.get(2), None);
    /// ```
    pub fn get(&self, index: usize) -> Option<u8> {
        match &self.inner.data {
            Data::ReadOnly(bytes) => bytes.get(index).copied(),
            Data::Writable(bytes) => bytes.get(index).map(|b| b.load(Ordering::Relaxed)),
        }
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`.
    ///
    /// # Errors
    ///
    /// [`BufferError::OutOfBounds`] when the range does not fit.
    ///
    /// ```
    /// use exec_context::interpreters::{BufferError, SharedBuffer};
    ///
    /// let buffer = SharedBuffer::read_only(b"header:body".to_vec());
    /// let mut tag = [0; 6];
    /// buffer.read_into(0, &mut tag).unwrap();
    /// assert_eq!(&tag, b"header");
    /// assert!(matches!(buffer.read_into(8, &mut tag), Err(BufferError::OutOfBounds { .. })));
    /// ```
    pub fn read_into(&self, offset: usize, dst: &mut [u8]) -> Result<(), BufferError> {
        let range = self.check(offset..offset.saturating_add(dst.len()))?;
        match &self.inner.data {
            Data::ReadOnly(bytes) => dst.copy_from_slice(&bytes[range]),
            Data::Writable(bytes) => {
                for (d, s) in dst.iter_mut().zip(&bytes[range]) {
                    *d = s.load(Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// A copy of the whole buffer.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::writable(2);
    /// buffer.claim(1..2).unwrap().set(0, 9).unwrap();
    /// assert_eq!(buffer.to_vec(), [0, 9]);
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.len()];
        self.read_into(0, &mut out)
            .expect("the whole buffer is in bounds");
        out
    }

    /// Claims `range` for exclusive writing until the returned slot is dropped.
    ///
    /// # Errors
    ///
    /// [`BufferError::ReadOnly`], [`BufferError::OutOfBounds`], or [`BufferError::Overlap`]
    /// when part of the range is claimed already (claims never wait). An empty range holds
    /// no byte: it never overlaps, nor is overlapped.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::writable(8);
    /// let held = buffer.claim(1..3).unwrap();
    /// assert!(buffer.claim(2..4).is_err()); // byte 2 is held
    /// assert!(buffer.claim(3..4).is_ok());
    /// let empty = buffer.claim(5..5).unwrap();
    /// assert!(buffer.claim(4..6).is_ok()); // an empty claim holds nothing
    /// # drop((held, empty));
    /// ```
    pub fn claim(&self, range: Range<usize>) -> Result<BufferSlot, BufferError> {
        if !self.is_writable() {
            return Err(BufferError::ReadOnly);
        }
        let range = self.check(range)?;
        let mut claims = self
            .inner
            .claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let overlapping = claims.iter().find(|held| {
            held.start < range.end
                && range.start < held.end
                && !range.is_empty()
                && !held.is_empty()
        });
        if let Some(held) = overlapping {
            return Err(BufferError::Overlap {
                requested: range,
                held: held.clone(),
            });
        }
        claims.push(range.clone());
        Ok(BufferSlot {
            buffer: self.clone(),
            range,
        })
    }

    /// Whether two handles share the same memory.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::read_only(vec![1]);
    /// assert!(buffer.ptr_eq(&buffer.clone()));
    /// assert!(!buffer.ptr_eq(&SharedBuffer::read_only(vec![1]))); // equal bytes, other memory
    /// ```
    pub fn ptr_eq(&self, other: &SharedBuffer) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn check(&self, range: Range<usize>) -> Result<Range<usize>, BufferError> {
        if range.start > range.end || range.end > self.len() {
            return Err(BufferError::OutOfBounds {
                range,
                len: self.len(),
            });
        }
        Ok(range)
    }

    fn cells(&self) -> &[AtomicU8] {
        match &self.inner.data {
            Data::Writable(bytes) => bytes,
            Data::ReadOnly(_) => &[],
        }
    }
}

impl PartialEq for SharedBuffer {
    /// Two handles are equal when they share the same memory.
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other)
    }
}

impl fmt::Debug for SharedBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBuffer")
            .field("len", &self.len())
            .field("writable", &self.is_writable())
            .finish()
    }
}

/// An exclusive claim on a range of a writable [`SharedBuffer`]; offsets are relative to the
/// slot's start. Dropping it releases the range.
///
/// ```
/// use exec_context::interpreters::SharedBuffer;
///
/// let buffer = SharedBuffer::writable(4);
/// let mut slot = buffer.claim(2..4).unwrap();
/// slot.write(0, &[1, 2]).unwrap(); // bytes 2 and 3 of the buffer
/// assert!(buffer.claim(3..4).is_err());
/// drop(slot); // releases the range
/// assert!(buffer.claim(3..4).is_ok());
/// assert_eq!(buffer.to_vec(), [0, 0, 1, 2]);
/// ```
pub struct BufferSlot {
    buffer: SharedBuffer,
    range: Range<usize>,
}

impl BufferSlot {
    /// The claimed range of the buffer.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::writable(8);
    /// assert_eq!(buffer.claim(2..5).unwrap().range(), 2..5);
    /// ```
    pub fn range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// The slot's length.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::writable(8);
    /// assert_eq!(buffer.claim(2..5).unwrap().len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether the slot is empty.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::writable(8);
    /// assert!(buffer.claim(4..4).unwrap().is_empty());
    /// assert!(!buffer.claim(0..1).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Writes `bytes` at `offset` within the slot.
    ///
    /// # Errors
    ///
    /// [`BufferError::OutOfBounds`] when they do not fit in the slot.
    ///
    /// ```
    /// use exec_context::interpreters::{BufferError, SharedBuffer};
    ///
    /// let buffer = SharedBuffer::writable(6);
    /// let mut slot = buffer.claim(2..6).unwrap();
    /// slot.write(1, &[7, 8]).unwrap();
    /// assert_eq!(buffer.to_vec(), [0, 0, 0, 7, 8, 0]);
    /// let error = slot.write(3, &[1, 2]).unwrap_err();
    /// assert_eq!(error, BufferError::OutOfBounds { range: 3..5, len: 4 });
    /// ```
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), BufferError> {
        let end = offset.saturating_add(bytes.len());
        if end > self.len() {
            return Err(BufferError::OutOfBounds {
                range: offset..end,
                len: self.len(),
            });
        }
        let start = self.range.start + offset;
        for (cell, &b) in self.buffer.cells()[start..start + bytes.len()]
            .iter()
            .zip(bytes)
        {
            cell.store(b, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Sets the byte at `offset` within the slot.
    ///
    /// # Errors
    ///
    /// [`BufferError::OutOfBounds`] when `offset` is outside the slot.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::writable(2);
    /// let mut slot = buffer.claim(0..2).unwrap();
    /// slot.set(1, 0xff).unwrap();
    /// assert!(slot.set(2, 0).is_err()); // outside the slot
    /// assert_eq!(buffer.to_vec(), [0, 0xff]);
    /// ```
    pub fn set(&mut self, offset: usize, byte: u8) -> Result<(), BufferError> {
        self.write(offset, &[byte])
    }

    /// The byte at `offset` within the slot.
    ///
    /// ```
    /// use exec_context::interpreters::SharedBuffer;
    ///
    /// let buffer = SharedBuffer::writable_from(&[1, 2, 3, 4]);
    /// let slot = buffer.claim(2..4).unwrap();
    /// assert_eq!(slot.get(0), Some(3)); // byte 2 of the buffer
    /// assert_eq!(slot.get(2), None);
    /// ```
    pub fn get(&self, offset: usize) -> Option<u8> {
        (offset < self.len())
            .then(|| self.buffer.cells()[self.range.start + offset].load(Ordering::Relaxed))
    }
}

impl Drop for BufferSlot {
    fn drop(&mut self) {
        let mut claims = self
            .buffer
            .inner
            .claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = claims.iter().position(|held| *held == self.range) {
            claims.swap_remove(at);
        }
    }
}

impl fmt::Debug for BufferSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferSlot")
            .field("range", &self.range)
            .finish()
    }
}
