//! PEP 554's channels: a simplex FIFO with a receiving and a sending end, over the same core
//! as [`Queue`](super::Queue).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::error::{RecvError, SendError};
use super::fifo::{Fifo, Wait};
use super::registry::{self, Endpoint};
use super::shareable::{Share, Shareable, SharedBuffer};
use super::{UnboundPolicy, current_id};

/// Why the current interpreter may not use an end of a channel.
enum Refused {
    /// It released this end.
    Released,
    /// It released this end, and the channel is closed since (PEP 554: a call on an end the
    /// interpreter closed fails, "or EOFError if the channel is actually marked as closed").
    Closed,
}

impl From<Refused> for SendError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Released => SendError::Released,
            Refused::Closed => SendError::Closed,
        }
    }
}

impl From<Refused> for RecvError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Released => RecvError::Released,
            Refused::Closed => RecvError::Closed,
        }
    }
}

/// Which interpreters use one end of a channel.
#[derive(Default)]
struct Association {
    /// Interpreters that sent (or received) through this end and have not released it.
    using: Vec<u64>,
    /// Interpreters that released this end: they may not use it again.
    released: Vec<u64>,
}

pub(crate) struct ChannelInner {
    pub(crate) id: u64,
    pub(crate) fifo: Fifo,
    policy: UnboundPolicy,
    ends: [Mutex<Association>; 2],
    /// Per end, an interpreter known to use it and not to have released it (`NOBODY` if
    /// none): the common case, the same interpreter sending again, skips the lock.
    users: [AtomicU64; 2],
}

const NOBODY: u64 = u64::MAX;

const SEND: usize = 0;
const RECV: usize = 1;

impl ChannelInner {
    /// Associates the current interpreter with `end`, unless it released it. Work of a
    /// closed interpreter that outlived it (a task, a generator) may still use the end, but
    /// is not associated again: a closed interpreter uses nothing, and must not keep the
    /// channel open.
    fn associate(&self, end: usize) -> Result<u64, Refused> {
        let interp = current_id();
        if self.users[end].load(Ordering::Acquire) == interp {
            return Ok(interp);
        }
        let mut assoc = self.ends[end]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if assoc.released.contains(&interp) {
            // Asked with the end's lock let go: calls that wait hold the FIFO's state lock
            // while they ask for the end's (`is_released`). A release of a live interpreter
            // stays, so the answer holds.
            drop(assoc);
            return Err(if self.fifo.is_closed() {
                Refused::Closed
            } else {
                Refused::Released
            });
        }
        // Under the end's lock: closing takes the interpreter out of the table before it
        // `forget`s its associations (which takes this lock), so either this sees it closed
        // or the `forget` comes after and removes what this records.
        if registry::is_closed(interp) {
            return Ok(interp);
        }
        if !assoc.using.contains(&interp) {
            assoc.using.push(interp);
        }
        self.users[end].store(interp, Ordering::Release);
        Ok(interp)
    }

    /// Ends `interp`'s use of `end`, and hands back the end's lock, still held.
    fn end_use(&self, end: usize, interp: u64) -> MutexGuard<'_, Association> {
        let mut assoc = self.ends[end]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Under the lock, so no `associate` can publish the interpreter again meanwhile.
        let _ =
            self.users[end].compare_exchange(interp, NOBODY, Ordering::AcqRel, Ordering::Relaxed);
        assoc.using.retain(|&id| id != interp);
        assoc
    }

    fn release(&self, end: usize) -> bool {
        let interp = current_id();
        let first = {
            let mut assoc = self.end_use(end, interp);
            if assoc.released.contains(&interp) {
                false
            } else {
                assoc.released.push(interp);
                true
            }
        };
        if first {
            // PEP 554: "subsequent (or current)" calls from the interpreter fail: those
            // waiting in other threads of it wake and find it released.
            self.fifo.interrupt();
        }
        if self.is_unused() {
            self.fifo.close(false);
        }
        first
    }

    /// Whether `interp` released `end` (asked by calls of it that wait; see `release`).
    fn is_released(&self, end: usize, interp: u64) -> bool {
        self.ends[end]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .released
            .contains(&interp)
    }

    /// Ends the closed interpreter `interp`'s association with both ends (PEP 554: a
    /// destroyed interpreter uses nothing), so that it is no longer listed and the last
    /// release by the others closes the channel. Closing the interpreter does not close the
    /// channel itself, as in CPython: interpreters that have not used it yet (a drain that
    /// comes later) may still.
    pub(crate) fn forget(&self, interp: u64) {
        for end in [SEND, RECV] {
            // Its release is forgotten too, so that the list does not grow with every
            // short-lived interpreter: work of it that outlived it may then use the end
            // again, as it may use an end it never released, without being counted (see
            // `associate`).
            self.end_use(end, interp)
                .released
                .retain(|&id| id != interp);
        }
    }

    /// Whether no interpreter uses either end.
    fn is_unused(&self) -> bool {
        self.ends.iter().all(|end| {
            end.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .using
                .is_empty()
        })
    }

    fn interpreters(&self, end: usize) -> Vec<u64> {
        let assoc = self.ends[end]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        assoc.using.clone()
    }
}

