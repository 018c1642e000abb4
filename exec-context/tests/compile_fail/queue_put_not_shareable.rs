// Only `Share` types cross between interpreters: a `Vec<u32>` is `Send`, but not shareable
// (only `Vec<u8>`, as bytes, is).
use exec_context::interpreters::Queue;

fn main() {
    let queue = Queue::new(0);
    queue.put(vec![1_u32, 2, 3]).unwrap();
}
