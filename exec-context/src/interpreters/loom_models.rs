//! Loom models of the queue core: every interleaving of put, get and close across threads
//! (run with `RUSTFLAGS="--cfg loom" cargo test -p exec-context --release --lib loom`).

use loom::thread;

use super::UnboundPolicy;
use super::fifo::{Fifo, FifoError, Wait};
use super::shareable::Shareable;
use super::sync::Arc;

fn int(n: i128) -> Shareable {
    Shareable::Int(n)
}

/// A producer puts `0..count` (waiting for room as `put_wait` allows) into a FIFO of
/// `maxsize` while the main thread gets `count` items: all arrive, in order, and the FIFO
/// ends empty.
fn stream_in_order(maxsize: usize, count: i128, put_wait: Wait) {
    let fifo = Arc::new(Fifo::new(maxsize));
    let producer = {
        let fifo = fifo.clone();
        thread::spawn(move || {
            for n in 0..count {
                fifo.put(int(n), 0, UnboundPolicy::Replace, put_wait, false)
                    .unwrap();
            }
        })
    };
    let got: Vec<_> = (0..count)
        .map(|_| fifo.get(Wait::Forever).unwrap())
        .collect();
    producer.join().unwrap();
    assert!(got.iter().cloned().eq((0..count).map(int)));
    assert_eq!(fifo.len(), 0);
}

#[test]
fn loom_put_get_hands_over_every_item_in_order() {
    loom::model(|| stream_in_order(1, 2, Wait::Forever));
}

#[test]
fn loom_close_wakes_a_blocked_getter() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(0));
        let getter = {
            let fifo = fifo.clone();
            thread::spawn(move || fifo.get(Wait::Forever))
        };
        fifo.put(int(7), 0, UnboundPolicy::Replace, Wait::Forever, false)
            .unwrap();
        fifo.close(false);
        // The getter took the item, or saw the close only after the item was drained.
        assert_eq!(getter.join().unwrap(), Ok(int(7)));
        assert_eq!(fifo.get(Wait::No), Err(FifoError::Closed));
    });
}

#[test]
fn loom_close_wakes_a_blocked_putter() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(1));
        fifo.put(int(1), 0, UnboundPolicy::Replace, Wait::No, false)
            .unwrap();
        let putter = {
            let fifo = fifo.clone();
            thread::spawn(move || {
                fifo.put(int(2), 0, UnboundPolicy::Replace, Wait::Forever, false)
                    .map(drop)
            })
        };
        fifo.close(false);
        assert_eq!(putter.join().unwrap(), Err(FifoError::Closed));
        assert_eq!(fifo.get(Wait::No), Ok(int(1)));
    });
}

#[test]
fn loom_blocking_send_returns_once_received_or_discarded() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(0));
        let sender = {
            let fifo = fifo.clone();
            thread::spawn(move || {
                // The close may come first: then the put itself fails.
                let receipt = fifo
                    .put(int(5), 0, UnboundPolicy::Replace, Wait::Forever, true)?
                    .expect("a receipt was asked for");
                fifo.await_receipt(&receipt, Wait::Forever, || false)
            })
        };
        let got = fifo.get(Wait::No);
        fifo.close(true);
        let sent = sender.join().unwrap();
        match got {
            Ok(value) => {
                assert_eq!(value, int(5));
                assert_eq!(sent, Ok(()));
            }
            Err(error) => {
                assert_eq!(error, FifoError::Empty);
                assert_eq!(sent, Err(FifoError::Closed));
            }
        }
    });
}

#[test]
fn loom_unbind_races_with_get() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(0));
        fifo.put(int(1), 9, UnboundPolicy::Error, Wait::No, false)
            .unwrap();
        let getter = {
            let fifo = fifo.clone();
            thread::spawn(move || fifo.get(Wait::No))
        };
        fifo.unbind(9);
        let got = getter.join().unwrap();
        assert!(
            got == Ok(int(1)) || got == Err(FifoError::Destroyed),
            "{got:?}"
        );
        assert_eq!(fifo.len(), 0);
    });
}

