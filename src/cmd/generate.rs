//! `okta-provwatch man` and `okta-provwatch completions`: generated from the clap definitions.
//!
//! The options come from clap; this module adds what clap cannot know to the pages of the
//! program, `okta-provwatch(1)`, and of the daemon, `okta-provwatch-run(1)` (the unit's
//! `Documentation=`): EXIT STATUS (from [`crate::exit::ALL`], so codes are documented in one
//! place), SIGNALS, FILES, ENVIRONMENT, and every config key with its default and meaning,
//! read from `config.example.toml` so the page cannot drift from the reference file.

use anyhow::Context as _;
use clap_mangen::Man;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Subcommands that never read the config file.
const IGNORE_CONFIG: [&str; 3] = ["man", "completions", "demo"];

/// The reference config, the source of the CONFIGURATION section.
const EXAMPLE_CONFIG: &str = include_str!("../../config.example.toml");

pub fn man(out_dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let written = write_man_pages(out_dir)
        .with_context(|| format!("writing man pages to {}", out_dir.display()))?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    println!(
        "{} man pages in {}; read one with `man -l {}`",
        written.len(),
        out_dir.display(),
        out_dir.join("okta-provwatch.1").display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut cmd = crate::cli::command();
    // Into a buffer first: clap_complete panics on a write error, and a reader that stops
    // early (`| head`) closes the pipe.
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "okta-provwatch", &mut buf);
    match std::io::stdout().lock().write_all(&buf) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        r => {
            r.map_err(|e| anyhow::anyhow!("writing the completions to stdout: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes one page per visible command into `out_dir` and returns their paths, the
/// program's page first.
pub fn write_man_pages(out_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut cmd = crate::cli::command().disable_help_subcommand(true);
    cmd.build();
    // `--config` is global, but these commands never read a config: their pages must not
    // suggest otherwise.
    for name in IGNORE_CONFIG {
        cmd = cmd.mut_subcommand(name, |s| s.mut_arg("config", |a| a.hide(true)));
    }
    let mut written = Vec::new();
    write_page(&cmd, out_dir, &mut written)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, out_dir, &mut written)?;
    }
    Ok(written)
}

fn write_page(
    cmd: &clap::Command,
    out_dir: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let man = Man::new(cmd.clone());
    let path = out_dir.join(man.get_filename());
    let mut page = Vec::new();
    render_page(cmd, &man, &mut page)?;
    std::fs::write(&path, page)?;
    written.push(path);
    Ok(())
}

/// clap_mangen's sections in its order, with ours before VERSION.
fn render_page(cmd: &clap::Command, man: &Man, w: &mut Vec<u8>) -> std::io::Result<()> {
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(w)?;
    }
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    if name == "okta-provwatch" || name == "okta-provwatch-run" {
        w.write_all(operator_sections(name == "okta-provwatch-run").as_bytes())?;
    }
    if cmd.get_version().is_some() {
        man.render_version_section(w)?;
    }
    Ok(())
}

/// Escapes text for roff: backslashes, hyphens (so they copy as ASCII `-`), and a leading
/// `.` or `'` that would read as a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// A `.TP` entry: bold tag, then the text.
fn item(out: &mut String, tag: &str, text: &str) {
    out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(tag), roff(text)));
}

fn section(out: &mut String, title: &str) {
    out.push_str(&format!(".SH \"{title}\"\n"));
}

