//! The CHAMP node and the recursive algorithms that edit it.
//!
//! A node is one exactly-sized allocation: a [`Header`] with two bitmaps, then the slots. The
//! slots hold the node's inline entries first (in `data_map` bit order), then its child nodes
//! in *reverse* `node_map` bit order, counted from the end: the child for bucket bit `b` is at
//! `len - 1 - rank(node_map, b)`, so finding a child takes one popcount, not two. A bit is
//! never set in both maps.
//!
//! Ranks (the popcount of a bitmap below a bit) are read from an 11-bit table: the default
//! x86-64 target has no `popcnt` instruction, and `count_ones` there is a longer chain of
//! dependent arithmetic. A build for a CPU that has the instruction uses it.
//!
//! *Dense nodes.* A node with at least [`DENSE_MIN`] of its 32 buckets occupied is laid out
//! by bucket instead: exactly [`DENSE_LEN`] slots, the slot for bucket `b` at `31 - b`, and
//! [`Slot::Vacant`] in the empty buckets (the only place a finished node holds a vacant slot).
//! A lookup there reads the slot the hash names, without the bitmaps or a rank; the slot
//! count, which comes with the node pointer, tells the layouts apart (a sparse node has fewer
//! than [`DENSE_MIN`] slots). A node of 32 children has the same layout either way. Whether a
//! node is dense follows from its bitmaps alone, so the shape stays canonical.
//!
//! *No flat small node.* Holding maps of up to 16 entries as one flat root (tag bytes of the
//! hashes in a slot, matched eight at a time by word arithmetic, then the key compared) was
//! measured against this trie at N = 10 and 16 on the default target: hits about 15% faster,
//! misses about 1.8× slower (a miss here is one bitmap test at the root), and hits still
//! about 1.7× imbl's, whose root is an uncompressed array indexed by the hash. A plain scan of
//! the keys was slower on both. So small maps stay tries.
//!
//! Below [`HASH_BITS`] of hash, a node is a *collision node*: its bitmaps are zero and its
//! slots are entries whose keys share the full hash, in insertion order.
//!
//! Every edit keeps the trie *canonical*: a non-root node never holds a single entry and
//! nothing else (such an entry is inlined into the parent). Two maps built with the same hash
//! function and holding the same keys therefore have the same shape, which is what lets
//! equality and diff compare node by node and skip pointer-equal subtrees.
//!
//! Ownership: `&mut Node` edits happen in place when the node is uniquely owned and on a copy
//! (a *path copy*) when it is shared, so older versions of a map never change. User code
//! (`Hash`, `Eq`, `Clone`) only ever runs before a node is changed, or while building a fresh
//! copy that is discarded if it panics, so a panic leaves every map intact.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::mem;

use triomphe::{Arc, HeaderSlice};

use crate::iter::Walk;

/// Bits of hash consumed per trie level.
pub(crate) const BITS: u32 = 5;
/// Hash bits used. 32 bits give 7 bitmap levels (the last one 2 bits wide), then collisions.
pub(crate) const HASH_BITS: u32 = 32;
/// The deepest a walk can go: 7 bitmap levels plus the collision level.
pub(crate) const MAX_DEPTH: usize = 8;

/// The part of a key's hash the trie uses.
pub(crate) type HashBits = u32;

/// Hashes `key` with `hasher` and folds the 64-bit result to the bits the trie uses.
#[inline]
pub(crate) fn hash_key<Q: Hash + ?Sized, S: BuildHasher>(hasher: &S, key: &Q) -> HashBits {
    let full = hasher.hash_one(key);
    (full ^ (full >> 32)) as HashBits
}

/// A node's two bitmaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// Buckets holding an inline entry.
    pub(crate) data_map: u32,
    /// Buckets holding a child node.
    pub(crate) node_map: u32,
}

impl Header {
    pub(crate) const COLLISION: Header = Header {
        data_map: 0,
        node_map: 0,
    };
}

/// A shared, exactly-sized node.
pub(crate) type Node<K, V> = Arc<HeaderSlice<Header, [Slot<K, V>]>>;
type NodeBody<K, V> = HeaderSlice<Header, [Slot<K, V>]>;

/// One slot of a node.
pub(crate) enum Slot<K, V> {
    /// An inline key and value.
    Entry(K, V),
    /// A sub-trie one level down.
    Child(Node<K, V>),
    /// A slot whose contents were moved out of a uniquely owned node that is about to be
    /// rebuilt or dropped, or a dense node's empty bucket (the only vacant slot a finished node
    /// holds).
    Vacant,
}

impl<K: Clone, V: Clone> Clone for Slot<K, V> {
    #[inline]
    fn clone(&self) -> Self {
        match self {
            Slot::Entry(k, v) => Slot::Entry(k.clone(), v.clone()),
            Slot::Child(node) => Slot::Child(node.clone()),
            Slot::Vacant => Slot::Vacant,
        }
    }
}

/// The bucket bit for `hash` at `shift`.
#[inline]
pub(crate) fn bit_at(hash: HashBits, shift: u32) -> u32 {
    1 << ((hash >> shift) & 31)
}

/// The position of `bit` among the bits set in `map`.
#[inline]
pub(crate) fn index(map: u32, bit: u32) -> usize {
    rank(map & (bit - 1))
}

/// The number of bits set in each 11-bit value.
static POPCOUNT_11: [u8; 1 << 11] = {
    let mut table = [0u8; 1 << 11];
    let mut i = 0;
    while i < table.len() {
        table[i] = (i as u32).count_ones() as u8;
        i += 1;
    }
    table
};

/// `bits.count_ones()`. In a build for a CPU with the `popcnt` instruction (`-C
/// target-cpu=x86-64-v2` or `native`, say) that is the instruction. Otherwise, as in the
/// default x86-64 build, it is three reads of a 2 KB table: the software popcount there is a
/// longer chain of dependent operations. Choosing the instruction at run time instead does
/// not pay: the copy of a lookup compiled for it cannot be inlined into its caller, and the
/// call and the check cost as much as the instruction saves (see the README).
#[inline]
fn rank(bits: u32) -> usize {
    if cfg!(target_feature = "popcnt") {
        bits.count_ones() as usize
    } else {
        rank_by_table(bits)
    }
}

/// `bits.count_ones()` by three reads of [`POPCOUNT_11`].
#[inline]
pub(crate) fn rank_by_table(bits: u32) -> usize {
    let mask = (1 << 11) - 1;
    let bits = bits as usize;
    POPCOUNT_11[bits & mask] as usize
        + POPCOUNT_11[(bits >> 11) & mask] as usize
        + POPCOUNT_11[bits >> 22] as usize
}

