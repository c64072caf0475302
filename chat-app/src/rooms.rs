//! The chat's rules for rooms and messages, shared by the routes, the pages and the consumer,
//! and how rooms keep their history: each room's group keeps a log in the channel layer.

use std::time::Duration;

use switchboard::layer::{LayerConfig, LogConfig};

use crate::group_format::GroupFormat;

/// Longest accepted message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// How many of a room's newest messages a joiner gets as `chat.history`.
pub const HISTORY_LIMIT: usize = 100;

/// How many messages a room's log keeps: what a member who lost its connection can recover
/// (`?since=`), more than the history a joiner is shown.
pub const LOG_SIZE: usize = 1_000;

/// Default of `--history-ttl-secs`: a room without a message for a day forgets its log.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(86_400);

/// Default of `--history-budget-mib`: what all rooms' logs may hold together in one process.
pub const DEFAULT_HISTORY_BUDGET: usize = 256 << 20;

/// The channel layer's settings for the chat: Channels' defaults, and a log for every room's
/// group, kept `ttl` after the room's last message, all rooms within `budget` bytes (in memory;
/// on Redis the keys expire after `ttl`).
pub fn layer_config(ttl: Duration, budget: usize) -> LayerConfig {
    layer_config_for(ttl, budget, &GroupFormat::default())
}

/// [`layer_config`] for rooms whose groups `format` names (`--group-format`).
pub fn layer_config_for(ttl: Duration, budget: usize, format: &GroupFormat) -> LayerConfig {
    LayerConfig::default()
        .group_log(format.pattern(), LogConfig::new(LOG_SIZE, ttl))
        .log_budget(budget)
}

/// What every room's group name starts with by default.
pub(crate) const GROUP_PREFIX: &str = "chat_";

/// Whether `name` is a room name: `[A-Za-z0-9_-]{1,64}`.
pub fn is_room_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The channel-layer group of a room: the Channels tutorial's `chat_<room>`.
pub fn group_of(room: &str) -> String {
    format!("{GROUP_PREFIX}{room}")
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
    fn every_room_keeps_a_log() {
        let config = layer_config(DEFAULT_HISTORY_TTL, DEFAULT_HISTORY_BUDGET);
        let log = config.logs.config_of(&group_of("lobby")).expect("a log");
        assert_eq!((log.size, log.ttl), (LOG_SIZE, DEFAULT_HISTORY_TTL));
        assert_eq!(config.logs.budget, DEFAULT_HISTORY_BUDGET);
    }

    #[test]
    fn messages_are_checked() {
        assert!(check_message("hi").is_ok());
        assert!(check_message("   ").is_err());
        assert!(check_message(&"x".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert!(check_message(&"é".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
    }
}
