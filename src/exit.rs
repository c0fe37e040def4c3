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
    fn config_matches_the_unit_file() {
        let unit = include_str!("../systemd/okta-provwatch.service");
        assert!(
            unit.contains(&format!("RestartPreventExitStatus={CONFIG}")),
            "the unit must not restart on the config exit status"
        );
    }
}
