//! What the chat-app's consumers and views share.

use crate::rooms::HISTORY_LIMIT;

/// Shared application state, handed to the routing module (Django's settings).
#[derive(Debug, Clone, Copy)]
pub struct AppState {
    /// How many of a room's newest messages a joiner gets; 0 (`--no-history`) for none, and
    /// then the room's log is not read at all.
    pub history_limit: usize,
    /// Whether members are tracked in their room's presence and told who is online
    /// (`presence.state`, `presence.diff`); off with `--no-presence`.
    pub presence: bool,
}

impl Default for AppState {
    /// Joiners get the last [`HISTORY_LIMIT`] messages, and presence is on.
    fn default() -> AppState {
        AppState {
            history_limit: HISTORY_LIMIT,
            presence: true,
        }
    }
}
