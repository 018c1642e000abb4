//! The core of [`Queue`](super::Queue) (PEP 734): crossbeam-channel's lock-free list (unbounded)
//! or array (bounded) holds the items, and this module adds what PEP 734 asks on top of it:
//! `maxsize`, close, blocking with a deadline, and the unbound-item policies.
//!
//! A put or get on a running stream touches no lock: it announces itself on a counter of its
//! own side (a cache line only that side writes), checks the gate (a word written only on
//! close and while an interpreter's items are unbound), and calls `try_send`/`try_recv`. The
//! gate protocol is a store-then-load handshake on both ends:
//!
//! - close sets [`CLOSED`]; a putter that announced itself and then reads the gate open may
//!   still push, so a getter that finds the queue empty and closed waits until no putter is
//!   announced, then looks once more before it reports `Closed`. Every put that returned `Ok`
//!   is therefore taken before a getter hears `Closed`.
//! - unbinding sets [`EXCLUSIVE`] and waits until neither side is announced: it then owns the
//!   storage, drains it, applies the policies exactly as the mutex-guarded FIFO does (a
//!   removed item's value is dropped there and then), and pushes back what is kept, in
//!   order. Only queues that ever held an item from a subinterpreter are unbound at all.
//!
//! Waiting: a blocked side spins briefly, then yields (as the FIFO does), then sleeps on a
//! condition variable after announcing itself as a sleeper and touching the other side's
//! counter with a read-modify-write; the other side, after its push or pop, decrements that
//! counter and then checks for sleepers, so no wake-up is lost (the fast paths need no
//! fence). Close and unbind notify under the sleepers' lock.
//!
//! Under `--cfg loom` the storage is a mutex-guarded deque (crossbeam is not loom-aware): the
//! models then check the gate and the wake-up protocol above, not crossbeam itself.

use std::time::Instant;

use super::UnboundPolicy;
use super::fifo::{FifoError, Item, Wait, spin_until};
use super::shareable::Shareable;
use super::sync::{AtomicBool, AtomicUsize, Condvar, Mutex, Ordering, pause};

/// The gate bit set by [`Stream::close`], never cleared.
const CLOSED: usize = 1;
/// The gate bit set while [`Stream::unbind`] owns the storage.
const EXCLUSIVE: usize = 2;

/// Bounded queues up to this `maxsize` use crossbeam's array, allocated in full up front;
/// larger ones the list, with puts admitted one at a time against the length.
const ARRAY_LIMIT: usize = 4096;

/// A value on a cache line of its own.
#[repr(align(128))]
struct Padded<T>(T);

#[cfg(not(loom))]
struct Storage {
    tx: crossbeam_channel::Sender<Item>,
    rx: crossbeam_channel::Receiver<Item>,
    /// For a bounded list (`maxsize` above [`ARRAY_LIMIT`]): the bound, checked under
    /// `admit`. Zero when the channel enforces the bound itself (or there is none).
    limit: usize,
    admit: std::sync::Mutex<()>,
}

#[cfg(not(loom))]
impl Storage {
    fn new(maxsize: usize) -> Self {
        let (tx, rx) = if maxsize == 0 || maxsize > ARRAY_LIMIT {
            crossbeam_channel::unbounded()
        } else {
            crossbeam_channel::bounded(maxsize)
        };
        let limit = if maxsize > ARRAY_LIMIT { maxsize } else { 0 };
        Storage {
            tx,
            rx,
            limit,
            admit: std::sync::Mutex::new(()),
        }
    }

    /// Appends `item` if there is room; gives it back if not.
    #[inline]
    fn push(&self, item: Item) -> Result<(), Item> {
        if self.limit != 0 {
            return self.push_counted(item);
        }
        // Both ends live as long as the storage: the channel is never disconnected.
        self.tx.try_send(item).map_err(|error| error.into_inner())
    }

    #[cold]
    fn push_counted(&self, item: Item) -> Result<(), Item> {
        // Putters take turns, so none can see room another is about to take; getters only
        // make more room meanwhile. Nothing panics under this lock.
        let _turn = self
            .admit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.rx.len() >= self.limit {
            return Err(item);
        }
        self.tx.try_send(item).map_err(|error| error.into_inner())
    }