/// Creates a channel: PEP 554's `create_channel() -> (RecvChannel, SendChannel)` — the
/// receiving end first, as in the PEP; [`channel`] is the same with std's order. Items sent
/// by an interpreter that is closed before they are received are replaced by
/// [`Shareable::Unbound`] ([`UnboundPolicy::Replace`], as for queues); see
/// [`create_channel_with`]. So keep a sending interpreter open until what it sent is
/// received. The channel closes when the last interpreter using it releases its end (PEP
/// 554: the number of associated interpreters returns to 0); a closed interpreter no longer
/// counts, but its closing does not close the channel (as in CPython), so that a drain that
/// has not begun yet can still come.
///
/// ```
/// use exec_context::interpreters::{self, Shareable};
///
/// let (recv, send) = interpreters::create_channel();
/// let interp = interpreters::create();
/// let worker = std::thread::spawn(move || {
///     interp.exec(|| {
///         let got = recv.recv().unwrap();
///         assert_eq!(got, Shareable::from(b"spam".to_vec()));
///     })
/// });
/// send.send(b"spam".to_vec()).unwrap(); // returns once the worker received it
/// worker.join().unwrap().unwrap();
/// ```
pub fn create_channel() -> (RecvChannel, SendChannel) {
    create_channel_with(UnboundPolicy::default())
}

/// Creates a channel: the sending end first, as `std::sync::mpsc::channel()` returns it
/// (PEP 554's [`create_channel`] gives the same two ends the other way round; the types
/// keep a swap from compiling).
///
/// ```
/// use exec_context::interpreters::{self, Shareable};
///
/// let (tx, rx) = interpreters::channel();
/// let receiver = std::thread::spawn(move || rx.recv());
/// tx.send("hi").unwrap(); // returns once it was received
/// assert_eq!(receiver.join().unwrap(), Ok(Shareable::from("hi")));
/// ```
pub fn channel() -> (SendChannel, RecvChannel) {
    let (recv, send) = create_channel();
    (send, recv)
}

/// Creates a channel whose items follow `policy` when the interpreter that sent them is
/// closed before they are received (PEP 554 order: receiving end first).
///
/// ```
/// use exec_context::interpreters::{self, UnboundPolicy};
///
/// let (recv, send) = interpreters::create_channel_with(UnboundPolicy::Remove);
/// let interp = interpreters::create();
/// interp.exec(move || send.send_buffered("dropped with its sender").unwrap()).unwrap();
/// interp.close().unwrap();
/// assert!(recv.is_empty());
/// ```
pub fn create_channel_with(policy: UnboundPolicy) -> (RecvChannel, SendChannel) {
    let inner = Arc::new(ChannelInner {
        id: registry::next_endpoint_id(),
        fifo: Fifo::with_owners(0, registry::is_closed),
        policy,
        ends: [Mutex::default(), Mutex::default()],
        users: [AtomicU64::new(NOBODY), AtomicU64::new(NOBODY)],
    });
    registry::register(Endpoint::Channel(Arc::downgrade(&inner)));
    (
        RecvChannel {
            inner: inner.clone(),
        },
        SendChannel { inner },
    )
}

