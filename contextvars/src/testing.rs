//! A reference model of PEP 550 / PEP 567 and scripts of context operations to check an
//! implementation against it (feature `testing`).
//!
//! - [`Op`] is one operation on context variables and contexts: set, delete, get, push and
//!   pop a logical context, enter and leave a [`Context`], take a snapshot and run in it,
//!   reset with a token. A [`Script`] is a sequence of them.
//! - [`Model`] is a deliberately naive execution context: a `Vec` of `HashMap`s for the
//!   logical contexts, a stack of entered contexts, a list of snapshots. [`Model::apply`]
//!   says what each operation must return ([`Expected`]), following the PEPs rather than this
//!   crate's code.
//! - [`Script::run_against_contextvars`] replays a script on this crate's API and compares
//!   every result, and every variable's value in every context, with the model after each
//!   operation.
//!
//! Code that builds on contextvars (an executor, an interpreter, a generator library) can
//! replay the same scripts against its own way of running things: map each scope-opening
//! [`Expected::Entered`] to its own construct (run a generator step, poll a task, enter a
//! fiber) and compare what it observes with the model. Scripts can be generated with
//! `arbitrary` (feature `arbitrary`, for fuzzing) or proptest (feature `proptest`:
//! `Script::strategy`, `Op::strategy`, `any::<Script>()`).
//!
//! ```
//! use contextvars::ContextVar;
//! use contextvars::testing::{ContextSource, Op, Script};
//!
//! static A: ContextVar<u64> = ContextVar::new("a");
//! static B: ContextVar<u64> = ContextVar::new("b");
//!
//! // A generator sets A in its own logical context and resets it at its next step.
//! let script = Script::from(vec![
//!     Op::Set { var: 0, value: 1 },
//!     Op::PushLc,
//!     Op::Set { var: 0, value: 2 },
//!     Op::PopLc,
//!     Op::Get(0), // 1: the generator's set stayed in its logical context
//!     Op::EnterContext(ContextSource::Copy),
//!     Op::ResumeLc(0),
//!     Op::Reset { var: 0, back: 0 }, // the generator's token, in the generator's context
//!     Op::Get(0),
//!     Op::PopLc,
//!     Op::ExitContext,
//!     Op::Set { var: 1, value: 5 },
//! ]);
//! script.run_against_contextvars(&[&A, &B]).unwrap();
//! // The replay ran in a context of its own: the caller's is untouched.
//! assert_eq!(A.get(), None);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::{
    Context, ContextVar, ExecutionContext, LogicalContext, Token, TokenError, copy_context,
    get_execution_context, run_with_execution_context, run_with_logical_context,
};

/// How deeply scopes may nest; operations that would open a scope deeper are skipped.
/// Deeper than [`EC_LEN_MAX`](crate::EC_LEN_MAX), so snapshots get squashed.
pub const MAX_DEPTH: usize = 24;

/// One operation of a [`Script`].
///
/// Variables, logical contexts, contexts, snapshots and tokens are named by small indices,
/// taken modulo how many exist when the operation runs, so every sequence of operations is a
/// valid script: an operation that has nothing to act on is skipped ([`Expected::Skipped`]).
/// Scopes close with the operation matching the innermost one (`PopLc`, `ExitContext`,
/// `End`); a closing operation of another kind is skipped, and the end of the script closes
/// whatever is still open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `var.get()`.
    Get(u8),
    /// `var.get_topmost()`.
    GetTopmost(u8),
    /// `var.set(value)`, keeping the token for [`Op::Reset`].
    Set {
        /// The variable.
        var: u8,
        /// The value.
        value: u64,
    },
    /// `var.delete()`.
    Delete(u8),
    /// `var.reset(token)` with one of the tokens `var.set` returned: the latest when `back`
    /// is 0, the one before when 1, and so on (modulo their number).
    Reset {
        /// The variable, whose tokens are picked from.
        var: u8,
        /// How many of the variable's tokens to go back from the latest.
        back: u8,
    },
    /// Push a new, empty logical context (`run_with_logical_context`): the start of a
    /// generator's first step.
    PushLc,
    /// Push again a logical context popped earlier: a generator's next step.
    ResumeLc(u8),
    /// Pop the logical context pushed last.
    PopLc,
    /// Enter a [`Context`] with `Context::run`.
    EnterContext(ContextSource),
    /// Leave the context entered last.
    ExitContext,
    /// Take a snapshot with `get_execution_context()`.
    Snapshot,
    /// Run in a snapshot taken earlier (`run_with_execution_context`).
    RunInSnapshot(u8),
    /// Leave the snapshot run last.
    End,
}

/// Which [`Context`] [`Op::EnterContext`] enters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContextSource {
    /// `Context::new()`.
    Empty,
    /// `copy_context()`.
    Copy,
    /// A context entered and left earlier, entered again (its changes are still there).
    Saved(u8),
    /// `clone()` of a context left earlier: the same values, a distinct context.
    CloneOfSaved(u8),
}

