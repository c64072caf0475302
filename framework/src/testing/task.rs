//! The application under test, running in its own task so a panic becomes a message.

use std::any::Any;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Error;
use crate::application::{Application, BoxApplication, Connection};
use crate::scope::Scope;

/// One call of the application, and how it ended once known.
pub(super) struct AppTask {
    handle: Option<JoinHandle<()>>,
    panic: Option<String>,
}

impl AppTask {
    /// Calls the application in a new task, as the server does.
    pub fn spawn(app: BoxApplication, scope: Scope, conn: Connection) -> AppTask {
        let handle = tokio::spawn(async move { app.call(scope, conn).await });
        AppTask {
            handle: Some(handle),
            panic: None,
        }
    }

    /// Waits up to `limit` for the call to return: `Ok(true)` once it has, `Ok(false)` while it
    /// still runs, the panic as an error if it panicked (every time it is asked).
    pub async fn finish(&mut self, limit: Duration) -> Result<bool, Error> {
        if let Some(handle) = self.handle.as_mut() {
            let Ok(joined) = tokio::time::timeout(limit, handle).await else {
                return Ok(false);
            };
            self.handle = None;
            if let Err(err) = joined
                && err.is_panic()
            {
                self.panic = Some(panic_message(err.into_panic()));
            }
        }
        match &self.panic {
            Some(message) => Err(Error::Panicked {
                message: message.clone(),
            }),
            None => Ok(true),
        }
    }
}

/// The text of a panic: `panic!("...")` carries a `&str` or a `String`.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => (*message).to_owned(),
            Err(_) => "(a panic payload that is not a string)".to_owned(),
        },
    }
}
