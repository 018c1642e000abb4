//! Panics in user code (`Hash`, `Eq`, `Clone`, closures) at every point an operation calls
//! it: the map and all of its clones must stay valid with their contents, and keep working.
//!
//! A trap is armed with a kind of call and a countdown; the call that finds the countdown at
//! zero panics. Each operation is run with countdowns 0, 1, 2, … until it completes, so every
//! call it makes panics once.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Once};

use common::{Ledger, Tracked};
use hamt::testing::IdentityState;
use hamt::{Entry, HamtMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hash,
    Eq,
    Clone,
    /// A closure passed to the map (`retain`).
    Closure,
}

const KINDS: [Kind; 3] = [Kind::Hash, Kind::Eq, Kind::Clone];

/// The payload of a trap's panic.
struct TrapFired;

thread_local! {
    /// The armed trap: the kind of call, and how many such calls to let through first.
    static TRAP: Cell<Option<(Kind, u32)>> = const { Cell::new(None) };
    /// Counts the values alive on this thread; a double drop fails in `Tracked::drop`.
    static LEDGER: Arc<Ledger> = Ledger::new();
}

/// Called by every `Hash`, `Eq` and `Clone` of the test types.
fn spring(kind: Kind) {
    if let Some((armed, left)) = TRAP.get()
        && armed == kind
    {
        if left == 0 {
            TRAP.set(None);
            panic::panic_any(TrapFired);
        }
        TRAP.set(Some((armed, left - 1)));
    }
}

/// Keeps the default panic hook from printing every trap's panic.
fn quiet_traps() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<TrapFired>() {
                default(info);
            }
        }));
    });
}

/// A key with a chosen hash whose `Hash`, `Eq` and `Clone` can be trapped.
#[derive(Debug)]
struct Key {
    hash: u32,
    id: u64,
}

fn key(hash: u32, id: u64) -> Key {
    Key { hash, id }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        spring(Kind::Hash);
        state.write_u32(self.hash);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        spring(Kind::Eq);
        self.hash == other.hash && self.id == other.id
    }
}

impl Eq for Key {}

impl Clone for Key {
    fn clone(&self) -> Self {
        spring(Kind::Clone);
        key(self.hash, self.id)
    }
}

/// A value whose `Clone` can be trapped, and whose instances are tracked.
#[derive(Debug)]
struct Val {
    n: u64,
    _alive: Tracked,
}

fn val(n: u64) -> Val {
    Val {
        n,
        _alive: LEDGER.with(|ledger| ledger.track(n)),
    }
}

impl Clone for Val {
    fn clone(&self) -> Self {
        spring(Kind::Clone);
        val(self.n)
    }
}

impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        spring(Kind::Eq);
        self.n == other.n
    }
}

type Map = HamtMap<Key, Val, IdentityState>;
/// A map's entries as `(hash, id) => n`, read without calling user code.
type Contents = BTreeMap<(u32, u64), u64>;

fn contents(map: &Map) -> Contents {
    map.iter().map(|(k, v)| ((k.hash, k.id), v.n)).collect()
}

fn build_map(entries: &Contents) -> Map {
    let mut map = Map::with_hasher(IdentityState);
    for (&(hash, id), &n) in entries {
        map.insert(key(hash, id), val(n));
    }
    map
}

fn assert_holds(map: &Map, expected: &Contents) {
    map.check_invariants();
    assert_eq!(contents(map), *expected);
    for (&(hash, id), &n) in expected {
        assert_eq!(map.get(&key(hash, id)).map(|v| v.n), Some(n));
    }
}

/// Uses a map that survived a panic: inserts, replaces, removes, snapshots.
fn keep_using(mut map: Map) {
    let mut expected = contents(&map);
    for (hash, id) in [(COLLIDING, 70), (1, 71), (0xFFFF_FFFF, 72), (COLLIDING, 0)] {
        map.insert(key(hash, id), val(id));
        expected.insert((hash, id), id);
    }
    let snapshot = (map.clone(), expected.clone());
    let first = *expected.keys().next().unwrap();
    assert!(map.remove(&key(first.0, first.1)).is_some());
    expected.remove(&first);
    assert_holds(&map, &expected);
    assert_holds(&snapshot.0, &snapshot.1);
}

/// The hash shared by the entries of the collision node.
const COLLIDING: u32 = 0x0ABC_DEF1;

