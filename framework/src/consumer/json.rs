//! Consumers that speak JSON in both directions.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::websocket::unhandled_event;
use super::{CloseCode, Message, Websocket, WebsocketConsumer};
use crate::error::Result;
use crate::layer::{Event, LayerStatus, PresenceEvent};

/// Why an incoming frame did not become a [`JsonWebsocketConsumer::Incoming`] value.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A binary frame arrived where JSON text was expected.
    #[error("binary frames are not accepted: send JSON as a text frame")]
    Binary,
    /// The text is not JSON at all.
    #[error("not valid JSON: {0}")]
    NotJson(serde_json::Error),
    /// Valid JSON, but not the expected shape.
    #[error("unexpected JSON: {0}")]
    Shape(serde_json::Error),
}

impl DecodeError {
    fn from_json(err: serde_json::Error) -> DecodeError {
        match err.classify() {
            Category::Data => DecodeError::Shape(err),
            Category::Io | Category::Syntax | Category::Eof => DecodeError::NotJson(err),
        }
    }
}

/// A consumer whose incoming frames are JSON decoded into [`Self::Incoming`](Self::Incoming)
/// (Channels' `JsonWebsocketConsumer`).
///
/// A frame that does not decode reaches [`receive_invalid`](Self::receive_invalid) as a
/// [`DecodeError`]; the default answers `{"type": "error", "error": "<reason>"}` to that client
/// and keeps the connection open.
///
/// ```
/// use switchboard::prelude::*;
///
/// #[derive(Deserialize)]
/// struct Incoming {
///     message: String,
/// }
///
/// #[derive(Default)]
/// struct Echo;
///
/// impl JsonWebsocketConsumer for Echo {
///     type Incoming = Incoming;
///     type Event = NoEvent;
///
///     async fn receive_json(&mut self, ws: &mut Websocket, content: Incoming) -> Result<()> {
///         ws.send_json(&serde_json::json!({ "echo": content.message })).await
///     }
/// }
///
/// let route = URLRouter::new().route("/ws/echo/", Echo::as_app());
/// ```
pub trait JsonWebsocketConsumer: Send + Sized + 'static {
    /// What clients send.
    type Incoming: DeserializeOwned + Send;
    /// The channel-layer messages this consumer handles ([`NoEvent`](super::NoEvent) for none).
    type Event: DeserializeOwned + Send + Sync + 'static;

    /// Groups joined before `connect` and left after `disconnect`.
    fn groups(&self) -> Vec<String> {
        Vec::new()
    }

    /// As [`WebsocketConsumer::connect`]. The default accepts.
    fn connect(&mut self, ws: &mut Websocket) -> impl Future<Output = Result<()>> + Send {
        async move { ws.accept().await }
    }

    /// A frame decoded into `Incoming`.
    fn receive_json(
        &mut self,
        ws: &mut Websocket,
        content: Self::Incoming,
    ) -> impl Future<Output = Result<()>> + Send;

    /// A frame that did not decode. The default answers an error event to this client only.
    fn receive_invalid(
        &mut self,
        ws: &mut Websocket,
        error: DecodeError,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            ws.send_json(&serde_json::json!({"type": "error", "error": error.to_string()}))
                .await
        }
    }

    /// A frame over the connection's rate limit (see [`WebsocketConsumer::rate_limited`]):
    /// neither decoded nor given to `receive_json`. The default answers
    /// `{"type": "error", "error": "rate limited"}` to this client, as a decode error is
    /// answered; a client that keeps at it is closed with 1008 all the same.
    fn rate_limited(
        &mut self,
        ws: &mut Websocket,
        _message: Message,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            ws.send_json(&serde_json::json!({"type": "error", "error": "rate limited"}))
                .await
        }
    }

    /// As [`WebsocketConsumer::event`]. The default logs and drops the event.
    fn event(
        &mut self,
        _ws: &mut Websocket,
        event: Event<Self::Event>,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            unhandled_event::<Self, _>(&event);
            Ok(())
        }
    }

    /// As [`WebsocketConsumer::presence`]. The default ignores it.
    fn presence(
        &mut self,
        _ws: &mut Websocket,
        _event: Event<PresenceEvent>,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// The channel layer lost or regained its backend (Redis): Channels' `layer.disconnected`
    /// and `layer.reconnected`. While disconnected, only members in this process hear each
    /// other; after a reconnection, messages sent meanwhile may be missing, so this is the
    /// place to tell the client to resync. The default does nothing.
    fn layer_status(
        &mut self,
        _ws: &mut Websocket,
        _status: LayerStatus,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// As [`WebsocketConsumer::disconnect`].
    fn disconnect(
        &mut self,
        _ws: &mut Websocket,
        _code: CloseCode,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

impl<T: JsonWebsocketConsumer> WebsocketConsumer for T {
    type Event = <T as JsonWebsocketConsumer>::Event;

    fn groups(&self) -> Vec<String> {
        JsonWebsocketConsumer::groups(self)
    }

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        JsonWebsocketConsumer::connect(self, ws).await
    }

    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        let decoded = match &message {
            Message::Text(text) => {
                serde_json::from_str(text.as_str()).map_err(DecodeError::from_json)
            }
            Message::Binary(_) => Err(DecodeError::Binary),
        };
        match decoded {
            Ok(content) => self.receive_json(ws, content).await,
            Err(error) => self.receive_invalid(ws, error).await,
        }
    }

    async fn rate_limited(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        JsonWebsocketConsumer::rate_limited(self, ws, message).await
    }

    async fn event(
        &mut self,
        ws: &mut Websocket,
        event: Event<<T as JsonWebsocketConsumer>::Event>,
    ) -> Result<()> {
        JsonWebsocketConsumer::event(self, ws, event).await
    }

    async fn presence(&mut self, ws: &mut Websocket, event: Event<PresenceEvent>) -> Result<()> {
        JsonWebsocketConsumer::presence(self, ws, event).await
    }

    async fn layer_status(&mut self, ws: &mut Websocket, status: LayerStatus) -> Result<()> {
        JsonWebsocketConsumer::layer_status(self, ws, status).await
    }

    async fn disconnect(&mut self, ws: &mut Websocket, code: CloseCode) -> Result<()> {
        JsonWebsocketConsumer::disconnect(self, ws, code).await
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::*;
    use crate::consumer::NoEvent;
    use crate::testing::WebsocketCommunicator;

    #[derive(Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Command {
        Say { text: String },
    }

    #[derive(Default)]
    struct Parrot;

    impl JsonWebsocketConsumer for Parrot {
        type Incoming = Command;
        type Event = NoEvent;

        async fn receive_json(&mut self, ws: &mut Websocket, content: Command) -> Result<()> {
            let Command::Say { text } = content;
            ws.send_json(&json!({"said": text})).await
        }
    }

    #[tokio::test]
    async fn decode_errors_answer_the_client_and_keep_the_connection_open() {
        let mut ws = WebsocketCommunicator::new(Parrot::as_app(), "/");
        ws.connect().await.unwrap();

        ws.send_text("not json").await.unwrap();
        let answer: Value = ws.receive_json().await.unwrap();
        assert_eq!(answer["type"], "error");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with("not valid JSON: "), "{error}");

        ws.send_json(&json!({"type": "shout", "text": "hi"}))
            .await
            .unwrap();
        let answer: Value = ws.receive_json().await.unwrap();
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.starts_with("unexpected JSON: unknown variant `shout`"),
            "{error}"
        );

        ws.send_json(&json!({"type": "say"})).await.unwrap();
        let answer: Value = ws.receive_json().await.unwrap();
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.starts_with("unexpected JSON: missing field `text`"),
            "{error}"
        );

        ws.send_bytes(br#"{"type": "say", "text": "hi"}"#)
            .await
            .unwrap();
        assert_eq!(
            ws.receive_json::<Value>().await.unwrap(),
            json!({"type": "error", "error": "binary frames are not accepted: send JSON as a text frame"})
        );

        ws.send_json(&json!({"type": "say", "text": "still here"}))
            .await
            .unwrap();
        assert_eq!(
            ws.receive_json::<Value>().await.unwrap(),
            json!({"said": "still here"})
        );
    }

    /// Closes on anything that does not decode.
    #[derive(Default)]
    struct Picky;

    impl JsonWebsocketConsumer for Picky {
        type Incoming = Command;
        type Event = NoEvent;

        async fn receive_json(&mut self, _ws: &mut Websocket, _content: Command) -> Result<()> {
            Ok(())
        }

        async fn receive_invalid(&mut self, ws: &mut Websocket, error: DecodeError) -> Result<()> {
            let code = match error {
                DecodeError::Binary => CloseCode::Unsupported,
                DecodeError::NotJson(_) | DecodeError::Shape(_) => CloseCode::Invalid,
            };
            ws.close(code, &error.to_string()).await
        }
    }

    #[tokio::test]
    async fn receive_invalid_can_close_instead() {
        let mut ws = WebsocketCommunicator::new(Picky::as_app(), "/");
        ws.connect().await.unwrap();
        ws.send_text("[1, 2]").await.unwrap();
        let close = ws.receive_close().await.unwrap();
        assert_eq!(close.code, CloseCode::Invalid);
        assert!(close.reason.starts_with("unexpected JSON: "), "{close:?}");

        let mut ws = WebsocketCommunicator::new(Picky::as_app(), "/");
        ws.connect().await.unwrap();
        ws.send_bytes([0xff]).await.unwrap();
        assert_eq!(
            ws.receive_close().await.unwrap().code,
            CloseCode::Unsupported
        );
    }
}
