//! Propagated variables across services (feature `tower`): `tower` layers that carry the
//! variables of a [`Registry`] in the W3C `baggage` header.
//!
//! - [`ServerLayer`]: every request runs in a fresh context holding only the registered
//!   variables found in its `baggage` headers (nothing from the server's own context but
//!   its [pinned](contextvars::pinned) values, which every new context keeps).
//!   Bad input leaves the variables concerned unset and is reported once per request
//!   through the registry's reporter; the request still runs, unless the layer is
//!   [strict](ServerLayer::strict).
//! - [`ClientLayer`]: every outgoing request gets the registered variables of the caller's
//!   current context (read when the request is sent) in its `baggage` header.
//!
//! Only `baggage` is touched: a `traceparent` (or any other) header passes through both layers
//! unchanged, so they compose with OpenTelemetry tracing. The header is written as
//! OpenTelemetry's `BaggagePropagator` writes it (a test holds the two to the same members)
//! and read by [`propagate::baggage::parse`](crate::propagate::baggage::parse);
//! [`crate::propagate::baggage`] says why.
//!
//! # Cost
//!
//! Per request, with two propagated variables (`u64` and `String`, text codecs; release
//! build, default target, counted with callgrind on a current-thread runtime, 8 callers):
//! a loopback hyper client and server run about 34,000 instructions without the layers.
//! With both, and one request id per caller, they run about 3,300 more (3,650 with 32
//! callers), hyper's own work on the extra header included (about 1,000: on the server,
//! `baggage` is not a name `http` knows, so hyper allocates it for each request; no option
//! of hyper's avoids that, and nothing the client writes changes it). Of these, the client
//! layer takes about 930 (two lookups of the variables; the remembered header value; its
//! insertion into the request's map) and the server layer about 430 to find the request's
//! context, plus entering it for `call` and for each poll. The lookups miss the thread's
//! cache whenever another context on the thread read the same variables since (the cache
//! keeps one entry per variable: with several callers per thread, each caller's reads evict
//! the others'; a lone caller's task keeps its entries from poll to poll), and so do the
//! handler's first reads in each request's new context: about 150 instructions a miss.
//! With a new request id for every request, the layers cost about 8,700 (writing the header
//! on the client, about 2,300, and decoding it on the server, about 3,300). Nothing is done
//! when no registered variable has a value.
//!
//! - Client: a context sends the same value objects with every request it makes. When every
//!   variable of the registry is a `Propagated::text` variable of a plain standard type
//!   (`String`, `bool`, `char`, integers), each thread remembers the header it wrote for the
//!   last sets of value objects (up to 256) whose members it wrote twice (4-way, by their addresses,
//!   read through the variables' own lookups without a snapshot of the context), with weak
//!   handles on those values that keep their allocations but not the values, so that no
//!   other object can take their addresses: a request whose variables hold the same objects
//!   sends that header again without encoding anything. Otherwise the codecs write the
//!   members into one buffer the thread keeps (text codecs without a `String` per value),
//!   and the header is that buffer as it is: the bytes OpenTelemetry's `BaggagePropagator`
//!   would write for those members, without its cost (see
//!   [`crate::propagate::baggage`]).
//! - Server: a single `baggage` header whose members are all well-formed, registered, unique
//!   and UTF-8 is read in one pass, without allocating (values without escapes are borrowed
//!   from the header), and decoded straight into the request's context's map, without
//!   entering it ([`contextvars::ContextBuilder`]; about 2,800 instructions more than a
//!   remembered header); anything else takes the general path, which reports each problem.
//!   A header whose values are all of plain standard types (`String`, `bool`, `char`,
//!   integers, with `Propagated::text`) of inherited variables and that decoded without a
//!   problem is remembered per
//!   thread (256 headers, 4-way by a hash of the header, from its second coming): a later
//!   request with the same bytes gets a copy of that context, which nothing can tell from a
//!   fresh decode (see [`Registry::extract`]). The remembered contexts hold their values
//!   until they are replaced: the module `propagate::shared` says why (not remembering
//!   would cost about 3,000 instructions per request).
//!
//! The report's `service` section measures the layers end to end on a loopback server.
//!
//! ```
//! use exec_context::propagate::{Propagated, Registry};
//! use exec_context::service::{ClientLayer, ServerLayer};
//! use http::{Request, Response};
//! use std::convert::Infallible;
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! static TENANT: Propagated<String> = Propagated::text("tenant");
//! let registry = Registry::builder().register(&TENANT).build().unwrap();
//!
//! // A server that answers with the tenant it sees.
//! let handler = tower::service_fn(|_request: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new(TENANT.get().unwrap_or_default()))
//! });
//! let server = ServerLayer::new(registry.clone()).layer(handler);
//! // A client that calls it in-process (a real one would send the request over HTTP).
//! let mut client = ClientLayer::new(registry).layer(server);
//!
//! TENANT.set("acme".into());
//! let response = futures_executor::block_on(client.call(Request::new(String::new()))).unwrap();
//! assert_eq!(response.into_body(), "acme");
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context as TaskContext, Poll};

use contextvars::{Context, get_execution_context};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::BaggagePropagator;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::propagate::{Carrier, Key, PropagationError, Registry, baggage};

/// The header's name.
pub const BAGGAGE: &str = "baggage";

/// [`BAGGAGE`] as a header name, so that no lookup parses it again.
const BAGGAGE_NAME: HeaderName = HeaderName::from_static(BAGGAGE);

/// Up to this many header names, a request's `baggage` headers are found by comparing names.
const SCAN_HEADERS_MAX: usize = 8;

/// Most members OpenTelemetry 0.33's `Baggage` holds (it drops the rest silently); a longer
/// list is joined here instead.
const OTEL_MAX_MEMBERS: usize = 64;

/// Reads the registered variables of incoming requests from their `baggage` headers.
///
/// ```
/// use exec_context::propagate::{Propagated, Registry};
/// use exec_context::service::ServerLayer;
///
/// static TENANT: Propagated<String> = Propagated::text("tenant");
/// let registry = Registry::builder().register(&TENANT).build().unwrap();
/// let layer = ServerLayer::new(registry).strict(true);
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct ServerLayer {
    registry: Registry,
    strict: bool,
}

impl ServerLayer {
    /// A lenient layer for the variables of `registry`.
    pub fn new(registry: Registry) -> Self {
        ServerLayer {
            registry,
            strict: false,
        }
    }

