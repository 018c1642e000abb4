//! Auto traits checked at compile time, and contexts, snapshots, logical contexts and tokens
//! moved between threads.
//!
//! (Negative checks such as "`Context::run` cannot be re-entered" need `compile_fail`
//! doctests, which integration tests cannot hold.)

use std::sync::{Arc, Barrier};

use contextvars::{
    Context, ContextVar, ExecutionContext, LogicalContext, LookupError, Token, TokenError, VarId,
    VarInfo, copy_context, get_execution_context, run_with_execution_context,
    run_with_logical_context,
};

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}
fn assert_send_sync_static<T: Send + Sync + 'static>() {}

/// A value type that is `Send + Sync` but not `Clone`.
struct NotClone(#[allow(dead_code)] Vec<u8>);

// Usable as `static`s: a `static` requires `Sync`.
static STRING_VAR: ContextVar<String> = ContextVar::new("string");
static NOT_CLONE_VAR: ContextVar<NotClone> = ContextVar::new("not_clone");
static ARC_VAR: ContextVar<Arc<Vec<u64>>> = ContextVar::with_default_fn("arc", Default::default);

#[test]
fn auto_traits_are_as_documented() {
    assert_sync::<ContextVar<String>>();
    assert_sync::<ContextVar<NotClone>>();
    assert_send::<ContextVar<String>>();

    assert_send::<Context>();
    assert_send_sync_static::<ExecutionContext>();
    assert_send::<LogicalContext>();
    assert_send::<Token<String>>();
    assert_send::<Token<NotClone>>();
    // A token has no "used" flag to race on (reset consumes it): it is Sync too.
    assert_sync::<Token<String>>();

    // Plain data and errors travel anywhere (`Box<dyn Error + Send + Sync>`).
    assert_send_sync_static::<VarId>();
    assert_send_sync_static::<VarInfo>();
    assert_send_sync_static::<LookupError>();
    assert_send_sync_static::<TokenError>();
    let _: Box<dyn std::error::Error + Send + Sync> = Box::new(TokenError::WrongVar);

    // The statics above are really usable.
    NOT_CLONE_VAR.set(NotClone(vec![1]));
    assert!(NOT_CLONE_VAR.with(|value| value.is_some()));
    assert!(ARC_VAR.with(|value| value.is_some_and(|value| value.is_empty())));
}

#[test]
fn a_context_moved_to_another_thread_and_back_keeps_its_values() {
    static COUNT: ContextVar<u32> = ContextVar::new("count");

    std::thread::spawn(|| {
        STRING_VAR.set("main".to_string());
        COUNT.set(1);
        let ctx = copy_context();

        let (mut ctx, token) = std::thread::spawn(move || {
            let mut ctx = ctx;
            // This thread's own context is empty; the moved context brings its values.
            assert_eq!(STRING_VAR.get(), None);
            let token = ctx.run(|| {
                assert_eq!(STRING_VAR.get().as_deref(), Some("main"));
                assert_eq!(COUNT.get(), Some(1));
                STRING_VAR.set("worker".to_string());
                COUNT.set(2)
            });
            assert_eq!(COUNT.get(), None);
            (ctx, token)
        })
        .join()
        .expect("the worker panicked");

        assert_eq!(ctx.get(&COUNT), Some(2));
        assert_eq!(ctx.get(&STRING_VAR).as_deref(), Some("worker"));
        // The caller's own context never changed.
        assert_eq!(COUNT.get(), Some(1));
        assert_eq!(STRING_VAR.get().as_deref(), Some("main"));

        // A token made on the worker resets the variable in the same context here.
        ctx.run(|| {
            assert_eq!(COUNT.get(), Some(2));
            COUNT.reset(token).unwrap();
            assert_eq!(COUNT.get(), Some(1));
        });
        assert_eq!(ctx.get(&COUNT), Some(1));
    })
    .join()
    .expect("the test thread panicked");
}

#[test]
fn a_snapshot_is_shared_by_threads_running_in_it_at_once() {
    static SHARED: ContextVar<u64> = ContextVar::new("shared");
    static OWN: ContextVar<u64> = ContextVar::new("own");
    const THREADS: u64 = 4;

    std::thread::spawn(|| {
        SHARED.set(7);
        let ec = Arc::new(get_execution_context());
        let barrier = Arc::new(Barrier::new(THREADS as usize));
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (ec, barrier) = (Arc::clone(&ec), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    for step in 0..if cfg!(miri) { 10 } else { 200 } {
                        run_with_execution_context(&ec, || {
                            assert_eq!(SHARED.get(), Some(7));
                            assert_eq!(OWN.get(), None);
                            OWN.set(thread * 1_000 + step);
                            SHARED.set(thread);
                            assert_eq!(OWN.get(), Some(thread * 1_000 + step));
                            assert_eq!(SHARED.get(), Some(thread));
                        });
                    }
                    (ec.get(&SHARED), ec.get(&OWN))
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().expect("a worker panicked"), (Some(7), None));
        }
        assert_eq!(ec.get(&SHARED), Some(7));
    })
    .join()
    .expect("the test thread panicked");
}

#[test]
fn a_generator_logical_context_resumes_on_another_thread() {
    static STEP: ContextVar<u32> = ContextVar::new("step");

    std::thread::spawn(|| {
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || STEP.set(1));
        let lc = std::thread::spawn(move || {
            let mut lc = lc;
            run_with_logical_context(&mut lc, || {
                assert_eq!(STEP.get(), Some(1));
                STEP.set(2);
            });
            assert_eq!(STEP.get(), None);
            lc
        })
        .join()
        .expect("the worker panicked");
        assert_eq!(lc.get(&STEP), Some(2));
        assert_eq!(STEP.get(), None);
    })
    .join()
    .expect("the test thread panicked");
}
