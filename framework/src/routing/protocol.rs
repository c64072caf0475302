//! Dispatch by protocol.

use http::StatusCode;

use crate::application::{Application, BoxApplication, Connection};
use crate::scope::{Protocol, Scope};

/// Sends HTTP requests to one application and WebSockets to another (Channels'
/// `ProtocolTypeRouter`). A protocol without an application is refused with 404.
///
/// ```
/// use switchboard::prelude::*;
///
/// #[derive(Default)]
/// struct Echo;
///
/// impl WebsocketConsumer for Echo {
///     type Event = NoEvent;
///
///     async fn receive(&mut self, ws: &mut Websocket, msg: Message) -> Result<()> {
///         ws.send_message(msg).await
///     }
/// }
///
/// let app = ProtocolTypeRouter::new()
///     .http(URLRouter::new().route("/healthz", handler(|_req| async { response::text("ok") })))
///     .websocket(URLRouter::new().route("/ws/echo/", Echo::as_app()));
/// ```
#[derive(Debug, Default, Clone)]
pub struct ProtocolTypeRouter {
    http: Option<BoxApplication>,
    websocket: Option<BoxApplication>,
}

impl ProtocolTypeRouter {
    /// A router with no applications: everything is refused until some are added.
    pub fn new() -> ProtocolTypeRouter {
        ProtocolTypeRouter::default()
    }

    /// The application for plain HTTP requests.
    pub fn http(mut self, app: impl Application) -> ProtocolTypeRouter {
        self.http = Some(BoxApplication::new(app));
        self
    }

    /// The application for WebSocket connections.
    pub fn websocket(mut self, app: impl Application) -> ProtocolTypeRouter {
        self.websocket = Some(BoxApplication::new(app));
        self
    }
}

impl Application for ProtocolTypeRouter {
    async fn call(&self, scope: Scope, conn: Connection) {
        let app = match scope.protocol {
            Protocol::Http => &self.http,
            Protocol::Websocket => &self.websocket,
        };
        match app {
            Some(app) => app.call(scope, conn).await,
            None => {
                tracing::debug!(protocol = scope.protocol.as_str(), path = %scope.path, "no application for this protocol");
                conn.refuse(StatusCode::NOT_FOUND)
            }
        }
    }
}
