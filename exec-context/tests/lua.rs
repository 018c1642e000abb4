//! Lua states as interpreters: PEP 550's generator examples on Lua coroutines, PEP 567's
//! tokens, PEP 554/734's workers and channels, isolation, bad input, async Lua as tasks, and
//! a queue stress test.
#![cfg(feature = "lua")]

use std::collections::BTreeSet;

use contextvars::{ContextVar, copy_context};
use exec_context::interpreters::{self, InterpreterError, Queue, Shareable};
use exec_context::lua::{LuaError, LuaInterpreter};

static MAIN_VAR: ContextVar<&str> = ContextVar::new("main var");

/// Runs a script from `tests/lua/` with an `emit(line)` that records lines, and returns them.
fn run_script(source: &str) -> Vec<String> {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec("log = {} function emit(line) log[#log + 1] = line end")
        .unwrap();
    if let Err(error) = lua.exec(source) {
        panic!("the script failed: {error}");
    }
    strings(lua.get_main_attr("log").unwrap())
}

fn strings(value: Option<Shareable>) -> Vec<String> {
    match value {
        None => Vec::new(),
        Some(Shareable::Tuple(items)) => items
            .iter()
            .map(|item| item.clone().extract::<String>().unwrap())
            .collect(),
        Some(other) => panic!("not a tuple: {other:?}"),
    }
}

/// A current-thread tokio runtime with timers, for the tests of spawned Lua tasks.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn lua_error(error: &InterpreterError) -> &LuaError {
    error
        .as_failed()
        .unwrap_or_else(|| panic!("not a failure: {error}"))
        .downcast_source::<LuaError>()
        .unwrap_or_else(|| panic!("not a LuaError: {error}"))
}

#[test]
fn pep550_generator_var1_var2() {
    assert_eq!(
        run_script(include_str!("lua/pep550_generator.lua")),
        [
            "gen: var1 = gen, var2 = main",
            "next(g) = 1",
            "main: var1 = main",
            "gen: var1 = gen, var2 = main modified",
            "next(g) = 2",
            "main: var1 = main modified, var2 = main modified",
        ]
    );
}

#[test]
fn pep550_interleaved_fractions() {
    assert_eq!(
        run_script(include_str!("lua/pep550_fractions.lua")),
        [
            "(0.33, 0.666667)",
            "(0.11, 0.222222)",
            "outside: precision = 28"
        ]
    );
}

#[test]
fn pep550_nested_generator() {
    assert_eq!(
        run_script(include_str!("lua/pep550_nested.lua")),
        [
            "nested: var1 = var1-gen, var2 = var2-gen",
            "gen: var1 = var1-gen, var2 = var2-gen",
            "nested: var1 = var1-nested-gen, var2 = var2-gen-mod",
            "gen: var1 = var1-gen-mod, var2 = var2-gen-mod",
            "outer: var1 = nil, var2 = nil",
        ]
    );
}

#[test]
fn pep550_yield_from_delegation() {
    assert_eq!(
        run_script(include_str!("lua/pep550_yield_from.lua")),
        [
            "outer after next(g): outer_gen",
            "outer after yield from: outer_gen",
            "outer after for-in: outer_gen",
            "yielded: 0 1 2 10 11 12",
            "main: main",
        ]
    );
}

#[test]
fn pep550_context_manager_opts_out() {
    assert_eq!(
        run_script(include_str!("lua/pep550_context_manager.lua")),
        [
            "own context: var = 0",
            "no_context: var = 10",
            "after: var = 0",
            "after resume of a no_context coroutine: var = 20",
        ]
    );
}

#[test]
fn pep567_tokens_and_contexts() {
    assert_eq!(
        run_script(include_str!("lua/pep567_tokens.lua")),
        [
            "default: default",
            "get(default): given",
            "no value: false LookupError: context variable \"other\" has no value",
            "set: one",
            "reset: default",
            "reused token: false RuntimeError: the Token has already been used once",
            "token of another var: false ValueError: the token was created by a different context variable",
            "other after reset: nil",
            "token of another context: false ValueError: the token was created in a different context",
            "ctx:run: in ctx!; ctx:get: in ctx; outside: outside",
            "entered twice: false RuntimeError: cannot enter context: it is already entered",
        ]
    );
}

#[test]
fn coroutine_logical_contexts_are_released() {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        var = contextvars.ContextVar("var")
        done, suspended = {}, {}
        for i = 1, 50 do
          done[i] = coroutine.create(function() var:set(i) end)
          assert(coroutine.resume(done[i]))
          suspended[i] = coroutine.create(function() var:set(i); coroutine.yield() end)
          assert(coroutine.resume(suspended[i]))
        end
        "#,
    )
    .unwrap();
    // Counting releases the finished coroutines' contexts; the suspended ones hold one each.
    assert_eq!(lua.coroutine_contexts(), 50);
    lua.exec("suspended = nil; collectgarbage(); collectgarbage()")
        .unwrap();
    assert_eq!(lua.coroutine_contexts(), 0);
    lua.exec("assert(var:get(nil) == nil)").unwrap();
}

#[test]
fn main_attrs_are_globals_of_shareable_types() {
    let lua = LuaInterpreter::new().unwrap();
    lua.prepare_main([
        ("none", Shareable::None),
        ("flag", true.into()),
        ("int", 7.into()),
        ("float", 2.5.into()),
        ("text", "héllo".into()),
        ("pair", ("a", 1).into()),
    ])
    .unwrap();
    lua.exec(
        r#"
        assert(none == nil and flag == true and int == 7 and math.type(int) == "integer")
        assert(float == 2.5 and text == "héllo" and pair[1] == "a" and pair[2] == 1 and pair.n == 2)
        back = {none, flag, int, float, text, pair, n = 6}
        "#,
    )
    .unwrap();
    assert_eq!(
        lua.get_main_attr("back").unwrap(),
        Some(Shareable::from((
            Shareable::None,
            true,
            7,
            2.5,
            "héllo",
            ("a", 1)
        )))
    );
    assert_eq!(
        lua.interpreter().get_main_attr("int").unwrap(),
        Some(Shareable::from(7))
    );
    let error = lua.get_main_attr("print").unwrap_err();
    assert!(matches!(lua_error(&error), LuaError::NotShareable { .. }));
    lua.exec("t = {x = 1}").unwrap();
    assert!(lua.get_main_attr("t").is_err());
}

#[test]
fn queues_and_channels_from_lua() {
    let lua = LuaInterpreter::new().unwrap();
    let queue = Queue::new(2);
    lua.prepare_main([("q", queue.clone().into())]).unwrap();
    lua.exec(
        r#"
        q:put(1)
        q:put_nowait({true, "two", 3.5})
        local ok, err = pcall(function() q:put_nowait(3) end)
        assert(not ok and tostring(err):find("Full: the queue is full"), tostring(err))
        ok, err = pcall(function() q:put_timeout(3, 0.01) end)
        assert(not ok and tostring(err):find("timed out"), tostring(err))
        "#,
    )
    .unwrap();
    assert_eq!(queue.get(), Ok(Shareable::from(1)));
    assert_eq!(queue.get(), Ok(Shareable::from((true, "two", 3.5))));
    lua.exec(
        r#"
        local ok, err = pcall(function() return q:get_nowait() end)
        assert(not ok and tostring(err):find("Empty: nothing to receive"), tostring(err))
        ok, err = pcall(function() return q:get_timeout(0.01) end)
        assert(not ok and tostring(err):find("timed out"), tostring(err))
        local mine = interpreters.create_queue()
        mine:put("self")
        assert(mine:get() == "self" and mine:is_empty())
        q:put(mine) -- a queue is shareable itself
        "#,
    )
    .unwrap();
    let theirs: Queue = queue.get().unwrap().extract().unwrap();
    theirs.put("from main").unwrap();
    assert_eq!(theirs.get(), Ok(Shareable::from("from main")));
}