/// A sequence of operations to replay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Script {
    /// The operations, in order.
    pub ops: Vec<Op>,
}

impl From<Vec<Op>> for Script {
    fn from(ops: Vec<Op>) -> Self {
        Script { ops }
    }
}

/// What an operation must do, as [`Model::apply`] computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// `get` or `get_topmost` returns this.
    Value(Option<u64>),
    /// `set` returns a token whose `old_value()` is this: the value the variable had before,
    /// if any (from whichever layer showed it).
    Set {
        /// The token's old value.
        old: Option<u64>,
    },
    /// `delete` succeeds (`true`) or fails with a `LookupError` (`false`).
    Deleted(bool),
    /// `reset` with token number `token` (counting every `set` of the script from 0; only
    /// tokens not used yet are picked, since `reset` consumes its token) returns
    /// `result`.
    Reset {
        /// Which token: the index of the `set` that made it among all sets.
        token: usize,
        /// What `reset` returns.
        result: Result<(), TokenError>,
    },
    /// A scope opens: run the rest of the script inside it until it is [`Expected::Left`].
    Entered(Scope),
    /// The innermost scope closes.
    Left(Scope),
    /// A snapshot is taken; it gets this index.
    Snapshot(usize),
    /// Nothing to do: the operation does not apply here.
    Skipped,
}

/// A scope a script runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Logical context number `slot` is pushed: a new one (`resumed: false`, `slot` is then
    /// the next free number) or one popped earlier.
    LogicalContext {
        /// Which logical context, counting every one pushed from 0.
        slot: usize,
        /// Whether it was pushed before.
        resumed: bool,
    },
    /// Context number `slot` is entered.
    Context {
        /// Which context, counting every one entered from 0.
        slot: usize,
        /// Where the context comes from.
        origin: ContextOrigin,
    },
    /// Snapshot number `snapshot` is run in, on top of a fresh logical context.
    Snapshot {
        /// Which snapshot.
        snapshot: usize,
    },
}

/// Where an entered context comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContextOrigin {
    /// `Context::new()`.
    Empty,
    /// `copy_context()`.
    Copy,
    /// The context in this slot, entered before.
    Resumed,
    /// A `clone()` of the context in slot `.0`.
    CloneOf(usize),
}

impl Scope {
    /// The operation that closes this scope.
    pub fn closing_op(&self) -> Op {
        match self {
            Scope::LogicalContext { .. } => Op::PopLc,
            Scope::Context { .. } => Op::ExitContext,
            Scope::Snapshot { .. } => Op::End,
        }
    }
}

/// Variable index → value: one logical context's bindings.
type Bindings = HashMap<usize, u64>;

/// A logical context of the model.
#[derive(Clone, Debug, Default)]
struct Layer {
    bindings: Bindings,
    /// Which logical context this is, for tokens.
    identity: u64,
}

/// A context of the model while it is not entered.
#[derive(Clone, Debug)]
struct ModelContext {
    /// The snapshot it was made from, flattened.
    base: Bindings,
    top: Layer,
}

#[derive(Clone, Copy, Debug)]
struct ModelToken {
    var: usize,
    old: Option<u64>,
    identity: u64,
    used: bool,
}

/// An open scope, with what leaving it puts back.
#[derive(Clone, Debug)]
enum Open {
    /// A pushed logical context: popping stores it in its slot again.
    LogicalContext { slot: usize, resumed: bool },
    /// An entered context: leaving stores its base and logical context in its slot and puts
    /// the caller's stack back.
    Context {
        slot: usize,
        origin: ContextOrigin,
        base: Bindings,
        caller: Vec<Layer>,
    },
    /// A snapshot run: leaving puts the caller's stack back.
    Snapshot { snapshot: usize, caller: Vec<Layer> },
}

impl Open {
    fn scope(&self) -> Scope {
        match *self {
            Open::LogicalContext { slot, resumed } => Scope::LogicalContext { slot, resumed },
            Open::Context { slot, origin, .. } => Scope::Context { slot, origin },
            Open::Snapshot { snapshot, .. } => Scope::Snapshot { snapshot },
        }
    }
}