/// Every channel that is not closed, as `(RecvChannel, SendChannel)` pairs in creation order
/// (PEP 554's `list_all_channels()`).
///
/// ```
/// use exec_context::interpreters;
///
/// let (recv, send) = interpreters::create_channel();
/// assert!(interpreters::list_all_channels().contains(&(recv.clone(), send.clone())));
/// send.close();
/// assert!(!interpreters::list_all_channels().contains(&(recv, send)));
/// ```
pub fn list_all_channels() -> Vec<(RecvChannel, SendChannel)> {
    registry::channels()
        .into_iter()
        .filter(|inner| !inner.fifo.is_closed())
        .map(|inner| {
            (
                RecvChannel {
                    inner: inner.clone(),
                },
                SendChannel { inner },
            )
        })
        .collect()
}

/// The sending end of a channel. Shareable: pass it to another interpreter through
/// [`prepare_main`](super::Interpreter::prepare_main) or a queue.
///
/// ```
/// use exec_context::interpreters::{self, SendChannel, Shareable};
///
/// let (recv, send) = interpreters::create_channel();
/// let interp = interpreters::create();
/// interp.prepare_main([("out", send.into())]).unwrap();
/// interp.exec(|| {
///     let out = interpreters::get_current().get_main_attr("out").unwrap().unwrap();
///     let out: SendChannel = out.extract().unwrap();
///     out.send_buffered("from inside").unwrap();
/// }).unwrap();
/// assert_eq!(recv.recv(), Ok(Shareable::from("from inside")));
/// ```
#[derive(Clone)]
pub struct SendChannel {
    inner: Arc<ChannelInner>,
}