/// The slot count of a dense node: one slot per bucket.
pub(crate) const DENSE_LEN: usize = 32;

/// A bitmap node with at least this many occupied buckets is dense (see the module docs).
///
/// Chosen by memory: a dense node holds at most 4 vacant slots (96 bytes), and a node of 28
/// occupied buckets holds about 66 keys below it on average, so the cost stays near 1.5 bytes
/// per entry, while the roots of maps of about 100 keys and the third level of maps of about
/// 100k keys (the nodes where a lookup paid a rank and a dependent header load) are dense.
pub(crate) const DENSE_MIN: u32 = 28;

/// Whether a bitmap node of `len` slots is dense. A sparse node has fewer than [`DENSE_MIN`]
/// slots, a dense one exactly [`DENSE_LEN`].
#[inline]
pub(crate) fn is_dense(len: usize) -> bool {
    len == DENSE_LEN
}

/// Whether a bitmap node with these bitmaps must be dense.
#[inline]
fn must_be_dense(header: Header) -> bool {
    rank(header.data_map | header.node_map) >= DENSE_MIN as usize
}

/// Where the slot for `bit` sits in a dense node: buckets in reverse order, so that a node of
/// 32 children has the same layout, dense or sparse.
#[inline]
fn dense_index(bit: u32) -> usize {
    31 - bit.trailing_zeros() as usize
}

/// Where the child for `bit` sits among `len` slots (children are stored from the end).
#[inline]
pub(crate) fn child_index(len: usize, node_map: u32, bit: u32) -> usize {
    if is_dense(len) {
        dense_index(bit)
    } else {
        len - 1 - index(node_map, bit)
    }
}

/// Where the entry for `bit` sits among `len` slots (entries come first, in bucket order).
#[inline]
pub(crate) fn entry_index(len: usize, data_map: u32, bit: u32) -> usize {
    if is_dense(len) {
        dense_index(bit)
    } else {
        index(data_map, bit)
    }
}

/// Where the slot for `bit` sits in a bitmap node of `len` slots, if the bucket is occupied.
#[inline]
fn position(header: Header, len: usize, bit: u32) -> Option<usize> {
    if header.data_map & bit != 0 {
        Some(entry_index(len, header.data_map, bit))
    } else if header.node_map & bit != 0 {
        Some(child_index(len, header.node_map, bit))
    } else {
        None
    }
}

/// The slot for `bit` in a bitmap node, if the bucket is occupied.
#[inline]
pub(crate) fn slot_for<K, V>(node: &NodeBody<K, V>, bit: u32) -> Option<&Slot<K, V>> {
    node.slice
        .get(position(node.header, node.slice.len(), bit)?)
}

pub(crate) fn new_node<K, V, I>(header: Header, slots: I) -> Node<K, V>
where
    I: IntoIterator<Item = Slot<K, V>>,
    I::IntoIter: ExactSizeIterator,
{
    let mut slots = slots.into_iter();
    if !(std::mem::needs_drop::<K>() || std::mem::needs_drop::<V>()) {
        return Arc::from_header_and_iter(header, slots);
    }
    // The slots often come from user `Clone` calls. If one panicked inside
    // `from_header_and_iter`, the half-written allocation would leak with everything cloned
    // into it so far. So the node is made first with vacant slots (which cannot panic), and
    // the slots are then put in place one by one: if a clone panics, the unwinding drops the
    // node, with the slots filled so far. (Catching the panic slot by slot instead cost a
    // landing pad and an `Option` per slot: copying a node of ten entries took 60 ns more.)
    let len = slots.len();
    let mut node = Arc::from_header_and_iter(header, (0..len).map(|_| Slot::Vacant));
    let Some(body) = Arc::get_mut(&mut node) else {
        unreachable!("a node just made is shared")
    };
    let mut filled = 0;
    for (place, slot) in body.slice.iter_mut().zip(slots.by_ref()) {
        // `place` is vacant: forgetting it drops nothing, and spares the drop check of an
        // assignment (≈ 8 instructions per slot).
        mem::forget(mem::replace(place, slot));
        filled += 1;
    }
    debug_assert_eq!(
        filled, len,
        "a new node's slots came short of their stated length"
    );
    debug_assert!(
        slots.next().is_none(),
        "a new node's slots ran past their stated length"
    );
    node
}

/// A node holding a single entry: the root of a one-entry map.
pub(crate) fn singleton<K, V>(hash: HashBits, key: K, value: V) -> Node<K, V> {
    let header = Header {
        data_map: bit_at(hash, 0),
        node_map: 0,
    };
    new_node(header, [Slot::Entry(key, value)])
}

/// Bitmap levels before the collision level (shifts 0, 5, …, 30).
const LEVELS: u32 = HASH_BITS.div_ceil(BITS);

/// Finds `key` in the trie under `node`.
///
/// Always inlined: it is the hot path of every lookup, and left to itself the compiler may
/// keep this unrolled loop out of line, which costs a call and the hoisting of loop-invariant
/// loads in the caller's loop (seen in the benchmark report's lookup loop).
#[inline(always)]
pub(crate) fn get<'a, K, V, Q>(
    mut node: &'a Node<K, V>,
    hash: HashBits,
    key: &Q,
) -> Option<(&'a K, &'a V)>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    // The hash is consumed five bits at a time by shifting it down: a shift by a constant is
    // cheaper than a shift by the level's (variable) amount.
    let mut rest = hash;
    // One level: the slot for the next five bits of hash, if the bucket is occupied.
    macro_rules! level {
        () => {
            let bucket = rest & 31;
            let slots = &node.slice;
            let child = if is_dense(slots.len()) {
                // The slot follows from the hash alone: no bitmap to read (the length comes
                // with the pointer), no rank to count. A vacant slot is an empty bucket.
                match slots.get((31 - bucket) as usize) {
                    Some(Slot::Entry(k, v)) => return (k.borrow() == key).then_some((k, v)),
                    Some(Slot::Child(child)) => child,
                    _ => return None,
                }
            } else {
                let Header { data_map, node_map } = node.header;
                let bit = 1u32 << bucket;
                if data_map & bit != 0 {
                    return match slots.get(index(data_map, bit)) {
                        Some(Slot::Entry(k, v)) if k.borrow() == key => Some((k, v)),
                        _ => None,
                    };
                }
                if node_map & bit == 0 {
                    return None;
                }
                match slots.get(slots.len() - 1 - index(node_map, bit)) {
                    Some(Slot::Child(child)) => child,
                    _ => return None,
                }
            };
            node = child;
            rest >>= BITS;
        };
    }
    // Unrolled by hand: the compiler keeps a loop of this size rolled, which costs the
    // per-level loop control and the hoisting of the root's loads out of a caller's loop.
    level!();
    level!();
    level!();
    level!();
    level!();
    level!();
    level!();
    let _ = rest;
    const _: () = assert!(LEVELS == 7, "one `level!()` per bitmap level");
    node.slice.iter().find_map(|slot| match slot {
        Slot::Entry(k, v) if k.borrow() == key => Some((k, v)),
        _ => None,
    })
}

