//! Message bodies: a msgpack map (Python's `msgpack.packb(message)`) one way, the JSON text the
//! framework's envelopes carry the other.
//!
//! The map's entries become a JSON object's members, `"type"` among them, so a body decodes
//! into a consumer's typed event as the JSON of the other layers does. Values map as
//! `json.dumps` would print what `msgpack.unpackb` returns, except:
//! * binary (`bytes`) becomes a string holding its standard base64 (with padding);
//! * integer map keys become strings (as `json.dumps` does); other non-string keys, extension
//!   types and strings that are not UTF-8 make the body unreadable;
//! * a float that is NaN or infinite becomes `null`.
//!
//! channels_redis' own key `__asgi_channel__` (the target channel of a core layer message, or
//! the list of them) is read out and left out of the JSON.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rmpv::ValueRef;
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// channels_redis' key for the channel(s) a core layer message is for.
pub(crate) const ASGI_CHANNEL: &str = "__asgi_channel__";

/// How deeply values may nest (counted as rmpv counts, about one level per container and one
/// per string): deeper bodies are refused rather than recursed into, which could exhaust a
/// task's stack. Channels messages are a few levels deep.
const MAX_DEPTH: usize = 128;

/// Why a body or an envelope could not be converted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("not msgpack: {0}")]
    Msgpack(String),
    #[error("{0} bytes after the msgpack body")]
    Trailing(usize),
    #[error("a message must be a map (a dict), not {0}")]
    NotAMap(&'static str),
    #[error("{ASGI_CHANNEL} must be a channel name or a list of them")]
    BadChannel,
    #[error("cannot be JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot be msgpack: {0}")]
    Encode(String),
}

/// Where a core layer message goes, as its `__asgi_channel__` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// None given: the channel whose key it was popped from (a named channel).
    Popped,
    /// A direct send to one channel of the receiving process.
    One(&'a str),
    /// A group send: every listed channel of the receiving process.
    Many(Vec<&'a str>),
}

/// A decoded body: its target and its JSON text.
#[derive(Debug)]
pub(crate) struct Decoded<'a> {
    pub target: Target<'a>,
    pub json: String,
}

/// Reads a msgpack body.
pub(crate) fn decode(body: &[u8]) -> Result<Decoded<'_>, CodecError> {
    let mut rest = body;
    let value = rmpv::decode::read_value_ref_with_max_depth(&mut rest, MAX_DEPTH)
        .map_err(|err| CodecError::Msgpack(err.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Trailing(rest.len()));
    }
    let ValueRef::Map(entries) = value else {
        return Err(CodecError::NotAMap(kind(&value)));
    };
    let mut target = Target::Popped;
    let mut fields = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        if matches!(&key, ValueRef::String(name) if name.as_str() == Some(ASGI_CHANNEL)) {
            target = read_target(value)?;
        } else {
            fields.push((key, value));
        }
    }
    let json = serde_json::to_string(&Object(&fields))?;
    Ok(Decoded { target, json })
}

fn read_target(value: ValueRef<'_>) -> Result<Target<'_>, CodecError> {
    match value {
        ValueRef::String(name) => name.into_str().map(Target::One),
        ValueRef::Array(names) => names
            .into_iter()
            .map(|name| match name {
                ValueRef::String(name) => name.into_str(),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(Target::Many),
        _ => None,
    }
    .ok_or(CodecError::BadChannel)
}

fn kind(value: &ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Nil => "nil",
        ValueRef::Boolean(_) => "a boolean",
        ValueRef::Integer(_) | ValueRef::F32(_) | ValueRef::F64(_) => "a number",
        ValueRef::String(_) => "a string",
        ValueRef::Binary(_) => "bytes",
        ValueRef::Array(_) => "a list",
        ValueRef::Map(_) => "a map",
        ValueRef::Ext(..) => "an extension type",
    }
}

/// A map's entries as a JSON object.
struct Object<'v, 'a>(&'v [(ValueRef<'a>, ValueRef<'a>)]);

impl Serialize for Object<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            match key {
                ValueRef::String(text) => match text.as_str() {
                    Some(text) => map.serialize_key(text)?,
                    None => return Err(S::Error::custom("a map key is not UTF-8")),
                },
                ValueRef::Integer(n) => map.serialize_key(&n.to_string())?,
                other => {
                    return Err(S::Error::custom(format_args!(
                        "a map key is {}; only strings and integers are",
                        kind(other)
                    )));
                }
            }
            map.serialize_value(&Json(value))?;
        }
        map.end()
    }
}

