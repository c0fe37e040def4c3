//! The metrics the daemon exports, through the Prometheus project's Rust client
//! (`prometheus-client`: typed families, histograms, no HTTP stack of its own; `/metrics` in
//! `http.rs` serves [`Metrics::render`]).
//!
//! Every family is declared once, in [`CATALOGUE`], with its type and HELP text; the README's
//! metrics table lists the same names (a test holds them together). Components record by name
//! through the small API below (`inc`, `set`, `set_all`, `observe`), which keeps call sites
//! free of client types. Label values come from bounded sets (bucket, status, result, channel,
//! operation, app); each family is nevertheless capped at [`MAX_SERIES`] label sets, beyond
//! which new ones are folded into one `other` series so that a surprise cannot blow up memory
//! or a Prometheus server.
//!
//! The exposition is OpenMetrics text (`# EOF` at the end, counters typed without their
//! `_total` suffix), which Prometheus reads natively; see [`CONTENT_TYPE`].
//!
//! About 135 of its lines are unit tests, kept beside the code they pin.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label sets one family may hold before new ones are folded into `other`.
pub const MAX_SERIES: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Observations in buckets (seconds).
    Histogram(&'static [f64]),
}

/// One metric family: exposed name, type and HELP text.
#[derive(Clone, Copy, Debug)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// Time from a failure being recorded to its resolution: minutes to a week.
const HEAL_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 43200.0, 86400.0, 259200.0, 604800.0,
];
/// Time from Okta logging a failure to the daemon recording it: about a poll interval.
const DETECT_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Time a request waited for its share of an Okta bucket: none to a window and more.
const BUDGET_WAIT_BUCKETS: &[f64] = &[
    0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0,
];

/// Every family the daemon exports.
pub const CATALOGUE: &[Def] = &[
    Def {
        name: "okta_requests_total",
        kind: Kind::Counter,
        help: "Okta API requests by rate-limit bucket and HTTP status.",
    },
    Def {
        name: "okta_rate_limit_remaining",
        kind: Kind::Gauge,
        help: "X-Rate-Limit-Remaining last seen per bucket.",
    },
    Def {
        name: "okta_rate_limit_limit",
        kind: Kind::Gauge,
        help: "X-Rate-Limit-Limit last seen per bucket.",
    },
    Def {
        name: "provwatch_open_failures",
        kind: Kind::Gauge,
        help: "Unresolved provisioning failures by app and operation.",
    },
    Def {
        name: "provwatch_log_events_total",
        kind: Kind::Counter,
        help: "System Log events read, by outcome of classification.",
    },
    Def {
        name: "provwatch_quarantined_events_total",
        kind: Kind::Counter,
        help: "System Log events the JSON parser refused, kept in the quarantine table and skipped.",
    },
    Def {
        name: "provwatch_log_next_cycles_total",
        kind: Kind::Counter,
        help: "Times the poller stopped following System Log next links that went round in a cycle.",
    },
    Def {
        name: "provwatch_http_connections_evicted_total",
        kind: Kind::Counter,
        help: "Connections to /metrics and /healthz closed to make room for a new one at the connection cap.",
    },
    Def {
        name: "provwatch_http_connections_timed_out_total",
        kind: Kind::Counter,
        help: "Connections to /metrics and /healthz closed for not finishing their request in time.",
    },
    Def {
        name: "provwatch_poll_lag_seconds",
        kind: Kind::Gauge,
        help: "Now minus the published time of the newest event applied.",
    },
    Def {
        name: "provwatch_last_poll_success_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the System Log was last polled successfully.",
    },
    Def {
        name: "provwatch_consecutive_poll_failures",
        kind: Kind::Gauge,
        help: "System Log polls failed in a row (0 when the last one worked).",
    },
    Def {
        name: "provwatch_retries_total",
        kind: Kind::Counter,
        help: "Retries by result.",
    },
    Def {
        name: "provwatch_alerts_total",
        kind: Kind::Counter,
        help: "Alert deliveries by channel and result.",
    },
    Def {
        name: "provwatch_org_rate_limit_events_total",
        kind: Kind::Counter,
        help: "Rate-limit warnings and violations Okta logged for the org, by event type.",
    },
    Def {
        name: "provwatch_time_to_heal_seconds",
        kind: Kind::Histogram(HEAL_BUCKETS),
        help: "Time from a failure being detected (or reopened) to its resolution, by operation.",
    },
    Def {
        name: "provwatch_detection_latency_seconds",
        kind: Kind::Histogram(DETECT_BUCKETS),
        help: "Time from Okta logging a failure to the daemon recording it, by operation.",
    },
    Def {
        name: "okta_budget_wait_seconds",
        kind: Kind::Histogram(BUDGET_WAIT_BUCKETS),
        help:
            "Time an Okta request waited for the rate budget before it was sent, by priority class.",
    },
    Def {
        name: "provwatch_scan_ticks_skipped_total",
        kind: Kind::Counter,
        help: "Scheduled assignment scans skipped because the previous scan was still running.",
    },
    Def {
        name: "provwatch_hook_requests_total",
        kind: Kind::Counter,
        help: "Requests to the event hook receiver, by result (accepted, verification, unauthorized, too_large, malformed, ...).",
    },
    Def {
        name: "provwatch_hook_events_total",
        kind: Kind::Counter,
        help: "Events received by event hook, by what applying them did (applied, duplicate, deferred, malformed, ...).",
    },
    Def {
        name: "provwatch_hook_inbox_pending",
        kind: Kind::Gauge,
        help: "Events received by event hook and not applied yet.",
    },
];

