//! The chat-app's way in for fuzzers: the JSON a client or another process sends it, and the
//! text of a `?since=` position (see `switchboard::fuzz`).

use switchboard::layer::Position;

use crate::consumers::{ChatEvent, ChatInput};
use crate::rooms::{check_message, is_room_name};

/// Runs what reads a client's frame, a room event and a room name or a position over `data`.
pub fn chat_json(data: &[u8]) {
    if let Ok(input) = serde_json::from_slice::<ChatInput>(data) {
        let _ = check_message(&input.message);
    }
    let _ = serde_json::from_slice::<ChatEvent>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<Position>();
        let _ = is_room_name(text);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn chat_json() {
        switchboard::fuzz::exercise("chat_json", super::chat_json);
    }
}
