//! Lua 5.4 states as interpreters (feature `lua`): PEP 554's `exec(source)` taken literally.
//!
//! A [`LuaInterpreter`] is an [`Interpreter`] (its ID, lifecycle, `__main__` and the context
//! state it keeps per thread) together with a Lua state of its own ([`mlua::Lua`], Lua 5.4
//! built from source). Every [`exec`](LuaInterpreter::exec) and [`call`](LuaInterpreter::call)
//! runs the Lua code inside [`Interpreter::exec`], so the isolation of context state is the
//! interpreter's: a `ContextVar` set by the script is invisible in main and in every other
//! interpreter, and still there at the next `exec` on the same thread. The Lua heap and
//! globals are the state's own.
//!
//! What the scripts see, beside Lua's safe standard libraries (mlua's safe set: no `debug`
//! library, no C modules), with two changes made for an embedded state: `load`, `loadfile`,
//! `dofile` and `require` take source text only (Lua does not check binary chunks, and
//! crafted bytecode can corrupt the host's memory; asking for one is Lua's usual "attempt
//! to load a binary chunk" error), and `os.exit` raises an error instead of ending the host
//! process. The `io` and `os` libraries are otherwise Lua's own: a script can read and
//! write files and run commands with the host's rights. The state is not a sandbox for
//! hostile scripts. The globals:
//!
//! | global | what |
//! |---|---|
//! | `contextvars` | `ContextVar(name [, default])` with `:get([default])`, `:set(v)` (a token), `:reset(token)`; `copy_context()` and `ctx:run(f, ...)` (an error `f` raises comes out as the value raised), `ctx:get(var [, default])`; `no_context(co_or_f)` (an error for a coroutine that already set a variable). A variable lives as long as the process: a name is at most 256 bytes, and a state creates at most 10,000 variables |
//! | `coroutine` | Lua's, with `resume` and `wrap` giving each coroutine its own logical context (PEP 550 generators), and `close` running a coroutine's to-be-closed variables in that context; the coroutine a task ([`spawn`](LuaInterpreter::spawn)) runs its function on is the task's: `resume` and `close` refuse it, and `status` calls it `normal` while it waits |
//! | `interpreters` | `create_queue([maxsize])`, `channel()` (send end, receive end), `UNBOUND`, `id()` |
//! | `task` | `sleep(seconds)` and `yield_now()`: Rust futures, awaited by Lua functions run as tasks ([`spawn`](LuaInterpreter::spawn)), also inside coroutines those functions resume |
//!
//! Queues (`q:put(v)`, `q:get()`, `q:put_nowait(v)`, `q:get_nowait()`, `q:put_timeout(v,
//! s)`, `q:get_timeout(s)`, `q:len()`, `q:close()`) and channel ends (`send`, `send_nowait`,
//! `send_timeout`, `send_buffered`, `recv`, `recv_nowait`, `recv_timeout`) carry shareable
//! data only: `nil`, booleans, integers, floats, strings and sequences of those (tuples; a
//! tuple arrives as a sequence with its length in `n`, like `table.pack`), queues and channel
//! ends. Sending a function, a table holding one, a table that is not a sequence, a coroutine
//! or another userdata is an error in Lua ([`LuaError::NotShareable`] as message), and so is
//! a value of more than 2^24 sequence items in all (the copy is made outside the state's
//! memory limit; a table that appears several times is copied once and shared). The other
//! way, a tuple that appears several times in a received value arrives as one table, and
//! tuples nested more than 64 deep are refused. A received
//! item that has no Lua form (a buffer) or that the memory limit refuses is an error too,
//! and the item is gone from the queue or channel.
//! `__main__` ([`prepare_main`](LuaInterpreter::prepare_main),
//! [`get_main_attr`](LuaInterpreter::get_main_attr)) is the state's globals, with the same
//! conversions.
//!
//! Failures come back as [`InterpreterError::Failed`] carrying an
//! [`ExecutionFailed`] whose source is a [`LuaError`]
//! (its message is Lua's, with the traceback for a runtime error). A panic in a Rust callback
//! is caught where it crosses back out of Lua and reported the same way (`type_name` is
//! `"panic"`), in a spawned task too (its result, not a panic of the tokio task). Neither
//! harms the state or the caller's context.
//!
//! A call into the state holds it for its whole length (mlua's lock), blocking queue and
//! channel calls included: while a script waits in `q:get()`, the state's own tasks
//! ([`spawn`](LuaInterpreter::spawn)) cannot run, so a script must not block on an item only
//! one of its own tasks would put (it would wait forever). Use the `_nowait` or `_timeout`
//! forms there, or another interpreter.
//!
//! Rust callbacks registered through [`lua`](LuaInterpreter::lua) run in the interpreter's
//! context, not in a coroutine's own: a Rust `ContextVar::set` inside a coroutine lands in
//! the context of the `exec` or task that resumed it.
//!
//! Costs (the report's interpreters group, `cargo run --release -p benches --bin report --
//! --only interpreters`): an `exec` of a one-line snippet costs what `mlua` alone costs plus
//! about 35 ns. A coroutine resume stays in Lua: `coroutine.resume` is a Lua function that
//! records the resumer and calls Lua's own resume, and the coroutines' logical contexts
//! are read in place by `ContextVar:get` and only entered when `:set`, `:reset` or
//! `copy_context` runs, so a resume costs the
//! same whether or not the coroutine has a context of its own, and never leaves Lua.
//!
//! ```
//! use exec_context::interpreters::Shareable;
//! use exec_context::lua::LuaInterpreter;
//!
//! let lua = LuaInterpreter::new().unwrap();
//! lua.prepare_main([("base", Shareable::from(40))]).unwrap();
//! lua.exec(r#"
//!     request = contextvars.ContextVar("request")
//!     function answer(n) return base + n end
//! "#).unwrap();
//! assert_eq!(lua.call("answer", [2.into()]).unwrap(), Shareable::from(42));
//!
//! // A syntax error is an `ExecutionFailed`, and the state is still usable.
//! let error = lua.exec("this is not Lua").unwrap_err();
//! assert!(error.as_failed().unwrap().message().contains("syntax error"));
//! lua.exec("assert(answer(1) == 41)").unwrap();
//! ```

