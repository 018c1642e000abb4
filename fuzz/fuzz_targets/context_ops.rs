//! `context_ops`: an arbitrary program of context-variable operations run on one thread and
//! on a naive model execution context (a stack of `HashMap`s), comparing every read.
//!
//! The closure-scoped APIs (`run_with_logical_context`, `Context::run`,
//! `run_with_execution_context`, `ContextVar::scope`, `ContextVar::with`) are interpreted
//! recursively: the operation opens a scope, the operations after it run inside the closure
//! until an `End` (or the end of the input) closes it. A scope may end by panicking, to check
//! that the guards restore the caller's context. Every input runs inside a fresh
//! `Context::new().run(..)`, and afterwards the thread must be back to its empty context, so
//! inputs cannot leak state into one another (libFuzzer runs them all on one thread).
//!
//! Half of the variables are given ids that map to the same slots of the per-thread lookup
//! cache as the other half, so reads also exercise cache eviction.
//!
//! Every input runs twice: with variables of `u16`, an inline kind (stored in the map's
//! entries, lent by `with` as a copy), and with variables of [`Counted`], a type of the
//! target's own (stored behind an `Arc`, lent by address, so displaced values are retired
//! while a borrow may be lending them). Live `Counted` values are counted: once an input's
//! contexts are gone, none may be left. A dropped one is overwritten, so that a read
//! through a dangling lent address is likely to show a value no input sets.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Once;
use std::sync::atomic::{AtomicIsize, Ordering};

use arbitrary::Arbitrary;
use contextvars::{
    AttachId, Context, ContextVar, DeferredId, DetachError, EC_LEN_MAX, ExecutionContext,
    LogicalContext, Token, TokenError, attach, attach_deferred, copy_context, detach,
    detach_deferred, end_attach, end_deferred, get_execution_context, run_with_execution_context,
    run_with_logical_context,
};
use libfuzzer_sys::fuzz_target;

/// A value type the variables under test hold, compared with the model as a `u16`.
trait Val: Clone + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// The variables under test (see [`VARS`]).
    fn vars() -> &'static [ContextVar<Self>; 8];
    fn new(value: u16) -> Self;
    fn plain(&self) -> u16;
}

fn plain<T: Val>(value: Option<T>) -> Option<u16> {
    value.map(|value| value.plain())
}

impl Val for u16 {
    fn vars() -> &'static [ContextVar<u16>; 8] {
        &VARS
    }

    fn new(value: u16) -> u16 {
        value
    }

    fn plain(&self) -> u16 {
        *self
    }
}

/// The number of [`Counted`] values alive, but for the defaults held by the statics.
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// What a dropped [`Counted`] holds: no operation sets it (values come from a `u8`).
const DROPPED: u16 = 0xdead;

/// A value that is not an inline kind, whose live instances are counted.
#[derive(Debug, PartialEq)]
struct Counted(u16);

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new(self.0)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        assert_ne!(self.0, DROPPED, "a Counted value dropped twice");
        self.0 = DROPPED;
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Val for Counted {
    fn vars() -> &'static [ContextVar<Counted>; 8] {
        &COUNTED_VARS
    }

    fn new(value: u16) -> Counted {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Counted(value)
    }

    fn plain(&self) -> u16 {
        assert_ne!(self.0, DROPPED, "a dropped Counted value read");
        self.0
    }
}

fn nine() -> u16 {
    9
}

fn counted_nine() -> Counted {
    Counted::new(9)
}

/// The variables under test: with and without defaults, one that opts out of inheritance.
static VARS: [ContextVar<u16>; 8] = [
    ContextVar::new("v0"),
    ContextVar::with_default("v1", 7),
    ContextVar::new("v2"),
    ContextVar::with_default_fn("v3", nine),
    ContextVar::new("v4"),
    ContextVar::new("v5").not_inherited(),
    ContextVar::with_default("v6", 0),
    ContextVar::new("v7"),
];
/// The same variables, holding [`Counted`] values. The defaults built in a `const` are not
/// counted (they never drop; their clones are).
static COUNTED_VARS: [ContextVar<Counted>; 8] = [
    ContextVar::new("c0"),
    ContextVar::with_default("c1", Counted(7)),
    ContextVar::new("c2"),
    ContextVar::with_default_fn("c3", counted_nine),
    ContextVar::new("c4"),
    ContextVar::new("c5").not_inherited(),
    ContextVar::with_default("c6", Counted(0)),
    ContextVar::new("c7"),
];
const DEFAULTS: [Option<u16>; 8] = [None, Some(7), None, Some(9), None, None, Some(0), None];
const NOT_INHERITED: usize = 5;

/// Variables that only take up ids, so that the second half of each set of variables
/// shares cache slots with the first.
static PADDING: [ContextVar<u8>; 64] = [const { ContextVar::new("padding") }; 64];
/// The lookup cache's size (`contextvars::cache::SLOTS`).
const CACHE_SLOTS: u64 = 32;

/// Scopes nested deeper than this run their operations in the enclosing scope instead.
const MAX_DEPTH: usize = 24;
/// Upper bound on the operations of one input.
const MAX_OPS: usize = 1024;
/// Bounds on the stored contexts, snapshots and tokens.
const STORED_LCS: usize = 4;
const STORED: usize = 8;
const TOKENS: usize = 16;

