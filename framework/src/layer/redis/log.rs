//! Group logs in Redis: a list of the newest messages and a hash of the log's epoch and head
//! offset, per logged group, on the group's server.
//!
//! A batch for a logged group is not `PUBLISH`ed by the pipeline but handed to [`APPEND`],
//! which numbers the messages, appends them, trims the list, renews both keys' time to live
//! and publishes them with their positions — in one step, so that a member that received a
//! message finds it in the log, and a joiner that read the log before a message gets that
//! message live. A Redis that lost the hash (restarted without data, or the keys expired) makes
//! the next append start a new epoch.

use std::sync::Arc;

use fred::types::Value;

use crate::layer::{Envelope, LogSlice, Position};

/// Appends a batch and publishes it with its positions. KEYS: the hash, the list. ARGV: an
/// epoch to start if the log has none, the log's size, its TTL in seconds, the publish command
/// (`PUBLISH`, or `SPUBLISH` on a cluster, where both keys are in the channel's slot), the
/// channel, the payload's start (see `wire::logged_payload_head`), then the messages' JSON.
/// Returns the new head offset.
pub(super) const APPEND: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local n = #ARGV - 6
local head = redis.call('HINCRBY', KEYS[1], 'offset', n)
redis.call('RPUSH', KEYS[2], unpack(ARGV, 7))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call(ARGV[4], ARGV[5], ARGV[6] .. '"epoch":"' .. epoch .. '","offset":' .. (head - n + 1)
  .. ',"messages":[' .. table.concat(ARGV, ',', 7) .. ']}')
return head
"#;

/// Reads a log. KEYS: the hash, the list. ARGV: the epoch asked for (empty for none), the offset
/// asked for, how many of the newest to give otherwise. Returns `{}` for no log, else
/// `{epoch, head, recovered (1 or 0), messages}`.
const READ: &str = r#"
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
local epoch = meta[1]
if not epoch then
  return {}
end
local head = tonumber(meta[2])
local len = redis.call('LLEN', KEYS[2])
local first = head - len + 1
local since = tonumber(ARGV[2])
if ARGV[1] == epoch and since and since <= head and since + 1 >= first then
  return {epoch, head, 1, redis.call('LRANGE', KEYS[2], since + 1 - first, -1)}
end
local from = len - tonumber(ARGV[3])
if from < 0 then
  from = 0
end
return {epoch, head, 0, redis.call('LRANGE', KEYS[2], from, -1)}
"#;

/// Reads a group's log, whose keys are `keys` (its hash and its list), on `client`.
pub(super) async fn read(
    client: &fred::clients::Client,
    keys: [String; 2],
    since: Option<&Position>,
    recent: usize,
) -> Result<LogSlice, String> {
    use fred::prelude::LuaInterface;

    let (epoch, offset) = match since {
        Some(since) => (since.epoch.to_string(), since.offset.to_string()),
        None => (String::new(), "0".to_owned()),
    };
    let recent = recent.to_string();
    let value: Value = client
        .eval(READ, keys.to_vec(), vec![epoch, offset, recent])
        .await
        .map_err(|err| err.to_string())?;
    parse_read(value)
}

/// What [`READ`] answered, as a slice whose messages carry their positions.
fn parse_read(value: Value) -> Result<LogSlice, String> {
    let Value::Array(parts) = value else {
        return Err(format!("unexpected answer to a log read: {value:?}"));
    };
    let [epoch, head, recovered, messages] = match <[Value; 4]>::try_from(parts) {
        Ok(parts) => parts,
        Err(parts) if parts.is_empty() => return Ok(LogSlice::none()),
        Err(parts) => return Err(format!("a log read answered {} parts", parts.len())),
    };
    let epoch: Arc<str> = match epoch.as_string() {
        Some(epoch) => Arc::from(epoch),
        None => return Err("a log read answered no epoch".to_owned()),
    };
    let head = head
        .as_u64()
        .ok_or_else(|| "a log read answered no head offset".to_owned())?;
    let Value::Array(messages) = messages else {
        return Err("a log read answered no messages".to_owned());
    };
    let first = head + 1 - messages.len() as u64;
    let messages = messages
        .into_iter()
        .zip(first..)
        .filter_map(|(message, offset)| {
            let json = message.into_string()?;
            Some(Envelope::from_json_at(
                json,
                Position::new(Arc::clone(&epoch), offset),
            ))
        })
        .collect();
    Ok(LogSlice {
        head: Some(Position::new(epoch, head)),
        messages,
        recovered: recovered.as_u64() == Some(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_script_answers() {
        assert!(parse_read(Value::Array(vec![])).unwrap().head.is_none());
        let answer = Value::Array(vec![
            Value::from("ep0ch"),
            Value::Integer(9),
            Value::Integer(1),
            Value::Array(vec![Value::from(r#"{"n":8}"#), Value::from(r#"{"n":9}"#)]),
        ]);
        let slice = parse_read(answer).unwrap();
        assert!(slice.recovered);
        assert_eq!(slice.head, Some(Position::new(Arc::from("ep0ch"), 9)));
        let offsets: Vec<u64> = slice
            .messages
            .iter()
            .map(|m| m.position().unwrap().offset)
            .collect();
        assert_eq!(offsets, [8, 9]);
        assert_eq!(
            slice.messages[1].text().as_str(),
            r#"{"n":9,"epoch":"ep0ch","offset":9}"#
        );
        for garbage in [
            Value::Integer(1),
            Value::Array(vec![Value::Integer(1)]),
            Value::Array(vec![
                Value::Null,
                Value::Integer(1),
                Value::Integer(0),
                Value::Array(vec![]),
            ]),
        ] {
            assert!(parse_read(garbage).is_err());
        }
    }
}
