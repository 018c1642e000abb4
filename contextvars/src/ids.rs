//! Identities: variable ids (assigned on first use) and logical-context ids (assigned when a
//! token first needs one). Both come from process-wide counters and are never reused.

use crate::loom::{AtomicU64, Ordering};

static NEXT_VAR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
static NEXT_CONTEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh logical-context id.
pub(crate) fn next_context_id() -> u64 {
    NEXT_CONTEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A variable's id, assigned on first use so that `ContextVar::new` can be `const`.
pub(crate) struct IdCell(AtomicU64);

impl IdCell {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        IdCell(AtomicU64::new(0))
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        IdCell(AtomicU64::new(0))
    }

    /// The id, assigning one from the process-wide counter on first use.
    #[inline(always)]
    pub(crate) fn get(&self) -> u64 {
        match self.0.load(Ordering::Relaxed) {
            0 => self.assign(),
            id => id,
        }
    }

    /// The id if one was assigned, else 0 (which no lookup-cache entry matches), without
    /// assigning: the cache hit path needs no first-use branch.
    #[inline(always)]
    pub(crate) fn peek(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    #[cold]
    #[inline(never)]
    fn assign(&self) -> u64 {
        self.get_or_assign(|| NEXT_VAR.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    /// The id, assigning `fresh()` on first use. Threads racing to assign agree on one id;
    /// a loser's fresh number is simply skipped. Relaxed ordering suffices: the id is the only
    /// data published.
    #[inline]
    pub(crate) fn get_or_assign(&self, fresh: impl FnOnce() -> u64) -> u64 {
        let id = self.0.load(Ordering::Relaxed);
        if id != 0 {
            return id;
        }
        let candidate = fresh();
        match self
            .0
            .compare_exchange(0, candidate, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => candidate,
            Err(winner) => winner,
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::IdCell;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicU64, Ordering};
    use loom::thread;

    /// Two threads assigning ids to two variables concurrently: each variable ends with one
    /// id that every thread saw, and the two variables' ids differ.
    #[test]
    fn racing_first_use_agrees_on_one_id() {
        loom::model(|| {
            let counter = Arc::new(AtomicU64::new(1));
            let vars = Arc::new((IdCell::new(), IdCell::new()));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let counter = counter.clone();
                    let vars = vars.clone();
                    thread::spawn(move || {
                        let fresh = || counter.fetch_add(1, Ordering::Relaxed);
                        (vars.0.get_or_assign(fresh), vars.1.get_or_assign(fresh))
                    })
                })
                .collect();
            let seen: Vec<(u64, u64)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let fresh = || counter.fetch_add(1, Ordering::Relaxed);
            let mine = (vars.0.get_or_assign(fresh), vars.1.get_or_assign(fresh));
            for other in &seen {
                assert_eq!(*other, mine);
            }
            assert_ne!(mine.0, mine.1);
            assert_ne!(mine.0, 0);
        });
    }
}
