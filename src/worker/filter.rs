//! Content filters: an EventBridge event pattern, matched against the envelope as JSON
//! (`record.stage`, `updatedFields`, `objectName`, `workspaceId`, `origin`...), with
//! EventBridge's semantics:
//!
//! - a pattern is an object; its keys name fields, nested objects go down a level, and a
//!   leaf is a non-empty array of what the field may be: strings, numbers, booleans, `null`,
//!   or one-key objects naming an operator (`prefix`, `suffix`, `equals-ignore-case`,
//!   `wildcard`, `anything-but`, `numeric`, `exists`);
//! - every key must match, and a `"$or": [pattern, ...]` at any level adds "one of these";
//! - a field whose value is an array matches if any element matches;
//! - a missing field matches only `{"exists": false}` (every other operator, `anything-but`
//!   too, needs the field present; `null` is present);
//! - `exists` looks at leaves only: a field whose value is an object (Twenty's composite
//!   fields: `name`, `emails`, `amount`) or an empty array matches `{"exists": false}`, not
//!   `{"exists": true}`;
//! - types are not converted: `"5"` is not `5`, and `numeric` matches numbers only.
//!
//! A reconciled event carries `updatedFields: null` (reconciliation cannot know what
//! changed): a condition on `updatedFields` is taken as met by such an event, so a
//! "stage changed to WON" rule does not miss a change Twenty never sent. Add
//! `"origin": [{"exists": false}]` to a pattern to take delivered events only.
//!
//! Parsed once (a bad pattern is refused with the path and the problem); matching reads
//! the envelope's parsed JSON and allocates nothing.

use serde_json::{Map, Value};
use thiserror::Error;

/// The longest pattern taken, as JSON text (EventBridge's own limit is of this order).
const MAX_PATTERN_BYTES: usize = 4096;
/// How deep a pattern may nest.
const MAX_DEPTH: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    root: Node,
}

/// An object level: every field's condition, and every `$or` group.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    fields: Vec<(String, Condition)>,
    any_of: Vec<Vec<Node>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Nested(Node),
    Leaf(Vec<Matcher>),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Exactly(Literal),
    Prefix(Text),
    Suffix(Text),
    EqualsIgnoreCase(String),
    Wildcard(String),
    AnythingBut(Exclusion),
    Numeric(Vec<(Comparison, f64)>),
    Exists(bool),
}

/// A string to compare exactly or without regard to case.
#[derive(Debug, Clone, PartialEq)]
struct Text {
    text: String,
    ignore_case: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
enum Exclusion {
    Values(Vec<Literal>),
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(Vec<String>),
    Wildcard(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// What is wrong with a pattern, and where (`record.stage`).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("filter{}: {why}", if path.is_empty() { String::new() } else { format!(" at `{path}`") })]
pub struct FilterError {
    pub path: String,
    pub why: String,
}

impl Filter {
    /// Reads a pattern given as JSON text.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let value: Value = serde_json::from_str(text).map_err(|e| FilterError {
            path: String::new(),
            why: format!("not JSON ({e})"),
        })?;
        Self::from_value(&value)
    }

    /// Reads a pattern given as a JSON value.
    pub fn from_value(value: &Value) -> Result<Self, FilterError> {
        let root_error = |why: &str| FilterError {
            path: String::new(),
            why: why.to_owned(),
        };
        if value.to_string().len() > MAX_PATTERN_BYTES {
            return Err(root_error(&format!(
                "longer than {MAX_PATTERN_BYTES} bytes"
            )));
        }
        let Value::Object(map) = value else {
            return Err(root_error("must be a JSON object"));
        };
        if map.is_empty() {
            return Err(root_error("must name at least one field"));
        }
        Ok(Self {
            root: node(map, "", 0)?,
        })
    }

    /// Whether the envelope `event` (parsed JSON) matches.
    pub fn matches(&self, event: &Value) -> bool {
        let reconciled = event.get("origin").and_then(Value::as_str) == Some("reconciliation")
            && event.get("updatedFields").is_none_or(Value::is_null);
        self.root.matches_root(event, reconciled)
    }
}