    /// In strict mode a request with any problem in its `baggage` headers (including a key
    /// that is not registered) is answered `400 Bad Request` without reaching the inner
    /// service. It is reported as in lenient mode.
    ///
    /// Strict means the W3C Baggage grammar, which has no empty list-members: a header with
    /// an empty element (`a=1,,b=2`, a trailing comma) is turned away too. (RFC 9110 asks
    /// recipients of list-based fields to ignore such elements; lenient mode does, but for a
    /// report, and they never count towards the 180 list-members.)
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = Server<S>;

    fn layer(&self, inner: S) -> Server<S> {
        Server {
            inner,
            registry: self.registry.clone(),
            strict: self.strict,
        }
    }
}

/// The service [`ServerLayer`] makes.
#[derive(Clone, Debug)]
pub struct Server<S> {
    inner: S,
    registry: Registry,
    strict: bool,
}

impl Registry {
    /// Decodes the `baggage` headers of `headers` into a fresh [`Context`] holding the
    /// registered variables found there; reports the problems (one [`Report`] for all of
    /// them) and returns whether there were any. The values go straight into the new context
    /// ([`contextvars::ContextBuilder`]): it is not entered to build it, so context watchers
    /// are not told of them (but of variables that opted out of inheritance, which the
    /// builder sets inside the new context), and the codecs run in the caller's context.
    ///
    /// Requests often carry the same header. When every member of a (single) header is a
    /// [`Propagated::text`](crate::propagate::Propagated::text) variable of `String`, `bool`,
    /// `char` or an integer type that is inherited, and the header decoded without a
    /// problem, the thread
    /// remembers the context (for 256 headers, from the second request that brings one) and
    /// later gives each request with the same header bytes its own copy of it (O(1), PEP
    /// 567's `copy()`): what the request's code sets stays in its copy. Nothing can tell this
    /// from a fresh decode: these values are immutable, their `FromStr` is pure, and dropping
    /// them only frees memory. What compares value objects by identity sees the same objects
    /// (`Context`'s `==` holds between two such requests' contexts). Any other codec runs for
    /// every request; a header with a problem is decoded and reported every time; nothing is
    /// remembered while the current context holds [pinned](contextvars::ContextVar::pinned)
    /// values, which a fresh context takes.
    ///
    /// [`Report`]: crate::propagate::Report
    ///
    /// ```
    /// use exec_context::propagate::{Propagated, Registry};
    /// use http::HeaderMap;
    ///
    /// static TENANT: Propagated<String> = Propagated::text("tenant");
    /// let registry = Registry::builder().register(&TENANT).build().unwrap();
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("baggage", "tenant=acme%20corp".parse().unwrap());
    /// let (context, had_errors) = registry.extract(&headers);
    /// assert_eq!(context.get(&TENANT).as_deref(), Some("acme corp"));
    /// assert!(!had_errors);
    /// ```
    pub fn extract(&self, headers: &HeaderMap) -> (Context, bool) {
        // A request has few headers: comparing their names costs less than hashing ours.
        let scan = headers.keys_len() <= SCAN_HEADERS_MAX;
        let scanned = scan.then(|| {
            headers
                .iter()
                .filter(|(name, _)| *name == BAGGAGE_NAME)
                .map(|(_, value)| value)
        });
        let looked_up = (!scan).then(|| headers.get_all(&BAGGAGE_NAME).iter());
        let mut values = scanned
            .into_iter()
            .flatten()
            .chain(looked_up.into_iter().flatten());
        let Some(first) = values.next() else {
            return (Context::new(), false);
        };
        let (context, errors) = match values.next() {
            // The usual case: one header.
            None => self.decode_baggage(first.as_bytes()),
            Some(second) => {
                let all = [first, second].into_iter().chain(values);
                let parsed = baggage::parse(all.map(HeaderValue::as_bytes));
                let mut errors = parsed.errors;
                let (context, decode_errors) =
                    self.decode_context(&parsed.members, &parsed.malformed_keys);
                errors.extend(decode_errors);
                (context, errors)
            }
        };
        let had_errors = !errors.is_empty();
        self.report_errors(Carrier::IncomingBaggage, errors);
        (context, had_errors)
    }