/// Finds `key` under `node`: `None` if absent, else where it sits (see [`Location`]).
pub(crate) fn locate<K, V, Q>(mut node: &Node<K, V>, hash: HashBits, key: &Q) -> Option<Location>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    let mut shift = 0;
    loop {
        if shift >= HASH_BITS {
            return node
                .slice
                .iter()
                .position(|slot| matches!(slot, Slot::Entry(k, _) if k.borrow() == key))
                .map(Some);
        }
        match slot_for(node, bit_at(hash, shift))? {
            Slot::Entry(k, _) if k.borrow() == key => return Some(None),
            Slot::Child(child) => node = child,
            _ => return None,
        }
        shift += BITS;
    }
}

/// The value of the entry at a known place, read-only, starting from `node` at `shift`.
pub(crate) fn get_located<K, V>(
    mut node: &Node<K, V>,
    mut shift: u32,
    hash: HashBits,
    location: Location,
) -> Option<(&K, &V)> {
    loop {
        if shift >= HASH_BITS {
            return match node.slice.get(location?) {
                Some(Slot::Entry(k, v)) => Some((k, v)),
                _ => None,
            };
        }
        match slot_for(node, bit_at(hash, shift))? {
            Slot::Entry(k, v) => return Some((k, v)),
            Slot::Child(child) => node = child,
            Slot::Vacant => return None,
        }
        shift += BITS;
    }
}

/// Finds `key` under `root`, like [`locate`], and also the level of its *anchor*: the deepest
/// node on the key's path that stays in the trie if the key is removed. That is the node
/// holding the entry, unless removing it leaves that (non-root) node with a single entry; then
/// the entry left over moves up past every node that held only the collapsing child, into the
/// first ancestor that is the root or holds something else.
pub(crate) fn locate_anchor<K, V, Q>(
    root: &Node<K, V>,
    hash: HashBits,
    key: &Q,
) -> Option<(Location, usize)>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    // The slot count of each node on the path, root first.
    let mut lens = [0usize; MAX_DEPTH];
    let mut node = root;
    let mut level = 0;
    let location = loop {
        lens[level] = node.slice.len();
        let shift = level as u32 * BITS;
        if shift >= HASH_BITS {
            let pos = node
                .slice
                .iter()
                .position(|slot| matches!(slot, Slot::Entry(k, _) if k.borrow() == key))?;
            break Some(pos);
        }
        match slot_for(node, bit_at(hash, shift))? {
            Slot::Entry(k, _) if k.borrow() == key => break None,
            Slot::Child(child) => node = child,
            _ => return None,
        }
        level += 1;
    };
    // The same test as `remove_entry`: a non-root node of two entries and no children.
    let collapses = level > 0 && node.header.node_map == 0 && node.slice.len() == 2;
    let anchor = if collapses {
        (0..level)
            .rev()
            .find(|&up| up == 0 || lens[up] > 1)
            .unwrap_or(0)
    } else {
        level
    };
    Some((location, anchor))
}

/// Walks `levels` levels down the path of `hash` from `node` (at shift 0), making every node
/// it leaves uniquely owned (copying shared ones) so that it can hand out the child mutably.
/// The path must exist: it was found by [`locate_anchor`].
pub(crate) fn descend_mut<K: Clone, V: Clone>(
    mut node: &mut Node<K, V>,
    hash: HashBits,
    levels: usize,
) -> &mut Node<K, V> {
    for level in 0..levels {
        let body = make_mut(node);
        let bit = bit_at(hash, level as u32 * BITS);
        let pos = child_index(body.slice.len(), body.header.node_map, bit);
        node = match &mut body.slice[pos] {
            Slot::Child(child) => child,
            _ => unreachable!("an anchor's path runs through child slots"),
        };
    }
    node
}

/// The value of the entry at a known place (found earlier by [`locate`] or [`insert`]),
/// reached by hash alone — no key comparison runs, so no user code — copying shared nodes
/// on the way down.
pub(crate) fn get_mut_located<K: Clone, V: Clone>(
    node: &mut Node<K, V>,
    shift: u32,
    hash: HashBits,
    location: Location,
) -> Option<&mut V> {
    let body = make_mut(node);
    if shift >= HASH_BITS {
        return match body.slice.get_mut(location?) {
            Some(Slot::Entry(_, v)) => Some(v),
            _ => None,
        };
    }
    let pos = position(body.header, body.slice.len(), bit_at(hash, shift))?;
    match body.slice.get_mut(pos)? {
        Slot::Entry(_, v) => Some(v),
        Slot::Child(child) => get_mut_located(child, shift + BITS, hash, location),
        Slot::Vacant => None,
    }
}

/// Makes `node` uniquely owned, copying it if it is shared, and returns its body.
#[inline]
pub(crate) fn make_mut<K: Clone, V: Clone>(node: &mut Node<K, V>) -> &mut NodeBody<K, V> {
    if !node.is_unique() {
        // Cloning runs user code; if it panics the copy is abandoned and `node` is untouched.
        let copy = new_node(node.header, node.slice.iter().cloned());
        *node = copy;
    }
    match Arc::get_mut(node) {
        Some(body) => body,
        // We hold `&mut` to the only reference, so nobody can have cloned it meanwhile.
        None => unreachable!("a node just made unique is shared"),
    }
}

