//! Metrics as CloudWatch Embedded Metric Format (EMF) log lines: one JSON object per line
//! on standard output, which CloudWatch Logs turns into metrics with no API call and no
//! extension. A line is written (and flushed: standard output flushes at each newline)
//! where the thing it counts happens, before the function answers or its send settles, so
//! nothing is left in a buffer when Lambda freezes the environment.
//!
//! Every metric carries the `Service` dimension (`METRICS_SERVICE`, the stack's name in the
//! template, so that two stacks in one account stay apart); some add one more (`Reason`,
//! `Destination`). A document holds one value per dimension name: write one per reason.
//! Written here rather than taken from `metrics_cloudwatch_embedded` or `metrique`: both
//! keep metrics in a process-wide registry flushed per invocation (or on a background
//! thread), and the ingest function counts sends that finish after its answer.

use std::io::Write;

use serde_json::{Map, Value};

pub const NAMESPACE: &str = "TwentyWebhook";
/// Names the `Service` dimension's value.
pub const SERVICE: &str = "METRICS_SERVICE";
pub const DEFAULT_SERVICE: &str = "twenty-webhook";
/// EMF takes at most 100 values per metric and 30 dimensions; far above what is written.
const MAX_VALUES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

struct Metric {
    name: &'static str,
    unit: Unit,
    /// The extra dimension this metric is split by, if any.
    by: Option<&'static str>,
    values: Vec<f64>,
}

/// One EMF document.
pub struct Document {
    service: String,
    dimensions: Vec<(&'static str, String)>,
    metrics: Vec<Metric>,
    properties: Map<String, Value>,
}

impl Document {
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            dimensions: Vec::new(),
            metrics: Vec::new(),
            properties: Map::new(),
        }
    }

    /// A metric with the `Service` dimension alone.
    pub fn add(&mut self, name: &'static str, unit: Unit, value: f64) -> &mut Self {
        self.push(name, unit, None, value)
    }

    /// A metric split by one more dimension, `dimension` = `value` (one value per
    /// dimension name in a document: a second one replaces the first).
    pub fn add_by(
        &mut self,
        name: &'static str,
        unit: Unit,
        dimension: &'static str,
        value: &str,
        amount: f64,
    ) -> &mut Self {
        match self.dimensions.iter_mut().find(|(d, _)| *d == dimension) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.dimensions.push((dimension, value.to_owned())),
        }
        self.push(name, unit, Some(dimension), amount)
    }

    /// A searchable field that is not a dimension (a request id, an event id).
    pub fn property(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.properties.insert(name.to_owned(), value.into());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    fn push(
        &mut self,
        name: &'static str,
        unit: Unit,
        by: Option<&'static str>,
        value: f64,
    ) -> &mut Self {
        match self
            .metrics
            .iter_mut()
            .find(|m| m.name == name && m.by == by)
        {
            Some(m) if m.values.len() < MAX_VALUES => m.values.push(value),
            Some(_) => {}
            None => self.metrics.push(Metric {
                name,
                unit,
                by,
                values: vec![value],
            }),
        }
        self
    }

    /// The document as one line, stamped `timestamp_ms`.
    pub fn line(&self, timestamp_ms: u64) -> String {
        String::from_utf8(self.json(timestamp_ms))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// The line's bytes. Written straight out, not built as a `serde_json::Value` first:
    /// the worker writes one or two per batch, and a value tree cost more CPU than the
    /// rest of a one-message batch's bookkeeping.
    fn json(&self, timestamp_ms: u64) -> Vec<u8> {
        let mut sets: Vec<Option<&'static str>> = Vec::new();
        for m in &self.metrics {
            if !sets.contains(&m.by) {
                sets.push(m.by);
            }
        }
        let mut out = Vec::with_capacity(320);
        out.extend_from_slice(b"{\"_aws\":{\"Timestamp\":");
        json_into(&mut out, &timestamp_ms);
        out.extend_from_slice(b",\"CloudWatchMetrics\":[");
        for (i, by) in sets.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"Namespace\":");
            json_into(&mut out, NAMESPACE);
            out.extend_from_slice(b",\"Dimensions\":[[\"Service\"");
            if let Some(by) = by {
                out.push(b',');
                json_into(&mut out, by);
            }
            out.extend_from_slice(b"]],\"Metrics\":[");
            for (j, m) in self.metrics.iter().filter(|m| m.by == *by).enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"Name\":");
                json_into(&mut out, m.name);
                // `Count` is left implicit (the unit is optional): it is most metrics,
                // and each line is billed by the byte.
                if m.unit != Unit::Count {
                    out.extend_from_slice(b",\"Unit\":");
                    json_into(&mut out, m.unit.name());
                }
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        // Members are named once: a metric's value over a dimension's over `Service` over
        // a property of the same name, and the last of two metrics of one name.
        let mut named: Vec<&str> = vec!["_aws"];
        for (i, m) in self.metrics.iter().enumerate() {
            if self.metrics[i + 1..]
                .iter()
                .any(|later| later.name == m.name)
            {
                continue;
            }
            member(&mut out, m.name);
            match m.values.as_slice() {
                [one] => json_into(&mut out, one),
                many => json_into(&mut out, many),
            }
            named.push(m.name);
        }
        let service = std::iter::once(("Service", self.service.as_str()));
        let dimensions = self.dimensions.iter().map(|(n, v)| (*n, v.as_str()));
        for (name, value) in dimensions.chain(service) {
            if !named.contains(&name) {
                member(&mut out, name);
                json_into(&mut out, value);
                named.push(name);
            }
        }
        for (name, value) in &self.properties {
            if !named.contains(&name.as_str()) {
                member(&mut out, name);
                json_into(&mut out, value);
            }
        }
        out.push(b'}');
        out
    }

    /// Writes the line to standard output now; nothing is kept for later.
    pub fn emit(&self) {
        if self.is_empty() {
            return;
        }
        let mut line = self.json(crate::clock::now_ms());
        line.push(b'\n');
        write_out(&line);
    }
}

