//! The options [`Host::backup`](crate::Host::backup) takes, with the ranges the server
//! accepts. The server checks every backup with these same functions, so a plugin that
//! checks its config with them at load refuses a value then, rather than at every run.

use crate::PluginError;

/// The smallest `buffer_size` (the unit of reading, compressing and writing): 64 KiB.
pub const MIN_BUFFER_SIZE: u64 = 64 << 10;
/// The largest `buffer_size`: 64 MiB.
pub const MAX_BUFFER_SIZE: u64 = 64 << 20;

/// Splits a location the server reads as `NAME:key` (a file in the backup destination
/// `NAME` of the server config, such as `offsite:daily/sales.zip`) into its name and key: the
/// name is a lower-case identifier (`local` is the backup directory itself). `None` for a
/// plain path (`daily/sales.zip`, `/mnt/a:b.zip`, `./a:b.zip`).
pub fn split_destination(location: &str) -> Option<(&str, &str)> {
    let (name, rest) = location.split_once(':')?;
    let identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    identifier.then_some((name, rest))
}

/// Parses a size as the server reads it: bytes (`1048576`) or a number with a unit (`512KiB`,
/// `1MiB`, `1GiB`, or the decimal `kB`, `MB`, `GB`).
pub fn parse_size(text: &str) -> Result<u64, PluginError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => {
            return Err(PluginError::InvalidArgument(format!(
                "size '{text}': unknown unit '{unit}'; write bytes or use KiB, MiB, GiB (or kB, MB, GB)"
            )));
        }
    };
    let value: u64 = number.parse().map_err(|_| {
        PluginError::InvalidArgument(format!(
            "size '{text}' is not a number with an optional unit, such as '1MiB'"
        ))
    })?;
    value
        .checked_mul(multiplier)
        .ok_or_else(|| PluginError::InvalidArgument(format!("size '{text}' is too large")))
}

/// Checks a `buffer_size` in bytes: [`MIN_BUFFER_SIZE`] to [`MAX_BUFFER_SIZE`].
pub fn check_buffer_size(bytes: u64) -> Result<u64, PluginError> {
    if (MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(PluginError::InvalidArgument(format!(
            "buffer_size must be between 64KiB and 64MiB, got {bytes} bytes"
        )))
    }
}

/// Checks a `max_rate` in bytes per second: more than 0.
pub fn check_max_rate(bytes_per_second: u64) -> Result<u64, PluginError> {
    if bytes_per_second == 0 {
        Err(PluginError::InvalidArgument(
            "max_rate must be more than 0 (leave it out for no limit)".into(),
        ))
    } else {
        Ok(bytes_per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_ranges_hold() {
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("512 KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("4MB").unwrap(), 4_000_000);
        assert_eq!(parse_size("65536").unwrap(), 65536);
        for bad in ["1 parsec", "MiB", "", "99999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_buffer_size(MIN_BUFFER_SIZE - 1).is_err());
        assert!(check_buffer_size(MAX_BUFFER_SIZE + 1).is_err());
        assert_eq!(check_buffer_size(1 << 20).unwrap(), 1 << 20);
        assert!(check_max_rate(0).is_err());
    }
}
