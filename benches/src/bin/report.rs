//! The project report: `cargo run --release -p benches --bin report [-- --full]`.
//!
//! Writes `target/report/report.md` (also printed to stdout) and the SVG figures beside it;
//! progress goes to stderr. See `benches::report`.
//!
//! Memory is measured in this same process through a counting global allocator. Its hooks
//! check one relaxed atomic flag that is only set while a memory figure is being taken, so
//! the timing runs pay a load and a well-predicted branch per allocation, the same for every
//! contender; a child process would have avoided even that, at the price of a second
//! command-line mode and of rebuilding every map in the child.

use std::process::ExitCode;

use benches::alloc::CountingAllocator;
use benches::report::{self, Config, Group, Mode};
use benches::sizes;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

const USAGE: &str = "\
usage: report [--quick | --full] [--only GROUPS] [--sizes LIST] [--no-memory]

  --quick        hamt: N = 10 .. 100k, repetitions of ≈ 3 ms; context and tasks: 15
                 repetitions of ≈ 20 ms (the default; about a minute here)
  --full         hamt: N = 10 .. 1M, repetitions of ≈ 20 ms; context and tasks: 21
                 repetitions of ≈ 50 ms (for publication)
  --only GROUPS  run only these sections: hamt, context or tasks (comma-separated for
                 several, e.g. context,tasks); all three by default
  --sizes LIST   hamt: comma-separated sizes instead, e.g. 10,1k,100k
  --no-memory    hamt: skip the memory measurements
";

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
    let mut mode = Mode::Quick;
    let mut sizes_override = None;
    let mut memory = true;
    let mut groups = None;
    let mut args = args;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => mode = Mode::Quick,
            "--full" => mode = Mode::Full,
            "--no-memory" => memory = false,
            "--sizes" => {
                let list = args.next().ok_or("--sizes needs a list, e.g. 10,1k,100k")?;
                sizes_override = Some(sizes::parse_list(&list)?);
            }
            "--only" => {
                let list = args
                    .next()
                    .ok_or("--only needs a section: hamt, context or tasks")?;
                groups = Some(parse_groups(&list)?);
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut config = Config::new(mode);
    if let Some(sizes) = sizes_override {
        config.sizes = sizes;
    }
    config.memory = memory;
    if let Some(groups) = groups {
        config.groups = groups;
    }
    Ok(Some(config))
}

/// `hamt`, `context`, `tasks`, or several of them comma-separated; kept in report order.
fn parse_groups(list: &str) -> Result<Vec<Group>, String> {
    let mut wanted = Vec::new();
    for name in list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let group = Group::parse(name)
            .ok_or_else(|| format!("unknown section {name:?}: expected hamt, context or tasks"))?;
        wanted.push(group);
    }
    if wanted.is_empty() {
        return Err("--only needs a section: hamt, context or tasks".to_owned());
    }
    Ok(Group::ALL
        .into_iter()
        .filter(|group| wanted.contains(group))
        .collect())
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)) {
        Ok(Some(config)) => match report::run(&config) {
            Ok(_) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("report: cannot write the report: {error}");
                ExitCode::FAILURE
            }
        },
        Ok(None) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("report: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
