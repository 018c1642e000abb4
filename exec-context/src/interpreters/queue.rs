//! PEP 734's cross-interpreter queues.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use super::error::{RecvError, SendError};
use super::fifo::{Fifo, Wait};
use super::registry::{self, Endpoint};
use super::shareable::{Share, Shareable};
use super::{UnboundPolicy, current_id};

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
/// Failures are [`SendError`]s and [`RecvError`]s, shared with the channels; the
/// [module docs](super#sending-and-receiving-one-set-of-outcomes) have the table. The PEP's
/// `empty()`, `full()` and `qsize()` are [`is_empty`](Self::is_empty),
/// [`is_full`](Self::is_full) and [`len`](Self::len) here (the PEP names remain, deprecated).
///
/// ```
/// use exec_context::interpreters::{Queue, RecvError, SendError};
///
/// let queue = Queue::new(2);
/// queue.put(1).unwrap();
/// queue.put("two").unwrap();
/// assert!(queue.is_full());
/// assert_eq!(queue.len(), 2);
/// assert_eq!(queue.put_nowait(3), Err(SendError::Full));
/// assert_eq!(queue.get().unwrap().extract::<i32>(), Ok(1));
/// assert_eq!(queue.get().unwrap().extract::<String>(), Ok("two".into()));
/// assert_eq!(queue.get_nowait(), Err(RecvError::Empty));
/// assert!(queue.is_empty());
/// ```
#[derive(Clone)]
pub struct Queue {
    inner: Arc<QueueInner>,
}

/// Creates a queue holding at most `maxsize` items (`0`: unbounded): PEP 734's
/// `create_queue(maxsize)`, the same as [`Queue::new`]. Its items follow
/// [`UnboundPolicy::Replace`] when their interpreter is closed (CPython 3.14's default; see
/// [`UnboundPolicy`] for why not the PEP text's removal).
///
/// ```
/// let queue = exec_context::interpreters::create_queue(0);
/// assert_eq!(queue.maxsize(), 0);
/// ```
pub fn create_queue(maxsize: usize) -> Queue {
    Queue::new(maxsize)
}

/// Creates a queue whose items follow `policy` by default when the interpreter that put them
/// is closed (`create_queue(maxsize, unbounditems=...)`), the same as [`Queue::with_policy`].
///
/// ```
/// use exec_context::interpreters::{self, RecvError, Shareable, UnboundPolicy};
///
/// let queue = interpreters::create_queue_with(0, UnboundPolicy::Error);
/// let interp = interpreters::create();
/// let q = queue.clone();
/// interp.exec(move || q.put("from the interpreter").unwrap()).unwrap();
/// queue.put("from main").unwrap();
/// interp.close().unwrap();
/// assert_eq!(queue.get(), Err(RecvError::ItemInterpreterDestroyed));
/// assert_eq!(queue.get(), Ok(Shareable::from("from main")));
/// ```
pub fn create_queue_with(maxsize: usize, policy: UnboundPolicy) -> Queue {
    Queue::with_policy(maxsize, policy)
}

impl Queue {
    /// A queue holding at most `maxsize` items (`0`: unbounded), under
    /// [`UnboundPolicy::Replace`]; [`create_queue`] is the PEP's name for it.
    ///
    /// ```
    /// use exec_context::interpreters::Queue;
    ///
    /// let queue = Queue::new(8);
    /// assert_eq!((queue.maxsize(), queue.len()), (8, 0));
    /// ```
    pub fn new(maxsize: usize) -> Queue {
        Queue::with_policy(maxsize, UnboundPolicy::default())
    }

    /// A queue whose items follow `policy` by default when the interpreter that put them is
    /// closed before they are taken; [`create_queue_with`] is the PEP's name for it.
    ///
    /// ```
    /// use exec_context::interpreters::{Queue, UnboundPolicy};
    ///
    /// let queue = Queue::with_policy(0, UnboundPolicy::Remove);
    /// assert_eq!(queue.unbound_policy(), UnboundPolicy::Remove);
    /// ```
    pub fn with_policy(maxsize: usize, policy: UnboundPolicy) -> Queue {
        let inner = Arc::new(QueueInner {
            id: registry::next_endpoint_id(),
            fifo: Fifo::with_owners(maxsize, registry::is_closed),
            policy,
        });
        registry::register(Endpoint::Queue(Arc::downgrade(&inner)));
        Queue { inner }
    }

