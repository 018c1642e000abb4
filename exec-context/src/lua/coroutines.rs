//! Lua coroutines as PEP 550 generators.
//!
//! `coroutine.resume`, `coroutine.close` and `coroutine.wrap` are replaced by Lua functions
//! over Lua's own,
//! which never leave Lua: a resume that can succeed (of a suspended coroutine) records its
//! resumer (`parents[co] = coroutine.running()`, in a table with weak keys; a failing one
//! records nothing, so it cannot displace the record of the resume running that coroutine)
//! and calls Lua's resume, passing on up an await of the resumed coroutine (see `relay`
//! in [`COROUTINES`]). The context switch is lazy: the
//! Rust side of `ContextVar:get`, `:set`, `:reset` and `copy_context()` (see
//! [`Frames::enter`]) walks from the running coroutine through its resumers and runs inside
//! their logical contexts, outermost first (`ContextVar:get` only reads them, innermost
//! first, without pushing: see [`Frames::get`]). So each coroutine still runs in its own
//! [`LogicalContext`]: a `ContextVar:set` inside it stays in it, and the resumer's later
//! changes show through unless the coroutine set the variable itself.
//!
//! A coroutine's logical context is made at its first `set` (until then it has nothing to
//! add to a lookup) and kept in a table of the state with weak keys (the coroutine) and a
//! userdata value owning it. It is released when the collector takes the coroutine (the weak
//! key goes, the userdata is collected, and dropping it drops the logical context), and a
//! finished coroutine's sooner: making a logical context sweeps those of finished coroutines
//! whenever their number has doubled since the last sweep (so at most half the held ones are
//! finished ones), and [`live_contexts`] sweeps before it counts. No resume pays for this.
//!
//! `contextvars.no_context(co)` marks a coroutine as running in its resumer's context
//! instead (PEP 550's context-manager generators): its sets are the resumer's.
//! `contextvars.no_context(f)` is `coroutine.wrap(f)` with that mark.
//!
//! A resumer is only followed while it is still resuming (`normal`), so a record left by a
//! resume through another path (`mlua`'s `Thread::resume`) is never followed to a coroutine
//! that is not part of the running chain.

use std::sync::Arc;

use contextvars::{ContextVar, LogicalContext, run_with_logical_context};
use mlua::thread::ThreadStatus;
use mlua::{AnyUserData, Function, Lua, Table, Thread, UserData, Value};
use parking_lot::Mutex;

/// More resumers than Lua allows nested C calls (200): a walk longer than this is a cycle
/// of stale records, and stops.
const MAX_DEPTH: usize = 256;

/// A coroutine's logical context, owned by the Lua state (dropped when collected).
struct CoroutineContext(Mutex<LogicalContext>);

impl UserData for CoroutineContext {}

/// The fewest logical contexts a sweep waits for.
const FIRST_SWEEP: usize = 64;

/// The resumers of a state's coroutines, and their logical contexts.
#[derive(Clone)]
pub(crate) struct Frames {
    parents: Table,
    contexts: Table,
    /// The contexts made since the last sweep, and how many make the next one.
    sweep: Arc<Mutex<Sweep>>,
    /// The thread running the innermost `Context:run`: it and its resumers are hidden.
    barrier: Arc<Mutex<Option<Thread>>>,
    /// The address of the state's main thread ([`Thread::to_pointer`]): a walk ends there,
    /// since the main thread is never resumed.
    main: usize,
}

struct Sweep {
    held: usize,
    next: usize,
}

