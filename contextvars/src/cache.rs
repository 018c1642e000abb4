//! The per-thread lookup cache, and most of this crate's `unsafe` (the rest is the thread
//! state's pointers to waiting runs and pushes, in `thread_state`).
//!
//! `ContextVar::get` first looks here. The cache is a direct-mapped table of
//! [`SLOTS`] entries in a `const`-initialised thread-local (no lazy initialisation, no
//! destructor, so reaching it is a plain TLS access). Each entry remembers, for one variable,
//! a *borrowed* pointer to the value the current execution context holds for it, or a copy
//! of it (or that it holds none), stamped with the thread's cache version at the time.
//!
//! # Why a borrowed pointer stays valid
//!
//! The pointer targets the `T` inside an `Arc` allocation owned by a logical context that is
//! part of this thread's current execution context. Such a value can only be freed when the
//! current execution context stops holding it, and that happens only through this thread:
//!
//! 1. **Switching or restacking** (entering/leaving a `Context`, `run_with_execution_context`,
//!    pushing or popping a non-empty logical context, thread teardown) changes the version,
//!    which invalidates every entry at once. Versions are never reused: each thread hands
//!    them out from blocks of its own ([`fresh`]). Three versions come back, because what they
//!    describe is unchanged: the context switched away from is kept by the switch's guard
//!    (or, for an attach, by its level in the thread state, until the matching detach) and
//!    comes back unchanged, so leaving restores its version ([`leave`]; a detach that
//!    discards attaches left above it gets a fresh one instead); so does the
//!    context below a non-empty logical context, which nothing can change until the logical
//!    context is popped (its push [`renew`]s the version, its pop restores the old one,
//!    unless an attach made inside the scope ended with it); and a `Context`
//!    left on this thread (by a run's end or a detach) keeps the version it had (its
//!    *stamp*), which is current again when it is next entered (run or attached) on this
//!    thread ([`enter`]), provided it was not current
//!    anywhere else in between (a run elsewhere gives it a stamp of another thread's block).
//!    A `Context` can only change while it is current, so its values are still the ones the
//!    stamped entries point to. A run switches the version as it begins, before its context
//!    is moved into the thread state: until an operation needs the thread state, the run
//!    *waits* (see `thread_state::run_in_frame`), its reads are served from here or looked
//!    up in the waiting context where it lies, and the context cannot change, since every
//!    change goes through the thread state, which enters the run first. The run holds the
//!    `Context` borrowed throughout, so the values stay where the entries point.
//! 2. **Changing one variable** (`set`, `delete`, `reset`) goes through the thread state's
//!    one mutator of the topmost logical context, which rewrites or clears that variable's
//!    entry and hands back the value it displaced. Changing variable X never frees the value
//!    of another variable Y: in-place edits leave Y's `Arc` untouched, and path copies clone
//!    it.
//! 3. Other threads cannot change this thread's current context: contexts are installed by
//!    moving them into the thread state, and snapshots are immutable.
//! 4. **User code running on a borrowed value** (the closure of `ContextVar::with`, or `T`'s
//!    `Clone` in `ContextVar::get`) could change the very variable it borrows and drop the
//!    old value. [`read`] records the address it lends for as long as the borrow is open. A
//!    displaced value whose allocation contains a lent address is *retired* to a per-thread
//!    list instead of being dropped; when a borrow ends, the retired values no borrow still
//!    open lends are released. Every other displaced value is dropped at once: a long borrow
//!    of one variable delays no other drop, nor the release of a value an inner borrow lent.
//!    Up to [`LENT_MAX`] nested borrows are recorded exactly; deeper than that, every
//!    displaced value is retired until the nesting falls back (a conservative answer, never
//!    an unsound one). [`read_plain`] lends nothing: it serves only primitives, whose
//!    `Clone` is the standard library's and runs no user code, and clones them inside the
//!    cache access.
//!
//! Values of the inline kinds (integers of up to 64 bits, `f32`, `f64`, `bool`: see
//! `value::is_inline`) are cached *by copy*: the entry holds their bits (its pointer is the
//! [`INLINE`] marker), and [`read`] lends a copy of them on the stack, which borrows nothing,
//! so such a value never needs retiring. The rules above keep the copy equal to the value the
//! context holds, exactly as they keep a pointer pointing to it. (Stored inline, such a value
//! has no address that would stay put: the map's nodes are edited and reallocated.)
//!
//! So an entry whose variable id and version match points to a live value (or holds a copy of
//! it), and it stays live for as long as [`read`] lends it. This is PEP 550's cache (§Context Variables) with the key
//! moved out of the variable and into the thread, which removes the data race CPython hit
//! without a GIL (gh-121546): nothing here is shared between threads.

