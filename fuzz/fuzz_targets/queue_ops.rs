//! `queue_ops`: an arbitrary program of queue, channel and interpreter operations run on one
//! thread and on a naive model (per queue or channel: a `VecDeque` of (value, owner, policy)
//! and a closed flag; per channel end: the interpreters using and having released it),
//! compared after every step.
//!
//! `Enter` runs the operations after it, up to its `End` (or the end of the input), inside
//! `Interpreter::exec`, so that what they put is owned by that interpreter; scopes nest, and
//! may end with a panic, which `exec` reports as `ExecutionFailed`. Closing an interpreter, or
//! dropping its last handle, must apply each of its items' unbound policy: `Replace` turns the
//! item into `Shareable::Unbound`, `Error` makes taking it fail with
//! `ItemInterpreterDestroyed`, `Remove` takes it out.
//!
//! Everything runs on one thread, so a blocking call is only made when the model says it
//! returns at once; otherwise the operation uses its `nowait` form. Timed waits are short
//! (0 to 2 ms) and share a per-input budget, so slow inputs stay rare. Each input ends by
//! dropping its interpreters and draining every queue and channel against the model (which
//! also breaks the reference cycles of queues holding their own handles), after which no
//! interpreter but the main one may be left.
#![no_main]

use std::collections::{BTreeSet, VecDeque};
use std::panic;
use std::sync::Once;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use exec_context::interpreters::{
    self, Interpreter, InterpreterError, Queue, RecvChannel, RecvError, SendChannel, SendError,
    Shareable, SharedBuffer, UnboundPolicy,
};
use libfuzzer_sys::fuzz_target;

/// Upper bound on the operations of one input.
const MAX_OPS: usize = 512;
/// Scopes nested deeper than this run their operations in the enclosing scope instead.
const MAX_DEPTH: usize = 6;
const MAX_QUEUES: usize = 6;
const MAX_CHANNELS: usize = 4;
const MAX_INTERPRETERS: usize = 6;
/// Total time one input may spend in timed waits that are expected to run out.
const WAIT_BUDGET: Duration = Duration::from_millis(4);

/// The payload of the panics this target raises on purpose (any other panic is a finding).
struct PlannedPanic;

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // libfuzzer-sys aborts on every panic; let the planned ones unwind quietly into
        // `exec`, which catches them.
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<PlannedPanic>() {
                previous(info);
            }
        }));
    });
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum Policy {
    Replace,
    Error,
    Remove,
}

impl From<Policy> for UnboundPolicy {
    fn from(policy: Policy) -> Self {
        match policy {
            Policy::Replace => UnboundPolicy::Replace,
            Policy::Error => UnboundPolicy::Error,
            Policy::Remove => UnboundPolicy::Remove,
        }
    }
}

/// A timed wait: mostly zero, sometimes 0.1, 1 or 2 ms.
#[derive(Arbitrary, Clone, Copy, Debug)]
struct Timeout(u8);

impl Timeout {
    fn duration(self) -> Duration {
        match self.0 % 8 {
            5 => Duration::from_micros(100),
            6 => Duration::from_millis(1),
            7 => Duration::from_millis(2),
            _ => Duration::ZERO,
        }
    }
}

/// The parts of a tuple.
#[derive(Arbitrary, Clone, Debug)]
enum Leaf {
    Int(i8),
    Str(u8),
    Queue(u8),
}

