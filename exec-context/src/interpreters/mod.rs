//! Isolated interpreters in one process, with their own context state, talking through
//! queues and channels of shareable data — PEP 554 (the December 2017 API: `run`, channels,
//! `RunFailedError`, `send_buffer`) and PEP 734 (its final form: `exec`, `call`,
//! `prepare_main`, `Queue`, `ExecutionFailed`, `InterpreterPoolExecutor`) over one core.
//!
//! An [`Interpreter`] is an isolation domain for execution contexts. Running code in it
//! ([`exec`](Interpreter::exec), [`call`](Interpreter::call)) swaps the current thread's whole
//! context state for the interpreter's state *for this thread*, and swaps the caller's back
//! afterwards — also when the code panics. So a [`ContextVar`] set in
//! interpreter A is invisible in B and in the main interpreter, and is still there at A's next
//! `exec` on the same thread (like CPython, context state belongs to a thread state, and a
//! thread state to one interpreter).
//!
//! # Which interpreter code runs in
//!
//! The current interpreter is part of the context state itself: every context an interpreter
//! runs code in holds the interpreter's ID in a [pinned](contextvars::pinned) context
//! variable, private to this module. Pinned values are always inherited and are kept even by
//! contexts made afresh, so whatever captures the context state takes the interpreter along,
//! and no spawn path has to know about interpreters: tasks ([`FutureExt`](crate::FutureExt),
//! the `tokio` wrappers and runtime hooks, [`TaskContext`](crate::task_context::TaskContext),
//! `rayon`), generators ([`Gen`](crate::Gen), [`ContextualIter`](crate::ContextualIter),
//! whose fresh logical contexts keep their creator's pinned values), fibers and threads
//! ([`thread::spawn`](crate::thread::spawn), whose empty policy keeps them too) started
//! inside an interpreter stay in it: [`get_current`] inside them is that interpreter,
//! wherever they are polled or resumed. The interpreter code runs in is the one its context
//! belongs to:
//!
//! - work given an explicit context runs in that context's interpreter (a snapshot taken in
//!   the main interpreter, or an [`ExecutionContext::new`](contextvars::ExecutionContext::new),
//!   which is empty without exception, runs in the main one; a
//!   [`Context::new`](contextvars::Context::new) or
//!   [`ExecutionContext::pinned`](contextvars::ExecutionContext::pinned) made inside an
//!   interpreter stays in it);
//! - a generator made in the main interpreter has no interpreter of its own and runs in the
//!   one that resumes it, whose context variables it sees; one made inside an interpreter
//!   runs in it wherever it is resumed;
//! - a bare `std::thread::spawn` starts with an empty context, so in the main interpreter.
//!
//! The mark is not listed: inside `exec`, `copy_context().is_empty()` holds as before.
//!
//! Each interpreter also has a `__main__` namespace of [`Shareable`] values that persists
//! between runs ([`prepare_main`](Interpreter::prepare_main),
//! [`get_main_attr`](Interpreter::get_main_attr)); the code inside reaches it through
//! `get_current()`.
//!
//! Only [`Shareable`] data crosses: the sending APIs take [`Share`] types, so passing a
//! `ContextVar`, `Context` or `Token` is a compile error. (Rust closures are not Python source:
//! what a closure captures is governed by `Send`, and the isolation enforced here is that of
//! context state and namespaces.)
//!
//! | PEP 554 (2017) | PEP 734 | here |
//! |---|---|---|
//! | `create()`, `list_all()`, `get_current()` | + `get_main()` | [`create`], [`list_all`], [`get_current`], [`get_main`] |
//! | `Interpreter.run(src)` | `exec(code)` | [`Interpreter::exec`] / [`run`](Interpreter::run), [`try_exec`](Interpreter::try_exec) |
//! | — | `call(f)`, `call_in_thread(f)` | [`call`](Interpreter::call), [`try_call`](Interpreter::try_call), [`call_in_thread`](Interpreter::call_in_thread) |
//! | `set_main_attrs`, `get_main_attr` | `prepare_main` | [`prepare_main`](Interpreter::prepare_main), [`get_main_attr`](Interpreter::get_main_attr) |
//! | `destroy()` | `close()` | [`close`](Interpreter::close) (also on dropping the last handle) |
//! | `RunFailedError` | `ExecutionFailed` | [`ExecutionFailed`] (alias [`RunFailedError`]) |
//! | `is_shareable(obj)` | `is_shareable(obj)` | [`Share`], [`is_shareable!`](crate::is_shareable), [`is_shareable()`] |
//! | `create_channel()` | — | [`create_channel`] (or [`channel`](channel()), std's order), [`RecvChannel`], [`SendChannel`] |
//! | — | `create_queue(maxsize, unbounditems)` | [`create_queue`] / [`Queue::new`], [`create_queue_with`] / [`Queue::with_policy`] |
//! | — | `Queue.empty()`, `full()`, `qsize()` | [`Queue::is_empty`], [`is_full`](Queue::is_full), [`len`](Queue::len) (the PEP names remain, deprecated) |
//! | `recv_nowait` default, `RuntimeError` of `send_nowait`, `EOFError` of a closed channel | `QueueEmpty`, `QueueFull`, `ItemInterpreterDestroyed` | [`RecvError`], [`SendError`] (one pair for queues and channels) |
//! | — | `UNBOUND`, `UNBOUND_ERROR`, `UNBOUND_REMOVE` | [`UnboundPolicy`] |
//! | memoryview / `send_buffer` | memoryview | [`SharedBuffer`], [`SendChannel::send_buffer`] |
//! | — | `InterpreterPoolExecutor` | [`InterpreterPool`] |
//!
//! # Sending and receiving: one set of outcomes
//!
//! Queues and channels fail the same way for the same reason: every send (`put*`,
//! `send*`) fails with a [`SendError`], every receive (`get*`, `recv*`) with a
//! [`RecvError`]. A `*_nowait` call never waits, a `*_timeout(.., Duration)` call waits at
//! most that long (the one shape of every timed call here, [`JobHandle::wait_timeout`]
//! included), and a plain call waits as long as it takes.
//!
//! | call | nothing / no room now | time ran out | closed | released end (channels) |
//! |---|---|---|---|---|
//! | [`Queue::get_nowait`], [`RecvChannel::recv_nowait`] | [`RecvError::Empty`] | — | [`RecvError::Closed`] | [`RecvError::Released`] |
//! | [`Queue::get_timeout`], [`RecvChannel::recv_timeout`] | — | [`RecvError::Timeout`] | [`RecvError::Closed`] | [`RecvError::Released`] |
//! | [`Queue::get`], [`RecvChannel::recv`] | (waits) | — | [`RecvError::Closed`] | [`RecvError::Released`] |
//! | [`Queue::put`], [`SendChannel::send`] | (waits) | — | [`SendError::Closed`] | [`SendError::Released`] |
//! | [`Queue::put_nowait`] | [`SendError::Full`] | — | [`SendError::Closed`] | — |
//! | [`Queue::put_timeout`] | — | [`SendError::Timeout`] | [`SendError::Closed`] | — |
//! | [`SendChannel::send_nowait`] | [`SendError::NotReceiving`] (no receiver waiting) | — | [`SendError::Closed`] | [`SendError::Released`] |
//! | [`SendChannel::send_timeout`] | — | [`SendError::Timeout`] (not received; withdrawn) | [`SendError::Closed`] | [`SendError::Released`] |
//! | [`SendChannel::send_buffered`] | (never: unbounded) | — | [`SendError::Closed`] | [`SendError::Released`] |
//!
//! Any receive can also meet [`RecvError::ItemInterpreterDestroyed`] for an item under
//! [`UnboundPolicy::Error`]. Before 0.2, `get_nowait` said `Empty` where `recv_nowait` said
//! `Ok(None)`, and `get_timeout` said `Empty` where `recv_timeout` said `Timeout`.
//!
//! [`SendChannel::send_nowait`] follows PEP 554 (2017): "If the other end is not currently
//! receiving then raise RuntimeError". It succeeds only when a receiver is blocked in `recv`
//! or `recv_timeout` at that moment, and the item is then left for the receivers, ahead of
//! later sends (a `recv_nowait` made meanwhile may take it before the blocked receiver
//! wakes, which then waits on); otherwise it fails with [`SendError::NotReceiving`] and
//! nothing stays in the channel.
//! [`SendChannel::send_buffered`] leaves an item for later without waiting (what
//! `send_nowait` did before 0.2).
//!
//! ```
//! use contextvars::ContextVar;
//! use exec_context::interpreters;
//!
//! static USER: ContextVar<&str> = ContextVar::new("user");
//!
//! let interp = interpreters::create();
//! USER.set("main");
//! interp.exec(|| {
//!     assert_eq!(USER.get(), None); // nothing of main's context
//!     USER.set("inside");
//! }).unwrap();
//! assert_eq!(USER.get(), Some("main"));
//! interp.exec(|| assert_eq!(USER.get(), Some("inside"))).unwrap(); // still there
//!
//! interp.prepare_main([("a", 1.into()), ("b", 2.into())]).unwrap();
//! interp.exec(|| {
//!     let me = interpreters::get_current();
//!     let a: i64 = me.get_main_attr("a").unwrap().unwrap().extract().unwrap();
//!     let b: i64 = me.get_main_attr("b").unwrap().unwrap().extract().unwrap();
//!     me.set_main_attr("res", a + b).unwrap();
//! }).unwrap();
//! assert_eq!(interp.get_main_attr("res").unwrap(), Some(3.into()));
//! interp.close().unwrap();
//! ```

