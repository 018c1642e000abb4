//! The `arbitrary`, `proptest` and `quickcheck` integrations: generated maps are valid and
//! hold exactly the entries they were generated from, generation is deterministic, and
//! shrinking makes maps strictly smaller while still reproducing a planted failure.
#![cfg(any(feature = "arbitrary", feature = "proptest", feature = "quickcheck"))]

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};

use hamt::HamtMap;

/// Asserts that `map` is valid and holds exactly `expected`.
fn assert_holds<K, V, S>(map: &HamtMap<K, V, S>, expected: &HashMap<K, V>)
where
    K: Hash + Eq + Debug,
    V: PartialEq + Debug,
    S: BuildHasher,
{
    map.check_invariants();
    assert_eq!(map.len(), expected.len(), "len of {map:?}");
    for (k, v) in expected {
        assert_eq!(map.get(k), Some(v), "entry {k:?} of {map:?}");
    }
}

/// Deterministic pseudo-random bytes (xorshift), so the tests do not depend on a seed.
#[cfg(any(feature = "arbitrary", feature = "proptest"))]
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

#[cfg(feature = "arbitrary")]
mod with_arbitrary {
    use std::collections::HashMap;
    use std::collections::hash_map::RandomState;

    use arbitrary::{Arbitrary, Unstructured};
    use hamt::HamtMap;
    use hamt::testing::{HashKey, IdentityState};

    use super::{assert_holds, bytes};

    const INPUTS: u64 = if cfg!(miri) { 4 } else { 200 };

    #[test]
    fn same_bytes_give_equal_maps() {
        for seed in 0..INPUTS {
            let data = bytes(seed, 64 + 16 * seed as usize);
            let a = HamtMap::<u16, u32>::arbitrary(&mut Unstructured::new(&data)).unwrap();
            // A different `RandomState`: another hash function, the same entries.
            let b = HamtMap::<u16, u32>::arbitrary(&mut Unstructured::new(&data)).unwrap();
            assert_eq!(a, b, "seed {seed}");
            let c = HamtMap::<u16, u32, IdentityState>::arbitrary(&mut Unstructured::new(&data))
                .unwrap();
            assert_eq!(c.len(), a.len());
            assert!(a.iter().all(|(k, v)| c.get(k) == Some(v)), "seed {seed}");
        }
    }

    /// `HashMap`'s `Arbitrary` reads entries the same way, so from the same bytes it gives
    /// the source entries to compare with.
    #[test]
    fn maps_hold_the_entries_read() {
        for seed in 0..INPUTS {
            let data = bytes(seed, 32 * seed as usize);
            let map =
                HamtMap::<u8, u64, RandomState>::arbitrary(&mut Unstructured::new(&data)).unwrap();
            let entries = HashMap::<u8, u64>::arbitrary(&mut Unstructured::new(&data)).unwrap();
            assert_holds(&map, &entries);

            let map = HamtMap::<u8, u64>::arbitrary_take_rest(Unstructured::new(&data)).unwrap();
            let entries =
                HashMap::<u8, u64>::arbitrary_take_rest(Unstructured::new(&data)).unwrap();
            assert_holds(&map, &entries);
        }
    }

    /// Bytes that are mostly 1 and otherwise 0 make long maps of `HashKey`s with few
    /// distinct hashes sharing most of their bits: collision nodes and deep paths.
    #[test]
    fn chosen_hashes_make_valid_collision_tries() {
        let mut deep = false;
        for seed in 0..INPUTS {
            let data: Vec<u8> = bytes(seed, 512)
                .iter()
                .map(|b| u8::from(*b < 200))
                .collect();
            let map = HamtMap::<HashKey, u8, IdentityState>::arbitrary_take_rest(
                Unstructured::new(&data),
            )
            .unwrap();
            let entries =
                HashMap::<HashKey, u8>::arbitrary_take_rest(Unstructured::new(&data)).unwrap();
            assert_holds(&map, &entries);
            let mut hashes: Vec<u32> = entries.keys().map(|k| k.hash).collect();
            hashes.sort_unstable();
            deep |= hashes.windows(2).any(|pair| pair[0] == pair[1]);
        }
        assert!(deep, "no input produced two keys with one hash");
    }

