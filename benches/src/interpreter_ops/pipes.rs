//! Queues and channels behind one trait, [`Pipe`], and the two routines that drive any of
//! them across two threads: [`Stream`] (one-way throughput) and [`RoundTrip`] (ping-pong).
//!
//! Every contender moves the same `u64`s through the same loops; only the `Pipe` differs.
//! Ours carries them as [`Shareable::Int`](exec_context::interpreters::Shareable::Int), as
//! any user of the API must: converting in and out is part of the price of a message.
//!
//! The ends are made once per routine and reused by every run, so every contender is timed
//! in its steady state (our unbounded queue keeps the capacity its deque grew to, the
//! peers' lists keep their cached blocks). Each run starts the second thread afresh,
//! outside the clock: both threads meet at a barrier, then the clock starts.

use std::hint::black_box;
use std::sync::{Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver as CbReceiver, Sender as CbSender};
use exec_context::interpreters::{self, Queue, RecvChannel, SendChannel};

use crate::clock::thread_cpu_time;
use crate::harness::Routine;

/// One contender's queue or channel: how to open one, send a `u64`, receive one. Sends and
/// receives block as the contender's own API does (for room, or until received).
pub trait Pipe {
    /// The sending end.
    type Tx: Send;
    /// The receiving end.
    type Rx: Send;

    /// A new, empty pipe.
    fn open(&self) -> (Self::Tx, Self::Rx);

    /// Sends `value`.
    fn send(tx: &Self::Tx, value: u64);

    /// Receives the next value.
    fn recv(rx: &Self::Rx) -> u64;
}

/// Ours: a PEP 734 [`Queue`] of `maxsize` items (0: unbounded), `put` and `get`.
#[derive(Clone, Copy, Debug)]
pub struct OurQueue {
    /// The queue's `maxsize`.
    pub maxsize: usize,
}

impl Pipe for OurQueue {
    type Tx = Queue;
    type Rx = Queue;

    fn open(&self) -> (Queue, Queue) {
        let queue = interpreters::create_queue(self.maxsize);
        (queue.clone(), queue)
    }

    #[inline]
    fn send(tx: &Queue, value: u64) {
        tx.put(value)
            .expect("the benchmark never closes its queues");
    }

    #[inline]
    fn recv(rx: &Queue) -> u64 {
        let item = rx.get().expect("the benchmark never closes its queues");
        item.extract::<u64>().expect("only u64s are sent")
    }
}

/// Ours: a PEP 554 channel, `send_buffered` (leaves the item without waiting for the
/// receiver; what `send_nowait` did before 0.2, which now needs a receiver waiting) and
/// `recv`.
#[derive(Clone, Copy, Debug)]
pub struct OurChannelBuffered;

impl Pipe for OurChannelBuffered {
    type Tx = SendChannel;
    type Rx = RecvChannel;

    fn open(&self) -> (SendChannel, RecvChannel) {
        let (recv, send) = interpreters::create_channel();
        (send, recv)
    }

    #[inline]
    fn send(tx: &SendChannel, value: u64) {
        tx.send_buffered(value)
            .expect("the benchmark never closes its channels");
    }

    #[inline]
    fn recv(rx: &RecvChannel) -> u64 {
        our_channel_recv(rx)
    }
}

/// Ours: a PEP 554 channel, `send` (returns once the item was received) and `recv`.
#[derive(Clone, Copy, Debug)]
pub struct OurChannelSend;

impl Pipe for OurChannelSend {
    type Tx = SendChannel;
    type Rx = RecvChannel;

    fn open(&self) -> (SendChannel, RecvChannel) {
        OurChannelBuffered.open()
    }

    #[inline]
    fn send(tx: &SendChannel, value: u64) {
        tx.send(value)
            .expect("the benchmark never closes its channels");
    }

    #[inline]
    fn recv(rx: &RecvChannel) -> u64 {
        our_channel_recv(rx)
    }
}