type Labels = Vec<(String, String)>;
type F64Counter = Counter<f64, AtomicU64>;
type F64Gauge = Gauge<f64, AtomicU64>;
type HistFamily = Family<Labels, Histogram, Buckets>;

/// Makes each label set's histogram with the family's buckets. A named (and so `Clone`)
/// constructor rather than a closure makes the family `Clone`, and a clone shares its samples,
/// so the handle kept for recording and the one registered for encoding are the same family.
#[derive(Clone, Debug)]
struct Buckets(&'static [f64]);

impl prometheus_client::metrics::family::MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

#[derive(Clone)]
enum Fam {
    Counter(Family<Labels, F64Counter>),
    Gauge(Family<Labels, F64Gauge>),
    Histogram(HistFamily),
}

struct Inner {
    registry: Registry,
    families: HashMap<&'static str, Fam>,
    /// The label sets of each family, for the cardinality cap and for [`Metrics::total`]
    /// (the client does not iterate a family's series).
    series: HashMap<&'static str, BTreeSet<Labels>>,
    /// Observations per histogram series, for [`Metrics::get`].
    observations: HashMap<(String, Labels), u64>,
}

/// Cloneable handle to the registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn key(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The registered name: the client appends `_total` to counters itself.
fn base_name(def: &Def) -> &'static str {
    match def.kind {
        Kind::Counter => def.name.strip_suffix("_total").unwrap_or(def.name),
        _ => def.name,
    }
}

impl Inner {
    fn register(&mut self, def: Def) {
        let fam = match def.kind {
            Kind::Counter => {
                let f = Family::<Labels, F64Counter>::default();
                self.registry
                    .register(base_name(&def), def.help, Declared(f.clone()));
                Fam::Counter(f)
            }
            Kind::Gauge => {
                let f = Family::<Labels, F64Gauge>::default();
                self.registry
                    .register(def.name, def.help, Declared(f.clone()));
                Fam::Gauge(f)
            }
            Kind::Histogram(buckets) => {
                let f = HistFamily::new_with_constructor(Buckets(buckets));
                self.registry
                    .register(def.name, def.help, Declared(f.clone()));
                Fam::Histogram(f)
            }
        };
        self.families.insert(def.name, fam);
    }

    /// The family called `name`, registering an undeclared one (with a HELP text saying so,
    /// and a warning) rather than losing its samples; a test keeps [`CATALOGUE`] complete.
    fn family(&mut self, name: &'static str, kind: Kind) -> Fam {
        if !self.families.contains_key(name) {
            tracing::warn!(
                metric = name,
                "metric not declared in metrics::CATALOGUE; exporting it undocumented"
            );
            self.register(Def {
                name,
                kind,
                help: "Undeclared metric (add it to metrics::CATALOGUE).",
            });
        }
        self.families[name].clone()
    }

    /// The label set to record under: `labels` unless the family is full, then `other`.
    fn bounded(&mut self, name: &'static str, labels: Labels) -> Labels {
        let set = self.series.entry(name).or_default();
        if set.contains(&labels) || set.len() < MAX_SERIES {
            set.insert(labels.clone());
            return labels;
        }
        let other: Labels = labels
            .into_iter()
            .map(|(k, _)| (k, "other".to_string()))
            .collect();
        if set.insert(other.clone()) {
            tracing::warn!(
                metric = name,
                max = MAX_SERIES,
                "metric has too many label sets; folding new ones into \"other\""
            );
        }
        other
    }
}