    #[test]
    fn hash_keys_read_both_fields() {
        let data = bytes(7, 12);
        let key = HashKey::arbitrary(&mut Unstructured::new(&data)).unwrap();
        let mut u = Unstructured::new(&data);
        let hash = u32::arbitrary(&mut u).unwrap();
        let id = u64::arbitrary(&mut u).unwrap();
        assert_eq!(key, HashKey::new(hash, id));
        assert_eq!(HashKey::size_hint(0), (12, Some(12)));
    }

    #[test]
    fn empty_input_gives_the_empty_map() {
        let map = HamtMap::<u8, u8>::arbitrary(&mut Unstructured::new(&[])).unwrap();
        assert!(map.is_empty());
        map.check_invariants();
    }
}

#[cfg(feature = "proptest")]
mod with_proptest {
    use std::collections::HashMap;

    use hamt::HamtMap;
    use hamt::proptest::{hamt_map, hamt_map_with_hasher};
    use hamt::testing::MaskedState;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestError, TestRunner};

    use super::{assert_holds, bytes};

    const CASES: u32 = if cfg!(miri) { 2 } else { 64 };
    /// Bounds the maps of the planted failures, which shrink through hundreds of versions.
    const MAX_LEN: usize = if cfg!(miri) { 16 } else { 60 };

    fn runner() -> TestRunner {
        runner_with(CASES)
    }

    /// A runner that stops at the first failure: planted failures use more cases, which cost
    /// nothing once one fails.
    fn runner_with(cases: u32) -> TestRunner {
        TestRunner::new_with_rng(
            Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            },
            TestRunner::deterministic().new_rng(),
        )
    }

    fn entries<K: Clone + Eq + std::hash::Hash, V: Clone, S>(
        map: &HamtMap<K, V, S>,
    ) -> HashMap<K, V> {
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    #[test]
    fn generated_maps_are_valid_and_in_range() {
        let mut runner = runner();
        let strategy = hamt_map(any::<u16>(), any::<u8>(), 3..40);
        runner
            .run(&strategy, |map| {
                map.check_invariants();
                prop_assert!((3..40).contains(&map.len()));
                Ok(())
            })
            .unwrap();
        let collisions =
            hamt_map_with_hasher(any::<u64>(), any::<u8>(), 20..=60, MaskedState::new(3));
        runner
            .run(&collisions, |map| {
                map.check_invariants();
                prop_assert!((20..=60).contains(&map.len()));
                Ok(())
            })
            .unwrap();
        runner
            .run(&any::<HamtMap<u8, String>>(), |map| {
                map.check_invariants();
                Ok(())
            })
            .unwrap();
    }

    /// The planted failure "a map has fewer than 5 entries" must shrink to a map of exactly
    /// 5 entries, with every value shrunk to 0.
    #[test]
    fn shrinks_to_the_smallest_failing_size() {
        let strategy = hamt_map(any::<u32>(), any::<u8>(), 0..MAX_LEN);
        let result = runner_with(64).run(&strategy, |map| {
            prop_assert!(map.len() < 5);
            Ok(())
        });
        let Err(TestError::Fail(_, minimal)) = result else {
            panic!("the planted failure was not found: {result:?}");
        };
        minimal.check_invariants();
        assert_eq!(minimal.len(), 5, "{minimal:?}");
        assert!(minimal.values().all(|v| *v == 0), "{minimal:?}");
    }

    /// A failure caused by one entry shrinks to that entry alone, with its key shrunk to the
    /// boundary.
    #[test]
    fn shrinks_to_the_one_entry_that_matters() {
        let strategy = hamt_map(0..100_000u32, any::<u8>(), 1..MAX_LEN);
        let result = runner_with(64).run(&strategy, |map| {
            prop_assert!(map.keys().all(|k| *k < 1000));
            Ok(())
        });
        let Err(TestError::Fail(_, minimal)) = result else {
            panic!("the planted failure was not found: {result:?}");
        };
        minimal.check_invariants();
        assert_eq!(entries(&minimal), HashMap::from([(1000, 0)]));
    }

    /// Driving the value tree by hand: while entries are being removed, every accepted
    /// simplification makes the map exactly one entry smaller and keeps only entries of the
    /// original; `complicate` puts a removed entry back; nothing goes below the minimum.
    #[test]
    fn each_removal_step_drops_one_entry() {
        let strategy = hamt_map(any::<u16>(), any::<u16>(), 4..30);
        let mut runner = runner();
        for _ in 0..CASES {
            let mut tree = strategy.new_tree(&mut runner).unwrap();
            let original = tree.current();
            let source = entries(&original);
            if original.len() > 4 {
                // A removal after which the test passed: the entry comes back.
                assert!(tree.simplify());
                assert_eq!(tree.current().len(), original.len() - 1);
                assert!(tree.complicate());
                assert_eq!(tree.current(), original);
            }
            let mut len = original.len();
            while len > 4 {
                assert!(tree.simplify());
                let map = tree.current();
                map.check_invariants();
                assert_eq!(map.len(), len - 1);
                assert!(map.iter().all(|(k, v)| source.get(k) == Some(v)));
                len -= 1;
            }
            while tree.simplify() {
                let map = tree.current();
                map.check_invariants();
                assert_eq!(map.len(), 4, "shrank below the size range");
            }
        }
    }

    /// Keys from a space barely larger than the map: shrinking keys collides all the time.
    /// Whatever a test answers, every map offered stays valid and within the size range.
    #[test]
    fn key_shrinking_never_merges_entries() {
        let strategy = hamt_map(0..40u8, any::<u8>(), 25..=30);
        let mut runner = runner();
        for case in 0..u64::from(CASES) {
            let answers = bytes(case + 1, if cfg!(miri) { 100 } else { 4096 });
            let mut tree = strategy.new_tree(&mut runner).unwrap();
            let mut steps = 0;
            let mut moved = tree.simplify();
            while moved && steps < answers.len() {
                let map = tree.current();
                map.check_invariants();
                assert!((25..=30).contains(&map.len()), "{} entries", map.len());
                let fails = !answers[steps].is_multiple_of(3);
                moved = if fails {
                    tree.simplify()
                } else {
                    tree.complicate() || tree.simplify()
                };
                steps += 1;
            }
        }
    }

    #[test]
    fn too_few_distinct_keys_is_an_error_not_a_hang() {
        let strategy = hamt_map(0..3u8, any::<u8>(), 5..10);
        let error = strategy.new_tree(&mut runner()).err().unwrap();
        assert!(error.to_string().contains("distinct keys"), "{error}");
    }

    #[test]
    #[should_panic(expected = "empty size range")]
    fn empty_size_range_panics() {
        let _ = hamt_map(any::<u8>(), any::<u8>(), 3..3);
    }

    #[test]
    fn generated_entries_come_from_the_strategies() {
        let strategy = hamt_map(10..20u8, 100..200u32, 0..=10);
        let mut runner = runner();
        for _ in 0..CASES {
            let map = strategy.new_tree(&mut runner).unwrap().current();
            let expected: HashMap<u8, u32> = map
                .iter()
                .filter(|(k, v)| (10..20).contains(*k) && (100..200).contains(*v))
                .map(|(k, v)| (*k, *v))
                .collect();
            assert_holds(&map, &expected);
        }
    }
}

