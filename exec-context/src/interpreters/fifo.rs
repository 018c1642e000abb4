//! The one FIFO under both [`Queue`](super::Queue) (PEP 734) and the channels (PEP 554): a
//! deque with a lock at each end, and condition variables for the blocking sides. Putters
//! append to the tail under the `state` lock, which also keeps every waiter's bookkeeping;
//! getters take from the head under the `head` lock, and a getter that finds the head empty
//! moves the whole tail there at once. A producer and a consumer streaming through one queue
//! each take their own lock per item, and meet once per batch: with one lock for both ends,
//! that lock's cache line moved between their cores twice per item, which made a stream take
//! 2-3× crossbeam-channel's time per message. Each end and each counter has a cache line of
//! its own.
//!
//! Nobody sleep-polls: a side that must wait first spins briefly on the counters (a hand-off
//! between two running threads then costs no sleep), then sleeps on a condition variable.
//! Waiters are counted, and a put signals a sleeping getter only when one has not been
//! signalled already, after releasing the lock (so the woken thread does not block on it at
//! once). A get takes the state lock only once per batch (or when it must wait), so it
//! signals only when asked: a putter sets `room_wanted` before it sleeps for room, and a
//! sender's item carries a receipt.
//!
//! The structure is pure (no globals, no thread-locals): the owning interpreter of an item is
//! passed in, which keeps it checkable under loom.

use std::collections::VecDeque;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use super::UnboundPolicy;
use super::shareable::Shareable;
use super::sync::{Arc, AtomicBool, AtomicU8, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};

/// What a blocked operation waits for, when it gives up.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Fail at once.
    No,
    /// Until the deadline.
    Until(Instant),
    /// As long as it takes.
    Forever,
}

impl Wait {
    /// Until `timeout` from now (as long as it takes if that is past the clock's range).
    pub(crate) fn within(timeout: std::time::Duration) -> Wait {
        Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until)
    }
}

/// How a FIFO operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FifoError {
    /// A get that may not wait found nothing.
    Empty,
    /// A put that may not wait found no room.
    Full,
    /// A timed operation's deadline passed (a timed send's item was withdrawn).
    Timeout,
    Closed,
    /// The item's interpreter was closed and its policy is [`UnboundPolicy::Error`].
    Destroyed,
    /// A hand-off found no getter waiting for an item; nothing was put.
    NotReceiving,
    /// The caller's interpreter released its end of the channel while the call waited.
    Released,
}

const PENDING: u8 = 0;
const RECEIVED: u8 = 1;
const DROPPED: u8 = 2;

enum Payload {
    Value(Shareable),
    Destroyed,
}

/// An item with everything it may carry.
struct Full {
    payload: Payload,
    owner: u64,
    policy: UnboundPolicy,
    /// Set for a blocking send, whose sender waits for the item to be received.
    receipt: Option<Arc<AtomicU8>>,
}

/// An item as it sits in the queue: 24 bytes. A stream moves every item through memory both
/// threads touch, so its size counts: the common numbers travel inline (with the interpreter
/// that put them and their unbound policy), anything else (strings, handles, a receipt, an
/// unbound marker) in a box.
enum Item {
    /// A [`Shareable::Int`] within `i64`.
    Int(i64, u64, UnboundPolicy),
    /// A [`Shareable::Float`].
    Float(f64, u64, UnboundPolicy),
    Boxed(Box<Full>),
}

impl Item {
    #[inline]
    fn new(
        value: Shareable,
        owner: u64,
        policy: UnboundPolicy,
        receipt: Option<Arc<AtomicU8>>,
    ) -> Item {
        if receipt.is_none() {
            match value {
                Shareable::Int(n) => {
                    if let Ok(n) = i64::try_from(n) {
                        // A number owns nothing: skipping its drop skips an out-of-line call.
                        std::mem::forget(value);
                        return Item::Int(n, owner, policy);
                    }
                }
                Shareable::Float(x) => {
                    std::mem::forget(value);
                    return Item::Float(x, owner, policy);
                }
                _ => {}
            }
        }
        Item::boxed(value, owner, policy, receipt)
    }

    /// An item that does not fit inline (kept out of line: the stream of numbers never
    /// takes it).
    #[cold]
    #[inline(never)]
    fn boxed(
        value: Shareable,
        owner: u64,
        policy: UnboundPolicy,
        receipt: Option<Arc<AtomicU8>>,
    ) -> Item {
        Item::Boxed(Box::new(Full {
            payload: Payload::Value(value),
            owner,
            policy,
            receipt,
        }))
    }

    fn owner(&self) -> u64 {
        match self {
            Item::Int(_, owner, _) | Item::Float(_, owner, _) => *owner,
            Item::Boxed(full) => full.owner,
        }
    }

    fn receipt(&self) -> Option<&Arc<AtomicU8>> {
        match self {
            Item::Int(..) | Item::Float(..) => None,
            Item::Boxed(full) => full.receipt.as_ref(),
        }
    }

    /// The item as it leaves the queue: its value, or the error of a destroyed one.
    #[inline]
    fn take(self) -> Result<Shareable, FifoError> {
        match self {
            Item::Int(n, ..) => Ok(Shareable::Int(n.into())),
            Item::Float(x, ..) => Ok(Shareable::Float(x)),
            Item::Boxed(full) => match full.payload {
                Payload::Value(value) => Ok(value),
                Payload::Destroyed => Err(FifoError::Destroyed),
            },
        }
    }

