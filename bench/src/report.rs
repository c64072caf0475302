//! Summarising repeated runs: medians per server, the ratio candidate / baseline, and the bar.
//!
//! `bench/run.sh` stores every load generator result as
//! `<scenario>__<role>__<server>__<repeat>.json`, where `role` is `cand` (the chat-app) or
//! `base` (what it is measured against: the reference server, or the in-memory chat-app for the
//! Redis scenario).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

/// Which way is better for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// More is better (throughput).
    Higher,
    /// Less is better (CPU, latency, memory).
    Lower,
}

/// One figure of a scenario and, if the performance bar names it, the ratio it must meet.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// JSON pointer into a result.
    pub pointer: &'static str,
    /// What the table calls it.
    pub label: &'static str,
    /// Which way is better.
    pub better: Better,
    /// The bar on candidate / baseline: at least this for `Higher`, at most for `Lower`.
    pub bar: Option<f64>,
}

const fn metric(
    pointer: &'static str,
    label: &'static str,
    better: Better,
    bar: Option<f64>,
) -> Metric {
    Metric {
        pointer,
        label,
        better,
        bar,
    }
}

/// The figures reported for a result of `kind` in `scenario`, with the bar of issue 6.
pub fn metrics_for(kind: &str, scenario: &str) -> Vec<Metric> {
    use Better::{Higher, Lower};
    let redis = scenario.starts_with("redis");
    // channels_redis (issue 19): at least ten times two daphne processes; beside switchboard's
    // own Redis layer, for information.
    let max_bar = if scenario.starts_with("cr-daphne") {
        Some(10.0)
    } else if scenario.starts_with("cr-") {
        None
    } else if redis {
        Some(0.7)
    } else {
        Some(1.0)
    };
    match kind {
        "maxrate" => vec![
            metric(
                "/best/deliveries_per_s",
                "max deliveries/s",
                Higher,
                max_bar,
            ),
            metric(
                "/best/server_cpu_us_per_delivery",
                "server CPU us/delivery at max",
                Lower,
                None,
            ),
            metric("/best/latency_us/p99", "p99 us at max", Lower, None),
            metric(
                "/best/loadgen_cpu_util",
                "loadgen CPU (cores) at max",
                Lower,
                None,
            ),
        ],
        "fanout" => vec![
            metric("/deliveries_per_s", "deliveries/s", Higher, None),
            metric(
                "/server_cpu_us_per_delivery",
                "server CPU us/delivery",
                Lower,
                (!redis).then_some(1.1),
            ),
            metric("/latency_us/p50", "p50 latency us", Lower, None),
            metric(
                "/latency_us/p99",
                "p99 latency us",
                Lower,
                (!redis).then_some(1.25),
            ),
            metric("/latency_us/p999", "p99.9 latency us", Lower, None),
            metric("/loss", "loss", Lower, None),
        ],
        "idle" => vec![
            metric("/connections", "connections held", Higher, None),
            metric(
                "/rss_per_connection",
                "server RSS bytes/connection",
                Lower,
                Some(1.1),
            ),
            metric(
                "/rss_per_connection_last_quarter",
                "RSS bytes/conn, last quarter",
                Lower,
                None,
            ),
            metric("/handshakes_per_s", "handshakes/s", Higher, Some(0.9)),
            metric(
                "/server_cpu_us_per_handshake",
                "server CPU us/handshake",
                Lower,
                None,
            ),
        ],
        // The chat-app against itself without presence: what presence costs.
        "burst" => vec![
            metric("/diffs", "presence.diff events", Lower, None),
            metric(
                "/max_diffs_per_member",
                "diffs per member, max",
                Lower,
                None,
            ),
            metric("/presence_bytes", "presence bytes", Lower, None),
            metric("/server_cpu_us_per_join", "server CPU us/join", Lower, None),
        ],
        _ => Vec::new(),
    }
}

/// The median of some figures (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// Whether `ratio` meets `bar` for a figure where `better` is better.
pub fn meets(ratio: f64, bar: f64, better: Better) -> bool {
    match better {
        Better::Higher => ratio >= bar,
        Better::Lower => ratio <= bar,
    }
}

/// One stored result, named by its file.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The scenario, e.g. `fanout-10x10-max`.
    pub scenario: String,
    /// `cand` or `base`.
    pub role: String,
    /// Which server ran, e.g. `chat-app`.
    pub server: String,
    /// The result itself.
    pub result: Value,
}

impl Stored {
    /// Splits a file stem `<scenario>__<role>__<server>__<repeat>`.
    pub fn from_stem(stem: &str, result: Value) -> Option<Stored> {
        let mut parts = stem.split("__");
        let (scenario, role, server, _repeat) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        Some(Stored {
            scenario: scenario.to_owned(),
            role: role.to_owned(),
            server: server.to_owned(),
            result,
        })
    }
}

/// Reads every `*.json` result of a directory (files that do not parse are skipped).
pub fn load_dir(dir: &Path) -> std::io::Result<Vec<Stored>> {
    let mut stored = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(result) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(entry) = Stored::from_stem(stem, result) {
            stored.push(entry);
        }
    }
    Ok(stored)
}

/// A figure of one scenario: every repeat per side, the medians, the ratio and the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The scenario.
    pub scenario: String,
    /// The figure.
    pub metric: Metric,
    /// Candidate server name and its figures, in repeat order.
    pub cand: (String, Vec<f64>),
    /// Baseline server name and its figures.
    pub base: (String, Vec<f64>),
}

impl Row {
    /// candidate median / baseline median.
    pub fn ratio(&self) -> Option<f64> {
        let cand = median(&self.cand.1)?;
        let base = median(&self.base.1)?;
        (base != 0.0).then(|| cand / base)
    }