/// The slots of a node, handed out by value: moved out of a uniquely owned node (no user code
/// runs) or cloned from a shared one (which is left untouched).
enum Slots<'a, K, V> {
    Moved(std::slice::IterMut<'a, Slot<K, V>>),
    Cloned(std::slice::Iter<'a, Slot<K, V>>),
}

impl<'a, K: Clone, V: Clone> Slots<'a, K, V> {
    fn of(node: &'a mut Node<K, V>) -> Self {
        if node.is_unique() {
            match Arc::get_mut(node) {
                Some(body) => Slots::Moved(body.slice.iter_mut()),
                None => unreachable!("a unique node is shared"),
            }
        } else {
            Slots::Cloned(node.slice.iter())
        }
    }

    #[inline]
    fn next_slot(&mut self) -> Slot<K, V> {
        match self {
            Slots::Moved(iter) => iter
                .next()
                .map_or(Slot::Vacant, |slot| mem::replace(slot, Slot::Vacant)),
            Slots::Cloned(iter) => iter.next().map_or(Slot::Vacant, Slot::clone),
        }
    }
}

/// Replaces `node` by a copy with `slot` inserted at `pos` and the given header: the slots
/// are moved out of a uniquely owned node, and a shared one is copied by [`copy_inserting`].
fn insert_slot<K: Clone, V: Clone>(
    node: &mut Node<K, V>,
    header: Header,
    pos: usize,
    slot: Slot<K, V>,
) {
    if !node.is_unique() {
        *node = copy_inserting(node, header, pos, slot);
        return;
    }
    // A closure over the index beats splicing slice iterators here (callgrind, snapshot + set
    // at N=10: 780 against 800 instructions per operation), unlike in `remove_slot`.
    let len = node.slice.len() + 1;
    let mut slot = Some(slot);
    let Some(body) = Arc::get_mut(node) else {
        unreachable!("a unique node is shared");
    };
    let mut source = body.slice.iter_mut();
    let copy = new_node(
        header,
        (0..len).map(|i| {
            if i == pos {
                slot.take().unwrap_or(Slot::Vacant)
            } else {
                source.next().map_or(Slot::Vacant, take)
            }
        }),
    );
    *node = copy;
}

/// Replaces `node` by a copy without the slot at `pos` and with the given header; returns the
/// removed slot.
fn remove_slot<K: Clone, V: Clone>(
    node: &mut Node<K, V>,
    header: Header,
    pos: usize,
) -> Slot<K, V> {
    let (copy, removed) = if node.is_unique() {
        let Some(body) = Arc::get_mut(node) else {
            unreachable!("a unique node is shared");
        };
        let (before, rest) = body.slice.split_at_mut(pos);
        let Some((removed, after)) = rest.split_first_mut() else {
            unreachable!("the removed slot is in the node");
        };
        let removed = take(removed);
        let copy = new_node(
            header,
            Spliced {
                before: before.iter_mut().map(take),
                after: after.iter_mut().map(take),
            },
        );
        (copy, removed)
    } else {
        let (before, rest) = node.slice.split_at(pos);
        let Some((removed, after)) = rest.split_first() else {
            unreachable!("the removed slot is in the node");
        };
        // Clone the removed slot first: if that panics, nothing has been built yet.
        let removed = removed.clone();
        let copy = new_node(
            header,
            Spliced {
                before: before.iter().cloned(),
                after: after.iter().cloned(),
            },
        );
        (copy, removed)
    };
    *node = copy;
    removed
}

/// Moves a slot out of a uniquely owned node that is about to be dropped.
#[inline]
fn take<K, V>(slot: &mut Slot<K, V>) -> Slot<K, V> {
    mem::replace(slot, Slot::Vacant)
}

/// The slots of a node being rebuilt without one slot: those before it, then those after it.
/// An exact-size iterator (which `Chain` is not) without per-slot index checks, so building
/// the copy costs little more than moving or cloning the slots.
struct Spliced<I> {
    before: I,
    after: I,
}

impl<I: ExactSizeIterator> Iterator for Spliced<I> {
    type Item = I::Item;

    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        self.before.next().or_else(|| self.after.next())
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.before.len() + self.after.len();
        (len, Some(len))
    }
}

impl<I: ExactSizeIterator> ExactSizeIterator for Spliced<I> {}

/// Builds the smallest sub-trie at `shift` holding two entries with different keys.
fn pair<K, V>(
    shift: u32,
    first: (K, V, HashBits),
    second: (K, V, HashBits),
    placed: &mut Location,
) -> Node<K, V> {
    if shift >= HASH_BITS {
        *placed = Some(1);
        return new_node(
            Header::COLLISION,
            [
                Slot::Entry(first.0, first.1),
                Slot::Entry(second.0, second.1),
            ],
        );
    }
    let bit1 = bit_at(first.2, shift);
    let bit2 = bit_at(second.2, shift);
    if bit1 == bit2 {
        let child = pair(shift + BITS, first, second, placed);
        let header = Header {
            data_map: 0,
            node_map: bit1,
        };
        return new_node(header, [Slot::Child(child)]);
    }
    let header = Header {
        data_map: bit1 | bit2,
        node_map: 0,
    };
    let (low, high) = if bit1 < bit2 {
        (first, second)
    } else {
        (second, first)
    };
    new_node(
        header,
        [Slot::Entry(low.0, low.1), Slot::Entry(high.0, high.1)],
    )
}

/// Where an entry sits beyond what its hash says: its index when it is in a collision node.
pub(crate) type Location = Option<usize>;

/// A copy of the trie under the shared `node` with `key → value` inserted (or its value
/// replaced; the replaced value is returned, cloned), leaving `node` as it is: the
/// persistent form of [`insert`], for [`HamtMap::update`](crate::HamtMap::update).
///
/// When the change is in this node (a replaced value, a new entry in an empty bucket) the
/// copy is built with it in place, in one allocation; otherwise the node is copied and
/// [`insert`] goes on in the copy, which copies the shared nodes below. User code (`Eq`,
/// `Hash`, `Clone`) runs before or while a copy is built; a panic drops what was built and
/// leaves `node` untouched.
pub(crate) fn insert_copy<K, V, S>(
    node: &Node<K, V>,
    shift: u32,
    hash: HashBits,
    key: K,
    value: V,
    hasher: &S,
    placed: &mut Location,
) -> (Node<K, V>, Option<V>)
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    if shift < HASH_BITS {
        let Header { data_map, node_map } = node.header;
        let bit = bit_at(hash, shift);
        let len = node.slice.len();
        // A descent into a child takes the plain copy at the end: copying this node with
        // every child cloned (the tight loop) and then copying the path child costs less
        // than a copy that skips the path child (a branch per slot), although it adds an
        // increment and a decrement of the path child's count (callgrind and CPU time over
        // persistent inserts at N = 100 to 10k).
        if node_map & bit != 0 {
            // The plain copy below.
        } else if data_map & bit != 0 {
            let pos = entry_index(len, data_map, bit);
            if let Some(Slot::Entry(k, v)) = node.slice.get(pos)
                && *k == key
            {
                // The stored key stays, as in `replace_value`.
                let old = v.clone();
                let slot = Slot::Entry(k.clone(), value);
                return (copy_replacing(node, node.header, pos, slot), Some(old));
            }
        } else {
            let header = Header {
                data_map: data_map | bit,
                node_map,
            };
            if is_dense(len) {
                let slot = Slot::Entry(key, value);
                return (copy_replacing(node, header, dense_index(bit), slot), None);
            }
            if len + 1 < DENSE_MIN as usize {
                let slot = Slot::Entry(key, value);
                return (
                    copy_inserting(node, header, index(data_map, bit), slot),
                    None,
                );
            }
        }
    }
    // The other shapes (a descent into a child, a new sub-node for two keys in one bucket, a
    // node turning dense, a collision node): copy this node and edit the copy, which is
    // uniquely owned.
    let mut copy = new_node(node.header, node.slice.iter().cloned());
    let old = insert(&mut copy, shift, hash, key, value, hasher, placed);
    (copy, old)
}

