//! PEP 734's cross-interpreter queues.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use super::fifo::{Fifo, FifoError, Wait};
use super::registry::{self, Endpoint};
use super::shareable::{Share, Shareable};
use super::{UnboundPolicy, current_id};

/// Why a queue operation failed (PEP 734's `QueueEmpty`, `QueueFull`,
/// `ItemInterpreterDestroyed`, plus `Closed` for a closed queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueError {
    /// Nothing to get: `get_nowait` on an empty queue, or `get_timeout` ran out.
    Empty,
    /// No room: `put_nowait` on a full queue, or `put_timeout` ran out. The value is dropped.
    Full,
    /// The queue was closed: no more puts; gets fail once it is drained.
    Closed,
    /// The item's interpreter was closed before the item was taken, and the item's policy
    /// is [`UnboundPolicy::Error`]. The item is consumed.
    ItemInterpreterDestroyed,
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QueueError::Empty => "the queue is empty",
            QueueError::Full => "the queue is full",
            QueueError::Closed => "the queue is closed",
            QueueError::ItemInterpreterDestroyed => {
                "the interpreter that put the item was closed before it was taken"
            }
        })
    }
}

impl std::error::Error for QueueError {}

fn queue_error(error: FifoError) -> QueueError {
    match error {
        FifoError::Empty => QueueError::Empty,
        FifoError::Full | FifoError::NotReceived => QueueError::Full,
        FifoError::Closed => QueueError::Closed,
        FifoError::Destroyed => QueueError::ItemInterpreterDestroyed,
    }
}

pub(crate) struct QueueInner {
    pub(crate) id: u64,
    pub(crate) fifo: Fifo,
    policy: UnboundPolicy,
}

/// A FIFO queue of [`Shareable`] values that any interpreter and any thread may use (PEP 734
/// `interpreters.Queue`): a handle to one queue that lives outside every interpreter. Putting
/// a queue into a queue sends the same queue, not a copy. (A queue holding a handle to itself
/// keeps itself alive, like any reference cycle: take the handle out, or close and drain it.)
///
/// Blocking `put`/`get` sleep on a condition variable and wake as soon as the other side
/// acts — CPython 3.14's queue polls every 10 ms instead (python/cpython#143017).
///
/// ```
/// use exec_context::interpreters::{QueueError, create_queue};
///
/// let queue = create_queue(2).unwrap();
/// queue.put(1).unwrap();
/// queue.put("two").unwrap();
/// assert!(queue.full());
/// assert_eq!(queue.put_nowait(3), Err(QueueError::Full));
/// assert_eq!(queue.get().unwrap().extract::<i32>(), Ok(1));
/// assert_eq!(queue.get().unwrap().extract::<String>(), Ok("two".into()));
/// assert_eq!(queue.get_nowait(), Err(QueueError::Empty));
/// ```
#[derive(Clone)]
pub struct Queue {
    inner: Arc<QueueInner>,
}

/// Creates a queue holding at most `maxsize` items (`0`: unbounded), whose items follow
/// [`UnboundPolicy::Replace`] when their interpreter is closed (PEP 734's default, `UNBOUND`).
///
/// # Errors
///
/// None today; the `Result` keeps PEP 734's signature open for resource limits.
pub fn create_queue(maxsize: usize) -> Result<Queue, QueueError> {
    create_queue_with(maxsize, UnboundPolicy::default())
}

/// Creates a queue whose items follow `policy` by default when the interpreter that put them
/// is closed (`create_queue(maxsize, unbounditems=...)`).
///
/// # Errors
///
/// As [`create_queue`].
///
/// ```
/// use exec_context::interpreters::{self, QueueError, Shareable, UnboundPolicy};
///
/// let queue = interpreters::create_queue_with(0, UnboundPolicy::Error).unwrap();
/// let interp = interpreters::create();
/// let q = queue.clone();
/// interp.exec(move || q.put("from the interpreter").unwrap()).unwrap();
/// queue.put("from main").unwrap();
/// interp.close().unwrap();
/// assert_eq!(queue.get(), Err(QueueError::ItemInterpreterDestroyed));
/// assert_eq!(queue.get(), Ok(Shareable::from("from main")));
/// ```
pub fn create_queue_with(maxsize: usize, policy: UnboundPolicy) -> Result<Queue, QueueError> {
    let inner = Arc::new(QueueInner {
        id: registry::next_endpoint_id(),
        fifo: Fifo::new(maxsize),
        policy,
    });
    registry::register(Endpoint::Queue(Arc::downgrade(&inner)));
    Ok(Queue { inner })
}

