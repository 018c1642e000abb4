//! Shareable data between Lua values and [`Shareable`], and the Lua faces of queues and
//! channels.

use std::collections::HashMap;
use std::time::Duration;

use mlua::{AnyUserData, Lua, MultiValue, UserData, UserDataMethods, Value};

use super::LuaError;
use crate::interpreters::{Queue, RecvChannel, SendChannel, Shareable};

/// How deep tuples may nest (a table holding itself would otherwise never end).
const MAX_DEPTH: usize = 64;

/// The registry name of the `UNBOUND` sentinel (one userdata per state, so `==` works).
const UNBOUND_KEY: &str = "exec_context.unbound";

/// The Lua value of `UNBOUND` (CPython 3.14's sentinel for an item whose interpreter closed).
pub(crate) struct Unbound;

impl UserData for Unbound {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method("__tostring", |_, _, ()| Ok("UNBOUND"));
    }
}

pub(crate) fn install_unbound(lua: &Lua) -> mlua::Result<AnyUserData> {
    let marker = lua.create_userdata(Unbound)?;
    lua.set_named_registry_value(UNBOUND_KEY, &marker)?;
    Ok(marker)
}

/// A [`Shareable`] as a Lua value of the interpreter `lua`. A tuple becomes a sequence
/// table (its length in `n`); a tuple that appears several times in `value` (shared, as
/// [`from_lua`] makes a table that appears several times) becomes one table, so the Lua
/// value is no larger than `value`. A value whose tuples nest more than [`MAX_DEPTH`] deep,
/// or that holds something without a Lua form (a buffer), is [`LuaError::NotShareable`].
pub(crate) fn to_lua(lua: &Lua, value: Shareable) -> mlua::Result<Value> {
    to_lua_at(lua, &value, 0, &mut HashMap::new())
}

/// [`to_lua`] of a value `depth` tuples deep; `made` holds the tables made so far, by the
/// address of their tuple's items.
fn to_lua_at(
    lua: &Lua,
    value: &Shareable,
    depth: usize,
    made: &mut HashMap<*const Shareable, mlua::Table>,
) -> mlua::Result<Value> {
    Ok(match value {
        Shareable::None => Value::Nil,
        Shareable::Bool(b) => Value::Boolean(*b),
        Shareable::Int(i) => match i64::try_from(*i) {
            Ok(i) => Value::Integer(i),
            // Beyond Lua's integers: the nearest float, as Lua's own arithmetic would give.
            Err(_) => Value::Number(*i as f64),
        },
        Shareable::Float(f) => Value::Number(*f),
        Shareable::Str(s) => Value::String(lua.create_string(s.as_bytes())?),
        Shareable::Bytes(b) => Value::String(lua.create_string(&b[..])?),
        Shareable::Tuple(items) => {
            // The tuple is held by `value` for the whole conversion: its address cannot be
            // reused by another tuple meanwhile. Only a tuple with other handles can appear
            // again (the usual tuple has none, and costs no lookup).
            let key = items.as_ptr();
            let shared = std::sync::Arc::strong_count(items) > 1;
            if shared && let Some(table) = made.get(&key) {
                return Ok(Value::Table(table.clone()));
            }
            if depth >= MAX_DEPTH {
                return Err(mlua::Error::external(LuaError::NotShareable {
                    what: format!("tuples nested more than {MAX_DEPTH} deep"),
                }));
            }
            let table = lua.create_table_with_capacity(items.len(), 1)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, to_lua_at(lua, item, depth + 1, made)?)?;
            }
            // A sequence may hold nils; `n` says how long it is (like `table.pack`).
            table.raw_set("n", items.len())?;
            if shared && !items.is_empty() {
                made.insert(key, table.clone());
            }
            Value::Table(table)
        }
        Shareable::Queue(queue) => Value::UserData(lua.create_userdata(LuaQueue(queue.clone()))?),
        Shareable::SendChannel(send) => {
            Value::UserData(lua.create_userdata(LuaSendChannel(send.clone()))?)
        }
        Shareable::RecvChannel(recv) => {
            Value::UserData(lua.create_userdata(LuaRecvChannel(recv.clone()))?)
        }
        Shareable::Unbound => Value::UserData(lua.named_registry_value(UNBOUND_KEY)?),
        other => {
            return Err(mlua::Error::external(LuaError::NotShareable {
                what: format!("a {} has no Lua form", other.type_name()),
            }));
        }
    })
}

