//! The wire format of messages published through Redis (documented in `docs/scaling.md`).
//!
//! A group message is published on `{prefix}:group:{group}` as `{"v":1,"message":EVENT}`; a
//! direct message on `{prefix}:process:{process}` as `{"v":1,"channel":NAME,"message":EVENT}`,
//! where `EVENT` is the event's own JSON object, untouched. Several messages for one group that
//! were queued together travel as one batch, `{"v":2,"messages":[EVENT,...]}`, in order. On a
//! Redis Cluster a channel carries the groups of one partition, so group payloads also name
//! their group: `{"v":1,"group":GROUP,"message":EVENT}`, `{"v":2,"group":GROUP,"messages":[…]}`.
//! Messages of a group that keeps a log travel as
//! `{"v":3[,"group":GROUP],"epoch":E,"offset":N,"messages":[EVENT,...]}`, the first at offset `N`
//! of epoch `E` and each next one at the next offset (written by the log's script, see
//! `log.rs`).

use serde::Deserialize;
use serde_json::value::RawValue;

/// One message: the version this build writes for a single event.
pub(crate) const SINGLE: u32 = 1;

/// A batch of events for one group; readers of version 1 only refuse it with a log line.
pub(crate) const BATCH: u32 = 2;

/// A batch of events for one logged group, with their positions.
pub(crate) const LOGGED: u32 = 3;

/// A decoded payload, borrowing the events' JSON text from the payload.
#[derive(Debug, Deserialize)]
struct Raw<'a> {
    v: u32,
    #[serde(default)]
    channel: Option<&'a str>,
    #[serde(default)]
    group: Option<&'a str>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    epoch: Option<&'a str>,
    #[serde(default)]
    offset: Option<u64>,
}

/// What a payload carries: for a direct message the target channel, and the events in order;
/// for a logged group the epoch and the first event's offset.
#[derive(Debug)]
pub(crate) struct Payload<'a> {
    pub channel: Option<&'a str>,
    pub group: Option<&'a str>,
    pub events: Vec<&'a RawValue>,
    pub first: Option<(&'a str, u64)>,
}

/// Wraps events for a group: one event as version 1, several as a version 2 batch; naming the
/// group when its channel does not (a cluster's partition).
///
/// `group` is a valid group name (letters, digits, `-`, `_`, `.`): it needs no escaping.
pub(crate) fn group_payload(group: Option<&str>, events: &[&str]) -> String {
    let named = |v: u32| match group {
        Some(group) => format!("{{\"v\":{v},\"group\":\"{group}\","),
        None => format!("{{\"v\":{v},"),
    };
    if let [event] = events {
        return format!("{}\"message\":{event}}}", named(SINGLE));
    }
    // Built in one allocation of the final size: a batch can be hundreds of kilobytes.
    let head = format!("{}\"messages\":[", named(BATCH));
    let size = head.len() + events.iter().map(|e| e.len() + 1).sum::<usize>() + 2;
    let mut payload = String::with_capacity(size);
    payload.push_str(&head);
    for (n, event) in events.iter().enumerate() {
        if n > 0 {
            payload.push(',');
        }
        payload.push_str(event);
    }
    payload.push_str("]}");
    payload
}

/// The start of a logged group's payload, up to where the log's script writes the position and
/// the events: `{"v":3,` naming the group when its channel does not.
pub(crate) fn logged_payload_head(group: Option<&str>) -> String {
    match group {
        Some(group) => format!("{{\"v\":{LOGGED},\"group\":\"{group}\","),
        None => format!("{{\"v\":{LOGGED},"),
    }
}

/// Wraps an event for one channel of another process.
pub(crate) fn direct_payload(channel: &str, event_json: &str) -> Result<String, serde_json::Error> {
    let channel = serde_json::to_string(channel)?;
    Ok(format!(
        "{{\"v\":{SINGLE},\"channel\":{channel},\"message\":{event_json}}}"
    ))
}

