//! [`ExecutionContext`]: an immutable stack of logical contexts.

use std::fmt;
use std::sync::Arc;

use crate::entries::Iter;
use crate::value::{Value, VarId, VarInfo, VarMap, downcast};
use crate::var::ContextVar;

/// How long an execution context's chain of logical contexts may grow before
/// [`get_execution_context`](crate::get_execution_context) squashes it into one (PEP 550
/// §Implementation: the `repeat()` example, where every task would otherwise add a layer).
pub const EC_LEN_MAX: usize = 16;

/// An immutable snapshot of a stack of logical contexts, as returned by
/// [`get_execution_context`](crate::get_execution_context).
///
/// Cloning is O(1). An execution context is what a task, thread or callback captures when it
/// is created, and runs in with
/// [`run_with_execution_context`](crate::run_with_execution_context) — on top of a fresh
/// logical context of its own, so the snapshot itself never changes.
///
/// ```
/// use contextvars::{ContextVar, get_execution_context, run_with_execution_context};
///
/// static USER: ContextVar<&str> = ContextVar::new("user");
///
/// USER.set("alice");
/// let ec = get_execution_context();
/// USER.set("bob");
/// assert_eq!(ec.get(&USER), Some("alice"));
/// run_with_execution_context(&ec, || {
///     assert_eq!(USER.get(), Some("alice"));
///     USER.set("carol"); // lands in the fresh top logical context
/// });
/// assert_eq!(ec.get(&USER), Some("alice"));
/// assert_eq!(USER.get(), Some("bob"));
/// ```
#[derive(Clone, Default)]
pub struct ExecutionContext {
    pub(crate) head: Option<Arc<Layer>>,
}

/// One logical context of an execution context, with the ones below it.
pub(crate) struct Layer {
    pub(crate) map: VarMap,
    pub(crate) below: Option<Arc<Layer>>,
    /// Layers in the chain, this one included.
    pub(crate) len: usize,
}

impl ExecutionContext {
    /// An empty execution context (what a new thread starts with). It does not allocate.
    pub const fn new() -> Self {
        ExecutionContext { head: None }
    }

    /// The number of logical contexts in the stack. Empty logical contexts are never stored
    /// in a snapshot (they change nothing a lookup can see), so they are not counted; one
    /// holding only [pinned](crate::pinned) values is.
    ///
    /// ```
    /// use contextvars::{ContextVar, LogicalContext, get_execution_context, run_with_logical_context};
    ///
    /// static A: ContextVar<u8> = ContextVar::new("a");
    /// std::thread::spawn(|| {
    ///     assert_eq!(get_execution_context().depth(), 0);
    ///     A.set(1);
    ///     run_with_logical_context(&mut LogicalContext::new(), || {
    ///         A.set(2);
    ///         assert_eq!(get_execution_context().depth(), 2);
    ///     });
    /// })
    /// .join()
    /// .unwrap();
    /// ```
    pub fn depth(&self) -> usize {
        self.head.as_ref().map_or(0, |layer| layer.len)
    }

