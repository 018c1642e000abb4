//! The project report: `cargo run --release -p benches --bin report [-- --full]`.
//!
//! Measures the selected sections ([`Group`]), then writes `report.md`, `results.json`
//! ([`json`]), `index.html` ([`html`]) and the SVG figures to [`Config::out`] (default
//! `target/report/`); progress goes to stderr ([`progress`]). [`compare`] diffs two
//! `results.json`. The
//! sections are [`hamt`], [`context`], [`tasks`], [`interpreters`] and [`service`]; the
//! middle three share the case machinery of [`cases`]. Every bar the sections check is read
//! from `benches/targets.toml` ([`targets`]) before anything is measured, and every table
//! states the CPU level the binary was compiled for ([`machine::target_cpu`]).

pub mod cases;
pub mod compare;
pub mod context;
pub mod hamt;
pub mod html;
pub mod interpreters;
pub mod json;
pub mod machine;
pub mod progress;
pub mod service;
pub mod svg;
pub mod table;
pub mod targets;
pub mod tasks;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::Settings;
use crate::sizes;

/// The line under every table: what the binary was compiled for (see
/// [`machine::target_cpu`]).
pub fn cpu_line() -> String {
    format!("Build target CPU: {}.\n\n", machine::target_cpu())
}

/// How long to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A couple of minutes: N up to 100k, repetitions of a few ms. The default.
    Quick,
    /// For publication: N up to 1M, repetitions of about 20 ms.
    Full,
    /// For CI: N = 10 and 100, three repetitions of about 1 ms; seconds even unoptimized.
    Smoke,
}

impl Mode {
    /// `quick` or `full`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Quick => "quick",
            Self::Full => "full",
            Self::Smoke => "smoke",
        }
    }

    /// The sizes this mode runs unless told otherwise.
    pub fn default_sizes(self) -> Vec<usize> {
        match self {
            Self::Quick => sizes::QUICK.to_vec(),
            Self::Full => sizes::FULL.to_vec(),
            Self::Smoke => SMOKE_SIZES.to_vec(),
        }
    }

    /// The timing settings of the context and task cases (single operations of a few to a
    /// few hundred nanoseconds, so many repetitions are cheap).
    pub fn case_timing(self) -> Settings {
        match self {
            Self::Quick => Settings {
                target: Duration::from_millis(20),
                reps: 15,
            },
            Self::Full => Settings {
                target: Duration::from_millis(50),
                reps: 21,
            },
            Self::Smoke => SMOKE_TIMING,
        }
    }

    /// The timing settings for maps of `n` entries.
    pub fn timing(self, n: usize) -> Settings {
        match self {
            Self::Quick => Settings {
                target: Duration::from_millis(3),
                reps: 5,
            },
            Self::Full => Settings {
                target: Duration::from_millis(20),
                reps: if n >= 1_000_000 { 3 } else { 5 },
            },
            Self::Smoke => SMOKE_TIMING,
        }
    }
}

/// The sizes of a smoke run.
const SMOKE_SIZES: [usize; 2] = [10, 100];

/// The timing of every figure in a smoke run.
const SMOKE_TIMING: Settings = Settings {
    target: Duration::from_millis(1),
    reps: 3,
};

/// A section of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// The persistent map against its peers ([`hamt`]).
    #[value(help = "the persistent map vs imbl, im, rpds and std HashMap")]
    Hamt,
    /// Context variable operations against their peers ([`context`]).
    #[value(help = "context variables vs thread_local!, tokio task_local!, opentelemetry")]
    Context,
    /// Generators, iterators, task wrappers, spawning and fibers ([`tasks`]).
    #[value(help = "generators, iterators, task wrappers, spawning and fibers")]
    Tasks,
    /// Interpreter queues, channels, exec and pool against their peers ([`interpreters`]).
    #[value(
        help = "interpreter queues and channels vs std mpsc and crossbeam-channel, \
                    create + close, exec, the interpreter pool vs plain pools"
    )]
    Interpreters,
    /// Propagated variables across services and processes ([`service`]).
    #[value(
        help = "tower layers on a loopback hyper server and client (with vs without), \
                    process spawn + join (with vs without inheritance)"
    )]
    Service,
}