#[cfg(feature = "quickcheck")]
mod with_quickcheck {
    use std::collections::HashMap;

    use hamt::HamtMap;
    use quickcheck::{Arbitrary, Gen};

    use super::assert_holds;

    const SEEDS: u64 = if cfg!(miri) { 2 } else { 100 };
    /// The generator's size: how many entries maps get, at most.
    const SIZE: usize = if cfg!(miri) { 12 } else { 50 };

    /// What shrinking must decrease: the entry count, then the sum of keys and values.
    fn measure(map: &HamtMap<u8, u8>) -> (usize, u32) {
        let sum = map.iter().map(|(k, v)| u32::from(*k) + u32::from(*v)).sum();
        (map.len(), sum)
    }

    /// quickcheck's `HashMap` reads a `Vec` of entries, as `HamtMap` does: from the same seed
    /// both hold the same entries.
    #[test]
    fn generated_maps_hold_the_generated_entries() {
        for seed in 0..SEEDS {
            let map = HamtMap::<u16, i32>::arbitrary(&mut Gen::from_size_and_seed(SIZE, seed));
            let entries = HashMap::<u16, i32>::arbitrary(&mut Gen::from_size_and_seed(SIZE, seed));
            assert_holds(&map, &entries);
        }
    }

    #[test]
    fn shrink_yields_strictly_smaller_maps() {
        for seed in 0..SEEDS {
            let map = HamtMap::<u8, u8>::arbitrary(&mut Gen::from_size_and_seed(SIZE, seed));
            let candidates: Vec<_> = map.shrink().collect();
            if map.is_empty() {
                assert!(candidates.is_empty());
                continue;
            }
            assert!(candidates[0].is_empty(), "the empty map comes first");
            for candidate in &candidates {
                candidate.check_invariants();
                assert!(
                    measure(candidate) < measure(&map),
                    "{candidate:?} from {map:?}"
                );
                if candidate.len() < map.len() {
                    assert!(candidate.iter().all(|(k, v)| map.get(k) == Some(v)));
                }
            }
            // Every single entry can go on its own.
            for key in map.keys() {
                let without = map.without(key);
                assert!(candidates.contains(&without), "no candidate without {key}");
            }
        }
    }