use std::cell::Cell;
use std::ptr;

use crate::value::{VarId, inline_bits, is_inline};

/// Entries in the table; variable ids are sequential, so up to this many variables never
/// evict one another.
pub(crate) const SLOTS: usize = 32;

/// Nested borrows whose lent address is recorded; deeper borrows retire conservatively.
pub(crate) const LENT_MAX: usize = 16;

/// The entries, one slot of each array per entry: a slot's variable, the version it was
/// stored at, and the cached `&T` (null when the context holds no value for the variable;
/// [`INLINE`] when the value is inline, with its bits in `bits`). Separate arrays, so that
/// each field is addressed from the thread-local's base directly.
struct Entries {
    vars: [Cell<u64>; SLOTS],
    versions: [Cell<u64>; SLOTS],
    values: [Cell<*const ()>; SLOTS],
    bits: [Cell<u64>; SLOTS],
}

/// The `values` entry of an inline value (whose bits are cached, not its address): never the
/// address of a `T` that is cached, since no inline value is ever cached by address.
const INLINE: *const () = ptr::dangling();

/// What the cache records for a variable's value (see [`store_held`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Held {
    /// Where a shared value's `T` lies.
    At(*const ()),
    /// An inline value's bits (see `value::inline_bits`).
    Bits(u64),
}

impl Entries {
    #[inline(always)]
    fn set(&self, slot: usize, var: u64, version: u64, value: *const ()) {
        self.vars[slot].set(var);
        self.versions[slot].set(version);
        self.values[slot].set(value);
    }
}

/// The `T` whose bytes start `bits`.
///
/// # Safety
///
/// `bits` must come from `value::inline_bits` of a `T`.
#[inline(always)]
#[allow(unsafe_code)]
unsafe fn bits_as<T>(bits: u64) -> T {
    debug_assert!(size_of::<T>() <= size_of::<u64>() && align_of::<T>() <= align_of::<u64>());
    // SAFETY: `inline_bits` put a `T`'s bytes at the start of `bits`, which is aligned for
    // it (inline types are at most 8 bytes and 8-aligned); inline types own nothing, so a
    // bitwise copy is a copy.
    unsafe { ptr::from_ref(&bits).cast::<T>().read() }
}

struct Cache {
    version: Cell<u64>,
    /// The last version handed out by [`fresh`] on this thread (see [`enter`]).
    last: Cell<u64>,
    /// The start of this thread's current block of versions (see [`enter`]).
    block: Cell<u64>,
    /// Open borrows handed out by [`read`] on this thread.
    borrows: Cell<usize>,
    /// The address lent by the open borrow at each depth (the first [`LENT_MAX`]).
    lent: [Cell<*const ()>; LENT_MAX],
    /// Whether values were retired during the open borrows.
    retired: Cell<bool>,
    /// The most open borrows at whose end a retired value may be released: the end of a
    /// borrow that leaves more open releases nothing, so it skips `release`.
    release_at: Cell<usize>,
    entries: Entries,
}

