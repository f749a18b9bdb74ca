//! Key prefix templates with UTC time partitions.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// A key prefix with time partitions, rendered for the approximate arrival
/// time of the oldest record of an object, in UTC (Firehose's rule), so a
/// replayed object gets the same key.
///
/// Placeholders: `{YYYY}` (year), `{MM}` (month), `{dd}` (day), `{HH}`
/// (hour), `{mm}` (minute), `{ss}` (second), all zero-padded; Firehose's
/// `!{timestamp:PATTERN}` with the same letters (`yyyy` or `YYYY`, `MM`,
/// `dd`, `HH`, `mm`, `ss`; other characters are copied), e.g.
/// `!{timestamp:yyyy/MM/dd}`; and `!{firehose:error-output-type}`
/// (`processing-failed`). Anything else in braces is an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Time(Field),
    ErrorOutputType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

/// What `!{firehose:error-output-type}` becomes.
pub const PROCESSING_FAILED: &str = "processing-failed";

impl KeyTemplate {
    /// Parses `template`.
    pub fn parse(template: &str) -> Result<KeyTemplate> {
        let fail = |reason: String| Error::Template {
            template: template.to_owned(),
            reason,
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(c) = rest.chars().next() {
            let (placeholder, bang) = if rest.starts_with("!{") {
                (true, true)
            } else {
                (c == '{', false)
            };
            if !placeholder {
                if c == '}' {
                    return Err(fail("unmatched '}'".into()));
                }
                literal.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            }
            let open = if bang { 2 } else { 1 };
            let close = rest.find('}').ok_or_else(|| fail("unclosed '{'".into()))?;
            let inner = &rest[open..close];
            rest = &rest[close + 1..];
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            if bang {
                if let Some(pattern) = inner.strip_prefix("timestamp:") {
                    parse_pattern(pattern, &mut parts).map_err(fail)?;
                } else if inner == "firehose:error-output-type" {
                    parts.push(Part::ErrorOutputType);
                } else {
                    return Err(fail(format!("unknown expression !{{{inner}}}")));
                }
            } else {
                let field = field_of(inner)
                    .ok_or_else(|| fail(format!("unknown placeholder {{{inner}}}; use {{YYYY}}, {{MM}}, {{dd}}, {{HH}}, {{mm}} or {{ss}}")))?;
                parts.push(Part::Time(field));
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(KeyTemplate {
            source: template.to_owned(),
            parts,
        })
    }

    /// The template as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether it names `!{firehose:error-output-type}`.
    pub fn has_error_output_type(&self) -> bool {
        self.parts.contains(&Part::ErrorOutputType)
    }

    /// The prefix for an object whose oldest record arrived at `time` (UTC).
    pub fn render(&self, time: SystemTime) -> String {
        let civil = Civil::of(time);
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::ErrorOutputType => out.push_str(PROCESSING_FAILED),
                Part::Time(field) => {
                    let _ = match field {
                        Field::Year => write!(out, "{:04}", civil.year),
                        Field::Month => write!(out, "{:02}", civil.month),
                        Field::Day => write!(out, "{:02}", civil.day),
                        Field::Hour => write!(out, "{:02}", civil.hour),
                        Field::Minute => write!(out, "{:02}", civil.minute),
                        Field::Second => write!(out, "{:02}", civil.second),
                    };
                }
            }
        }
        out
    }
}

fn field_of(name: &str) -> Option<Field> {
    Some(match name {
        "YYYY" | "yyyy" => Field::Year,
        "MM" => Field::Month,
        "dd" => Field::Day,
        "HH" => Field::Hour,
        "mm" => Field::Minute,
        "ss" => Field::Second,
        _ => return None,
    })
}

/// A Java-style date pattern (`yyyy/MM/dd`): runs of pattern letters become
/// fields, other characters are copied.
fn parse_pattern(pattern: &str, parts: &mut Vec<Part>) -> std::result::Result<(), String> {
    let mut chars = pattern.chars().peekable();
    let mut literal = String::new();
    while let Some(c) = chars.next() {
        if !c.is_ascii_alphabetic() {
            literal.push(c);
            continue;
        }
        let mut run = String::from(c);
        while chars.peek() == Some(&c) {
            run.push(c);
            chars.next();
        }
        let field =
            field_of(&run).ok_or_else(|| format!("unknown timestamp pattern letters {run:?}"))?;
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal)));
        }
        parts.push(Part::Time(field));
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(())
}

/// A UTC calendar date and time.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
}

impl Civil {
    /// Howard Hinnant's `civil_from_days`; times before 1970 clamp to it.
    fn of(time: SystemTime) -> Civil {
        let secs = time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let days = (secs / 86_400) as i64;
        let of_day = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: of_day / 3_600,
            minute: of_day % 3_600 / 60,
            second: of_day % 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renders_utc_partitions() {
        let t = KeyTemplate::parse("logs/{YYYY}/{MM}/{dd}/{HH}").unwrap();
        // 2024-02-29T23:59:58Z (a leap day)
        assert_eq!(t.render(at(1_709_251_198)), "logs/2024/02/29/23");
        assert_eq!(t.render(at(0)), "logs/1970/01/01/00");
        // 2026-12-31T00:00:00Z
        assert_eq!(t.render(at(1_798_675_200)), "logs/2026/12/31/00");
    }

    #[test]
    fn firehose_expressions() {
        let t = KeyTemplate::parse("e/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/x")
            .unwrap();
        assert!(t.has_error_output_type());
        assert_eq!(
            t.render(at(1_709_251_198)),
            "e/processing-failed/2024/02/29/x"
        );
        let t = KeyTemplate::parse("{mm}:{ss}").unwrap();
        assert_eq!(t.render(at(1_709_251_198)), "59:58");
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        for bad in ["{YY}", "a{", "a}", "!{nope}", "!{timestamp:yyyy-QQ}"] {
            let err = KeyTemplate::parse(bad).unwrap_err();
            assert!(matches!(err, Error::Template { .. }), "{bad}: {err}");
        }
        assert_eq!(
            KeyTemplate::parse("plain/").unwrap().render(at(5)),
            "plain/"
        );
    }
}