fn error(path: &str, why: impl Into<String>) -> FilterError {
    FilterError {
        path: path.to_owned(),
        why: why.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn node(map: &Map<String, Value>, path: &str, depth: usize) -> Result<Node, FilterError> {
    if depth > MAX_DEPTH {
        return Err(error(path, format!("nests deeper than {MAX_DEPTH} levels")));
    }
    let mut out = Node {
        fields: Vec::new(),
        any_of: Vec::new(),
    };
    for (key, value) in map {
        let here = join(path, key);
        if key == "$or" {
            let Value::Array(alternatives) = value else {
                return Err(error(&here, "`$or` takes an array of patterns"));
            };
            if alternatives.len() < 2 {
                return Err(error(&here, "`$or` takes at least two patterns"));
            }
            let group = alternatives
                .iter()
                .map(|a| match a {
                    Value::Object(m) if !m.is_empty() => node(m, path, depth + 1),
                    _ => Err(error(
                        &here,
                        "each `$or` alternative must be a non-empty object",
                    )),
                })
                .collect::<Result<_, _>>()?;
            out.any_of.push(group);
            continue;
        }
        let condition = match value {
            Value::Object(m) if !m.is_empty() => Condition::Nested(node(m, &here, depth + 1)?),
            Value::Array(items) if !items.is_empty() => Condition::Leaf(
                items
                    .iter()
                    .map(|item| matcher(item, &here))
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                return Err(error(
                    &here,
                    "must be an object or a non-empty array of allowed values",
                ));
            }
        };
        out.fields.push((key.clone(), condition));
    }
    Ok(out)
}

fn literal(value: &Value) -> Option<Literal> {
    Some(match value {
        Value::String(s) => Literal::Text(s.clone()),
        Value::Number(n) => Literal::Number(n.as_f64()?),
        Value::Bool(b) => Literal::Bool(*b),
        Value::Null => Literal::Null,
        _ => return None,
    })
}

fn matcher(item: &Value, path: &str) -> Result<Matcher, FilterError> {
    if let Some(l) = literal(item) {
        return Ok(Matcher::Exactly(l));
    }
    let Value::Object(op) = item else {
        return Err(error(
            path,
            "an allowed value is a string, number, boolean, null or an operator object",
        ));
    };
    let mut entries = op.iter();
    let (Some((name, arg)), None) = (entries.next(), entries.next()) else {
        return Err(error(path, "an operator object has exactly one key"));
    };
    let string = |what: &str| match arg {
        Value::String(s) => Ok(s.clone()),
        _ => Err(error(path, format!("`{what}` takes a string"))),
    };
    Ok(match name.as_str() {
        "prefix" | "suffix" => {
            let text = match arg {
                Value::String(s) => Text {
                    text: s.clone(),
                    ignore_case: false,
                },
                Value::Object(m) => match m.get("equals-ignore-case") {
                    Some(Value::String(s)) if m.len() == 1 => Text {
                        text: s.clone(),
                        ignore_case: true,
                    },
                    _ => {
                        return Err(error(
                            path,
                            format!(
                                "`{name}` takes a string or {{\"equals-ignore-case\": string}}"
                            ),
                        ));
                    }
                },
                _ => return Err(error(path, format!("`{name}` takes a string"))),
            };
            if name == "prefix" {
                Matcher::Prefix(text)
            } else {
                Matcher::Suffix(text)
            }
        }
        "equals-ignore-case" => Matcher::EqualsIgnoreCase(string(name)?),
        "wildcard" => Matcher::Wildcard(wildcard(&string(name)?, path)?),
        "exists" => match arg {
            Value::Bool(b) => Matcher::Exists(*b),
            _ => return Err(error(path, "`exists` takes true or false")),
        },
        "numeric" => Matcher::Numeric(numeric(arg, path)?),
        "anything-but" => Matcher::AnythingBut(exclusion(arg, path)?),
        other => return Err(error(path, format!("unknown operator `{other}`"))),
    })
}

fn wildcard(text: &str, path: &str) -> Result<String, FilterError> {
    if text.contains("**") {
        return Err(error(path, "`wildcard` may not have two `*` in a row"));
    }
    Ok(text.to_owned())
}

fn numeric(arg: &Value, path: &str) -> Result<Vec<(Comparison, f64)>, FilterError> {
    let bad = || {
        error(
            path,
            "`numeric` takes one or two comparisons: [\">\", 0] or [\">\", 0, \"<=\", 5]",
        )
    };
    let Value::Array(items) = arg else {
        return Err(bad());
    };
    if !(items.len() == 2 || items.len() == 4) {
        return Err(bad());
    }
    items
        .chunks(2)
        .map(|pair| {
            let op = match pair[0].as_str() {
                Some("=") => Comparison::Equal,
                Some("<") => Comparison::Less,
                Some("<=") => Comparison::LessOrEqual,
                Some(">") => Comparison::Greater,
                Some(">=") => Comparison::GreaterOrEqual,
                _ => return Err(bad()),
            };
            let n = pair[1]
                .as_f64()
                .filter(|_| pair[1].is_number())
                .ok_or_else(bad)?;
            Ok((op, n))
        })
        .collect()
}

fn exclusion(arg: &Value, path: &str) -> Result<Exclusion, FilterError> {
    let bad = || {
        error(
            path,
            "`anything-but` takes a value, an array of values, or {\"prefix\" | \"suffix\" | \"equals-ignore-case\" | \"wildcard\": ...}",
        )
    };
    Ok(match arg {
        Value::Array(items) if !items.is_empty() => Exclusion::Values(
            items
                .iter()
                .map(|v| match v {
                    Value::String(_) | Value::Number(_) => literal(v).ok_or_else(bad),
                    _ => Err(bad()),
                })
                .collect::<Result<_, _>>()?,
        ),
        Value::String(_) | Value::Number(_) => {
            Exclusion::Values(vec![literal(arg).ok_or_else(bad)?])
        }
        Value::Object(m) if m.len() == 1 => {
            let (name, v) = m.iter().next().ok_or_else(bad)?;
            match (name.as_str(), v) {
                ("prefix", Value::String(s)) => Exclusion::Prefix(s.clone()),
                ("suffix", Value::String(s)) => Exclusion::Suffix(s.clone()),
                ("wildcard", Value::String(s)) => Exclusion::Wildcard(wildcard(s, path)?),
                ("equals-ignore-case", Value::String(s)) => {
                    Exclusion::EqualsIgnoreCase(vec![s.clone()])
                }
                ("equals-ignore-case", Value::Array(items)) if !items.is_empty() => {
                    Exclusion::EqualsIgnoreCase(
                        items
                            .iter()
                            .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
                            .collect::<Result<_, _>>()?,
                    )
                }
                _ => return Err(bad()),
            }
        }
        _ => return Err(bad()),
    })
}

impl Node {
    /// The top level: as `matches`, with a reconciled event's unknown `updatedFields` met.
    fn matches_root(&self, value: &Value, reconciled: bool) -> bool {
        let Value::Object(map) = value else {
            return false;
        };
        self.fields.iter().all(|(key, condition)| {
            (reconciled && key == "updatedFields") || condition.matches(map.get(key))
        }) && self
            .any_of
            .iter()
            .all(|group| group.iter().any(|n| n.matches_root(value, reconciled)))
    }

    /// An object (or, for an array, any of its objects); a missing one is an empty object,
    /// so that only `exists: false` conditions below it can hold.
    fn matches(&self, value: Option<&Value>) -> bool {
        match value {
            Some(Value::Object(map)) => self.matches_object(Some(map)),
            Some(Value::Array(items)) => items.iter().any(|i| self.matches(Some(i))),
            Some(_) => false,
            None => self.matches_object(None),
        }
    }

    fn matches_object(&self, map: Option<&Map<String, Value>>) -> bool {
        self.fields
            .iter()
            .all(|(key, condition)| condition.matches(map.and_then(|m| m.get(key))))
            && self
                .any_of
                .iter()
                .all(|group| group.iter().any(|n| n.matches_object(map)))
    }
}

impl Condition {
    fn matches(&self, value: Option<&Value>) -> bool {
        match self {
            Self::Nested(node) => node.matches(value),
            Self::Leaf(matchers) => {
                let leaf = value.is_some_and(has_leaf);
                matchers.iter().any(|m| match (m, value) {
                    (Matcher::Exists(present), _) => *present == leaf,
                    (_, None) => false,
                    (m, Some(Value::Array(items))) => items.iter().any(|i| m.matches(i)),
                    (m, Some(v)) => m.matches(v),
                })
            }
        }
    }
}

/// Whether a value is a leaf, or an array holding one, as EventBridge sees the event:
/// `exists` looks at leaves only, so an object (a composite field such as `name` or
/// `emails`) or an empty array counts as absent.
fn has_leaf(value: &Value) -> bool {
    match value {
        Value::Object(_) => false,
        Value::Array(items) => items.iter().any(has_leaf),
        _ => true,
    }
}

impl Matcher {
    fn matches(&self, value: &Value) -> bool {
        match self {
            Self::Exactly(l) => l.is(value),
            Self::Prefix(t) => value.as_str().is_some_and(|s| t.starts(s)),
            Self::Suffix(t) => value.as_str().is_some_and(|s| t.ends(s)),
            Self::EqualsIgnoreCase(t) => value.as_str().is_some_and(|s| same_caseless(s, t)),
            Self::Wildcard(w) => value.as_str().is_some_and(|s| glob(w, s)),
            Self::Exists(present) => *present,
            Self::Numeric(comparisons) => {
                value
                    .as_f64()
                    .filter(|_| value.is_number())
                    .is_some_and(|n| {
                        comparisons.iter().all(|(op, bound)| match op {
                            Comparison::Equal => n == *bound,
                            Comparison::Less => n < *bound,
                            Comparison::LessOrEqual => n <= *bound,
                            Comparison::Greater => n > *bound,
                            Comparison::GreaterOrEqual => n >= *bound,
                        })
                    })
            }
            Self::AnythingBut(exclusion) => match exclusion {
                Exclusion::Values(values) => !values.iter().any(|l| l.is(value)),
                Exclusion::Prefix(p) => value.as_str().is_some_and(|s| !s.starts_with(p.as_str())),
                Exclusion::Suffix(p) => value.as_str().is_some_and(|s| !s.ends_with(p.as_str())),
                Exclusion::Wildcard(w) => value.as_str().is_some_and(|s| !glob(w, s)),
                Exclusion::EqualsIgnoreCase(values) => value
                    .as_str()
                    .is_some_and(|s| !values.iter().any(|t| same_caseless(s, t))),
            },
        }
    }
}

impl Literal {
    fn is(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::Text(t), Value::String(s)) => t == s,
            (Self::Number(n), Value::Number(v)) => v.as_f64() == Some(*n),
            (Self::Bool(b), Value::Bool(v)) => b == v,
            (Self::Null, Value::Null) => true,
            _ => false,
        }
    }
}

