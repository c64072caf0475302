//! The chat's rules for rooms and messages, shared by the routes, the pages and the consumer.

/// Longest accepted message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// Whether `name` is a room name: `[A-Za-z0-9_-]{1,64}`.
pub fn is_room_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The channel-layer group of a room: the Channels tutorial's `chat_<room>`.
pub fn group_of(room: &str) -> String {
    format!("chat_{room}")
}

/// Why a message is refused, if it is: empty (or only blanks), or over
/// [`MAX_MESSAGE_CHARS`].
pub fn check_message(message: &str) -> Result<(), String> {
    if message.trim().is_empty() {
        return Err("empty message".to_owned());
    }
    if message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(format!(
            "message too long: at most {MAX_MESSAGE_CHARS} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        for ok in ["a", "lobby", "room_1-B", &"r".repeat(64)] {
            assert!(is_room_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a.b", "café", &"r".repeat(65), "a/b"] {
            assert!(!is_room_name(bad), "{bad}");
        }
    }

    #[test]
    fn messages_are_checked() {
        assert!(check_message("hi").is_ok());
        assert!(check_message("   ").is_err());
        assert!(check_message(&"x".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert!(check_message(&"é".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
    }
}