    /// The depth of the stack: the old name of [`depth`](Self::depth), which this is.
    #[deprecated(
        since = "0.2.0",
        note = "`len` counts variables everywhere else; use `depth` for the number of logical contexts"
    )]
    pub fn len(&self) -> usize {
        self.depth()
    }

    /// Whether no variable has a value in this context: the stack has no logical context at
    /// all, or (once a [pinned](crate::pinned) variable has been set in the process) its
    /// logical contexts hold only pinned values, which are not listed.
    pub fn is_empty(&self) -> bool {
        if self.head.is_some() && crate::pinned::in_use() {
            return self.iter().next().is_none();
        }
        self.head.is_none()
    }

    /// `var`'s value as code running in this context would see it (its default does not
    /// count).
    pub fn get<T: Clone + Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<T> {
        self.get_ref(var).cloned()
    }

    /// A reference to `var`'s value in this context, without cloning it (its default does not
    /// count).
    ///
    /// ```
    /// use contextvars::{ContextVar, get_execution_context};
    ///
    /// static NAMES: ContextVar<Vec<String>> = ContextVar::new("names");
    /// NAMES.set(vec!["a".into()]);
    /// let ec = get_execution_context();
    /// assert_eq!(ec.get_ref(&NAMES).map(Vec::len), Some(1));
    /// ```
    pub fn get_ref<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<&T> {
        self.find(var.id()).and_then(downcast::<T>)
    }

    /// Whether `var` has a value in this context.
    pub fn contains<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> bool {
        self.find(var.id()).is_some()
    }

    /// The variables with a value in this context, each once (PEP 550 §Enumerating context
    /// vars), in no particular order.
    ///
    /// ```
    /// use contextvars::{ContextVar, get_execution_context};
    ///
    /// static A: ContextVar<u8> = ContextVar::new("a");
    /// static B: ContextVar<u8> = ContextVar::new("b");
    /// A.set(1);
    /// B.set(2);
    /// let mut names: Vec<_> = get_execution_context().vars().map(|v| v.name()).collect();
    /// names.sort();
    /// assert_eq!(names, ["a", "b"]);
    /// ```
    pub fn vars(&self) -> impl Iterator<Item = VarInfo> + '_ {
        self.iter().map(|(var, _)| var)
    }

    /// The variables with a value in this context and their values, type-erased, each
    /// variable once (the value a lookup would find), in no particular order. See [`Iter`]
    /// for the cost.
    ///
    /// ```
    /// use contextvars::{ContextVar, get_execution_context};
    ///
    /// static A: ContextVar<u8> = ContextVar::new("a");
    /// std::thread::spawn(|| {
    ///     A.set(7);
    ///     let values: Vec<u8> = get_execution_context()
    ///         .iter()
    ///         .filter_map(|(_, value)| value.downcast_ref::<u8>().copied())
    ///         .collect();
    ///     assert_eq!(values, [7]);
    /// })
    /// .join()
    /// .unwrap();
    /// ```
    pub fn iter(&self) -> Iter<'_> {
        Iter::new(None, self.head.as_deref())
    }

    /// The same bindings in a single logical context: the stack squashed top-down, upper
    /// values winning, lower layers' entries added where the upper ones lack them.
    ///
    /// ```
    /// use contextvars::{ContextVar, get_execution_context};
    ///
    /// static A: ContextVar<u8> = ContextVar::new("a");
    /// A.set(1);
    /// let ec = get_execution_context().squashed();
    /// assert!(ec.depth() <= 1);
    /// assert_eq!(ec.get(&A), Some(1));
    /// ```
    pub fn squashed(&self) -> Self {
        match &self.head {
            None => ExecutionContext::new(),
            Some(layer) if layer.len == 1 => self.clone(),
            Some(_) => ExecutionContext::new().with_layer(self.merged()),
        }
    }

    /// This context without the variables that opted out of inheritance
    /// ([`ContextVar::not_inherited`]): what spawned work should capture. When no such
    /// variable has ever been set in the process, this is a plain O(1) clone.
    pub fn inherited(&self) -> Self {
        if !crate::var::any_not_inherited() {
            return self.clone();
        }
        let mut merged = self.merged();
        if merged.iter().all(|(_, value)| value.inheritable()) {
            return self.clone();
        }
        merged.retain(|_, value| value.inheritable());
        if merged.is_empty() {
            ExecutionContext::new()
        } else {
            ExecutionContext::new().with_layer(merged)
        }
    }

    /// All bindings of the stack in one map, upper layers winning.
    pub(crate) fn merged(&self) -> VarMap {
        let mut merged = VarMap::with_hasher(crate::value::VarIdHasher);
        let mut layer = self.head.as_deref();
        while let Some(current) = layer {
            // `merge` keeps the values already present, which come from upper layers.
            merged.merge(&current.map);
            layer = current.below.as_deref();
        }
        merged
    }

    /// The maps of the stack, top first.
    pub(crate) fn maps(&self) -> impl Iterator<Item = &VarMap> {
        std::iter::successors(self.head.as_deref(), |layer| layer.below.as_deref())
            .map(|layer| &layer.map)
    }

    /// The topmost value for `id`.
    ///
    /// The top layer is searched here and the others out of line: in a loop over the layers,
    /// the compiler computes the bucket of every trie level before the first layer (they
    /// depend on the id alone), ≈ 70 instructions that a lookup answered by the top layer,
    /// the usual case, would pay for nothing.
    #[inline]
    pub(crate) fn find(&self, id: VarId) -> Option<&Value> {
        let top = self.head.as_deref()?;
        match top.map.get(&id) {
            Some(value) => Some(value),
            None => Self::find_below(top.below.as_deref(), id),
        }
    }

    /// The topmost value for `id` in `layer` and those below it.
    #[inline(never)]
    fn find_below(mut layer: Option<&Layer>, id: VarId) -> Option<&Value> {
        while let Some(current) = layer {
            if let Some(value) = current.map.get(&id) {
                return Some(value);
            }
            layer = current.below.as_deref();
        }
        None
    }

    /// This stack with `map` pushed on top (empty maps are not pushed: they change nothing
    /// a lookup can see).
    pub(crate) fn with_layer(&self, map: VarMap) -> Self {
        if map.is_empty() {
            return self.clone();
        }
        let len = self.depth() + 1;
        ExecutionContext {
            head: Some(Arc::new(Layer {
                map,
                below: self.head.clone(),
                len,
            })),
        }
    }

    /// Whether both are the same snapshot (O(1)).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        match (&self.head, &other.head) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl<'a> IntoIterator for &'a ExecutionContext {
    type Item = (VarInfo, &'a crate::AnyValue);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl fmt::Debug for ExecutionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutionContext")
            .field("depth", &self.depth())
            .field("vars", &self.vars().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for Layer {
    /// Unlinks the chain iteratively, so a long chain cannot overflow the stack.
    fn drop(&mut self) {
        let mut below = self.below.take();
        while let Some(layer) = below {
            match Arc::try_unwrap(layer) {
                Ok(mut owned) => below = owned.below.take(),
                Err(_) => break,
            }
        }
    }
}