impl Group {
    /// Every section, in report order.
    pub const ALL: [Self; 5] = [
        Self::Hamt,
        Self::Context,
        Self::Tasks,
        Self::Interpreters,
        Self::Service,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hamt => "hamt",
            Self::Context => "context",
            Self::Tasks => "tasks",
            Self::Interpreters => "interpreters",
            Self::Service => "service",
        }
    }

    /// The section called `name` on the command line.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|group| group.name() == name)
    }
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Quick or full.
    pub mode: Mode,
    /// The sections to run, in report order.
    pub groups: Vec<Group>,
    /// Map sizes N.
    pub sizes: Vec<usize>,
    /// Whether to measure memory (needs the counting allocator, see [`crate::alloc`]).
    pub memory: bool,
    /// Where the report files go.
    pub out: PathBuf,
    /// The bars to check (default `benches/targets.toml`, see [`targets`]).
    pub targets: PathBuf,
}

impl Config {
    /// The default configuration of `mode`: every section.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            groups: Group::ALL.to_vec(),
            sizes: mode.default_sizes(),
            memory: true,
            out: output_dir(),
            targets: targets::default_path(),
        }
    }

    /// Whether `group` is to be run.
    pub fn runs(&self, group: Group) -> bool {
        self.groups.contains(&group)
    }
}

/// Where the report goes: `$CARGO_TARGET_DIR/report`, else `target/report` under the
/// workspace root.
pub fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // The workspace root is the parent of this crate's manifest directory.
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest.parent().unwrap_or(manifest).join("target")
        });
    target.join("report")
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The markdown report (also written to `report.md`).
    pub markdown: String,
    /// The machine-readable results (also written to `results.json`).
    pub json: serde_json::Value,
    /// The files written, `report.md` first.
    pub files: Vec<PathBuf>,
    /// The groups that failed (panicked) while measuring, with the panic's message: the
    /// report holds the others, and says so.
    pub failed: Vec<(Group, String)>,
}

/// Measures one group, or records why it failed: one group's failure (a peer that cannot
/// start, a port that cannot be bound) must not lose the other groups' figures.
fn guarded<R>(
    config: &Config,
    group: Group,
    failed: &mut Vec<(Group, String)>,
    measure: impl FnOnce() -> R,
) -> Option<R> {
    if !config.runs(group) {
        return None;
    }
    progress::group(group.name());
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(measure)) {
        Ok(results) => Some(results),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|message| (*message).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            failed.push((group, message));
            None
        }
    }
}

/// The progress steps of `config`: one per hamt (operation, N) and memory N, one per
/// context or task operation.
fn steps(config: &Config) -> u64 {
    fn ops<O: PartialEq>(cases: Vec<crate::cases::Case<O>>) -> usize {
        let mut ops: Vec<O> = Vec::new();
        for case in cases {
            if !ops.contains(&case.op) {
                ops.push(case.op);
            }
        }
        ops.len()
    }
    let mut steps = 0;
    if config.runs(Group::Hamt) {
        steps += config.sizes.len() * crate::ops::Op::ALL.len();
        if config.memory && crate::alloc::is_installed() {
            steps += config.sizes.len();
        }
    }
    if config.runs(Group::Context) {
        steps += ops(crate::context_ops::cases());
    }
    if config.runs(Group::Tasks) {
        steps += ops(crate::task_ops::cases());
    }
    if config.runs(Group::Interpreters) {
        steps += ops(crate::interpreter_ops::cases());
    }
    if config.runs(Group::Service) {
        steps += service::STEPS as usize;
    }
    steps as u64
}

