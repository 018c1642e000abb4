//! `header_decode`: arbitrary bytes as `baggage` header values (split at `\n` into several
//! headers), through the W3C Baggage parser and a registry of propagated variables.
//!
//! Checked for every input: nothing panics; a limit error comes exactly when the headers
//! (joined with commas) are over the byte limit or the list over the member limit (as the
//! crate documents them), alone, and leaves no member; otherwise every list-member is either
//! kept or reported as malformed, exactly once, in order, with the key each malformed member
//! still names; every kept key is a token; a kept value escapes and parses back to itself;
//! decoding the members with a registry reports exactly once when a
//! key is unknown or repeated or a value does not decode (else never), and a variable is set
//! exactly when its key came once with a value that decodes, to that value; and the headers
//! decoded by the registry itself (`execution_context_from_baggage`) follow the same rules,
//! counting the keys malformed members still name, with one report iff the headers had any
//! problem.
#![no_main]

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use exec_context::propagate::baggage::{self, MAX_BYTES, MAX_MEMBERS};
use exec_context::propagate::{Carried, Propagated, PropagationError, Registry};
use libfuzzer_sys::fuzz_target;

static TEXT: Propagated<String> = Propagated::text("t");
static NUMBER: Propagated<u32> = Propagated::text("n");
static LIST: Propagated<Vec<u8>> = Propagated::json("l");
static REPORTS: AtomicUsize = AtomicUsize::new(0);
static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    Registry::builder()
        .register(&TEXT)
        .register(&NUMBER)
        .register(&LIST)
        .on_error(|report| {
            assert!(!report.errors.is_empty());
            REPORTS.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .expect("valid registry")
});

/// The key a malformed element still names, computed here: the text before its first `;`,
/// then before its first `=`, trimmed of spaces and tabs, when that is a non-empty token.
fn named_key(element: &[u8]) -> Option<&str> {
    let head = element.split(|&b| b == b';').next()?;
    let key = trim_blank(head.split(|&b| b == b'=').next()?);
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    (!key.is_empty() && key.iter().all(|&b| tchar(b))).then(|| std::str::from_utf8(key).unwrap())
}