/// A value to put or send.
#[derive(Arbitrary, Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A float made from an integer, so never NaN (which is not equal to itself).
    Float(i32),
    Str(u8),
    Bytes(Vec<u8>),
    Tuple(Vec<Leaf>),
    /// A handle of one of the input's queues (possibly the one it is put into).
    Queue(u8),
    SendEnd(u8),
    RecvEnd(u8),
    /// A read-only buffer of this many bytes.
    Buffer(u8),
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum PutMode {
    /// `put`, which waits for room: used only when it cannot block, `put_nowait` otherwise.
    Blocking,
    Nowait,
    Timeout(Timeout),
    /// `put_with_policy` without a timeout (waiting for room, as `Blocking`: used only when
    /// it cannot block, `put_with_policy_nowait` otherwise), `put_with_policy_timeout` with.
    WithPolicy {
        policy: Policy,
        timeout: Option<Timeout>,
    },
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum GetMode {
    /// `get` / `recv`, which wait: used only when they cannot block.
    Blocking,
    Nowait,
    Timeout(Timeout),
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum SendMode {
    /// `send`, which waits until the item is received: used only when it fails at once.
    Blocking,
    /// `send_nowait`: nobody receives on this thread, so it fails with `NotReceiving` and
    /// leaves nothing in the channel (PEP 554).
    Nowait,
    /// `send_timeout`: nobody receives on this thread meanwhile, so the item is withdrawn.
    Timeout(Timeout),
    /// `send_buffer_nowait` with a fresh buffer: refused as `Nowait`.
    BufferNowait,
    /// `send_buffered`: the item stays in the channel for a later `recv`.
    Buffered,
}

#[derive(Arbitrary, Clone, Debug)]
enum Op {
    /// `create_queue_with(maxsize % 5, policy)`, or `create_queue` without a policy.
    CreateQueue {
        maxsize: u8,
        policy: Option<Policy>,
    },
    Put {
        queue: u8,
        value: Value,
        mode: PutMode,
    },
    Get {
        queue: u8,
        mode: GetMode,
    },
    CloseQueue(u8),
    /// `create_channel_with(policy)`, or `create_channel` (the default policy, `Replace`).
    CreateChannel(Option<Policy>),
    Send {
        channel: u8,
        value: Value,
        mode: SendMode,
    },
    Recv {
        channel: u8,
        mode: GetMode,
    },
    CloseSend(u8),
    CloseRecv(u8),
    ReleaseSend(u8),
    ReleaseRecv(u8),
    CreateInterpreter,
    /// Runs the operations up to the matching `End` inside the interpreter's `exec`.
    Enter {
        interpreter: u8,
        panic: bool,
    },
    End,
    CloseInterpreter(u8),
    /// Drops the harness's handle: the last one, unless the interpreter is running in an
    /// enclosing scope (then it closes when that `exec` returns).
    DropInterpreter(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

/// What became of an item whose interpreter was closed.
#[derive(Clone, Debug)]
enum Payload {
    Value(Shareable),
    Destroyed,
}

#[derive(Clone, Debug)]
struct ModelItem {
    payload: Payload,
    owner: u64,
    policy: UnboundPolicy,
}

/// The model of one FIFO (a queue's or a channel's).
#[derive(Debug, Default)]
struct ModelFifo {
    maxsize: usize,
    items: VecDeque<ModelItem>,
    closed: bool,
}

/// What taking the first item gives.
enum Taken {
    Value(Shareable),
    Destroyed,
    Empty,
    Closed,
}

impl ModelFifo {
    fn full(&self) -> bool {
        self.maxsize != 0 && self.items.len() >= self.maxsize
    }

    fn take(&mut self) -> Taken {
        match self.items.pop_front() {
            Some(ModelItem {
                payload: Payload::Value(value),
                ..
            }) => Taken::Value(value),
            Some(ModelItem {
                payload: Payload::Destroyed,
                ..
            }) => Taken::Destroyed,
            None if self.closed => Taken::Closed,
            None => Taken::Empty,
        }
    }

    /// The interpreter `owner` was closed.
    fn unbind(&mut self, owner: u64) {
        self.items.retain_mut(|item| {
            if item.owner != owner {
                return true;
            }
            match item.policy {
                UnboundPolicy::Remove => return false,
                UnboundPolicy::Replace => item.payload = Payload::Value(Shareable::Unbound),
                UnboundPolicy::Error => item.payload = Payload::Destroyed,
            }
            true
        });
    }
}

struct ModelQueue {
    queue: Queue,
    policy: UnboundPolicy,
    fifo: ModelFifo,
}

const SEND: usize = 0;
const RECV: usize = 1;

/// The interpreters using and having released one end of a channel.
#[derive(Debug, Default)]
struct ModelEnd {
    using: Vec<u64>,
    released: Vec<u64>,
}

struct ModelChannel {
    recv: RecvChannel,
    send: SendChannel,
    policy: UnboundPolicy,
    fifo: ModelFifo,
    ends: [ModelEnd; 2],
}

impl ModelChannel {
    /// `associate`: `Ok` if the interpreter may use the end (and it now does, unless it
    /// was closed: work of a closed interpreter uses an end without counting); if it
    /// released the end, `Err(closed)`, `closed` telling whether the channel is closed
    /// since (a call then fails with `Closed`, else with `Released`).
    fn associate(&mut self, end: usize, interp: u64, interp_closed: bool) -> Result<(), bool> {
        let closed = self.fifo.closed;
        let end = &mut self.ends[end];
        if end.released.contains(&interp) {
            return Err(closed);
        }
        if !interp_closed && !end.using.contains(&interp) {
            end.using.push(interp);
        }
        Ok(())
    }

    /// `release`: whether this call released the end; closes the channel once no
    /// interpreter uses either end.
    fn release(&mut self, end: usize, interp: u64) -> bool {
        let model = &mut self.ends[end];
        model.using.retain(|&id| id != interp);
        let first = !model.released.contains(&interp);
        if first {
            model.released.push(interp);
        }
        if self.ends.iter().all(|end| end.using.is_empty()) {
            self.fifo.closed = true;
        }
        first
    }
}

struct ModelInterpreter {
    id: u64,
    /// The harness's handle, until `DropInterpreter`.
    handle: Option<Interpreter>,
    closed: bool,
}

struct Harness {
    queues: Vec<ModelQueue>,
    channels: Vec<ModelChannel>,
    interpreters: Vec<ModelInterpreter>,
    /// The interpreters entered by the open scopes, innermost last.
    stack: Vec<u64>,
    wait_budget: Duration,
}

fn pick<T>(items: &[T], index: u8) -> Option<usize> {
    (!items.is_empty()).then(|| usize::from(index) % items.len())
}

impl Harness {
    fn current(&self) -> u64 {
        self.stack.last().copied().unwrap_or(0)
    }

    /// Whether `id` is an interpreter that was closed.
    fn is_closed(&self, id: u64) -> bool {
        self.interpreters
            .iter()
            .any(|interp| interp.id == id && interp.closed)
    }

    fn running(&self, id: u64) -> bool {
        self.stack.contains(&id)
    }

    /// The duration of a timed wait that the model says runs out: charged to the budget,
    /// and zero once the budget is spent.
    fn wait(&mut self, timeout: Timeout) -> Duration {
        let wanted = timeout.duration();
        if wanted > self.wait_budget {
            return Duration::ZERO;
        }
        self.wait_budget -= wanted;
        wanted
    }

    fn value(&self, value: &Value) -> Shareable {
        match value {
            Value::None => Shareable::None,
            Value::Bool(b) => Shareable::from(*b),
            Value::Int(n) => Shareable::from(*n),
            Value::Float(n) => Shareable::from(f64::from(*n) / 8.0),
            Value::Str(n) => Shareable::from(format!("s{n}")),
            Value::Bytes(bytes) => Shareable::from(bytes[..bytes.len().min(16)].to_vec()),
            Value::Tuple(leaves) => Shareable::from(
                leaves
                    .iter()
                    .take(4)
                    .map(|leaf| match leaf {
                        Leaf::Int(n) => Shareable::from(*n),
                        Leaf::Str(n) => Shareable::from(format!("t{n}")),
                        Leaf::Queue(n) => self.value(&Value::Queue(*n)),
                    })
                    .collect::<Vec<_>>(),
            ),
            Value::Queue(n) => match pick(&self.queues, *n) {
                Some(at) => Shareable::from(self.queues[at].queue.clone()),
                None => Shareable::from(i64::from(*n)),
            },
            Value::SendEnd(n) => match pick(&self.channels, *n) {
                Some(at) => Shareable::from(self.channels[at].send.clone()),
                None => Shareable::from(i64::from(*n)),
            },
            Value::RecvEnd(n) => match pick(&self.channels, *n) {
                Some(at) => Shareable::from(self.channels[at].recv.clone()),
                None => Shareable::from(i64::from(*n)),
            },
            Value::Buffer(len) => {
                Shareable::from(SharedBuffer::read_only(vec![*len; usize::from(*len % 8)]))
            }
        }
    }

    /// Runs operations until an `End` or the end of the input.
    fn block(&mut self, ops: &mut std::slice::Iter<'_, Op>, depth: usize) {
        while let Some(op) = ops.next() {
            if let Op::End = op {
                return;
            }
            self.apply(op, ops, depth);
            self.check();
        }
    }

    fn apply(&mut self, op: &Op, ops: &mut std::slice::Iter<'_, Op>, depth: usize) {
        match op {
            Op::CreateQueue { maxsize, policy } => {
                if self.queues.len() < MAX_QUEUES {
                    self.create_queue(usize::from(*maxsize % 5), *policy);
                }
            }
            Op::Put { queue, value, mode } => {
                if let Some(at) = pick(&self.queues, *queue) {
                    let value = self.value(value);
                    self.put(at, value, *mode);
                }
            }
            Op::Get { queue, mode } => {
                if let Some(at) = pick(&self.queues, *queue) {
                    self.get(at, *mode);
                }
            }
            Op::CloseQueue(queue) => {
                if let Some(at) = pick(&self.queues, *queue) {
                    let model = &mut self.queues[at];
                    let first = model.queue.close();
                    assert_eq!(first, !model.fifo.closed, "close() on a queue");
                    model.fifo.closed = true;
                }
            }
            Op::CreateChannel(policy) => {
                if self.channels.len() < MAX_CHANNELS {
                    self.create_channel(*policy);
                }
            }
            Op::Send {
                channel,
                value,
                mode,
            } => {
                if let Some(at) = pick(&self.channels, *channel) {
                    let value = self.value(value);
                    self.send(at, value, *mode);
                }
            }
            Op::Recv { channel, mode } => {
                if let Some(at) = pick(&self.channels, *channel) {
                    self.recv(at, *mode);
                }
            }
            Op::CloseSend(channel) => {
                if let Some(at) = pick(&self.channels, *channel) {
                    let model = &mut self.channels[at];
                    assert_eq!(model.send.close(), !model.fifo.closed, "SendChannel::close");
                    model.fifo.closed = true;
                }
            }
            Op::CloseRecv(channel) => {
                if let Some(at) = pick(&self.channels, *channel) {
                    let model = &mut self.channels[at];
                    assert_eq!(model.recv.close(), !model.fifo.closed, "RecvChannel::close");
                    // The receiving side's close discards what was not received.
                    model.fifo.closed = true;
                    model.fifo.items.clear();
                }
            }
            Op::ReleaseSend(channel) | Op::ReleaseRecv(channel) => {
                if let Some(at) = pick(&self.channels, *channel) {
                    let current = self.current();
                    let model = &mut self.channels[at];
                    let (released, end) = if let Op::ReleaseSend(_) = op {
                        (model.send.release(), SEND)
                    } else {
                        (model.recv.release(), RECV)
                    };
                    assert_eq!(
                        released,
                        model.release(end, current),
                        "release of end {end}"
                    );
                }
            }
            Op::CreateInterpreter => {
                if self.interpreters.len() < MAX_INTERPRETERS {
                    let interp = interpreters::create();
                    assert!(!interp.is_main() && !interp.is_running() && !interp.is_closed());
                    assert!(
                        self.interpreters.iter().all(|other| other.id < interp.id()),
                        "interpreter IDs must grow"
                    );
                    self.interpreters.push(ModelInterpreter {
                        id: interp.id(),
                        handle: Some(interp),
                        closed: false,
                    });
                }
            }
            Op::Enter { interpreter, panic } => self.enter(*interpreter, *panic, ops, depth),
            Op::End => unreachable!("handled by block"),
            Op::CloseInterpreter(interpreter) => {
                if let Some(at) = pick(&self.interpreters, *interpreter) {
                    self.close_interpreter(at);
                }
            }
            Op::DropInterpreter(interpreter) => {
                if let Some(at) = pick(&self.interpreters, *interpreter) {
                    let model = &mut self.interpreters[at];
                    let id = model.id;
                    if model.handle.take().is_some() && !model.closed && !self.running(id) {
                        // That was the last handle: dropping it closed the interpreter.
                        self.closed(at);
                    }
                }
            }
        }
    }

    fn create_queue(&mut self, maxsize: usize, policy: Option<Policy>) {
        let queue = match policy {
            Some(policy) => interpreters::create_queue_with(maxsize, policy.into()),
            None => interpreters::create_queue(maxsize),
        };
        let policy = policy.map_or(UnboundPolicy::default(), UnboundPolicy::from);
        assert_eq!(queue.maxsize(), maxsize);
        assert_eq!(queue.unbound_policy(), policy);
        assert!(
            self.queues.iter().all(|other| other.queue != queue),
            "queue IDs must be unique"
        );
        self.queues.push(ModelQueue {
            queue,
            policy,
            fifo: ModelFifo {
                maxsize,
                ..ModelFifo::default()
            },
        });
    }

    fn put(&mut self, at: usize, value: Shareable, mode: PutMode) {
        let owner = self.current();
        let fifo = &self.queues[at].fifo;
        let (closed, full) = (fifo.closed, fifo.full());
        let policy = match mode {
            PutMode::WithPolicy { policy, .. } => policy.into(),
            _ => self.queues[at].policy,
        };
        // A put that waits for room only runs when there is room or the queue is closed.
        let blocks = full && !closed;
        let mut waited = Duration::ZERO;
        let expected_value = value.clone();
        let queue = self.queues[at].queue.clone();
        let result = match mode {
            PutMode::Blocking if !blocks => queue.put(value),
            PutMode::Blocking | PutMode::Nowait => queue.put_nowait(value),
            PutMode::Timeout(timeout) => {
                waited = if blocks {
                    self.wait(timeout)
                } else {
                    timeout.duration()
                };
                timed(waited, blocks, || queue.put_timeout(value, waited))
            }
            PutMode::WithPolicy {
                timeout: None,
                policy,
            } if !blocks => queue.put_with_policy(value, policy.into()),
            PutMode::WithPolicy {
                timeout: None,
                policy,
            } => queue.put_with_policy_nowait(value, policy.into()),
            PutMode::WithPolicy {
                timeout: Some(timeout),
                policy,
            } => {
                if blocks {
                    waited = self.wait(timeout);
                }
                timed(waited, blocks, || {
                    queue.put_with_policy_timeout(value, policy.into(), waited)
                })
            }
        };
        let timed_call = matches!(
            mode,
            PutMode::Timeout(_)
                | PutMode::WithPolicy {
                    timeout: Some(_),
                    ..
                }
        );
        let expected = if closed {
            Err(SendError::Closed)
        } else if full && timed_call {
            Err(SendError::Timeout)
        } else if full {
            Err(SendError::Full)
        } else {
            Ok(())
        };
        assert_eq!(
            result, expected,
            "put {mode:?} (closed {closed}, full {full})"
        );
        if result.is_ok() {
            self.queues[at].fifo.items.push_back(ModelItem {
                payload: Payload::Value(expected_value),
                owner,
                policy,
            });
        }
    }

    fn get(&mut self, at: usize, mode: GetMode) {
        let fifo = &self.queues[at].fifo;
        let blocks = fifo.items.is_empty() && !fifo.closed;
        let queue = self.queues[at].queue.clone();
        let result = match mode {
            GetMode::Blocking if !blocks => queue.get(),
            GetMode::Blocking | GetMode::Nowait => queue.get_nowait(),
            GetMode::Timeout(timeout) => {
                let waited = if blocks {
                    self.wait(timeout)
                } else {
                    timeout.duration()
                };
                timed(waited, blocks, || queue.get_timeout(waited))
            }
        };
        let expected = match self.queues[at].fifo.take() {
            Taken::Value(value) => Ok(value),
            Taken::Destroyed => Err(RecvError::ItemInterpreterDestroyed),
            Taken::Empty => Err(empty(mode)),
            Taken::Closed => Err(RecvError::Closed),
        };
        assert_eq!(result, expected, "get {mode:?}");
    }

    fn create_channel(&mut self, policy: Option<Policy>) {
        let (recv, send) = match policy {
            Some(policy) => interpreters::create_channel_with(policy.into()),
            None => interpreters::create_channel(),
        };
        assert_eq!(recv.id(), send.id());
        assert!(!recv.is_closed() && recv.is_empty());
        assert!(
            self.channels
                .iter()
                .all(|other| other.recv.id() != recv.id()),
            "channel IDs must be unique"
        );
        self.channels.push(ModelChannel {
            recv,
            send,
            policy: policy.map_or(UnboundPolicy::default(), UnboundPolicy::from),
            fifo: ModelFifo::default(),
            ends: Default::default(),
        });
    }

    fn send(&mut self, at: usize, value: Shareable, mode: SendMode) {
        let current = self.current();
        let current_closed = self.is_closed(current);
        let model = &self.channels[at];
        let released = model.ends[SEND].released.contains(&current);
        let closed = model.fifo.closed;
        let send = model.send.clone();
        let mut expected_value = value.clone();
        let result = match mode {
            // Nobody receives on this thread: a blocking send must fail at once.
            SendMode::Blocking if released || closed => send.send(value),
            SendMode::Blocking | SendMode::Nowait => send.send_nowait(value),
            SendMode::Timeout(timeout) => {
                let blocks = !released && !closed;
                let waited = if blocks {
                    self.wait(timeout)
                } else {
                    timeout.duration()
                };
                timed(waited, blocks, || send.send_timeout(value, waited))
            }
            SendMode::BufferNowait => {
                drop(value);
                let buffer = SharedBuffer::writable(2);
                expected_value = Shareable::from(buffer.clone());
                send.send_buffer_nowait(&buffer)
            }
            SendMode::Buffered => send.send_buffered(value),
        };
        let model = &mut self.channels[at];
        let expected = if let Err(closed) = model.associate(SEND, current, current_closed) {
            Err(if closed {
                SendError::Closed
            } else {
                SendError::Released
            })
        } else if closed {
            Err(SendError::Closed)
        } else {
            match mode {
                // Not received in time: withdrawn.
                SendMode::Timeout(_) => Err(SendError::Timeout),
                // Nobody is blocked in `recv` on this single thread.
                SendMode::Blocking | SendMode::Nowait | SendMode::BufferNowait => {
                    Err(SendError::NotReceiving)
                }
                SendMode::Buffered => Ok(()),
            }
        };
        assert_eq!(result, expected, "send {mode:?}");
        if result.is_ok() {
            model.fifo.items.push_back(ModelItem {
                payload: Payload::Value(expected_value),
                owner: current,
                policy: model.policy,
            });
        }
    }

    fn recv(&mut self, at: usize, mode: GetMode) {
        let current = self.current();
        let current_closed = self.is_closed(current);
        let model = &self.channels[at];
        let released = model.ends[RECV].released.contains(&current);
        let blocks = !released && model.fifo.items.is_empty() && !model.fifo.closed;
        let recv = model.recv.clone();
        let result = match mode {
            GetMode::Blocking if !blocks => recv.recv(),
            GetMode::Blocking | GetMode::Nowait => recv.recv_nowait(),
            GetMode::Timeout(timeout) => {
                let waited = if blocks {
                    self.wait(timeout)
                } else {
                    timeout.duration()
                };
                timed(waited, blocks, || recv.recv_timeout(waited))
            }
        };
        let model = &mut self.channels[at];
        let expected = if let Err(closed) = model.associate(RECV, current, current_closed) {
            Err(if closed {
                RecvError::Closed
            } else {
                RecvError::Released
            })
        } else {
            match model.fifo.take() {
                Taken::Value(value) => Ok(value),
                Taken::Destroyed => Err(RecvError::ItemInterpreterDestroyed),
                Taken::Closed => Err(RecvError::Closed),
                // The same outcome as a queue's.
                Taken::Empty => Err(empty(mode)),
            }
        };
        assert_eq!(result, expected, "recv {mode:?}");
    }

    fn enter(
        &mut self,
        interpreter: u8,
        panic: bool,
        ops: &mut std::slice::Iter<'_, Op>,
        depth: usize,
    ) {
        let Some(at) = pick(&self.interpreters, interpreter) else {
            return self.block(ops, depth);
        };
        let model = &self.interpreters[at];
        let id = model.id;
        let Some(handle) = model.handle.clone() else {
            return self.block(ops, depth);
        };
        if model.closed || self.running(id) || depth >= MAX_DEPTH {
            // exec fails at once (or the scope is too deep): the operations of the scope
            // run in the enclosing one.
            if depth < MAX_DEPTH {
                let result = handle.exec(|| unreachable!("exec of a closed or running one"));
                match result {
                    Err(InterpreterError::NotFound { id: got }) if model.closed => {
                        assert_eq!(got, id);
                    }
                    Err(InterpreterError::Running { id: got }) if !model.closed => {
                        assert_eq!(got, id);
                    }
                    other => panic!("exec of interpreter {id}: {other:?}"),
                }
            }
            drop(handle);
            return self.block(ops, depth);
        }
        self.stack.push(id);
        let result = handle.exec(|| {
            assert_eq!(interpreters::get_current().id(), id, "get_current in exec");
            self.block(ops, depth + 1);
            if panic {
                panic::panic_any(PlannedPanic);
            }
        });
        self.stack.pop();
        match result {
            Ok(()) => assert!(!panic, "exec swallowed a panic"),
            Err(InterpreterError::Failed(failed)) => {
                assert!(panic && failed.is_panic(), "exec failed: {failed}");
                assert_eq!(failed.interpreter_id(), id);
            }
            Err(other) => panic!("exec of interpreter {id}: {other}"),
        }
        drop(handle);
        let model = &self.interpreters[at];
        if model.handle.is_none() && !model.closed && !self.running(id) {
            // The harness dropped its handle inside the scope: `exec`'s was the last.
            self.closed(at);
        }
    }

    fn close_interpreter(&mut self, at: usize) {
        let model = &self.interpreters[at];
        let id = model.id;
        let Some(handle) = &model.handle else {
            return;
        };
        let result = handle.close();
        match result {
            Err(InterpreterError::Current { id: got }) if self.current() == id => {
                assert_eq!(got, id)
            }
            Err(InterpreterError::NotFound { id: got }) if model.closed => assert_eq!(got, id),
            Err(InterpreterError::Running { id: got }) if self.running(id) => {
                assert_eq!(got, id)
            }
            Ok(()) if !model.closed && !self.running(id) => self.closed(at),
            other => panic!(
                "close of interpreter {id} (closed {}, running {}): {other:?}",
                model.closed,
                self.running(id)
            ),
        }
    }

    /// The interpreter was closed: its items follow their policies.
    fn closed(&mut self, at: usize) {
        let model = &mut self.interpreters[at];
        model.closed = true;
        let id = model.id;
        for queue in &mut self.queues {
            queue.fifo.unbind(id);
        }
        for channel in &mut self.channels {
            channel.fifo.unbind(id);
            // A closed interpreter uses neither end any more (the channel stays open), and
            // its releases are forgotten.
            for end in &mut channel.ends {
                end.using.retain(|&using| using != id);
                end.released.retain(|&released| released != id);
            }
        }
    }

    /// Compares everything observable without taking items.
    fn check(&self) {
        for (at, model) in self.queues.iter().enumerate() {
            let queue = &model.queue;
            let fifo = &model.fifo;
            assert_eq!(queue.len(), fifo.items.len(), "len of queue {at}");
            assert_eq!(
                queue.is_empty(),
                fifo.items.is_empty(),
                "is_empty of queue {at}"
            );
            assert_eq!(queue.is_full(), fifo.full(), "is_full of queue {at}");
            assert_eq!(queue.is_closed(), fifo.closed, "is_closed of queue {at}");
        }
        for (at, model) in self.channels.iter().enumerate() {
            assert_eq!(
                model.recv.len(),
                model.fifo.items.len(),
                "len of channel {at}"
            );
            assert_eq!(model.recv.is_empty(), model.fifo.items.is_empty());
            assert_eq!(model.recv.is_closed(), model.fifo.closed, "channel {at}");
            assert_eq!(model.send.is_closed(), model.fifo.closed, "channel {at}");
            assert_eq!(model.send.interpreters(), model.ends[SEND].using);
            assert_eq!(model.recv.interpreters(), model.ends[RECV].using);
        }
        assert_eq!(interpreters::get_current().id(), self.current());
        for model in &self.interpreters {
            if let Some(handle) = &model.handle {
                assert_eq!(handle.is_closed(), model.closed, "interpreter {}", model.id);
                assert_eq!(handle.is_running(), self.running(model.id));
            }
        }
        let live: BTreeSet<u64> = interpreters::list_all()
            .iter()
            .map(Interpreter::id)
            .collect();
        let expected: BTreeSet<u64> = std::iter::once(0)
            .chain(
                self.interpreters
                    .iter()
                    .filter(|model| !model.closed)
                    .map(|model| model.id),
            )
            .collect();
        assert_eq!(live, expected, "list_all");
    }

    /// Drops the interpreters (applying their items' policies), then takes every item left,
    /// comparing each with the model.
    fn finish(mut self) {
        for at in 0..self.interpreters.len() {
            let model = &mut self.interpreters[at];
            if model.handle.take().is_some() && !model.closed {
                self.closed(at);
            }
        }
        self.check();
        for at in 0..self.queues.len() {
            while !self.queues[at].fifo.items.is_empty() {
                self.get(at, GetMode::Nowait);
            }
            self.get(at, GetMode::Nowait);
        }
        for at in 0..self.channels.len() {
            if !self.channels[at].ends[RECV].released.contains(&0) {
                while !self.channels[at].fifo.items.is_empty() {
                    self.recv(at, GetMode::Nowait);
                }
            }
            self.channels[at].recv.close();
        }
        assert_eq!(
            interpreters::list_all().len(),
            1,
            "an interpreter outlived its handles"
        );
    }
}

/// What a get or receive that found nothing reports: `Timeout` for a timed call, `Empty`
/// for the others (queues and channels alike).
fn empty(mode: GetMode) -> RecvError {
    match mode {
        GetMode::Timeout(_) => RecvError::Timeout,
        GetMode::Blocking | GetMode::Nowait => RecvError::Empty,
    }
}

/// Runs a timed operation; when the model says it runs out, it must have waited its time.
fn timed<T>(wait: Duration, runs_out: bool, operation: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let result = operation();
    if runs_out {
        assert!(start.elapsed() >= wait, "a timed wait returned early");
    }
    result
}

fuzz_target!(|input: Input| {
    init();
    let mut harness = Harness {
        queues: Vec::new(),
        channels: Vec::new(),
        interpreters: Vec::new(),
        stack: Vec::new(),
        wait_budget: WAIT_BUDGET,
    };
    let ops = &input.ops[..input.ops.len().min(MAX_OPS)];
    let mut ops = ops.iter();
    // Operations after an unmatched `End` run at the top level too.
    while ops.len() > 0 {
        harness.block(&mut ops, 0);
    }
    harness.finish();
});
