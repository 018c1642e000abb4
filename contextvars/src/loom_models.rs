//! Loom models of contextvars across threads. Under `--cfg loom` the cache and the thread
//! state are loom thread-locals, one per model thread, so these models run the real per-thread
//! machinery on every interleaving loom explores: the race to assign a variable's id on first
//! use, with both threads filling and validating their own lookup caches, and a context handed
//! from one thread to another (a task migrating between workers: the thread-state switch).
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p contextvars --lib --release`.

use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::{ContextVar, copy_context};

#[test]
fn loom_each_threads_cache_serves_only_its_own_values() {
    loom::model(|| {
        let var = Arc::new(ContextVar::<u32>::new("var"));
        let other = {
            let var = var.clone();
            thread::spawn(move || {
                for n in 10..12 {
                    drop(var.set(n));
                    assert_eq!(var.get(), Some(n));
                }
                var.get()
            })
        };
        for n in 0..2 {
            drop(var.set(n));
            assert_eq!(var.get(), Some(n));
        }
        assert_eq!(other.join().unwrap(), Some(11));
        assert_eq!(
            var.get(),
            Some(1),
            "the other thread's sets never reach this cache"
        );
    });
}

#[test]
fn loom_a_context_migrating_between_threads_keeps_its_values() {
    loom::model(|| {
        let var = Arc::new(ContextVar::<u32>::new("var"));
        drop(var.set(1));
        let mut ctx = copy_context();
        ctx.run(|| drop(var.set(2)));
        let slot = Arc::new(Mutex::new(Some(ctx)));
        let worker = {
            let (var, slot) = (var.clone(), slot.clone());
            thread::spawn(move || {
                assert_eq!(var.get(), None, "a new thread starts empty");
                let mut ctx = slot.lock().unwrap().take().unwrap();
                let seen = ctx.run(|| {
                    let seen = var.get();
                    drop(var.set(3));
                    seen
                });
                assert_eq!(var.get(), None, "the context's writes stay in it");
                *slot.lock().unwrap() = Some(ctx);
                seen
            })
        };
        drop(var.set(4));
        assert_eq!(var.get(), Some(4));
        assert_eq!(worker.join().unwrap(), Some(2));
        let ctx = slot.lock().unwrap().take().unwrap();
        assert_eq!(ctx.get(&var), Some(3));
        assert_eq!(var.get(), Some(4));
    });
}
