//! A counting global allocator for the memory measurements.
//!
//! The `report` binary installs [`CountingAllocator`] as its `#[global_allocator]`; the
//! library only defines it, so the criterion benchmarks keep the plain system allocator.
//!
//! Counting is off unless [`count`] is running a closure: the hooks then cost one relaxed
//! load and a predictable branch per allocation, so the timing runs of the same process pay
//! next to nothing. Counted sizes are the *requested* sizes (`Layout::size`): malloc's
//! headers and rounding are not included, as in the anchor figures. The counters are
//! process-wide; the report measures memory on one thread with no other thread allocating.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

static ENABLED: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
static FREED_BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, plus counters of allocations and bytes while [`count`] runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingAllocator;

impl CountingAllocator {
    /// The allocator; `const` so it can initialise a `#[global_allocator]` static.
    pub const fn new() -> Self {
        Self
    }
}

#[inline]
fn record_allocation(size: usize) {
    if ENABLED.load(Relaxed) {
        ALLOCATIONS.fetch_add(1, Relaxed);
        ALLOCATED_BYTES.fetch_add(size as u64, Relaxed);
    }
}

#[inline]
fn record_free(size: usize) {
    if ENABLED.load(Relaxed) {
        FREED_BYTES.fetch_add(size as u64, Relaxed);
    }
}

#[allow(unsafe_code)]
// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract, and returns what `System` returned; the bookkeeping around the calls
// only touches atomics, which never allocate or unwind.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is `System`'s.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            record_allocation(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract, which is
        // `System`'s.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            record_allocation(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        record_free(layout.size());
        // SAFETY: the caller guarantees `pointer` came from this allocator, i.e. from
        // `System`, with this `layout`.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `pointer` came from `System` with `layout`, and that
        // `new_size` is valid for `layout.align()`.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            // A reallocation counts as one allocation of the new size replacing the old.
            record_free(layout.size());
            record_allocation(new_size);
        }
        moved
    }
}

/// What was allocated and freed while a closure ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocDelta {
    /// Allocations (reallocations included).
    pub allocations: u64,
    /// Bytes requested.
    pub allocated_bytes: u64,
    /// Bytes released.
    pub freed_bytes: u64,
}

impl AllocDelta {
    /// Net change in live bytes: allocated minus freed (negative when more was freed).
    pub fn live_bytes(&self) -> i64 {
        self.allocated_bytes as i64 - self.freed_bytes as i64
    }
}

/// Runs `f` with counting on and returns its result with what it allocated and freed.
///
/// Not reentrant, and it counts every thread's allocations: call it from one thread while no
/// other thread allocates. Reports zeros when [`CountingAllocator`] is not the global
/// allocator (see [`is_installed`]).
pub fn count<R>(f: impl FnOnce() -> R) -> (R, AllocDelta) {
    let before = counters();
    ENABLED.store(true, Relaxed);
    let result = f();
    ENABLED.store(false, Relaxed);
    let after = counters();
    let delta = AllocDelta {
        allocations: after.allocations - before.allocations,
        allocated_bytes: after.allocated_bytes - before.allocated_bytes,
        freed_bytes: after.freed_bytes - before.freed_bytes,
    };
    (result, delta)
}

fn counters() -> AllocDelta {
    AllocDelta {
        allocations: ALLOCATIONS.load(Relaxed),
        allocated_bytes: ALLOCATED_BYTES.load(Relaxed),
        freed_bytes: FREED_BYTES.load(Relaxed),
    }
}

/// Whether [`CountingAllocator`] is this process's global allocator (probed with one
/// counted allocation).
pub fn is_installed() -> bool {
    let (_, delta) = count(|| drop(std::hint::black_box(Box::new(0u64))));
    delta.allocations > 0
}
