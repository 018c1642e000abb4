//! The W3C Baggage header (<https://www.w3.org/TR/baggage/>): a validating parser and the
//! value escaping used when sending.
//!
//! ```text
//! baggage-string = list-member 0*179( OWS "," OWS list-member )
//! list-member    = key OWS "=" OWS value *( OWS ";" OWS property )
//! property       = key OWS "=" OWS value / key OWS
//! key            = token                        ; RFC 7230
//! value          = *baggage-octet               ; percent-encoded UTF-8
//! baggage-octet  = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
//! OWS            = *( SP / HTAB )
//! ```
//!
//! Several `baggage` headers form one list. Limits (both directions): [`MAX_BYTES`] in total
//! and [`MAX_MEMBERS`] list-members.
//!
//! # Why not OpenTelemetry's propagator
//!
//! The service layers write the header as OpenTelemetry's `BaggagePropagator` does for the
//! same members (a test holds the two to the same members), without running it for each
//! request (see below). They do not use it to *read* one, because the extractor of
//! `opentelemetry_sdk` 0.33 departs from the specification:
//!
//! - it splits a member at every `=`, so a value containing `=` (allowed: `%x3C-5B`) is cut
//!   at its second `=`;
//! - it trims the value *after* percent-decoding, so `%20` at either end is lost;
//! - it reads only the first `baggage` header, where the specification combines them all;
//! - it keeps at most 64 members, silently, where the limit is 180;
//! - it accepts what the grammar forbids (spaces inside keys, bad percent-escapes, which it
//!   keeps as text, empty members, non-token keys, which it percent-decodes) and drops
//!   members it cannot read without saying which.
//!
//! [`parse`] follows the grammar: a member that does not match is reported and ignored (its
//! key, if it still names one, is kept in [`Parsed::malformed_keys`]: a receiver counts it as
//! a copy of that key, see [`malformed_key`]), the rest are kept. (The server layer checks a single header against the same grammar in one
//! pass, without building the list, and falls back to [`parse`] when anything is wrong.)
//!
//! Its injector is right for values made only of unreserved characters, which is what
//! [`escape`] produces: OpenTelemetry 0.33 escapes neither `%` nor `\` and trims values, so
//! a raw `50% off` or ` x` would be sent wrongly, while their escaped forms pass through it
//! unchanged. On such members (token keys, escaped values, within the limits) all it does
//! is join them with commas in the order of its hash map, at a cost of about 8,500
//! instructions for two members (a `Baggage` map, a `Context`, a `String` per key and
//! value). The client layer joins them itself, in registration order; it keeps the
//! propagator for a header it merges into (one that already had members of other keys).
//!
//! One deliberate departure from the specification: it says to replace percent-encoded bytes
//! that are not UTF-8 with U+FFFD. A propagated variable holds typed data, so a value like
//! that is reported ([`PropagationError::InvalidUtf8`]) and left unset instead.
//!
//! ```
//! use exec_context::propagate::baggage::{escape, parse};
//!
//! let parsed = parse([&b"userId=Am%C3%A9lie, serverNode = DF%2028;p1;p2=v,flag"[..]]);
//! let members: Vec<_> = parsed
//!     .members
//!     .iter()
//!     .map(|m| (m.key, m.value.clone().unwrap()))
//!     .collect();
//! assert_eq!(members, [("userId", "Amélie".to_string()), ("serverNode", "DF 28".to_string())]);
//! assert_eq!(parsed.errors.len(), 1); // `flag` has no `=`
//! assert_eq!(escape("a=b c"), "a%3Db%20c");
//! ```

use std::fmt;

use super::PropagationError;

/// The most bytes all `baggage` headers of a request may hold together.
pub const MAX_BYTES: usize = 8192;
/// The most list-members all `baggage` headers of a request may hold together.
pub const MAX_MEMBERS: usize = 180;

/// How a list-member breaks the W3C grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Syntax {
    /// Nothing (or only whitespace) between two commas.
    Empty,
    /// No `=` after the key.
    MissingEquals,
    /// The key is empty or not an RFC 7230 token.
    InvalidKey,
    /// The value holds a byte that is not a baggage-octet (a space, `"`, `,`, `;`, `\`, a
    /// control character or a non-ASCII byte).
    InvalidValue,
    /// A `%` not followed by two hexadecimal digits.
    BadPercentEscape,
    /// A property that is empty or not `key` / `key=value`.
    InvalidProperty,
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Syntax::Empty => "empty list-member",
            Syntax::MissingEquals => "no `=` after the key",
            Syntax::InvalidKey => "the key is not a token",
            Syntax::InvalidValue => "the value holds a byte outside baggage-octet",
            Syntax::BadPercentEscape => "a `%` is not followed by two hex digits",
            Syntax::InvalidProperty => "a property is empty or malformed",
        })
    }
}

