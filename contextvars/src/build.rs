//! Building contexts in one step: [`ContextBuilder`], and from parts of others:
//! [`ExecutionContext::select`]; telling values apart by identity without keeping them:
//! [`Identities`].

use std::fmt;
use std::sync::{Arc, Weak};

use crate::context::Context;
use crate::execution::ExecutionContext;
use crate::value::{Erased, Value, VarId, VarIdHasher, VarMap};
use crate::var::ContextVar;

/// Builds a fresh [`Context`] holding several values, without entering it: what
/// `Context::new()` followed by `run(|| { A.set(a); B.set(b); })` makes, for less. The values
/// go straight into the new context's map, without switching the thread's context twice and
/// without a [`Token`](crate::Token) per value.
///
/// Like [`Context::new`], the context keeps its creator's [pinned](crate::pinned) values.
/// Context watchers ([`crate::watch`]) are not told of these values: no context is entered,
/// and the new one is no thread's current context. Only variables that opted out of
/// inheritance or are pinned take the long way (entering the new context to set them, which
/// watchers see), since their first value is noted process-wide.
///
/// ```
/// use contextvars::{ContextBuilder, ContextVar};
///
/// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
/// static TENANT: ContextVar<String> = ContextVar::new("tenant");
///
/// let mut builder = ContextBuilder::new();
/// builder.set(&REQUEST_ID, 7).set(&TENANT, "acme".into());
/// let mut context = builder.build();
/// assert_eq!(context.get(&REQUEST_ID), Some(7));
/// assert_eq!(TENANT.get(), None); // the current context is untouched
/// assert_eq!(context.run(|| TENANT.get()).as_deref(), Some("acme"));
/// ```
pub struct ContextBuilder {
    context: Context,
}

impl ContextBuilder {
    /// A builder for a context holding nothing yet (but its creator's pinned values).
    pub fn new() -> Self {
        ContextBuilder {
            context: Context::new(),
        }
    }

    /// Gives `var` the value `value` in the context being built (replacing any value given
    /// before).
    pub fn set<T: Send + Sync + 'static>(&mut self, var: &ContextVar<T>, value: T) -> &mut Self {
        if var.is_pinned() || !var.is_inherited() {
            // What `set` notes process-wide for these, it notes here too.
            let _token = self.context.run(|| var.set(value));
            return self;
        }
        let stored = Value::new(var.name(), true, false, value);
        // Not running: the map is the context's own data. A `run` above (for a pinned or
        // not-inherited variable) may have left cache entries that point into it, kept for
        // the context's next run by its stamp: changing the map outside a run voids them.
        self.context.stamp = 0;
        self.context.frame.top.map.insert(var.id(), stored);
        self
    }

    /// The context.
    pub fn build(self) -> Context {
        self.context
    }
}

impl Default for ContextBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ContextBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextBuilder")
            .field("vars", &self.context.vars().collect::<Vec<_>>())
            .finish()
    }
}

impl ExecutionContext {
    /// An execution context holding only the values of `vars` that this one holds (a value
    /// from an upper logical context hiding a lower one, as a lookup sees it), in a single
    /// logical context. The values are the same objects, not copies: what compares them by
    /// address sees them equal (inline values, integers of up to 64 bits, `f32`, `f64` and
    /// `bool`, are copied, and compare by value), and holding the result keeps only those
    /// values alive, not the rest of this context. Ids without a value here are skipped.
    ///
    /// ```
    /// use contextvars::{ContextVar, get_execution_context};
    ///
    /// static TENANT: ContextVar<String> = ContextVar::new("tenant");
    /// static SECRET: ContextVar<String> = ContextVar::new("secret");
    /// static UNSET: ContextVar<u8> = ContextVar::new("unset");
    ///
    /// TENANT.set("acme".into());
    /// SECRET.set("hunter2".into());
    /// let ec = get_execution_context();
    /// let selected = ec.select(&[TENANT.id(), UNSET.id()]);
    /// assert_eq!(selected.get(&TENANT).as_deref(), Some("acme"));
    /// assert_eq!(selected.get(&SECRET), None);
    /// assert_eq!((selected.vars().count(), selected.depth()), (1, 1));
    /// // The same value object, not a copy.
    /// assert!(std::ptr::eq(selected.get_ref(&TENANT).unwrap(), ec.get_ref(&TENANT).unwrap()));
    /// ```
    pub fn select(&self, vars: &[VarId]) -> ExecutionContext {
        let mut map = VarMap::with_hasher(VarIdHasher);
        for &id in vars {
            if let Some(value) = self.find(id) {
                map.insert(id, value.clone());
            }
        }
        ExecutionContext::new().with_layer(map)
    }
}