mod channel;
mod error;
mod fifo;
mod pool;
mod queue;
mod registry;
mod shareable;
mod sync;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{JoinHandle, ThreadId};

use contextvars::{Context, ContextVar};

use crate::discarding_panics;

pub use channel::{
    RecvChannel, SendChannel, channel, create_channel, create_channel_with, list_all_channels,
};
pub use error::{
    ExecutionFailed, InterpreterError, Panicked, RecvError, RunFailedError, SendError,
};
pub use pool::{InterpreterPool, JobHandle, MAX_WORKERS, PoolBuilder, PoolError};
pub use queue::{Queue, create_queue, create_queue_with};
#[doc(hidden)]
pub use shareable::__private;
pub use shareable::{
    BufferError, BufferSlot, Share, ShareError, Shareable, SharedBuffer, is_shareable,
};

/// What happens to an item in a queue or channel when the interpreter that put it is closed
/// before the item is taken (CPython 3.14's `unbounditems`).
///
/// # The default: CPython 3.14's `UNBOUND`, not the PEP text's removal
///
/// PEP 734's text specifies one behaviour and no option: "If an object is still in the
/// queue, and the interpreter which put it in the queue (i.e. to which it belongs) is
/// destroyed, then the object is immediately removed from the queue. (We may later add an
/// option to replace the removed object in the queue with a sentinel or to raise an
/// exception for the corresponding `get()` call.)" CPython 3.14 shipped that option as
/// `unbounditems` with three values, and made `UNBOUND` — the sentinel replacing the item —
/// the default.
///
/// The default here is CPython 3.14's, [`Replace`](Self::Replace): code moving from Python
/// gets the behaviour it runs today, and a queue keeps its count — a consumer expecting `n`
/// items gets `n` (some of them [`Shareable::Unbound`]) instead of blocking forever on items
/// that silently vanished. The PEP text's behaviour is [`Remove`](Self::Remove), per queue
/// ([`create_queue_with`], [`create_channel_with`]) or per item
/// ([`Queue::put_with_policy`]).
///
/// ```
/// use exec_context::interpreters::{self, Queue, Shareable, UnboundPolicy};
///
/// let queue = Queue::new(0);
/// assert_eq!(queue.unbound_policy(), UnboundPolicy::Replace);
/// let interp = interpreters::create();
/// let q = queue.clone();
/// interp.exec(move || q.put("orphan").unwrap()).unwrap();
/// interp.close().unwrap();
/// assert_eq!(queue.get(), Ok(Shareable::Unbound));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UnboundPolicy {
    /// The item is replaced by [`Shareable::Unbound`] (CPython 3.14's `UNBOUND`, its
    /// default, and the default here).
    #[default]
    Replace,
    /// Taking the item fails with [`RecvError::ItemInterpreterDestroyed`] (`UNBOUND_ERROR`).
    Error,
    /// The item is removed at once (`UNBOUND_REMOVE`; what PEP 734's text specifies): the
    /// queue shrinks, and puts no longer balance gets.
    Remove,
}

