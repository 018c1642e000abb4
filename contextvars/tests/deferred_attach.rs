//! `attach_deferred` / `detach_deferred`: the context is fetched only by the first operation
//! that uses it, and otherwise behaves exactly like `attach` / `detach` (a proptest replays
//! random steps against a model, checking every lookup and the fetch count after each step).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

use contextvars::{
    AttachId, Context, ContextVar, DeferredId, DetachError, LogicalContext, attach,
    attach_deferred, copy_context, detach, detach_deferred, end_attach, end_deferred,
    run_with_logical_context,
};
use proptest::prelude::*;

mod common;
use common::on_fresh_thread;

static VARS: [ContextVar<u32>; 3] = [const { ContextVar::new("deferred.var") }; 3];

std::thread_local! {
    /// Contexts waiting to be fetched, by key.
    static PARKED: RefCell<HashMap<u64, Context>> = RefCell::new(HashMap::new());
    /// How many times `fetch` ran on this thread.
    static FETCHES: Cell<usize> = const { Cell::new(0) };
    /// What `fetch` saw of `VARS[0]` when it last ran.
    static SEEN_BY_FETCH: Cell<Option<u32>> = const { Cell::new(None) };
}

fn fetch(key: u64) -> Option<Context> {
    FETCHES.with(|fetches| fetches.set(fetches.get() + 1));
    SEEN_BY_FETCH.with(|seen| seen.set(VARS[0].get()));
    PARKED.with(|parked| parked.borrow_mut().remove(&key))
}

fn park(key: u64, context: Context) {
    PARKED.with(|parked| parked.borrow_mut().insert(key, context));
}

fn fetches() -> usize {
    FETCHES.with(Cell::get)
}

/// A context holding `VARS[0] = value`.
fn context_with(value: Option<u32>) -> Context {
    let mut context = Context::new();
    if let Some(value) = value {
        context.run(|| VARS[0].set(value));
    }
    context
}

#[test]
fn a_step_that_never_uses_its_context_does_not_fetch_it() {
    on_fresh_thread(|| {
        VARS[0].set(1);
        park(7, context_with(Some(70)));
        let id = attach_deferred(fetch, 7).unwrap();
        let back = detach_deferred(id).unwrap();
        assert!(back.is_none());
        assert_eq!(fetches(), 0);
        assert_eq!(VARS[0].get(), Some(1));
        let parked = PARKED
            .with(|parked| parked.borrow_mut().remove(&7))
            .unwrap();
        assert_eq!(parked.get(&VARS[0]), Some(70));
        // Detached: a second detach is refused.
        assert_eq!(detach_deferred(id).unwrap_err(), DetachError::NotCurrent);
    });
}

#[test]
fn the_first_use_fetches_the_context_once_and_detach_hands_it_back() {
    on_fresh_thread(|| {
        VARS[0].set(1);
        VARS[1].set(2);
        let _ = VARS[0].get(); // cached for the thread's context
        park(1, context_with(Some(10)));
        let id = attach_deferred(fetch, 1).unwrap();
        assert_eq!(VARS[0].get(), Some(10));
        assert_eq!(fetches(), 1);
        // `fetch` ran in the context below.
        assert_eq!(SEEN_BY_FETCH.with(Cell::get), Some(1));
        // The given context is a whole context: nothing of the thread's shows through.
        assert_eq!(VARS[1].get(), None);
        VARS[1].set(20);
        assert_eq!(VARS[0].get(), Some(10));
        assert_eq!(fetches(), 1);
        let back = detach_deferred(id).unwrap().unwrap();
        assert_eq!(back.get(&VARS[0]), Some(10));
        assert_eq!(back.get(&VARS[1]), Some(20));
        assert_eq!(VARS[0].get(), Some(1));
        assert_eq!(VARS[1].get(), Some(2));
    });
}