/// Writes whole lines to standard output at once. A metric is not worth failing a request
/// for.
fn write_out(lines: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(lines).and_then(|()| out.flush());
}

/// Appends `value` as JSON. Writing to a `Vec` cannot fail, and every value written here
/// serializes (strings, numbers, JSON values).
fn json_into<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(out, value);
}

/// Appends `,"name":`, a member's start after the first.
fn member(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    json_into(out, name);
    out.push(b':');
}

/// Metrics gathered over one invocation and written as few lines as EMF allows: counts
/// summed, timings as value arrays, one document per value of an extra dimension. The
/// worker writes its tally once per batch, before it answers, instead of a line per
/// message and per forward.
#[derive(Default)]
pub struct Tally {
    entries: std::sync::Mutex<Vec<TallyEntry>>,
}

struct TallyEntry {
    name: &'static str,
    unit: Unit,
    by: Option<(&'static str, String)>,
    values: Vec<f64>,
}

impl Tally {
    /// Adds `n` to a count.
    pub fn count(&self, name: &'static str, by: Option<(&'static str, &str)>, n: f64) {
        self.record(name, Unit::Count, by, n, true);
    }

    /// Records one timing.
    pub fn time(&self, name: &'static str, by: Option<(&'static str, &str)>, ms: f64) {
        self.record(name, Unit::Milliseconds, by, ms, false);
    }

    fn record(
        &self,
        name: &'static str,
        unit: Unit,
        by: Option<(&'static str, &str)>,
        value: f64,
        sum: bool,
    ) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = entries
            .iter_mut()
            .find(|e| e.name == name && e.by.as_ref().map(|(d, v)| (*d, v.as_str())) == by);
        match found {
            Some(e) if sum => e.values[0] += value,
            Some(e) if e.values.len() < MAX_VALUES => e.values.push(value),
            Some(_) => {}
            None => entries.push(TallyEntry {
                name,
                unit,
                by: by.map(|(d, v)| (d, v.to_owned())),
                values: vec![value],
            }),
        }
    }

    /// The documents, one per extra dimension value (the `Service`-only metrics first).
    pub fn documents(&self, service: &str) -> Vec<Document> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut docs: Vec<(Option<(&'static str, String)>, Document)> = Vec::new();
        for e in entries.iter() {
            let i = match docs.iter().position(|(by, _)| *by == e.by) {
                Some(i) => i,
                None => {
                    docs.push((e.by.clone(), Document::new(service)));
                    docs.len() - 1
                }
            };
            let doc = &mut docs[i].1;
            for v in &e.values {
                match &e.by {
                    Some((d, value)) => doc.add_by(e.name, e.unit, d, value, *v),
                    None => doc.add(e.name, e.unit, *v),
                };
            }
        }
        docs.sort_by_key(|(by, _)| by.is_some());
        docs.into_iter().map(|(_, d)| d).collect()
    }

    /// Writes the tally now, `properties` on each line: its lines in one write (a system
    /// call per line was most of a one-message batch's own system calls).
    pub fn emit(&self, properties: &[(&str, &str)]) {
        let now_ms = crate::clock::now_ms();
        let mut lines = Vec::new();
        for mut doc in self.documents(service()) {
            if doc.is_empty() {
                continue;
            }
            for (name, value) in properties {
                doc.property(name, *value);
            }
            lines.extend_from_slice(&doc.json(now_ms));
            lines.push(b'\n');
        }
        if !lines.is_empty() {
            write_out(&lines);
        }
    }
}

