//! A rule's `transform`: what a target receives instead of the whole envelope, with the
//! semantics of EventBridge's input transformers, so that what users know of them holds.
//!
//! - `inputPathsMap`: names → JSON paths into the envelope (`$.record.emails.primaryEmail`):
//!   dot notation, `['key']`, array indices (`[0]`) and wildcards (`*`, which gather every
//!   match into an array). At most 100 names of letters, digits, `_`, `-` and `.`.
//! - `inputTemplate`: text with `<name>` placeholders. Inside a JSON string (between
//!   quotes) a placeholder inserts the value as string content (a string's characters,
//!   escaped; any other value as its JSON text, escaped); outside, as a JSON value. A path
//!   that matches nothing gives `null` outside quotes and nothing inside them.
//! - Reserved, without a path: `<aws.events.event.json>` (the whole envelope),
//!   `<twenty.record>` (its record) and `<aws.events.rule-name>` (the rule's name).
//!
//! A template that looks like JSON (it starts with `{`, `[` or `"`) must give valid JSON
//! whatever the values: checked when the rule is read, with every placeholder empty. Plain
//! code: the envelope comes in as a `serde_json::Value`.

use serde_json::{Map, Value};

const MAX_PATHS: usize = 100;
const ENVELOPE: &str = "aws.events.event.json";
const RECORD: &str = "twenty.record";
const RULE_NAME: &str = "aws.events.rule-name";

/// A rule's transform, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    paths: Vec<(String, Path)>,
    template: Vec<Piece>,
    /// The template looks like JSON: the result is sent as JSON.
    json: bool,
}

/// What a transform gives: the body to send, and whether it is JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub text: String,
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    /// A placeholder, and whether it stands inside a JSON string.
    Value {
        name: String,
        quoted: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Path(Vec<Step>);

impl Transform {
    /// Reads a rule's `transform` field; Err says what is wrong (the template's text is
    /// the user's own, never a secret, but it is not repeated either).
    pub fn parse(value: &Value) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err("`transform` must be an object with `inputTemplate`".into());
        };
        if let Some(key) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "inputPathsMap" | "inputTemplate"))
        {
            return Err(format!("`transform` has an unknown field `{key}`"));
        }
        let paths = match map.get("inputPathsMap") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(paths)) => parse_paths(paths)?,
            Some(_) => return Err("`transform.inputPathsMap` must be an object".into()),
        };
        let Some(Value::String(text)) = map.get("inputTemplate") else {
            return Err("`transform.inputTemplate` must be a string".into());
        };
        let template = parse_template(text)?;
        for piece in &template {
            if let Piece::Value { name, .. } = piece
                && !is_reserved(name)
                && !paths.iter().any(|(n, _)| n == name)
            {
                return Err(format!(
                    "`transform.inputTemplate` uses <{name}>, which `inputPathsMap` does not define"
                ));
            }
        }
        let json = matches!(text.trim_start().chars().next(), Some('{' | '[' | '"'));
        let transform = Self {
            paths,
            template,
            json,
        };
        if json {
            let empty = transform.render(|_| None, "");
            if serde_json::from_str::<serde::de::IgnoredAny>(&empty).is_err() {
                return Err(
                    "`transform.inputTemplate` looks like JSON but does not give valid JSON".into(),
                );
            }
        }
        Ok(transform)
    }

    /// The body for `envelope`, sent by the rule `rule`.
    pub fn apply(&self, envelope: &Value, rule: &str) -> Body {
        let text = self.render(
            |name| match name {
                ENVELOPE => Some(envelope.clone()),
                RECORD => envelope.get("record").cloned(),
                _ => self
                    .paths
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, path)| path.find(envelope)),
            },
            rule,
        );
        Body {
            text,
            json: self.json,
        }
    }

    fn render(&self, value_of: impl Fn(&str) -> Option<Value>, rule: &str) -> String {
        let mut out = String::new();
        for piece in &self.template {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Value { name, quoted } => {
                    let value = if name == RULE_NAME {
                        Some(Value::String(rule.to_owned()))
                    } else {
                        value_of(name)
                    };
                    match (value, quoted) {
                        (None, false) => out.push_str("null"),
                        (None, true) => {}
                        (Some(v), false) => out.push_str(&v.to_string()),
                        (Some(Value::String(s)), true) => push_escaped(&mut out, &s),
                        (Some(v), true) => push_escaped(&mut out, &v.to_string()),
                    }
                }
            }
        }
        out
    }
}

