//! The wire format of messages published through Redis (documented in `docs/scaling.md`).
//!
//! A group message is published on `{prefix}:group:{group}` as `{"v":1,"message":EVENT}`; a
//! direct message on `{prefix}:process:{process}` as `{"v":1,"channel":NAME,"message":EVENT}`,
//! where `EVENT` is the event's own JSON object, untouched. Several messages for one group that
//! were queued together travel as one batch, `{"v":2,"messages":[EVENT,...]}`, in order. Messages
//! of a group that keeps a log travel as `{"v":3,"epoch":E,"offset":N,"messages":[EVENT,...]}`,
//! the first at offset `N` of epoch `E` and each next one at the next offset (written by the log's
//! script, see `log.rs`).

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
    pub events: Vec<&'a RawValue>,
    pub first: Option<(&'a str, u64)>,
}

/// Wraps events for a group: one event as version 1, several as a version 2 batch.
pub(crate) fn group_payload(events: &[&str]) -> String {
    if let [event] = events {
        return format!("{{\"v\":{SINGLE},\"message\":{event}}}");
    }
    // Built in one allocation of the final size: a batch can be hundreds of kilobytes.
    let head = format!("{{\"v\":{BATCH},\"messages\":[");
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
        let group = group_payload(&[event]);
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
        let batch = group_payload(&events);
        let parsed = parse(&batch).unwrap();
        let got: Vec<&str> = parsed.events.iter().map(|e| e.get()).collect();
        assert_eq!(got, events);
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
