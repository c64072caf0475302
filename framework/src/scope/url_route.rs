//! What URL routing captured.

/// Channels' `scope["url_route"]`: keyword arguments by name, positional ones in order.
///
/// Nested routers merge what each level captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlRoute {
    /// Named captures, e.g. `room_name` → `lobby`.
    pub kwargs: Kwargs,
    /// Unnamed captures, in order.
    pub args: Vec<String>,
}

/// Named captures of a URL route, in the order they were captured.
///
/// A list rather than a hash map: routes capture one or two names, the scope keeps them as long
/// as its WebSocket, and the smallest hash map is four buckets (over 200 bytes for one pair).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kwargs(Vec<(String, String)>);

impl Kwargs {
    /// The value captured for `name`.
    pub fn get(&self, name: &str) -> Option<&String> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Whether `name` was captured.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name`, returning the value it replaces.
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        match self.0.iter_mut().find(|(key, _)| *key == name) {
            Some((_, old)) => Some(std::mem::replace(old, value)),
            None => {
                self.0.push((name, value));
                None
            }
        }
    }

    /// Every name and value, in capture order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(key, value)| (key, value))
    }

    /// How many names were captured.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Later captures of a name replace earlier ones, as a map's would.
impl Extend<(String, String)> for Kwargs {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, pairs: I) {
        let pairs = pairs.into_iter();
        // Exact: a doubling Vec would start at four pairs.
        self.0.reserve_exact(pairs.size_hint().0);
        for (name, value) in pairs {
            self.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_captures_replace_earlier_ones() {
        let mut kwargs = Kwargs::default();
        kwargs.extend([("org".to_owned(), "acme".to_owned())]);
        kwargs.extend([
            ("room".to_owned(), "lobby".to_owned()),
            ("org".to_owned(), "other".to_owned()),
        ]);
        assert_eq!(kwargs.len(), 2);
        assert_eq!(kwargs.get("org").map(String::as_str), Some("other"));
        assert_eq!(kwargs.get("room").map(String::as_str), Some("lobby"));
        assert!(!kwargs.contains_key("id"));
        let names: Vec<_> = kwargs.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["org", "room"]);
    }
}
