//! PEP 554's "using a channel to communicate": twenty worker threads, each running a request
//! loop in an interpreter of its own, fed through one channel and answering through another.
//!
//! ```text
//! cargo run -p exec-context --example interp_channels
//! ```
//!
//! The code run in an interpreter finds both channel ends in its `__main__`, as the Python
//! code finds its globals. A request whose handling fails is answered all the same: the
//! failure is captured as a shareable value and sent back like a result. Each worker also
//! keeps a context variable of its own, which neither main nor the other workers see.

use std::collections::BTreeMap;
use std::fmt;

use contextvars::ContextVar;
use exec_context::interpreters::{
    self, Interpreter, RecvChannel, RecvError, SendChannel, Share, Shareable,
};

const WORKERS: usize = 20;
const REQUESTS: u64 = 500;

/// Which worker handles the request: set once per worker, read wherever it is needed, like
/// a logging filter would.
static WORKER: ContextVar<u64> = ContextVar::new("worker");

/// A request: `(id, dividend, divisor)`.
type Request = (u64, u64, u64);

/// What `handle_request` raises.
#[derive(Debug)]
enum RequestError {
    DivisionByZero { dividend: u64 },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::DivisionByZero { dividend } => write!(f, "{dividend} / 0"),
        }
    }
}

impl std::error::Error for RequestError {}

/// `def handle_request(req)`: the quotient, or an error for a zero divisor.
fn handle_request((_, dividend, divisor): Request) -> Result<u64, RequestError> {
    dividend
        .checked_div(divisor)
        .ok_or(RequestError::DivisionByZero { dividend })
}

/// `def capture_exception(exc)`: the failure as a value that can cross to main — its kind
/// and message (an error value itself is not shareable).
fn capture_exception(error: &RequestError) -> Shareable {
    let kind = match error {
        RequestError::DivisionByZero { .. } => "ZeroDivisionError",
    };
    (kind, error.to_string()).into()
}

/// A name from the current interpreter's `__main__`.
fn main_attr<T: Share>(name: &str) -> T {
    interpreters::get_current()
        .get_main_attr(name)
        .expect("the interpreter is open")
        .unwrap_or_else(|| panic!("`{name}` was not prepared"))
        .extract()
        .unwrap_or_else(|error| panic!("`{name}`: {error}"))
}

/// The code each worker runs in its interpreter.
fn request_loop() {
    let tasks: RecvChannel = main_attr("tasks");
    let results: SendChannel = main_attr("results");
    // A fresh interpreter starts from an empty context: main's value is not here.
    assert_eq!(WORKER.get(), None);
    WORKER.set(interpreters::get_current().id());

    loop {
        let req = match tasks.recv() {
            Ok(req) => req,
            Err(RecvError::Closed) => break, // the channel is closed: no more requests
            Err(error) => panic!("receiving a request: {error}"),
        };
        let req: Request = req.extract().expect("requests are 3-tuples of integers");
        let res = match handle_request(req) {
            Ok(quotient) => Shareable::from(quotient),
            Err(error) => capture_exception(&error),
        };
        let worker = WORKER
            .get()
            .expect("set above, in this interpreter's context");
        // Left in the channel for main, which reads the results once every worker is done:
        // nobody is receiving now, so PEP 554's `send_nowait` would refuse it.
        results
            .send_buffered((req.0, worker, res))
            .expect("the results channel stays open");
    }
}

/// `def worker()`. The interpreter is handed back to main rather than dropped here:
/// dropping the last handle closes it, and what an interpreter sent and nobody received yet
/// turns into `UNBOUND` when it closes (`create_channel`'s policy, `UnboundPolicy::Replace`)
/// — main would find placeholders instead of results.
fn worker(tasks: RecvChannel, results: SendChannel) -> Interpreter {
    let interp = interpreters::create();
    interp
        .set_main_attrs([("tasks", tasks.into()), ("results", results.into())])
        .expect("a new interpreter takes names");
    interp
        .exec(request_loop)
        .unwrap_or_else(|error| panic!("worker {}: {error}", interp.id()));
    interp
}

fn main() {
    let (tasks_recv, tasks) = interpreters::create_channel();
    let (results, results_send) = interpreters::create_channel();
    WORKER.set(0); // main's own value, which no worker sees

    let threads: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (tasks_recv, results_send) = (tasks_recv.clone(), results_send.clone());
            std::thread::spawn(move || worker(tasks_recv, results_send))
        })
        .collect();

    // Every seventh request divides by zero.
    let requests: Vec<Request> = (0..REQUESTS).map(|id| (id, id * 1000, id % 7)).collect();
    for &req in &requests {
        tasks.send(req).expect("a worker receives it"); // returns once a worker has it
    }
    tasks.close();

    let interps: Vec<Interpreter> = threads
        .into_iter()
        .map(|thread| thread.join().expect("a worker thread does not panic"))
        .collect();

    // Drain the results: all are in, since every worker has returned.
    let mut answers: BTreeMap<u64, (u64, Shareable)> = BTreeMap::new();
    loop {
        let item = match results.recv_nowait() {
            Ok(item) => item,
            Err(RecvError::Empty) => break, // all read
            Err(error) => panic!("reading a result: {error}"),
        };
        let (id, worker, res): (u64, u64, Shareable) = item.extract().expect("a result triple");
        let previous = answers.insert(id, (worker, res));
        assert!(previous.is_none(), "request {id} was answered twice");
    }

    // Every request got exactly one answer, the right one, from one of the workers.
    let worker_ids: Vec<u64> = interps.iter().map(Interpreter::id).collect();
    assert_eq!(answers.len(), requests.len(), "a request went unanswered");
    let mut failures = 0;
    let mut per_worker: BTreeMap<u64, usize> = BTreeMap::new();
    for &(id, dividend, divisor) in &requests {
        let (worker, res) = &answers[&id];
        assert!(
            worker_ids.contains(worker),
            "request {id}: unknown worker {worker}"
        );
        *per_worker.entry(*worker).or_default() += 1;
        match dividend.checked_div(divisor) {
            Some(quotient) => assert_eq!(res.clone().extract::<u64>(), Ok(quotient)),
            None => {
                let (kind, message): (String, String) =
                    res.clone().extract().expect("a captured failure");
                assert_eq!(kind, "ZeroDivisionError");
                assert_eq!(message, format!("{dividend} / 0"));
                failures += 1;
            }
        }
    }
    assert_eq!(WORKER.get(), Some(0), "a worker's value leaked into main");

    for interp in &interps {
        interp
            .close()
            .expect("the worker is done with its interpreter");
    }
    let busiest = per_worker.values().max().copied().unwrap_or(0);
    println!(
        "{} requests answered by {} interpreters on {WORKERS} threads \
         ({} answers, {failures} of them captured failures; busiest worker: {busiest})",
        requests.len(),
        per_worker.len(),
        answers.len(),
    );
}

/// `cargo test --examples` runs the example too.
#[test]
fn runs() {
    main();
}
