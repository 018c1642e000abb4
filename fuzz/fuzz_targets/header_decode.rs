//! `header_decode`: arbitrary bytes as `baggage` header values (split at `\n` into several
//! headers), through the W3C Baggage parser and a registry of propagated variables.
//!
//! Checked for every input: nothing panics; a limit error comes alone and leaves no member;
//! otherwise every list-member is either kept or reported as malformed, exactly once; every
//! kept key is a token; a kept value escapes and parses back to itself; decoding the members
//! with a registry reports at most once, and a variable is set only when its key came once
//! with a value that decodes.
#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

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

fuzz_target!(|data: &[u8]| {
    let headers: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let parsed = baggage::parse(headers.iter().copied());

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
    if limit_errors > 0 {
        assert_eq!(parsed.errors.len(), 1);
        assert!(parsed.members.is_empty());
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
        for error in &parsed.errors {
            assert!(matches!(error, PropagationError::Malformed { .. }));
        }
    }
    for member in &parsed.members {
        assert!(baggage::is_token(member.key.as_bytes()));
        if let Ok(value) = &member.value {
            let escaped = baggage::escape(value);
            assert_eq!(baggage::decode_value(escaped.as_bytes()), Ok(Ok(value.clone())));
        }
    }

    // Through a registry: at most one report; set only when the key came once and decodes.
    let carried: Carried = parsed
        .members
        .iter()
        .filter_map(|m| m.value.clone().ok().map(|v| (m.key, v)))
        .collect();
    let before = REPORTS.load(Ordering::Relaxed);
    let ec = REGISTRY.execution_context(&carried);
    assert!(REPORTS.load(Ordering::Relaxed) - before <= 1);
    let once = |key: &str| carried.iter().filter(|(k, _)| *k == key).count() == 1;
    if let Some(text) = ec.get(&TEXT) {
        assert!(once("t"));
        assert_eq!(carried.get("t"), Some(text.as_str()));
    }
    if let Some(number) = ec.get(&NUMBER) {
        assert!(once("n"));
        assert_eq!(carried.get("n").and_then(|v| v.parse().ok()), Some(number));
    }
    if ec.get(&LIST).is_some() {
        assert!(once("l"));
    }
});
