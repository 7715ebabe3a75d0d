//! Forwarding, the built-in workflow: `FORWARD_RULES` (a JSON array of rules) says which
//! events go to which URL; each is POSTed there as the envelope bytes, signed per the
//! Standard Webhooks specification.

use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

use super::route::Pattern;
use super::standard_webhooks::WebhookKey;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TIMEOUT_MS: u64 = 900_000;

/// One destination and the events it takes.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub events: Vec<String>,
    pub url: String,
    pub secret: Option<WebhookKey>,
    /// Extra request headers (`Authorization`, say). Values are never logged.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// `maxPerSecond`: the most calls a second this destination gets, from every worker.
    pub max_per_second: Option<f64>,
    /// `retryAllErrors`: every non-2xx is retried until the horizon (a destination that
    /// answers 404 while it is redeployed), instead of a 4xx going to the DLQ at once.
    pub retry_all_errors: bool,
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
            "url",
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
        url,
        secret,
        headers,
        timeout,
        max_per_second,
        retry_all_errors,
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

/// The Standard Webhooks headers for one forwarded event, then the rule's own.
pub fn headers(rule: &Rule, id: &str, timestamp: u64, body: &[u8]) -> Vec<(String, String)> {
    let mut out = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
    ];
    if let Some(key) = &rule.secret {
        out.push((
            "webhook-signature".to_owned(),
            key.sign(id, timestamp, body),
        ));
    }
    out.extend(rule.headers.iter().cloned());
    out
}

/// Whether a destination's answer `status` (not 2xx) is final: a 4xx other than 408
/// (time-out), 425 (too early) and 429 (too many requests), as EventBridge API
/// destinations judge it; unless the rule retries every error.
pub fn is_permanent(status: u16, retry_all_errors: bool) -> bool {
    !retry_all_errors && (400..500).contains(&status) && !matches!(status, 408 | 425 | 429)
}

/// For logs: a rule's destination as host and port, without credentials, path or query.
pub fn origin(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority)
}
