//! The `service` section: what carrying propagated variables across services and processes
//! costs (`exec_context::service`, `exec_context::process`).
//!
//! - **Load**: a hyper-util client calls a hyper server on 127.0.0.1 (an ephemeral port),
//!   [`REQUESTS`] requests from [`CONCURRENCY`] concurrent callers, once with
//!   `ClientLayer` → `ServerLayer` (two propagated variables set, the request id one per
//!   caller, so the `baggage` header is written, parsed and decoded for every request, and the
//!   handler reads both), once more with the layers and a new request id for every request
//!   (so no header repeats: what a server whose callers send one id per request pays), and
//!   once without the layers (the handler reads the same variables, unset), and once
//!   without the layers but with the `baggage` header the client layer would write, made
//!   once per caller and inserted into every request (what carrying one more header costs
//!   without the layers: the insert, and hyper writing, parsing and dropping it). In all
//!   four, each caller sets the request id before every request (its own id again, or the
//!   new one), so the caller's own work is the same and paired runs differ by the layers
//!   only. The rounds
//!   rotate ([`ROUNDS`] of each, the four orders taking turns); the table shows the round with the
//!   median throughput of each, with its p50 and p99 latency (per request, wall clock, from
//!   send to complete body), and the process CPU time per request (client and server run in
//!   this process). The targets compare each round with its partner and take the median of
//!   the [`ROUNDS`] comparisons, for both ways of numbering requests (one id per caller, a
//!   new id per request); the throughput is also compared per CPU second, which the other
//!   programs on a shared machine do not move.
//! - **Process**: `process::spawn` + `join` of a child that returns at once, with
//!   `Inheritance::Empty` and with `Inheritance::Inherit` (two propagated variables handed
//!   over): the median of [`SPAWNS`] spawns each, the two policies alternating.
//!
//! Targets (`[service]` in `benches/targets.toml`): the throughput the layers may cost, and
//! the p99 latency they may add.

pub mod render;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use exec_context::process::{self, Inheritance};
use exec_context::propagate::{Propagated, Registry};
use exec_context::service::{ClientLayer, ServerLayer};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tower::{Layer, Service, ServiceExt};

use super::{Config, Mode, progress};

/// Requests per load run (quick and full mode).
pub const REQUESTS: usize = 20_000;
/// Requests per load run in smoke mode.
pub const SMOKE_REQUESTS: usize = 1_000;
/// Concurrent callers.
pub const CONCURRENCY: usize = 32;
/// Load runs per configuration (alternating).
pub const ROUNDS: usize = 7;
/// Child processes per policy.
pub const SPAWNS: usize = 20;

/// A propagated variable of the load and the process runs.
pub static REQUEST_ID: Propagated<u64> = Propagated::text("request-id");
/// Another one.
pub static TENANT: Propagated<String> = Propagated::text("tenant");

/// The registry of the section; `report`'s `main` hands it to `exec_context::process::init`.
pub fn registry() -> Registry {
    Registry::builder()
        .register(&REQUEST_ID)
        .register(&TENANT)
        .build()
        .expect("valid wire names")
}

/// One load run.
#[derive(Clone, Debug)]
pub struct LoadRun {
    /// Requests completed.
    pub requests: usize,
    /// Requests per second.
    pub throughput: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Process CPU time per request, µs (client and server together).
    pub cpu_us: f64,
    /// Requests whose handler did not see the expected values (must be 0); in
    /// [`ServiceResults`], over every round of the configuration.
    pub wrong: usize,
}

/// What the layers cost, as the median over the rounds of each round against its partner.
#[derive(Clone, Debug)]
pub struct LayerCost {
    /// Throughput lost (a fraction; negative: gained), wall clock.
    pub throughput_loss: f64,
    /// Throughput lost per CPU second (a fraction): `1 - plain CPU / layered CPU` per request.
    pub cpu_throughput_loss: f64,
    /// p99 latency added, µs.
    pub p99_added_us: f64,
}