#[test]
fn unshareable_values_are_refused() {
    let lua = LuaInterpreter::new().unwrap();
    let queue = Queue::new(0);
    lua.prepare_main([("q", queue.clone().into())]).unwrap();
    for value in [
        "function() end",
        "{1, print}",
        "{x = 1}",
        "contextvars.ContextVar('v')",
        "coroutine.create(print)",
    ] {
        let error = lua.exec(&format!("q:put({value})")).unwrap_err();
        let failed = error.as_failed().unwrap();
        assert!(
            failed.message().contains("not shareable"),
            "{value}: {}",
            failed.message()
        );
        lua.exec("q:put('still usable')").unwrap();
    }
    assert_eq!(queue.len(), 5);
    lua.exec("function give() return print end").unwrap();
    let error = lua.call("give", []).unwrap_err();
    assert!(matches!(lua_error(&error), LuaError::NotShareable { .. }));
    let error = lua.call("nothing_here", []).unwrap_err();
    assert_eq!(
        lua_error(&error),
        &LuaError::NotAFunction {
            name: "nothing_here".into()
        }
    );
}

/// Tables whose copy would not end or not fit: a declared `n` far beyond memory is refused
/// before anything is allocated (it aborted the process); a table met again is converted
/// once and shared, but counts as often as a receiver meets it (forty levels of `{t, t}`
/// are 2^41 items to a receiver: refused at once, where the copy took hours), and so does
/// its depth (chains linked through a table met before cannot nest without bound).
#[test]
fn tables_too_large_to_copy_are_refused_and_shared_tables_are_copied_once() {
    let lua = LuaInterpreter::new().unwrap();
    let queue = Queue::new(0);
    lua.prepare_main([("q", queue.clone().into())]).unwrap();
    let refused = |source: &str, what: &str| {
        let error = lua.exec(source).unwrap_err();
        let message = error.as_failed().unwrap().message().to_owned();
        assert!(message.contains("not shareable"), "{source}: {message}");
        assert!(message.contains(what), "{source}: {message}");
    };
    for n in ["1 << 40", "math.maxinteger", "(1 << 24) + 1"] {
        refused(&format!("q:put({{n = {n}}})"), "sequence items");
    }
    refused(
        "local t = {} for i = 1, 40 do t = {t, t} end q:put(t)",
        "sequence items",
    );
    // Chains of 61 tables, each holding the previous chain at its bottom: each is met at
    // depth 1, and its bottom reaches the previous chain at depth 62.
    refused(
        "local x = {} for i = 1, 60 do x = {x} end
         local root = {x}
         for k = 1, 3 do
           local y = {x} for i = 1, 60 do y = {y} end
           root[#root + 1] = y
           x = y
         end
         q:put(root)",
        "nested too deeply",
    );
    assert!(queue.is_empty());
    lua.exec("local t = {} for i = 1, 10 do t = {t, t} end q:put(t)")
        .unwrap();
    let mut item = queue.get_nowait().unwrap();
    let mut depth = 0;
    loop {
        let Shareable::Tuple(items) = item else {
            panic!("a tuple at depth {depth}: {item:?}");
        };
        if items.is_empty() {
            break;
        }
        assert_eq!(items.len(), 2);
        let (Shareable::Tuple(first), Shareable::Tuple(second)) = (&items[0], &items[1]) else {
            panic!("tuples at depth {depth}");
        };
        assert!(
            std::sync::Arc::ptr_eq(first, second),
            "one copy, shared: depth {depth}"
        );
        item = items[0].clone();
        depth += 1;
    }
    assert_eq!(depth, 10);
    // A table holding itself is still refused (too deep), and the state goes on.
    refused("local t = {} t[1] = t q:put(t)", "nested too deeply");
    lua.exec("q:put(1)").unwrap();
    assert_eq!(queue.get_nowait().unwrap(), Shareable::from(1));
}

/// A failed resume of a coroutine that is running (or waits on one it resumed) leaves the
/// record of the resume that runs it: its variables stay in its own logical context.
#[test]
fn a_failed_resume_of_a_running_coroutine_keeps_its_context() {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        local v = contextvars.ContextVar("v", "default")
        local seen = {}
        local outer
        outer = coroutine.wrap(function()
          v:set("inner")
          local ok = coroutine.resume(coroutine.running())
          assert(not ok, "a running coroutine cannot be resumed")
          seen[#seen + 1] = v:get()
          local inner = coroutine.create(function()
            -- `outer` is normal (it resumed us): resuming it fails.
            assert(not coroutine.resume(coroutine.running()))
            local ok = coroutine.resume(outer_co)
            assert(not ok)
            seen[#seen + 1] = v:get()
          end)
          outer_co = coroutine.running()
          assert(coroutine.resume(inner))
          seen[#seen + 1] = v:get()
          v:set("leak?")
        end)
        outer()
        seen[#seen + 1] = v:get()
        assert(seen[1] == "inner", tostring(seen[1]))
        assert(seen[2] == "inner", tostring(seen[2]))
        assert(seen[3] == "inner", tostring(seen[3]))
        assert(seen[4] == "default", tostring(seen[4]))
        "#,
    )
    .unwrap();
}

/// A value built outside Lua arrives no larger than it is: a tuple that appears several
/// times (shared) is one table, so 40 levels of a tuple holding the level below twice (2^40
/// paths) convert at once. Tuples nested deeper than Lua's own conversion allows are refused
/// with a typed error instead of recursing without bound.
#[test]
fn values_from_rust_arrive_no_larger_than_they_are() {
    let lua = LuaInterpreter::new().unwrap();
    let mut shared = Shareable::from(1);
    for _ in 0..40 {
        shared = Shareable::Tuple(vec![shared.clone(), shared].into());
    }
    lua.prepare_main([("t", shared)]).unwrap();
    lua.exec(
        r#"
        local depth, level = 0, t
        while type(level) == "table" do
          assert(level.n == 2 and rawequal(level[1], level[2]))
          depth, level = depth + 1, level[1]
        end
        assert(depth == 40 and level == 1, depth)
        "#,
    )
    .unwrap();

    let mut deep = Shareable::from("bottom");
    for _ in 0..100 {
        deep = Shareable::Tuple(vec![deep].into());
    }
    let error = lua.prepare_main([("d", deep)]).unwrap_err();
    assert!(
        matches!(lua_error(&error), LuaError::NotShareable { .. }),
        "{error}"
    );
    lua.exec("assert(d == nil)").unwrap();
}

/// `prepare_main` with a value that has no Lua form binds nothing: neither the state's
/// globals nor `__main__` get the others.
#[test]
fn prepare_main_with_a_value_without_a_lua_form_binds_nothing() {
    let lua = LuaInterpreter::new().unwrap();
    let buffer = exec_context::interpreters::SharedBuffer::read_only(vec![1]);
    let error = lua
        .prepare_main([("a", Shareable::from(1)), ("b", Shareable::from(buffer))])
        .unwrap_err();
    assert!(
        matches!(lua_error(&error), LuaError::NotShareable { .. }),
        "{error}"
    );
    lua.exec("assert(a == nil and b == nil)").unwrap();
    assert_eq!(lua.interpreter().get_main_attr("a").unwrap(), None);
    assert_eq!(lua.interpreter().get_main_attr("b").unwrap(), None);
    lua.prepare_main([("a", Shareable::from(2))]).unwrap();
    lua.exec("assert(a == 2)").unwrap();
}

/// PEP 567: a reset refused in another context leaves the token unused, and it resets
/// where it applies.
#[test]
fn a_refused_reset_leaves_the_token_usable() {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        local v = contextvars.ContextVar("v")
        local t = v:set(1)
        local ctx = contextvars.copy_context()
        local ok, err = pcall(ctx.run, ctx, function() v:reset(t) end)
        assert(not ok and tostring(err):find("ValueError"), tostring(err))
        assert(not t:used(), "a refused reset used the token")
        v:reset(t)
        assert(t:used())
        assert(v:get(nil) == nil)
        local ok, err = pcall(v.reset, v, t)
        assert(not ok and tostring(err):find("already been used"), tostring(err))
        "#,
    )
    .unwrap();
}

#[test]
fn isolation_between_interpreters_and_main() {
    let a = LuaInterpreter::new().unwrap();
    let b = LuaInterpreter::new().unwrap();
    MAIN_VAR.set("main");
    let before = copy_context().len();
    a.exec("x = 1; v = contextvars.ContextVar('v'); v:set('a')")
        .unwrap();
    // Nothing of it in main's context or in the other interpreter.
    assert_eq!(copy_context().len(), before);
    assert_eq!(MAIN_VAR.get(), Some("main"));
    b.exec("assert(x == nil and v == nil)").unwrap();
    b.exec("v = contextvars.ContextVar('v'); assert(v:get(nil) == nil); v:set('b')")
        .unwrap();
    // It persists across runs on the same thread...
    a.exec("assert(x == 1 and v:get() == 'a')").unwrap();
    b.exec("assert(v:get() == 'b')").unwrap();
    // ...and, like every interpreter's context state, belongs to the thread: the globals
    // are the state's, the context variables' values the thread's.
    std::thread::scope(|s| {
        s.spawn(|| a.exec("assert(x == 1 and v:get(nil) == nil)").unwrap());
    });
    a.exec("assert(v:get() == 'a')").unwrap();
}

#[test]
fn syntax_error_leaves_the_interpreter_usable() {
    let lua = LuaInterpreter::new().unwrap();
    MAIN_VAR.set("caller");
    let error = lua.exec("x = = 1").unwrap_err();
    let LuaError::Syntax { message } = lua_error(&error) else {
        panic!("{error}")
    };
    assert!(message.contains("unexpected symbol"), "{message}");
    assert!(
        error
            .as_failed()
            .unwrap()
            .message()
            .contains("unexpected symbol")
    );
    assert_eq!(MAIN_VAR.get(), Some("caller"));
    lua.exec("x = 1").unwrap();
    assert_eq!(lua.get_main_attr("x").unwrap(), Some(1.into()));
}

#[test]
fn runtime_error_carries_message_and_traceback() {
    let lua = LuaInterpreter::new().unwrap();
    MAIN_VAR.set("caller");
    lua.exec("function inner() error('boom') end function outer() inner() end")
        .unwrap();
    let error = lua
        .exec("v = contextvars.ContextVar('v'); v:set(1); outer()")
        .unwrap_err();
    let LuaError::Runtime { message } = lua_error(&error) else {
        panic!("{error}")
    };
    assert!(message.contains("boom"), "{message}");
    assert!(message.contains("stack traceback"), "{message}");
    assert!(message.contains("inner"), "{message}");
    let failed = error.as_failed().unwrap();
    assert_eq!(failed.interpreter_id(), lua.id());
    assert!(failed.message().contains("boom"));
    assert_eq!(MAIN_VAR.get(), Some("caller"));
    // What ran before the error stays, as in a Python interpreter.
    lua.exec("assert(v:get() == 1)").unwrap();
}

/// Registers the global `explode`: a Rust callback that panics with `message`.
fn register_explode(lua: &LuaInterpreter, message: &'static str) {
    let explode = lua
        .lua()
        .create_function(move |_, ()| -> exec_context::lua::mlua::Result<()> {
            panic!("{message}")
        })
        .unwrap();
    lua.lua().globals().set("explode", explode).unwrap();
}

/// A Rust value whose `Drop` panics, held by a Lua `Context` (set by a Rust callback inside
/// `ctx:run`), is dropped by Lua's garbage collector or the state's close without aborting
/// the process (mlua aborts on a panic in a finalizer).
#[test]
fn a_panicking_drop_in_a_collected_context_does_not_abort() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Boom;
    impl Drop for Boom {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            panic!("a value's Drop panics");
        }
    }
    static HELD: ContextVar<Arc<Boom>> = ContextVar::new("lua.boom");

    let lua = LuaInterpreter::new().unwrap();
    let set_boom = lua
        .lua()
        .create_function(|_, ()| {
            HELD.set(Arc::new(Boom));
            Ok(())
        })
        .unwrap();
    lua.lua().globals().set("set_boom", set_boom).unwrap();
    lua.exec(
        "local c = contextvars.copy_context(); c:run(set_boom); c = nil; collectgarbage(); \
         collectgarbage()",
    )
    .unwrap();
    assert_eq!(
        DROPS.load(Ordering::SeqCst),
        1,
        "the context's value was dropped"
    );
    // Still held when the state closes.
    lua.exec("kept = contextvars.copy_context(); kept:run(set_boom)")
        .unwrap();
    drop(lua);
    assert_eq!(DROPS.load(Ordering::SeqCst), 2, "dropped with the state");
    assert_eq!(HELD.get().map(|_| ()), None);
}

#[test]
fn panic_in_a_callback_is_caught() {
    let lua = LuaInterpreter::new().unwrap();
    register_explode(&lua, "callback panicked");
    MAIN_VAR.set("caller");
    let error = lua.exec("explode()").unwrap_err();
    let failed = error.as_failed().unwrap();
    assert!(failed.is_panic(), "{error}");
    assert!(failed.message().contains("callback panicked"));
    assert_eq!(MAIN_VAR.get(), Some("caller"));
    // Lua code can also catch it, like any error.
    lua.exec("local ok = pcall(explode); assert(not ok)")
        .unwrap();
    // Inside a coroutine with its own logical context (entered only while its `set` runs):
    // its value stays in it.
    lua.exec("v = contextvars.ContextVar('v'); v:set('outside')")
        .unwrap();
    let error = lua
        .exec("coroutine.wrap(function() v:set('inside'); explode() end)()")
        .unwrap_err();
    assert!(error.as_failed().is_some(), "{error}");
    lua.exec("assert(v:get() == 'outside')").unwrap();
    // Under `ctx:run`, whose context is entered (in Rust) when the callback panics: it is
    // left, and the caller's context is current again.
    let error = lua
        .exec("contextvars.copy_context():run(function() v:set('run'); explode() end)")
        .unwrap_err();
    assert!(
        error.as_failed().is_some_and(|failed| failed.is_panic()),
        "{error}"
    );
    lua.exec("assert(v:get() == 'outside')").unwrap();
    assert_eq!(MAIN_VAR.get(), Some("caller"));
    lua.exec("x = 1").unwrap();
}

/// An error raised inside `ctx:run` leaves it as the very value raised (PEP 567's
/// `Context.run` lets the exception through): a table stays a table, a string is unchanged.
#[test]
fn context_run_passes_errors_through_unchanged() {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r##"
        local var = contextvars.ContextVar("run_errors")
        local ctx = contextvars.copy_context()
        local ok, err = pcall(ctx.run, ctx, function() var:set(1); error({ code = 42 }) end)
        assert(not ok and type(err) == "table" and err.code == 42, tostring(err))
        ok, err = pcall(ctx.run, ctx, error, "boom", 0)
        assert(not ok and err == "boom", tostring(err))
        ok, err = pcall(function() return ctx:run(function() error("located") end) end)
        assert(not ok and err:match("^exec:%d+: located$"), err)
        -- What the run set stays in the context; its results come back, nils included.
        assert(ctx:get(var) == 1 and var:get("unset") == "unset")
        local a, b, c = ctx:run(function(...) return ... end, 1, nil, 3)
        assert(a == 1 and b == nil and c == 3)
        assert(select("#", ctx:run(function() return nil, nil end)) == 2)
        -- Calling something that is not a function is an error too, not a crash.
        ok, err = pcall(ctx.run, ctx, 17)
        assert(not ok and tostring(err):find("call"), tostring(err))
        -- A finished `run` hands back all its results, many of them too.
        local many = { ctx:run(function() local t = {} for i = 1, 200 do t[i] = i end
          return table.unpack(t) end) }
        assert(#many == 200 and many[200] == 200)
        -- A script's own `pcall` does not change how `run` works.
        pcall = function() return true, "replaced" end
        ok, err = _G.xpcall(ctx.run, function(e) return e end, ctx, error, { why = "x" })
        assert(not ok and err.why == "x")
        "##,
    )
    .unwrap();
}

/// Binary chunks are refused by every loader (Lua does not check them: crafted bytecode
/// corrupts memory), source text still loads, and `os.exit` is an error, not the end of
/// the host process.
#[test]
fn scripts_load_source_text_only_and_cannot_exit_the_host() {
    let lua = LuaInterpreter::new().unwrap();
    let path = std::env::temp_dir().join(format!("exec-context-lua-{}.luac", std::process::id()));
    lua.prepare_main([("path", path.to_str().unwrap().into())])
        .unwrap();
    lua.exec(
        r#"
        local dumped = string.dump(function() return 1 end)
        local checks = {
          { load(dumped) },
          { load(dumped, "=d", "b") },
          { load(dumped, "=d", "bt", {}) },
        }
        for i, result in ipairs(checks) do
          assert(result[1] == nil, "load " .. i .. " took a binary chunk")
          assert(result[2]:find("binary chunk"), result[2])
        end
        local file = assert(io.open(path, "wb"))
        file:write(dumped)
        file:close()
        local chunk, message = loadfile(path, "b")
        assert(chunk == nil and message:find("binary chunk"), message)
        local ok, err = pcall(dofile, path)
        assert(not ok and err:find("binary chunk"), err)
        -- `require` finds the file, and refuses it.
        local dir = path:match("^(.*)[/\\]")
        package.path = dir .. "/?.luac"
        local module = path:match("([^/\\]+)%.luac$")
        ok, err = pcall(require, module)
        assert(not ok and err:find("error loading module") and err:find("binary chunk"), err)
        os.remove(path)
        -- Source text still loads, with or without an environment (a `nil` one given is
        -- kept as given: the chunk then has no globals).
        assert(load("return 1 + 1")() == 2)
        assert(load("return x", "=t", "t", { x = 3 })() == 3)
        assert(not pcall(load("return x", "=t", "t", nil)))
        x = 4
        assert(load("return x", "=t", "t")() == 4)
        -- A script cannot end the host that way.
        local exited, why = pcall(os.exit, 3)
        assert(not exited and why:find("embedded"), why)
        "#,
    )
    .unwrap();
    // `exec` itself takes text: a chunk that starts as a binary one is refused as one.
    let error = lua.exec("\x1bLua").unwrap_err();
    assert!(
        matches!(lua_error(&error), LuaError::Syntax { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("binary chunk"), "{error}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn memory_limit_is_a_clear_error() {
    let lua = LuaInterpreter::builder()
        .memory_limit(4 << 20)
        .build()
        .unwrap();
    MAIN_VAR.set("caller");
    let error = lua
        .exec("local t = {} for i = 1, 1e8 do t[i] = i end")
        .unwrap_err();
    assert!(
        matches!(lua_error(&error), LuaError::Memory { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("memory"));
    assert_eq!(MAIN_VAR.get(), Some("caller"));
    lua.exec("collectgarbage(); local t = {} for i = 1, 1000 do t[i] = i end")
        .unwrap();
    // Reached inside a callback (the queue's `get` making the item's string): still a
    // memory error, not a runtime one.
    let queue = Queue::new(0);
    lua.prepare_main([("q", queue.clone().into())]).unwrap();
    queue.put("x".repeat(8 << 20)).unwrap();
    let error = lua.exec("s = q:get()").unwrap_err();
    assert!(
        matches!(lua_error(&error), LuaError::Memory { .. }),
        "{error}"
    );
    lua.exec("collectgarbage(); x = 1").unwrap();
    // Reached inside a coroutine, and passed on by `coroutine.wrap` or by an `assert` of
    // `coroutine.resume` (as Lua's message): still a memory error (a runtime one before).
    for code in [
        "coroutine.wrap(function() local t = {} for i = 1, 1e8 do t[i] = i end end)()",
        "assert(coroutine.resume(coroutine.create(function() \
           local t = {} for i = 1, 1e8 do t[i] = i end end)))",
    ] {
        let error = lua.exec(code).unwrap_err();
        assert!(
            matches!(lua_error(&error), LuaError::Memory { .. }),
            "{code}: {error}"
        );
        lua.exec("collectgarbage(); x = 1").unwrap();
    }
    // An ordinary error is not taken for one.
    let error = lua.exec("error('not enough memes', 0)").unwrap_err();
    assert!(
        matches!(lua_error(&error), LuaError::Runtime { .. }),
        "{error}"
    );
}

#[test]
fn instruction_budget_stops_a_runaway_loop() {
    let lua = LuaInterpreter::builder()
        .instruction_budget(200_000)
        .build()
        .unwrap();
    MAIN_VAR.set("caller");
    let error = lua.exec("while true do end").unwrap_err();
    assert_eq!(
        lua_error(&error),
        &LuaError::InstructionBudget { budget: 200_000 }
    );
    assert!(error.to_string().contains("instruction budget"));
    // Catching the error does not buy more instructions.
    let error = lua
        .exec("while true do pcall(function() while true do end end) end")
        .unwrap_err();
    assert_eq!(
        lua_error(&error),
        &LuaError::InstructionBudget { budget: 200_000 }
    );
    // Nor does a coroutine.
    let error = lua
        .exec("coroutine.wrap(function() while true do end end)()")
        .unwrap_err();
    assert!(error.to_string().contains("instruction budget"), "{error}");
    assert_eq!(MAIN_VAR.get(), Some("caller"));
    // Each run has the whole budget again.
    lua.exec("local n = 0 for i = 1, 10000 do n = n + i end")
        .unwrap();
}

/// Another thread's calls refused because a run is in progress (`Running`) renew nothing: the
/// runaway loop still stops at its budget.
#[test]
fn calls_refused_while_a_run_is_in_progress_do_not_renew_its_budget() {
    let lua = LuaInterpreter::builder()
        .instruction_budget(2_000_000)
        .build()
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (outcome, refused) = std::thread::scope(|scope| {
        let poller = scope.spawn(|| {
            let mut refused = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if matches!(
                    lua.get_main_attr("x"),
                    Err(InterpreterError::Running { .. })
                ) {
                    refused += 1;
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            refused
        });
        // Long enough for the poller to be refused many times before the budget is spent.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let outcome = lua.exec("while true do end");
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (outcome, poller.join().unwrap())
    });
    let error = outcome.unwrap_err();
    assert_eq!(
        lua_error(&error),
        &LuaError::InstructionBudget { budget: 2_000_000 }
    );
    // The loop ran long enough to be refused to the poller (or the test proves nothing).
    assert!(refused > 0);
}

/// Each poll of a spawned task is a run of its own: a poll that never awaits stops at the
/// budget, work split across awaits goes through however long it is in all, and neither
/// spends the budget of the runs around it.
#[test]
fn each_poll_of_a_spawned_task_has_the_whole_budget() {
    let rt = runtime();
    let _guard = rt.enter();
    let lua = LuaInterpreter::builder()
        .instruction_budget(20_000)
        .build()
        .unwrap();
    lua.exec(
        r#"
        function runaway()
          task.sleep(0.001)
          while true do end
        end
        function patient()
          local n = 0
          for round = 1, 20 do
            for i = 1, 1000 do n = n + 1 end
            task.yield_now()
          end
          return n
        end
        "#,
    )
    .unwrap();
    // The last run spent its budget; the tasks do not inherit that.
    assert!(lua.exec("while true do end").is_err());
    let runaway = lua.spawn("runaway", []).unwrap();
    let error = rt.block_on(runaway).unwrap().unwrap_err();
    assert_eq!(
        lua_error(&error),
        &LuaError::InstructionBudget { budget: 20_000 }
    );
    let patient = lua.spawn("patient", []).unwrap();
    assert_eq!(
        rt.block_on(patient).unwrap().unwrap(),
        Shareable::from(20_000)
    );
    // And the next run has its whole budget.
    lua.exec("local n = 0 for i = 1, 1000 do n = n + i end")
        .unwrap();
}

/// Values a run let go of leave the state's registry at the end of the run, so the collector
/// takes them (and the memory limit counts them no more).
#[test]
fn values_a_run_let_go_of_are_collected() {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        collected = false
        v = contextvars.ContextVar("v")
        local t = v:set(setmetatable({}, {__gc = function() collected = true end}))
        v:reset(t)
        "#,
    )
    .unwrap();
    lua.exec("collectgarbage(); collectgarbage(); assert(collected, 'still held')")
        .unwrap();
}

/// As for a run: values a task's poll let go of leave the registry when the poll ends, so a
/// state that only runs tasks does not keep them.
#[test]
fn values_a_tasks_poll_let_go_of_are_collected() {
    let rt = runtime();
    let _guard = rt.enter();
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        v = contextvars.ContextVar("v_task")
        function job()
          local collected = false
          local t = v:set(setmetatable({}, {__gc = function() collected = true end}))
          v:reset(t)
          task.yield_now()
          collectgarbage(); collectgarbage()
          return collected
        end
        "#,
    )
    .unwrap();
    let handle = lua.spawn("job", []).unwrap();
    let collected = rt.block_on(handle).unwrap().unwrap();
    assert_eq!(
        collected,
        Shareable::from(true),
        "still held by the registry"
    );
}

/// The coroutine a task runs its Lua function on belongs to the task: other Lua code cannot
/// resume or close it (another resume would poll the task's await with its own waker, and the
/// task would never wake), and it is `normal` while the task waits.
#[test]
fn a_tasks_own_coroutine_cannot_be_resumed_by_other_code() {
    let rt = runtime();
    let _guard = rt.enter();
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        "var = contextvars.ContextVar('task var') \
         function job() root = coroutine.running(); var:set('task'); task.sleep(0.05); \
         return var:get() end",
    )
    .unwrap();
    let handle = lua.spawn("job", []).unwrap();
    rt.block_on(tokio::time::sleep(std::time::Duration::from_millis(5)));
    lua.exec(
        r#"
        assert(root ~= nil, "the task started")
        assert(coroutine.status(root) == "normal", coroutine.status(root))
        local ok, err = coroutine.resume(root)
        assert(not ok and err:find("task"), tostring(err))
        local closed, why = pcall(coroutine.close, root)
        assert(not closed and why:find("task"), tostring(why))
        ok, err = pcall(coroutine.wrap(function() return coroutine.resume(root) end))
        assert(ok and err == false)
        "#,
    )
    .unwrap();
    let result = rt
        .block_on(tokio::time::timeout(
            std::time::Duration::from_secs(10),
            handle,
        ))
        .expect("the task finished")
        .unwrap()
        .unwrap();
    assert_eq!(result, Shareable::from("task"));
    // A finished task's coroutine is an ordinary dead one.
    lua.exec(
        "assert(coroutine.status(root) == 'dead') \
         local ok, err = coroutine.resume(root) \
         assert(not ok and err:find('dead'), err) \
         assert(coroutine.close(root))",
    )
    .unwrap();
}

/// `ctx:run` does not catch a spent instruction budget (nor does a `pcall` around it): the
/// run ends with the budget's error.
#[test]
fn context_run_passes_a_spent_budget_on() {
    let lua = LuaInterpreter::builder()
        .instruction_budget(100_000)
        .build()
        .unwrap();
    let error = lua
        .exec(
            "local ctx = contextvars.copy_context() \
             local ok = pcall(ctx.run, ctx, function() while true do end end) \
             done = true",
        )
        .unwrap_err();
    assert!(
        matches!(
            lua_error(&error),
            LuaError::InstructionBudget { budget: 100_000 }
        ),
        "{error}"
    );
    assert_eq!(lua.get_main_attr("done").unwrap(), None);
}

/// The values a task set and kept go with its context when it ends, and leave the registry
/// then (not at the next `exec`).
#[test]
fn values_a_finished_task_kept_are_collected() {
    let rt = runtime();
    let _guard = rt.enter();
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        collected = false
        v = contextvars.ContextVar("v_kept")
        function job()
          v:set(setmetatable({}, {__gc = function() collected = true end}))
          task.yield_now()
          return true
        end
        "#,
    )
    .unwrap();
    let handle = lua.spawn("job", []).unwrap();
    assert_eq!(rt.block_on(handle).unwrap().unwrap(), Shareable::from(true));
    lua.exec("collectgarbage(); collectgarbage()").unwrap();
    lua.exec("assert(collected, 'the finished task kept it')")
        .unwrap();
}

/// `no_context` on a coroutine that already has a context of its own is an error, which
/// leaves that context (its values, its tokens) as it was.
#[test]
fn no_context_refuses_a_coroutine_with_a_context_of_its_own() {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        local v = contextvars.ContextVar("no_context_late")
        v:set("resumer")
        local co = coroutine.create(function()
          local t = v:set("own")
          coroutine.yield()
          local seen = v:get()
          v:reset(t)
          return seen
        end)
        assert(coroutine.resume(co))
        local ok, err = pcall(contextvars.no_context, co)
        assert(not ok and err:find("context of its own"), tostring(err))
        local resumed, seen = coroutine.resume(co)
        assert(resumed and seen == "own", tostring(seen))
        -- A fresh coroutine may still be marked.
        local fresh = contextvars.no_context(coroutine.create(function() v:set("shared") end))
        assert(coroutine.resume(fresh))
        assert(v:get() == "shared")
        "#,
    )
    .unwrap();
}

/// PEP 734's example: workers in interpreters of their own, fed through a queue.
#[test]
fn pep734_workers_fed_through_a_queue() {
    const WORKERS: usize = 3;
    const JOBS: i64 = 40;
    let tasks = interpreters::create_queue(0);
    let results = interpreters::create_queue(0);
    let workers: Vec<LuaInterpreter> = (0..WORKERS)
        .map(|_| {
            let lua = LuaInterpreter::new().unwrap();
            lua.prepare_main([
                ("tasks", tasks.clone().into()),
                ("results", results.clone().into()),
            ])
            .unwrap();
            lua
        })
        .collect();
    let ids: BTreeSet<u64> = workers.iter().map(LuaInterpreter::id).collect();
    std::thread::scope(|s| {
        for worker in &workers {
            s.spawn(move || {
                worker
                    .exec(
                        r#"
                        local job = contextvars.ContextVar("job")
                        while true do
                          local item = tasks:get()
                          if item == nil then break end
                          job:set(item[1])
                          results:put({job:get(), item[2] * item[2], interpreters.id()})
                        end
                        "#,
                    )
                    .unwrap();
            });
        }
        for job in 0..JOBS {
            tasks.put((job, job + 1)).unwrap();
        }
        for _ in 0..WORKERS {
            tasks.put(()).unwrap();
        }
    });
    let mut seen = BTreeSet::new();
    for _ in 0..JOBS {
        let (job, square, id): (i64, i64, u64) = results.get().unwrap().extract().unwrap();
        assert_eq!(square, (job + 1) * (job + 1));
        assert!(ids.contains(&id));
        assert!(seen.insert(job), "job {job} twice");
    }
    assert_eq!(seen.len(), JOBS as usize);
    assert!(results.is_empty());
}

/// PEP 554's example: a channel pair, the interpreter answering back.
#[test]
fn pep554_channel_pair_answering_back() {
    let lua = LuaInterpreter::new().unwrap();
    let (requests, requests_in) = interpreters::channel();
    let (replies_out, replies) = interpreters::channel();
    lua.prepare_main([
        ("requests", requests_in.into()),
        ("replies", replies_out.into()),
    ])
    .unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            lua.exec(
                r#"
                while true do
                  local request = requests:recv()
                  if request == "done" then break end
                  replies:send({"pong", request[2] * 2})
                end
                "#,
            )
            .unwrap();
        });
        for i in 0..10 {
            requests.send(("ping", i)).unwrap();
            let (word, n): (String, i64) = replies.recv().unwrap().extract().unwrap();
            assert_eq!((word.as_str(), n), ("pong", 2 * i));
        }
        requests.send("done").unwrap();
    });
}

