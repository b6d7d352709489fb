//! Where in which policy file something is wrong, and what.

use std::fmt;

/// A place in a policy file: 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The line and column of byte `offset` of `text` (clamped to its end,
    /// and to a character boundary).
    pub fn of(file: &str, text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            file: file.to_string(),
            line,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// What is wrong, by kind, so callers branch without reading messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// Not TOML, an unknown field, or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    #[error("cron expression {expr:?}: {why}")]
    Cron { expr: String, why: String },
    #[error("unknown time zone {0:?} (use an IANA name such as \"Europe/Berlin\", or \"UTC\")")]
    TimeZone(String),
    #[error("duration {text:?}: {why}")]
    Duration { text: String, why: String },
    /// A retention table whose rules would forget every snapshot.
    #[error("[retention] keeps nothing: set at least one keep-* rule to more than 0")]
    KeepsNothing,
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    /// The same tenant, bucket, source or hold defined twice in one set.
    #[error("{what} is already defined at {first}")]
    Duplicate { what: String, first: Location },
}

/// A policy file rejected: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct PolicyError {
    pub location: Location,
    pub reason: Reason,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_from_one_in_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(Location::of("f", text, 0).to_string(), "f:1:1");
        let at_2 = text.find('2').unwrap_or(0);
        assert_eq!(Location::of("f", text, at_2).to_string(), "f:2:6");
        // Past the end, and inside a character, still land somewhere real.
        assert_eq!(Location::of("f", text, 999).line, 3);
        let inside = text.find('é').unwrap_or(0) + 1;
        assert_eq!(Location::of("f", text, inside).column, 2);
    }
}