/// Entries in the root, in a sub-node (hashes 1, 33, 65 share the low 5 bits), in a
/// collision node at the bottom, and next to it (a hash sharing 20 bits).
fn layout() -> Contents {
    let mut entries = Contents::new();
    for id in 0..4 {
        entries.insert((COLLIDING, id), id);
    }
    for hash in [1, 2, 33, 65, COLLIDING ^ (1 << 20)] {
        entries.insert((hash, 100), u64::from(hash));
    }
    entries
}

/// A collision node of two, which collapses when either is removed.
fn pair_layout() -> Contents {
    [((COLLIDING, 0), 0), ((COLLIDING, 1), 1), ((5, 2), 2)].into()
}

/// Runs `op` on a map from `make` (with a clone alive when `shared`) once for every call of
/// `kind` it makes, panicking at that call. After each panic the map must pass `after_panic`
/// (given its contents before), the clone must be as it was, and both must keep working.
/// Returns how many runs panicked, and the map `op` completed on.
fn panic_at_each_call(
    kind: Kind,
    make: &dyn Fn() -> Map,
    shared: bool,
    op: &dyn Fn(&mut Map),
    after_panic: &dyn Fn(&Map, &Contents),
) -> (u32, Map) {
    quiet_traps();
    for countdown in 0.. {
        let baseline = LEDGER.with(|ledger| ledger.live());
        let mut map = make();
        let before = contents(&map);
        let clone = shared.then(|| map.clone());
        TRAP.set(Some((kind, countdown)));
        let result = panic::catch_unwind(AssertUnwindSafe(|| op(&mut map)));
        TRAP.set(None);
        if let Err(payload) = result {
            if !payload.is::<TrapFired>() {
                panic::resume_unwind(payload);
            }
            after_panic(&map, &before);
            keep_using(map);
            if let Some(clone) = clone {
                assert_holds(&clone, &before);
                keep_using(clone);
            }
            assert_eq!(
                LEDGER.with(|ledger| ledger.live()),
                baseline,
                "values leaked by a panic ({kind:?} at call {countdown})"
            );
            continue;
        }
        if let Some(clone) = &clone {
            assert_holds(clone, &before);
        }
        return (countdown, map);
    }
    unreachable!()
}

/// Builds a fresh, uniquely owned map holding `entries`.
fn fresh(entries: Contents) -> impl Fn() -> Map {
    move || build_map(&entries)
}

/// The usual expectation: after a panic the map is exactly as it was.
fn unchanged(map: &Map, before: &Contents) {
    assert_holds(map, before);
}

/// Runs `op` with each kind of trap, on a unique and on a shared map; returns the number of
/// panics per kind, unique then shared.
fn every_kind_and_sharing(entries: &Contents, op: &dyn Fn(&mut Map)) -> [[u32; 3]; 2] {
    let make = fresh(entries.clone());
    let mut panics = [[0; 3]; 2];
    for (sharing, shared) in [false, true].into_iter().enumerate() {
        for (k, kind) in KINDS.into_iter().enumerate() {
            panics[sharing][k] = panic_at_each_call(kind, &make, shared, op, &unchanged).0;
        }
    }
    panics
}

#[test]
fn panics_mid_insert_leave_maps_intact() {
    let cases = [
        (COLLIDING, 9),             // a new key in the collision node
        (COLLIDING, 2),             // replacing a value in the collision node
        (COLLIDING ^ (1 << 30), 9), // splitting off the collision node's path at the last level
        (34, 9),                    // hash 34 shares the root bucket of entry 2: a split
        (65 | 1 << 10, 9),          // shares two levels with entry 65: a split one level down
        (3, 9),                     // an empty root bucket
        (65, 100),                  // replacing a value in the sub-node
    ];
    for (hash, id) in cases {
        let op = |map: &mut Map| {
            map.insert(key(hash, id), val(1000));
        };
        let [unique, shared] = every_kind_and_sharing(&layout(), &op);
        assert!(unique[0] >= 1, "insert({hash:#x}) never hashed");
        assert!(
            shared[2] >= 1,
            "insert({hash:#x}) into a shared map cloned nothing"
        );
    }
}