/// The reference model: a naive execution context.
///
/// It starts as a thread does, with one empty logical context. Variables are numbered
/// `0..vars` and have no defaults. Use it as the oracle of your own replay: apply each
/// operation, do what [`Expected`] says with your code, and compare.
///
/// ```
/// use contextvars::testing::{Expected, Model, Op, Scope};
///
/// let mut model = Model::new(1);
/// assert_eq!(model.apply(&Op::Set { var: 0, value: 1 }), Expected::Set { old: None });
/// let Expected::Entered(generator) = model.apply(&Op::PushLc) else { unreachable!() };
/// assert_eq!(generator, Scope::LogicalContext { slot: 0, resumed: false });
/// assert_eq!(model.apply(&Op::GetTopmost(0)), Expected::Value(None));
/// assert_eq!(model.apply(&Op::Get(0)), Expected::Value(Some(1)));
/// assert_eq!(model.apply(&Op::Delete(0)), Expected::Deleted(false));
/// assert_eq!(model.apply(&Op::End), Expected::Skipped); // not a snapshot run
/// assert_eq!(model.apply(&generator.closing_op()), Expected::Left(generator));
/// ```
#[derive(Clone)]
pub struct Model {
    vars: usize,
    /// The current execution context, bottom to top.
    stack: Vec<Layer>,
    open: Vec<Open>,
    /// Logical contexts by slot; `None` while pushed.
    logical_contexts: Vec<Option<Layer>>,
    /// Contexts by slot; `None` while entered.
    contexts: Vec<Option<ModelContext>>,
    /// Snapshots, flattened.
    snapshots: Vec<Bindings>,
    tokens: Vec<ModelToken>,
    identities: u64,
}

impl Model {
    /// A model of `vars` variables in a fresh thread's context.
    ///
    /// # Panics
    ///
    /// If `vars` is 0.
    pub fn new(vars: usize) -> Self {
        assert!(vars > 0, "a model needs at least one variable");
        let mut model = Model {
            vars,
            stack: Vec::new(),
            open: Vec::new(),
            logical_contexts: Vec::new(),
            contexts: Vec::new(),
            snapshots: Vec::new(),
            tokens: Vec::new(),
            identities: 0,
        };
        let root = model.new_layer(Bindings::new());
        model.stack.push(root);
        model
    }

    fn new_layer(&mut self, bindings: Bindings) -> Layer {
        self.identities += 1;
        Layer {
            bindings,
            identity: self.identities,
        }
    }

    fn var(&self, var: u8) -> usize {
        usize::from(var) % self.vars
    }

    fn top(&self) -> &Layer {
        self.stack.last().expect("the model's stack is never empty")
    }

    fn top_mut(&mut self) -> &mut Layer {
        self.stack
            .last_mut()
            .expect("the model's stack is never empty")
    }

    /// All bindings of the current stack in one map, upper ones winning.
    fn flattened(&self) -> Bindings {
        let mut flat = Bindings::new();
        for layer in &self.stack {
            flat.extend(&layer.bindings);
        }
        flat
    }

    /// Applies `op` to the model and returns what the implementation must do.
    pub fn apply(&mut self, op: &Op) -> Expected {
        match *op {
            Op::Get(var) => Expected::Value(self.get(usize::from(var))),
            Op::GetTopmost(var) => Expected::Value(self.get_topmost(usize::from(var))),
            Op::Set { var, value } => {
                let var = self.var(var);
                let shown = self.get(var);
                let top = self.top_mut();
                let old = top.bindings.insert(var, value);
                let identity = top.identity;
                self.tokens.push(ModelToken {
                    var,
                    old,
                    identity,
                    used: false,
                });
                Expected::Set { old: shown }
            }
            Op::Delete(var) => {
                let var = self.var(var);
                Expected::Deleted(self.top_mut().bindings.remove(&var).is_some())
            }
            Op::Reset { var, back } => self.reset(self.var(var), usize::from(back)),
            Op::PushLc => self.push_lc(None),
            Op::ResumeLc(slot) => self.push_lc(Some(usize::from(slot))),
            Op::PopLc | Op::ExitContext | Op::End => self.leave(*op),
            Op::EnterContext(source) => self.enter_context(source),
            Op::Snapshot => {
                self.snapshots.push(self.flattened());
                Expected::Snapshot(self.snapshots.len() - 1)
            }
            Op::RunInSnapshot(snapshot) => {
                if self.snapshots.is_empty() || self.open.len() >= MAX_DEPTH {
                    return Expected::Skipped;
                }
                let snapshot = usize::from(snapshot) % self.snapshots.len();
                let base = self.new_layer(self.snapshots[snapshot].clone());
                let fresh = self.new_layer(Bindings::new());
                let caller = std::mem::replace(&mut self.stack, vec![base, fresh]);
                self.open.push(Open::Snapshot { snapshot, caller });
                Expected::Entered(Scope::Snapshot { snapshot })
            }
        }
    }

    /// Closes the innermost scope if `closing` is its closing operation.
    fn leave(&mut self, closing: Op) -> Expected {
        match self.open.last() {
            Some(open) if open.scope().closing_op() == closing => {}
            _ => return Expected::Skipped,
        }
        let open = self.open.pop().expect("checked above");
        let scope = open.scope();
        match open {
            Open::LogicalContext { slot, .. } => {
                let layer = self.stack.pop().expect("the pushed logical context");
                self.logical_contexts[slot] = Some(layer);
            }
            Open::Context {
                slot, base, caller, ..
            } => {
                let top = self.stack.pop().expect("the context's logical context");
                self.stack = caller;
                self.contexts[slot] = Some(ModelContext { base, top });
            }
            Open::Snapshot { caller, .. } => self.stack = caller,
        }
        Expected::Left(scope)
    }

