//! Okta's rate-limit bucket layout: which bucket a request path counts against.

/// Okta rate-limit buckets as Okta publishes them (NOTES.md, "Rate limits"); the simulator
/// models the same layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// `/api/v1/logs*`.
    Logs,
    /// `/api/v1/apps` and every `/api/v1/apps/*` path but the app itself: app lists, app-user
    /// pages and reads, the retry `POST`, features (100/min on most orgs: the scarce one).
    Apps,
    /// Exactly `/api/v1/apps/{id}`: reading or updating the app itself (500–600/min).
    AppInstance,
    /// Exactly `/api/v1/users/{idOrLogin}`; user lists fall under `Other`.
    Users,
    /// `/oauth2/v1/token`.
    OAuthToken,
    /// Everything else (principal rate limits, event hooks, user lists, ...).
    Other,
}

impl Bucket {
    pub const ALL: [Bucket; 6] = [
        Bucket::Logs,
        Bucket::Apps,
        Bucket::AppInstance,
        Bucket::Users,
        Bucket::OAuthToken,
        Bucket::Other,
    ];

    /// The bucket of a request path (no query string).
    pub fn for_path(path: &str) -> Bucket {
        // `/api/v1/appsX` is not under `/api/v1/apps`: match whole segments.
        let under = |prefix: &str| {
            path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        let one_segment_under = |prefix: &str| {
            path.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|id| !id.is_empty() && !id.contains('/'))
        };
        if under("/api/v1/logs") {
            Bucket::Logs
        } else if one_segment_under("/api/v1/apps") {
            Bucket::AppInstance
        } else if under("/api/v1/apps") {
            Bucket::Apps
        } else if one_segment_under("/api/v1/users") {
            Bucket::Users
        } else if path == "/oauth2/v1/token" {
            Bucket::OAuthToken
        } else {
            Bucket::Other
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Bucket::Logs => "logs",
            Bucket::Apps => "apps",
            Bucket::AppInstance => "app_instance",
            Bucket::Users => "users",
            Bucket::OAuthToken => "oauth_token",
            Bucket::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Okta's published layout: the app itself apart from everything else under apps; one
    /// user by id apart from user lists.
    #[test]
    fn buckets_by_path() {
        for (path, bucket) in [
            ("/api/v1/logs", Bucket::Logs),
            ("/api/v1/apps", Bucket::Apps),
            ("/api/v1/apps/0oa1/users", Bucket::Apps),
            ("/api/v1/apps/0oa1/users/00u1", Bucket::Apps),
            ("/api/v1/apps/0oa1/features/USER_PROVISIONING", Bucket::Apps),
            ("/api/v1/apps/0oa1", Bucket::AppInstance),
            ("/api/v1/appsx", Bucket::Other),
            ("/api/v1/users/me", Bucket::Users),
            ("/api/v1/users", Bucket::Other),
            ("/api/v1/users/00u1/groups", Bucket::Other),
            ("/oauth2/v1/token", Bucket::OAuthToken),
            ("/api/v1/org", Bucket::Other),
            ("/api/v1/principal-rate-limits", Bucket::Other),
        ] {
            assert_eq!(Bucket::for_path(path), bucket, "{path}");
        }
    }

    /// The simulator must model the same layout, or tests would prove nothing about Okta.
    #[test]
    fn buckets_match_the_simulator() {
        for path in [
            "/api/v1/logs",
            "/api/v1/apps",
            "/api/v1/apps/0oa1",
            "/api/v1/apps/0oa1/users/00u1",
            "/api/v1/users/00u1",
            "/api/v1/users",
            "/oauth2/v1/token",
            "/api/v1/eventHooks",
        ] {
            let ours = Bucket::for_path(path);
            let sim = okta_sim::okta::Bucket::for_path(path);
            assert_eq!(
                ours.as_str().replace('_', ""),
                format!("{sim:?}").to_lowercase(),
                "{path}"
            );
        }
    }
}