mod convert;
mod coroutines;
mod vars;

/// The `mlua` crate this module is built on (Lua 5.4, vendored), for [`LuaInterpreter::lua`].
pub use mlua;

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use crate::interpreters::{self, ExecutionFailed, Interpreter, InterpreterError, Shareable};

/// Why Lua code failed: the source of the
/// [`ExecutionFailed`] that an
/// [`exec`](LuaInterpreter::exec) or [`call`](LuaInterpreter::call) returns.
///
/// ```
/// use exec_context::lua::{LuaError, LuaInterpreter};
///
/// let lua = LuaInterpreter::new().unwrap();
/// let error = lua.exec("error('boom')").unwrap_err();
/// let failed = error.as_failed().unwrap();
/// assert!(matches!(failed.downcast_source::<LuaError>(), Some(LuaError::Runtime { .. })));
/// assert!(failed.message().contains("boom"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LuaError {
    /// The source did not compile.
    Syntax {
        /// Lua's message.
        message: String,
    },
    /// The code raised an error: Lua's message, then the traceback.
    Runtime {
        /// Lua's message and traceback.
        message: String,
    },
    /// The state's memory limit was reached ([`Builder::memory_limit`]). Also reached inside
    /// a coroutine and passed on by `coroutine.wrap` or by `assert(coroutine.resume(co))`:
    /// Lua hands such an error on as its fixed message, `not enough memory`, which is what
    /// is recognized, after any positions (`chunk:line: `) put in front of it (so an
    /// `error("not enough memory")` is classified the same).
    Memory {
        /// Lua's message.
        message: String,
    },
    /// The code ran more instructions than its budget ([`Builder::instruction_budget`]).
    InstructionBudget {
        /// The budget, in Lua VM instructions per `exec` or `call`.
        budget: u64,
    },
    /// A value that cannot cross interpreters was given where shareable data is needed.
    NotShareable {
        /// What it was.
        what: String,
    },
    /// [`call`](LuaInterpreter::call) or [`spawn`](LuaInterpreter::spawn) named a global
    /// that is not a function.
    NotAFunction {
        /// The name.
        name: String,
    },
    /// [`spawn`](LuaInterpreter::spawn) outside a tokio runtime.
    NoRuntime,
}

impl LuaError {
    /// Classifies an error of `mlua`, finding this crate's own errors inside callback errors.
    pub(crate) fn from_mlua(error: &mlua::Error) -> LuaError {
        if let Some(own) = find_own(error) {
            return own.clone();
        }
        // A memory or syntax error raised inside a callback (a queue's `get` that allocates
        // the item's string, a `load` of bad text) is still that kind of error. A memory
        // error in a coroutine reaches its resumer as Lua's fixed message, and
        // `coroutine.wrap` (or `assert(coroutine.resume(co))`) raises it again as an
        // ordinary error: still the memory limit, at the top or under a callback.
        match innermost(error) {
            mlua::Error::MemoryError(message) => {
                return LuaError::Memory {
                    message: message.clone(),
                };
            }
            mlua::Error::RuntimeError(message)
                if message.lines().next().is_some_and(is_memory_message) =>
            {
                return LuaError::Memory {
                    message: message.clone(),
                };
            }
            mlua::Error::SyntaxError { message, .. } => {
                return LuaError::Syntax {
                    message: message.clone(),
                };
            }
            _ => {}
        }
        match error {
            mlua::Error::SyntaxError { message, .. } => LuaError::Syntax {
                message: message.clone(),
            },
            mlua::Error::MemoryError(message) => LuaError::Memory {
                message: message.clone(),
            },
            mlua::Error::RuntimeError(message) => LuaError::Runtime {
                message: message.clone(),
            },
            other => LuaError::Runtime {
                message: other.to_string(),
            },
        }
    }
}

/// The message of Lua's memory error (`lstate.c`'s `MEMERRMSG`).
const LUA_MEMORY_MESSAGE: &str = "not enough memory";

/// Whether `line` is Lua's memory error message, after the positions (`chunk:line: `) that
/// `error` and `assert` put in front of a message they raise again.
fn is_memory_message(line: &str) -> bool {
    let mut rest = line;
    loop {
        if rest == LUA_MEMORY_MESSAGE {
            return true;
        }
        let Some((position, after)) = rest.split_once(": ") else {
            return false;
        };
        let numbered = position
            .rsplit_once(':')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !numbered {
            return false;
        }
        rest = after;
    }
}

/// The error a callback or context error wraps, all the way down.
fn innermost(error: &mlua::Error) -> &mlua::Error {
    match error {
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            innermost(cause)
        }
        other => other,
    }
}

fn find_own(error: &mlua::Error) -> Option<&LuaError> {
    match error {
        mlua::Error::ExternalError(inner) => inner.downcast_ref::<LuaError>(),
        mlua::Error::CallbackError { cause, .. } => find_own(cause),
        mlua::Error::WithContext { cause, .. } => find_own(cause),
        mlua::Error::MemoryError(_) => None,
        _ => None,
    }
}

