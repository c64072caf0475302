//! What the chat-app's consumers and views share.

use crate::group_format::GroupFormat;
use crate::history::History;

/// Shared application state, handed to the routing module (Django's settings and stores).
#[derive(Clone)]
pub struct AppState {
    /// Where room history lives.
    pub history: History,
    /// The group a room's members join (`--group-format`).
    pub group_format: GroupFormat,
}

impl AppState {
    /// State for one process with nothing outside it: history in memory.
    pub fn in_memory() -> AppState {
        AppState {
            history: History::in_memory(),
            group_format: GroupFormat::default(),
        }
    }
}