impl Queue {
    /// The queue's ID: unique, never reused.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The most items it holds; `0` means unbounded.
    pub fn maxsize(&self) -> usize {
        self.inner.fifo.maxsize()
    }

    /// The default policy for items whose interpreter is closed before they are taken.
    pub fn unbound_policy(&self) -> UnboundPolicy {
        self.inner.policy
    }

    /// Whether the queue is empty (a snapshot: other threads may change it at once).
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue holds `maxsize` items (never, when unbounded).
    pub fn full(&self) -> bool {
        self.inner.fifo.full()
    }

    /// The number of items in the queue (a snapshot).
    pub fn qsize(&self) -> usize {
        self.inner.fifo.len()
    }

    /// Appends `value`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] if the queue is (or gets) closed.
    pub fn put(&self, value: impl Share) -> Result<(), QueueError> {
        self.put_as(value, self.inner.policy, Wait::Forever)
    }

    /// Appends `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`] when no room came in time; [`QueueError::Closed`].
    pub fn put_timeout(&self, value: impl Share, timeout: Duration) -> Result<(), QueueError> {
        self.put_as(value, self.inner.policy, Wait::within(timeout))
    }

    /// Appends `value` if there is room now.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`]; [`QueueError::Closed`].
    pub fn put_nowait(&self, value: impl Share) -> Result<(), QueueError> {
        self.put_as(value, self.inner.policy, Wait::No)
    }

    /// Appends `value` with its own unbound policy (`put(obj, unbounditems=...)`), waiting
    /// at most `timeout` (`None`: as long as it takes).
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Self::put_timeout).
    pub fn put_with_policy(
        &self,
        value: impl Share,
        policy: UnboundPolicy,
        timeout: Option<Duration>,
    ) -> Result<(), QueueError> {
        self.put_as(value, policy, timeout.map_or(Wait::Forever, Wait::within))
    }

    fn put_as(
        &self,
        value: impl Share,
        policy: UnboundPolicy,
        wait: Wait,
    ) -> Result<(), QueueError> {
        self.inner
            .fifo
            .put(value.into_shareable(), current_id(), policy, wait, false)
            .map(drop)
            .map_err(queue_error)
    }

    /// Removes and returns the first item, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once a closed queue is drained;
    /// [`QueueError::ItemInterpreterDestroyed`] for an item under [`UnboundPolicy::Error`].
    pub fn get(&self) -> Result<Shareable, QueueError> {
        self.inner.fifo.get(Wait::Forever).map_err(queue_error)
    }

    /// Removes and returns the first item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`] when nothing came in time; as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<Shareable, QueueError> {
        self.inner
            .fifo
            .get(Wait::within(timeout))
            .map_err(queue_error)
    }

    /// Removes and returns the first item if there is one now.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`]; as [`get`](Self::get).
    pub fn get_nowait(&self) -> Result<Shareable, QueueError> {
        self.inner.fifo.get(Wait::No).map_err(queue_error)
    }

    /// Closes the queue for every holder: puts fail from now on, blocked putters wake with
    /// [`QueueError::Closed`], getters take what is left and then fail with it too. Returns
    /// whether this call closed it (closing twice is harmless).
    pub fn close(&self) -> bool {
        self.inner.fifo.close(false)
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.inner.fifo.is_closed()
    }
}

impl PartialEq for Queue {
    /// Handles are equal when they refer to the same queue.
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id
    }
}

impl Eq for Queue {}

impl Hash for Queue {
    /// Hashes the queue's ID (PEP 734's `__hash__`).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.id.hash(state);
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("id", &self.inner.id)
            .field("maxsize", &self.maxsize())
            .finish()
    }
}
