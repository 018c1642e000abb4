//! PEP 550 scenarios, translated from the PEP's examples into Rust.
//!
//! A Python generator becomes an iterator that owns a [`LogicalContext`] and runs each step
//! inside it with [`run_with_logical_context`] (PEP 550 §Generators Transformed into
//! Iterators). Every test runs on a fresh thread, whose execution context starts empty.

use std::collections::HashMap;

use contextvars::{
    ContextVar, EC_LEN_MAX, ExecutionContext, LogicalContext, VarId, get_execution_context,
    run_with_execution_context, run_with_logical_context,
};

mod common;
use common::on_fresh_thread;

/// The ids of the variables listed by a `vars()` call, sorted.
fn sorted_ids(vars: impl IntoIterator<Item = contextvars::VarInfo>) -> Vec<VarId> {
    let mut ids: Vec<VarId> = vars.into_iter().map(|info| info.id()).collect();
    ids.sort();
    ids
}

// §High-Level Specification › Regular Single-threaded Code: variables behave like globals.
#[test]
fn regular_single_threaded_code_behaves_like_globals() {
    static VAR: ContextVar<&str> = ContextVar::new("var");

    fn sub() {
        assert_eq!(VAR.get(), Some("main"));
        VAR.set("sub");
    }

    on_fresh_thread(|| {
        assert_eq!(VAR.get(), None);
        VAR.set("main");
        sub();
        assert_eq!(VAR.get(), Some("sub"));
    });
}

// §High-Level Specification › Multithreaded Code: a new thread starts with an empty execution
// context, and its changes do not reach the thread that started it.
#[test]
fn multithreaded_code_new_thread_starts_empty() {
    static VAR: ContextVar<&str> = ContextVar::new("var");
    static OTHER: ContextVar<u32> = ContextVar::with_default("other", 5);

    on_fresh_thread(|| {
        VAR.set("main");
        OTHER.set(1);
        let seen_in_thread = std::thread::spawn(|| {
            let empty = get_execution_context().is_empty();
            let seen = (VAR.get(), OTHER.get(), VAR.is_set());
            VAR.set("sub");
            OTHER.set(2);
            assert_eq!(VAR.get(), Some("sub"));
            (empty, seen)
        })
        .join()
        .expect("the thread panicked");
        assert_eq!(seen_in_thread, (true, (None, Some(5), false)));
        assert_eq!(VAR.get(), Some("main"));
        assert_eq!(OTHER.get(), Some(1));
    });
}

/// The `gen()` of §High-Level Specification › Generators, as an iterator.
struct Var1Var2Gen {
    lc: LogicalContext,
    step: u32,
}

static GEN_VAR1: ContextVar<&str> = ContextVar::new("var1");
static GEN_VAR2: ContextVar<&str> = ContextVar::new("var2");

impl Iterator for Var1Var2Gen {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let step = self.step;
        self.step += 1;
        run_with_logical_context(&mut self.lc, || match step {
            0 => {
                GEN_VAR1.set("gen");
                assert_eq!(GEN_VAR1.get(), Some("gen"));
                assert_eq!(GEN_VAR2.get(), Some("main"));
                Some(1)
            }
            1 => {
                // Modification to var1 in main() is shielded by gen()'s local modification.
                assert_eq!(GEN_VAR1.get(), Some("gen"));
                // But modifications to var2 are visible.
                assert_eq!(GEN_VAR2.get(), Some("main modified"));
                Some(2)
            }
            _ => None,
        })
    }
}

#[test]
fn generator_changes_stay_local_and_outer_changes_show_through() {
    on_fresh_thread(|| {
        let mut g = Var1Var2Gen {
            lc: LogicalContext::new(),
            step: 0,
        };

        GEN_VAR1.set("main");
        GEN_VAR2.set("main");
        assert_eq!(g.next(), Some(1));

        // Modification of var1 in gen() is not visible.
        assert_eq!(GEN_VAR1.get(), Some("main"));
        assert_eq!(GEN_VAR2.get(), Some("main"));

        GEN_VAR1.set("main modified");
        GEN_VAR2.set("main modified");
        assert_eq!(g.next(), Some(2));
        assert_eq!(g.next(), None);

        assert_eq!(GEN_VAR1.get(), Some("main modified"));
        assert_eq!(g.lc.get(&GEN_VAR1), Some("gen"));
        assert!(!g.lc.contains(&GEN_VAR2));
        assert_eq!(g.lc.len(), 1);
    });
}

