//! End-to-end tests of the `report` binary: one `--smoke` run shared by the tests, and the
//! command-line errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

const GROUPS: [&str; 4] = ["hamt", "context", "tasks", "interpreters"];

fn report() -> Command {
    Command::new(env!("CARGO_BIN_EXE_report"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `report --smoke --out dir`, checking that it succeeds.
fn run_smoke(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let output = report()
        .args(["--smoke", "--out"])
        .arg(dir)
        .output()
        .expect("run report");
    assert!(
        output.status.success(),
        "report --smoke failed: {}\n{}",
        output.status,
        text(&output.stderr)
    );
    assert!(
        text(&output.stdout).contains("# Benchmark report"),
        "stdout: {}",
        text(&output.stdout)
    );
}

/// The output directory of the one smoke run, made on first use.
///
/// Shared within this process by a `OnceLock`, and between processes (nextest runs each
/// test in its own) by a directory named after the binary's build time: the first process
/// to create `<dir>.lock` runs the report and marks `<dir>/done`; the others wait for it.
fn smoke() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let binary = std::fs::metadata(env!("CARGO_BIN_EXE_report")).expect("binary metadata");
        let built = binary
            .modified()
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos());
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = tmp.join(format!("report-smoke-{built}-{}", binary.len()));
        let done = dir.join("done");
        let lock = dir.with_extension("lock");
        if std::fs::create_dir(&lock).is_ok() {
            run_smoke(&dir);
            std::fs::write(&done, b"").expect("mark the smoke run done");
            return dir;
        }
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(180) {
            if done.exists() {
                return dir;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        // The process holding the lock died: run privately.
        let own = tmp.join(format!("report-smoke-own-{}", std::process::id()));
        run_smoke(&own);
        own
    })
}

fn results() -> Value {
    let text = std::fs::read_to_string(smoke().join("results.json")).expect("read results.json");
    serde_json::from_str(&text).expect("results.json parses")
}

#[test]
fn results_json_holds_every_group() {
    let results = results();
    assert_eq!(results["schema"], 1);
    for field in [
        "date",
        "cpu_model",
        "target_cpu",
        "cores",
        "rustc",
        "peers",
        "mode",
        "repetitions",
    ] {
        assert!(!results["header"][field].is_null(), "header lacks {field}");
    }
    assert_eq!(results["header"]["mode"], "smoke");
    let cpu = results["header"]["target_cpu"]
        .as_str()
        .expect("target_cpu");
    assert!(
        ["x86-64 (default)", "x86-64-v2", "x86-64-v3"].contains(&cpu)
            || !cfg!(target_arch = "x86_64"),
        "target_cpu: {cpu}"
    );
    for group in GROUPS {
        assert!(
            results["groups"][group].is_object(),
            "results.json lacks group {group}"
        );
    }
}

#[test]
fn every_group_produced_finite_positive_numbers() {
    let results = results();
    for group in GROUPS {
        let figures = results["groups"][group]["figures"]
            .as_array()
            .unwrap_or_else(|| panic!("{group}: no figures"));
        assert!(!figures.is_empty(), "{group}: no figures");
        for figure in figures {
            let ns = figure["ns_per_op"].as_f64();
            assert!(
                ns.is_some_and(|ns| ns.is_finite() && ns > 0.0),
                "{group}: not a finite positive time: {figure}"
            );
            assert!(figure["key"].is_string(), "{group}: no key: {figure}");
            let ratio = &figure["ratio_to_best_peer"];
            assert!(
                ratio.is_null() || ratio.as_f64().is_some_and(|r| r.is_finite() && r > 0.0),
                "{group}: bad ratio: {figure}"
            );
        }
    }
}

#[test]
fn interpreters_group_reports_rates_and_cpu_time() {
    let results = results();
    let figures = results["groups"]["interpreters"]["figures"]
        .as_array()
        .expect("interpreters: figures");
    let positive = |value: &Value| value.as_f64().is_some_and(|v| v.is_finite() && v > 0.0);
    let mut streams = 0;
    for figure in figures {
        match figure["clock"].as_str() {
            // Two-thread cases: wall-clock time, and the CPU time of all their threads.
            Some("wall") => assert!(positive(&figure["cpu_ns_per_op"]), "no CPU time: {figure}"),
            Some("thread_cpu") => assert!(figure["cpu_ns_per_op"].is_null(), "{figure}"),
            _ => panic!("no clock: {figure}"),
        }
        if !figure["msgs_per_s"].is_null() {
            assert!(positive(&figure["msgs_per_s"]), "bad rate: {figure}");
            streams += 1;
        }
    }
    // Our queue and channel, std mpsc and crossbeam-channel, each in a stream.
    for contender in ["ours", "mpsc", "crossbeam"] {
        assert!(
            figures
                .iter()
                .any(|figure| figure["contender"] == contender && !figure["msgs_per_s"].is_null()),
            "no stream figure of {contender}"
        );
    }
    assert!(streams >= 9, "{streams} stream figures");
    for op in [
        "round trip between two threads",
        "interpreter create + close",
        "exec: enter + exit",
        "pool: submit + wait, one job at a time",
    ] {
        assert!(
            figures.iter().any(|figure| figure["op"] == op),
            "no figure of {op}"
        );
    }
    let markdown = std::fs::read_to_string(smoke().join("report.md")).expect("read report.md");
    assert!(
        markdown.contains("## Interpreters"),
        "no interpreters section"
    );
    assert!(
        markdown.contains("msgs/s"),
        "no rates in the interpreters section"
    );
}

#[test]
fn index_html_embeds_every_svg() {
    let dir = smoke();
    let html = std::fs::read_to_string(dir.join("index.html")).expect("read index.html");
    assert!(html.contains("<table>"), "no tables in index.html");
    // Nothing fetched from the network: no scripts, stylesheets or images by URL.
    for fetch in ["<script", "<link", "src=\"http", "url(http", "@import"] {
        assert!(!html.contains(fetch), "index.html contains {fetch}");
    }
    let svgs: Vec<String> = std::fs::read_dir(dir)
        .expect("list the output")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".svg"))
        .collect();
    assert!(svgs.len() >= 2, "expected the two hamt figures: {svgs:?}");
    for name in &svgs {
        assert!(
            html.contains(&format!("data-src=\"{name}\"")),
            "index.html does not embed {name}"
        );
        let svg = std::fs::read_to_string(dir.join(name)).expect("read svg");
        let body = &svg[svg.find("<svg").expect("an svg element")..];
        assert!(html.contains(body.trim()), "{name} is not inlined");
        // A title, axis captions with units and a legend.
        assert!(svg.contains("<title>Figure"), "{name}: no title");
        assert!(
            svg.contains("entries in the map (N)"),
            "{name}: no x caption"
        );
        assert!(svg.contains("ns per"), "{name}: no y caption with unit");
        assert!(svg.contains("hamt"), "{name}: no legend");
    }
}

