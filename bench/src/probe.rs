//! The text of a benchmark chat message, and reading it back out of what the server delivers.
//!
//! A probe is plain text, `p<phase> s<sender> n<seq> t<nanos>` with optional padding after a
//! space, so it travels through any chat server unchanged and costs no JSON escaping. `t` is
//! the *scheduled* send time in nanoseconds since the load generator started: latency is measured
//! from when a message should have been sent, so a server that makes the sender fall behind is
//! charged for it (no coordinated omission).

use std::borrow::Cow;
use std::fmt::Write;

use serde::Deserialize;

/// What a benchmark message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The measurement phase (one `maxrate` step, or the single `fanout` phase).
    pub phase: u32,
    /// The sender's index among all senders of the run.
    pub sender: u32,
    /// The sender's message counter.
    pub seq: u64,
    /// Scheduled send time, nanoseconds since the load generator's clock origin.
    pub sent_ns: u64,
}

impl Probe {
    /// The message text, padded with `x` to at least `size` bytes.
    pub fn encode(&self, size: usize) -> String {
        let mut text = String::with_capacity(size.max(48));
        let _ = write!(
            text,
            "p{} s{} n{} t{}",
            self.phase, self.sender, self.seq, self.sent_ns
        );
        if text.len() + 1 < size {
            text.push(' ');
            let pad = size - text.len();
            text.extend(std::iter::repeat_n('x', pad));
        }
        text
    }

    /// Reads a message text back; `None` when it is not a probe.
    pub fn parse(text: &str) -> Option<Probe> {
        let mut fields = text.split_ascii_whitespace();
        let mut field =
            |tag: char| -> Option<u64> { fields.next()?.strip_prefix(tag)?.parse().ok() };
        Some(Probe {
            phase: u32::try_from(field('p')?).ok()?,
            sender: u32::try_from(field('s')?).ok()?,
            seq: field('n')?,
            sent_ns: field('t')?,
        })
    }

    /// The JSON a client sends: `{"message": "<probe>"}`.
    pub fn client_frame(&self, size: usize) -> String {
        let text = self.encode(size);
        // Probe text needs no escaping: digits, letters and spaces only.
        let mut frame = String::with_capacity(text.len() + 16);
        frame.push_str("{\"message\":\"");
        frame.push_str(&text);
        frame.push_str("\"}");
        frame
    }
}

/// One frame the server delivered, as far as the load generator cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// A `chat.message` whose text is a probe.
    Probe(Probe),
    /// `{"type": "error", ...}`: the server refused something the load generator sent.
    Error,
    /// Anything else (history, notices, a chat message that is not a probe).
    Other,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

/// Classifies a text frame from the server.
pub fn classify(json: &str) -> Delivered {
    let Ok(frame) = serde_json::from_str::<Frame<'_>>(json) else {
        return Delivered::Other;
    };
    match frame.kind.as_deref() {
        Some("error") => return Delivered::Error,
        Some("chat.message") | None => {}
        Some(_) => return Delivered::Other,
    }
    frame
        .message
        .as_deref()
        .and_then(Probe::parse)
        .map_or(Delivered::Other, Delivered::Probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Probe = Probe {
        phase: 3,
        sender: 12,
        seq: 456,
        sent_ns: 1_234_567_890_123,
    };

    #[test]
    fn encodes_and_parses_back() {
        assert_eq!(P.encode(0), "p3 s12 n456 t1234567890123");
        assert_eq!(Probe::parse(&P.encode(0)), Some(P));
        let padded = P.encode(100);
        assert_eq!(padded.len(), 100);
        assert_eq!(Probe::parse(&padded), Some(P));
    }

    #[test]
    fn refuses_what_is_not_a_probe() {
        assert_eq!(Probe::parse("hello"), None);
        assert_eq!(Probe::parse("p1 s2 n3"), None);
        assert_eq!(Probe::parse("p1 s2 t3 n4"), None);
        assert_eq!(Probe::parse("p99999999999 s2 n3 t4"), None);
        assert_eq!(Probe::parse("p-1 s2 n3 t4"), None);
    }

    #[test]
    fn classifies_server_frames() {
        let text = P.encode(64);
        let chat = format!(r#"{{"type":"chat.message","message":"{text}","user":"guest-0001"}}"#);
        assert_eq!(classify(&chat), Delivered::Probe(P));
        // A server that sends only the message (the protocol's minimum) is understood too.
        assert_eq!(
            classify(&format!(r#"{{"message":"{text}"}}"#)),
            Delivered::Probe(P)
        );
        assert_eq!(
            classify(r#"{"type":"error","error":"empty message"}"#),
            Delivered::Error
        );
        assert_eq!(
            classify(r#"{"type":"chat.history","messages":[]}"#),
            Delivered::Other
        );
        assert_eq!(
            classify(r#"{"type":"chat.message","message":"hi","user":"a"}"#),
            Delivered::Other
        );
        assert_eq!(classify("not json"), Delivered::Other);
    }

    #[test]
    fn client_frame_is_the_protocol_json() {
        let frame = P.client_frame(0);
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["message"], P.encode(0));
    }
}