/// One msgpack value as JSON.
struct Json<'v, 'a>(&'v ValueRef<'a>);

impl Serialize for Json<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ValueRef::Nil => serializer.serialize_unit(),
            ValueRef::Boolean(b) => serializer.serialize_bool(*b),
            ValueRef::Integer(n) => match (n.as_u64(), n.as_i64()) {
                (Some(n), _) => serializer.serialize_u64(n),
                (None, Some(n)) => serializer.serialize_i64(n),
                (None, None) => Err(S::Error::custom("an integer out of range")),
            },
            ValueRef::F32(x) => serializer.serialize_f64(f64::from(*x)),
            ValueRef::F64(x) => serializer.serialize_f64(*x),
            ValueRef::String(text) => match text.as_str() {
                Some(text) => serializer.serialize_str(text),
                None => Err(S::Error::custom("a string is not UTF-8")),
            },
            ValueRef::Binary(bytes) => serializer.serialize_str(&STANDARD.encode(bytes)),
            ValueRef::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
            ValueRef::Map(entries) => Object(entries).serialize(serializer),
            ValueRef::Ext(tag, _) => Err(S::Error::custom(format_args!(
                "msgpack extension type {tag} has no JSON form"
            ))),
        }
    }
}

/// An envelope's JSON object as msgpack map entries, encoded once and completed per target
/// with `__asgi_channel__` (core layer) or as it is (pub/sub layer).
pub(crate) struct Body {
    /// The encoded entries, without the map's header.
    entries: Vec<u8>,
    len: u32,
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").field("entries", &self.len).finish()
    }
}

impl Body {
    /// Encodes a JSON object (an envelope's text) as msgpack map entries.
    pub(crate) fn from_json(json: &str) -> Result<Body, CodecError> {
        let serde_json::Value::Object(members) = serde_json::from_str(json)? else {
            return Err(CodecError::NotAMap("other JSON than an object"));
        };
        if members.contains_key(ASGI_CHANNEL) {
            return Err(CodecError::Encode(format!(
                "{ASGI_CHANNEL} is reserved for channels_redis"
            )));
        }
        let mut entries = Vec::with_capacity(json.len());
        for (key, value) in &members {
            rmp::encode::write_str(&mut entries, key)
                .map_err(|err| CodecError::Encode(err.to_string()))?;
            rmp_serde::encode::write(&mut entries, value)
                .map_err(|err| CodecError::Encode(err.to_string()))?;
        }
        let len = u32::try_from(members.len())
            .map_err(|_| CodecError::Encode("too many members".to_owned()))?;
        Ok(Body { entries, len })
    }

    /// The map alone: what `group_send` publishes on the pub/sub layer.
    pub(crate) fn plain(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() + 5);
        write_map_len(&mut body, self.len);
        body.extend_from_slice(&self.entries);
        body
    }

    /// The map with `__asgi_channel__` set to `channel` (a core layer direct send).
    pub(crate) fn to_channel(&self, channel: &str) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() + channel.len() + 24);
        write_map_len(&mut body, self.len + 1);
        body.extend_from_slice(&self.entries);
        write_str(&mut body, ASGI_CHANNEL);
        write_str(&mut body, channel);
        body
    }

    /// The map with `__asgi_channel__` set to the list `channels` (a core layer group send).
    pub(crate) fn to_channels<'a>(
        &self,
        channels: impl ExactSizeIterator<Item = &'a str>,
    ) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() + 24 + channels.len() * 48);
        write_map_len(&mut body, self.len + 1);
        body.extend_from_slice(&self.entries);
        write_str(&mut body, ASGI_CHANNEL);
        // An exact size iterator over names: its length fits the array header it announces.
        let _ = rmp::encode::write_array_len(&mut body, channels.len() as u32);
        for channel in channels {
            write_str(&mut body, channel);
        }
        body
    }
}