/// The `Service` dimension's value, read from the environment once.
pub fn service() -> &'static str {
    static SERVICE_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SERVICE_NAME.get_or_init(|| {
        std::env::var(SERVICE)
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE.to_owned())
    })
}

/// A document for this process's service.
pub fn document() -> Document {
    Document::new(service())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tally_sums_counts_and_splits_by_dimension_value() {
        let tally = Tally::default();
        tally.count("Handled", None, 1.0);
        tally.count("Handled", None, 1.0);
        tally.count("Forwarded", Some(("Destination", "a")), 1.0);
        tally.time("DestinationLatency", Some(("Destination", "a")), 5.0);
        tally.time("DestinationLatency", Some(("Destination", "a")), 7.0);
        tally.count("Forwarded", Some(("Destination", "b")), 1.0);
        let lines: Vec<Value> = tally
            .documents("s")
            .iter()
            .map(|d| serde_json::from_str(&d.line(1)).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["Handled"], 2.0);
        assert_eq!(lines[1]["Destination"], "a");
        assert_eq!(lines[1]["DestinationLatency"], json!([5.0, 7.0]));
        assert_eq!(lines[2]["Destination"], "b");
        assert_eq!(lines[2]["Forwarded"], 1.0);
    }

    #[test]
    fn a_document_per_the_emf_specification() {
        let mut doc = Document::new("stack");
        doc.add("Received", Unit::Count, 1.0)
            .add("Accepted", Unit::Count, 0.0)
            .add_by("Refused", Unit::Count, "Reason", "invalid_signature", 1.0)
            .add("SendLatency", Unit::Milliseconds, 12.5)
            .add("SendLatency", Unit::Milliseconds, 7.0)
            .property("requestId", "r-1");
        let v: Value = serde_json::from_str(&doc.line(1_700_000_000_000)).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let directives = v["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2);
        assert_eq!(directives[0]["Namespace"], NAMESPACE);
        assert_eq!(directives[0]["Dimensions"], json!([["Service"]]));
        assert_eq!(directives[1]["Dimensions"], json!([["Service", "Reason"]]));
        assert_eq!(directives[1]["Metrics"], json!([{ "Name": "Refused" }]));
        assert_eq!(
            directives[0]["Metrics"][2],
            json!({ "Name": "SendLatency", "Unit": "Milliseconds" })
        );
        // Every dimension and metric named is a top-level member.
        assert_eq!(v["Service"], "stack");
        assert_eq!(v["Reason"], "invalid_signature");
        assert_eq!(v["Received"], 1.0);
        assert_eq!(v["SendLatency"], json!([12.5, 7.0]));
        assert_eq!(v["requestId"], "r-1");
    }

    #[test]
    fn each_member_is_written_once_and_text_is_escaped() {
        let mut doc = Document::new("st\"ack");
        doc.property("Received", "a property")
            .property("Service", "not this")
            .property("id", "line\nbreak \u{1}")
            .add("Received", Unit::Count, 1.0)
            .add_by("Failed", Unit::Count, "Reason", "x", 1.0)
            .add("Failed", Unit::Count, 2.0)
            .add("Odd", Unit::Count, f64::NAN);
        let line = doc.line(5);
        for name in [
            "\"Received\":",
            "\"Service\":",
            "\"Failed\":",
            "\"Reason\":",
        ] {
            assert_eq!(line.matches(name).count(), 1, "{name} in {line}");
        }
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["Received"], 1.0);
        assert_eq!(v["Service"], "st\"ack");
        assert_eq!(v["id"], "line\nbreak \u{1}");
        assert_eq!(v["Failed"], 2.0, "the last of one name, as before");
        assert_eq!(v["Reason"], "x");
        assert_eq!(v["Odd"], Value::Null);
    }
}
