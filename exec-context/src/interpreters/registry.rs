//! Process-wide tables: live interpreters, and the queues and channels whose items must follow
//! their unbound policy when an interpreter closes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::Inner;
use super::channel::ChannelInner;
use super::queue::QueueInner;

static NEXT_INTERPRETER: AtomicU64 = AtomicU64::new(1);
/// How many interpreters have been closed: what a thread's answer of [`is_closed`] depends
/// on.
static CLOSINGS: AtomicU64 = AtomicU64::new(0);

std::thread_local! {
    /// The last answer of [`is_closed`] on this thread: `(CLOSINGS then, owner, closed)`.
    static LAST_CLOSED: std::cell::Cell<(u64, u64, bool)> =
        const { std::cell::Cell::new((u64::MAX, 0, false)) };
}
static NEXT_ENDPOINT: AtomicU64 = AtomicU64::new(1);

static INTERPRETERS: Mutex<BTreeMap<u64, Weak<Inner>>> = Mutex::new(BTreeMap::new());
static ENDPOINTS: Mutex<Endpoints> = Mutex::new(Endpoints {
    live: Vec::new(),
    prune_at: 64,
});

pub(crate) enum Endpoint {
    Queue(Weak<QueueInner>),
    Channel(Weak<ChannelInner>),
}

impl Endpoint {
    fn is_live(&self) -> bool {
        match self {
            Endpoint::Queue(weak) => weak.strong_count() > 0,
            Endpoint::Channel(weak) => weak.strong_count() > 0,
        }
    }
}

struct Endpoints {
    live: Vec<Endpoint>,
    prune_at: usize,
}

/// A fresh interpreter ID; IDs are never reused (the main interpreter is 0).
pub(crate) fn next_interpreter_id() -> u64 {
    NEXT_INTERPRETER.fetch_add(1, Ordering::Relaxed)
}

/// A fresh queue or channel ID.
pub(crate) fn next_endpoint_id() -> u64 {
    NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn add_interpreter(inner: &Arc<Inner>) {
    INTERPRETERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(inner.id, Arc::downgrade(inner));
}

/// Takes the closed interpreter `id` out of the table. Before its items are unbound: a
/// put that comes after that, from work of it that outlived it, finds it closed (see
/// [`is_closed`]).
pub(crate) fn remove_interpreter(id: u64) {
    let removed = INTERPRETERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    CLOSINGS.fetch_add(1, Ordering::SeqCst);
    drop(removed);
}

/// Whether `owner` is an interpreter that was closed (the main interpreter never is; an ID
/// never handed out is not one). A queue or channel asks it for the putter of every item,
/// under its lock: the answer is cached per thread until the next interpreter closes, so a
/// put asks the table only when some interpreter closed since the thread last asked.
pub(crate) fn is_closed(owner: u64) -> bool {
    if owner == 0 || owner >= NEXT_INTERPRETER.load(Ordering::Acquire) {
        return false;
    }
    let closings = CLOSINGS.load(Ordering::SeqCst);
    if let Ok(Some(closed)) = LAST_CLOSED.try_with(|last| {
        let (seen, id, closed) = last.get();
        (seen == closings && id == owner).then_some(closed)
    }) {
        return closed;
    }
    let closed = !INTERPRETERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains_key(&owner);
    let _ = LAST_CLOSED.try_with(|last| last.set((closings, owner, closed)));
    closed
}

pub(crate) fn interpreter(id: u64) -> Option<Arc<Inner>> {
    let table = INTERPRETERS.lock().unwrap_or_else(PoisonError::into_inner);
    table.get(&id).and_then(Weak::upgrade)
}

/// The live interpreters in ID order. The strong references are dropped by the caller,
/// outside the lock (dropping the last one closes an interpreter, which takes the lock).
pub(crate) fn interpreters() -> Vec<Arc<Inner>> {
    let table = INTERPRETERS.lock().unwrap_or_else(PoisonError::into_inner);
    table.values().filter_map(Weak::upgrade).collect()
}

pub(crate) fn register(endpoint: Endpoint) {
    let mut endpoints = ENDPOINTS.lock().unwrap_or_else(PoisonError::into_inner);
    if endpoints.live.len() >= endpoints.prune_at {
        endpoints.live.retain(Endpoint::is_live);
        endpoints.prune_at = (endpoints.live.len() * 2).max(64);
    }
    endpoints.live.push(endpoint);
}

/// Live queues and channels, upgraded so they can be used outside the lock.
fn endpoints() -> (Vec<Arc<QueueInner>>, Vec<Arc<ChannelInner>>) {
    let endpoints = ENDPOINTS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut queues = Vec::new();
    let mut channels = Vec::new();
    for endpoint in &endpoints.live {
        match endpoint {
            Endpoint::Queue(weak) => queues.extend(weak.upgrade()),
            Endpoint::Channel(weak) => channels.extend(weak.upgrade()),
        }
    }
    (queues, channels)
}

pub(crate) fn channels() -> Vec<Arc<ChannelInner>> {
    endpoints().1
}

/// Applies the unbound policies to everything the closed interpreter `owner` put.
pub(crate) fn unbind(owner: u64) {
    let (queues, channels) = endpoints();
    for queue in queues {
        queue.fifo.unbind(owner);
    }
    for channel in channels {
        channel.fifo.unbind(owner);
        channel.forget(owner);
    }
}