impl SendChannel {
    /// The channel's ID: unique, never reused.
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// let (recv, send) = interpreters::create_channel();
    /// assert_eq!(send.id(), recv.id()); // both ends of one channel
    /// let (other, _) = interpreters::create_channel();
    /// assert_ne!(other.id(), send.id());
    /// ```
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Sends `value` and waits until it is received (PEP 554's `send`).
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] if the channel is closed (or the receiving side closes it,
    /// discarding the item); [`SendError::Released`].
    ///
    /// ```
    /// use exec_context::interpreters::{self, SendError, Shareable};
    ///
    /// let (send, recv) = interpreters::channel();
    /// let receiver = std::thread::spawn(move || recv.recv());
    /// send.send("hello").unwrap(); // returns once the receiver took it
    /// assert_eq!(receiver.join().unwrap(), Ok(Shareable::from("hello")));
    /// send.close();
    /// assert_eq!(send.send("bye"), Err(SendError::Closed));
    /// ```
    pub fn send(&self, value: impl Share) -> Result<(), SendError> {
        self.send_waiting(value.into_shareable(), Wait::Forever)
    }

    /// Sends `value` and waits at most `timeout` for it to be received; if it was not, it is
    /// withdrawn from the channel.
    ///
    /// # Errors
    ///
    /// [`SendError::Timeout`] (nothing is left in the channel); as [`send`](Self::send).
    ///
    /// ```
    /// use std::time::Duration;
    /// use exec_context::interpreters::{self, SendError, Shareable};
    ///
    /// let (send, recv) = interpreters::channel();
    /// assert_eq!(send.send_timeout(1, Duration::from_millis(10)), Err(SendError::Timeout));
    /// assert!(recv.is_empty()); // withdrawn
    /// let receiver = std::thread::spawn(move || recv.recv());
    /// send.send_timeout(2, Duration::from_secs(60)).unwrap();
    /// assert_eq!(receiver.join().unwrap(), Ok(Shareable::from(2)));
    /// ```
    pub fn send_timeout(&self, value: impl Share, timeout: Duration) -> Result<(), SendError> {
        self.send_waiting(value.into_shareable(), Wait::within(timeout))
    }

    /// Hands `value` to a receiver that is waiting in [`recv`](RecvChannel::recv) or
    /// [`recv_timeout`](RecvChannel::recv_timeout) right now, without waiting (PEP 554's
    /// `send_nowait`: "If the other end is not currently receiving then raise
    /// RuntimeError"). With nobody receiving it fails and leaves nothing in the channel; to
    /// leave an item for a later `recv`, use [`send_buffered`](Self::send_buffered).
    ///
    /// ```
    /// use std::time::Duration;
    /// use exec_context::interpreters::{self, SendError, Shareable};
    ///
    /// let (send, recv) = interpreters::channel();
    /// assert_eq!(send.send_nowait(1), Err(SendError::NotReceiving));
    /// assert!(recv.is_empty()); // nothing was buffered
    ///
    /// let receiver = std::thread::spawn(move || recv.recv());
    /// // Retry until the receiver is blocked in `recv`.
    /// while send.send_nowait(2) == Err(SendError::NotReceiving) {
    ///     std::thread::sleep(Duration::from_millis(1));
    /// }
    /// assert_eq!(receiver.join().unwrap(), Ok(Shareable::from(2)));
    /// ```
    ///
    /// # Errors
    ///
    /// [`SendError::NotReceiving`]; [`SendError::Closed`]; [`SendError::Released`].
    pub fn send_nowait(&self, value: impl Share) -> Result<(), SendError> {
        let owner = self.inner.associate(SEND).map_err(SendError::from)?;
        self.inner
            .fifo
            .hand_off(value.into_shareable(), owner, self.inner.policy)
            .map_err(SendError::from_fifo)
    }

    /// Leaves `value` in the channel for a later [`recv`](RecvChannel::recv) and returns at
    /// once, whether or not anyone is receiving (the channel is unbounded). What
    /// `send_nowait` did before 0.2: a stream of items without a rendezvous per item.
    ///
    /// ```
    /// use exec_context::interpreters::{self, Shareable};
    ///
    /// let (send, recv) = interpreters::channel();
    /// send.send_buffered(1).unwrap();
    /// send.send_buffered(2).unwrap();
    /// assert_eq!(recv.len(), 2);
    /// assert_eq!(recv.recv_nowait(), Ok(Shareable::from(1)));
    /// ```
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`]; [`SendError::Released`].
    pub fn send_buffered(&self, value: impl Share) -> Result<(), SendError> {
        let owner = self.inner.associate(SEND).map_err(SendError::from)?;
        self.inner
            .fifo
            .put(
                value.into_shareable(),
                owner,
                self.inner.policy,
                Wait::No,
                false,
            )
            .map(drop)
            .map_err(SendError::from_fifo)
    }

    /// Sends a buffer without copying it (PEP 554's `send_buffer`) and waits until it is
    /// received.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    ///
    /// ```
    /// use exec_context::interpreters::{self, SharedBuffer};
    ///
    /// let (send, recv) = interpreters::channel();
    /// let buffer = SharedBuffer::read_only(b"data".to_vec());
    /// let receiver = std::thread::spawn(move || recv.recv());
    /// send.send_buffer(&buffer).unwrap();
    /// let got: SharedBuffer = receiver.join().unwrap().unwrap().extract().unwrap();
    /// assert!(got.ptr_eq(&buffer)); // the same memory, not a copy
    /// ```
    pub fn send_buffer(&self, buffer: &SharedBuffer) -> Result<(), SendError> {
        self.send(buffer.clone())
    }

    /// Hands a buffer, without copying it, to a receiver waiting right now (PEP 554's
    /// `send_buffer_nowait`).
    ///
    /// # Errors
    ///
    /// As [`send_nowait`](Self::send_nowait).
    ///
    /// ```
    /// use std::time::Duration;
    /// use exec_context::interpreters::{self, SendError, SharedBuffer};
    ///
    /// let (send, recv) = interpreters::channel();
    /// let buffer = SharedBuffer::writable(16);
    /// assert_eq!(send.send_buffer_nowait(&buffer), Err(SendError::NotReceiving));
    /// let receiver = std::thread::spawn(move || recv.recv());
    /// // Retry until the receiver is blocked in `recv`.
    /// while send.send_buffer_nowait(&buffer) == Err(SendError::NotReceiving) {
    ///     std::thread::sleep(Duration::from_millis(1));
    /// }
    /// let got: SharedBuffer = receiver.join().unwrap().unwrap().extract().unwrap();
    /// assert!(got.ptr_eq(&buffer));
    /// ```
    pub fn send_buffer_nowait(&self, buffer: &SharedBuffer) -> Result<(), SendError> {
        self.send_nowait(buffer.clone())
    }

    fn send_waiting(&self, value: Shareable, wait: Wait) -> Result<(), SendError> {
        let owner = self.inner.associate(SEND).map_err(SendError::from)?;
        let receipt = self
            .inner
            .fifo
            .put(value, owner, self.inner.policy, wait, true)
            .map_err(SendError::from_fifo)?
            .expect("a receipt was asked for");
        self.inner
            .fifo
            .await_receipt(&receipt, wait, || self.inner.is_released(SEND, owner))
            .map_err(SendError::from_fifo)
    }

    /// Closes the channel for sending, for every interpreter: sends fail from now on, and so
    /// do sends waiting for their item to be received (their item is withdrawn, unless a
    /// receiver takes it first: PEP 554's "current `send()`"); receivers get what was sent
    /// before without waiting ([`send_buffered`](Self::send_buffered)), then
    /// [`RecvError::Closed`]. Returns whether this call closed it.
    ///
    /// ```
    /// use exec_context::interpreters::{self, RecvError, SendError, Shareable};
    ///
    /// let (send, recv) = interpreters::channel();
    /// send.send_buffered("kept").unwrap();
    /// let waiting = send.clone();
    /// // A send that waits for its item to be received...
    /// let sender = std::thread::spawn(move || waiting.send("withdrawn"));
    /// while recv.len() < 2 {
    ///     std::thread::yield_now();
    /// }
    /// assert!(send.close());
    /// // ...fails when the channel closes, and its item goes with it.
    /// assert_eq!(sender.join().unwrap(), Err(SendError::Closed));
    /// assert_eq!(recv.recv(), Ok(Shareable::from("kept")));
    /// assert_eq!(recv.recv(), Err(RecvError::Closed));
    /// assert_eq!(send.send_buffered("late"), Err(SendError::Closed));
    /// ```
    pub fn close(&self) -> bool {
        self.inner.fifo.close(false)
    }

    /// Ends the current interpreter's use of this end (PEP 554's per-interpreter `close()`,
    /// later `release()`): it cannot send through it again, and sends of it waiting in other
    /// threads fail now with [`SendError::Released`], their items withdrawn (unless received
    /// meanwhile): PEP 554's "subsequent (or current)" calls. Once no interpreter uses either
    /// end, the channel closes. Returns whether this call released it.
    ///
    /// ```
    /// use exec_context::interpreters::{self, SendError, Shareable};
    ///
    /// let (send, recv) = interpreters::channel();
    /// send.send_buffered(1).unwrap(); // the main interpreter uses the sending end...
    /// assert_eq!(recv.recv(), Ok(Shareable::from(1))); // ...and the receiving end
    /// assert!(send.release());
    /// assert!(!send.release()); // released already
    /// assert_eq!(send.send_buffered(2), Err(SendError::Released));
    /// assert!(!recv.is_closed()); // the receiving end is still used
    /// assert!(recv.release()); // no interpreter uses either end now
    /// assert!(send.is_closed());
    /// ```
    pub fn release(&self) -> bool {
        self.inner.release(SEND)
    }

    /// Whether the channel is closed.
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// let (send, recv) = interpreters::channel();
    /// assert!(!send.is_closed());
    /// recv.close();
    /// assert!(send.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.fifo.is_closed()
    }