static NEST_VAR1: ContextVar<&str> = ContextVar::new("var1");
static NEST_VAR2: ContextVar<&str> = ContextVar::new("var2");
static NEST_OUTER: ContextVar<&str> = ContextVar::new("outer");

/// `nested_gen()` of §Detailed Specification › Generators.
struct NestedGen {
    lc: LogicalContext,
    step: u32,
}

impl Iterator for NestedGen {
    type Item = ();

    fn next(&mut self) -> Option<()> {
        let step = self.step;
        self.step += 1;
        run_with_logical_context(&mut self.lc, || match step {
            0 => {
                // EC = [outer_LC(), gen_LC({var1: 'var1-gen', var2: 'var2-gen'}), nested_gen_LC()]
                assert_eq!(NEST_VAR1.get(), Some("var1-gen"));
                assert_eq!(NEST_VAR2.get(), Some("var2-gen"));
                assert_eq!(NEST_VAR1.get_topmost(), None);
                assert_eq!(NEST_VAR2.get_topmost(), None);

                NEST_VAR1.set("var1-nested-gen");
                // EC = [outer_LC(), gen_LC({..}), nested_gen_LC({var1: 'var1-nested-gen'})]
                assert_eq!(NEST_VAR1.get_topmost(), Some("var1-nested-gen"));
                let ec = get_execution_context();
                assert_eq!(ec.depth(), 3);
                assert_eq!(ec.get(&NEST_OUTER), Some("outer"));
                Some(())
            }
            1 => {
                // EC = [outer_LC(), gen_LC({var1: 'var1-gen-mod', var2: 'var2-gen-mod'}),
                //       nested_gen_LC({var1: 'var1-nested-gen'})]
                assert_eq!(NEST_VAR1.get(), Some("var1-nested-gen"));
                assert_eq!(NEST_VAR2.get(), Some("var2-gen-mod"));
                assert_eq!(NEST_VAR2.get_topmost(), None);
                Some(())
            }
            _ => None,
        })
    }
}

/// `gen()` of §Detailed Specification › Generators: it creates and drives `nested_gen()`.
struct OuterGen {
    lc: LogicalContext,
    step: u32,
    nested: Option<NestedGen>,
}

impl Iterator for OuterGen {
    type Item = ();

    fn next(&mut self) -> Option<()> {
        if self.step > 0 {
            return None;
        }
        self.step += 1;
        let nested = &mut self.nested;
        run_with_logical_context(&mut self.lc, || {
            NEST_VAR1.set("var1-gen");
            NEST_VAR2.set("var2-gen");
            // EC = [outer_LC(), gen_LC({var1: 'var1-gen', var2: 'var2-gen'})]
            assert_eq!(get_execution_context().depth(), 2);

            let n = nested.insert(NestedGen {
                lc: LogicalContext::new(),
                step: 0,
            });
            assert_eq!(n.next(), Some(()));
            // The nested generator's change is not visible here.
            assert_eq!(NEST_VAR1.get(), Some("var1-gen"));
            assert_eq!(NEST_VAR2.get(), Some("var2-gen"));
            assert_eq!(get_execution_context().depth(), 2);

            NEST_VAR1.set("var1-gen-mod");
            NEST_VAR2.set("var2-gen-mod");
            assert_eq!(n.next(), Some(()));
            assert_eq!(NEST_VAR1.get(), Some("var1-gen-mod"));
            assert_eq!(n.next(), None);
        });
        Some(())
    }
}

