//! Request contexts remembered per thread by the `baggage` header they were decoded from, for
//! headers whose every value is of a plain standard type read by its `FromStr`.
//!
//! Many requests carry the same header (a caller sends the same values with each of its
//! requests), and decoding one builds a context (a map and one value object per variable).
//! When every member of the header is a [`Propagated::text`](super::Propagated::text)
//! variable of a type listed in [`is_plain`] (`String`, `bool`, `char`, the integers) that
//! is inherited, a context decoded from it without any problem is kept (from the second
//! time the header comes, so that headers new with every request cost no entry), and a later
//! request with the same header bytes gets a copy of it (O(1)) instead of decoding again.
//! This is sound because nothing can tell the copy from a fresh decode:
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
//!   fresh context would take from the server's own context;
//! - not for variables that opted out of inheritance: a fresh decode sets those inside the
//!   new context (`contextvars::ContextBuilder`), which context watchers see, and a copy
//!   would not be seen.
//!
//! What does differ is only what compares value objects by identity: two requests' contexts
//! built from the same header hold the same objects (`Context`'s `==` holds between them).
//! Variables with a codec of their own or JSON (whose types may hold anything) are decoded
//! for every request.
//!
//! # Why the remembered contexts hold their values
//!
//! The crate's rule for its caches is that nothing keeps a value alive once no context holds
//! it (the client's header memory keeps only weak handles, `contextvars::Identities`). The
//! contexts remembered here are the exception: each holds its decoded values until it is
//! replaced, after the requests that used it have ended. The alternatives were measured
//! (callgrind, release build, hyper-util client and hyper server on loopback, 8 callers with
//! one request id each, two variables `u64` and `String`) and cost too much:
//!
//! - Remembering nothing: every request decodes its header, about 3,000 instructions more
//!   per request (a decode costs about 3,300, finding a remembered context about 430),
//!   which nearly doubles what the two layers cost (about 3,500 instructions, against about
//!   34,000 for a plain request).
//! - Weak handles, as on the client: the values could not be had back from them
//!   (`contextvars` gives weak handles only to compare addresses), and even a weak handle on
//!   the whole context would find it gone nearly every time: a caller's requests on a
//!   keep-alive connection come one after the other, and each request's context is dropped
//!   when its response is done, before the next one arrives.
//! - Remembering the header bytes only, and building the context from them on demand: the
//!   part that could be skipped is the scan of the header (about 700 instructions of the
//!   3,300 a decode costs); the rest (running `FromStr`, allocating the values and the map)
//!   is the decode itself.
//!
//! Keeping them is safe for the reasons above, and invisible but for memory: only values
//! of the plain types are kept, whose drop runs no code but the allocator's, never a value
//! with a `Drop` that matters (a handle, a guard, anything of a custom or JSON codec); and
//! the memory is bounded per thread (256 contexts, of headers of at most [`MAX_LEN`] bytes).

use std::any::TypeId;
use std::cell::RefCell;

use contextvars::Context;

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

/// A small per-thread memory: `SETS` sets of [`WAYS`] entries, the set chosen by the top bits
/// of a 64-bit hash of the key (so `SETS` is a power of two), and within a full set the
/// entry replaced next taken round robin. Both remembered kinds of this crate use it: the
/// server's contexts (here) and the client's header values (in `service`).
///
/// What an entry's key is, and how it is compared, is the caller's: [`find`](Self::find)
/// takes the hash and a predicate. Nothing is allocated before the first
/// [`insert`](Self::insert).
pub(crate) struct Table<E, const SETS: usize> {
    /// `SETS * WAYS` slots once the first entry is inserted, set by set.
    entries: Vec<Option<E>>,
    /// Per set: the way replaced next once the set is full.
    next: [u8; SETS],
}

/// Entries per set of a [`Table`].
pub(crate) const WAYS: usize = 4;

impl<E, const SETS: usize> Table<E, SETS> {
    const CHECK: () = assert!(SETS.is_power_of_two() && SETS <= 1 << 16);

    /// An empty table.
    pub(crate) const fn new() -> Self {
        let () = Self::CHECK;
        Table {
            entries: Vec::new(),
            next: [0; SETS],
        }
    }