    fn reset(&mut self, var: usize, back: usize) -> Expected {
        // `reset` consumes its token: only tokens not used yet can be picked.
        let tokens: Vec<usize> = (0..self.tokens.len())
            .filter(|&index| self.tokens[index].var == var && !self.tokens[index].used)
            .collect();
        if tokens.is_empty() {
            return Expected::Skipped;
        }
        let token = tokens[tokens.len() - 1 - back % tokens.len()];
        let ModelToken { old, identity, .. } = self.tokens[token];
        self.tokens[token].used = true;
        let result = if self.top().identity != identity {
            Err(TokenError::WrongContext)
        } else {
            let top = self.top_mut();
            match old {
                Some(value) => top.bindings.insert(var, value),
                None => top.bindings.remove(&var),
            };
            Ok(())
        };
        Expected::Reset { token, result }
    }

    fn push_lc(&mut self, resume: Option<usize>) -> Expected {
        if self.open.len() >= MAX_DEPTH {
            return Expected::Skipped;
        }
        let (slot, layer) = match resume {
            None => {
                let layer = self.new_layer(Bindings::new());
                self.logical_contexts.push(None);
                (self.logical_contexts.len() - 1, layer)
            }
            Some(slot) => {
                if self.logical_contexts.is_empty() {
                    return Expected::Skipped;
                }
                let slot = slot % self.logical_contexts.len();
                // A logical context already pushed cannot be pushed again.
                let Some(layer) = self.logical_contexts[slot].take() else {
                    return Expected::Skipped;
                };
                (slot, layer)
            }
        };
        self.stack.push(layer);
        let open = Open::LogicalContext {
            slot,
            resumed: resume.is_some(),
        };
        let scope = open.scope();
        self.open.push(open);
        Expected::Entered(scope)
    }

    fn enter_context(&mut self, source: ContextSource) -> Expected {
        if self.open.len() >= MAX_DEPTH {
            return Expected::Skipped;
        }
        let saved = |model: &Self, slot: u8| {
            (!model.contexts.is_empty()).then(|| usize::from(slot) % model.contexts.len())
        };
        let (slot, origin, context) = match source {
            ContextSource::Empty => {
                let top = self.new_layer(Bindings::new());
                let context = ModelContext {
                    base: Bindings::new(),
                    top,
                };
                (self.contexts.len(), ContextOrigin::Empty, context)
            }
            ContextSource::Copy => {
                let top = self.new_layer(Bindings::new());
                let context = ModelContext {
                    base: self.flattened(),
                    top,
                };
                (self.contexts.len(), ContextOrigin::Copy, context)
            }
            ContextSource::Saved(slot) => {
                let Some(slot) = saved(self, slot) else {
                    return Expected::Skipped;
                };
                // An entered context cannot be entered again.
                let Some(context) = self.contexts[slot].take() else {
                    return Expected::Skipped;
                };
                (slot, ContextOrigin::Resumed, context)
            }
            ContextSource::CloneOfSaved(slot) => {
                let Some(slot) = saved(self, slot) else {
                    return Expected::Skipped;
                };
                // An entered context is borrowed by its `run`: it cannot be cloned.
                let Some(original) = &self.contexts[slot] else {
                    return Expected::Skipped;
                };
                let (base, bindings) = (original.base.clone(), original.top.bindings.clone());
                let top = self.new_layer(bindings);
                (
                    self.contexts.len(),
                    ContextOrigin::CloneOf(slot),
                    ModelContext { base, top },
                )
            }
        };
        if slot == self.contexts.len() {
            self.contexts.push(None);
        }
        let base_layer = self.new_layer(context.base.clone());
        let caller = std::mem::replace(&mut self.stack, vec![base_layer, context.top]);
        self.open.push(Open::Context {
            slot,
            origin,
            base: context.base,
            caller,
        });
        Expected::Entered(Scope::Context { slot, origin })
    }

    /// The number of variables.
    pub fn vars(&self) -> usize {
        self.vars
    }

    /// What `get` of variable `var` (modulo the number of variables) returns now.
    pub fn get(&self, var: usize) -> Option<u64> {
        let var = var % self.vars;
        self.stack
            .iter()
            .rev()
            .find_map(|layer| layer.bindings.get(&var).copied())
    }

    /// What `get_topmost` of variable `var` (modulo the number of variables) returns now.
    pub fn get_topmost(&self, var: usize) -> Option<u64> {
        self.top().bindings.get(&(var % self.vars)).copied()
    }

