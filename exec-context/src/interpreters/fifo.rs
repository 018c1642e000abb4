//! The one FIFO under both [`Queue`](super::Queue) (PEP 734) and the channels (PEP 554): a
//! mutex-protected deque with condition variables for the blocking sides. Waiters are counted
//! so that a put or get only signals when someone is actually waiting, and nobody sleep-polls.
//!
//! The structure is pure (no globals, no thread-locals): the owning interpreter of an item is
//! passed in, which keeps it checkable under loom.

use std::collections::VecDeque;
use std::time::Instant;

use super::UnboundPolicy;
use super::shareable::Shareable;
use super::sync::{Arc, AtomicU8, Condvar, Mutex, MutexGuard, Ordering};

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

/// How a FIFO operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FifoError {
    Empty,
    Full,
    Closed,
    /// The item's interpreter was closed and its policy is [`UnboundPolicy::Error`].
    Destroyed,
    /// A blocking send timed out; the item was withdrawn.
    NotReceived,
}

const PENDING: u8 = 0;
const RECEIVED: u8 = 1;
const DROPPED: u8 = 2;

enum Payload {
    Value(Shareable),
    Destroyed,
}

struct Item {
    payload: Payload,
    owner: u64,
    policy: UnboundPolicy,
    /// Set for a blocking send, whose sender waits for the item to be received.
    receipt: Option<Arc<AtomicU8>>,
}

#[derive(Default)]
struct State {
    items: VecDeque<Item>,
    closed: bool,
    getters: usize,
    putters: usize,
    senders: usize,
}

pub(crate) struct Fifo {
    maxsize: usize,
    state: Mutex<State>,
    readable: Condvar,
    writable: Condvar,
    received: Condvar,
}

impl Fifo {
    /// A FIFO holding at most `maxsize` items (0: unbounded).
    pub(crate) fn new(maxsize: usize) -> Self {
        Fifo {
            maxsize,
            state: Mutex::new(State::default()),
            readable: Condvar::new(),
            writable: Condvar::new(),
            received: Condvar::new(),
        }
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.maxsize
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under the lock, so a poisoned lock still guards a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_full(&self, state: &State) -> bool {
        self.maxsize != 0 && state.items.len() >= self.maxsize
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub(crate) fn full(&self) -> bool {
        let state = self.lock();
        self.is_full(&state)
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
        loop {
            if state.closed {
                return Err(FifoError::Closed);
            }
            if !self.is_full(&state) {
                break;
            }
            state = self.block(
                state,
                &self.writable,
                wait,
                |s| &mut s.putters,
                FifoError::Full,
            )?;
        }
        let receipt = receipt.then(|| Arc::new(AtomicU8::new(PENDING)));
        state.items.push_back(Item {
            payload: Payload::Value(value),
            owner,
            policy,
            receipt: receipt.clone(),
        });
        if state.getters > 0 {
            self.readable.notify_one();
        }
        Ok(receipt)
    }

    /// Takes the first item, waiting for one as `wait` allows.
    pub(crate) fn get(&self, wait: Wait) -> Result<Shareable, FifoError> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                if state.putters > 0 {
                    self.writable.notify_one();
                }
                if let Some(receipt) = &item.receipt {
                    receipt.store(RECEIVED, Ordering::Relaxed);
                    if state.senders > 0 {
                        self.received.notify_all();
                    }
                }
                drop(state);
                return match item.payload {
                    Payload::Value(value) => Ok(value),
                    Payload::Destroyed => Err(FifoError::Destroyed),
                };
            }
            if state.closed {
                return Err(FifoError::Closed);
            }
            state = self.block(
                state,
                &self.readable,
                wait,
                |s| &mut s.getters,
                FifoError::Empty,
            )?;
        }
    }

    /// Waits until the item behind `receipt` is received. On timeout the item is withdrawn
    /// (unless a receiver took it meanwhile) and the send fails.
    pub(crate) fn await_receipt(
        &self,
        receipt: &Arc<AtomicU8>,
        wait: Wait,
    ) -> Result<(), FifoError> {
        let mut state = self.lock();
        loop {
            match receipt.load(Ordering::Relaxed) {
                RECEIVED => return Ok(()),
                DROPPED => return Err(FifoError::Closed),
                _ => {}
            }
            match self.block(
                state,
                &self.received,
                wait,
                |s| &mut s.senders,
                FifoError::NotReceived,
            ) {
                Ok(next) => state = next,
                Err(error) => {
                    let mut state = self.lock();
                    if receipt.load(Ordering::Relaxed) == RECEIVED {
                        return Ok(());
                    }
                    let mine = |item: &Item| {
                        item.receipt
                            .as_ref()
                            .is_some_and(|r| Arc::ptr_eq(r, receipt))
                    };
                    if let Some(at) = state.items.iter().position(mine) {
                        let withdrawn = state.items.remove(at);
                        if state.putters > 0 {
                            self.writable.notify_one();
                        }
                        drop(state);
                        drop(withdrawn);
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Sleeps on `condvar` once (as `wait` allows), counting itself in the waiter count
    /// `counter` selects. Returns `timeout` when the wait is over without success.
    fn block<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        condvar: &Condvar,
        wait: Wait,
        counter: fn(&mut State) -> &mut usize,
        timeout: FifoError,
    ) -> Result<MutexGuard<'a, State>, FifoError> {
        match wait {
            Wait::No => Err(timeout),
            Wait::Forever => {
                *counter(&mut state) += 1;
                let mut state = condvar.wait(state).unwrap_or_else(|e| e.into_inner());
                *counter(&mut state) -= 1;
                Ok(state)
            }
            Wait::Until(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(timeout);
                }
                *counter(&mut state) += 1;
                let (mut state, _) = condvar
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(|e| e.into_inner());
                *counter(&mut state) -= 1;
                Ok(state)
            }
        }
    }

    /// No more puts; gets drain what is left, then fail with `Closed`. With `discard`, what is
    /// left is dropped too (its blocked senders fail). Returns whether this call closed it.
    pub(crate) fn close(&self, discard: bool) -> bool {
        let mut state = self.lock();
        let first = !state.closed;
        state.closed = true;
        let dropped: Vec<Item> = if discard {
            state.items.drain(..).collect()
        } else {
            Vec::new()
        };
        for item in &dropped {
            if let Some(receipt) = &item.receipt {
                receipt.store(DROPPED, Ordering::Relaxed);
            }
        }
        self.readable.notify_all();
        self.writable.notify_all();
        self.received.notify_all();
        drop(state);
        drop(dropped);
        first
    }

    /// Applies each item's unbound policy to the items `owner` put: the interpreter that put
    /// them was closed.
    pub(crate) fn unbind(&self, owner: u64) {
        let mut state = self.lock();
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(state.items.len());
        for mut item in state.items.drain(..) {
            if item.owner != owner {
                kept.push_back(item);
                continue;
            }
            match item.policy {
                UnboundPolicy::Remove => {
                    if let Some(receipt) = &item.receipt {
                        receipt.store(DROPPED, Ordering::Relaxed);
                    }
                    removed.push(item);
                }
                UnboundPolicy::Replace => {
                    item.payload = Payload::Value(Shareable::Unbound);
                    kept.push_back(item);
                }
                UnboundPolicy::Error => {
                    item.payload = Payload::Destroyed;
                    kept.push_back(item);
                }
            }
        }
        state.items = kept;
        if !removed.is_empty() {
            self.writable.notify_all();
            self.received.notify_all();
        }
        drop(state);
        drop(removed);
    }
}
