//! Type-erased values as stored in logical contexts.

use std::any::{Any, TypeId};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use hamt::HamtMap;

/// A context variable's identity: unique for the life of the process, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VarId(pub(crate) u64);

impl VarId {
    /// The raw number (ids are handed out from 1 upwards, in order of first use).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A value with the facts about its variable that type-erased code needs.
pub(crate) struct Stored<T> {
    pub(crate) name: &'static str,
    pub(crate) inherit: bool,
    /// The variable is [pinned](crate::ContextVar::pinned): not listed by the iterators.
    pub(crate) pinned: bool,
    pub(crate) value: T,
}

/// What every shared value can tell without knowing its type.
pub(crate) trait Erased: Any + Send + Sync {
    fn var_name(&self) -> &'static str;
    fn inheritable(&self) -> bool;
    fn pinned(&self) -> bool;
    /// The variable's value itself, type-erased.
    fn value_any(&self) -> &(dyn Any + Send + Sync);
    /// The value's kind and bits if its type is an inline kind (see [`inline_bits`]): one
    /// call, whose type tests fold to a constant for each `T`.
    fn inline_kind_bits(&self) -> Option<(Kind, u64)>;
}

impl<T: Send + Sync + 'static> Erased for Stored<T> {
    fn var_name(&self) -> &'static str {
        self.name
    }

    fn value_any(&self) -> &(dyn Any + Send + Sync) {
        &self.value
    }

    fn inheritable(&self) -> bool {
        self.inherit
    }

    fn pinned(&self) -> bool {
        self.pinned
    }

    fn inline_kind_bits(&self) -> Option<(Kind, u64)> {
        to_inline(&self.value)
    }
}

/// A value as a logical context stores it.
///
/// Integers of up to 64 bits, `f32`, `f64` and `bool` values of variables that are inherited
/// and not pinned (the usual kind) are stored *inline*: their bits sit in the map's entry, so
/// copying a trie node (a set after a snapshot) or dropping one touches no reference count,
/// and a set allocates nothing but the node. Every other value is shared behind an `Arc`,
/// which a node copy clones.
#[derive(Clone)]
pub(crate) enum Value {
    Shared(Arc<dyn Erased>),
    Inline(Inline),
}

/// A value of one of the [inline kinds](Kind), with its variable's name.
///
/// Four words, each written whole: the kind is a `u64` (whose unused values are the niche
/// that tells a [`Value`] and an `Option<Value>` apart). With a 4-byte tag or single-byte
/// flags, moving a value into the map copied it with loads that straddled narrower stores,
/// which the processor cannot forward: a set took 48-65 ns instead of 36.
#[derive(Clone, Copy)]
pub(crate) struct Inline {
    kind: Kind,
    name: &'static str,
    /// The value's bytes, from byte 0 (see [`inline_bits`]); the rest are zero.
    bits: u64,
}

/// Calls `$then!` with the inline kinds other than `bool`, as `type => Kind variant` pairs:
/// the one list of them, which [`Kind`], [`is_inline`], the conversion to bits and the view
/// of bits as a value are all generated from. `bool` (whose bit patterns are not all valid)
/// is written out beside each use.
macro_rules! with_pod_kinds {
    ($then:ident) => {
        $then! {
            u8 => U8, u16 => U16, u32 => U32, u64 => U64, usize => Usize, i8 => I8,
            i16 => I16, i32 => I32, i64 => I64, isize => Isize, f32 => F32, f64 => F64
        }
    };
}

macro_rules! kind_enum {
    ($($ty:ty => $kind:ident),*) => {
        /// The types stored inline: bit patterns that are all valid (`bool` aside, which is 0
        /// or 1), no `Drop`, a `Clone` that is std's copy, at most 8 bytes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u64)]
        pub(crate) enum Kind {
            $($kind,)*
            Bool,
        }
    };
}
with_pod_kinds!(kind_enum);

/// Whether `T` is one of the inline kinds (a constant after monomorphisation): its values
/// are stored inline (for variables of the usual kind), and the lookup cache holds and lends
/// copies of them (for every variable).
#[inline(always)]
pub(crate) fn is_inline<T: 'static>() -> bool {
    let t = TypeId::of::<T>();
    macro_rules! any_of {
        ($($ty:ty => $kind:ident),*) => {
            t == TypeId::of::<bool>() $(|| t == TypeId::of::<$ty>())*
        };
    }
    with_pod_kinds!(any_of)
}

/// `value`'s kind and bits if `T` is stored inline: the value's bytes from byte 0 of the
/// `u64`, the rest zero, so that the bytes at the start of the `u64` *are* a `T` (which the
/// lookup cache relies on when it copies a `T` out of cached bits).
#[inline(always)]
pub(crate) fn inline_bits<T: 'static>(value: &T) -> Option<u64> {
    to_inline(value).map(|(_, bits)| bits)
}

