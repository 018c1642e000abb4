//! Lua coroutines as PEP 550 generators.
//!
//! `coroutine.resume` and `coroutine.wrap` are replaced by Lua functions over Lua's own: a
//! resume pushes the coroutine on a Lua-side stack of the running coroutines (a table with
//! its depth at index 0) and pops it when the resume returns, without leaving Lua and
//! without allocating. The context switch is lazy: the Rust side of `ContextVar:get`,
//! `:set`, `:reset` and `copy_context()` (see [`Frames::enter`]) reads that stack and runs
//! inside the logical contexts of the running coroutines, outermost first. So each
//! coroutine still runs in its own [`LogicalContext`]: a `ContextVar:set` inside it stays in
//! it, and the resumer's later changes show through unless the coroutine set the variable
//! itself. A resume that touches no variable costs one Lua call and three table writes.
//!
//! A coroutine's logical context is made at its first `set` (until then it has nothing to
//! add to a lookup) and kept in a table of the state with weak keys (the coroutine) and a
//! userdata value owning it. It is released when the coroutine finishes (its entry is
//! removed at once) or, for one abandoned while suspended, when the collector takes the
//! coroutine: the weak key goes, the userdata is collected, and dropping it drops the
//! logical context.
//!
//! `contextvars.no_context(co)` marks a coroutine as running in its resumer's context
//! instead (PEP 550's context-manager generators): its sets are the resumer's.
//! `contextvars.no_context(f)` is `coroutine.wrap(f)` with that mark.
//!
//! An error can leave a stale entry on the stack (the instruction budget or the memory limit
//! striking between a push and its pop); [`Frames::enter`] only uses the entries that are
//! running or resuming another coroutine (and each logical context once), drops stale ones
//! from the top, and so never uses a stale one.

use contextvars::{LogicalContext, run_with_logical_context};
use mlua::thread::ThreadStatus;
use mlua::{AnyUserData, Function, Lua, Table, UserData, Value};
use parking_lot::Mutex;

/// The registry name of the weak table from coroutines to their logical contexts.
const CONTEXTS_KEY: &str = "exec_context.coroutine_contexts";

/// The stack's index holding its depth.
const DEPTH: i64 = 0;
/// The stack's index holding the depth below which [`Frames::enter`] does not look (set
/// while a `Context:run` runs, whose context replaces the resumers').
const BASE: i64 = -1;

/// A coroutine's logical context, owned by the Lua state (dropped when collected).
struct CoroutineContext(Mutex<LogicalContext>);

impl UserData for CoroutineContext {}

/// The running coroutines of a state, and their logical contexts.
#[derive(Clone)]
pub(crate) struct Frames {
    stack: Table,
    contexts: Table,
}

impl Frames {
    /// The (empty) stack and context table of a new state.
    pub(crate) fn new(lua: &Lua) -> mlua::Result<Frames> {
        let contexts = lua.create_table()?;
        let weak_keys = lua.create_table()?;
        weak_keys.set("__mode", "k")?;
        contexts.set_metatable(Some(weak_keys))?;
        lua.set_named_registry_value(CONTEXTS_KEY, &contexts)?;
        let stack = lua.create_table()?;
        stack.raw_set(DEPTH, 0)?;
        stack.raw_set(BASE, 0)?;
        Ok(Frames { stack, contexts })
    }