impl std::error::Error for Syntax {}

/// A percent-decoded value whose bytes are not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotUtf8;

/// A well-formed list-member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// The key (a token).
    pub key: &'a str,
    /// The percent-decoded value, or [`NotUtf8`].
    pub value: Result<String, NotUtf8>,
    /// The properties as written (`key` or `key=value`, whitespace around `=` kept), in order.
    pub properties: Vec<&'a str>,
}

/// What [`parse`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Parsed<'a> {
    /// The well-formed members, in order (repeated keys included).
    pub members: Vec<Member<'a>>,
    /// The problems: [`PropagationError::TooLong`], [`PropagationError::TooManyMembers`]
    /// (then `members` is empty) or one [`PropagationError::Malformed`] per bad member.
    pub errors: Vec<PropagationError>,
    /// The keys that malformed members still name (see [`malformed_key`]), in order. The
    /// sender meant a value for each: a receiver counts them with the well-formed members'
    /// keys, so that a key that came twice is a repeated key however its other copy is
    /// broken.
    pub malformed_keys: Vec<&'a str>,
}

/// A table of the bytes for which the `const fn` `$pick` holds.
macro_rules! byte_table {
    ($pick:ident) => {{
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            table[b] = $pick(b as u8);
            b += 1;
        }
        table
    }};
}

