//! Where things live on NATS: the subjects of groups, processes and named channels.
//!
//! Group and channel names may hold `.`, which NATS reads as a token separator (and `a..b`
//! would be an invalid subject), so each name travels as one token with `.` written `~`, a
//! character no valid name holds: the mapping is one-to-one and read back exactly.

use std::borrow::Cow;

use crate::{Error, Result};

/// The subjects of one layer prefix.
#[derive(Debug, Clone)]
pub(super) struct Subjects {
    /// `{prefix}.group.`
    group: String,
    /// `{prefix}.process.`
    process: String,
    /// `{prefix}.queue.`
    queue: String,
    /// `{prefix}.sync`
    sync: String,
}

impl Subjects {
    /// Subjects under `prefix`: one or more NATS tokens of name characters.
    pub(super) fn new(prefix: &str) -> Result<Subjects> {
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|token| {
                !token.is_empty()
                    && token
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            });
        if !valid {
            return Err(Error::Layer(format!(
                "invalid NATS prefix {prefix:?}: use ASCII letters, digits, '-' and '_', \
                 in tokens separated by single dots"
            )));
        }
        Ok(Subjects {
            group: format!("{prefix}.group."),
            process: format!("{prefix}.process."),
            queue: format!("{prefix}.queue."),
            sync: format!("{prefix}.sync"),
        })
    }

    /// `{prefix}.group.{group}`: what every process with members of the group subscribes to.
    pub(super) fn group(&self, group: &str) -> String {
        format!("{}{}", self.group, token(group))
    }

    /// `{prefix}.process.{process}.{channel}`: a message for one channel of that process.
    pub(super) fn direct(&self, process: &str, channel: &str) -> String {
        format!("{}{}.{}", self.process, token(process), token(channel))
    }

    /// `{prefix}.process.{process}.*`: every direct message for that process.
    pub(super) fn process_wildcard(&self, process: &str) -> String {
        format!("{}{}.*", self.process, token(process))
    }

    /// The channel a subject of [`Subjects::direct`] names, if it is one for `process`.
    pub(super) fn channel_of<'a>(&self, process: &str, subject: &'a str) -> Option<Cow<'a, str>> {
        let rest = subject.strip_prefix(self.process.as_str())?;
        let (owner, channel) = rest.split_once('.')?;
        (owner == token(process)).then(|| name(channel))
    }

    /// `{prefix}.sync`: a subject nobody subscribes to, whose requests the server answers
    /// itself (see `Inner::confirm`).
    pub(super) fn sync(&self) -> String {
        self.sync.clone()
    }

    /// `{prefix}.queue.{name}`: a named channel, received by a queue group of workers.
    pub(super) fn queue(&self, channel: &str) -> String {
        format!("{}{}", self.queue, token(channel))
    }
}

/// A name as one NATS token.
fn token(name: &str) -> Cow<'_, str> {
    if name.contains('.') {
        Cow::Owned(name.replace('.', "~"))
    } else {
        Cow::Borrowed(name)
    }
}

/// A token read back as the name it was made from.
fn name(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace('~', "."))
    } else {
        Cow::Borrowed(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_travel_as_one_token_and_come_back() {
        let subjects = Subjects::new("app.v1").unwrap();
        let group = subjects.group("chat.room..x");
        assert_eq!(group, "app.v1.group.chat~room~~x");

        let direct = subjects.direct("abc", "specific.abc!4");
        assert_eq!(direct, "app.v1.process.abc.specific~abc!4");
        assert_eq!(
            subjects.channel_of("abc", &direct).unwrap(),
            "specific.abc!4"
        );
        assert_eq!(subjects.channel_of("other", &direct), None);
        assert_eq!(subjects.process_wildcard("abc"), "app.v1.process.abc.*");
        assert_eq!(subjects.queue("jobs.thumbs"), "app.v1.queue.jobs~thumbs");
    }

    #[test]
    fn prefixes_must_be_plain_tokens() {
        for bad in ["", ".a", "a.", "a..b", "a b", "a*", "a>", "a~b"] {
            assert!(Subjects::new(bad).is_err(), "{bad:?}");
        }
        for good in ["switchboard", "app.v1", "my-app_2"] {
            assert!(Subjects::new(good).is_ok(), "{good:?}");
        }
    }
}