    /// Appends `item` regardless of the bound (putting back what unbinding kept).
    fn restore(&self, item: Item) {
        // An array channel has room for everything that was in it; a list has no bound.
        let restored = self.tx.try_send(item);
        debug_assert!(restored.is_ok());
    }

    #[inline]
    fn pop(&self) -> Option<Item> {
        self.rx.try_recv().ok()
    }

    fn len(&self) -> usize {
        self.rx.len()
    }

    fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// The loom stand-in for crossbeam's channel: a mutex-guarded deque with the same calls.
#[cfg(loom)]
struct Storage {
    maxsize: usize,
    items: Mutex<std::collections::VecDeque<Item>>,
}

#[cfg(loom)]
impl Storage {
    fn new(maxsize: usize) -> Self {
        Storage {
            maxsize,
            items: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn push(&self, item: Item) -> Result<(), Item> {
        let mut items = self.items.lock();
        if self.maxsize != 0 && items.len() >= self.maxsize {
            return Err(item);
        }
        items.push_back(item);
        Ok(())
    }

    fn restore(&self, item: Item) {
        self.items.lock().push_back(item);
    }

    fn pop(&self) -> Option<Item> {
        self.items.lock().pop_front()
    }

    fn len(&self) -> usize {
        self.items.lock().len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub(crate) struct Stream {
    maxsize: usize,
    storage: Storage,
    /// [`CLOSED`] and [`EXCLUSIVE`].
    gate: AtomicUsize,
    /// Getters and putters asleep (or about to sleep) on `readable` and `writable`.
    get_sleepers: AtomicUsize,
    put_sleepers: AtomicUsize,
    /// Whether an item from a subinterpreter was ever put: only then can unbinding find work.
    subinterpreters: AtomicBool,
    /// Putters and getters between announcing themselves and leaving the storage.
    putting: Padded<AtomicUsize>,
    getting: Padded<AtomicUsize>,
    /// The sleepers' lock, and what they sleep on.
    sleep: Mutex<()>,
    readable: Condvar,
    writable: Condvar,
    /// Held by an unbinding for its whole run; others wait on it while [`EXCLUSIVE`] is set.
    exclusive: Mutex<()>,
}

/// Which side of the stream is waiting.
#[derive(Clone, Copy)]
enum Side {
    Get,
    Put,
}

impl Stream {
    /// A stream holding at most `maxsize` items (0: unbounded).
    pub(crate) fn new(maxsize: usize) -> Self {
        Stream {
            maxsize,
            storage: Storage::new(maxsize),
            gate: AtomicUsize::new(0),
            get_sleepers: AtomicUsize::new(0),
            put_sleepers: AtomicUsize::new(0),
            subinterpreters: AtomicBool::new(false),
            putting: Padded(AtomicUsize::new(0)),
            getting: Padded(AtomicUsize::new(0)),
            sleep: Mutex::new(()),
            readable: Condvar::new(),
            writable: Condvar::new(),
            exclusive: Mutex::new(()),
        }
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.maxsize
    }

    /// The number of items (not counting any an unbinding is about to remove: it waits).
    pub(crate) fn len(&self) -> usize {
        let _settled = self.exclusive.lock();
        self.storage.len()
    }

    pub(crate) fn full(&self) -> bool {
        self.maxsize != 0 && self.len() >= self.maxsize
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.gate.load(Ordering::SeqCst) & CLOSED != 0
    }

    /// Appends `value`, waiting for room as `wait` allows.
    #[inline]
    pub(crate) fn put(
        &self,
        value: Shareable,
        owner: u64,
        policy: UnboundPolicy,
        wait: Wait,
    ) -> Result<(), FifoError> {
        if owner != 0 && !self.subinterpreters.load(Ordering::Relaxed) {
            self.subinterpreters.store(true, Ordering::SeqCst);
        }
        let mut item = Item::new(value, owner, policy, None);
        let mut spun = false;
        loop {
            self.putting.0.fetch_add(1, Ordering::SeqCst);
            let gate = self.gate.load(Ordering::SeqCst);
            if gate != 0 {
                self.putting.0.fetch_sub(1, Ordering::SeqCst);
                if gate & CLOSED != 0 {
                    return Err(FifoError::Closed);
                }
                drop(self.exclusive.lock());
                continue;
            }
            let pushed = self.storage.push(item);
            self.putting.0.fetch_sub(1, Ordering::SeqCst);
            match pushed {
                Ok(()) => {
                    self.wake(Side::Get);
                    return Ok(());
                }
                Err(back) => item = back,
            }
            self.wait(Side::Put, wait, &mut spun, FifoError::Full)?;
        }
    }

    /// Takes the first item, waiting for one as `wait` allows.
    #[inline]
    pub(crate) fn get(&self, wait: Wait) -> Result<Shareable, FifoError> {
        let mut spun = false;
        loop {
            if let Some(item) = self.pop() {
                return item.take();
            }
            if self.gate.load(Ordering::SeqCst) & CLOSED != 0 {
                return self.drain_closed();
            }
            self.wait(Side::Get, wait, &mut spun, FifoError::Empty)?;
        }
    }

    /// Pops the first item, if any, waiting out an unbinding first.
    #[inline]
    fn pop(&self) -> Option<Item> {
        loop {
            self.getting.0.fetch_add(1, Ordering::SeqCst);
            if self.gate.load(Ordering::SeqCst) & EXCLUSIVE != 0 {
                self.getting.0.fetch_sub(1, Ordering::SeqCst);
                drop(self.exclusive.lock());
                continue;
            }
            let popped = self.storage.pop();
            self.getting.0.fetch_sub(1, Ordering::SeqCst);
            if popped.is_some() && self.maxsize != 0 {
                self.wake(Side::Put);
            }
            return popped;
        }
    }

    /// A get on a closed, empty-looking stream: the last items of putters that got past the
    /// gate before the close, or `Closed`.
    #[cold]
    #[inline(never)]
    fn drain_closed(&self) -> Result<Shareable, FifoError> {
        loop {
            // A putter announced now either pushes its item or sees the close and backs out.
            if self.putting.0.load(Ordering::SeqCst) == 0 {
                return match self.pop() {
                    Some(item) => item.take(),
                    None => Err(FifoError::Closed),
                };
            }
            pause();
            if let Some(item) = self.pop() {
                return item.take();
            }
        }
    }

    /// Wakes one sleeper of `side`, if there is one: called after a push (for getters) or
    /// a pop (for putters), and after the caller's `SeqCst` decrement of its own side's
    /// counter, which is what pairs with the sleeper (see [`wait`](Self::wait)).
    #[inline]
    fn wake(&self, side: Side) {
        let (sleepers, condvar) = match side {
            Side::Get => (&self.get_sleepers, &self.readable),
            Side::Put => (&self.put_sleepers, &self.writable),
        };
        if sleepers.load(Ordering::Relaxed) != 0 {
            let _sleep = self.sleep.lock();
            condvar.notify_one();
        }
    }

    /// Whether a waiter of `side` should look again: something changed at the gate, or the
    /// storage has an item (getters) or room (putters; with `run`, room for a run of items).
    fn ready(&self, side: Side, run: bool) -> bool {
        self.gate.load(Ordering::SeqCst) != 0
            || match side {
                Side::Get => !self.storage.is_empty(),
                Side::Put => {
                    // A putter facing a full queue spins until a few slots are free, not just
                    // one, so that it then puts a run of items.
                    let room = if run {
                        self.maxsize - (self.maxsize / 8).min(64)
                    } else {
                        self.maxsize
                    };
                    self.storage.len() < room
                }
            }
    }

    /// Waits once for `side`'s condition, as `wait` allows: the first time by spinning, then
    /// asleep. Returns for the caller to look again; `now` when `wait` is [`Wait::No`],
    /// [`FifoError::Timeout`] once the deadline has passed.
    #[cold]
    #[inline(never)]
    fn wait(
        &self,
        side: Side,
        wait: Wait,
        spun: &mut bool,
        now: FifoError,
    ) -> Result<(), FifoError> {
        let deadline = match wait {
            Wait::No => return Err(now),
            Wait::Forever => None,
            Wait::Until(deadline) => {
                if Instant::now() >= deadline {
                    return Err(FifoError::Timeout);
                }
                Some(deadline)
            }
        };
        if !*spun {
            *spun = true;
            spin_until(|| self.ready(side, true));
            return Ok(());
        }
        let (sleepers, condvar, other) = match side {
            Side::Get => (&self.get_sleepers, &self.readable, &self.putting.0),
            Side::Put => (&self.put_sleepers, &self.writable, &self.getting.0),
        };
        let sleep = self.sleep.lock();
        sleepers.fetch_add(1, Ordering::Relaxed);
        // The handshake with the other side, on its counter: the other side decrements it
        // (a `SeqCst` read-modify-write) after every push or pop, then reads `sleepers`.
        // Read-modify-writes of one atomic are totally ordered and each acquires from the
        // one before: if the other side's decrement comes first, its push or pop is visible
        // to the look below; if this one comes first, the other side sees this sleeper.
        other.fetch_add(0, Ordering::SeqCst);
        let sleep = if self.ready(side, false) {
            sleep
        } else {
            match deadline {
                None => condvar.wait(sleep),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    condvar.wait_timeout(sleep, left)
                }
            }
        };
        sleepers.fetch_sub(1, Ordering::Relaxed);
        drop(sleep);
        Ok(())
    }

    /// No more puts; gets drain what is left, then fail with `Closed`. Returns whether this
    /// call closed it.
    pub(crate) fn close(&self) -> bool {
        let first = self.gate.fetch_or(CLOSED, Ordering::SeqCst) & CLOSED == 0;
        self.wake_all();
        first
    }

    fn wake_all(&self) {
        let _sleep = self.sleep.lock();
        self.readable.notify_all();
        self.writable.notify_all();
    }

    /// Applies each item's unbound policy to the items `owner` put: the interpreter that put
    /// them was closed.
    pub(crate) fn unbind(&self, owner: u64) {
        if !self.subinterpreters.load(Ordering::SeqCst) {
            return;
        }
        let exclusive = self.exclusive.lock();
        self.gate.fetch_or(EXCLUSIVE, Ordering::SeqCst);
        while self.putting.0.load(Ordering::SeqCst) != 0
            || self.getting.0.load(Ordering::SeqCst) != 0
        {
            pause();
        }
        // The storage is ours until the gate opens again.
        let mut items = Vec::with_capacity(self.storage.len());
        while let Some(item) = self.storage.pop() {
            items.push(item);
        }
        let mut removed = Vec::new();
        for item in items {
            if item.owner() != owner {
                self.storage.restore(item);
                continue;
            }
            match item.unbound() {
                Ok(kept) => self.storage.restore(kept),
                Err(full) => removed.push(full),
            }
        }
        self.gate.fetch_and(!EXCLUSIVE, Ordering::SeqCst);
        drop(exclusive);
        self.wake_all();
        drop(removed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use super::{ARRAY_LIMIT, FifoError, Stream, Wait};
    use crate::interpreters::UnboundPolicy;
    use crate::interpreters::shareable::Shareable;

    /// A small deterministic generator, so the model test needs no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Single-thread sequences of put, get, unbind and close against a `VecDeque` model,
    /// compared after every step; both storages (array and list) and both owners (main and
    /// subinterpreters).
    #[test]
    fn single_thread_sequences_match_a_vecdeque_model() {
        const POLICIES: [UnboundPolicy; 3] = [
            UnboundPolicy::Replace,
            UnboundPolicy::Error,
            UnboundPolicy::Remove,
        ];
        for seed in 1..300u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let maxsize = match rng.next() % 5 {
                4 => ARRAY_LIMIT + 1 + (rng.next() % 3) as usize,
                n => n as usize,
            };
            let stream = Stream::new(maxsize);
            // A list above ARRAY_LIMIT is filled up to near its bound first, the same for both.
            let mut model: VecDeque<(i128, u64, UnboundPolicy)> = VecDeque::new();
            if maxsize > ARRAY_LIMIT {
                for n in 0..ARRAY_LIMIT {
                    let n = -1 - i128::try_from(n).unwrap();
                    stream
                        .put(Shareable::Int(n), 0, UnboundPolicy::Replace, Wait::No)
                        .unwrap();
                    model.push_back((n, 0, UnboundPolicy::Replace));
                }
            }
            let mut gone: Vec<u64> = Vec::new();
            let mut closed = false;
            let mut next_owner = 1;
            for step in 0..80 {
                match rng.next() % 10 {
                    0..=4 => {
                        let n = i128::from(step);
                        let owner = if rng.next().is_multiple_of(2) {
                            0
                        } else {
                            next_owner
                        };
                        let policy = POLICIES[(rng.next() % 3) as usize];
                        let expected = if closed {
                            Err(FifoError::Closed)
                        } else if maxsize != 0 && model.len() >= maxsize {
                            Err(FifoError::Full)
                        } else {
                            model.push_back((n, owner, policy));
                            Ok(())
                        };
                        let put = stream.put(Shareable::Int(n), owner, policy, Wait::No);
                        assert_eq!(put, expected, "seed {seed}");
                    }
                    5..=7 => {
                        let expected = match model.pop_front() {
                            None if closed => Err(FifoError::Closed),
                            None => Err(FifoError::Empty),
                            Some((_, owner, policy)) if gone.contains(&owner) => match policy {
                                UnboundPolicy::Replace => Ok(Shareable::Unbound),
                                UnboundPolicy::Error => Err(FifoError::Destroyed),
                                UnboundPolicy::Remove => unreachable!("removed at unbind"),
                            },
                            Some((n, ..)) => Ok(Shareable::Int(n)),
                        };
                        assert_eq!(stream.get(Wait::No), expected, "seed {seed}");
                    }
                    8 => {
                        // The current subinterpreter closes; later puts come from a new one.
                        stream.unbind(next_owner);
                        model.retain(|&(_, owner, policy)| {
                            owner != next_owner || policy != UnboundPolicy::Remove
                        });
                        gone.push(next_owner);
                        next_owner += 1;
                    }
                    _ => {
                        if rng.next().is_multiple_of(4) {
                            assert_eq!(stream.close(), !closed);
                            closed = true;
                        }
                    }
                }
                assert_eq!(stream.len(), model.len(), "seed {seed}");
                assert_eq!(stream.full(), maxsize != 0 && model.len() >= maxsize);
                assert_eq!(stream.is_closed(), closed);
            }
        }
    }

    /// Every put that returned `Ok` while the stream was being closed is taken before the
    /// getter hears `Closed`; every other put failed with `Closed`.
    #[test]
    fn close_racing_puts_loses_no_accepted_item() {
        for round in 0..30 {
            let maxsize = [0, 4, ARRAY_LIMIT + 4][round % 3];
            let stream = Arc::new(Stream::new(maxsize));
            let start = Arc::new(Barrier::new(4));
            let putters: Vec<_> = (0..2)
                .map(|p| {
                    let (stream, start) = (stream.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        let mut accepted = 0;
                        for n in 0..1000 {
                            let put = stream.put(
                                Shareable::Int(n),
                                0,
                                UnboundPolicy::Replace,
                                Wait::Forever,
                            );
                            match put {
                                Ok(()) => accepted += 1,
                                Err(error) => {
                                    assert_eq!(error, FifoError::Closed, "putter {p}");
                                    break;
                                }
                            }
                        }
                        accepted
                    })
                })
                .collect();
            let getter = {
                let (stream, start) = (stream.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut taken = 0;
                    loop {
                        match stream.get(Wait::Forever) {
                            Ok(_) => taken += 1,
                            Err(error) => {
                                assert_eq!(error, FifoError::Closed);
                                return taken;
                            }
                        }
                    }
                })
            };
            start.wait();
            std::thread::yield_now();
            stream.close();
            let accepted: usize = putters.into_iter().map(|p| p.join().unwrap()).sum();
            let taken = getter.join().unwrap();
            assert_eq!(taken, accepted, "round {round}");
            assert_eq!(stream.len(), 0);
        }
    }

    /// Blocked getters and putters (asleep, past their spin) wake with `Closed` on close.
    #[test]
    fn close_wakes_blocked_getters_and_putters() {
        let empty = Arc::new(Stream::new(0));
        let full = Arc::new(Stream::new(1));
        full.put(Shareable::Int(1), 0, UnboundPolicy::Replace, Wait::No)
            .unwrap();
        let getters: Vec<_> = (0..2)
            .map(|_| {
                let empty = empty.clone();
                std::thread::spawn(move || empty.get(Wait::Forever))
            })
            .collect();
        let putters: Vec<_> = (0..2)
            .map(|_| {
                let full = full.clone();
                std::thread::spawn(move || {
                    full.put(Shareable::Int(2), 0, UnboundPolicy::Replace, Wait::Forever)
                })
            })
            .collect();
        // Long enough for the waiters to be asleep, most runs; either way they must wake.
        std::thread::sleep(Duration::from_millis(20));
        assert!(empty.close());
        assert!(full.close());
        for getter in getters {
            assert_eq!(getter.join().unwrap(), Err(FifoError::Closed));
        }
        for putter in putters {
            assert_eq!(putter.join().unwrap(), Err(FifoError::Closed));
        }
        assert_eq!(full.get(Wait::No), Ok(Shareable::Int(1)));
        assert_eq!(full.get(Wait::No), Err(FifoError::Closed));
    }

    /// Unbinding while a putter and a getter stream items through: order and count hold, and
    /// every removed item is gone.
    #[test]
    fn unbind_racing_a_stream_keeps_order() {
        for maxsize in [0, 8] {
            let stream = Arc::new(Stream::new(maxsize));
            let putter = {
                let stream = stream.clone();
                std::thread::spawn(move || {
                    for n in 0..2000 {
                        // Every tenth item comes from subinterpreter 5, to be removed.
                        let owner = if n % 10 == 0 { 5 } else { 0 };
                        stream
                            .put(
                                Shareable::Int(n),
                                owner,
                                UnboundPolicy::Remove,
                                Wait::Forever,
                            )
                            .unwrap();
                    }
                    stream.close();
                })
            };
            let unbinder = {
                let stream = stream.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        stream.unbind(5);
                        std::thread::yield_now();
                    }
                })
            };
            let mut last = -1;
            loop {
                match stream.get(Wait::Forever) {
                    Ok(Shareable::Int(n)) => {
                        assert!(n > last, "{n} after {last}");
                        last = n;
                    }
                    Ok(other) => panic!("{other:?}"),
                    Err(error) => {
                        assert_eq!(error, FifoError::Closed);
                        break;
                    }
                }
            }
            putter.join().unwrap();
            unbinder.join().unwrap();
            assert_eq!(last, 1999);
        }
    }

    /// A removed item's value is dropped by the unbinding itself, as in the FIFO.
    #[test]
    fn unbind_drops_a_removed_value_at_once() {
        let stream = Stream::new(2);
        let text = Shareable::from("kept alive by the queue");
        let Shareable::Str(shared) = &text else {
            panic!("a string is shared as Str");
        };
        let witness = std::sync::Arc::downgrade(shared);
        stream
            .put(text, 3, UnboundPolicy::Remove, Wait::No)
            .unwrap();
        stream
            .put(Shareable::Int(1), 0, UnboundPolicy::Remove, Wait::No)
            .unwrap();
        assert!(stream.full());
        assert!(witness.upgrade().is_some());
        stream.unbind(3);
        assert!(witness.upgrade().is_none());
        assert_eq!(stream.len(), 1);
        // The room it left is there for the next put.
        stream
            .put(Shareable::Int(2), 0, UnboundPolicy::Remove, Wait::No)
            .unwrap();
        assert_eq!(stream.get(Wait::No), Ok(Shareable::Int(1)));
        assert_eq!(stream.get(Wait::No), Ok(Shareable::Int(2)));
    }
}
