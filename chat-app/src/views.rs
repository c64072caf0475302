//! HTTP pages: static files compiled into the binary.

use switchboard::prelude::*;

use crate::routing::is_room_name;

const LOBBY: &str = include_str!("pages/lobby.html");
const ROOM: &str = include_str!("pages/room.html");

/// HTTP routes (Django's `urlpatterns`).
pub fn urlpatterns() -> URLRouter {
    URLRouter::new()
        .converter("room", is_room_name)
        .route("/", handler(|_req| async { response::html(LOBBY) }))
        .route(
            "/chat/{room_name:room}/",
            handler(|_req| async { response::html(ROOM) }),
        )
        // The seeds' entry point: the room comes from `?num=`, read by the page's script.
        .route("/index/", handler(|_req| async { response::html(ROOM) }))
        .route("/healthz", handler(|_req| async { response::text("ok") }))
}
