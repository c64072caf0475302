//! Path converters: what a route parameter may hold (Django's `str`, `int`, `slug`, `uuid`, `path`).

use std::fmt;
use std::sync::Arc;

/// Validates one captured path parameter.
#[derive(Clone)]
pub enum Converter {
    /// Any non-empty text without `/` (the default).
    Str,
    /// ASCII digits.
    Int,
    /// ASCII letters, digits, `-` and `_`.
    Slug,
    /// A lowercase hyphenated UUID, as Django's `uuid` converter.
    Uuid,
    /// Any non-empty text, `/` included; only valid as the last parameter.
    Path,
    /// An application-defined check, registered with [`URLRouter::converter`](super::URLRouter::converter).
    Custom(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl Converter {
    /// The built-in converter of that name.
    pub fn builtin(name: &str) -> Option<Converter> {
        Some(match name {
            "str" => Converter::Str,
            "int" => Converter::Int,
            "slug" => Converter::Slug,
            "uuid" => Converter::Uuid,
            "path" => Converter::Path,
            _ => return None,
        })
    }

    /// Whether `value` is acceptable.
    ///
    /// ```
    /// use switchboard::routing::Converter;
    ///
    /// assert!(Converter::Slug.accepts("room-1_a"));
    /// assert!(!Converter::Slug.accepts("room 1"));
    /// assert!(Converter::Int.accepts("42"));
    /// assert!(!Converter::Int.accepts("4x"));
    /// assert!(Converter::Uuid.accepts("0b8e5a4c-6f0e-4c8e-9a57-2a3c1f2b9d10"));
    /// ```
    pub fn accepts(&self, value: &str) -> bool {
        match self {
            Converter::Str => !value.is_empty() && !value.contains('/'),
            Converter::Int => !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
            Converter::Slug => {
                !value.is_empty()
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }
            Converter::Uuid => is_uuid(value),
            Converter::Path => !value.is_empty(),
            Converter::Custom(check) => check(value),
        }
    }
}

fn is_uuid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(group, len)| {
            group.len() == len
                && group
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

impl fmt::Debug for Converter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Converter::Str => f.write_str("str"),
            Converter::Int => f.write_str("int"),
            Converter::Slug => f.write_str("slug"),
            Converter::Uuid => f.write_str("uuid"),
            Converter::Path => f.write_str("path"),
            Converter::Custom(_) => f.write_str("custom"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins() {
        assert!(Converter::Str.accepts("héllo"));
        assert!(!Converter::Str.accepts(""));
        assert!(!Converter::Int.accepts("-1"));
        assert!(!Converter::Uuid.accepts("0B8E5A4C-6F0E-4C8E-9A57-2A3C1F2B9D10"));
        assert!(!Converter::Uuid.accepts("not-a-uuid"));
        assert!(Converter::Path.accepts("a/b/c"));
        assert!(Converter::builtin("nope").is_none());
    }

    #[test]
    fn custom() {
        let short = Converter::Custom(Arc::new(|v: &str| v.len() <= 3));
        assert!(short.accepts("abc"));
        assert!(!short.accepts("abcd"));
    }
}
