//! Timestamps and durations as users write them.
//!
//! All timestamps inside headroom are UTC milliseconds since the Unix epoch (`i64`).

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// The unit of epoch numbers in a file. Never guessed: a bare number is only
/// read as a timestamp when the user names its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    /// Seconds since 1970-01-01T00:00:00Z (fractions allowed).
    S,
    /// Milliseconds since 1970-01-01T00:00:00Z.
    Ms,
}

impl std::str::FromStr for TimeUnit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "s" => Ok(TimeUnit::S),
            "ms" => Ok(TimeUnit::Ms),
            other => Err(format!("time unit must be 's' or 'ms', not {other:?}")),
        }
    }
}

/// Epoch numbers (with an explicit unit) must fall in 1990-01-01 ..
/// 2200-01-01 UTC: a value outside is almost always the wrong unit (seconds
/// read as milliseconds land in January 1970; milliseconds read as seconds
/// land tens of thousands of years ahead), so it is refused with a hint
/// rather than stored as a date nobody meant.
pub const EPOCH_RANGE_MS: std::ops::Range<i64> = 631_152_000_000..7_258_118_400_000;

/// 0001-01-01T00:00:00Z .. 10000-01-01T00:00:00Z: the instants RFC 3339 can write.
const WRITABLE_MS: std::ops::Range<i64> = -62_135_596_800_000..253_402_300_800_000;

/// Parses one timestamp into UTC epoch milliseconds.
///
/// Accepted: RFC 3339 (`2024-01-01T00:00:00Z`, `2024-01-01T01:00:00+01:00`, fractions
/// allowed); `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS` without a zone, read as UTC;
/// and, only when `epoch` names the unit, epoch seconds or milliseconds.
/// Sub-millisecond fractions are truncated.
pub fn parse_timestamp(value: &str, epoch: Option<TimeUnit>) -> Result<i64> {
    let s = value.trim();
    // Only years 0001..9999: what RFC 3339 (and so every file headroom
    // writes) can hold. chrono's %Y would also take "+22704".
    let writable = |ms: i64| {
        if WRITABLE_MS.contains(&ms) {
            Ok(ms)
        } else {
            Err(Error::Timestamp { value: value.into(), hint: " (outside the years 0001 to 9999)" })
        }
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return writable(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return writable(t.and_utc().timestamp_millis());
        }
    }
    let looks_numeric = !s.is_empty() && s.parse::<f64>().is_ok_and(f64::is_finite);
    let ms = match (epoch, looks_numeric) {
        (Some(TimeUnit::Ms), true) => s
            .parse::<i64>()
            .map_err(|_| Error::Timestamp { value: value.into(), hint: " (epoch milliseconds must be an integer)" }),
        (Some(TimeUnit::S), true) => {
            let secs: f64 = s.parse().expect("checked numeric above");
            let ms = (secs * 1000.0).round();
            if ms.abs() > 8.64e15 {
                return Err(Error::Timestamp { value: value.into(), hint: " (out of range for epoch seconds)" });
            }
            Ok(ms as i64)
        }
        (None, true) => Err(Error::Timestamp {
            value: value.into(),
            hint: "; it looks like an epoch number: say its unit with --time-unit s or --time-unit ms",
        }),
        (_, false) => Err(Error::Timestamp { value: value.into(), hint: "" }),
    }?;
    if let Some(unit) = epoch
        && looks_numeric
    {
        check_epoch(ms, unit, value)?;
    }
    if DateTime::<Utc>::from_timestamp_millis(ms).is_none() {
        return Err(Error::Timestamp { value: value.into(), hint: " (out of the representable range of dates)" });
    }
    Ok(ms)
}

/// Checks that an epoch number read with `unit` (now `ms` milliseconds) lies
/// in [`EPOCH_RANGE_MS`]; the error names `value` and the unit it probably is.
pub fn check_epoch(ms: i64, unit: TimeUnit, value: &str) -> Result<i64> {
    if EPOCH_RANGE_MS.contains(&ms) {
        return Ok(ms);
    }
    let hint = match unit {
        TimeUnit::S if ms >= EPOCH_RANGE_MS.end => {
            " (after the year 2200 as epoch seconds: is it milliseconds? use --time-unit ms)"
        }
        TimeUnit::Ms if (0..EPOCH_RANGE_MS.end / 1000).contains(&ms) => {
            " (in January 1970 as epoch milliseconds: is it seconds? use --time-unit s)"
        }
        _ => " (epoch timestamps must lie between 1990 and 2200)",
    };
    Err(Error::Timestamp { value: value.into(), hint })
}

/// Formats epoch milliseconds as RFC 3339 UTC (`2024-01-01T00:00:00Z`, with
/// milliseconds only when they are not zero).
pub fn format_ts(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) if ms % 1000 == 0 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => format!("{ms}ms"),
    }
}

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// A duration in a config file, written like `500ms`, `30m`, `6h`, `2d` (see
/// [`parse_duration`]: zero and over 100 years are refused) and written back
/// the same way ([`format_duration`]). Every config that takes a duration
/// (headroom.toml, the host and Prometheus sources, process specs) uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub Duration);