impl Frames {
    /// Releases the logical contexts of finished coroutines; returns how many are left. A
    /// coroutine an error stopped keeps its context: its to-be-closed variables run in it
    /// when it is closed (the weak table lets it go when the coroutine is collected).
    fn sweep(&self) -> mlua::Result<usize> {
        let mut finished = Vec::new();
        let mut left = 0;
        for pair in self.contexts.pairs::<Value, Value>() {
            if let (Value::Thread(co), Value::UserData(_)) = pair? {
                match co.status() {
                    ThreadStatus::Finished => finished.push(co),
                    _ => left += 1,
                }
            }
        }
        for co in finished {
            self.contexts.raw_set(co, Value::Nil)?;
        }
        let mut sweep = self.sweep.lock();
        sweep.held = left;
        sweep.next = (2 * left).max(FIRST_SWEEP);
        Ok(left)
    }

    /// Counts a new logical context, sweeping when the count has doubled.
    fn made_one(&self) -> mlua::Result<()> {
        let due = {
            let mut sweep = self.sweep.lock();
            sweep.held += 1;
            sweep.held >= sweep.next
        };
        if due {
            self.sweep()?;
        }
        Ok(())
    }

    /// Calls `each` with the logical context holders of the running coroutines, innermost
    /// first, until it returns `true`. With `create`, the coroutine `f`'s sets go to (the
    /// innermost one not marked `no_context`) gets its logical context now if it has none
    /// yet.
    fn walk(
        &self,
        lua: &Lua,
        create: bool,
        mut each: impl FnMut(AnyUserData) -> mlua::Result<bool>,
    ) -> mlua::Result<()> {
        let barrier = self.barrier.lock().as_ref().map(Thread::to_pointer);
        let mut thread = lua.current_thread();
        let mut innermost = true;
        for _ in 0..MAX_DEPTH {
            if barrier.is_some_and(|barrier| barrier == thread.to_pointer()) {
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
                    innermost = false;
                    if each(holder)? {
                        break;
                    }
                }
                Value::Boolean(false) => {}
                _ if create && innermost => {
                    let holder =
                        lua.create_userdata(CoroutineContext(Mutex::new(LogicalContext::new())))?;
                    self.contexts.raw_set(&thread, &holder)?;
                    self.made_one()?;
                    innermost = false;
                    if each(holder)? {
                        break;
                    }
                }
                _ => innermost = false,
            }
            if parent.to_pointer() as usize == self.main {
                // The main thread has no resumer (only a suspended coroutine's resume or
                // close is recorded, and the main thread never is one): saves its lookup.
                break;
            }
            thread = parent;
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
        // The innermost holder apart, so that the common chain of one allocates nothing.
        let mut innermost = None;
        let mut outer = Vec::new();
        self.walk(lua, create, |holder| {
            match innermost {
                None => innermost = Some(holder),
                Some(_) => outer.push(holder),
            }
            Ok(false)
        })?;
        let Some(innermost) = innermost else {
            return Ok(f());
        };
        if outer.is_empty() {
            return nest(std::slice::from_ref(&innermost), f);
        }
        outer.reverse();
        outer.push(innermost);
        nest(&outer, f)
    }

