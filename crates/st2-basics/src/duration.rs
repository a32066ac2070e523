//! Durations in configuration, written as people write them: `250ms`, `10s`, `5m`, `1h`. A bare
//! number is milliseconds, which keeps every older `*_ms` value meaning what it meant.
//!
//! Use with `#[serde(with = "st2_basics::duration")]` (or `duration::option` for an
//! `Option<Duration>`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de};

/// Reads `250ms`, `10s`, `1.5s`, `5m`, `1h`, or a bare number of milliseconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 250ms, 10s, 5m or 1h"))?;
    let millis = match unit.trim() {
        "" | "ms" => value,
        "s" => value * 1e3,
        "m" | "min" => value * 60e3,
        "h" => value * 3_600e3,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use ms, s, m or h"
            ));
        }
    };
    if !millis.is_finite() || millis > 1e15 {
        return Err(format!("{text:?} is too long a duration"));
    }
    Ok(Duration::from_secs_f64(millis / 1e3))
}

/// The shortest exact form of `d` in the units [`parse`] reads: `10s`, `250ms`, `1h`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 || ms % 1_000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1_000;
    if s % 3_600 == 0 {
        format!("{}h", s / 3_600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Millis(u64),
    Text(String),
}

/// Serde `deserialize` for a `Duration` field.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Written::deserialize(d)? {
        Written::Millis(ms) => Ok(Duration::from_millis(ms)),
        Written::Text(text) => parse(&text).map_err(de::Error::custom),
    }
}

/// Serde `serialize` for a `Duration` field, in the form [`format`] writes.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// The same for an `Option<Duration>` field (`null` or absent is `None`).
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serde `deserialize` for an `Option<Duration>` field.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }

    /// Serde `serialize` for an `Option<Duration>` field.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_milliseconds_are_read() {
        for (text, ms) in [
            ("250ms", 250),
            ("10s", 10_000),
            ("1.5s", 1_500),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1500", 1_500),
            (" 2s ", 2_000),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for bad in ["", "fast", "10 parsecs", "1e400s", "-1s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_round_trips_through_parse() {
        for ms in [0, 1, 250, 1_000, 1_500, 60_000, 90_000, 3_600_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(10)), "10s");
        assert_eq!(format(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn serde_reads_numbers_and_strings() {
        #[derive(Deserialize)]
        struct C {
            #[serde(with = "super")]
            d: Duration,
            #[serde(default, with = "super::option")]
            o: Option<Duration>,
        }
        let c: C = serde_json::from_str(r#"{"d": "10s", "o": 250}"#).unwrap();
        assert_eq!(c.d, Duration::from_secs(10));
        assert_eq!(c.o, Some(Duration::from_millis(250)));
        let c: C = serde_json::from_str(r#"{"d": 40}"#).unwrap();
        assert_eq!((c.d, c.o), (Duration::from_millis(40), None));
        let err = serde_json::from_str::<C>(r#"{"d": "soon"}"#).err().unwrap();
        assert!(err.to_string().contains("not a duration"), "{err}");
    }
}
