//! PEP 550's decimal-precision example: two interleaved generators, each dividing with its
//! own precision, which lives in a context variable (as `decimal`'s context would).
//!
//! ```text
//! cargo run -p exec-context --example fractions
//! ```
//!
//! With thread-local state the second generator's precision would leak into the first one;
//! with a logical context per generator each keeps its own.

use std::fmt;
use std::future::Future;
use std::ops::Div;

use contextvars::{ContextVar, Token};
use exec_context::Gen;

/// The part of `decimal.Context` this example needs.
#[derive(Clone, Copy, Debug, PartialEq)]
struct DecimalContext {
    prec: usize,
}

static DECIMAL_CTX: ContextVar<DecimalContext> =
    ContextVar::with_default("decimal context", DecimalContext { prec: 28 });

fn getcontext() -> DecimalContext {
    DECIMAL_CTX.get().unwrap_or(DecimalContext { prec: 28 })
}

/// A number that rounds its quotients to the current context's significant digits.
#[derive(Clone, Copy, Debug)]
struct MyDecimal {
    value: f64,
    decimals: usize,
}

impl MyDecimal {
    fn new(value: u64) -> Self {
        MyDecimal {
            value: value as f64,
            decimals: 0,
        }
    }
}

impl Div for MyDecimal {
    type Output = MyDecimal;

    fn div(self, other: MyDecimal) -> MyDecimal {
        let value = self.value / other.value;
        let magnitude = value.abs().log10().floor() as i64;
        let decimals = (getcontext().prec as i64 - 1 - magnitude).max(0) as usize;
        MyDecimal { value, decimals }
    }
}

impl fmt::Display for MyDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.*}", self.decimals, self.value)
    }
}

/// `with decimal.localcontext() as ctx: ctx.prec = precision`, undone on drop.
struct LocalContext(Option<Token<DecimalContext>>);

fn localcontext(prec: usize) -> LocalContext {
    LocalContext(Some(DECIMAL_CTX.set(DecimalContext { prec })))
}

impl Drop for LocalContext {
    fn drop(&mut self) {
        // Runs in the logical context the precision was set in, so the reset cannot fail.
        if let Some(token) = self.0.take() {
            let _ = DECIMAL_CTX.reset(token);
        }
    }
}

/// ```python
/// def fractions(precision, x, y):
///     with decimal.localcontext() as ctx:
///         ctx.prec = precision
///         yield MyDecimal(x) / MyDecimal(y)
///         yield MyDecimal(x) / MyDecimal(y ** 2)
/// ```
fn fractions(precision: usize, x: u64, y: u64) -> Gen<MyDecimal, (), (), impl Future<Output = ()>> {
    Gen::new(move |co| async move {
        let _ctx = localcontext(precision);
        co.yield_(MyDecimal::new(x) / MyDecimal::new(y)).await;
        co.yield_(MyDecimal::new(x) / MyDecimal::new(y * y)).await;
    })
}

fn main() {
    let g1 = fractions(2, 1, 3);
    let g2 = fractions(6, 2, 3);

    let items: Vec<(String, String)> = g1
        .zip(g2)
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();

    println!("items = [");
    for (a, b) in &items {
        println!("    (Decimal('{a}'), Decimal('{b}')),");
    }
    println!("]");
    println!("precision outside the generators: {}", getcontext().prec);

    assert_eq!(
        items,
        [
            ("0.33".to_string(), "0.666667".to_string()),
            ("0.11".to_string(), "0.222222".to_string()),
        ]
    );
    assert_eq!(getcontext().prec, 28);
}