#[test]
fn nested_generator_execution_context_walk() {
    on_fresh_thread(|| {
        NEST_OUTER.set("outer");
        let outer_ec = get_execution_context();
        assert_eq!(outer_ec.depth(), 1);

        let mut g = OuterGen {
            lc: LogicalContext::new(),
            step: 0,
            nested: None,
        };
        assert_eq!(g.by_ref().count(), 1);

        // EC = [outer_LC()]
        assert_eq!(NEST_VAR1.get(), None);
        assert_eq!(NEST_VAR2.get(), None);
        let ec = get_execution_context();
        assert_eq!(ec.depth(), 1);
        assert_eq!(sorted_ids(ec.vars()), [NEST_OUTER.id()]);

        // Each generator kept its own logical context.
        assert_eq!(g.lc.get(&NEST_VAR1), Some("var1-gen-mod"));
        assert_eq!(g.lc.get(&NEST_VAR2), Some("var2-gen-mod"));
        assert!(!g.lc.contains(&NEST_OUTER));
        let nested = g.nested.as_ref().expect("gen created nested_gen");
        assert_eq!(nested.lc.get(&NEST_VAR1), Some("var1-nested-gen"));
        assert_eq!(nested.lc.len(), 1);
    });
}

// The decimal example of §High-Level Specification › Generators: two generators with their own
// precision, iterated in lockstep.
#[test]
fn decimal_precision_per_generator() {
    static PRECISION: ContextVar<usize> = ContextVar::with_default("precision", 28);

    struct Fractions {
        lc: LogicalContext,
        precision: usize,
        x: f64,
        y: f64,
        step: u32,
    }

    impl Iterator for Fractions {
        type Item = String;

        fn next(&mut self) -> Option<String> {
            let step = self.step;
            self.step += 1;
            let (precision, x, y) = (self.precision, self.x, self.y);
            run_with_logical_context(&mut self.lc, || {
                let divide = |a: f64, b: f64| format!("{:.*}", PRECISION.get().unwrap(), a / b);
                match step {
                    0 => {
                        // `with decimal.localcontext() as ctx: ctx.prec = precision`
                        PRECISION.set(precision);
                        Some(divide(x, y))
                    }
                    1 => Some(divide(x, y * y)),
                    _ => None,
                }
            })
        }
    }

    let fractions = |precision, x, y| Fractions {
        lc: LogicalContext::new(),
        precision,
        x,
        y,
        step: 0,
    };

    on_fresh_thread(|| {
        let items: Vec<(String, String)> =
            fractions(2, 1.0, 3.0).zip(fractions(6, 2.0, 3.0)).collect();
        assert_eq!(
            items,
            [
                ("0.33".to_string(), "0.666667".to_string()),
                ("0.11".to_string(), "0.222222".to_string()),
            ]
        );
        assert_eq!(PRECISION.get(), Some(28));
    });
}

// §High-Level Specification › Coroutines and Asynchronous Tasks: a task runs on a snapshot
// taken when it was created, in a logical context of its own that survives between steps.
#[test]
fn tasks_start_from_a_snapshot_and_keep_their_changes() {
    static VAR: ContextVar<&str> = ContextVar::new("var");

    struct Task {
        exec_context: ExecutionContext,
        coroutine_lc: LogicalContext,
    }

    impl Task {
        fn step<R>(&mut self, f: impl FnOnce() -> R) -> R {
            let lc = &mut self.coroutine_lc;
            run_with_execution_context(&self.exec_context, || run_with_logical_context(lc, f))
        }
    }

    on_fresh_thread(|| {
        VAR.set("main");
        let mut task = Task {
            exec_context: get_execution_context(),
            coroutine_lc: LogicalContext::new(),
        };
        assert_eq!(VAR.get(), Some("main"));
        VAR.set("main changed");

        task.step(|| {
            // Inherited from main(), but later changes in main() are not visible.
            assert_eq!(VAR.get(), Some("main"));
            VAR.set("sub");
        });
        assert_eq!(VAR.get(), Some("main changed"));
        assert_eq!(task.step(|| VAR.get()), Some("sub"));
        assert_eq!(task.exec_context.get(&VAR), Some("main"));
    });
}

static RESTORE_VAR: ContextVar<&str> = ContextVar::new("var");

