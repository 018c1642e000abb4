// `Interpreter::call_in_thread` runs its closure on another thread: it must be `Send`.
use std::rc::Rc;

use exec_context::interpreters;

fn main() {
    let interp = interpreters::create();
    let shared = Rc::new(1_i64);
    let thread = interp.call_in_thread(move || *shared + 1);
    thread.join().unwrap().unwrap();
}