#[inline(always)]
fn to_inline<T: 'static>(value: &T) -> Option<(Kind, u64)> {
    fn place<P: bytemuck::Pod>(value: &P) -> u64 {
        let mut bits = 0u64;
        bytemuck::bytes_of_mut(&mut bits)[..size_of::<P>()]
            .copy_from_slice(bytemuck::bytes_of(value));
        bits
    }
    let any: &dyn Any = value;
    macro_rules! pod {
        ($($ty:ty => $kind:ident),*) => {
            $(if let Some(value) = any.downcast_ref::<$ty>() {
                return Some((Kind::$kind, place(value)));
            })*
        };
    }
    with_pod_kinds!(pod);
    any.downcast_ref::<bool>()
        .map(|&flag| (Kind::Bool, place(&u8::from(flag))))
}

impl Inline {
    /// The value, type-erased: a view of the bits as their type.
    fn value_any(&self) -> &(dyn Any + Send + Sync) {
        /// The `P` at the start of `bits` (every `P` used here divides 8 bytes).
        fn first<P: bytemuck::Pod>(bits: &u64) -> &P {
            &bytemuck::cast_slice::<u64, P>(std::slice::from_ref(bits))[0]
        }
        let bits = &self.bits;
        macro_rules! view {
            ($($ty:ty => $kind:ident),*) => {
                match self.kind {
                    $(Kind::$kind => first::<$ty>(bits),)*
                    Kind::Bool if *first::<u8>(bits) != 0 => &true,
                    Kind::Bool => &false,
                }
            };
        }
        with_pod_kinds!(view)
    }
}

impl Value {
    /// `value` as its variable stores it: inline if `T` is one of the inline kinds.
    #[inline]
    pub(crate) fn new<T: Send + Sync + 'static>(
        name: &'static str,
        inherit: bool,
        pinned: bool,
        value: T,
    ) -> Value {
        match to_inline(&value).filter(|_| inherit && !pinned) {
            Some((kind, bits)) => Value::Inline(Inline { kind, name, bits }),
            None => Value::Shared(Arc::new(Stored {
                name,
                inherit,
                pinned,
                value,
            })),
        }
    }

    /// The name of the variable the value belongs to.
    pub(crate) fn var_name(&self) -> &'static str {
        match self {
            Value::Shared(shared) => shared.var_name(),
            Value::Inline(inline) => inline.name,
        }
    }

    /// Whether the value is inherited by contexts built from this one's (threads, tasks):
    /// inline values always are.
    pub(crate) fn inheritable(&self) -> bool {
        match self {
            Value::Shared(shared) => shared.inheritable(),
            Value::Inline(_) => true,
        }
    }

    /// Whether the variable is pinned (not listed by the iterators): never for an inline
    /// value.
    pub(crate) fn pinned(&self) -> bool {
        match self {
            Value::Shared(shared) => shared.pinned(),
            Value::Inline(_) => false,
        }
    }

    /// The value itself, type-erased.
    pub(crate) fn value_any(&self) -> &(dyn Any + Send + Sync) {
        match self {
            Value::Shared(shared) => shared.value_any(),
            Value::Inline(inline) => inline.value_any(),
        }
    }

    /// Whether both are the same value: the same bits of the same kind if the values are of
    /// an inline kind (however they are stored), else the same object.
    pub(crate) fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Inline(mine), Value::Inline(theirs)) => {
                mine.kind == theirs.kind && mine.bits == theirs.bits
            }
            (Value::Shared(mine), Value::Shared(theirs))
                if std::ptr::addr_eq(Arc::as_ptr(mine), Arc::as_ptr(theirs)) =>
            {
                true
            }
            _ => self
                .kind_and_bits()
                .is_some_and(|mine| other.kind_and_bits() == Some(mine)),
        }
    }

    /// The kind and bits of a value of an inline kind, however it is stored.
    fn kind_and_bits(&self) -> Option<(Kind, u64)> {
        match self {
            Value::Shared(shared) => shared.inline_kind_bits(),
            Value::Inline(inline) => Some((inline.kind, inline.bits)),
        }
    }

    /// The bits of an inline value.
    #[cfg(all(test, not(loom)))]
    fn bits(&self) -> Option<u64> {
        match self {
            Value::Shared(_) => None,
            Value::Inline(inline) => Some(inline.bits),
        }
    }

    /// The bits of a value of an inline kind, however it is stored (see [`inline_bits`]).
    pub(crate) fn kind_bits(&self) -> Option<u64> {
        self.kind_and_bits().map(|(_, bits)| bits)
    }

    /// Where a shared value lies: its allocation's address and size.
    pub(crate) fn shared_range(&self) -> Option<(*const (), usize)> {
        match self {
            Value::Shared(shared) => Some((
                Arc::as_ptr(shared).cast::<()>(),
                std::mem::size_of_val::<dyn Erased>(&**shared),
            )),
            Value::Inline(_) => None,
        }
    }
}