    /// The set of keys with hash `hash`: its top bits (a multiplicative hash's best mixed).
    pub(crate) fn set_of(hash: u64) -> usize {
        if SETS == 1 {
            0
        } else {
            (hash >> (u64::BITS - SETS.trailing_zeros())) as usize
        }
    }

    /// The first entry of `hash`'s set that `matches`.
    pub(crate) fn find(&self, hash: u64, mut matches: impl FnMut(&E) -> bool) -> Option<&E> {
        let set = Self::set_of(hash);
        self.entries
            .get(set * WAYS..(set + 1) * WAYS)?
            .iter()
            .flatten()
            .find(|entry| matches(entry))
    }

    /// Puts `entry` into `hash`'s set: in its first free way, or else in place of the way
    /// whose turn it is (round robin). Returns the entry replaced, for the caller to drop
    /// when it no longer borrows the table (its `Drop` may run any code).
    pub(crate) fn insert(&mut self, hash: u64, entry: E) -> Option<E> {
        if self.entries.is_empty() {
            self.entries.resize_with(SETS * WAYS, || None);
        }
        let set = Self::set_of(hash);
        let ways = &mut self.entries[set * WAYS..(set + 1) * WAYS];
        let way = match ways.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                let next = usize::from(self.next[set]);
                self.next[set] = ((next + 1) % WAYS) as u8;
                next
            }
        };
        ways[way].replace(entry)
    }

    /// The entries held.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &E> {
        self.entries.iter().flatten()
    }
}

impl<E, const SETS: usize> Default for Table<E, SETS> {
    fn default() -> Self {
        Self::new()
    }
}

/// The keys of things offered once, lately: what is remembered is remembered the second
/// time it comes, so that what is new with every request (a fresh id each time) costs no
/// entry. `SETS` sets of [`WAYS`] keys, the set chosen as a [`Table`]'s (by the key's top
/// bits: callers mix their keys), the oldest key of a full set replaced first. An offer
/// reads one set only (a ring of 64 keys, read whole, cost ≈ 250 instructions in every
/// request whose header was new). Key 0 counts as offered from the start.
pub(crate) struct Seen<const SETS: usize> {
    keys: [[u64; WAYS]; SETS],
    /// Per set: the way replaced next.
    next: [u8; SETS],
}

impl<const SETS: usize> Seen<SETS> {
    /// Nothing seen yet.
    pub(crate) const fn new() -> Self {
        Seen {
            keys: [[0; WAYS]; SETS],
            next: [0; SETS],
        }
    }

    /// Whether `key` was offered lately (among the last [`WAYS`] new keys of its set); if it
    /// was not, it is noted (in place of the oldest of its set).
    pub(crate) fn offer(&mut self, key: u64) -> bool {
        let set = Table::<(), SETS>::set_of(key);
        if self.keys[set].contains(&key) {
            return true;
        }
        let way = usize::from(self.next[set]);
        self.keys[set][way] = key;
        self.next[set] = ((way + 1) % WAYS) as u8;
        false
    }
}

/// Sets of the server's table of remembered contexts: 256 entries, so that the headers of a
/// few dozen callers rarely overflow a set (with 64 entries, the headers of 32 callers did
/// more often than not, and those of the full set were decoded again in turn).
const SETS: usize = 64;

struct Entry {
    registry: u64,
    hash: u64,
    header: Box<[u8]>,
    context: Context,
}

struct Shared {
    contexts: Table<Entry, SETS>,
    /// Keys (header hash and registry) of headers offered once lately ([`SEEN`] sets of
    /// four: a key is forgotten once four newer ones came to its set): a context is
    /// remembered the second time its header comes.
    seen: Seen<SEEN>,
}

/// Sets of the headers offered once that a thread keeps track of (four each).
const SEEN: usize = 64;

thread_local! {
    static SHARED: RefCell<Shared> = const {
        RefCell::new(Shared {
            contexts: Table::new(),
            seen: Seen::new(),
        })
    };
}

