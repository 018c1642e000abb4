// A thread's closure must be `Send`: one capturing an `Rc` is refused.
use std::rc::Rc;

use exec_context::thread::{Inheritance, spawn};

fn main() {
    let shared = Rc::new(1);
    let thread = spawn(Inheritance::Inherit, move || *shared + 1);
    thread.join().unwrap();
}