/// `gen()` of §Setting and restoring context variables. With `delete_on_exit`, the context
/// manager's `__exit__` deletes the variable from the generator's logical context; without
/// it, it sets the variable back to the value it saw on entry.
struct ContextManagerGen {
    lc: LogicalContext,
    step: u32,
    delete_on_exit: bool,
}

impl Iterator for ContextManagerGen {
    type Item = Option<&'static str>;

    /// Yields what the generator sees after leaving the `with` block.
    fn next(&mut self) -> Option<Option<&'static str>> {
        let step = self.step;
        self.step += 1;
        let delete_on_exit = self.delete_on_exit;
        run_with_logical_context(&mut self.lc, || match step {
            0 => {
                // with some_var_context_manager('gen'):
                let _ = RESTORE_VAR.set("gen");
                // EC = [{var: 'main'}, {var: 'gen'}]
                assert_eq!(RESTORE_VAR.get(), Some("gen"));
                Some(None)
            }
            1 => {
                // __exit__
                if delete_on_exit {
                    RESTORE_VAR.delete().expect("set in this logical context");
                    assert!(RESTORE_VAR.get_topmost().is_none());
                } else {
                    let _ = RESTORE_VAR.set("main");
                }
                Some(RESTORE_VAR.get())
            }
            _ => None,
        })
    }
}

#[test]
fn delete_restores_and_lets_outer_changes_show_through() {
    on_fresh_thread(|| {
        RESTORE_VAR.set("main");
        let mut g = ContextManagerGen {
            lc: LogicalContext::new(),
            step: 0,
            delete_on_exit: true,
        };
        assert_eq!(g.next(), Some(None));
        assert_eq!(RESTORE_VAR.get(), Some("main"));
        RESTORE_VAR.set("main modified");
        // EC = [{var: 'main modified'}, {}]
        assert_eq!(g.next(), Some(Some("main modified")));
        assert!(g.lc.is_empty());
        assert_eq!(g.next(), None);

        // Setting a "previous value" instead masks main()'s change.
        RESTORE_VAR.set("main");
        let mut g = ContextManagerGen {
            lc: LogicalContext::new(),
            step: 0,
            delete_on_exit: false,
        };
        assert_eq!(g.next(), Some(None));
        RESTORE_VAR.set("main modified");
        assert_eq!(g.next(), Some(Some("main")));
    });
}

#[test]
fn delete_of_a_variable_absent_from_the_top_logical_context_is_a_lookup_error() {
    static VAR: ContextVar<u8> = ContextVar::with_default("deleted_var", 9);

    on_fresh_thread(|| {
        let error = VAR.delete().expect_err("never set");
        assert_eq!(error.var_name(), "deleted_var");
        assert!(error.to_string().contains("deleted_var"));

        VAR.set(1);
        run_with_logical_context(&mut LogicalContext::new(), || {
            // Visible, but in a lower logical context: delete() refuses.
            assert_eq!(VAR.get(), Some(1));
            assert!(VAR.delete().is_err());
            assert_eq!(VAR.get(), Some(1));
            VAR.set(2);
            assert_eq!(VAR.delete(), Ok(()));
            assert_eq!(VAR.get(), Some(1));
            assert!(VAR.delete().is_err());
        });
        assert_eq!(VAR.delete(), Ok(()));
        assert_eq!(VAR.get(), Some(9)); // the default shows through again
        assert!(!VAR.is_set());
        assert!(VAR.delete().is_err());
    });
}

static SERIES_VAR: ContextVar<u64> = ContextVar::new("var");

/// `CompiledGenSeries` of §Generators Transformed into Iterators: what `gen_series(n)` compiles
/// to.
struct CompiledGenSeries {
    logical_context: LogicalContext,
    i: u64,
    n: u64,
}

impl CompiledGenSeries {
    fn new(n: u64) -> Self {
        let mut logical_context = LogicalContext::new();
        // Initialise the generator in its logical context; otherwise `var.set(10)` would leak.
        let (i, n) = run_with_logical_context(&mut logical_context, || {
            SERIES_VAR.set(10);
            (1, n)
        });
        CompiledGenSeries {
            logical_context,
            i,
            n,
        }
    }
}

