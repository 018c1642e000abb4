//! Model-based property test: random interleavings of every operation that reads or changes
//! the current execution context, run against the real crate and against a naive model (a
//! stack of `HashMap`s), compared after every step.
//!
//! The real API is closure-scoped (`run_with_logical_context`, `Context::run`,
//! `run_with_execution_context`, `ContextVar::scope`), so the interpreter is recursive: an op
//! that opens a scope runs the following ops inside it until the matching [`Op::End`] (or the
//! end of the case), then closes it.

use std::collections::{HashMap, HashSet};
use std::mem;
use std::slice;
use std::sync::{Arc, Barrier};

use contextvars::{
    Context, ContextVar, EC_LEN_MAX, ExecutionContext, LogicalContext, Token, TokenError, VarId,
    copy_context, get_execution_context, run_with_execution_context, run_with_logical_context,
};
use proptest::prelude::*;

const VAR_COUNT: usize = 4;
const DEFAULT: u64 = 7_777;

/// The variables under test; the last one has a default.
static VARS: [ContextVar<u64>; VAR_COUNT] = [
    ContextVar::new("model0"),
    ContextVar::new("model1"),
    ContextVar::new("model2"),
    ContextVar::with_default("model3", DEFAULT),
];

fn default_of(var: usize) -> Option<u64> {
    (var == VAR_COUNT - 1).then_some(DEFAULT)
}

#[derive(Clone, Debug)]
enum Op {
    /// `VARS[var].set(value)`, keeping the token as the variable's last token.
    Set(usize, u64),
    Delete(usize),
    /// Reset the first variable with the last token of the second.
    Reset(usize, usize),
    /// Opens `run_with_logical_context` with a new logical context (kept afterwards).
    PushNew,
    /// Opens `run_with_logical_context` with a kept logical context: a generator resumed.
    PushKept(Pick),
    /// Opens `run_with_logical_context` with a clone of a kept logical context.
    PushClone(Pick),
    NewContext,
    CopyContext,
    CloneContext(Pick),
    /// Opens `Context::run` on a kept context.
    Enter(Pick),
    /// Keeps `get_execution_context()`.
    Snapshot,
    /// Keeps `Context::execution_context()` of a kept context.
    ContextSnapshot(Pick),
    /// Keeps `Context::from` a kept snapshot.
    FromSnapshot(Pick),
    /// Keeps `squashed()` of a kept snapshot.
    Squash(Pick),
    /// Opens `run_with_execution_context` on a kept snapshot.
    RunWithSnapshot(Pick),
    /// Opens `VARS[var].scope(value, ..)`.
    Scope(usize, u64),
    /// Closes the innermost open scope.
    End,
    Get(usize),
    With(usize),
    GetTopmost(usize),
    /// Inside `VARS[read].with(..)`, sets `VARS[write]` and drops the token it replaces, then
    /// checks that the borrowed value is intact.
    WithSet {
        read: usize,
        write: usize,
        value: u64,
    },
    /// Compares `get_execution_context().vars()` and `copy_context().len()` with the model.
    CheckVars,
}

/// Picks one of the kept objects of some kind: `Pick(n)` is the `n % len`-th.
#[derive(Clone, Copy, Debug)]
struct Pick(usize);

impl Pick {
    fn index(self, len: usize) -> usize {
        self.0 % len
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    (0..64_usize).prop_map(Pick)
}

fn var() -> impl Strategy<Value = usize> {
    0..VAR_COUNT
}

fn value() -> impl Strategy<Value = u64> {
    0..50_u64
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (var(), value()).prop_map(|(var, value)| Op::Set(var, value)),
        3 => var().prop_map(Op::Delete),
        3 => var().prop_map(|var| Op::Reset(var, var)),
        1 => (var(), var()).prop_map(|(var, with)| Op::Reset(var, with)),
        3 => Just(Op::PushNew),
        3 => pick().prop_map(Op::PushKept),
        1 => pick().prop_map(Op::PushClone),
        1 => Just(Op::NewContext),
        2 => Just(Op::CopyContext),
        1 => pick().prop_map(Op::CloneContext),
        3 => pick().prop_map(Op::Enter),
        2 => Just(Op::Snapshot),
        1 => pick().prop_map(Op::ContextSnapshot),
        1 => pick().prop_map(Op::FromSnapshot),
        1 => pick().prop_map(Op::Squash),
        3 => pick().prop_map(Op::RunWithSnapshot),
        1 => (var(), value()).prop_map(|(var, value)| Op::Scope(var, value)),
        6 => Just(Op::End),
        1 => var().prop_map(Op::Get),
        1 => var().prop_map(Op::With),
        1 => var().prop_map(Op::GetTopmost),
        2 => (var(), var(), value())
            .prop_map(|(read, write, value)| Op::WithSet { read, write, value }),
        1 => Just(Op::CheckVars),
    ]
}