/// Reads a payload, refusing unknown versions and shapes.
pub(crate) fn parse(payload: &str) -> Result<Payload<'_>, String> {
    let raw: Raw<'_> = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    let positioned = raw.epoch.zip(raw.offset);
    let (events, first) = match (raw.v, raw.message, raw.messages, positioned) {
        _ if raw.channel.is_some() && raw.group.is_some() => {
            return Err("a payload for both a channel and a group".to_owned());
        }
        (SINGLE, Some(message), None, None) => (vec![message], None),
        (BATCH, None, Some(messages), None) if raw.channel.is_none() => (messages, None),
        (LOGGED, None, Some(messages), Some(first)) if raw.channel.is_none() => {
            (messages, Some(first))
        }
        (SINGLE | BATCH | LOGGED, ..) => {
            return Err(format!("malformed version {} payload", raw.v));
        }
        (other, ..) => {
            return Err(format!(
                "wire format version {other} (this process reads {SINGLE} to {LOGGED})"
            ));
        }
    };
    Ok(Payload {
        channel: raw.channel,
        group: raw.group,
        events,
        first,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_without_touching_the_event() {
        let event = r#"{"type":"chat.message","message":"hé \"x\""}"#;
        let group = group_payload(None, &[event]);
        assert!(group.starts_with(r#"{"v":1,"message":"#));
        let parsed = parse(&group).unwrap();
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.events[0].get(), event);
        assert_eq!(parsed.channel, None);

        let direct = direct_payload("specific.ab!1", event).unwrap();
        let parsed = parse(&direct).unwrap();
        assert_eq!(parsed.channel, Some("specific.ab!1"));
        assert_eq!(parsed.events[0].get(), event);
    }

    #[test]
    fn batches_keep_their_order() {
        let events = [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#];
        let batch = group_payload(None, &events);
        let parsed = parse(&batch).unwrap();
        let got: Vec<&str> = parsed.events.iter().map(|e| e.get()).collect();
        assert_eq!(got, events);
        assert_eq!(parsed.group, None);
    }

    #[test]
    fn a_partition_payload_names_its_group() {
        let one = group_payload(Some("chat_a.b"), &[r#"{"n":1}"#]);
        assert_eq!(one, r#"{"v":1,"group":"chat_a.b","message":{"n":1}}"#);
        let parsed = parse(&one).unwrap();
        assert_eq!((parsed.group, parsed.channel), (Some("chat_a.b"), None));
        let batch = group_payload(Some("g"), &[r#"{"n":1}"#, r#"{"n":2}"#]);
        assert_eq!(batch, r#"{"v":2,"group":"g","messages":[{"n":1},{"n":2}]}"#);
        assert_eq!(parse(&batch).unwrap().events.len(), 2);
        assert!(parse(r#"{"v":1,"group":"g","channel":"c","message":{}}"#).is_err());
    }

    #[test]
    fn logged_batches_carry_the_first_position() {
        let parsed =
            parse(r#"{"v":3,"epoch":"ab1","offset":41,"messages":[{"n":1},{"n":2}]}"#).unwrap();
        assert_eq!(parsed.first, Some(("ab1", 41)));
        assert_eq!(parsed.events.len(), 2);
        assert!(parse(r#"{"v":3,"messages":[{}]}"#).is_err());
        assert!(parse(r#"{"v":3,"epoch":"e","offset":-1,"messages":[{}]}"#).is_err());
        assert!(parse(r#"{"v":1,"epoch":"e","offset":1,"message":{}}"#).is_err());
        let head = logged_payload_head(Some("chat_a"));
        let payload = format!(r#"{head}"epoch":"e","offset":1,"messages":[{{}}]}}"#);
        let named = parse(&payload).unwrap();
        assert_eq!((named.group, named.first), (Some("chat_a"), Some(("e", 1))));
        assert_eq!(logged_payload_head(None), r#"{"v":3,"#);
    }

    #[test]
    fn refuses_garbage_and_other_versions() {
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"v":4,"message":{}}"#).is_err());
        assert!(parse(r#"{"v":1}"#).is_err());
        assert!(parse(r#"{"v":2,"message":{}}"#).is_err());
        assert!(parse(r#"{"v":2,"channel":"a","messages":[{}]}"#).is_err());
        assert!(parse(r#"{"v":1,"message":{},"messages":[{}]}"#).is_err());
    }
}