/// Several [`Shareable`]s as Lua arguments.
pub(crate) fn to_lua_multi(
    lua: &Lua,
    values: impl IntoIterator<Item = Shareable>,
) -> mlua::Result<MultiValue> {
    values.into_iter().map(|value| to_lua(lua, value)).collect()
}

/// A Lua value as a [`Shareable`]: nil, booleans, integers, floats, strings (UTF-8 ones as
/// strings, others as bytes), sequences of those (as tuples), queues, channel ends and
/// `UNBOUND`. Anything else — a function, a table with other keys or holding a function, a
/// coroutine, any other userdata — is [`LuaError::NotShareable`], and so is a value of more
/// than [`MAX_ITEMS`] sequence items in all, counted as the receiver sees them (a table that
/// appears twice counts twice), or nested more than [`MAX_DEPTH`] tables deep. A table met
/// again is converted once, and shared.
pub(crate) fn from_lua(value: &Value) -> Result<Shareable, LuaError> {
    let mut conversion = Conversion {
        left: MAX_ITEMS,
        done: HashMap::new(),
    };
    Ok(conversion.convert(value, 0)?.value)
}

/// Most sequence items one value may carry, counted as the receiver sees them: 16 Mi (512
/// MiB of `Shareable`s). The copy is Rust memory, outside the interpreter's memory limit and
/// instruction budget, and a receiver (a Lua state, a `==`) walks every item, so it needs a
/// bound of its own; a larger declared `n` is refused before anything is allocated.
pub(crate) const MAX_ITEMS: usize = 1 << 24;

/// A converted value, with what a receiver walking it meets.
#[derive(Clone)]
struct Converted {
    value: Shareable,
    /// Tables on the longest path down (0 for anything but a table).
    height: usize,
    /// Sequence items, with every occurrence of a repeated table counted.
    items: usize,
}

/// One conversion's state: the items it may still count, and the tables it converted (by
/// address), so that a table met again is shared rather than converted again (a table
/// holding `{t, t}` twenty levels deep has 2^20 paths but twenty tables).
struct Conversion {
    left: usize,
    done: HashMap<*const std::ffi::c_void, Converted>,
}

impl Conversion {
    /// Charges `items` against the bound.
    fn charge(&mut self, items: usize) -> Result<(), LuaError> {
        if items > self.left {
            return Err(LuaError::NotShareable {
                what: format!("a value of more than {MAX_ITEMS} sequence items in all"),
            });
        }
        self.left -= items;
        Ok(())
    }

    fn convert(&mut self, value: &Value, depth: usize) -> Result<Converted, LuaError> {
        let too_deep = || LuaError::NotShareable {
            what: "a table nested too deeply (or holding itself)".to_owned(),
        };
        let Value::Table(table) = value else {
            return Ok(Converted {
                value: from_lua_scalar(value)?,
                height: 0,
                items: 0,
            });
        };
        let address = table.to_pointer();
        if let Some(converted) = self.done.get(&address).cloned() {
            // Shared, but a receiver meets it here too: its depth and items count again.
            if depth + converted.height > MAX_DEPTH {
                return Err(too_deep());
            }
            self.charge(converted.items)?;
            return Ok(converted);
        }
        if depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        let converted = self.convert_table(table, depth)?;
        self.done.insert(address, converted.clone());
        Ok(converted)
    }