/// The payload of the panics this target raises on purpose (any other panic is a finding).
struct PlannedPanic;

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let mut padding = PADDING.iter();
        alias_halves(&VARS, &mut padding);
        alias_halves(&COUNTED_VARS, &mut padding);
        // libFuzzer-sys aborts on every panic; let the planned ones unwind quietly.
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<PlannedPanic>() {
                previous(info);
            }
        }));
    });
}

/// Gives `vars` their ids, taking ids from `padding` between the halves, so that each
/// variable of the second half shares a cache slot with one of the first.
fn alias_halves<T: Send + Sync + 'static>(
    vars: &[ContextVar<T>; 8],
    padding: &mut std::slice::Iter<'_, ContextVar<u8>>,
) {
    let first = vars[0].id().get();
    for var in &vars[1..4] {
        var.id();
    }
    // Take ids until the next one is `first` modulo the cache size.
    if (vars[3].id().get() + 1) % CACHE_SLOTS != first % CACHE_SLOTS {
        for pad in padding.by_ref() {
            if (pad.id().get() + 1) % CACHE_SLOTS == first % CACHE_SLOTS {
                break;
            }
        }
    }
    for (i, var) in vars.iter().enumerate().skip(4) {
        assert_eq!(
            var.id().get() % CACHE_SLOTS,
            vars[i - 4].id().get() % CACHE_SLOTS,
            "cache slot aliasing setup"
        );
    }
}

#[derive(Arbitrary, Clone, Copy, Debug)]
struct Var(u8);

impl Var {
    fn index(self) -> usize {
        usize::from(self.0) % VARS.len()
    }
}

/// Which view of a stored snapshot to check.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum View {
    Plain,
    Squashed,
    Inherited,
}

#[derive(Arbitrary, Clone, Debug)]
enum Op {
    Set {
        var: Var,
        value: u8,
        keep_token: bool,
    },
    Delete(Var),
    Get(Var),
    GetTopmost(Var),
    /// Reset a kept token through `var` (not necessarily the variable that made it).
    Reset {
        token: u8,
        var: Var,
    },
    /// `run_with_logical_context` with a stored logical context (or a fresh one).
    PushLc {
        lc: Option<u8>,
        panic: bool,
    },
    /// `Context::run` with a stored context (or a fresh one).
    EnterContext {
        context: u8,
        panic: bool,
    },
    /// `run_with_execution_context` on a stored snapshot (or an empty one).
    RunInSnapshot {
        snapshot: u8,
        panic: bool,
    },
    /// `ContextVar::scope`.
    Scope {
        var: Var,
        value: u8,
        panic: bool,
    },
    /// `ContextVar::with`, running the scope while the value is borrowed.
    WithBorrow(Var),
    /// Closes the innermost scope.
    End,
    /// Every variable's `get`, `is_set` and `get_topmost`.
    CheckAll,
    /// `get_execution_context()`, kept.
    Snapshot,
    /// `copy_context()`, kept.
    CopyContext,
    NewContext,
    CloneContext(u8),
    ContextFromSnapshot(u8),
    /// `Context::execution_context()`, kept as a snapshot.
    ContextExecutionContext(u8),
    CheckSnapshot {
        snapshot: u8,
        view: View,
    },
    CheckContext(u8),
    CheckLc(u8),
    DropToken(u8),
    DropSnapshot(u8),
    DropContext(u8),
    /// `attach` (or `attach_deferred`) of a stored context (or a fresh one); the operations
    /// up to the next `End` run in it, then it is detached (or ended, as an executor ends a
    /// step), which fails if an operation inside ended it already.
    Attach {
        context: u8,
        deferred: bool,
        end: bool,
    },
    /// `attach` (or `attach_deferred`) left in place: ended later by `Detach`/`EndAttach`,
    /// by an enclosing attach's end, or by the end of the run or scope it was made in.
    AttachLeft {
        context: u8,
        deferred: bool,
    },
    /// `detach` (or `detach_deferred`) of one of the live attaches, chosen by index.
    Detach(u8),
    /// `end_attach` (or `end_deferred`) of one of the live attaches.
    EndAttach(u8),
}

/// How an attach was made.
#[derive(Clone, Copy, Debug)]
enum AttachHandle {
    Plain(AttachId),
    /// With the key its context waits under in `FETCHABLE` until fetched.
    Deferred(DeferredId, u64),
}

/// A live attach of the model: the frame it displaced, the scope it was made in, and (for a
/// deferred one) the model of its context as attached, for an end that finds it never
/// fetched.
struct ModelAttach {
    handle: AttachHandle,
    outer: ModelCurrent,
    scope: usize,
    attached: ModelContext,
}

std::thread_local! {
    /// The contexts of deferred attaches, until fetched.
    static FETCHABLE: std::cell::RefCell<HashMap<u64, Context>> =
        std::cell::RefCell::new(HashMap::new());
}

