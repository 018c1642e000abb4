//! The `contextvars` table of a Lua state: `ContextVar`, tokens, `copy_context`, `Context:run`.
//!
//! Each Lua `ContextVar(name)` is backed by a Rust [`ContextVar`] made at run time and leaked
//! (a `ContextVar` must be `'static`), and listed in [`CREATED`] so that it stays reachable: a
//! few dozen bytes per variable, for the life of the process, plus its name, kept once per
//! distinct name. A variable cannot be reused once its Lua object is collected, since
//! contexts may still hold values for it. Scripts create their variables once, at module
//! level, as PEP 567 asks. So that one script cannot grow the process without bound (a
//! memory limit does not see this memory), a name is at most [`MAX_NAME_BYTES`] bytes and a
//! state creates at most [`MAX_VARS_PER_STATE`] variables: past either, `ContextVar` raises
//! an error. The bound is per state, a few MB at worst: a host that makes a new state for
//! every script grows by up to that much per state.
//!
//! A value is a reference into the state's registry ([`RegistryKey`]), so it is any Lua
//! value, and only the state that set it can read it back: contexts hold the key, never the
//! value. Since the state runs inside its [`Interpreter`](crate::interpreters::Interpreter),
//! the contexts holding the keys are that interpreter's; no other interpreter ever sees them.
//! A key that goes frees its registry slot at the end of the run that let it go (`enter`),
//! and the collector can then take the value.
//!
//! The collector cannot see through a context, which is Rust memory: a value that holds,
//! directly or not, the context or coroutine it is set in (`ctx:run(function() v:set(ctx)
//! end)`, or a coroutine that sets `{coroutine.running()}` and is then dropped while
//! suspended) keeps both alive for the life of the state, as a cycle through a registry
//! reference does in any Lua binding. Set such values in an outer context, or hold a key
//! (an id, a weak table's entry) instead of the object.

use std::sync::Arc;

use contextvars::{Context, ContextVar, Token, TokenError, copy_context};
use mlua::{AnyUserData, Function, Lua, MultiValue, RegistryKey, Table, UserData, Value};
use parking_lot::Mutex;

use super::coroutines::Frames;

/// Every variable Lua scripts created in this process (see the module docs).
static CREATED: Mutex<Vec<&'static ContextVar<Slot>>> = Mutex::new(Vec::new());

/// The names of [`CREATED`]'s variables, each kept once.
static NAMES: std::sync::LazyLock<Mutex<std::collections::HashSet<&'static str>>> =
    std::sync::LazyLock::new(Mutex::default);

/// The longest name a Lua `ContextVar` may have, in bytes (see the module docs).
pub(crate) const MAX_NAME_BYTES: usize = 256;

/// The most `ContextVar`s one Lua state may create (see the module docs).
pub(crate) const MAX_VARS_PER_STATE: usize = 10_000;

/// The name `name` kept for the life of the process, once per distinct name.
fn interned(name: String) -> &'static str {
    let mut names = NAMES.lock();
    if let Some(&kept) = names.get(name.as_str()) {
        return kept;
    }
    let kept: &'static str = Box::leak(name.into_boxed_str());
    names.insert(kept);
    kept
}

/// What a Rust variable holds for a Lua one: a registry reference (`None` for `nil`).
pub(crate) type Slot = Option<Arc<RegistryKey>>;

fn store(lua: &Lua, value: Value) -> mlua::Result<Slot> {
    Ok(match value {
        Value::Nil => None,
        value => Some(Arc::new(lua.create_registry_value(value)?)),
    })
}

fn load(lua: &Lua, slot: &Slot) -> mlua::Result<Value> {
    match slot {
        None => Ok(Value::Nil),
        Some(key) => lua.registry_value(key),
    }
}

/// A Lua `ContextVar`.
pub(crate) struct LuaVar {
    var: &'static ContextVar<Slot>,
    default: Option<RegistryKey>,
    /// The running coroutines, whose logical contexts every access runs in.
    frames: Frames,
}

