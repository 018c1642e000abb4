// A context travels between threads (snapshots, tasks), so its values must be `Send + Sync`:
// an `Rc` cannot be a context variable's value.
use std::rc::Rc;

use contextvars::ContextVar;

static SHARED: ContextVar<Rc<u32>> = ContextVar::new("shared");

fn main() {
    SHARED.set(Rc::new(1));
}