/// Async Lua functions run as tokio tasks, starting from the spawner's snapshot.
#[test]
fn async_lua_runs_as_tasks_with_the_spawners_snapshot() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        user = contextvars.ContextVar("user")
        user:set("spawner")
        function job(name, pause)
          local seen = user:get()
          user:set(name)
          task.sleep(pause)
          assert(user:get() == name) -- its own, across the await
          task.yield_now()
          return {seen, user:get(), interpreters.id()}
        end
        "#,
    )
    .unwrap();
    let first = lua.spawn("job", ["one".into(), 0.02.into()]).unwrap();
    lua.exec("user:set('later')").unwrap();
    let second = lua.spawn("job", ["two".into(), 0.001.into()]).unwrap();
    let (seen, own, id): (String, String, u64) =
        rt.block_on(first).unwrap().unwrap().extract().unwrap();
    assert_eq!(
        (seen.as_str(), own.as_str(), id),
        ("spawner", "one", lua.id())
    );
    let (seen, own, _): (String, String, u64) =
        rt.block_on(second).unwrap().unwrap().extract().unwrap();
    assert_eq!((seen.as_str(), own.as_str()), ("later", "two"));
    // The tasks' sets stayed in the tasks.
    lua.exec("assert(user:get() == 'later')").unwrap();
    // A failing task reports an ExecutionFailed.
    lua.exec("function bad() task.sleep(0) error('task failed') end")
        .unwrap();
    let error = rt
        .block_on(lua.spawn("bad", []).unwrap())
        .unwrap()
        .unwrap_err();
    assert!(error.as_failed().unwrap().message().contains("task failed"));
    drop(_guard);
    let outside = LuaInterpreter::new().unwrap();
    outside.exec("function f() end").unwrap();
    let error = outside.spawn("f", []).unwrap_err();
    assert_eq!(lua_error(&error), &LuaError::NoRuntime);
}