/// Creates `dir` and checks that a file can be written in it, so that a bad `--out` fails
/// before minutes of measuring rather than after.
pub fn prepare_output(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(".report-write-test");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// Measures everything `config` asks for, writes `report.md`, `results.json`, `index.html`
/// and the SVG figures to `config.out`, and returns what it wrote. Progress goes to
/// stderr; printing the results is left to the caller.
pub fn run(config: &Config) -> io::Result<Outcome> {
    let bars = targets::Targets::load(&config.targets)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    let started = Instant::now();
    let machine = machine::Machine::collect();
    progress::start(steps(config));
    let mut failed = Vec::new();
    let hamt_results = guarded(config, Group::Hamt, &mut failed, || hamt::measure(config));
    let context_results = guarded(config, Group::Context, &mut failed, || {
        context::measure(config)
    });
    let task_results = guarded(config, Group::Tasks, &mut failed, || tasks::measure(config));
    let interpreter_results = guarded(config, Group::Interpreters, &mut failed, || {
        interpreters::measure(config)
    });
    let service_results = guarded(config, Group::Service, &mut failed, || {
        service::measure(config)
    });
    progress::finish();
    let elapsed = started.elapsed();

    let mut markdown = header(&machine, config, elapsed);
    for (group, message) in &failed {
        markdown.push_str(&format!(
            "## `{}`: not measured\n\nThe group failed while measuring (`{message}`): its \
             figures and targets are missing from this report, which the report's exit status \
             says too.\n\n",
            group.name()
        ));
    }
    let dir = &config.out;
    prepare_output(dir)?;
    let mut files = Vec::new();
    if let Some(hamt_results) = &hamt_results {
        markdown.push_str(&hamt::render::markdown(hamt_results, &bars.hamt));
        for (name, svg) in [
            (
                hamt::render::SNAPSHOT_FIGURE,
                hamt::render::snapshot_plot(hamt_results),
            ),
            (
                hamt::render::LOOKUP_FIGURE,
                hamt::render::lookup_plot(hamt_results),
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, svg)?;
            files.push(path);
        }
    }
    let case_timing = config.mode.case_timing();
    if let Some(context_results) = &context_results {
        markdown.push_str(&context::render::markdown(
            context_results,
            case_timing,
            &bars.context,
        ));
    }
    if let Some(task_results) = &task_results {
        markdown.push_str(&tasks::render::markdown(
            task_results,
            case_timing,
            &bars.tasks,
        ));
    }
    if let Some(interpreter_results) = &interpreter_results {
        markdown.push_str(&interpreters::render::markdown(
            interpreter_results,
            case_timing,
            &bars.interpreters,
        ));
    }
    if let Some(service_results) = &service_results {
        markdown.push_str(&service::render::markdown(service_results, &bars.service));
    }
    let report = dir.join("report.md");
    std::fs::write(&report, &markdown)?;
    files.insert(0, report);

    let json = json::results(
        &machine,
        config,
        elapsed,
        json::Groups {
            hamt: hamt_results.as_ref(),
            context: context_results.as_ref(),
            tasks: task_results.as_ref(),
            interpreters: interpreter_results.as_ref(),
        },
    );
    let mut json = json;
    if let (Some(service_results), Some(sections)) = (
        &service_results,
        json.get_mut("groups")
            .and_then(serde_json::Value::as_object_mut),
    ) {
        sections.insert(
            Group::Service.name().to_owned(),
            service::json(service_results),
        );
    }
    if let Some(object) = json.as_object_mut() {
        object.insert(
            "failed_groups".to_owned(),
            failed
                .iter()
                .map(|(group, message)| serde_json::json!({ "group": group.name(), "message": message }))
                .collect(),
        );
    }
    let results = dir.join("results.json");
    let mut text = serde_json::to_string_pretty(&json).map_err(io::Error::other)?;
    text.push('\n');
    std::fs::write(&results, text)?;
    files.push(results);

    let index = dir.join("index.html");
    std::fs::write(&index, html::page(&markdown, dir)?)?;
    files.push(index);

    eprintln!(
        "report: measured in {:.0} s; wrote {}",
        elapsed.as_secs_f64(),
        files
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Outcome {
        markdown,
        json,
        files,
        failed,
    })
}

fn header(machine: &machine::Machine, config: &Config, elapsed: Duration) -> String {
    let groups: Vec<String> = config
        .groups
        .iter()
        .map(|&group| match group {
            Group::Hamt => {
                let sizes: Vec<String> = config.sizes.iter().map(|&n| sizes::label(n)).collect();
                format!("hamt (N = {})", sizes.join(", "))
            }
            other => other.name().to_owned(),
        })
        .collect();
    let mut method = vec!["per-thread CPU time; contenders' repetitions interleaved".to_owned()];
    if config.runs(Group::Hamt) {
        let settings = config.mode.timing(0);
        let largest = config
            .mode
            .timing(config.sizes.iter().copied().max().unwrap_or(0));
        let reps = if largest.reps == settings.reps {
            settings.reps.to_string()
        } else {
            format!("{} ({} at N ≥ 1M)", settings.reps, largest.reps)
        };
        method.push(format!(
            "hamt: median of {reps} repetitions of ≈ {target} ms each (at least one call), \
             u64 → u64, foldhash `fast::RandomState` for every map",
            target = settings.target.as_millis()
        ));
    }
    let case_groups: Vec<&str> = [Group::Context, Group::Tasks, Group::Interpreters]
        .into_iter()
        .filter(|&group| config.runs(group))
        .map(Group::name)
        .collect();
    if !case_groups.is_empty() {
        let settings = config.mode.case_timing();
        method.push(format!(
            "{}: median of {} repetitions of ≈ {} ms each",
            case_groups.join(", "),
            settings.reps,
            settings.target.as_millis()
        ));
    }
    if config.runs(Group::Interpreters) {
        method.push(
            "interpreters: cases on two threads (queues, channels, pools) in wall-clock time, \
             with the CPU time of all their threads beside it"
                .to_owned(),
        );
    }
    format!(
        "# Benchmark report\n\n\
         | | |\n|---|---|\n\
         | date | {date} |\n\
         | mode | {mode}: {groups}; measured in {elapsed:.0} s |\n\
         | machine | {cpus} CPUs, {cpu}; load average at start {load} |\n\
         | build target CPU | {target_cpu} |\n\
         | toolchain | {rustc}, release profile |\n\
         | peers | {peers} |\n\
         | method | {method} |\n\n",
        date = machine.date,
        mode = config.mode.name(),
        groups = groups.join(", "),
        elapsed = elapsed.as_secs_f64(),
        cpus = machine.cpus,
        cpu = machine.cpu_model,
        target_cpu = machine.target_cpu,
        load = machine.load_average,
        rustc = machine.rustc,
        peers = machine.peers,
        method = method.join("; "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group that panics is recorded with its message and the others still run; a group
    /// not selected is not run at all.
    #[test]
    fn a_failing_group_is_recorded_and_the_others_run() {
        let mut config = Config::new(Mode::Quick);
        config.groups = vec![Group::Context, Group::Tasks];
        let mut failed = Vec::new();
        let context: Option<u8> = guarded(&config, Group::Context, &mut failed, || {
            panic!("bind 127.0.0.1:0 failed (on purpose)")
        });
        let tasks = guarded(&config, Group::Tasks, &mut failed, || 7u8);
        let service = guarded(&config, Group::Service, &mut failed, || -> u8 {
            unreachable!("not selected")
        });
        assert_eq!((context, tasks, service), (None, Some(7), None));
        assert_eq!(
            failed,
            [(
                Group::Context,
                "bind 127.0.0.1:0 failed (on purpose)".to_owned()
            )]
        );
    }
}