impl fmt::Display for LuaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LuaError::Syntax { message } => write!(f, "syntax error: {message}"),
            LuaError::Runtime { message } => f.write_str(message),
            LuaError::Memory { message } => write!(f, "memory limit reached: {message}"),
            LuaError::InstructionBudget { budget } => {
                write!(f, "instruction budget of {budget} exceeded")
            }
            LuaError::NotShareable { what } => write!(f, "not shareable: {what}"),
            LuaError::NotAFunction { name } => write!(f, "global {name:?} is not a function"),
            LuaError::NoRuntime => f.write_str("spawning a Lua task needs a tokio runtime"),
        }
    }
}

impl std::error::Error for LuaError {}

fn lua_err(error: mlua::Error) -> LuaError {
    LuaError::from_mlua(&error)
}

/// An interpreter's instruction budget: how many instructions each run may take.
#[derive(Debug)]
struct Budget {
    budget: u64,
}

std::thread_local! {
    /// The budgeted run on this thread: its budget (by address) and the instructions it has
    /// left. Per thread, since a state runs on the thread that calls it: an `exec` on one
    /// thread and a task's poll on another each spend their own.
    static RUN: Cell<(usize, u64)> = const { Cell::new((0, 0)) };
}

impl Budget {
    /// Starts a run on this thread with the whole budget, until the guard drops (a nested
    /// run, of another state, gets its own and gives this one back).
    fn start(&self) -> BudgetRun {
        let previous = RUN.replace((self.key(), self.budget));
        BudgetRun(previous)
    }

    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Spends `step` instructions of this thread's run, if it is this budget's; `false` once
    /// they are not there. Code of this state that runs outside a budgeted run is not counted.
    fn spend(&self, step: u64) -> bool {
        let (key, left) = RUN.get();
        if key != self.key() {
            return true;
        }
        if left < step {
            return false;
        }
        RUN.set((key, left - step));
        true
    }

    /// Whether this thread's run of this budget has spent it.
    fn is_spent(&self, step: u64) -> bool {
        let (key, left) = RUN.get();
        key == self.key() && left < step
    }
}

/// Ends a budgeted run (also when it panics), giving back the one it interrupted.
struct BudgetRun((usize, u64));

impl Drop for BudgetRun {
    fn drop(&mut self) {
        RUN.set(self.0);
    }
}

/// A spawned task's future, dropped inside a budgeted run: dropping an unfinished one (its
/// task aborted, or its runtime shut down) closes its Lua thread, which runs the pending
/// to-be-closed variables' `__close` handlers, Lua code the budget stops like any other.
struct BudgetedDrop<F> {
    future: Option<std::pin::Pin<Box<F>>>,
    budget: Option<Arc<Budget>>,
}

impl<F> Drop for BudgetedDrop<F> {
    fn drop(&mut self) {
        let _run = self.budget.as_deref().map(Budget::start);
        drop(self.future.take());
    }
}

/// How often (in instructions) the budget hook runs.
const BUDGET_STEP: u64 = 1000;

/// Lua's part of the instruction budget: error catchers re-raise a spent budget (`load`
/// catches an error of a reader function); a finalizer (`__gc`), which Lua runs with hooks
/// off, cannot be set, since the budget could not stop it.
const KEEP_BUDGET: &str = r#"
local is_spent, raise = ...
local pcall, xpcall, resume, load = pcall, xpcall, coroutine.resume, load
local setmetatable, rawget, type, error = setmetatable, rawget, type, error
local function check(ok, ...)
  if not ok and is_spent() then raise() end
  return ok, ...
end
_G.pcall = function(...) return check(pcall(...)) end
_G.xpcall = function(...) return check(xpcall(...)) end
coroutine.resume = function(...) return check(resume(...)) end
local close = coroutine.close
coroutine.close = function(...) return check(close(...)) end
_G.load = function(...)
  local chunk, message = load(...)
  if chunk == nil and is_spent() then raise() end
  return chunk, message
end
_G.setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("__gc is not allowed under an instruction budget (finalizers run unbudgeted)", 2)
  end
  return setmetatable(t, mt)
end
"#;

/// Makes the chunk loaders (`load`, `loadfile`, `dofile` and `require`'s searcher of Lua
/// files) take source text only (Lua does not verify binary chunks, and crafted bytecode
/// can corrupt memory), keeping each loader's arity (`load` and `loadfile` treat an `env`
/// given as `nil` apart from one not given), and makes `os.exit` an error. Runs first, so
/// that the wrappers installed later wrap these.
const EMBEDDED: &str = r##"
local load, loadfile, select, error = load, loadfile, select, error
_G.load = function(...)
  local chunk, name, _, env = ...
  if select("#", ...) >= 4 then
    return load(chunk, name, "t", env)
  end
  return load(chunk, name, "t")
end
_G.loadfile = function(...)
  local filename, _, env = ...
  if select("#", ...) >= 3 then
    return loadfile(filename, "t", env)
  end
  return loadfile(filename, "t")
end
_G.dofile = function(filename)
  local chunk, message = loadfile(filename, "t")
  if chunk == nil then
    error(message, 0)
  end
  return chunk()
end
-- `require`'s searcher of Lua files, as Lua's own but for source text only.
if package ~= nil and package.searchers ~= nil then
  -- The table itself, as Lua's own searcher holds it: a script may assign the global.
  local package, searchpath, format, type = package, package.searchpath, string.format, type
  package.searchers[2] = function(name)
    local path = package.path
    if type(path) ~= "string" then
      error("'package.path' must be a string", 0)
    end
    local filename, missing = searchpath(name, path)
    if filename == nil then
      return missing
    end
    local chunk, message = loadfile(filename, "t")
    if chunk == nil then
      error(format("error loading module '%s' from file '%s':\n\t%s", name, filename,
        message), 0)
    end
    return chunk, filename
  end
end
if os ~= nil then
  os.exit = function()
    error("os.exit is not available: the interpreter is embedded in a host process", 2)
  end
