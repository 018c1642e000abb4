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
//!   on a condition variable after setting a bit in the other side's word (see
//!   [`QueueCore::sleep`]); the other side learns of sleepers from the read-modify-write it
//!   does anyway, and notifies only then, so a stream whose sides keep up does no wake-up
//!   work. The loom models check this protocol; under `--cfg loom` the storage is a loom mutex
//!   around a `VecDeque`, since crossbeam-queue is not loom-aware.

use std::collections::HashMap;
use std::time::Instant;

use super::UnboundPolicy;
use super::fifo::{FifoError, Item, Wait, spin_until};
use super::shareable::Shareable;
use super::sync::{AtomicUsize, Condvar, Mutex, Ordering::SeqCst};

/// [`PutSide::word`]: the closed bit, the getters-asleep bit, the reservation count above.
const CLOSED: usize = 1;
const GETTERS_ASLEEP: usize = 2;
const ONE: usize = 4;
/// [`QueueCore::popped`]: the putters-asleep bit, the count of taken items above.
const PUTTERS_ASLEEP: usize = 1;
const POP_ONE: usize = 2;

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

    fn is_empty(&self) -> bool {
        self.0.is_empty()
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

    fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
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

/// The producers' line.
#[derive(Default)]
struct PutSide {
    /// Reservations (× [`ONE`]), [`GETTERS_ASLEEP`] and [`CLOSED`].
    word: AtomicUsize,
    /// The last `popped` a bounded queue's producer read (a lower bound of it).
    popped_seen: AtomicUsize,
}

/// Threads asleep on each condition variable (under [`QueueCore::sleep`]).
#[derive(Default)]
struct Sleepers {
    getters: usize,
    putters: usize,
}

pub(crate) struct QueueCore {
    maxsize: usize,
    puts: Padded<PutSide>,
    /// Items taken, removed ones skipped included (× [`POP_ONE`]), and [`PUTTERS_ASLEEP`]:
    /// the consumers' line.
    popped: Padded<AtomicUsize>,
    /// Removed items still in `storage` (their interpreter was closed).
    dead: AtomicUsize,
    storage: Storage,
    /// Per subinterpreter, what it has in the queue.
    owners: Mutex<HashMap<u64, Owned>>,
    /// Taken only to sleep and to wake sleepers. A sleeper counts itself here and sets its
    /// side's bit with a read-modify-write on the word the other side also reads with one
    /// after its change (a putter after pushing, a getter when it counts what it took), so
    /// of the two the later sees the other: the sleeper sees the change (a getter pops once
    /// more after setting its bit), or the changer sees the bit and wakes it (under this
    /// lock, which the sleeper holds until it waits). Closing and unbinding change what
    /// sleepers wait for before taking this lock, and sleepers look at both under it.
    sleep: Mutex<Sleepers>,
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
            storage: Storage::default(),
            owners: Mutex::new(HashMap::new()),
            sleep: Mutex::new(Sleepers::default()),
            readable: Condvar::new(),
            writable: Condvar::new(),
        }
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.maxsize
    }

    fn popped(&self) -> usize {
        self.popped.0.load(SeqCst) / POP_ONE
    }

    /// Items in the queue: pushed (or being pushed), not taken, not removed. A snapshot.
    pub(crate) fn len(&self) -> usize {
        let pushed = self.puts.0.word.load(SeqCst) / ONE;
        let dead = self.dead.load(SeqCst);
        let popped = self.popped();
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

    /// Whether a bounded queue with `pushed` reservations and `popped` taken items (if
    /// known) has room for `want` more.
    fn has_room(&self, pushed: usize, popped: Option<usize>, want: usize) -> bool {
        let popped = match popped {
            Some(popped) => popped,
            None => {
                // `popped` only grows: room by an old reading is room now.
                let seen = self.puts.0.popped_seen.load(SeqCst);
                if pushed.wrapping_sub(seen) <= self.maxsize - want {
                    return true;
                }
                self.popped()
            }
        };
        self.puts.0.popped_seen.store(popped, SeqCst);
        let dead = self.dead.load(SeqCst);
        pushed.wrapping_sub(popped).wrapping_sub(dead) <= self.maxsize - want
    }

    /// Reserves a place for one item: `Closed`, `Full`, or done.
    fn reserve(&self) -> Result<(), FifoError> {
        let word = &self.puts.0.word;
        if self.maxsize == 0 {
            // Nothing to check but the closed bit: one add. A reservation made on a closed
            // queue is cancelled by counting it as taken, so the counts still balance.
            if word.fetch_add(ONE, SeqCst) & CLOSED != 0 {
                self.popped.0.fetch_add(POP_ONE, SeqCst);
                return Err(FifoError::Closed);
            }
            return Ok(());
        }
        let mut current = word.load(SeqCst);
        loop {
            if current & CLOSED != 0 {
                return Err(FifoError::Closed);
            }
            if !self.has_room(current / ONE, None, 1) {
                return Err(FifoError::Full);
            }
            match word.compare_exchange_weak(current, current.wrapping_add(ONE), SeqCst, SeqCst) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Whether a spinning waiter of `side` has something to look at; a putter, room for
    /// `want` items.
    fn ready(&self, side: Side, want: usize) -> bool {
        if let Side::Get = side {
            // Only the storage: the producers' word stays theirs while a getter spins (a
            // close ends the spin when it runs out; the getter then sees it before sleeping).
            return !self.storage.is_empty();
        }
        let word = self.puts.0.word.load(SeqCst);
        if word & CLOSED != 0 {
            return true;
        }
        self.has_room(word / ONE, None, want)
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
                Err(FifoError::Full) => {
                    self.block(Side::Put, wait, &mut spun, FifoError::Full)?;
                }
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
        // After the push, a read-modify-write (it reads the latest word): a getter that set
        // its bit before it is woken, one that sets it after finds the item.
        if self.puts.0.word.fetch_or(0, SeqCst) & GETTERS_ASLEEP != 0 {
            let _sleep = self.sleep.lock();
            self.readable.notify_one();
        }
        Ok(())
    }

    /// Takes the first item, waiting for one as `wait` allows.
    pub(crate) fn get(&self, wait: Wait) -> Result<Shareable, FifoError> {
        let mut spun = false;
        let mut found = None;
        loop {
            if let Some(item) = found.take().or_else(|| self.storage.pop()) {
                let taken = if item.owner() == MAIN {
                    Some(item.take())
                } else {
                    self.settle(item)
                };
                if self.popped.0.fetch_add(POP_ONE, SeqCst) & PUTTERS_ASLEEP != 0 {
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
                if word / ONE == self.popped() {
                    return Err(FifoError::Closed);
                }
                // A put reserved before the close is still pushing, or another getter is
                // still counting what it took: both are a few instructions from done.
                pause();
                continue;
            }
            found = self.block(Side::Get, wait, &mut spun, FifoError::Empty)?;
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
    /// asleep. Returns for the caller to re-check (with the item a getter found as it was
    /// about to sleep); fails with `now` when `wait` is [`Wait::No`], with
    /// [`FifoError::Timeout`] once the deadline has passed.
    fn block(
        &self,
        side: Side,
        wait: Wait,
        spun: &mut bool,
        now: FifoError,
    ) -> Result<Option<Item>, FifoError> {
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
            // A putter facing a full queue spins until a few slots are free, not just one: it
            // then puts a run of items instead of meeting the getter at the boundary for every
            // slot. This only shapes the bounded spin; after it any free slot will do.
            let want = match side {
                Side::Get => 1,
                Side::Put => (self.maxsize / 8).clamp(1, 64),
            };
            spin_until(|| self.ready(side, want));
            return Ok(None);
        }
        let mut sleepers = self.sleep.lock();
        let mut found = None;
        // Count in, set the bit, and look once more, all under the lock.
        let ready = match side {
            Side::Get => {
                sleepers.getters += 1;
                let word = self.puts.0.word.fetch_or(GETTERS_ASLEEP, SeqCst);
                if word & CLOSED == 0 {
                    found = self.storage.pop();
                }
                word & CLOSED != 0 || found.is_some()
            }
            Side::Put => {
                sleepers.putters += 1;
                let popped = self.popped.0.fetch_or(PUTTERS_ASLEEP, SeqCst) / POP_ONE;
                let word = self.puts.0.word.load(SeqCst);
                word & CLOSED != 0 || self.has_room(word / ONE, Some(popped), 1)
            }
        };
        if !ready {
            let condvar = match side {
                Side::Get => &self.readable,
                Side::Put => &self.writable,
            };
            sleepers = match deadline {
                None => condvar.wait(sleepers),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    condvar.wait_timeout(sleepers, left)
                }
            };
        }
        match side {
            Side::Get => {
                sleepers.getters -= 1;
                if sleepers.getters == 0 {
                    self.puts.0.word.fetch_and(!GETTERS_ASLEEP, SeqCst);
                }
            }
            Side::Put => {
                sleepers.putters -= 1;
                if sleepers.putters == 0 {
                    self.popped.0.fetch_and(!PUTTERS_ASLEEP, SeqCst);
                }
            }
        }
        drop(sleepers);
        Ok(found)
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
        if removed > 0 && self.maxsize != 0 {
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
