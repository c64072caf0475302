//! A consumer type as an application.

use std::fmt;
use std::sync::Arc;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, StatusCode};

use super::{WebsocketConsumer, response, runner};
use crate::application::{Application, Connection};
use crate::limits::RateLimit;
use crate::scope::Scope;

/// Serves each WebSocket connection with a fresh consumer made by a factory.
///
/// ```
/// use std::sync::Arc;
/// use switchboard::prelude::*;
///
/// struct Greeter {
///     greeting: Arc<str>,
/// }
///
/// impl WebsocketConsumer for Greeter {
///     type Event = NoEvent;
///
///     async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
///         ws.accept().await?;
///         ws.send_text(self.greeting.to_string()).await
///     }
/// }
///
/// let greeting: Arc<str> = Arc::from("welcome!");
/// let app = ConsumerApp::new(move || Greeter { greeting: greeting.clone() });
/// ```
pub struct ConsumerApp<C> {
    factory: Arc<dyn Fn() -> C + Send + Sync>,
    /// This route's own rate limit, instead of the server's.
    rate_limit: Option<Arc<RateLimit>>,
}

impl<C> ConsumerApp<C> {
    /// An application whose consumers come from `factory`, called once per connection.
    pub fn new(factory: impl Fn() -> C + Send + Sync + 'static) -> ConsumerApp<C> {
        ConsumerApp {
            factory: Arc::new(factory),
            rate_limit: None,
        }
    }

    /// Gives this route's connections their own inbound rate limit instead of the server's
    /// [`ServerConfig::rate_limit`](crate::server::ServerConfig::rate_limit): a bulk-upload
    /// endpoint may allow more, a public one less, [`RateLimit::unlimited`] none.
    ///
    /// ```
    /// use switchboard::limits::{Rate, RateLimit};
    /// use switchboard::prelude::*;
    ///
    /// #[derive(Default)]
    /// struct Telemetry;
    ///
    /// impl WebsocketConsumer for Telemetry {
    ///     type Event = NoEvent;
    /// }
    ///
    /// let limit = RateLimit::default().messages(Rate::new(2_000, 5_000));
    /// let route = URLRouter::new().route("/ws/telemetry/", Telemetry::as_app().rate_limit(limit));
    /// ```
    pub fn rate_limit(mut self, limit: RateLimit) -> ConsumerApp<C> {
        self.rate_limit = Some(Arc::new(limit));
        self
    }
}

impl<C> Clone for ConsumerApp<C> {
    fn clone(&self) -> Self {
        ConsumerApp {
            factory: Arc::clone(&self.factory),
            rate_limit: self.rate_limit.clone(),
        }
    }
}

impl<C> fmt::Debug for ConsumerApp<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsumerApp<{}>", std::any::type_name::<C>())
    }
}

impl<C: WebsocketConsumer> Application for ConsumerApp<C> {
    async fn call(&self, scope: Scope, conn: Connection) {
        match conn {
            Connection::Websocket(mut ws) => {
                if let Some(limit) = &self.rate_limit {
                    ws.rate_limit = limit.is_limited().then(|| Arc::clone(limit));
                }
                match ws.tasks.clone() {
                    // The routing and middleware futures end here; the consumer lives on alone.
                    Some(tasks) => {
                        tasks.spawn(runner::run((self.factory)(), scope, ws));
                    }
                    None => runner::run((self.factory)(), scope, ws).await,
                }
            }
            Connection::Http(http) => {
                // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to.
                let mut response = response::status(StatusCode::UPGRADE_REQUIRED);
                let headers = response.headers_mut();
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
                http.respond(response);
            }
        }
    }
}
