//! A request's headers as a scope keeps them for the connection's whole life.

use std::fmt;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Request headers: case-insensitive names, possibly several values per name, in arrival order.
///
/// A list rather than an [`HeaderMap`]: a scope lives as long as its WebSocket, and a header map
/// sized for a handshake's few headers takes several times their size (its buckets are ~100
/// bytes each, allocated ahead in powers of two). Lookups scan the list, which for the dozen
/// headers of a request is as fast as hashing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(HeaderName, HeaderValue)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The first value of a header.
    pub fn get(&self, name: impl AsRef<str>) -> Option<&HeaderValue> {
        self.get_all(name).next()
    }

    /// Every value of a header, in order.
    pub fn get_all(&self, name: impl AsRef<str>) -> impl Iterator<Item = &HeaderValue> {
        self.entries
            .iter()
            .filter(move |(key, _)| key.as_str().eq_ignore_ascii_case(name.as_ref()))
            .map(|(_, value)| value)
    }

    /// Whether the header is present.
    pub fn contains_key(&self, name: impl AsRef<str>) -> bool {
        self.get(name).is_some()
    }

    /// Adds a value, keeping those already there.
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.entries.push((name, value));
    }

    /// Sets a header to one value, replacing any it had.
    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        self.entries.retain(|(key, _)| *key != name);
        self.entries.push((name, value));
    }

    /// Every name and value, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.entries.iter().map(|(name, value)| (name, value))
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Headers {
    /// Copies the `len` `(name, value, sensitive)` pairs that `pairs` iterates (twice): the
    /// values into one allocation of their own, the names re-made (standard names are static,
    /// others get a copy of their own). `None` if a name or a value is not one HTTP allows.
    fn copied<'a, I>(len: usize, pairs: impl Fn() -> I) -> Option<Headers>
    where
        I: Iterator<Item = (&'a [u8], &'a [u8], bool)>,
    {
        let mut buffer = BytesMut::with_capacity(pairs().map(|(_, value, _)| value.len()).sum());
        for (_, value, _) in pairs() {
            buffer.extend_from_slice(value);
        }
        let mut buffer = buffer.freeze();
        let mut entries = Vec::with_capacity(len);
        for (name, value, sensitive) in pairs() {
            let name = HeaderName::from_bytes(name).ok()?;
            let mut value = HeaderValue::from_maybe_shared(buffer.split_to(value.len())).ok()?;
            value.set_sensitive(sensitive);
            entries.push((name, value));
        }
        Some(Headers { entries })
    }

    /// Headers as httparse read them off the wire, in arrival order, copied as from a
    /// [`HeaderMap`]; `None` if a name or a value is not one HTTP allows.
    pub(crate) fn from_raw(raw: &[httparse::Header<'_>]) -> Option<Headers> {
        Headers::copied(raw.len(), || {
            raw.iter()
                .map(|header| (header.name.as_bytes(), header.value, false))
        })
    }
}

/// Copies the headers out of `map`. A server's header values are slices of its read buffer,
/// which would stay allocated as long as the scope; copied, they share one allocation of their
/// own instead of one each.
impl From<&HeaderMap> for Headers {
    fn from(map: &HeaderMap) -> Headers {
        let pairs = || {
            map.iter().map(|(name, value)| {
                let name = name.as_str().as_bytes();
                (name, value.as_bytes(), value.is_sensitive())
            })
        };
        // A header map's names and values are valid already.
        Headers::copied(map.len(), pairs).unwrap_or_default()
    }
}

impl From<HeaderMap> for Headers {
    fn from(map: HeaderMap) -> Headers {
        Headers::from(&map)
    }
}

/// Every name and value, in arrival order (`collect()` them into a [`HeaderMap`] to hand a
/// request on).
impl IntoIterator for Headers {
    type Item = (HeaderName, HeaderValue);
    type IntoIter = std::vec::IntoIter<(HeaderName, HeaderValue)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use http::header::{COOKIE, HOST};

    use super::*;

    fn sample() -> HeaderMap {
        let mut map = HeaderMap::new();
        map.append(HOST, HeaderValue::from_static("example.com"));
        map.append(COOKIE, HeaderValue::from_static("a=1"));
        map.append("x-custom", HeaderValue::from_static(""));
        map.append(COOKIE, HeaderValue::from_static("b=2"));
        let mut secret = HeaderValue::from_static("Bearer t");
        secret.set_sensitive(true);
        map.append("authorization", secret);
        map
    }

    #[test]
    fn copies_every_value_and_finds_them_by_any_case() {
        let headers = Headers::from(&sample());
        assert_eq!(headers.len(), 5);
        assert_eq!(headers.get("Host").unwrap(), "example.com");
        assert_eq!(headers.get(HOST).unwrap(), "example.com");
        let cookies: Vec<_> = headers.get_all("cookie").collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(headers.get("x-custom").unwrap(), "");
        assert!(headers.get("authorization").unwrap().is_sensitive());
        assert!(!headers.contains_key("origin"));
    }

    #[test]
    fn insert_replaces_and_append_adds() {
        let mut headers = Headers::from(sample());
        headers.insert(COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(headers.get_all(COOKIE).count(), 1);
        assert_eq!(headers.get(COOKIE).unwrap(), "c=3");
        headers.append(COOKIE, HeaderValue::from_static("d=4"));
        assert_eq!(headers.get_all(COOKIE).count(), 2);
    }
}
