//! Child processes (procspawn) that start in a chosen context. A child re-runs this binary,
//! whose `main` calls `exec_context::process::init` first, as a real program does; the tests
//! run under libtest-mimic (`harness = false`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use contextvars::{Context, ContextVar};
use exec_context::process::{self, Inheritance, MAX_CARRIED_BYTES, ProcessError};
use exec_context::propagate::{Propagated, PropagationError, Registry};
use libtest_mimic::{Arguments, Failed, Trial};

static REQUEST_ID: Propagated<String> = Propagated::text("request-id");
static ATTEMPT: Propagated<u32> = Propagated::text("attempt");
/// Propagated, but opted out of inheritance.
static TXN: Propagated<u64> = Propagated::text("txn").not_inherited();
/// Not propagated: never leaves the process.
static SECRET: ContextVar<String> = ContextVar::new("secret");

/// Its codec panics when it decodes `13`.
static PICKY: Propagated<u32> = Propagated::with_codec("picky", encode_number, decode_picky);
/// Its codec refuses every value, and the reporter panics when told so.
static LOUD: Propagated<u32> = Propagated::with_codec("loud", encode_number, decode_nothing);

/// Its codec cannot encode `0`.
static UNSENDABLE: Propagated<u32> =
    Propagated::with_codec("unsendable", encode_nonzero, decode_number);

static REPORTS: AtomicUsize = AtomicUsize::new(0);
/// Reports of `unsendable` values that did not encode (expected, counted apart).
static ENCODE_REPORTS: AtomicUsize = AtomicUsize::new(0);

fn encode_nonzero(n: &u32) -> Result<String, String> {
    if *n == 0 {
        return Err("zero cannot be sent".into());
    }
    Ok(n.to_string())
}

fn decode_number(text: &str) -> Result<u32, String> {
    text.parse().map_err(|err| format!("{err}"))
}

fn encode_number(n: &u32) -> Result<String, String> {
    Ok(n.to_string())
}

fn decode_picky(text: &str) -> Result<u32, String> {
    match text.parse() {
        Ok(13) => panic!("13 is unlucky"),
        Ok(n) => Ok(n),
        Err(err) => Err(format!("{err}")),
    }
}

fn decode_nothing(_: &str) -> Result<u32, String> {
    Err("refused".into())
}

fn registry() -> Registry {
    Registry::builder()
        .register(&REQUEST_ID)
        .register(&ATTEMPT)
        .register(&TXN)
        .register(&PICKY)
        .register(&LOUD)
        .register(&UNSENDABLE)
        .on_error(|report| {
            let unsendable = report.errors.iter().all(
                |error| matches!(error, PropagationError::Encode { key, .. } if key == "unsendable"),
            );
            if unsendable {
                ENCODE_REPORTS.fetch_add(1, Ordering::Relaxed);
                return;
            }
            eprintln!("propagation report: {report}");
            REPORTS.fetch_add(1, Ordering::Relaxed);
            let about_loud = report.errors.iter().any(
                |error| matches!(error, PropagationError::Decode { key, .. } if key == "loud"),
            );
            assert!(!about_loud, "the reporter panics on `loud`");
        })
        .build()
        .expect("valid registry")
}

type Seen = (Option<String>, Option<u32>, Option<u64>, Option<String>);

fn seen(tag: u32) -> (u32, Seen) {
    (
        tag,
        (REQUEST_ID.get(), ATTEMPT.get(), TXN.get(), SECRET.get()),
    )
}

/// What the child started with, and how many reports it made at start-up.
type Installed = (Option<String>, Option<u32>, Option<u32>, usize);

fn installed((): ()) -> Installed {
    (
        REQUEST_ID.get(),
        PICKY.get(),
        LOUD.get(),
        REPORTS.load(Ordering::Relaxed),
    )
}

/// Spawns `installed` with `Inherit` and joins it, failing (instead of hanging) if the child
/// gives no answer within a minute: a child that exits before it reaches its parent leaves the
/// parent's `spawn` waiting for good.
fn spawn_installed() -> Result<Installed, Failed> {
    let context = contextvars::copy_context();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut context = context;
        let result = context.run(|| process::spawn(Inheritance::Inherit, (), installed).join());
        let _ = sender.send(result.map_err(|err| err.to_string()));
    });
    match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(result) => Ok(result?),
        Err(_) => Err("the child gave no answer within a minute".into()),
    }
}