/// `bytes` without the spaces and tabs at either end.
fn trim_blank(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// A decoded value of one of the three variables.
#[derive(Clone, Debug, PartialEq)]
enum Decoded {
    Text(String),
    Number(u32),
    List(Vec<u8>),
}

fuzz_target!(|data: &[u8]| {
    let headers: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let parsed = baggage::parse(headers.iter().copied());

    // The limits as the crate documents them, computed here from the raw bytes: W3C's
    // 8,192 bytes and 180 members over the headers joined into one list, and the crate's
    // reading of RFC 9110 §5.6.1 (empty list elements do not count, unless there are more
    // of them than members allowed).
    let nonblank: Vec<&[u8]> = headers
        .iter()
        .copied()
        .filter(|h| h.iter().any(|&b| b != b' ' && b != b'\t'))
        .collect();
    let joined = nonblank.join(&b","[..]);
    let (mut members, mut empty) = (0, 0);
    for element in joined.split(|&b| b == b',') {
        if element.iter().all(|&b| b == b' ' || b == b'\t') {
            empty += 1;
        } else {
            members += 1;
        }
    }
    if empty > MAX_MEMBERS {
        members += empty;
    }
    let expected_limit = if nonblank.is_empty() {
        None
    } else if joined.len() > MAX_BYTES {
        Some(PropagationError::TooLong {
            bytes: joined.len(),
        })
    } else if members > MAX_MEMBERS {
        Some(PropagationError::TooManyMembers { members })
    } else {
        None
    };

    let limit_errors = parsed
        .errors
        .iter()
        .filter(|e| {
            matches!(
                e,
                PropagationError::TooLong { .. } | PropagationError::TooManyMembers { .. }
            )
        })
        .count();
    assert_eq!(
        limit_errors > 0,
        expected_limit.is_some(),
        "a limit error iff over a limit"
    );
    if let Some(expected) = expected_limit {
        assert_eq!(parsed.errors, [expected]);
    }
    if limit_errors > 0 {
        assert_eq!(parsed.errors.len(), 1);
        assert!(parsed.members.is_empty());
        assert!(parsed.malformed_keys.is_empty());
        if let PropagationError::TooLong { bytes } = parsed.errors[0] {
            assert!(bytes > MAX_BYTES);
        }
        if let PropagationError::TooManyMembers { members } = parsed.errors[0] {
            assert!(members > MAX_MEMBERS);
        }
    } else {
        // Every segment of a non-blank header is kept or reported, once.
        let segments: usize = headers
            .iter()
            .filter(|h| h.iter().any(|&b| b != b' ' && b != b'\t'))
            .map(|h| h.iter().filter(|&&b| b == b',').count() + 1)
            .sum();
        assert_eq!(parsed.members.len() + parsed.errors.len(), segments);
        let mut last = None;
        let elements: Vec<&[u8]> = joined.split(|&b| b == b',').collect();
        let mut named = Vec::new();
        for error in &parsed.errors {
            let PropagationError::Malformed { index, .. } = *error else {
                panic!("only malformed members: {error:?}");
            };
            assert!(index < segments, "index {index} of {segments}");
            assert!(last.is_none_or(|last| last < index), "in order, once each");
            last = Some(index);
            named.extend(named_key(elements[index]));
        }
        assert_eq!(
            parsed.malformed_keys, named,
            "the keys the malformed members name, in order"
        );
    }
    for member in &parsed.members {
        assert!(baggage::is_token(member.key.as_bytes()));
        if let Ok(value) = &member.value {
            let escaped = baggage::escape(value);
            assert_eq!(
                baggage::decode_value(escaped.as_bytes()),
                Ok(Ok(value.clone()))
            );
        }
    }

    // Through a registry: one report when a key is unknown or repeated or a value does not
    // decode; a variable set exactly when its key came once and its value decodes.
    let carried: Carried = parsed
        .members
        .iter()
        .filter_map(|m| m.value.clone().ok().map(|v| (m.key, v)))
        .collect();
    let before = REPORTS.load(Ordering::Relaxed);
    let ec = REGISTRY.execution_context(&carried);
    let reports = REPORTS.load(Ordering::Relaxed) - before;
    let count = |key: &str| carried.iter().filter(|(k, _)| *k == key).count();
    let once = |key: &str| (count(key) == 1).then(|| carried.get(key)).flatten();
    let text = once("t").map(str::to_string);
    let number = once("n").map(|v| v.parse::<u32>());
    let list = once("l").map(|v| LIST.decode(v));
    assert_eq!(ec.get(&TEXT), text, "t set iff it came once");
    assert_eq!(
        ec.get(&NUMBER),
        number.clone().and_then(Result::ok),
        "n set iff it came once and parses"
    );
    assert_eq!(
        ec.get(&LIST),
        list.clone().and_then(Result::ok),
        "l set iff it came once and decodes"
    );
    let problems = carried.iter().any(|(k, _)| !["t", "n", "l"].contains(&k))
        || ["t", "n", "l"].iter().any(|key| count(key) > 1)
        || number.is_some_and(|n| n.is_err())
        || list.is_some_and(|l| l.is_err());
    assert_eq!(reports, usize::from(problems), "one report iff a problem");

    // The headers themselves through the registry (the server's rules): a key counts every
    // member naming it, well-formed or malformed; a variable is set exactly when its key came
    // once, well-formed, UTF-8, and decodes; one report iff the parse or the decoding met a
    // problem.
    let before = REPORTS.load(Ordering::Relaxed);
    let ec = REGISTRY.execution_context_from_baggage(headers.iter().copied());
    let reports = REPORTS.load(Ordering::Relaxed) - before;
    let named = |key: &str| {
        parsed.members.iter().filter(|m| m.key == key).count()
            + parsed.malformed_keys.iter().filter(|&&k| k == key).count()
    };
    let single = |key: &str| {
        (named(key) == 1)
            .then(|| parsed.members.iter().find(|m| m.key == key))
            .flatten()
    };
    // The value of a key named once, well-formed: `None` if it is not UTF-8 or does not
    // decode.
    let decoded = |key: &str| {
        single(key).map(|m| {
            m.value.as_ref().ok().and_then(|v| match key {
                "t" => Some(Decoded::Text(v.clone())),
                "n" => v.parse().ok().map(Decoded::Number),
                _ => LIST.decode(v).ok().map(Decoded::List),
            })
        })
    };
    let (t, n, l) = (decoded("t"), decoded("n"), decoded("l"));
    assert_eq!(
        ec.get(&TEXT).map(Decoded::Text),
        t.clone().flatten(),
        "t set iff named once, well-formed and UTF-8"
    );
    assert_eq!(
        ec.get(&NUMBER).map(Decoded::Number),
        n.clone().flatten(),
        "n set iff named once, well-formed, UTF-8, and parses"
    );
    assert_eq!(
        ec.get(&LIST).map(Decoded::List),
        l.clone().flatten(),
        "l set iff named once, well-formed, UTF-8, and decodes"
    );
    let problems = !parsed.errors.is_empty()
        || parsed
            .members
            .iter()
            .any(|m| !["t", "n", "l"].contains(&m.key))
        || ["t", "n", "l"].iter().any(|key| named(key) > 1)
        || [t, n, l].iter().any(|value| matches!(value, Some(None)));
    assert_eq!(
        reports,
        usize::from(problems),
        "one report iff a problem in the headers"
    );
});