    /// Writes the registered variables of the current context into the `baggage` header of
    /// `headers`. The registered keys follow the context: a member the header already has
    /// under a registered key is replaced by the variable's value, or removed if the variable
    /// has none (the callee sees only what the caller's context holds). Members under other
    /// keys are kept as they were written, even if they alone pass a W3C limit: they are not
    /// the registry's to drop. Variables without a value are not written; a header left
    /// without members is removed. Members of ours that would take the header past a W3C
    /// limit are left out whole and reported.
    ///
    /// ```
    /// use exec_context::propagate::{Propagated, Registry};
    /// use http::HeaderMap;
    ///
    /// static TENANT: Propagated<String> = Propagated::text("tenant");
    /// static REGION: Propagated<String> = Propagated::text("region");
    /// let registry = Registry::builder().register(&TENANT).register(&REGION).build().unwrap();
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("baggage", "other=1,tenant=old,region=stale".parse().unwrap());
    /// TENANT.set("a=b".into()); // REGION has no value here
    /// registry.inject(&mut headers);
    /// assert_eq!(headers["baggage"], "other=1,tenant=a%3Db");
    /// ```
    pub fn inject(&self, headers: &mut HeaderMap) {
        if headers.contains_key(&BAGGAGE_NAME) {
            let (ours, mut errors) = self.encode_escaped(&get_execution_context());
            errors.extend(merge(headers, ours, |key| {
                self.index_of_bytes(key).is_some()
            }));
            self.report_errors(Carrier::OutgoingBaggage, errors);
            return;
        }
        // The usual case: the header is ours alone. When the values are the very objects a
        // header was written from lately, that header is sent again (see `by_identity`).
        // Their keys are read through the variables' own lookups, without a snapshot of
        // the context (which costs an allocation whenever the thread's cached one was let go,
        // as after each poll of a task that carries its context): a remembered header needs
        // nothing else.
        let by_identity = self.all_shareable(by_identity::MAX_VARS);
        let mut keys = [Key::Absent; by_identity::MAX_VARS];
        let keys = &mut keys[..self.var_count().min(by_identity::MAX_VARS)];
        if by_identity {
            self.keys_current(keys);
            if keys.iter().all(|&key| key == Key::Absent) {
                // No value: nothing to write, nothing to report.
                return;
            }
            if let Some(value) = by_identity::get(keys) {
                headers.insert(BAGGAGE_NAME, value);
                return;
            }
        }
        // Nothing changed the context since the keys were read: the snapshot holds the same
        // values.
        let ec = get_execution_context();
        // The members are joined in a buffer the thread keeps (taken out while the codecs
        // run, which may send requests themselves).
        let mut joined = SCRATCH
            .try_with(|scratch| std::mem::take(&mut *scratch.borrow_mut()))
            .unwrap_or_default();
        joined.clear();
        let mut errors = Vec::new();
        let members = self.write_current(&ec, &mut joined, &mut errors);
        if members > 0
            && let Ok(value) = HeaderValue::from_str(join_direct(&joined, members))
        {
            if by_identity && errors.is_empty() && value.len() <= by_identity::MAX_LEN {
                by_identity::put(keys, || self.identities(&ec), &value);
            }
            headers.insert(BAGGAGE_NAME, value);
        }
        // A value over the limit (dropped, and reported) grew the buffer past any header:
        // the thread does not keep that much (it is freed as it is, like the request's own
        // header). A buffer it keeps goes back wiped over its whole capacity, members the
        // writing cut off included: none of this request's values stay in memory the thread
        // holds. (Its capacity is that of the largest header written on the thread: usually
        // a few hundred bytes to overwrite, at most `SCRATCH_MAX`, 32 KiB, about a
        // microsecond, on a thread that once wrote a header that large.)
        if joined.capacity() <= SCRATCH_MAX {
            let mut bytes = joined.into_bytes();
            bytes.fill(0);
            bytes.resize(bytes.capacity(), 0);
            bytes.clear();
            let joined = String::from_utf8(bytes).unwrap_or_default();
            let _ = SCRATCH.try_with(|scratch| *scratch.borrow_mut() = joined);
        }
        self.report_errors(Carrier::OutgoingBaggage, errors);
    }
}

/// Writes `ours` into the `baggage` header of `headers`, which already has one: members
/// under keys that are not `registered` are kept as they were written; those under
/// registered keys give way to `ours` (a registered variable without a value has no member).
fn merge(
    headers: &mut HeaderMap,
    ours: Vec<(&'static str, String)>,
    registered: impl Fn(&[u8]) -> bool,
) -> Vec<PropagationError> {
    let mut kept: Vec<&[u8]> = Vec::new();
    for value in headers.get_all(&BAGGAGE_NAME) {
        for raw in value.as_bytes().split(|&b| b == b',') {
            let raw = raw.trim_ascii();
            let end = raw
                .iter()
                .position(|&b| b == b'=' || b == b';')
                .unwrap_or(raw.len());
            let key = raw[..end].trim_ascii();
            if !raw.is_empty() && !registered(key) {
                kept.push(raw);
            }
        }
    }
    let already = (
        kept.iter().map(|m| m.len()).sum::<usize>() + kept.len().saturating_sub(1),
        kept.len(),
    );
    let (members, dropped) = baggage::fit(ours, already);
    let errors = dropped
        .into_iter()
        .map(|key| PropagationError::OverLimit {
            key: key.to_string(),
        })
        .collect();
    let written = write_members(&members);
    let value = if kept.is_empty() {
        HeaderValue::try_from(written)
    } else {
        let mut joined = kept.join(&b","[..]);
        if !written.is_empty() {
            joined.push(b',');
            joined.extend_from_slice(written.as_bytes());
        }
        HeaderValue::try_from(joined)
    };
    headers.remove(&BAGGAGE_NAME);
    match value {
        Ok(value) if !value.is_empty() => {
            headers.insert(BAGGAGE_NAME, value);
        }
        _ => {}
    }
    errors
}

/// Header values remembered per thread by the identity of the values they were written from.
///
/// A context sends the same value objects with each of its requests. When every variable of
/// the registry is a [`Propagated::text`](crate::propagate::Propagated::text) variable of a
/// plain standard type (as for the server's remembered contexts, see `shared`), the header
/// written from some value objects is a function of those objects alone: they are immutable
/// and their `Display` is the standard library's, pure and deterministic. So the thread
/// remembers, for the last headers it wrote without a problem, the [`Key`]s of the values
/// they were written from (from the second time the same header is written from values
/// with the same keys: values that change with every request are not remembered; the thread
/// notes a hash of both for up to 256 headers written once lately, `shared::Seen`).
///
/// A value of at most 8 bytes (an integer, a `bool`, a `char`) is keyed by its variable and
/// its bits, which say all. Any other value (a `String`) is keyed by its address, and the
/// thread keeps weak handles on those values
/// ([`ExecutionContext::identities`](contextvars::ExecutionContext::identities)): while they
/// live, the values' allocations stay (not the values: each is dropped with its last
/// context), so no other object can have their addresses, and a request whose variables hold
/// live values at the same addresses holds the same objects, and gets the same header. The
/// request's code reads nothing else: no value is encoded, no text compared.
///
/// Memory per thread: at most 256 headers of at most [`MAX_LEN`](by_identity::MAX_LEN)
/// bytes each (longer ones are written afresh every time), with their weak handles; the
/// header text outlives its values until its entry is replaced.
mod by_identity {
    use std::cell::RefCell;

    use contextvars::Identities;
    use http::HeaderValue;

    use crate::propagate::Key;
    use crate::propagate::shared::{Seen, Table};

    /// Registries with more variables are not remembered this way.
    pub(super) const MAX_VARS: usize = 8;
    /// Longer headers are not remembered (the same bound as the server's).
    pub(super) const MAX_LEN: usize = crate::propagate::shared::MAX_LEN;
    /// Sets of the table (of four entries each), chosen by a hash of the addresses: 256
    /// entries, so that a few dozen callers per thread, each with its own values, rarely
    /// fill a set (with 64 entries, 32 callers overflowed some set more often than not, and
    /// the callers of that set wrote their headers afresh in turn).
    const SETS: usize = 64;

    /// No registry is part of the key: a value object belongs to one variable (and a key by
    /// value names its variable), and each variable has one wire name and one codec, so the
    /// keys, position by position, say which members the header holds and in which order,
    /// whichever registry reads them.
    struct Entry {
        keys: [Key; MAX_VARS],
        /// Keeps the allocations at the keys' addresses (not the values): no other value can
        /// be allocated there while the entry lives.
        _held: Identities,
        value: HeaderValue,
    }

    /// The headers remembered, and the keys of those written once lately: a header is
    /// remembered the second time the same values are written, so that values that change
    /// with every request (a fresh id each time) cost no entry.
    struct Memory {
        table: Table<Entry, SETS>,
        seen: Seen<SEEN>,
    }

    /// Sets (of four) of the value sets written once that a thread keeps track of: 256 in
    /// all, a key forgotten once four newer ones came to its set.
    const SEEN: usize = 64;

    thread_local! {
        static MEMORY: RefCell<Memory> = const {
            RefCell::new(Memory {
                table: Table::new(),
                seen: Seen::new(),
            })
        };
    }

    /// A hash of `keys` without its trailing absent ones (variables without a value), as the
    /// padded key is compared.
    fn hash(keys: &[Key]) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let len = keys
            .iter()
            .rposition(|&key| key != Key::Absent)
            .map_or(0, |last| last + 1);
        keys[..len].iter().fold(K, |hash, &key| {
            let word = match key {
                Key::Absent => 0,
                Key::At(addr) => addr as u64,
                Key::Value { var, bits } => var.rotate_left(32) ^ bits,
            };
            (hash ^ word).wrapping_mul(K)
        })
    }

    fn padded(keys: &[Key]) -> [Key; MAX_VARS] {
        let mut all = [Key::Absent; MAX_VARS];
        all[..keys.len()].copy_from_slice(keys);
        all
    }

    /// The header remembered for values with `keys` (at most [`MAX_VARS`], in the order of a
    /// registry's variables).
    pub(super) fn get(keys: &[Key]) -> Option<HeaderValue> {
        let hash = hash(keys);
        let keys = padded(keys);
        MEMORY
            .try_with(|memory| {
                memory
                    .borrow()
                    .table
                    .find(hash, |entry| entry.keys == keys)
                    .map(|entry| entry.value.clone())
            })
            .ok()
            .flatten()
    }

    /// How many remembered values are still alive (held by some context), on this thread.
    #[cfg(test)]
    pub(super) fn live_values() -> usize {
        MEMORY.with(|memory| {
            let memory = memory.borrow();
            memory.table.iter().map(|entry| entry._held.live()).sum()
        })
    }

    /// Remembers `value`, written from the values with `keys`, with handles (made by `held`)
    /// that keep the allocations of those keyed by address, if the same values were written
    /// before (lately, on this thread); otherwise only notes that they were.
    ///
    /// "The same values" is told by their keys and the header written from them: the
    /// addresses alone would not do, since values dropped with their context leave their
    /// addresses to the next context's values (a server making a fresh context per request
    /// gets its new tenant string at the old one's address), and one-off values would then be
    /// remembered from their first write.
    pub(super) fn put(keys: &[Key], held: impl FnOnce() -> Identities, value: &HeaderValue) {
        let hash = hash(keys);
        let written =
            hash ^ crate::propagate::shared::hash(value.as_bytes()).rotate_left(u64::BITS / 2);
        let _ = MEMORY.try_with(|memory| {
            if !memory.borrow_mut().seen.offer(written) {
                return;
            }
            let entry = Entry {
                keys: padded(keys),
                _held: held(),
                value: value.clone(),
            };
            // The replaced entry is dropped after the borrow ends.
            let replaced = memory.borrow_mut().table.insert(hash, entry);
            drop(replaced);
        });
    }
}