end
"##;

/// Under an instruction budget, every coroutine created costs one budget step: Lua counts
/// instructions per coroutine, so one that runs fewer than a step between two counts would
/// never be charged (runs before `coroutines::install`, which captures `coroutine.create`,
/// so that `coroutine.wrap` and `contextvars.no_context` charge too).
const CHARGE_COROUTINES: &str = r#"
local charge, create = ..., coroutine.create
coroutine.create = function(f) charge() return create(f) end
"#;

/// Options of a [`LuaInterpreter`]: its memory limit and instruction budget.
///
/// ```
/// use exec_context::lua::{LuaError, LuaInterpreter};
///
/// let lua = LuaInterpreter::builder().instruction_budget(100_000).build().unwrap();
/// let error = lua.exec("while true do end").unwrap_err();
/// let source = error.as_failed().unwrap().downcast_source::<LuaError>();
/// assert_eq!(source, Some(&LuaError::InstructionBudget { budget: 100_000 }));
/// lua.exec("x = 1").unwrap(); // the budget is per run, and the state still usable
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    memory_limit: Option<usize>,
    instruction_budget: Option<u64>,
}

impl Builder {
    /// The most memory the Lua state may hold, in bytes (`mlua`'s `set_memory_limit`).
    /// Reaching it fails the allocation with [`LuaError::Memory`]; what the script dropped
    /// can be collected and the state used again. It counts the state's own set-up (the
    /// standard libraries and this crate's tables, some tens of KiB): [`build`](Self::build)
    /// fails when the limit is below that.
    ///
    /// ```
    /// use exec_context::lua::{LuaError, LuaInterpreter};
    ///
    /// let error = LuaInterpreter::builder().memory_limit(1024).build().unwrap_err();
    /// let failed = error.as_failed().unwrap();
    /// assert!(matches!(failed.downcast_source::<LuaError>(), Some(LuaError::Memory { .. })));
    /// assert!(LuaInterpreter::builder().memory_limit(1 << 20).build().is_ok());
    /// ```
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// How many Lua VM instructions each [`exec`](LuaInterpreter::exec) or
    /// [`call`](LuaInterpreter::call) may run (counted in steps of 1000) before it stops with
    /// [`LuaError::InstructionBudget`]. Each poll of a task started with
    /// [`spawn`](LuaInterpreter::spawn) gets the whole budget too (its code runs between its
    /// awaits, and a poll that never awaits is stopped like a runaway `exec`), and so does
    /// the drop of an unfinished task (an abort runs its pending `__close` handlers). Each
    /// run counts its own instructions, on its own thread: concurrent runs and polls do not
    /// spend or renew each other's.
    ///
    /// Ways round the count are closed off under a budget: each coroutine created counts
    /// as one step (Lua counts instructions per coroutine, and one shorter than a step would
    /// never be counted, so a program that makes a coroutine per item needs a budget of a
    /// step per item), `pcall`, `xpcall`, `coroutine.resume`, `coroutine.close` and `load`
    /// pass a spent budget on instead of catching it, and `setmetatable` refuses a metatable
    /// with `__gc` (Lua runs finalizers with hooks off). Time spent inside one call of a C
    /// function is not counted: a pathological string pattern (`string.find` backtracking),
    /// a huge `string.rep`, `table.concat`, or the `os` and `io` libraries. The budget is a
    /// guard against runaway Lua code, not a sandbox for hostile scripts.
    ///
    /// ```
    /// use exec_context::lua::{LuaError, LuaInterpreter};
    ///
    /// let lua = LuaInterpreter::builder().instruction_budget(50_000).build().unwrap();
    /// // A `pcall` does not catch a spent budget.
    /// let error = lua.exec("pcall(function() while true do end end)").unwrap_err();
    /// let source = error.as_failed().unwrap().downcast_source::<LuaError>();
    /// assert!(matches!(source, Some(LuaError::InstructionBudget { .. })));
    /// lua.exec("for i = 1, 1000 do end").unwrap(); // well within the budget
    /// ```
    pub fn instruction_budget(mut self, instructions: u64) -> Self {
        self.instruction_budget = Some(instructions);
        self
    }

    /// Creates the interpreter and its Lua state.
    ///
    /// # Errors
    ///
    /// [`InterpreterError::Failed`] if the state could not be set up, or if the memory
    /// limit is below what the set-up state takes ([`LuaError::Memory`]).
    ///
    /// ```
    /// use exec_context::lua::LuaInterpreter;
    ///
    /// let lua = LuaInterpreter::builder().memory_limit(8 << 20).build().unwrap();
    /// lua.exec("greeting = 'hello'").unwrap();
    /// assert_eq!(lua.get_main_attr("greeting").unwrap(), Some("hello".into()));
    /// ```
    pub fn build(self) -> Result<LuaInterpreter, InterpreterError> {
        let interp = interpreters::create();
        let lua = Lua::new_with(StdLib::ALL_SAFE, LuaOptions::default())
            .map_err(|e| failed(&interp, lua_err(e)))?;
        let budget = self
            .instruction_budget
            .map(|budget| Arc::new(Budget { budget }));
        interp.try_exec(|| setup(&lua, budget.clone()).map_err(lua_err))?;
        if let Some(limit) = self.memory_limit {
            // mlua checks nothing when the limit is set (and takes 0 for none): a limit the
            // set-up state already passes would fail every run.
            let used = lua.used_memory();
            if limit < used {
                return Err(failed(
                    &interp,
                    LuaError::Memory {
                        message: format!(
                            "the memory limit ({limit} bytes) is below what the state takes \
                             once set up ({used} bytes)"
                        ),
                    },
                ));
            }
            lua.set_memory_limit(limit)
                .map_err(|e| failed(&interp, lua_err(e)))?;
        }
        Ok(LuaInterpreter {
            interp,
            lua,
            budget,
        })
    }
}

