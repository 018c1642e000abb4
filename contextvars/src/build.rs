//! Building contexts from parts of others: [`ExecutionContext::select`].

use crate::execution::ExecutionContext;
use crate::value::{VarId, VarIdHasher, VarMap};

impl ExecutionContext {
    /// An execution context holding only the values of `vars` that this one holds (a value
    /// from an upper logical context hiding a lower one, as a lookup sees it), in a single
    /// logical context. The values are the same objects, not copies: what compares them by
    /// address sees them equal, and holding the result keeps only those values alive, not
    /// the rest of this context. Ids without a value here are skipped.
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

#[cfg(test)]
mod tests {
    use crate::{ContextVar, ExecutionContext, LogicalContext, get_execution_context};

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
}
