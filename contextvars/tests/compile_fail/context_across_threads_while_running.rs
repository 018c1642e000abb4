// A running context is borrowed by its `run`: another thread cannot take it meanwhile.
use contextvars::Context;

fn main() {
    let mut ctx = Context::new();
    ctx.run(|| {
        std::thread::scope(|scope| {
            scope.spawn(|| drop(ctx.clone()));
        });
    });
}