/// A panic in a Rust callback inside a spawned task is the task's failure (an
/// `ExecutionFailed` that is a panic), as in `exec`, not a panic of the tokio task; the
/// state, the task's context and the worker go on.
#[test]
fn a_panic_in_a_callback_inside_a_task_is_its_failure() {
    let rt = runtime();
    let _guard = rt.enter();
    let lua = LuaInterpreter::new().unwrap();
    register_explode(&lua, "callback panicked in a task");
    lua.exec(
        r#"
        v = contextvars.ContextVar("v")
        v:set("spawner")
        function job() v:set("task"); task.yield_now(); explode() end
        function fine() task.yield_now(); return v:get() end
        "#,
    )
    .unwrap();
    MAIN_VAR.set("caller");
    let outcome = rt.block_on(lua.spawn("job", []).unwrap());
    let error = outcome
        .expect("the tokio task completes (it panicked before)")
        .unwrap_err();
    let failed = error.as_failed().expect("an ExecutionFailed");
    assert!(failed.is_panic(), "{error}");
    assert!(failed.message().contains("callback panicked in a task"));
    assert_eq!(failed.interpreter_id(), lua.id());
    // Nothing leaked: the spawner's context, the state and later tasks are as before.
    assert_eq!(MAIN_VAR.get(), Some("caller"));
    lua.exec("assert(v:get() == 'spawner', v:get())").unwrap();
    let seen = rt
        .block_on(lua.spawn("fine", []).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(seen, Shareable::from("spawner"));
}

/// `coroutine.close` runs a coroutine's pending to-be-closed variables in the coroutine's own
/// logical context, on top of the closer's (PEP 550: a generator's `close()` runs its
/// `finally` blocks in its context): they see what the coroutine set, and their sets stay in
/// it. Before, a coroutine whose last resumer had finished closed in the interpreter's base
/// context, and its handlers' sets leaked there.
#[test]
fn closing_a_coroutine_runs_its_close_handlers_in_its_own_context() {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        v = contextvars.ContextVar("v", "default")
        w = contextvars.ContextVar("w", "none")
        local function handler(tag)
          return setmetatable({}, {__close = function()
            seen[#seen + 1] = tag .. ":" .. v:get() .. "/" .. w:get()
            v:set("set by " .. tag)
          end})
        end
        seen = {}
        gen = coroutine.create(function()
          local _ <close> = handler("gen")
          v:set("gen")
          coroutine.yield()
        end)
        -- Its last resumer finishes before the close.
        coroutine.wrap(function() assert(coroutine.resume(gen)) end)()
        w:set("closer")
        assert(coroutine.close(gen))
        assert(coroutine.status(gen) == "dead")
        -- A coroutine an error stopped keeps its handlers until it is closed.
        failed = coroutine.create(function()
          local _ <close> = handler("failed")
          v:set("failed")
          error("stopped")
        end)
        assert(not coroutine.resume(failed))
        local ok, err = coroutine.close(failed)
        assert(not ok and tostring(err):find("stopped"), tostring(err))
        -- A coroutine an error stopped keeps its context for its close, even after the
        -- contexts of finished coroutines were swept (once 64 were made, and again).
        swept = coroutine.create(function()
          local _ <close> = handler("swept")
          v:set("swept")
          error("stopped")
        end)
        assert(not coroutine.resume(swept))
        for i = 1, 200 do coroutine.wrap(function() v:set(i) end)() end
        assert(not coroutine.close(swept))
        -- Closing from inside another coroutine: on top of that one's context.
        inner = coroutine.create(function()
          local _ <close> = handler("inner")
          coroutine.yield()
        end)
        assert(coroutine.resume(inner))
        coroutine.wrap(function()
          w:set("outer")
          assert(coroutine.close(inner))
          assert(v:get() == "default", v:get())
        end)()
        "#,
    )
    .unwrap();
    lua.exec(
        r#"
        assert(#seen == 4, #seen)
        assert(seen[1] == "gen:gen/closer", seen[1])
        assert(seen[2] == "failed:failed/closer", seen[2])
        assert(seen[3] == "swept:swept/closer", seen[3])
        assert(seen[4] == "inner:default/outer", seen[4])
        -- Misuse is reported at the caller's line, as by Lua's own `close`.
        local ok, err = pcall(function() coroutine.close(42) end)
        assert(not ok and err:find("^exec:%d+: bad argument #1 to 'close'"), err)
        local ok, err = pcall(function() coroutine.resume(42) end)
        assert(not ok and err:find("^exec:%d+: bad argument #1 to 'resume'"), err)
        local ok, err = pcall(coroutine.wrap(function()
          coroutine.close(coroutine.running())
        end))
        assert(not ok and err:find("^exec:%d+: cannot close a running coroutine"), err)
        -- None of the handlers' sets reached the closer.
        assert(v:get() == "default", v:get())
        assert(w:get() == "closer", w:get())
        "#,
    )
    .unwrap();
}

/// As Lua's own `coroutine.wrap`: a wrapped coroutine (and a `no_context` one) that an error
/// stops is closed, so its to-be-closed variables run, in its context; an error in a
/// handler replaces the first; a string error gets the position of the call.
#[test]
fn a_wrapped_coroutine_stopped_by_an_error_is_closed() {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        v = contextvars.ContextVar("v", "default")
        local function make(wrapper, fail_in_close)
          return wrapper(function()
            local _ <close> = setmetatable({}, {__close = function()
              closed = v:get()
              if fail_in_close then error("close failed", 0) end
            end})
            v:set("own")
            error("boom", 0)
          end)
        end
        -- A `no_context` coroutine writes its resumer's context.
        local after = {[coroutine.wrap] = "default", [contextvars.no_context] = "own"}
        for _, wrapper in ipairs({coroutine.wrap, contextvars.no_context}) do
          closed = nil
          local ok, err = pcall(make(wrapper, false))
          assert(not ok)
          assert(closed == "own", "the handler ran, in the coroutine's context")
          -- A string error carries where the wrapped function was called (here `pcall`,
          -- a C function, so no position).
          assert(err == "boom", err)
          closed = nil
          local ok, err = pcall(make(wrapper, true))
          assert(not ok and err == "close failed", tostring(err))
          assert(closed == "own")
          assert(v:get() == after[wrapper], v:get())
          v:set("default")
        end
        -- With a Lua caller, the position of the call is prepended, as Lua does.
        local ok, err = pcall(function()
          local f = coroutine.wrap(function() error("plain", 0) end)
          f()
        end)
        assert(not ok and err:find("^exec:%d+: plain$"), err)
        -- A table error is passed through as it is.
        local marker = {}
        local ok, err = pcall(coroutine.wrap(function() error(marker) end))
        assert(not ok and err == marker)
        assert(v:get() == "default")
        "#,
    )
    .unwrap();
}

/// `task.sleep` outside a tokio runtime is a Lua error (catchable with `pcall`), not a
/// panic.
#[test]
fn task_sleep_outside_a_runtime_is_a_lua_error() {
    let lua = LuaInterpreter::new().unwrap();
    let error = lua.exec("task.sleep(0.001)").unwrap_err();
    let failed = error.as_failed().expect("an ExecutionFailed");
    assert!(!failed.is_panic(), "{error}");
    assert!(
        failed.message().contains("needs a tokio runtime"),
        "{error}"
    );
    lua.exec(
        "local ok, err = pcall(task.sleep, 1); \
         assert(not ok and tostring(err):find('needs a tokio runtime'), tostring(err))",
    )
    .unwrap();
}

/// 8 Lua interpreters on 8 threads: 4 producers, 4 consumers, 100,000 messages.
#[test]
fn stress_eight_interpreters_pass_100k_messages() {
    const PRODUCERS: i64 = 4;
    const CONSUMERS: usize = 4;
    const PER_PRODUCER: i64 = 25_000;
    let queue = interpreters::create_queue(1024);
    let make = |role: &str, me: i64| {
        let lua = LuaInterpreter::new().unwrap();
        lua.prepare_main([
            ("q", queue.clone().into()),
            ("me", me.into()),
            ("N", PER_PRODUCER.into()),
            ("P", PRODUCERS.into()),
            ("role", role.into()),
        ])
        .unwrap();
        lua
    };
    let producers: Vec<_> = (1..=PRODUCERS).map(|p| make("producer", p)).collect();
    let consumers: Vec<_> = (0..CONSUMERS as i64).map(|c| make("consumer", c)).collect();
    std::thread::scope(|s| {
        let consuming: Vec<_> = consumers
            .iter()
            .map(|lua| {
                s.spawn(move || {
                    lua.exec(
                        r#"
                        local last, seen = {}, {}
                        for p = 1, P do last[p], seen[p] = 0, {} end
                        while true do
                          local m = q:get()
                          if m == nil then break end
                          local p, i = m[1], m[2]
                          if i <= last[p] then error("out of order: " .. p .. " " .. i) end
                          last[p] = i
                          local list = seen[p]
                          list[#list + 1] = i
                        end
                        result = seen
                        "#,
                    )
                    .unwrap();
                })
            })
            .collect();
        let producing: Vec<_> = producers
            .iter()
            .map(|lua| {
                s.spawn(move || {
                    lua.exec("for i = 1, N do q:put({me, i}) end").unwrap();
                })
            })
            .collect();
        for handle in producing {
            handle.join().unwrap();
        }
        for _ in 0..CONSUMERS {
            queue.put(()).unwrap();
        }
        for handle in consuming {
            handle.join().unwrap();
        }
    });
    let mut all: Vec<Vec<i64>> = vec![Vec::new(); PRODUCERS as usize];
    for consumer in &consumers {
        let Some(Shareable::Tuple(per_producer)) = consumer.get_main_attr("result").unwrap() else {
            panic!("no result");
        };
        assert_eq!(per_producer.len(), PRODUCERS as usize);
        for (p, seqs) in per_producer.iter().enumerate() {
            let seqs: Vec<i64> = match seqs {
                Shareable::Tuple(items) => items
                    .iter()
                    .map(|item| item.clone().extract().unwrap())
                    .collect(),
                other => panic!("{other:?}"),
            };
            // Per-producer FIFO, as each consumer saw it.
            assert!(seqs.windows(2).all(|w| w[0] < w[1]));
            all[p].extend(seqs);
        }
    }
    for (p, mut seqs) in all.into_iter().enumerate() {
        seqs.sort_unstable();
        let expected: Vec<i64> = (1..=PER_PRODUCER).collect();
        // 0 lost, 0 duplicated.
        assert_eq!(seqs.len(), expected.len(), "producer {p}");
        assert!(
            seqs == expected,
            "producer {p}: lost or duplicated messages"
        );
    }
    assert!(queue.is_empty());
}

/// The instruction budget striking anywhere in a resume (between recording the resumer and
/// Lua's resume, say) never leaves a coroutine's logical context in use afterwards.
#[test]
fn a_budget_error_inside_resumes_leaves_no_context_behind() {
    for budget in (2_000..40_000).step_by(1_337) {
        let lua = LuaInterpreter::builder()
            .instruction_budget(budget)
            .build()
            .unwrap();
        lua.exec("var = contextvars.ContextVar('var'); var:set('outer')")
            .unwrap();
        let error = lua
            .exec(
                r#"
                local step = coroutine.wrap(function()
                  var:set('inner')
                  while true do
                    local nested = coroutine.wrap(function() var:set('nested'); coroutine.yield() end)
                    nested()
                    coroutine.yield(var:get())
                  end
                end)
                while true do assert(step() == 'inner') end
                "#,
            )
            .unwrap_err();
        assert!(error.to_string().contains("instruction budget"), "{error}");
        lua.exec(
            r#"
            assert(var:get() == 'outer', var:get())
            local co = coroutine.wrap(function()
              assert(var:get() == 'outer')
              var:set('fresh')
              coroutine.yield(var:get())
            end)
            assert(co() == 'fresh')
            assert(var:get() == 'outer')
            "#,
        )
        .unwrap_or_else(|error| panic!("budget {budget}: {error}"));
    }
}

/// `Context:run` inside a coroutine runs in that context alone (PEP 567), not in the
/// coroutine's logical context; the coroutine's own value is back afterwards.
#[test]
fn context_run_inside_a_coroutine_replaces_its_context() {
    let seen = run_script(
        r#"
        local var = contextvars.ContextVar('var', 'default')
        local ctx = contextvars.copy_context()
        local co = coroutine.wrap(function()
          var:set('coroutine')
          emit('before: ' .. var:get())
          ctx:run(function()
            emit('in ctx: ' .. var:get())
            local inner = coroutine.wrap(function()
              var:set('inner')
              coroutine.yield(var:get())
            end)
            emit('inner: ' .. inner())
            emit('in ctx after inner: ' .. var:get())
          end)
          emit('after: ' .. var:get())
        end)
        co()
        emit('caller: ' .. var:get())
        "#,
    );
    assert_eq!(
        seen,
        [
            "before: coroutine",
            "in ctx: default",
            "inner: inner",
            "in ctx after inner: default",
            "after: coroutine",
            "caller: default",
        ]
    );
}

/// A coroutine has its own logical context from its first resume, even before its first
/// `set`: a token made by its resumer is of another context inside it.
#[test]
fn a_resumers_token_is_of_another_context_inside_a_coroutine() {
    let seen = run_script(
        r#"
        local var = contextvars.ContextVar('var')
        local token = var:set('caller')
        local co = coroutine.wrap(function()
          local ok, message = pcall(var.reset, var, token)
          emit(tostring(ok) .. ' ' .. tostring(message):match('ValueError: [^\n]*'))
          emit(var:get())
        end)
        co()
        emit(var:get())
        "#,
    );
    assert_eq!(
        seen,
        [
            "false ValueError: the token was created in a different context",
            "caller",
            "caller",
        ]
    );
}

/// The first `ContextVar` of a state made inside a running coroutine: the coroutine's sets
/// still stay in it, and its context is released when the collector takes it.
#[test]
fn a_first_context_var_made_inside_a_coroutine() {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        co = coroutine.create(function()
          var = contextvars.ContextVar('var', 'default')
          var:set('inside')
          coroutine.yield(var:get())
          return var:get()
        end)
        local ok, seen = coroutine.resume(co)
        assert(ok and seen == 'inside', seen)
        assert(var:get() == 'default', var:get())
        var:set('caller')
        local ok, seen = coroutine.resume(co)
        assert(ok and seen == 'inside', seen)
        assert(var:get() == 'caller')
        "#,
    )
    .unwrap();
    lua.exec("co = nil; collectgarbage(); collectgarbage()")
        .unwrap();
    assert_eq!(lua.coroutine_contexts(), 0);
}

/// Finished coroutines that stay reachable do not keep their logical contexts (nor the
/// values in them) for long: making contexts sweeps the finished ones' as their number grows.
#[test]
fn finished_coroutines_contexts_are_swept_while_they_stay_reachable() {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        var = contextvars.ContextVar("var")
        collected = 0
        local finalizer = {__gc = function() collected = collected + 1 end}
        done = {}
        for i = 1, 1000 do
          done[i] = coroutine.create(function() var:set(setmetatable({}, finalizer)) end)
          assert(coroutine.resume(done[i]))
        end
        collectgarbage(); collectgarbage()
        "#,
    )
    .unwrap();
    let collected = lua.get_main_attr("collected").unwrap().unwrap();
    let collected = collected.extract::<i64>().unwrap();
    // Each sweep releases all finished ones; at most the contexts made since the last sweep
    // (fewer than half of them) are still held.
    assert!(
        collected >= 500,
        "only {collected} of 1000 values collected"
    );
    assert_eq!(lua.coroutine_contexts(), 0);
}

