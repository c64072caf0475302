//! `reference`: the smallest honest broadcast chat server on tokio + tokio-tungstenite,
//! speaking the chat-app's WebSocket protocol on `/ws/chat/{room}/`.
//!
//! It is the bar switchboard is measured against: what this stack costs without a framework.
//! One task per connection selecting over the socket and a bounded queue; rooms are a map of
//! queues behind one mutex; an outgoing message is encoded once and the same buffer is shared
//! by every member's frame; a small read buffer. It has none of the framework's features
//! (no HTTP pages, sessions, origin checks, keepalive pings, history or channel layer).
//!
//! ```text
//! reference --bind 127.0.0.1:9000
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Frames a member's queue holds before it misses messages (as the in-memory layer's 100).
const QUEUE: usize = 100;
/// Frames written back to back before one flush.
const BATCH: usize = 64;
/// Longest message, in characters (the chat protocol's limit).
const MAX_CHARS: usize = 4096;

/// Minimal tokio-tungstenite broadcast chat server (benchmark reference).
#[derive(Debug, Parser)]
#[command(name = "reference", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    bind: String,
}

type Queue = mpsc::Sender<Utf8Bytes>;

#[derive(Default)]
struct Rooms {
    rooms: Mutex<HashMap<String, Vec<(u64, Queue)>>>,
    next_id: AtomicU64,
}

impl Rooms {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<(u64, Queue)>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn join(&self, room: &str, queue: Queue) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(room.to_owned())
            .or_default()
            .push((id, queue));
        id
    }

    fn leave(&self, room: &str, id: u64) {
        let mut rooms = self.lock();
        if let Some(members) = rooms.get_mut(room) {
            members.retain(|(member, _)| *member != id);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Hands the same frame buffer to every member; a full queue misses this one message.
    fn broadcast(&self, room: &str, frame: Utf8Bytes) {
        if let Some(members) = self.lock().get_mut(room) {
            members.retain(|(_, queue)| match queue.try_send(frame.clone()) {
                Ok(()) | Err(TrySendError::Full(_)) => true,
                Err(TrySendError::Closed(_)) => false,
            });
        }
    }
}

#[derive(Deserialize)]
struct Incoming {
    message: String,
}

#[derive(Serialize)]
struct Outgoing<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
    user: &'a str,
}

/// `/ws/chat/{room}/` with the chat-app's room rule, `[A-Za-z0-9_-]{1,64}`.
fn room_of(path: &str) -> Option<&str> {
    let room = path.strip_prefix("/ws/chat/")?.strip_suffix('/')?;
    let valid = (1..=64).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    valid.then_some(room)
}

/// What a client's text frame becomes: a frame for the room, or an error for the sender.
fn answer(text: &str, user: &str) -> Result<Utf8Bytes, Utf8Bytes> {
    let error = |reason: &str| {
        let json = serde_json::json!({"type": "error", "error": reason}).to_string();
        Utf8Bytes::from(json)
    };
    let incoming: Incoming =
        serde_json::from_str(text).map_err(|_| error("expected {\"message\": \"<text>\"}"))?;
    if incoming.message.trim().is_empty() {
        return Err(error("empty message"));
    }
    if incoming.message.chars().count() > MAX_CHARS {
        return Err(error("message too long"));
    }
    let outgoing = Outgoing {
        kind: "chat.message",
        message: &incoming.message,
        user,
    };
    serde_json::to_string(&outgoing)
        .map(Utf8Bytes::from)
        .map_err(|_| error("cannot encode"))
}

async fn serve(stream: TcpStream, rooms: Arc<Rooms>) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(4 << 10)
        .write_buffer_size(8 << 10)
        .max_message_size(Some(64 << 10))
        .max_frame_size(Some(64 << 10));
    let mut room = None;
    #[allow(clippy::result_large_err)] // the signature is tungstenite's `Callback`
    let callback = |request: &Request, response: Response| match room_of(request.uri().path()) {
        Some(name) => {
            room = Some(name.to_owned());
            Ok(response)
        }
        None => {
            let mut refusal = ErrorResponse::new(Some("no such room\n".to_owned()));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            Err(refusal)
        }
    };
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    let Some(room) = room else {
        return;
    };
    let (queue, mut inbox) = mpsc::channel::<Utf8Bytes>(QUEUE);
    let id = rooms.join(&room, queue);
    let user = format!("guest-{:04}", id % 10_000);

    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => match answer(text.as_str(), &user) {
                    Ok(frame) => rooms.broadcast(&room, frame),
                    Err(error) => {
                        if ws.send(Message::Text(error)).await.is_err() {
                            break;
                        }
                    }
                },
                Some(Ok(Message::Binary(_))) => {
                    let error = answer("", &user).err().unwrap_or_default();
                    if ws.send(Message::Text(error)).await.is_err() {
                        break;
                    }
                }
                // Pings are answered by tungstenite; a close is echoed by it too.
                Some(Ok(Message::Close(_))) => {
                    let _ = ws.flush().await;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            Some(frame) = inbox.recv() => {
                if ws.feed(Message::Text(frame)).await.is_err() {
                    break;
                }
                let mut written = 1;
                while written < BATCH {
                    let Ok(frame) = inbox.try_recv() else { break };
                    if ws.feed(Message::Text(frame)).await.is_err() {
                        break;
                    }
                    written += 1;
                }
                if ws.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    rooms.leave(&room, id);
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(&cli.bind).await?;
    println!(
        "reference chat: listening on http://{}/",
        listener.local_addr()?
    );
    let rooms = Arc::new(Rooms::default());
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, Arc::clone(&rooms)));
            }
            Err(err) => {
                // Out of file descriptors, typically: back off rather than spin.
                eprintln!("reference: accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_follow_the_chat_app_rule() {
        assert_eq!(room_of("/ws/chat/lobby/"), Some("lobby"));
        assert_eq!(room_of("/ws/chat/a-b_c9/"), Some("a-b_c9"));
        assert_eq!(room_of("/ws/chat/"), None);
        assert_eq!(room_of("/ws/chat/a b/"), None);
        assert_eq!(room_of("/ws/chat/lobby"), None);
        assert_eq!(room_of(&format!("/ws/chat/{}/", "a".repeat(65))), None);
    }

    #[test]
    fn messages_are_encoded_as_the_chat_app_does() {
        let frame = answer(r#"{"message":"hi"}"#, "guest-0001").unwrap();
        assert_eq!(
            frame.as_str(),
            r#"{"type":"chat.message","message":"hi","user":"guest-0001"}"#
        );
        assert!(answer("nope", "u").is_err());
        assert!(answer(r#"{"message":"  "}"#, "u").is_err());
        assert!(answer(r#"{"message":1}"#, "u").is_err());
    }
}
