//! The `[http]` and `[log]` sections: the status/metrics listener and the log format and level.

use super::*;

pub(super) fn http(raw: RawHttp) -> Result<HttpConfig, ConfigError> {
    let s = text_or(&raw.listen, DEFAULT_LISTEN).trim();
    let listen = SocketAddr::from_str(s).map_err(|_| {
        ConfigError::new(
            "http.listen",
            format!(
                "invalid address {s:?} (expected IP:port, e.g. \"127.0.0.1:9184\" or \"[::]:9184\")"
            ),
        )
    })?;
    Ok(HttpConfig { listen })
}

pub(super) fn log(raw: RawLog) -> Result<LogConfig, ConfigError> {
    let format = match text_or(&raw.format, DEFAULT_LOG_FORMAT)
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::new(
                "log.format",
                format!("must be \"text\" or \"json\", got {other:?}"),
            ))
        }
    };
    let level = text_or(&raw.level, DEFAULT_LOG_LEVEL).trim().to_string();
    check_log_level(&level).map_err(|why| {
        ConfigError::new(
            "log.level",
            format!(
                "{why}; must be one of trace, debug, info, warn, error, off, or a filter such as \
                 \"okta_provwatch=debug,warn\""
            ),
        )
    })?;
    Ok(LogConfig { format, level })
}

/// Checks a `log.level` filter the way the logger will parse it, so a bogus one is refused
/// here rather than silently replaced by `info` at start-up (issue 10). Stricter than
/// `EnvFilter` in one way: a bare word must be a level, because `EnvFilter` takes an
/// unknown word (`warning`, `verbose`) as a target name and the daemon would then log
/// almost nothing; a target alone is written `target=trace`.
fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if level.is_empty() {
        return Err("must not be empty".into());
    }
    for directive in level.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err(format!("empty directive in {level:?}"));
        }
        let bare = !directive.contains('=') && !directive.contains('[');
        if bare && !LEVELS.iter().any(|l| directive.eq_ignore_ascii_case(l)) {
            return Err(format!("{directive:?} is not a level"));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(drop)
        .map_err(|e| format!("invalid filter {level:?}: {e}"))
}