    /// Everything the item carries, boxed or not.
    fn into_full(self) -> Full {
        match self {
            Item::Int(n, owner, policy) => Full {
                payload: Payload::Value(Shareable::Int(n.into())),
                owner,
                policy,
                receipt: None,
            },
            Item::Float(x, owner, policy) => Full {
                payload: Payload::Value(Shareable::Float(x)),
                owner,
                policy,
                receipt: None,
            },
            Item::Boxed(full) => *full,
        }
    }
}

/// The threads sleeping on one condition variable, and how many of them were signalled and
/// have not woken yet.
#[derive(Default)]
struct Waiters {
    waiting: usize,
    signalled: usize,
}

impl Waiters {
    /// Whether a sleeper needs a signal (one that is not already on its way); counts it.
    fn signal_one(&mut self) -> bool {
        if self.waiting > self.signalled {
            self.signalled += 1;
            true
        } else {
            false
        }
    }

    fn signal_all(&mut self) -> bool {
        let any = self.waiting > self.signalled;
        self.signalled = self.waiting;
        any
    }

    fn woke(&mut self) {
        self.waiting -= 1;
        self.signalled = self.signalled.saturating_sub(1).min(self.waiting);
    }
}

/// The tail end and every waiter's bookkeeping, under the `state` lock.
#[derive(Default)]
struct State {
    /// The newest items, oldest first; all of them come after those in [`Head`].
    items: VecDeque<Item>,
    closed: bool,
    getters: Waiters,
    putters: Waiters,
    senders: Waiters,
    /// Getters blocked in `get` (spinning or asleep) and not yet returned. When
    /// `receivers > len`, at least one of them waits for an item nobody has put yet: what
    /// [`Fifo::hand_off`] needs (a getter that does not wait may still take the item first).
    receivers: usize,
    /// [`Fifo::removed`] as a putter of a bounded queue last read it: `added - removed_seen`
    /// is never below the true length, so a put reads the getters' counter only when this
    /// estimate says the queue is full.
    removed_seen: usize,
}

/// The head end, under the `head` lock: the oldest items, taken over from the tail in one
/// batch whenever it runs dry.
#[derive(Default)]
struct Head {
    items: VecDeque<Item>,
    /// A putter asked to be signalled when a get makes room (see [`Fifo::want_room`]): the
    /// next get signals through the state lock. It may be stale (the putter found room after
    /// all, timed out, or was woken by a close): that costs one get a visit to the state lock.
    room_wanted: bool,
}

/// A FIFO with a lock at each end, so that a producer and a consumer each take their own
/// lock per item and meet only once per batch: a get that finds the head empty takes the
/// whole tail (lock order: `head`, then `state`). Each end, and each counter, sits on a
/// cache line of its own.
pub(crate) struct Fifo {
    maxsize: usize,
    /// Whether the interpreter that puts an item was closed (see
    /// [`append_bound`](Self::append_bound)).
    owner_closed: fn(u64) -> bool,
    /// Mirror of `closed`, for waiters spinning without the lock.
    closed: AtomicBool,
    readable: Condvar,
    writable: Condvar,
    received: Condvar,
    head: CachePadded<Mutex<Head>>,
    state: CachePadded<Mutex<State>>,
    /// Items ever put: written only under the state lock.
    added: CachePadded<AtomicUsize>,
    /// Items ever taken out, by gets, withdrawn sends, unbinding and discarding close:
    /// written only under the head lock. `added - removed` is the length.
    removed: CachePadded<AtomicUsize>,
}

/// The re-taken lock after a wait, or the lock with the reason to stop waiting.
type Blocked<'a> = Result<MutexGuard<'a, State>, (MutexGuard<'a, State>, FifoError)>;

/// Which condition a blocked operation waits for.
#[derive(Clone, Copy)]
enum Side {
    Get,
    Put,
    Send,
}

/// Spins, then yields, while `ready` is false — a short bounded wait that lets a hand-off
/// between two running threads complete without either sleeping. Returns early once ready,
/// and yields no longer than until `deadline` (a short timeout is not stretched to
/// [`PATIENCE`]).
fn spin_until(ready: impl Fn() -> bool, deadline: Option<Instant>) {
    if cfg!(loom) {
        return;
    }
    for round in 0..7 {
        for _ in 0..(1 << round) {
            std::hint::spin_loop();
        }
        if ready() {
            return;
        }
    }
    // Then yields, for up to `PATIENCE`: longer than a wake-up costs on a loaded or virtual
    // machine. Sleeping sooner lets a stream settle into waking the other side for every
    // item, each wake-up slower than the spin it ends: the waker's system call outlasts the
    // sleeper's spin, so the sleeper is asleep again when the next item comes.
    let mut until = Instant::now() + PATIENCE;
    if let Some(deadline) = deadline {
        until = until.min(deadline);
    }
    loop {
        if ready() || Instant::now() >= until {
            return;
        }
        std::thread::yield_now();
    }
}

/// How long a blocked side yields before it sleeps.
const PATIENCE: std::time::Duration = std::time::Duration::from_micros(50);

/// Adds `n` to a counter that only the holder of one lock writes (a plain load and store,
/// not a read-modify-write: the lock orders the writers).
#[inline(always)]
fn bump(counter: &AtomicUsize, n: usize) {
    // Wrapping: only differences of the two counters are used, and a 32-bit count of every
    // item ever put can wrap.
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Release,
    );
}