/// An interpreter releasing its end while another thread of it waits to receive: the flag
/// is set before `interrupt`, and the getter asks it under the lock before each sleep, so it
/// cannot sleep through the interrupt (it fails with `Released`, or took an item first).
#[test]
fn loom_interrupt_wakes_a_getter_whose_interpreter_released() {
    loom::model(|| {
        use super::sync::{AtomicBool, Ordering};
        let fifo = Arc::new(Fifo::new(0));
        let released = Arc::new(AtomicBool::new(false));
        let getter = {
            let (fifo, released) = (fifo.clone(), released.clone());
            thread::spawn(move || {
                fifo.get_unless(Wait::Forever, || released.load(Ordering::SeqCst))
            })
        };
        released.store(true, Ordering::SeqCst);
        fifo.interrupt();
        assert_eq!(getter.join().unwrap(), Err(FifoError::Released));
    });
}

/// The same for a sender waiting for its item to be received: it fails with `Released`
/// and its item is withdrawn.
#[test]
fn loom_interrupt_wakes_a_sender_whose_interpreter_released() {
    loom::model(|| {
        use super::sync::{AtomicBool, Ordering};
        let fifo = Arc::new(Fifo::new(0));
        let released = Arc::new(AtomicBool::new(false));
        let sender = {
            let (fifo, released) = (fifo.clone(), released.clone());
            thread::spawn(move || {
                let receipt = fifo
                    .put(int(1), 0, UnboundPolicy::Replace, Wait::Forever, true)
                    .unwrap()
                    .expect("a receipt");
                fifo.await_receipt(&receipt, Wait::Forever, || released.load(Ordering::SeqCst))
            })
        };
        released.store(true, Ordering::SeqCst);
        fifo.interrupt();
        assert_eq!(sender.join().unwrap(), Err(FifoError::Released));
        assert_eq!(fifo.len(), 0, "withdrawn");
    });
}

#[test]
fn loom_close_alone_wakes_a_blocked_getter() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(0));
        let getter = {
            let fifo = fifo.clone();
            thread::spawn(move || fifo.get(Wait::Forever))
        };
        fifo.close(false);
        assert_eq!(getter.join().unwrap(), Err(FifoError::Closed));
    });
}

#[test]
fn loom_two_getters_two_puts_no_lost_wakeup() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(0));
        let getters: Vec<_> = (0..2)
            .map(|_| {
                let fifo = fifo.clone();
                thread::spawn(move || fifo.get(Wait::Forever).unwrap())
            })
            .collect();
        for n in 0..2 {
            fifo.put(int(n), 0, UnboundPolicy::Replace, Wait::Forever, false)
                .unwrap();
        }
        let mut got: Vec<_> = getters.into_iter().map(|g| g.join().unwrap()).collect();
        got.sort_by_key(|v| format!("{v:?}"));
        assert_eq!(got, [int(0), int(1)]);
    });
}

#[test]
fn loom_two_putters_on_a_full_queue_no_lost_wakeup() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(1));
        fifo.put(int(0), 0, UnboundPolicy::Replace, Wait::No, false)
            .unwrap();
        let putters: Vec<_> = (1..3)
            .map(|n| {
                let fifo = fifo.clone();
                thread::spawn(move || {
                    fifo.put(int(n), 0, UnboundPolicy::Replace, Wait::Forever, false)
                        .map(drop)
                })
            })
            .collect();
        let mut got: Vec<_> = (0..3).map(|_| fifo.get(Wait::Forever).unwrap()).collect();
        for putter in putters {
            putter.join().unwrap().unwrap();
        }
        assert_eq!(got.remove(0), int(0));
        assert_eq!(fifo.len(), 0);
    });
}

#[test]
fn loom_unbind_remove_wakes_a_blocked_putter() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(1));
        fifo.put(int(1), 9, UnboundPolicy::Remove, Wait::No, false)
            .unwrap();
        let putter = {
            let fifo = fifo.clone();
            thread::spawn(move || {
                fifo.put(int(2), 0, UnboundPolicy::Replace, Wait::Forever, false)
                    .map(drop)
            })
        };
        fifo.unbind(9);
        putter.join().unwrap().unwrap();
        assert_eq!(fifo.get(Wait::No), Ok(int(2)));
    });
}

