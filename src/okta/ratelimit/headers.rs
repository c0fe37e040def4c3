//! What Okta tells us about a bucket: the `X-Rate-Limit-*` headers of one response, the limit
//! assumed before any arrive, and the principal rate limit entities of the org.

use super::*;

/// Limit assumed for a bucket before Okta has told us its real one: the lowest published
/// per-minute limit of the endpoint families the daemon uses.
pub const ASSUMED_LIMIT: u32 = 20;

/// What one response said about its bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets, computed against the server's `Date` header so a
    /// skewed local clock does not matter.
    pub reset_in: Duration,
}

impl RateHeaders {
    /// Reads `X-Rate-Limit-*` (and `Date` for the server's idea of now); `local_now_epoch` is used
    /// when the server sent no `Date`.
    pub fn parse(headers: &HeaderMap, local_now_epoch: i64) -> Option<RateHeaders> {
        let num = |name: &str| -> Option<i64> {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let limit = num("x-rate-limit-limit")?;
        let remaining = num("x-rate-limit-remaining")?;
        let reset = num("x-rate-limit-reset")?;
        let server_now = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.timestamp())
            .unwrap_or(local_now_epoch);
        let secs = reset.saturating_sub(server_now).clamp(0, 3600) as u64;
        Some(RateHeaders {
            limit: limit.clamp(1, u32::MAX as i64) as u32,
            remaining: remaining.clamp(0, u32::MAX as i64) as u32,
            reset_in: Duration::from_secs(secs),
        })
    }
}

/// One `PrincipalRateLimitEntity` of `GET /api/v1/principal-rate-limits`: the share of every
/// bucket Okta grants one API token or OAuth client (a principal rate limit caps it below the
/// org's bucket).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalRateLimit {
    #[serde(default)]
    pub principal_id: String,
    #[serde(default)]
    pub principal_type: String,
    /// Percent of each bucket's limit this principal may use.
    #[serde(default)]
    pub default_percentage: Option<u32>,
    /// Percent of the org's concurrency limit this principal may use.
    #[serde(default)]
    pub default_concurrency_percentage: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_against_server_date() {
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-limit", "60".parse().unwrap());
        h.insert("x-rate-limit-remaining", "59".parse().unwrap());
        h.insert("x-rate-limit-reset", "1700000045".parse().unwrap());
        // 1700000000 = Tue, 14 Nov 2023 22:13:20 GMT
        h.insert("date", "Tue, 14 Nov 2023 22:13:20 GMT".parse().unwrap());
        let r = RateHeaders::parse(&h, 0).unwrap();
        assert_eq!(r.limit, 60);
        assert_eq!(r.remaining, 59);
        assert_eq!(r.reset_in, Duration::from_secs(45));
        h.remove("x-rate-limit-limit");
        assert!(RateHeaders::parse(&h, 0).is_none());
    }
}