/// Weak handles on some values of a context, made by [`ExecutionContext::identities`]: for
/// remembering *which objects* some variables held without keeping those objects alive.
///
/// While the handles live, no other value can be allocated where one of these values is (the
/// allocation outlives the value by its few bytes of header and fields), so an address taken
/// from a live context and equal to one of theirs is the very same object. Yet a value is
/// dropped as soon as its last context drops it; the handles do not delay its `Drop`.
///
/// ```
/// use contextvars::{ContextVar, get_execution_context};
///
/// static TENANT: ContextVar<String> = ContextVar::new("tenant");
///
/// TENANT.set("acme".into());
/// let identities = get_execution_context().identities(&[TENANT.id()]);
/// assert_eq!((identities.len(), identities.live()), (1, 1));
/// TENANT.set("other".into()); // the last context holding "acme" lets go of it
/// assert_eq!((identities.len(), identities.live()), (1, 0));
/// ```
pub struct Identities {
    held: Vec<Weak<dyn Erased>>,
}

impl Identities {
    /// How many values the handles were made for.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no value was found to make a handle for.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// How many of the values are still held by some context (a snapshot).
    pub fn live(&self) -> usize {
        self.held
            .iter()
            .filter(|weak| weak.strong_count() > 0)
            .count()
    }
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("len", &self.len())
            .field("live", &self.live())
            .finish()
    }
}