    /// `var`'s value as [`enter`](Self::enter)`(lua, false, || var.get())` sees it, without
    /// pushing anything: the running coroutines' logical contexts are read innermost first
    /// (the first that holds `var` answers), and only if none does is `var` read in the
    /// current context, whose lookup cache stays warm.
    pub(crate) fn get<T: Clone + Send + Sync + 'static>(
        &self,
        lua: &Lua,
        var: &ContextVar<T>,
    ) -> mlua::Result<Option<T>> {
        let mut found = None;
        self.walk(lua, false, |holder| {
            let state = holder.borrow::<CoroutineContext>()?;
            // Locked only while a set runs in it, which runs no Lua code: never here.
            let Some(lc) = state.0.try_lock() else {
                return Ok(false);
            };
            // One lookup: a value held here answers (a variable's id holds only its type).
            match lc.get_ref(var) {
                Some(value) => {
                    found = Some(value.clone());
                    Ok(true)
                }
                None => Ok(false),
            }
        })?;
        Ok(found.or_else(|| var.get()))
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

/// The registry key of the function a task calls its Lua function through (`f, ...`), which
/// marks the coroutine mlua runs the task on: `coroutine.resume` and `coroutine.close` refuse
/// it (another resume would poll the task's await with its own waker, and the task would
/// never wake), and `coroutine.status` calls it `normal` while it waits.
pub(crate) const RUN_TASK_KEY: &str = "exec_context.run_task";

/// Lua's part: the new `coroutine.resume` and `coroutine.wrap`, and
/// `contextvars.no_context`; returns the function behind [`RUN_TASK_KEY`].
const COROUTINES: &str = r#"
local parents, contexts, raw_resume, running, create, raw_close, contextvars, pending = ...
local error, type, status, select = error, type, coroutine.status, select
local yield, isyieldable = coroutine.yield, coroutine.isyieldable
local setmetatable, pack, unpack = setmetatable, table.pack, table.unpack
-- Coroutines only their task may resume (keys weak; one table, so that a resume looks
-- once): "await", one waiting in an await that `relay` passed on; "task", the coroutine a
-- task (LuaInterpreter::spawn) runs its function on.
local held = setmetatable({}, {__mode = "k"})
-- Closes the coroutine a `relay` waits for if the relay is unwound while it waits (its
-- task was dropped): its to-be-closed variables run, and its await ends with it.
local closing = {__close = function(guard)
  local co = guard.co
  if co then
    held[co] = nil
    local ok, err = raw_close(co)
    if not ok then error(err, 0) end
  end
end}
-- A coroutine that awaits an async function (`task.sleep`) yields mlua's pending marker,
-- meant for the task that polls the state: passed on up, and the coroutine resumed with
-- what comes back (the poller's signal), until it yields or returns something else. Only
-- a task's Lua code can pass it on: elsewhere (an `exec`, or across a C call such as
-- `ctx:run` or a `table.sort` comparator) awaiting is an error.
local function relay(co, ok, ...)
  -- The usual case first, with no call: the coroutine yielded or returned something else
  -- (passed on with its own count of values).
  if (...) ~= pending or not ok or select('#', ...) ~= 1 then
    return ok, ...
  end
  if not isyieldable() then
    error("RuntimeError: an async function (such as task.sleep) awaited in a coroutine "
      .. "must be resumed by a task's Lua code (LuaInterpreter::spawn), not across a C "
      .. "call (ctx:run, a comparator, a callback)", 0)
  end
  -- The guard first: it clears the mark on every way out.
  local guard <close> = setmetatable({co = co}, closing)
  held[co] = "await"
  local results = pack(raw_resume(co, yield(pending)))
  while results[1] and results.n == 2 and results[2] == pending do
    results = pack(raw_resume(co, yield(pending)))
  end
  guard.co = nil
  held[co] = nil
  return unpack(results, 1, results.n)
end
local function resume(co, ...)
  if type(co) ~= "thread" then
    error("bad argument #1 to 'resume' (coroutine expected)", 2)
  end
  -- A coroutine waiting in an await belongs to the task that passes its await on: another
  -- resume would poll the await with its own waker, and the task would never wake.
  local holder = held[co]
  if holder then
    if holder == "await" then
      return false, "cannot resume a coroutine waiting in an await (its task resumes it)"
    end
    if status(co) == "suspended" then
      return false, "cannot resume a task's own coroutine (its task resumes it)"
    end
  end
  -- Recorded only for a resume that can succeed: a failed one (a running or normal
  -- coroutine, a dead one) must not overwrite the record of the resume that is running it.
  if status(co) == "suspended" then
    parents[co] = running()
  end
  return relay(co, raw_resume(co, ...))
end
coroutine.resume = resume
-- Closing runs the coroutine's pending to-be-closed variables on the coroutine itself
-- (a suspended one's, or those of one an error stopped): like a resume, in its own logical
-- context above the closer's. Only a close that can run them is recorded, as for resume.
local function close(co)
  if type(co) ~= "thread" then
    error("bad argument #1 to 'close' (coroutine expected)", 2)
  end
  local s = status(co)
  if s ~= "suspended" and s ~= "dead" then
    error("cannot close a " .. s .. " coroutine", 2)
  end
  local holder = held[co]
  if holder == "await" then
    error("cannot close a coroutine waiting in an await (its task resumes it)", 2)
  end
  if holder == "task" and s == "suspended" then
    error("cannot close a task's own coroutine (dropping the task closes it)", 2)
  end
  parents[co] = running()
  return raw_close(co)
end
coroutine.close = close
-- A coroutine waiting in an await is active but not running: "normal", as Lua calls a
-- coroutine that resumed another (so a loop that resumes while "suspended" stops).
coroutine.status = function(co)
  local holder = held[co]
  if holder == "await" then return "normal" end
  local s = status(co)
  if holder and s == "suspended" then return "normal" end
  return s
end
-- As Lua's own wrap: a coroutine an error stopped is closed (its to-be-closed variables
-- run, and an error there replaces the first), and a string error gets the position of
-- the call (not Lua's memory error, whose message is fixed).
local function finish(co, ok, ...)
  if ok then return ... end
  local err = ...
  if status(co) == "dead" then
    local closed, close_err = close(co)
    if not closed then err = close_err end
  end
  if type(err) == "string" and err ~= "not enough memory" then
    error(err, 2)
  end
  error(err, 0)
end
local function wrap(co)
  return function(...) return finish(co, resume(co, ...)) end
end
coroutine.wrap = function(f)
  return wrap(create(f))
end
contextvars.no_context = function(x)
  if type(x) == "thread" then
    -- One that set a variable already has a context of its own: dropping it would lose
    -- its values mid-flight and strand its tokens.
    if contexts[x] then
      error("no_context: the coroutine already has a context of its own (it set a variable)", 2)
    end
    contexts[x] = false
    return x
  elseif type(x) == "function" then
    local co = create(x)
    contexts[co] = false
    return wrap(co)
  end
  error("no_context expects a coroutine or a function", 2)
end
-- What a task calls, on the coroutine mlua runs it on: marks that coroutine as the task's.
return function(f, ...)
  held[running()] = "task"
  return f(...)
end
"#;

/// Replaces `coroutine.resume`, `coroutine.close` and `coroutine.wrap`, and adds
/// `contextvars.no_context`.
pub(crate) fn install(lua: &Lua, contextvars: &Table) -> mlua::Result<Frames> {
    let weak_keys = lua.create_table()?;
    weak_keys.set("__mode", "k")?;
    let contexts = lua.create_table()?;
    contexts.set_metatable(Some(weak_keys))?;
    // Weak values too: a record matters only while its resumer is suspended in a resume,
    // and then the resumer is reachable from its own resumer's stack. A key that is not a
    // coroutine (bad input: `coroutine.resume(42)`) never dies, so with strong values its
    // record would keep the resumer and its stack alive.
    let weak_keys_and_values = lua.create_table()?;
    weak_keys_and_values.set("__mode", "kv")?;
    let parents = lua.create_table()?;
    parents.set_metatable(Some(weak_keys_and_values))?;

    let coroutine: Table = lua.globals().get("coroutine")?;
    let run_task = lua
        .load(COROUTINES)
        .set_name("=exec_context.coroutines")
        .call::<Function>((
            &parents,
            &contexts,
            coroutine.get::<Function>("resume")?,
            coroutine.get::<Function>("running")?,
            coroutine.get::<Function>("create")?,
            coroutine.get::<Function>("close")?,
            contextvars,
            Lua::poll_pending(),
        ))?;
    lua.set_named_registry_value(RUN_TASK_KEY, run_task)?;
    let frames = Frames {
        parents,
        contexts,
        sweep: Arc::new(Mutex::new(Sweep {
            held: 0,
            next: FIRST_SWEEP,
        })),
        barrier: Arc::new(Mutex::new(None)),
        // `install` runs on the main thread (in `setup`, outside any coroutine).
        main: lua.current_thread().to_pointer() as usize,
    };
    lua.set_app_data(frames.clone());
    Ok(frames)
}

/// How many unfinished coroutines hold a logical context now, after releasing those of the
/// finished ones (for tests of their release).
pub(crate) fn live_contexts(lua: &Lua) -> mlua::Result<usize> {
    let frames = lua
        .app_data_ref::<Frames>()
        .map(|frames| frames.clone())
        .ok_or_else(|| mlua::Error::runtime("the state has no coroutine frames"))?;
    frames.sweep()
}

#[cfg(test)]
mod tests {
    use crate::lua::LuaInterpreter;

    /// `ContextVar:get` reads the coroutines' logical contexts in place (innermost first, the
    /// first holding the variable answers); it must agree with a lookup that pushes them.
    #[test]
    fn get_reads_the_innermost_context_holding_the_variable() {
        let lua = LuaInterpreter::new().unwrap();
        lua.exec(
            r#"
            local v = contextvars.ContextVar("v")
            local w = contextvars.ContextVar("w")
            local seen = {}
            local function see(tag) seen[#seen + 1] = tag .. "=" .. tostring(v:get("none")) end
            v:set("main")
            local inner = coroutine.create(function()
              w:set(1) -- a context of its own, without `v`
              see("inner")
              local token = v:set("inner")
              see("inner")
              coroutine.yield()
              see("inner")
              v:reset(token)
              see("inner")
              local ctx = contextvars.copy_context()
              ctx:run(function() v:set("run"); see("run") end)
              see("inner")
              coroutine.yield()
              see("inner")
            end)
            local outer = coroutine.create(function()
              see("outer")
              v:set("outer")
              coroutine.resume(inner)
              see("outer")
              coroutine.resume(inner)
              coroutine.yield()
              coroutine.resume(inner)
            end)
            coroutine.resume(outer)
            see("main")
            v:set("main2")
            coroutine.resume(outer)
            see("main")
            local shared = contextvars.no_context(coroutine.create(function()
              see("shared")
              coroutine.yield()
              see("shared")
            end))
            coroutine.resume(shared)
            v:set("main3")
            coroutine.resume(shared)
            result = table.concat(seen, " ")
            "#,
        )
        .unwrap();
        let result = lua.get_main_attr("result").unwrap().unwrap();
        let expected = "outer=main inner=outer inner=inner outer=outer inner=inner \
                        inner=outer run=run inner=outer main=main inner=outer main=main2 \
                        shared=main2 shared=main3";
        assert_eq!(result, crate::interpreters::Shareable::from(expected));
    }

    /// A failed resume of the main thread (it is not suspended) leaves no record for it, and
    /// changes no other: gets and sets see the right contexts afterwards.
    #[test]
    fn a_record_for_the_main_thread_ends_no_walk_elsewhere() {
        let lua = LuaInterpreter::new().unwrap();
        lua.exec(
            r#"
            local v = contextvars.ContextVar("v")
            local main = coroutine.running()
            v:set("main")
            local seen = {}
            local inner = coroutine.create(function()
              seen[#seen + 1] = v:get()
              v:set("inner")
              seen[#seen + 1] = v:get()
            end)
            local outer = coroutine.create(function()
              assert(not coroutine.resume(main)) -- refused, and recorded nowhere
              v:set("outer")
              coroutine.resume(inner)
              seen[#seen + 1] = v:get()
            end)
            assert(coroutine.resume(outer))
            seen[#seen + 1] = v:get()
            result = table.concat(seen, " ")
            "#,
        )
        .unwrap();
        let result = lua.get_main_attr("result").unwrap().unwrap();
        assert_eq!(
            result,
            crate::interpreters::Shareable::from("outer inner outer main")
        );
    }
}