/// A copy of the shared `node` with the slot at `pos` replaced by `slot` and the given header.
fn copy_replacing<K: Clone, V: Clone>(
    node: &Node<K, V>,
    header: Header,
    pos: usize,
    slot: Slot<K, V>,
) -> Node<K, V> {
    let (before, rest) = node.slice.split_at(pos.min(node.slice.len()));
    let after = rest.get(1..).unwrap_or_default();
    new_node(
        header,
        Replaced {
            before: before.iter(),
            slot: Some(slot),
            after: after.iter(),
        },
    )
}

/// The slots of a shared node copied with one slot replaced: clones of those before it, the
/// new slot, clones of those after it. An exact-size iterator (which `Chain` is not).
struct Replaced<'a, K, V> {
    before: std::slice::Iter<'a, Slot<K, V>>,
    slot: Option<Slot<K, V>>,
    after: std::slice::Iter<'a, Slot<K, V>>,
}

impl<K: Clone, V: Clone> Iterator for Replaced<'_, K, V> {
    type Item = Slot<K, V>;

    #[inline]
    fn next(&mut self) -> Option<Slot<K, V>> {
        if let Some(slot) = self.before.next() {
            return Some(slot.clone());
        }
        if let Some(slot) = self.slot.take() {
            return Some(slot);
        }
        self.after.next().cloned()
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.before.len() + usize::from(self.slot.is_some()) + self.after.len();
        (len, Some(len))
    }
}

impl<K: Clone, V: Clone> ExactSizeIterator for Replaced<'_, K, V> {}

/// A copy of the shared `node` with `slot` inserted at `pos` and the given header.
fn copy_inserting<K: Clone, V: Clone>(
    node: &Node<K, V>,
    header: Header,
    pos: usize,
    slot: Slot<K, V>,
) -> Node<K, V> {
    let len = node.slice.len() + 1;
    let mut slot = Some(slot);
    let mut source = node.slice.iter();
    new_node(
        header,
        (0..len).map(|i| {
            if i == pos {
                slot.take().unwrap_or(Slot::Vacant)
            } else {
                source.next().map_or(Slot::Vacant, Slot::clone)
            }
        }),
    )
}

/// Inserts or replaces `key` in the trie under `node`; returns the replaced value, and sets
/// `placed` to where the entry landed.
pub(crate) fn insert<K, V, S>(
    node: &mut Node<K, V>,
    shift: u32,
    hash: HashBits,
    key: K,
    value: V,
    hasher: &S,
    placed: &mut Location,
) -> Option<V>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    if shift >= HASH_BITS {
        let found = node
            .slice
            .iter()
            .position(|slot| matches!(slot, Slot::Entry(k, _) if *k == key));
        if let Some(pos) = found {
            *placed = Some(pos);
            return replace_value(make_mut(node), pos, value);
        }
        let pos = node.slice.len();
        *placed = Some(pos);
        insert_slot(node, Header::COLLISION, pos, Slot::Entry(key, value));
        return None;
    }

    let Header { data_map, node_map } = node.header;
    let bit = bit_at(hash, shift);
    let len = node.slice.len();
    if data_map & bit != 0 {
        let pos = entry_index(len, data_map, bit);
        // Compare and hash before anything changes: both run user code that may panic.
        let existing_hash = match node.slice.get(pos) {
            Some(Slot::Entry(k, _)) if *k == key => None,
            Some(Slot::Entry(k, _)) => Some(hash_key(hasher, k)),
            _ => return None,
        };
        let body = make_mut(node);
        let Some(existing_hash) = existing_hash else {
            return replace_value(body, pos, value);
        };
        // Two keys share this bucket: push both one level down into a new sub-node.
        let Slot::Entry(old_key, old_value) = mem::replace(&mut body.slice[pos], Slot::Vacant)
        else {
            unreachable!("data_map points at an entry");
        };
        let child = pair(
            shift + BITS,
            (old_key, old_value, existing_hash),
            (key, value, hash),
            placed,
        );
        body.slice[pos] = Slot::Child(child);
        if !is_dense(len) {
            // Move the new child from the entry region to its place among the children
            // (counted from the end); the entries after it and the children above it shift
            // down by one.
            let child_pos = child_index(len, node_map, bit);
            body.slice[pos..=child_pos].rotate_left(1);
        }
        body.header = Header {
            data_map: data_map ^ bit,
            node_map: node_map | bit,
        };
        return None;
    }
    if node_map & bit != 0 {
        let pos = child_index(len, node_map, bit);
        let body = make_mut(node);
        return match &mut body.slice[pos] {
            Slot::Child(child) => insert(child, shift + BITS, hash, key, value, hasher, placed),
            _ => None,
        };
    }
    let header = Header {
        data_map: data_map | bit,
        node_map,
    };
    if is_dense(len) {
        // The bucket's vacant slot takes the entry: same size, no rebuild.
        let body = make_mut(node);
        body.slice[dense_index(bit)] = Slot::Entry(key, value);
        body.header = header;
    } else if len + 1 >= DENSE_MIN as usize {
        // A sparse node's length is its occupancy: this entry makes it dense.
        grow_dense(node, header, bit, Slot::Entry(key, value));
    } else {
        insert_slot(node, header, index(data_map, bit), Slot::Entry(key, value));
    }
    None
}

/// Rebuilds the sparse `node` as a dense one with `slot` added in bucket `bit`, leaving
/// `header`. Kept out of line: it runs once per node that crosses the threshold.
#[cold]
#[inline(never)]
fn grow_dense<K: Clone, V: Clone>(
    node: &mut Node<K, V>,
    header: Header,
    bit: u32,
    slot: Slot<K, V>,
) {
    let mut slots = slots_by_bucket(node);
    let at = slots.partition_point(|&(b, _)| b < bit);
    slots.insert(at, (bit, slot));
    *node = build_bitmap_node(header, slots);
}