crate::loom::thread_local_const! {
    static CACHE: Cache = {
        Cache {
            // Entries start at version 0, so version 1 makes them all stale.
            version: Cell::new(1),
            // The first `fresh` version opens a block.
            last: Cell::new(BLOCK - 1),
            // No block yet: a start that no stamp lies just above.
            block: Cell::new(NO_BLOCK),
            borrows: Cell::new(0),
            lent: [const { Cell::new(ptr::null()) }; LENT_MAX],
            retired: Cell::new(false),
            release_at: Cell::new(0),
            entries: Entries {
                vars: [const { Cell::new(0) }; SLOTS],
                versions: [const { Cell::new(0) }; SLOTS],
                values: [const { Cell::new(ptr::null()) }; SLOTS],
                bits: [const { Cell::new(0) }; SLOTS],
            },
        }
    };
}

#[inline]
fn slot(var: u64) -> usize {
    (var as usize) % SLOTS
}

impl Cache {
    /// `var`'s entry if it is valid (its variable, at the current version): the cached
    /// pointer, null when the context holds no value. `None` when the cache cannot answer.
    #[inline(always)]
    fn entry(&self, var: u64) -> Option<*const ()> {
        let slot = slot(var);
        let entries = &self.entries;
        if entries.vars[slot].get() != var || entries.versions[slot].get() != self.version.get() {
            return None;
        }
        Some(entries.values[slot].get())
    }
}

/// Looks variable `var` up in this thread's cache. On a hit, passes the value to `f`; if the
/// cache knows the current context holds no value, hands `f` to `absent`; if nothing valid is
/// cached, hands it to `unknown`. `var` may be 0 (a variable whose id is not assigned yet),
/// which no entry matches: entries are stamped with a version of at least 1, and only
/// entries that hold nothing (as initialised, or forgotten) carry the variable 0, at
/// version 0.
///
/// While `f` holds a borrowed value, a displaced value that contains it is retired rather
/// than dropped (point 4 above); when the borrow ends, if anything was retired, `release` is
/// called with the number of borrows still open (only when one of them may be
/// releasable), and must release the retired values none of them lends (see
/// [`lent_by_open_borrows`]), calling [`keep_retired`] if any remain. An inline value is
/// lent as a copy instead, which borrows nothing. In debug builds, `check` is called on
/// every hit with the variable and what is cached, and must panic if the current context
/// does not hold that value.
///
/// # Safety
///
/// `T` must be the type of `var`'s values: every pointer stored for `var` (by [`store`] or
/// [`store_held`]) must point to a `T`, and every inline value's bits must be a `T`'s. A `ContextVar<T>` guarantees it, since variable ids are
/// never shared between variables.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) unsafe fn read<T: 'static, R, F: FnOnce(Option<&T>) -> R>(
    var: u64,
    f: F,
    absent: impl FnOnce(F) -> R,
    unknown: impl FnOnce(F) -> R,
    release: fn(usize),
    check: fn(VarId, Held),
) -> R {
    if is_inline::<T>() {
        // An inline value is lent as a copy: nothing of the context is borrowed.
        let found = CACHE.with(|cache| {
            let value = cache.entry(var)?;
            Some((!value.is_null()).then(|| cache.entries.bits[slot(var)].get()))
        });
        return match found {
            None => unknown(f),
            Some(None) => absent(f),
            Some(Some(bits)) => {
                if cfg!(debug_assertions) {
                    check(VarId(var), Held::Bits(bits));
                }
                // SAFETY: the entry matched `var` and the current version, so `bits` are the
                // inline value the current context holds for `var`, a `T` by this
                // function's contract.
                let copy = unsafe { bits_as::<T>(bits) };
                f(Some(&copy))
            }
        };
    }
    // `Cache` has no destructor, so this thread-local is always accessible. The closures
    // given to `with` stay small so that they inline: the borrow is opened inside, and
    // `f` runs outside.
    let found = CACHE.with(|cache| {
        let value = cache.entry(var)?;
        if !value.is_null() {
            let depth = cache.borrows.get();
            if let Some(lent) = cache.lent.get(depth) {
                lent.set(value);
            }
            cache.borrows.set(depth + 1);
        }
        Some(value)
    });
    let Some(cached) = found else {
        return unknown(f);
    };
    if cached.is_null() {
        return absent(f);
    }
    let _borrow = Borrow { release };
    if cfg!(debug_assertions) {
        check(VarId(var), Held::At(cached));
    }
    // SAFETY: the entry matched `var` and the current version, so the value it points to is
    // owned by this thread's current execution context (points 1-3 of the module docs), and
    // `_borrow`, opened in the same access, keeps it from being dropped until `f` returns,
    // even if `f` changes the context (point 4: its address is recorded as lent, or retiring
    // is conservative past `LENT_MAX`). The pointer points to a `T` by this function's
    // contract.
    let value = unsafe { &*cached.cast::<T>() };
    f(Some(value))
}

