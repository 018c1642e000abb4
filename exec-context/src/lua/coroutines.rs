//! Lua coroutines as PEP 550 generators.
//!
//! `coroutine.resume` and `coroutine.wrap` are replaced by Lua functions over Lua's own,
//! which never leave Lua: a resume records its resumer (`parents[co] = coroutine.running()`,
//! in a table with weak keys) and tail-calls Lua's resume. The context switch is lazy: the
//! Rust side of `ContextVar:get`, `:set`, `:reset` and `copy_context()` (see
//! [`Frames::enter`]) walks from the running coroutine through its resumers and runs inside
//! their logical contexts, outermost first. So each coroutine still runs in its own
//! [`LogicalContext`]: a `ContextVar:set` inside it stays in it, and the resumer's later
//! changes show through unless the coroutine set the variable itself.
//!
//! A coroutine's logical context is made at its first `set` (until then it has nothing to
//! add to a lookup) and kept in a table of the state with weak keys (the coroutine) and a
//! userdata value owning it. Once the state has a `ContextVar`, a resume also checks, when
//! it returns, whether the coroutine finished with a logical context, and releases it at once
//! (a coroutine that was already running when the state's first `ContextVar` was made, and
//! one abandoned while suspended, release theirs when the collector takes them: the weak key
//! goes, the userdata is collected, and dropping it drops the logical context).
//!
//! `contextvars.no_context(co)` marks a coroutine as running in its resumer's context
//! instead (PEP 550's context-manager generators): its sets are the resumer's.
//! `contextvars.no_context(f)` is `coroutine.wrap(f)` with that mark.
//!
//! A resumer is only followed while it is still resuming (`normal`), so a record left by a
//! resume through another path (`mlua`'s `Thread::resume`) is never followed to a coroutine
//! that is not part of the running chain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use contextvars::{LogicalContext, run_with_logical_context};
use mlua::thread::ThreadStatus;
use mlua::{AnyUserData, Function, Lua, Table, Thread, UserData, Value};
use parking_lot::Mutex;

/// The registry name of the weak table from coroutines to their logical contexts.
const CONTEXTS_KEY: &str = "exec_context.coroutine_contexts";

/// More resumers than Lua allows nested C calls (200): a walk longer than this is a cycle
/// of stale records, and stops.
const MAX_DEPTH: usize = 256;

/// A coroutine's logical context, owned by the Lua state (dropped when collected).
struct CoroutineContext(Mutex<LogicalContext>);

impl UserData for CoroutineContext {}

/// The resumers of a state's coroutines, and their logical contexts.
#[derive(Clone)]
pub(crate) struct Frames {
    parents: Table,
    contexts: Table,
    /// Lua's switch turning on the release of finished coroutines' contexts.
    go_live: Function,
    live: Arc<AtomicBool>,
    /// The thread running the innermost `Context:run`: it and its resumers are hidden.
    barrier: Arc<Mutex<Option<Thread>>>,
}

impl Frames {
    /// Called when a `ContextVar` is made: from then on, resumes release the logical
    /// context of a coroutine that finished.
    pub(crate) fn go_live(&self) -> mlua::Result<()> {
        if !self.live.swap(true, Ordering::Relaxed) {
            self.go_live.call::<()>(())?;
        }
        Ok(())
    }

