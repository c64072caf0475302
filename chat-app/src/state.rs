//! What the chat-app's consumers and views share.

use crate::history::History;

/// Shared application state, handed to the routing module (Django's settings and stores).
#[derive(Clone)]
pub struct AppState {
    /// Where room history lives.
    pub history: History,
}

impl AppState {
    /// State for one process with nothing outside it: history in memory.
    pub fn in_memory() -> AppState {
        AppState {
            history: History::in_memory(),
        }
    }
}