fn a_codec_that_panics_leaves_its_variable_unset_in_the_child() -> Result<(), Failed> {
    Context::new().run(|| {
        REQUEST_ID.set("r-picky".into());
        PICKY.set(13);
        let seen = spawn_installed()?;
        // The panic is reported like any value that does not decode: one report.
        let expected = (Some("r-picky".to_string()), None, None, 1);
        check(seen == expected, || format!("{seen:?}"))?;
        // A value the codec takes still crosses.
        PICKY.set(12);
        let seen = spawn_installed()?;
        check(seen == (Some("r-picky".into()), Some(12), None, 0), || {
            format!("{seen:?}")
        })
    })
}

fn a_reporter_that_panics_in_the_child_does_not_stop_it() -> Result<(), Failed> {
    Context::new().run(|| {
        REQUEST_ID.set("r-loud".into());
        LOUD.set(1);
        let seen = spawn_installed()?;
        let expected = (Some("r-loud".to_string()), None, None, 1);
        check(seen == expected, || format!("{seen:?}"))
    })
}

/// In a child: what a grandchild started with plain procspawn (not `process::spawn`) sees.
fn what_a_plain_grandchild_sees((): ()) -> (Option<String>, Option<u32>) {
    procspawn::spawn((), |()| (REQUEST_ID.get(), ATTEMPT.get()))
        .join()
        .expect("the grandchild answers")
}

/// A child's environment passes to the processes it starts: a grandchild started some other
/// way than `process::spawn` does not take the hand-over meant for its parent.
fn a_grandchild_does_not_take_its_parents_hand_over() -> Result<(), Failed> {
    Context::new().run(|| {
        REQUEST_ID.set("r-grand".into());
        ATTEMPT.set(4);
        let seen = process::spawn(Inheritance::Inherit, (), what_a_plain_grandchild_sees).join()?;
        check(seen == (None, None), || format!("{seen:?}"))
    })
}

/// In a child: how many reports its start-up made.
fn reports_at_start((): ()) -> usize {
    REPORTS.load(Ordering::Relaxed)
}

/// A hand-over that is not what `process::spawn` writes (not UTF-8, not JSON) is reported
/// once in the child, which still runs its function.
fn a_malformed_hand_over_is_reported_and_the_child_runs() -> Result<(), Failed> {
    #[cfg(unix)]
    let not_utf8 = {
        use std::os::unix::ffi::OsStringExt;
        std::ffi::OsString::from_vec(vec![b'{', 0xff, 0xfe, b'}'])
    };
    #[cfg(windows)]
    let not_utf8 = {
        use std::os::windows::ffi::OsStringExt;
        std::ffi::OsString::from_wide(&[0xD800])
    };
    #[cfg(not(any(unix, windows)))]
    let not_utf8 = std::ffi::OsString::from("{\"entries\":");
    for hand_over in [not_utf8, "{garbage".into(), "[1, 2]".into()] {
        let reports = procspawn::Builder::new()
            .env("EXEC_CONTEXT_PROPAGATED", &hand_over)
            .env("EXEC_CONTEXT_PROPAGATED_BY", std::process::id().to_string())
            .spawn((), reports_at_start)
            .join_timeout(Duration::from_secs(60))
            .map_err(|err| format!("{hand_over:?}: {err}"))?;
        check(reports == 1, || {
            format!("{hand_over:?}: {reports} reports in the child")
        })?;
    }
    Ok(())
}

/// A child that exits without a result gives `Failed`, a closed connection, not a hang.
fn a_child_that_exits_without_a_result_fails() -> Result<(), Failed> {
    let mut child = process::spawn(Inheritance::Empty, 3, |code: i32| -> u8 {
        std::process::exit(code)
    });
    match child.join_timeout(Duration::from_secs(60)) {
        Err(ProcessError::Failed(err)) if err.is_remote_close() => Ok(()),
        other => Err(format!("expected a closed connection, got {other:?}").into()),
    }
}

