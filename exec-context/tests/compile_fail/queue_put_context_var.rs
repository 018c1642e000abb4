// A context variable belongs to the interpreter it was made in: it cannot be put in a queue.
use contextvars::ContextVar;
use exec_context::interpreters::Queue;

static VAR: ContextVar<i32> = ContextVar::new("var");

fn main() {
    let queue = Queue::new(0);
    queue.put_nowait(&VAR).unwrap();
}
