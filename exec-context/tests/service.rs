//! Propagated variables across services: tower layers on real hyper servers and a hyper-util
//! client, on 127.0.0.1 with ephemeral ports.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use contextvars::ContextVar;
use exec_context::propagate::{Carrier, Propagated, PropagationError, Registry, Report};
use exec_context::service::{ClientLayer, ServerLayer};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapPropagator;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt};

static REQUEST_ID: Propagated<String> = Propagated::text("request-id");
static TENANT: Propagated<String> = Propagated::text("tenant");
static ATTEMPT: Propagated<u32> = Propagated::text("attempt");
static DEADLINE: Propagated<Deadline> = Propagated::json("deadline");
/// Did not opt in: never leaves the process.
static SECRET: ContextVar<String> = ContextVar::new("secret");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Deadline {
    unix_ms: u64,
}

const TIMEOUT: Duration = Duration::from_secs(20);

/// A registry whose reports land in `reports`.
fn registry(reports: &Arc<Mutex<Vec<Report>>>) -> Registry {
    let sink = reports.clone();
    Registry::builder()
        .register(&REQUEST_ID)
        .register(&TENANT)
        .register(&ATTEMPT)
        .register(&DEADLINE)
        .on_error(move |report| sink.lock().unwrap().push(report.clone()))
        .build()
        .unwrap()
}

/// What a handler saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Seen {
    request_id: Option<String>,
    tenant: Option<String>,
    attempt: Option<u32>,
    deadline: Option<Deadline>,
    secret: Option<String>,
}

fn seen_here() -> Seen {
    Seen {
        request_id: REQUEST_ID.get(),
        tenant: TENANT.get(),
        attempt: ATTEMPT.get(),
        deadline: DEADLINE.get(),
        secret: SECRET.get(),
    }
}

fn json_response<T: Serialize>(value: &T) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from(serde_json::to_vec(value).unwrap())))
}