#[test]
fn loom_unbind_remove_fails_a_blocked_sender() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(0));
        let sender = {
            let fifo = fifo.clone();
            thread::spawn(move || {
                let receipt = fifo
                    .put(int(5), 9, UnboundPolicy::Remove, Wait::Forever, true)?
                    .expect("a receipt");
                fifo.await_receipt(&receipt, Wait::Forever, || false)
            })
        };
        // Wait for the item to arrive, as a receiver would, then close its interpreter.
        while fifo.len() == 0 {
            thread::yield_now();
        }
        fifo.unbind(9);
        assert_eq!(sender.join().unwrap(), Err(FifoError::Closed));
        assert_eq!(fifo.len(), 0);
    });
}

/// PEP 554's `send_nowait`: the hand-off either reaches the getter, which then has the item,
/// or fails with `NotReceiving` and leaves nothing behind.
#[test]
fn loom_hand_off_reaches_a_blocked_getter_or_leaves_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    // Outside the model (plain std atomics): both outcomes must be among the interleavings.
    static HANDED: AtomicUsize = AtomicUsize::new(0);
    static REFUSED: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(0));
        let getter = {
            let fifo = fifo.clone();
            thread::spawn(move || fifo.get(Wait::Forever))
        };
        match fifo.hand_off(int(1), 0, UnboundPolicy::Replace) {
            Ok(()) => {
                HANDED.fetch_add(1, Relaxed);
                assert_eq!(getter.join().unwrap(), Ok(int(1)));
            }
            Err(error) => {
                REFUSED.fetch_add(1, Relaxed);
                assert_eq!(error, FifoError::NotReceiving);
                assert_eq!(fifo.len(), 0, "a refused hand-off leaves nothing");
                fifo.close(false);
                assert_eq!(getter.join().unwrap(), Err(FifoError::Closed));
            }
        }
    });
    assert!(HANDED.load(Relaxed) > 0 && REFUSED.load(Relaxed) > 0);
}

/// Two hand-offs and one getter: at most one hand-off succeeds, and the getter has it.
#[test]
fn loom_one_getter_takes_at_most_one_hand_off() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(0));
        let getter = {
            let fifo = fifo.clone();
            thread::spawn(move || fifo.get(Wait::Forever))
        };
        let other = {
            let fifo = fifo.clone();
            thread::spawn(move || fifo.hand_off(int(2), 0, UnboundPolicy::Replace))
        };
        let mine = fifo.hand_off(int(1), 0, UnboundPolicy::Replace);
        let theirs = other.join().unwrap();
        let handed: Vec<_> = [(mine, 1), (theirs, 2)]
            .into_iter()
            .filter_map(|(result, n)| result.is_ok().then_some(int(n)))
            .collect();
        assert!(handed.len() <= 1, "one getter, at most one hand-off");
        if handed.is_empty() {
            fifo.close(false);
            assert_eq!(getter.join().unwrap(), Err(FifoError::Closed));
        } else {
            assert_eq!(getter.join().unwrap(), Ok(handed[0].clone()));
        }
        assert_eq!(fifo.len(), 0);
    });
}

/// Two blocked getters and two hand-offs: the second is never refused, whichever way the
/// first getter's take interleaves with it (a getter must stop counting as a receiver and
/// count its item out in one step, or the second hand-off meets one receiver and one item
/// still counted, and is refused while the other getter waits).
#[test]
fn loom_a_second_hand_off_reaches_the_second_blocked_getter() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(0));
        let getters: Vec<_> = (0..2)
            .map(|_| {
                let fifo = fifo.clone();
                thread::spawn(move || fifo.get(Wait::Forever))
            })
            .collect();
        while fifo.receivers() < 2 {
            thread::yield_now();
        }
        assert_eq!(fifo.hand_off(int(1), 0, UnboundPolicy::Replace), Ok(()));
        assert_eq!(fifo.hand_off(int(2), 0, UnboundPolicy::Replace), Ok(()));
        let mut got: Vec<_> = getters
            .into_iter()
            .map(|getter| getter.join().unwrap().unwrap())
            .collect();
        got.sort_by_key(|item| matches!(item, Shareable::Int(2)));
        assert_eq!(got, [int(1), int(2)]);
    });
}