    /// The IDs of the interpreters using this end (they sent and did not release it).
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// let (send, _recv) = interpreters::channel();
    /// assert!(send.interpreters().is_empty());
    /// let interp = interpreters::create();
    /// let s = send.clone();
    /// interp.exec(move || s.send_buffered("hi").unwrap()).unwrap();
    /// assert_eq!(send.interpreters(), [interp.id()]);
    /// ```
    pub fn interpreters(&self) -> Vec<u64> {
        self.inner.interpreters(SEND)
    }
}

/// The receiving end of a channel. Shareable, like [`SendChannel`].
///
/// ```
/// use exec_context::interpreters::{self, Queue, RecvChannel, Shareable};
///
/// let (send, recv) = interpreters::channel();
/// let queue = Queue::new(0);
/// queue.put(recv).unwrap();
/// let recv: RecvChannel = queue.get().unwrap().extract().unwrap(); // the same end
/// send.send_buffered(1).unwrap();
/// assert_eq!(recv.recv(), Ok(Shareable::from(1)));
/// ```
#[derive(Clone)]
pub struct RecvChannel {
    inner: Arc<ChannelInner>,
}

impl RecvChannel {
    /// The channel's ID: unique, never reused.
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// let (send, recv) = interpreters::channel();
    /// assert_eq!(recv.id(), send.id());
    /// assert_eq!(recv.clone().id(), recv.id());
    /// ```
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Receives the next item, waiting until one is sent.
    ///
    /// # Errors
    ///
    /// [`RecvError::Closed`] once the channel is closed and drained;
    /// [`RecvError::Released`]; [`RecvError::ItemInterpreterDestroyed`].
    ///
    /// ```
    /// use exec_context::interpreters::{self, RecvError, Shareable};
    ///
    /// let (send, recv) = interpreters::channel();
    /// let sender = std::thread::spawn(move || {
    ///     send.send_buffered("one").unwrap();
    ///     send.close();
    /// });
    /// assert_eq!(recv.recv(), Ok(Shareable::from("one"))); // waits until it is sent
    /// assert_eq!(recv.recv(), Err(RecvError::Closed));
    /// sender.join().unwrap();
    /// ```
    pub fn recv(&self) -> Result<Shareable, RecvError> {
        self.recv_waiting(Wait::Forever)
    }