/// Serves `service` on 127.0.0.1 (an ephemeral port) until the runtime ends.
async fn serve<S>(service: S) -> SocketAddr
where
    S: Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn body_json<T: for<'de> Deserialize<'de>>(response: Response<Incoming>) -> T {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn get(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What service A reports: its own view, its task's, its blocking job's, and B's.
#[derive(Debug, Deserialize, Serialize)]
struct AView {
    handler: Seen,
    task: Seen,
    blocking: Seen,
    b: Seen,
}

#[test]
fn two_services_carry_request_id_and_tenant() {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let registry = registry(&reports);
    runtime().block_on(async {
        // B: answers with what it sees.
        let b = ServerLayer::new(registry.clone()).layer(tower::service_fn(
            |_: Request<Incoming>| async { Ok::<_, Infallible>(json_response(&seen_here())) },
        ));
        let b_addr = serve(b).await;

        // A: looks, spawns a task and a blocking job, then calls B through the client layer.
        let client = ClientLayer::new(registry.clone()).layer(http_client());
        let a = ServerLayer::new(registry.clone()).layer(tower::service_fn(
            move |_: Request<Incoming>| {
                let client = client.clone();
                async move {
                    let handler = seen_here();
                    let task = exec_context::tokio::spawn(async { seen_here() })
                        .await
                        .unwrap();
                    let blocking = exec_context::tokio::spawn_blocking(seen_here)
                        .await
                        .unwrap();
                    let response = client.oneshot(get(b_addr, "/b")).await.unwrap();
                    let b: Seen = body_json(response).await;
                    Ok::<_, Infallible>(json_response(&AView {
                        handler,
                        task,
                        blocking,
                        b,
                    }))
                }
            },
        ));
        let a_addr = serve(a).await;

        // The client: sets the variables, calls A.
        let client = ClientLayer::new(registry.clone()).layer(http_client());
        for i in 0..3 {
            let client = client.clone();
            let (view, expected) = exec_context::tokio::spawn(async move {
                REQUEST_ID.set(format!("req-{i}"));
                TENANT.set("acme corp, \"eu\"; 100%".into());
                SECRET.set("do not send".into());
                let response = tokio::time::timeout(TIMEOUT, client.oneshot(get(a_addr, "/a")))
                    .await
                    .expect("no timeout")
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let view: AView = body_json(response).await;
                let expected = Seen {
                    request_id: Some(format!("req-{i}")),
                    tenant: Some("acme corp, \"eu\"; 100%".into()),
                    ..Seen::default()
                };
                (view, expected)
            })
            .await
            .unwrap();
            assert_eq!(view.handler, expected, "A's handler");
            assert_eq!(view.task, expected, "A's spawned task");
            assert_eq!(view.blocking, expected, "A's spawn_blocking");
            assert_eq!(view.b, expected, "B");
        }
    });
    assert!(
        reports.lock().unwrap().is_empty(),
        "{:?}",
        reports.lock().unwrap()
    );
}

/// A server that answers with what it sees, and the `baggage` / `traceparent` headers it got.
#[derive(Debug, Deserialize, Serialize)]
struct Echo {
    seen: Seen,
    baggage: Vec<String>,
    traceparent: Option<String>,
}

async fn echo_server(layer: ServerLayer) -> SocketAddr {
    serve(
        layer.layer(tower::service_fn(|request: Request<Incoming>| async move {
            let headers = request.headers();
            let echo = Echo {
                seen: seen_here(),
                baggage: headers
                    .get_all("baggage")
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect(),
                traceparent: headers
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_string()),
            };
            Ok::<_, Infallible>(json_response(&echo))
        })),
    )
    .await
}

async fn send_with_headers(
    client: &HttpClient,
    addr: SocketAddr,
    baggage: &[&[u8]],
) -> (StatusCode, Option<Echo>) {
    let mut request = get(addr, "/");
    for value in baggage {
        request
            .headers_mut()
            .append("baggage", HeaderValue::from_bytes(value).unwrap());
    }
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .expect("no timeout")
        .unwrap();
    let status = response.status();
    if status == StatusCode::OK {
        (status, Some(body_json(response).await))
    } else {
        (status, None)
    }
}

#[test]
fn w3c_examples_are_read() {
    static USER_ID: Propagated<String> = Propagated::text("userId");
    static SERVER_NODE: Propagated<String> = Propagated::text("serverNode");
    static IS_PRODUCTION: Propagated<bool> = Propagated::text("isProduction");
    static KEY1: Propagated<String> = Propagated::text("key1");
    static KEY2: Propagated<String> = Propagated::text("key2");
    static KEY3: Propagated<String> = Propagated::text("key3");
    let reports = Arc::new(AtomicUsize::new(0));
    let counter = reports.clone();
    let registry = Registry::builder()
        .register(&USER_ID)
        .register(&SERVER_NODE)
        .register(&IS_PRODUCTION)
        .register(&KEY1)
        .register(&KEY2)
        .register(&KEY3)
        .on_error(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();

    let read = |headers: &[&str]| {
        let mut map = HeaderMap::new();
        for h in headers {
            map.append("baggage", HeaderValue::from_str(h).unwrap());
        }
        let (context, errors) = registry.extract(&map);
        assert!(!errors, "{headers:?}");
        context
    };

    // The specification's examples.
    let ctx = read(&["userId=alice,serverNode=DF%2028,isProduction=false"]);
    assert_eq!(ctx.get(&USER_ID).as_deref(), Some("alice"));
    assert_eq!(ctx.get(&SERVER_NODE).as_deref(), Some("DF 28"));
    assert_eq!(ctx.get(&IS_PRODUCTION), Some(false));

    let ctx = read(&["userId=Am%C3%A9lie,serverNode=DF%2028,isProduction=false"]);
    assert_eq!(ctx.get(&USER_ID).as_deref(), Some("Amélie"));

    let ctx = read(&[
        "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
    ]);
    assert_eq!(ctx.get(&KEY1).as_deref(), Some("value1"));
    assert_eq!(ctx.get(&KEY2).as_deref(), Some("value2"));
    assert_eq!(ctx.get(&KEY3).as_deref(), Some("value3"));

    // Several headers form one list; `=` inside a value and escaped spaces at its ends stay.
    let ctx = read(&[
        "userId=a=b=c",
        "\tserverNode = %20DF%2028%20 ;p",
        "isProduction=true",
    ]);
    assert_eq!(ctx.get(&USER_ID).as_deref(), Some("a=b=c"));
    assert_eq!(ctx.get(&SERVER_NODE).as_deref(), Some(" DF 28 "));
    assert_eq!(ctx.get(&IS_PRODUCTION), Some(true));
    assert_eq!(reports.load(Ordering::Relaxed), 0);

    // The same over HTTP, through the server layer.
    runtime().block_on(async {
        let addr = serve(ServerLayer::new(registry.clone()).layer(tower::service_fn(
            |_: Request<Incoming>| async {
                let seen = (USER_ID.get(), SERVER_NODE.get(), IS_PRODUCTION.get());
                Ok::<_, Infallible>(json_response(&seen))
            },
        )))
        .await;
        let mut request = get(addr, "/");
        request.headers_mut().insert(
            "baggage",
            HeaderValue::from_static(
                "userId=Am%C3%A9lie , serverNode=DF%2028;x=y,isProduction=false",
            ),
        );
        let response = http_client().request(request).await.unwrap();
        let seen: (Option<String>, Option<String>, Option<bool>) = body_json(response).await;
        assert_eq!(
            seen,
            (Some("Amélie".into()), Some("DF 28".into()), Some(false))
        );
    });
    assert_eq!(reports.load(Ordering::Relaxed), 0);
}

#[test]
fn what_the_client_writes_parses_with_opentelemetry() {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let registry = registry(&reports);
    runtime().block_on(async {
        let addr = echo_server(ServerLayer::new(registry.clone())).await;
        let client = ClientLayer::new(registry.clone()).layer(http_client());
        let echo: Echo = exec_context::tokio::spawn(async move {
            REQUEST_ID.set("r-1".into());
            TENANT.set("Amélie & co".into());
            ATTEMPT.set(3);
            DEADLINE.set(Deadline { unix_ms: 1_700_000 });
            let mut request = get(addr, "/");
            request.headers_mut().insert(
                "traceparent",
                HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            );
            request.headers_mut().insert(
                "baggage",
                HeaderValue::from_static("foreign=kept;p,tenant=old"),
            );
            body_json(client.oneshot(request).await.unwrap()).await
        })
        .await
        .unwrap();
        // Our server layer read every value.
        assert_eq!(
            echo.seen,
            Seen {
                request_id: Some("r-1".into()),
                tenant: Some("Amélie & co".into()),
                attempt: Some(3),
                deadline: Some(Deadline { unix_ms: 1_700_000 }),
                secret: None,
            }
        );
        // `traceparent` passed through untouched.
        assert_eq!(
            echo.traceparent.as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        // OpenTelemetry's own extractor reads the header the client layer wrote.
        assert_eq!(echo.baggage.len(), 1);
        let mut headers = HeaderMap::new();
        headers.insert("baggage", HeaderValue::from_str(&echo.baggage[0]).unwrap());
        let cx = opentelemetry_sdk::propagation::BaggagePropagator::new()
            .extract(&opentelemetry_http::HeaderExtractor(&headers));
        let baggage = cx.baggage();
        assert_eq!(
            baggage.get("request-id").map(|v| v.as_str().to_owned()),
            Some("r-1".into())
        );
        assert_eq!(
            baggage.get("tenant").map(|v| v.as_str().to_owned()),
            Some("Amélie & co".into())
        );
        assert_eq!(
            baggage.get("attempt").map(|v| v.as_str().to_owned()),
            Some("3".into())
        );
        assert_eq!(
            baggage.get("deadline").map(|v| v.as_str().to_owned()),
            Some(r#"{"unix_ms":1700000}"#.into())
        );
        // The foreign member was kept, the stale `tenant` replaced.
        assert_eq!(
            baggage.get("foreign").map(|v| v.as_str().to_owned()),
            Some("kept".into())
        );
        assert_eq!(echo.baggage[0].matches("tenant=").count(), 1);
    });
    // The foreign key is reported by the server (it is not registered), once.
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].carrier, Carrier::IncomingBaggage);
    assert_eq!(
        reports[0].errors,
        [PropagationError::UnknownKey {
            key: "foreign".into()
        }]
    );
}

/// A malformed header case: the header values, and what the handler must see.
struct Case {
    name: &'static str,
    headers: Vec<Vec<u8>>,
    expect: Seen,
}

fn case(name: &'static str, header: &[u8], request_id: bool, tenant: Option<&str>) -> Case {
    cases(name, &[header], request_id, tenant)
}

fn cases(name: &'static str, headers: &[&[u8]], request_id: bool, tenant: Option<&str>) -> Case {
    Case {
        name,
        headers: headers.iter().map(|h| h.to_vec()).collect(),
        expect: Seen {
            request_id: request_id.then(|| "ok".to_string()),
            tenant: tenant.map(String::from),
            ..Seen::default()
        },
    }
}

fn bad_cases() -> Vec<Case> {
    let long = format!("request-id=ok,tenant={}", "x".repeat(8200));
    let many = (0..181)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let many_with_ours = format!("request-id=ok,{many}");
    let long_across = format!("tenant={}", "y".repeat(5000));
    vec![
        case("truncated escape", b"request-id=ok,tenant=a%2", true, None),
        case("bad escape", b"request-id=ok,tenant=a%zz", true, None),
        case(
            "escaped bytes not UTF-8",
            b"request-id=ok,tenant=%FF%FE",
            true,
            None,
        ),
        case(
            "raw byte not ASCII",
            b"request-id=ok,tenant=\xff\xfe",
            true,
            None,
        ),
        case(
            "raw UTF-8 not escaped",
            "request-id=ok,tenant=é".as_bytes(),
            true,
            None,
        ),
        case("over 8192 bytes", long.as_bytes(), false, None),
        cases(
            "over 8192 bytes across headers",
            &[
                b"request-id=ok",
                long_across.as_bytes(),
                long_across.as_bytes(),
            ],
            false,
            None,
        ),
        case("over 180 members", many_with_ours.as_bytes(), false, None),
        case(
            "u32 that is not a number",
            b"request-id=ok,tenant=t,attempt=three",
            true,
            Some("t"),
        ),
        case(
            "u32 overflow",
            b"request-id=ok,attempt=99999999999",
            true,
            None,
        ),
        case("negative u32", b"request-id=ok,attempt=-1", true, None),
        case(
            "JSON that does not parse",
            b"request-id=ok,deadline=%7B",
            true,
            None,
        ),
        case(
            "JSON of the wrong shape",
            b"request-id=ok,deadline=%22soon%22",
            true,
            None,
        ),
        case(
            "duplicate key",
            b"request-id=ok,tenant=a,tenant=b",
            true,
            None,
        ),
        cases(
            "duplicate key across headers",
            &[b"request-id=ok,tenant=a", b"tenant=a"],
            true,
            None,
        ),
        // A key that came twice, one copy malformed: repeated all the same (the well-formed
        // copy was kept before).
        case(
            "duplicate key, the second copy malformed",
            b"request-id=ok,tenant=a,tenant=b%",
            true,
            None,
        ),
        case(
            "duplicate key, the first copy malformed",
            b"request-id=ok,tenant = a b,tenant=b",
            true,
            None,
        ),
        cases(
            "duplicate key across headers, one copy without a value",
            &[b"request-id=ok,tenant=a", b"tenant;p"],
            true,
            None,
        ),
        case("space inside a key", b"request-id=ok,ten ant=a", true, None),
        case(
            "space inside a value",
            b"request-id=ok,tenant=a b",
            true,
            None,
        ),
        case(
            "quote in a value",
            b"request-id=ok,tenant=\"a\"",
            true,
            None,
        ),
        case(
            "backslash in a value",
            b"request-id=ok,tenant=a\\b",
            true,
            None,
        ),
        case("empty member", b"request-id=ok,,tenant=t", true, Some("t")),
        case(
            "trailing comma",
            b"request-id=ok,tenant=t,",
            true,
            Some("t"),
        ),
        case("empty key", b"request-id=ok,=a", true, None),
        case("no equals sign", b"request-id=ok,tenant", true, None),
        case("non-token key", b"request-id=ok,(tenant)=a", true, None),
        case("empty property", b"request-id=ok,tenant=a;", true, None),
        case(
            "bad escape in a property",
            b"request-id=ok,tenant=a;p=%G1",
            true,
            None,
        ),
        case(
            "property without a key",
            b"request-id=ok,tenant=a;=x",
            true,
            None,
        ),
        case(
            "unknown key",
            b"request-id=ok,tenant=t,unknown=1",
            true,
            Some("t"),
        ),
    ]
}

#[test]
fn bad_headers_never_fail_a_request() {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let registry = registry(&reports);
    let all = bad_cases();
    assert!(all.len() >= 20);
    runtime().block_on(async {
        let addr = echo_server(ServerLayer::new(registry.clone())).await;
        let client = http_client();
        for case in &all {
            let before = reports.lock().unwrap().len();
            let headers: Vec<&[u8]> = case.headers.iter().map(Vec::as_slice).collect();
            let (status, echo) = send_with_headers(&client, addr, &headers).await;
            assert_eq!(status, StatusCode::OK, "{}", case.name);
            let echo = echo.unwrap();
            assert_eq!(echo.seen, case.expect, "{}", case.name);
            let after = reports.lock().unwrap();
            assert_eq!(
                after.len(),
                before + 1,
                "one report for `{}`: {:?}",
                case.name,
                &after[before..]
            );
            assert_eq!(after[before].carrier, Carrier::IncomingBaggage);
        }
        // A good header after all that: no report.
        let before = reports.lock().unwrap().len();
        let (status, echo) = send_with_headers(&client, addr, &[b"request-id=ok,tenant=t"]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echo.unwrap().seen, cases("", &[], true, Some("t")).expect);
        assert_eq!(reports.lock().unwrap().len(), before);
    });
}

#[test]
fn strict_mode_turns_bad_baggage_away() {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let registry = registry(&reports);
    runtime().block_on(async {
        let addr = echo_server(ServerLayer::new(registry.clone()).strict(true)).await;
        let client = http_client();
        for case in bad_cases() {
            let headers: Vec<&[u8]> = case.headers.iter().map(Vec::as_slice).collect();
            let (status, _) = send_with_headers(&client, addr, &headers).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{}", case.name);
        }
        let (status, echo) = send_with_headers(&client, addr, &[b"tenant=t"]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echo.unwrap().seen.tenant.as_deref(), Some("t"));
    });
    assert_eq!(reports.lock().unwrap().len(), bad_cases().len());
}

/// Many variables of their own, each `Propagated` leaked to be `'static`.
fn many_vars(n: usize, prefix: &str) -> Vec<&'static Propagated<String>> {
    (0..n)
        .map(|i| {
            let wire: &'static str = Box::leak(format!("{prefix}{i}").into_boxed_str());
            &*Box::leak(Box::new(Propagated::text(wire)))
        })
        .collect()
}

#[test]
fn more_members_than_opentelemetry_holds_are_all_sent() {
    static MANY: LazyLock<Vec<&'static Propagated<String>>> = LazyLock::new(|| many_vars(100, "v"));
    let reports = Arc::new(AtomicUsize::new(0));
    let counter = reports.clone();
    let registry = MANY
        .iter()
        .fold(Registry::builder(), |b, var| b.register(var))
        .on_error(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    for (i, var) in MANY.iter().enumerate() {
        var.set(format!("value {i}"));
    }
    let mut headers = HeaderMap::new();
    registry.inject(&mut headers);
    let (context, errors) = registry.extract(&headers);
    assert!(!errors);
    for (i, var) in MANY.iter().enumerate() {
        assert_eq!(context.get(var), Some(format!("value {i}")));
    }
    assert_eq!(reports.load(Ordering::Relaxed), 0);
}

#[test]
fn outgoing_members_past_the_limits_are_left_out_whole() {
    static WIDE: LazyLock<Vec<&'static Propagated<String>>> = LazyLock::new(|| many_vars(200, "w"));
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let registry = WIDE
        .iter()
        .fold(Registry::builder(), |b, var| b.register(var))
        .on_error(move |report| sink.lock().unwrap().push(report.clone()))
        .build()
        .unwrap();

    // 200 members: the last 20 do not fit the member limit.
    for var in WIDE.iter() {
        var.set("x".into());
    }
    let mut headers = HeaderMap::new();
    registry.inject(&mut headers);
    let (context, errors) = registry.extract(&headers);
    assert!(!errors);
    let sent = WIDE
        .iter()
        .filter(|var| context.get(**var).is_some())
        .count();
    assert_eq!(sent, 180);
    {
        let reports = reports.lock().unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].carrier, Carrier::OutgoingBaggage);
        assert_eq!(reports[0].errors.len(), 20);
    }

    // Long values: whole members only, under 8,192 bytes.
    reports.lock().unwrap().clear();
    contextvars::Context::new().run(|| {
        for var in WIDE.iter().take(3) {
            var.set("z".repeat(3000));
        }
        let mut headers = HeaderMap::new();
        registry.inject(&mut headers);
        let value = headers.get("baggage").unwrap();
        assert!(value.len() <= 8192);
        let (context, errors) = registry.extract(&headers);
        assert!(!errors);
        assert_eq!(
            WIDE.iter()
                .take(3)
                .filter(|var| context.get(**var).is_some())
                .count(),
            2
        );
    });
    assert_eq!(reports.lock().unwrap().len(), 1);
}

