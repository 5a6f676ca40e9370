//! Durations as operators write them: "30s", "30m", "4h", "1d", "2w", or sums such as "1h30m".

use std::time::Duration;

/// Parses `text` ("4h", "1h30m"); the error says what is wrong, for a message naming the key.
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("is empty; write a duration such as \"30m\", \"4h\" or \"1d\"".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in trimmed.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => {
                return Err(format!(
                    "{text:?} has the unit {c:?}; units are s, m, h, d and w (\"1h30m\")"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?}: a number must come before {c:?}"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(|| format!("{text:?} is too long"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "{text:?} ends without a unit; write {digits}s, {digits}m, {digits}h or {digits}d"
        ));
    }
    if total == 0 {
        return Err(format!("{text:?} is zero; write a positive duration"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_units_and_sums() {
        assert_eq!(parse("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse(" 2w "), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["", "4", "h", "4x", "0m", "99999999999999999999d"] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
