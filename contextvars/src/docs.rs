//! Design notes: how contexts are stored, how the lookup cache works, and why it is sound.
//!
//! # Storage
//!
//! Each thread's current execution context lives in thread-local state as three parts:
//!
//! - the **topmost logical context**, a [`hamt::HamtMap`] from variable id to a shared value
//!   (or, for integers of up to 64 bits, `f32`, `f64` and `bool` values of inherited,
//!   unpinned variables, the value's bits themselves);
//! - the **logical contexts pushed** beneath it on this thread (a `Vec`, reused, so a
//!   generator step allocates nothing);
//! - an immutable **base** snapshot ([`ExecutionContext`](crate::ExecutionContext)) under
//!   all of them.
//!
//! `ContextVar::set` inserts into the topmost map. The map is edited in place when nothing
//! else shares it, and one trie path is copied when a snapshot does. Taking a snapshot
//! ([`get_execution_context`](crate::get_execution_context),
//! [`copy_context`](crate::copy_context)) builds a chain of immutable layers once and caches
//! it until the stack changes, so repeated snapshots cost one reference-count increment.
//! Empty logical contexts are never materialised into snapshots: they change nothing a lookup
//! can see.
//!
//! Entering a [`Context`](crate::Context) *moves* its parts into the thread and moves them back
//! on exit (a drop guard does it, so panics restore too): no allocation and no atomic
//! operation. The move is deferred until the code run needs the context in the thread (to
//! set a variable, take a snapshot, open a scope or attach): until then the run *waits*, the
//! thread keeps a pointer to it, and reads are served from the lookup cache or from the
//! waiting context where it lies. Pushing a non-empty logical context
//! ([`run_with_logical_context`](crate::run_with_logical_context)) waits the same way, so a
//! task poll or a generator step that only reads its context moves nothing.
//!
//! # The lookup cache
//!
//! PEP 550 caches `ContextVar.get()` with a key of (thread id, thread stack version, variable
//! version) stored *in the variable*. A Rust `ContextVar` is shared between threads, so such a
//! cache would be a data race; CPython hit the same problem when the GIL went away
//! (gh-121546) and disabled its cache.
//!
//! Here the cache lives in the thread instead (like Java's `ScopedValue`): a 32-entry
//! direct-mapped table indexed by variable id, in a `const`-initialised thread-local. An
//! entry holds `(variable id, version, pointer to the value, a copy of it for the inline
//! kinds, or null for "absent")`. It is valid when both the id and the thread's current cache
//! version match. The version changes (to a fresh one, or back to the one the context last
//! had on this thread: leaving and popping restore the one below, entering a `Context`
//! restores its stamp) when the thread's context changes shape: entering or leaving a `Context`,
//! `run_with_execution_context`, pushing or popping a *non-empty* logical context, and thread
//! teardown (the version changes as a run or a push begins, whether it waits or not). `set`, `delete` and `reset` refresh or clear the one entry they affect.
//!
//! The pointer is *borrowed*: the cache never keeps a value alive, so values are dropped as
//! soon as no context holds them. Two rules make the borrow sound:
//!
//! 1. A value can leave the current context only through this thread's own `set`, `delete`,
//!    `reset` or a context switch — each of which updates the cache first.
//! 2. While a value borrowed from the cache is in use (the closure of
//!    [`ContextVar::with`](crate::ContextVar::with), or the value's `Clone` in `get`), the
//!    thread records the address it lends. A displaced value that holds a lent address is
//!    parked in a per-thread list and dropped when the last borrow lending it ends, so even
//!    a closure that sets the variable it is reading keeps a valid reference. Every other
//!    displaced value is dropped at once: a borrow that lasts for the life of a server delays
//!    no drop but that of the value it lends, whatever the borrows nested in it lend.
//!    (Past 16 nested borrows the thread stops recording addresses and parks every
//!    displaced value until the nesting falls back to 16.)
//!
//! Variable ids come from a process-wide counter and are never reused, so a stale entry can
//! never be mistaken for another variable's (the failure of CPython's bpo-39776).
//!
//! # Drops and panics
//!
//! The thread state sits in a `RefCell` that is borrowed only for moves and map edits that
//! run no user code. Displaced values, old snapshots and logical contexts are carried out of
//! the borrow before they are dropped, so a value whose `Drop` reads or sets context variables
//! works normally. Every scoped operation restores the previous state with a drop guard.
//!
//! # Inheritance
//!
//! A variable declared with [`ContextVar::not_inherited`](crate::ContextVar::not_inherited)
//! is left out of [`ExecutionContext::inherited`](crate::ExecutionContext::inherited), which
//! is what spawned work captures. Until such a variable is first set in the process,
//! `inherited` is a plain O(1) clone.