    fn convert_table(&mut self, table: &mlua::Table, depth: usize) -> Result<Converted, LuaError> {
        let refuse = |what: String| Err(LuaError::NotShareable { what });
        let declared = match table.raw_get::<Value>("n") {
            Ok(Value::Integer(n)) if n >= 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => None,
        };
        let len = declared.unwrap_or_else(|| table.raw_len());
        // Charged before anything is allocated for it.
        self.charge(len)?;
        // Only a sequence is a tuple: no keys beyond 1..n (and `n` itself). Checked first,
        // so that nothing is copied from a table that is refused.
        for pair in table.pairs::<Value, Value>() {
            let (key, _) = pair.map_err(|e| LuaError::from_mlua(&e))?;
            let in_sequence = match key {
                Value::Integer(i) => i >= 1 && usize::try_from(i).is_ok_and(|i| i <= len),
                Value::String(ref s) => declared.is_some() && s.as_bytes().as_ref() == b"n",
                _ => false,
            };
            if !in_sequence {
                return refuse("a table that is not a sequence".to_owned());
            }
        }
        let mut items = Vec::new();
        if items.try_reserve_exact(len).is_err() {
            return refuse(format!("a sequence of {len} items (out of memory)"));
        }
        let (mut height, mut count) = (0, len);
        for i in 1..=len {
            let item: Value = table.raw_get(i).map_err(|e| LuaError::from_mlua(&e))?;
            let converted = self.convert(&item, depth + 1)?;
            height = height.max(converted.height);
            count = count.saturating_add(converted.items);
            items.push(converted.value);
        }
        Ok(Converted {
            value: Shareable::Tuple(items.into()),
            height: height + 1,
            items: count,
        })
    }
}

/// [`from_lua`] of anything but a table.
fn from_lua_scalar(value: &Value) -> Result<Shareable, LuaError> {
    let refuse = |what: &str| {
        Err(LuaError::NotShareable {
            what: what.to_owned(),
        })
    };
    Ok(match value {
        Value::Nil => Shareable::None,
        Value::Boolean(b) => Shareable::Bool(*b),
        Value::Integer(i) => Shareable::Int(i128::from(*i)),
        Value::Number(f) => Shareable::Float(*f),
        Value::String(s) => match s.to_str() {
            Ok(text) => Shareable::from(&*text),
            Err(_) => Shareable::Bytes(s.as_bytes().to_vec().into()),
        },
        Value::Table(_) => unreachable!("tables are converted by `Conversion`"),
        Value::UserData(ud) => {
            if let Ok(queue) = ud.borrow::<LuaQueue>() {
                Shareable::Queue(queue.0.clone())
            } else if let Ok(send) = ud.borrow::<LuaSendChannel>() {
                Shareable::SendChannel(send.0.clone())
            } else if let Ok(recv) = ud.borrow::<LuaRecvChannel>() {
                Shareable::RecvChannel(recv.0.clone())
            } else if ud.is::<Unbound>() {
                Shareable::Unbound
            } else {
                return refuse("a userdata");
            }
        }
        Value::Function(_) => return refuse("a function"),
        Value::Thread(_) => return refuse("a coroutine"),
        other => return refuse(other.type_name()),
    })
}

/// `from_lua` inside a callback: a refusal is a Lua error.
fn share(value: &Value) -> mlua::Result<Shareable> {
    from_lua(value).map_err(mlua::Error::external)
}

fn seconds(secs: f64) -> mlua::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| mlua::Error::runtime(format!("ValueError: bad timeout {secs}")))
}

/// A send or receive error as a Lua error: `"Empty: nothing to receive"`, `"Full: ..."`,
/// `"Timeout: ..."`, `"Closed: ..."` (the [`SendError`](crate::interpreters::SendError) or
/// [`RecvError`](crate::interpreters::RecvError) variant, then its message).
fn failed(error: impl std::fmt::Display + std::fmt::Debug) -> mlua::Error {
    mlua::Error::runtime(format!("{error:?}: {error}"))
}

/// A [`Queue`] in Lua: `q:put(v)`, `q:get()`, `q:put_nowait(v)`, `q:get_nowait()`,
/// `q:put_timeout(v, seconds)`, `q:get_timeout(seconds)`, `q:len()`, `q:is_empty()`,
/// `q:is_full()`, `q:close()`, `q:id()`.
pub(crate) struct LuaQueue(pub(crate) Queue);