/// What OpenTelemetry's own extractor reads from `headers`' `baggage`: `(key, value)` sorted.
fn read_with_opentelemetry(headers: &HeaderMap) -> Vec<(String, String)> {
    let cx = opentelemetry_sdk::propagation::BaggagePropagator::new()
        .extract(&opentelemetry_http::HeaderExtractor(headers));
    let mut members: Vec<_> = cx
        .baggage()
        .iter()
        .map(|(k, (v, _))| (k.as_str().to_owned(), v.as_str().to_owned()))
        .collect();
    members.sort();
    members
}

#[test]
fn headers_written_again_follow_every_change_of_values() {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let registry = registry(&reports);
    // Forty distinct contexts, each sending several times, in turns: every header says
    // exactly what its context holds (eviction from the thread's memory is exercised by
    // `service`'s unit test `values_at_reused_addresses_get_their_own_header`).
    let mut contexts: Vec<_> = (0..40)
        .map(|i| {
            let mut context = contextvars::Context::new();
            context.run(|| {
                REQUEST_ID.set(format!("r-{i}"));
                if i % 2 == 0 {
                    TENANT.set(format!("Amélie & co {i}"));
                }
            });
            context
        })
        .collect();
    for _round in 0..3 {
        for (i, context) in contexts.iter_mut().enumerate() {
            let headers = context.run(|| {
                let mut headers = HeaderMap::new();
                registry.inject(&mut headers);
                headers
            });
            let mut expected = vec![("request-id".to_owned(), format!("r-{i}"))];
            if i % 2 == 0 {
                expected.push(("tenant".to_owned(), format!("Amélie & co {i}")));
            }
            assert_eq!(read_with_opentelemetry(&headers), expected, "context {i}");
            let (seen, errors) = registry.extract(&headers);
            assert!(!errors);
            assert_eq!(seen.get(&REQUEST_ID), Some(format!("r-{i}")));
            assert_eq!(seen.get(&TENANT).is_some(), i % 2 == 0);
        }
    }
    // A value changed in place of the same context is sent as it is now.
    contexts[0].run(|| {
        REQUEST_ID.set("r-new".into());
        let mut headers = HeaderMap::new();
        registry.inject(&mut headers);
        assert_eq!(
            read_with_opentelemetry(&headers),
            [
                ("request-id".to_owned(), "r-new".to_owned()),
                ("tenant".to_owned(), "Amélie & co 0".to_owned())
            ]
        );
    });
    // Nothing set: no header at all.
    contextvars::Context::new().run(|| {
        let mut headers = HeaderMap::new();
        registry.inject(&mut headers);
        assert!(headers.is_empty());
    });
    assert!(reports.lock().unwrap().is_empty());
}

