//! The rules: `FORWARD_RULES` (a JSON array of rules, or the same kept in a store:
//! `stored`) says which events go to which target.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use thiserror::Error;

use super::collapse::{MAX_QUIET_SECS, MAX_SPAN_SECS, Window};
use super::filter::Filter;
use super::patterns::Pattern;
use super::targets::{KINDS, Kind, TargetSpec};
use super::transform::Transform;

pub mod stored;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TIMEOUT_MS: u64 = 900_000;

/// One destination and the events it takes.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub events: Vec<String>,
    /// `filter`: an EventBridge event pattern the envelope must also match.
    pub filter: Option<Filter>,
    /// Where it delivers: one of the `targets::KINDS`.
    pub target: Arc<dyn TargetSpec>,
    /// `timeoutMs`: how long one call to the target may take.
    pub timeout: Duration,
    /// `maxPerSecond`: the most calls a second this destination gets, from every worker.
    pub max_per_second: Option<f64>,
    /// `retryAllErrors`: every non-2xx is retried until the horizon (a destination that
    /// answers 404 while it is redeployed), instead of a 4xx going to the DLQ at once.
    pub retry_all_errors: bool,
    /// `transform`: what the target gets instead of the envelope.
    pub transform: Option<Arc<Transform>>,
    /// `includePrevious`: updates gain `previous`, the values their updated fields had in
    /// the last state of the record this rule saw (kept in the idempotency table).
    pub include_previous: bool,
    /// `collapseSeconds` / `collapseMaxSeconds`: a record's changes within that many
    /// seconds of each other are sent once, as the latest (kept in the idempotency table).
    pub collapse: Option<Window>,
}

/// Says which rule and what is wrong with it, never a value (a header or a secret).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RulesError {
    #[error("FORWARD_RULES is not a JSON array of rules ({0})")]
    NotAnArray(String),
    #[error("rule {index} ({name}): {why}")]
    Rule {
        index: usize,
        name: String,
        why: String,
    },
}

/// The fields every rule may have, whatever its target.
const COMMON: &[&str] = &[
    "name",
    "events",
    "filter",
    "timeoutMs",
    "maxPerSecond",
    "retryAllErrors",
    "transform",
    "includePrevious",
    "collapseSeconds",
    "collapseMaxSeconds",
];

