//! The `[detect]` section: poll interval, look-back and which apps and operations to watch.

use super::*;

pub(super) fn detect(raw: RawDetect) -> Result<DetectConfig, ConfigError> {
    let poll_interval = duration(
        "detect.poll_interval",
        &raw.poll_interval,
        DEFAULT_POLL_INTERVAL,
        max::POLL_INTERVAL,
    )?;
    if poll_interval < MIN_POLL_INTERVAL {
        return Err(ConfigError::new(
            "detect.poll_interval",
            format!(
                "must be at least 5s, got {:?}",
                text_or(&raw.poll_interval, DEFAULT_POLL_INTERVAL).trim()
            ),
        ));
    }
    let initial_lookback = duration(
        "detect.initial_lookback",
        &raw.initial_lookback,
        DEFAULT_INITIAL_LOOKBACK,
        max::LOOKBACK,
    )
    .map_err(|mut e| {
        if e.message.starts_with("must be at most") {
            e.message
                .push_str(" (Okta keeps System Log events for 90 days)");
        }
        e
    })?;
    let scan_schedule = parse_schedule(
        "detect.scan_schedule",
        text_or(&raw.scan_schedule, DEFAULT_SCAN_SCHEDULE),
    )?;
    let mut apps: Vec<String> = Vec::new();
    for app in raw.apps.map(|l| l.0).unwrap_or_default() {
        let app = app.trim().to_string();
        if app.is_empty() {
            return Err(ConfigError::new(
                "detect.apps",
                "entries must not be empty (use [] to watch every provisioning app)",
            ));
        }
        if !apps.contains(&app) {
            apps.push(app);
        }
    }
    Ok(DetectConfig {
        poll_interval,
        initial_lookback,
        scan_schedule,
        apps,
        scan_share: crate::config::budget::scan_share(raw.scan_share)?,
    })
}