/// The typed view of a stored value, if it has type `T`.
#[inline]
pub(crate) fn downcast<T: 'static>(value: &Value) -> Option<&T> {
    match value {
        Value::Shared(shared) => {
            let any: &dyn Any = &**shared;
            any.downcast_ref::<Stored<T>>().map(|stored| &stored.value)
        }
        Value::Inline(inline) => inline.value_any().downcast_ref::<T>(),
    }
}

/// Hashes variable ids so that consecutive ids never share a trie bucket.
///
/// The hash is the id times an odd constant, modulo 2^32, with the high half zero: the trie
/// folds the high half of a 64-bit hash into the low one and takes 5 bits per level from the
/// bottom, so it sees exactly this product. Multiplying by an odd number permutes the
/// residues modulo every power of two, so any 32 consecutive ids fill 32 distinct buckets of
/// the root, and ids 32 apart (the only ones that share a root bucket among 1024
/// consecutive ones) differ in the next 5 bits. Ids are handed out in order of first use,
/// so the variables of a program are mostly consecutive: a context of up to 32 of them is a
/// single root node, and a set after a snapshot copies one node instead of a path of two or
/// three (a 64-bit product folded in half put two of ten consecutive ids in one bucket). The
/// product is a bijection on 32-bit ids, so no two ids below 2^32 ever collide in full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VarIdHasher;

/// The hasher behind [`VarIdHasher`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct VarIdHash(u64);

impl Hasher for VarIdHash {
    #[inline]
    fn finish(&self) -> u64 {
        u64::from((self.0 as u32).wrapping_mul(0x7f4a_7c15))
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl BuildHasher for VarIdHasher {
    type Hasher = VarIdHash;

    #[inline]
    fn build_hasher(&self) -> VarIdHash {
        VarIdHash(0)
    }
}

/// The map inside a logical context.
pub(crate) type VarMap = HamtMap<VarId, Value, VarIdHasher>;

/// A variable that has a value somewhere: its id and name, as listed by `vars()`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VarInfo {
    pub(crate) id: VarId,
    pub(crate) name: &'static str,
}

impl VarInfo {
    /// The variable's id.
    pub fn id(&self) -> VarId {
        self.id
    }

    /// The variable's name, as given to `ContextVar::new`.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Debug for VarInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<ContextVar {:?} #{}>", self.name, self.id.0)
    }
}

pub(crate) fn info(id: VarId, value: &Value) -> VarInfo {
    VarInfo {
        id,
        name: value.var_name(),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Value, VarId};

    /// An inline value takes no more room in an entry than it must, and an absent one none.
    #[test]
    fn values_stay_four_words() {
        assert_eq!(size_of::<Value>(), 32);
        assert_eq!(size_of::<Option<Value>>(), 32);
        assert_eq!(size_of::<(VarId, Value)>(), 40);
    }

    /// Every inline kind reads back as the value it was made from, typed and type-erased,
    /// with its variable's facts; other types are shared.
    #[test]
    fn inline_values_read_back_as_made() {
        fn check<T: Copy + PartialEq + std::fmt::Debug + Send + Sync + 'static>(value: T) {
            for (inherit, pinned) in [(true, false), (false, false), (true, true)] {
                let stored = Value::new("v", inherit, pinned, value);
                // Only the usual kind of variable stores its values inline.
                let inline = inherit && !pinned;
                assert_eq!(stored.bits().is_some(), inline, "{value:?}");
                assert_eq!(super::downcast::<T>(&stored), Some(&value));
                assert_eq!(stored.value_any().downcast_ref::<T>(), Some(&value));
                assert_eq!(super::downcast::<u128>(&stored), None);
                assert_eq!(
                    (stored.var_name(), stored.inheritable(), stored.pinned()),
                    ("v", inherit, pinned)
                );
                assert_eq!(stored.shared_range().is_none(), inline);
                assert!(super::inline_bits(&value).is_some());
                if inline {
                    assert_eq!(super::inline_bits(&value), stored.bits());
                }
            }
        }
        check(u8::MAX);
        check(0xbeef_u16);
        check(u32::MAX - 1);
        check(u64::MAX);
        check(usize::MAX / 3);
        check(i8::MIN);
        check(-2_i16);
        check(i32::MIN + 1);
        check(i64::MIN);
        check(isize::MIN / 5);
        check(-0.5_f32);
        check(f64::MAX);
        check(true);
        check(false);
        for shared in [
            Value::new("s", true, false, 'c'),
            Value::new("s", true, false, 1_u128),
            Value::new("s", true, false, "text"),
            Value::new("s", true, false, String::from("text")),
        ] {
            assert_eq!(shared.bits(), None);
            assert!(shared.shared_range().is_some());
        }
        assert_eq!(super::inline_bits(&'c'), None);
        assert!(super::is_inline::<i64>() && !super::is_inline::<char>());
    }
}
