//! The one place cross-thread primitives come from: `std` normally, `loom` under `--cfg loom`
//! so the model checker can explore every interleaving of the code that uses them.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

/// Declares a thread-local with a `const` initializer: `std`'s normally, loom's under
/// `--cfg loom` (whose locals belong to the model's threads, so a model with two threads sees
/// two caches and two thread states, as real threads do).
macro_rules! thread_local_const {
    ($(#[$attr:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        #[cfg(not(loom))]
        std::thread_local! {
            $(#[$attr])*
            static $name: $ty = const { $init };
        }
        #[cfg(loom)]
        loom::thread_local! {
            $(#[$attr])*
            static $name: $ty = $init;
        }
    };
}

pub(crate) use thread_local_const;
