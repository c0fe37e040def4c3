//! In-process metrics registry rendered in the Prometheus text exposition format.
//!
//! The daemon exposes a few dozen series at most, so a mutex-guarded ordered map is plenty and
//! avoids pulling a metrics framework (and its HTTP stack) onto a 2-core ops host.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

#[derive(Default)]
struct Family {
    help: &'static str,
    kind: Option<Kind>,
    series: BTreeMap<Vec<(String, String)>, f64>,
}

/// Cloneable handle to the registry.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<BTreeMap<&'static str, Family>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn key(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a family so that it is rendered with HELP/TYPE even before its first sample.
    pub fn describe(&self, name: &'static str, kind: Kind, help: &'static str) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let fam = m.entry(name).or_default();
        fam.help = help;
        fam.kind = Some(kind);
    }

    pub fn inc(&self, name: &'static str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1.0);
    }

    pub fn add(&self, name: &'static str, labels: &[(&str, &str)], v: f64) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let fam = m.entry(name).or_default();
        fam.kind.get_or_insert(Kind::Counter);
        *fam.series.entry(key(labels)).or_insert(0.0) += v;
    }

    pub fn set(&self, name: &'static str, labels: &[(&str, &str)], v: f64) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let fam = m.entry(name).or_default();
        fam.kind.get_or_insert(Kind::Gauge);
        fam.series.insert(key(labels), v);
    }

    /// Replaces every series of a gauge family at once (e.g. open failures by app), so that
    /// series whose subject disappeared do not linger with a stale value.
    pub fn set_all(&self, name: &'static str, rows: Vec<(Vec<(String, String)>, f64)>) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let fam = m.entry(name).or_default();
        fam.kind.get_or_insert(Kind::Gauge);
        fam.series = rows.into_iter().collect();
    }

    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.get(name)
            .and_then(|f| f.series.get(&key(labels)).copied())
    }

    /// Sum over every series of a family.
    pub fn total(&self, name: &str) -> f64 {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.get(name).map(|f| f.series.values().sum()).unwrap_or(0.0)
    }

    pub fn render(&self) -> String {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, fam) in m.iter() {
            if !fam.help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {}", fam.help);
            }
            let kind = match fam.kind.unwrap_or(Kind::Gauge) {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in &fam.series {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, val)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(val));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", fmt_value(*v));
            }
        }
        out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn fmt_value(v: f64) -> String {
    // The exposition format spells these +Inf, -Inf and NaN; Rust would print "inf".
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.describe("x_total", Kind::Counter, "Things.");
        m.inc("x_total", &[("app", "a\"b")]);
        m.inc("x_total", &[("app", "a\"b")]);
        m.set("g", &[], 1.5);
        let t = m.render();
        assert!(t.contains("# TYPE x_total counter"));
        assert!(t.contains("x_total{app=\"a\\\"b\"} 2"));
        assert!(t.contains("g 1.5"));
        m.set("h", &[], f64::INFINITY);
        m.set("n", &[], f64::NAN);
        let t = m.render();
        assert!(t.contains("h +Inf") && t.contains("n NaN"), "{t}");
    }
}
