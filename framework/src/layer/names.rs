//! Channels' rules for channel and group names.

use crate::error::{Error, Result};

/// Names must be shorter than this, as in Channels (`MAX_NAME_LENGTH`).
pub const MAX_NAME_LENGTH: usize = 100;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn invalid(kind: &'static str, name: &str) -> Error {
    Error::InvalidName {
        kind,
        name: name.chars().take(120).collect(),
    }
}

/// Checks a group name: ASCII letters, digits, `-`, `_`, `.`; 1 to 99 characters.
///
/// ```
/// use switchboard::layer::validate_group_name;
///
/// assert!(validate_group_name("chat_lobby").is_ok());
/// assert!(validate_group_name("chat lobby").is_err());
/// assert!(validate_group_name(&"x".repeat(100)).is_err());
/// ```
pub fn validate_group_name(name: &str) -> Result<()> {
    if !name.is_empty() && name.len() < MAX_NAME_LENGTH && name.chars().all(is_name_char) {
        Ok(())
    } else {
        Err(invalid("group", name))
    }
}

/// The process part of a `specific.<process>!<n>` channel name: where a distributed layer sends
/// it. `None` for a named channel (`thumbnails`), which any process' worker may receive.
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) fn owner_process(channel: &str) -> Option<&str> {
    channel
        .strip_prefix("specific.")?
        .split_once('!')
        .map(|(process, _)| process)
}

/// Checks a channel name: as a group name, optionally followed by `!` and a process-local part
/// (Channels' "specific" channel names such as `specific.abc!12`).
///
/// ```
/// use switchboard::layer::validate_channel_name;
///
/// assert!(validate_channel_name("thumbnails-generate").is_ok());
/// assert!(validate_channel_name("specific.abc123!7").is_ok());
/// assert!(validate_channel_name("bad/name").is_err());
/// ```
pub fn validate_channel_name(name: &str) -> Result<()> {
    let (base, local) = match name.split_once('!') {
        Some((base, local)) => (base, Some(local)),
        None => (name, None),
    };
    let valid = !base.is_empty()
        && name.len() < MAX_NAME_LENGTH
        && base.chars().all(is_name_char)
        && local.is_none_or(|l| l.chars().all(is_name_char));
    if valid {
        Ok(())
    } else {
        Err(invalid("channel", name))
    }
}

/// Checks a fixed channel name for a worker: a channel name without the `!` part.
pub(crate) fn validate_named_channel(name: &str) -> Result<()> {
    if name.contains('!') {
        return Err(invalid("channel", name));
    }
    validate_channel_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        for ok in ["a", "chat_room-1.x", &"g".repeat(99)] {
            assert!(validate_group_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a!b", "ä", "a/b", &"g".repeat(100)] {
            assert!(validate_group_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn owner_of_specific_names() {
        assert_eq!(owner_process("specific.abc!3"), Some("abc"));
        assert_eq!(owner_process("thumbnails"), None);
        assert_eq!(owner_process("specific.abc"), None);
    }

    #[test]
    fn channel_names() {
        for ok in ["a", "specific.x!", "specific.x!y_1", "worker-queue"] {
            assert!(validate_channel_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "!x", "a!b!c", "a b", &"c".repeat(100)] {
            assert!(validate_channel_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_says_what_is_allowed() {
        let message = validate_group_name("a b").unwrap_err().to_string();
        assert!(message.contains("ASCII letters"), "{message}");
    }
}