/// Inserting into a bucket held by another key hashes that key to push both down a level:
/// both the new key's hash and the existing key's hash must be able to panic safely.
#[test]
fn panic_mid_split_hashing_the_existing_key() {
    for hash in [34, 65 | 1 << 10] {
        for shared in [false, true] {
            let op = |map: &mut Map| {
                map.insert(key(hash, 9), val(9));
            };
            let (panics, done) =
                panic_at_each_call(Kind::Hash, &fresh(layout()), shared, &op, &unchanged);
            assert!(
                panics >= 2,
                "the split of {hash:#x} did not hash the existing key"
            );
            let mut expected = layout();
            expected.insert((hash, 9), 9);
            assert_holds(&done, &expected);
        }
    }
}

/// A uniquely owned map is edited in place: inserting and removing clone nothing.
#[test]
fn unique_maps_are_edited_without_cloning() {
    let ops: [&dyn Fn(&mut Map); 3] = [
        &|map| {
            map.insert(key(COLLIDING, 9), val(9));
        },
        &|map| {
            map.insert(key(34, 9), val(9));
        },
        &|map| {
            map.remove(&key(COLLIDING, 1));
        },
    ];
    for op in ops {
        let (panics, _) = panic_at_each_call(Kind::Clone, &fresh(layout()), false, op, &unchanged);
        assert_eq!(panics, 0, "an in-place edit cloned a key or value");
    }
}

#[test]
fn panics_mid_remove_leave_maps_intact() {
    for entries in [layout(), pair_layout()] {
        for &(hash, id) in entries.keys() {
            let op = |map: &mut Map| {
                map.remove(&key(hash, id));
            };
            let [unique, shared] = every_kind_and_sharing(&entries, &op);
            assert!(unique[0] >= 1 && unique[1] >= 1, "remove({hash:#x}, {id})");
            assert!(shared[0] >= 1 && shared[1] >= 1, "remove({hash:#x}, {id})");
        }
        // A missing key sharing the collision's hash: compared with every entry there.
        let op = |map: &mut Map| {
            map.remove(&key(COLLIDING, 99));
        };
        let [unique, _] = every_kind_and_sharing(&entries, &op);
        assert!(unique[1] >= 2);
    }
}

#[test]
fn panics_mid_lookup_leave_maps_intact() {
    for &(hash, id) in layout().keys() {
        let op = |map: &mut Map| {
            assert!(map.get(&key(hash, id)).is_some());
            assert!(map.contains_key(&key(hash, id)));
        };
        let [unique, _] = every_kind_and_sharing(&layout(), &op);
        assert!(unique[0] >= 2 && unique[1] >= 2);
    }
}

#[test]
fn panics_mid_persistent_update_and_without_leave_maps_intact() {
    let update = |map: &mut Map| {
        let next = map.update(key(COLLIDING, 7), val(7));
        assert_eq!(next.len(), map.len() + 1);
    };
    let without = |map: &mut Map| {
        let next = map.without(&key(COLLIDING, 1));
        assert_eq!(next.len(), map.len() - 1);
    };
    for op in [&update as &dyn Fn(&mut Map), &without] {
        let [unique, shared] = every_kind_and_sharing(&layout(), op);
        assert!(unique.iter().chain(&shared).all(|&panics| panics >= 1));
    }
    // The shapes `insert_copy` and `remove_copy` build directly, in nodes where entries are
    // copied before the clone that panics: a replaced value and a new entry at the root, a
    // path copy through the root, entries removed at the root and in a sub-node, a sub-node
    // collapsing into the root.
    let mut wide = layout();
    for hash in [3, 4, 5, 6 | 1 << 5, 6 | 2 << 5] {
        wide.insert((hash, 100), u64::from(hash));
    }
    for (hash, id, replaces) in [(5, 100, true), (7, 9, false)] {
        let op = move |map: &mut Map| {
            let next = map.update(key(hash, id), val(1000));
            assert_eq!(next.len(), map.len() + usize::from(!replaces));
        };
        let [unique, shared] = every_kind_and_sharing(&wide, &op);
        // The key is hashed, and entries are cloned into the copies, before each success.
        assert!(
            unique
                .iter()
                .chain(&shared)
                .zip(KINDS.iter().cycle())
                .all(|(&panics, kind)| panics >= 1 || *kind == Kind::Eq)
        );
    }
    for (hash, id) in [(COLLIDING, 1), (5, 100), (65, 100), (6 | 1 << 5, 100)] {
        let op = move |map: &mut Map| {
            let next = map.without(&key(hash, id));
            assert_eq!(next.len(), map.len() - 1);
        };
        let [unique, shared] = every_kind_and_sharing(&wide, &op);
        // The key is hashed and compared, and entries are cloned into the copies.
        assert!(unique.iter().chain(&shared).all(|&panics| panics >= 1));
    }
}