/// The interpreter code runs in, as a [pinned](contextvars::pinned) context variable: every
/// context an interpreter runs code in holds its ID here, and every context made from one
/// (snapshots, tasks, threads, generators, `Context::new`) carries it along, so work started
/// inside an interpreter stays in it without any spawn path knowing about interpreters. No
/// value means the main interpreter.
#[cfg(not(loom))]
static CURRENT: ContextVar<u64> = ContextVar::new("exec_context.interpreter").pinned();
/// Under loom, variables cannot be made in a `const` (the loom models never read this one).
#[cfg(loom)]
static CURRENT: std::sync::LazyLock<ContextVar<u64>> =
    std::sync::LazyLock::new(|| ContextVar::new("exec_context.interpreter").pinned());

thread_local! {
    /// The interpreters this thread ran in, whose saved state for the thread goes when it ends.
    static VISITS: Visits = Visits {
        thread: std::thread::current().id(),
        interpreters: RefCell::new(Vec::new()),
    };
}

/// The ID of the interpreter the current code runs in (0: the main interpreter).
pub(crate) fn current_id() -> u64 {
    CURRENT.with(|id| id.copied().unwrap_or(0))
}

/// A fresh context of interpreter `id` for one thread: nothing of the caller's, only the
/// interpreter's mark.
fn fresh_context(id: u64) -> Context {
    let mut context = Context::from(contextvars::ExecutionContext::new());
    context.run(|| drop(CURRENT.set(id)));
    context
}

struct Visits {
    thread: ThreadId,
    interpreters: RefCell<Vec<Weak<Inner>>>,
}

impl Visits {
    /// Remembers an interpreter this thread ran in, forgetting those that are gone whenever
    /// the list doubles (a thread creating and closing interpreters in a loop stays small).
    fn remember(&self, interp: Weak<Inner>) {
        // The handles upgraded to look: one may be the last (another thread dropped the
        // others meanwhile), and the interpreter it closes runs user `Drop`s, which must not
        // find the list borrowed. They are dropped once it is not.
        let mut looked = Vec::new();
        {
            let mut list = self.interpreters.borrow_mut();
            if list.len() >= 8 && list.len().is_power_of_two() {
                list.retain(|weak| {
                    weak.upgrade().is_some_and(|inner| {
                        let open = !inner.lock().closed;
                        looked.push(inner);
                        open
                    })
                });
            }
            list.push(interp);
        }
        // Another interpreter's leftovers: a panic of theirs is not the caller's run's
        // failure, and has no one else to reach. Discarded (the panic hook has shown it).
        discarding_panics(move || drop(looked));
    }
}

