//! `ContextVar::scope_future` and `ContextVar::set_guard` on a real multi-thread tokio runtime:
//! values correct across awaits and worker-thread migrations.
#![cfg(feature = "tokio")]

use std::panic::{AssertUnwindSafe, catch_unwind};

use contextvars::{ContextVar, TokenError};
use tokio::task::{JoinSet, yield_now};

static REQUEST: ContextVar<u64> = ContextVar::new("scopes.request");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap()
}

#[test]
fn scope_futures_keep_their_values_across_awaits_and_migrations() {
    let mismatches = runtime().block_on(async {
        let mut set = JoinSet::new();
        for id in 0..200u64 {
            // A plain spawn: the scope alone carries the value, on whichever worker polls.
            set.spawn(REQUEST.scope_future(id, async move {
                let mut mismatches = 0;
                for _ in 0..20 {
                    yield_now().await;
                    mismatches += usize::from(REQUEST.get() != Some(id));
                }
                mismatches
            }));
        }
        set.join_all().await.into_iter().sum::<usize>()
    });
    assert_eq!(mismatches, 0);
}

#[test]
fn set_guards_held_across_awaits_inside_tasks() {
    let outcomes = runtime().block_on(async {
        let mut set = JoinSet::new();
        for id in 0..200u64 {
            set.spawn(exec_context::tokio::carry(async move {
                let mut mismatches = 0;
                {
                    let _guard = REQUEST.set_guard(id);
                    for _ in 0..20 {
                        yield_now().await;
                        mismatches += usize::from(REQUEST.get() != Some(id));
                    }
                }
                (mismatches, REQUEST.get())
            }));
        }
        set.join_all().await
    });
    assert_eq!(outcomes.len(), 200);
    for (mismatches, after) in outcomes {
        assert_eq!(
            (mismatches, after),
            (0, None),
            "reset when the guard dropped"
        );
    }
}

#[test]
fn a_guard_moved_to_another_task_follows_the_documented_policy() {
    let (reset, dropped, left) = runtime().block_on(async {
        let guard = exec_context::tokio::spawn(async {
            let guard = REQUEST.set_guard(1);
            yield_now().await;
            // Moved out of the task that set it.
            guard
        })
        .await
        .unwrap();
        let reset = exec_context::tokio::spawn(async move { guard.reset() })
            .await
            .unwrap();
        let other = exec_context::tokio::spawn(async {
            // A value of its own, which a wrong reset by the misplaced drop would remove.
            REQUEST.set(5);
            let guard = exec_context::tokio::spawn(async { REQUEST.set_guard(2) })
                .await
                .unwrap();
            let dropped = catch_unwind(AssertUnwindSafe(move || drop(guard)));
            (dropped.is_err(), REQUEST.get())
        })
        .await
        .unwrap();
        (reset, other.0, other.1)
    });
    assert_eq!(reset, Err(TokenError::WrongContext));
    assert_eq!(
        dropped,
        cfg!(debug_assertions),
        "debug builds flag the misplaced drop"
    );
    assert_eq!(left, Some(5), "no context was changed");
}
