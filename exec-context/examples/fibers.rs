//! Ping-pong between two fibers (greenlets), each with a context of its own: the players keep
//! their names and hit counts in context variables, which survive every switch and never mix,
//! while both inherited the match name their creator had set.
//!
//! ```text
//! cargo run -p exec-context --example fibers
//! ```

use contextvars::ContextVar;
use exec_context::GeneratorState;
use exec_context::fiber::{Fiber, FiberContext};

static MATCH: ContextVar<&str> = ContextVar::new("match");
static PLAYER: ContextVar<&str> = ContextVar::new("player");
static HITS: ContextVar<u32> = ContextVar::with_default("hits", 0);

/// A player: receives the rally count, hits the ball back, and reports.
fn player(name: &'static str) -> Fiber<String, (), u32> {
    // `Inherit`: a copy of the creator's context (the match name), like a Stackless tasklet.
    Fiber::with_resume_arg(FiberContext::Inherit, move |co| async move {
        PLAYER.set(name);
        let mut rally = co.yield_(format!("{name} is ready")).await;
        loop {
            HITS.set(HITS.get().unwrap_or(0) + 1);
            let line = format!(
                "{} hits rally {rally} ({}, own hits: {})",
                PLAYER.get().unwrap_or("?"),
                MATCH.get().unwrap_or("?"),
                HITS.get().unwrap_or(0),
            );
            rally = co.yield_(line).await;
        }
    })
}

fn main() {
    MATCH.set("final");
    let ping = player("ping");
    let pong = player("pong");
    MATCH.set("changed after the players were created"); // invisible to them

    let mut transcript = Vec::new();
    for fiber in [&ping, &pong] {
        if let Ok(GeneratorState::Yielded(line)) = fiber.switch_with(0) {
            transcript.push(line);
        }
    }
    for rally in 1..=6 {
        let fiber = if rally % 2 == 1 { &ping } else { &pong };
        match fiber.switch_with(rally) {
            Ok(GeneratorState::Yielded(line)) => transcript.push(line),
            other => panic!("the player stopped: {other:?}"),
        }
    }
    for line in &transcript {
        println!("{line}");
    }

    // The switcher's context is its own.
    assert_eq!(PLAYER.get(), None);
    assert_eq!(HITS.get(), Some(0));
    // Each fiber's context can be inspected while it is idle.
    let hits = |fiber: &Fiber<String, (), u32>| {
        fiber
            .context()
            .expect("idle")
            .and_then(|ctx| ctx.get(&HITS))
    };
    println!("ping hit {:?} times, pong {:?}", hits(&ping), hits(&pong));

    assert_eq!(
        transcript,
        [
            "ping is ready",
            "pong is ready",
            "ping hits rally 1 (final, own hits: 1)",
            "pong hits rally 2 (final, own hits: 1)",
            "ping hits rally 3 (final, own hits: 2)",
            "pong hits rally 4 (final, own hits: 2)",
            "ping hits rally 5 (final, own hits: 3)",
            "pong hits rally 6 (final, own hits: 3)",
        ]
    );
    assert_eq!((hits(&ping), hits(&pong)), (Some(3), Some(3)));
}
