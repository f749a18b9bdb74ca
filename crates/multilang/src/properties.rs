//! The KCL properties file format (Java `.properties`): `key = value` lines.
//!
//! Supported as the Java daemon reads it: `=`, `:` or whitespace between key
//! and value; `#` and `!` comment lines; a trailing backslash continues a
//! line; `\t`, `\n`, `\r`, `\f`, `\uXXXX` and `\<char>` escapes. A key given
//! twice keeps its last value. Keys are case-sensitive.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One `key = value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value, unescaped, surrounding whitespace removed.
    pub value: String,
    /// 1-based number of the line the entry starts on.
    pub line: usize,
}

/// The entries of a properties file, by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    entries: BTreeMap<String, Entry>,
}

impl Properties {
    /// Parses the text of a properties file.
    pub fn parse(text: &str) -> Result<Properties> {
        let mut entries = BTreeMap::new();
        let mut lines = text.lines().enumerate();
        while let Some((index, first)) = lines.next() {
            let start = first.trim_start();
            if start.is_empty() || start.starts_with('#') || start.starts_with('!') {
                continue;
            }
            let mut logical = start.to_owned();
            while ends_with_continuation(&logical) {
                logical.pop();
                match lines.next() {
                    Some((_, next)) => logical.push_str(next.trim_start()),
                    None => break,
                }
            }
            let (key, value) = split_entry(&logical);
            let key = unescape(key, index + 1)?;
            let value = unescape(value, index + 1)?;
            if key.is_empty() {
                return Err(Error::Syntax {
                    line: index + 1,
                    message: format!("expected `key = value`, found {:?}", first.trim()),
                });
            }
            entries.insert(
                key,
                Entry {
                    value: value.trim().to_owned(),
                    line: index + 1,
                },
            );
        }
        Ok(Properties { entries })
    }

    /// The entry for `key`, if present with a non-empty value (`key =` with
    /// nothing after it counts as unset).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key).filter(|e| !e.value.is_empty())
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, e)| (k.as_str(), e))
    }
}

/// An odd number of trailing backslashes continues the line.
fn ends_with_continuation(line: &str) -> bool {
    line.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

/// Splits at the first unescaped `=`, `:` or whitespace; the separator and
/// the whitespace around it are dropped. Both halves are still escaped.
fn split_entry(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' => return (&line[..i], line[i + 1..].trim_start()),
            c if c.is_whitespace() => {
                let rest = line[i..].trim_start();
                let rest = rest.strip_prefix(['=', ':']).map_or(rest, str::trim_start);
                return (&line[..i], rest);
            }
            _ => {}
        }
    }
    (line, "")
}

fn unescape(text: &str, line: usize) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let decoded = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32);
                match decoded {
                    Some(ch) => out.push(ch),
                    None => {
                        return Err(Error::Syntax {
                            line,
                            message: format!("expected four hex digits after \\u, found {hex:?}"),
                        });
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(p: &Properties, key: &str) -> Option<(String, usize)> {
        p.get(key).map(|e| (e.value.clone(), e.line))
    }

    #[test]
    fn separators_comments_and_line_numbers() {
        let p = Properties::parse(
            "# comment\n\n! also a comment\nexecutableName = python3 app.py\nstreamName:orders\napplicationName   orders-etl  \n  regionName=us-east-1\n",
        )
        .unwrap();
        assert_eq!(
            value(&p, "executableName"),
            Some(("python3 app.py".into(), 4))
        );
        assert_eq!(value(&p, "streamName"), Some(("orders".into(), 5)));
        assert_eq!(value(&p, "applicationName"), Some(("orders-etl".into(), 6)));
        assert_eq!(value(&p, "regionName"), Some(("us-east-1".into(), 7)));
        assert_eq!(p.iter().count(), 4);
    }

    #[test]
    fn continuation_escapes_duplicates_and_empty_values() {
        let p = Properties::parse(
            "a = one \\\n    two\nb = x\\=y\\:z\\u0041\\\\\nb = last\nworkerId =\nc = tab\\tend\n",
        )
        .unwrap();
        assert_eq!(value(&p, "a"), Some(("one two".into(), 1)));
        assert_eq!(value(&p, "b"), Some(("last".into(), 4)));
        assert_eq!(p.get("workerId"), None, "an empty value is unset");
        assert_eq!(value(&p, "c"), Some(("tab\tend".into(), 6)));
        let p = Properties::parse("k = x\\=y\\:z\\u0041\\\\\n").unwrap();
        assert_eq!(value(&p, "k").unwrap().0, "x=y:zA\\");
    }

    #[test]
    fn errors_name_the_line() {
        match Properties::parse("a = 1\n= value\n") {
            Err(Error::Syntax { line: 2, message }) => assert!(message.contains("key = value")),
            other => panic!("expected a syntax error on line 2, got {other:?}"),
        }
        match Properties::parse("\n\nk = \\u12\n") {
            Err(Error::Syntax { line: 3, message }) => assert!(message.contains("hex")),
            other => panic!("expected a syntax error on line 3, got {other:?}"),
        }
    }
}
