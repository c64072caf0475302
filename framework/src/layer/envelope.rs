//! Messages as they travel through a layer: encoded once, shared by every local recipient.

use std::any::{Any, TypeId};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use tokio::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::log::Position;
use super::presence::PresenceEvent;
use crate::error::Result;

type Decoded = (TypeId, Option<Arc<dyn Any + Send + Sync>>);

/// What a few messages carry beyond their JSON; plain group messages carry nothing.
enum Annex {
    /// Sent to a logged group: where it stands in the log.
    Logged(Logged),
    /// A presence event for a consumer's `presence()` handler (see
    /// [`presence`](super::presence)).
    Presence(Presence),
}

/// Where a message sent to a logged group stands in its log.
struct Logged {
    position: Position,
    /// The JSON with the position's keys added, made the first time a member forwards it.
    text: OnceLock<Utf8Bytes>,
}

/// A presence event, shared by every watcher it is handed to.
struct Presence {
    event: Arc<PresenceEvent>,
    /// The event as the watchers' clients see it, made by the first watcher that asks.
    text: OnceLock<Utf8Bytes>,
}

/// One layer message: its JSON text, encoded once, plus the first typed decoding of it.
///
/// A group send wraps the message in one `Arc<Envelope>` that every local member receives; the
/// first member to decode it caches the typed value, so a room of a thousand members costs one
/// encode and one decode, and a consumer that forwards the event to its client sends the very
/// same bytes.
pub struct Envelope {
    text: Utf8Bytes,
    created: Instant,
    decoded: OnceLock<Decoded>,
    /// Boxed: most messages go to groups without a log and are no presence event, and a
    /// pointer is all they pay (and one test in a consumer's loop).
    annex: Option<Box<Annex>>,
}

impl Envelope {
    /// Encodes `message` as JSON.
    pub fn encode<T: Serialize + ?Sized>(message: &T) -> Result<Arc<Envelope>> {
        Ok(Envelope::from_json(serde_json::to_string(message)?))
    }