#[test]
fn panics_mid_entry_leave_maps_intact() {
    let occupied = (COLLIDING, 2);
    let ops: [&dyn Fn(&mut Map); 4] = [
        &|map| {
            let _ = map
                .entry(key(occupied.0, occupied.1))
                .and_modify(|v| v.n += 1);
        },
        &|map| {
            if let Entry::Occupied(mut entry) = map.entry(key(occupied.0, occupied.1)) {
                entry.insert(val(55));
            }
        },
        &|map| {
            if let Entry::Occupied(entry) = map.entry(key(occupied.0, occupied.1)) {
                entry.remove();
            }
        },
        &|map| {
            *map.get_mut(&key(occupied.0, occupied.1)).unwrap() = val(56);
        },
    ];
    for op in ops {
        let [unique, shared] = every_kind_and_sharing(&layout(), op);
        assert!(unique[0] >= 1 && unique[1] >= 1 && shared[2] >= 1);
    }
    // A vacant entry: its `Hash` and `Clone` may panic (see the test below for `Eq`).
    let vacant = |map: &mut Map| {
        map.entry(key(COLLIDING, 40)).or_insert(val(40));
    };
    for shared in [false, true] {
        for kind in [Kind::Hash, Kind::Clone] {
            panic_at_each_call(kind, &fresh(layout()), shared, &vacant, &unchanged);
        }
    }
}

/// Entry methods that change the map and then hand out the value: a panic in `Eq` must leave
/// the map as it was, as the crate documents for all user code. Both keys share their hash
/// with keys already in the map, so the lookups compare keys (each case asserts that some
/// `Eq` call panicked).
#[test]
fn entry_panicking_eq_after_changing_the_map_leaves_it_unchanged() {
    let vacant_or_insert = |map: &mut Map| {
        map.entry(key(COLLIDING, 99)).or_insert(val(0));
    };
    let modify_then_or_insert = |map: &mut Map| {
        map.entry(key(COLLIDING, 2))
            .and_modify(|v| v.n += 1)
            .or_insert(val(0));
    };
    for op in [
        &vacant_or_insert as &dyn Fn(&mut Map),
        &modify_then_or_insert,
    ] {
        for shared in [false, true] {
            let (panics, _) =
                panic_at_each_call(Kind::Eq, &fresh(layout()), shared, op, &unchanged);
            assert!(panics > 0, "no `Eq` call panicked");
        }
    }
}

/// After a panic in `retain`, entries are as before or with the closure's change made, and
/// only entries the closure rejected are gone.
fn retained_so_far(map: &Map, before: &Contents) {
    map.check_invariants();
    let now = contents(map);
    for (entry, &n) in &now {
        let old = before.get(entry).copied();
        assert!(
            old == Some(n) || old.map(|o| o + 1000) == Some(n),
            "{entry:?} => {n}"
        );
    }
    for entry in before.keys() {
        assert!(
            now.contains_key(entry) || entry.1 % 2 == 1,
            "{entry:?} was kept yet is gone"
        );
    }
}

#[test]
fn panics_mid_retain_leave_a_valid_subset() {
    let op = |map: &mut Map| {
        map.retain(|k, v| {
            spring(Kind::Closure);
            v.n += 1000;
            k.id % 2 == 0
        });
    };
    for shared in [false, true] {
        for kind in [Kind::Closure, Kind::Hash, Kind::Eq, Kind::Clone] {
            let (panics, done) =
                panic_at_each_call(kind, &fresh(layout()), shared, &op, &retained_so_far);
            let expected: Contents = layout()
                .into_iter()
                .filter(|((_, id), _)| id % 2 == 0)
                .map(|(entry, n)| (entry, n + 1000))
                .collect();
            assert_holds(&done, &expected);
            if kind == Kind::Closure {
                assert_eq!(panics as usize, layout().len());
            }
        }
    }
}

/// The other side of unions: overlapping the layout, with its own collision entries.
fn other_entries() -> Contents {
    let mut entries = Contents::new();
    for id in 2..7 {
        entries.insert((COLLIDING, id), 500 + id);
    }
    for hash in [2, 34, 66, 7] {
        entries.insert((hash, 100), 500);
    }
    entries
}