/// What [`read_plain`] found for a variable.
pub(crate) enum Plain<T> {
    /// The current context's value, cloned.
    Value(T),
    /// The current context holds no value.
    Absent,
    /// The cache has no valid entry: take the general path.
    Unknown,
}

/// Reads `var`'s cached value by cloning it inside the cache access, without opening a
/// borrow: for values whose `Clone` cannot change the context while it runs, no borrow
/// needs to keep them alive (point 4 of the module docs concerns user code only).
///
/// # Safety
///
/// Every value stored for `var` is a `T`, and `T::clone` runs no code of the caller's: it
/// is the standard library's clone of a primitive type (see `var::is_plain`), which only
/// copies bits and cannot reach this thread's context.
#[allow(unsafe_code)]
#[inline(always)]
pub(crate) unsafe fn read_plain<T: Clone + 'static>(var: u64, check: fn(VarId, Held)) -> Plain<T> {
    CACHE.with(|cache| {
        let Some(value) = cache.entry(var) else {
            return Plain::Unknown;
        };
        if value.is_null() {
            return Plain::Absent;
        }
        if is_inline::<T>() {
            let bits = cache.entries.bits[slot(var)].get();
            if cfg!(debug_assertions) {
                check(VarId(var), Held::Bits(bits));
            }
            // SAFETY: the entry matched `var` and the current version, so `bits` are the
            // inline value the current context holds for `var`, a `T` by this function's
            // contract.
            return Plain::Value(unsafe { bits_as::<T>(bits) });
        }
        if cfg!(debug_assertions) {
            check(VarId(var), Held::At(value));
        }
        // SAFETY: the entry matched `var` and the current version, so the value it points to
        // is owned by this thread's current execution context (points 1-3 of the module
        // docs) and is a `T` by this function's contract; nothing runs between this check
        // and the end of the clone that could change the context (the clone is std's).
        Plain::Value(unsafe { &*value.cast::<T>() }.clone())
    })
}

/// An open borrow; closing one releases the retired values no open borrow lends any more.
struct Borrow {
    release: fn(usize),
}

impl Drop for Borrow {
    #[inline(always)]
    fn drop(&mut self) {
        let (depth, release) = CACHE.with(|cache| {
            let depth = cache.borrows.get() - 1;
            cache.borrows.set(depth);
            let release = cache.retired.get() && depth <= cache.release_at.get();
            if release {
                cache.retired.set(false);
                cache.release_at.set(0);
            }
            (depth, release)
        });
        if release {
            (self.release)(depth);
        }
    }
}

/// Which open borrow may be lending an address in `start ..= start + len`: the number of
/// borrows open outside the outermost one that does (it is released once no more than that
/// many are open), or [`LENT_MAX`] when only borrows past the recorded ones may (once no
/// more than `LENT_MAX` are open, all are recorded and it can be checked). `None`: no open
/// borrow lends it.
#[inline]
fn lender(cache: &Cache, start: *const (), len: usize) -> Option<usize> {
    let depth = cache.borrows.get();
    let start = start.addr();
    // `<=` at the end: a zero-sized value may sit at its allocation's last address.
    let recorded = cache.lent[..depth.min(LENT_MAX)].iter().position(|lent| {
        let lent = lent.get().addr();
        (start..=start + len).contains(&lent)
    });
    recorded.or((depth > LENT_MAX).then_some(LENT_MAX))
}

