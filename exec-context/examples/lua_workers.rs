//! Lua workers, each a Lua state in an interpreter of its own on a thread of its own, fed
//! through one queue and answering through another (PEP 734's pattern, with Lua source as
//! the code). Each worker keeps a count of its jobs in a context variable, which no other
//! worker and not main can see.
//!
//! Run: `cargo run -p exec-context --features lua --example lua_workers`.

use std::collections::BTreeMap;

use exec_context::interpreters::{self, Shareable};
use exec_context::lua::LuaInterpreter;

const WORKERS: usize = 4;
const JOBS: i64 = 100;

const WORKER: &str = r#"
local done = contextvars.ContextVar("jobs done", 0)
local function collatz(n)
  local steps = 0
  while n ~= 1 do
    if n % 2 == 0 then n = n // 2 else n = 3 * n + 1 end
    steps = steps + 1
  end
  return steps
end
while true do
  local job = jobs:get()
  if job == nil then break end
  done:set(done:get() + 1)
  results:put({job, collatz(job), name})
end
jobs_done = done:get()
"#;

fn main() {
    let jobs = interpreters::create_queue(16);
    let results = interpreters::create_queue(0);
    let workers: Vec<LuaInterpreter> = (0..WORKERS)
        .map(|i| {
            let lua = LuaInterpreter::new().expect("a Lua state");
            lua.prepare_main([
                ("jobs", jobs.clone().into()),
                ("results", results.clone().into()),
                ("name", format!("worker {i}").as_str().into()),
            ])
            .expect("prepared");
            lua
        })
        .collect();

    std::thread::scope(|s| {
        for worker in &workers {
            s.spawn(move || worker.exec(WORKER).expect("the worker script"));
        }
        for n in 1..=JOBS {
            jobs.put(n).expect("queued");
        }
        for _ in 0..WORKERS {
            jobs.put(Shareable::None).expect("queued");
        }
    });

    let mut steps = BTreeMap::new();
    let mut per_worker: BTreeMap<String, i64> = BTreeMap::new();
    for _ in 0..JOBS {
        let (n, count, name): (i64, i64, String) = results
            .get()
            .expect("a result")
            .extract()
            .expect("(n, steps, name)");
        assert!(steps.insert(n, count).is_none(), "job {n} answered twice");
        *per_worker.entry(name).or_default() += 1;
    }
    assert_eq!(steps.len(), JOBS as usize);
    assert_eq!(steps[&27], 111); // the famous one
    assert_eq!(steps[&1], 0);

    // Each worker's own count, kept in its context variable, matches what it answered.
    let mut total = 0;
    for (i, worker) in workers.iter().enumerate() {
        let done: i64 = worker
            .get_main_attr("jobs_done")
            .expect("read")
            .expect("set")
            .extract()
            .expect("an integer");
        assert_eq!(
            done,
            per_worker.get(&format!("worker {i}")).copied().unwrap_or(0)
        );
        total += done;
    }
    assert_eq!(total, JOBS);
    println!(
        "{WORKERS} Lua interpreters answered {JOBS} jobs ({per_worker:?}); \
         27 takes {} steps",
        steps[&27]
    );
}

/// `cargo test --examples` runs the example too.
#[test]
fn runs() {
    main();
}