/// RFC 7230 `tchar`.
const fn tchar_rule(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// W3C `baggage-octet`.
const fn baggage_octet_rule(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

static TCHAR: [bool; 256] = byte_table!(tchar_rule);
static BAGGAGE_OCTET: [bool; 256] = byte_table!(baggage_octet_rule);

fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Whether `bytes` is a non-empty RFC 7230 token.
///
/// ```
/// use exec_context::propagate::baggage::is_token;
/// assert!(is_token(b"request-id"));
/// assert!(!is_token(b"request id"));
/// assert!(!is_token(b""));
/// ```
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

fn is_baggage_octet(b: u8) -> bool {
    BAGGAGE_OCTET[usize::from(b)]
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_ows(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_ows(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks a value against the grammar; returns whether it holds a percent-escape.
fn check_value(raw: &[u8]) -> Result<bool, Syntax> {
    let mut escaped = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if !is_baggage_octet(b) {
            return Err(Syntax::InvalidValue);
        }
        if b == b'%' {
            if !(raw.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && raw.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return Err(Syntax::BadPercentEscape);
            }
            escaped = true;
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(escaped)
}

/// Percent-decodes a value [`check_value`] accepted.
fn unescape(raw: &[u8]) -> Result<String, NotUtf8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1..i + 3)) {
            (b'%', Some(&[hi, lo])) => {
                // Checked: two hexadecimal digits follow every `%`.
                out.push(hex(hi).unwrap_or_default() << 4 | hex(lo).unwrap_or_default());
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| NotUtf8)
}

/// Baggage-octets without escapes as text (they are ASCII).
fn ascii(raw: &[u8]) -> &str {
    std::str::from_utf8(raw).unwrap_or_default()
}

/// Checks a value against the grammar and percent-decodes it.
///
/// ```
/// use exec_context::propagate::baggage::{NotUtf8, Syntax, decode_value};
/// assert_eq!(decode_value(b"DF%2028=x"), Ok(Ok("DF 28=x".to_string())));
/// assert_eq!(decode_value(b"%FF"), Ok(Err(NotUtf8)));
/// assert_eq!(decode_value(b"%F"), Err(Syntax::BadPercentEscape));
/// assert_eq!(decode_value(b"a b"), Err(Syntax::InvalidValue));
/// ```
///
/// # Errors
///
/// [`Syntax::InvalidValue`] or [`Syntax::BadPercentEscape`].
pub fn decode_value(raw: &[u8]) -> Result<Result<String, NotUtf8>, Syntax> {
    if check_value(raw)? {
        Ok(unescape(raw))
    } else {
        Ok(Ok(ascii(raw).to_owned()))
    }
}

fn check_property(raw: &[u8]) -> Result<(), Syntax> {
    let raw = trim_ows(raw);
    match raw.iter().position(|&b| b == b'=') {
        None if is_token(raw) => Ok(()),
        None => Err(Syntax::InvalidProperty),
        Some(eq) => {
            let key = trim_ows(&raw[..eq]);
            let value = trim_ows(&raw[eq + 1..]);
            if !is_token(key) {
                return Err(Syntax::InvalidProperty);
            }
            check_value(value).map(|_| ()).map_err(|e| match e {
                Syntax::BadPercentEscape => e,
                _ => Syntax::InvalidProperty,
            })
        }
    }
}

/// A list-member checked against the whole grammar (properties included), not yet decoded.
pub(crate) struct Scanned<'a> {
    /// The key (a token, so ASCII).
    pub(crate) key: &'a [u8],
    /// The value as written (baggage-octets, every `%` followed by two hex digits).
    pub(crate) value: &'a [u8],
    /// Whether `value` holds a percent-escape.
    pub(crate) escaped: bool,
    /// What follows the first `;` (each property checked), if any.
    properties: Option<&'a [u8]>,
}

impl<'a> Scanned<'a> {
    /// The percent-decoded value: borrowed from the header when it holds no escape.
    pub(crate) fn decoded(&self) -> Result<std::borrow::Cow<'a, str>, NotUtf8> {
        if self.escaped {
            unescape(self.value).map(std::borrow::Cow::Owned)
        } else {
            Ok(std::borrow::Cow::Borrowed(ascii(self.value)))
        }
    }
}

/// Checks one list-member (between two commas) against the grammar, without allocating.
pub(crate) fn scan_member(raw: &[u8]) -> Result<Scanned<'_>, Syntax> {
    // The usual member, `key=value` without spaces, escapes or properties, in one pass over
    // each part; anything else takes the general path, which gives the same answer for these
    // (a token holds neither `=` nor `;` nor spaces, a baggage-octet neither `;` nor spaces)
    // in several passes.
    let key_end = raw.iter().position(|&b| !is_tchar(b)).unwrap_or(raw.len());
    if key_end > 0 && raw.get(key_end) == Some(&b'=') {
        let value = &raw[key_end + 1..];
        if value.iter().all(|&b| b != b'%' && is_baggage_octet(b)) {
            return Ok(Scanned {
                key: &raw[..key_end],
                value,
                escaped: false,
                properties: None,
            });
        }
    }
    scan_member_general(raw)
}

/// [`scan_member`] for any member.
fn scan_member_general(raw: &[u8]) -> Result<Scanned<'_>, Syntax> {
    let raw = trim_ows(raw);
    if raw.is_empty() {
        return Err(Syntax::Empty);
    }
    let (head, properties) = match raw.iter().position(|&b| b == b';') {
        Some(semi) => (&raw[..semi], Some(&raw[semi + 1..])),
        None => (raw, None),
    };
    let eq = head
        .iter()
        .position(|&b| b == b'=')
        .ok_or(Syntax::MissingEquals)?;
    let key = trim_ows(&head[..eq]);
    if !is_token(key) {
        return Err(Syntax::InvalidKey);
    }
    let value = trim_ows(&head[eq + 1..]);
    let escaped = check_value(value)?;
    if let Some(properties) = properties {
        for property in properties.split(|&b| b == b';') {
            check_property(property)?;
        }
    }
    Ok(Scanned {
        key,
        value,
        escaped,
        properties,
    })
}

/// The key a malformed list-member still names: the token before its first `=` (with no
/// `=`, the token before its first `;`, or the whole member), whitespace around it trimmed.
/// `None` when that is not a token (or the member is empty).
///
/// ```
/// use exec_context::propagate::baggage::malformed_key;
///
/// assert_eq!(malformed_key(b" tenant = a b"), Some("tenant")); // a space inside the value
/// assert_eq!(malformed_key(b"tenant=%zz"), Some("tenant")); // a bad escape
/// assert_eq!(malformed_key(b"tenant;p=1"), Some("tenant")); // no `=` before the properties
/// assert_eq!(malformed_key(b"ten ant=x"), None); // not a token
/// assert_eq!(malformed_key(b" "), None);
/// ```
pub fn malformed_key(raw: &[u8]) -> Option<&str> {
    let raw = trim_ows(raw);
    let head = raw.split(|&b| b == b';').next().unwrap_or(raw);
    let key = trim_ows(head.split(|&b| b == b'=').next().unwrap_or(head));
    // A token is ASCII.
    is_token(key).then(|| ascii(key))
}