impl Iterator for CompiledGenSeries {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let (i, n) = (&mut self.i, self.n);
        run_with_logical_context(&mut self.logical_context, || {
            if *i == n {
                return None;
            }
            let result = SERIES_VAR.get().expect("set by _init") * *i;
            *i += 1;
            Some(result)
        })
    }
}

#[test]
fn compiled_gen_series_runs_init_and_next_in_its_logical_context() {
    on_fresh_thread(|| {
        let mut series = CompiledGenSeries::new(5);
        // The init did not leak.
        assert_eq!(SERIES_VAR.get(), None);
        assert_eq!(series.logical_context.get(&SERIES_VAR), Some(10));

        assert_eq!(series.next(), Some(10));
        // The caller's changes are shielded by the generator's own value.
        SERIES_VAR.set(1000);
        assert_eq!(series.next(), Some(20));
        let rest: Vec<u64> = series.by_ref().collect();
        assert_eq!(rest, [30, 40]);
        assert_eq!(series.next(), None);
        assert_eq!(SERIES_VAR.get(), Some(1000));

        // Two series interleaved do not disturb each other.
        let zipped: Vec<(u64, u64)> = CompiledGenSeries::new(3)
            .zip(CompiledGenSeries::new(4))
            .collect();
        assert_eq!(zipped, [(10, 10), (20, 20)]);
        assert_eq!(SERIES_VAR.get(), Some(1000));
    });
}

// §contextlib.contextmanager: a generator whose logical context is `None` runs its steps
// directly in the caller's logical context, so its writes reach the caller.
#[test]
fn contextmanager_mode_writes_reach_the_caller() {
    static VAR: ContextVar<i32> = ContextVar::new("var");

    /// `var_context(value)`; `lc` is the generator's `__logical_context__`.
    struct VarContext {
        lc: Option<LogicalContext>,
        value: i32,
        original: Option<Option<i32>>,
    }

    impl VarContext {
        fn step(&mut self, f: impl FnOnce(&mut Self)) {
            match self.lc.take() {
                Some(mut lc) => {
                    run_with_logical_context(&mut lc, || f(self));
                    self.lc = Some(lc);
                }
                None => f(self),
            }
        }

        fn enter(&mut self) {
            self.step(|this| {
                this.original = Some(VAR.get());
                let _ = VAR.set(this.value);
            });
        }

        fn exit(&mut self) {
            self.step(|this| match this.original.take().flatten() {
                Some(original) => {
                    let _ = VAR.set(original);
                }
                None => {
                    let _ = VAR.delete();
                }
            });
        }
    }

    on_fresh_thread(|| {
        // A regular generator: the change stays in its logical context.
        let mut isolated = VarContext {
            lc: Some(LogicalContext::new()),
            value: 10,
            original: None,
        };
        isolated.enter();
        assert_eq!(VAR.get(), None); // the PEP's "AssertionError!"
        isolated.exit();
        assert_eq!(VAR.get(), None);

        // `__logical_context__ = None`: the with-block sees the value.
        VAR.set(1);
        let mut manager = VarContext {
            lc: None,
            value: 10,
            original: None,
        };
        manager.enter();
        assert_eq!(VAR.get(), Some(10));
        assert_eq!(VAR.get_topmost(), Some(10));
        manager.exit();
        assert_eq!(VAR.get(), Some(1));
    });
}

