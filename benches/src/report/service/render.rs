//! The `service` section as markdown.

use super::{CONCURRENCY, LoadRun, ROUNDS, SPAWNS, ServiceResults};

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn row(name: &str, run: &LoadRun) -> String {
    format!(
        "| {name} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} |\n",
        run.requests, run.throughput, run.p50_us, run.p99_us, run.cpu_us, run.wrong
    )
}

/// The markdown of the section.
pub fn markdown(results: &ServiceResults, bars: &crate::report::targets::ServiceTargets) -> String {
    let cpu = crate::report::cpu_line();
    let plain = &results.plain;
    let layered = &results.layered;
    let mut out =
        String::from("## `service`: propagated variables across services and processes\n\n");
    out.push_str(&format!(
        "hyper-util client → hyper server on 127.0.0.1, HTTP/1.1 keep-alive, {CONCURRENCY} \
         concurrent callers; with layers: `ClientLayer` → `ServerLayer`, two propagated \
         variables written, parsed and decoded per request, the request id one per caller \
         (or, in the third row, a new one per request); the last row has no layers but \
         sends the header they would write. Median-throughput round of {ROUNDS} rounds \
         each, the configurations running in a rotating order within each round; latency \
         per request, wall clock; CPU: the process's CPU time (client and server) per \
         request. Targets: the median over the {ROUNDS} rounds of each configuration's \
         run against the run without layers of the same round.\n\n"
    ));
    out.push_str(
        "| configuration | requests | throughput (req/s) | p50 (µs) | p99 (µs) | CPU per request (µs) | wrong answers (all rounds) |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    out.push_str(&row("without layers", plain));
    out.push_str(&row("with client + server layers", layered));
    out.push_str(&row(
        "with the layers, a new request id per request",
        &results.fresh,
    ));
    out.push_str(&row(
        "without layers, the same `baggage` header sent by hand",
        &results.header_only,
    ));
    out.push('\n');
    out.push_str(&cpu);
    out.push_str("| target | measured | |\n|---|---|---|\n");
    // Both ways callers number their requests: one id each (its 32 headers repeat, and the
    // layers' memories answer), and a new id per request (nothing repeats).
    // A bar is met only where every answer was right: layers that deliver nothing cost
    // about as much, and must not pass.
    for (cost, layers, how) in [
        (&results.cost, layered, "one request id per caller"),
        (
            &results.fresh_cost,
            &results.fresh,
            "a new request id per request",
        ),
    ] {
        let right = plain.wrong == 0 && layers.wrong == 0;
        out.push_str(&format!(
            "| layers cost ≤ {:.0}% throughput ({how}) | {:+.1}% | {} |\n",
            bars.max_throughput_loss * 100.0,
            -cost.throughput_loss * 100.0,
            pass(right && cost.throughput_loss <= bars.max_throughput_loss)
        ));
        out.push_str(&format!(
            "| layers cost ≤ {:.0}% throughput per CPU second ({how}) | {:+.1}% | {} |\n",
            bars.max_throughput_loss * 100.0,
            -cost.cpu_throughput_loss * 100.0,
            pass(right && cost.cpu_throughput_loss <= bars.max_throughput_loss)
        ));
        out.push_str(&format!(
            "| layers add ≤ {:.0} µs at p99 ({how}) | {:+.1} µs | {} |\n",
            bars.max_p99_added_us,
            cost.p99_added_us,
            pass(right && cost.p99_added_us <= bars.max_p99_added_us)
        ));
        if !right {
            out.push_str(&format!(
                "| every request answered right ({how}) | {} and {} wrong | {} |\n",
                plain.wrong,
                layers.wrong,
                pass(false)
            ));
        }
    }
    out.push('\n');
    out.push_str(&cpu);
    out.push_str(&format!(
        "With a new request id on every request no header repeats, so the client writes and \
         the server decodes every one afresh; with one id per caller there are \
         {CONCURRENCY} distinct headers, which the layers' per-thread memories answer.\n\n"
    ));
    let header = &results.header_cost;
    out.push_str(&format!(
        "Not a target either: the last row sends, without layers, the header the client \
         layer writes for each caller (made once per caller and inserted into each \
         request), so it measures what carrying one more header costs without the layers: \
         the insert, and hyper writing, parsing and dropping it, a part of the layers' cost \
         that no layer can remove. Against the same rounds without it: {:+.1}% throughput \
         ({:+.1}% per CPU second), {:+.1} µs at p99.\n\n",
        -header.throughput_loss * 100.0,
        -header.cpu_throughput_loss * 100.0,
        header.p99_added_us
    ));
    out.push_str(&format!(
        "Process spawn + join (`exec_context::process`, procspawn; a child that returns at \
         once), median of {SPAWNS}:\n\n"
    ));
    out.push_str("| policy | spawn + join (µs) | wrong answers |\n|---|---:|---:|\n");
    for spawn in &results.spawns {
        out.push_str(&format!(
            "| `{}` | {:.0} | {} |\n",
            spawn.policy, spawn.median_us, spawn.wrong
        ));
    }
    out.push('\n');
    out.push_str(&cpu);
    out
}