    /// Encodes `message` as JSON and keeps the value itself as the envelope's decoding: a
    /// receiver in this process that decodes it as `T` gets the value without parsing.
    ///
    /// For sending an owned value in-process (a consumer's group send or a job for a worker);
    /// the JSON is still made, for the Redis layer, for receivers of other types and for logs.
    /// `T`'s JSON must decode back to an equal value (derive both `Serialize` and
    /// `Deserialize`), since a receiver in another process gets it from the JSON.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use switchboard::layer::Envelope;
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Job { n: u32 }
    ///
    /// let envelope = Envelope::typed(Job { n: 7 })?;
    /// assert_eq!(envelope.json(), r#"{"n":7}"#);
    /// assert_eq!(envelope.decode::<Job>()?.n, 7); // the value sent, not a parse of the JSON
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn typed<T>(message: T) -> Result<Arc<Envelope>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let text = serde_json::to_string(&message)?;
        let value: Arc<dyn Any + Send + Sync> = Arc::new(message);
        Ok(Arc::new(Envelope {
            text: text.into(),
            created: Instant::now(),
            decoded: OnceLock::from((TypeId::of::<T>(), Some(value))),
            annex: None,
        }))
    }

    /// Wraps JSON text that is already encoded (as it arrives from another process).
    pub fn from_json(text: impl Into<Utf8Bytes>) -> Arc<Envelope> {
        Arc::new(Envelope {
            text: text.into(),
            created: Instant::now(),
            decoded: OnceLock::new(),
            annex: None,
        })
    }

    /// JSON text from another process, sent to a logged group at `position` in its log.
    pub(crate) fn from_json_at(text: impl Into<Utf8Bytes>, position: Position) -> Arc<Envelope> {
        Arc::new(Envelope {
            text: text.into(),
            created: Instant::now(),
            decoded: OnceLock::new(),
            annex: Some(Box::new(Annex::Logged(Logged {
                position,
                text: OnceLock::new(),
            }))),
        })
    }

    /// This message, placed at `position` of its group's log: the text and any decoding made so
    /// far are shared, not copied.
    pub(crate) fn at_position(&self, position: Position) -> Arc<Envelope> {
        Arc::new(Envelope {
            text: self.text.clone(),
            created: self.created,
            decoded: self.decoded.clone(),
            annex: Some(Box::new(Annex::Logged(Logged {
                position,
                text: OnceLock::new(),
            }))),
        })
    }

    /// A presence event for the consumers watching its group; its JSON is the event's own
    /// encoding (`{"type": "presence.state", ...}`).
    pub(crate) fn presence(event: PresenceEvent) -> Result<Arc<Envelope>> {
        let text = serde_json::to_string(&event)?;
        Ok(Arc::new(Envelope {
            text: text.into(),
            created: Instant::now(),
            decoded: OnceLock::new(),
            annex: Some(Box::new(Annex::Presence(Presence {
                event: Arc::new(event),
                text: OnceLock::new(),
            }))),
        }))
    }

    /// The presence event this envelope carries, if it is one.
    pub fn presence_event(&self) -> Option<&Arc<PresenceEvent>> {
        match self.annex.as_deref() {
            Some(Annex::Presence(presence)) => Some(&presence.event),
            _ => None,
        }
    }

    /// The presence event's text for clients, made by `encode` the first time it is asked for
    /// and shared by every later caller (see
    /// [`Websocket::send_presence`](crate::consumer::Websocket::send_presence)). `None` for
    /// an envelope that carries no presence event.
    pub(crate) fn presence_text(
        &self,
        encode: impl FnOnce(&PresenceEvent) -> Result<String>,
    ) -> Option<Result<Utf8Bytes>> {
        let Some(Annex::Presence(presence)) = self.annex.as_deref() else {
            return None;
        };
        if let Some(text) = presence.text.get() {
            return Some(Ok(text.clone()));
        }
        Some(
            encode(&presence.event)
                .map(|text| presence.text.get_or_init(|| Utf8Bytes::from(text)).clone()),
        )
    }

    /// The JSON text, as it was sent.
    pub fn json(&self) -> &str {
        self.text.as_str()
    }

    /// The text a client receives, as a cheaply clonable buffer ready to become a WebSocket text
    /// frame: the JSON as it was sent, with `"epoch"` and `"offset"` added when the message has
    /// a [position](Self::position) (made once, shared by every member that forwards it).
    pub fn text(&self) -> Utf8Bytes {
        match self.annex.as_deref() {
            Some(Annex::Logged(logged)) => logged
                .text
                .get_or_init(|| with_position(self.json(), &logged.position))
                .clone(),
            _ => self.text.clone(),
        }
    }

    /// The message's place in its group's log, when it was sent to a group that keeps one.
    pub fn position(&self) -> Option<&Position> {
        match self.annex.as_deref() {
            Some(Annex::Logged(logged)) => Some(&logged.position),
            _ => None,
        }
    }

    /// When this envelope was made; layers drop messages older than their expiry.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// Decodes the message as `T`, reusing the decoding another recipient already made.
    pub fn decode<T>(&self) -> Result<Arc<T>, serde_json::Error>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let wanted = TypeId::of::<T>();
        if let Some((type_id, Some(value))) = self.decoded.get()
            && *type_id == wanted
            && let Ok(value) = Arc::clone(value).downcast::<T>()
        {
            return Ok(value);
        }
        match serde_json::from_str::<T>(self.json()) {
            Ok(value) => {
                let value = Arc::new(value);
                let erased: Arc<dyn Any + Send + Sync> = value.clone();
                let _ = self.decoded.set((wanted, Some(erased)));
                Ok(value)
            }
            Err(err) => {
                let _ = self.decoded.set((wanted, None));
                Err(err)
            }
        }
    }
}

/// `json` with the position's keys added, when it is a JSON object; unchanged otherwise (there
/// is nowhere to put them). The epoch is letters and digits, so nothing needs escaping.
fn with_position(json: &str, position: &Position) -> Utf8Bytes {
    let trimmed = json.trim_end();
    let Some(body) = trimmed.strip_suffix('}') else {
        return Utf8Bytes::from(json.to_owned());
    };
    if !body.trim_start().starts_with('{') {
        return Utf8Bytes::from(json.to_owned());
    }
    let empty = body.trim_start()[1..].trim().is_empty();
    let separator = if empty { "" } else { "," };
    let text = format!(
        "{body}{separator}\"epoch\":\"{}\",\"offset\":{}}}",
        position.epoch, position.offset
    );
    Utf8Bytes::from(text)
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("json", &self.json())
            .field("position", &self.position())
            .finish()
    }
}

