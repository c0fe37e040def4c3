//! Typed calls for the endpoints the daemon uses: apps, an app's provisioning feature, the
//! principal rate limits, and app users (read and profile push).

use super::*;

impl OktaClient {
    /// The org's active apps ([`DEFAULT_CLASS`]).
    pub async fn list_apps(&self) -> Result<Vec<Application>, OktaError> {
        self.list_apps_with(DEFAULT_CLASS).await
    }

    /// The org's active apps, as requests of `class`.
    pub async fn list_apps_with(&self, class: Class) -> Result<Vec<Application>, OktaError> {
        self.get_all_with(
            class,
            "/api/v1/apps?filter=status%20eq%20%22ACTIVE%22&limit=200",
        )
        .await
    }

    pub async fn get_app(&self, app_id: &str) -> Result<Application, OktaError> {
        self.get_json(&format!("/api/v1/apps/{}", enc(app_id)))
            .await
    }

    pub async fn provisioning_feature(
        &self,
        app_id: &str,
    ) -> Result<ProvisioningFeature, OktaError> {
        self.provisioning_feature_with(DEFAULT_CLASS, app_id).await
    }

    pub async fn provisioning_feature_with(
        &self,
        class: Class,
        app_id: &str,
    ) -> Result<ProvisioningFeature, OktaError> {
        self.get_json_with(
            class,
            &format!("/api/v1/apps/{}/features/USER_PROVISIONING", enc(app_id)),
        )
        .await
    }

    /// The principal rate limits of one principal type (`SSWS_TOKEN` or `OAUTH_CLIENT`; Okta
    /// requires the filter). Needs `okta.principalRateLimits.read` or an admin role that
    /// includes it: otherwise [`OktaError::Forbidden`].
    pub async fn principal_rate_limits_with(
        &self,
        class: Class,
        principal_type: &str,
    ) -> Result<Vec<PrincipalRateLimit>, OktaError> {
        let filter = format!("principalType eq \"{principal_type}\"");
        self.get_all_with(
            class,
            // %20 rather than `+` for spaces: the form of Okta's own examples.
            &format!(
                "/api/v1/principal-rate-limits?filter={}",
                percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
            ),
        )
        .await
    }

    /// First page URL of an app's users, 500 at a time with the Okta user embedded.
    pub fn app_users_url(app_id: &str) -> String {
        format!("/api/v1/apps/{}/users?limit=500&expand=user", enc(app_id))
    }

    /// Reads an app user ([`DEFAULT_CLASS`]).
    pub async fn get_app_user(&self, app_id: &str, user_id: &str) -> Result<AppUser, OktaError> {
        self.get_app_user_with(DEFAULT_CLASS, app_id, user_id).await
    }

    /// Reads an app user as a request of `class` (a retry's read-back: [`Class::ReadBack`]).
    pub async fn get_app_user_with(
        &self,
        class: Class,
        app_id: &str,
        user_id: &str,
    ) -> Result<AppUser, OktaError> {
        self.get_json_with(
            class,
            &format!(
                "/api/v1/apps/{}/users/{}?expand=user",
                enc(app_id),
                enc(user_id)
            ),
        )
        .await
    }

    /// Posts an app user's profile back, which makes Okta push the user to the app again
    /// ([`DEFAULT_CLASS`]).
    pub async fn update_app_user(
        &self,
        app_id: &str,
        user_id: &str,
        body: &Value,
    ) -> Result<AppUser, OktaError> {
        self.update_app_user_with(DEFAULT_CLASS, app_id, user_id, body)
            .await
    }

    /// Posts an app user's profile back as a request of `class`.
    pub async fn update_app_user_with(
        &self,
        class: Class,
        app_id: &str,
        user_id: &str,
        body: &Value,
    ) -> Result<AppUser, OktaError> {
        self.update_app_user_with_unless(class, app_id, user_id, body, None)
            .await
    }

    /// [`OktaClient::update_app_user_with`] that is not sent once `stop` is cancelled (see
    /// [`OktaClient::request_with_unless`]).
    pub async fn update_app_user_with_unless(
        &self,
        class: Class,
        app_id: &str,
        user_id: &str,
        body: &Value,
        stop: Option<&CancellationToken>,
    ) -> Result<AppUser, OktaError> {
        let path = format!("/api/v1/apps/{}/users/{}", enc(app_id), enc(user_id));
        let (_, b) = self
            .request_with_unless(class, Method::POST, &path, Some(body), stop)
            .await?;
        parse_body(&path, &b)
    }
}
