// PEP 567: "RuntimeError: cannot enter context: ... is already entered". `Context::run` takes
// `&mut self`, so a context cannot be run again from inside its own `run`.
use contextvars::Context;

fn main() {
    let mut ctx = Context::new();
    ctx.run(|| {
        ctx.run(|| ());
    });
}