type Map = HashMap<usize, u64>;

/// A logical context of the model; `id` stands for the real one's identity (for tokens).
#[derive(Clone, Debug)]
struct ModelLc {
    id: u64,
    map: Map,
}

/// An execution context snapshot of the model: its non-empty layers, bottom to top.
#[derive(Clone, Debug, Default)]
struct ModelEc {
    layers: Vec<Map>,
}

impl ModelEc {
    fn get(&self, var: usize) -> Option<u64> {
        self.layers
            .iter()
            .rev()
            .find_map(|layer| layer.get(&var).copied())
    }

    fn with_layer(&self, map: &Map) -> ModelEc {
        let mut layers = self.layers.clone();
        if !map.is_empty() {
            layers.push(map.clone());
        }
        ModelEc { layers }
    }

    fn merged(&self) -> Map {
        let mut merged = Map::new();
        for layer in &self.layers {
            merged.extend(layer);
        }
        merged
    }

    fn squashed(&self) -> ModelEc {
        if self.layers.len() <= 1 {
            return self.clone();
        }
        ModelEc {
            layers: vec![self.merged()],
        }
    }
}

/// What a thread runs in: a snapshot at the bottom, logical contexts pushed on it, and the
/// topmost logical context. A kept `Context` is a frame with nothing pushed.
#[derive(Clone, Debug)]
struct ModelFrame {
    base: ModelEc,
    pushed: Vec<ModelLc>,
    top: ModelLc,
}

impl ModelFrame {
    fn new(base: ModelEc, top_id: u64) -> Self {
        ModelFrame {
            base,
            pushed: Vec::new(),
            top: ModelLc {
                id: top_id,
                map: Map::new(),
            },
        }
    }

    fn get(&self, var: usize) -> Option<u64> {
        self.top
            .map
            .get(&var)
            .or_else(|| self.pushed.iter().rev().find_map(|lc| lc.map.get(&var)))
            .copied()
            .or_else(|| self.base.get(var))
    }

    /// `get_execution_context()`: empty logical contexts are left out, and a chain longer
    /// than `EC_LEN_MAX` is squashed into one.
    fn snapshot(&self) -> ModelEc {
        let mut ec = self.base.clone();
        for lc in self.pushed.iter().chain([&self.top]) {
            ec = ec.with_layer(&lc.map);
        }
        if ec.layers.len() > EC_LEN_MAX {
            ec = ec.squashed();
        }
        ec
    }
}

struct ModelToken {
    var: usize,
    lc: u64,
    old: Option<u64>,
}

/// The real objects a case keeps, each with its model. `None` marks an object that is
/// currently entered (taken out to run in).
struct World {
    next_id: u64,
    frame: ModelFrame,
    snapshots: Vec<(ExecutionContext, ModelEc)>,
    contexts: Vec<Option<(Context, ModelFrame)>>,
    lcs: Vec<Option<(LogicalContext, ModelLc)>>,
    tokens: Vec<Option<(Token<u64>, ModelToken)>>,
}