#[test]
fn every_table_states_the_target_cpu_and_cites_only_the_repository() {
    let markdown = std::fs::read_to_string(smoke().join("report.md")).expect("read report.md");
    let cpu = results()["header"]["target_cpu"]
        .as_str()
        .expect("target_cpu")
        .to_owned();
    assert!(
        markdown.contains(&format!("| build target CPU | {cpu} |")),
        "no target CPU in the header"
    );
    // Every table (a run of `|` lines after the header) is followed by the target CPU line.
    let line = format!("Build target CPU: {cpu}.");
    let lines: Vec<&str> = markdown.lines().collect();
    let mut tables = 0;
    for (index, window) in lines
        .windows(2)
        .enumerate()
        .skip_while(|(_, w)| !w[0].starts_with("## "))
    {
        if window[0].starts_with('|') && !window[1].starts_with('|') {
            tables += 1;
            let after = lines[index + 1..].iter().find(|l| !l.trim().is_empty());
            assert_eq!(
                after,
                Some(&line.as_str()),
                "table ending at line {} has no CPU line",
                index + 1
            );
        }
    }
    assert!(tables >= 20, "only {tables} tables");
    assert!(
        markdown.contains("`benches/targets.toml`"),
        "the bars' file is not named"
    );
    for outside in ["shared/", "ANCHORS", "../"] {
        assert!(!markdown.contains(outside), "report.md cites {outside}");
    }
}

/// A copy of the shipped targets file with `edit` applied, in a fresh file.
fn targets_file(name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("targets.toml"))
            .expect("read targets.toml");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("targets-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, edit(shipped)).expect("write targets");
    path
}

#[test]
fn the_bars_come_from_the_targets_file() {
    let targets = targets_file("edited", |text| {
        text.replace("run_ns = 5.0", "run_ns = 4321.5")
    });
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("report-targets-{}", std::process::id()));
    let output = report()
        .args(["--smoke", "--only", "context", "--targets"])
        .arg(&targets)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run report");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("≤ 4322 ns"),
        "the edited bar is not used: {stdout}"
    );
}

