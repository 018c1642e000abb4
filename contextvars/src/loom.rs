//! The one place cross-thread primitives come from: `std` normally, `loom` under `--cfg loom`
//! so the model checker can explore every interleaving of the code that uses them.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