#[inline]
fn our_channel_recv(rx: &RecvChannel) -> u64 {
    let item = rx.recv().expect("the benchmark never closes its channels");
    item.extract::<u64>().expect("only u64s are sent")
}

/// `std::sync::mpsc::channel()`: unbounded.
#[derive(Clone, Copy, Debug)]
pub struct MpscChannel;

/// `std::sync::mpsc::sync_channel(bound)`: bounded; `bound` 0 is a rendezvous.
#[derive(Clone, Copy, Debug)]
pub struct MpscSyncChannel {
    /// Items the channel holds.
    pub bound: usize,
}

/// `crossbeam_channel::unbounded()`.
#[derive(Clone, Copy, Debug)]
pub struct CrossbeamUnbounded;

/// `crossbeam_channel::bounded(capacity)`; capacity 0 is a rendezvous.
#[derive(Clone, Copy, Debug)]
pub struct CrossbeamBounded {
    /// Items the channel holds.
    pub capacity: usize,
}

/// A peer's channel as a [`Pipe`]: `|this| open` makes the ends; `send` and `recv` are the
/// channel's own blocking calls.
macro_rules! peer_pipe {
    ($($name:ident: $tx:ty, $rx:ty, |$this:ident| $open:expr;)*) => {$(
        impl Pipe for $name {
            type Tx = $tx;
            type Rx = $rx;

            fn open(&self) -> (Self::Tx, Self::Rx) {
                let $this = self;
                $open
            }

            #[inline]
            fn send(tx: &Self::Tx, value: u64) {
                tx.send(value).expect("the receiver outlives the run");
            }

            #[inline]
            fn recv(rx: &Self::Rx) -> u64 {
                rx.recv().expect("the sender outlives the run")
            }
        }
    )*};
}

peer_pipe! {
    MpscChannel: mpsc::Sender<u64>, mpsc::Receiver<u64>, |_this| mpsc::channel();
    MpscSyncChannel: mpsc::SyncSender<u64>, mpsc::Receiver<u64>,
        |this| mpsc::sync_channel(this.bound);
    CrossbeamUnbounded: CbSender<u64>, CbReceiver<u64>, |_this| crossbeam_channel::unbounded();
    CrossbeamBounded: CbSender<u64>, CbReceiver<u64>,
        |this| crossbeam_channel::bounded(this.capacity);
}

/// Where a thread's timed part began, and the CPU time it took.
struct Span {
    began: Instant,
    cpu: Duration,
}

/// Runs `body` on the calling thread once `barrier` lets both threads go, and clocks it.
fn timed<R>(barrier: &Barrier, body: impl FnOnce() -> R) -> (R, Span, Instant) {
    barrier.wait();
    let began = Instant::now();
    let cpu = thread_cpu_time();
    let result = body();
    let spent = thread_cpu_time().saturating_sub(cpu);
    (result, Span { began, cpu: spent }, Instant::now())
}

/// One-way throughput: a producer thread sends `0..calls`, the timing thread receives them.
/// A run takes the wall-clock time from the first thread's start to the last receive; the
/// CPU time of both threads is kept for [`Routine::last_cpu_time`].
pub struct Stream<P: Pipe> {
    ends: Option<(P::Tx, P::Rx)>,
    cpu: Duration,
}

impl<P: Pipe> Stream<P> {
    /// A stream through a new pipe of `pipe`'s kind.
    pub fn new(pipe: &P) -> Self {
        Self {
            ends: Some(pipe.open()),
            cpu: Duration::ZERO,
        }
    }
}

