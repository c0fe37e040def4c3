//! Every exit status the binary uses, in one place, with what each tells the caller.
//!
//! The values follow BSD `sysexits.h` where one fits, so shell scripts and systemd
//! (`RestartPreventExitStatus=78` in the unit) can branch on the kind of failure without
//! parsing messages. The man page's EXIT STATUS section is generated from [`ALL`], so a
//! code added here is documented there too.

/// Success.
pub const OK: u8 = 0;
/// A failure with no more specific code (a bug, an unexpected I/O error). Worth a retry.
pub const GENERIC: u8 = 1;
/// The command line was wrong (clap's own usage errors exit with 2 too).
pub const USAGE: u8 = 2;
/// The input data was wrong: an id, app or user named on the command line that does not
/// exist, or a state file that is not this program's (`EX_DATAERR`).
pub const DATA: u8 = 65;
/// A service needed is unavailable: Okta, Slack or SMTP unreachable, or the state is
/// locked by another daemon (`EX_UNAVAILABLE`).
pub const UNAVAILABLE: u8 = 69;
/// Temporary failure: try again later (a retry skipped because another worker holds it,
/// a rate limit) (`EX_TEMPFAIL`).
pub const TEMPFAIL: u8 = 75;
/// Configuration error, or any cause a restart cannot fix (bad token, missing scope,
/// unwritable state directory): systemd does not restart on it (`EX_CONFIG`).
pub const CONFIG: u8 = 78;

/// Every code with a one-line meaning, for the man page and `--help`.
pub const ALL: [(u8, &str); 7] = [
    (OK, "success"),
    (
        GENERIC,
        "unexpected failure (see the message); a retry may help",
    ),
    (USAGE, "invalid command line"),
    (
        DATA,
        "bad input data: a failure id, app or user that does not exist",
    ),
    (
        UNAVAILABLE,
        "a needed service is unavailable (Okta, Slack, SMTP) or the state is held by another daemon",
    ),
    (
        TEMPFAIL,
        "temporary failure (busy, rate limited); try again later",
    ),
    (
        CONFIG,
        "configuration error or another cause a restart cannot fix (bad token, missing scope, \
         unwritable state); systemd does not restart on it",
    ),
];

/// The exit status for an error that ended a command, from the kinds in its cause chain:
/// a config problem or credentials Okta refuses exit [`CONFIG`] (a restart will not fix
/// them), an unreachable Okta [`UNAVAILABLE`], a state held by a daemon [`TEMPFAIL`], a
/// state file too new for this build or a state path the file system refuses [`CONFIG`];
/// anything else [`GENERIC`].
pub fn for_error(e: &anyhow::Error) -> u8 {
    use crate::okta::OktaError;
    use crate::store::StoreError;
    for cause in e.chain() {
        if cause.is::<crate::config::ConfigError>() {
            return CONFIG;
        }
        match cause.downcast_ref::<OktaError>() {
            Some(OktaError::Config(_)) => return CONFIG,
            Some(o) if o.is_auth() => return CONFIG,
            Some(o) if o.is_transient() => return UNAVAILABLE,
            _ => {}
        }
        if let Some(StoreError::TooNew { .. }) = cause.downcast_ref::<StoreError>() {
            return CONFIG;
        }
        if cause.is::<crate::store::diagnose::Unusable>() {
            return CONFIG;
        }
        if let Some(crate::daemon::lock::LockError::Held { .. }) = cause.downcast_ref() {
            return TEMPFAIL;
        }
    }
    GENERIC
}

/// `code` as a [`std::process::ExitCode`].
pub fn code(code: u8) -> std::process::ExitCode {
    std::process::ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_documented() {
        let mut seen: Vec<u8> = ALL.iter().map(|(c, _)| *c).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, [0, 1, 2, 65, 69, 75, 78]);
        assert!(ALL.iter().all(|(_, what)| !what.is_empty()));
    }

    #[test]
    fn errors_map_to_their_codes_through_context() {
        use anyhow::Context as _;
        let config: anyhow::Error =
            Err::<(), _>(crate::config::ConfigError::new("okta.org_url", "x"))
                .context("config /etc/x.toml")
                .unwrap_err();
        assert_eq!(for_error(&config), CONFIG);
        let denied = anyhow::Error::new(crate::okta::OktaError::Unauthorized {
            detail: "Invalid token provided".into(),
        })
        .context("reading apps");
        assert_eq!(for_error(&denied), CONFIG);
        let down = anyhow::Error::new(crate::okta::OktaError::Retryable {
            path: "/api/v1/logs".into(),
            detail: "connection refused".into(),
        });
        assert_eq!(for_error(&down), UNAVAILABLE);
        assert_eq!(for_error(&anyhow::anyhow!("disk on fire")), GENERIC);
    }

    #[test]
    fn config_matches_the_unit_file() {
        let unit = include_str!("../systemd/okta-provwatch.service");
        assert!(
            unit.contains(&format!("RestartPreventExitStatus={CONFIG}")),
            "the unit must not restart on the config exit status"
        );
    }
}