    /// The scopes open now, outermost first.
    pub fn open_scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.open.iter().map(Open::scope)
    }

    /// The number of snapshots taken.
    pub fn snapshots(&self) -> usize {
        self.snapshots.len()
    }

    /// Variable `var`'s value in snapshot `snapshot`.
    ///
    /// # Panics
    ///
    /// If there is no such snapshot.
    pub fn snapshot_get(&self, snapshot: usize, var: usize) -> Option<u64> {
        self.snapshots[snapshot].get(&(var % self.vars)).copied()
    }

    /// The number of contexts entered so far.
    pub fn contexts(&self) -> usize {
        self.contexts.len()
    }

    /// Variable `var`'s value in context `slot` (what `Context::get` returns), or `None`
    /// while that context is entered.
    ///
    /// # Panics
    ///
    /// If there is no such context.
    pub fn context_get(&self, slot: usize, var: usize) -> Option<Option<u64>> {
        let context = self.contexts[slot].as_ref()?;
        let var = var % self.vars;
        Some(
            context
                .top
                .bindings
                .get(&var)
                .or_else(|| context.base.get(&var))
                .copied(),
        )
    }

    /// The number of logical contexts pushed so far.
    pub fn logical_contexts(&self) -> usize {
        self.logical_contexts.len()
    }

    /// Variable `var`'s value in logical context `slot` (what `LogicalContext::get`
    /// returns), or `None` while that logical context is pushed.
    ///
    /// # Panics
    ///
    /// If there is no such logical context.
    pub fn logical_context_get(&self, slot: usize, var: usize) -> Option<Option<u64>> {
        let layer = self.logical_contexts[slot].as_ref()?;
        Some(layer.bindings.get(&(var % self.vars)).copied())
    }
}

impl fmt::Debug for Model {
    /// The current stack, top first, with sorted bindings, and the open scopes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stack: Vec<BTreeMap<usize, u64>> = self
            .stack
            .iter()
            .rev()
            .map(|layer| layer.bindings.iter().map(|(k, v)| (*k, *v)).collect())
            .collect();
        let open: Vec<Scope> = self.open_scopes().collect();
        f.debug_struct("Model")
            .field("stack_top_first", &stack)
            .field("open", &open)
            .field("snapshots", &self.snapshots.len())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// Where the implementation and the model parted ways.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mismatch {
    /// A variable passed to [`Script::run_against_contextvars`] cannot be modelled.
    UnusableVariable {
        /// Its index in the slice.
        index: usize,
        /// Why.
        reason: &'static str,
    },
    /// An operation returned something else than the model expects, or afterwards a
    /// variable had another value somewhere than the model says.
    Diverged(Box<Divergence>),
}

/// The details of [`Mismatch::Diverged`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The index of the operation in the script; the script's length for the closing of
    /// scopes left open at its end.
    pub step: usize,
    /// The operation (for the end of the script: the closing operation applied).
    pub op: Op,
    /// What was compared, such as `vars[1].get()` or `snapshot 2: get(vars[0])`.
    pub check: String,
    /// What the model expects.
    pub expected: String,
    /// What the implementation did.
    pub actual: String,
    /// The model's state after the operation.
    pub model: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::UnusableVariable { index, reason } => {
                write!(f, "vars[{index}] cannot be used in a script: {reason}")
            }
            Mismatch::Diverged(divergence) => {
                let Divergence {
                    step,
                    op,
                    check,
                    expected,
                    actual,
                    model,
                } = &**divergence;
                write!(
                    f,
                    "after step {step} ({op:?}): {check} gave {actual}, the model expects \
                     {expected}\nmodel: {model}"
                )
            }
        }
    }
}

impl std::error::Error for Mismatch {}

impl Script {
    /// Replays the script on this crate's API, with `vars` as variables `0..vars.len()`, and
    /// compares with a [`Model`] after every operation: the operation's own result, then
    /// every variable's `get`, `get_topmost` and `is_set`, and its value in every snapshot,
    /// context and logical context the script made.
    ///
    /// Scopes are closure-scoped as in real code: the operations after a scope-opening one
    /// run inside `run_with_logical_context`, `Context::run` or `run_with_execution_context`
    /// until the matching closing operation. The whole script runs in a `Context` of its own,
    /// so it starts from an empty context and leaves the caller's as it was.
    ///
    /// # Errors
    ///
    /// The first [`Mismatch`]; [`Mismatch::UnusableVariable`] if `vars` holds a variable
    /// twice or one with a default (the model knows no defaults).
    ///
    /// # Panics
    ///
    /// If `vars` is empty, or if the implementation panics.
    pub fn run_against_contextvars(&self, vars: &[&ContextVar<u64>]) -> Result<(), Mismatch> {
        assert!(!vars.is_empty(), "a script needs at least one variable");
        for (index, var) in vars.iter().enumerate() {
            if vars[..index].iter().any(|other| other.id() == var.id()) {
                return Err(Mismatch::UnusableVariable {
                    index,
                    reason: "the same variable is passed twice",
                });
            }
        }
        Context::new().run(|| {
            if let Some(index) = vars.iter().position(|var| var.get().is_some()) {
                return Err(Mismatch::UnusableVariable {
                    index,
                    reason: "it has a default value",
                });
            }
            let mut replay = Replay {
                ops: &self.ops,
                next: 0,
                vars,
                model: Model::new(vars.len()),
                tokens: Vec::new(),
                snapshots: Vec::new(),
                contexts: Vec::new(),
                logical_contexts: Vec::new(),
            };
            replay.run_scope().map(|_| ())
        })
    }
}

