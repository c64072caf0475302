//! `--group-format`: the channel layer group a room's members join.

use std::fmt;

use switchboard::layer::validate_group_name;

use crate::rooms::GROUP_PREFIX;

/// The placeholder a group format must hold once.
const ROOM: &str = "{room}";

/// How a room's group is named: `chat_{room}` by default, the Channels tutorial's
/// `"chat_%s" % self.room_name`, so that a Django process running the tutorial's consumer and
/// the chat-app share a room's members.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupFormat {
    before: String,
    after: String,
}

impl Default for GroupFormat {
    fn default() -> Self {
        GroupFormat {
            before: GROUP_PREFIX.to_owned(),
            after: String::new(),
        }
    }
}

impl GroupFormat {
    /// Reads a format holding `{room}` once, such as `chat_{room}` or `room.{room}.live`.
    pub fn parse(format: &str) -> Result<GroupFormat, String> {
        let Some((before, after)) = format.split_once(ROOM) else {
            return Err(format!(
                "--group-format {format:?}: write where the room name goes as {ROOM}, e.g. chat_{ROOM}"
            ));
        };
        if after.contains(ROOM) {
            return Err(format!(
                "--group-format {format:?}: {ROOM} may appear only once"
            ));
        }
        let parsed = GroupFormat {
            before: before.to_owned(),
            after: after.to_owned(),
        };
        // The longest room name must still make a valid group name.
        validate_group_name(&parsed.group(&"r".repeat(64))).map_err(|err| {
            format!("--group-format {format:?} does not make valid group names: {err}")
        })?;
        Ok(parsed)
    }

    /// The group of `room`.
    pub fn group(&self, room: &str) -> String {
        format!("{}{room}{}", self.before, self.after)
    }

    /// A channel layer name pattern matching every room's group (for their logs).
    pub fn pattern(&self) -> String {
        format!("{}*", self.before)
    }
}

impl fmt::Debug for GroupFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{ROOM}{}", self.before, self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_hold_the_room_once_and_make_valid_names() {
        assert_eq!(GroupFormat::default().group("lobby"), "chat_lobby");
        assert_eq!(GroupFormat::default().pattern(), "chat_*");
        assert_eq!(
            GroupFormat::parse("chat_{room}").unwrap(),
            GroupFormat::default()
        );
        assert_eq!(
            GroupFormat::parse("room.{room}.live").unwrap().group("a-1"),
            "room.a-1.live"
        );
        for bad in [
            "chat",
            "{room}{room}",
            "chat {room}",
            "chat/{room}",
            &format!("{}{{room}}", "x".repeat(40)),
        ] {
            assert!(GroupFormat::parse(bad).is_err(), "{bad}");
        }
    }
}