/// A copy of the context remembered for `header` of registry `registry`, if any.
pub(crate) fn get(registry: u64, hash: u64, header: &[u8]) -> Option<Context> {
    SHARED
        .try_with(|shared| {
            shared
                .borrow()
                .contexts
                .find(hash, |e| {
                    e.hash == hash && e.registry == registry && *e.header == *header
                })
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
            if !shared.seen.offer(key) {
                return;
            }
            let entry = Entry {
                registry,
                hash,
                header: header.into(),
                context: context.clone(),
            };
            shared.contexts.insert(hash, entry)
        };
        drop(replaced);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use contextvars::ContextVar;

    static MARK: ContextVar<usize> = ContextVar::new("mark");

    /// A key's hash in the table tests: its set is the key's low bits (the hash's top bits).
    fn spread<const SETS: usize>(key: u64) -> u64 {
        (key % SETS as u64) << (u64::BITS - SETS.trailing_zeros().max(1)) | key >> 8
    }

    fn find<const SETS: usize>(table: &Table<(u64, u32), SETS>, key: u64) -> Option<u32> {
        let hash = spread::<SETS>(key);
        table.find(hash, |e| e.0 == key).map(|e| e.1)
    }

    fn insert<const SETS: usize>(
        table: &mut Table<(u64, u32), SETS>,
        key: u64,
        value: u32,
    ) -> Option<(u64, u32)> {
        table.insert(spread::<SETS>(key), (key, value))
    }

    #[test]
    fn table_finds_what_it_holds_and_nothing_else() {
        let mut table: Table<(u64, u32), 4> = Table::new();
        assert_eq!(find(&table, 1), None, "empty");
        assert_eq!(table.iter().count(), 0);
        for key in 0..8 {
            assert_eq!(insert(&mut table, key, key as u32 * 10), None);
        }
        for key in 0..8 {
            assert_eq!(find(&table, key), Some(key as u32 * 10));
        }
        // Same set as key 1, never inserted; and a key whose set is empty.
        assert_eq!(find(&table, 1 + 4 * 100), None);
        assert_eq!(find(&table, 8 * 4 + 2 + 400), None);
        assert_eq!(table.iter().count(), 8);
        // The predicate decides: an entry of the set that does not match is not returned.
        assert!(table.find(spread::<4>(1), |e| e.1 == 999).is_none());
    }

    #[test]
    fn table_replaces_round_robin_within_a_full_set() {
        let mut table: Table<(u64, u32), 4> = Table::new();
        // Keys 0, 4, 8, ... all go to set 0.
        let key = |i: u64| i * 4;
        for i in 0..4 {
            assert_eq!(insert(&mut table, key(i), i as u32), None, "free way");
        }
        // Full: ways 0, 1, 2, 3, 0, ... are replaced in turn.
        for i in 4..12 {
            let replaced = insert(&mut table, key(i), i as u32).expect("full set");
            assert_eq!(replaced, (key(i - 4), (i - 4) as u32));
            assert_eq!(find(&table, key(i - 4)), None);
            for kept in i - 3..=i {
                assert_eq!(find(&table, key(kept)), Some(kept as u32));
            }
        }
        // Other sets are untouched and still have their free ways.
        assert_eq!(insert(&mut table, 1, 1), None);
        assert_eq!(table.iter().count(), 5);
    }

    #[test]
    fn seen_answers_for_the_last_keys_offered() {
        // One set: the last four keys.
        let mut seen: Seen<1> = Seen::new();
        assert!(!seen.offer(1), "new");
        assert!(seen.offer(1), "offered before");
        for key in 2..=4 {
            assert!(!seen.offer(key));
        }
        assert!(seen.offer(1) && seen.offer(4));
        // A fifth new key takes the place of the oldest.
        assert!(!seen.offer(5));
        assert!(!seen.offer(1), "forgotten");
        assert!(seen.offer(5) && seen.offer(3));
    }

    #[test]
    fn seen_keeps_each_set_apart() {
        let mut seen: Seen<4> = Seen::new();
        // Key `n` of set `set` (the top two bits choose among four sets).
        let key = |set: u64, n: u64| set << 62 | n;
        for set in 0..4 {
            for n in 1..=4 {
                assert!(!seen.offer(key(set, n)), "new: {set}/{n}");
            }
        }
        for set in 0..4 {
            for n in 1..=4 {
                assert!(seen.offer(key(set, n)), "offered before: {set}/{n}");
            }
        }
        // Four more in set 1 push out that set's four, and only those.
        for n in 5..=8 {
            assert!(!seen.offer(key(1, n)));
        }
        for set in [0, 2, 3] {
            for n in 1..=4 {
                assert!(seen.offer(key(set, n)), "kept: {set}/{n}");
            }
        }
        for n in 5..=8 {
            assert!(seen.offer(key(1, n)), "the newer four: {n}");
        }
        assert!(!seen.offer(key(1, 1)), "forgotten");
    }

    /// A simple model of the table: per set, the keys held in the order of their ways, and
    /// whose turn it is once four are held.
    #[derive(Default)]
    struct Model {
        sets: Vec<(Vec<(u64, u32)>, usize)>,
    }

    impl Model {
        fn insert(&mut self, set: usize, entry: (u64, u32)) -> Option<(u64, u32)> {
            let (ways, next) = &mut self.sets[set];
            if ways.len() < WAYS {
                ways.push(entry);
                return None;
            }
            let replaced = std::mem::replace(&mut ways[*next], entry);
            *next = (*next + 1) % WAYS;
            Some(replaced)
        }

        fn find(&self, set: usize, key: u64) -> Option<u32> {
            let (ways, _) = &self.sets[set];
            ways.iter().find(|e| e.0 == key).map(|e| e.1)
        }
    }

    /// Random inserts and lookups (a fixed-seed xorshift, many seeds) give what the model
    /// gives, including which entry each insert replaces.
    #[test]
    fn table_behaves_as_its_model() {
        const SETS: usize = 8;
        let seeds: u64 = if cfg!(miri) { 4 } else { 200 };
        let steps = if cfg!(miri) { 100 } else { 2_000 };
        for seed in 1..=seeds {
            let mut state: u64 = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut random = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let mut table: Table<(u64, u32), SETS> = Table::new();
            let mut model = Model {
                sets: (0..SETS).map(|_| Default::default()).collect(),
            };
            // Few distinct keys, so that lookups hit as well as miss.
            let keys = 1 + random() % 64;
            for step in 0..steps {
                let key = random() % keys;
                let set = (key % SETS as u64) as usize;
                assert_eq!(Table::<(u64, u32), SETS>::set_of(spread::<SETS>(key)), set);
                if random() % 3 == 0 && model.find(set, key).is_none() {
                    let value = step as u32;
                    assert_eq!(
                        insert(&mut table, key, value),
                        model.insert(set, (key, value)),
                        "seed {seed} step {step}: replaced"
                    );
                } else {
                    assert_eq!(
                        find(&table, key),
                        model.find(set, key),
                        "seed {seed} step {step}: lookup of {key}"
                    );
                }
            }
            let held: usize = model.sets.iter().map(|(ways, _)| ways.len()).sum();
            assert_eq!(table.iter().count(), held);
        }
    }

    /// The headers of 32 callers, each with a request id of its own (the report's load), all
    /// stay remembered together: none of them overflows its set and pushes another out.
    #[test]
    fn the_headers_of_32_callers_stay_remembered_together() {
        std::thread::spawn(|| {
            let headers: Vec<Vec<u8>> = (0..32)
                .map(|i| format!("request-id={},tenant=acme", 1000 + i).into_bytes())
                .collect();
            for _ in 0..2 {
                for (i, header) in headers.iter().enumerate() {
                    let mut context = Context::new();
                    context.run(|| MARK.set(i));
                    put(7, hash(header), header, &context);
                }
            }
            for (i, header) in headers.iter().enumerate() {
                let found = get(7, hash(header), header);
                assert_eq!(found.map(|found| found.get(&MARK)), Some(Some(i)), "{i}");
            }
        })
        .join()
        .unwrap();
    }

    /// More headers than the thread remembers: each is remembered at its second offer and
    /// found right after, never another's context is returned, and at most `SETS * WAYS` are
    /// kept.
    #[test]
    fn remembered_contexts_are_found_by_their_own_header() {
        std::thread::spawn(|| {
            // Twice as many as the table holds.
            let headers: Vec<Vec<u8>> = (0..2 * super::SETS * WAYS)
                .map(|i| format!("t=v{i}").into_bytes())
                .collect();
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
            assert!((WAYS..=super::SETS * WAYS).contains(&kept), "{kept} kept");
        })
        .join()
        .unwrap();
    }
}
