//! What the chat-app's consumers and views share.

use std::sync::Arc;

use crate::group_format::GroupFormat;
use crate::rooms::HISTORY_LIMIT;

/// Shared application state, handed to the routing module (Django's settings).
#[derive(Debug, Clone)]
pub struct AppState {
    /// How many of a room's newest messages a joiner gets; 0 (`--no-history`) for none, and
    /// then the room's log is not read at all.
    pub history_limit: usize,
    /// Whether members are tracked in their room's presence and told who is online
    /// (`presence.state`, `presence.diff`); off with `--no-presence`.
    pub presence: bool,
    /// The group a room's members join (`--group-format`), shared by every consumer.
    pub group_format: Arc<GroupFormat>,
}

impl Default for AppState {
    /// Joiners get the last [`HISTORY_LIMIT`] messages, presence is on, and rooms are the
    /// groups `chat_{room}`.
    fn default() -> AppState {
        AppState {
            history_limit: HISTORY_LIMIT,
            presence: true,
            group_format: Arc::default(),
        }
    }
}