/// The fetch of `attach_deferred`: uses no context variable.
fn fetch(key: u64) -> Option<Context> {
    FETCHABLE.with(|f| f.borrow_mut().remove(&key))
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

type Bindings = HashMap<usize, u16>;

/// A model logical context: its bindings and an identity (for tokens).
#[derive(Clone, Debug)]
struct ModelLc {
    ident: u64,
    map: Bindings,
}

/// A model snapshot: its layers bottom to top, and the length the real one must report.
#[derive(Clone, Debug, Default)]
struct ModelEc {
    layers: Rc<Vec<Bindings>>,
    len: usize,
}

impl ModelEc {
    fn find(&self, var: usize) -> Option<u16> {
        self.layers
            .iter()
            .rev()
            .find_map(|layer| layer.get(&var).copied())
    }

    fn vars(&self) -> HashSet<usize> {
        self.layers
            .iter()
            .flat_map(|layer| layer.keys().copied())
            .collect()
    }
}

/// The length of a chain of `len` logical contexts once squashed past `EC_LEN_MAX` (into
/// one: a chain that long is never empty).
fn squashed_len(len: usize) -> usize {
    if len > EC_LEN_MAX { 1 } else { len }
}

/// A model `Context`: a top logical context over a snapshot.
#[derive(Clone, Debug)]
struct ModelContext {
    top: ModelLc,
    base: ModelEc,
}

impl ModelContext {
    fn find(&self, var: usize) -> Option<u16> {
        self.top
            .map
            .get(&var)
            .copied()
            .or_else(|| self.base.find(var))
    }

    /// `Context::execution_context`: the top pushed onto the base (empty maps are not
    /// pushed), squashed past `EC_LEN_MAX` like a snapshot.
    fn execution_context(&self) -> ModelEc {
        let mut layers = Vec::clone(&self.base.layers);
        layers.push(self.top.map.clone());
        ModelEc {
            layers: Rc::new(layers),
            len: squashed_len(self.base.len + usize::from(!self.top.map.is_empty())),
        }
    }

    fn vars(&self) -> HashSet<usize> {
        let mut vars = self.base.vars();
        vars.extend(self.top.map.keys().copied());
        vars
    }
}

/// The model of the thread's current execution context: the logical contexts of the
/// running frame (bottom to top; the first is the frame's own) over its base snapshot.
#[derive(Clone, Debug)]
struct ModelCurrent {
    base: ModelEc,
    stack: Vec<ModelLc>,
}

impl ModelCurrent {
    fn find(&self, var: usize) -> Option<u16> {
        self.stack
            .iter()
            .rev()
            .find_map(|lc| lc.map.get(&var).copied())
            .or_else(|| self.base.find(var))
    }

    fn top(&mut self) -> &mut ModelLc {
        self.stack
            .last_mut()
            .expect("a frame has a logical context")
    }

    fn snapshot(&self) -> ModelEc {
        let mut layers = Vec::clone(&self.base.layers);
        layers.extend(self.stack.iter().map(|lc| lc.map.clone()));
        let len = self.base.len + self.stack.iter().filter(|lc| !lc.map.is_empty()).count();
        ModelEc {
            layers: Rc::new(layers),
            len: squashed_len(len),
        }
    }
}

struct KeptToken<T> {
    token: Token<T>,
    var: usize,
    lc: u64,
    old: Option<u16>,
}

struct Harness<T> {
    current: ModelCurrent,
    lcs: [Option<(LogicalContext, ModelLc)>; STORED_LCS],
    /// Fixed slots: a context taken out to run is put back into the same slot.
    contexts: [Option<(Context, ModelContext)>; STORED],
    next_context: usize,
    snapshots: Vec<(ExecutionContext, ModelEc)>,
    tokens: Vec<KeptToken<T>>,
    next_ident: u64,
    depth: usize,
    /// Live attaches, oldest first.
    attaches: Vec<ModelAttach>,
    /// Runs and logical-context scopes open (an attach ends with the one it was made in).
    real_scope: usize,
    /// `with` borrows open: attaches are neither left nor ended across them (the borrow's
    /// end reads the context it began in).
    with_borrows: usize,
    /// Per open `ContextVar::scope`, how many attaches were live when it began: attaches
    /// made inside may be left (they end with the scope, which then resets the variable where
    /// it set it) or ended, but none made before it is ended inside (the scope's value would
    /// go with the detached context, a documented exception the model leaves out).
    scope_bases: Vec<usize>,
}

fn pick(index: u8, len: usize) -> Option<usize> {
    (len > 0).then(|| usize::from(index) % len)
}

fn push_bounded<T>(list: &mut Vec<T>, item: T, bound: usize) {
    if list.len() == bound {
        list.remove(0);
    }
    list.push(item);
}

/// What an `iter()` yields, by variable index: each variable once, with a `u16` value.
fn iterated<'a, T: Val>(
    entries: impl Iterator<Item = (contextvars::VarInfo, &'a contextvars::AnyValue)>,
) -> HashMap<usize, u16> {
    let mut found = HashMap::new();
    for (info, value) in entries {
        let i = T::vars()
            .iter()
            .position(|var| var.id() == info.id())
            .expect("iter yields only the variables under test");
        let value = value.downcast_ref::<T>().expect("a value of T").plain();
        assert!(found.insert(i, value).is_none(), "iter yields v{i} twice");
    }
    found
}

fn check_lc<T: Val>(lc: &LogicalContext, model: &ModelLc) {
    assert_eq!(lc.len(), model.map.len(), "LogicalContext::len");
    assert_eq!(
        lc.is_empty(),
        model.map.is_empty(),
        "LogicalContext::is_empty"
    );
    for (i, var) in T::vars().iter().enumerate() {
        assert_eq!(
            plain(lc.get(var)),
            model.map.get(&i).copied(),
            "LogicalContext::get"
        );
        assert_eq!(lc.contains(var), model.map.contains_key(&i), "contains");
    }
    let ids: HashSet<u64> = lc.vars().map(|info| info.id().get()).collect();
    let expected: HashSet<u64> = model.map.keys().map(|&i| T::vars()[i].id().get()).collect();
    assert_eq!(ids, expected, "LogicalContext::vars");
    let expected: HashMap<usize, u16> = model.map.iter().map(|(&i, &v)| (i, v)).collect();
    assert_eq!(iterated::<T>(lc.iter()), expected, "LogicalContext::iter");
}

fn check_ec<T: Val>(ec: &ExecutionContext, model: &ModelEc, view: View) {
    let inherited = |i: usize| !matches!(view, View::Inherited) || i != NOT_INHERITED;
    for (i, var) in T::vars().iter().enumerate() {
        let expected = model.find(i).filter(|_| inherited(i));
        assert_eq!(
            plain(ec.get(var)),
            expected,
            "ExecutionContext::get {view:?}"
        );
        assert_eq!(ec.contains(var), expected.is_some(), "contains {view:?}");
    }
    let ids: HashSet<u64> = ec.vars().map(|info| info.id().get()).collect();
    let expected: HashSet<u64> = model
        .vars()
        .into_iter()
        .filter(|&i| inherited(i))
        .map(|i| T::vars()[i].id().get())
        .collect();
    assert_eq!(ids, expected, "ExecutionContext::vars {view:?}");
    // The topmost value of each variable, lower layers' shadowed ones never.
    let expected: HashMap<usize, u16> = (0..T::vars().len())
        .filter(|&i| inherited(i))
        .filter_map(|i| model.find(i).map(|v| (i, v)))
        .collect();
    assert_eq!(
        iterated::<T>(ec.iter()),
        expected,
        "ExecutionContext::iter {view:?}"
    );
    match view {
        View::Plain => assert_eq!(ec.depth(), model.len, "ExecutionContext::depth"),
        View::Squashed => assert_eq!(ec.depth(), usize::from(model.len > 0), "squashed depth"),
        // Squashed into one layer when it drops a value (then `NOT_INHERITED` was set, so
        // the process-wide flag that allows the plain clone is off), else the same layers.
        View::Inherited => {
            let expected = if model.find(NOT_INHERITED).is_some() {
                usize::from(!ids.is_empty())
            } else {
                model.len
            };
            assert_eq!(ec.depth(), expected, "inherited depth");
        }
    }
    // Empty layers are never pushed, so a context is empty exactly when it binds nothing.
    assert_eq!(ec.is_empty(), ids.is_empty(), "is_empty");
}

fn check_context<T: Val>(context: &Context, model: &ModelContext) {
    let vars = model.vars();
    assert_eq!(context.len(), vars.len(), "Context::len");
    assert_eq!(context.is_empty(), vars.is_empty(), "Context::is_empty");
    for (i, var) in T::vars().iter().enumerate() {
        assert_eq!(plain(context.get(var)), model.find(i), "Context::get");
        assert_eq!(
            context.contains(var),
            model.find(i).is_some(),
            "Context::contains"
        );
    }
    let ids: HashSet<u64> = context.vars().map(|info| info.id().get()).collect();
    let expected: HashSet<u64> = vars.into_iter().map(|i| T::vars()[i].id().get()).collect();
    assert_eq!(ids, expected, "Context::vars");
    let expected: HashMap<usize, u16> = (0..T::vars().len())
        .filter_map(|i| model.find(i).map(|v| (i, v)))
        .collect();
    assert_eq!(iterated::<T>(context.iter()), expected, "Context::iter");
    let mut values: Vec<u16> = context
        .values()
        .map(|value| value.downcast_ref::<T>().expect("a value of T").plain())
        .collect();
    let mut expected_values: Vec<u16> = expected.values().copied().collect();
    values.sort_unstable();
    expected_values.sort_unstable();
    assert_eq!(values, expected_values, "Context::values");
    check_ec::<T>(
        &context.execution_context(),
        &model.execution_context(),
        View::Plain,
    );
}

impl<T: Val> Harness<T> {
    fn fresh_lc(&mut self) -> ModelLc {
        self.next_ident += 1;
        ModelLc {
            ident: self.next_ident,
            map: Bindings::new(),
        }
    }

    fn keep_context(&mut self, context: Context, model: ModelContext) {
        self.contexts[self.next_context] = Some((context, model));
        self.next_context = (self.next_context + 1) % STORED;
    }

    fn check_var(&self, i: usize) {
        let var = &T::vars()[i];
        let found = self.current.find(i);
        assert_eq!(plain(var.get()), found.or(DEFAULTS[i]), "get {i}");
        assert_eq!(var.is_set(), found.is_some(), "is_set {i}");
        // Like Python's `var.get(default)`: the argument wins over the variable's default.
        assert_eq!(
            var.get_or(T::new(99)).plain(),
            found.unwrap_or(99),
            "get_or"
        );
        var.with(|value| {
            let value = value.map(Val::plain);
            assert_eq!(value, found.or(DEFAULTS[i]), "with {i}");
        });
        let topmost = self
            .current
            .stack
            .last()
            .and_then(|lc| lc.map.get(&i).copied());
        assert_eq!(plain(var.get_topmost()), topmost, "get_topmost {i}");
    }

    fn check_all(&self) {
        for i in 0..T::vars().len() {
            self.check_var(i);
        }
    }

    /// Every stored logical context, context and snapshot against its model: a change that
    /// reached one of them through a shared map shows at the step that made it.
    fn check_stored(&self) {
        for (lc, model) in self.lcs.iter().flatten() {
            check_lc::<T>(lc, model);
        }
        for (context, model) in self.contexts.iter().flatten() {
            check_context::<T>(context, model);
        }
        for (ec, model) in &self.snapshots {
            check_ec::<T>(ec, model, View::Plain);
        }
    }

    /// Takes a stored context (or a fresh one) out of its slot, to run or attach.
    fn take_context(&mut self, context: u8) -> (Context, ModelContext) {
        match self.contexts[usize::from(context) % STORED].take() {
            Some(pair) => pair,
            None => (
                Context::new(),
                ModelContext {
                    top: self.fresh_lc(),
                    base: ModelEc::default(),
                },
            ),
        }
    }

    /// Attaches `real` (deferred or not); the model's current frame becomes its.
    fn attach(&mut self, real: Context, model: ModelContext, deferred: bool) -> AttachHandle {
        let handle = if deferred {
            self.next_ident += 1;
            let key = self.next_ident;
            FETCHABLE.with(|f| f.borrow_mut().insert(key, real));
            AttachHandle::Deferred(attach_deferred(fetch, key).expect("not in teardown"), key)
        } else {
            AttachHandle::Plain(attach(real).expect("not in teardown"))
        };
        let inner = ModelCurrent {
            base: model.base.clone(),
            stack: vec![model.top.clone()],
        };
        let outer = std::mem::replace(&mut self.current, inner);
        self.attaches.push(ModelAttach {
            handle,
            outer,
            scope: self.real_scope,
            attached: model,
        });
        handle
    }

    /// Forgets the attaches from `index` up, for a deferred one's context never fetched too.
    fn forget_attaches_from(&mut self, index: usize) -> ModelCurrent {
        let mut outer = None;
        for ended in self.attaches.drain(index..).rev() {
            if let AttachHandle::Deferred(_, key) = ended.handle {
                FETCHABLE.with(|f| f.borrow_mut().remove(&key));
            }
            outer = Some(ended.outer);
        }
        outer.expect("at least one attach")
    }

    /// Whether the context of attach `a` was fetched (a plain attach's always is).
    fn fetched(a: &ModelAttach) -> bool {
        match a.handle {
            AttachHandle::Plain(_) => true,
            AttachHandle::Deferred(_, key) => !FETCHABLE.with(|f| f.borrow().contains_key(&key)),
        }
    }

    /// The frame current in fact, of those from attach `from` up: below deferred attaches on
    /// top whose contexts were never fetched (nothing entered them), the frame under them.
    /// With `from`'s own context never fetched either, `None`.
    fn current_in_fact(&self, from: usize) -> Option<ModelCurrent> {
        let mut top = self.attaches.len();
        let mut frame = self.current.clone();
        while top > from && !Self::fetched(&self.attaches[top - 1]) {
            top -= 1;
            frame = self.attaches[top].outer.clone();
        }
        (top > from).then_some(frame)
    }

    /// At the end of a run (`run`) or a logical-context scope: the attaches made in it end
    /// with it. A run hands the frame current in fact back to its context (the topmost
    /// attach's: its caller's `Context` keeps it); a logical-context scope reinstalls the
    /// frame the first of them displaced, and pops its logical context from there.
    fn end_scope_attaches(&mut self, run: bool) {
        let first = self
            .attaches
            .iter()
            .position(|a| a.scope == self.real_scope);
        if let Some(first) = first {
            assert!(
                self.attaches[first..]
                    .iter()
                    .all(|a| a.scope == self.real_scope),
                "attaches of an inner scope ended with it"
            );
            let kept = if run {
                Some(
                    self.current_in_fact(first)
                        .unwrap_or_else(|| self.attaches[first].outer.clone()),
                )
            } else {
                None
            };
            let displaced = self.forget_attaches_from(first);
            self.current = kept.unwrap_or(displaced);
        }
    }

    /// Detaches (`end`: ends) the attach `handle`, comparing with the model; the context
    /// handed back is kept.
    fn end_attach(&mut self, handle: AttachHandle, end: bool) {
        let index = self.attaches.iter().position(|a| match (a.handle, handle) {
            (AttachHandle::Plain(a), AttachHandle::Plain(b)) => a == b,
            (AttachHandle::Deferred(a, _), AttachHandle::Deferred(b, _)) => a == b,
            _ => false,
        });
        // Refused when ended already, when made in a scope that is not the innermost open
        // one, and (for a detach) when another attach is above it.
        let allowed = index.is_some_and(|i| {
            self.attaches[i].scope == self.real_scope && (end || i + 1 == self.attaches.len())
        });
        let result = match (handle, end) {
            (AttachHandle::Plain(id), false) => detach(id).map(Some),
            (AttachHandle::Plain(id), true) => end_attach(id).map(Some),
            (AttachHandle::Deferred(id, _), false) => detach_deferred(id),
            (AttachHandle::Deferred(id, _), true) => end_deferred(id),
        };
        let Some(index) = index.filter(|_| allowed) else {
            assert_eq!(
                result.err(),
                Some(DetachError::NotCurrent),
                "a refused detach"
            );
            return;
        };
        let returned = result.expect("an allowed detach");
        // What was current at the end: the topmost attach's frame, or below a deferred
        // attach on top whose context was never fetched, the frame under it.
        let in_fact = self.current_in_fact(index);
        let never_fetched = in_fact.is_none();
        let unfetched = match self.attaches[index].handle {
            AttachHandle::Deferred(_, key) if never_fetched => {
                FETCHABLE.with(|f| f.borrow_mut().remove(&key))
            }
            _ => None,
        };
        let attached = self.attaches[index].attached.clone();
        self.current = self.forget_attaches_from(index);
        match returned {
            Some(context) => {
                let mut frame = in_fact.expect("a context handed back that was never fetched");
                assert_eq!(frame.stack.len(), 1, "scopes in an attach are balanced");
                let model = ModelContext {
                    top: frame.stack.pop().expect("the frame's logical context"),
                    base: frame.base,
                };
                check_context::<T>(&context, &model);
                self.keep_context(context, model);
            }
            None => {
                // Never fetched: its context waited untouched, and is kept as it was.
                assert!(never_fetched, "no context handed back, yet it was fetched");
                let context = unfetched.expect("the context still waits to be fetched");
                check_context::<T>(&context, &attached);
                self.keep_context(context, attached);
            }
        }
        self.check_all();
    }

    /// Runs operations until an `End` (unless at the outermost level) or the end of `ops`.
    fn block(&mut self, ops: &mut std::slice::Iter<'_, Op>, outermost: bool) {
        // A deferred attach is fetched by its first use: not checked at once (after it is
        // made, or at the end of a body that did nothing after it, or of an empty one), so
        // that one ended before any use, by a detach, an enclosing attach's end, a run or a
        // scope, is seen to hand back nothing.
        let mut unchecked = true;
        while let Some(op) = ops.next() {
            if matches!(op, Op::End) && !outermost {
                break;
            }
            self.apply(op, ops);
            unchecked = matches!(op, Op::AttachLeft { deferred: true, .. });
            if !unchecked {
                self.check_all();
            }
            self.check_stored();
        }
        if !unchecked {
            self.check_all();
        }
    }

    /// Runs a scope's body, then raises a planned panic if asked to.
    fn scope_body(&mut self, ops: &mut std::slice::Iter<'_, Op>, panic: bool) {
        self.depth += 1;
        self.block(ops, false);
        self.depth -= 1;
        if panic {
            panic::panic_any(PlannedPanic);
        }
    }

    fn apply(&mut self, op: &Op, ops: &mut std::slice::Iter<'_, Op>) {
        let nested = self.depth < MAX_DEPTH;
        match *op {
            Op::Set {
                var,
                value,
                keep_token,
            } => {
                let i = var.index();
                let value = u16::from(value);
                let shown = self.current.find(i);
                let token = T::vars()[i].set(T::new(value));
                let top = self.current.top();
                let old = top.map.insert(i, value);
                // PEP 567: the value the variable showed, from whichever layer.
                assert_eq!(plain(token.old_value()), shown, "Token::old_value");
                assert_eq!(token.var_id(), T::vars()[i].id(), "Token::var_id");
                let lc = top.ident;
                if keep_token {
                    let kept = KeptToken {
                        token,
                        var: i,
                        lc,
                        old,
                    };
                    push_bounded(&mut self.tokens, kept, TOKENS);
                }
            }
            Op::Delete(var) => {
                let i = var.index();
                let expected = self.current.top().map.remove(&i);
                match T::vars()[i].delete() {
                    Ok(()) => assert!(expected.is_some(), "delete of an absent variable"),
                    Err(error) => {
                        assert!(expected.is_none(), "delete failed: {error}");
                        assert_eq!(error.var_name(), T::vars()[i].name(), "LookupError name");
                    }
                }
            }
            Op::Get(var) => self.check_var(var.index()),
            Op::GetTopmost(var) => {
                let i = var.index();
                let expected = self.current.top().map.get(&i).copied();
                assert_eq!(plain(T::vars()[i].get_topmost()), expected, "get_topmost");
            }
            Op::Reset { token, var } => {
                let Some(t) = pick(token, self.tokens.len()) else {
                    return;
                };
                let i = var.index();
                let top = self.current.stack.last().expect("a frame").ident;
                // `reset` consumes the token, whatever the outcome.
                let kept = self.tokens.remove(t);
                let expected = if kept.var != i {
                    Err(TokenError::WrongVar)
                } else if kept.lc != top {
                    Err(TokenError::WrongContext)
                } else {
                    Ok(())
                };
                assert_eq!(T::vars()[i].reset(kept.token), expected, "reset");
                if expected.is_ok() {
                    let top = self.current.top();
                    match kept.old {
                        Some(value) => top.map.insert(kept.var, value),
                        None => top.map.remove(&kept.var),
                    };
                }
            }
            Op::PushLc { lc, panic } if nested => {
                let slot = lc.map(|i| usize::from(i) % STORED_LCS);
                let stored = slot.and_then(|s| self.lcs[s].take());
                let (mut real, model) = match stored {
                    Some(pair) => pair,
                    None => (LogicalContext::new(), self.fresh_lc()),
                };
                self.current.stack.push(model);
                self.real_scope += 1;
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                    run_with_logical_context(&mut real, || self.scope_body(ops, panic))
                }));
                self.end_scope_attaches(false);
                self.real_scope -= 1;
                assert_eq!(outcome.is_err(), panic, "run_with_logical_context panic");
                let model = self
                    .current
                    .stack
                    .pop()
                    .expect("the pushed logical context");
                check_lc::<T>(&real, &model);
                self.check_all();
                if let Some(s) = slot {
                    self.lcs[s] = Some((real, model));
                }
            }
            Op::EnterContext { context, panic } if nested => {
                let index = usize::from(context) % STORED;
                let (mut real, model) = self.take_context(context);
                let inner = ModelCurrent {
                    base: model.base,
                    stack: vec![model.top],
                };
                let outer = std::mem::replace(&mut self.current, inner);
                self.real_scope += 1;
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                    real.run(|| self.scope_body(ops, panic))
                }));
                self.end_scope_attaches(true);
                self.real_scope -= 1;
                assert_eq!(outcome.is_err(), panic, "Context::run panic");
                let mut inner = std::mem::replace(&mut self.current, outer);
                assert_eq!(inner.stack.len(), 1, "scopes are balanced");
                let model = ModelContext {
                    top: inner.stack.pop().expect("the frame's logical context"),
                    base: inner.base,
                };
                check_context::<T>(&real, &model);
                self.check_all();
                self.contexts[index] = Some((real, model));
            }
            Op::RunInSnapshot { snapshot, panic } if nested => {
                let (ec, base) = match pick(snapshot, self.snapshots.len()) {
                    Some(s) => self.snapshots[s].clone(),
                    None => (ExecutionContext::new(), ModelEc::default()),
                };
                let inner = ModelCurrent {
                    base: base.clone(),
                    stack: vec![self.fresh_lc()],
                };
                let outer = std::mem::replace(&mut self.current, inner);
                self.real_scope += 1;
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                    run_with_execution_context(&ec, || self.scope_body(ops, panic))
                }));
                self.end_scope_attaches(true);
                self.real_scope -= 1;
                assert_eq!(outcome.is_err(), panic, "run_with_execution_context panic");
                self.current = outer;
                check_ec::<T>(&ec, &base, View::Plain);
                self.check_all();
            }
            Op::Scope { var, value, panic } if nested => {
                let i = var.index();
                let value = u16::from(value);
                let old = self.current.top().map.insert(i, value);
                self.scope_bases.push(self.attaches.len());
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                    T::vars()[i].scope(T::new(value), || self.scope_body(ops, panic))
                }));
                let base = self.scope_bases.pop().expect("this scope's base");
                assert_eq!(outcome.is_err(), panic, "scope panic");
                // Attaches left inside end with the scope: the context the first of them
                // displaced, where the value was set, is current again.
                if self.attaches.len() > base {
                    self.current = self.forget_attaches_from(base);
                }
                let top = self.current.top();
                match old {
                    Some(old) => top.map.insert(i, old),
                    None => top.map.remove(&i),
                };
                self.check_all();
            }
            Op::WithBorrow(var) if nested => {
                let i = var.index();
                let expected = self.current.find(i).or(DEFAULTS[i]);
                T::vars()[i].with(|value| {
                    let seen = value.map(Val::plain);
                    assert_eq!(seen, expected, "with");
                    self.with_borrows += 1;
                    self.scope_body(ops, false);
                    self.with_borrows -= 1;
                    // The borrowed value must outlive whatever the scope did to the variable.
                    let now = value.map(Val::plain);
                    assert_eq!(now, seen, "value borrowed by with() changed");
                });
                self.check_all();
            }
            Op::Attach {
                context,
                deferred,
                end,
            } if nested => {
                let (real, model) = self.take_context(context);
                let handle = self.attach(real, model, deferred);
                if !deferred {
                    self.check_all();
                }
                self.depth += 1;
                self.block(ops, false);
                self.depth -= 1;
                self.end_attach(handle, end);
            }
            Op::AttachLeft { context, deferred } if self.with_borrows == 0 => {
                let (real, model) = self.take_context(context);
                self.attach(real, model, deferred);
            }
            Op::Detach(i) | Op::EndAttach(i) if self.with_borrows == 0 => {
                // Only attaches made since the innermost variable scope began (see
                // `scope_bases`).
                let floor = self.scope_bases.last().copied().unwrap_or(0);
                if let Some(i) = pick(i, self.attaches.len() - floor).map(|i| i + floor) {
                    let handle = self.attaches[i].handle;
                    self.end_attach(handle, matches!(op, Op::EndAttach(_)));
                }
            }
            // Too deep to nest: the scope's operations run in the enclosing scope.
            Op::PushLc { .. }
            | Op::EnterContext { .. }
            | Op::RunInSnapshot { .. }
            | Op::Scope { .. }
            | Op::WithBorrow(_)
            | Op::Attach { .. } => {}
            // Inside a `with` borrow.
            Op::AttachLeft { .. } | Op::Detach(_) | Op::EndAttach(_) => {}
            Op::End => {}
            Op::CheckAll => self.check_all(),
            Op::Snapshot => {
                let ec = get_execution_context();
                let model = self.current.snapshot();
                check_ec::<T>(&ec, &model, View::Plain);
                push_bounded(&mut self.snapshots, (ec, model), STORED);
            }
            Op::CopyContext => {
                let context = copy_context();
                let model = ModelContext {
                    top: self.fresh_lc(),
                    base: self.current.snapshot(),
                };
                check_context::<T>(&context, &model);
                self.keep_context(context, model);
            }
            Op::NewContext => {
                let model = ModelContext {
                    top: self.fresh_lc(),
                    base: ModelEc::default(),
                };
                self.keep_context(Context::new(), model);
            }
            Op::CloneContext(c) => {
                let Some((context, model)) = &self.contexts[usize::from(c) % STORED] else {
                    return;
                };
                let copy = context.clone();
                let mut copy_model = model.clone();
                copy_model.top.ident = self.fresh_lc().ident;
                check_context::<T>(&copy, &copy_model);
                self.keep_context(copy, copy_model);
            }
            Op::ContextFromSnapshot(s) => {
                let Some(s) = pick(s, self.snapshots.len()) else {
                    return;
                };
                let (ec, base) = self.snapshots[s].clone();
                let model = ModelContext {
                    top: self.fresh_lc(),
                    base,
                };
                let context = Context::from(ec);
                check_context::<T>(&context, &model);
                self.keep_context(context, model);
            }
            Op::ContextExecutionContext(c) => {
                let Some((context, model)) = &self.contexts[usize::from(c) % STORED] else {
                    return;
                };
                let ec = context.execution_context();
                let ec_model = model.execution_context();
                check_ec::<T>(&ec, &ec_model, View::Plain);
                push_bounded(&mut self.snapshots, (ec, ec_model), STORED);
            }
            Op::CheckSnapshot { snapshot, view } => {
                let Some(s) = pick(snapshot, self.snapshots.len()) else {
                    return;
                };
                let (ec, model) = &self.snapshots[s];
                let viewed = match view {
                    View::Plain => ec.clone(),
                    View::Squashed => ec.squashed(),
                    View::Inherited => ec.inherited(),
                };
                check_ec::<T>(&viewed, model, view);
                check_ec::<T>(ec, model, View::Plain);
            }
            Op::CheckContext(c) => {
                if let Some((context, model)) = &self.contexts[usize::from(c) % STORED] {
                    check_context::<T>(context, model);
                }
            }
            Op::CheckLc(l) => {
                if let Some((lc, model)) = &self.lcs[usize::from(l) % STORED_LCS] {
                    check_lc::<T>(lc, model);
                }
            }
            Op::DropToken(t) => {
                if let Some(t) = pick(t, self.tokens.len()) {
                    self.tokens.remove(t);
                }
            }
            Op::DropSnapshot(s) => {
                if let Some(s) = pick(s, self.snapshots.len()) {
                    self.snapshots.remove(s);
                }
            }
            Op::DropContext(c) => {
                self.contexts[usize::from(c) % STORED] = None;
            }
        }
    }
}

