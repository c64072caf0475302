//! What the processes' trackers tell each other.
//!
//! Every tracker of a layer joins one group, [`TRACKERS_GROUP`], and sends everything there: at
//! most one message per flush interval with all its groups' changes, plus a heartbeat. One group
//! means one ordered stream per sender, so a receiver that numbers a sender's messages knows
//! when it missed one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::replica::Track;

/// The group every tracker of a layer joins.
pub(super) const TRACKERS_GROUP: &str = "switchboard.presence";

/// One connection's entry as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct WireEntry {
    #[serde(rename = "c")]
    pub(super) conn: String,
    #[serde(rename = "k")]
    pub(super) key: String,
    #[serde(rename = "m", default)]
    pub(super) meta: Value,
}

impl WireEntry {
    pub(super) fn new(conn: &str, track: &Track) -> WireEntry {
        WireEntry {
            conn: conn.to_owned(),
            key: track.key.to_string(),
            meta: track.meta(),
        }
    }
}

/// What changed in one group: the sender's whole state there, or what joined and left.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Change {
    pub(super) group: String,
    /// Replaces every entry the sender had in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) state: Option<Vec<WireEntry>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) joins: Vec<WireEntry>,
    /// Connections that left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) leaves: Vec<String>,
}

/// A request for the entries of some groups.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct SyncRequest {
    pub(super) groups: Vec<String>,
    /// The process asked (it missed one of its messages), or everyone (a new replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) of: Option<String>,
}

/// A tracker's message.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Wire {
    /// The sending tracker's channel name.
    pub(super) process: String,
    /// Counts the sender's messages; a heartbeat repeats the last one's number.
    pub(super) seq: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) heartbeat: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) syncs: Vec<SyncRequest>,
}

impl Wire {
    /// Whether the message says nothing beyond "alive".
    pub(super) fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.syncs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_and_stay_short() {
        let wire = Wire {
            process: "p".into(),
            seq: 2,
            heartbeat: false,
            changes: vec![Change {
                group: "g".into(),
                joins: vec![WireEntry {
                    conn: "c".into(),
                    key: "amy".into(),
                    meta: serde_json::json!({"x": 1}),
                }],
                ..Change::default()
            }],
            syncs: vec![SyncRequest {
                groups: vec!["g".into()],
                of: None,
            }],
        };
        let json = serde_json::to_string(&wire).unwrap();
        assert_eq!(
            json,
            r#"{"process":"p","seq":2,"changes":[{"group":"g","joins":[{"c":"c","k":"amy","m":{"x":1}}]}],"syncs":[{"groups":["g"]}]}"#
        );
        assert_eq!(serde_json::from_str::<Wire>(&json).unwrap(), wire);
        assert!(serde_json::from_str::<Wire>(r#"{"seq":1}"#).is_err());
        assert!(serde_json::from_str::<Wire>(r#"{"type":"chat.message"}"#).is_err());
    }
}
