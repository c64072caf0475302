//! The routing module: which application serves which protocol and path.

use switchboard::prelude::*;

use crate::consumers::ChatConsumer;
use crate::state::AppState;
use crate::views;

/// Whether `name` is a room name: `[A-Za-z0-9_-]{1,64}`.
pub fn is_room_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// WebSocket routes (Channels' `websocket_urlpatterns`).
pub fn websocket_urlpatterns(state: &AppState) -> URLRouter {
    let history = state.history.clone();
    URLRouter::new().converter("room", is_room_name).route(
        "/ws/chat/{room_name:room}/",
        ConsumerApp::new(move || ChatConsumer::new(history.clone())),
    )
}

/// The whole application (Channels' `application` in `asgi.py`).
pub fn application(state: AppState) -> ProtocolTypeRouter {
    ProtocolTypeRouter::new()
        .http(views::urlpatterns())
        .websocket(websocket_urlpatterns(&state))
}

#[cfg(test)]
mod tests {
    use super::is_room_name;

    #[test]
    fn room_names() {
        for ok in ["a", "lobby", "room_1-B", &"r".repeat(64)] {
            assert!(is_room_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a.b", "café", &"r".repeat(65), "a/b"] {
            assert!(!is_room_name(bad), "{bad}");
        }
    }
}