impl Drop for Visits {
    /// The thread is ending: the contexts it left in interpreters go. This runs in a
    /// thread-local's destructor, where a panic (a value's `Drop`) aborts the process and has
    /// no caller to reach: each is dropped on its own and its panic discarded.
    fn drop(&mut self) {
        let thread = self.thread;
        for weak in std::mem::take(self.interpreters.get_mut()) {
            discarding_panics(move || {
                if let Some(inner) = weak.upgrade() {
                    let saved = inner.lock().contexts.remove(&thread);
                    drop(saved);
                }
            });
        }
    }
}

/// A thread started inside an interpreter: counted until it ends, so the interpreter cannot
/// be closed under it. Made by [`crate::thread`]'s spawn hook, which [`create`] installs.
struct ThreadTicket {
    inner: Arc<Inner>,
}

impl ThreadTicket {
    /// A ticket for a thread about to be started from the current interpreter (none from the
    /// main one).
    fn for_current() -> Option<Box<dyn Send>> {
        let id = current_id();
        if id == 0 {
            return None;
        }
        let inner = registry::interpreter(id)?;
        inner.lock().threads += 1;
        Some(Box::new(ThreadTicket { inner }))
    }
}

impl Drop for ThreadTicket {
    fn drop(&mut self) {
        self.inner.lock().threads -= 1;
    }
}

/// Thread IDs are small distinct integers: one multiply spreads them well enough, at a
/// fraction of SipHash's cost on the `exec` path.
#[derive(Default)]
struct ThreadIdHasher(u64);

impl Hasher for ThreadIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) struct Inner {
    id: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    closed: bool,
    running: bool,
    /// Threads started inside the interpreter and still running.
    threads: usize,
    /// The `__main__` namespace.
    main: HashMap<String, Shareable>,
    /// The interpreter's context for each thread that ran in it (taken out while it runs).
    contexts: HashMap<ThreadId, Option<Context>, BuildHasherDefault<ThreadIdHasher>>,
}

impl Inner {
    fn new(id: u64) -> Self {
        Inner {
            id,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock: a poisoned one still guards a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Inner {
    /// Dropping the last handle closes the interpreter (PEP 734: an interpreter made by
    /// `create()` is destroyed once no `Interpreter` object refers to it).
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if self.id != 0 && !state.closed {
            state.closed = true;
            registry::remove_interpreter(self.id);
            registry::unbind(self.id);
        }
        // As in `close`: user destructors one by one.
        drop_state(
            std::mem::take(&mut state.contexts),
            std::mem::take(&mut state.main),
        );
    }
}

static MAIN: LazyLock<Arc<Inner>> = LazyLock::new(|| Arc::new(Inner::new(0)));

/// Drops an interpreter's per-thread contexts and `__main__` values (see [`drop_each`]).
fn drop_state<S>(
    contexts: HashMap<ThreadId, Option<Context>, S>,
    main: HashMap<String, Shareable>,
) {
    // Out of the maps first: a map's table would leak if its drop were cut short.
    let contexts = contexts.into_values().flatten().map(Held::Context);
    let main = main.into_values().map(Held::Main);
    drop_each(
        contexts
            .collect::<Vec<_>>()
            .into_iter()
            .chain(main.collect::<Vec<_>>()),
    );
}

/// What an interpreter holds that user code may have put there.
#[expect(dead_code, reason = "held only to be dropped")]
enum Held {
    Context(Context),
    Main(Shareable),
}

/// Drops each of `items` on its own, so that a panicking destructor among them neither keeps
/// the others from being dropped nor, with a second one, aborts the process (a `Vec` would go
/// on dropping the rest while the first panic unwinds). The first panic reaches the caller
/// once every item is dropped; later ones are discarded. While the caller is already
/// unwinding, every panic is discarded. (Within one item, a context holding two values whose
/// `Drop` panics, a second panic while the first unwinds still aborts, as in any collection.)
pub(crate) fn drop_each<T>(items: impl IntoIterator<Item = T>) {
    let mut first = None;
    for item in items {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(item))) {
            match first {
                None => first = Some(payload),
                // A payload's own `Drop` is user code too.
                Some(_) => discarding_panics(move || drop(payload)),
            }
        }
    }
    if let Some(payload) = first {
        if std::thread::panicking() {
            discarding_panics(move || drop(payload));
        } else {
            std::panic::resume_unwind(payload);
        }
    }
}