#[test]
fn a_source_with_nothing_gives_an_empty_context_never_the_one_below() {
    on_fresh_thread(|| {
        VARS[0].set(1);
        let id = attach_deferred(fetch, 404).unwrap();
        assert_eq!(VARS[0].get(), None);
        VARS[0].set(2);
        let back = detach_deferred(id).unwrap().unwrap();
        assert_eq!(back.get(&VARS[0]), Some(2));
        assert_eq!(VARS[0].get(), Some(1));
    });
}

#[test]
fn logical_contexts_pushed_before_the_first_use_stay_above_the_fetched_context() {
    on_fresh_thread(|| {
        VARS[0].set(1);
        park(3, context_with(Some(30)));
        let id = attach_deferred(fetch, 3).unwrap();
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            // An untouched logical context is pushed lazily; this set enters the deferred
            // context *below* it.
            VARS[0].set(31);
            assert_eq!(VARS[0].get(), Some(31));
        });
        assert_eq!(lc.get(&VARS[0]), Some(31));
        assert_eq!(VARS[0].get(), Some(30));
        let back = detach_deferred(id).unwrap().unwrap();
        assert_eq!(back.get(&VARS[0]), Some(30));
        assert_eq!(VARS[0].get(), Some(1));
    });
}

#[test]
fn logical_contexts_pushed_before_the_attach_stay_below_it() {
    on_fresh_thread(|| {
        VARS[0].set(1);
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || {
            park(4, context_with(None));
            let id = attach_deferred(fetch, 4).unwrap();
            VARS[0].set(40);
            let back = detach_deferred(id).unwrap().unwrap();
            assert_eq!(back.get(&VARS[0]), Some(40));
            assert_eq!(VARS[0].get(), Some(1));
            VARS[0].set(2); // into `lc`
        });
        assert_eq!(lc.get(&VARS[0]), Some(2));
        assert_eq!(VARS[0].get(), Some(1));
    });
}