    /// Runs `f` inside the logical contexts of the running coroutines, outermost first.
    /// With `create`, the coroutine `f`'s sets go to (the topmost one not marked
    /// `no_context`) gets its logical context now if it has none yet.
    pub(crate) fn enter<R>(
        &self,
        lua: &Lua,
        create: bool,
        f: impl FnOnce() -> R,
    ) -> mlua::Result<R> {
        let mut depth: i64 = self.stack.raw_get(DEPTH)?;
        let base: i64 = self.stack.raw_get(BASE)?;
        if depth <= base {
            return Ok(f());
        }
        let mut running = Vec::new();
        for level in base + 1..=depth {
            let Value::Thread(co) = self.stack.raw_get(level)? else {
                continue;
            };
            running.push(co);
        }
        // Stale entries on top (no longer running nor resuming) are dropped for good; the
        // frames below still pop to their own depths.
        while let Some(co) = running.last()
            && !matches!(co.status(), ThreadStatus::Running | ThreadStatus::Normal)
        {
            running.pop();
            self.stack.raw_set(depth, Value::Nil)?;
            depth -= 1;
            self.stack.raw_set(DEPTH, depth)?;
        }
        // Below the top, only coroutines resuming the next one count.
        let top = running.pop();
        running.retain(|co| co.status() == ThreadStatus::Normal);
        running.extend(top);
        let mut holders = Vec::with_capacity(running.len());
        let mut top = true;
        for co in running.iter().rev() {
            match self.contexts.raw_get(co)? {
                Value::UserData(holder) => holders.push(holder),
                Value::Boolean(false) => continue,
                _ if create && top => {
                    let holder =
                        lua.create_userdata(CoroutineContext(Mutex::new(LogicalContext::new())))?;
                    self.contexts.raw_set(co, &holder)?;
                    holders.push(holder);
                }
                _ => {}
            }
            top = false;
        }
        holders.reverse();
        nest(&holders, f)
    }

    /// Hides the running coroutines from [`enter`](Self::enter) until the guard drops (for
    /// `Context:run`, whose context replaces theirs).
    pub(crate) fn barrier(&self) -> mlua::Result<Barrier> {
        let depth: i64 = self.stack.raw_get(DEPTH)?;
        let base: i64 = self.stack.raw_get(BASE)?;
        self.stack.raw_set(BASE, depth)?;
        Ok(Barrier {
            stack: self.stack.clone(),
            base,
        })
    }
}

/// Restores the stack's base when dropped (see [`Frames::barrier`]).
pub(crate) struct Barrier {
    stack: Table,
    base: i64,
}

impl Drop for Barrier {
    fn drop(&mut self) {
        // Setting an existing integer key allocates nothing, so this cannot fail in practice;
        // if it did, `enter` would only look at fewer coroutines until the next barrier.
        let _ = self.stack.raw_set(BASE, self.base);
    }
}

/// Runs `f` with the logical contexts of `holders` pushed, the first one lowest.
fn nest<R>(holders: &[AnyUserData], f: impl FnOnce() -> R) -> mlua::Result<R> {
    let Some((first, rest)) = holders.split_first() else {
        return Ok(f());
    };
    let state = first.borrow::<CoroutineContext>()?;
    // Locked already only if a stale entry repeats a coroutine: it is pushed once.
    let Some(mut lc) = state.0.try_lock() else {
        return nest(rest, f);
    };
    run_with_logical_context(&mut lc, || nest(rest, f))
}

/// Lua's part: the new `coroutine.resume` and `coroutine.wrap`, and
/// `contextvars.no_context`.
const COROUTINES: &str = r#"
local stack, contexts, raw_resume, create, status, contextvars = ...
local error, type = error, type
local function pop(co, n, ...)
  stack[n] = nil
  stack[0] = n - 1
  if contexts[co] and status(co) == "dead" then contexts[co] = nil end
  return ...
end
local function resume(co, ...)
  if type(co) ~= "thread" then return raw_resume(co, ...) end
  local n = stack[0] + 1
  stack[n] = co
  stack[0] = n
  return pop(co, n, raw_resume(co, ...))
end
coroutine.resume = resume
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
pub(crate) fn install(lua: &Lua, frames: &Frames, contextvars: &Table) -> mlua::Result<()> {
    let coroutine: Table = lua.globals().get("coroutine")?;
    let original: Function = coroutine.get("resume")?;
    let create: Function = coroutine.get("create")?;
    let status: Function = coroutine.get("status")?;
    lua.load(COROUTINES)
        .set_name("=exec_context.coroutines")
        .call::<()>((
            &frames.stack,
            &frames.contexts,
            original,
            create,
            status,
            contextvars,
        ))
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
