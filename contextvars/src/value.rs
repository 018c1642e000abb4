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
