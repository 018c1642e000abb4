//! The core of [`Queue`](super::Queue) (PEP 734): items in a lock-free segmented queue
//! (crossbeam-queue's `SegQueue`), PEP 734's semantics on top in a few counters.
//!
//! - Puts *reserve* before they push: one compare-and-swap on a word holding the number of
//!   reservations and the closed bit, on the producers' own cache line. A reservation fails
//!   once the queue is closed, and (bounded queues) when `pushed - popped - dead` reached
//!   `maxsize`. So a put either happened before the close or fails with `Closed`, and a
//!   getter that finds the queue closed and empty waits for the reservations still being
//!   pushed before it answers `Closed`.
//! - Gets pop, then count the item on the consumers' own cache line.
//! - Items of subinterpreters (an owner other than the main interpreter, which is never
//!   closed) are also counted per owner, under a lock that only they take. Closing their
//!   interpreter marks the owner closed in that book; its items are then resolved lazily, as
//!   they are taken: removed ones are skipped (and were subtracted from `len` at once, as
//!   `dead`, so a bounded queue has their room back at once), replaced ones come out as
//!   [`Shareable::Unbound`], the others as [`FifoError::Destroyed`].
//! - A side that must wait spins briefly (as [`Fifo`](super::fifo::Fifo) does), then sleeps
//!   on a condition variable after registering in a waiter count; the other side notifies
//!   only when it reads a non-zero count, so a stream whose sides keep up does no wake-up work.
//!   Registration and the counters are sequentially consistent read-modify-writes and loads,
//!   so a waiter either sees the change it waits for or is seen by the thread making it (the
//!   loom models check this protocol; under `--cfg loom` the storage is a loom mutex around a
//!   `VecDeque`, since crossbeam-queue is not loom-aware).

use std::collections::HashMap;
use std::time::Instant;

use super::UnboundPolicy;
use super::fifo::{FifoError, Item, Wait, spin_until};
use super::shareable::Shareable;
use super::sync::{AtomicUsize, Condvar, Mutex, Ordering::SeqCst};

/// The closed bit of [`QueueCore::puts`]; the reservation count is above it.
const CLOSED: usize = 1;
/// One reservation in [`QueueCore::puts`].
const ONE: usize = 2;

/// The main interpreter's ID: it is never closed, so its items are never unbound.
const MAIN: u64 = 0;

/// Keeps what producers write and what consumers write on separate cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// The items, in order.
#[cfg(not(loom))]
#[derive(Default)]
struct Storage(crossbeam_queue::SegQueue<Item>);

#[cfg(not(loom))]
impl Storage {
    fn push(&self, item: Item) {
        self.0.push(item);
    }

    fn pop(&self) -> Option<Item> {
        self.0.pop()
    }
}

/// The items, in order: a plain locked deque, so loom sees every access.
#[cfg(loom)]
#[derive(Default)]
struct Storage(Mutex<std::collections::VecDeque<Item>>);

#[cfg(loom)]
impl Storage {
    fn push(&self, item: Item) {
        self.0.lock().push_back(item);
    }

    fn pop(&self) -> Option<Item> {
        self.0.lock().pop_front()
    }
}

/// The items one subinterpreter has in the queue.
#[derive(Default)]
struct Owned {
    /// Items under [`UnboundPolicy::Remove`].
    removable: usize,
    /// Items under the other policies.
    kept: usize,
    /// The interpreter was closed: its items are unbound.
    closed: bool,
}

/// The producers' line: reservations and the closed bit, and the last `popped` they read.
#[derive(Default)]
struct PutSide {
    word: AtomicUsize,
    popped_seen: AtomicUsize,
}

pub(crate) struct QueueCore {
    maxsize: usize,
    puts: Padded<PutSide>,
    /// Items taken (including removed ones skipped), on the consumers' line.
    popped: Padded<AtomicUsize>,
    /// Removed items still in `storage` (their interpreter was closed).
    dead: AtomicUsize,
    getters_waiting: AtomicUsize,
    putters_waiting: AtomicUsize,
    storage: Storage,
    /// Per subinterpreter, what it has in the queue.
    owners: Mutex<HashMap<u64, Owned>>,
    /// Taken only to sleep and to notify sleepers.
    sleep: Mutex<()>,
    readable: Condvar,
    writable: Condvar,
}

/// Which condition a blocked operation waits for.
#[derive(Clone, Copy)]
enum Side {
    Get,
    Put,
}

/// Gives other threads a turn: a thread in the middle of a push or pop is about to finish it.
fn pause() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

