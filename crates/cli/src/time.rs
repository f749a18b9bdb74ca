//! Timestamps and durations on the command line and in output: RFC 3339,
//! epoch seconds, and ages like `15m`. Small enough not to need a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TIMESTAMP_HELP: &str = "expected RFC 3339 like 2024-05-01T12:00:00Z (or with an offset, \
     +02:00), a date like 2024-05-01 (midnight UTC), epoch seconds, or an age like 15m, 2h or 1d";

/// Parses a point in time: RFC 3339 (`2024-05-01T12:00:00Z`,
/// `2024-05-01 12:00:00+02:00`; no zone means UTC), a date (midnight UTC),
/// epoch seconds (or milliseconds when above 10^11), `now`, or an age
/// (`15m`, `1h30m`, `2d`, optionally followed by ` ago`) meaning that long
/// before now.
pub(crate) fn parse_timestamp(text: &str) -> Result<SystemTime, String> {
    let s = text.trim();
    let fail = || format!("{s:?} is not a time: {TIMESTAMP_HELP}");
    if s.eq_ignore_ascii_case("now") {
        return Ok(SystemTime::now());
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let value: f64 = s.parse().map_err(|_| fail())?;
        let seconds = if value > 1e11 { value / 1000.0 } else { value };
        return Duration::try_from_secs_f64(seconds)
            .map(|d| UNIX_EPOCH + d)
            .map_err(|_| fail());
    }
    if let Ok(age) = parse_duration(s.strip_suffix("ago").unwrap_or(s).trim_start_matches('-')) {
        return SystemTime::now().checked_sub(age).ok_or_else(fail);
    }
    parse_rfc3339(s).ok_or_else(fail)
}

/// Parses a duration: a number and a unit (`ms`, `s`, `m`, `h`, `d`),
/// repeated (`1h30m`, `1h 30m`). A bare number is seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let fail =
        || format!("{s:?} is not a duration: expected e.g. 500ms, 30s, 15m, 2h, 1d or 1h30m");
    if s.is_empty() {
        return Err(fail());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| fail());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let rest_trimmed = rest.trim_start();
        let digits = rest_trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest_trimmed.len());
        if digits == 0 {
            return Err(fail());
        }
        let value: f64 = rest_trimmed[..digits].parse().map_err(|_| fail())?;
        let after = rest_trimmed[digits..].trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let unit = &after[..unit_len];
        let scale = match unit {
            "ms" => 0.001,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            _ => return Err(fail()),
        };
        total += Duration::try_from_secs_f64(value * scale).map_err(|_| fail())?;
        rest = after[unit_len..].trim_start();
    }
    Ok(total)
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]][Z|±HH:MM|±HHMM]`.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let number = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(s[i + 1..].trim())),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let (y, mo, d) = (
        number(parts.next()?)?,
        number(parts.next()?)?,
        number(parts.next()?)?,
    );
    if date.len() != 10 || !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let mut seconds = days_from_civil(y, mo, d) * 86_400;
    let mut nanos = 0u32;
    if let Some(time) = time {
        let (clock, offset) = split_zone(time)?;
        let mut fields = clock.splitn(3, ':');
        let h = number(fields.next()?)?;
        let mi = number(fields.next()?)?;
        let (sec, frac) = match fields.next() {
            Some(sec) => match sec.split_once('.') {
                Some((whole, frac)) => (number(whole)?, Some(frac)),
                None => (number(sec)?, None),
            },
            None => (0, None),
        };
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        if let Some(frac) = frac {
            if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let padded = format!("{frac:0<9}");
            nanos = padded[..9].parse().ok()?;
        }
        seconds += h * 3600 + mi * 60 + sec - offset;
    }
    let seconds = u64::try_from(seconds).ok()?;
    Some(UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// Splits `12:00:00+02:00` into the clock and the offset in seconds east.
fn split_zone(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    let Some(i) = time.rfind(['+', '-']) else {
        return Some((time, 0)); // no zone: UTC
    };
    let (clock, zone) = time.split_at(i);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    Some((clock, sign * (h * 3600 + m * 60)))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2024-05-01T12:00:00Z` (UTC, whole seconds) for epoch milliseconds.
pub(crate) fn format_epoch_millis(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A short human age: `850 ms`, `4.2 s`, `3 m 12 s`, `2 h 5 m`, `3 d 4 h`.
pub(crate) fn format_age(millis: i64) -> String {
    if millis < 0 {
        return format!("in {}", format_age(-millis));
    }
    let s = millis / 1000;
    match millis {
        0..1_000 => format!("{millis} ms"),
        1_000..60_000 => format!("{:.1} s", millis as f64 / 1000.0),
        60_000..3_600_000 => format!("{} m {} s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{} h {} m", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(t: SystemTime) -> f64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
    }

    #[test]
    fn rfc3339_with_zones_and_fractions() {
        assert_eq!(
            epoch(parse_timestamp("2024-05-01T12:00:00Z").unwrap()),
            1_714_564_800.0
        );
        assert_eq!(
            epoch(parse_timestamp("2024-05-01T14:00:00+02:00").unwrap()),
            1_714_564_800.0
        );
        assert_eq!(
            epoch(parse_timestamp("2024-05-01 07:00:00-0500").unwrap()),
            1_714_564_800.0
        );
        assert_eq!(
            epoch(parse_timestamp("2024-05-01T12:00:00.250Z").unwrap()),
            1_714_564_800.25
        );
        assert_eq!(
            epoch(parse_timestamp("2024-05-01").unwrap()),
            1_714_521_600.0
        );
        assert_eq!(
            epoch(parse_timestamp("2024-02-29T00:00").unwrap()),
            1_709_164_800.0
        );
    }

    #[test]
    fn epoch_numbers_and_ages() {
        assert_eq!(
            epoch(parse_timestamp("1714564800").unwrap()),
            1_714_564_800.0
        );
        assert_eq!(
            epoch(parse_timestamp("1714564800000").unwrap()),
            1_714_564_800.0
        );
        let ago = SystemTime::now()
            .duration_since(parse_timestamp("15m").unwrap())
            .unwrap();
        assert!((899..=901).contains(&ago.as_secs()), "{ago:?}");
        assert!(parse_timestamp("2h ago").is_ok());
    }

    #[test]
    fn malformed_timestamps_are_rejected_with_help() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2023-02-29",
            "2024-05-01T25:00:00Z",
            "2024-05-01T12:00:00+2",
            "2024-5-1",
            "12:00",
        ] {
            let err = parse_timestamp(bad).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(
            format_epoch_millis(1_714_564_800_000),
            "2024-05-01T12:00:00Z"
        );
        assert_eq!(format_epoch_millis(0), "1970-01-01T00:00:00Z");
        for days in [-1000, 0, 59, 11_016, 19_844, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_age(850), "850 ms");
        assert_eq!(format_age(4_200), "4.2 s");
        assert_eq!(format_age(192_000), "3 m 12 s");
        assert_eq!(format_age(7_500_000), "2 h 5 m");
    }
}
