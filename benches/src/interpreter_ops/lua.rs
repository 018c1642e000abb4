//! Lua interpreters (`exec_context::lua`): `exec` of a one-line snippet against `mlua` alone,
//! and a coroutine resume with its own logical context against the bare resume.

use std::hint::black_box;
use std::time::Duration;

use exec_context::lua::LuaInterpreter;
use exec_context::lua::mlua::{Function, Lua};

use crate::clock::thread_cpu_time;
use crate::harness::Routine;

/// The snippet both `exec` cases run.
pub const SNIPPET: &str = "x = x + 1";

/// A bare `mlua` state with `x` set.
pub fn bare_state() -> Lua {
    let lua = Lua::new();
    lua.globals().set("x", 0).expect("a global");
    lua
}

/// A Lua interpreter with `x` set (and run once on this thread).
pub fn interpreter() -> LuaInterpreter {
    let lua = LuaInterpreter::new().expect("a Lua interpreter");
    lua.exec("x = 0").expect("runs");
    lua
}

/// `lua.load(SNIPPET).exec()` on a bare `mlua` state: the baseline of [`lua_exec`].
#[inline(never)]
pub fn mlua_exec(lua: &mut Lua) -> u64 {
    // A failure must not be timed as a run: the report stops instead.
    lua.load(SNIPPET).exec().expect("the snippet runs");
    1
}

/// `LuaInterpreter::exec(SNIPPET)`: enter the interpreter, compile and run, exit.
#[inline(never)]
pub fn lua_exec(lua: &mut LuaInterpreter) -> u64 {
    lua.exec(SNIPPET).expect("the snippet runs");
    1
}

/// Defines `bench(n)`: `n` resumes of one coroutine that yields forever, from a Lua loop; it
/// returns how many succeeded.
/// `make` and `resume` name how the coroutine is made and resumed; `first` runs once in the
/// coroutine before its loop, `each` after every yield.
fn bench_source(make: &str, resume: &str, first: &str, each: &str) -> String {
    format!(
        "local make, resume, yield = {make}, {resume}, coroutine.yield
         function bench(n)
           local co = make(function() {first} while true do yield() {each} end end)
           local resumed = 0
           for _ = 1, n do
             if resume(co) then resumed = resumed + 1 end
           end
           return resumed
         end"
    )
}

/// How the coroutine of a resume case runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Lua's own `coroutine.resume` on a bare `mlua` state.
    Bare,
    /// Our `coroutine.resume` on a coroutine marked `contextvars.no_context`.
    NoContext,
    /// Our `coroutine.resume`, the coroutine in its own logical context.
    OwnContext,
    /// [`Resume::NoContext`], the body reading a context variable after each yield.
    NoContextGet,
    /// [`Resume::OwnContext`], the body reading a context variable after each yield.
    OwnContextGet,
}

enum Driver {
    /// The state, kept alive for the function (which refers to it weakly).
    Bare {
        _lua: Lua,
        bench: Function,
    },
    Ours(LuaInterpreter),
}

/// `n` resumes in a Lua loop, timed in thread CPU time.
pub struct ResumeLoop {
    driver: Driver,
}

impl ResumeLoop {
    /// The routine for `kind`.
    pub fn new(kind: Resume) -> Self {
        let driver = match kind {
            Resume::Bare => {
                let lua = Lua::new();
                lua.load(bench_source("coroutine.create", "coroutine.resume", "", ""))
                    .exec()
                    .expect("defines bench");
                let bench = lua.globals().get("bench").expect("bench");
                Driver::Bare { _lua: lua, bench }
            }
            _ => {
                let lua = LuaInterpreter::new().expect("a Lua interpreter");
                // The own-context coroutine sets a variable once, so that its logical context
                // exists (contexts are made at a coroutine's first `set`).
                let (make, first) = if matches!(kind, Resume::NoContext | Resume::NoContextGet) {
                    (
                        "function(f) return contextvars.no_context(coroutine.create(f)) end",
                        "",
                    )
                } else {
                    ("coroutine.create", "VAR:set(1)")
                };
                let each = if matches!(kind, Resume::NoContextGet | Resume::OwnContextGet) {
                    "VAR:get(0)"
                } else {
                    ""
                };
                lua.exec("VAR = contextvars.ContextVar('bench')")
                    .expect("defines VAR");
                lua.exec(&bench_source(make, "coroutine.resume", first, each))
                    .expect("defines bench");
                Driver::Ours(lua)
            }
        };
        ResumeLoop { driver }
    }

    fn resume(&mut self, calls: u64) -> u64 {
        let n = i64::try_from(calls).unwrap_or(i64::MAX);
        match &self.driver {
            Driver::Bare { bench, .. } => bench.call::<i64>(n).map_or(0, |n| n as u64),
            Driver::Ours(lua) => lua
                .call("bench", [n.into()])
                .ok()
                .and_then(|n| n.extract::<u64>().ok())
                .unwrap_or(0),
        }
    }
}

impl Routine for ResumeLoop {
    fn run(&mut self, calls: u64) -> Duration {
        let start = thread_cpu_time();
        let done = self.resume(calls);
        let spent = thread_cpu_time().saturating_sub(start);
        // A failing loop is fast, and must not be timed as resumes.
        assert_eq!(black_box(done), calls, "every resume succeeded");
        spent
    }

    fn ops_per_call(&self) -> u64 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_runs() {
        assert_eq!(mlua_exec(&mut bare_state()), 1);
        assert_eq!(lua_exec(&mut interpreter()), 1);
        for kind in [
            Resume::Bare,
            Resume::NoContext,
            Resume::OwnContext,
            Resume::NoContextGet,
            Resume::OwnContextGet,
        ] {
            assert_eq!(ResumeLoop::new(kind).resume(10), 10, "{kind:?}");
        }
    }
}