impl<P: Pipe> Routine for Stream<P> {
    fn run(&mut self, calls: u64) -> Duration {
        let (tx, rx) = self
            .ends
            .take()
            .expect("the ends come back after every run");
        let barrier = &Barrier::new(2);
        let (tx, producer, (checksum, consumer, ended)) = thread::scope(|scope| {
            // The sending end moves to the producer and comes back with its clock.
            let producer = scope.spawn(move || {
                let ((), span, _) = timed(barrier, || {
                    for value in 0..calls {
                        P::send(&tx, value);
                    }
                });
                (tx, span)
            });
            let consumed = timed(barrier, || {
                let mut checksum = 0u64;
                for _ in 0..calls {
                    checksum = checksum.wrapping_add(P::recv(&rx));
                }
                checksum
            });
            let (tx, producer) = producer.join().expect("the producer does not panic");
            (tx, producer, consumed)
        });
        debug_assert_eq!(checksum, (0..calls).fold(0u64, u64::wrapping_add));
        black_box(checksum);
        self.ends = Some((tx, rx));
        self.cpu = producer.cpu + consumer.cpu;
        ended.saturating_duration_since(producer.began.min(consumer.began))
    }

    fn ops_per_call(&self) -> u64 {
        1
    }

    fn last_cpu_time(&self) -> Option<Duration> {
        Some(self.cpu)
    }
}

/// Ping-pong: the timing thread sends a value through one pipe, an echo thread sends it
/// back through another, `calls` times; wall-clock time per round trip.
pub struct RoundTrip<P: Pipe> {
    there: Option<(P::Tx, P::Rx)>,
    back: Option<(P::Tx, P::Rx)>,
    cpu: Duration,
}

impl<P: Pipe> RoundTrip<P> {
    /// A round trip through two new pipes of `pipe`'s kind.
    pub fn new(pipe: &P) -> Self {
        Self {
            there: Some(pipe.open()),
            back: Some(pipe.open()),
            cpu: Duration::ZERO,
        }
    }
}

impl<P: Pipe> Routine for RoundTrip<P> {
    fn run(&mut self, calls: u64) -> Duration {
        let (there_tx, there_rx) = self
            .there
            .take()
            .expect("the ends come back after every run");
        let (back_tx, back_rx) = self
            .back
            .take()
            .expect("the ends come back after every run");
        let barrier = &Barrier::new(2);
        let ((there_rx, back_tx, echo), (checksum, driver, ended)) = thread::scope(|scope| {
            // The echo thread's ends move to it and come back with its clock.
            let echo = scope.spawn(move || {
                let ((), span, _) = timed(barrier, || {
                    for _ in 0..calls {
                        let value = P::recv(&there_rx);
                        P::send(&back_tx, value + 1);
                    }
                });
                (there_rx, back_tx, span)
            });
            let driven = timed(barrier, || {
                let mut checksum = 0u64;
                for value in 0..calls {
                    P::send(&there_tx, value);
                    checksum = checksum.wrapping_add(P::recv(&back_rx));
                }
                checksum
            });
            (echo.join().expect("the echo thread does not panic"), driven)
        });
        black_box(checksum);
        self.there = Some((there_tx, there_rx));
        self.back = Some((back_tx, back_rx));
        self.cpu = echo.cpu + driver.cpu;
        ended.saturating_duration_since(driver.began)
    }

    fn ops_per_call(&self) -> u64 {
        1
    }

    fn last_cpu_time(&self) -> Option<Duration> {
        Some(self.cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moves_every_value<P: Pipe>(pipe: &P) {
        let mut stream = Stream::new(pipe);
        for calls in [1, 100, 1000] {
            stream.run(calls);
            assert!(stream.last_cpu_time().is_some());
        }
        let mut round_trip = RoundTrip::new(pipe);
        round_trip.run(50);
        round_trip.run(1);
    }

    #[test]
    fn every_pipe_streams_and_echoes() {
        moves_every_value(&OurQueue { maxsize: 0 });
        moves_every_value(&OurQueue { maxsize: 4 });
        moves_every_value(&OurChannelBuffered);
        moves_every_value(&OurChannelSend);
        moves_every_value(&MpscChannel);
        moves_every_value(&MpscSyncChannel { bound: 0 });
        moves_every_value(&CrossbeamUnbounded);
        moves_every_value(&CrossbeamBounded { capacity: 0 });
    }
}