/// How a scope's run ended.
enum Closed {
    /// By its closing operation.
    ByOp,
    /// The script ran out.
    EndOfScript,
}

/// A script being replayed on the real API.
struct Replay<'s, 'v> {
    ops: &'s [Op],
    next: usize,
    vars: &'v [&'v ContextVar<u64>],
    model: Model,
    /// By the order of the sets that made them; `None` once used.
    tokens: Vec<Option<Token<u64>>>,
    snapshots: Vec<ExecutionContext>,
    /// By the model's slots; `None` while in use.
    contexts: Vec<Option<Context>>,
    logical_contexts: Vec<Option<LogicalContext>>,
}

impl Replay<'_, '_> {
    /// Runs operations until the current scope closes or the script ends.
    fn run_scope(&mut self) -> Result<Closed, Mismatch> {
        while let Some(&op) = self.ops.get(self.next) {
            let step = self.next;
            self.next += 1;
            match self.model.apply(&op) {
                Expected::Entered(scope) => {
                    self.enter(scope, step, op)?;
                    continue;
                }
                Expected::Left(_) => return Ok(Closed::ByOp),
                Expected::Skipped => {}
                expected => {
                    let actual = self.perform(op, &expected);
                    if actual != expected {
                        return Err(self.diverged(
                            step,
                            op,
                            "the operation's result".into(),
                            format!("{expected:?}"),
                            format!("{actual:?}"),
                        ));
                    }
                }
            }
            self.check_state(step, op)?;
        }
        Ok(Closed::EndOfScript)
    }

    /// Runs the rest of the script inside `scope`, checking the state once inside and again
    /// after leaving.
    fn enter(&mut self, scope: Scope, step: usize, op: Op) -> Result<(), Mismatch> {
        let closed = match scope {
            Scope::LogicalContext { slot, resumed } => {
                let mut lc = if resumed {
                    self.logical_contexts[slot]
                        .take()
                        .expect("the model resumes only logical contexts not in use")
                } else {
                    self.logical_contexts.push(None);
                    LogicalContext::new()
                };
                let closed = run_with_logical_context(&mut lc, || self.run_inside(step, op));
                self.logical_contexts[slot] = Some(lc);
                closed?
            }
            Scope::Context { slot, origin } => {
                let mut context = match origin {
                    ContextOrigin::Empty => Context::new(),
                    ContextOrigin::Copy => copy_context(),
                    ContextOrigin::Resumed => self.contexts[slot]
                        .take()
                        .expect("the model enters only contexts not in use"),
                    ContextOrigin::CloneOf(original) => self.contexts[original]
                        .clone()
                        .expect("the model clones only contexts not in use"),
                };
                if slot == self.contexts.len() {
                    self.contexts.push(None);
                }
                let closed = context.run(|| self.run_inside(step, op));
                self.contexts[slot] = Some(context);
                closed?
            }
            Scope::Snapshot { snapshot } => {
                let snapshot = self.snapshots[snapshot].clone();
                run_with_execution_context(&snapshot, || self.run_inside(step, op))?
            }
        };
        let (step, op) = match closed {
            Closed::ByOp => (self.next - 1, self.ops[self.next - 1]),
            Closed::EndOfScript => {
                // The script ended inside the scope, which the real API has just left.
                let closing = scope.closing_op();
                let left = self.model.apply(&closing);
                debug_assert_eq!(left, Expected::Left(scope), "the model closes in order");
                (self.ops.len(), closing)
            }
        };
        self.check_state(step, op)
    }

    /// The start of a scope's run: check the state just entered, then go on with the script.
    fn run_inside(&mut self, step: usize, op: Op) -> Result<Closed, Mismatch> {
        self.check_state(step, op)?;
        self.run_scope()
    }

    /// Performs a non-scope operation on the real API and reports what it did.
    fn perform(&mut self, op: Op, expected: &Expected) -> Expected {
        let var = |index: u8| self.vars[usize::from(index) % self.vars.len()];
        match op {
            Op::Get(index) => Expected::Value(var(index).get()),
            Op::GetTopmost(index) => Expected::Value(var(index).get_topmost()),
            Op::Set { var: index, value } => {
                let token = var(index).set(value);
                let old = token.old_value();
                self.tokens.push(Some(token));
                Expected::Set { old }
            }
            Op::Delete(index) => Expected::Deleted(var(index).delete().is_ok()),
            Op::Reset { var: index, .. } => {
                let Expected::Reset { token, .. } = *expected else {
                    unreachable!("the model answers a reset with a reset")
                };
                let token_value = self.tokens[token]
                    .take()
                    .expect("the model picks only tokens not used yet");
                let result = var(index).reset(token_value);
                Expected::Reset { token, result }
            }
            Op::Snapshot => {
                self.snapshots.push(get_execution_context());
                Expected::Snapshot(self.snapshots.len() - 1)
            }
            Op::PushLc
            | Op::ResumeLc(_)
            | Op::PopLc
            | Op::EnterContext(_)
            | Op::ExitContext
            | Op::RunInSnapshot(_)
            | Op::End => unreachable!("scope operations are handled by the caller"),
        }
    }