// Writing to a Vec cannot fail.
fn write_map_len(body: &mut Vec<u8>, len: u32) {
    let _ = rmp::encode::write_map_len(body, len);
}

fn write_str(body: &mut Vec<u8>, text: &str) {
    let _ = rmp::encode::write_str(body, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn to_value(json: &str) -> Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_json_object_round_trips_with_its_target() {
        let sent = json!({"type": "chat.message", "message": "你好 👋", "n": -3, "big": u64::MAX,
            "x": 1.5, "ok": true, "none": null, "list": [1, "a", {"b": []}]});
        let body = Body::from_json(&sent.to_string()).unwrap();

        let plain = body.plain();
        let decoded = decode(&plain).unwrap();
        assert_eq!(decoded.target, Target::Popped);
        assert_eq!(to_value(&decoded.json), sent);

        let direct = body.to_channel("specific.abc!1");
        let decoded = decode(&direct).unwrap();
        assert_eq!(decoded.target, Target::One("specific.abc!1"));
        assert_eq!(to_value(&decoded.json), sent);

        let group = body.to_channels(["specific.abc!1", "specific.abc!2"].into_iter());
        let decoded = decode(&group).unwrap();
        assert_eq!(
            decoded.target,
            Target::Many(vec!["specific.abc!1", "specific.abc!2"])
        );
        assert_eq!(to_value(&decoded.json), sent);
    }

    /// `msgpack.packb({"type": "chat.message", "message": "hé", "data": b"\x00\xff",
    /// 7: (1, 2.5), "__asgi_channel__": ["specific.x!1"]})`, as Python writes it.
    #[test]
    fn reads_what_python_writes() {
        let body = b"\x85\xa4type\xacchat.message\xa7message\xa3h\xc3\xa9\xa4data\xc4\x02\x00\xff\x07\x92\x01\xcb\x40\x04\x00\x00\x00\x00\x00\x00\xb0__asgi_channel__\x91\xacspecific.x!1";
        let decoded = decode(body).unwrap();
        assert_eq!(decoded.target, Target::Many(vec!["specific.x!1"]));
        assert_eq!(
            to_value(&decoded.json),
            json!({"type": "chat.message", "message": "hé", "data": "AP8=", "7": [1, 2.5]})
        );
    }

    #[test]
    fn unreadable_bodies_are_errors() {
        let not_a_map = rmp_serde::to_vec(&[1, 2]).unwrap();
        let ext = b"\x81\xa4type\xd4\x05\x01";
        let bad_key = b"\x81\x91\x01\x01";
        let bad_channel = b"\x81\xb0__asgi_channel__\x05";
        let bad_utf8 = b"\x81\xa4type\xa2\xff\xfe";
        let truncated = b"\x82\xa4type";
        let trailing = b"\x80\x80";
        for body in [
            &not_a_map[..],
            ext,
            bad_key,
            bad_channel,
            bad_utf8,
            truncated,
            trailing,
            b"",
            b"\xc1",
        ] {
            assert!(decode(body).is_err(), "{body:?}");
        }
        let mut deep = vec![0x91u8; 100_000];
        deep.push(0x01);
        assert!(decode(&deep).is_err(), "nesting is bounded");
        let mut nested = vec![0x81u8, 0xa1, b'a'];
        nested.extend([0x91u8; 50]);
        nested.push(0x01);
        assert!(decode(&nested).is_ok(), "50 levels are fine");
    }

    #[test]
    fn only_json_objects_are_encoded() {
        assert!(Body::from_json("[1]").is_err());
        assert!(Body::from_json("not json").is_err());
        assert!(Body::from_json(r#"{"__asgi_channel__": "x"}"#).is_err());
    }
}