    fn recv_waiting(&self, wait: Wait) -> Result<Shareable, RecvError> {
        let interp = self.inner.associate(RECV).map_err(RecvError::from)?;
        self.inner
            .fifo
            .get_unless(wait, || self.inner.is_released(RECV, interp))
            .map_err(RecvError::from_fifo)
    }

    /// Receives the next item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`]; as [`recv`](Self::recv).
    ///
    /// ```
    /// use std::time::Duration;
    /// use exec_context::interpreters::{self, RecvError, Shareable};
    ///
    /// let (send, recv) = interpreters::channel();
    /// assert_eq!(recv.recv_timeout(Duration::from_millis(10)), Err(RecvError::Timeout));
    /// let sender = std::thread::spawn(move || send.send("late"));
    /// assert_eq!(recv.recv_timeout(Duration::from_secs(60)), Ok(Shareable::from("late")));
    /// sender.join().unwrap().unwrap();
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Shareable, RecvError> {
        self.recv_waiting(Wait::within(timeout))
    }

    /// Receives the next item if there is one now. PEP 554's `recv_nowait(default=None)`
    /// returns the default when nothing was sent; here that is [`RecvError::Empty`], as for
    /// [`Queue::get_nowait`](super::Queue::get_nowait) (`.unwrap_or(default)` when the
    /// other errors do not matter).
    ///
    /// ```
    /// use exec_context::interpreters::{self, RecvError, Shareable};
    ///
    /// let (send, recv) = interpreters::channel();
    /// assert_eq!(recv.recv_nowait(), Err(RecvError::Empty));
    /// send.send_buffered("x").unwrap();
    /// assert_eq!(recv.recv_nowait(), Ok(Shareable::from("x")));
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`]; as [`recv`](Self::recv).
    pub fn recv_nowait(&self) -> Result<Shareable, RecvError> {
        self.inner.associate(RECV).map_err(RecvError::from)?;
        self.inner.fifo.get(Wait::No).map_err(RecvError::from_fifo)
    }

    /// Closes the channel for every interpreter: what was sent and not received is dropped
    /// (senders waiting on it fail with [`SendError::Closed`]), and both ends fail from
    /// now on. Returns whether this call closed it.
    ///
    /// ```
    /// use exec_context::interpreters::{self, RecvError, SendError};
    ///
    /// let (send, recv) = interpreters::channel();
    /// send.send_buffered("dropped").unwrap();
    /// assert!(recv.close());
    /// assert!(!recv.close()); // closed already
    /// assert_eq!(recv.recv_nowait(), Err(RecvError::Closed)); // what was left is gone
    /// assert_eq!(send.send_buffered("late"), Err(SendError::Closed));
    /// ```
    pub fn close(&self) -> bool {
        self.inner.fifo.close(true)
    }