/// One process row.
#[derive(Clone, Debug)]
pub struct SpawnRow {
    /// `Empty` or `Inherit`.
    pub policy: &'static str,
    /// Median spawn + join, µs.
    pub median_us: f64,
    /// Children that did not see what they should (must be 0).
    pub wrong: usize,
}

/// The W3C Baggage header's name.
const BAGGAGE: http::header::HeaderName = http::header::HeaderName::from_static("baggage");

/// What the callers send: which request ids, and whether the client layer writes them or
/// the caller adds the header itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ids {
    /// One per caller, for all its requests.
    PerCaller,
    /// A new one for every request.
    PerRequest,
    /// One per caller, in a `baggage` header the caller adds itself (no layers): the header
    /// the client layer would write, made once.
    HeaderOnly,
}

/// What the section measured.
#[derive(Clone, Debug)]
pub struct ServiceResults {
    /// Without the layers: the median round.
    pub plain: LoadRun,
    /// With both layers, one request id per caller: the median round.
    pub layered: LoadRun,
    /// The layers' cost, from the paired rounds.
    pub cost: LayerCost,
    /// With both layers and a new request id for every request: the median round.
    pub fresh: LoadRun,
    /// Its cost against the rounds without layers (no target: reported).
    pub fresh_cost: LayerCost,
    /// Without layers, each request carrying the `baggage` header the client layer would
    /// write (made once per caller): the median round.
    pub header_only: LoadRun,
    /// Its cost against the rounds without layers: the caller's insert of the header, and
    /// hyper writing, parsing and dropping it.
    pub header_cost: LayerCost,
    /// Process spawn + join, per policy.
    pub spawns: Vec<SpawnRow>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

type Body = Full<Bytes>;

async fn serve<S>(service: S) -> SocketAddr
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// The request id of the first caller; the others follow.
const FIRST_CALLER_ID: u64 = 1000;

/// Whether `id` is a request id the callers send (per caller, or per request above them).
fn caller_id(id: u64) -> bool {
    id >= FIRST_CALLER_ID
}

/// The handler: answers whether it sees the values the client set (`expect` = with layers).
fn handler(
    expect: bool,
) -> impl Fn(Request<Incoming>) -> std::future::Ready<Result<Response<Body>, Infallible>> + Clone {
    move |_request| {
        let ok = if expect {
            REQUEST_ID.get().is_some_and(caller_id)
                && TENANT.with(|t| t.map(String::as_str) == Some("acme"))
        } else {
            REQUEST_ID.get().is_none() && TENANT.with(|t| t.is_none())
        };
        std::future::ready(Ok(Response::new(Body::from(if ok {
            "ok"
        } else {
            "wrong"
        }))))
    }
}

async fn load<C>(
    client: C,
    addr: SocketAddr,
    requests: usize,
    ids: Ids,
    registry: &Registry,
) -> LoadRun
where
    C: Service<Request<Body>, Response = Response<Incoming>> + Clone + Send + 'static,
    C::Future: Send,
    C::Error: std::fmt::Debug,
{
    let uri: http::Uri = format!("http://{addr}/").parse().expect("uri");
    let cpu_started = crate::clock::process_cpu_time();
    let started = Instant::now();
    let mut callers = Vec::with_capacity(CONCURRENCY);
    for caller in 0..CONCURRENCY {
        let client = client.clone();
        let uri = uri.clone();
        let registry = registry.clone();
        let share = requests / CONCURRENCY + usize::from(caller < requests % CONCURRENCY);
        callers.push(exec_context::tokio::spawn(async move {
            // Each caller has its own request id (so the server sees as many different
            // headers as there are callers), or, with `Ids::PerRequest`, a new one below.
            REQUEST_ID.set(FIRST_CALLER_ID + caller as u64);
            TENANT.set("acme".into());
            // The header the client layer writes for these values, made once.
            let baggage = (ids == Ids::HeaderOnly).then(|| {
                let mut headers = http::HeaderMap::new();
                registry.inject(&mut headers);
                headers
                    .remove(BAGGAGE)
                    .expect("two propagated variables are set")
            });
            let mut latencies = Vec::with_capacity(share);
            let mut wrong = 0;
            for sent in 0..share {
                // Every configuration sets the request id before each request, as a caller
                // that numbers its requests does, so that the caller's own work (the `set`,
                // and saving its task's changed context after the poll) is the same in every
                // configuration and the paired runs differ only by the layers: the caller's
                // id again, or with `Ids::PerRequest` one above the callers' own, none
                // repeated.
                let id = match ids {
                    Ids::PerRequest => FIRST_CALLER_ID + ((sent + 1) * CONCURRENCY + caller) as u64,
                    Ids::PerCaller | Ids::HeaderOnly => FIRST_CALLER_ID + caller as u64,
                };
                REQUEST_ID.set(id);
                let mut request = Request::get(uri.clone())
                    .body(Body::default())
                    .expect("request");
                if let Some(baggage) = &baggage {
                    request.headers_mut().insert(BAGGAGE, baggage.clone());
                }
                let sent = Instant::now();
                let response = client.clone().oneshot(request).await.expect("response");
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                latencies.push(sent.elapsed());
                wrong += usize::from(&body[..] != b"ok");
            }
            (latencies, wrong)
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut wrong = 0;
    for caller in callers {
        let (mine, bad) = caller.await.expect("caller");
        latencies.extend(mine);
        wrong += bad;
    }
    let elapsed = started.elapsed();
    let cpu = crate::clock::process_cpu_time().saturating_sub(cpu_started);
    latencies.sort_unstable();
    LoadRun {
        requests: latencies.len(),
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        cpu_us: cpu.as_secs_f64() * 1e6 / latencies.len().max(1) as f64,
        wrong,
    }
}

/// The round of median throughput, with the wrong answers of every round: one wrong answer
/// in any round is a configuration that does not deliver the context.
fn median_round(mut runs: Vec<LoadRun>) -> LoadRun {
    let wrong = runs.iter().map(|run| run.wrong).sum();
    runs.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    LoadRun {
        wrong,
        ..runs.swap_remove(runs.len() / 2)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median over the rounds of what the layers cost: each round's run with them against
/// the same round's run without them.
fn paired_cost(plain: &[LoadRun], layered: &[LoadRun]) -> LayerCost {
    let pairs = || plain.iter().zip(layered);
    LayerCost {
        throughput_loss: median(
            pairs()
                .map(|(p, l)| 1.0 - l.throughput / p.throughput)
                .collect(),
        ),
        cpu_throughput_loss: median(pairs().map(|(p, l)| 1.0 - p.cpu_us / l.cpu_us).collect()),
        p99_added_us: median(pairs().map(|(p, l)| l.p99_us - p.p99_us).collect()),
    }
}

/// The four configurations' runs, in the order `[plain, layered, fresh, header_only]`.
type Rounds = [Vec<LoadRun>; 4];

fn measure_load(requests: usize) -> Rounds {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let registry = registry();
        let plain_addr = serve(tower::service_fn(handler(false))).await;
        let layered_addr =
            serve(ServerLayer::new(registry.clone()).layer(tower::service_fn(handler(true)))).await;
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(CONCURRENCY)
            .build_http::<Body>();
        let layered_client = ClientLayer::new(registry.clone()).layer(http.clone());
        let run = |which: usize, requests: usize| {
            let (http, layered_client) = (http.clone(), layered_client.clone());
            let registry = registry.clone();
            async move {
                let registry = &registry;
                match which {
                    0 => load(http, plain_addr, requests, Ids::PerCaller, registry).await,
                    1 => {
                        let ids = Ids::PerCaller;
                        load(layered_client, layered_addr, requests, ids, registry).await
                    }
                    2 => {
                        let ids = Ids::PerRequest;
                        load(layered_client, layered_addr, requests, ids, registry).await
                    }
                    _ => load(http, plain_addr, requests, Ids::HeaderOnly, registry).await,
                }
            }
        };

        // Warm up every path (connections, allocator, caches).
        for which in 0..4 {
            run(which, requests / 10).await;
        }
        progress::step();

        let mut rounds: Rounds = Default::default();
        for round in 0..ROUNDS {
            // The four orders take turns, so that none always runs first or last.
            for turn in 0..4 {
                let which = (round + turn) % 4;
                rounds[which].push(run(which, requests).await);
            }
            progress::step();
        }
        rounds
    })
}

fn child(expect: bool) -> bool {
    if expect {
        REQUEST_ID.get() == Some(7) && TENANT.get().as_deref() == Some("acme")
    } else {
        REQUEST_ID.get().is_none() && TENANT.get().is_none()
    }
}

fn measure_spawns() -> Vec<SpawnRow> {
    let policies = [
        (Inheritance::Empty, "Empty", false),
        (Inheritance::Inherit, "Inherit", true),
    ];
    let mut times = [Vec::with_capacity(SPAWNS), Vec::with_capacity(SPAWNS)];
    let mut wrong = [0, 0];
    contextvars::Context::new().run(|| {
        REQUEST_ID.set(7);
        TENANT.set("acme".into());
        // One unmeasured child each first (page cache, dynamic loader).
        for (policy, _, expect) in &policies {
            let _ = process::spawn(policy.clone(), *expect, child).join();
        }
        // The policies alternate, so that a change in the machine's load hits both.
        for round in 0..SPAWNS {
            for turn in 0..2 {
                let which = (round + turn) % 2;
                let (policy, _, expect) = &policies[which];
                let started = Instant::now();
                let seen = process::spawn(policy.clone(), *expect, child).join();
                times[which].push(started.elapsed());
                wrong[which] += usize::from(!matches!(seen, Ok(true)));
            }
        }
    });
    let mut rows = Vec::new();
    for (which, (_, name, _)) in policies.iter().enumerate() {
        times[which].sort_unstable();
        rows.push(SpawnRow {
            policy: name,
            median_us: percentile(&times[which], 0.5),
            wrong: wrong[which],
        });
        progress::step();
    }
    rows
}

/// The progress steps of [`measure`].
pub const STEPS: u64 = 1 + ROUNDS as u64 + 2;

/// Measures the section.
pub fn measure(config: &Config) -> ServiceResults {
    let requests = match config.mode {
        Mode::Smoke => SMOKE_REQUESTS,
        Mode::Quick | Mode::Full => REQUESTS,
    };
    let [plain, layered, fresh, header_only] = measure_load(requests);
    let cost = paired_cost(&plain, &layered);
    let fresh_cost = paired_cost(&plain, &fresh);
    let header_cost = paired_cost(&plain, &header_only);
    let spawns = measure_spawns();
    ServiceResults {
        plain: median_round(plain),
        layered: median_round(layered),
        cost,
        fresh: median_round(fresh),
        fresh_cost,
        header_only: median_round(header_only),
        header_cost,
        spawns,
    }
}

/// The section as JSON.
pub fn json(results: &ServiceResults) -> serde_json::Value {
    let run = |run: &LoadRun| {
        serde_json::json!({
            "requests": run.requests,
            "concurrency": CONCURRENCY,
            "throughput_rps": run.throughput,
            "p50_us": run.p50_us,
            "p99_us": run.p99_us,
            "cpu_us_per_request": run.cpu_us,
            "wrong": run.wrong,
        })
    };
    let cost = |cost: &LayerCost| {
        serde_json::json!({
            "rounds": ROUNDS,
            "throughput_loss": cost.throughput_loss,
            "cpu_throughput_loss": cost.cpu_throughput_loss,
            "p99_added_us": cost.p99_added_us,
        })
    };
    serde_json::json!({
        "load": {
            "without_layers": run(&results.plain),
            "with_layers": run(&results.layered),
            "with_layers_new_id_per_request": run(&results.fresh),
            "without_layers_with_the_header": run(&results.header_only),
        },
        "layer_cost": cost(&results.cost),
        "layer_cost_new_id_per_request": cost(&results.fresh_cost),
        "header_cost_without_layers": cost(&results.header_cost),
        "process_spawn_join": results.spawns.iter().map(|row| serde_json::json!({
            "policy": row.policy,
            "median_us": row.median_us,
            "children": SPAWNS,
            "wrong": row.wrong,
        })).collect::<Vec<_>>(),
    })
}