#[test]
fn run_with_execution_context_leaves_the_snapshot_unmodified() {
    static A: ContextVar<u32> = ContextVar::new("a");
    static B: ContextVar<u32> = ContextVar::new("b");

    on_fresh_thread(|| {
        A.set(1);
        let ec = get_execution_context();
        let same = ec.clone();
        A.set(100);

        let observe = || {
            let before = (A.get(), B.get(), A.get_topmost());
            A.set(2);
            B.set(3);
            let after_set = (A.get(), B.get());
            // The sets landed in the fresh top logical context, so delete() can undo them.
            A.delete().expect("set in the fresh logical context");
            let after_delete = (A.get(), A.delete().is_err());
            (before, after_set, after_delete)
        };
        let first = run_with_execution_context(&ec, observe);
        assert_eq!(
            first,
            ((Some(1), None, None), (Some(2), Some(3)), (Some(1), true))
        );
        // Idempotent: the same run sees the same thing again.
        assert_eq!(run_with_execution_context(&ec, observe), first);

        assert!(ec.ptr_eq(&same));
        assert_eq!(ec.depth(), 1);
        assert_eq!(ec.get(&A), Some(1));
        assert_eq!(ec.get(&B), None);
        assert_eq!(sorted_ids(ec.vars()), [A.id()]);
        assert_eq!((A.get(), B.get()), (Some(100), None));

        // The result is forwarded.
        assert_eq!(run_with_execution_context(&ec, || "done"), "done");
        // An empty snapshot gives an empty context to run in.
        let empty = ExecutionContext::new();
        run_with_execution_context(&empty, || {
            assert_eq!(A.get(), None);
            assert!(get_execution_context().is_empty());
        });
        assert!(empty.is_empty());
    });
}

// §Implementation, the `repeat()` example: every task schedules the next one from inside
// itself, so each snapshot would be one logical context deeper than the last without squashing.
#[test]
fn repeat_example_keeps_the_chain_bounded_and_lookups_unchanged() {
    static BASE: ContextVar<u64> = ContextVar::new("base");
    static VARS: [ContextVar<u64>; 4] = [
        ContextVar::new("repeat0"),
        ContextVar::new("repeat1"),
        ContextVar::new("repeat2"),
        ContextVar::new("repeat3"),
    ];

    on_fresh_thread(|| {
        BASE.set(7);
        let mut model: HashMap<usize, u64> = HashMap::new();
        let mut ec = get_execution_context();
        let mut squashes = 0;
        let tasks: u64 = if cfg!(miri) { 40 } else { 200 };
        for i in 0..tasks {
            let previous_len = ec.depth();
            let var = (i % 4) as usize;
            let next = run_with_execution_context(&ec, || {
                VARS[var].set(i);
                get_execution_context()
            });
            model.insert(var, i);

            assert!(next.depth() <= EC_LEN_MAX, "len {} at {i}", next.depth());
            if previous_len + 1 > EC_LEN_MAX {
                assert_eq!(next.depth(), 1, "squashed into one logical context at {i}");
                squashes += 1;
            } else {
                assert_eq!(next.depth(), previous_len + 1);
            }
            assert_eq!(next.get(&BASE), Some(7));
            for (index, var) in VARS.iter().enumerate() {
                assert_eq!(next.get(var), model.get(&index).copied());
            }
            // Running in the (maybe squashed) snapshot sees the same values.
            let seen = run_with_execution_context(&next, || {
                let values: Vec<Option<u64>> = VARS.iter().map(ContextVar::get).collect();
                (BASE.get(), values)
            });
            let expected: Vec<Option<u64>> = (0..4).map(|i| model.get(&i).copied()).collect();
            assert_eq!(seen, (Some(7), expected));
            assert_eq!(next.vars().count(), 1 + model.len());
            ec = next;
        }
        // Squashed every EC_LEN_MAX tasks.
        assert_eq!(
            squashes,
            tasks as usize / EC_LEN_MAX,
            "squashed {squashes} times"
        );
        // The thread's own context never saw the tasks' changes.
        assert_eq!(get_execution_context().depth(), 1);
        assert!(VARS.iter().all(|var| var.get().is_none()));
    });
}