impl Span {
    /// The span in milliseconds.
    pub fn ms(&self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }

    /// A span of `ms` milliseconds (negative values become zero).
    pub fn from_ms(ms: i64) -> Self {
        Span(Duration::from_millis(ms.max(0) as u64))
    }

    /// A span of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Span(Duration::from_secs(secs))
    }
}

impl From<Duration> for Span {
    fn from(d: Duration) -> Self {
        Span(d)
    }
}

impl From<Span> for Duration {
    fn from(s: Span) -> Self {
        s.0
    }
}

impl std::str::FromStr for Span {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        parse_duration(text).map(Span)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_duration(self.ms()))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl Span {
    /// Reads a span written as text (`15s`, like [`Span`]'s own
    /// `Deserialize`) or as a positive integer number of milliseconds (`500`),
    /// for configs that have always taken both:
    /// `#[serde(deserialize_with = "Span::text_or_millis")]`. Written back as text.
    pub fn text_or_millis<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Span, D::Error> {
        d.deserialize_any(TextOrMillis)
    }

    /// [`Span::text_or_millis`] for an optional span (`null`: `None`).
    pub fn text_or_millis_opt<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Span>, D::Error> {
        Ok(Option::<SpanOrMillis>::deserialize(d)?.map(|s| s.0))
    }
}

/// A [`Span`] read by [`Span::text_or_millis`].
#[derive(Deserialize)]
#[serde(transparent)]
struct SpanOrMillis(#[serde(deserialize_with = "Span::text_or_millis")] Span);

/// The visitor of [`Span::text_or_millis`].
struct TextOrMillis;

impl serde::de::Visitor<'_> for TextOrMillis {
    type Value = Span;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration such as \"15s\" or \"500ms\", or a positive number of milliseconds")
    }

    fn visit_u64<E: serde::de::Error>(self, ms: u64) -> std::result::Result<Span, E> {
        if ms == 0 {
            return Err(E::custom("duration 0 ms: it must be positive"));
        }
        Ok(Span(Duration::from_millis(ms)))
    }

    fn visit_i64<E: serde::de::Error>(self, ms: i64) -> std::result::Result<Span, E> {
        match u64::try_from(ms) {
            Ok(ms) => self.visit_u64(ms),
            Err(_) => Err(E::custom(format!("duration {ms} ms: it must be positive"))),
        }
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> std::result::Result<Span, E> {
        text.parse().map_err(E::custom)
    }
}

/// The longest duration [`parse_duration`] accepts: 100 years. Longer ones are
/// refused, never clamped: a guardrail such as a cooldown or the stale-data
/// limit must mean what it says, and any timestamp plus this stays in range.
pub const MAX_DURATION_MS: u64 = 100 * 365 * 86_400_000;

/// Parses a Prometheus-style duration: one or more `<integer><unit>` with units
/// `y w d h m s ms`, largest first (`90s`, `5m`, `1h30m`, `14d`). Zero is
/// refused, and so is anything longer than [`MAX_DURATION_MS`] (100y).
pub fn parse_duration(value: &str) -> Result<Duration> {
    let err = |why| Error::Duration { value: value.to_owned(), why };
    let mut rest = value.trim();
    if rest.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total: u64 = 0;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(err("expected a number before each unit"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err("too long: at most 100y"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(err("units are y, w, d, h, m, s, ms"));
        };
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(err("units must go from largest to smallest, each once"));
        }
        last_rank = rank;
        total = n
            .checked_mul(UNITS[rank].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("too long: at most 100y"))?;
        rest = &rest[unit_len..];
    }
    if total == 0 {
        return Err(err("it is zero"));
    }
    if total > MAX_DURATION_MS {
        return Err(err("too long: at most 100y"));
    }
    Ok(Duration::from_millis(total))
}

