//! The `[slack]` section: an incoming webhook or a bot token with a channel.

use super::*;

pub(super) fn slack(
    raw: RawSlack,
    env: &Env,
    sources: &mut SecretSources,
) -> Result<SlackConfig, ConfigError> {
    let webhook = pick_one(
        "slack",
        &[
            ("webhook_url_env", Via::Env, raw.webhook_url_env.as_ref()),
            ("webhook_url_file", Via::File, raw.webhook_url_file.as_ref()),
            (
                "webhook_url_credential",
                Via::Credential,
                raw.webhook_url_credential.as_ref(),
            ),
        ],
    )?;
    let bot = pick_one(
        "slack",
        &[
            ("bot_token_env", Via::Env, raw.bot_token_env.as_ref()),
            ("bot_token_file", Via::File, raw.bot_token_file.as_ref()),
            (
                "bot_token_credential",
                Via::Credential,
                raw.bot_token_credential.as_ref(),
            ),
        ],
    )?;
    let channel = raw
        .channel
        .as_ref()
        .map(|t| t.0.trim().to_string())
        .filter(|c| !c.is_empty());

    let target = match (webhook, bot) {
        (Some((w, _, _)), Some((b, _, _))) => {
            return Err(ConfigError::new(
                "slack",
                format!("both a webhook URL ({w}) and a bot token ({b}) are set; choose one"),
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                "slack",
                "no destination: set one of webhook_url_env, webhook_url_file, \
                 webhook_url_credential, or bot_token_env/_file/_credential with channel \
                 (or remove [slack] to turn Slack alerts off)",
            ))
        }
        (Some((field, via, name)), None) => {
            let key = format!("slack.{field}");
            if raw.channel.is_some() {
                return Err(ConfigError::new(
                    "slack.channel",
                    "only used with a bot token (a webhook always posts to the channel it was created for)",
                ));
            }
            let (url, source) = read_secret(&key, via, name, env)?;
            // The URL embeds a token: errors name the source, never the URL.
            let parsed = Url::parse(url.expose_secret()).map_err(|_| {
                ConfigError::new(key.clone(), format!("{source} does not hold a valid URL"))
            })?;
            require_https(&key, &parsed)?;
            sources.slack = Some(source);
            SlackTarget::Webhook { url }
        }
        (None, Some((field, via, name))) => {
            let key = format!("slack.{field}");
            let Some(channel) = channel else {
                return Err(ConfigError::new(
                    "slack.channel",
                    "required with a bot token (e.g. \"#okta-alerts\" or a channel ID)",
                ));
            };
            let (token, source) = read_secret(&key, via, name, env)?;
            if token.expose_secret().starts_with("http") {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "{source} holds a URL, not a bot token; use webhook_url_* for webhooks"
                    ),
                ));
            }
            sources.slack = Some(source);
            SlackTarget::Bot { token, channel }
        }
    };

    let api_url = text_or(&raw.api_url, DEFAULT_SLACK_API_URL).trim();
    let mut api_url = Url::parse(api_url)
        .map_err(|e| ConfigError::new("slack.api_url", format!("invalid URL {api_url:?}: {e}")))?;
    require_https("slack.api_url", &api_url)?;
    // Without the trailing slash, `join("chat.postMessage")` would replace
    // the last path segment instead of appending.
    if !api_url.path().ends_with('/') {
        let path = format!("{}/", api_url.path());
        api_url.set_path(&path);
    }
    Ok(SlackConfig { target, api_url })
}
