//! PEP 734's synchronisation by token passing: interpreters share no locks, so a queue holds
//! one token, and only whoever holds it may touch the shared buffer.
//!
//! ```text
//! cargo run -p exec-context --example interp_token
//! ```
//!
//! Each worker, in an interpreter of its own, loops `token = control.get(); edit the data;
//! control.put(token)` for a fixed number of edits, then stops. Main puts the token in,
//! then takes it whenever it can to check the data, and stops once every edit is done — so
//! the run ends after a known amount of work, whatever the scheduling.
//!
//! An edit writes the edit count, yields the thread, and writes the count again: were two
//! parties in the buffer at once, main would find the two copies different. Every edit and
//! every check also claims the whole buffer, which fails outright if anyone else holds a
//! claim on it.

use exec_context::interpreters::{self, Interpreter, Queue, Share, Shareable, SharedBuffer};

const WORKERS: usize = 8;
const EDITS_PER_WORKER: u8 = 100;
const TOKEN: &str = "football";

/// The shared buffer: the number of edits, at two offsets; how many times an edit was made
/// by another worker than the previous one; that last editor's index + 1 (0: nobody yet);
/// then each worker's own number of edits.
const TOTAL: usize = 0;
const TOTAL_AGAIN: usize = 8;
const HANDOFFS: usize = 16;
const LAST_EDITOR: usize = 24;
const PER_WORKER: usize = 25;
const DATA_LEN: usize = PER_WORKER + WORKERS;

fn read_u64(data: &SharedBuffer, offset: usize) -> u64 {
    let mut bytes = [0; 8];
    data.read_into(offset, &mut bytes).expect("in bounds");
    u64::from_le_bytes(bytes)
}

/// `edit_data(data)`: one edit by worker `index`. Only the token holder calls it.
fn edit_data(data: &SharedBuffer, index: usize) {
    let mut all = data
        .claim(0..data.len())
        .expect("the token holder is alone in the buffer");
    let total = read_u64(data, TOTAL) + 1;
    all.write(TOTAL, &total.to_le_bytes()).expect("in bounds");
    std::thread::yield_now(); // a window for anyone who entered without the token
    all.write(TOTAL_AGAIN, &total.to_le_bytes())
        .expect("in bounds");
    let own = all.get(PER_WORKER + index).expect("in bounds") + 1;
    all.set(PER_WORKER + index, own).expect("in bounds");
    let me = index as u8 + 1;
    if all.get(LAST_EDITOR) != Some(me) {
        let handoffs = read_u64(data, HANDOFFS) + 1;
        all.write(HANDOFFS, &handoffs.to_le_bytes())
            .expect("in bounds");
        all.set(LAST_EDITOR, me).expect("in bounds");
    }
}

/// `check_data(data)`, run by main while it holds the token: the invariants, and the
/// number of edits so far.
fn check_data(data: &SharedBuffer) -> u64 {
    let _all = data
        .claim(0..data.len())
        .expect("nobody edits while main holds the token");
    let total = read_u64(data, TOTAL);
    assert_eq!(read_u64(data, TOTAL_AGAIN), total, "an edit was torn");
    let bytes = data.to_vec();
    let per_worker = &bytes[PER_WORKER..];
    assert!(per_worker.iter().all(|&own| own <= EDITS_PER_WORKER));
    let sum: u64 = per_worker.iter().map(|&own| u64::from(own)).sum();
    assert_eq!(sum, total, "the edits do not add up");
    total
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
fn worker_loop() {
    let control: Queue = main_attr("control");
    let data: SharedBuffer = main_attr("data");
    let index: usize = main_attr("index");
    for _ in 0..EDITS_PER_WORKER {
        let token = control.get().expect("the control queue stays open");
        edit_data(&data, index);
        control.put(token).expect("the control queue stays open");
        // The queue does not line its getters up: after a put, whoever asks first takes the
        // token — most often the thread that just put it, asking again at once. Yielding
        // lets the waiting ones in, so the token goes round.
        std::thread::yield_now();
    }
}

fn main() {
    let control = interpreters::create_queue(0);
    let data = SharedBuffer::writable(DATA_LEN);

    // Main keeps a handle on every interpreter until the end: an interpreter closed while the
    // token it put is still queued would leave `UNBOUND` in the queue instead of the token
    // (the queue's default `UnboundPolicy::Replace`).
    let interps: Vec<Interpreter> = (0..WORKERS).map(|_| interpreters::create()).collect();
    let threads: Vec<_> = interps
        .iter()
        .enumerate()
        .map(|(index, interp)| {
            interp
                .prepare_main([
                    ("control", control.clone().into()),
                    ("data", data.clone().into()),
                    ("index", index.into()),
                ])
                .expect("a new interpreter takes names");
            let interp = interp.clone();
            std::thread::spawn(move || {
                interp
                    .exec(worker_loop)
                    .unwrap_or_else(|error| panic!("worker {index}: {error}"));
            })
        })
        .collect();

    let done = WORKERS as u64 * u64::from(EDITS_PER_WORKER);
    let mut checks = 0_u64;
    control.put(TOKEN).expect("the control queue is open");
    loop {
        let token = control.get().expect("the control queue is open");
        assert_eq!(token, Shareable::from(TOKEN));
        let total = check_data(&data);
        checks += 1;
        if total == done {
            break; // every worker made its last edit and stopped: keep the token
        }
        control.put(token).expect("the control queue is open");
        std::thread::yield_now(); // as the workers do
    }
    for thread in threads {
        thread.join().expect("a worker thread does not panic");
    }
    assert!(
        control.is_empty(),
        "the token is main's, and nothing else was queued"
    );
    for interp in &interps {
        interp
            .close()
            .expect("the worker is done with its interpreter");
    }

    let bytes = data.to_vec();
    assert!(
        bytes[PER_WORKER..]
            .iter()
            .all(|&own| own == EDITS_PER_WORKER)
    );
    let handoffs = read_u64(&data, HANDOFFS);
    assert!(handoffs >= WORKERS as u64, "every worker edited");
    println!(
        "{WORKERS} interpreters made {done} edits, passing one token through a queue \
         ({handoffs} changes of editor); main checked the buffer {checks} times while \
         holding the token; no edit was torn"
    );
}

/// `cargo test --examples` runs the example too.
#[test]
fn runs() {
    main();
}
