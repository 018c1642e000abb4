//! [`Iter`]: the variables of a context and their values, type-erased, each variable once.

use std::any::Any;
use std::fmt;
use std::iter::FusedIterator;

use crate::execution::Layer;
use crate::value::{Value, VarId, VarInfo, VarMap, info};

/// A value as the iterators hand it out: the variable's `T`, to
/// [`downcast_ref`](https://doc.rust-lang.org/std/any/trait.Any.html#method.downcast_ref).
pub type AnyValue = dyn Any + Send + Sync;

/// An iterator over the variables that have a value in a context, with their values, each
/// variable once and in no particular order: what a lookup would find, so a value from an upper
/// logical context hides the same variable's value below it. [Pinned](crate::pinned)
/// variables are not listed.
///
/// Made by [`Context::iter`](crate::Context::iter),
/// [`ExecutionContext::iter`](crate::ExecutionContext::iter) and
/// [`LogicalContext::iter`](crate::LogicalContext::iter). It allocates nothing. Each step
/// checks the logical contexts above the current one, so a full walk costs O(n × depth) map
/// lookups, where depth is at most [`EC_LEN_MAX`](crate::EC_LEN_MAX) + 1.
///
/// ```
/// use contextvars::{ContextVar, copy_context};
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
/// static ATTEMPT: ContextVar<u32> = ContextVar::new("attempt");
///
/// USER.set("alice");
/// ATTEMPT.set(3);
/// let ctx = copy_context();
/// let mut seen: Vec<String> = ctx
///     .iter()
///     .map(|(var, value)| match value.downcast_ref::<u32>() {
///         Some(n) => format!("{}={n}", var.name()),
///         None => format!("{}={:?}", var.name(), value.downcast_ref::<&str>().unwrap()),
///     })
///     .collect();
/// seen.sort();
/// assert_eq!(seen, ["attempt=3", "user=\"alice\""]);
/// ```
pub struct Iter<'a> {
    /// A logical context above the chain (a `Context`'s own), if any.
    top: Option<&'a VarMap>,
    /// The chain of an execution context, from its head.
    chain: Option<&'a Layer>,
    /// Which map `entries` walks.
    level: Level<'a>,
    entries: hamt::Iter<'a, VarId, Value>,
    /// Lists the pinned variables instead of the others (`pinned_vars`).
    pinned: bool,
}

#[derive(Clone, Copy)]
enum Level<'a> {
    Top,
    Chain(&'a Layer),
    Done,
}

static EMPTY: VarMap = VarMap::with_hasher(crate::value::VarIdHasher);

impl<'a> Iter<'a> {
    pub(crate) fn new(top: Option<&'a VarMap>, chain: Option<&'a Layer>) -> Self {
        let (level, entries) = match (top, chain) {
            (Some(map), _) => (Level::Top, map.iter()),
            (None, Some(layer)) => (Level::Chain(layer), layer.map.iter()),
            (None, None) => (Level::Done, EMPTY.iter()),
        };
        Iter {
            top,
            chain,
            level,
            entries,
            pinned: false,
        }
    }

    /// An iterator over the [pinned](crate::pinned) variables instead, which [`Iter`] skips.
    pub(crate) fn pinned(top: Option<&'a VarMap>, chain: Option<&'a Layer>) -> Self {
        Iter {
            pinned: true,
            ..Iter::new(top, chain)
        }
    }

    /// Whether `id` has a value in a map above the one being walked.
    fn hidden(&self, id: &VarId) -> bool {
        let Level::Chain(level) = self.level else {
            return false;
        };
        if self.top.is_some_and(|map| map.contains_key(id)) {
            return true;
        }
        let mut layer = self.chain;
        while let Some(current) = layer {
            if std::ptr::eq(current, level) {
                return false;
            }
            if current.map.contains_key(id) {
                return true;
            }
            layer = current.below.as_deref();
        }
        false
    }
}

impl<'a> Iter<'a> {
    /// The next variable listed and its value as stored.
    pub(crate) fn next_stored(&mut self) -> Option<(VarInfo, &'a Value)> {
        loop {
            while let Some((id, value)) = self.entries.next() {
                // Pinned variables are part of a context's surroundings, not of its listing.
                if value.pinned() == self.pinned && !self.hidden(id) {
                    return Some((info(*id, value), value));
                }
            }
            let next = match self.level {
                Level::Top => self.chain,
                Level::Chain(layer) => layer.below.as_deref(),
                Level::Done => None,
            };
            let Some(layer) = next else {
                self.level = Level::Done;
                return None;
            };
            self.level = Level::Chain(layer);
            self.entries = layer.map.iter();
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (VarInfo, &'a AnyValue);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_stored()
            .map(|(var, value)| (var, value.value_any()))
    }
}

impl FusedIterator for Iter<'_> {}

impl fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}