fn expected_union(ours: &Contents, theirs: &Contents) -> Contents {
    let mut union = theirs.clone();
    union.extend(ours);
    union
}

#[test]
fn panics_mid_union_leave_both_maps_intact() {
    let base = build_map(&layout());
    // Unrelated to `base`, and derived from it (sharing all but one path).
    let other = build_map(&other_entries());
    let derived = base
        .update(key(COLLIDING, 20), val(20))
        .without(&key(33, 100));
    for theirs in [&other, &derived] {
        let theirs_before = contents(theirs);
        let result = RefCell::new(None);
        let op = |map: &mut Map| {
            *result.borrow_mut() = Some(map.union(theirs));
        };
        let check = |map: &Map, before: &Contents| {
            assert_holds(map, before);
            assert_holds(theirs, &theirs_before);
        };
        let from_base = || base.clone();
        let makers: [&dyn Fn() -> Map; 2] = [&fresh(layout()), &from_base];
        for (make, shared) in makers.into_iter().zip([false, true]) {
            let mut panics = 0;
            for kind in KINDS {
                panics += panic_at_each_call(kind, make, shared, &op, &check).0;
                let merged = result.borrow_mut().take().unwrap();
                assert_holds(&merged, &expected_union(&layout(), &theirs_before));
            }
            assert!(panics >= 3);
        }
    }
}

#[test]
fn panics_mid_merge_leave_a_valid_partial_union() {
    let other = build_map(&other_entries());
    let union = expected_union(&layout(), &other_entries());
    let op = |map: &mut Map| map.merge(&other);
    let check = |map: &Map, before: &Contents| {
        map.check_invariants();
        let now = contents(map);
        assert!(
            before.iter().all(|(k, v)| now.get(k) == Some(v)),
            "lost or changed an entry"
        );
        assert!(
            now.iter().all(|(k, v)| union.get(k) == Some(v)),
            "an entry not in the union"
        );
        assert_holds(&other, &other_entries());
    };
    for shared in [false, true] {
        for kind in KINDS {
            let (_, done) = panic_at_each_call(kind, &fresh(layout()), shared, &op, &check);
            assert_holds(&done, &union);
        }
    }
}

#[test]
fn panics_mid_owned_iteration_of_a_shared_map_leave_it_intact() {
    let op = |map: &mut Map| {
        let entries: Vec<(Key, Val)> = map.clone().into_iter().collect();
        assert_eq!(entries.len(), map.len());
    };
    let (panics, _) = panic_at_each_call(Kind::Clone, &fresh(layout()), false, &op, &unchanged);
    assert_eq!(
        panics as usize,
        2 * layout().len(),
        "every key and value is cloned once"
    );
}

#[test]
fn panics_mid_set_operations_leave_maps_intact() {
    let ops: [&dyn Fn(&mut Map); 3] = [
        &|map| {
            let other = map.without(&key(COLLIDING, 1)).update(key(9, 9), val(9));
            assert_eq!(map.intersection(&other).len(), map.len() - 1);
        },
        &|map| {
            let other = map.without(&key(COLLIDING, 1)).without(&key(65, 100));
            assert_eq!(map.difference(&other).len(), 2);
        },
        &|map| {
            let other = map.without(&key(COLLIDING, 2)).update(key(9, 9), val(9));
            assert_eq!(map.symmetric_difference(&other).len(), 2);
        },
    ];
    for op in ops {
        let [unique, shared] = every_kind_and_sharing(&layout(), op);
        assert!(unique.iter().chain(&shared).all(|&panics| panics >= 1));
    }
}

/// A value whose `Drop` panics when armed.
#[derive(Clone, Debug)]
struct Bomb(bool);

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.0 {
            panic::panic_any(TrapFired);
        }
    }
}

/// A `Drop` that panics while `clear` drops the entries leaves an empty map whose length
/// says so, and the map stays usable.
#[test]
fn a_drop_that_panics_in_clear_leaves_an_empty_map() {
    quiet_traps();
    let mut map: HamtMap<u32, Bomb> = (0..100).map(|i| (i, Bomb(i == 37))).collect();
    assert!(panic::catch_unwind(AssertUnwindSafe(|| map.clear())).is_err());
    assert_eq!((map.len(), map.iter().count()), (0, 0));
    assert!(map.is_empty());
    map.insert(1, Bomb(false));
    map.check_invariants();
    assert_eq!((map.len(), map.iter().count()), (1, 1));
}