    /// Compares every variable's value, here and in every saved context, with the model.
    fn check_state(&self, step: usize, op: Op) -> Result<(), Mismatch> {
        for (index, var) in self.vars.iter().enumerate() {
            let expected = self.model.get(index);
            self.compare(
                step,
                op,
                || format!("vars[{index}].get()"),
                expected,
                var.get(),
            )?;
            self.compare(
                step,
                op,
                || format!("vars[{index}].get_topmost()"),
                self.model.get_topmost(index),
                var.get_topmost(),
            )?;
            self.compare(
                step,
                op,
                || format!("vars[{index}].is_set()"),
                expected.is_some(),
                var.is_set(),
            )?;
            for (snapshot, ec) in self.snapshots.iter().enumerate() {
                self.compare(
                    step,
                    op,
                    || format!("snapshot {snapshot}: get(vars[{index}])"),
                    self.model.snapshot_get(snapshot, index),
                    ec.get(var),
                )?;
            }
            for (slot, context) in self.contexts.iter().enumerate() {
                if let (Some(context), Some(expected)) =
                    (context, self.model.context_get(slot, index))
                {
                    self.compare(
                        step,
                        op,
                        || format!("context {slot}: get(vars[{index}])"),
                        expected,
                        context.get(var),
                    )?;
                }
            }
            for (slot, lc) in self.logical_contexts.iter().enumerate() {
                if let (Some(lc), Some(expected)) =
                    (lc, self.model.logical_context_get(slot, index))
                {
                    self.compare(
                        step,
                        op,
                        || format!("logical context {slot}: get(vars[{index}])"),
                        expected,
                        lc.get(var),
                    )?;
                }
            }
        }
        Ok(())
    }

    fn compare<T: PartialEq + fmt::Debug>(
        &self,
        step: usize,
        op: Op,
        check: impl FnOnce() -> String,
        expected: T,
        actual: T,
    ) -> Result<(), Mismatch> {
        if expected == actual {
            return Ok(());
        }
        Err(self.diverged(
            step,
            op,
            check(),
            format!("{expected:?}"),
            format!("{actual:?}"),
        ))
    }

    fn diverged(
        &self,
        step: usize,
        op: Op,
        check: String,
        expected: String,
        actual: String,
    ) -> Mismatch {
        Mismatch::Diverged(Box::new(Divergence {
            step,
            op,
            check,
            expected,
            actual,
            model: format!("{:?}", self.model),
        }))
    }
}

/// Values set by generated scripts are small, so that equal values come up (a set to the
/// current value, a reset to the value already there).
#[cfg(any(feature = "arbitrary", feature = "proptest"))]
const VALUES: u8 = 8;

#[cfg(feature = "arbitrary")]
mod from_bytes {
    use arbitrary::{Arbitrary, Result, Unstructured};

    use super::{ContextSource, Op, Script, VALUES};

    /// Operations in fixed proportions (a fifth are sets; scope-opening and scope-closing
    /// operations are about as frequent, so scripts nest), indices and values from one byte.
    impl<'a> Arbitrary<'a> for Op {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            Ok(match u.int_in_range(0u8..=99)? {
                0..=7 => Op::Get(u.arbitrary()?),
                8..=12 => Op::GetTopmost(u.arbitrary()?),
                13..=32 => Op::Set {
                    var: u.arbitrary()?,
                    value: u64::from(u.int_in_range(0..=VALUES - 1)?),
                },
                33..=40 => Op::Delete(u.arbitrary()?),
                41..=49 => Op::Reset {
                    var: u.arbitrary()?,
                    back: u.arbitrary()?,
                },
                50..=57 => Op::PushLc,
                58..=62 => Op::ResumeLc(u.arbitrary()?),
                63..=70 => Op::PopLc,
                71..=78 => Op::EnterContext(u.arbitrary()?),
                79..=85 => Op::ExitContext,
                86..=90 => Op::Snapshot,
                91..=94 => Op::RunInSnapshot(u.arbitrary()?),
                _ => Op::End,
            })
        }

