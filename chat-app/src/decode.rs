//! Decoding of the chat's two hot JSON shapes, each read once per chat message.
//!
//! A client's input is decoded by hand: serde's derive would accept an array for a struct
//! (positionally), and only a JSON object is a valid input. A room event is read as a plain
//! struct whose `"type"` field is checked, rather than as serde's internally tagged enum, which
//! buffers every field before it looks at the tag.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::consumers::{ChatEvent, ChatInput};

/// The keys a chat input reads; any other is skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Key {
    Message,
    #[serde(other)]
    Other,
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

/// The one `"type"` a room event may have, compared without copying it.
#[derive(Deserialize)]
enum ChatEventType {
    #[serde(rename = "chat.message")]
    ChatMessage,
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
                        Key::Other => {
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

/// `{"type": "chat.message", "message": …, "user": …}` (`user` may be missing, as in the events
/// of the Channels tutorial's consumer); any other type is refused. The tag is
/// a field of a plain struct, which serde reads in place (only internally tagged enums buffer).
impl<'de> Deserialize<'de> for ChatEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ChatEvent, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            #[serde(rename = "type")]
            _type: ChatEventType,
            message: String,
            // The Channels tutorial's events carry no user: a Django process' message has none.
            #[serde(default)]
            user: String,
        }
        let Fields { message, user, .. } = Fields::deserialize(deserializer)?;
        Ok(ChatEvent::ChatMessage { message, user })
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
        let from_django = r#"{"type":"chat.message","message":"hi"}"#;
        let ChatEvent::ChatMessage { message, user } = serde_json::from_str(from_django).unwrap();
        assert_eq!((message.as_str(), user.as_str()), ("hi", ""));
        for bad in [
            r#"{"type":"chat.other","message":"m","user":"u"}"#,
            r#"{"message":"m","user":"u"}"#,
            r#"{"type":"chat.message","user":"u"}"#,
            r#"{"type":"chat.message","message":5}"#,
            r#"[1]"#,
        ] {
            assert!(serde_json::from_str::<ChatEvent>(bad).is_err(), "{bad}");
        }
    }
}