/// A typed layer event handed to a consumer's `event()`: derefs to the value, and keeps the
/// original encoding so [`Websocket::forward`](crate::consumer::Websocket::forward) can send it
/// to the client without encoding it again.
pub struct Event<T> {
    value: Arc<T>,
    envelope: Arc<Envelope>,
}

impl<T> Event<T> {
    pub(crate) fn new(value: Arc<T>, envelope: Arc<Envelope>) -> Event<T> {
        Event { value, envelope }
    }

    /// The envelope this event came in.
    pub fn envelope(&self) -> &Arc<Envelope> {
        &self.envelope
    }

    /// The value, cloned out if other recipients still share it.
    pub fn into_inner(self) -> T
    where
        T: Clone,
    {
        Arc::unwrap_or_clone(self.value)
    }
}

impl<T> Deref for Event<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Event<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(tag = "type")]
    enum Ev {
        #[serde(rename = "chat.message")]
        ChatMessage { message: String },
    }

    #[test]
    fn encodes_once_and_shares_the_decoding() {
        let envelope = Envelope::encode(&Ev::ChatMessage {
            message: "hi".into(),
        })
        .unwrap();
        assert_eq!(envelope.json(), r#"{"type":"chat.message","message":"hi"}"#);
        let first = envelope.decode::<Ev>().unwrap();
        let second = envelope.decode::<Ev>().unwrap();
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn a_typed_envelope_hands_over_its_value_and_reads_as_its_json() {
        let sent = Ev::ChatMessage {
            message: "hi".into(),
        };
        let encoded = Envelope::encode(&sent).unwrap();
        let typed = Envelope::typed(sent).unwrap();
        assert_eq!(typed.json(), encoded.json());
        let first = typed.decode::<Ev>().unwrap();
        assert!(Arc::ptr_eq(&first, &typed.decode::<Ev>().unwrap()));
        assert_eq!(*first, *encoded.decode::<Ev>().unwrap());
        // Decoded as another type, it is read from its JSON.
        let value = typed.decode::<serde_json::Value>().unwrap();
        assert_eq!(value["message"], "hi");
    }

    #[test]
    fn a_positioned_message_reaches_clients_with_its_position() {
        let sent = Envelope::typed(Ev::ChatMessage {
            message: "hi".into(),
        })
        .unwrap();
        let first = sent.decode::<Ev>().unwrap();
        let position = Position::new(Arc::from("ep0ch"), 7);
        let logged = sent.at_position(position.clone());
        assert_eq!(logged.json(), sent.json(), "the JSON as sent");
        assert_eq!(
            logged.text().as_str(),
            r#"{"type":"chat.message","message":"hi","epoch":"ep0ch","offset":7}"#
        );
        assert_eq!(logged.position(), Some(&position));
        assert!(Arc::ptr_eq(&first, &logged.decode::<Ev>().unwrap()));
        assert_eq!(sent.text().as_str(), sent.json(), "no position, no keys");

        for (json, text) in [
            ("{}", r#"{"epoch":"ep0ch","offset":7}"#),
            ("{ }", r#"{ "epoch":"ep0ch","offset":7}"#),
            ("[1]", "[1]"),
            ("7", "7"),
        ] {
            let logged = Envelope::from_json_at(json, position.clone());
            assert_eq!(logged.text().as_str(), text, "{json}");
        }
    }

    #[test]
    fn unknown_type_is_an_error_not_a_panic() {
        let envelope = Envelope::from_json(r#"{"type":"chat.unknown"}"#);
        assert!(envelope.decode::<Ev>().is_err());
        assert!(envelope.decode::<Ev>().is_err());
        assert!(envelope.decode::<serde_json::Value>().is_ok());
    }
}
