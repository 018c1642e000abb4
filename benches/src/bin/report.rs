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
use benches::report::{self, Config, Mode};
use benches::sizes;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

const USAGE: &str = "\
usage: report [--quick | --full] [--sizes LIST] [--no-memory]

  --quick        N = 10 .. 100k, repetitions of ≈ 3 ms (the default; well under a minute here)
  --full         N = 10 .. 1M, repetitions of ≈ 20 ms (for publication; about 4 minutes)
  --sizes LIST   comma-separated sizes instead, e.g. 10,1k,100k
  --no-memory    skip the memory measurements
";

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
    let mut mode = Mode::Quick;
    let mut sizes_override = None;
    let mut memory = true;
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
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut config = Config::new(mode);
    if let Some(sizes) = sizes_override {
        config.sizes = sizes;
    }
    config.memory = memory;
    Ok(Some(config))
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