/// Parses `FORWARD_RULES`. Rules are numbered from 1 in errors; a rule without a name is
/// named `rule-<n>`.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, RulesError> {
    let values: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(values)) => values,
        Ok(_) => {
            return Err(RulesError::NotAnArray(
                "it is valid JSON, but not an array".into(),
            ));
        }
        // Position only: the text may hold secrets.
        Err(e) => {
            return Err(RulesError::NotAnArray(format!(
                "invalid JSON at line {} column {}",
                e.line(),
                e.column()
            )));
        }
    };
    let mut rules: Vec<Rule> = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let index = i + 1;
        let rule = parse_rule(index, value)?;
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(RulesError::Rule {
                index,
                name: rule.name,
                why: "another rule has this name (names key idempotency)".into(),
            });
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn parse_rule(index: usize, value: &Value) -> Result<Rule, RulesError> {
    let fail = |name: &str, why: &str| RulesError::Rule {
        index,
        name: name.to_owned(),
        why: why.to_owned(),
    };
    let Value::Object(map) = value else {
        return Err(fail("unnamed", "not a JSON object"));
    };
    let name = match map.get("name") {
        None | Some(Value::Null) => format!("rule-{index}"),
        Some(Value::String(n)) if !n.is_empty() && n.len() <= 100 && !n.contains('#') => n.clone(),
        Some(_) => {
            return Err(fail(
                "unnamed",
                "`name` must be a string of 1 to 100 characters without `#`",
            ));
        }
    };
    let fail = |why: &str| fail(&name, why);
    if let Some(key) = map.keys().find(|k| {
        !COMMON.contains(&k.as_str())
            && !KINDS
                .iter()
                .any(|kind| kind.key == k.as_str() || kind.fields.contains(&k.as_str()))
    }) {
        // A key name is no secret; a misspelt `secret` should not pass unnoticed.
        return Err(fail(&format!("unknown field `{key}`")));
    }
    let events: Vec<String> = match map.get("events") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|p| match p {
                Value::String(p) => Pattern::parse(p)
                    .map(|_| p.clone())
                    .map_err(|e| fail(&e.to_string())),
                _ => Err(fail("every entry of `events` must be a string")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(fail("`events` must be a non-empty array of patterns")),
    };
    let filter = match map.get("filter") {
        None | Some(Value::Null) => None,
        Some(pattern) => Some(Filter::from_value(pattern).map_err(|e| fail(&e.to_string()))?),
    };
    let target = target(map).map_err(|why| fail(&why))?;
    let timeout = match map.get("timeoutMs") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT,
        Some(v) => match v.as_u64() {
            Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Duration::from_millis(ms),
            _ => {
                return Err(fail(&format!(
                    "`timeoutMs` must be whole milliseconds from 1 to {MAX_TIMEOUT_MS}"
                )));
            }
        },
    };
    let max_per_second = match map.get("maxPerSecond") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(n) if n > 0.0 && n <= 10_000.0 => Some(n),
            _ => {
                return Err(fail(
                    "`maxPerSecond` must be a number above 0 (at most 10000)",
                ));
            }
        },
    };
    let retry_all_errors = match map.get("retryAllErrors") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(fail("`retryAllErrors` must be true or false")),
    };
    let include_previous = match map.get("includePrevious") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(fail("`includePrevious` must be true or false")),
    };
    let collapse = collapse(map).map_err(|why| fail(&why))?;
    if collapse.is_some() && include_previous {
        // Each change's `previous` is kept per change; a burst's would be its first's.
        return Err(fail(
            "`collapseSeconds` and `includePrevious` cannot be used together (yet)",
        ));
    }
    let transform = match map.get("transform") {
        None | Some(Value::Null) => None,
        Some(v) => Some(Arc::new(Transform::parse(v).map_err(|why| fail(&why))?)),
    };
    Ok(Rule {
        name,
        events,
        filter,
        target,
        timeout,
        max_per_second,
        retry_all_errors,
        transform,
        include_previous,
        collapse,
    })
}

/// `collapseSeconds` (0 or absent: off) and `collapseMaxSeconds` (4 × by default).
fn collapse(map: &Map<String, Value>) -> Result<Option<Window>, String> {
    let seconds = |field: &str, max: u64| match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(format!("`{field}` must be whole seconds from 0 to {max}")),
        },
    };
    let quiet = seconds("collapseSeconds", MAX_QUIET_SECS)?;
    let span = seconds("collapseMaxSeconds", MAX_SPAN_SECS)?;
    match (quiet, span) {
        (None | Some(0), None) => Ok(None),
        (None | Some(0), Some(_)) => {
            Err("`collapseMaxSeconds` needs `collapseSeconds` above 0".into())
        }
        (Some(quiet), span) => {
            let span = span.unwrap_or(4 * quiet);
            if span < quiet {
                return Err("`collapseMaxSeconds` must be at least `collapseSeconds`".into());
            }
            Ok(Some(Window {
                quiet: Duration::from_secs(quiet),
                span: Duration::from_secs(span),
            }))
        }
    }
}

/// The rule's one target: the kind whose key it gives, and that kind's own fields alone.
fn target(map: &Map<String, Value>) -> Result<Arc<dyn TargetSpec>, String> {
    let given = |field: &str| map.get(field).is_some_and(|v| !v.is_null());
    let kinds: Vec<&Kind> = KINDS.iter().copied().filter(|k| given(k.key)).collect();
    let [kind] = kinds.as_slice() else {
        let keys: Vec<String> = KINDS.iter().map(|k| format!("`{}`", k.key)).collect();
        let (last, rest) = keys
            .split_last()
            .map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
        return Err(format!(
            "give exactly one of {} and {last}",
            rest.join(", ")
        ));
    };
    for other in KINDS.iter().filter(|k| k.key != kind.key) {
        if let Some(field) = other
            .fields
            .iter()
            .find(|f| given(f) && !kind.fields.contains(f))
        {
            return Err(format!("`{field}` goes with `{}` only", other.key));
        }
    }
    (kind.parse)(map)
}