impl LuaVar {
    fn get(&self, lua: &Lua, args: MultiValue) -> mlua::Result<Value> {
        if let Some(slot) = self.frames.get(lua, self.var)? {
            return load(lua, &slot);
        }
        if let Some(default) = args.into_iter().next() {
            return Ok(default);
        }
        match &self.default {
            Some(key) => lua.registry_value(key),
            None => Err(mlua::Error::runtime(format!(
                "LookupError: context variable {:?} has no value",
                self.var.name()
            ))),
        }
    }
}

impl UserData for LuaVar {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get", |lua, this, args: MultiValue| this.get(lua, args));
        methods.add_method("set", |lua, this, value: Value| {
            let slot = store(lua, value)?;
            // The token's userdata first: under the memory limit, a set either happens and
            // has its token, or fails before it happens.
            let holder = lua.create_userdata(LuaToken {
                token: Mutex::new(None),
                var: this.var,
            })?;
            let token = this.frames.enter(lua, true, || this.var.set(slot))?;
            *holder.borrow::<LuaToken>()?.token.lock() = Some(token);
            Ok(holder)
        });
        methods.add_method("reset", |lua, this, token: AnyUserData| {
            let token = token.borrow::<LuaToken>().map_err(|_| {
                mlua::Error::runtime("TypeError: reset expects a Token made by ContextVar:set")
            })?;
            if !std::ptr::eq(token.var, this.var) {
                // Checked before taking the token, so it stays usable with its own variable.
                return Err(token_error(TokenError::WrongVar));
            }
            let Some(inner) = token.token.lock().take() else {
                return Err(mlua::Error::runtime(
                    "RuntimeError: the Token has already been used once",
                ));
            };
            // `create`: a coroutine without a logical context yet gets one, so that a token
            // made outside it is of another context there, as PEP 550 says.
            // Taken inside: if entering fails first (the memory limit, making the coroutine's
            // logical context), the token was never applied and goes back unused.
            let mut pending = Some(inner);
            let outcome = this.frames.enter(lua, true, || {
                pending.take().map(|inner| this.var.try_reset(inner))
            });
            match outcome {
                Ok(Some(Ok(()))) => Ok(()),
                Ok(Some(Err(refused))) => {
                    // PEP 567: a refused token stays unused, for a reset where it applies.
                    let error = refused.error();
                    *token.token.lock() = Some(refused.into_token());
                    Err(token_error(error))
                }
                Ok(None) | Err(_) => {
                    *token.token.lock() = pending.take();
                    Err(outcome.err().unwrap_or_else(|| {
                        mlua::Error::runtime("RuntimeError: the reset did not run")
                    }))
                }
            }
        });
        methods.add_method("name", |_, this, ()| Ok(this.var.name()));
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("<ContextVar name={:?}>", this.var.name()))
        });
    }
}

fn token_error(error: TokenError) -> mlua::Error {
    mlua::Error::runtime(format!("ValueError: {error}"))
}

/// A Lua `Token`, from `ContextVar:set`: usable once.
pub(crate) struct LuaToken {
    token: Mutex<Option<Token<Slot>>>,
    var: &'static ContextVar<Slot>,
}

impl UserData for LuaToken {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("used", |_, this, ()| Ok(this.token.lock().is_none()));
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!(
                "<Token var={:?} used={}>",
                this.var.name(),
                this.token.lock().is_none()
            ))
        });
    }
}

/// The registry key of `pcall` as the state's set-up left it.
pub(crate) const PCALL_KEY: &str = "exec_context.pcall";

/// The registry key of the table of `Context` methods written in Lua ([`CONTEXT_METHODS`]),
/// made at set-up (see [`install`]), before any script can change the globals it uses.
const CONTEXT_METHODS_KEY: &str = "exec_context.context_methods";

/// `ctx:run(f, ...)`, in Lua around the method `_run_protected`, which calls `f` in the
/// context through `pcall`: an error `f` raises comes out of `run` as the very value it
/// raised (a table stays a table, a string gains no position), as PEP 567's `Context.run`
/// lets an exception through. A panic in a Rust callback, a memory error or a spent
/// instruction budget comes out as it would of any call: `pcall` hands it back as the error
/// value it is, and it is raised again unchanged.
const CONTEXT_METHODS: &str = r#"
local error = error
local function finish(ok, ...)
  if ok then
    return ...
  end
  error((...), 0)