/// Creates a new, idle interpreter (PEP 554/734 `create()`). It runs nothing until something
/// is run in it, on whichever thread calls [`exec`](Interpreter::exec).
///
/// ```
/// let a = exec_context::interpreters::create();
/// let b = exec_context::interpreters::create();
/// assert!(b.id() > a.id()); // IDs are never reused
/// assert!(!a.is_running());
/// ```
pub fn create() -> Interpreter {
    crate::thread::set_spawn_hook(ThreadTicket::for_current);
    let inner = Arc::new(Inner::new(registry::next_interpreter_id()));
    registry::add_interpreter(&inner);
    Interpreter { inner }
}

/// Every interpreter that exists: the main one first, then the others by ID.
///
/// ```
/// use exec_context::interpreters;
///
/// let interp = interpreters::create();
/// let all = interpreters::list_all();
/// assert_eq!(all[0], interpreters::get_main());
/// assert!(all.contains(&interp));
/// interp.close().unwrap();
/// assert!(!interpreters::list_all().contains(&interp));
/// ```
pub fn list_all() -> Vec<Interpreter> {
    let mut all = vec![get_main()];
    all.extend(
        registry::interpreters()
            .into_iter()
            .map(|inner| Interpreter { inner }),
    );
    all
}

/// The interpreter the current thread is running in: the one an `exec` entered, or the one
/// the current task, generator or thread was started in.
///
/// ```
/// use exec_context::interpreters;
///
/// let interp = interpreters::create();
/// assert_eq!(interpreters::get_current(), interpreters::get_main());
/// let inside = interp.call(|| interpreters::get_current().id()).unwrap();
/// assert_eq!(inside, interp.id());
/// ```
pub fn get_current() -> Interpreter {
    let id = current_id();
    if id == 0 {
        return get_main();
    }
    let inner = registry::interpreter(id).unwrap_or_else(|| {
        // A task or generator of an interpreter that has been closed since.
        let inner = Inner::new(id);
        inner.lock().closed = true;
        Arc::new(inner)
    });
    Interpreter { inner }
}

/// The main interpreter: the process's own context state (ID 0). It cannot be run in,
/// prepared or closed through this API, and it always counts as running.
///
/// ```
/// use exec_context::interpreters::{self, InterpreterError};
///
/// let main = interpreters::get_main();
/// assert_eq!(main.id(), 0);
/// assert!(main.is_running());
/// assert!(matches!(main.exec(|| ()), Err(InterpreterError::Main)));
/// assert!(matches!(main.close(), Err(InterpreterError::Main)));
/// ```
pub fn get_main() -> Interpreter {
    Interpreter {
        inner: MAIN.clone(),
    }
}

/// A handle to an interpreter. Clones refer to the same interpreter; dropping the last handle
/// closes it (as [`close`](Self::close) does, unless something runs in it).
///
/// ```
/// use exec_context::interpreters;
///
/// let interp = interpreters::create();
/// let other = interp.clone();
/// assert_eq!(other, interp); // the same interpreter
/// let id = interp.id();
/// drop((interp, other)); // the last handles: the interpreter closes
/// assert!(interpreters::list_all().iter().all(|i| i.id() != id));
/// ```
#[derive(Clone)]
pub struct Interpreter {
    inner: Arc<Inner>,
}

impl Interpreter {
    /// The interpreter's ID: 0 for the main interpreter; IDs are never reused.
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// assert_eq!(interpreters::get_main().id(), 0);
    /// let interp = interpreters::create();
    /// assert_ne!(interp.id(), 0);
    /// assert_eq!(interp.clone().id(), interp.id());
    /// ```
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Whether this is the main interpreter.
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// assert!(interpreters::get_main().is_main());
    /// assert!(!interpreters::create().is_main());
    /// ```
    pub fn is_main(&self) -> bool {
        self.inner.id == 0
    }

    /// Whether code is running in the interpreter through `exec`/`call` on some thread
    /// (threads started inside do not count, as in PEP 734). Always true for the main one.
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// let interp = interpreters::create();
    /// assert!(!interp.is_running());
    /// let me = interp.clone();
    /// assert!(interp.call(move || me.is_running()).unwrap());
    /// assert!(!interp.is_running());
    /// assert!(interpreters::get_main().is_running());
    /// ```
    pub fn is_running(&self) -> bool {
        self.is_main() || self.inner.lock().running
    }

    /// Whether the interpreter was closed.
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// assert!(!interp.is_closed());
    /// interp.close().unwrap();
    /// assert!(interp.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }

    /// Closes the interpreter: its `__main__` namespace and saved context states are dropped,
    /// and the items it put in queues and channels follow their [`UnboundPolicy`]. Every
    /// handle fails with [`InterpreterError::NotFound`] afterwards.
    ///
    /// # Errors
    ///
    /// [`InterpreterError::Main`]; [`InterpreterError::Current`] from inside the interpreter;
    /// [`InterpreterError::Running`] while an `exec` runs in it on another thread;
    /// [`InterpreterError::HasThreads`] while threads started inside it run;
    /// [`InterpreterError::NotFound`] if it was closed already.
    ///
    /// ```
    /// use exec_context::interpreters::{self, InterpreterError};
    ///
    /// let interp = interpreters::create();
    /// let me = interp.clone();
    /// let close_inside = move || matches!(me.close(), Err(InterpreterError::Current { .. }));
    /// assert!(interp.call(close_inside).unwrap());
    /// interp.close().unwrap();
    /// assert!(matches!(interp.exec(|| ()), Err(InterpreterError::NotFound { .. })));
    /// ```
    pub fn close(&self) -> Result<(), InterpreterError> {
        let id = self.inner.id;
        if id == 0 {
            return Err(InterpreterError::Main);
        }
        if current_id() == id {
            return Err(InterpreterError::Current { id });
        }
        let (main, contexts) = {
            let mut state = self.inner.lock();
            if state.closed {
                return Err(InterpreterError::NotFound { id });
            }
            if state.running {
                return Err(InterpreterError::Running { id });
            }
            if state.threads > 0 {
                return Err(InterpreterError::HasThreads {
                    id,
                    threads: state.threads,
                });
            }
            state.closed = true;
            (
                std::mem::take(&mut state.main),
                std::mem::take(&mut state.contexts),
            )
        };
        registry::remove_interpreter(id);
        registry::unbind(id);
        // User destructors run last, outside every lock, with the interpreter consistently
        // closed whatever they do; one by one (a panic among them reaches the caller once
        // all are dropped).
        drop_state(contexts, main);
        Ok(())
    }

    /// PEP 554's name for [`close`](Self::close).
    ///
    /// # Errors
    ///
    /// As [`close`](Self::close).
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// interp.destroy().unwrap();
    /// assert!(interp.is_closed());
    /// ```
    pub fn destroy(&self) -> Result<(), InterpreterError> {
        self.close()
    }

    /// Runs `f` in the interpreter, on the current thread, which pauses its own interpreter
    /// meanwhile (PEP 734 `exec`). The interpreter's state is neither reset before nor after:
    /// what `f` leaves in the context and in `__main__` is there for the next run. A context
    /// `f` attached ([`contextvars::attach`]) and left active ends with the run, as with
    /// [`Context::run`](contextvars::Context::run), and becomes the interpreter's context on
    /// this thread, with the interpreter's mark put back in it (what runs there next is this
    /// interpreter's, whatever context was attached).
    ///
    /// # Errors
    ///
    /// [`InterpreterError::Failed`] when `f` panics, or a `Drop` panics as the run ends (the
    /// panic is caught; the interpreter stays usable); [`InterpreterError::Running`] when it
    /// is running already — one `exec`
    /// at a time per interpreter; [`InterpreterError::NotFound`]; [`InterpreterError::Main`].
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// println!("before");
    /// interp.exec(|| println!("during")).unwrap();
    /// println!("after");
    /// ```
    pub fn exec(&self, f: impl FnOnce()) -> Result<(), InterpreterError> {
        self.enter(|| {
            f();
            Ok::<(), std::convert::Infallible>(())
        })
    }

    /// PEP 554's (2017) name for [`exec`](Self::exec).
    ///
    /// # Errors
    ///
    /// As [`exec`](Self::exec).
    ///
    /// ```
    /// use exec_context::interpreters;
    ///
    /// let interp = interpreters::create();
    /// interp.run(|| interpreters::get_current().set_main_attr("ran", true).unwrap()).unwrap();
    /// assert_eq!(interp.get_main_attr("ran").unwrap(), Some(true.into()));
    /// ```
    pub fn run(&self, f: impl FnOnce()) -> Result<(), InterpreterError> {
        self.exec(f)
    }