impl UserData for LuaQueue {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("put", |_, q, v: Value| q.0.put(share(&v)?).map_err(failed));
        methods.add_method("put_nowait", |_, q, v: Value| {
            q.0.put_nowait(share(&v)?).map_err(failed)
        });
        methods.add_method("put_timeout", |_, q, (v, secs): (Value, f64)| {
            q.0.put_timeout(share(&v)?, seconds(secs)?).map_err(failed)
        });
        methods.add_method("get", |lua, q, ()| to_lua(lua, q.0.get().map_err(failed)?));
        methods.add_method("get_nowait", |lua, q, ()| {
            to_lua(lua, q.0.get_nowait().map_err(failed)?)
        });
        methods.add_method("get_timeout", |lua, q, secs: f64| {
            to_lua(lua, q.0.get_timeout(seconds(secs)?).map_err(failed)?)
        });
        methods.add_method("len", |_, q, ()| Ok(q.0.len()));
        methods.add_method("is_empty", |_, q, ()| Ok(q.0.is_empty()));
        methods.add_method("is_full", |_, q, ()| Ok(q.0.is_full()));
        methods.add_method("close", |_, q, ()| Ok(q.0.close()));
        methods.add_method("id", |_, q, ()| Ok(q.0.id()));
        methods.add_meta_method("__tostring", |_, q, ()| Ok(format!("Queue({})", q.0.id())));
        methods.add_meta_method("__eq", |_, q, other: AnyUserData| {
            Ok(other
                .borrow::<LuaQueue>()
                .is_ok_and(|o| o.0.id() == q.0.id()))
        });
    }
}

/// A [`SendChannel`] in Lua: `s:send(v)`, `s:send_nowait(v)`, `s:send_timeout(v, seconds)`,
/// `s:send_buffered(v)`, `s:close()`, `s:release()`, `s:id()`.
pub(crate) struct LuaSendChannel(pub(crate) SendChannel);

impl UserData for LuaSendChannel {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("send", |_, s, v: Value| {
            s.0.send(share(&v)?).map_err(failed)
        });
        methods.add_method("send_nowait", |_, s, v: Value| {
            s.0.send_nowait(share(&v)?).map_err(failed)
        });
        methods.add_method("send_timeout", |_, s, (v, secs): (Value, f64)| {
            s.0.send_timeout(share(&v)?, seconds(secs)?).map_err(failed)
        });
        methods.add_method("send_buffered", |_, s, v: Value| {
            s.0.send_buffered(share(&v)?).map_err(failed)
        });
        methods.add_method("close", |_, s, ()| Ok(s.0.close()));
        methods.add_method("release", |_, s, ()| Ok(s.0.release()));
        methods.add_method("id", |_, s, ()| Ok(s.0.id()));
    }
}

/// A [`RecvChannel`] in Lua: `r:recv()`, `r:recv_nowait()`, `r:recv_timeout(seconds)`,
/// `r:close()`, `r:release()`, `r:id()`, `r:len()`.
pub(crate) struct LuaRecvChannel(pub(crate) RecvChannel);

impl UserData for LuaRecvChannel {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("recv", |lua, r, ()| {
            to_lua(lua, r.0.recv().map_err(failed)?)
        });
        methods.add_method("recv_nowait", |lua, r, ()| {
            to_lua(lua, r.0.recv_nowait().map_err(failed)?)
        });
        methods.add_method("recv_timeout", |lua, r, secs: f64| {
            to_lua(lua, r.0.recv_timeout(seconds(secs)?).map_err(failed)?)
        });
        methods.add_method("close", |_, r, ()| Ok(r.0.close()));
        methods.add_method("release", |_, r, ()| Ok(r.0.release()));
        methods.add_method("id", |_, r, ()| Ok(r.0.id()));
        methods.add_method("len", |_, r, ()| Ok(r.0.len()));
    }
}
