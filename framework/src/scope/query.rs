//! Parsed query parameters.

/// The query string's `name=value` pairs, percent- and `+`-decoded, in order, names repeatable.
///
/// ```
/// use switchboard::scope::QueryParams;
///
/// let q = QueryParams::parse("num=111&tag=a&tag=b&name=caf%C3%A9+au+lait");
/// assert_eq!(q.get("num"), Some("111"));
/// assert_eq!(q.get_all("tag").collect::<Vec<_>>(), ["a", "b"]);
/// assert_eq!(q.get("name"), Some("café au lait"));
/// assert_eq!(q.get("missing"), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    /// Parses a raw query string (without the leading `?`).
    pub fn parse(query: &str) -> QueryParams {
        QueryParams {
            pairs: form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