#[test]
fn get_topmost_reads_only_the_top_logical_context() {
    static VAR: ContextVar<i32> = ContextVar::new("var");
    static WITH_DEFAULT: ContextVar<i32> = ContextVar::with_default("with_default", 3);

    on_fresh_thread(|| {
        assert_eq!(VAR.get_topmost(), None);
        assert_eq!(WITH_DEFAULT.get(), Some(3));
        assert_eq!(WITH_DEFAULT.get_topmost(), None); // defaults do not apply

        VAR.set(1);
        assert_eq!(VAR.get_topmost(), Some(1));
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            assert_eq!(VAR.get(), Some(1));
            assert_eq!(VAR.get_topmost(), None);
            VAR.set(2);
            assert_eq!(VAR.get_topmost(), Some(2));
            run_with_logical_context(&mut LogicalContext::new(), || {
                assert_eq!(VAR.get(), Some(2));
                assert_eq!(VAR.get_topmost(), None);
            });
            assert_eq!(VAR.get_topmost(), Some(2));
        });
        assert_eq!(VAR.get_topmost(), Some(1));
        // Re-entering the same logical context finds its value on top again.
        run_with_logical_context(&mut lc, || assert_eq!(VAR.get_topmost(), Some(2)));

        let ec = get_execution_context();
        run_with_execution_context(&ec, || {
            assert_eq!(VAR.get(), Some(1));
            assert_eq!(VAR.get_topmost(), None);
        });
    });
}

#[test]
fn vars_lists_each_variable_once() {
    static A: ContextVar<u8> = ContextVar::new("vars_a");
    static B: ContextVar<u8> = ContextVar::new("vars_b");
    static C: ContextVar<String> = ContextVar::new("vars_c");
    static UNSET: ContextVar<u8> = ContextVar::with_default("vars_unset", 1);

    on_fresh_thread(|| {
        assert!(ExecutionContext::new().vars().next().is_none());
        assert!(LogicalContext::new().vars().next().is_none());
        assert!(get_execution_context().vars().next().is_none());

        A.set(1);
        B.set(1);
        let mut lc = LogicalContext::new();
        let mut nested = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            A.set(2);
            run_with_logical_context(&mut nested, || {
                A.set(3);
                C.set("c".to_string());
                let vars: Vec<_> = get_execution_context().vars().collect();
                assert_eq!(vars.len(), 3);
                assert_eq!(sorted_ids(vars.iter().copied()), {
                    let mut ids = vec![A.id(), B.id(), C.id()];
                    ids.sort();
                    ids
                });
                let mut names: Vec<&str> = vars.iter().map(|info| info.name()).collect();
                names.sort_unstable();
                assert_eq!(names, ["vars_a", "vars_b", "vars_c"]);
            });
        });
        assert_eq!(sorted_ids(lc.vars()), [A.id()]);
        let mut nested_names: Vec<&str> = nested.vars().map(|info| info.name()).collect();
        nested_names.sort_unstable();
        assert_eq!(nested_names, ["vars_a", "vars_c"]);
        assert_eq!(nested.len(), 2);
        assert!(nested.contains(&C) && !nested.contains(&B) && !nested.contains(&UNSET));
        assert_eq!(nested.get(&C).as_deref(), Some("c"));

        let mut ids = vec![A.id(), B.id()];
        ids.sort();
        assert_eq!(sorted_ids(get_execution_context().vars()), ids);
    });
}

#[test]
fn squashed_keeps_the_topmost_values() {
    static A: ContextVar<u8> = ContextVar::new("squash_a");
    static B: ContextVar<u8> = ContextVar::new("squash_b");
    static C: ContextVar<u8> = ContextVar::new("squash_c");

    on_fresh_thread(|| {
        assert!(ExecutionContext::new().squashed().is_empty());

        A.set(1);
        B.set(1);
        let single = get_execution_context();
        assert_eq!(single.depth(), 1);
        assert!(single.squashed().ptr_eq(&single));

        let deep = run_with_logical_context(&mut LogicalContext::new(), || {
            A.set(2);
            run_with_logical_context(&mut LogicalContext::new(), || {
                C.set(3);
                get_execution_context()
            })
        });
        assert_eq!(deep.depth(), 3);
        let squashed = deep.squashed();
        assert_eq!(squashed.depth(), 1);
        for var in [&A, &B, &C] {
            assert_eq!(squashed.get(var), deep.get(var));
            assert_eq!(squashed.contains(var), deep.contains(var));
        }
        assert_eq!(
            (squashed.get(&A), squashed.get(&B), squashed.get(&C)),
            (Some(2), Some(1), Some(3))
        );
        assert_eq!(sorted_ids(squashed.vars()), sorted_ids(deep.vars()));
        // The original is unchanged, and the squashed one runs like it.
        assert_eq!(deep.depth(), 3);
        let seen = run_with_execution_context(&squashed, || (A.get(), B.get(), C.get()));
        assert_eq!(seen, (Some(2), Some(1), Some(3)));
    });
}

