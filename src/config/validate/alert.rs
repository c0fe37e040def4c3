//! The `[alert]` section: grouping and repeat timings.

use super::*;

pub(super) fn alert(raw: RawAlert) -> Result<AlertConfig, ConfigError> {
    Ok(AlertConfig {
        persist_after: duration(
            "alert.persist_after",
            &raw.persist_after,
            DEFAULT_PERSIST_AFTER,
            max::PERSIST_AFTER,
        )?,
        repeat_interval: positive_duration(
            "alert.repeat_interval",
            &raw.repeat_interval,
            DEFAULT_REPEAT_INTERVAL,
            max::REPEAT_INTERVAL,
        )?,
        group_wait: duration(
            "alert.group_wait",
            &raw.group_wait,
            DEFAULT_GROUP_WAIT,
            max::GROUP_WAIT,
        )?,
        group_interval: duration(
            "alert.group_interval",
            &raw.group_interval,
            DEFAULT_GROUP_INTERVAL,
            max::GROUP_INTERVAL,
        )?,
        send_resolved: raw.send_resolved.unwrap_or(DEFAULT_SEND_RESOLVED),
        digest_schedule: parse_schedule(
            "alert.digest_schedule",
            text_or(&raw.digest_schedule, DEFAULT_DIGEST_SCHEDULE),
        )?,
    })
}