fn parse_member(raw: &[u8]) -> Result<Member<'_>, Syntax> {
    let scanned = scan_member(raw)?;
    let properties = scanned
        .properties
        .map(|properties| {
            properties
                .split(|&b| b == b';')
                // Checked: ASCII only.
                .map(|property| ascii(trim_ows(property)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Member {
        // A token is ASCII.
        key: ascii(scanned.key),
        value: scanned.decoded().map(std::borrow::Cow::into_owned),
        properties,
    })
}

/// Parses the `baggage` header values of one message, combined into one list as the
/// specification says. Never panics; whatever does not follow the grammar is in
/// [`Parsed::errors`]. A header that is empty (or only whitespace) adds no member; an empty
/// list element (`a=1,,b=2`) is reported as malformed and, as RFC 9110 says, does not count
/// towards [`MAX_MEMBERS`], unless there are more than [`MAX_MEMBERS`] of them (then every
/// element counts, and the list is refused as too long).
///
/// ```
/// use exec_context::propagate::PropagationError;
/// use exec_context::propagate::baggage::{MAX_BYTES, parse};
///
/// let parsed = parse([&b"a=1"[..], &b"b=x=y"[..]]);
/// assert_eq!(parsed.members[1].key, "b");
/// assert_eq!(parsed.members[1].value, Ok("x=y".to_string()));
///
/// let huge = format!("a={}", "x".repeat(MAX_BYTES));
/// let parsed = parse([huge.as_bytes()]);
/// assert!(parsed.members.is_empty());
/// assert!(matches!(parsed.errors[..], [PropagationError::TooLong { .. }]));
/// ```
pub fn parse<'a>(headers: impl IntoIterator<Item = &'a [u8]>) -> Parsed<'a> {
    let mut nonempty = headers.into_iter().filter(|h| !trim_ows(h).is_empty());
    // One header (the usual case) needs no list of them.
    let first = nonempty.next();
    let single;
    let many: Vec<&'a [u8]>;
    let headers: &[&'a [u8]] = match (first, nonempty.next()) {
        (None, _) => &[],
        (Some(first), None) => {
            single = [first];
            &single
        }
        (Some(first), Some(second)) => {
            many = [first, second].into_iter().chain(nonempty).collect();
            &many
        }
    };
    let bytes = headers.iter().map(|h| h.len()).sum::<usize>() + headers.len().saturating_sub(1);
    let mut parsed = Parsed::default();
    if bytes > MAX_BYTES {
        parsed.errors.push(PropagationError::TooLong { bytes });
        return parsed;
    }
    // Empty list elements (`a=1,,b=2`, a trailing comma) are not list-members: RFC 9110
    // (§5.6.1) says they do not count. Each is still reported as malformed below. The RFC
    // asks a recipient to ignore "a reasonable number" of them, not so many that they could
    // serve a denial of service: a list with more empty elements than MAX_MEMBERS is refused
    // as too long a list (which also bounds the errors one header can produce).
    let (mut members, mut empty) = (0usize, 0usize);
    for element in headers.iter().flat_map(|h| h.split(|&b| b == b',')) {
        if trim_ows(element).is_empty() {
            empty += 1;
        } else {
            members += 1;
        }
    }
    if empty > MAX_MEMBERS {
        members += empty;
    }
    if members > MAX_MEMBERS {
        parsed
            .errors
            .push(PropagationError::TooManyMembers { members });
        return parsed;
    }
    parsed.members.reserve(members);
    let all = headers.iter().flat_map(|h| h.split(|&b| b == b','));
    for (index, raw) in all.enumerate() {
        match parse_member(raw) {
            Ok(member) => parsed.members.push(member),
            Err(reason) => {
                parsed.malformed_keys.extend(malformed_key(raw));
                parsed
                    .errors
                    .push(PropagationError::Malformed { index, reason });
            }
        }
    }
    parsed
}

/// Percent-encodes `value` for a `baggage` header: every byte but ASCII letters, digits and
/// `-._~` becomes `%XX`. The result is made of baggage-octets only, none of which
/// OpenTelemetry's injector escapes again or trims.
///
/// ```
/// use exec_context::propagate::baggage::{decode_value, escape};
///
/// let value = " 50% off, \"now\"; \\é=";
/// let escaped = escape(value);
/// assert_eq!(decode_value(escaped.as_bytes()), Ok(Ok(value.to_string())));
/// ```
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    escape_into(value, &mut out);
    out
}

