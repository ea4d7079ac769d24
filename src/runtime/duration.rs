//! Durations as people write them on command lines. Kept rather than
//! `humantime`: flags here take a bare number of seconds and `0` for off,
//! which `humantime` refuses, and a flag's accepted forms must not change.

use std::time::Duration;

/// A duration where `0` means "off".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionalDuration(pub Option<Duration>);

/// Parses a duration as [`parse_duration`] does, or `0` (off).
pub fn parse_optional_duration(text: &str) -> Result<OptionalDuration, BadDuration> {
    if text.trim() == "0" || text.trim() == "0s" {
        return Ok(OptionalDuration(None));
    }
    parse_duration(text).map(|d| OptionalDuration(Some(d)))
}

/// Parses `90s`, `5m`, `1h`, `250ms` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| BadDuration::NotADuration(text.to_owned()))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(BadDuration::UnknownUnit { unit: unit.to_owned(), text: text.to_owned() }),
    };
    if seconds <= 0.0 || !seconds.is_finite() {
        return Err(BadDuration::NotPositive(text.to_owned()));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A flag's value that is no duration.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BadDuration {
    #[error("{0:?} is not a duration such as 30s, 5m or 1h")]
    NotADuration(String),
    #[error("unknown unit {unit:?} in {text:?}: use ms, s, m or h")]
    UnknownUnit { unit: String, text: String },
    #[error("{0:?} must be a positive duration")]
    NotPositive(String),
}