    /// Runs `f` inside the logical contexts of the running coroutines, outermost first.
    /// With `create`, the coroutine `f`'s sets go to (the innermost one not marked
    /// `no_context`) gets its logical context now if it has none yet.
    pub(crate) fn enter<R>(
        &self,
        lua: &Lua,
        create: bool,
        f: impl FnOnce() -> R,
    ) -> mlua::Result<R> {
        let barrier = self.barrier.lock().as_ref().map(Thread::to_pointer);
        let mut thread = lua.current_thread();
        let mut holders = Vec::new();
        let mut innermost = true;
        for _ in 0..MAX_DEPTH {
            if barrier == Some(thread.to_pointer()) {
                break;
            }
            let parent = match self.parents.raw_get(&thread)? {
                Value::Thread(parent) if parent.status() == ThreadStatus::Normal => parent,
                // Not resumed through our resume (the main thread, an async task's), or
                // a stale record: the root.
                _ => break,
            };
            match self.contexts.raw_get(&thread)? {
                Value::UserData(holder) => {
                    holders.push(holder);
                    innermost = false;
                }
                Value::Boolean(false) => {}
                _ if create && innermost => {
                    let holder =
                        lua.create_userdata(CoroutineContext(Mutex::new(LogicalContext::new())))?;
                    self.contexts.raw_set(&thread, &holder)?;
                    holders.push(holder);
                    innermost = false;
                }
                _ => innermost = false,
            }
            thread = parent;
        }
        holders.reverse();
        nest(&holders, f)
    }

    /// Hides the running coroutines from [`enter`](Self::enter) until the guard drops (for
    /// `Context:run`, whose context replaces theirs).
    pub(crate) fn barrier(&self, lua: &Lua) -> Barrier {
        let previous = self.barrier.lock().replace(lua.current_thread());
        Barrier {
            slot: self.barrier.clone(),
            previous,
        }
    }
}

/// Restores the previous barrier when dropped (see [`Frames::barrier`]).
pub(crate) struct Barrier {
    slot: Arc<Mutex<Option<Thread>>>,
    previous: Option<Thread>,
}

impl Drop for Barrier {
    fn drop(&mut self) {
        *self.slot.lock() = self.previous.take();
    }
}

/// Runs `f` with the logical contexts of `holders` pushed, the first one lowest.
fn nest<R>(holders: &[AnyUserData], f: impl FnOnce() -> R) -> mlua::Result<R> {
    let Some((first, rest)) = holders.split_first() else {
        return Ok(f());
    };
    let state = first.borrow::<CoroutineContext>()?;
    // Locked already only if stale records repeat a coroutine: it is pushed once.
    let Some(mut lc) = state.0.try_lock() else {
        return nest(rest, f);
    };
    run_with_logical_context(&mut lc, || nest(rest, f))
}

/// Lua's part: the new `coroutine.resume` and `coroutine.wrap`, and
/// `contextvars.no_context`. Returns the switch that turns on the release of finished
/// coroutines' contexts.
const COROUTINES: &str = r#"
local parents, contexts, raw_resume, running, create, status, contextvars = ...
local error, type = error, type
local live = false
local function release(co, ...)
  if contexts[co] and status(co) == "dead" then contexts[co] = nil end
  return ...
end
local function resume(co, ...)
  if co ~= nil and co == co then parents[co] = running() end
  if live then return release(co, raw_resume(co, ...)) end
  return raw_resume(co, ...)
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
return function() live = true end
"#;

/// Replaces `coroutine.resume` and `coroutine.wrap`, and adds `contextvars.no_context`.
pub(crate) fn install(lua: &Lua, contextvars: &Table) -> mlua::Result<Frames> {
    let weak_keys = lua.create_table()?;
    weak_keys.set("__mode", "k")?;
    let contexts = lua.create_table()?;
    contexts.set_metatable(Some(weak_keys.clone()))?;
    lua.set_named_registry_value(CONTEXTS_KEY, &contexts)?;
    let parents = lua.create_table()?;
    parents.set_metatable(Some(weak_keys))?;

    let coroutine: Table = lua.globals().get("coroutine")?;
    let go_live: Function = lua
        .load(COROUTINES)
        .set_name("=exec_context.coroutines")
        .call((
            &parents,
            &contexts,
            coroutine.get::<Function>("resume")?,
            coroutine.get::<Function>("running")?,
            coroutine.get::<Function>("create")?,
            coroutine.get::<Function>("status")?,
            contextvars,
        ))?;
    Ok(Frames {
        parents,
        contexts,
        go_live,
        live: Arc::new(AtomicBool::new(false)),
        barrier: Arc::new(Mutex::new(None)),
    })
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