/// A registered family that is encoded even before its first sample (the client skips empty
/// families by default), so that every family has its HELP and TYPE from the first scrape and
/// dashboards and alert rules can tell "none yet" from "not exported".
#[derive(Debug)]
struct Declared<M>(M);

impl<M: prometheus_client::encoding::EncodeMetric> prometheus_client::encoding::EncodeMetric
    for Declared<M>
{
    fn encode(
        &self,
        encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        self.0.metric_type()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut inner = Inner {
            registry: Registry::default(),
            families: HashMap::new(),
            series: HashMap::new(),
            observations: HashMap::new(),
        };
        for def in CATALOGUE {
            inner.register(*def);
        }
        Metrics {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declares a family. Those in [`CATALOGUE`] are declared already (and keep its HELP);
    /// this registers anything else with its own HELP.
    pub fn describe(&self, name: &'static str, kind: Kind, help: &'static str) {
        let mut m = self.lock();
        if !m.families.contains_key(name) {
            m.register(Def { name, kind, help });
        }
    }

    pub fn inc(&self, name: &'static str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1.0);
    }

    pub fn add(&self, name: &'static str, labels: &[(&str, &str)], v: f64) {
        let mut m = self.lock();
        let labels = m.bounded(name, key(labels));
        match m.family(name, Kind::Counter) {
            Fam::Counter(f) => {
                f.get_or_create(&labels).inc_by(v);
            }
            Fam::Gauge(f) => {
                f.get_or_create(&labels).inc_by(v);
            }
            Fam::Histogram(_) => tracing::warn!(metric = name, "add() on a histogram; ignored"),
        }
    }

    pub fn set(&self, name: &'static str, labels: &[(&str, &str)], v: f64) {
        let mut m = self.lock();
        let labels = m.bounded(name, key(labels));
        match m.family(name, Kind::Gauge) {
            Fam::Gauge(f) => {
                f.get_or_create(&labels).set(v);
            }
            _ => tracing::warn!(metric = name, "set() on a counter or histogram; ignored"),
        }
    }

    /// Replaces every series of a gauge family at once (e.g. open failures by app), so that
    /// series whose subject disappeared do not linger with a stale value.
    pub fn set_all(&self, name: &'static str, rows: Vec<(Vec<(String, String)>, f64)>) {
        let mut m = self.lock();
        let Fam::Gauge(f) = m.family(name, Kind::Gauge) else {
            tracing::warn!(
                metric = name,
                "set_all() on a counter or histogram; ignored"
            );
            return;
        };
        f.clear();
        m.series.remove(name);
        for (labels, v) in rows {
            let labels = m.bounded(name, labels);
            // Rows folded into `other` add up instead of overwriting one another.
            f.get_or_create(&labels).inc_by(v);
        }
    }

    /// Records one observation in a histogram family.
    pub fn observe(&self, name: &'static str, labels: &[(&str, &str)], v: f64) {
        let mut m = self.lock();
        let labels = m.bounded(name, key(labels));
        match m.family(name, Kind::Histogram(HEAL_BUCKETS)) {
            Fam::Histogram(f) => {
                f.get_or_create(&labels).observe(v);
                *m.observations
                    .entry((name.to_string(), labels))
                    .or_default() += 1;
            }
            _ => tracing::warn!(metric = name, "observe() on a counter or gauge; ignored"),
        }
    }

    /// The value of one counter or gauge series (`None` if never recorded); for a histogram,
    /// its number of observations.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let m = self.lock();
        let labels = key(labels);
        match m.families.get(name)? {
            Fam::Counter(f) => f.get(&labels).map(|c| c.get()),
            Fam::Gauge(f) => f.get(&labels).map(|g| g.get()),
            // The client exposes a histogram's count only to its own tests.
            Fam::Histogram(_) => m
                .observations
                .get(&(name.to_string(), labels))
                .map(|n| *n as f64),
        }
    }

    /// Sum over every series of a family.
    pub fn total(&self, name: &str) -> f64 {
        let sets: Vec<Labels> = {
            let m = self.lock();
            m.series
                .get(name)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        sets.iter()
            .filter_map(|l| {
                let refs: Vec<(&str, &str)> =
                    l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                self.get(name, &refs)
            })
            .sum()
    }

    /// The exposition, in OpenMetrics text ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &m.registry) {
            // Only a `fmt::Write` into a String, which does not fail; never lose the scrape.
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_typed_families_with_help() {
        let m = Metrics::new();
        m.inc(
            "provwatch_alerts_total",
            &[("channel", "slack"), ("result", "a\"b")],
        );
        m.inc(
            "provwatch_alerts_total",
            &[("channel", "slack"), ("result", "a\"b")],
        );
        m.set("provwatch_poll_lag_seconds", &[], 1.5);
        m.observe(
            "provwatch_time_to_heal_seconds",
            &[("operation", "create")],
            42.0,
        );
        let t = m.render();
        assert!(t.contains("# TYPE provwatch_alerts counter"), "{t}");
        assert!(
            t.contains("provwatch_alerts_total{channel=\"slack\",result=\"a\\\"b\"} 2"),
            "{t}"
        );
        assert!(t.contains("provwatch_poll_lag_seconds 1.5"), "{t}");
        assert!(
            t.contains("provwatch_time_to_heal_seconds_bucket{le=\"60.0\",operation=\"create\"} 1")
                || t.contains(
                    "provwatch_time_to_heal_seconds_bucket{operation=\"create\",le=\"60.0\"} 1"
                ),
            "{t}"
        );
        assert!(t.ends_with("# EOF\n"), "{t}");
        assert_eq!(
            m.get(
                "provwatch_alerts_total",
                &[("channel", "slack"), ("result", "a\"b")]
            ),
            Some(2.0)
        );
        assert_eq!(m.total("provwatch_alerts_total"), 2.0);
    }

    #[test]
    fn every_family_has_help_and_type_even_before_a_sample() {
        let t = Metrics::new().render();
        for def in CATALOGUE {
            let base = base_name(def);
            assert!(
                t.contains(&format!("# HELP {base} ")),
                "no HELP for {}",
                def.name
            );
            assert!(
                t.contains(&format!("# TYPE {base} ")),
                "no TYPE for {}",
                def.name
            );
        }
    }

    #[test]
    fn set_all_drops_series_that_disappeared() {
        let m = Metrics::new();
        let row = |app: &str, n| (vec![("app".to_string(), app.to_string())], n);
        m.set_all(
            "provwatch_open_failures",
            vec![row("A", 2.0), row("B", 1.0)],
        );
        m.set_all("provwatch_open_failures", vec![row("B", 3.0)]);
        assert_eq!(m.get("provwatch_open_failures", &[("app", "A")]), None);
        assert_eq!(m.total("provwatch_open_failures"), 3.0);
        assert!(!m.render().contains("app=\"A\""));
    }

    #[test]
    fn label_sets_beyond_the_cap_fold_into_other() {
        let m = Metrics::new();
        for i in 0..MAX_SERIES + 10 {
            m.inc("okta_requests_total", &[("bucket", &format!("b{i}"))]);
        }
        assert_eq!(
            m.get("okta_requests_total", &[("bucket", "other")]),
            Some(10.0)
        );
        assert_eq!(m.total("okta_requests_total"), (MAX_SERIES + 10) as f64);
    }

    /// Every name recorded anywhere in `src/` is declared in the catalogue, and the README's
    /// metrics table lists exactly the catalogue.
    #[test]
    fn the_catalogue_covers_the_code_and_matches_the_readme() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let declared: BTreeSet<&str> = CATALOGUE.iter().map(|d| d.name).collect();
        let mut used = BTreeSet::new();
        let mut stack = vec![root.join("src")];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("metrics.rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for part in text.split('"').skip(1).step_by(2) {
                        if (part.starts_with("provwatch_") || part.starts_with("okta_"))
                            && part.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                            && (part.ends_with("_total")
                                || part.ends_with("_seconds")
                                || part.starts_with("okta_rate_limit_")
                                || part.starts_with("provwatch_open_")
                                || part.starts_with("provwatch_consecutive_"))
                        {
                            used.insert(part.to_string());
                        }
                    }
                }
            }
        }
        for name in &used {
            assert!(
                declared.contains(name.as_str()),
                "{name} is recorded but not in CATALOGUE"
            );
        }
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        for def in CATALOGUE {
            assert!(
                readme.contains(&format!("`{}", def.name)),
                "{} is missing from the README's metrics table",
                def.name
            );
        }
    }
}