#[test]
fn an_attach_on_top_enters_the_pending_one_first_and_order_is_enforced() {
    on_fresh_thread(|| {
        VARS[0].set(1);
        park(5, context_with(Some(50)));
        let outer = attach_deferred(fetch, 5).unwrap();
        let inner = attach(context_with(Some(60))).unwrap();
        assert_eq!(fetches(), 1);
        assert_eq!(VARS[0].get(), Some(60));
        // Out of order: refused, nothing changed.
        assert_eq!(detach_deferred(outer).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(VARS[0].get(), Some(60));
        assert_eq!(detach(inner).unwrap().get(&VARS[0]), Some(60));
        assert_eq!(VARS[0].get(), Some(50));
        assert_eq!(
            detach_deferred(outer).unwrap().unwrap().get(&VARS[0]),
            Some(50)
        );
        assert_eq!(VARS[0].get(), Some(1));
    });
}

#[test]
fn a_pending_attach_inside_a_scope_is_not_current_outside_it() {
    on_fresh_thread(|| {
        VARS[0].set(1);
        park(6, context_with(Some(60)));
        let id = Context::new().run(|| attach_deferred(fetch, 6).unwrap());
        // The scope ended: the pending attach was entered by leaving it, and is gone.
        assert_eq!(VARS[0].get(), Some(1));
        assert_eq!(detach_deferred(id).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(VARS[0].get(), Some(1));
    });
}

/// A detach refused because a scope began after the attach changes nothing: the pending
/// attach's context is not fetched for it (the push of a logical context that is not
/// untouched waits, and entering what waits entered the attach before).
#[test]
fn a_refused_detach_inside_a_later_scope_does_not_fetch() {
    on_fresh_thread(|| {
        park(8, context_with(Some(80)));
        let id = attach_deferred(fetch, 8).unwrap();
        // A logical context that is not untouched, made without using the current context
        // (inside a run of another one): pushing it waits.
        let mut lc = LogicalContext::new();
        Context::new().run(|| run_with_logical_context(&mut lc, || VARS[1].set(1)));
        let before = fetches();
        assert_eq!(before, 0);
        let refused = run_with_logical_context(&mut lc, || detach_deferred(id));
        assert_eq!(refused.unwrap_err(), DetachError::NotCurrent);
        let refused = Context::new().run(|| end_deferred(id));
        assert_eq!(refused.unwrap_err(), DetachError::NotCurrent);
        assert_eq!(fetches(), before, "a refusal fetched the context");
        // Still pending, and detached as such.
        assert_eq!(
            detach_deferred(id).map(|context| context.is_some()),
            Ok(false)
        );
        assert_eq!(fetches(), before);
        // A plain attach under a pending one: its refused detach and end fetch nothing
        // either.
        let plain = attach(context_with(Some(7))).unwrap();
        park(9, context_with(Some(90)));
        let pending = attach_deferred(fetch, 9).unwrap();
        assert_eq!(detach(plain).unwrap_err(), DetachError::NotCurrent);
        let refused = run_with_logical_context(&mut lc, || end_attach(plain));
        assert_eq!(refused.unwrap_err(), DetachError::NotCurrent);
        assert_eq!(fetches(), before, "a refusal fetched the context");
        assert_eq!(
            detach_deferred(pending).map(|context| context.is_some()),
            Ok(false)
        );
        assert_eq!(detach(plain).unwrap().get(&VARS[0]), Some(7));
    });
}

/// Counts its drops.
struct Counted(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

static HELD: ContextVar<Counted> = ContextVar::new("deferred.held");

/// A step that leaves an attach behind (its code panicked between `attach` and `detach`):
/// ending the deferred attach ends that attach too, hands back the context current then,
/// drops the fetched one it displaced, and leaves the thread as it was. (An attach left
/// inside a logical-context scope already ends with the scope.)
#[test]
fn ending_a_deferred_attach_ends_an_attach_the_step_left_behind() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    on_fresh_thread(|| {
        VARS[0].set(1);
        let drops = Arc::new(AtomicUsize::new(0));
        let mut task = context_with(Some(70));
        task.run(|| HELD.set(Counted(drops.clone())));
        park(9, task);
        let id = attach_deferred(fetch, 9).unwrap();
        let left = catch_unwind(AssertUnwindSafe(|| {
            VARS[1].set(5); // enters the task's context
            let left = attach(context_with(Some(80))).unwrap();
            VARS[2].set(6);
            std::panic::panic_any(left);
        }))
        .unwrap_err();
        let left = *left.downcast::<AttachId>().unwrap();
        assert_eq!(VARS[0].get(), Some(80), "the attach left behind is current");
        assert_eq!(detach_deferred(id).unwrap_err(), DetachError::NotCurrent);
        let ended = end_deferred(id).unwrap().expect("the context was fetched");
        assert_eq!(
            (ended.get(&VARS[0]), ended.get(&VARS[2])),
            (Some(80), Some(6)),
            "what was current when the step ended"
        );
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the fetched context is dropped"
        );
        assert_eq!(detach(left).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(end_deferred(id).unwrap_err(), DetachError::NotCurrent);
        // The thread's own context, and nothing of the step's above it.
        assert_eq!(
            VARS.iter().map(ContextVar::get).collect::<Vec<_>>(),
            [Some(1), None, None]
        );
        assert!(HELD.with(|held| held.is_none()));
        let mut lc = LogicalContext::new();
        run_with_logical_context(&mut lc, || VARS[1].set(2));
        assert_eq!(lc.get(&VARS[1]), Some(2));
        assert_eq!(VARS[1].get(), None);
        assert_eq!(copy_context().get(&VARS[0]), Some(1));
    });
}

/// A deferred attach's id is unique in the process: one made on another thread (where the
/// same number of deferred attaches came before) ends nothing here.
#[test]
fn a_deferred_attach_id_from_another_thread_matches_nothing() {
    let there = on_fresh_thread(|| {
        let id = attach_deferred(fetch, 1).unwrap();
        assert_eq!(
            detach_deferred(id).map(|context| context.is_some()),
            Ok(false)
        );
        id
    });
    on_fresh_thread(move || {
        park(2, context_with(Some(5)));
        let here = attach_deferred(fetch, 2).unwrap();
        assert_ne!(here, there);
        assert_eq!(VARS[0].get(), Some(5));
        assert_eq!(detach_deferred(there).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(end_deferred(there).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(VARS[0].get(), Some(5));
        let back = detach_deferred(here).unwrap().expect("fetched");
        assert_eq!(back.get(&VARS[0]), Some(5));
        assert_eq!(VARS[0].get(), None);
    });
}

/// `end_attach` of an attach with another left above it hands back the context current
/// then; attached again, it gets an id of its own, so the ended attach's id matches nothing
/// (neither that attach nor the new one), while its tokens still reset there: the logical
/// context they were made in is current again.
#[test]
fn ids_of_ended_attaches_match_nothing_when_their_context_is_attached_again() {
    on_fresh_thread(|| {
        VARS[0].set(1);
        let step = attach(context_with(Some(70))).unwrap();
        let left = attach(context_with(Some(80))).unwrap();
        let token = VARS[1].set(6);
        let mut ended = end_attach(step).unwrap();
        assert_eq!(
            (ended.get(&VARS[0]), ended.get(&VARS[1])),
            (Some(80), Some(6))
        );
        assert_eq!(VARS[0].get(), Some(1));
        let again = attach(std::mem::take(&mut ended)).unwrap();
        assert_ne!(again, left);
        assert_eq!(VARS[0].get(), Some(80));
        assert_eq!(detach(left).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(end_attach(left).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(detach(step).unwrap_err(), DetachError::NotCurrent);
        assert_eq!(VARS[1].reset(token), Ok(()));
        assert_eq!(VARS[1].get(), None);
        let back = detach(again).unwrap();
        assert_eq!(back.get(&VARS[0]), Some(80));
        assert_eq!(VARS[0].get(), Some(1));
        // An id from another thread matches nothing here.
        let here = attach(Context::new()).unwrap();
        let there = std::thread::spawn(|| {
            let id = attach(Context::new()).unwrap();
            drop(detach(id).unwrap());
            id
        })
        .join()
        .unwrap();
        assert_eq!(detach(there).unwrap_err(), DetachError::NotCurrent);
        drop(detach(here).unwrap());
    });
}

#[derive(Clone, Debug)]
enum Step {
    AttachDeferred(Option<u32>),
    Attach(Option<u32>),
    Detach,
    /// `end_deferred` (or `end_attach`, for a plain one) of the level this many levels below
    /// the topmost one (modulo their number): the levels above it end with it.
    End(usize),
    Set(usize, u32),
    Get(usize),
    Snapshot(usize),
    InLogicalContext(usize, u32),
    /// `Context::run` of a context holding `VARS[var] = value`: it replaces the whole current
    /// context, so it never fetches a pending attach, and the attach is not current in it.
    InContext(usize, u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        proptest::option::of(0..100u32).prop_map(Step::AttachDeferred),
        proptest::option::of(0..100u32).prop_map(Step::Attach),
        Just(Step::Detach),
        (0..3usize).prop_map(Step::End),
        (0..3usize, 0..100u32).prop_map(|(var, value)| Step::Set(var, value)),
        (0..3usize).prop_map(Step::Get),
        (0..3usize).prop_map(Step::Snapshot),
        (0..3usize, 0..100u32).prop_map(|(var, value)| Step::InLogicalContext(var, value)),
        (0..3usize, 0..100u32).prop_map(|(var, value)| Step::InContext(var, value)),
    ]
}

#[derive(Clone, Copy)]
enum Handle {
    Deferred(DeferredId, u64),
    Plain(AttachId),
}

/// One attached level of the model: the whole context it shows.
struct Level {
    values: BTreeMap<usize, u32>,
    handle: Handle,
    /// A deferred level whose context was fetched.
    used: bool,
}

struct Model {
    base: BTreeMap<usize, u32>,
    levels: Vec<Level>,
    fetches: usize,
}

impl Model {
    /// The current context is used: a pending level on top is fetched.
    fn use_top(&mut self) {
        if let Some(top) = self.levels.last_mut()
            && matches!(top.handle, Handle::Deferred(..))
            && !top.used
        {
            top.used = true;
            self.fetches += 1;
        }
    }

    fn top(&mut self) -> &mut BTreeMap<usize, u32> {
        match self.levels.last_mut() {
            Some(level) => &mut level.values,
            None => &mut self.base,
        }
    }
}

/// Asserts that no level of the model can end here (inside a scope opened since).
fn assert_none_ends(model: &Model) {
    for level in &model.levels {
        match level.handle {
            Handle::Deferred(id, _) => {
                assert_eq!(end_deferred(id).unwrap_err(), DetachError::NotCurrent);
            }
            Handle::Plain(id) => assert_eq!(end_attach(id).unwrap_err(), DetachError::NotCurrent),
        }
    }
}

fn replay(steps: &[Step]) {
    let mut model = Model {
        base: BTreeMap::new(),
        levels: Vec::new(),
        fetches: 0,
    };
    let mut next_key = 1u64;
    for step in steps {
        match *step {
            Step::AttachDeferred(preset) => {
                model.use_top();
                let key = next_key;
                next_key += 1;
                park(key, context_with(preset));
                let id = attach_deferred(fetch, key).unwrap();
                model.levels.push(Level {
                    values: preset.map(|value| (0, value)).into_iter().collect(),
                    handle: Handle::Deferred(id, key),
                    used: false,
                });
            }
            Step::Attach(preset) => {
                model.use_top();
                let id = attach(context_with(preset)).unwrap();
                model.levels.push(Level {
                    values: preset.map(|value| (0, value)).into_iter().collect(),
                    handle: Handle::Plain(id),
                    used: true,
                });
            }
            Step::Detach => {
                let Some(level) = model.levels.pop() else {
                    continue;
                };
                let back = match level.handle {
                    Handle::Plain(id) => detach(id).unwrap(),
                    Handle::Deferred(id, key) => match detach_deferred(id).unwrap() {
                        Some(back) => {
                            assert!(level.used, "a context nothing used was fetched");
                            back
                        }
                        None => {
                            assert!(!level.used, "a used context was not handed back");
                            PARKED
                                .with(|parked| parked.borrow_mut().remove(&key))
                                .expect("an unused context stays with its source")
                        }
                    },
                };
                for (index, var) in VARS.iter().enumerate() {
                    assert_eq!(back.get(var), level.values.get(&index).copied());
                }
            }
            Step::End(nth) => {
                if model.levels.is_empty() {
                    continue;
                }
                let index = model.levels.len() - 1 - nth % model.levels.len();
                // Only the topmost level can be pending: an attach above uses the one below.
                let pending = !model.levels[index].used;
                // The current context, which is what comes back: the topmost level's, or the
                // one below it if it is pending (it ends unused).
                let used: Vec<&Level> = model.levels[index..]
                    .iter()
                    .filter(|level| level.used)
                    .collect();
                let current = used.last().map(|level| level.values.clone());
                let handle = model.levels[index].handle;
                model.levels.truncate(index);
                let (id, key) = match handle {
                    Handle::Deferred(id, key) => (id, key),
                    Handle::Plain(id) => {
                        let back = end_attach(id).unwrap();
                        let current = current.expect("a plain level is used");
                        for (index, var) in VARS.iter().enumerate() {
                            assert_eq!(back.get(var), current.get(&index).copied());
                        }
                        // Ended: nothing can leave it again.
                        assert_eq!(end_attach(id).unwrap_err(), DetachError::NotCurrent);
                        assert_eq!(detach(id).unwrap_err(), DetachError::NotCurrent);
                        continue;
                    }
                };
                match end_deferred(id).unwrap() {
                    Some(back) => {
                        assert!(!pending, "a context nothing used was fetched");
                        let current = current.expect("a used level");
                        for (index, var) in VARS.iter().enumerate() {
                            assert_eq!(back.get(var), current.get(&index).copied());
                        }
                    }
                    None => {
                        assert!(pending, "a used context was not handed back");
                        PARKED
                            .with(|parked| parked.borrow_mut().remove(&key))
                            .expect("an unused context stays with its source");
                    }
                }
                // Ended: nothing can leave it again.
                assert_eq!(end_deferred(id).unwrap_err(), DetachError::NotCurrent);
            }
            Step::Set(var, value) => {
                model.use_top();
                VARS[var].set(value);
                model.top().insert(var, value);
            }
            Step::Get(var) => {
                model.use_top();
                assert_eq!(VARS[var].get(), model.top().get(&var).copied());
            }
            Step::Snapshot(var) => {
                model.use_top();
                assert_eq!(
                    copy_context().get(&VARS[var]),
                    model.top().get(&var).copied()
                );
            }
            Step::InLogicalContext(var, value) => {
                model.use_top();
                let before = model.top().get(&var).copied();
                let mut lc = LogicalContext::new();
                run_with_logical_context(&mut lc, || {
                    VARS[var].set(value);
                    assert_eq!(VARS[var].get(), Some(value));
                    // The scope is still open: no attach below it can end here.
                    assert_none_ends(&model);
                });
                assert_eq!(lc.get(&VARS[var]), Some(value));
                assert_eq!(VARS[var].get(), before);
            }
            Step::InContext(var, value) => {
                let mut context = Context::new();
                context.run(|| VARS[var].set(value));
                let top = model.levels.last().map(|level| &level.handle);
                let seen = context.run(|| {
                    // Nor can any attach made outside the run end inside it.
                    assert_none_ends(&model);
                    // The attach on top is not the current one inside the run.
                    match top {
                        Some(Handle::Deferred(id, _)) => {
                            assert_eq!(detach_deferred(*id).unwrap_err(), DetachError::NotCurrent);
                        }
                        Some(Handle::Plain(id)) => {
                            assert_eq!(detach(*id).unwrap_err(), DetachError::NotCurrent);
                        }
                        None => {}
                    }
                    VARS.iter().map(ContextVar::get).collect::<Vec<_>>()
                });
                let expected: Vec<_> = (0..VARS.len())
                    .map(|i| (i == var).then_some(value))
                    .collect();
                assert_eq!(seen, expected);
            }
        }
        assert_eq!(fetches(), model.fetches, "after {step:?}");
        // Every variable, unless the top level waits to be fetched (a read would fetch it).
        if model.levels.last().is_none_or(|level| level.used) {
            for (index, var) in VARS.iter().enumerate() {
                assert_eq!(
                    var.get(),
                    model.top().get(&index).copied(),
                    "after {step:?}"
                );
            }
            assert_eq!(
                fetches(),
                model.fetches,
                "reads of a used context fetch nothing"
            );
        }
    }
    while let Some(level) = model.levels.pop() {
        let back = match level.handle {
            Handle::Plain(id) => Some(detach(id).unwrap()),
            Handle::Deferred(id, key) => {
                let back = detach_deferred(id).unwrap();
                assert_eq!(back.is_some(), level.used, "handed back iff used");
                if back.is_none() {
                    PARKED
                        .with(|parked| parked.borrow_mut().remove(&key))
                        .expect("an unused context stays with its source");
                }
                back
            }
        };
        if let Some(back) = back {
            for (index, var) in VARS.iter().enumerate() {
                assert_eq!(back.get(var), level.values.get(&index).copied());
            }
        }
    }
    for (index, var) in VARS.iter().enumerate() {
        assert_eq!(var.get(), model.base.get(&index).copied());
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 128 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn deferred_attaches_behave_like_attaches_and_fetch_only_when_used(
        steps in prop::collection::vec(step(), 0..if cfg!(miri) { 6 } else { 24 })
    ) {
        on_fresh_thread(|| replay(&steps));
    }
}

// --- A fetch that changes the attaches below it -----------------------------------------------

static BELOW: ContextVar<String> = ContextVar::new("deferred.below");
static OTHER: ContextVar<String> = ContextVar::new("deferred.other");

std::thread_local! {
    /// The attach a fetch below detaches.
    static TO_DETACH: Cell<Option<AttachId>> = const { Cell::new(None) };
    /// The attach a fetch below makes.
    static MADE: Cell<Option<AttachId>> = const { Cell::new(None) };
}

fn fetch_detaching_the_attach_below(_key: u64) -> Option<Context> {
    let id = TO_DETACH.with(Cell::take).expect("an attach to detach");
    drop(detach(id).expect("the attach below is current"));
    None
}

fn fetch_attaching_below(_key: u64) -> Option<Context> {
    let mut context = Context::new();
    context.run(|| BELOW.set("attached by the fetch".to_string()));
    MADE.with(|made| made.set(Some(attach(context).expect("not in teardown"))));
    None
}

/// A fetch (user code) that detaches the attach below the deferred one: once the deferred
/// attach is detached, the context current is the one under both, and reads see its values,
/// not cached reads of the detached (and dropped) context.
#[test]
fn a_fetch_that_detaches_the_attach_below_leaves_reads_right() {
    on_fresh_thread(|| {
        BELOW.set("thread".to_string());
        let mut attached = Context::new();
        attached.run(|| BELOW.set("attached".to_string()));
        let below = attach(attached).unwrap();
        assert_eq!(BELOW.get().as_deref(), Some("attached")); // cached under the attach
        TO_DETACH.with(|id| id.set(Some(below)));
        let deferred = attach_deferred(fetch_detaching_the_attach_below, 0).unwrap();
        assert_eq!(OTHER.get(), None); // fetches: the attach below is detached and dropped
        let back = detach_deferred(deferred).unwrap().expect("it was used");
        assert!(back.is_empty());
        assert_eq!(BELOW.get().as_deref(), Some("thread"));
        assert_eq!(BELOW.with(|v| v.cloned()).as_deref(), Some("thread"));
    });
}

/// A fetch that attaches a context of its own and leaves it: once the deferred attach is
/// detached, that context is current, and reads see it.
#[test]
fn a_fetch_that_attaches_below_leaves_reads_right() {
    on_fresh_thread(|| {
        BELOW.set("thread".to_string());
        assert_eq!(BELOW.get().as_deref(), Some("thread"));
        let deferred = attach_deferred(fetch_attaching_below, 0).unwrap();
        assert_eq!(OTHER.get(), None); // fetches
        drop(detach_deferred(deferred).unwrap());
        assert_eq!(BELOW.get().as_deref(), Some("attached by the fetch"));
        let made = MADE.with(Cell::take).expect("the fetch attached");
        assert_eq!(
            detach(made).unwrap().get(&BELOW).as_deref(),
            Some("attached by the fetch")
        );
        assert_eq!(BELOW.get().as_deref(), Some("thread"));
    });
}

/// A value that, when dropped, makes a deferred attach whose fetch panics.
struct AttachesOnDrop(String, bool);

impl Drop for AttachesOnDrop {
    fn drop(&mut self) {
        if self.1 {
            drop(attach_deferred(panicking_fetch, 0));
        }
    }
}

fn panicking_fetch(_key: u64) -> Option<Context> {
    panic!("the source failed");
}

/// `try_reset` drops the token (user code: the value below it) after the reset: a value it
/// displaced while a borrow lends it stays alive until the borrow ends, even when that user
/// code left a deferred attach whose fetch panics.
#[test]
fn a_value_try_reset_displaces_outlives_the_borrow_that_lends_it() {
    static X: ContextVar<AttachesOnDrop> = ContextVar::new("deferred.try_reset");
    on_fresh_thread(|| {
        X.set(AttachesOnDrop("base".into(), true));
        let mut lc = LogicalContext::new();
        let token =
            run_with_logical_context(&mut lc, || X.set(AttachesOnDrop("lent".into(), false)));
        X.delete().unwrap(); // the token now holds the last reference to "base"
        let read = run_with_logical_context(&mut lc, || {
            X.with(|lent| {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _ = X.try_reset(token);
                }));
                // The reset applied; whatever the fetch did, the lent value is alive.
                let _ = outcome;
                lent.map(|value| value.0.clone())
            })
        });
        assert_eq!(read.as_deref(), Some("lent"));
        assert!(lc.get_ref(&X).is_none(), "the reset applied");
    });
}