/// Arguments the wire format cannot carry fail as `Failed`; wrapped in `Json` they cross.
fn arguments_that_need_json_fail_without_it() -> Result<(), Failed> {
    let doc = serde_json::json!({ "ids": [1, 2, 3] });
    let mut bare = process::spawn(Inheritance::Empty, doc.clone(), |doc: serde_json::Value| {
        doc["ids"].as_array().map_or(0, Vec::len)
    });
    let bare = bare.join_timeout(Duration::from_secs(60));
    check(matches!(bare, Err(ProcessError::Failed(_))), || {
        format!("a bare `Value`: {bare:?}")
    })?;
    let wrapped = process::spawn(
        Inheritance::Empty,
        process::Json(doc),
        |process::Json(doc)| doc["ids"].as_array().map_or(0, Vec::len),
    )
    .join()?;
    check(wrapped == 3, || format!("{wrapped}"))
}

fn a_child_that_never_started_answers_every_join_alike() -> Result<(), Failed> {
    Context::new().run(|| {
        REQUEST_ID.set("x".repeat(MAX_CARRIED_BYTES));
        let mut handle = process::spawn(Inheritance::Inherit, 0, seen);
        for _ in 0..2 {
            let result = handle.join_timeout(Duration::from_millis(10));
            check(matches!(result, Err(ProcessError::TooLarge { .. })), || {
                format!("{result:?}")
            })?;
        }
        let result = handle.join();
        check(matches!(result, Err(ProcessError::TooLarge { .. })), || {
            format!("{result:?}")
        })
    })
}

/// A value that does not encode does not start the child (it would run without it), with
/// `Inherit` and with `Given`; the reporter hears of it too. An encodable value starts it.
fn a_value_that_does_not_encode_does_not_start_the_child() -> Result<(), Failed> {
    Context::new().run(|| {
        UNSENDABLE.set(0);
        let before = ENCODE_REPORTS.load(Ordering::Relaxed);
        let given = Inheritance::Given(contextvars::get_execution_context());
        for policy in [Inheritance::Inherit, given] {
            let mut handle = process::spawn(policy, 0, seen);
            check(handle.pid().is_none(), || "a child was started".into())?;
            let timed = handle.join_timeout(Duration::from_millis(10));
            let result = handle.join();
            for result in [timed, result] {
                match result {
                    Err(ProcessError::NotEncoded { errors }) => check(
                        errors
                            == [PropagationError::Encode {
                                key: "unsendable".into(),
                                message: "zero cannot be sent".into(),
                            }],
                        || format!("{errors:?}"),
                    )?,
                    other => return Err(format!("{other:?}").into()),
                }
            }
        }
        let reports = ENCODE_REPORTS.load(Ordering::Relaxed) - before;
        check(reports == 2, || format!("{reports} reports"))?;
        let result = process::spawn(Inheritance::Empty, 5, seen).join()?;
        check(result.0 == 5, || format!("{result:?}"))?;
        UNSENDABLE.set(1);
        let result = process::spawn(Inheritance::Inherit, 6, seen).join()?;
        check(result.0 == 6, || format!("{result:?}"))
    })
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(message().into())
    }
}

fn inherit_hands_over_propagated_variables_only() -> Result<(), Failed> {
    Context::new().run(|| {
        REQUEST_ID.set("r-1".into());
        ATTEMPT.set(2);
        TXN.set(9);
        SECRET.set("stays".into());
        let (tag, seen) = process::spawn(Inheritance::Inherit, 7, seen).join()?;
        let expected = (Some("r-1".to_string()), Some(2), None, None);
        check(tag == 7 && seen == expected, || format!("{tag} {seen:?}"))
    })
}

fn empty_hands_over_nothing() -> Result<(), Failed> {
    Context::new().run(|| {
        REQUEST_ID.set("r-1".into());
        ATTEMPT.set(2);
        let (_, seen) = process::spawn(Inheritance::Empty, 0, seen).join()?;
        check(seen == (None, None, None, None), || format!("{seen:?}"))
    })
}

fn given_hands_over_exactly_its_propagated_variables() -> Result<(), Failed> {
    let mut given = Context::new();
    given.run(|| {
        ATTEMPT.set(5);
        TXN.set(1); // given explicitly: handed over although not inherited
        SECRET.set("stays".into());
    });
    Context::new().run(|| {
        REQUEST_ID.set("from the parent's own context".into());
        let policy = Inheritance::Given(given.execution_context());
        let (_, seen) = process::spawn(policy, 0, seen).join()?;
        check(seen == (None, Some(5), Some(1), None), || {
            format!("{seen:?}")
        })
    })
}