fn failed(interp: &Interpreter, error: LuaError) -> InterpreterError {
    InterpreterError::Failed(ExecutionFailed::from_error(interp.id(), error))
}

/// Installs the tables scripts see, and the instruction budget's hook.
fn setup(lua: &Lua, budget: Option<Arc<Budget>>) -> mlua::Result<()> {
    let globals = lua.globals();
    lua.load(EMBEDDED)
        .set_name("=exec_context.embedded")
        .exec()?;
    if let Some(budget) = &budget {
        let step = BUDGET_STEP.min(budget.budget).max(1);
        let charged = budget.clone();
        let charge = lua.create_function(move |_, ()| -> mlua::Result<()> {
            if charged.spend(step) {
                return Ok(());
            }
            Err(mlua::Error::external(LuaError::InstructionBudget {
                budget: charged.budget,
            }))
        })?;
        lua.load(CHARGE_COROUTINES)
            .set_name("=exec_context.budget")
            .call::<()>(charge)?;
    }

    let contextvars = lua.create_table()?;
    let frames = coroutines::install(lua, &contextvars)?;
    vars::install(lua, &frames, &contextvars)?;
    globals.set("contextvars", contextvars)?;

    let interps = lua.create_table()?;
    interps.set(
        "create_queue",
        lua.create_function(|_, maxsize: Option<usize>| {
            Ok(convert::LuaQueue(interpreters::create_queue(
                maxsize.unwrap_or(0),
            )))
        })?,
    )?;
    interps.set(
        "channel",
        lua.create_function(|_, ()| {
            let (send, recv) = interpreters::channel();
            Ok((convert::LuaSendChannel(send), convert::LuaRecvChannel(recv)))
        })?,
    )?;
    interps.set(
        "id",
        lua.create_function(|_, ()| Ok(interpreters::get_current().id()))?,
    )?;
    interps.set("UNBOUND", convert::install_unbound(lua)?)?;
    globals.set("interpreters", interps)?;

    let task = lua.create_table()?;
    task.set(
        "sleep",
        lua.create_async_function(|_, secs: f64| async move {
            let duration = Duration::try_from_secs_f64(secs)
                .map_err(|_| mlua::Error::runtime(format!("ValueError: bad duration {secs}")))?;
            // tokio's timer panics outside a runtime: a Lua error instead, which `pcall`
            // catches like any other. (In a runtime built without timers it still panics,
            // and the run reports that panic.)
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(mlua::Error::runtime(
                    "RuntimeError: task.sleep needs a tokio runtime",
                ));
            }
            tokio::time::sleep(duration).await;
            Ok(())
        })?,
    )?;
    task.set(
        "yield_now",
        lua.create_async_function(|_, ()| async move {
            tokio::task::yield_now().await;
            Ok(())
        })?,
    )?;
    globals.set("task", task)?;

    if let Some(budget) = budget {
        let step = BUDGET_STEP.min(budget.budget).max(1);
        // `pcall`, `xpcall` and `coroutine.resume` catch errors, so a loop around them would
        // outlive the budget: once it is spent, they pass the budget's error on.
        let spent = budget.clone();
        let is_spent = lua.create_function(move |_, ()| Ok(spent.is_spent(step)))?;
        let spent = budget.clone();
        let raise = lua.create_function(move |_, ()| -> mlua::Result<()> {
            Err(mlua::Error::external(LuaError::InstructionBudget {
                budget: spent.budget,
            }))
        })?;
        lua.load(KEEP_BUDGET)
            .set_name("=exec_context.budget")
            .call::<()>((is_spent, raise))?;
        // The global hook, which the coroutines inherit (a thread hook would stop at them).
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(step as u32),
            move |_, _| {
                if !budget.spend(step) {
                    return Err(mlua::Error::external(LuaError::InstructionBudget {
                        budget: budget.budget,
                    }));
                }
                Ok(VmState::Continue)
            },
        )?;
    }
    // `pcall` as set up (passing a spent budget on), for `ctx:run`, whatever scripts later
    // assign to the global.
    lua.set_named_registry_value(vars::PCALL_KEY, globals.get::<Function>("pcall")?)?;
    Ok(())
}

/// Expires the registry values a Lua state's handles let go of, when dropped, if the state
/// is still alive.
struct ExpireRegistry(mlua::WeakLua);

pin_project_lite::pin_project! {
    /// A task's future, then [`ExpireRegistry`]: fields drop in order, so the registry is
    /// expired after the task's future (and its context) is gone, however the task ends.
    struct Expiring<F> {
        #[pin]
        task: F,
        expire: ExpireRegistry,
    }
}

impl<F: Future> Future for Expiring<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.project().task.poll(cx)
    }
}

impl Drop for ExpireRegistry {
    fn drop(&mut self) {
        if let Some(lua) = self.0.try_upgrade() {
            lua.expire_registry_values();
        }
    }
}

/// A Lua 5.4 state running as an [`Interpreter`]; see the [module docs](self).
///
/// It is `Send` and `Sync`: any thread may run it, one at a time (a second concurrent `exec`
/// fails with [`InterpreterError::Running`], as for every interpreter). Dropping it closes
/// the interpreter (when no clone of [`interpreter`](Self::interpreter) is left) and the
/// Lua state.
///
/// ```
/// use exec_context::lua::LuaInterpreter;
///
/// let a = LuaInterpreter::new().unwrap();
/// let b = LuaInterpreter::new().unwrap();
/// a.exec("user = contextvars.ContextVar('user'); user:set('alice'); x = 1").unwrap();
/// a.exec("assert(user:get() == 'alice' and x == 1)").unwrap(); // persists
/// b.exec("assert(user == nil and x == nil)").unwrap(); // invisible elsewhere
/// ```
pub struct LuaInterpreter {
    interp: Interpreter,
    lua: Lua,
    budget: Option<Arc<Budget>>,
}