/// An owning iterator over a shared map whose `Clone` panicked mid-way: a caught panic loses
/// nothing (the next call clones that entry again), and its length stays what it yields.
/// A mutable iterator stops instead (the subtree it was copying is passed) and says so.
#[test]
fn iterators_that_survive_a_clone_panic_yield_what_their_length_says() {
    quiet_traps();
    for skip in 0..2 * layout().len() as u32 {
        let map = build_map(&layout());
        let _shared = map.clone();
        let mut it = map.into_iter();
        TRAP.set(Some((Kind::Clone, skip)));
        let mut got = Contents::new();
        loop {
            let promised = it.len();
            match panic::catch_unwind(AssertUnwindSafe(|| it.next())) {
                Ok(Some((k, v))) => assert!(got.insert((k.hash, k.id), v.n).is_none()),
                Ok(None) => {
                    assert_eq!(promised, 0);
                    break;
                }
                Err(_) => assert_eq!(it.len(), promised),
            }
        }
        TRAP.set(None);
        assert_eq!(got, layout(), "trap after {skip} clones");
    }
    let mut panicked_runs = 0;
    for skip in 0..2 * layout().len() as u32 {
        let mut map = build_map(&layout());
        let shared = map.clone();
        let mut it = map.iter_mut();
        TRAP.set(Some((Kind::Clone, skip)));
        let mut yielded = 0;
        // After a caught panic: the length the iterator then reported, and what it had
        // yielded by then.
        let mut after_panic = None;
        loop {
            let promised = it.len();
            match panic::catch_unwind(AssertUnwindSafe(|| it.next().is_some())) {
                Ok(true) => yielded += 1,
                Ok(false) => {
                    assert_eq!(promised, 0);
                    break;
                }
                Err(_) => {
                    assert!(after_panic.is_none(), "one trap, one panic");
                    after_panic = Some((it.len(), yielded));
                }
            }
        }
        assert_eq!(it.len(), 0);
        TRAP.set(None);
        panicked_runs += usize::from(after_panic.is_some());
        match after_panic {
            Some((left, before)) => {
                assert_eq!(yielded - before, left, "trap after {skip} clones");
                assert!(yielded < layout().len());
            }
            None => assert_eq!(yielded, layout().len()),
        }
        assert_holds(&map, &layout());
        assert_holds(&shared, &layout());
    }
    assert!(panicked_runs > 0, "no clone panicked");
}

/// `insert_if_changed` compares the old value with the new one (`Eq` of values) before it
/// changes anything: a panic there, or in the key's `Hash`, `Eq` or a `Clone` of a shared
/// path, leaves every version as it was.
#[test]
fn panics_mid_insert_if_changed_leave_maps_intact() {
    for (hash, id, n, changes) in [
        (65, 100, 65, false),                // the same value: compared, nothing changes
        (COLLIDING, 2, 99, true),            // a new value in the collision node
        (COLLIDING ^ (1 << 30), 9, 9, true), // a new key
    ] {
        let op = move |map: &mut Map| {
            let len = map.len();
            let changed = map.insert_if_changed(key(hash, id), val(n));
            assert_eq!(changed, changes, "({hash:#x}, {id})");
            assert_eq!(map.len(), len + usize::from(changes && id == 9));
        };
        let [unique, shared] = every_kind_and_sharing(&layout(), &op);
        assert!(
            unique[0] >= 1 && shared[0] >= 1,
            "({hash:#x}, {id}) never hashed"
        );
        if id != 9 {
            assert!(
                unique[1] >= 2,
                "({hash:#x}, {id}): the values were not compared"
            );
        }
    }
}