#[test]
fn a_bad_targets_file_is_an_error_before_measuring() {
    for (name, edit, expected) in [
        (
            "syntax",
            (|t: String| t.replace("[context]", "[context")) as fn(String) -> String,
            "malformed",
        ),
        (
            "missing",
            |t: String| t.replace("run_ns = 5.0\n", ""),
            "run_ns",
        ),
        (
            "unknown",
            |t: String| t.replace("run_ns = 5.0", "run_ns = 5.0\nrun_nanos = 1.0"),
            "run_nanos",
        ),
        (
            "type",
            |t: String| t.replace("run_ns = 5.0", "run_ns = \"fast\""),
            "run_ns",
        ),
        (
            "contender",
            |t: String| t.replacen("over = \"std_arc\"", "over = \"btree\"", 1),
            "unknown contender `btree`",
        ),
    ] {
        let targets = targets_file(name, edit);
        let output = report()
            .args(["--smoke", "--targets"])
            .arg(&targets)
            .output()
            .expect("run report");
        assert_fails(&output, expected);
        assert_fails(&output, &targets.display().to_string());
        assert_eq!(output.status.code(), Some(2), "{name}");
        assert!(text(&output.stdout).is_empty(), "{name}: measured anyway");
    }
    let output = report()
        .args(["--smoke", "--targets", "/nonexistent/targets.toml"])
        .output()
        .expect("run report");
    assert_fails(&output, "cannot read /nonexistent/targets.toml");
}

#[test]
fn compare_against_itself_prints_a_table() {
    let old = smoke().join("results.json");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("report-compare-{}", std::process::id()));
    let output = report()
        .args(["--smoke", "--only", "context", "--out"])
        .arg(&out)
        .arg("--compare")
        .arg(&old)
        .output()
        .expect("run report");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("## Comparison"), "{stdout}");
    assert!(stdout.contains("| figure"), "{stdout}");
    assert!(stdout.contains("new/old"), "{stdout}");
    assert!(stdout.contains("`context/"), "{stdout}");
}

fn assert_fails(output: &Output, expected: &str) {
    assert!(!output.status.success(), "should have failed");
    let stderr = text(&output.stderr);
    assert!(stderr.contains(expected), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn unknown_group_is_an_error() {
    let output = report()
        .args(["--smoke", "--only", "nosuchgroup"])
        .output()
        .expect("run report");
    assert_fails(&output, "nosuchgroup");
}

#[test]
fn unwritable_out_is_an_error() {
    let output = report()
        .args(["--smoke", "--out", "/proc/forbidden"])
        .output()
        .expect("run report");
    assert_fails(&output, "/proc/forbidden");
}

#[test]
fn invalid_compare_file_is_an_error() {
    let bad = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("report-bad-{}.json", std::process::id()));
    std::fs::write(&bad, "not json").expect("write");
    let output = report()
        .args(["--smoke", "--compare"])
        .arg(&bad)
        .output()
        .expect("run report");
    assert_fails(&output, "not valid JSON");
}

#[test]
fn service_group_reports_load_and_spawns_with_right_answers() {
    let results = results();
    let service = &results["groups"]["service"];
    for config in [
        "without_layers",
        "with_layers",
        "with_layers_new_id_per_request",
        "without_layers_with_the_header",
    ] {
        let run = &service["load"][config];
        assert!(
            run["requests"].as_u64().is_some_and(|n| n > 0),
            "{config}: {run}"
        );
        assert_eq!(run["wrong"], 0, "{config}: {run}");
        for field in ["throughput_rps", "p50_us", "p99_us"] {
            assert!(
                run[field]
                    .as_f64()
                    .is_some_and(|v| v.is_finite() && v > 0.0),
                "{config}: {field}: {run}"
            );
        }
    }
    for cost in [
        "layer_cost",
        "layer_cost_new_id_per_request",
        "header_cost_without_layers",
    ] {
        assert!(
            service[cost]["p99_added_us"]
                .as_f64()
                .is_some_and(f64::is_finite),
            "{cost}: {service}"
        );
    }
    let spawns = service["process_spawn_join"]
        .as_array()
        .expect("spawn rows");
    assert_eq!(spawns.len(), 2);
    for row in spawns {
        assert_eq!(row["wrong"], 0, "{row}");
        assert!(
            row["median_us"]
                .as_f64()
                .is_some_and(|v| v.is_finite() && v > 0.0),
            "{row}"
        );
    }
}