impl fmt::Debug for LuaInterpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LuaInterpreter")
            .field("id", &self.interp.id())
            .field("used_memory", &self.lua.used_memory())
            .finish_non_exhaustive()
    }
}

impl LuaInterpreter {
    /// A new interpreter with a fresh Lua state, no memory limit and no instruction budget.
    ///
    /// # Errors
    ///
    /// [`InterpreterError::Failed`] if the state could not be set up.
    ///
    /// ```
    /// let lua = exec_context::lua::LuaInterpreter::new().unwrap();
    /// lua.exec("print('hello from Lua')").unwrap();
    /// ```
    pub fn new() -> Result<LuaInterpreter, InterpreterError> {
        Builder::default().build()
    }

    /// Options: a memory limit, an instruction budget.
    ///
    /// ```
    /// let lua = exec_context::lua::LuaInterpreter::builder()
    ///     .memory_limit(1 << 20)
    ///     .build()
    ///     .unwrap();
    /// assert!(lua.exec("local t = {} for i = 1, 1e7 do t[i] = i end").is_err());
    /// lua.exec("x = 1").unwrap();
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The interpreter this state runs in (its ID, `__main__`, lifecycle).
    ///
    /// ```
    /// let lua = exec_context::lua::LuaInterpreter::new().unwrap();
    /// assert!(!lua.interpreter().is_main());
    /// ```
    pub fn interpreter(&self) -> &Interpreter {
        &self.interp
    }

    /// Its ID (the [`interpreter`](Self::interpreter)'s).
    ///
    /// ```
    /// use exec_context::interpreters::Shareable;
    ///
    /// let lua = exec_context::lua::LuaInterpreter::new().unwrap();
    /// assert_eq!(lua.call("interpreters.id", []).unwrap(), Shareable::from(lua.id()));
    /// ```
    pub fn id(&self) -> u64 {
        self.interp.id()
    }