/// Map equality and `diff` call `Eq` (and `Hash`, for maps that share nothing): a panic
/// there leaves both maps as they were.
#[test]
fn panics_mid_eq_and_diff_leave_both_maps_intact() {
    let base = build_map(&layout());
    let derived = base
        .update(key(COLLIDING, 20), val(20))
        .update(key(65, 100), val(7))
        .without(&key(33, 100));
    let other = build_map(&other_entries());
    for theirs in [&base, &derived, &other] {
        let theirs_before = contents(theirs);
        let same = theirs_before == layout();
        let check = |map: &Map, before: &Contents| {
            assert_holds(map, before);
            assert_holds(theirs, &theirs_before);
        };
        let eq = |map: &mut Map| assert_eq!(*map == *theirs, same);
        let diff = |map: &mut Map| {
            let items = map.diff(theirs).count();
            assert_eq!(items == 0, same);
        };
        let from_base = || base.clone();
        let makers: [&dyn Fn() -> Map; 2] = [&fresh(layout()), &from_base];
        let mut panics = 0;
        for (make, shared) in makers.into_iter().zip([false, true]) {
            for op in [&eq as &dyn Fn(&mut Map), &diff] {
                for kind in [Kind::Hash, Kind::Eq] {
                    panics += panic_at_each_call(kind, make, shared, op, &check).0;
                }
            }
        }
        assert!(panics >= 4, "user code was called: {panics}");
    }
}

/// A `diff` iterator whose `Eq` panicked can go on: a caught panic repeats no item and
/// invents none, and the items it yields before and after are each a true difference.
#[test]
fn a_diff_resumed_after_a_panic_yields_only_true_differences_once() {
    quiet_traps();
    let old = build_map(&layout());
    let new = old
        .update(key(COLLIDING, 20), val(20))
        .update(key(65, 100), val(7))
        .update(key(2, 100), val(2))
        .without(&key(33, 100));
    // (key, old value, new value) of every difference.
    let truth: BTreeMap<(u32, u64), (Option<u64>, Option<u64>)> = [
        ((COLLIDING, 20), (None, Some(20))),
        ((65, 100), (Some(65), Some(7))),
        ((33, 100), (Some(33), None)),
    ]
    .into();
    let mut resumed = 0;
    for countdown in 0..8 {
        let mut diff = old.diff(&new);
        TRAP.set(Some((Kind::Eq, countdown)));
        let mut seen = BTreeMap::new();
        let mut panics = 0;
        loop {
            match panic::catch_unwind(AssertUnwindSafe(|| diff.next())) {
                Ok(Some(item)) => {
                    let (k, change) = match item {
                        hamt::DiffItem::Added(k, v) => (k, (None, Some(v.n))),
                        hamt::DiffItem::Removed(k, v) => (k, (Some(v.n), None)),
                        hamt::DiffItem::Changed { key, old, new } => {
                            (key, (Some(old.n), Some(new.n)))
                        }
                    };
                    assert_eq!(
                        truth.get(&(k.hash, k.id)),
                        Some(&change),
                        "countdown {countdown}"
                    );
                    assert!(seen.insert((k.hash, k.id), change).is_none(), "repeated");
                }
                Ok(None) => break,
                Err(_) => panics += 1,
            }
            assert!(panics <= 1, "one trap, one panic");
        }
        TRAP.set(None);
        if panics == 0 {
            assert_eq!(
                seen, truth,
                "countdown {countdown}: no panic, so every difference"
            );
        }
        resumed += panics;
        assert_holds(&old, &layout());
    }
    assert!(resumed >= 2, "the values were compared: {resumed}");
}

/// Closures handed to the map (`and_modify`, `or_insert_with`, `for_each_value_mut`) that
/// panic before touching their value leave the map as it was (or, for a walk, with the
/// values visited so far changed).
#[test]
fn panicking_closures_leave_maps_intact() {
    let modify = |map: &mut Map| {
        let _ = map.entry(key(COLLIDING, 2)).and_modify(|v| {
            spring(Kind::Closure);
            v.n += 1000;
        });
    };
    let insert_with = |map: &mut Map| {
        map.entry(key(COLLIDING, 40)).or_insert_with(|| {
            spring(Kind::Closure);
            val(40)
        });
    };
    for shared in [false, true] {
        for op in [&modify as &dyn Fn(&mut Map), &insert_with] {
            let (panics, _) =
                panic_at_each_call(Kind::Closure, &fresh(layout()), shared, op, &unchanged);
            assert_eq!(panics, 1);
        }
        let each = |map: &mut Map| {
            map.for_each_value_mut(|_, v| {
                spring(Kind::Closure);
                v.n += 1000;
            });
        };
        // Every value visited so far is changed; none is lost (the ids are all kept, so the
        // check of `retain`'s partial walks applies with no entry rejected).
        let visited = |map: &Map, before: &Contents| {
            map.check_invariants();
            let now = contents(map);
            assert_eq!(now.len(), before.len());
            for (entry, &n) in &now {
                let old = before[entry];
                assert!(n == old || n == old + 1000, "{entry:?} => {n}");
            }
        };
        let (panics, done) =
            panic_at_each_call(Kind::Closure, &fresh(layout()), shared, &each, &visited);
        assert_eq!(panics as usize, layout().len());
        let all: Contents = layout().into_iter().map(|(e, n)| (e, n + 1000)).collect();
        assert_holds(&done, &all);
    }
}

