//! What URL routing captured.

use std::collections::HashMap;

/// Channels' `scope["url_route"]`: keyword arguments by name, positional ones in order.
///
/// Nested routers merge what each level captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlRoute {
    /// Named captures, e.g. `room_name` → `lobby`.
    pub kwargs: HashMap<String, String>,
    /// Unnamed captures, in order.
    pub args: Vec<String>,
}
