//! Lua coroutines as PEP 550 generators.
//!
//! `coroutine.resume` and `coroutine.wrap` are replaced. Each coroutine gets a
//! [`LogicalContext`] of its own, kept in a table of the state with weak keys (the
//! coroutine) and a userdata value owning the logical context; every resume runs inside
//! [`run_with_logical_context`]. So a `ContextVar:set` inside the coroutine stays in it, and
//! the resumer's later changes show through unless the coroutine set the variable itself.
//!
//! The logical context is released when the coroutine finishes (its entry is removed at
//! once) or, for one abandoned while suspended, when the collector takes the coroutine: the
//! weak key goes, the userdata is collected, and dropping it drops the logical context.
//!
//! `contextvars.no_context(co)` marks a coroutine as running in its resumer's context
//! instead (PEP 550's context-manager generators): its sets are the resumer's.
//! `contextvars.no_context(f)` is `coroutine.wrap(f)` with that mark.

use contextvars::{LogicalContext, run_with_logical_context};
use mlua::{Function, Lua, MultiValue, Table, Thread, UserData, Value};
use parking_lot::Mutex;

/// The registry name of the weak table from coroutines to their logical contexts.
const CONTEXTS_KEY: &str = "exec_context.coroutine_contexts";

/// A coroutine's logical context, owned by the Lua state (dropped when collected).
struct CoroutineContext(Mutex<LogicalContext>);

impl UserData for CoroutineContext {}

/// `coroutine.resume`, each resume in the coroutine's own logical context.
fn resume(
    lua: &Lua,
    contexts: &Table,
    original: &Function,
    co: Thread,
    args: MultiValue,
) -> mlua::Result<MultiValue> {
    if !co.is_resumable() {
        // Running, normal, dead or failed: Lua's own resume says why it cannot resume.
        return original.call((co, args));
    }
    let entry: Value = contexts.raw_get(&co)?;
    let holder = match entry {
        Value::Boolean(false) => return original.call((co, args)),
        Value::UserData(holder) => holder,
        _ => {
            let holder =
                lua.create_userdata(CoroutineContext(Mutex::new(LogicalContext::new())))?;
            contexts.raw_set(&co, &holder)?;
            holder
        }
    };
    let results = {
        let state = holder.borrow::<CoroutineContext>()?;
        let Some(mut lc) = state.0.try_lock() else {
            return original.call((co, args));
        };
        run_with_logical_context(&mut lc, || original.call::<MultiValue>((&co, args)))?
    };
    if !co.is_resumable() {
        // Finished or failed: release its logical context now.
        contexts.raw_set(&co, Value::Nil)?;
    }
    Ok(results)
}

/// Lua's part: `coroutine.wrap` and `contextvars.no_context` over the new resume.
const WRAP: &str = r#"
local contexts, resume, create, contextvars = ...
local error, type = error, type
local function finish(ok, ...)
  if ok then return ... end
  error((...), 0)
end
coroutine.wrap = function(f)
  local co = create(f)
  return function(...) return finish(resume(co, ...)) end
end
contextvars.no_context = function(x)
  if type(x) == "thread" then
    contexts[x] = false
    return x
  elseif type(x) == "function" then
    local co = create(x)
    contexts[co] = false
    return function(...) return finish(resume(co, ...)) end
  end
  error("no_context expects a coroutine or a function", 2)
end
"#;

/// Replaces `coroutine.resume` and `coroutine.wrap`, and adds `contextvars.no_context`.
pub(crate) fn install(lua: &Lua, contextvars: &Table) -> mlua::Result<()> {
    let contexts = lua.create_table()?;
    let weak_keys = lua.create_table()?;
    weak_keys.set("__mode", "k")?;
    contexts.set_metatable(Some(weak_keys))?;
    lua.set_named_registry_value(CONTEXTS_KEY, &contexts)?;

    let coroutine: Table = lua.globals().get("coroutine")?;
    let original: Function = coroutine.get("resume")?;
    let create: Function = coroutine.get("create")?;
    let table = contexts.clone();
    let new_resume = lua.create_function(move |lua, (co, args): (Thread, MultiValue)| {
        resume(lua, &table, &original, co, args)
    })?;
    coroutine.set("resume", &new_resume)?;
    lua.load(WRAP)
        .set_name("=exec_context.coroutines")
        .call::<()>((contexts, new_resume, create, contextvars))
}

/// How many coroutines hold a logical context now (for tests of its release).
pub(crate) fn live_contexts(lua: &Lua) -> mlua::Result<usize> {
    let contexts: Table = lua.named_registry_value(CONTEXTS_KEY)?;
    let mut live = 0;
    for pair in contexts.pairs::<Value, Value>() {
        if let (_, Value::UserData(_)) = pair? {
            live += 1;
        }
    }
    Ok(live)
}