/// The slots of a bitmap node with their bucket bits, lowest bucket first: moved out of a
/// uniquely owned node (which is left with vacant slots and must be replaced) or cloned from a
/// shared one (left untouched; a panicking `Clone` drops what was cloned so far).
fn slots_by_bucket<K: Clone, V: Clone>(node: &mut Node<K, V>) -> Vec<(u32, Slot<K, V>)> {
    let header = node.header;
    let len = node.slice.len();
    let mut bits = header.data_map | header.node_map;
    let mut out = Vec::with_capacity(bits.count_ones() as usize);
    let unique = node.is_unique();
    while bits != 0 {
        let bit = bits & bits.wrapping_neg();
        bits ^= bit;
        let Some(pos) = position(header, len, bit) else {
            unreachable!("an occupied bucket has a slot");
        };
        let slot = if unique {
            match Arc::get_mut(node) {
                Some(body) => take(&mut body.slice[pos]),
                None => unreachable!("a unique node is shared"),
            }
        } else {
            node.slice[pos].clone()
        };
        out.push((bit, slot));
    }
    out
}

/// Builds a bitmap node from its slots in bucket order (lowest first), dense or sparse as its
/// occupancy requires. Runs no user code.
pub(crate) fn build_bitmap_node<K, V>(header: Header, slots: Vec<(u32, Slot<K, V>)>) -> Node<K, V> {
    if must_be_dense(header) {
        let mut dense: Vec<Slot<K, V>> = (0..DENSE_LEN).map(|_| Slot::Vacant).collect();
        for (bit, slot) in slots {
            dense[dense_index(bit)] = slot;
        }
        return new_node(header, dense);
    }
    let mut entries = Vec::with_capacity(slots.len());
    let mut children = Vec::new();
    for (_, slot) in slots {
        match slot {
            Slot::Child(_) => children.push(slot),
            _ => entries.push(slot),
        }
    }
    entries.extend(children.into_iter().rev());
    new_node(header, entries)
}

fn replace_value<K, V>(body: &mut NodeBody<K, V>, pos: usize, value: V) -> Option<V> {
    match &mut body.slice[pos] {
        Slot::Entry(_, v) => Some(mem::replace(v, value)),
        _ => None,
    }
}

/// What a removal did to the node it ran on.
pub(crate) enum Removed<K, V> {
    /// The key was not there; nothing changed.
    NotFound,
    /// The entry was removed and the node is canonical as it stands.
    Done(K, V),
    /// The entry was removed and the (non-root) node was left with exactly one entry, handed
    /// back here for the parent to inline. The node itself must be discarded by the parent.
    Collapse {
        /// The removed entry.
        removed: (K, V),
        /// The node's only remaining entry.
        remaining: (K, V),
    },
}

/// Removes `key` from the trie under `node`.
///
/// Callers should check that the key is present first: on a shared path this copies nodes
/// on the way down even if the key turns out to be absent.
pub(crate) fn remove<K, V, Q>(
    node: &mut Node<K, V>,
    shift: u32,
    hash: HashBits,
    key: &Q,
) -> Removed<K, V>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    remove_target(node, shift, hash, Target::Key(key))
}

/// Removes the entry at a known place (found earlier by [`locate_anchor`]), reached by hash
/// alone: no key comparison runs, so no user code but `Clone` when a shared node is copied.
pub(crate) fn remove_located<K: Eq + Clone, V: Clone>(
    node: &mut Node<K, V>,
    shift: u32,
    hash: HashBits,
    location: Location,
) -> Removed<K, V> {
    remove_target::<K, V, K>(node, shift, hash, Target::At(location))
}

/// Which entry a removal is after.
enum Target<'q, Q: ?Sized> {
    /// The entry with this key.
    Key(&'q Q),
    /// The entry the hash leads to, or the one at this index of the collision node.
    At(Location),
}

impl<Q: ?Sized> Clone for Target<'_, Q> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Q: ?Sized> Copy for Target<'_, Q> {}

impl<Q: Eq + ?Sized> Target<'_, Q> {
    fn is<K: Borrow<Q>, V>(self, slot: Option<&Slot<K, V>>) -> bool {
        match (self, slot) {
            (Target::Key(key), Some(Slot::Entry(k, _))) => k.borrow() == key,
            (Target::At(_), Some(Slot::Entry(..))) => true,
            _ => false,
        }
    }

    fn position_in<K: Borrow<Q>, V>(self, slots: &[Slot<K, V>]) -> Option<usize> {
        match self {
            Target::Key(key) => slots
                .iter()
                .position(|slot| matches!(slot, Slot::Entry(k, _) if k.borrow() == key)),
            Target::At(location) => location.filter(|&pos| self.is(slots.get(pos))),
        }
    }
}

fn remove_target<K, V, Q>(
    node: &mut Node<K, V>,
    shift: u32,
    hash: HashBits,
    target: Target<'_, Q>,
) -> Removed<K, V>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    if shift >= HASH_BITS {
        let Some(pos) = target.position_in(&node.slice) else {
            return Removed::NotFound;
        };
        return remove_entry(node, shift, Header::COLLISION, pos);
    }

    let Header { data_map, node_map } = node.header;
    let bit = bit_at(hash, shift);
    let len = node.slice.len();
    if data_map & bit != 0 {
        let pos = entry_index(len, data_map, bit);
        if !target.is(node.slice.get(pos)) {
            return Removed::NotFound;
        }
        let header = Header {
            data_map: data_map ^ bit,
            node_map,
        };
        if is_dense(len) {
            return remove_dense_entry(node, header, bit, pos);
        }
        return remove_entry(node, shift, header, pos);
    }
    if node_map & bit == 0 {
        return Removed::NotFound;
    }
    let pos = child_index(len, node_map, bit);
    let collapse_here = shift > 0 && node.slice.len() == 1;
    let body = make_mut(node);
    let Slot::Child(child) = &mut body.slice[pos] else {
        return Removed::NotFound;
    };
    match remove_target(child, shift + BITS, hash, target) {
        Removed::Collapse { removed, remaining } if !collapse_here => {
            // Inline the child's last entry here, moving it into the entry region.
            body.slice[pos] = Slot::Entry(remaining.0, remaining.1);
            if !is_dense(len) {
                let entry_pos = index(data_map, bit);
                body.slice[entry_pos..=pos].rotate_right(1);
            }
            body.header = Header {
                data_map: data_map | bit,
                node_map: node_map ^ bit,
            };
            Removed::Done(removed.0, removed.1)
        }
        // This node held only that child, so it is left with a single entry as well:
        // pass the entry further up.
        other => other,
    }
}