/// Whether a displaced value occupying `start .. start + len` (bytes) may be in use by an
/// open borrow on this thread, so it must be retired instead of dropped. When it returns
/// `true`, the caller must retire it: the end of a borrow will call `release`.
#[inline]
pub(crate) fn must_retire(start: *const (), len: usize) -> bool {
    CACHE.with(|cache| match lender(cache, start, len) {
        Some(at) => {
            note_retired(cache, at);
            true
        }
        None => false,
    })
}

fn note_retired(cache: &Cache, at: usize) {
    cache.retired.set(true);
    cache.release_at.set(cache.release_at.get().max(at));
}

/// For `release`: which open borrow may still be lending a retired value occupying
/// `start .. start + len`, as [`lender`] says (`None`: none, release it).
#[inline]
pub(crate) fn lent_by_open_borrows(start: *const (), len: usize) -> Option<usize> {
    // `Cache` has no destructor, so this thread-local is always accessible; were it not,
    // the value would be kept until the outermost borrow ends.
    CACHE
        .try_with(|cache| lender(cache, start, len))
        .unwrap_or(Some(0))
}

/// Says that retired values remain after a `release`, the first of them releasable once no
/// more than `at` borrows are open (the largest answer of [`lent_by_open_borrows`] for
/// them): the end of a borrow that leaves that many open will call `release` again.
#[inline]
pub(crate) fn keep_retired(at: usize) {
    let _ = CACHE.try_with(|cache| note_retired(cache, at));
}

/// Records that the current context holds `value` (or nothing) for `var`.
///
/// # Safety
///
/// As for [`store_held`]: `value` is the `T` the current context holds for `var` (inside its
/// `Arc`, unless `T` is an inline type).
#[inline]
#[allow(unsafe_code)]
pub(crate) unsafe fn store<T: 'static>(var: VarId, value: Option<&T>) {
    let held = value.map(|value| match inline_bits(value) {
        Some(bits) => Held::Bits(bits),
        None => Held::At(ptr::from_ref(value).cast()),
    });
    // SAFETY: forwarded; a reference is a valid pointer to a `T`.
    unsafe { store_held(var, held) }
}

/// Records that the current context holds `held` (`None`: no value) for `var`.
///
/// # Safety
///
/// `held` must describe the value this thread's current execution context holds for `var`,
/// whose type is `var`'s value type: `Held::At` the `T` inside its `Arc` allocation,
/// `Held::Bits` an inline value's bits. Whatever later removes that value from the current
/// context must go through the thread state's mutators (which refresh or clear this entry)
/// or invalidate the whole cache.
#[inline]
#[allow(unsafe_code)]
pub(crate) unsafe fn store_held(var: VarId, held: Option<Held>) {
    CACHE.with(|cache| {
        let slot = slot(var.0);
        let value = match held {
            None => ptr::null(),
            Some(Held::At(at)) => at,
            Some(Held::Bits(bits)) => {
                cache.entries.bits[slot].set(bits);
                INLINE
            }
        };
        cache.entries.set(slot, var.0, cache.version.get(), value);
    });
}

/// Forgets whatever is cached for `var`.
#[inline]
pub(crate) fn forget(var: VarId) {
    CACHE.with(|cache| {
        let slot = slot(var.0);
        if cache.entries.vars[slot].get() == var.0 {
            cache.entries.set(slot, 0, 0, ptr::null());
        }
    });
}

/// Versions come in blocks of this many, each block owned by one thread; see [`enter`].
///
/// Every thread that uses a context takes at least one block, so blocks must outnumber the
/// threads a process can ever start: 2^63 / 2^16 = 2^47 blocks last 44 years at 100,000 new
/// threads a second. A thread takes its next block after 65,535 fresh versions (an atomic
/// add, and a stamp of its earlier blocks then counts as foreign: one cold read).
const BLOCK: u64 = 1 << 16;

