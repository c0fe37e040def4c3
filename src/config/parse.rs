//! Value parsers shared by config validation and the CLI (`silence --for 2h`).
//!
//! Each takes the key (or flag) name so its error reads the same wherever the
//! value came from.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use cron::Schedule;
use url::{Host, Url};

use super::error::ConfigError;

/// The longest duration any key or flag accepts. Every duration ends up added to an
/// `Instant` or multiplied (health staleness, backoff), and `Instant + Duration` panics on
/// overflow; ten years (3650d) is far beyond any sane setting and far below any overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Parses a human duration such as `30s`, `15m`, `4h`, `1h 30m` or `7d`, at most
/// [`MAX_DURATION`]; config keys hold tighter bounds of their own.
pub fn parse_duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration_unbounded(key, s)?;
    check_duration_max(key, s, d, MAX_DURATION, "3650d")?;
    Ok(d)
}

/// [`parse_duration`] without the bound, for callers that check a tighter one at once.
pub(crate) fn parse_duration_unbounded(key: &str, s: &str) -> Result<Duration, ConfigError> {
    let written = s.trim();
    humantime::parse_duration(written).map_err(|e| {
        // humantime reports an overflow of its own arithmetic as a distinct error; say so,
        // or "99999999999999999999y" would read as a syntax problem.
        let why = match e {
            humantime::DurationError::NumberOverflow => format!("{written:?} is too long"),
            _ => format!("invalid duration {s:?}"),
        };
        ConfigError::new(key, format!("{why} (use e.g. \"30s\", \"15m\", \"4h\")"))
    })
}

/// Rejects `d` (spelt `written` by the user) when above `max` (spelt `max_shown`), echoing
/// both as written rather than reformatted: `91d`, not `2months 30days 2h 52m 48s`.
pub(crate) fn check_duration_max(
    key: &str,
    written: &str,
    d: Duration,
    max: Duration,
    max_shown: &str,
) -> Result<(), ConfigError> {
    if d > max {
        return Err(ConfigError::new(
            key,
            format!("must be at most {max_shown}, got {:?}", written.trim()),
        ));
    }
    Ok(())
}

/// Parses a schedule in the `cron` crate's syntax: six or seven fields,
/// `sec min hour day-of-month month day-of-week [year]`, e.g. `0 */30 * * * *`.
///
/// A schedule that can never fire again (e.g. a past year) is rejected too,
/// since the job it drives would silently never run.
pub fn parse_schedule(key: &str, s: &str) -> Result<Schedule, ConfigError> {
    let trimmed = s.trim();
    let schedule = Schedule::from_str(trimmed).map_err(|e| {
        let fields = trimmed.split_whitespace().count();
        // The classic 5-field crontab form is by far the most common mistake.
        let hint = if fields == 5 {
            format!(
                " (this takes 6 or 7 fields: sec min hour day-of-month month day-of-week [year]; \
                 did you mean \"0 {trimmed}\"?)"
            )
        } else {
            " (fields: sec min hour day-of-month month day-of-week [year], e.g. \"0 */30 * * * *\")"
                .to_string()
        };
        ConfigError::new(key, format!("invalid cron expression {s:?} : {e}{hint}"))
    })?;
    if schedule.upcoming(chrono::Utc).next().is_none() {
        return Err(ConfigError::new(
            key,
            format!("cron expression {s:?} never fires again"),
        ));
    }
    Ok(schedule)
}

/// True for `localhost`, 127.0.0.0/8 and ::1: the only hosts where plain http
/// is acceptable (local simulators and demos, never a real Okta or Slack), and where an
/// SMTP password may travel without TLS.
///
/// For schemes the URL standard does not know (`smtp://`, `smtps://`), the `url` crate
/// keeps an IPv4 host as an opaque name, so a name that parses as an IP address is
/// judged as that address.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Requires https, or http on a loopback host.
pub(crate) fn require_https(key: &str, url: &Url) -> Result<(), ConfigError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(url) => Ok(()),
        "http" => Err(ConfigError::new(
            key,
            "must use https (plain http is allowed only for loopback hosts)",
        )),
        other => Err(ConfigError::new(
            key,
            format!("must be an https:// URL, got scheme {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("k", "30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_duration("k", " 1h 30m ").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_duration("k", "90d").unwrap(),
            Duration::from_secs(90 * 86400)
        );
        let e = parse_duration("detect.poll_interval", "5 parsecs").unwrap_err();
        assert_eq!(
            e.to_string(),
            "detect.poll_interval: invalid duration \"5 parsecs\" (use e.g. \"30s\", \"15m\", \"4h\")"
        );
        assert!(parse_duration("k", "").is_err());
        assert!(parse_duration("k", "-5s").is_err());
    }

    #[test]
    fn schedules() {
        assert!(parse_schedule("k", "0 */30 * * * *").is_ok());
        assert!(parse_schedule("k", "0 0 9 * * Mon-Fri").is_ok());
        let e = parse_schedule("detect.scan_schedule", "*/30 * * * *").unwrap_err();
        assert_eq!(e.key, "detect.scan_schedule");
        assert!(
            e.message
                .starts_with("invalid cron expression \"*/30 * * * *\" : "),
            "{e}"
        );
        assert!(e.message.contains("did you mean \"0 */30 * * * *\""), "{e}");
        assert!(parse_schedule("k", "banana").is_err());
        let e = parse_schedule("k", "0 0 0 1 1 * 2001").unwrap_err();
        assert!(e.message.contains("never fires"), "{e}");
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://127.0.0.1",
            "http://127.9.9.9:1",
            "http://[::1]:80",
        ] {
            let u = Url::parse(ok).unwrap();
            assert!(is_loopback_host(&u), "{ok}");
            assert!(require_https("k", &u).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1",
            "http://acme.okta.com",
            "http://localhost.evil.com",
        ] {
            let u = Url::parse(bad).unwrap();
            assert!(require_https("k", &u).is_err(), "{bad}");
        }
        let ftp = Url::parse("ftp://x").unwrap();
        assert!(require_https("k", &ftp).is_err());
    }
}