/// A placeholder's or a path's name: letters, digits, `_`, `-` and `.`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn is_reserved(name: &str) -> bool {
    matches!(name, ENVELOPE | RECORD | RULE_NAME)
}

/// `text`'s characters as they stand inside a JSON string.
fn push_escaped(out: &mut String, text: &str) {
    let quoted = Value::String(text.to_owned()).to_string();
    out.push_str(&quoted[1..quoted.len() - 1]);
}

fn parse_paths(map: &Map<String, Value>) -> Result<Vec<(String, Path)>, String> {
    if map.len() > MAX_PATHS {
        return Err(format!(
            "`transform.inputPathsMap` has more than {MAX_PATHS} names"
        ));
    }
    map.iter()
        .map(|(name, path)| {
            if !is_name(name) {
                return Err(format!(
                    "`transform.inputPathsMap`: {name:?} is not a name (letters, digits, `_`, `-`, `.`)"
                ));
            }
            // The reserved names and any a later version may reserve.
            if name.starts_with("aws.") || name.starts_with("twenty.") {
                return Err(format!("`transform.inputPathsMap`: `{name}` is reserved"));
            }
            let Value::String(path) = path else {
                return Err(format!(
                    "`transform.inputPathsMap.{name}` must be a JSON path string"
                ));
            };
            let path = Path::parse(path)
                .map_err(|why| format!("`transform.inputPathsMap.{name}`: {why}"))?;
            Ok((name.clone(), path))
        })
        .collect()
}

/// Splits a template into text and placeholders, noting which stand inside a JSON string.
/// A `<` that does not open a well-formed name is text, as in EventBridge.
fn parse_template(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest[1..].find('>')
        {
            let name = &rest[1..1 + end];
            if is_name(name) {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Value {
                    name: name.to_owned(),
                    quoted: in_string,
                });
                rest = &rest[end + 2..];
                escaped = false;
                continue;
            }
        }
        match (c, escaped) {
            (_, true) => escaped = false,
            ('\\', false) if in_string => escaped = true,
            ('"', false) => in_string = !in_string,
            _ => {}
        }
        literal.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    if pieces.len() > 10_000 {
        return Err("`transform.inputTemplate` is too long".into());
    }
    Ok(pieces)
}

impl Path {
    /// `$`, then `.key`, `['key']`, `[n]`, `.*` or `[*]`.
    fn parse(text: &str) -> Result<Self, String> {
        let Some(mut rest) = text.strip_prefix('$') else {
            return Err("a JSON path starts with `$`".into());
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let key = &after[..end];
                if key.is_empty() {
                    return Err(format!("an empty name in {text:?}"));
                }
                steps.push(if key == "*" {
                    Step::All
                } else {
                    Step::Key(key.to_owned())
                });
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix("['") {
                let end = after
                    .find("']")
                    .ok_or_else(|| format!("an unclosed `['` in {text:?}"))?;
                steps.push(Step::Key(after[..end].to_owned()));
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| format!("an unclosed `[` in {text:?}"))?;
                let inside = &after[..end];
                steps.push(if inside == "*" {
                    Step::All
                } else {
                    Step::Index(
                        inside
                            .parse()
                            .map_err(|_| format!("`[{inside}]` is not an index in {text:?}"))?,
                    )
                });
                rest = &after[end + 1..];
            } else {
                return Err(format!("{text:?} is not a JSON path EventBridge reads"));
            }
        }
        Ok(Self(steps))
    }

    /// The value at this path; with a wildcard, every match in an array (None if none).
    fn find(&self, root: &Value) -> Option<Value> {
        let mut found = vec![root];
        for step in &self.0 {
            found = found
                .into_iter()
                .flat_map(|v| -> Vec<&Value> {
                    match (step, v) {
                        (Step::Key(k), Value::Object(m)) => m.get(k).into_iter().collect(),
                        (Step::Index(i), Value::Array(a)) => a.get(*i).into_iter().collect(),
                        (Step::All, Value::Array(a)) => a.iter().collect(),
                        (Step::All, Value::Object(m)) => m.values().collect(),
                        _ => Vec::new(),
                    }
                })
                .collect();
        }
        if self.0.contains(&Step::All) {
            return (!found.is_empty()).then(|| Value::Array(found.into_iter().cloned().collect()));
        }
        found.first().map(|v| (*v).clone())
    }
}

impl Body {
    /// The `Content-Type` it goes with.
    pub fn content_type(&self) -> &'static str {
        if self.json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        }
    }
}
