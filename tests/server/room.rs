//! A room member consumer for the tests of rate limits and slow clients, and the clients those
//! tests need: one that reads up to a close frame, one that reads nothing.

use futures::StreamExt;
use switchboard::prelude::*;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

/// A room member: forwards what the room says, says what its client sends to the room (the
/// JSON consumer's defaults answer bad input and excess), records its disconnect code.
pub struct Member {
    pub codes: watch::Sender<Vec<u16>>,
}

#[derive(Deserialize)]
pub struct Say {
    pub say: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename = "room.said")]
pub struct Said {
    pub said: String,
}

impl JsonWebsocketConsumer for Member {
    type Incoming = Say;
    type Event = Said;

    fn groups(&self) -> Vec<String> {
        vec!["room".to_owned()]
    }

    async fn receive_json(&mut self, ws: &mut Websocket, content: Say) -> Result<()> {
        ws.group_send("room", &Said { said: content.say }).await
    }

    async fn event(&mut self, ws: &mut Websocket, event: Event<Said>) -> Result<()> {
        ws.forward(&event).await
    }

    async fn disconnect(&mut self, _ws: &mut Websocket, code: CloseCode) -> Result<()> {
        self.codes.send_modify(|codes| codes.push(code.into()));
        Ok(())
    }
}

/// A member application, and the codes its consumers' `disconnect()` got.
pub fn member() -> (ConsumerApp<Member>, watch::Receiver<Vec<u16>>) {
    let (codes, seen) = watch::channel(Vec::new());
    let member = ConsumerApp::new(move || Member {
        codes: codes.clone(),
    });
    (member, seen)
}

/// The member route, and the codes its consumers' `disconnect()` got.
pub fn room() -> (ProtocolTypeRouter, watch::Receiver<Vec<u16>>) {
    let (member, seen) = member();
    let app = ProtocolTypeRouter::new().websocket(URLRouter::new().route("/ws/room/", member));
    (app, seen)
}

/// Reads frames until the close frame: the texts before it, and its code and reason.
pub async fn drain_until_close(client: &mut Client) -> (Vec<String>, u16, String) {
    within("frames up to a close frame", async {
        let mut texts = Vec::new();
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Text(text))) => texts.push(text.to_string()),
                Some(Ok(WsMessage::Close(Some(frame)))) => {
                    return (texts, u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(WsMessage::Close(None))) => return (texts, 1005, String::new()),
                Some(Ok(_)) => {}
                Some(Err(err)) => panic!("connection failed before a close frame: {err}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    })
    .await
}

/// A client whose socket holds little, and that reads nothing until told to.
pub async fn non_reader(server: &TestServer, path: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = within("TCP connect", socket.connect(server.addr))
        .await
        .unwrap();
    let (client, _) = within(
        "the handshake",
        tokio_tungstenite::client_async(
            server.ws_url(path),
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
        ),
    )
    .await
    .unwrap();
    client
}
