//! [`ApplicationCommunicator`]: a communicator for a scope built by hand.

use std::fmt;

use super::{HttpCommunicator, WebsocketCommunicator};
use crate::application::{Application, BoxApplication};
use crate::scope::{Protocol, Scope};

/// Drives an application with a [`Scope`] you prepared yourself (Channels'
/// `ApplicationCommunicator(application, scope)`).
///
/// Channels' version exchanges raw ASGI messages; switchboard has no such level (an application
/// is called with a scope and a connection), so this is the way in for a test that needs
/// scope fields no request can set: a [`User`](crate::scope::User) as if authentication
/// middleware had run, `url_route` kwargs as if a router had matched, a session, ... It then
/// becomes a [`WebsocketCommunicator`] or an [`HttpCommunicator`], whose options still apply.
///
/// ```
/// use switchboard::prelude::*;
/// use switchboard::scope::Protocol;
/// use switchboard::testing::ApplicationCommunicator;
///
/// #[derive(Default)]
/// struct Greeter;
///
/// impl WebsocketConsumer for Greeter {
///     type Event = NoEvent;
///
///     async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
///         let Some(name) = ws.scope().user.username().map(str::to_owned) else {
///             return ws.deny();
///         };
///         ws.accept().await?;
///         ws.send_text(format!("hello {name}")).await
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), switchboard::testing::Error> {
/// let mut scope = Scope::new(Protocol::Websocket, "/ws/greet/");
/// scope.user = User::authenticated("42", "ada");
///
/// let mut ws = ApplicationCommunicator::new(Greeter::as_app(), scope).websocket();
/// assert!(ws.connect().await?.is_accepted());
/// assert_eq!(ws.receive_text().await?, "hello ada");
/// # Ok(())
/// # }
/// ```
pub struct ApplicationCommunicator {
    app: BoxApplication,
    scope: Scope,
}

impl ApplicationCommunicator {
    /// A communicator that will call `app` with exactly `scope`.
    pub fn new(app: impl Application, scope: Scope) -> ApplicationCommunicator {
        ApplicationCommunicator {
            app: BoxApplication::new(app),
            scope,
        }
    }

    /// A WebSocket client on the scope.
    ///
    /// # Panics
    ///
    /// If the scope's protocol is not [`Protocol::Websocket`].
    pub fn websocket(self) -> WebsocketCommunicator {
        assert_eq!(
            self.scope.protocol,
            Protocol::Websocket,
            "ApplicationCommunicator::websocket() needs a scope built with Protocol::Websocket"
        );
        WebsocketCommunicator::with_scope(self.app, self.scope)
    }

    /// An HTTP request on the scope (method, path, headers as set there).
    ///
    /// # Panics
    ///
    /// If the scope's protocol is not [`Protocol::Http`].
    pub fn http(self) -> HttpCommunicator {
        assert_eq!(
            self.scope.protocol,
            Protocol::Http,
            "ApplicationCommunicator::http() needs a scope built with Protocol::Http"
        );
        HttpCommunicator::with_scope(self.app, self.scope)
    }
}

impl fmt::Debug for ApplicationCommunicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationCommunicator")
            .field("protocol", &self.scope.protocol)
            .field("path", &self.scope.path)
            .finish_non_exhaustive()
    }
}