impl World {
    fn new() -> Self {
        World {
            next_id: 2,
            frame: ModelFrame::new(ModelEc::default(), 1),
            snapshots: Vec::new(),
            contexts: Vec::new(),
            lcs: Vec::new(),
            tokens: (0..VAR_COUNT).map(|_| None).collect(),
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn fresh_lc(&mut self) -> ModelLc {
        ModelLc {
            id: self.fresh_id(),
            map: Map::new(),
        }
    }

    fn expected(&self, var: usize) -> Option<u64> {
        self.frame.get(var).or(default_of(var))
    }

    fn set(&mut self, var: usize, value: u64) {
        let shown = self.frame.get(var);
        let token = VARS[var].set(value);
        let old = self.frame.top.map.insert(var, value);
        // PEP 567: the value the variable had, from whichever layer showed it.
        assert_eq!(token.old_value(), shown, "old value of the token of {var}");
        assert_eq!(token.var_id(), VARS[var].id());
        let model = ModelToken {
            var,
            lc: self.frame.top.id,
            old,
        };
        self.tokens[var] = Some((token, model));
    }

    fn reset(&mut self, var: usize, with: usize) {
        let top_id = self.frame.top.id;
        // `reset` consumes the token, whatever the outcome.
        let Some((token, model)) = self.tokens[with].take() else {
            return;
        };
        let real = VARS[var].reset(token);
        let expected = if model.var != var {
            Err(TokenError::WrongVar)
        } else if model.lc != top_id {
            Err(TokenError::WrongContext)
        } else {
            match model.old {
                Some(old) => self.frame.top.map.insert(var, old),
                None => self.frame.top.map.remove(&var),
            };
            Ok(())
        };
        assert_eq!(real, expected, "reset of {var} with the token of {with}");
    }

    /// Compares everything observable with the model.
    fn check(&self) {
        for (var, context_var) in VARS.iter().enumerate() {
            let found = self.frame.get(var);
            let expected = found.or(default_of(var));
            assert_eq!(context_var.get(), expected, "get of {var}");
            assert_eq!(context_var.with(|v| v.copied()), expected, "with of {var}");
            let topmost = self.frame.top.map.get(&var).copied();
            assert_eq!(context_var.get_topmost(), topmost, "get_topmost of {var}");
            assert_eq!(context_var.is_set(), found.is_some(), "is_set of {var}");
        }
        for (index, (ec, model)) in self.snapshots.iter().enumerate() {
            assert_eq!(ec.depth(), model.layers.len(), "len of snapshot {index}");
            assert!(ec.depth() <= EC_LEN_MAX + 1);
            assert_eq!(ec.is_empty(), model.layers.is_empty());
            assert_eq!(ids_of(ec.vars()), model_ids(&model.merged()));
            for (var, context_var) in VARS.iter().enumerate() {
                assert_eq!(
                    ec.get(context_var),
                    model.get(var),
                    "snapshot {index}, {var}"
                );
                assert_eq!(ec.contains(context_var), model.get(var).is_some());
            }
        }
        for (index, (ctx, model)) in self.contexts.iter().flatten().enumerate() {
            let merged = model.base.with_layer(&model.top.map).merged();
            assert_eq!(ctx.len(), merged.len(), "len of context {index}");
            assert_eq!(ctx.is_empty(), merged.is_empty());
            assert_eq!(ids_of(ctx.vars()), model_ids(&merged));
            for (var, context_var) in VARS.iter().enumerate() {
                assert_eq!(
                    ctx.get(context_var),
                    model.get(var),
                    "context {index}, {var}"
                );
                assert_eq!(ctx.contains(context_var), model.get(var).is_some());
            }
        }
        for (index, (lc, model)) in self.lcs.iter().flatten().enumerate() {
            assert_eq!(lc.len(), model.map.len(), "len of logical context {index}");
            assert_eq!(lc.is_empty(), model.map.is_empty());
            assert_eq!(ids_of(lc.vars()), model_ids(&model.map));
            for (var, context_var) in VARS.iter().enumerate() {
                assert_eq!(lc.get(context_var), model.map.get(&var).copied());
            }
        }
    }
}

fn ids_of(vars: impl IntoIterator<Item = contextvars::VarInfo>) -> HashSet<VarId> {
    let vars: Vec<VarId> = vars.into_iter().map(|info| info.id()).collect();
    let ids: HashSet<VarId> = vars.iter().copied().collect();
    assert_eq!(ids.len(), vars.len(), "a variable is listed twice");
    ids
}

fn model_ids(map: &Map) -> HashSet<VarId> {
    map.keys().map(|&var| VARS[var].id()).collect()
}

/// Runs ops until an `End` closes this scope (at depth 0, `End` does nothing).
fn interpret(ops: &mut slice::Iter<'_, Op>, world: &mut World, depth: usize) {
    world.check();
    while let Some(op) = ops.next() {
        match op {
            Op::End if depth > 0 => return,
            Op::End => {}
            &Op::Set(var, value) => world.set(var, value),
            &Op::Delete(var) => {
                let expected = world.frame.top.map.remove(&var).is_some();
                assert_eq!(VARS[var].delete().is_ok(), expected, "delete of {var}");
            }
            &Op::Reset(var, with) => world.reset(var, with),
            Op::PushNew => {
                let model = world.fresh_lc();
                world.lcs.push(Some((LogicalContext::new(), model)));
                let slot = world.lcs.len() - 1;
                push(ops, world, depth, slot);
            }
            Op::PushKept(index) => {
                if !world.lcs.is_empty() {
                    let slot = index.index(world.lcs.len());
                    if world.lcs[slot].is_some() {
                        push(ops, world, depth, slot);
                    }
                }
            }
            Op::PushClone(index) => {
                if !world.lcs.is_empty() {
                    let slot = index.index(world.lcs.len());
                    let id = world.fresh_id();
                    if let Some((lc, model)) = &world.lcs[slot] {
                        let clone = (
                            lc.clone(),
                            ModelLc {
                                id,
                                map: model.map.clone(),
                            },
                        );
                        world.lcs.push(Some(clone));
                        push(ops, world, depth, world.lcs.len() - 1);
                    }
                }
            }
            Op::NewContext => {
                let model = ModelFrame::new(ModelEc::default(), world.fresh_id());
                world.contexts.push(Some((Context::new(), model)));
            }
            Op::CopyContext => {
                let model = ModelFrame::new(world.frame.snapshot(), world.fresh_id());
                world.contexts.push(Some((copy_context(), model)));
            }
            Op::CloneContext(index) => {
                if !world.contexts.is_empty() {
                    let slot = index.index(world.contexts.len());
                    let id = world.fresh_id();
                    if let Some((ctx, model)) = &world.contexts[slot] {
                        let mut model = model.clone();
                        model.top.id = id;
                        world.contexts.push(Some((ctx.clone(), model)));
                    }
                }
            }
            Op::Enter(index) => {
                if !world.contexts.is_empty() {
                    let slot = index.index(world.contexts.len());
                    if let Some((mut ctx, model)) = world.contexts[slot].take() {
                        let saved = mem::replace(&mut world.frame, model);
                        ctx.run(|| interpret(ops, world, depth + 1));
                        let model = mem::replace(&mut world.frame, saved);
                        assert!(model.pushed.is_empty());
                        world.contexts[slot] = Some((ctx, model));
                    }
                }
            }
            Op::Snapshot => {
                let snapshot = (get_execution_context(), world.frame.snapshot());
                world.snapshots.push(snapshot);
            }
            Op::ContextSnapshot(index) => {
                if !world.contexts.is_empty() {
                    let slot = index.index(world.contexts.len());
                    if let Some((ctx, model)) = &world.contexts[slot] {
                        let snapshot = (
                            ctx.execution_context(),
                            model.base.with_layer(&model.top.map),
                        );
                        world.snapshots.push(snapshot);
                    }
                }
            }
            Op::FromSnapshot(index) => {
                if !world.snapshots.is_empty() {
                    let (ec, model) = &world.snapshots[index.index(world.snapshots.len())];
                    let (ctx, base) = (Context::from(ec.clone()), model.clone());
                    let model = ModelFrame::new(base, world.fresh_id());
                    world.contexts.push(Some((ctx, model)));
                }
            }
            Op::Squash(index) => {
                if !world.snapshots.is_empty() {
                    let (ec, model) = &world.snapshots[index.index(world.snapshots.len())];
                    let squashed = (ec.squashed(), model.squashed());
                    assert!(squashed.0.depth() <= 1);
                    world.snapshots.push(squashed);
                }
            }
            Op::RunWithSnapshot(index) => {
                if !world.snapshots.is_empty() {
                    let (ec, model) = world.snapshots[index.index(world.snapshots.len())].clone();
                    let inner = ModelFrame::new(model, world.fresh_id());
                    let saved = mem::replace(&mut world.frame, inner);
                    run_with_execution_context(&ec, || interpret(ops, world, depth + 1));
                    world.frame = saved;
                }
            }
            &Op::Scope(var, value) => {
                let before = world.frame.top.map.insert(var, value);
                VARS[var].scope(value, || interpret(ops, world, depth + 1));
                match before {
                    Some(before) => world.frame.top.map.insert(var, before),
                    None => world.frame.top.map.remove(&var),
                };
            }
            &Op::Get(var) => assert_eq!(VARS[var].get(), world.expected(var)),
            &Op::With(var) => {
                let expected = world.expected(var);
                VARS[var].with(|value| assert_eq!(value.copied(), expected));
            }
            &Op::GetTopmost(var) => {
                let expected = world.frame.top.map.get(&var).copied();
                assert_eq!(VARS[var].get_topmost(), expected);
            }
            &Op::WithSet { read, write, value } => {
                let expected = world.expected(read);
                VARS[read].with(|borrowed| {
                    assert_eq!(borrowed.copied(), expected);
                    world.set(write, value);
                    assert_eq!(VARS[write].get(), Some(value));
                    assert_eq!(VARS[read].get(), world.expected(read));
                    // The borrowed value survived being replaced.
                    assert_eq!(borrowed.copied(), expected);
                });
            }
            Op::CheckVars => {
                let snapshot = world.frame.snapshot();
                let merged = snapshot.merged();
                assert_eq!(ids_of(get_execution_context().vars()), model_ids(&merged));
                assert_eq!(copy_context().len(), merged.len());
                assert_eq!(get_execution_context().depth(), snapshot.layers.len());
            }
        }
        world.check();
    }
}

/// Runs the ops that follow with the kept logical context in `slot` pushed.
fn push(ops: &mut slice::Iter<'_, Op>, world: &mut World, depth: usize, slot: usize) {
    let (mut lc, model) = world.lcs[slot].take().expect("not in use");
    let below = mem::replace(&mut world.frame.top, model);
    world.frame.pushed.push(below);
    run_with_logical_context(&mut lc, || interpret(ops, world, depth + 1));
    let below = world.frame.pushed.pop().expect("pushed above");
    let model = mem::replace(&mut world.frame.top, below);
    world.lcs[slot] = Some((lc, model));
}

/// Runs one case from an empty execution context and checks the end state.
fn run_case(ops: &[Op]) {
    let mut world = World::new();
    interpret(&mut ops.iter(), &mut world, 0);
    world.check();
}

/// Runs `f` on a new thread (whose execution context starts empty), re-raising its panic.
fn on_fresh_thread(f: impl FnOnce() + Send) {
    std::thread::scope(|scope| {
        if let Err(panic) = scope.spawn(f).join() {
            std::panic::resume_unwind(panic);
        }
    });
}

/// Operations per generated case: shorter under Miri, where every step's full check of the
/// context against the model costs milliseconds.
const OPS: usize = if cfg!(miri) { 24 } else { 100 };

/// `cases` cases, or a couple under Miri (which also cannot read the regressions file).
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(if cfg!(miri) { 2 } else { cases });
    if cfg!(miri) {
        config.failure_persistence = None;
    }
    config
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn matches_the_model(ops in prop::collection::vec(op(), 0..OPS)) {
        on_fresh_thread(|| run_case(&ops));
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Four cases at once on four threads: each sees only its own values (the cache and the
    /// current context are per thread).
    #[test]
    fn concurrent_cases_match_their_models(
        cases in prop::collection::vec(prop::collection::vec(op(), 0..OPS), if cfg!(miri) { 2 } else { 4 }),
    ) {
        let barrier = Arc::new(Barrier::new(cases.len()));
        std::thread::scope(|scope| {
            let handles: Vec<_> = cases
                .iter()
                .map(|ops| {
                    let barrier = Arc::clone(&barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        run_case(ops);
                    })
                })
                .collect();
            for handle in handles {
                if let Err(panic) = handle.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }
}

const MANY: usize = 70;

/// More variables than the per-thread lookup cache has slots, so they evict one another.
static MANY_VARS: [ContextVar<u64>; MANY] = [const { ContextVar::new("many") }; MANY];

#[derive(Clone, Debug)]
enum ManyOp {
    Set(usize, u64),
    Delete(usize),
    /// Opens `run_with_logical_context` with a new logical context, until `Pop`.
    Push,
    Pop,
    /// Reads the variable and the ones that may share its cache slot.
    Read(usize),
    ReadAll,
}

fn many_op() -> impl Strategy<Value = ManyOp> {
    let var = 0..MANY;
    prop_oneof![
        8 => (var.clone(), value()).prop_map(|(var, value)| ManyOp::Set(var, value)),
        2 => var.clone().prop_map(ManyOp::Delete),
        2 => Just(ManyOp::Push),
        2 => Just(ManyOp::Pop),
        6 => var.prop_map(ManyOp::Read),
        1 => Just(ManyOp::ReadAll),
    ]
}

fn many_expected(stack: &[Map], var: usize) -> Option<u64> {
    stack.iter().rev().find_map(|lc| lc.get(&var).copied())
}

fn check_many(stack: &[Map], var: usize) {
    for other in (var % 32..MANY).step_by(32) {
        assert_eq!(
            MANY_VARS[other].get(),
            many_expected(stack, other),
            "var {other}"
        );
    }
    assert_eq!(MANY_VARS[var].get(), many_expected(stack, var), "var {var}");
}

fn interpret_many(ops: &mut slice::Iter<'_, ManyOp>, stack: &mut Vec<Map>) {
    while let Some(op) = ops.next() {
        match *op {
            ManyOp::Set(var, value) => {
                MANY_VARS[var].set(value);
                stack.last_mut().unwrap().insert(var, value);
                check_many(stack, var);
            }
            ManyOp::Delete(var) => {
                let expected = stack.last_mut().unwrap().remove(&var).is_some();
                assert_eq!(MANY_VARS[var].delete().is_ok(), expected);
                check_many(stack, var);
            }
            ManyOp::Push => {
                stack.push(Map::new());
                run_with_logical_context(&mut LogicalContext::new(), || {
                    interpret_many(ops, stack);
                });
                stack.pop();
            }
            ManyOp::Pop if stack.len() > 1 => return,
            ManyOp::Pop => {}
            ManyOp::Read(var) => check_many(stack, var),
            ManyOp::ReadAll => {
                for (var, context_var) in MANY_VARS.iter().enumerate() {
                    assert_eq!(context_var.get(), many_expected(stack, var), "var {var}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Variables that share a cache slot never see each other's values.
    #[test]
    fn many_variables_sharing_cache_slots_match_the_model(
        ops in prop::collection::vec(many_op(), 0..OPS),
    ) {
        on_fresh_thread(|| {
            let mut stack = vec![Map::new()];
            interpret_many(&mut ops.iter(), &mut stack);
            for (var, context_var) in MANY_VARS.iter().enumerate() {
                assert_eq!(context_var.get(), many_expected(&stack, var), "var {var}");
            }
        });
    }
}

/// A fixed case that reaches every kind of op, nested, so the property tests' coverage does
/// not depend on luck.
#[test]
fn a_long_fixed_case_matches_the_model() {
    use Op::*;
    let ops = vec![
        Set(0, 1),
        Set(3, 2),
        Snapshot,
        PushNew,
        Set(1, 3),
        WithSet {
            read: 1,
            write: 1,
            value: 4,
        },
        CopyContext,
        Snapshot,
        End,
        Reset(1, 1),
        Enter(Pick(0)),
        Set(2, 5),
        Scope(2, 6),
        Delete(2),
        CheckVars,
        End,
        Reset(2, 2),
        End,
        PushKept(Pick(0)),
        Reset(1, 1),
        Delete(1),
        End,
        RunWithSnapshot(Pick(1)),
        Set(0, 9),
        Reset(0, 0),
        Reset(0, 3),
        CheckVars,
        End,
        CloneContext(Pick(0)),
        ContextSnapshot(Pick(1)),
        FromSnapshot(Pick(2)),
        Squash(Pick(1)),
        PushClone(Pick(0)),
        Get(2),
        With(0),
        GetTopmost(3),
        End,
        CheckVars,
    ];
    on_fresh_thread(|| run_case(&ops));
}

/// Deep nesting of logical contexts and snapshot runs, past `EC_LEN_MAX`.
#[test]
fn a_deep_case_squashes_and_matches_the_model() {
    let mut ops = Vec::new();
    let levels: u64 = if cfg!(miri) { 20 } else { 40 };
    for level in 0..levels {
        ops.push(Op::Set((level % 4) as usize, level));
        // Every kept snapshot is compared with its model after each step: under Miri, keep
        // fewer, and check the variables only once the stack nears `EC_LEN_MAX`.
        if !cfg!(miri) || level % 5 == 0 {
            ops.push(Op::Snapshot);
        }
        if !cfg!(miri) || level + 6 >= levels {
            ops.push(Op::CheckVars);
        }
        if level % 2 == 0 {
            ops.push(Op::PushNew);
        } else {
            ops.push(Op::RunWithSnapshot(Pick(level as usize)));
        }
    }
    on_fresh_thread(|| run_case(&ops));
}