        #[inline]
        fn size_hint(_depth: usize) -> (usize, Option<usize>) {
            (1, Some(3))
        }
    }

    impl<'a> Arbitrary<'a> for ContextSource {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            Ok(match u.int_in_range(0u8..=3)? {
                0 => ContextSource::Empty,
                1 => ContextSource::Copy,
                2 => ContextSource::Saved(u.arbitrary()?),
                _ => ContextSource::CloneOfSaved(u.arbitrary()?),
            })
        }

        #[inline]
        fn size_hint(_depth: usize) -> (usize, Option<usize>) {
            (1, Some(2))
        }
    }

    /// Every byte feeds operations (no per-operation "continue" byte, unlike `Vec`), so
    /// inputs of a few hundred bytes make scripts of a few hundred operations.
    impl<'a> Arbitrary<'a> for Script {
        /// As many operations as the length read from the input's end.
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            let len = u.arbitrary_len::<Op>()?;
            let ops = (0..len).map(|_| Op::arbitrary(u)).collect::<Result<_>>()?;
            Ok(Script { ops })
        }

        /// Operations until the bytes run out.
        fn arbitrary_take_rest(mut u: Unstructured<'a>) -> Result<Self> {
            let mut ops = Vec::with_capacity(u.len() / 2);
            while !u.is_empty() {
                ops.push(Op::arbitrary(&mut u)?);
            }
            Ok(Script { ops })
        }

        #[inline]
        fn size_hint(_depth: usize) -> (usize, Option<usize>) {
            (0, None)
        }
    }
}

#[cfg(feature = "proptest")]
mod strategies {
    use proptest::arbitrary::Arbitrary;
    use proptest::collection::{SizeRange, vec};
    use proptest::prelude::*;
    use proptest::strategy::BoxedStrategy;

    use super::{ContextSource, Op, Script, VALUES};

    impl Op {
        /// A proptest strategy for single operations, in the proportions of the `arbitrary`
        /// implementation. Shrinks towards reads and towards index 0.
        pub fn strategy() -> BoxedStrategy<Op> {
            // Variable indices below 12 (a multiple of 1, 2, 3, 4 and 6) pick variables
            // evenly and shrink to small numbers. Slot and snapshot indices take the whole
            // byte: they are taken modulo however many exist, which grows with the script.
            let var = 0..12u8;
            prop_oneof![
                8 => var.clone().prop_map(Op::Get),
                5 => var.clone().prop_map(Op::GetTopmost),
                20 => (var.clone(), 0..u64::from(VALUES))
                    .prop_map(|(var, value)| Op::Set { var, value }),
                8 => var.clone().prop_map(Op::Delete),
                9 => (var, 0..4u8).prop_map(|(var, back)| Op::Reset { var, back }),
                8 => Just(Op::PushLc),
                5 => any::<u8>().prop_map(Op::ResumeLc),
                8 => Just(Op::PopLc),
                8 => ContextSource::strategy().prop_map(Op::EnterContext),
                7 => Just(Op::ExitContext),
                5 => Just(Op::Snapshot),
                4 => any::<u8>().prop_map(Op::RunInSnapshot),
                5 => Just(Op::End),
            ]
            .boxed()
        }
    }

    impl ContextSource {
        /// A proptest strategy for the context an [`Op::EnterContext`] enters.
        pub fn strategy() -> BoxedStrategy<ContextSource> {
            prop_oneof![
                Just(ContextSource::Empty),
                Just(ContextSource::Copy),
                any::<u8>().prop_map(ContextSource::Saved),
                any::<u8>().prop_map(ContextSource::CloneOfSaved),
            ]
            .boxed()
        }
    }

    impl Script {
        /// A proptest strategy for scripts of `len` operations. Shrinking drops operations,
        /// then simplifies the ones left.
        ///
        /// ```
        /// use contextvars::ContextVar;
        /// use contextvars::testing::Script;
        /// use proptest::prelude::*;
        ///
        /// static VARS: [ContextVar<u64>; 2] = [ContextVar::new("a"), ContextVar::new("b")];
        ///
        /// // (Fewer and shorter scripts under Miri, where each step costs milliseconds.)
        /// let (cases, len) = if cfg!(miri) { (1, 8) } else { (32, 100) };
        /// proptest!(ProptestConfig::with_cases(cases), |(script in Script::strategy(0..len))| {
        ///     let result = script.run_against_contextvars(&[&VARS[0], &VARS[1]]);
        ///     prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        /// });
        /// ```
        pub fn strategy(len: impl Into<SizeRange>) -> impl Strategy<Value = Script> {
            vec(Op::strategy(), len).prop_map(Script::from)
        }
    }

    impl Arbitrary for Op {
        type Parameters = ();
        type Strategy = BoxedStrategy<Op>;

        fn arbitrary_with((): ()) -> Self::Strategy {
            Op::strategy()
        }
    }

    /// `any::<Script>()`: scripts of the default size range (`0..100`); the parameter is the
    /// length range.
    impl Arbitrary for Script {
        type Parameters = SizeRange;
        type Strategy = BoxedStrategy<Script>;

        fn arbitrary_with(len: SizeRange) -> Self::Strategy {
            Script::strategy(len).boxed()
        }
    }
}
