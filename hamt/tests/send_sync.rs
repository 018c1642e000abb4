//! Auto traits: maps and their iterators are `Send + Sync` for `Send + Sync` contents (checked
//! at compile time), and versions of one map can be used and dropped on different threads.

mod common;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::rc::Rc;
use std::sync::Arc;
use std::thread;

use common::check_against_model;
use hamt::testing::{IdentityState, MaskedState};
use hamt::{Diff, DiffItem, Entry, HamtMap, IntoIter, Iter, IterMut, Keys, Values, ValuesMut};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

/// Compiles only if the types are `Send + Sync`; the test body just names them.
#[test]
fn maps_and_iterators_are_send_and_sync() {
    assert_send_sync::<HamtMap<String, Vec<u8>>>();
    assert_send_sync::<HamtMap<Arc<str>, u64, MaskedState>>();
    assert_send_sync::<HamtMap<u64, u64, IdentityState>>();
    assert_send_sync::<Iter<'static, String, Vec<u8>>>();
    assert_send_sync::<Keys<'static, String, Vec<u8>>>();
    assert_send_sync::<Values<'static, String, Vec<u8>>>();
    assert_send_sync::<IntoIter<String, Vec<u8>>>();
    assert_send_sync::<IterMut<'static, String, Vec<u8>>>();
    assert_send_sync::<ValuesMut<'static, String, Vec<u8>>>();
    assert_send_sync::<Diff<'static, String, Vec<u8>>>();
    assert_send_sync::<DiffItem<'static, String, Vec<u8>>>();
    assert_send::<Entry<'static, String, Vec<u8>, RandomState>>();
}

/// A trait with an item that is ambiguous exactly when `T: Send`, so naming the item compiles
/// only for types that are not `Send` (the usual trick, written out here).
trait AmbiguousIfSend<A> {
    fn some_item() {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}

trait AmbiguousIfSync<A> {
    fn some_item() {}
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}

/// Maps of `Rc` (shared, non-atomic reference counts) must be neither `Send` nor `Sync`.
#[test]
fn maps_of_rc_are_neither_send_nor_sync() {
    <HamtMap<Rc<u8>, u8> as AmbiguousIfSend<_>>::some_item();
    <HamtMap<u8, Rc<u8>> as AmbiguousIfSync<_>>::some_item();
    <IntoIter<u8, Rc<u8>> as AmbiguousIfSend<_>>::some_item();
    <Iter<'static, Rc<u8>, u8> as AmbiguousIfSync<_>>::some_item();
}

#[test]
fn a_clone_sent_to_another_thread_is_independent() {
    let mut map: HamtMap<u64, String, MaskedState> = HamtMap::with_hasher(MaskedState::new(8));
    let mut model = HashMap::new();
    for i in 0..2000 {
        map.insert(i, i.to_string());
        model.insert(i, i.to_string());
    }
    for round in 0..4u64 {
        let sent = map.clone();
        let sent_model = model.clone();
        let worker = thread::spawn(move || {
            let (mut sent, mut sent_model) = (sent, sent_model);
            for i in (round..2000).step_by(3) {
                sent.insert(i, format!("worker {round}"));
                sent_model.insert(i, format!("worker {round}"));
                sent.remove(&(i + 1));
                sent_model.remove(&(i + 1));
            }
            check_against_model(&sent, &sent_model);
            (sent, sent_model)
        });
        for i in (round..2000).step_by(5) {
            map.insert(i, format!("main {round}"));
            model.insert(i, format!("main {round}"));
        }
        let (sent, sent_model) = worker.join().expect("worker thread panicked");
        check_against_model(&map, &model);
        check_against_model(&sent, &sent_model);
        // The worker's version is dropped here, on this thread, sharing nodes with `map`.
    }
}

#[test]
fn shared_reads_and_drops_from_many_threads() {
    let map: HamtMap<u64, u64> = (0..5000).map(|i| (i, i * 2)).collect();
    let model: HashMap<u64, u64> = (0..5000).map(|i| (i, i * 2)).collect();
    thread::scope(|scope| {
        for t in 0..4u64 {
            let (map, model) = (&map, &model);
            scope.spawn(move || {
                let mut mine = map.clone();
                for i in (t..5000).step_by(4) {
                    assert_eq!(map.get(&i), Some(&(i * 2)));
                    mine.remove(&i);
                }
                assert_eq!(mine.len(), 5000 - map.len() / 4);
                check_against_model(map, model);
            });
        }
    });
    check_against_model(&map, &model);
}