/// The next block of versions to hand out (block 0 is never handed out: a thread's first
/// version, 1, lies in it).
static NEXT_BLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The block start of a thread that has none yet. Blocks are handed out from 1 upwards and
/// never reach it, and neither 0 nor any version lies in `NO_BLOCK .. NO_BLOCK + BLOCK`.
const NO_BLOCK: u64 = 1 << 63;

/// A version never used before, by any thread: the next one of this thread's block, or the
/// first of a new block.
#[inline]
fn fresh(cache: &Cache) -> u64 {
    let mut next = cache.last.get() + 1;
    if next.is_multiple_of(BLOCK) {
        next = new_block(cache);
    }
    cache.last.set(next);
    next
}

#[cold]
#[inline(never)]
fn new_block(cache: &Cache) -> u64 {
    // Relaxed: only the uniqueness of the numbers matters, which any ordering gives.
    let index = NEXT_BLOCK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if index >= NO_BLOCK / BLOCK {
        // Out of blocks (decades of threads, see `BLOCK`): a block handed out again would
        // let one thread trust another's cache entries, which may point at freed values.
        exhausted();
    }
    let start = index * BLOCK;
    cache.block.set(start);
    // The block's start itself is never handed out, so no stamp is ever 0 modulo `BLOCK`.
    start + 1
}

#[cold]
fn exhausted() -> ! {
    eprintln!("contextvars: the process has used up its lookup-cache versions; aborting");
    std::process::abort()
}

/// Makes the cache describe a context being entered, and returns the version to give back to
/// [`leave`] when it is left. `stamp` is what `leave` returned when that context was last
/// left (0 if never): if it is a version of this thread's current block, the context has
/// not been current anywhere else since and has not changed, so the entries stamped with it
/// still describe it, and it becomes the current version again (a warm cache). Otherwise
/// the context gets a fresh version.
///
/// The caller guarantees that a context's stamp is only kept while nothing but running it
/// (through this pair) can change it.
#[inline]
pub(crate) fn enter(stamp: u64) -> u64 {
    CACHE.with(|cache| enter_on(cache, stamp))
}

/// [`enter`] on this thread's cache, already borrowed.
#[inline]
fn enter_on(cache: &Cache, stamp: u64) -> u64 {
    // Whether `stamp` lies in this thread's current block (0 never does).
    let mine = stamp.wrapping_sub(cache.block.get()) < BLOCK;
    let version = if mine { stamp } else { fresh(cache) };
    cache.version.replace(version)
}

/// [`enter`], which also returns a number that no other call of this in the process gives
/// (it is taken from this thread's block of versions, and never used as a version): the id of
/// an attach.
#[inline]
pub(crate) fn enter_with_id(stamp: u64) -> (u64, u64) {
    CACHE.with(|cache| (enter_on(cache, stamp), fresh(cache)))
}

/// Leaves the context entered with [`enter`], whose result is `outer`: the cache describes
/// the outer context again, and its entries are warm, since nothing can change the outer
/// context while another one is current. Returns the stamp that describes the context that
/// was current until now, for its next `enter`.
#[inline]
pub(crate) fn leave(outer: u64) -> u64 {
    CACHE.with(|cache| cache.version.replace(outer))
}

/// Invalidates every entry (as [`invalidate_all`]), and says whether any borrow is open on
/// this thread. When it returns `true`, the caller must retire what it displaces (anything
/// it cannot check address by address): the end of a borrow will call `release`.
#[inline]
pub(crate) fn invalidate_all_and_check_borrowed() -> bool {
    CACHE
        .try_with(|cache| {
            cache.version.set(fresh(cache));
            let borrowed = cache.borrows.get() > 0;
            if borrowed {
                cache.retired.set(true);
            }
            borrowed
        })
        .unwrap_or(false)
}

