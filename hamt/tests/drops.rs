//! Every key and value created is dropped exactly once: after each operation and once all
//! versions are gone, the live count is back where it should be. A double drop fails on the
//! spot (see `Tracked`).

mod common;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use common::{Ledger, Tracked};
use hamt::testing::MaskedState;
use hamt::{Entry, HamtMap};

type Map<S> = HamtMap<Tracked, Tracked, S>;

/// A ledger and the map of `0..n` (key `i`, value `10 * i`) tracked by it.
struct Fixture<S> {
    ledger: Arc<Ledger>,
    map: Map<S>,
}

impl<S: BuildHasher + Clone> Fixture<S> {
    fn new(hasher: S, n: u64) -> Self {
        let ledger = Ledger::new();
        let mut map = HamtMap::with_hasher(hasher);
        for i in 0..n {
            assert!(map.insert(ledger.track(i), ledger.track(10 * i)).is_none());
        }
        map.check_invariants();
        Fixture { ledger, map }
    }

    fn t(&self, value: u64) -> Tracked {
        self.ledger.track(value)
    }

    /// With `map` the only version alive, exactly its keys and values are alive.
    fn assert_sole_version(&self) {
        self.map.check_invariants();
        assert_eq!(
            self.ledger.live(),
            2 * self.map.len(),
            "live instances != entries"
        );
    }

    /// Drops the map and checks that nothing is left alive.
    fn finish(self) {
        let Fixture { ledger, map } = self;
        drop(map);
        assert_eq!(
            ledger.live(),
            0,
            "instances left alive after dropping every map"
        );
    }
}

/// Runs `scenario` with a good hasher and with 3 hash bits (collision nodes everywhere).
fn with_each_hasher(scenario: fn(Fixture<RandomState>), masked: fn(Fixture<MaskedState>)) {
    scenario(Fixture::new(RandomState::new(), 300));
    masked(Fixture::new(MaskedState::new(3), 300));
}

macro_rules! for_each_hasher {
    ($name:ident, $body:ident) => {
        #[test]
        fn $name() {
            with_each_hasher($body::<RandomState>, $body::<MaskedState>);
        }
    };
}

fn clone_and_drop_versions<S: BuildHasher + Clone>(f: Fixture<S>) {
    let live = f.ledger.live();
    let clones: Vec<_> = (0..5).map(|_| f.map.clone()).collect();
    assert_eq!(f.ledger.live(), live, "clone copies no entries");
    drop(clones);
    f.assert_sole_version();
    f.finish();
}
for_each_hasher!(clone_and_drop_balances, clone_and_drop_versions);

fn insert_replace_remove<S: BuildHasher + Clone>(mut f: Fixture<S>) {
    // In place, on the sole version.
    for i in 0..50 {
        let old = f.map.insert(f.t(i), f.t(i + 1)).expect("present");
        assert_eq!(old.value, 10 * i);
        drop(old);
        assert!(f.map.insert(f.t(1000 + i), f.t(0)).is_none());
        assert_eq!(
            f.map.remove(&f.t(100 + i)).map(|v| v.value),
            Some(10 * (100 + i))
        );
        assert!(f.map.remove(&f.t(5000)).is_none());
        f.assert_sole_version();
    }
    // Path copies, with a snapshot alive; then the snapshot goes.
    for i in 0..50 {
        let snapshot = f.map.clone();
        f.map.insert(f.t(200 + i), f.t(1));
        f.map.insert(f.t(2000 + i), f.t(1));
        f.map.remove_entry(&f.t(i));
        assert_eq!(snapshot.get(&f.t(i)).map(|v| v.value), Some(i + 1));
        drop(snapshot);
        f.assert_sole_version();
    }
    f.finish();
}
for_each_hasher!(insert_replace_remove_balance, insert_replace_remove);

fn update_and_without<S: BuildHasher + Clone>(mut f: Fixture<S>) {
    let mut versions = vec![f.map.clone()];
    for i in 0..40 {
        let last = versions.last().unwrap();
        let next = if i % 2 == 0 {
            last.update(f.t(i * 7), f.t(i))
        } else {
            last.without(&f.t(i * 5))
        };
        versions.push(next);
    }
    f.map = versions.pop().unwrap();
    drop(versions);
    f.assert_sole_version();
    f.finish();
}
for_each_hasher!(update_and_without_balance, update_and_without);

fn union_and_merge<S: BuildHasher + Clone>(mut f: Fixture<S>) {
    let mut other = HamtMap::with_hasher(f.map.hasher().clone());
    for i in 250..400 {
        other.insert(f.t(i), f.t(1));
    }
    let derived = f.map.update(f.t(999), f.t(9)).without(&f.t(3));
    for theirs in [&other, &derived] {
        let united = f.map.union(theirs);
        assert_eq!(
            united.get(&f.t(260)).map(|v| v.value),
            Some(2600),
            "self wins"
        );
        drop(united);
    }
    f.map.merge(&other);
    f.map.merge(&derived);
    drop((other, derived));
    assert_eq!(f.map.len(), 401);
    f.assert_sole_version();
    f.finish();
}
for_each_hasher!(union_and_merge_balance, union_and_merge);

