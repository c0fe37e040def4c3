//! The `[retry]` section: backoff bounds, attempts and in-flight limits.

use super::*;

pub(super) fn retry(raw: RawRetry) -> Result<RetryConfig, ConfigError> {
    let max_attempts = int_at_least(
        "retry.max_attempts",
        raw.max_attempts,
        DEFAULT_MAX_ATTEMPTS,
        1,
    )?;
    let initial_backoff = positive_duration(
        "retry.initial_backoff",
        &raw.initial_backoff,
        DEFAULT_INITIAL_BACKOFF,
        max::BACKOFF,
    )?;
    let max_backoff = duration(
        "retry.max_backoff",
        &raw.max_backoff,
        DEFAULT_MAX_BACKOFF,
        max::BACKOFF,
    )?;
    if initial_backoff > max_backoff {
        return Err(ConfigError::new(
            "retry.initial_backoff",
            format!(
                "must not exceed retry.max_backoff ({} > {})",
                text_or(&raw.initial_backoff, DEFAULT_INITIAL_BACKOFF).trim(),
                text_or(&raw.max_backoff, DEFAULT_MAX_BACKOFF).trim()
            ),
        ));
    }
    let per_minute = int_at_least("retry.per_minute", raw.per_minute, DEFAULT_PER_MINUTE, 1)?;
    Ok(RetryConfig {
        enabled: raw.enabled.unwrap_or(DEFAULT_RETRY_ENABLED),
        max_attempts,
        initial_backoff,
        max_backoff,
        per_minute,
    })
}
