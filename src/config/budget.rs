//! `detect.scan_share`: how much of the daemon's Okta budget the background work (assignment
//! scans, `doctor`, reconciliations) may use per rate-limit window.
//!
//! The daemon's share of a bucket (`okta.rate_limit_share`) is spent by priority (see
//! `okta::ratelimit`); this key is the ceiling of the lowest class, so that a long scan of a
//! large org never takes a whole window from the retries and read-backs that turn up meanwhile.

use super::error::ConfigError;

/// Default ceiling of the background classes: half the daemon's share of a bucket.
pub const DEFAULT_SCAN_SHARE: f64 = 0.5;

/// The dotted key, for errors and the summary.
pub const KEY: &str = "detect.scan_share";

/// Validates `detect.scan_share`: a fraction in (0, 1] of the daemon's own share.
pub(crate) fn scan_share(raw: Option<f64>) -> Result<f64, ConfigError> {
    let v = raw.unwrap_or(DEFAULT_SCAN_SHARE);
    // Written so NaN fails too.
    if !(v > 0.0 && v <= 1.0) {
        return Err(ConfigError::new(
            KEY,
            format!("must be in (0, 1] (a fraction of okta.rate_limit_share, e.g. 0.5), got {v}"),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_bounds() {
        assert_eq!(scan_share(None).unwrap(), DEFAULT_SCAN_SHARE);
        assert_eq!(scan_share(Some(1.0)).unwrap(), 1.0);
        assert_eq!(scan_share(Some(0.1)).unwrap(), 0.1);
        for bad in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
            let e = scan_share(Some(bad)).unwrap_err();
            assert_eq!(e.key, KEY, "{bad}");
            assert!(e.message.contains("(0, 1]"), "{}", e.message);
        }
    }
}