impl QueueCore {
    /// A queue holding at most `maxsize` items (0: unbounded).
    pub(crate) fn new(maxsize: usize) -> Self {
        QueueCore {
            maxsize,
            puts: Padded::default(),
            popped: Padded::default(),
            dead: AtomicUsize::new(0),
            getters_waiting: AtomicUsize::new(0),
            putters_waiting: AtomicUsize::new(0),
            storage: Storage::default(),
            owners: Mutex::new(HashMap::new()),
            sleep: Mutex::new(()),
            readable: Condvar::new(),
            writable: Condvar::new(),
        }
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.maxsize
    }

    /// Items in the queue: pushed (or being pushed), not taken, not removed. A snapshot.
    pub(crate) fn len(&self) -> usize {
        let pushed = self.puts.0.word.load(SeqCst) / ONE;
        let dead = self.dead.load(SeqCst);
        let popped = self.popped.0.load(SeqCst);
        let len = pushed.wrapping_sub(popped).wrapping_sub(dead);
        // Read one after the other, the counters may be a step apart for a moment.
        if len > usize::MAX / 2 { 0 } else { len }
    }

    pub(crate) fn full(&self) -> bool {
        self.maxsize != 0 && self.len() >= self.maxsize
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.puts.0.word.load(SeqCst) & CLOSED != 0
    }

    /// Whether a bounded queue with `pushed` reservations has room for one more.
    fn has_room(&self, pushed: usize) -> bool {
        // `popped` only grows: room by an old reading is room now.
        let seen = self.puts.0.popped_seen.load(SeqCst);
        if pushed.wrapping_sub(seen) < self.maxsize {
            return true;
        }
        let popped = self.popped.0.load(SeqCst);
        self.puts.0.popped_seen.store(popped, SeqCst);
        let dead = self.dead.load(SeqCst);
        pushed.wrapping_sub(popped).wrapping_sub(dead) < self.maxsize
    }

