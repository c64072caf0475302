//! The wire format of messages published through Redis (version 1, documented in
//! `docs/scaling.md`).
//!
//! A group message is published on `{prefix}:group:{group}` as `{"v":1,"message":EVENT}`; a
//! direct message on `{prefix}:process:{process}` as `{"v":1,"channel":NAME,"message":EVENT}`,
//! where `EVENT` is the event's own JSON object, untouched.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The version this build writes and reads.
pub(crate) const VERSION: u32 = 1;

/// A decoded payload, borrowing the event's JSON text from the payload.
#[derive(Debug, Deserialize)]
pub(crate) struct Payload<'a> {
    pub v: u32,
    #[serde(default)]
    pub channel: Option<&'a str>,
    #[serde(borrow)]
    pub message: &'a RawValue,
}

/// Wraps an event for a group.
pub(crate) fn group_payload(event_json: &str) -> String {
    format!("{{\"v\":{VERSION},\"message\":{event_json}}}")
}

/// Wraps an event for one channel of another process.
pub(crate) fn direct_payload(channel: &str, event_json: &str) -> Result<String, serde_json::Error> {
    let channel = serde_json::to_string(channel)?;
    Ok(format!(
        "{{\"v\":{VERSION},\"channel\":{channel},\"message\":{event_json}}}"
    ))
}

/// Reads a payload, refusing other versions.
pub(crate) fn parse(payload: &str) -> Result<Payload<'_>, String> {
    let parsed: Payload<'_> = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    if parsed.v != VERSION {
        return Err(format!(
            "wire format version {} (this process reads {VERSION})",
            parsed.v
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_without_touching_the_event() {
        let event = r#"{"type":"chat.message","message":"hé \"x\""}"#;
        let group = group_payload(event);
        let parsed = parse(&group).unwrap();
        assert_eq!(parsed.message.get(), event);
        assert_eq!(parsed.channel, None);

        let direct = direct_payload("specific.ab!1", event).unwrap();
        let parsed = parse(&direct).unwrap();
        assert_eq!(parsed.channel, Some("specific.ab!1"));
        assert_eq!(parsed.message.get(), event);
    }

    #[test]
    fn refuses_garbage_and_other_versions() {
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"v":2,"message":{}}"#).is_err());
        assert!(parse(r#"{"v":1}"#).is_err());
    }
}
