//! Event-name patterns and the router: which handlers an event goes to.
//!
//! A pattern is `<object>.<action>` with `*` for either part, or `*` alone. As in the
//! envelope, the object is everything before the last dot (`metadata.fieldMetadata`).

use std::fmt;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    object: Part,
    action: Part,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Any,
    Exactly(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("pattern {pattern:?} is not <object>.<action>, `*` standing for either part or for both")]
pub struct PatternError {
    pattern: String,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let bad = || PatternError {
            pattern: text.to_owned(),
        };
        if text == "*" {
            return Ok(Self {
                object: Part::Any,
                action: Part::Any,
            });
        }
        let (object, action) = text.rsplit_once('.').ok_or_else(bad)?;
        let part = |p: &str| match p {
            "*" => Ok(Part::Any),
            "" => Err(bad()),
            // A star inside a part would look like a glob it is not.
            p if p.contains('*') || p.chars().any(char::is_whitespace) => Err(bad()),
            p => Ok(Part::Exactly(p.to_owned())),
        };
        Ok(Self {
            object: part(object)?,
            action: part(action)?,
        })
    }

    /// Whether the event named `<object>.<action>` matches.
    pub fn matches(&self, event_name: &str) -> bool {
        let Some((object, action)) = event_name.rsplit_once('.') else {
            return false;
        };
        self.object.matches(object) && self.action.matches(action)
    }
}

impl Part {
    fn matches(&self, text: &str) -> bool {
        match self {
            Part::Any => true,
            Part::Exactly(p) => p == text,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.object, &self.action) {
            (Part::Any, Part::Any) => f.write_str("*.*"),
            (o, a) => write!(f, "{}.{}", o.text(), a.text()),
        }
    }
}

impl Part {
    fn text(&self) -> &str {
        match self {
            Part::Any => "*",
            Part::Exactly(t) => t,
        }
    }
}