fn retain<S: BuildHasher + Clone>(mut f: Fixture<S>) {
    f.map.retain(|k, _| k.value % 3 != 0);
    f.assert_sole_version();
    let snapshot = f.map.clone();
    f.map.retain(|k, v| {
        *v = Tracked::clone(v);
        k.value % 2 == 0
    });
    assert_eq!(snapshot.len(), 200);
    drop(snapshot);
    f.assert_sole_version();
    f.map.for_each_value_mut(|_, v| *v = Tracked::clone(v));
    f.assert_sole_version();
    f.finish();
}
for_each_hasher!(retain_balances, retain);

fn into_iter_partly_consumed<S: BuildHasher + Clone>(f: Fixture<S>) {
    // From a shared map: entries are cloned as they are taken.
    let taken: Vec<_> = f.map.clone().into_iter().take(100).collect();
    assert_eq!(taken.len(), 100);
    drop(taken);
    f.assert_sole_version();
    // From a partly shared map, then from the sole version itself.
    let snapshot = f.map.clone();
    let edited = f.map.update(f.t(5000), f.t(0));
    let mut iter = edited.into_iter();
    assert_eq!(iter.by_ref().take(150).count(), 150);
    drop(iter);
    drop(snapshot);
    f.assert_sole_version();
    let Fixture { ledger, map } = f;
    let mut iter = map.into_iter();
    let first: Vec<_> = iter.by_ref().take(10).collect();
    assert_eq!(
        ledger.live(),
        2 * 300,
        "a unique map's entries are moved, not cloned"
    );
    drop(iter);
    assert_eq!(ledger.live(), 2 * first.len());
    drop(first);
    assert_eq!(ledger.live(), 0);
}
for_each_hasher!(
    into_iter_partly_consumed_balances,
    into_iter_partly_consumed
);

fn entry_api<S: BuildHasher + Clone>(mut f: Fixture<S>) {
    for i in 0..60 {
        let snapshot = (i % 2 == 0).then(|| f.map.clone());
        let (k1, k2, k3) = (f.t(i), f.t(1000 + i), f.t(i + 100));
        let fresh = f.t(7);
        f.map
            .entry(k1)
            .and_modify(|v| *v = fresh)
            .or_insert_with(|| unreachable!());
        let seven = f.t(7);
        *f.map.entry(k2).or_insert(seven) = f.t(8);
        if let Entry::Occupied(entry) = f.map.entry(k3) {
            assert_eq!(entry.remove_entry().1.value, 10 * (i + 100));
        }
        let k4 = f.t(9999);
        if let Entry::Vacant(entry) = f.map.entry(k4) {
            assert_eq!(entry.into_key().value, 9999);
        }
        drop(snapshot);
        f.assert_sole_version();
    }
    f.finish();
}
for_each_hasher!(entry_api_balances, entry_api);

fn get_mut_and_insert_if_changed<S: BuildHasher + Clone>(mut f: Fixture<S>) {
    for i in 0..60 {
        let snapshot = f.map.clone();
        *f.map.get_mut(&f.t(i)).unwrap() = f.t(1);
        assert!(!f.map.insert_if_changed(f.t(i), f.t(1)));
        assert!(f.map.insert_if_changed(f.t(i), f.t(2)));
        drop(snapshot);
        f.assert_sole_version();
    }
    f.map.clear();
    assert_eq!(f.ledger.live(), 0);
    f.finish();
}
for_each_hasher!(
    get_mut_and_insert_if_changed_balance,
    get_mut_and_insert_if_changed
);

/// Many versions sharing structure in every combination, dropped in an arbitrary order.
fn tangle_of_versions<S: BuildHasher + Clone>(f: Fixture<S>) {
    let mut versions = vec![f.map.clone()];
    for i in 0..100u64 {
        let base = &versions[(i as usize * 7) % versions.len()];
        let mut next = base.update(f.t(i * 13 % 400), f.t(i));
        next.remove(&f.t(i * 11 % 400));
        if i % 10 == 0 {
            next.merge(&versions[i as usize / 2]);
        }
        versions.push(next);
    }
    let mut order: Vec<usize> = (0..versions.len()).collect();
    common::SplitMix64(99).shuffle(&mut order);
    let mut slots: Vec<Option<_>> = versions.into_iter().map(Some).collect();
    for i in order {
        let version = slots[i].take().unwrap();
        version.check_invariants();
    }
    f.assert_sole_version();
    f.finish();
}
for_each_hasher!(tangle_of_versions_balances, tangle_of_versions);
