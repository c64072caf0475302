//! switchboard and axum together, both ways round, around the [`room_chat`](crate::room_chat)
//! consumer and a few axum views.
//!
//! - [`switchboard_in_axum`]: an axum server whose router mounts the room chat as a tower
//!   service (`route_service("/room/{*rest}", ..)`); its WebSockets upgrade inside axum's
//!   server. `cargo run -p examples --example switchboard_in_axum`.
//! - [`axum_in_switchboard`]: switchboard's server whose HTTP side is the axum router
//!   (`ProtocolTypeRouter::new().http(router)`). `cargo run -p examples --example
//!   axum_in_switchboard`.
//!
//! Both serve the same [`views`]: axum handlers with `Path`, `Query`, `State`, `Json` and
//! `ConnectInfo` extractors, one of which sends to a chat room through switchboard's channel
//! layer, behind tower-http's request-id layers (every response carries `x-request-id`, the
//! 101 of a WebSocket mounted in axum too). Try them with
//!
//! ```text
//! websocat ws://127.0.0.1:8000/room/111
//! curl -i 'http://127.0.0.1:8000/hello?name=ann'
//! curl -i -H 'content-type: application/json' -d '{"message":"hi all"}' \
//!     http://127.0.0.1:8000/rooms/111/announce
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{ConnectInfo, Extension, Json, Path, Query, State};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::routing::{get, post};
use switchboard::layer::Envelope;
use switchboard::prelude::*;
use switchboard::tower::{ApplicationService, ShutdownHandle};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::room_chat::{self, RoomEvent};

/// Paths worth trying, printed at start-up.
pub const PATHS: &[&str] = &["/room/111", "/room/222"];

/// Numbers requests 1, 2, 3, ... for tower-http's `SetRequestIdLayer` (which sets
/// `x-request-id` on every request that has none); clones share the count.
#[derive(Debug, Clone, Default)]
pub struct RequestIds(Arc<AtomicU64>);

impl RequestIds {
    /// How many ids were handed out: how many requests the layer saw.
    pub fn issued(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        Some(RequestId::new(HeaderValue::from(id)))
    }
}

/// How many announcements the views sent (the router's `State`).
#[derive(Debug, Clone, Default)]
struct Announcements(Arc<AtomicU64>);

/// What `POST /rooms/{room}/announce` takes.
#[derive(Debug, Deserialize)]
struct Announcement {
    message: String,
}

/// What `POST /rooms/{room}/announce` answers.
#[derive(Debug, Serialize)]
struct Announced {
    announcements: u64,
}

/// What `GET /hello` takes.
#[derive(Debug, Deserialize)]
struct Hello {
    name: Option<String>,
}

/// The axum views both examples serve:
///
/// - `GET /`: what there is to try;
/// - `GET /hello?name=NAME`: `hello NAME` (`Query`);
/// - `GET /whoami`: the client's address (`ConnectInfo`);
/// - `POST /rooms/{room}/announce` with `{"message": "..."}`: says it to the members of room
///   `room` (`Path`, `Json`, `State`, and the channel layer as an `Extension<SharedLayer>`),
///   answers `{"announcements": N}`; 404 for a room name the chat would refuse.
///
/// The router needs an `Extension<SharedLayer>`: switchboard puts one in every request it hands
/// to axum, and mounted inside axum it is added with `.layer(Extension(layer))`.
pub fn views() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/hello", get(hello))
        .route("/whoami", get(whoami))
        .route("/rooms/{room}/announce", post(announce))
        .with_state(Announcements::default())
}

async fn index() -> &'static str {
    "axum views: GET /hello?name=NAME, GET /whoami, POST /rooms/{room}/announce {\"message\": ...}\n\
     switchboard chat: ws://HOST/room/{room}\n"
}

async fn hello(Query(hello): Query<Hello>) -> String {
    format!("hello {}", hello.name.as_deref().unwrap_or("stranger"))
}

async fn whoami(ConnectInfo(client): ConnectInfo<SocketAddr>) -> String {
    client.to_string()
}

async fn announce(
    State(announcements): State<Announcements>,
    Extension(layer): Extension<SharedLayer>,
    Path(room): Path<String>,
    Json(announcement): Json<Announcement>,
) -> Result<Json<Announced>, StatusCode> {
    if !crate::is_room_name(&room) {
        return Err(StatusCode::NOT_FOUND);
    }
    let event = RoomEvent::AllSend {
        message: announcement.message,
    };
    let envelope = Envelope::encode(&event).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    layer
        .group_send(&room_chat::group(&room), envelope)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let announcements = announcements.0.fetch_add(1, Ordering::Relaxed) + 1;
    Ok(Json(Announced { announcements }))
}

/// tower-http's layers around `router`: a request id on every request (numbered by `ids`),
/// copied onto its response, and a trace span per request.
fn with_request_ids(router: Router, ids: RequestIds) -> Router {
    // The last layer added is the outermost: the id is set before it is propagated.
    router
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(ids))
}

/// switchboard inside axum: the [`views`] and, on `/room/{room}`, the room chat as a tower
/// service, all behind the request-id layers. Serve the router with
/// `into_make_service_with_connect_info::<SocketAddr>()` (for `/whoami` and the consumers'
/// `scope.client`), and after axum's graceful shutdown, close the WebSockets with the handle.
pub fn switchboard_in_axum(ids: RequestIds) -> (Router, ShutdownHandle) {
    let chat = ApplicationService::new(room_chat::application());
    let websockets = chat.shutdown_handle();
    let layer = Arc::clone(chat.channel_layer());
    let router = views()
        .route_service("/room/{*room}", chat)
        .layer(Extension(layer));
    (with_request_ids(router, ids), websockets)
}

/// axum inside switchboard: switchboard's routers take the WebSockets (the room chat), the
/// [`views`] behind the request-id layers take HTTP.
pub fn axum_in_switchboard(ids: RequestIds) -> ProtocolTypeRouter {
    ProtocolTypeRouter::new()
        .http(with_request_ids(views(), ids))
        .websocket(room_chat::application())
}

/// Serves `router` with axum until Ctrl-C (or SIGTERM), then closes the WebSockets of
/// `websockets`: the [`crate::run`] of an axum server.
pub async fn run(router: Router, websockets: ShutdownHandle, paths: &[&str]) -> Result<()> {
    let cli = crate::init();
    let listener = tokio::net::TcpListener::bind(cli.bind.as_str()).await?;
    crate::print_urls(listener.local_addr()?, paths);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(switchboard::server::shutdown_signal())
    .await?;
    websockets.shutdown().await;
    Ok(())
}