    /// Reserves a place for one item: `Closed`, `Full`, or done.
    fn reserve(&self) -> Result<(), FifoError> {
        let word = &self.puts.0.word;
        let mut current = word.load(SeqCst);
        loop {
            if current & CLOSED != 0 {
                return Err(FifoError::Closed);
            }
            if self.maxsize != 0 && !self.has_room(current / ONE) {
                return Err(FifoError::Full);
            }
            match word.compare_exchange_weak(current, current.wrapping_add(ONE), SeqCst, SeqCst) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Whether a waiter of `side` has something to look at.
    fn ready(&self, side: Side) -> bool {
        let word = self.puts.0.word.load(SeqCst);
        if word & CLOSED != 0 {
            return true;
        }
        match side {
            Side::Get => word / ONE != self.popped.0.load(SeqCst),
            Side::Put => self.has_room(word / ONE),
        }
    }

    /// Appends `value`, put by interpreter `owner`, waiting for room as `wait` allows.
    pub(crate) fn put(
        &self,
        value: Shareable,
        owner: u64,
        policy: UnboundPolicy,
        wait: Wait,
    ) -> Result<(), FifoError> {
        let mut spun = false;
        loop {
            match self.reserve() {
                Ok(()) => break,
                Err(FifoError::Full) => self.block(Side::Put, wait, &mut spun, FifoError::Full)?,
                Err(error) => return Err(error),
            }
        }
        if owner != MAIN {
            let mut owners = self.owners.lock();
            let owned = owners.entry(owner).or_default();
            match policy {
                UnboundPolicy::Remove => owned.removable += 1,
                UnboundPolicy::Replace | UnboundPolicy::Error => owned.kept += 1,
            }
        }
        self.storage.push(Item::new(value, owner, policy, None));
        if self.getters_waiting.load(SeqCst) > 0 {
            let _sleep = self.sleep.lock();
            self.readable.notify_one();
        }
        Ok(())
    }

    /// Takes the first item, waiting for one as `wait` allows.
    pub(crate) fn get(&self, wait: Wait) -> Result<Shareable, FifoError> {
        let mut spun = false;
        loop {
            if let Some(item) = self.storage.pop() {
                let taken = if item.owner() == MAIN {
                    Some(item.take())
                } else {
                    self.settle(item)
                };
                self.popped.0.fetch_add(1, SeqCst);
                if self.maxsize != 0 && self.putters_waiting.load(SeqCst) > 0 {
                    let _sleep = self.sleep.lock();
                    self.writable.notify_one();
                }
                match taken {
                    Some(taken) => return taken,
                    None => continue,
                }
            }
            let word = self.puts.0.word.load(SeqCst);
            if word & CLOSED != 0 {
                if word / ONE == self.popped.0.load(SeqCst) {
                    return Err(FifoError::Closed);
                }
                // A put reserved before the close is still pushing, or another getter is
                // still counting what it took: both are a few instructions from done.
                pause();
                continue;
            }
            self.block(Side::Get, wait, &mut spun, FifoError::Empty)?;
        }
    }

    /// What a subinterpreter's item comes out as: `None` if it was removed.
    fn settle(&self, item: Item) -> Option<Result<Shareable, FifoError>> {
        let owner = item.owner();
        let policy = item.policy();
        let closed = {
            let mut owners = self.owners.lock();
            let closed = match owners.get_mut(&owner) {
                Some(owned) => {
                    match policy {
                        UnboundPolicy::Remove => owned.removable -= 1,
                        UnboundPolicy::Replace | UnboundPolicy::Error => owned.kept -= 1,
                    }
                    let closed = owned.closed;
                    if owned.removable + owned.kept == 0 {
                        owners.remove(&owner);
                    }
                    closed
                }
                None => false,
            };
            if closed && policy == UnboundPolicy::Remove {
                // Before `popped` grows: the length never reads one too small.
                self.dead.fetch_sub(1, SeqCst);
            }
            closed
        };
        if !closed {
            return Some(item.take());
        }
        // Dropped outside the lock: a value may hold anything, a queue handle included.
        drop(item);
        match policy {
            UnboundPolicy::Remove => None,
            UnboundPolicy::Replace => Some(Ok(Shareable::Unbound)),
            UnboundPolicy::Error => Some(Err(FifoError::Destroyed)),
        }
    }

    /// Waits once for `side`'s condition as `wait` allows: the first time a short spin, then
    /// asleep. Returns for the caller to re-check; fails with `now` when `wait` is
    /// [`Wait::No`], with [`FifoError::Timeout`] once the deadline has passed.
    fn block(
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
            spin_until(|| self.ready(side));
            return Ok(());
        }
        let (condvar, waiting) = match side {
            Side::Get => (&self.readable, &self.getters_waiting),
            Side::Put => (&self.writable, &self.putters_waiting),
        };
        let sleep = self.sleep.lock();
        waiting.fetch_add(1, SeqCst);
        let ready = self.ready(side);
        let sleep = if ready {
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
        waiting.fetch_sub(1, SeqCst);
        drop(sleep);
        if ready {
            // Ready but not yet there (a push or a count in progress): let it finish.
            pause();
        }
        Ok(())
    }

    /// No more puts; gets drain what is left, then fail with `Closed`. Returns whether this
    /// call closed it.
    pub(crate) fn close(&self) -> bool {
        let before = self.puts.0.word.fetch_or(CLOSED, SeqCst);
        let _sleep = self.sleep.lock();
        self.readable.notify_all();
        self.writable.notify_all();
        before & CLOSED == 0
    }

    /// Interpreter `owner` was closed: its items follow their unbound policies from now on
    /// (removed ones leave the count, and their room, at once).
    pub(crate) fn unbind(&self, owner: u64) {
        let removed = {
            let mut owners = self.owners.lock();
            let Some(owned) = owners.get_mut(&owner) else {
                return;
            };
            if owned.closed {
                return;
            }
            owned.closed = true;
            if owned.removable > 0 {
                self.dead.fetch_add(owned.removable, SeqCst);
            }
            owned.removable
        };
        if removed > 0 && self.putters_waiting.load(SeqCst) > 0 {
            let _sleep = self.sleep.lock();
            self.writable.notify_all();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use super::{FifoError, QueueCore, Wait};
    use crate::interpreters::UnboundPolicy;
    use crate::interpreters::shareable::Shareable;

    fn put(core: &QueueCore, n: i128, owner: u64, policy: UnboundPolicy) -> Result<(), FifoError> {
        core.put(Shareable::Int(n), owner, policy, Wait::No)
    }

    #[test]
    fn removed_items_give_their_room_back_at_once() {
        let core = QueueCore::new(2);
        put(&core, 1, 7, UnboundPolicy::Remove).unwrap();
        put(&core, 2, 0, UnboundPolicy::Remove).unwrap();
        assert_eq!(
            put(&core, 3, 0, UnboundPolicy::Remove),
            Err(FifoError::Full)
        );
        core.unbind(7);
        assert_eq!(core.len(), 1);
        assert!(!core.full());
        put(&core, 3, 0, UnboundPolicy::Remove).unwrap();
        assert!(core.full());
        assert_eq!(core.get(Wait::No), Ok(Shareable::Int(2)));
        assert_eq!(core.get(Wait::No), Ok(Shareable::Int(3)));
        assert_eq!(core.get(Wait::No), Err(FifoError::Empty));
        assert_eq!(core.len(), 0);
    }

    #[test]
    fn unbinding_twice_or_another_owner_changes_nothing() {
        let core = QueueCore::new(0);
        put(&core, 1, 7, UnboundPolicy::Remove).unwrap();
        put(&core, 2, 8, UnboundPolicy::Replace).unwrap();
        core.unbind(7);
        core.unbind(7);
        core.unbind(9);
        assert_eq!(core.len(), 1);
        assert_eq!(core.get(Wait::No), Ok(Shareable::Int(2)));
        assert_eq!(core.len(), 0);
    }

    #[test]
    fn a_removed_item_wakes_a_blocked_putter() {
        let core = Arc::new(QueueCore::new(1));
        put(&core, 1, 7, UnboundPolicy::Remove).unwrap();
        let putter = {
            let core = core.clone();
            std::thread::spawn(move || {
                core.put(Shareable::Int(2), 0, UnboundPolicy::Replace, Wait::Forever)
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        core.unbind(7);
        putter.join().unwrap().unwrap();
        assert_eq!(core.get(Wait::No), Ok(Shareable::Int(2)));
    }

    /// Every put that returned `Ok` before (or while) the queue closed is taken before a getter
    /// sees `Closed`; every other put failed with `Closed`.
    #[test]
    fn close_racing_puts_loses_no_accepted_item() {
        for round in 0..20 {
            let core = Arc::new(QueueCore::new(if round % 2 == 0 { 0 } else { 4 }));
            let start = Arc::new(Barrier::new(4));
            let putters: Vec<_> = (0..2)
                .map(|p| {
                    let (core, start) = (core.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        let mut accepted = 0;
                        for n in 0..1000 {
                            match core.put(
                                Shareable::Int(n),
                                0,
                                UnboundPolicy::Replace,
                                Wait::Forever,
                            ) {
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
                let (core, start) = (core.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut taken = 0;
                    loop {
                        match core.get(Wait::Forever) {
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
            core.close();
            let accepted: usize = putters.into_iter().map(|p| p.join().unwrap()).sum();
            let taken = getter.join().unwrap();
            assert_eq!(taken, accepted, "round {round}");
            assert_eq!(core.len(), 0);
        }
    }

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

    /// Single-thread sequences of put, get, unbind and close against a `VecDeque` model.
    #[test]
    fn single_thread_sequences_match_a_vecdeque_model() {
        const POLICIES: [UnboundPolicy; 3] = [
            UnboundPolicy::Replace,
            UnboundPolicy::Error,
            UnboundPolicy::Remove,
        ];
        for seed in 1..200u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let maxsize = (rng.next() % 4) as usize;
            let core = QueueCore::new(maxsize);
            // The model: (value, owner, policy) in order; owners closed so far.
            let mut model: VecDeque<(i128, u64, UnboundPolicy)> = VecDeque::new();
            let mut gone: Vec<u64> = Vec::new();
            let mut closed = false;
            let unbound = |model: &VecDeque<(i128, u64, UnboundPolicy)>, gone: &[u64]| {
                model
                    .iter()
                    .filter(|(_, owner, policy)| {
                        !(gone.contains(owner) && *policy == UnboundPolicy::Remove)
                    })
                    .count()
            };
            let mut next_owner = 1;
            for step in 0..60 {
                let len = unbound(&model, &gone);
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
                        } else if maxsize != 0 && len >= maxsize {
                            Err(FifoError::Full)
                        } else {
                            model.push_back((n, owner, policy));
                            Ok(())
                        };
                        assert_eq!(put(&core, n, owner, policy), expected, "seed {seed}");
                    }
                    5..=7 => {
                        let expected = loop {
                            match model.pop_front() {
                                None if closed => break Err(FifoError::Closed),
                                None => break Err(FifoError::Empty),
                                Some((_, owner, policy)) if gone.contains(&owner) => match policy {
                                    UnboundPolicy::Remove => continue,
                                    UnboundPolicy::Replace => break Ok(Shareable::Unbound),
                                    UnboundPolicy::Error => break Err(FifoError::Destroyed),
                                },
                                Some((n, ..)) => break Ok(Shareable::Int(n)),
                            }
                        };
                        assert_eq!(core.get(Wait::No), expected, "seed {seed}");
                    }
                    8 => {
                        // The current subinterpreter closes; later puts come from a new one.
                        core.unbind(next_owner);
                        gone.push(next_owner);
                        next_owner += 1;
                    }
                    _ => {
                        if rng.next().is_multiple_of(4) {
                            assert_eq!(core.close(), !closed);
                            closed = true;
                        }
                    }
                }
                let len = unbound(&model, &gone);
                assert_eq!(core.len(), len, "seed {seed}");
                assert_eq!(core.full(), maxsize != 0 && len >= maxsize);
                assert_eq!(core.is_closed(), closed);
            }
        }
    }
}
