//! [`LogicalContext`]: one layer of an execution context.

use std::fmt;

use crate::entries::Iter;
use crate::ids::next_context_id;
use crate::value::{VarInfo, VarMap, downcast};
use crate::var::ContextVar;

/// A mapping from context variables to values: one layer of an execution context.
///
/// A generator (or any iterator that wants generator semantics) owns one logical context and
/// runs each step inside it with [`run_with_logical_context`](crate::run_with_logical_context):
/// what the step sets stays in the logical context, invisible to the caller, and is there
/// again at the next step (PEP 550 §Generators Transformed into Iterators).
///
/// Creating an empty logical context allocates nothing. A clone shares the mapping (O(1)) but
/// is a *different* logical context: tokens made in one cannot reset variables in the other.
///
/// ```
/// use contextvars::{ContextVar, LogicalContext, run_with_logical_context};
///
/// static VAR: ContextVar<i32> = ContextVar::new("var");
///
/// let mut lc = LogicalContext::new();
/// run_with_logical_context(&mut lc, || VAR.set(10));
/// assert_eq!(VAR.get(), None); // the set stayed inside `lc`
/// assert_eq!(lc.get(&VAR), Some(10));
/// assert_eq!(run_with_logical_context(&mut lc, || VAR.get()), Some(10));
/// ```
pub struct LogicalContext {
    pub(crate) map: VarMap,
    /// Identity for tokens; 0 until a token first needs it.
    pub(crate) id: u64,
}

impl LogicalContext {
    /// An empty logical context. It does not allocate.
    pub const fn new() -> Self {
        LogicalContext {
            map: VarMap::with_hasher(crate::value::VarIdHasher),
            id: 0,
        }
    }

    /// The number of variables with a value here ([pinned](crate::pinned) ones are not
    /// counted).
    pub fn len(&self) -> usize {
        if crate::pinned::in_use() {
            return self.iter().count();
        }
        self.map.len()
    }

    /// Whether no variable has a value here ([pinned](crate::pinned) ones are not counted).
    pub fn is_empty(&self) -> bool {
        if !self.map.is_empty() && crate::pinned::in_use() {
            return self.iter().next().is_none();
        }
        self.map.is_empty()
    }

    /// Whether `var` has a value in this logical context.
    pub fn contains<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> bool {
        self.map.contains_key(&var.id())
    }

    /// `var`'s value in this logical context (its default does not count).
    pub fn get<T: Clone + Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<T> {
        self.get_ref(var).cloned()
    }

    /// A reference to `var`'s value in this logical context, without cloning it.
    ///
    /// ```
    /// use contextvars::{ContextVar, LogicalContext, run_with_logical_context};
    ///
    /// static NAME: ContextVar<String> = ContextVar::new("name");
    /// let mut lc = LogicalContext::new();
    /// run_with_logical_context(&mut lc, || NAME.set("x".to_string()));
    /// assert_eq!(lc.get_ref(&NAME).map(String::as_str), Some("x"));
    /// ```
    pub fn get_ref<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<&T> {
        self.map.get(&var.id()).and_then(downcast::<T>)
    }

    /// The variables with a value here and their values, type-erased, in no particular
    /// order.
    ///
    /// ```
    /// use contextvars::{ContextVar, LogicalContext, run_with_logical_context};
    ///
    /// static A: ContextVar<u8> = ContextVar::new("a");
    /// let mut lc = LogicalContext::new();
    /// run_with_logical_context(&mut lc, || A.set(5));
    /// let (var, value) = lc.iter().next().unwrap();
    /// assert_eq!((var.name(), value.downcast_ref::<u8>()), ("a", Some(&5)));
    /// ```
    pub fn iter(&self) -> Iter<'_> {
        Iter::new(Some(&self.map), None)
    }

    /// The variables with a value here, in no particular order.
    ///
    /// ```
    /// use contextvars::{ContextVar, LogicalContext, run_with_logical_context};
    ///
    /// static A: ContextVar<u8> = ContextVar::new("a");
    /// let mut lc = LogicalContext::new();
    /// run_with_logical_context(&mut lc, || A.set(1));
    /// let names: Vec<_> = lc.vars().map(|v| v.name()).collect();
    /// assert_eq!(names, ["a"]);
    /// ```
    pub fn vars(&self) -> impl Iterator<Item = VarInfo> + '_ {
        self.iter().map(|(var, _)| var)
    }

    /// Empty and without an identity: pushing it can be deferred (see `thread_state`).
    #[inline]
    pub(crate) fn is_untouched(&self) -> bool {
        self.id == 0 && self.map.is_empty()
    }

    /// This logical context's identity, assigned on first use.
    pub(crate) fn ensure_id(&mut self) -> u64 {
        if self.id == 0 {
            self.id = next_context_id();
        }
        self.id
    }

    /// Exchanges two logical contexts, field by field.
    #[inline(always)]
    pub(crate) fn swap(&mut self, other: &mut LogicalContext) {
        std::mem::swap(&mut self.map, &mut other.map);
        std::mem::swap(&mut self.id, &mut other.id);
    }

    pub(crate) fn from_map(map: VarMap) -> Self {
        LogicalContext { map, id: 0 }
    }
}

impl Default for LogicalContext {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for LogicalContext {
    /// Shares the mapping (O(1)); the clone is a distinct logical context.
    fn clone(&self) -> Self {
        LogicalContext::from_map(self.map.clone())
    }
}

impl fmt::Debug for LogicalContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogicalContext")
            .field("vars", &self.vars().collect::<Vec<_>>())
            .finish()
    }
}
