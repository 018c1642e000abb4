// A pool job runs on a worker thread: a closure capturing an `Rc` is refused.
use std::rc::Rc;

use exec_context::interpreters::InterpreterPool;

fn main() {
    let pool = InterpreterPool::new(1).unwrap();
    let shared = Rc::new(1_i64);
    let job = pool.submit(move || *shared + 1).unwrap();
    job.wait().unwrap();
}