fn operator_sections(daemon_page: bool) -> String {
    let mut s = String::new();
    if daemon_page {
        section(&mut s, "DAEMON");
        s.push_str(&roff(
            "Runs until stopped: polls the Okta System Log from a durable cursor, scans app \
             assignments on a schedule, retries failed provisioning and alerts on Slack and by \
             email. Under systemd (Type=notify) READY=1 is sent only after the config \
             validated, the state store opened, the HTTP endpoint bound and Okta answered an \
             authenticated request.",
        ));
        s.push('\n');
    }

    section(&mut s, "EXIT STATUS");
    for (code, meaning) in crate::exit::ALL {
        item(&mut s, &code.to_string(), meaning);
    }

    section(&mut s, "SIGNALS");
    item(
        &mut s,
        "SIGTERM, SIGINT",
        "Stop gracefully: polling and scanning stop, in-flight Okta calls, retries and alert \
         deliveries get up to 20 s to finish, then the daemon exits 0. Unfinished work is \
         durable in the state store and resumes at the next start. A second signal forces an \
         immediate exit.",
    );
    item(
        &mut s,
        "SIGHUP",
        "Reload: re-read and validate the config, open the state store and make one \
         authenticated Okta call with it while the running daemon continues; switch only if \
         all of that works, otherwise log the error and keep the running configuration. \
         [http] listen and [log] need a restart.",
    );

    section(&mut s, "FILES");
    item(
        &mut s,
        crate::config::DEFAULT_CONFIG_PATH,
        "The config file, unless --config or OKTA_PROVWATCH_CONFIG names another. \
         /usr/share/doc/okta-provwatch/config.example.toml documents every key.",
    );
    item(
        &mut s,
        "/var/lib/okta-provwatch/state.db",
        "The SQLite state store (default [state] path): System Log cursor, failures, retry \
         bookkeeping, alert state. Back it up with the daemon stopped, or with sqlite3 .backup.",
    );
    item(
        &mut s,
        "/etc/credstore/, /etc/credstore.encrypted/",
        "Where the systemd unit looks up the credentials okta-api-token, okta-oauth-key, \
         slack-webhook, slack-bot-token and smtp-password (plain, root:root 0600), or the same \
         names with .encrypted (made with systemd-creds encrypt). Missing ones are skipped.",
    );
    item(
        &mut s,
        "/usr/lib/systemd/system/okta-provwatch.service",
        "The systemd unit; local changes go in a drop-in (systemctl edit okta-provwatch).",
    );

    section(&mut s, "ENVIRONMENT");
    item(
        &mut s,
        crate::config::CONFIG_PATH_ENV,
        "Path of the config file (same as --config).",
    );
    item(
        &mut s,
        "OKTA_PROVWATCH__SECTION__KEY",
        "Overrides one config key, e.g. OKTA_PROVWATCH__DETECT__POLL_INTERVAL=30s or \
         OKTA_PROVWATCH__OKTA__OAUTH__CLIENT_ID=0oa.... Values are read as TOML when they \
         parse, as strings otherwise; an error names the variable.",
    );
    item(
        &mut s,
        "CREDENTIALS_DIRECTORY",
        "Set by systemd; *_credential keys read $CREDENTIALS_DIRECTORY/NAME.",
    );
    item(
        &mut s,
        "RUST_LOG",
        "When set, overrides [log] level (a tracing filter such as okta_provwatch=debug,warn).",
    );
    item(
        &mut s,
        "NOTIFY_SOCKET, WATCHDOG_USEC",
        "Set by systemd for Type=notify and WatchdogSec=; the daemon reports readiness, \
         status and watchdog pings through them.",
    );
    s.push_str(&roff(
        "Any variable a *_env key names (e.g. OKTA_API_TOKEN, SLACK_WEBHOOK_URL, SMTP_PASSWORD) \
         is read for that secret.",
    ));
    s.push('\n');

    section(&mut s, "CONFIGURATION");
    s.push_str(&roff(
        "The config file is TOML. Every key, with its default (or, for required keys and \
         secrets, an example) and meaning. Unknown keys are an error. Secrets are never \
         written in the file: each secret key names an environment variable (_env), a file \
         (_file) or a systemd credential (_credential). Durations are written like 30s, 15m, \
         4h, 1h 30m, 7d; schedules use six cron fields, seconds first.",
    ));
    s.push('\n');
    for key in config_keys(EXAMPLE_CONFIG) {
        item(&mut s, &format!("{} = {}", key.key, key.value), &key.doc);
    }

    section(&mut s, "SEE ALSO");
    s.push_str(if daemon_page {
        "\\fBokta\\-provwatch\\fR(1), \\fBsystemd.exec\\fR(5), \\fBsystemd\\-creds\\fR(1)\n"
    } else {
        "\\fBokta\\-provwatch\\-run\\fR(1), \\fBsystemd.exec\\fR(5), \\fBsystemd\\-creds\\fR(1)\n"
    });
    s
}

/// One key of the reference config.
#[derive(Debug, PartialEq, Eq)]
struct ConfigKey {
    /// Dotted: `detect.poll_interval`.
    key: String,
    /// As written in the file (default, or example for required keys and secrets).
    value: String,
    /// The comment lines above it, joined.
    doc: String,
}