/// Formats milliseconds the way [`parse_duration`] reads them (`1h30m`, `14d`, `250ms`).
pub fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let (sign, mut left) = if ms < 0 { ("-", ms.unsigned_abs()) } else { ("", ms as u64) };
    let mut out = String::from(sign);
    for (unit, size) in UNITS.iter().skip(1) {
        if left >= *size {
            out.push_str(&format!("{}{unit}", left / size));
            left %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

    #[test]
    fn accepted_timestamp_formats() {
        assert_eq!(parse_timestamp("2024-01-01T00:00:00Z", None).unwrap(), T0);
        assert_eq!(parse_timestamp("2024-01-01T01:00:00+01:00", None).unwrap(), T0);
        assert_eq!(parse_timestamp("2024-01-01 00:00:00", None).unwrap(), T0);
        assert_eq!(parse_timestamp("2024-01-01T00:00:00.250", None).unwrap(), T0 + 250);
        assert_eq!(parse_timestamp(" 2024-01-01 00:05:00 ", None).unwrap(), T0 + 300_000);
        assert_eq!(parse_timestamp("1704067200", Some(TimeUnit::S)).unwrap(), T0);
        assert_eq!(parse_timestamp("1704067200.5", Some(TimeUnit::S)).unwrap(), T0 + 500);
        assert_eq!(parse_timestamp("1704067200000", Some(TimeUnit::Ms)).unwrap(), T0);
    }

    #[test]
    fn epoch_numbers_are_never_guessed() {
        let err = parse_timestamp("1704067200", None).unwrap_err().to_string();
        assert!(err.contains("--time-unit"), "{err}");
        let err = parse_timestamp("1704067200.5", Some(TimeUnit::Ms)).unwrap_err().to_string();
        assert!(err.contains("integer"), "{err}");
    }

    #[test]
    fn epoch_numbers_in_the_wrong_unit_are_refused_with_the_right_one_named() {
        // Milliseconds read as seconds: year 55969.
        let err = parse_timestamp("1704067200000", Some(TimeUnit::S)).unwrap_err().to_string();
        assert!(err.contains("use --time-unit ms"), "{err}");
        // Seconds read as milliseconds: January 1970.
        let err = parse_timestamp("1704067200", Some(TimeUnit::Ms)).unwrap_err().to_string();
        assert!(err.contains("use --time-unit s"), "{err}");
        let err = parse_timestamp("-5", Some(TimeUnit::S)).unwrap_err().to_string();
        assert!(err.contains("between 1990 and 2200"), "{err}");
        assert_eq!(parse_timestamp("7258118399", Some(TimeUnit::S)).unwrap(), 7_258_118_399_000);
    }

    #[test]
    fn only_timestamps_headroom_can_write_back_are_read() {
        // Found by fuzzing: chrono's %Y takes a five-digit year, which RFC 3339 cannot write.
        let err = parse_timestamp("+22704-01-01T01:00:0", None).unwrap_err().to_string();
        assert!(err.contains("outside the years 0001 to 9999"), "{err}");
        for ok in ["9999-12-31T23:59:59Z", "0001-01-01 00:00:00"] {
            let ms = parse_timestamp(ok, None).unwrap();
            assert_eq!(parse_timestamp(&format_ts(ms), None).unwrap(), ms, "{ok}");
        }
    }

    #[test]
    fn bad_timestamps_name_the_value() {
        for bad in ["", "yesterday", "2024-13-01 00:00:00", "2024-01-01", "NaN", "inf", "9223372036854775807"] {
            let err = parse_timestamp(bad, Some(TimeUnit::S)).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_ts(T0), "2024-01-01T00:00:00Z");
        assert_eq!(format_ts(T0 + 5), "2024-01-01T00:00:00.005Z");
        assert_eq!(parse_timestamp(&format_ts(T0 + 5), None).unwrap(), T0 + 5);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("14d").unwrap(), Duration::from_secs(14 * 86400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s500ms").unwrap(), Duration::from_millis(90_500));
        for bad in ["", "5", "m", "5x", "30m1h", "5m5m", "0s", "-5m", "1.5h", "99999999999999999999y"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        // Overflowing or absurd durations are errors, never clamped (they used to
        // turn a cooldown into "never" and wrap to negative on the command line).
        for bad in ["500000000y", "101y", "18446744073709551615ms", "100y1ms"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("too long: at most 100y"), "{bad}: {err}");
        }
        assert_eq!(parse_duration("100y").unwrap().as_millis() as u64, MAX_DURATION_MS);
        for ms in [1, 250, 60_000, 5_400_000, 1_209_600_000, 90_500] {
            assert_eq!(parse_duration(&format_duration(ms)).unwrap().as_millis() as i64, ms);
        }
    }

    #[test]
    fn spans_read_as_text_or_millis_and_write_back_as_text() {
        #[derive(Debug, PartialEq, Deserialize, Serialize)]
        struct Cfg {
            #[serde(deserialize_with = "Span::text_or_millis")]
            every: Span,
            #[serde(default, deserialize_with = "Span::text_or_millis_opt")]
            for_: Option<Span>,
        }
        let read = |json: &str| serde_json::from_str::<Cfg>(json).map_err(|e| e.to_string());
        let cfg = read(r#"{"every": "1m30s", "for_": 2500}"#).unwrap();
        assert_eq!(cfg, Cfg { every: Span::from_secs(90), for_: Some(Span::from_ms(2500)) });
        assert_eq!(serde_json::to_string(&cfg).unwrap(), r#"{"every":"1m30s","for_":"2s500ms"}"#);
        assert_eq!(read(r#"{"every": 250, "for_": null}"#).unwrap().for_, None);
        assert_eq!(read(r#"{"every": 250}"#).unwrap().for_, None);
        assert!(read(r#"{"every": 0}"#).unwrap_err().contains("duration 0 ms: it must be positive"));
        assert!(read(r#"{"every": -5}"#).unwrap_err().contains("duration -5 ms: it must be positive"));
        assert!(read(r#"{"every": "5x"}"#).unwrap_err().contains("\"5x\""));
        assert!(read(r#"{"every": true}"#).unwrap_err().contains("or a positive number of milliseconds"));
        // Span's own Deserialize takes text only.
        assert!(serde_json::from_str::<Span>("250").is_err());
    }
}
