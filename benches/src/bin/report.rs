//! The project report: `cargo run --release -p benches --bin report [-- --full]`.
//!
//! Writes `report.md` (also printed to stdout), `results.json`, `index.html` (the tables
//! and the inlined SVG figures, no network needed) and the SVG figures to `--out` (default
//! `target/report/`); a progress bar, or progress lines when stderr is not a terminal, goes
//! to stderr. `--smoke` is the seconds-long CI mode, `--compare old.json` prints what got
//! faster or slower. See `--help` and `benches::report`.
//!
//! Memory is measured in this same process through a counting global allocator. Its hooks
//! check one relaxed atomic flag that is only set while a memory figure is being taken, so
//! the timing runs pay a load and a well-predicted branch per allocation, the same for every
//! contender; a child process would have avoided even that, at the price of a second
//! command-line mode and of rebuilding every map in the child.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use benches::alloc::CountingAllocator;
use benches::report::{self, Config, Group, Mode, compare};
use benches::sizes;
use clap::Parser;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

/// The benchmark report: our crates against their peers, as `report.md`, `index.html` (SVG
/// charts inlined), `results.json` and the SVG figures, all in `--out`.
///
/// Quick mode by default: hamt N = 10 .. 100k with repetitions of ≈ 3 ms; context, tasks and
/// interpreters 15 repetitions of ≈ 20 ms. The markdown is printed to stdout, progress to stderr.
#[derive(Debug, Parser)]
#[command(name = "report", version)]
struct Cli {
    /// For publication: hamt N = 10 .. 1M, repetitions of ≈ 20 ms; context, tasks and
    /// interpreters 21 repetitions of ≈ 50 ms.
    #[arg(long, conflicts_with = "smoke")]
    full: bool,

    /// For CI: N = 10 and 100, 3 repetitions of ≈ 1 ms (seconds, even in a debug build).
    #[arg(long)]
    smoke: bool,

    /// The default mode (accepted for compatibility).
    #[arg(long, hide = true, conflicts_with_all = ["full", "smoke"])]
    quick: bool,

    /// Run only these sections (repeat the flag or separate with commas); all by default.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "GROUP")]
    only: Vec<Group>,

    /// Where to write the report files; default `target/report/` of the workspace (or
    /// `$CARGO_TARGET_DIR/report`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Print results.json to stdout instead of the markdown (the files are written anyway).
    #[arg(long)]
    json: bool,

    /// Compare with an earlier results.json: print what got faster or slower (±10%).
    #[arg(long, value_name = "OLD_RESULTS_JSON")]
    compare: Option<PathBuf>,

    /// hamt: these comma-separated sizes instead of the mode's, e.g. 10,1k,100k.
    #[arg(long, value_name = "LIST", value_parser = parse_sizes)]
    sizes: Option<SizeList>,

    /// hamt: skip the memory measurements.
    #[arg(long)]
    no_memory: bool,

    /// The bars to check instead of the crate's `benches/targets.toml`
    #[arg(long, value_name = "FILE")]
    targets: Option<PathBuf>,
}

/// A `--sizes` list (a newtype, so clap takes the list as one value).
#[derive(Clone, Debug)]
struct SizeList(Vec<usize>);

fn parse_sizes(list: &str) -> Result<SizeList, String> {
    sizes::parse_list(list).map(SizeList)
}

impl Cli {
    fn config(&self) -> Config {
        let mode = if self.full {
            Mode::Full
        } else if self.smoke {
            Mode::Smoke
        } else {
            Mode::Quick
        };
        let mut config = Config::new(mode);
        if let Some(SizeList(sizes)) = &self.sizes {
            config.sizes.clone_from(sizes);
        }
        config.memory = !self.no_memory;
        if !self.only.is_empty() {
            config.groups = Group::ALL
                .into_iter()
                .filter(|group| self.only.contains(group))
                .collect();
        }
        if let Some(out) = &self.out {
            config.out.clone_from(out);
        }
        if let Some(targets) = &self.targets {
            config.targets.clone_from(targets);
        }
        config
    }
}

fn main() -> ExitCode {
    // First: the `service` section spawns child processes, which re-run this binary and take
    // over here (see `exec_context::process::init`).
    exec_context::process::init(benches::report::service::registry());
    let cli = Cli::parse();
    let config = cli.config();
    // Fail on bad input before measuring for minutes.
    let old = match cli.compare.as_deref().map(compare::load).transpose() {
        Ok(old) => old,
        Err(message) => {
            eprintln!("report: --compare: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = report::targets::Targets::load(&config.targets) {
        eprintln!("report: targets: {error}");
        return ExitCode::from(2);
    }
    if let Err(error) = report::prepare_output(&config.out) {
        eprintln!(
            "report: --out: cannot write to {}: {error}",
            config.out.display()
        );
        return ExitCode::from(2);
    }
    let outcome = match report::run(&config) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!(
                "report: cannot write the report to {}: {error}",
                config.out.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut printed = if cli.json {
        serde_json::to_writer_pretty(&mut stdout, &outcome.json)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(stdout))
    } else {
        write!(stdout, "{}", outcome.markdown)
    };
    if let Some(old) = &old {
        let comparison = compare::render(old, &outcome.json);
        // With --json, stdout is for the JSON alone.
        printed = printed.and_then(|()| {
            if cli.json {
                eprint!("{comparison}");
                Ok(())
            } else {
                write!(stdout, "\n{comparison}")
            }
        });
    }
    let status = if outcome.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for (group, message) in &outcome.failed {
            eprintln!("report: the `{}` group failed: {message}", group.name());
        }
        ExitCode::FAILURE
    };
    match printed.and_then(|()| stdout.flush()) {
        Ok(()) => status,
        // A closed pipe (`report | head`) is not worth a panic.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("report: cannot print the report: {error}");
            ExitCode::FAILURE
        }
    }
}