    /// Like [`exec`](Self::exec), for code that can fail: an `Err` is reported as
    /// [`InterpreterError::Failed`], with the error itself as the source.
    ///
    /// # Errors
    ///
    /// As [`exec`](Self::exec).
    ///
    /// ```
    /// use std::io;
    /// use exec_context::interpreters;
    ///
    /// let interp = interpreters::create();
    /// interp.try_exec(|| Ok::<(), io::Error>(())).unwrap();
    /// let error = interp.try_exec(|| Err(io::Error::other("disk full"))).unwrap_err();
    /// let failed = error.as_failed().unwrap();
    /// assert_eq!(failed.message(), "disk full");
    /// assert!(failed.downcast_source::<io::Error>().is_some());
    /// ```
    pub fn try_exec<E>(&self, f: impl FnOnce() -> Result<(), E>) -> Result<(), InterpreterError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.enter(f)
    }

    /// Calls `f` in the interpreter and returns its (shareable) result (PEP 734 `call`).
    ///
    /// # Errors
    ///
    /// As [`exec`](Self::exec).
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// assert_eq!(interp.call(|| 6 * 7).unwrap(), 42);
    /// ```
    pub fn call<T: Share>(&self, f: impl FnOnce() -> T) -> Result<T, InterpreterError> {
        self.enter(|| Ok::<T, std::convert::Infallible>(f()))
    }

    /// Like [`call`](Self::call), for code that can fail.
    ///
    /// # Errors
    ///
    /// As [`try_exec`](Self::try_exec).
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// assert_eq!(interp.try_call(|| "42".parse::<i64>()).unwrap(), 42);
    /// let error = interp.try_call(|| "forty-two".parse::<i64>()).unwrap_err();
    /// assert!(error.as_failed().unwrap().type_name().ends_with("ParseIntError"));
    /// ```
    pub fn try_call<T: Share, E>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, InterpreterError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.enter(f)
    }

    /// Calls `f` in the interpreter on a new thread (PEP 734 `call_in_thread`); join the
    /// handle for the result.
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// let id = interp.id();
    /// let thread = interp.call_in_thread(move || exec_context::interpreters::get_current().id());
    /// assert_eq!(thread.join().unwrap().unwrap(), id);
    /// ```
    pub fn call_in_thread<T, F>(&self, f: F) -> JoinHandle<Result<T, InterpreterError>>
    where
        T: Share,
        F: FnOnce() -> T + Send + 'static,
    {
        let interp = self.clone();
        std::thread::spawn(move || interp.call(f))
    }

    fn enter<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, InterpreterError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let id = self.inner.id;
        if id == 0 {
            return Err(InterpreterError::Main);
        }
        let thread = VISITS
            .try_with(|visits| visits.thread)
            .unwrap_or_else(|_| std::thread::current().id());
        let (context, first_visit) = {
            let mut state = self.inner.lock();
            if state.closed {
                return Err(InterpreterError::NotFound { id });
            }
            if state.running {
                return Err(InterpreterError::Running { id });
            }
            state.running = true;
            match state.contexts.get_mut(&thread) {
                Some(slot) => (slot.take(), false),
                None => {
                    state.contexts.insert(thread, None);
                    (None, true)
                }
            }
        };
        // However this run ends, the interpreter stops running and its context (taken out
        // above, or the one the run leaves) is saved for the thread's next visit.
        struct Leave<'a> {
            inner: &'a Inner,
            thread: ThreadId,
            context: Option<Context>,
        }
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                let mut state = self.inner.lock();
                state.running = false;
                // The slot is empty while the interpreter runs: nothing is dropped here.
                state.contexts.insert(self.thread, self.context.take());
            }
        }
        let mut leave = Leave {
            inner: &self.inner,
            thread,
            context,
        };
        if first_visit {
            let weak = Arc::downgrade(&self.inner);
            // During thread teardown there is nothing left to clean up after.
            let _ = VISITS.try_with(|visits| visits.remember(weak));
        }
        // Outside the lock: the context's first `set` may run watchers.
        let mut context = leave.context.take().unwrap_or_else(|| fresh_context(id));
        // Panics are caught inside the context, so the context always comes back to be saved.
        // The context holds the interpreter's mark, so `get_current` inside is this one.
        // A failure is described inside too: an error's `Display` or `source` is user code,
        // which sees the interpreter's context and whose panic is caught (`describe`).
        let ran = catch_unwind(AssertUnwindSafe(|| {
            context.run(|| match catch_unwind(AssertUnwindSafe(f)) {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(ExecutionFailed::describe(id, Ok(error))),
                Err(payload) => Err(ExecutionFailed::describe::<ExecutionFailed>(
                    id,
                    Err(payload),
                )),
            })
        }));
        // An attach `f` left active ended with the run, and its context is now the
        // interpreter's on this thread (as for `Context::run`); what it displaced was dropped
        // as the run returned, and a panic there came out of `run` (caught just above). That
        // context may come from elsewhere (main's, another interpreter's): it gets this
        // interpreter's mark back, so that what runs here next is this interpreter's.
        if context.get(&CURRENT) != Some(id) {
            context.run(|| drop(CURRENT.set(id)));
        }
        leave.context = Some(context);
        drop(leave);
        let outcome = ran.unwrap_or_else(|payload| {
            Err(ExecutionFailed::describe::<ExecutionFailed>(
                id,
                Err(payload),
            ))
        });
        outcome.map_err(InterpreterError::from)
    }

    /// Binds names in the interpreter's `__main__` namespace (PEP 734 `prepare_main`, PEP
    /// 554's `set_main_attrs`), replacing earlier values.
    ///
    /// # Errors
    ///
    /// [`InterpreterError::NotFound`]; [`InterpreterError::Main`].
    ///
    /// ```
    /// use exec_context::interpreters::{self, Shareable};
    ///
    /// let interp = interpreters::create();
    /// let queue = interpreters::create_queue(0);
    /// interp.prepare_main([("queue", queue.clone().into()), ("n", 3.into())]).unwrap();
    /// interp.exec(|| {
    ///     let me = interpreters::get_current();
    ///     let queue = me.get_main_attr("queue").unwrap().unwrap();
    ///     let queue: interpreters::Queue = queue.extract().unwrap();
    ///     queue.put("hello").unwrap();
    /// }).unwrap();
    /// assert_eq!(queue.get().unwrap(), Shareable::from("hello"));
    /// ```
    pub fn prepare_main<I, K>(&self, attrs: I) -> Result<(), InterpreterError>
    where
        I: IntoIterator<Item = (K, Shareable)>,
        K: Into<String>,
    {
        // The caller's iterator and `Into` are user code: run before the lock (they may use
        // this interpreter, and a panic there binds nothing).
        let attrs: Vec<(String, Shareable)> = attrs
            .into_iter()
            .map(|(name, value)| (name.into(), value))
            .collect();
        let replaced: Vec<Shareable> = {
            let mut state = self.writable_state()?;
            attrs
                .into_iter()
                .filter_map(|(name, value)| state.main.insert(name, value))
                .collect()
        };
        drop(replaced);
        Ok(())
    }

    /// PEP 554's name for [`prepare_main`](Self::prepare_main).
    ///
    /// # Errors
    ///
    /// As [`prepare_main`](Self::prepare_main).
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// interp.set_main_attrs([("x", 1.into())]).unwrap();
    /// interp.set_main_attrs([("x", 2.into())]).unwrap(); // replaces the earlier value
    /// assert_eq!(interp.get_main_attr("x").unwrap(), Some(2.into()));
    /// ```
    pub fn set_main_attrs<I, K>(&self, attrs: I) -> Result<(), InterpreterError>
    where
        I: IntoIterator<Item = (K, Shareable)>,
        K: Into<String>,
    {
        self.prepare_main(attrs)
    }

    /// Binds one name in `__main__`.
    ///
    /// # Errors
    ///
    /// As [`prepare_main`](Self::prepare_main).
    ///
    /// ```
    /// use exec_context::interpreters::{self, Shareable};
    ///
    /// let interp = interpreters::create();
    /// interp.set_main_attr("greeting", "hello").unwrap();
    /// let seen = interp.call(|| interpreters::get_current().get_main_attr("greeting").unwrap());
    /// assert_eq!(seen.unwrap(), Some(Shareable::from("hello")));
    /// ```
    pub fn set_main_attr(
        &self,
        name: impl Into<String>,
        value: impl Share,
    ) -> Result<(), InterpreterError> {
        self.prepare_main([(name.into(), value.into_shareable())])
    }

    /// The value bound to `name` in `__main__`, if any (PEP 554's `get_main_attr`).
    ///
    /// # Errors
    ///
    /// [`InterpreterError::NotFound`]; [`InterpreterError::Main`].
    ///
    /// ```
    /// use exec_context::interpreters::{self, InterpreterError};
    ///
    /// let interp = interpreters::create();
    /// assert_eq!(interp.get_main_attr("n").unwrap(), None);
    /// interp.set_main_attr("n", 3).unwrap();
    /// assert_eq!(interp.get_main_attr("n").unwrap(), Some(3.into()));
    /// let main = interpreters::get_main();
    /// assert!(matches!(main.get_main_attr("n"), Err(InterpreterError::Main)));
    /// ```
    pub fn get_main_attr(&self, name: &str) -> Result<Option<Shareable>, InterpreterError> {
        Ok(self.writable_state()?.main.get(name).cloned())
    }

    /// The names bound in `__main__`, sorted.
    ///
    /// # Errors
    ///
    /// As [`get_main_attr`](Self::get_main_attr).
    ///
    /// ```
    /// let interp = exec_context::interpreters::create();
    /// interp.prepare_main([("b", 2.into()), ("a", 1.into())]).unwrap();
    /// assert_eq!(interp.main_attr_names().unwrap(), ["a", "b"]);
    /// ```
    pub fn main_attr_names(&self) -> Result<Vec<String>, InterpreterError> {
        let mut names: Vec<String> = self.writable_state()?.main.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    fn writable_state(&self) -> Result<MutexGuard<'_, State>, InterpreterError> {
        if self.is_main() {
            return Err(InterpreterError::Main);
        }
        let state = self.inner.lock();
        if state.closed {
            return Err(InterpreterError::NotFound { id: self.inner.id });
        }
        Ok(state)
    }
}

impl PartialEq for Interpreter {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id
    }
}

impl Eq for Interpreter {}

impl Hash for Interpreter {
    /// Hashes the ID (PEP 734's `__hash__`).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.id.hash(state);
    }
}

impl fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interpreter")
            .field("id", &self.inner.id)
            .finish()
    }
}

#[cfg(all(test, loom))]
mod loom_models;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{VISITS, create};

    #[test]
    fn a_thread_forgets_the_interpreters_that_closed() {
        for _ in 0..1000 {
            let interp = create();
            interp.exec(|| ()).unwrap();
            interp.close().unwrap();
        }
        let remembered = VISITS.with(|visits| visits.interpreters.borrow().len());
        assert!(remembered <= 16, "{remembered} interpreters remembered");
    }
}