/// A resume given something that is not a coroutine (bad input, caught with `pcall`) does not
/// keep the calling coroutine alive: the record of who resumed it holds its resumer weakly.
#[test]
fn a_bad_resume_argument_does_not_keep_the_resumer_alive() {
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        collected = 0
        local finalizer = {__gc = function() collected = collected + 1 end}
        for i = 1, 3 do
          local co = coroutine.create(function()
            local sentinel = setmetatable({}, finalizer)
            bad_ok, bad_message = pcall(coroutine.resume, 40 + i)
            coroutine.yield(sentinel)
          end)
          assert(coroutine.resume(co))
        end
        collectgarbage(); collectgarbage()
        "#,
    )
    .unwrap();
    let ok = lua.get_main_attr("bad_ok").unwrap().unwrap();
    assert_eq!(ok, Shareable::from(false), "resuming a number must fail");
    let message = lua.get_main_attr("bad_message").unwrap().unwrap();
    let message = message.extract::<String>().unwrap();
    assert!(message.contains("coroutine"), "{message}");
    let collected = lua.get_main_attr("collected").unwrap().unwrap();
    assert_eq!(collected.extract::<i64>().unwrap(), 3);
}

/// What a budget could not see is closed off (from a review): many short coroutines (each
/// counted as one step: half a million of them, of 200 loop steps each, finish without it),
/// a finalizer (`__gc`, which Lua runs with hooks off: refused), and a `load` whose reader
/// runs away (the spent budget passes through `load`; without it each `load` returns `nil`
/// and the loop ends normally).
#[test]
fn the_budget_cannot_be_escaped() {
    let lua = LuaInterpreter::builder()
        .instruction_budget(100_000)
        .build()
        .unwrap();
    let error = lua
        .exec(
            r#"
            local function work(d)
              if d == 0 then for i = 1, 200 do end return end
              for k = 1, 3 do coroutine.wrap(work)(d - 1) end
            end
            coroutine.wrap(work)(12)
            "#,
        )
        .unwrap_err();
    assert_eq!(
        lua_error(&error),
        &LuaError::InstructionBudget { budget: 100_000 }
    );
    let error = lua
        .exec("setmetatable({}, {__gc = function() end})")
        .unwrap_err();
    assert!(error.to_string().contains("__gc"), "{error}");
    // A metatable without a finalizer is fine.
    lua.exec("assert(getmetatable(setmetatable({}, {__index = {}})))")
        .unwrap();
    let error = lua
        .exec("for i = 1, 1000 do load(function() while true do end end) end")
        .unwrap_err();
    assert_eq!(
        lua_error(&error),
        &LuaError::InstructionBudget { budget: 100_000 }
    );
    // Loading as usual still works, errors included.
    lua.exec("assert(load('return 1')() == 1); assert(load('return (') == nil)")
        .unwrap();
}