/// Removes the entry for `bit` at `pos` of a dense node, leaving `header`: in place (a vacant
/// slot) while the node stays dense, else rebuilding it sparse. A dense node holds far more
/// than one entry, so it never collapses.
#[inline(never)]
fn remove_dense_entry<K: Clone, V: Clone>(
    node: &mut Node<K, V>,
    header: Header,
    bit: u32,
    pos: usize,
) -> Removed<K, V> {
    let removed = if must_be_dense(header) {
        let body = make_mut(node);
        body.header = header;
        take(&mut body.slice[pos])
    } else {
        let mut slots = slots_by_bucket(node);
        let Some(at) = slots.iter().position(|&(b, _)| b == bit) else {
            unreachable!("the removed bucket is occupied");
        };
        let (_, removed) = slots.remove(at);
        *node = build_bitmap_node(header, slots);
        removed
    };
    match removed {
        Slot::Entry(k, v) => Removed::Done(k, v),
        _ => unreachable!("the removed slot is an entry"),
    }
}

/// Removes the entry at `pos`, collapsing a non-root node left with one entry.
fn remove_entry<K: Clone, V: Clone>(
    node: &mut Node<K, V>,
    shift: u32,
    header: Header,
    pos: usize,
) -> Removed<K, V> {
    let only_entries = node.header.node_map == 0;
    if shift > 0 && only_entries && node.slice.len() == 2 {
        let mut source = Slots::of(node);
        let first = source.next_slot();
        let second = source.next_slot();
        let (removed, remaining) = if pos == 0 {
            (first, second)
        } else {
            (second, first)
        };
        if let (Slot::Entry(rk, rv), Slot::Entry(k, v)) = (removed, remaining) {
            return Removed::Collapse {
                removed: (rk, rv),
                remaining: (k, v),
            };
        }
        unreachable!("a node without children holds only entries");
    }
    match remove_slot(node, header, pos) {
        Slot::Entry(k, v) => Removed::Done(k, v),
        _ => unreachable!("the removed slot is an entry"),
    }
}

/// What [`remove_copy`] built.
pub(crate) enum RemovedCopy<K, V> {
    /// The copy of the node without the key.
    Node(Node<K, V>),
    /// The (non-root) node would be left with a single entry: a clone of it, for the parent
    /// to inline.
    Collapse(K, V),
}

/// A copy of the trie under the shared `node` without `key`, or `None` if the key is absent
/// (then nothing is copied), leaving `node` as it is.
///
/// The persistent counterpart of [`remove`], for [`HamtMap::without`](crate::HamtMap::without).
/// It walks down first and builds the copies on the way back up, each node on the path copied
/// once and holding the copy of the next node down, so the original children on the path are
/// never cloned into a copy only to be dropped again, and an absent key needs no separate
/// lookup beforehand. (Unlike [`insert_copy`], this pays here: the walk replaces that
/// lookup.) Key comparisons run before any copy is built; a panicking `Clone` drops the
/// copies built so far and leaves `node` untouched.
pub(crate) fn remove_copy<K, V, Q>(
    node: &Node<K, V>,
    shift: u32,
    hash: HashBits,
    key: &Q,
) -> Option<RemovedCopy<K, V>>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    if shift < HASH_BITS {
        let Header { data_map, node_map } = node.header;
        let bit = bit_at(hash, shift);
        let len = node.slice.len();
        if node_map & bit != 0 {
            let pos = child_index(len, node_map, bit);
            let Some(Slot::Child(child)) = node.slice.get(pos) else {
                return None;
            };
            let copy = match remove_copy(child, shift + BITS, hash, key)? {
                RemovedCopy::Node(child) => {
                    copy_replacing(node, node.header, pos, Slot::Child(child))
                }
                // This node held only that child: pass the entry further up.
                RemovedCopy::Collapse(k, v) if shift > 0 && len == 1 => {
                    return Some(RemovedCopy::Collapse(k, v));
                }
                RemovedCopy::Collapse(k, v) => {
                    let header = Header {
                        data_map: data_map | bit,
                        node_map: node_map ^ bit,
                    };
                    let slot = Slot::Entry(k, v);
                    if is_dense(len) {
                        // Same occupancy: the bucket's slot changes kind in place.
                        copy_replacing(node, header, pos, slot)
                    } else {
                        copy_moving(node, header, pos, index(data_map, bit), slot)
                    }
                }
            };
            return Some(RemovedCopy::Node(copy));
        }
        if data_map & bit == 0 {
            return None;
        }
        let pos = entry_index(len, data_map, bit);
        match node.slice.get(pos) {
            Some(Slot::Entry(k, _)) if k.borrow() == key => {}
            _ => return None,
        }
        let header = Header {
            data_map: data_map ^ bit,
            node_map,
        };
        // The same test as `remove_entry`: a non-root node of two entries and no children.
        if shift > 0 && node_map == 0 && len == 2 {
            return match node.slice.get(1 - pos) {
                Some(Slot::Entry(k, v)) => Some(RemovedCopy::Collapse(k.clone(), v.clone())),
                _ => None,
            };
        }
        if !is_dense(len) {
            return Some(RemovedCopy::Node(copy_removing(node, header, pos)));
        }
        if must_be_dense(header) {
            return Some(RemovedCopy::Node(copy_replacing(
                node,
                header,
                pos,
                Slot::Vacant,
            )));
        }
    }
    // The rarer shapes (a dense node turning sparse, a collision node): remove through a
    // second handle on this node, which copies it first.
    let mut copy = node.clone();
    match remove(&mut copy, shift, hash, key) {
        Removed::NotFound => None,
        Removed::Done(..) => Some(RemovedCopy::Node(copy)),
        Removed::Collapse {
            remaining: (k, v), ..
        } => Some(RemovedCopy::Collapse(k, v)),
    }
}

/// A copy of the shared sparse `node` without the slot at `pos`, with the given header.
fn copy_removing<K: Clone, V: Clone>(node: &Node<K, V>, header: Header, pos: usize) -> Node<K, V> {
    let (before, rest) = node.slice.split_at(pos.min(node.slice.len()));
    let after = rest.get(1..).unwrap_or_default();
    new_node(
        header,
        Spliced {
            before: before.iter().cloned(),
            after: after.iter().cloned(),
        },
    )
}

/// A copy of the shared sparse `node` whose child at `child_pos` is replaced by the entry
/// `slot` at `entry_pos` (in the entry region, so `entry_pos <= child_pos`), with the given
/// header: the slots in between shift up by one.
fn copy_moving<K: Clone, V: Clone>(
    node: &Node<K, V>,
    header: Header,
    child_pos: usize,
    entry_pos: usize,
    slot: Slot<K, V>,
) -> Node<K, V> {
    let mut slot = Some(slot);
    let slots = &node.slice;
    new_node(
        header,
        (0..slots.len()).map(|i| {
            let from = match i {
                _ if i == entry_pos => return slot.take().unwrap_or(Slot::Vacant),
                _ if i > entry_pos && i <= child_pos => i - 1,
                _ => i,
            };
            slots.get(from).map_or(Slot::Vacant, Slot::clone)
        }),
    )
}