/// Says whether any borrow is open on this thread, as [`invalidate_all_and_check_borrowed`]
/// does, without invalidating anything (the caller put back a version that describes the
/// current context).
#[inline]
pub(crate) fn check_borrowed() -> bool {
    CACHE
        .try_with(|cache| {
            let borrowed = cache.borrows.get() > 0;
            if borrowed {
                cache.retired.set(true);
            }
            borrowed
        })
        .unwrap_or(false)
}

/// [`renew`], which also returns a number that no other call of this or of
/// [`enter_with_id`] in the process gives (as there): the id of a deferred attach.
#[inline]
pub(crate) fn renew_with_id() -> (u64, u64) {
    CACHE.with(|cache| (cache.version.replace(fresh(cache)), fresh(cache)))
}

/// Invalidates every entry, as [`invalidate_all`], and returns the version that described
/// the context until now: a caller that puts that context back unchanged (the pop matching a
/// logical context push) gives it to [`leave`], and its entries are warm again.
#[inline]
pub(crate) fn renew() -> u64 {
    CACHE.with(|cache| cache.version.replace(fresh(cache)))
}

/// Invalidates every entry: the thread's current execution context changed shape.
#[inline]
pub(crate) fn invalidate_all() {
    // `try_with`: this also runs from the thread state's destructor, at thread exit.
    let _ = CACHE.try_with(|cache| cache.version.set(fresh(cache)));
}

/// Invalidates every entry for good: from now on no stamp is this thread's, so no context
/// run again on the thread finds its old entries (thread teardown, after the thread state is
/// gone: a `Context` run by a later destructor sees no value, cached or not).
pub(crate) fn close() {
    let _ = CACHE.try_with(|cache| {
        cache.block.set(NO_BLOCK);
        cache.version.set(fresh(cache));
    });
}

/// Whether two variables share a cache slot (one's read evicts the other's entry).
#[cfg(all(test, not(loom)))]
pub(crate) fn same_slot(a: VarId, b: VarId) -> bool {
    slot(a.0) == slot(b.0)
}

/// Whether a valid entry for `var` is cached (for tests of which changes keep the cache warm).
#[cfg(all(test, not(loom)))]
pub(crate) fn is_cached(var: VarId) -> bool {
    CACHE.with(|cache| {
        let slot = slot(var.0);
        cache.entries.vars[slot].get() == var.0
            && cache.entries.versions[slot].get() == cache.version.get()
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Across block boundaries: versions only grow and never repeat, none is 0 modulo
    /// `BLOCK`, a stamp of this thread's current block is warm on `enter`, and one of an
    /// earlier block is not (it gets a fresh version).
    #[test]
    fn versions_stay_unique_and_stamps_of_earlier_blocks_are_foreign() {
        std::thread::spawn(|| {
            let first = renew();
            let mut previous = first;
            let mut blocks = 0;
            for step in 0..24 {
                if step % 8 == 0 {
                    // Skip to a few versions before the end of the block (as that many
                    // `fresh` calls would, without making them).
                    CACHE.with(|cache| {
                        cache.last.set((cache.last.get() / BLOCK + 1) * BLOCK - 4);
                    });
                }
                let version = renew();
                assert!(version > previous || version / BLOCK != previous / BLOCK);
                assert_ne!(version % BLOCK, 0);
                if version / BLOCK != previous / BLOCK {
                    blocks += 1;
                }
                previous = version;
            }
            assert!(blocks >= 2, "crossed {blocks} block boundaries");
            let current = CACHE.with(|cache| cache.version.get());
            // The current version is a stamp of the current block: warm.
            let outer = enter(current);
            assert_eq!(CACHE.with(|cache| cache.version.get()), current);
            leave(outer);
            // A stamp of an earlier block: a fresh version, never the stamp.
            let outer = enter(first);
            let entered = CACHE.with(|cache| cache.version.get());
            assert_ne!(entered, first);
            assert!(entered > current || entered / BLOCK != current / BLOCK);
            leave(outer);
        })
        .join()
        .unwrap();
    }
}