    /// The Lua state, to register functions or read values directly. Code run through it
    /// does not run inside the interpreter; use [`exec`](Self::exec) and
    /// [`call`](Self::call) for that.
    ///
    /// ```
    /// let lua = exec_context::lua::LuaInterpreter::new().unwrap();
    /// let double = lua.lua().create_function(|_, n: i64| Ok(2 * n)).unwrap();
    /// lua.lua().globals().set("double", double).unwrap();
    /// lua.exec("assert(double(21) == 42)").unwrap();
    /// ```
    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Runs `f` inside the interpreter, with the instruction budget renewed (once the
    /// interpreter is its: a call refused as `Running` renews nothing).
    fn enter<T: interpreters::Share>(
        &self,
        f: impl FnOnce(&Lua) -> Result<T, LuaError>,
    ) -> Result<T, InterpreterError> {
        self.interp.try_call(|| {
            let run = self.budget.as_deref().map(Budget::start);
            let result = f(&self.lua);
            drop(run);
            // Registry values whose last handle went during the run (a variable's old
            // value, a token's, a finished coroutine's context) leave the registry now, so
            // the collector can take them: mlua only queues them.
            self.lua.expire_registry_values();
            result
        })
    }

    /// Runs Lua source text in the interpreter: PEP 554's `run(source)`, PEP 734's
    /// `exec(code)`.
    ///
    /// # Errors
    ///
    /// [`InterpreterError::Failed`] with a [`LuaError`] as source for a syntax or runtime
    /// error, the memory limit or the instruction budget; with `type_name` `"panic"` for a
    /// panic in a Rust callback. The other [`InterpreterError`]s as for
    /// [`Interpreter::exec`].
    ///
    /// ```
    /// let lua = exec_context::lua::LuaInterpreter::new().unwrap();
    /// lua.exec("greeting = 'hello'").unwrap();
    /// let error = lua.exec("error('no')").unwrap_err();
    /// assert!(error.as_failed().unwrap().message().contains("no"));
    /// ```
    pub fn exec(&self, source: &str) -> Result<(), InterpreterError> {
        self.enter(|lua| {
            lua.load(source)
                .set_name("=exec")
                .set_mode(mlua::chunk::ChunkMode::Text)
                .exec()
                .map_err(lua_err)
        })
    }

    /// Calls the global function `name` with shareable arguments, and returns its result as
    /// shareable data (no value: `None`; several: a tuple). `name` may be a dotted path
    /// (`"module.function"`).
    ///
    /// # Errors
    ///
    /// As [`exec`](Self::exec), and [`LuaError::NotAFunction`],
    /// [`LuaError::NotShareable`] for a result that cannot leave the state.
    ///
    /// ```
    /// use exec_context::interpreters::Shareable;
    ///
    /// let lua = exec_context::lua::LuaInterpreter::new().unwrap();
    /// lua.exec("function divmod(a, b) return a // b, a % b end").unwrap();
    /// let result = lua.call("divmod", [7.into(), 2.into()]).unwrap();
    /// assert_eq!(result, Shareable::from((3, 1)));
    /// ```
    pub fn call(
        &self,
        name: &str,
        args: impl IntoIterator<Item = Shareable>,
    ) -> Result<Shareable, InterpreterError> {
        self.enter(|lua| {
            let function = function(lua, name)?;
            let args = convert::to_lua_multi(lua, args).map_err(lua_err)?;
            let results = function.call::<MultiValue>(args).map_err(lua_err)?;
            results_to_shareable(&results)
        })
    }

    /// Sets globals of the state to shareable values (PEP 734's `prepare_main`), also
    /// recording them in the interpreter's `__main__`, where [`Interpreter::get_main_attr`]
    /// (through [`interpreter`](Self::interpreter)) reads them as given: what scripts assign
    /// later is in the state's globals only (read it with
    /// [`get_main_attr`](Self::get_main_attr)), and a recorded value (a queue, say) stays
    /// alive there until it is replaced or the interpreter closes.
    ///
    /// # Errors
    ///
    /// As [`Interpreter::prepare_main`].
    ///
    /// ```
    /// use exec_context::interpreters::{Queue, Shareable};
    ///
    /// let lua = exec_context::lua::LuaInterpreter::new().unwrap();
    /// let queue = Queue::new(0);
    /// lua.prepare_main([("q", Shareable::from(queue.clone())), ("n", 3.into())]).unwrap();
    /// lua.exec("for i = 1, n do q:put(i * i) end").unwrap();
    /// assert_eq!(queue.get(), Ok(Shareable::from(1)));
    /// ```
    pub fn prepare_main<I, K>(&self, attrs: I) -> Result<(), InterpreterError>
    where
        I: IntoIterator<Item = (K, Shareable)>,
        K: Into<String>,
    {
        let attrs: Vec<(String, Shareable)> = attrs
            .into_iter()
            .map(|(name, value)| (name.into(), value))
            .collect();
        // Every value is converted before any is bound, and `__main__` records them only
        // once the state has them: a value without a Lua form binds nothing.
        self.enter(|lua| {
            let values = attrs
                .iter()
                .map(|(name, value)| Ok((name.as_str(), convert::to_lua(lua, value.clone())?)))
                .collect::<mlua::Result<Vec<_>>>()
                .map_err(lua_err)?;
            let globals = lua.globals();
            for (name, value) in values {
                globals.set(name, value).map_err(lua_err)?;
            }
            Ok(())
        })?;
        self.interp.prepare_main(attrs)
    }

    /// The global `name` as shareable data, or `None` if it is `nil`.
    ///
    /// # Errors
    ///
    /// [`InterpreterError::Failed`] with [`LuaError::NotShareable`] if the value cannot
    /// leave the state (a function, a table that is not a sequence, ...).
    ///
    /// ```
    /// use exec_context::interpreters::Shareable;
    ///
    /// let lua = exec_context::lua::LuaInterpreter::new().unwrap();
    /// lua.exec("answer = {'forty', 2}").unwrap();
    /// assert_eq!(lua.get_main_attr("answer").unwrap(), Some(Shareable::from(("forty", 2))));
    /// assert_eq!(lua.get_main_attr("missing").unwrap(), None);
    /// assert!(lua.get_main_attr("print").is_err());
    /// ```
    pub fn get_main_attr(&self, name: &str) -> Result<Option<Shareable>, InterpreterError> {
        let value = self.enter(|lua| {
            let value: Value = lua.globals().get(name).map_err(lua_err)?;
            convert::from_lua(&value)
        })?;
        Ok(match value {
            Shareable::None => None,
            value => Some(value),
        })
    }

    /// Runs the global async function `name` — a Lua function that awaits Rust futures
    /// (`task.sleep`, or async functions registered through [`lua`](Self::lua)) — as a tokio
    /// task in this interpreter. The task starts from a snapshot of the interpreter's
    /// context on this thread, exactly like a Rust task spawned inside it
    /// ([`crate::tokio::spawn`]); what it sets stays in the task. Each poll holds the state
    /// (see the [module docs](self)): a script blocked in a queue or channel call on the
    /// same state keeps its tasks from running.
    ///
    /// # Errors
    ///
    /// [`LuaError::NoRuntime`] outside a tokio runtime; [`LuaError::NotAFunction`]. The
    /// task's own failure is in its result: a Lua error, or a panic in a Rust callback, as
    /// an [`ExecutionFailed`].
    ///
    /// ```
    /// use exec_context::interpreters::Shareable;
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// let _guard = rt.enter();
    /// let lua = exec_context::lua::LuaInterpreter::new().unwrap();
    /// lua.exec(r#"
    ///     user = contextvars.ContextVar("user")
    ///     user:set("spawner")
    ///     function job() task.sleep(0.001); return user:get() end
    /// "#).unwrap();
    /// let handle = lua.spawn("job", []).unwrap();
    /// assert_eq!(rt.block_on(handle).unwrap().unwrap(), Shareable::from("spawner"));
    /// ```
    pub fn spawn(
        &self,
        name: &str,
        args: impl IntoIterator<Item = Shareable>,
    ) -> Result<tokio::task::JoinHandle<Result<Shareable, InterpreterError>>, InterpreterError>
    {
        let mut handle = None;
        let interp = self.interp.clone();
        let lua = self.lua.clone();
        let budget = self.budget.clone();
        self.enter(|lua_ref| {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(LuaError::NoRuntime);
            }
            let function = function(lua_ref, name)?;
            let mut args = convert::to_lua_multi(lua_ref, args).map_err(lua_err)?;
            args.push_front(Value::Function(function));
            let run_task = lua_ref
                .named_registry_value::<Function>(coroutines::RUN_TASK_KEY)
                .map_err(lua_err)?;
            let future = async move {
                let outcome = match run_task.call_async::<MultiValue>(args).await {
                    Ok(results) => results_to_shareable(&results),
                    Err(error) => Err(lua_err(error)),
                };
                drop(lua);
                outcome.map_err(|error| failed(&interp, error))
            };
            // Each poll is a run of its own: it gets the whole budget (a task that never
            // awaits is stopped like a runaway `exec`); so is the drop of an unfinished one.
            let mut future = BudgetedDrop {
                future: Some(Box::pin(future)),
                budget: budget.clone(),
            };
            let id = self.interp.id();
            let state = self.lua.clone();
            let finished = self.lua.weak();
            let polled = std::future::poll_fn(move |cx| {
                let _run = budget.as_deref().map(Budget::start);
                let Some(future) = future.future.as_mut() else {
                    return std::task::Poll::Pending;
                };
                // A panic in a Rust callback comes back out of Lua in this poll: the task's
                // failure, as for `exec`, not a panic of the tokio task. The future is not
                // polled again (the task is complete); dropping it releases the Lua thread.
                let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    future.as_mut().poll(cx)
                }))
                .unwrap_or_else(|payload| {
                    std::task::Poll::Ready(Err(InterpreterError::Failed(
                        ExecutionFailed::describe::<LuaError>(id, Err(payload)),
                    )))
                });
                // As at the end of a run (see `enter`): registry values whose last handle
                // went during the poll leave the registry, so the collector can take them.
                state.expire_registry_values();
                polled
            });
            // The task's context (and the values it set and kept) is dropped with its
            // wrapper, with the handle of the state the wrapper holds: the registry values
            // they let go of leave after that, whether the task ends, is aborted (polled or
            // not) or panics. (A weak handle does not keep the state alive; only if the
            // interpreter is dropped on another thread at that very moment does the state
            // close here, outside the task's context.)
            handle = Some(tokio::spawn(Expiring {
                task: crate::FutureExt::in_current_context(polled),
                expire: ExpireRegistry(finished),
            }));
            Ok(())
        })?;
        Ok(handle.expect("spawned"))
    }

    /// Closes the interpreter (see [`Interpreter::close`]); the Lua state goes with `self`
    /// and with the last of the tasks [`spawn`](Self::spawn) started on it, which hold it
    /// and run on until they end.
    ///
    /// # Errors
    ///
    /// As [`Interpreter::close`].
    ///
    /// ```
    /// let lua = exec_context::lua::LuaInterpreter::new().unwrap();
    /// lua.close().unwrap();
    /// ```
    pub fn close(self) -> Result<(), InterpreterError> {
        self.interp.close()
    }

    /// How many unfinished coroutines of this state hold a logical context of their own right
    /// now. The contexts of finished coroutines are released first (they are otherwise
    /// released in sweeps, whenever their number has doubled, or when the collector takes
    /// the coroutine, as for an abandoned one).
    ///
    /// ```
    /// let lua = exec_context::lua::LuaInterpreter::new().unwrap();
    /// lua.exec("var = contextvars.ContextVar('var')").unwrap();
    /// lua.exec("co = coroutine.create(function() var:set(1); coroutine.yield() end)").unwrap();
    /// lua.exec("coroutine.resume(co)").unwrap();
    /// assert_eq!(lua.coroutine_contexts(), 1);
    /// lua.exec("co = nil; collectgarbage()").unwrap();
    /// assert_eq!(lua.coroutine_contexts(), 0);
    /// ```
    pub fn coroutine_contexts(&self) -> usize {
        let live = coroutines::live_contexts(&self.lua).unwrap_or(0);
        // The released contexts' values leave the registry too (see `enter`).
        self.lua.expire_registry_values();
        live
    }
}