/// An aborted task's pending `__close` handlers run under the budget too.
#[test]
fn an_aborted_tasks_close_handlers_are_budgeted() {
    let rt = runtime();
    let _guard = rt.enter();
    let lua = LuaInterpreter::builder()
        .instruction_budget(100_000)
        .build()
        .unwrap();
    lua.exec(
        r#"
        closed = 0
        function job()
          local guard <close> = setmetatable({}, {__close = function()
            for i = 1, 200000000 do closed = i end
          end})
          task.sleep(60)
        end
        "#,
    )
    .unwrap();
    let handle = lua.spawn("job", []).unwrap();
    rt.block_on(async {
        // Let the task start and reach its sleep.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    });
    handle.abort();
    let outcome = rt.block_on(handle);
    assert!(outcome.unwrap_err().is_cancelled());
    let closed: i64 = lua
        .get_main_attr("closed")
        .unwrap()
        .unwrap()
        .extract()
        .unwrap();
    assert!(closed > 0, "the handler ran");
    assert!(
        closed < 200_000_000,
        "the handler was stopped by the budget"
    );
}

/// An async function awaited inside a coroutine that a task's function resumes: the await
/// is passed on to the task (the coroutine really sleeps, and resumes with its value); in a
/// plain `exec`, where no task polls, it is an error rather than a silent no-op.
#[test]
fn an_async_function_awaited_in_a_coroutine() {
    let rt = runtime();
    let _guard = rt.enter();
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        v = contextvars.ContextVar("v")
        function job()
          v:set("task")
          local f = coroutine.wrap(function()
            v:set("co")
            task.sleep(0.001)
            coroutine.yield(v:get())
            task.yield_now()
            return "slept"
          end)
          local first = f()
          local second = f()
          return {first, second, v:get()}
        end
        function plain()
          return coroutine.wrap(function() task.sleep(0.001) return "slept" end)()
        end
        "#,
    )
    .unwrap();
    let seen = rt.block_on(lua.spawn("job", []).unwrap()).unwrap().unwrap();
    let (first, second, own): (String, String, String) = seen.extract().unwrap();
    assert_eq!(
        (first.as_str(), second.as_str(), own.as_str()),
        ("co", "slept", "task")
    );
    let error = lua.call("plain", []).unwrap_err();
    assert!(
        error.to_string().contains("must be resumed by a task"),
        "{error}"
    );
    // A resume passes on exactly the values that came back, however many.
    lua.exec(
        r#"
        local function count(f) return select('#', coroutine.resume(coroutine.create(f))) end
        assert(count(function() end) == 1)
        assert(count(function() return nil end) == 2)
        assert(count(function() return nil, nil end) == 3)
        assert(count(function() coroutine.yield() end) == 1)
        "#,
    )
    .unwrap();
}

/// A Lua `ContextVar` lives as long as the process: its name is bounded, kept once per
/// distinct name, and a state creates a bounded number of them.
#[test]
fn context_var_names_and_counts_are_bounded() {
    let lua = LuaInterpreter::new().unwrap();
    let error = lua
        .exec("contextvars.ContextVar(string.rep('x', 257))")
        .unwrap_err();
    assert!(error.to_string().contains("at most 256 bytes"), "{error}");
    lua.exec("assert(contextvars.ContextVar(string.rep('x', 256)))")
        .unwrap();
    let error = lua
        .exec("for i = 1, 10001 do contextvars.ContextVar('many') end")
        .unwrap_err();
    assert!(error.to_string().contains("10000 ContextVars"), "{error}");
    // Another state has its own count.
    LuaInterpreter::new()
        .unwrap()
        .exec("assert(contextvars.ContextVar('one more'))")
        .unwrap();
}

/// A coroutine waiting in an await that its task passed on belongs to that task: another run
/// can neither resume nor close it (it would take the await's wake-up). When the task is
/// aborted, the coroutine is closed with it (its to-be-closed variables run).
#[test]
fn a_coroutine_waiting_in_an_await_belongs_to_its_task() {
    let rt = runtime();
    let _guard = rt.enter();
    let lua = LuaInterpreter::new().unwrap();
    lua.exec(
        r#"
        inner_closed = false
        function job()
          waiting = coroutine.create(function()
            local guard <close> = setmetatable({}, {__close = function()
              inner_closed = true
            end})
            task.sleep(60)
          end)
          return coroutine.resume(waiting)
        end
        "#,
    )
    .unwrap();
    let handle = lua.spawn("job", []).unwrap();
    rt.block_on(tokio::time::sleep(std::time::Duration::from_millis(20)));
    lua.exec(
        r#"
        assert(coroutine.status(waiting) == "normal")
        local ok, err = coroutine.resume(waiting)
        assert(not ok and err:find("await"), err)
        local closed, close_err = pcall(coroutine.close, waiting)
        assert(not closed and close_err:find("await"), close_err)
        assert(not inner_closed)
        "#,
    )
    .unwrap();
    handle.abort();
    assert!(rt.block_on(handle).unwrap_err().is_cancelled());
    lua.exec("assert(inner_closed, 'closed with its task')")
        .unwrap();
    lua.exec("assert(coroutine.status(waiting) == 'dead')")
        .unwrap();
}