end
return {
  run = function(self, f, ...)
    return finish(self:_run_protected(f, ...))
  end,
}
"#;

/// A Lua `Context`, from `copy_context()`.
pub(crate) struct LuaContext(Mutex<Context>, Frames);

/// Lua's garbage collector (or the state's close) drops the context, with the values of
/// Rust variables that Rust callbacks set in it: a `Drop` of theirs that panics there would
/// abort the process (mlua aborts on a panic in a finalizer), so the panic is discarded.
impl Drop for LuaContext {
    fn drop(&mut self) {
        let context = std::mem::take(self.0.get_mut());
        crate::discarding_panics(move || drop(context));
    }
}

impl UserData for LuaContext {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        // Looked up after the methods below.
        fields.add_meta_field_with("__index", |lua| {
            lua.named_registry_value::<Table>(CONTEXT_METHODS_KEY)
        });
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method(
            "_run_protected",
            |lua, this, (f, args): (Value, MultiValue)| {
                let Some(mut context) = this.0.try_lock() else {
                    return Err(mlua::Error::runtime(
                        "RuntimeError: cannot enter context: it is already entered",
                    ));
                };
                let pcall = lua.named_registry_value::<Function>(PCALL_KEY)?;
                // The context replaces the running coroutines' logical contexts while it runs.
                let _barrier = this.1.barrier(lua);
                context.run(|| pcall.call::<MultiValue>((f, args)))
            },
        );
        methods.add_method("get", |lua, this, (var, args): (AnyUserData, MultiValue)| {
            let var = var.borrow::<LuaVar>()?;
            let Some(context) = this.0.try_lock() else {
                return Err(mlua::Error::runtime(
                    "RuntimeError: the context is entered; read its variables with ContextVar:get",
                ));
            };
            match context.get(var.var) {
                Some(slot) => load(lua, &slot),
                None => Ok(args.into_iter().next().unwrap_or(Value::Nil)),
            }
        });
    }
}

/// Fills the state's `contextvars` table.
pub(crate) fn install(lua: &Lua, frames: &Frames, table: &Table) -> mlua::Result<()> {
    let methods = lua
        .load(CONTEXT_METHODS)
        .set_name("=exec_context.context")
        .eval::<Table>()?;
    lua.set_named_registry_value(CONTEXT_METHODS_KEY, methods)?;
    let var_frames = frames.clone();
    let created = std::sync::atomic::AtomicUsize::new(0);
    table.set(
        "ContextVar",
        lua.create_function(move |lua, (name, default): (mlua::LuaString, MultiValue)| {
            // Checked before the name is copied out of the state.
            let length = name.as_bytes().len();
            if length > MAX_NAME_BYTES {
                return Err(mlua::Error::runtime(format!(
                    "ValueError: a ContextVar name is at most {MAX_NAME_BYTES} bytes (got {length})"
                )));
            }
            let name = name.to_str()?.to_owned();
            // The default first: a memory error there leaves no variable behind.
            let default = match default.into_iter().next() {
                Some(value) => Some(lua.create_registry_value(value)?),
                None => None,
            };
            let taken = created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if taken >= MAX_VARS_PER_STATE {
                created.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                return Err(mlua::Error::runtime(format!(
                    "RuntimeError: this state created {MAX_VARS_PER_STATE} ContextVars, the \
                     most it may (each lives as long as the process: create them once, at \
                     module level)"
                )));
            }
            let name = interned(name);
            let var: &'static ContextVar<Slot> = Box::leak(Box::new(ContextVar::new(name)));
            CREATED.lock().push(var);
            Ok(LuaVar {
                var,
                default,
                frames: var_frames.clone(),
            })
        })?,
    )?;
    let context_frames = frames.clone();
    table.set(
        "copy_context",
        lua.create_function(move |lua, ()| {
            let context = context_frames.enter(lua, false, copy_context)?;
            Ok(LuaContext(Mutex::new(context), context_frames.clone()))
        })?,
    )?;
    Ok(())
}
