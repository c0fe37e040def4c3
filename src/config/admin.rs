//! `okta.admin_url`: where the org's Okta Admin Console lives, for the links in alerts.
//!
//! On Okta's own hosts the console is derived: `https://acme.okta.com` has its console at
//! `https://acme-admin.okta.com` (the same for `oktapreview.com`, `okta-emea.com` and the
//! government clouds). An org reached through a custom URL domain (`https://login.acme.com`)
//! keeps its console on Okta's host, and nothing in the custom domain says which: there the
//! operator sets `okta.admin_url`, and `check-config` says so when it is missing.

use super::parse::require_https;
use super::{is_loopback_host, ConfigError, OktaConfig};
use url::Url;

const KEY: &str = "okta.admin_url";

/// Okta's own org domains, whose `{org}-admin.{domain}` is the Admin Console.
const OKTA_DOMAINS: [&str; 5] = [
    "okta.com",
    "oktapreview.com",
    "okta-emea.com",
    "okta-gov.com",
    "okta.mil",
];

/// `https://acme-admin.okta.com` for `https://acme.okta.com/`; `None` for hosts that are not
/// Okta's (custom domains, the simulator), where the console cannot be derived.
pub fn derive(org: &Url) -> Option<Url> {
    let host = org.host_str()?;
    let (first, rest) = host.split_once('.')?;
    if !OKTA_DOMAINS.contains(&rest) || first.ends_with("-admin") {
        return None;
    }
    Url::parse(&format!("https://{first}-admin.{rest}/")).ok()
}

/// Validates a configured `okta.admin_url`: an https base URL with no path, query or user.
pub(crate) fn parse(s: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(s).map_err(|e| {
        ConfigError::new(
            KEY,
            format!("invalid URL {s:?}: {e} (e.g. \"https://acme-admin.okta.com\")"),
        )
    })?;
    require_https(KEY, &url)?;
    if url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(ConfigError::new(
            KEY,
            format!(
                "must be the Admin Console's base URL with no path, user, query or fragment, \
                 e.g. \"https://acme-admin.okta.com\" (got {s:?})"
            ),
        ));
    }
    Ok(url)
}

impl OktaConfig {
    /// The Admin Console base for links (no trailing slash): `okta.admin_url` if set, else
    /// derived from `org_url` on Okta's hosts, else `None` (alerts then carry no links).
    pub fn admin_console(&self) -> Option<String> {
        self.admin_url
            .clone()
            .or_else(|| derive(&self.org_url))
            .map(|u| u.as_str().trim_end_matches('/').to_string())
    }

    /// What `check-config` should add about the Admin Console, if anything: a custom URL
    /// domain without `okta.admin_url` gets alerts without console links.
    pub fn admin_console_hint(&self) -> Option<String> {
        if self.admin_url.is_some()
            || derive(&self.org_url).is_some()
            || is_loopback_host(&self.org_url)
        {
            return None;
        }
        Some(format!(
            "okta.org_url ({}) is a custom domain, from which the Okta Admin Console's host \
             cannot be derived: alerts will carry no links to apps and users. Set okta.admin_url \
             to the console's address as your admins open it, e.g. \"https://acme-admin.okta.com\"",
            self.org_url.host_str().unwrap_or_default()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn derived_on_oktas_hosts_only() {
        assert_eq!(
            derive(&u("https://acme.okta.com/")).unwrap().as_str(),
            "https://acme-admin.okta.com/"
        );
        assert_eq!(
            derive(&u("https://acme.oktapreview.com/"))
                .unwrap()
                .as_str(),
            "https://acme-admin.oktapreview.com/"
        );
        assert_eq!(
            derive(&u("https://acme.okta-emea.com/")).unwrap().as_str(),
            "https://acme-admin.okta-emea.com/"
        );
        assert_eq!(derive(&u("https://login.acme.com/")), None);
        assert_eq!(derive(&u("http://127.0.0.1:8080/")), None);
        assert_eq!(derive(&u("https://acme-admin.okta.com/")), None);
    }

    #[test]
    fn configured_value_must_be_a_base_url() {
        assert_eq!(
            parse("https://acme-admin.okta.com").unwrap().as_str(),
            "https://acme-admin.okta.com/"
        );
        for bad in [
            "acme-admin.okta.com",
            "http://acme-admin.okta.com",
            "https://acme-admin.okta.com/admin/dashboard",
            "https://u:p@acme-admin.okta.com",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.key, KEY, "{bad}");
        }
    }

    #[test]
    fn a_custom_domain_links_to_the_configured_console() {
        let load = |okta_extra: &str| {
            let toml = format!(
                "[okta]\norg_url = \"https://login.acme.com\"\napi_token_env = \"T\"\n{okta_extra}\n"
            );
            crate::config::Config::from_toml_str(&toml, &crate::config::Env::from_map([("T", "x")]))
                .unwrap()
        };
        let bare = load("");
        assert_eq!(bare.okta.admin_console(), None);
        assert!(bare
            .okta
            .admin_console_hint()
            .unwrap()
            .contains("okta.admin_url"));
        let set = load("admin_url = \"https://acme-admin.okta.com\"");
        assert_eq!(
            set.okta.admin_console().as_deref(),
            Some("https://acme-admin.okta.com")
        );
        assert_eq!(set.okta.admin_console_hint(), None);
        assert_eq!(
            crate::alert::group::Settings::from_config(&set)
                .admin_base
                .as_deref(),
            Some("https://acme-admin.okta.com")
        );
    }
}