/// Calls `f` on every entry under `node`, making every node uniquely owned first.
pub(crate) fn for_each_mut<K: Clone, V: Clone>(
    node: &mut Node<K, V>,
    f: &mut impl FnMut(&K, &mut V),
) {
    for slot in make_mut(node).slice.iter_mut() {
        match slot {
            Slot::Entry(k, v) => f(k, v),
            Slot::Child(child) => for_each_mut(child, f),
            Slot::Vacant => {}
        }
    }
}

/// Which of two compared tries an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Left,
    Right,
}

/// The first entry of either trie (both at `shift`) that the other does not hold at the same
/// place with an equal value, or `None` if every entry is matched.
///
/// With one hash function, canonical shape makes a witness proof that the maps differ. Maps
/// whose hash functions differ may hold the same entry at different places, so callers
/// confirm a witness with a lookup before concluding anything.
pub(crate) fn first_difference<'a, K: Eq, V: PartialEq>(
    a: &'a Node<K, V>,
    b: &'a Node<K, V>,
    shift: u32,
) -> Option<(Side, &'a K, &'a V)> {
    if Arc::ptr_eq(a, b) {
        return None;
    }
    if shift >= HASH_BITS {
        return unmatched(&a.slice, &b.slice);
    }
    let mut bits = a.header.data_map | a.header.node_map | b.header.data_map | b.header.node_map;
    while bits != 0 {
        let bit = bits & bits.wrapping_neg();
        bits ^= bit;
        let found = match (slot_for(a, bit), slot_for(b, bit)) {
            (Some(Slot::Child(ca)), Some(Slot::Child(cb))) => {
                first_difference(ca, cb, shift + BITS)
            }
            (Some(sa), Some(sb)) => unmatched(std::slice::from_ref(sa), std::slice::from_ref(sb)),
            (Some(sa), None) => unmatched(std::slice::from_ref(sa), &[]),
            (None, Some(sb)) => unmatched(&[], std::slice::from_ref(sb)),
            (None, None) => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The first entry under `a` without an equal entry under `b`, or the reverse.
fn unmatched<'a, K: Eq, V: PartialEq>(
    a: &'a [Slot<K, V>],
    b: &'a [Slot<K, V>],
) -> Option<(Side, &'a K, &'a V)> {
    let missing = |from: &'a [Slot<K, V>], to: &'a [Slot<K, V>]| {
        Walk::new(from).find(|(k, v)| !Walk::new(to).any(|(ok, ov)| ok == *k && ov == *v))
    };
    if let Some((k, v)) = missing(a, b) {
        return Some((Side::Left, k, v));
    }
    missing(b, a).map(|(k, v)| (Side::Right, k, v))
}

/// Checks the structural invariants of the trie under `node`; returns the number of entries.
#[cfg(any(test, fuzzing, feature = "testing"))]
///
/// # Panics
///
/// When an invariant does not hold, with a message naming it.
pub(crate) fn check<K, V, S>(
    node: &Node<K, V>,
    shift: u32,
    prefix: HashBits,
    is_root: bool,
    hasher: &S,
) -> usize
where
    K: Hash + Eq,
    S: BuildHasher,
{
    let mask = if shift == 0 {
        0
    } else {
        u32::MAX >> (32 - shift.min(32))
    };
    if shift >= HASH_BITS {
        assert!(
            node.header == Header::COLLISION,
            "collision node with bitmaps"
        );
        assert!(
            node.slice.len() >= 2,
            "collision node with fewer than two entries"
        );
        for slot in node.slice.iter() {
            let Slot::Entry(k, _) = slot else {
                panic!("collision node holds a non-entry slot");
            };
            assert_eq!(
                hash_key(hasher, k),
                prefix,
                "collision entry with another hash"
            );
        }
        let keys = node.slice.iter().filter_map(|slot| match slot {
            Slot::Entry(k, _) => Some(k),
            _ => None,
        });
        for (i, k) in keys.clone().enumerate() {
            assert!(
                keys.clone().skip(i + 1).all(|other| other != k),
                "a key twice in a collision node"
            );
        }
        return node.slice.len();
    }
    let Header { data_map, node_map } = node.header;
    assert_eq!(data_map & node_map, 0, "a bucket is both entry and child");
    if shift + BITS > HASH_BITS {
        // The last level has 2^(HASH_BITS - shift) buckets.
        let valid = (1u32 << (1u32 << (HASH_BITS - shift))) - 1;
        assert_eq!(
            (data_map | node_map) & !valid,
            0,
            "bucket beyond the hash bits"
        );
    }
    let entries = data_map.count_ones() as usize;
    let children = node_map.count_ones() as usize;
    if must_be_dense(node.header) {
        assert_eq!(
            node.slice.len(),
            DENSE_LEN,
            "a full enough node is not dense"
        );
        for bucket in 0..32 {
            if (data_map | node_map) & (1 << bucket) == 0 {
                assert!(
                    matches!(node.slice[dense_index(1 << bucket)], Slot::Vacant),
                    "an empty bucket of a dense node holds a slot"
                );
            }
        }
    } else {
        assert_eq!(
            node.slice.len(),
            entries + children,
            "bitmaps disagree with length"
        );
    }
    if !is_root {
        assert!(
            children > 0 || entries >= 2,
            "non-root node with a single entry and no children (not canonical)"
        );
    }
    let mut count = 0;
    let mut bits = data_map | node_map;
    while bits != 0 {
        let bit = bits & bits.wrapping_neg();
        bits ^= bit;
        let bucket = bit.trailing_zeros();
        let here = prefix | (bucket << shift);
        match slot_for(node, bit) {
            Some(Slot::Entry(k, _)) => {
                assert!(data_map & bit != 0, "entry in a child bucket");
                let h = hash_key(hasher, k);
                let mask_here = mask | (31 << shift);
                assert_eq!(h & mask_here, here & mask_here, "entry in the wrong bucket");
                count += 1;
            }
            Some(Slot::Child(child)) => {
                assert!(node_map & bit != 0, "child in an entry bucket");
                let sub = check(child, shift + BITS, here, false, hasher);
                assert!(
                    sub >= 2,
                    "sub-trie with fewer than two entries (not canonical)"
                );
                count += sub;
            }
            Some(Slot::Vacant) => panic!("vacant slot in a finished node"),
            None => panic!("bitmap bit without a slot"),
        }
    }
    count
}