/// Counts the decodes of `COUNTED` (a codec of its own).
static DECODES: AtomicUsize = AtomicUsize::new(0);

fn count_decode(text: &str) -> Result<String, String> {
    DECODES.fetch_add(1, Ordering::Relaxed);
    Ok(text.to_owned())
}

#[allow(clippy::ptr_arg)] // the `Encode<String>` signature
fn plain_encode(value: &String) -> Result<String, String> {
    Ok(value.clone())
}

static COUNTED: Propagated<String> = Propagated::with_codec("counted", plain_encode, count_decode);

/// A text type of its own: its `FromStr` counts too (it could do anything).
#[derive(Clone, Debug, PartialEq)]
struct Label(String);

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Label {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DECODES.fetch_add(1, Ordering::Relaxed);
        Ok(Label(text.to_owned()))
    }
}

static LABEL: Propagated<Label> = Propagated::text("label");
static PLAIN_ID: Propagated<u64> = Propagated::text("plain-id");
static PLAIN_NAME: Propagated<String> = Propagated::text("plain-name");

fn baggage(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("baggage", HeaderValue::from_str(value).unwrap());
    headers
}

#[test]
fn requests_with_the_same_header_get_contexts_of_their_own() {
    let reports = Arc::new(AtomicUsize::new(0));
    let counter = reports.clone();
    let registry = Registry::builder()
        .register(&PLAIN_ID)
        .register(&PLAIN_NAME)
        .register(&COUNTED)
        .register(&LABEL)
        .on_error(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let headers = baggage("plain-id=7,plain-name=acme%20co");
    // From its second arrival the header is remembered: later contexts are copies of the
    // remembered one, whose `String` is the same object (which `Context`'s `==` compares),
    // where two decodes make two.
    let (decoded, errors) = registry.extract(&headers);
    assert!(!errors);
    let (remembered, errors) = registry.extract(&headers);
    assert!(!errors);
    assert_ne!(
        decoded, remembered,
        "the first arrival is decoded, not remembered"
    );
    let (mut first, errors) = registry.extract(&headers);
    assert!(!errors);
    assert_eq!(first, remembered, "the third arrival is not a copy");
    // What one request's code sets stays in its context.
    first.run(|| {
        PLAIN_ID.set(8);
        PLAIN_NAME.set("changed".into());
    });
    for _ in 0..3 {
        let (context, errors) = registry.extract(&headers);
        assert!(!errors);
        assert_eq!(context.get(&PLAIN_ID), Some(7));
        assert_eq!(context.get(&PLAIN_NAME).as_deref(), Some("acme co"));
        assert_eq!(context.get(&COUNTED), None);
        assert_eq!(context.len(), 2);
    }
    assert_eq!(first.get(&PLAIN_ID), Some(8));
    assert_eq!(
        registry.extract(&headers).0,
        remembered,
        "the copy is not remembered"
    );

    // A codec of its own runs for every request, also next to plain values.
    DECODES.store(0, Ordering::Relaxed);
    let mixed = baggage("plain-id=7,counted=x");
    for _ in 0..3 {
        let (context, errors) = registry.extract(&mixed);
        assert!(!errors);
        assert_eq!(context.get(&COUNTED).as_deref(), Some("x"));
        assert_eq!(context.get(&PLAIN_ID), Some(7));
    }
    assert_eq!(DECODES.load(Ordering::Relaxed), 3);
    let labelled = baggage("plain-id=7,label=x");
    for _ in 0..3 {
        let (context, errors) = registry.extract(&labelled);
        assert!(!errors);
        assert_eq!(context.get(&LABEL), Some(Label("x".into())));
    }
    assert_eq!(DECODES.load(Ordering::Relaxed), 6);

    // A header with a problem is reported every time it comes.
    let bad = baggage("plain-id=seven,plain-name=a");
    for _ in 0..3 {
        let (context, errors) = registry.extract(&bad);
        assert!(errors);
        assert_eq!(context.get(&PLAIN_ID), None);
        assert_eq!(context.get(&PLAIN_NAME).as_deref(), Some("a"));
    }
    assert_eq!(reports.load(Ordering::Relaxed), 3);

    // Another registry does not see this one's contexts, remembered for the same header.
    let id_only = baggage("plain-id=7");
    for _ in 0..3 {
        assert_eq!(registry.extract(&id_only).0.get(&PLAIN_ID), Some(7));
    }
    static OTHER_ID: Propagated<u32> = Propagated::text("plain-id");
    let other = Registry::builder().register(&OTHER_ID).build().unwrap();
    let (context, errors) = other.extract(&id_only);
    assert!(!errors);
    assert_eq!(context.get(&OTHER_ID), Some(7));
    assert_eq!(context.get(&PLAIN_ID), None);
}

/// A variable that opted out of inheritance is set inside the new context (which context
/// watchers see), so its header is decoded for every request: a remembered copy would not
/// be seen.
#[test]
fn headers_with_not_inherited_variables_are_decoded_for_every_request() {
    use std::cell::Cell;
    thread_local! {
        static SETS: Cell<usize> = const { Cell::new(0) };
    }
    static TXN: Propagated<u64> = Propagated::text("plain-txn").not_inherited();
    let registry = Registry::builder()
        .register(&TXN)
        .register(&PLAIN_NAME)
        .build()
        .unwrap();
    let _watcher = contextvars::watch::add_watcher(|event| {
        if let contextvars::watch::ContextEvent::Set { .. } = event {
            SETS.with(|sets| sets.set(sets.get() + 1));
        }
    });
    let headers = baggage("plain-txn=5,plain-name=acme");
    let mut contexts = Vec::new();
    for request in 1..=4 {
        let (context, errors) = registry.extract(&headers);
        assert!(!errors);
        assert_eq!(context.get(&TXN), Some(5));
        assert_eq!(context.get(&PLAIN_NAME).as_deref(), Some("acme"));
        assert_eq!(
            SETS.with(Cell::get),
            request,
            "request {request} was not seen"
        );
        contexts.push(context);
    }
    assert_ne!(contexts[2], contexts[3], "a remembered copy");
}

#[test]
fn a_fresh_request_context_keeps_the_servers_pinned_values() {
    static ZONE: ContextVar<&str> = ContextVar::new("zone").pinned();
    let registry = Registry::builder().register(&PLAIN_ID).build().unwrap();
    let headers = baggage("plain-id=1");
    // Remembered while nothing is pinned here (from its second arrival)...
    for _ in 0..3 {
        let (context, _) = registry.extract(&headers);
        assert_eq!(context.get(&ZONE), None);
    }
    // ...not handed out where a fresh context would take a pinned value.
    contextvars::Context::new().run(|| {
        ZONE.set("eu");
        for _ in 0..2 {
            let (context, errors) = registry.extract(&headers);
            assert!(!errors);
            assert_eq!(context.get(&ZONE), Some("eu"));
            assert_eq!(context.get(&PLAIN_ID), Some(1));
        }
    });
    // Nor is a context decoded under a pinned value remembered, to reach a request that
    // has none.
    let other = baggage("plain-id=2");
    contextvars::Context::new().run(|| {
        ZONE.set("eu");
        for _ in 0..3 {
            assert_eq!(registry.extract(&other).0.get(&ZONE), Some("eu"));
        }
    });
    for _ in 0..3 {
        let (context, errors) = registry.extract(&other);
        assert!(!errors);
        assert_eq!(context.get(&ZONE), None);
        assert_eq!(context.get(&PLAIN_ID), Some(2));
    }
}

/// A value whose `Display` fails.
#[derive(Clone, Debug)]
struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Err(std::fmt::Error)
    }
}

impl std::str::FromStr for Broken {
    type Err = std::convert::Infallible;

    fn from_str(_: &str) -> Result<Self, Self::Err> {
        Ok(Broken)
    }
}

#[test]
fn a_display_that_fails_is_reported_not_sent() {
    static BROKEN: Propagated<Broken> = Propagated::text("broken");
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let registry = Registry::builder()
        .register(&PLAIN_ID)
        .register(&BROKEN)
        .on_error(move |report| sink.lock().unwrap().push(report.clone()))
        .build()
        .unwrap();
    contextvars::Context::new().run(|| {
        PLAIN_ID.set(3);
        BROKEN.set(Broken);
        let mut headers = HeaderMap::new();
        registry.inject(&mut headers);
        assert_eq!(headers["baggage"], "plain-id=3");
        assert!(BROKEN.encode(&Broken).is_err());
        assert_eq!(registry.capture().len(), 1);
    });
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 2);
    assert!(matches!(
        &reports[0].errors[..],
        [PropagationError::Encode { key, .. }] if key == "broken"
    ));
}
