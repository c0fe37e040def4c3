//! The single error type of configuration loading.
//!
//! Every failure names the dotted key it is about (`detect.poll_interval`,
//! `okta`, `email.to`) so an operator can find the line to fix, and prints on
//! one line so it reads well in `journalctl`. Messages are built by this
//! module's callers with care never to include a secret value: at most the
//! name of the variable, file or credential a secret came from.

use std::fmt;

/// A configuration problem, tied to the dotted key it concerns.
///
/// `key` is empty only for problems with the document as a whole (unreadable
/// file, TOML syntax error), where the message carries the location instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Full dotted key, e.g. `detect.poll_interval`; empty for whole-file problems.
    pub key: String,
    /// What is wrong and, where it helps, how to fix it. Never contains a secret.
    pub message: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The dotted key this error is about (empty for whole-file problems).
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Multi-line messages (e.g. from the TOML parser) would break the
        // one-line-per-error promise; fold them defensively.
        let message = one_line(&self.message);
        if self.key.is_empty() {
            f.write_str(&message)
        } else {
            write!(f, "{}: {}", self.key, message)
        }
    }
}

fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, part) in s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_key() {
        let e = ConfigError::new("detect.poll_interval", "must be at least 5s, got 1s");
        assert_eq!(
            e.to_string(),
            "detect.poll_interval: must be at least 5s, got 1s"
        );
        assert_eq!(e.key(), "detect.poll_interval");
    }

    #[test]
    fn display_without_key_and_multiline_message_is_one_line() {
        let e = ConfigError::new("", "invalid TOML at line 3\n  |\nexpected `=`\n");
        assert_eq!(e.to_string(), "invalid TOML at line 3; |; expected `=`");
        assert!(!e.to_string().contains('\n'));
    }
}