/// Every key of `config.example.toml`, set or commented out (`# key = value`), with the
/// comment block above it. A key right below another key shares that key's comment.
fn config_keys(text: &str) -> Vec<ConfigKey> {
    let mut out: Vec<ConfigKey> = Vec::new();
    // A commented-out table (`# [okta.oauth]`) holds the commented keys below it; the
    // next key that is set belongs to the last real table again.
    let mut section = String::new();
    let mut commented_section: Option<String> = None;
    let mut doc: Vec<String> = Vec::new();
    let mut last_doc = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        let uncommented = trimmed.trim_start_matches('#').trim();
        if let Some(name) = uncommented
            .strip_prefix('[')
            .and_then(|r| r.split(']').next())
            .filter(|n| {
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
            })
            .filter(|n| !n.is_empty())
        {
            if trimmed.starts_with('#') {
                commented_section = Some(name.to_string());
            } else {
                section = name.to_string();
                commented_section = None;
            }
            doc.clear();
            last_doc.clear();
            continue;
        }
        if let Some((k, v)) = uncommented
            .split_once(" = ")
            .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        {
            let table = match (&commented_section, trimmed.starts_with('#')) {
                (Some(c), true) => c.clone(),
                (_, false) => {
                    commented_section = None;
                    section.clone()
                }
                (None, true) => section.clone(),
            };
            if table.is_empty() {
                continue;
            }
            // A trailing comment on the key's own line documents it too.
            let (value, trailing) = match v.split_once("  #") {
                Some((v, c)) => (v.trim(), c.trim()),
                None => (v.trim(), ""),
            };
            let mut text = if doc.is_empty() {
                last_doc.clone()
            } else {
                doc.join(" ")
            };
            // The block above is shared with the next key; a trailing comment is not.
            last_doc = text.clone();
            if !trailing.is_empty() {
                text = format!("{text} ({trailing})").trim().to_string();
            }
            doc.clear();
            let key = format!("{table}.{k}");
            if !out.iter().any(|e| e.key == key) {
                out.push(ConfigKey {
                    key,
                    value: value.to_string(),
                    doc: text,
                });
            }
            continue;
        }
        if trimmed.starts_with('#') && !uncommented.is_empty() && uncommented != "..." {
            doc.push(uncommented.to_string());
        } else if trimmed.is_empty() {
            doc.clear();
            last_doc.clear();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_key_is_in_the_man_page_source() {
        let keys = config_keys(EXAMPLE_CONFIG);
        let names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
        for expected in [
            "okta.org_url",
            "okta.api_token_env",
            "okta.api_token_credential",
            "okta.oauth.client_id",
            "okta.oauth.private_key_credential",
            "okta.oauth.scopes",
            "okta.request_timeout",
            "okta.admin_url",
            "state.path",
            "detect.poll_interval",
            "retry.max_backoff",
            "alert.digest_schedule",
            "slack.channel",
            "slack.api_url",
            "email.smtp_password_credential",
            "http.listen",
            "log.level",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        let poll = keys
            .iter()
            .find(|k| k.key == "detect.poll_interval")
            .unwrap();
        assert_eq!(poll.value, "\"60s\"");
        assert!(poll.doc.contains("At least 5s"), "{}", poll.doc);
        // max_backoff sits right below initial_backoff and shares its comment.
        let mb = keys.iter().find(|k| k.key == "retry.max_backoff").unwrap();
        assert!(mb.doc.contains("max_backoff"), "{}", mb.doc);
        assert!(keys.iter().all(|k| !k.doc.is_empty()), "{keys:#?}");
    }

    #[test]
    fn program_and_daemon_pages_have_the_operator_sections() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_man_pages(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[0], "okta-provwatch.1");
        assert!(
            names.contains(&"okta-provwatch-run.1".to_string()),
            "{names:?}"
        );
        for page in ["okta-provwatch.1", "okta-provwatch-run.1"] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            for heading in [
                ".SH \"EXIT STATUS\"",
                ".SH \"SIGNALS\"",
                ".SH \"FILES\"",
                ".SH \"ENVIRONMENT\"",
                ".SH \"CONFIGURATION\"",
            ] {
                assert!(text.contains(heading), "{page} lacks {heading}");
            }
            assert!(text.contains(".TP\n\\fB78\\fR\n"), "{page}");
            assert!(
                text.contains("\\fBdetect.poll_interval = \"60s\"\\fR"),
                "{page}"
            );
        }
        let status = std::fs::read_to_string(dir.path().join("okta-provwatch-status.1")).unwrap();
        assert!(!status.contains("EXIT STATUS"));
    }

    #[test]
    fn every_flag_has_help_and_config_is_hidden_where_ignored() {
        let mut cmd = crate::cli::command();
        cmd.build();
        let mut missing = Vec::new();
        for c in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
            for a in c.get_arguments() {
                if a.get_help().is_none()
                    && !a.is_hide_set()
                    && a.get_id() != "help"
                    && a.get_id() != "version"
                {
                    missing.push(format!("{} {}", c.get_name(), a.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "flags without help: {missing:?}");

        let dir = tempfile::tempdir().unwrap();
        write_man_pages(dir.path()).unwrap();
        for name in IGNORE_CONFIG {
            let page = std::fs::read_to_string(dir.path().join(format!("okta-provwatch-{name}.1")))
                .unwrap();
            assert!(!page.contains("\\-\\-config"), "{name} page shows --config");
        }
        let status = std::fs::read_to_string(dir.path().join("okta-provwatch-status.1")).unwrap();
        assert!(status.contains("\\-\\-config"));
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff("a-b\\c"), "a\\-b\\ec");
        assert_eq!(roff(".x"), "\\&.x");
    }
}
