//! Durations (`"250ms"`, `"2s"`, `"1m30s"`) and sizes (`"64KiB"`, `"16MiB"`) as
//! written in the config file.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("`{0}` is not a duration (write e.g. \"250ms\", \"2s\", \"5m\", \"1h\" or \"1m30s\")")]
    Duration(String),
    #[error("`{0}` is not a size (write e.g. \"512B\", \"64KiB\", \"16MiB\", \"1GiB\")")]
    Size(String),
    #[error("`{0}` is too large")]
    Overflow(String),
}

/// Parses one or more `<number><unit>` groups; units are `ms`, `s`, `m`, `h`.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let err = || UnitError::Duration(s.to_owned());
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| UnitError::Overflow(s.to_owned()))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(err)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(err)?),
            _ => return Err(err()),
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| UnitError::Overflow(s.to_owned()))?;
    }
    Ok(total)
}

/// Parses `<number>[unit]`; binary units (`KiB`, `MiB`, `GiB`) are powers of
/// 1024, decimal ones (`KB`, `MB`, `GB`) powers of 1000; no unit means bytes.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(UnitError::Size(s.to_owned()));
    }
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| UnitError::Overflow(s.to_owned()))?;
    let mult: u64 = match t[digits..].trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(UnitError::Size(s.to_owned())),
    };
    n.checked_mul(mult)
        .ok_or_else(|| UnitError::Overflow(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["", "2", "s", "2 s", "2sec", "-1s", "1.5s", "2s3"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(UnitError::Overflow(_))
        ));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        for bad in ["", "KiB", "1.5MiB", "12 parsecs", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            parse_size("99999999999GiB"),
            Err(UnitError::Overflow(_))
        ));
    }
}