/// [`escape`], appending to `out`.
pub(crate) fn escape_into(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if value.bytes().all(is_unreserved_byte) {
        // Most values (ids, names, numbers): nothing to escape.
        out.push_str(value);
        return;
    }
    for &b in value.as_bytes() {
        if is_unreserved_byte(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
}

fn is_unreserved_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether [`escape`] leaves `value` as it is (ASCII letters, digits and `-._~` only).
#[cfg(feature = "tower")]
pub(crate) fn is_unreserved(value: &str) -> bool {
    value.bytes().all(is_unreserved_byte)
}

/// Chooses which `key=escaped-value` members fit in one header within the limits, keeping
/// whole members only: returns the members kept and the keys left out.
#[cfg(feature = "tower")]
pub(crate) fn fit<'a>(
    members: impl IntoIterator<Item = (&'a str, String)>,
    already: (usize, usize),
) -> (Vec<(&'a str, String)>, Vec<&'a str>) {
    let (mut bytes, mut count) = already;
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (key, value) in members {
        let len = key.len() + 1 + value.len() + usize::from(count > 0);
        if count < MAX_MEMBERS && bytes + len <= MAX_BYTES {
            bytes += len;
            count += 1;
            kept.push((key, value));
        } else {
            dropped.push(key);
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a scan found, comparable.
    type Found<'a> = (&'a [u8], &'a [u8], bool, Option<&'a [u8]>);

    fn found(scanned: Result<Scanned<'_>, Syntax>) -> Result<Found<'_>, Syntax> {
        scanned.map(|s| (s.key, s.value, s.escaped, s.properties))
    }

    /// The one-pass path of `scan_member` answers as the general one, for every member of
    /// up to five bytes over an alphabet with each byte class the grammar tells apart.
    #[test]
    fn the_usual_member_path_answers_as_the_general_one() {
        let alphabet = b"a1=%;, \t\"F\x80";
        let mut member = Vec::new();
        let mut checked = 0;
        let mut fast = 0;
        for len in 0..=5u32 {
            for mut n in 0..alphabet.len().pow(len) {
                member.clear();
                for _ in 0..len {
                    member.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let general = found(scan_member_general(&member));
                assert_eq!(found(scan_member(&member)), general, "{member:?}");
                checked += 1;
                fast += usize::from(general.is_ok_and(|(_, _, escaped, properties)| {
                    !escaped && properties.is_none() && !member.contains(&b' ')
                }));
            }
        }
        assert_eq!(checked, (0..=5).map(|len| 11usize.pow(len)).sum::<usize>());
        assert!(fast > 1000, "the usual shape is among them: {fast}");
    }

    /// Empty list elements do not count towards the 180 list-members (RFC 9110 §5.6.1);
    /// each is still reported.
    #[test]
    fn empty_elements_do_not_count_towards_the_member_limit() {
        let members: Vec<String> = (0..MAX_MEMBERS).map(|i| format!("k{i}=v")).collect();
        let full = members.join(",");
        for header in [
            format!("{full},"),
            format!("{full}, \t"),
            format!(",{full}"),
            full.replacen(',', ",,", 1),
        ] {
            let parsed = parse([header.as_bytes()]);
            assert_eq!(parsed.members.len(), MAX_MEMBERS, "{header:.40}");
            assert!(
                matches!(
                    parsed.errors[..],
                    [PropagationError::Malformed {
                        reason: Syntax::Empty,
                        ..
                    }]
                ),
                "{:?}",
                parsed.errors
            );
        }
        // More empty elements than members allowed: every element counts.
        let header = format!("a=1{}", ",".repeat(MAX_MEMBERS + 1));
        let parsed = parse([header.as_bytes()]);
        assert!(parsed.members.is_empty());
        assert_eq!(
            parsed.errors,
            [PropagationError::TooManyMembers {
                members: MAX_MEMBERS + 2
            }]
        );
        let header = ",".repeat(MAX_MEMBERS - 1);
        let parsed = parse([header.as_bytes()]);
        assert_eq!(
            parsed.errors.len(),
            MAX_MEMBERS,
            "each empty element reported"
        );
        // One member more is over the limit, wherever the empty elements are.
        let over = format!("{full},extra=1,,");
        let parsed = parse([over.as_bytes()]);
        assert!(parsed.members.is_empty());
        assert_eq!(
            parsed.errors,
            [PropagationError::TooManyMembers {
                members: MAX_MEMBERS + 1
            }]
        );
    }
}
