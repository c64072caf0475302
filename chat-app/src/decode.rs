//! Hand-written decoding of the chat's two hot JSON shapes, each read once per chat message.
//!
//! serde's derive would accept an array for a struct (positionally) and decodes an internally
//! tagged enum by buffering every field first; these visitors read the object once, in place,
//! refuse every other shape, and ignore fields they do not know.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::consumers::{ChatEvent, ChatInput};

/// The `"type"` of [`ChatEvent::ChatMessage`].
const CHAT_MESSAGE: &str = "chat.message";

/// The keys these shapes read; any other is skipped.
enum Key {
    Type,
    Message,
    User,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "type" => Key::Type,
                    "message" => Key::Message,
                    "user" => Key::User,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A string field, named in the error when it is something else.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"message\" to be a string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text, E> {
                Ok(Text(text.to_owned()))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Text, E> {
                Ok(Text(text))
            }
        }
        deserializer.deserialize_string(TextVisitor)
    }
}

/// Whether a `"type"` is [`CHAT_MESSAGE`], compared without copying it.
struct IsChatMessage(bool);

impl<'de> Deserialize<'de> for IsChatMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IsChatMessage, D::Error> {
        struct TagVisitor;
        impl Visitor<'_> for TagVisitor {
            type Value = IsChatMessage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event type")
            }
            fn visit_str<E: de::Error>(self, tag: &str) -> Result<IsChatMessage, E> {
                Ok(IsChatMessage(tag == CHAT_MESSAGE))
            }
        }
        deserializer.deserialize_str(TagVisitor)
    }
}

/// `{"message": "<text>", ...}`: an object with a string `message`; other fields are ignored.
impl<'de> Deserialize<'de> for ChatInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ChatInput, D::Error> {
        struct InputVisitor;
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = ChatInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with a string \"message\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatInput, A::Error> {
                let mut message = None;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Message => message = Some(map.next_value::<Text>()?.0),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let message = message.ok_or_else(|| de::Error::custom("missing \"message\""))?;
                Ok(ChatInput { message })
            }
        }
        deserializer.deserialize_map(InputVisitor)
    }
}

/// `{"type": "chat.message", "message": …, "user": …}`; any other type is refused.
impl<'de> Deserialize<'de> for ChatEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ChatEvent, D::Error> {
        struct EventVisitor;
        impl<'de> Visitor<'de> for EventVisitor {
            type Value = ChatEvent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a chat event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatEvent, A::Error> {
                let (mut tagged, mut message, mut user) = (None, None, None);
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Type => tagged = Some(map.next_value::<IsChatMessage>()?.0),
                        Key::Message => message = Some(map.next_value::<String>()?),
                        Key::User => user = Some(map.next_value::<String>()?),
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                match tagged {
                    Some(true) => {}
                    Some(false) => return Err(de::Error::custom("unknown chat event type")),
                    None => return Err(de::Error::missing_field("type")),
                }
                Ok(ChatEvent::ChatMessage {
                    message: message.ok_or_else(|| de::Error::missing_field("message"))?,
                    user: user.ok_or_else(|| de::Error::missing_field("user"))?,
                })
            }
        }
        deserializer.deserialize_map(EventVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Result<ChatInput, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn chat_input_takes_objects_with_a_string_message_only() {
        assert_eq!(input(r#"{"message":"hi"}"#).unwrap().message, "hi");
        assert_eq!(
            input(r#"{"x":[1,{"y":2}],"message":"h\u00e9","z":null}"#)
                .unwrap()
                .message,
            "hé"
        );
        assert!(input(r#"["hi"]"#).is_err());
        assert!(input(r#""hi""#).is_err());
        assert!(
            input(r#"{"message":5}"#)
                .unwrap_err()
                .contains("\"message\" to be a string")
        );
        assert!(
            input(r#"{"text":"hi"}"#)
                .unwrap_err()
                .contains("missing \"message\"")
        );
        assert!(input(r#"{"message":"hi""#).is_err());
    }

    #[test]
    fn chat_events_round_trip_and_other_types_are_refused() {
        let event = ChatEvent::ChatMessage {
            message: "hi \"there\"".into(),
            user: "ann".into(),
        };
        let json = serde_json::to_string(&event).unwrap();
        let ChatEvent::ChatMessage { message, user } = serde_json::from_str(&json).unwrap();
        assert_eq!((message.as_str(), user.as_str()), ("hi \"there\"", "ann"));
        let reordered = r#"{"user":"bo","extra":1,"message":"m","type":"chat.message"}"#;
        assert!(serde_json::from_str::<ChatEvent>(reordered).is_ok());
        for bad in [
            r#"{"type":"chat.other","message":"m","user":"u"}"#,
            r#"{"message":"m","user":"u"}"#,
            r#"{"type":"chat.message","user":"u"}"#,
            r#"[1]"#,
        ] {
            assert!(serde_json::from_str::<ChatEvent>(bad).is_err(), "{bad}");
        }
    }
}