/// A put racing the close either fails with `Closed` or its item is taken before a blocked
/// getter hears `Closed`.
#[test]
fn loom_close_racing_a_put_loses_no_accepted_item() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(0));
        let getter = {
            let fifo = fifo.clone();
            thread::spawn(move || {
                let mut taken = Vec::new();
                while let Ok(value) = fifo.get(Wait::Forever) {
                    taken.push(value);
                }
                taken
            })
        };
        let putter = {
            let fifo = fifo.clone();
            thread::spawn(move || {
                fifo.put(int(5), 0, UnboundPolicy::Replace, Wait::Forever, false)
                    .map(drop)
            })
        };
        fifo.close(false);
        let accepted = putter.join().unwrap();
        let taken = getter.join().unwrap();
        match accepted {
            Ok(()) => assert_eq!(taken, [int(5)]),
            Err(error) => {
                assert_eq!(error, FifoError::Closed);
                assert!(taken.is_empty());
            }
        }
    });
}

/// A bounded queue's putter keeps an estimate of the length: a get that happened before a
/// put (on a thread joined since) makes room for it, also when the put may not wait.
#[test]
fn loom_a_get_that_happened_before_makes_room_for_a_put_that_may_not_wait() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(1));
        fifo.put(int(0), 0, UnboundPolicy::Replace, Wait::No, false)
            .unwrap();
        let getter = {
            let fifo = fifo.clone();
            thread::spawn(move || fifo.get(Wait::No))
        };
        assert_eq!(getter.join().unwrap(), Ok(int(0)));
        assert!(!fifo.full());
        let put = fifo.put(int(1), 0, UnboundPolicy::Replace, Wait::No, false);
        assert_eq!(put.map(drop), Ok(()));
        assert_eq!(fifo.len(), 1);
    });
}

/// A getter moves the whole tail to the head while puts go on: every item arrives once, in
/// order.
#[test]
fn loom_a_getter_taking_the_tail_while_puts_go_on_keeps_the_order() {
    loom::model(|| stream_in_order(0, 3, Wait::No));
}

/// A putter about to sleep for room, and a second putter that may take the room a get
/// frees: whichever of them sleeps is woken by a later get (found by review: the flag
/// asking gets to signal was once set without holding the state lock, and a get could clear
/// it before the putter slept).
#[test]
fn loom_a_putter_asking_for_room_is_woken_when_another_takes_the_first_slot() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(1));
        fifo.put(int(0), 0, UnboundPolicy::Replace, Wait::No, false)
            .unwrap();
        let putter = {
            let fifo = fifo.clone();
            thread::spawn(move || {
                fifo.put(int(1), 0, UnboundPolicy::Replace, Wait::Forever, false)
                    .map(drop)
            })
        };
        let getter = {
            let fifo = fifo.clone();
            thread::spawn(move || {
                let first = fifo.get(Wait::Forever).unwrap();
                let second = fifo.get(Wait::Forever).unwrap();
                (first, second)
            })
        };
        fifo.put(int(2), 0, UnboundPolicy::Replace, Wait::Forever, false)
            .unwrap();
        putter.join().unwrap().unwrap();
        let (first, _) = getter.join().unwrap();
        assert_eq!(first, int(0));
        assert_eq!(fifo.len(), 1);
    });
}

/// A timed-out send's item is withdrawn at whichever end a racing get left it: the send
/// succeeded exactly when the getter took the item, and the count stays right.
#[test]
fn loom_a_withdrawn_send_races_a_getter_taking_the_tail() {
    loom::model(|| {
        let fifo = Arc::new(Fifo::new(2));
        fifo.put(int(0), 0, UnboundPolicy::Replace, Wait::No, false)
            .unwrap();
        let getter = {
            let fifo = fifo.clone();
            thread::spawn(move || (fifo.get(Wait::No), fifo.get(Wait::No)))
        };
        let receipt = fifo
            .put(int(1), 0, UnboundPolicy::Replace, Wait::No, true)
            .unwrap()
            .unwrap();
        let sent = fifo.await_receipt(&receipt, Wait::No, || false);
        let (first, second) = getter.join().unwrap();
        match sent {
            Ok(()) => assert_eq!(second, Ok(int(1))),
            Err(error) => {
                assert_eq!(error, FifoError::Timeout);
                assert_ne!(second, Ok(int(1)));
            }
        }
        assert_eq!(first, Ok(int(0)));
        assert_eq!(fifo.len(), 0);
        let put = fifo.put(int(2), 0, UnboundPolicy::Replace, Wait::No, false);
        assert_eq!(put.map(drop), Ok(()));
    });
}