thread_local! {
    /// The buffer the client joins the members of a request's header in.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The largest [`SCRATCH`] a thread keeps between requests: room for a header at the W3C
/// limit, with an escaped member being written past it.
const SCRATCH_MAX: usize = 4 * baggage::MAX_BYTES;

fn propagator() -> &'static BaggagePropagator {
    static PROPAGATOR: OnceLock<BaggagePropagator> = OnceLock::new();
    PROPAGATOR.get_or_init(BaggagePropagator::new)
}

/// An OpenTelemetry injector that keeps the `baggage` value it is given.
struct Capture(Option<String>);

impl Injector for Capture {
    fn set(&mut self, key: &str, value: String) {
        if key == BAGGAGE {
            self.0 = Some(value);
        }
    }
}

/// Joins already escaped `key=value` members into a header value, through OpenTelemetry's
/// propagator where it can hold them all.
fn write_members(members: &[(&str, String)]) -> String {
    let mut joined = String::new();
    for (key, value) in members {
        joined.push_str(key);
        joined.push('=');
        joined.push_str(value);
        joined.push(',');
    }
    write_joined(&joined, members.len())
}

/// The header value for `members` members, each followed by a comma in `joined`, written
/// by [`Registry::write_current`](crate::propagate::Registry): the members joined, as they
/// are.
///
/// Up to its 64 members, these are the members OpenTelemetry's propagator writes for them
/// ([`write_joined`]), in the registry's order (its `Baggage` is a hash map), without its cost (a
/// `Baggage` map, a `Context`, a `String` per key and value: about 8,500 instructions for
/// two members). What the propagator checks and does holds here already: the keys are wire
/// names, checked to be tokens when the registry is built; the values are escaped to
/// unreserved characters and `%XX`, which its percent-encoding set (controls, space, `"`,
/// `;`, `,`, `=`, non-ASCII) leaves as they are and its trim does not touch;
/// and `write_current` keeps the list within the W3C limits (8,192 bytes, 180 members),
/// which are wider than its own (64 members): a longer list is joined here in any case.
/// `join_is_what_opentelemetry_writes` checks this against the propagator.
fn join_direct(joined: &str, members: usize) -> &str {
    debug_assert_eq!(joined.matches(',').count(), members);
    joined.strip_suffix(',').unwrap_or(joined)
}

