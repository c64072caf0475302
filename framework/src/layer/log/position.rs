//! A message's place in its group's log.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rand::distr::{Alphanumeric, SampleString};

/// Longest epoch accepted from a client.
const MAX_EPOCH_LEN: usize = 32;

/// A message's place in its group's log: the log's epoch and the message's offset in it.
///
/// Written and read as `EPOCH:OFFSET` (the chat-app's `?since=` query):
///
/// ```
/// use switchboard::layer::Position;
///
/// let position: Position = "kX8a2LqP:41".parse()?;
/// assert_eq!(position.offset, 41);
/// assert_eq!(position.to_string(), "kX8a2LqP:41");
/// assert!("kX8a2LqP".parse::<Position>().is_err());
/// assert!("bad epoch!:1".parse::<Position>().is_err());
/// # Ok::<(), switchboard::layer::PositionError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The log's epoch: ASCII letters and digits, changed whenever the log may have lost
    /// messages.
    pub epoch: Arc<str>,
    /// The message's offset: 1 for the first message of an epoch, one more for each next one.
    pub offset: u64,
}

impl Position {
    /// A position in `epoch`.
    pub fn new(epoch: Arc<str>, offset: u64) -> Position {
        Position { epoch, offset }
    }

    /// A fresh random epoch name.
    pub(crate) fn new_epoch() -> Arc<str> {
        Arc::from(Alphanumeric.sample_string(&mut rand::rng(), 8))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

/// Why a text is not an `EPOCH:OFFSET` position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// There is no `:`.
    #[error("a position is EPOCH:OFFSET, e.g. kX8a2LqP:41")]
    Shape,
    /// The epoch is empty, too long or holds other characters than ASCII letters and digits.
    #[error("an epoch is 1 to 32 ASCII letters and digits")]
    Epoch,
    /// The offset is not a whole number.
    #[error("an offset is a whole number from 0")]
    Offset,
}

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(text: &str) -> Result<Position, PositionError> {
        let (epoch, offset) = text.rsplit_once(':').ok_or(PositionError::Shape)?;
        if epoch.is_empty()
            || epoch.len() > MAX_EPOCH_LEN
            || !epoch.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(PositionError::Epoch);
        }
        let offset = offset.parse().map_err(|_| PositionError::Offset)?;
        Ok(Position {
            epoch: Arc::from(epoch),
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let position: Position = "abc:0".parse().unwrap();
        assert_eq!((&*position.epoch, position.offset), ("abc", 0));
        for bad in [
            "",
            ":1",
            "abc:",
            "abc:-1",
            "abc:1.5",
            "a-b:1",
            "abc:1:2",
            &format!("{}:1", "e".repeat(33)),
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
        let epoch = Position::new_epoch();
        assert_eq!(epoch.len(), 8);
        let again: Position = Position::new(epoch.clone(), 7).to_string().parse().unwrap();
        assert_eq!(again, Position::new(epoch, 7));
    }
}