/// A value whose `Drop` panics when armed, and whose instances are tracked: dropped at most
/// once, and each one dropped in the end.
#[derive(Debug)]
struct TrackedBomb {
    armed: bool,
    _alive: Tracked,
}

impl Clone for TrackedBomb {
    /// A copy is never armed.
    fn clone(&self) -> Self {
        TrackedBomb {
            armed: false,
            _alive: self._alive.clone(),
        }
    }
}

impl Drop for TrackedBomb {
    fn drop(&mut self) {
        if self.armed {
            panic::panic_any(TrapFired);
        }
    }
}

fn tracked_bomb(i: u32, armed_at: u32) -> TrackedBomb {
    TrackedBomb {
        armed: i == armed_at,
        _alive: LEDGER.with(|ledger| ledger.track(u64::from(i))),
    }
}

fn live() -> usize {
    LEDGER.with(|ledger| ledger.live())
}

/// A `Drop` that panics while `retain`, `clear` (of a shared map too) or an owning iterator
/// drops entries: the map stays valid and says what it holds, nothing is dropped twice, and
/// every other value is dropped by the time the map is.
#[test]
fn drops_that_panic_leave_maps_valid_and_leak_nothing() {
    quiet_traps();
    let baseline = live();
    for armed_at in [0, 37, 99] {
        let make = || -> HamtMap<u32, TrackedBomb> {
            (0..100).map(|i| (i, tracked_bomb(i, armed_at))).collect()
        };
        // `retain` rejecting the odd keys (and the armed one).
        let mut map = make();
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            map.retain(|&k, _| k % 2 == 0 && k != armed_at);
        }));
        assert!(result.is_err());
        map.check_invariants();
        assert_eq!(map.len(), map.iter().count());
        assert!(
            !map.contains_key(&armed_at),
            "the value whose drop panicked is gone"
        );
        // Entries the closure kept are all there; the rejected ones after the panic may be too.
        assert!(
            (0..100)
                .filter(|k| k % 2 == 0 && *k != armed_at)
                .all(|k| map.contains_key(&k)),
            "lost a kept entry"
        );
        assert!(map.iter().all(|(&k, _)| k < 100));
        map.insert(1000, tracked_bomb(1000, u32::MAX));
        map.check_invariants();
        drop(map);
        assert_eq!(live(), baseline, "retain (armed at {armed_at}) leaked");

        // `clear` of a map of its own: the panic reaches the caller, the map is empty.
        let mut map = make();
        assert!(panic::catch_unwind(AssertUnwindSafe(|| map.clear())).is_err());
        assert!(map.is_empty());
        assert_eq!(map.iter().count(), 0);
        map.check_invariants();
        drop(map);
        assert_eq!(live(), baseline, "clear (armed at {armed_at}) leaked");

        // `clear` of a map shared with a clone: the clone keeps its values.
        let mut map = make();
        let clone = map.clone();
        map.clear();
        assert!(map.is_empty());
        assert_eq!(clone.len(), 100);
        clone.check_invariants();
        let result = panic::catch_unwind(AssertUnwindSafe(move || drop(clone)));
        assert!(result.is_err());
        assert_eq!(
            live(),
            baseline,
            "the last clone (armed at {armed_at}) leaked"
        );

        // An owning iterator dropped part-way (the armed value disarmed if it was taken).
        let map = make();
        let mut iter = map.into_iter();
        let mut taken = Vec::new();
        for _ in 0..10 {
            let (k, mut v) = iter.next().unwrap();
            v.armed = false;
            taken.push(k);
        }
        let result = panic::catch_unwind(AssertUnwindSafe(move || drop(iter)));
        assert_eq!(result.is_err(), !taken.contains(&armed_at));
        assert_eq!(
            live(),
            baseline,
            "a part-used iterator (armed at {armed_at}) leaked"
        );
    }
}