/// [`write_members`] for `members` members each followed by a comma in `joined`.
fn write_joined(joined: &str, members: usize) -> String {
    let pairs = || {
        joined
            .split_terminator(',')
            .filter_map(|member| member.split_once('='))
    };
    if members == 0 {
        return String::new();
    }
    if members <= OTEL_MAX_MEMBERS {
        let mut bag = Baggage::new();
        for (key, value) in pairs() {
            bag.insert(key.to_owned(), value.to_owned());
        }
        if bag.len() == members {
            let cx = opentelemetry::Context::new().with_baggage(bag);
            let mut capture = Capture(None);
            propagator().inject_context(&cx, &mut capture);
            if let Some(value) = capture.0 {
                return value;
            }
        }
    }
    // Escaped values are baggage-octets and keys are tokens: joining them is the whole format.
    joined.strip_suffix(',').unwrap_or(joined).to_owned()
}

pin_project! {
    /// The future of [`Server`]: the inner service's future, run in the request's context
    /// (or strict mode's `400 Bad Request`). Each poll runs in the context, and the inner
    /// future is dropped in it: at once when it completes (in the poll that completed it),
    /// otherwise when this future is dropped.
    pub struct ServerFuture<F, B> {
        #[pin]
        inner: Option<F>,
        context: Context,
        // Boxed: strict mode's rare answer should not make every request's future (moved
        // several times by hyper and tower) larger by a whole `Response`.
        rejected: Option<Box<Response<B>>>,
    }

    impl<F, B> PinnedDrop for ServerFuture<F, B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let mut inner = this.inner;
            if inner.as_mut().as_pin_mut().is_some() {
                this.context.run(|| inner.set(None));
            }
        }
    }
}

impl<F, B, E> Future for ServerFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut inner = this.inner;
        if inner.is_none() {
            return match this.rejected.take() {
                Some(response) => Poll::Ready(Ok(*response)),
                // Polled again after completion.
                None => Poll::Pending,
            };
        }
        this.context.run(|| {
            let Some(future) = inner.as_mut().as_pin_mut() else {
                return Poll::Pending;
            };
            let output = future.poll(cx);
            if output.is_ready() {
                // Dropped here, in the context, rather than by a later entry into it.
                inner.set(None);
            }
            output
        })
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Server<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ServerFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut context, had_errors) = self.registry.extract(request.headers());
        if had_errors && self.strict {
            let mut response = Response::new(ResBody::default());
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return ServerFuture {
                inner: None,
                context: Context::default(),
                rejected: Some(Box::new(response)),
            };
        }
        // `call` itself may read the context (a handler's synchronous part): it runs inside.
        let inner = context.run(|| self.inner.call(request));
        ServerFuture {
            inner: Some(inner),
            context,
            rejected: None,
        }
    }
}

/// Writes the registered variables of the caller's context into outgoing requests' `baggage`
/// headers (see [`Registry::inject`]).
///
/// The context read is the one current where [`Client`]'s `call` runs, at the call. Put the
/// layer outside anything that calls its inner service from another task, such as tower's
/// `Buffer` (a worker task that calls the inner service for every caller): beneath it, the
/// layer would read the worker's context, not the caller's. With `ServiceBuilder`, list it
/// before (above) such layers.
///
/// ```
/// use exec_context::propagate::{Propagated, Registry};
/// use exec_context::service::ClientLayer;
///
/// static TENANT: Propagated<String> = Propagated::text("tenant");
/// let registry = Registry::builder().register(&TENANT).build().unwrap();
/// let layer = ClientLayer::new(registry);
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct ClientLayer {
    registry: Registry,
}

impl ClientLayer {
    /// A layer for the variables of `registry`.
    pub fn new(registry: Registry) -> Self {
        ClientLayer { registry }
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = Client<S>;

    fn layer(&self, inner: S) -> Client<S> {
        Client {
            inner,
            registry: self.registry.clone(),
        }
    }
}

/// The service [`ClientLayer`] makes.
#[derive(Clone, Debug)]
pub struct Client<S> {
    inner: S,
    registry: Registry,
}

impl<S, B> Service<Request<B>> for Client<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        self.registry.inject(request.headers_mut());
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagate::Propagated;

    static ID: Propagated<u64> = Propagated::text("id");
    static NAME: Propagated<String> = Propagated::text("name");
    static TAGS: Propagated<Vec<String>> = Propagated::json("tags");

    /// The members of the header `registry` writes here, sorted (OpenTelemetry's propagator
    /// does not keep their order).
    fn sent(registry: &Registry) -> Option<String> {
        let mut headers = HeaderMap::new();
        registry.inject(&mut headers);
        headers.get(BAGGAGE).map(|value| {
            let mut members: Vec<_> = value.to_str().unwrap().split(',').collect();
            members.sort_unstable();
            members.join(",")
        })
    }

    /// A value far over the header limit is dropped (and reported), and the thread does not
    /// keep the buffer it grew; the buffer it keeps holds nothing of the last request.
    #[test]
    fn an_oversized_value_leaves_no_large_buffer_behind() {
        let registry = Registry::builder()
            .register(&ID)
            .register(&NAME)
            .build()
            .unwrap();
        let capacity = || SCRATCH.with(|scratch| scratch.borrow().capacity());
        Context::new().run(|| {
            ID.set(7);
            NAME.set("é".repeat(1 << 20)); // 2 MiB, 6 MiB escaped
            assert_eq!(sent(&registry).as_deref(), Some("id=7"));
            assert!(capacity() <= SCRATCH_MAX, "{} bytes kept", capacity());
            // An ordinary header still keeps the buffer for the next request.
            NAME.set("acme".to_string());
            assert_eq!(sent(&registry).as_deref(), Some("id=7,name=acme"));
            assert!(capacity() > 0);
            // Empty, though: the request's values do not stay in the thread's memory (the
            // bytes are overwritten too, which safe code cannot look at).
            let kept = SCRATCH.with(|scratch| scratch.borrow().clone());
            assert_eq!(kept, "", "the last header written stays in the thread");
        });
    }