#[test]
fn snapshots_are_isolated_from_later_changes() {
    static VAR: ContextVar<u32> = ContextVar::new("var");

    on_fresh_thread(|| {
        VAR.set(1);
        let first = get_execution_context();
        // Nothing changed: the snapshot is shared.
        assert!(get_execution_context().ptr_eq(&first));
        VAR.set(2);
        let second = get_execution_context();
        assert!(!second.ptr_eq(&first));
        let mut lc = LogicalContext::new();
        let inner = run_with_logical_context(&mut lc, || {
            VAR.set(3);
            get_execution_context()
        });
        VAR.delete().unwrap();
        assert_eq!(
            (first.get(&VAR), second.get(&VAR), inner.get(&VAR)),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!(inner.depth(), 2);
        assert!(get_execution_context().is_empty());
    });
}

// §Implementation: the chain is a linked list. A chain built by nesting contexts through
// `Context::execution_context` is squashed like `get_execution_context`'s, so it stays short
// however deep the nesting, and lookups and drops stay cheap.
#[test]
fn a_very_long_nesting_is_squashed_and_looked_up() {
    static BOTTOM: ContextVar<u32> = ContextVar::new("bottom");
    static LEVEL: ContextVar<u32> = ContextVar::new("level");
    const LEVELS: u32 = if cfg!(miri) { 300 } else { 100_000 };

    on_fresh_thread(|| {
        let mut ctx = contextvars::Context::new();
        ctx.run(|| BOTTOM.set(1));
        let mut ec = ctx.execution_context();
        for level in 0..LEVELS {
            let mut ctx = contextvars::Context::from(ec);
            ctx.run(|| LEVEL.set(level));
            ec = ctx.execution_context();
        }
        assert!(
            ec.depth() <= contextvars::EC_LEN_MAX,
            "{} layers",
            ec.depth()
        );
        assert_eq!(
            (ec.get(&BOTTOM), ec.get(&LEVEL)),
            (Some(1), Some(LEVELS - 1))
        );
        assert_eq!(ec.vars().count(), 2);
        // Inside, the fresh logical context is empty: the snapshot is `ec` itself.
        let depth = ec.depth();
        let inside = run_with_execution_context(&ec, || {
            let snapshot = get_execution_context();
            (BOTTOM.get(), snapshot.depth(), snapshot.get(&LEVEL))
        });
        assert_eq!(inside, (Some(1), depth, Some(LEVELS - 1)));
        drop(ec);
    });
}

// Beyond PEP 550: a variable can opt out of being inherited by spawned work.
#[test]
fn inherited_leaves_out_variables_that_opted_out() {
    static INHERITED: ContextVar<u32> = ContextVar::new("inherited");
    static PRIVATE: ContextVar<u32> = ContextVar::new("private").not_inherited();

    on_fresh_thread(|| {
        assert!(INHERITED.is_inherited() && !PRIVATE.is_inherited());
        INHERITED.set(1);
        let only_inherited = get_execution_context();
        assert!(only_inherited.inherited().ptr_eq(&only_inherited));

        run_with_logical_context(&mut LogicalContext::new(), || {
            PRIVATE.set(2);
            INHERITED.set(3);
            let ec = get_execution_context();
            let inherited = ec.inherited();
            assert_eq!((ec.get(&INHERITED), ec.get(&PRIVATE)), (Some(3), Some(2)));
            assert_eq!(
                (inherited.get(&INHERITED), inherited.get(&PRIVATE)),
                (Some(3), None)
            );
            assert_eq!(sorted_ids(inherited.vars()), [INHERITED.id()]);
        });
        PRIVATE.set(4);
        INHERITED.delete().unwrap();
        let inherited = get_execution_context().inherited();
        assert!(inherited.is_empty());
        assert_eq!(PRIVATE.get(), Some(4));
    });
}