    /// quickcheck's own algorithm, replayed: move to the first candidate that still fails
    /// until none does.
    fn minimise(
        mut map: HamtMap<u8, u8>,
        fails: impl Fn(&HamtMap<u8, u8>) -> bool,
    ) -> HamtMap<u8, u8> {
        assert!(fails(&map));
        while let Some(smaller) = map.shrink().find(|candidate| fails(candidate)) {
            assert!(measure(&smaller) < measure(&map));
            map = smaller;
        }
        map
    }

    #[test]
    fn shrinking_reproduces_a_planted_failure() {
        let wanted = if cfg!(miri) { 1 } else { 20 };
        let mut reproduced = 0;
        for seed in 0..1000 {
            if reproduced == wanted {
                break;
            }
            let map = HamtMap::<u8, u8>::arbitrary(&mut Gen::from_size_and_seed(SIZE, seed));
            if map.len() < 5 {
                continue;
            }
            let minimal = minimise(map, |m| m.len() >= 5);
            minimal.check_invariants();
            assert_eq!(minimal.len(), 5, "{minimal:?}");
            assert!(minimal.values().all(|v| *v == 0), "{minimal:?}");
            reproduced += 1;
        }
        assert_eq!(reproduced, wanted);
    }

    #[test]
    fn shrinking_isolates_the_entry_that_matters() {
        let keys = if cfg!(miri) { 0..34u8 } else { 0..100u8 };
        let map: HamtMap<u8, u8> = keys.map(|k| (k, k.wrapping_mul(7))).collect();
        let minimal = minimise(map, |m| m.iter().any(|(k, v)| *k >= 30 && *v >= 3));
        assert_eq!(
            minimal.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            [(30, 3)]
        );
    }
}
