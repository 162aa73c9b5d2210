//! Durations written for people: `"500ms"`, `"2s"`, `"1m"`, `"1m30s"`.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The units a duration string accepts, largest first (the order `format_duration` tries
/// them in), with their length in nanoseconds.
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Parses a human duration: one or more whole numbers, each followed by a unit (`h`, `m`,
/// `s`, `ms`, `us` or `µs`, `ns`), such as `"500ms"`, `"2s"`, `"1m30s"`. Spaces between the
/// parts are allowed. The error says what is wrong, to follow "got `text`: ".
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("it is empty".to_owned());
    }
    let mut nanos: u128 = 0;
    let too_long = || "it is too long to represent".to_owned();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let number: u128 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = rest[digits..].trim_start();
        if rest.starts_with(['.', ',']) {
            return Err("fractions are not supported: write \"1500ms\", not \"1.5s\"".to_owned());
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let per = match unit {
            "" => return Err(format!("the number {number} has no unit")),
            "µs" => 1_000,
            _ => UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|&(_, per)| per)
                .ok_or_else(|| format!("unknown unit `{unit}`"))?,
        };
        nanos = number
            .checked_mul(per)
            .and_then(|n| nanos.checked_add(n))
            .ok_or_else(too_long)?;
        rest = rest[unit_len..].trim_start();
    }
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_long())?;
    // The remainder is below 10^9, so it fits a u32.
    Ok(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// Formats a duration in the largest unit that holds it exactly, so that it parses back to
/// the same duration: `"500ms"`, `"30s"`, `"2m"`, `"0s"`.
pub(super) fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let (unit, per) = UNITS
        .iter()
        .copied()
        .find(|&(_, per)| nanos % per == 0)
        .unwrap_or(("ns", 1));
    format!("{}{unit}", nanos / per)
}

#[cfg(all(test, not(bulkheads_loom)))]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let ms = Duration::from_millis;
        for (text, expected) in [
            ("500ms", ms(500)),
            ("2s", ms(2_000)),
            ("1m", ms(60_000)),
            ("1h", ms(3_600_000)),
            ("1m30s", ms(90_000)),
            (" 1m 30s ", ms(90_000)),
            ("10 ms", ms(10)),
            ("0s", Duration::ZERO),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            ("1s1ns", Duration::new(1, 1)),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("   ", "empty"),
            ("500", "no unit"),
            ("1.5s", "fractions"),
            ("5 minutes", "unknown unit `minutes`"),
            ("ms", "expected a number"),
            ("-5s", "expected a number"),
            ("99999999999999999999999999999999999999999h", "too long"),
            ("18446744073709551616s", "too long"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn formatted_durations_parse_back() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(3),
            Duration::from_millis(500),
            Duration::from_millis(1_500),
            Duration::from_secs(30),
            Duration::from_secs(90),
            Duration::from_secs(7_200),
            Duration::new(5, 7),
            Duration::MAX,
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
        }
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    }
}