impl Fifo {
    /// A FIFO holding at most `maxsize` items (0: unbounded), whose putters are never
    /// closed interpreters (the unit tests' and loom models').
    #[cfg(any(test, loom))]
    pub(crate) fn new(maxsize: usize) -> Self {
        Self::with_owners(maxsize, |_| false)
    }

    /// A FIFO that asks `owner_closed` whether the interpreter putting an item was closed
    /// (the queues' and channels': the interpreters' table).
    pub(crate) fn with_owners(maxsize: usize, owner_closed: fn(u64) -> bool) -> Self {
        Fifo {
            maxsize,
            owner_closed,
            closed: AtomicBool::new(false),
            readable: Condvar::new(),
            writable: Condvar::new(),
            received: Condvar::new(),
            head: CachePadded::new(Mutex::new(Head::default())),
            state: CachePadded::new(Mutex::new(State::default())),
            added: CachePadded::new(AtomicUsize::new(0)),
            removed: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.maxsize
    }

    // No user code runs under either lock, so a poisoned lock still guards a consistent state.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    fn lock_head(&self) -> MutexGuard<'_, Head> {
        self.head.lock()
    }

    /// Both ends, in lock order: for what must see or change every item.
    fn lock_both(&self) -> (MutexGuard<'_, Head>, MutexGuard<'_, State>) {
        let head = self.lock_head();
        (head, self.lock())
    }

    /// The number of items, read by a holder of the state lock: never below the true length
    /// (`added` is written under that lock), and exact for every removal that happened
    /// before the call; a get racing it may be counted or not.
    fn len_locked(&self) -> usize {
        self.added
            .load(Ordering::Relaxed)
            .wrapping_sub(self.removed.load(Ordering::Acquire))
    }

    /// Whether a put must wait for room, for a holder of the state lock. Reads the getters'
    /// counter only when the estimate says full.
    #[inline]
    fn is_full(&self, state: &mut State) -> bool {
        if self.maxsize == 0 {
            return false;
        }
        let added = self.added.load(Ordering::Relaxed);
        if added.wrapping_sub(state.removed_seen) < self.maxsize {
            return false;
        }
        state.removed_seen = self.removed.load(Ordering::Acquire);
        added.wrapping_sub(state.removed_seen) >= self.maxsize
    }

    pub(crate) fn len(&self) -> usize {
        let _state = self.lock();
        self.len_locked()
    }