fuzz_target!(|input: Input| {
    init();
    let ops = &input.ops[..input.ops.len().min(MAX_OPS)];
    run::<u16>(ops);
    run::<Counted>(ops);
    assert_eq!(
        LIVE.load(Ordering::Relaxed),
        0,
        "Counted values outlived every context that held them"
    );
});

/// Runs `ops` with the variables of `T`, then checks that nothing leaked out of the input.
fn run<T: Val>(ops: &[Op]) {
    let mut outer = Context::new();
    let mut harness = Harness::<T> {
        current: ModelCurrent {
            base: ModelEc::default(),
            stack: vec![ModelLc {
                ident: 0,
                map: Bindings::new(),
            }],
        },
        lcs: Default::default(),
        contexts: Default::default(),
        next_context: 0,
        snapshots: Vec::new(),
        tokens: Vec::new(),
        next_ident: 0,
        depth: 0,
        attaches: Vec::new(),
        real_scope: 0,
        with_borrows: 0,
        scope_bases: Vec::new(),
    };
    outer.run(|| harness.block(&mut ops.iter(), true));
    // The run ended the attaches left in it.
    harness.end_scope_attaches(true);
    assert!(
        harness.attaches.is_empty(),
        "every attach was made in the run"
    );
    drop(harness);
    drop(outer);
    FETCHABLE.with(|f| f.borrow_mut().clear());
    // The thread is back in its own, empty context: nothing leaked out of the input.
    assert!(
        get_execution_context().is_empty(),
        "context leaked between inputs"
    );
    for (i, var) in T::vars().iter().enumerate() {
        assert_eq!(plain(var.get()), DEFAULTS[i], "value leaked between inputs");
        assert!(!var.is_set(), "value leaked between inputs");
        assert_eq!(var.get_topmost(), None, "value leaked between inputs");
    }
}