    /// A `baggage` header already on the request keeps its members under other keys as they
    /// are; members under registered keys follow the current context.
    #[test]
    fn a_header_already_there_keeps_other_keys_and_follows_the_context_for_ours() {
        let registry = Registry::builder()
            .register(&ID)
            .register(&NAME)
            .build()
            .unwrap();
        let injected = |existing: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in existing {
                headers.append(BAGGAGE, value.parse().unwrap());
            }
            registry.inject(&mut headers);
            let values: Vec<_> = headers
                .get_all(BAGGAGE)
                .iter()
                .map(|value| value.to_str().unwrap().to_string())
                .collect();
            values
        };
        contextvars::Context::new().run(|| {
            // No variable has a value: stale members of ours go, the others stay.
            assert_eq!(injected(&["other=1,id=7", "name=old;p"]), ["other=1"]);
            assert!(
                injected(&["id=7"]).is_empty(),
                "a header left empty is removed"
            );
            assert_eq!(injected(&["other=1;p=2, x=y"]), ["other=1;p=2,x=y"]);
            ID.set(8);
            assert_eq!(injected(&["name=old,other=1", "id=7"]), ["other=1,id=8"]);
            assert_eq!(injected(&["id = 7 ; p"]), ["id=8"]);
        });
    }

    fn keys(registry: &Registry) -> Vec<Key> {
        let mut keys = vec![Key::Absent; registry.var_count()];
        registry.keys_current(&mut keys);
        keys
    }

    /// Values made one after the other, each dropped before the next is made, often land at
    /// the same address: each still gets a header of its own, because a remembered header
    /// keeps the values it was written from alive.
    #[test]
    fn values_at_reused_addresses_get_their_own_header() {
        let registry = Registry::builder()
            .register(&ID)
            .register(&NAME)
            .build()
            .unwrap();
        assert!(registry.all_shareable(by_identity::MAX_VARS));
        let rounds = if cfg!(miri) { 20 } else { 300 };
        let mut remembered = 0;
        for i in 0..rounds {
            let mut context = contextvars::Context::new();
            context.run(|| {
                ID.set(i);
                NAME.set(format!("n{i}"));
                let expected = format!("id={i},name=n{i}");
                assert_eq!(sent(&registry).as_deref(), Some(expected.as_str()));
                // Written once: not remembered by identity yet, though the values may sit
                // at the addresses of an earlier round's.
                assert!(by_identity::get(&keys(&registry)).is_none());
                assert_eq!(sent(&registry).as_deref(), Some(expected.as_str()));
                // Written twice: remembered, and sent from memory.
                let hit = by_identity::get(&keys(&registry));
                remembered += usize::from(hit.is_some());
                assert_eq!(sent(&registry).as_deref(), Some(expected.as_str()));
                // A value replaced in the same context is sent as it is now.
                ID.set(i + 1);
                let expected = format!("id={},name=n{i}", i + 1);
                assert_eq!(sent(&registry).as_deref(), Some(expected.as_str()));
            });
        }
        assert_eq!(remembered, rounds as usize);
        // Nothing set: no header.
        contextvars::Context::new().run(|| assert_eq!(sent(&registry), None));
    }

    /// Values written once (a fresh id with each request) are not remembered: only the
    /// second write of the same value objects is.
    #[test]
    fn values_written_once_are_not_remembered() {
        let registry = Registry::builder()
            .register(&ID)
            .register(&NAME)
            .build()
            .unwrap();
        let rounds = if cfg!(miri) { 10 } else { 100 };
        // Every context is kept, so that no two rounds' values share an address.
        let mut contexts = Vec::new();
        for i in 0..rounds {
            let mut context = contextvars::Context::new();
            context.run(|| {
                ID.set(i);
                NAME.set("same".into());
                let expected = format!("id={i},name=same");
                assert_eq!(sent(&registry).as_deref(), Some(expected.as_str()));
                assert!(by_identity::get(&keys(&registry)).is_none());
            });
            contexts.push(context);
        }
        // The last round's values, written a second time, are.
        let last = rounds - 1;
        contexts[last as usize].run(|| {
            assert_eq!(sent(&registry), Some(format!("id={last},name=same")));
            assert!(by_identity::get(&keys(&registry)).is_some());
        });
    }

    /// The members are written in the order the registry lists its variables.
    #[test]
    fn members_are_written_in_registration_order() {
        for id_first in [true, false] {
            let builder = Registry::builder();
            let builder = if id_first {
                builder.register(&ID).register(&NAME)
            } else {
                builder.register(&NAME).register(&ID)
            };
            let registry = builder.build().unwrap();
            contextvars::Context::new().run(|| {
                ID.set(7);
                NAME.set("x".into());
                let mut headers = HeaderMap::new();
                registry.inject(&mut headers);
                let expected = if id_first {
                    "id=7,name=x"
                } else {
                    "name=x,id=7"
                };
                assert_eq!(headers.get(BAGGAGE).unwrap(), expected);
            });
        }
    }

    /// A server's pattern: a fresh context per request, with a fresh id, dropped when the
    /// request ends. The next request's values usually take the last one's addresses; they
    /// are still written once each, and not remembered, and a context that does repeat keeps
    /// its remembered header meanwhile.
    #[test]
    fn fresh_values_at_reused_addresses_are_not_remembered() {
        let registry = Registry::builder()
            .register(&ID)
            .register(&NAME)
            .build()
            .unwrap();
        let rounds = if cfg!(miri) { 10 } else { 500 };
        let mut hot = contextvars::Context::new();
        hot.run(|| {
            ID.set(u64::MAX);
            NAME.set("hot".into());
            sent(&registry);
            sent(&registry);
            assert!(by_identity::get(&keys(&registry)).is_some());
        });
        for i in 0..rounds {
            contextvars::Context::new().run(|| {
                ID.set(1_000_000 + i);
                NAME.set("same".into());
                assert_eq!(
                    sent(&registry),
                    Some(format!("id={},name=same", 1_000_000 + i))
                );
                assert!(by_identity::get(&keys(&registry)).is_none());
            });
            hot.run(|| {
                assert!(by_identity::get(&keys(&registry)).is_some());
                assert_eq!(
                    sent(&registry).as_deref(),
                    Some("id=18446744073709551615,name=hot")
                );
            });
        }
    }

    /// What the client writes is what OpenTelemetry's propagator writes for the same
    /// members, but for their order: values of every kind of character, escaped by
    /// `write_current`.
    #[test]
    fn join_is_what_opentelemetry_writes() {
        let values = [
            "plain",
            "a=b",
            "with space",
            " lead and trail ",
            "100%",
            "%41",
            "a,b;c",
            "\"quoted\" <tag> `tick`",
            "naïve ☃ 𝄞",
            "\u{0}\t\n\u{7f}",
            "",
            "~._-",
        ];
        let registry = Registry::builder()
            .register(&ID)
            .register(&NAME)
            .build()
            .unwrap();
        let sorted = |header: &str| {
            let mut members: Vec<_> = header.split(',').map(str::to_owned).collect();
            members.sort_unstable();
            members
        };
        for value in values {
            contextvars::Context::new().run(|| {
                ID.set(7);
                NAME.set(value.to_owned());
                let mut joined = String::new();
                let mut errors = Vec::new();
                let ec = get_execution_context();
                let members = registry.write_current(&ec, &mut joined, &mut errors);
                assert!(errors.is_empty());
                assert_eq!(members, 2);
                let direct = join_direct(&joined, members);
                let otel = write_joined(&joined, members);
                assert_eq!(sorted(direct), sorted(&otel), "{value:?}");
                assert_eq!(sent(&registry).unwrap(), sorted(direct).join(","));
                // And OpenTelemetry reads the value back.
                let mut carrier = std::collections::HashMap::new();
                carrier.insert(BAGGAGE.to_owned(), direct.to_owned());
                let cx = propagator().extract(&carrier);
                let read = cx.baggage().get("name").map(|v| v.as_str().to_owned());
                if !value.contains('=') && value.trim() == value {
                    // (Where OpenTelemetry 0.33 reads correctly: see `propagate::baggage`.)
                    assert_eq!(read.as_deref(), Some(value), "{value:?}");
                }
            });
        }
    }

    /// What the client remembers keeps no value alive: the values leave with their last
    /// context, and the memory still answers for the objects that live.
    #[test]
    fn remembered_values_leave_with_their_last_context() {
        let registry = Registry::builder()
            .register(&ID)
            .register(&NAME)
            .build()
            .unwrap();
        let mut context = contextvars::Context::new();
        context.run(|| {
            ID.set(41);
            NAME.set("kept".into());
            assert_eq!(sent(&registry).as_deref(), Some("id=41,name=kept"));
            assert_eq!(sent(&registry).as_deref(), Some("id=41,name=kept"));
            assert!(by_identity::get(&keys(&registry)).is_some());
        });
        // The name is held by address; the id, kept by value, needs no handle.
        assert_eq!(by_identity::live_values(), 1);
        drop(context);
        assert_eq!(by_identity::live_values(), 0);
    }

    /// Values keyed by address are lent in place by `with` (so a live value's address is
    /// its own); the types `contextvars` stores inline, lent as copies, are keyed by value.
    #[test]
    fn addresses_are_kept_only_for_values_lent_in_place() {
        use contextvars::{ContextVar, get_execution_context};
        static TEXT: ContextVar<String> = ContextVar::new("text");
        static WIDE: ContextVar<u128> = ContextVar::new("wide");
        static SIGNED: ContextVar<i128> = ContextVar::new("signed");
        fn lent_in_place<T: Send + Sync + 'static>(var: &'static ContextVar<T>, value: T) {
            assert_eq!(Key::bits_of(&value), None);
            contextvars::Context::new().run(|| {
                var.set(value);
                let lent = var.with(|value| std::ptr::from_ref(value.unwrap()).addr());
                let held = std::ptr::from_ref(get_execution_context().get_ref(var).unwrap());
                assert_eq!(lent, held.addr(), "{} is lent as a copy", var.name());
            });
        }
        lent_in_place(&TEXT, "a".into());
        lent_in_place(&WIDE, u128::MAX);
        lent_in_place(&SIGNED, -1);
        for bits in [
            Key::bits_of(&1_u8),
            Key::bits_of(&-1_i64),
            Key::bits_of(&true),
            Key::bits_of(&'c'),
            Key::bits_of(&0.5_f64),
            Key::bits_of(&usize::MAX),
        ] {
            assert!(bits.is_some());
        }
        assert_ne!(Key::bits_of(&-1_i8), Key::bits_of(&-2_i8));
    }

    /// A registry with a variable of another codec writes every header afresh.
    #[test]
    fn other_codecs_are_not_remembered_by_identity() {
        let registry = Registry::builder()
            .register(&NAME)
            .register(&TAGS)
            .build()
            .unwrap();
        assert!(!registry.all_shareable(by_identity::MAX_VARS));
        contextvars::Context::new().run(|| {
            NAME.set("a".into());
            TAGS.set(vec!["x".into()]);
            assert_eq!(
                sent(&registry).as_deref(),
                Some("name=a,tags=%5B%22x%22%5D")
            );
            assert_eq!(by_identity::get(&keys(&registry)), None);
        });
    }

    /// The header `registry` writes here, as it is (members in the order written).
    fn sent_raw(registry: &Registry) -> Option<String> {
        let mut headers = HeaderMap::new();
        registry.inject(&mut headers);
        headers
            .get(BAGGAGE)
            .map(|value| value.to_str().unwrap().to_owned())
    }

    /// A remembered header is keyed by the addresses of the values in the order a registry
    /// lists its variables, without the registry: two registries over the same variables in
    /// another order each get their members in their own order, also from memory; and a
    /// registry whose extra variables have no value is answered from the header another
    /// registry wrote, which is the same header.
    #[test]
    fn remembered_headers_follow_the_order_of_the_variables() {
        let name_id = Registry::builder()
            .register(&NAME)
            .register(&ID)
            .build()
            .unwrap();
        let id_name = Registry::builder()
            .register(&ID)
            .register(&NAME)
            .build()
            .unwrap();
        let name_only = Registry::builder().register(&NAME).build().unwrap();
        contextvars::Context::new().run(|| {
            NAME.set("a".into());
            ID.set(1);
            for round in 0..3 {
                if round == 2 {
                    // Both remembered, apart.
                    let one = by_identity::get(&keys(&name_id)).unwrap();
                    let other = by_identity::get(&keys(&id_name)).unwrap();
                    assert_eq!(one, "name=a,id=1");
                    assert_eq!(other, "id=1,name=a");
                }
                assert_eq!(sent_raw(&name_id).as_deref(), Some("name=a,id=1"));
                assert_eq!(sent_raw(&id_name).as_deref(), Some("id=1,name=a"));
            }
        });
        contextvars::Context::new().run(|| {
            NAME.set("b".into());
            assert_eq!(sent_raw(&name_only).as_deref(), Some("name=b"));
            assert_eq!(sent_raw(&name_only).as_deref(), Some("name=b"));
            // Remembered by `name_only`, found for `name_id`, whose `ID` has no value.
            assert_eq!(by_identity::get(&keys(&name_id)).unwrap(), "name=b");
            assert_eq!(sent_raw(&name_id).as_deref(), Some("name=b"));
            // Not for `id_name`, whose members start at another position.
            assert!(by_identity::get(&keys(&id_name)).is_none());
            assert_eq!(sent_raw(&id_name).as_deref(), Some("name=b"));
            ID.set(2);
            assert_eq!(sent_raw(&name_id).as_deref(), Some("name=b,id=2"));
            // And the other way round: `name_only`'s own header, not the one `name_id`
            // remembered with both values set.
            assert_eq!(sent_raw(&name_id).as_deref(), Some("name=b,id=2"));
            assert_eq!(by_identity::get(&keys(&name_id)).unwrap(), "name=b,id=2");
            assert_eq!(sent_raw(&name_only).as_deref(), Some("name=b"));
        });
    }

    /// A header longer than `by_identity::MAX_LEN` is written afresh every time, never
    /// remembered (the thread's memory holds at most 256 headers of that length).
    #[test]
    fn long_headers_are_not_remembered() {
        std::thread::spawn(|| {
            let registry = Registry::builder().register(&NAME).build().unwrap();
            for (len, remembered) in [
                (by_identity::MAX_LEN - "name=".len(), true),
                (by_identity::MAX_LEN - "name=".len() + 1, false),
                (8_000, false),
            ] {
                contextvars::Context::new().run(|| {
                    NAME.set("x".repeat(len));
                    let expected = format!("name={}", "x".repeat(len));
                    for _ in 0..3 {
                        assert_eq!(sent_raw(&registry).as_deref(), Some(expected.as_str()));
                    }
                    assert_eq!(
                        by_identity::get(&keys(&registry)).is_some(),
                        remembered,
                        "a header of {} bytes",
                        expected.len()
                    );
                });
            }
        })
        .join()
        .unwrap();
    }

    /// The client's memory holds the headers of 32 callers, each with its own values, on one
    /// thread together (the report's load): with 16 sets of 4, some set overflowed in most
    /// trials, and its callers wrote their headers afresh in turn.
    #[test]
    fn the_headers_of_32_callers_stay_remembered_together_on_the_client() {
        let trials: u64 = if cfg!(miri) { 2 } else { 50 };
        let missed: usize = (0..trials)
            .map(|trial| {
                std::thread::spawn(move || {
                    let registry = Registry::builder()
                        .register(&ID)
                        .register(&NAME)
                        .build()
                        .unwrap();
                    let mut callers: Vec<_> = (0..32)
                        .map(|caller| {
                            let mut context = contextvars::Context::new();
                            context.run(|| {
                                ID.set(trial * 100 + caller);
                                NAME.set("acme".into());
                            });
                            context
                        })
                        .collect();
                    for _ in 0..2 {
                        for context in &mut callers {
                            context.run(|| sent_raw(&registry));
                        }
                    }
                    callers
                        .iter_mut()
                        .map(|context| context.run(|| by_identity::get(&keys(&registry)).is_none()))
                        .filter(|&missed| missed)
                        .count()
                })
                .join()
                .unwrap()
            })
            .sum();
        // A set overflows by chance now and then: with 32 callers hashed into 64 sets of 4,
        // a set receives a fifth in about 1 trial of 120, so 50 trials miss ≈ 0.45 callers on
        // average (2 in a LeakSanitizer run, whose allocator hands out other addresses; the
        // bound was once "at most 1", which that run broke). With 16 sets, 35-53 callers of
        // 1,600 missed; fewer than 1% (16) keeps that apart with room on both sides.
        assert!(
            missed * 100 < 32 * trials as usize,
            "{missed} of {} missed",
            32 * trials
        );
    }

    /// Records the context's `NAME` when dropped.
    struct DropProbe(std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>);

    impl Drop for DropProbe {
        fn drop(&mut self) {
            self.0.lock().unwrap().push(NAME.get());
        }
    }

    /// A handler whose future holds a probe, finishes after `pending` polls, and panics in
    /// its last poll if `panics`.
    fn probed(
        drops: &std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
        pending: usize,
        panics: bool,
    ) -> Server<impl Service<Request<()>, Response = Response<()>, Error = (), Future: Unpin> + use<>>
    {
        let registry = Registry::builder().register(&NAME).build().unwrap();
        let drops = drops.clone();
        let handler = tower::service_fn(move |_request: Request<()>| {
            let probe = DropProbe(drops.clone());
            let mut left = pending;
            std::future::poll_fn(move |cx| {
                let _held = &probe;
                if left > 0 {
                    left -= 1;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                assert!(!panics, "the handler gave up");
                Poll::Ready(Ok(Response::new(())))
            })
        });
        ServerLayer::new(registry).layer(handler)
    }

    fn request() -> Request<()> {
        let mut request = Request::new(());
        request
            .headers_mut()
            .insert(BAGGAGE, HeaderValue::from_static("name=acme"));
        request
    }

    /// The inner future is dropped in the request's context: in the poll that completes it,
    /// when the server's future is dropped before, and after a panic in its poll.
    #[test]
    fn the_handlers_future_is_dropped_in_the_requests_context() {
        use std::sync::{Arc, Mutex};
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        let acme = Some("acme".to_owned());

        // Completed: dropped by the poll that completed it, once.
        let drops = Arc::new(Mutex::new(Vec::new()));
        let mut future = probed(&drops, 1, false).call(request());
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        assert!(drops.lock().unwrap().is_empty());
        assert!(Pin::new(&mut future).poll(&mut cx).is_ready());
        assert_eq!(*drops.lock().unwrap(), vec![acme.clone()]);
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        drop(future);
        assert_eq!(drops.lock().unwrap().len(), 1);

        // Dropped before it completed.
        let drops = Arc::new(Mutex::new(Vec::new()));
        let mut future = probed(&drops, 5, false).call(request());
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        drop(future);
        assert_eq!(*drops.lock().unwrap(), vec![acme.clone()]);

        // A panic in its poll: the caller's context is back, and the drop still runs inside.
        let drops = Arc::new(Mutex::new(Vec::new()));
        let mut future = probed(&drops, 0, true).call(request());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = Pin::new(&mut future).poll(&mut cx);
        }));
        assert!(panicked.is_err());
        assert_eq!(NAME.get(), None);
        drop(future);
        assert_eq!(*drops.lock().unwrap(), [acme]);
    }
}
