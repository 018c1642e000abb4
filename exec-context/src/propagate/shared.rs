//! Request contexts remembered per thread by the `baggage` header they were decoded from, for
//! headers whose every value is of a plain standard type read by its `FromStr`.
//!
//! Many requests carry the same header (a caller sends the same values with each of its
//! requests), and decoding one builds a context (a map and one value object per variable).
//! When every member of the header is a [`Propagated::text`](super::Propagated::text)
//! variable of a type listed in [`is_plain`] (`String`, `bool`, `char`, the integers), a
//! context decoded from it without any problem is kept (from the second time the header
//! comes, so that headers new with every request cost no entry), and a later request with
//! the same header bytes gets a copy of it (O(1)) instead of decoding again. This is sound
//! because nothing can tell the copy from a fresh decode:
//!
//! - the values are immutable: these types have no interior mutability, and a context gives
//!   out only shared references to its values or clones of them;
//! - the codec is the standard library's `FromStr` of the type: pure and deterministic, so
//!   the same text always gives an equal value, and nothing else happens when it runs;
//! - dropping these values only frees memory;
//! - each request gets its own copy (`Context::clone`, PEP 567's `copy()`): what its code
//!   sets stays in it, as with a fresh context;
//! - a header with any problem is never kept: each request with one is decoded and reported;
//! - only while the thread has no [pinned](contextvars::ContextVar::pinned) values, which a
//!   fresh context would take from the server's own context.
//!
//! What does differ is only what compares value objects by identity: two requests' contexts
//! built from the same header hold the same objects (`Context`'s `==` holds between them).
//! Variables with a codec of their own or JSON (whose types may hold anything) are decoded
//! for every request.

use std::any::TypeId;
use std::cell::RefCell;

use contextvars::Context;

/// Contexts remembered per thread: [`SETS`] sets of [`WAYS`], chosen by the header's hash.
const SETS: usize = 16;
const WAYS: usize = 4;
/// Longer headers are not remembered.
pub(crate) const MAX_LEN: usize = 512;

/// Whether `T` is a standard type whose values are immutable and whose `FromStr` is pure.
pub(crate) fn is_plain<T: 'static>() -> bool {
    let id = TypeId::of::<T>();
    [
        TypeId::of::<String>(),
        TypeId::of::<bool>(),
        TypeId::of::<char>(),
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<u128>(),
        TypeId::of::<usize>(),
        TypeId::of::<i8>(),
        TypeId::of::<i16>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<i128>(),
        TypeId::of::<isize>(),
    ]
    .contains(&id)
}

/// A hash of `bytes` (eight at a time, FxHash-style): enough to tell a few dozen short
/// headers apart before comparing them.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    let mut hash = bytes.len() as u64;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        hash = mix(hash, u64::from_le_bytes(word));
    }
    let mut word = [0; 8];
    word[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(hash, u64::from_le_bytes(word))
}

struct Entry {
    registry: u64,
    hash: u64,
    header: Box<[u8]>,
    context: Context,
}

struct Shared {
    /// `SETS * WAYS` slots once the first context is remembered.
    entries: Vec<Option<Entry>>,
    /// Per set: the way replaced next once it is full (round robin).
    next: [u8; SETS],
    /// Keys (header hash and registry) of the last [`SEEN`] headers offered once: a context
    /// is remembered the second time its header comes, so that headers new with every
    /// request (a fresh id each time) cost no entry.
    seen: [u64; SEEN],
    /// The slot of `seen` written next (round robin).
    seen_next: usize,
}

/// Headers offered once that a thread keeps track of.
const SEEN: usize = 64;

impl Default for Shared {
    fn default() -> Self {
        Shared {
            entries: Vec::new(),
            next: [0; SETS],
            seen: [0; SEEN],
            seen_next: 0,
        }
    }
}

thread_local! {
    static SHARED: RefCell<Shared> = RefCell::new(Shared::default());
}

/// The slots of the set for `hash`.
fn ways(hash: u64) -> std::ops::Range<usize> {
    // The top bits: the hash's last step is a multiplication, which mixes them best.
    let set = (hash >> (u64::BITS - SETS.trailing_zeros())) as usize;
    set * WAYS..(set + 1) * WAYS
}

/// A copy of the context remembered for `header` of registry `registry`, if any.
pub(crate) fn get(registry: u64, hash: u64, header: &[u8]) -> Option<Context> {
    SHARED
        .try_with(|shared| {
            shared
                .borrow()
                .entries
                .get(ways(hash))?
                .iter()
                .flatten()
                .find(|e| e.hash == hash && e.registry == registry && *e.header == *header)
                .map(|e| e.context.clone())
        })
        .ok()
        .flatten()
}

/// Remembers `context` (a copy) for `header` of registry `registry`, if the header was
/// offered before (lately, on this thread); otherwise only notes that it was.
pub(crate) fn put(registry: u64, hash: u64, header: &[u8], context: &Context) {
    let _ = SHARED.try_with(|shared| {
        // The replaced entry is dropped after the borrow ends (its values' drops run no
        // user code, but the order costs nothing).
        let replaced = {
            let mut shared = shared.borrow_mut();
            // A collision only remembers a header at its first offer: `get` compares bytes.
            let key = hash ^ registry.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            if !shared.seen.contains(&key) {
                let slot = shared.seen_next;
                shared.seen[slot] = key;
                shared.seen_next = (slot + 1) % SEEN;
                return;
            }
            let entry = Entry {
                registry,
                hash,
                header: header.into(),
                context: context.clone(),
            };
            if shared.entries.is_empty() {
                shared.entries.resize_with(SETS * WAYS, || None);
            }
            let ways = ways(hash);
            let set = ways.start / WAYS;
            let way = match shared.entries[ways.clone()]
                .iter()
                .position(Option::is_none)
            {
                Some(free) => free,
                None => {
                    let next = usize::from(shared.next[set]);
                    shared.next[set] = ((next + 1) % WAYS) as u8;
                    next
                }
            };
            shared.entries[ways.start + way].replace(entry)
        };
        drop(replaced);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use contextvars::ContextVar;

    static MARK: ContextVar<usize> = ContextVar::new("mark");

    /// More headers than the thread remembers: each is remembered at its second offer and
    /// found right after, never another's context is returned, and at most `SETS * WAYS` are
    /// kept.
    #[test]
    fn remembered_contexts_are_found_by_their_own_header() {
        std::thread::spawn(|| {
            let headers: Vec<Vec<u8>> = (0..200).map(|i| format!("t=v{i}").into_bytes()).collect();
            for (i, header) in headers.iter().enumerate() {
                let mut context = Context::new();
                context.run(|| MARK.set(i));
                put(7, hash(header), header, &context);
                assert!(get(7, hash(header), header).is_none(), "offered once");
                put(7, hash(header), header, &context);
                let found = get(7, hash(header), header).expect("just remembered");
                assert_eq!(found.get(&MARK), Some(i));
                assert!(get(8, hash(header), header).is_none(), "another registry");
            }
            let mut kept = 0;
            for (i, header) in headers.iter().enumerate() {
                if let Some(found) = get(7, hash(header), header) {
                    assert_eq!(found.get(&MARK), Some(i));
                    kept += 1;
                }
            }
            assert!((WAYS..=SETS * WAYS).contains(&kept), "{kept} kept");
        })
        .join()
        .unwrap();
    }
}
