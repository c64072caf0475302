//! The routing module: which application serves which protocol and path, and who may connect.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard::prelude::*;

use crate::consumers::ChatConsumer;
use crate::rooms::is_room_name;
use crate::state::AppState;
use crate::views::{self, ChatBackend};

/// Who may connect and how users are known (Django's security settings).
#[derive(Clone)]
pub struct Security {
    /// The session cookie and store, shared by the views (which log in and out) and the
    /// WebSocket routes (which read who is logged in).
    pub sessions: SessionConfig,
    /// The sites whose pages may open WebSockets and post the login and logout forms.
    pub origins: AllowedOrigins,
    /// API tokens for non-browser clients: token → user name.
    pub api_tokens: HashMap<String, String>,
}

impl Default for Security {
    /// For one process and for tests: a random session key and sessions in memory (both gone
    /// at restart), WebSockets from pages of the requested host or from non-browser clients
    /// without an `Origin`, no API tokens.
    fn default() -> Security {
        Security {
            sessions: SessionConfig::new(SessionKey::generate()),
            origins: AllowedOrigins::same_host().allow_missing(true),
            api_tokens: HashMap::new(),
        }
    }
}

/// WebSocket routes (Channels' `websocket_urlpatterns`).
pub fn websocket_urlpatterns(state: &AppState) -> URLRouter {
    let state = state.clone();
    URLRouter::new().converter("room", is_room_name).route(
        "/ws/chat/{room_name:room}/",
        ConsumerApp::new(move || ChatConsumer::new(state.clone())),
    )
}

/// The whole application with [`Security::default`].
pub fn application(state: AppState) -> ProtocolTypeRouter {
    application_with_security(state, Security::default())
}

/// The whole application (Channels' `application` in `asgi.py`): views and WebSockets behind
/// the same sessions and users, WebSockets only from allowed origins.
pub fn application_with_security(state: AppState, security: Security) -> ProtocolTypeRouter {
    let Security {
        sessions,
        origins,
        api_tokens,
    } = security;
    let users = Arc::new(ChatBackend::new(api_tokens));
    ProtocolTypeRouter::new()
        .http(AuthMiddlewareStack::new(
            sessions.clone(),
            users.clone(),
            views::urlpatterns(origins.clone()),
        ))
        .websocket(OriginValidator::new(
            origins,
            AuthMiddlewareStack::new(sessions, users, websocket_urlpatterns(&state)),
        ))
}