/// The global (or dotted path) `name`, which must be a function.
fn function(lua: &Lua, name: &str) -> Result<Function, LuaError> {
    let not_a_function = || LuaError::NotAFunction {
        name: name.to_owned(),
    };
    let mut value = Value::Table(lua.globals());
    for part in name.split('.') {
        let Value::Table(table) = value else {
            return Err(not_a_function());
        };
        value = Table::get(&table, part).map_err(lua_err)?;
    }
    match value {
        Value::Function(function) => Ok(function),
        _ => Err(not_a_function()),
    }
}

fn results_to_shareable(results: &MultiValue) -> Result<Shareable, LuaError> {
    match results.len() {
        0 => Ok(Shareable::None),
        1 => convert::from_lua(&results[0]),
        _ => Ok(Shareable::Tuple(
            results
                .iter()
                .map(convert::from_lua)
                .collect::<Result<Vec<_>, _>>()?
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{LuaError, is_memory_message};

    /// Lua's memory message raised again as an ordinary error is the memory limit, at the
    /// top and under callbacks (mlua wraps a callback's error); other messages are not.
    #[test]
    fn a_memory_message_under_callbacks_is_a_memory_error() {
        let raised = |text: &str| mlua::Error::RuntimeError(text.to_owned());
        let wrapped = |inner: mlua::Error| mlua::Error::CallbackError {
            traceback: "stack traceback:".to_owned(),
            cause: Arc::new(inner),
        };
        for error in [
            raised("not enough memory"),
            wrapped(raised("exec:3: not enough memory\nstack traceback:")),
            wrapped(wrapped(raised("not enough memory"))),
        ] {
            assert!(
                matches!(LuaError::from_mlua(&error), LuaError::Memory { .. }),
                "{error:?}"
            );
        }
        let other = wrapped(raised("exec:3: not enough memes"));
        assert!(matches!(
            LuaError::from_mlua(&other),
            LuaError::Runtime { .. }
        ));
    }

    #[test]
    fn memory_messages_are_recognized_behind_positions_only() {
        for yes in [
            "not enough memory",
            "exec:1: not enough memory",
            "exec:7: exec:12: not enough memory",
            "[string \"x\"]:3: not enough memory",
        ] {
            assert!(is_memory_message(yes), "{yes}");
        }
        for no in [
            "not enough memory!",
            "exec: not enough memory",
            "exec:x1: not enough memory",
            "boom: not enough memory",
            "exec:1: not enough memes",
            "",
        ] {
            assert!(!is_memory_message(no), "{no}");
        }
    }
}