    pub(crate) fn full(&self) -> bool {
        let _state = self.lock();
        self.maxsize != 0 && self.len_locked() >= self.maxsize
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Appends `value`, waiting for room as `wait` allows. With `receipt`, the item carries a
    /// receipt the caller then waits on with [`await_receipt`](Self::await_receipt).
    pub(crate) fn put(
        &self,
        value: Shareable,
        owner: u64,
        policy: UnboundPolicy,
        wait: Wait,
        receipt: bool,
    ) -> Result<Option<Arc<AtomicU8>>, FifoError> {
        let mut state = self.lock();
        if state.closed || self.is_full(&mut state) {
            state = self.wait_for_room(state, wait)?;
        }
        let receipt = receipt.then(|| Arc::new(AtomicU8::new(PENDING)));
        self.append_bound(state, Item::new(value, owner, policy, receipt.clone()));
        Ok(receipt)
    }

    /// [`append`](Self::append), unless the item's interpreter was closed (work of it that
    /// outlived it puts): then its unbound policy applies at once, as [`unbind`](Self::unbind)
    /// applied it to the items put before the close. Asked under the lock: a close either
    /// came before (its interpreter is out of the table before its items are unbound) or
    /// unbinds this item after it is appended.
    #[inline(always)]
    fn append_bound(&self, state: MutexGuard<'_, State>, item: Item) {
        let owner = item.owner();
        if owner == 0 || !(self.owner_closed)(owner) {
            self.append(state, item);
            return;
        }
        self.append_unbound(state, item);
    }

    #[cold]
    #[inline(never)]
    fn append_unbound(&self, state: MutexGuard<'_, State>, item: Item) {
        let owner = item.owner();
        let mut removed = Vec::new();
        match unbind_items(VecDeque::from([item]), owner, &mut removed).pop_front() {
            Some(item) => self.append(state, item),
            None => drop(state),
        }
        // Outside the lock.
        drop(removed);
    }

    /// Appends `item` at the tail, counts it in, releases the lock and wakes a getter that
    /// sleeps and has not been signalled already.
    #[inline(always)]
    fn append(&self, mut state: MutexGuard<'_, State>, item: Item) {
        state.items.push_back(item);
        bump(&self.added, 1);
        let wake = state.getters.signal_one();
        drop(state);
        if wake {
            self.readable.notify_one();
        }
    }

    /// The slow side of [`put`](Self::put): waits, as `wait` allows, until the queue has
    /// room (returning the lock) or is closed.
    #[cold]
    #[inline(never)]
    fn wait_for_room<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        wait: Wait,
    ) -> Result<MutexGuard<'a, State>, FifoError> {
        let mut spun = false;
        loop {
            if state.closed {
                return Err(FifoError::Closed);
            }
            if !self.is_full(&mut state) {
                return Ok(state);
            }
            state = self
                .block(state, Side::Put, wait, &mut spun, FifoError::Full)
                .map_err(|(_, error)| error)?;
        }
    }

    /// How many getters wait for an item (for the models).
    #[cfg(loom)]
    pub(crate) fn receivers(&self) -> usize {
        self.lock().receivers
    }

    /// Appends `value` only if a getter is waiting for it (PEP 554's `send_nowait`): the
    /// item goes straight to a blocked getter, and nothing is left buffered otherwise.
    pub(crate) fn hand_off(
        &self,
        value: Shareable,
        owner: u64,
        policy: UnboundPolicy,
    ) -> Result<(), FifoError> {
        let state = self.lock();
        if state.closed {
            return Err(FifoError::Closed);
        }
        let len = self.len_locked();
        if state.receivers <= len {
            return Err(FifoError::NotReceiving);
        }
        if self.maxsize != 0 && len >= self.maxsize {
            return Err(FifoError::Full);
        }
        self.append_bound(state, Item::new(value, owner, policy, None));
        Ok(())
    }

    /// Takes the first item, waiting for one as `wait` allows. While it waits, the getter
    /// counts as a receiver for [`hand_off`](Self::hand_off).
    pub(crate) fn get(&self, wait: Wait) -> Result<Shareable, FifoError> {
        self.get_unless(wait, || false)
    }

    /// [`get`](Self::get), failing with [`FifoError::Released`] instead of waiting (again)
    /// once `released` says so: it is asked under the state lock before each sleep, and
    /// [`interrupt`](Self::interrupt) wakes the sleepers to ask it again.
    #[inline(always)]
    pub(crate) fn get_unless(
        &self,
        wait: Wait,
        released: impl Fn() -> bool,
    ) -> Result<Shareable, FifoError> {
        let mut head = self.lock_head();
        if head.items.is_empty() {
            self.refill(&mut head);
        }
        match head.items.pop_front() {
            Some(item) => self.took(head, item),
            None => self.wait_for_item(head, wait, released),
        }
    }

    /// Moves the whole tail to the (empty) head: one meeting of the two ends per batch.
    #[inline(never)]
    fn refill(&self, head: &mut Head) {
        let mut state = self.lock();
        std::mem::swap(&mut head.items, &mut state.items);
    }

    /// Finishes a get that popped `item` from the head: counts it out, wakes whoever waits
    /// for room or for the item's receipt, and releases the head lock.
    #[inline(always)]
    fn took(&self, head: MutexGuard<'_, Head>, item: Item) -> Result<Shareable, FifoError> {
        bump(&self.removed, 1);
        self.took_counted(head, item)
    }

    /// [`took`](Self::took) of an item already counted out.
    #[inline(always)]
    fn took_counted(&self, head: MutexGuard<'_, Head>, item: Item) -> Result<Shareable, FifoError> {
        if head.room_wanted || item.receipt().is_some() {
            self.took_and_signal(head, &item);
        } else {
            drop(head);
        }
        item.take()
    }

    /// The side of [`took`](Self::took) that needs the state lock: a putter waits for room,
    /// or the item's sender waits for its receipt.
    #[cold]
    #[inline(never)]
    fn took_and_signal(&self, mut head: MutexGuard<'_, Head>, item: &Item) {
        let mut state = self.lock();
        let wake_putter = head.room_wanted && state.putters.signal_one();
        // Putters still asleep and not signalled keep asking. A putter that set the flag is
        // asleep by now, or found room and went on: it held the state lock from setting the
        // flag until it slept or put.
        head.room_wanted = state.putters.waiting > state.putters.signalled;
        let wake_senders = match item.receipt() {
            Some(receipt) => {
                receipt.store(RECEIVED, Ordering::Release);
                state.senders.signal_all()
            }
            None => false,
        };
        drop(state);
        drop(head);
        if wake_putter {
            self.writable.notify_one();
        }
        if wake_senders {
            self.received.notify_all();
        }
    }

    /// The slow side of [`get`](Self::get), entered with the head lock after the head and
    /// then the tail were found empty (a put may have come since: the loop looks again under
    /// both locks): waits for an item as `wait` allows, counting as a receiver meanwhile. It
    /// never sleeps holding the head lock.
    #[cold]
    #[inline(never)]
    fn wait_for_item<'a>(
        &'a self,
        mut head: MutexGuard<'a, Head>,
        wait: Wait,
        released: impl Fn() -> bool,
    ) -> Result<Shareable, FifoError> {
        let mut spun = false;
        let mut receiving = false;
        loop {
            let mut state = self.lock();
            if head.items.is_empty() {
                std::mem::swap(&mut head.items, &mut state.items);
            }
            if let Some(item) = head.items.pop_front() {
                if receiving {
                    state.receivers -= 1;
                }
                // Counted out before the state lock goes (the head lock, which `removed`
                // needs, is held): a `hand_off` must never see this getter gone as a
                // receiver while its item still counts as waiting for one.
                bump(&self.removed, 1);
                drop(state);
                return self.took_counted(head, item);
            }
            if state.closed {
                if receiving {
                    state.receivers -= 1;
                }
                return Err(FifoError::Closed);
            }
            // Asked under the lock, after the items: a getter counted as receiving may have
            // been handed an item by `hand_off` (which promises a taker), so it takes what
            // is there. So a receive of an interpreter that released its end may still take
            // one item that came before it woke; it fails the next time it would wait.
            if !matches!(wait, Wait::No) && released() {
                if receiving {
                    state.receivers -= 1;
                }
                return Err(FifoError::Released);
            }
            if !receiving && !matches!(wait, Wait::No) {
                receiving = true;
                state.receivers += 1;
            }
            drop(head);
            match self.block(state, Side::Get, wait, &mut spun, FifoError::Empty) {
                Ok(state) => drop(state),
                Err((mut state, error)) => {
                    // Still under the lock: no hand-off can count on this getter any more.
                    if receiving {
                        state.receivers -= 1;
                    }
                    return Err(error);
                }
            }
            head = self.lock_head();
        }
    }

    /// Waits until the item behind `receipt` is received. On timeout the item is withdrawn
    /// (unless a receiver took it meanwhile) and the send fails.
    pub(crate) fn await_receipt(
        &self,
        receipt: &Arc<AtomicU8>,
        wait: Wait,
        released: impl Fn() -> bool,
    ) -> Result<(), FifoError> {
        let mut state = self.lock();
        let mut spun = false;
        loop {
            match receipt.load(Ordering::Acquire) {
                RECEIVED => return Ok(()),
                DROPPED => return Err(FifoError::Closed),
                _ => {}
            }
            // Closed while the send waited (PEP 554: a current `send` fails once the channel
            // is closed, also when a release closed it): withdrawn, unless received
            // meanwhile. What was sent without waiting stays for the receivers.
            if state.closed {
                drop(state);
                return self.withdraw(receipt, FifoError::Closed);
            }
            // The sender's interpreter released its end (see `get_unless`): withdrawn as on
            // a timeout, unless received meanwhile.
            if released() {
                drop(state);
                return self.withdraw(receipt, FifoError::Released);
            }
            let blocked = self.block_on(
                state,
                Side::Send,
                wait,
                &mut spun,
                FifoError::Timeout,
                || {
                    receipt.load(Ordering::Acquire) != PENDING
                        || self.closed.load(Ordering::Acquire)
                },
            );
            match blocked {
                Ok(next) => state = next,
                Err((state, error)) => {
                    drop(state);
                    return self.withdraw(receipt, error);
                }
            }
        }
    }

    /// Withdraws the item behind `receipt` after its sender gave up with `error`, unless a
    /// receiver took it meanwhile (then the send succeeded after all).
    #[cold]
    fn withdraw(&self, receipt: &Arc<AtomicU8>, error: FifoError) -> Result<(), FifoError> {
        let (mut head, mut state) = self.lock_both();
        match receipt.load(Ordering::Acquire) {
            RECEIVED => return Ok(()),
            // Discarded by a close meanwhile: the send failed because the channel closed.
            DROPPED => return Err(FifoError::Closed),
            _ => {}
        }
        let mine = |item: &Item| item.receipt().is_some_and(|r| Arc::ptr_eq(r, receipt));
        let withdrawn = match head.items.iter().position(mine) {
            Some(at) => head.items.remove(at),
            None => match state.items.iter().position(mine) {
                Some(at) => state.items.remove(at),
                None => None,
            },
        };
        if withdrawn.is_some() {
            bump(&self.removed, 1);
        }
        let wake = withdrawn.is_some() && self.maxsize != 0 && state.putters.signal_one();
        drop(state);
        drop(head);
        if wake {
            self.writable.notify_one();
        }
        drop(withdrawn);
        Err(error)
    }

    /// Waits once for the condition of `side` (as `wait` allows): the first time with a short
    /// spin outside the lock, then asleep on the side's condition variable. Returns the
    /// re-taken lock for the caller to re-check; or, still holding the lock, `now` when
    /// `wait` is [`Wait::No`] and [`FifoError::Timeout`] when the deadline has passed.
    fn block<'a>(
        &'a self,
        state: MutexGuard<'a, State>,
        side: Side,
        wait: Wait,
        spun: &mut bool,
        now: FifoError,
    ) -> Blocked<'a> {
        // A putter facing a full queue spins until a few slots are free, not just one: it then
        // puts a run of items instead of meeting the getter for every single slot. This only
        // shapes the bounded spin; once it is over the putter takes any free slot.
        let room = self.maxsize - (self.maxsize / 8).min(64);
        self.block_on(state, side, wait, spun, now, || {
            self.closed.load(Ordering::Acquire) || {
                let removed = self.removed.load(Ordering::Acquire);
                let added = self.added.load(Ordering::Acquire);
                // `removed` first: the difference is never negative.
                match side {
                    Side::Get => added != removed,
                    Side::Put => added.wrapping_sub(removed) < room,
                    Side::Send => true,
                }
            }
        })
    }

    fn block_on<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        side: Side,
        wait: Wait,
        spun: &mut bool,
        now: FifoError,
        ready: impl Fn() -> bool,
    ) -> Blocked<'a> {
        let deadline = match wait {
            Wait::No => return Err((state, now)),
            Wait::Forever => None,
            Wait::Until(deadline) => {
                if Instant::now() >= deadline {
                    return Err((state, FifoError::Timeout));
                }
                Some(deadline)
            }
        };
        if !*spun {
            *spun = true;
            drop(state);
            spin_until(&ready, deadline);
            return Ok(self.lock());
        }
        if let Side::Put = side {
            // Gets take no state lock of their own: ask the next one to signal.
            state = self.want_room(state);
            if state.closed || !self.is_full(&mut state) {
                return Ok(state);
            }
        }
        let (condvar, waiters): (&Condvar, fn(&mut State) -> &mut Waiters) = match side {
            Side::Get => (&self.readable, |s| &mut s.getters),
            Side::Put => (&self.writable, |s| &mut s.putters),
            Side::Send => (&self.received, |s| &mut s.senders),
        };
        waiters(&mut state).waiting += 1;
        let mut state = match deadline {
            None => condvar.wait(state),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                condvar.wait_timeout(state, left)
            }
        };
        waiters(&mut state).woke();
        Ok(state)
    }

    /// Before a putter sleeps for room: sets [`Head::room_wanted`] while holding both locks,
    /// and keeps the state lock, under which the caller re-checks and sleeps. A get before
    /// this is counted in `removed`, which the caller re-reads; a get after it sees the flag
    /// and signals through the state lock, which it can take only once the putter sleeps or
    /// has found room and put (no other putter can take the room in between: the state lock
    /// is held throughout).
    fn want_room<'a>(&'a self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        drop(state);
        let (mut head, state) = self.lock_both();
        head.room_wanted = true;
        state
    }

    /// Wakes every getter and sender asleep, for them to ask their `released` check again
    /// (an interpreter released its end of the channel): those whose check still says no go
    /// back to sleep.
    pub(crate) fn interrupt(&self) {
        let mut state = self.lock();
        let getters = state.getters.signal_all();
        let senders = state.senders.signal_all();
        drop(state);
        if getters {
            self.readable.notify_all();
        }
        if senders {
            self.received.notify_all();
        }
    }

    /// No more puts; gets drain what is left, then fail with `Closed`. With `discard`, what is
    /// left is dropped too (its blocked senders fail). Returns whether this call closed it.
    pub(crate) fn close(&self, discard: bool) -> bool {
        let (mut head, mut state) = self.lock_both();
        let first = !state.closed;
        state.closed = true;
        self.closed.store(true, Ordering::Release);
        let dropped: Vec<Item> = if discard {
            head.items.drain(..).chain(state.items.drain(..)).collect()
        } else {
            Vec::new()
        };
        bump(&self.removed, dropped.len());
        for item in &dropped {
            if let Some(receipt) = item.receipt() {
                receipt.store(DROPPED, Ordering::Release);
            }
        }
        state.getters.signal_all();
        state.putters.signal_all();
        state.senders.signal_all();
        drop(state);
        drop(head);
        self.readable.notify_all();
        self.writable.notify_all();
        self.received.notify_all();
        drop(dropped);
        first
    }

    /// Applies each item's unbound policy to the items `owner` put: the interpreter that put
    /// them was closed.
    pub(crate) fn unbind(&self, owner: u64) {
        // Every closing interpreter visits every queue: an empty one answers from one lock
        // (the count is never below the true length).
        if self.len() == 0 {
            return;
        }
        let (mut head, mut state) = self.lock_both();
        let mine = |item: &Item| item.owner() == owner;
        if !head.items.iter().any(mine) && !state.items.iter().any(mine) {
            return;
        }
        let mut removed = Vec::new();
        head.items = unbind_items(std::mem::take(&mut head.items), owner, &mut removed);
        state.items = unbind_items(std::mem::take(&mut state.items), owner, &mut removed);
        bump(&self.removed, removed.len());
        let wake = !removed.is_empty();
        if wake {
            state.putters.signal_all();
            state.senders.signal_all();
        }
        drop(state);
        drop(head);
        if wake {
            self.writable.notify_all();
            self.received.notify_all();
        }
        drop(removed);
    }
}

