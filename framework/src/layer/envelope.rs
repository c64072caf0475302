//! Messages as they travel through a layer: encoded once, shared by every local recipient.

use std::any::{Any, TypeId};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use tokio::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::error::Result;

type Decoded = (TypeId, Option<Arc<dyn Any + Send + Sync>>);

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
        }))
    }

    /// Wraps JSON text that is already encoded (as it arrives from another process).
    pub fn from_json(text: impl Into<Utf8Bytes>) -> Arc<Envelope> {
        Arc::new(Envelope {
            text: text.into(),
            created: Instant::now(),
            decoded: OnceLock::new(),
        })
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        self.text.as_str()
    }

    /// The JSON text as a cheaply clonable buffer, ready to become a WebSocket text frame.
    pub fn text(&self) -> Utf8Bytes {
        self.text.clone()
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

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("json", &self.json())
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
    fn unknown_type_is_an_error_not_a_panic() {
        let envelope = Envelope::from_json(r#"{"type":"chat.unknown"}"#);
        assert!(envelope.decode::<Ev>().is_err());
        assert!(envelope.decode::<Ev>().is_err());
        assert!(envelope.decode::<serde_json::Value>().is_ok());
    }
}
