//! Human-friendly sizes (`512MiB`) and durations (`10m`) in a job spec.
//!
//! Both accept a plain whole number (bytes, seconds) or a whole number with a
//! unit, and write themselves back in the largest unit that is exact, so a
//! stored spec reads like the one the user wrote.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes: `1048576`, `512MiB`, `2GB`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// A number of seconds: `90`, `30s`, `10m`, `1h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(pub u64);

/// Largest first, so formatting picks the largest exact unit.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("TiB", 1 << 40),
    ("TB", 1_000_000_000_000),
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("KiB", 1 << 10),
    ("KB", 1_000),
    ("B", 1),
];

const DURATION_UNITS: &[(&str, u64)] = &[("h", 3600), ("m", 60), ("s", 1)];

const SIZE_HINT: &str = "a whole number of bytes, or a whole number with a unit \
     (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 512MiB";
const DURATION_HINT: &str =
    "a whole number of seconds, or a whole number with a unit (s, m, h), e.g. 10m";

impl ByteSize {
    /// Parses `1024`, `512MiB`, `2 GB`.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        parse_with_units(text, SIZE_UNITS, SIZE_HINT).map(ByteSize)
    }
}

impl Seconds {
    /// Parses `90`, `30s`, `10m`, `1h`.
    pub fn parse(text: &str) -> Result<Seconds, String> {
        parse_with_units(text, DURATION_UNITS, DURATION_HINT).map(Seconds)
    }
}

fn parse_with_units(text: &str, units: &[(&str, u64)], hint: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let unit = unit.trim_start();
    let bad = || format!("`{text}` is not valid; expected {hint}");
    if digits.is_empty() {
        return Err(bad());
    }
    let multiplier = if unit.is_empty() {
        1
    } else {
        units
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(bad)?
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// The value in the largest unit that divides it exactly; 0 stays in the
/// smallest unit.
fn largest_exact_unit(value: u64, units: &[(&'static str, u64)]) -> (u64, &'static str) {
    units
        .iter()
        .find(|(_, m)| value != 0 && value.is_multiple_of(*m))
        .map(|(name, m)| (value / m, *name))
        .unwrap_or((value, units[units.len() - 1].0))
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match largest_exact_unit(self.0, SIZE_UNITS) {
            (n, "B") => write!(f, "{n}"),
            (n, unit) => write!(f, "{n}{unit}"),
        }
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = largest_exact_unit(self.0, DURATION_UNITS);
        write!(f, "{n}{unit}")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match largest_exact_unit(self.0, SIZE_UNITS) {
            (_, "B") => serializer.serialize_u64(self.0),
            _ => serializer.collect_str(self),
        }
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Accepts a non-negative integer or a string, and parses the string with
/// `parse`.
struct UnitVisitor {
    hint: &'static str,
    parse: fn(&str) -> Result<u64, String>,
}

impl Visitor<'_> for UnitVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hint)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("`{v}` must not be negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UnitVisitor {
                hint: SIZE_HINT,
                parse: |s| ByteSize::parse(s).map(|b| b.0),
            })
            .map(ByteSize)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UnitVisitor {
                hint: DURATION_HINT,
                parse: |s| Seconds::parse(s).map(|s| s.0),
            })
            .map(Seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_plain_bytes_and_binary_and_decimal_units() {
        assert_eq!(ByteSize::parse("1234"), Ok(ByteSize(1234)));
        assert_eq!(ByteSize::parse("7B"), Ok(ByteSize(7)));
        assert_eq!(ByteSize::parse("2KiB"), Ok(ByteSize(2048)));
        assert_eq!(ByteSize::parse("512MiB"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("1GiB"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("3KB"), Ok(ByteSize(3_000)));
        assert_eq!(ByteSize::parse("3MB"), Ok(ByteSize(3_000_000)));
        assert_eq!(ByteSize::parse("3GB"), Ok(ByteSize(3_000_000_000)));
        assert_eq!(ByteSize::parse(" 4 GiB "), Ok(ByteSize(4 << 30)));
    }

    #[test]
    fn sizes_reject_unknown_units_fractions_and_overflow() {
        for bad in ["", "MiB", "12XB", "1.5GiB", "-1", "10 mib", "1e9"] {
            let err = ByteSize::parse(bad).unwrap_err();
            assert!(err.contains("512MiB"), "{bad}: {err}");
        }
        assert!(
            ByteSize::parse("99999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations_accept_seconds_minutes_hours_and_plain_seconds() {
        assert_eq!(Seconds::parse("45"), Ok(Seconds(45)));
        assert_eq!(Seconds::parse("30s"), Ok(Seconds(30)));
        assert_eq!(Seconds::parse("10m"), Ok(Seconds(600)));
        assert_eq!(Seconds::parse("2h"), Ok(Seconds(7200)));
    }

    #[test]
    fn durations_reject_unknown_units() {
        for bad in ["", "10d", "1h30m", "m", "1.5h"] {
            assert!(Seconds::parse(bad).unwrap_err().contains("10m"), "{bad}");
        }
    }

    #[test]
    fn sizes_display_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(0).to_string(), "0");
        assert_eq!(ByteSize(1000).to_string(), "1KB");
        assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
        assert_eq!(ByteSize(512_000_000).to_string(), "512MB");
        assert_eq!(ByteSize(1023).to_string(), "1023");
    }

    #[test]
    fn durations_display_in_the_largest_exact_unit() {
        assert_eq!(Seconds(0).to_string(), "0s");
        assert_eq!(Seconds(90).to_string(), "90s");
        assert_eq!(Seconds(600).to_string(), "10m");
        assert_eq!(Seconds(7200).to_string(), "2h");
    }

    #[test]
    fn units_round_trip_through_json() {
        for size in [0, 1023, 1000, 512 << 20, 3 << 30] {
            let json = serde_json::to_string(&ByteSize(size)).unwrap();
            assert_eq!(
                serde_json::from_str::<ByteSize>(&json).unwrap(),
                ByteSize(size)
            );
        }
        for secs in [0, 59, 60, 3600, 3601] {
            let json = serde_json::to_string(&Seconds(secs)).unwrap();
            assert_eq!(
                serde_json::from_str::<Seconds>(&json).unwrap(),
                Seconds(secs)
            );
        }
    }
}
