//! PEP 554's "sharing a memoryview (imagine map-reduce)": the input is one read-only buffer
//! every interpreter reads without copying; the results are one writable buffer with a byte
//! per chunk; the chunks to reduce are handed out through a channel as
//! `(resindex, start, end)` tuples.
//!
//! ```text
//! cargo run -p exec-context --example interp_mapreduce
//! ```
//!
//! A worker writes its result byte through a claim on that byte alone (`claim(i..i + 1)`),
//! so two workers can never write the same slot; main checks every byte against a
//! sequential computation. Two slips in the PEP's sketch are fixed on the way: the number of
//! chunks rounds up (`div_ceil`), and the tuple is sent in the order it is unpacked.

use std::time::{Duration, Instant};

use exec_context::interpreters::{self, RecvChannel, RecvError, SendError, Share, SharedBuffer};

const WORKERS: usize = 20;
const DATA_LEN: usize = 1_000_003; // not a multiple of the chunk size: the last chunk is short
const CHUNK_SIZE: usize = 4096;

/// `read_large_data_set()`: deterministic pseudo-random bytes (xorshift).
fn read_large_data_set() -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..DATA_LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// `reduce_chunk(chunk)`: the sum of the chunk's bytes, each times its position + 1, mod 256
/// (weighted, so that a chunk read from the wrong offset would not pass for the right one).
fn reduce_chunk(chunk: &[u8]) -> u8 {
    let mut sum: u8 = 0;
    for (position, &byte) in chunk.iter().enumerate() {
        let weight = (position + 1) as u8; // mod 256
        sum = sum.wrapping_add(byte.wrapping_mul(weight));
    }
    sum
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

/// The code each worker runs in its interpreter; returns how many chunks it reduced.
fn reduce_loop() -> u64 {
    let data: SharedBuffer = main_attr("data");
    let results: SharedBuffer = main_attr("results");
    let tasks: RecvChannel = main_attr("tasks");
    let data = data
        .as_slice()
        .expect("the input is read-only, so it can be borrowed");
    let mut reduced = 0;
    loop {
        let req = match tasks.recv() {
            Ok(req) => req,
            Err(RecvError::Closed) => break, // the channel is closed: no more chunks
            Err(error) => panic!("receiving a chunk: {error}"),
        };
        let (resindex, start, end): (usize, usize, usize) =
            req.extract().expect("tasks are (resindex, start, end)");
        let chunk = &data[start..end]; // a view, not a copy
        let res = reduce_chunk(chunk);
        let mut slot = results
            .claim(resindex..resindex + 1)
            .expect("each result slot is handed out once");
        slot.set(0, res).expect("the slot holds one byte");
        reduced += 1;
    }
    reduced
}

fn main() {
    let data = read_large_data_set();
    let numchunks = data.len().div_ceil(CHUNK_SIZE);
    let buf = SharedBuffer::read_only(data);
    let results = SharedBuffer::writable(numchunks);
    let (tasks_recv, tasks) = interpreters::create_channel();
    let started = Instant::now();

    let threads: Vec<_> = (0..WORKERS)
        .map(|_| {
            let names = [
                ("data", buf.clone().into()),
                ("results", results.clone().into()),
                ("tasks", tasks_recv.clone().into()),
            ];
            std::thread::spawn(move || {
                let interp = interpreters::create();
                interp
                    .set_main_attrs(names)
                    .expect("a new interpreter takes names");
                interp
                    .call(reduce_loop)
                    .unwrap_or_else(|error| panic!("worker {}: {error}", interp.id()))
            })
        })
        .collect();

    let workers_running = |threads: &[std::thread::JoinHandle<u64>]| {
        threads.iter().any(|thread| !thread.is_finished())
    };
    for resindex in 0..numchunks {
        let start = resindex * CHUNK_SIZE;
        let end = (start + CHUNK_SIZE).min(buf.len());
        // `if not workers_running(): raise ...`, checked while waiting, so that a failure in
        // every worker ends the run instead of leaving the send waiting for a receiver.
        loop {
            match tasks.send_timeout((resindex, start, end), Duration::from_secs(1)) {
                Ok(()) => break,
                Err(SendError::Timeout) => {
                    assert!(workers_running(&threads), "every worker stopped early");
                }
                Err(error) => panic!("sending a chunk: {error}"),
            }
        }
    }
    tasks.close();
    let per_worker: Vec<u64> = threads
        .into_iter()
        .map(|thread| thread.join().expect("a worker thread does not panic"))
        .collect();
    let elapsed = started.elapsed();

    // use_results(results): every slot holds its chunk's reduction, computed here again
    // sequentially from the same bytes.
    let input = buf.as_slice().expect("read-only");
    let expected: Vec<u8> = input.chunks(CHUNK_SIZE).map(reduce_chunk).collect();
    assert_eq!(expected.len(), numchunks);
    assert_eq!(results.to_vec(), expected);
    assert_eq!(per_worker.iter().sum::<u64>(), numchunks as u64);
    // No claim outlived its worker: the whole buffer can be claimed again.
    drop(
        results
            .claim(0..numchunks)
            .expect("every slot was released"),
    );

    let busy = per_worker.iter().filter(|&&n| n > 0).count();
    println!(
        "{numchunks} chunks of {} bytes reduced by {busy} of {WORKERS} interpreters in {:.1?}; \
         all {numchunks} result bytes match the sequential reduction",
        CHUNK_SIZE, elapsed,
    );
}

/// `cargo test --examples` runs the example too.
#[test]
fn runs() {
    main();
}