    /// `Some(true)` when the bar is met, `None` when this figure has no bar (or no ratio).
    pub fn verdict(&self) -> Option<bool> {
        let bar = self.metric.bar?;
        Some(meets(self.ratio()?, bar, self.metric.better))
    }
}

/// Groups stored results into rows, scenarios in the order they first appear.
pub fn rows(stored: &[Stored]) -> Vec<Row> {
    let mut order: Vec<String> = Vec::new();
    let mut by_scenario: BTreeMap<String, Vec<&Stored>> = BTreeMap::new();
    for entry in stored {
        if !order.contains(&entry.scenario) {
            order.push(entry.scenario.clone());
        }
        by_scenario
            .entry(entry.scenario.clone())
            .or_default()
            .push(entry);
    }
    let mut rows = Vec::new();
    for scenario in order {
        let entries = &by_scenario[&scenario];
        let Some(kind) = entries
            .iter()
            .find_map(|e| e.result.get("kind").and_then(Value::as_str))
        else {
            continue;
        };
        for metric in metrics_for(kind, &scenario) {
            let values = |role: &str| {
                let side: Vec<&&Stored> = entries.iter().filter(|e| e.role == role).collect();
                let name = side
                    .first()
                    .map_or_else(|| role.to_owned(), |e| e.server.clone());
                let figures = side
                    .iter()
                    .filter_map(|e| e.result.pointer(metric.pointer).and_then(Value::as_f64))
                    .collect::<Vec<_>>();
                (name, figures)
            };
            rows.push(Row {
                scenario: scenario.clone(),
                cand: values("cand"),
                base: values("base"),
                metric: metric.clone(),
            });
        }
    }
    rows
}

fn figure(value: f64) -> String {
    if value == 0.0 {
        "0".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

fn figures(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| figure(*v))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The comparison as a Markdown table.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | figure | candidate (runs) | median | baseline (runs) | median | ratio | bar |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for row in rows {
        let cand = median(&row.cand.1).map_or("-".to_owned(), figure);
        let base = median(&row.base.1).map_or("-".to_owned(), figure);
        let ratio = row.ratio().map_or("-".to_owned(), |r| format!("{r:.3}"));
        let bar = match (row.metric.bar, row.verdict()) {
            (Some(bar), Some(ok)) => {
                let sign = match row.metric.better {
                    Better::Higher => "≥",
                    Better::Lower => "≤",
                };
                format!("{sign} {bar} {}", if ok { "met" } else { "MISSED" })
            }
            (Some(_), None) => "no data".to_owned(),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {}: {} | {} | {}: {} | {} | {} | {} |",
            row.scenario,
            row.metric.label,
            row.cand.0,
            figures(&row.cand.1),
            cand,
            row.base.0,
            figures(&row.base.1),
            base,
            ratio,
            bar
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
    }

    #[test]
    fn channels_redis_maxima_are_held_to_ten_times_daphne() {
        let bar = |scenario| metrics_for("maxrate", scenario)[0].bar;
        assert_eq!(bar("cr-daphne-10x10-max"), Some(10.0));
        assert_eq!(bar("cr-core-redis-10x10-max"), None);
        assert_eq!(bar("redis-10x10-max"), Some(0.7));
        assert_eq!(bar("fanout-10x10-max"), Some(1.0));
    }

    #[test]
    fn bars_point_the_right_way() {
        assert!(meets(1.0, 1.0, Better::Higher));
        assert!(!meets(0.99, 1.0, Better::Higher));
        assert!(meets(1.1, 1.1, Better::Lower));
        assert!(!meets(1.2, 1.1, Better::Lower));
    }

    #[test]
    fn groups_results_into_rows_with_ratios() {
        let result = |rate: f64| json!({"kind": "maxrate", "best": {"deliveries_per_s": rate}});
        let stored: Vec<Stored> = [
            ("fanout-10x10-max__cand__chat-app__1", result(90.0)),
            ("fanout-10x10-max__base__reference__1", result(100.0)),
            ("fanout-10x10-max__cand__chat-app__2", result(110.0)),
            ("fanout-10x10-max__base__reference__2", result(100.0)),
            ("fanout-10x10-max__cand__chat-app__3", result(100.0)),
            ("redis-10x10-max__cand__redis-2proc__1", result(75.0)),
            ("redis-10x10-max__base__inmemory-1proc__1", result(100.0)),
        ]
        .into_iter()
        .map(|(stem, value)| Stored::from_stem(stem, value).unwrap())
        .collect();
        let rows = rows(&stored);
        let rate = &rows[0];
        assert_eq!(rate.scenario, "fanout-10x10-max");
        assert_eq!(rate.cand, ("chat-app".to_owned(), vec![90.0, 110.0, 100.0]));
        assert_eq!(rate.ratio(), Some(1.0));
        assert_eq!(rate.verdict(), Some(true));
        // Figures a result lacks are simply absent.
        assert!(rows[1].cand.1.is_empty());
        assert_eq!(rows[1].verdict(), None);
        let redis = rows
            .iter()
            .find(|r| r.scenario.starts_with("redis"))
            .unwrap();
        assert_eq!(redis.metric.bar, Some(0.7));
        assert_eq!(redis.verdict(), Some(true));
        let table = render(&rows);
        assert!(
            table.contains(
                "| fanout-10x10-max | max deliveries/s | chat-app: 90.00 110 100 | 100 |"
            )
        );
    }

    #[test]
    fn file_stems_name_scenario_role_and_server() {
        let s = Stored::from_stem("idle-10k__base__reference__2", json!({})).unwrap();
        assert_eq!(
            (s.scenario.as_str(), s.role.as_str(), s.server.as_str()),
            ("idle-10k", "base", "reference")
        );
        assert!(Stored::from_stem("nope", json!({})).is_none());
    }
}