/// `items` after applying each unbound policy to those `owner` put; removed items go to
/// `removed`, their senders told.
fn unbind_items(items: VecDeque<Item>, owner: u64, removed: &mut Vec<Full>) -> VecDeque<Item> {
    let mut kept = VecDeque::with_capacity(items.len());
    for item in items {
        if item.owner() != owner {
            kept.push_back(item);
            continue;
        }
        let mut full = item.into_full();
        // The owner is gone; the item now belongs to nobody (and is never unbound twice).
        full.owner = u64::MAX;
        match full.policy {
            UnboundPolicy::Remove => {
                if let Some(receipt) = &full.receipt {
                    receipt.store(DROPPED, Ordering::Release);
                }
                removed.push(full);
            }
            UnboundPolicy::Replace => {
                full.payload = Payload::Value(Shareable::Unbound);
                kept.push_back(Item::Boxed(Box::new(full)));
            }
            UnboundPolicy::Error => {
                full.payload = Payload::Destroyed;
                kept.push_back(Item::Boxed(Box::new(full)));
            }
        }
    }
    kept
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Barrier};

    use super::{Fifo, FifoError, Item, Wait};
    use crate::interpreters::UnboundPolicy;
    use crate::interpreters::shareable::Shareable;

    fn put(fifo: &Fifo, value: Shareable, owner: u64, policy: UnboundPolicy) {
        fifo.put(value, owner, policy, Wait::No, false).unwrap();
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_item_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<Item>(), 24);
    }

    #[test]
    fn numbers_come_out_as_they_went_in_inline_or_boxed() {
        let fifo = Fifo::new(0);
        let values = [
            Shareable::Int(i64::MIN.into()),
            Shareable::Int(i64::MAX.into()),
            Shareable::Int(i128::from(i64::MAX) + 1),
            Shareable::Int(u64::MAX.into()),
            Shareable::Int(i128::MIN),
            Shareable::Float(-0.0),
            Shareable::Float(f64::INFINITY),
            Shareable::from("text"),
            Shareable::None,
        ];
        for value in &values {
            put(&fifo, value.clone(), 0, UnboundPolicy::Replace);
        }
        put(&fifo, Shareable::Float(f64::NAN), 0, UnboundPolicy::Replace);
        assert_eq!(fifo.len(), values.len() + 1);
        for value in &values {
            assert_eq!(&fifo.get(Wait::No).unwrap(), value);
        }
        match fifo.get(Wait::No) {
            Ok(Shareable::Float(x)) => assert_eq!(x.to_bits(), f64::NAN.to_bits()),
            other => panic!("{other:?}"),
        }
        assert_eq!(fifo.get(Wait::No), Err(FifoError::Empty));
    }

    #[test]
    fn unbinding_applies_each_inline_number_s_policy() {
        let fifo = Fifo::new(0);
        put(&fifo, Shareable::Int(1), 9, UnboundPolicy::Replace);
        put(&fifo, Shareable::Int(2), 9, UnboundPolicy::Error);
        put(&fifo, Shareable::Float(3.0), 9, UnboundPolicy::Remove);
        put(&fifo, Shareable::Int(4), 1, UnboundPolicy::Remove);
        put(&fifo, Shareable::Float(5.0), 9, UnboundPolicy::Error);
        fifo.unbind(9);
        assert_eq!(fifo.len(), 4);
        assert_eq!(fifo.get(Wait::No), Ok(Shareable::Unbound));
        assert_eq!(fifo.get(Wait::No), Err(FifoError::Destroyed));
        assert_eq!(fifo.get(Wait::No), Ok(Shareable::Int(4)));
        assert_eq!(fifo.get(Wait::No), Err(FifoError::Destroyed));
        // Another interpreter closing leaves an item alone.
        put(&fifo, Shareable::Int(6), 9, UnboundPolicy::Remove);
        fifo.unbind(1);
        assert_eq!(fifo.get(Wait::No), Ok(Shareable::Int(6)));
    }

    /// Every put that returned `Ok` while the queue was being closed is taken before the
    /// getter hears `Closed`; every other put failed with `Closed`.
    #[test]
    fn close_racing_puts_loses_no_accepted_item() {
        for round in 0..20 {
            let fifo = Arc::new(Fifo::new(if round % 2 == 0 { 0 } else { 4 }));
            let start = Arc::new(Barrier::new(4));
            let putters: Vec<_> = (0..2)
                .map(|p| {
                    let (fifo, start) = (fifo.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        let mut accepted = 0;
                        for n in 0..1000 {
                            let put = fifo.put(
                                Shareable::Int(n),
                                0,
                                UnboundPolicy::Replace,
                                Wait::Forever,
                                false,
                            );
                            match put {
                                Ok(_) => accepted += 1,
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
                let (fifo, start) = (fifo.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut taken = 0;
                    loop {
                        match fifo.get(Wait::Forever) {
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
            fifo.close(false);
            let accepted: usize = putters.into_iter().map(|p| p.join().unwrap()).sum();
            let taken = getter.join().unwrap();
            assert_eq!(taken, accepted, "round {round}");
            assert_eq!(fifo.len(), 0);
        }
    }

    /// A get moves the whole tail to the head: items at either end, and a withdrawal, an
    /// unbinding or a discarding close must find them there.
    fn fifo_with_items_at_both_ends() -> Fifo {
        let fifo = Fifo::new(0);
        put(&fifo, Shareable::Int(0), 1, UnboundPolicy::Replace);
        put(&fifo, Shareable::Int(1), 9, UnboundPolicy::Replace);
        put(&fifo, Shareable::Int(2), 9, UnboundPolicy::Remove);
        // Takes 0 and leaves 1 and 2 at the head.
        assert_eq!(fifo.get(Wait::No), Ok(Shareable::Int(0)));
        put(&fifo, Shareable::Int(3), 9, UnboundPolicy::Error);
        put(&fifo, Shareable::Int(4), 1, UnboundPolicy::Remove);
        assert_eq!(fifo.len(), 4);
        fifo
    }

    #[test]
    fn unbinding_reaches_the_items_at_both_ends() {
        let fifo = fifo_with_items_at_both_ends();
        fifo.unbind(9);
        assert_eq!(fifo.len(), 3);
        assert_eq!(fifo.get(Wait::No), Ok(Shareable::Unbound));
        assert_eq!(fifo.get(Wait::No), Err(FifoError::Destroyed));
        assert_eq!(fifo.get(Wait::No), Ok(Shareable::Int(4)));
        assert_eq!(fifo.get(Wait::No), Err(FifoError::Empty));
        assert_eq!(fifo.len(), 0);
    }

    #[test]
    fn a_discarding_close_drops_the_items_at_both_ends() {
        let fifo = fifo_with_items_at_both_ends();
        assert!(fifo.close(true));
        assert_eq!(fifo.len(), 0);
        assert_eq!(fifo.get(Wait::No), Err(FifoError::Closed));
    }

    #[test]
    fn a_closed_queue_drains_both_ends_in_order_before_it_fails() {
        let fifo = fifo_with_items_at_both_ends();
        assert!(fifo.close(false));
        for n in 1..=4 {
            assert_eq!(fifo.get(Wait::No), Ok(Shareable::Int(n)));
        }
        assert_eq!(fifo.get(Wait::No), Err(FifoError::Closed));
    }

    #[test]
    fn a_timed_out_send_is_withdrawn_from_either_end() {
        let soon = || Wait::within(std::time::Duration::from_millis(5));
        // At the tail: nobody took anything.
        let fifo = Fifo::new(0);
        let receipt = fifo
            .put(Shareable::Int(1), 0, UnboundPolicy::Replace, Wait::No, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            fifo.await_receipt(&receipt, soon(), || false),
            Err(FifoError::Timeout)
        );
        assert_eq!(fifo.len(), 0);
        assert_eq!(fifo.get(Wait::No), Err(FifoError::Empty));
        // At the head: a get took the item before it and moved it there.
        put(&fifo, Shareable::Int(2), 0, UnboundPolicy::Replace);
        let receipt = fifo
            .put(Shareable::Int(3), 0, UnboundPolicy::Replace, Wait::No, true)
            .unwrap()
            .unwrap();
        put(&fifo, Shareable::Int(4), 0, UnboundPolicy::Replace);
        assert_eq!(fifo.get(Wait::No), Ok(Shareable::Int(2)));
        assert_eq!(
            fifo.await_receipt(&receipt, soon(), || false),
            Err(FifoError::Timeout)
        );
        assert_eq!(fifo.len(), 1);
        assert_eq!(fifo.get(Wait::No), Ok(Shareable::Int(4)));
        assert_eq!(fifo.get(Wait::No), Err(FifoError::Empty));
    }

    /// A bounded queue's putter keeps an estimate of the length; a get that happened before
    /// a put (here on another thread, joined) must make room for it, also without waiting.
    #[test]
    fn a_get_on_another_thread_makes_room_for_a_put_that_may_not_wait() {
        let fifo = Arc::new(Fifo::new(2));
        for round in 0..100 {
            while fifo.len() < 2 {
                put(&fifo, Shareable::Int(round), 0, UnboundPolicy::Replace);
            }
            let full = fifo.put(
                Shareable::Int(-1),
                0,
                UnboundPolicy::Replace,
                Wait::No,
                false,
            );
            assert_eq!(full.map(|_| ()), Err(FifoError::Full));
            let getter = {
                let fifo = fifo.clone();
                std::thread::spawn(move || fifo.get(Wait::No).map(|_| ()))
            };
            assert_eq!(getter.join().unwrap(), Ok(()));
            put(&fifo, Shareable::Int(round), 0, UnboundPolicy::Replace);
            assert!(fifo.full());
        }
    }

    /// Two putters and two getters through a queue of 3: every item arrives once, and each
    /// getter sees each putter's items in the order they were put.
    #[test]
    fn two_by_two_through_a_small_bounded_queue_keeps_each_putter_s_order() {
        const PER_PUTTER: i128 = 20_000;
        let fifo = Arc::new(Fifo::new(3));
        let putters: Vec<_> = (0..2)
            .map(|p| {
                let fifo = fifo.clone();
                std::thread::spawn(move || {
                    for n in 0..PER_PUTTER {
                        let value = Shareable::Int(p * PER_PUTTER + n);
                        fifo.put(value, 0, UnboundPolicy::Replace, Wait::Forever, false)
                            .unwrap();
                    }
                })
            })
            .collect();
        let getters: Vec<_> = (0..2)
            .map(|_| {
                let fifo = fifo.clone();
                std::thread::spawn(move || {
                    let mut last = [-1, -1];
                    let mut got = Vec::new();
                    loop {
                        match fifo.get(Wait::Forever) {
                            Ok(Shareable::Int(n)) => {
                                let p = usize::from(n >= PER_PUTTER);
                                assert!(n > last[p], "{n} after {}", last[p]);
                                last[p] = n;
                                got.push(n);
                            }
                            Err(FifoError::Closed) => return got,
                            other => panic!("{other:?}"),
                        }
                    }
                })
            })
            .collect();
        for putter in putters {
            putter.join().unwrap();
        }
        fifo.close(false);
        let mut all: Vec<i128> = getters
            .into_iter()
            .flat_map(|getter| getter.join().unwrap())
            .collect();
        all.sort_unstable();
        assert!(all.iter().copied().eq(0..2 * PER_PUTTER));
        assert_eq!(fifo.len(), 0);
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
            let fifo = Fifo::new(maxsize);
            // The model: (value, owner, policy) in order, and the owners closed so far.
            let mut model: VecDeque<(i128, u64, UnboundPolicy)> = VecDeque::new();
            let mut gone: Vec<u64> = Vec::new();
            let mut closed = false;
            let mut next_owner = 1;
            for step in 0..60 {
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
                            Ok(None)
                        };
                        let put = fifo
                            .put(Shareable::Int(n), owner, policy, Wait::No, false)
                            .map(|receipt| receipt.map(drop));
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
                        assert_eq!(fifo.get(Wait::No), expected, "seed {seed}");
                    }
                    8 => {
                        // The current subinterpreter closes; later puts come from a new one.
                        fifo.unbind(next_owner);
                        model.retain(|&(_, owner, policy)| {
                            owner != next_owner || policy != UnboundPolicy::Remove
                        });
                        gone.push(next_owner);
                        next_owner += 1;
                    }
                    _ => {
                        if rng.next().is_multiple_of(4) {
                            assert_eq!(fifo.close(false), !closed);
                            closed = true;
                        }
                    }
                }
                assert_eq!(fifo.len(), model.len(), "seed {seed}");
                assert_eq!(fifo.full(), maxsize != 0 && model.len() >= maxsize);
                assert_eq!(fifo.is_closed(), closed);
            }
        }
    }
}