impl Text {
    fn starts(&self, s: &str) -> bool {
        if self.ignore_case {
            caseless_prefix(s, &self.text)
        } else {
            s.starts_with(self.text.as_str())
        }
    }

    fn ends(&self, s: &str) -> bool {
        if self.ignore_case {
            s.len() >= self.text.len()
                && s.is_char_boundary(s.len() - self.text.len())
                && same_caseless(&s[s.len() - self.text.len()..], &self.text)
        } else {
            s.ends_with(self.text.as_str())
        }
    }
}

/// Equal without regard to case (Unicode lower case), allocating nothing.
fn same_caseless(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

fn caseless_prefix(s: &str, prefix: &str) -> bool {
    let mut s = s.chars().flat_map(char::to_lowercase);
    prefix
        .chars()
        .flat_map(char::to_lowercase)
        .all(|c| s.next() == Some(c))
}

/// `*` stands for any run of characters (none too); `\*` for a star itself.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi + 1, ti));
            pi += 1;
            continue;
        }
        let (literal, width) = match (p.get(pi), p.get(pi + 1)) {
            (Some(b'\\'), Some(b'*')) => (Some(b'*'), 2),
            (Some(&c), _) => (Some(c), 1),
            (None, _) => (None, 0),
        };
        if literal == Some(t[ti]) {
            pi += width;
            ti += 1;
        } else if let Some((resume, from)) = star {
            pi = resume;
            ti = from + 1;
            star = Some((resume, from + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}