    /// Ends the current interpreter's use of this end: it cannot receive through it again,
    /// and receives of it waiting in other threads fail now with [`RecvError::Released`]
    /// (those of other interpreters go on waiting); see [`SendChannel::release`].
    ///
    /// ```
    /// use exec_context::interpreters::{self, RecvError, Shareable};
    ///
    /// let (send, recv) = interpreters::channel();
    /// send.send_buffered(1).unwrap();
    /// send.send_buffered(2).unwrap();
    /// assert_eq!(recv.recv(), Ok(Shareable::from(1)));
    /// assert!(recv.release());
    /// assert_eq!(recv.recv_nowait(), Err(RecvError::Released));
    /// assert_eq!(recv.len(), 1); // still in the channel, for other interpreters
    /// ```
    pub fn release(&self) -> bool {
        self.inner.release(RECV)
    }

    /// Whether the channel is closed.
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// let (send, recv) = interpreters::channel();
    /// assert!(!recv.is_closed());
    /// send.close();
    /// assert!(recv.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.fifo.is_closed()
    }

    /// The IDs of the interpreters using this end (they received and did not release it).
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// let (send, recv) = interpreters::channel();
    /// send.send_buffered(1).unwrap();
    /// assert!(recv.interpreters().is_empty());
    /// recv.recv().unwrap();
    /// assert_eq!(recv.interpreters(), [0]); // the main interpreter received
    /// assert!(recv.release());
    /// assert!(recv.interpreters().is_empty());
    /// ```
    pub fn interpreters(&self) -> Vec<u64> {
        self.inner.interpreters(RECV)
    }

    /// The number of items sent and not yet received.
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// let (send, recv) = interpreters::channel();
    /// send.send_buffered(1).unwrap();
    /// send.send_buffered(2).unwrap();
    /// assert_eq!(recv.len(), 2);
    /// recv.recv().unwrap();
    /// assert_eq!(recv.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.fifo.len()
    }

    /// Whether nothing is waiting to be received.
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// let (send, recv) = interpreters::channel();
    /// assert!(recv.is_empty());
    /// send.send_buffered("x").unwrap();
    /// assert!(!recv.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

macro_rules! handle_traits {
    ($($ty:ident),*) => {$(
        impl PartialEq for $ty {
            /// Ends are equal when they are the same end of the same channel.
            fn eq(&self, other: &Self) -> bool {
                self.inner.id == other.inner.id
            }
        }

        impl Eq for $ty {}

        impl Hash for $ty {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.inner.id.hash(state);
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty)).field("id", &self.inner.id).finish()
            }
        }
    )*};
}

handle_traits!(SendChannel, RecvChannel);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A closed interpreter's release is forgotten with its use: the list of releases does
    /// not grow with every short-lived interpreter that released an end.
    #[test]
    fn closing_an_interpreter_forgets_its_releases() {
        let (recv, send) = create_channel();
        send.send_buffered(0).unwrap(); // main uses the sending end
        for _ in 0..3 {
            let interp = super::super::create();
            let s = send.clone();
            interp.exec(move || assert!(s.release())).unwrap();
            assert_eq!(send.inner.ends[SEND].lock().unwrap().released.len(), 1);
            interp.close().unwrap();
            assert!(send.inner.ends[SEND].lock().unwrap().released.is_empty());
        }
        assert!(!recv.is_closed(), "main still uses the sending end");
    }
}
