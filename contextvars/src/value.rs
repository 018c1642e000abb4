//! Type-erased values as stored in logical contexts.

use std::any::Any;
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

/// What every stored value can tell without knowing its type.
pub(crate) trait Erased: Any + Send + Sync {
    fn var_name(&self) -> &'static str;
    fn inheritable(&self) -> bool;
    fn pinned(&self) -> bool;
    /// The variable's value itself, type-erased.
    fn value_any(&self) -> &(dyn Any + Send + Sync);
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
}

/// A shared, type-erased value.
pub(crate) type Value = Arc<dyn Erased>;

/// The typed view of a stored value, if it has type `T`.
#[inline]
pub(crate) fn downcast<T: 'static>(value: &Value) -> Option<&T> {
    let any: &dyn Any = &**value;
    any.downcast_ref::<Stored<T>>().map(|stored| &stored.value)
}

/// Hashes variable ids: a multiplication spreads consecutive ids over the trie's buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VarIdHasher;

/// The hasher behind [`VarIdHasher`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct VarIdHash(u64);

impl Hasher for VarIdHash {
    #[inline]
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
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
