// PEP 567: "RuntimeError: Token has already been used once". Here `reset` takes the token by
// value, so a second use is a use of a moved value.
use contextvars::ContextVar;

static VAR: ContextVar<u32> = ContextVar::new("var");

fn main() {
    let token = VAR.set(1);
    VAR.reset(token).unwrap();
    VAR.reset(token).unwrap();
}
