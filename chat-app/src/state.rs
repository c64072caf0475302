//! What the chat-app's consumers and views share.

use crate::rooms::HISTORY_LIMIT;

/// Shared application state, handed to the routing module (Django's settings).
#[derive(Debug, Clone, Copy)]
pub struct AppState {
    /// How many of a room's newest messages a joiner gets; 0 (`--no-history`) for none, and
    /// then the room's log is not read at all.
    pub history_limit: usize,
}

impl Default for AppState {
    /// Joiners get the last [`HISTORY_LIMIT`] messages.
    fn default() -> AppState {
        AppState {
            history_limit: HISTORY_LIMIT,
        }
    }
}
