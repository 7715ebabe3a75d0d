//! The rules: `FORWARD_RULES` (a JSON array of rules, or the same kept in a store:
//! `stored`) says which events go to which target.

use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

use super::filter::Filter;
use super::patterns::Pattern;
use super::standard_webhooks::WebhookKey;

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
    pub target: Target,
    /// `timeoutMs`: how long one call to the target may take.
    pub timeout: Duration,
    /// `maxPerSecond`: the most calls a second this destination gets, from every worker.
    pub max_per_second: Option<f64>,
    /// `retryAllErrors`: every non-2xx is retried until the horizon (a destination that
    /// answers 404 while it is redeployed), instead of a 4xx going to the DLQ at once.
    pub retry_all_errors: bool,
}

/// Where a rule delivers: exactly one of `url`, `stateMachineArn`, `eventBusName` and
/// `queueUrl`.
#[derive(Debug, Clone)]
pub enum Target {
    /// A signed POST (Standard Webhooks).
    Http(HttpTarget),
    /// Step Functions `StartExecution`, the envelope as the input.
    StateMachine { arn: String },
    /// EventBridge `PutEvents` on a bus (a name or an ARN), `Source` `source`.
    EventBus { bus: String, source: String },
    /// SQS `SendMessage` of the envelope; FIFO ids when the queue is FIFO.
    Queue { url: String, fifo: bool },
}

#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub url: String,
    pub secret: Option<WebhookKey>,
    /// Extra request headers (`Authorization`, say). Values are never logged.
    pub headers: Vec<(String, String)>,
}

/// EventBridge `Source` when a rule gives none.
pub const DEFAULT_SOURCE: &str = "twenty";

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

/// Headers a rule may not set: the worker sets them, and receivers verify them; and the
/// hop-by-hop and framing headers, which belong to the connection, not to the rule.
const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "trailer",
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
        ![
            "name",
            "events",
            "filter",
            "url",
            "stateMachineArn",
            "eventBusName",
            "source",
            "queueUrl",
            "secret",
            "headers",
            "timeoutMs",
            "maxPerSecond",
            "retryAllErrors",
        ]
        .contains(&k.as_str())
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
    let target = target(map, &fail)?;
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
    Ok(Rule {
        name,
        events,
        filter,
        target,
        timeout,
        max_per_second,
        retry_all_errors,
    })
}

/// The rule's one target, and what only that kind takes.
fn target(
    map: &serde_json::Map<String, Value>,
    fail: &dyn Fn(&str) -> RulesError,
) -> Result<Target, RulesError> {
    let kinds: Vec<&str> = ["url", "stateMachineArn", "eventBusName", "queueUrl"]
        .into_iter()
        .filter(|k| map.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let [kind] = kinds.as_slice() else {
        return Err(fail(
            "give exactly one of `url`, `stateMachineArn`, `eventBusName` and `queueUrl`",
        ));
    };
    let only = |field: &str, with: &str| -> Result<(), RulesError> {
        match map.get(field) {
            Some(v) if !v.is_null() && *kind != with => {
                Err(fail(&format!("`{field}` goes with `{with}` only")))
            }
            _ => Ok(()),
        }
    };
    only("secret", "url")?;
    only("headers", "url")?;
    only("source", "eventBusName")?;
    let text = |field: &str| map.get(field).and_then(Value::as_str).unwrap_or("");
    Ok(match *kind {
        "url" => Target::Http(http_target(map, fail)?),
        "stateMachineArn" => {
            let arn = text("stateMachineArn");
            if !is_arn(arn, "states", "stateMachine:") {
                return Err(fail(
                    "`stateMachineArn` must be a state machine's ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)",
                ));
            }
            Target::StateMachine {
                arn: arn.to_owned(),
            }
        }
        "eventBusName" => {
            let bus = text("eventBusName");
            let name_ok = !bus.is_empty()
                && bus.len() <= 256
                && bus
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
            if !(name_ok || is_arn(bus, "events", "event-bus/")) {
                return Err(fail("`eventBusName` must be an event bus's name or ARN"));
            }
            let source = match map.get("source") {
                None | Some(Value::Null) => DEFAULT_SOURCE.to_owned(),
                Some(Value::String(s))
                    if !s.is_empty() && s.len() <= 256 && !s.starts_with("aws.") =>
                {
                    s.clone()
                }
                Some(_) => {
                    return Err(fail(
                        "`source` must be a string of 1 to 256 characters, not starting with `aws.`",
                    ));
                }
            };
            Target::EventBus {
                bus: bus.to_owned(),
                source,
            }
        }
        _ => {
            let url = text("queueUrl");
            if !valid_url(url) {
                return Err(fail("`queueUrl` must be an SQS queue's https:// URL"));
            }
            Target::Queue {
                url: url.to_owned(),
                fifo: url.trim_end_matches('/').ends_with(".fifo"),
            }
        }
    })
}

/// `arn:<partition>:<service>:<region>:<account>:<resource>`, the resource starting with
/// `resource` and naming something after it.
fn is_arn(text: &str, service: &str, resource: &str) -> bool {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, s, region, account, rest]
        if partition.starts_with("aws") && *s == service && !region.is_empty()
            && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
            && rest.strip_prefix(resource).is_some_and(|name| !name.is_empty()))
}

fn http_target(
    map: &serde_json::Map<String, Value>,
    fail: &dyn Fn(&str) -> RulesError,
) -> Result<HttpTarget, RulesError> {
    let url = match map.get("url") {
        Some(Value::String(u)) if valid_url(u) => u.clone(),
        _ => return Err(fail("`url` must be an http:// or https:// URL")),
    };
    let secret = match map.get("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(WebhookKey::parse(s).map_err(|e| fail(&format!("`secret`: {e}")))?)
        }
        Some(_) => return Err(fail("`secret` must be a string")),
    };
    let headers = match map.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let repeated = h.keys().filter(|o| o.eq_ignore_ascii_case(k)).count() > 1;
                match v {
                    _ if repeated => Err(fail(&format!(
                        "header `{k}` is given more than once (names are case-insensitive)"
                    ))),
                    _ if RESERVED.contains(&lower.as_str()) => {
                        Err(fail(&format!("header `{k}` is set by the worker")))
                    }
                    _ if !valid_header_name(k) => Err(fail(&format!("`{k}` is not a header name"))),
                    Value::String(v) if valid_header_value(v) => Ok((k.clone(), v.clone())),
                    _ => Err(fail(&format!(
                        "header `{k}` must have a printable string value"
                    ))),
                }
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(fail("`headers` must be an object of strings")),
    };
    Ok(HttpTarget {
        url,
        secret,
        headers,
    })
}

fn valid_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}