    /// The queue's ID: unique, never reused.
    ///
    /// ```
    /// use exec_context::interpreters::Queue;
    ///
    /// let queue = Queue::new(0);
    /// assert_eq!(queue.clone().id(), queue.id()); // a handle to the same queue
    /// assert_ne!(Queue::new(0).id(), queue.id());
    /// ```
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The most items it holds; `0` means unbounded.
    ///
    /// ```
    /// use exec_context::interpreters::Queue;
    ///
    /// assert_eq!(Queue::new(3).maxsize(), 3);
    /// assert_eq!(Queue::new(0).maxsize(), 0); // unbounded
    /// ```
    pub fn maxsize(&self) -> usize {
        self.inner.fifo.maxsize()
    }

    /// The default policy for items whose interpreter is closed before they are taken.
    ///
    /// ```
    /// use exec_context::interpreters::{Queue, UnboundPolicy};
    ///
    /// assert_eq!(Queue::new(0).unbound_policy(), UnboundPolicy::Replace);
    /// let queue = Queue::with_policy(0, UnboundPolicy::Error);
    /// assert_eq!(queue.unbound_policy(), UnboundPolicy::Error);
    /// ```
    pub fn unbound_policy(&self) -> UnboundPolicy {
        self.inner.policy
    }

    /// Whether the queue is empty (a snapshot: other threads may change it at once).
    ///
    /// ```
    /// use exec_context::interpreters::Queue;
    ///
    /// let queue = Queue::new(0);
    /// assert!(queue.is_empty());
    /// queue.put(1).unwrap();
    /// assert!(!queue.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue holds `maxsize` items (never, when unbounded); a snapshot.
    ///
    /// ```
    /// use exec_context::interpreters::Queue;
    ///
    /// let queue = Queue::new(1);
    /// assert!(!queue.is_full());
    /// queue.put(1).unwrap();
    /// assert!(queue.is_full());
    /// let unbounded = Queue::new(0);
    /// unbounded.put(1).unwrap();
    /// assert!(!unbounded.is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        self.inner.fifo.full()
    }

    /// The number of items in the queue (a snapshot).
    ///
    /// ```
    /// use exec_context::interpreters::Queue;
    ///
    /// let queue = Queue::new(0);
    /// queue.put("a").unwrap();
    /// queue.put("b").unwrap();
    /// assert_eq!(queue.len(), 2);
    /// queue.get().unwrap();
    /// assert_eq!(queue.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.fifo.len()
    }

    /// PEP 734's name for [`is_empty`](Self::is_empty).
    ///
    /// ```
    /// let queue = exec_context::interpreters::Queue::new(0);
    /// #[allow(deprecated)]
    /// let empty = queue.empty();
    /// assert_eq!(empty, queue.is_empty());
    /// ```
    #[deprecated(since = "0.2.0", note = "use `is_empty` (the std name)")]
    pub fn empty(&self) -> bool {
        self.is_empty()
    }

    /// PEP 734's name for [`is_full`](Self::is_full).
    ///
    /// ```
    /// let queue = exec_context::interpreters::Queue::new(1);
    /// queue.put(1).unwrap();
    /// #[allow(deprecated)]
    /// let full = queue.full();
    /// assert_eq!(full, queue.is_full());
    /// ```
    #[deprecated(since = "0.2.0", note = "use `is_full` (the std name)")]
    pub fn full(&self) -> bool {
        self.is_full()
    }

    /// PEP 734's name for [`len`](Self::len).
    ///
    /// ```
    /// let queue = exec_context::interpreters::Queue::new(0);
    /// queue.put(1).unwrap();
    /// #[allow(deprecated)]
    /// let size = queue.qsize();
    /// assert_eq!(size, queue.len());
    /// ```
    #[deprecated(since = "0.2.0", note = "use `len` (the std name)")]
    pub fn qsize(&self) -> usize {
        self.len()
    }

    /// Appends `value`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] if the queue is (or gets) closed.
    ///
    /// ```
    /// use exec_context::interpreters::{Queue, SendError, Shareable};
    ///
    /// let queue = Queue::new(1);
    /// queue.put("first").unwrap();
    /// let putter = {
    ///     let queue = queue.clone();
    ///     std::thread::spawn(move || queue.put("second")) // waits for room
    /// };
    /// assert_eq!(queue.get(), Ok(Shareable::from("first")));
    /// putter.join().unwrap().unwrap();
    /// assert_eq!(queue.get(), Ok(Shareable::from("second")));
    /// queue.close();
    /// assert_eq!(queue.put("late"), Err(SendError::Closed));
    /// ```
    #[inline]
    pub fn put(&self, value: impl Share) -> Result<(), SendError> {
        self.put_as(value, self.inner.policy, Wait::Forever)
    }

    /// Appends `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`SendError::Timeout`] when no room came in time; [`SendError::Closed`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use exec_context::interpreters::{Queue, SendError};
    ///
    /// let queue = Queue::new(1);
    /// queue.put_timeout(1, Duration::from_secs(1)).unwrap(); // room now: no wait
    /// assert_eq!(queue.put_timeout(2, Duration::from_millis(10)), Err(SendError::Timeout));
    /// assert_eq!(queue.len(), 1);
    /// ```
    pub fn put_timeout(&self, value: impl Share, timeout: Duration) -> Result<(), SendError> {
        self.put_as(value, self.inner.policy, Wait::within(timeout))
    }

    /// Appends `value` if there is room now.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`]; [`SendError::Closed`].
    ///
    /// ```
    /// use exec_context::interpreters::{Queue, SendError};
    ///
    /// let queue = Queue::new(1);
    /// queue.put_nowait(1).unwrap();
    /// assert_eq!(queue.put_nowait(2), Err(SendError::Full));
    /// queue.close();
    /// assert_eq!(queue.put_nowait(3), Err(SendError::Closed));
    /// ```
    pub fn put_nowait(&self, value: impl Share) -> Result<(), SendError> {
        self.put_as(value, self.inner.policy, Wait::No)
    }

    /// Appends `value` with its own unbound policy (`put(obj, unbounditems=...)`), waiting
    /// while the queue is full.
    ///
    /// ```
    /// use exec_context::interpreters::{self, Queue, UnboundPolicy};
    ///
    /// let queue = Queue::new(0);
    /// let interp = interpreters::create();
    /// let q = queue.clone();
    /// interp.exec(move || q.put_with_policy("gone", UnboundPolicy::Remove).unwrap()).unwrap();
    /// assert_eq!(queue.len(), 1);
    /// interp.close().unwrap();
    /// assert!(queue.is_empty()); // removed with its interpreter
    /// ```
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub fn put_with_policy(
        &self,
        value: impl Share,
        policy: UnboundPolicy,
    ) -> Result<(), SendError> {
        self.put_as(value, policy, Wait::Forever)
    }

    /// [`put_with_policy`](Self::put_with_policy), waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Self::put_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use exec_context::interpreters::{Queue, SendError, UnboundPolicy};
    ///
    /// let queue = Queue::new(1);
    /// let policy = UnboundPolicy::Remove;
    /// queue.put_with_policy_timeout(1, policy, Duration::from_secs(1)).unwrap(); // room now
    /// let short = Duration::from_millis(10);
    /// assert_eq!(queue.put_with_policy_timeout(2, policy, short), Err(SendError::Timeout));
    /// ```
    pub fn put_with_policy_timeout(
        &self,
        value: impl Share,
        policy: UnboundPolicy,
        timeout: Duration,
    ) -> Result<(), SendError> {
        self.put_as(value, policy, Wait::within(timeout))
    }

    /// [`put_with_policy`](Self::put_with_policy), if there is room now.
    ///
    /// # Errors
    ///
    /// As [`put_nowait`](Self::put_nowait).
    ///
    /// ```
    /// use exec_context::interpreters::{self, Queue, RecvError, SendError, UnboundPolicy};
    ///
    /// let queue = Queue::new(1);
    /// let interp = interpreters::create();
    /// let q = queue.clone();
    /// interp.exec(move || q.put_with_policy_nowait("x", UnboundPolicy::Error).unwrap()).unwrap();
    /// assert_eq!(queue.put_with_policy_nowait("y", UnboundPolicy::Error), Err(SendError::Full));
    /// interp.close().unwrap();
    /// assert_eq!(queue.get_nowait(), Err(RecvError::ItemInterpreterDestroyed));
    /// ```
    pub fn put_with_policy_nowait(
        &self,
        value: impl Share,
        policy: UnboundPolicy,
    ) -> Result<(), SendError> {
        self.put_as(value, policy, Wait::No)
    }

    #[inline]
    fn put_as(
        &self,
        value: impl Share,
        policy: UnboundPolicy,
        wait: Wait,
    ) -> Result<(), SendError> {
        self.inner
            .fifo
            .put(value.into_shareable(), current_id(), policy, wait, false)
            .map(drop)
            .map_err(SendError::from_fifo)
    }

    /// Removes and returns the first item, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`RecvError::Closed`] once a closed queue is drained;
    /// [`RecvError::ItemInterpreterDestroyed`] for an item under [`UnboundPolicy::Error`].
    ///
    /// ```
    /// use exec_context::interpreters::{Queue, RecvError, Shareable};
    ///
    /// let queue = Queue::new(0);
    /// let getter = {
    ///     let queue = queue.clone();
    ///     std::thread::spawn(move || queue.get()) // waits for an item
    /// };
    /// queue.put(7).unwrap();
    /// assert_eq!(getter.join().unwrap(), Ok(Shareable::from(7)));
    /// queue.put(8).unwrap();
    /// queue.close();
    /// assert_eq!(queue.get(), Ok(Shareable::from(8))); // what is left comes first
    /// assert_eq!(queue.get(), Err(RecvError::Closed));
    /// ```
    #[inline]
    pub fn get(&self) -> Result<Shareable, RecvError> {
        self.inner
            .fifo
            .get(Wait::Forever)
            .map_err(RecvError::from_fifo)
    }

    /// Removes and returns the first item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`] when nothing came in time; as [`get`](Self::get).
    ///
    /// ```
    /// use std::time::Duration;
    /// use exec_context::interpreters::{Queue, RecvError, Shareable};
    ///
    /// let queue = Queue::new(0);
    /// assert_eq!(queue.get_timeout(Duration::from_millis(10)), Err(RecvError::Timeout));
    /// queue.put("ready").unwrap();
    /// assert_eq!(queue.get_timeout(Duration::from_secs(1)), Ok(Shareable::from("ready")));
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<Shareable, RecvError> {
        self.inner
            .fifo
            .get(Wait::within(timeout))
            .map_err(RecvError::from_fifo)
    }

    /// Removes and returns the first item if there is one now.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`]; as [`get`](Self::get).
    ///
    /// ```
    /// use exec_context::interpreters::{Queue, RecvError, Shareable};
    ///
    /// let queue = Queue::new(0);
    /// assert_eq!(queue.get_nowait(), Err(RecvError::Empty));
    /// queue.put(1).unwrap();
    /// assert_eq!(queue.get_nowait(), Ok(Shareable::from(1)));
    /// queue.close();
    /// assert_eq!(queue.get_nowait(), Err(RecvError::Closed));
    /// ```
    #[inline]
    pub fn get_nowait(&self) -> Result<Shareable, RecvError> {
        self.inner.fifo.get(Wait::No).map_err(RecvError::from_fifo)
    }

    /// Closes the queue for every holder: puts fail from now on, blocked putters wake with
    /// [`SendError::Closed`], getters take what is left and then fail with
    /// [`RecvError::Closed`]. Returns whether this call closed it (closing twice is harmless).
    ///
    /// ```
    /// use exec_context::interpreters::{Queue, RecvError, SendError, Shareable};
    ///
    /// let queue = Queue::new(0);
    /// queue.put("left").unwrap();
    /// assert!(queue.close());
    /// assert!(!queue.close()); // closed already
    /// assert_eq!(queue.put("more"), Err(SendError::Closed));
    /// assert_eq!(queue.get(), Ok(Shareable::from("left")));
    /// assert_eq!(queue.get(), Err(RecvError::Closed));
    /// ```
    pub fn close(&self) -> bool {
        self.inner.fifo.close(false)
    }

    /// Whether the queue was closed.
    ///
    /// ```
    /// use exec_context::interpreters::Queue;
    ///
    /// let queue = Queue::new(0);
    /// let other = queue.clone();
    /// assert!(!other.is_closed());
    /// queue.close();
    /// assert!(other.is_closed()); // closed for every holder
    /// ```
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