impl ExecutionContext {
    /// [`Identities`] of the values of `vars` that this context holds (as a lookup sees them):
    /// weak handles that keep the values' allocations, so that their addresses stay theirs,
    /// but not the values. Ids without a value here are skipped, and so are values stored
    /// inline (integers of up to 64 bits, `f32`, `f64`, `bool`), which have no allocation:
    /// such a value is lent as a copy, so its address says nothing; its value says all.
    ///
    /// ```
    /// use contextvars::{ContextVar, get_execution_context};
    ///
    /// static TENANT: ContextVar<String> = ContextVar::new("tenant");
    /// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
    /// static UNSET: ContextVar<String> = ContextVar::new("unset");
    ///
    /// TENANT.set("acme".into());
    /// REQUEST_ID.set(7); // inline: no allocation to keep
    /// let ids = [TENANT.id(), REQUEST_ID.id(), UNSET.id()];
    /// assert_eq!(get_execution_context().identities(&ids).len(), 1);
    /// ```
    pub fn identities(&self, vars: &[VarId]) -> Identities {
        Identities {
            held: vars
                .iter()
                .filter_map(|&id| match self.find(id)? {
                    Value::Shared(shared) => Some(Arc::downgrade(shared)),
                    // No allocation, so no address to keep (see `Identities`).
                    Value::Inline(_) => None,
                })
                .collect(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::ContextBuilder;
    use crate::{Context, ContextVar, ExecutionContext, LogicalContext, get_execution_context};

    /// A built context answers as one made by entering a fresh context and setting the same
    /// values, for every kind of variable.
    #[test]
    fn a_built_context_is_the_context_the_sets_make() {
        static PLAIN: ContextVar<u32> = ContextVar::new("plain");
        static TEXT: ContextVar<String> = ContextVar::new("text");
        static LOCAL: ContextVar<u8> = ContextVar::new("local").not_inherited();
        static ZONE: ContextVar<&str> = ContextVar::new("zone").pinned();
        static UNSET: ContextVar<u8> = ContextVar::with_default("unset", 9);
        std::thread::spawn(|| {
            ZONE.set("eu");
            PLAIN.set(100); // the creator's own value: not in the new context
            let mut builder = ContextBuilder::new();
            builder
                .set(&PLAIN, 1)
                .set(&TEXT, "a".into())
                .set(&LOCAL, 3)
                .set(&PLAIN, 2);
            let mut built = builder.build();
            let mut made = Context::new();
            made.run(|| {
                PLAIN.set(1);
                TEXT.set("a".into());
                LOCAL.set(3);
                PLAIN.set(2);
            });
            let seen = |context: &mut Context| {
                context.run(|| {
                    (
                        PLAIN.get(),
                        TEXT.get(),
                        LOCAL.get(),
                        ZONE.get(),
                        UNSET.get(),
                        UNSET.is_set(),
                    )
                })
            };
            let expected = (
                Some(2),
                Some("a".into()),
                Some(3),
                Some("eu"),
                Some(9),
                false,
            );
            assert_eq!(seen(&mut built), expected);
            assert_eq!(seen(&mut made), expected);
            assert_eq!(built.len(), made.len());
            assert_eq!(built.len(), 3);
            // Inheritance follows the variables' flags.
            let inherited = built.execution_context().inherited();
            assert_eq!(inherited.get(&PLAIN), Some(2));
            assert_eq!(inherited.get(&LOCAL), None);
            // The creator's context is untouched.
            assert_eq!(
                (PLAIN.get(), TEXT.get(), LOCAL.get()),
                (Some(100), None, None)
            );
            // Sets and resets inside the built context work as in any other.
            built.run(|| {
                let token = TEXT.set("b".into());
                assert_eq!(TEXT.get().as_deref(), Some("b"));
                TEXT.reset(token).unwrap();
                assert_eq!(TEXT.get().as_deref(), Some("a"));
            });
            assert!(ContextBuilder::new().build().is_empty());
        })
        .join()
        .unwrap();
    }

    static A: ContextVar<u32> = ContextVar::new("a");
    static B: ContextVar<String> = ContextVar::new("b");
    static C: ContextVar<u8> = ContextVar::new("c");

    #[test]
    fn select_takes_the_topmost_values_and_nothing_else() {
        std::thread::spawn(|| {
            A.set(1);
            B.set("low".into());
            C.set(3);
            crate::run_with_logical_context(&mut LogicalContext::new(), || {
                B.set("high".into());
                let ec = get_execution_context();
                assert_eq!(ec.depth(), 2);
                let selected = ec.select(&[B.id(), A.id(), B.id()]);
                assert_eq!(selected.depth(), 1);
                assert_eq!(selected.vars().count(), 2);
                assert_eq!(selected.get(&A), Some(1));
                assert_eq!(selected.get(&B).as_deref(), Some("high"));
                assert_eq!(selected.get(&C), None);
                assert!(std::ptr::eq(
                    selected.get_ref(&B).unwrap(),
                    ec.get_ref(&B).unwrap()
                ));
                assert!(ec.select(&[]).is_empty());
                assert_eq!(ec.select(&[]).depth(), 0);
            });
            assert!(ExecutionContext::new().select(&[A.id()]).is_empty());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn select_keeps_only_the_selected_values_alive() {
        use std::sync::Arc;
        static HELD: ContextVar<Arc<()>> = ContextVar::new("held");
        static OTHER: ContextVar<Arc<()>> = ContextVar::new("other");
        std::thread::spawn(|| {
            let held = Arc::new(());
            let other = Arc::new(());
            let mut context = crate::Context::new();
            context.run(|| {
                HELD.set(held.clone());
                OTHER.set(other.clone());
            });
            let selected = context.execution_context().select(&[HELD.id()]);
            drop(context);
            assert_eq!(Arc::strong_count(&held), 2);
            assert_eq!(Arc::strong_count(&other), 1);
            drop(selected);
            assert_eq!(Arc::strong_count(&held), 1);
        })
        .join()
        .unwrap();
    }

    /// Identities keep the values' allocations, not the values: each value is dropped with its
    /// last context, and an address compared against the handles stays its own.
    #[test]
    fn identities_keep_no_value_alive() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        static HELD: ContextVar<Arc<Counted>> = ContextVar::new("identities.held");
        static OTHER: ContextVar<u8> = ContextVar::new("identities.other");
        let drops = Arc::new(AtomicUsize::new(0));
        let drops_in = Arc::clone(&drops);
        let identities = std::thread::spawn(move || {
            let mut context = Context::new();
            let identities = context.run(|| {
                HELD.set(Arc::new(Counted(drops_in)));
                OTHER.set(3); // inline: no allocation, no handle
                get_execution_context().identities(&[HELD.id(), OTHER.id()])
            });
            assert_eq!((identities.len(), identities.live()), (1, 1));
            assert_eq!(format!("{identities:?}"), "Identities { len: 1, live: 1 }");
            drop(context);
            identities
        })
        .join()
        .unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!((identities.len(), identities.live()), (1, 0));
        assert!(!identities.is_empty());
        assert!(ExecutionContext::new().identities(&[HELD.id()]).is_empty());
    }
}