fn a_panic_comes_back_as_an_error() -> Result<(), Failed> {
    let result = process::spawn(Inheritance::Empty, 42, |n: u32| -> u32 {
        panic!("child gave up at {n}")
    })
    .join();
    match result {
        Err(ProcessError::Panicked { message }) => {
            check(message.contains("child gave up at 42"), || message.clone())
        }
        other => Err(format!("expected a panic, got {other:?}").into()),
    }
}

fn a_hundred_children_in_sequence() -> Result<(), Failed> {
    for i in 0..100u32 {
        Context::new().run(|| -> Result<(), Failed> {
            REQUEST_ID.set(format!("seq-{i}"));
            ATTEMPT.set(i);
            let (tag, seen) = process::spawn(Inheritance::Inherit, i, seen).join()?;
            check(
                tag == i && seen == (Some(format!("seq-{i}")), Some(i), None, None),
                || format!("child {i}: {tag} {seen:?}"),
            )
        })?;
    }
    Ok(())
}

fn eight_children_at_once() -> Result<(), Failed> {
    let children: Vec<_> = (0..8u32)
        .map(|i| {
            Context::new().run(|| {
                REQUEST_ID.set(format!("par-{i}"));
                ATTEMPT.set(i);
                process::spawn(Inheritance::Inherit, i, seen)
            })
        })
        .collect();
    for (i, child) in (0..8u32).zip(children) {
        let (tag, seen) = child.join()?;
        check(
            tag == i && seen == (Some(format!("par-{i}")), Some(i), None, None),
            || format!("child {i}: {tag} {seen:?}"),
        )?;
    }
    Ok(())
}

fn main() {
    // First, as in any program using `exec_context::process`: in a child this runs the
    // spawned function and exits.
    process::init(registry());

    let args = Arguments::from_args();
    let tests = vec![
        Trial::test(
            "inherit_hands_over_propagated_variables_only",
            inherit_hands_over_propagated_variables_only,
        ),
        Trial::test("empty_hands_over_nothing", empty_hands_over_nothing),
        Trial::test(
            "given_hands_over_exactly_its_propagated_variables",
            given_hands_over_exactly_its_propagated_variables,
        ),
        Trial::test(
            "a_panic_comes_back_as_an_error",
            a_panic_comes_back_as_an_error,
        ),
        Trial::test(
            "a_hundred_children_in_sequence",
            a_hundred_children_in_sequence,
        ),
        Trial::test("eight_children_at_once", eight_children_at_once),
        Trial::test(
            "a_codec_that_panics_leaves_its_variable_unset_in_the_child",
            a_codec_that_panics_leaves_its_variable_unset_in_the_child,
        ),
        Trial::test(
            "a_reporter_that_panics_in_the_child_does_not_stop_it",
            a_reporter_that_panics_in_the_child_does_not_stop_it,
        ),
        Trial::test(
            "a_child_that_never_started_answers_every_join_alike",
            a_child_that_never_started_answers_every_join_alike,
        ),
        Trial::test(
            "a_value_that_does_not_encode_does_not_start_the_child",
            a_value_that_does_not_encode_does_not_start_the_child,
        ),
        Trial::test(
            "a_malformed_hand_over_is_reported_and_the_child_runs",
            a_malformed_hand_over_is_reported_and_the_child_runs,
        ),
        Trial::test(
            "a_child_that_exits_without_a_result_fails",
            a_child_that_exits_without_a_result_fails,
        ),
        Trial::test(
            "arguments_that_need_json_fail_without_it",
            arguments_that_need_json_fail_without_it,
        ),
    ];
    // Only Unix gives a process its parent's id, by which a child tells a hand-over meant
    // for it from its parent's (see `process::spawn`'s docs).
    #[cfg(unix)]
    let tests = {
        let mut tests = tests;
        tests.push(Trial::test(
            "a_grandchild_does_not_take_its_parents_hand_over",
            a_grandchild_does_not_take_its_parents_hand_over,
        ));
        tests
    };
    let conclusion = libtest_mimic::run(&args, tests);
    // After every test: nothing the parent sent (encoded values, hand-overs) was reported as
    // a problem by its registry.
    let reports = REPORTS.load(Ordering::Relaxed);
    if reports != 0 {
        eprintln!("the parent's registry reported {reports} problem(s)");
        std::process::exit(101);
    }
    conclusion.exit();
}
