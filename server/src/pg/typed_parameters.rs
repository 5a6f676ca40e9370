//! Parameters of PostgreSQL's types that SQLite has no type for: date, time, timestamp,
//! timestamptz, uuid, json, jsonb and numeric, as drivers send them (psycopg 3 names their
//! types in its Parse; a driver that binds them in binary sends PostgreSQL's binary forms).
//! Each is stored as PostgreSQL's text form of it: `2024-01-02`, `2024-01-02 03:04:05.5`,
//! `2024-01-02 03:04:05+00`, a hyphenated uuid, the JSON text, the decimal digits.

use bytes::Bytes;
use pgwire::api::Type;

/// The text to store for a parameter of `ty`, if it is one of these types: from its text
/// form as sent, or from its binary form. `Err`: a value that is not of its type.
pub fn text_of(ty: &Type, binary: bool, raw: &Bytes) -> Option<Result<String, String>> {
    let known = [
        Type::DATE,
        Type::TIME,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::UUID,
        Type::JSON,
        Type::JSONB,
        Type::NUMERIC,
    ];
    if !known.contains(ty) {
        return None;
    }
    if !binary {
        return Some(
            std::str::from_utf8(raw)
                .map(str::to_owned)
                .map_err(|_| format!("a {} parameter is not UTF-8 text", ty.name())),
        );
    }
    Some(match *ty {
        Type::DATE => fixed::<4>(raw, ty).and_then(|b| date(i32::from_be_bytes(b))),
        Type::TIME => fixed::<8>(raw, ty).and_then(|b| time_of_day(i64::from_be_bytes(b))),
        Type::TIMESTAMP => fixed::<8>(raw, ty).and_then(|b| timestamp(i64::from_be_bytes(b), "")),
        Type::TIMESTAMPTZ => {
            fixed::<8>(raw, ty).and_then(|b| timestamp(i64::from_be_bytes(b), "+00"))
        }
        Type::UUID => fixed::<16>(raw, ty).map(|b| uuid::Uuid::from_bytes(b).to_string()),
        Type::JSON => json_text(raw),
        // jsonb's binary form: a version byte (1), then the JSON text.
        Type::JSONB => match raw.split_first() {
            Some((1, text)) => json_text(text),
            _ => Err("a jsonb parameter in binary starts with version 1".into()),
        },
        _ => numeric(raw),
    })
}

fn fixed<const N: usize>(raw: &[u8], ty: &Type) -> Result<[u8; N], String> {
    raw.try_into().map_err(|_| {
        format!(
            "a {} parameter in binary has {N} bytes, not {}",
            ty.name(),
            raw.len()
        )
    })
}

fn json_text(raw: &[u8]) -> Result<String, String> {
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|_| "a json parameter is not UTF-8 text".into())
}

/// PostgreSQL counts days and microseconds from 2000-01-01.
fn epoch() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

fn date(days: i32) -> Result<String, String> {
    match days {
        i32::MAX => return Ok("infinity".into()),
        i32::MIN => return Ok("-infinity".into()),
        _ => {}
    }
    epoch()
        .date()
        .checked_add_signed(chrono::Duration::days(days.into()))
        .map(|day| calendar(&day))
        .ok_or_else(|| "a date parameter is out of range".into())
}

/// `at` (microseconds from 2000) with `zone` after the time, as PostgreSQL writes it.
fn timestamp(micros: i64, zone: &str) -> Result<String, String> {
    match micros {
        i64::MAX => return Ok("infinity".into()),
        i64::MIN => return Ok("-infinity".into()),
        _ => {}
    }
    let at = epoch()
        .checked_add_signed(chrono::Duration::microseconds(micros))
        .ok_or_else(|| "a timestamp parameter is out of range".to_owned())?;
    let day = calendar(&at.date());
    let (day, era) = split_era(&day);
    let clock = trim_fraction(at.format("%H:%M:%S%.6f").to_string());
    Ok(format!("{day} {clock}{zone}{era}"))
}

/// A day as PostgreSQL writes it: `2024-01-02`, `10000-01-01`, `0044-03-15 BC`.
fn calendar(day: &chrono::NaiveDate) -> String {
    use chrono::Datelike;
    let (year, era) = match day.year() {
        y if y <= 0 => (1 - y, " BC"),
        y => (y, ""),
    };
    format!("{year:04}-{:02}-{:02}{era}", day.month(), day.day())
}

/// `0044-03-15 BC` as its day and ` BC`, which goes after the time.
fn split_era(day: &str) -> (&str, &str) {
    match day.strip_suffix(" BC") {
        Some(day) => (day, " BC"),
        None => (day, ""),
    }
}

fn time_of_day(micros: i64) -> Result<String, String> {
    if !(0..=86_400_000_000).contains(&micros) {
        return Err("a time parameter is out of range (00:00:00 to 24:00:00)".into());
    }
    let seconds = micros / 1_000_000;
    let fraction = micros % 1_000_000;
    Ok(trim_fraction(format!(
        "{:02}:{:02}:{:02}.{fraction:06}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )))
}

/// `03:04:05.500000` as PostgreSQL writes it: `03:04:05.5`, and no fraction when it is 0.
fn trim_fraction(text: String) -> String {
    match text.rsplit_once('.') {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                whole.to_owned()
            } else {
                format!("{whole}.{fraction}")
            }
        }
        None => text,
    }
}

/// numeric's binary form: digit count, weight (of the first base-10000 digit), sign,
/// display scale, then the base-10000 digits.
fn numeric(raw: &[u8]) -> Result<String, String> {
    let word = |at: usize| {
        raw.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a numeric parameter in binary is cut short".to_owned())
    };
    let count = word(0)? as usize;
    let weight = word(2)? as i16 as i32;
    let sign = word(4)?;
    let scale = word(6)? as usize;
    // PostgreSQL's own bounds, which also bound the text made here.
    if scale > 0x3FFF || !(-0x3FFF..=0x3FFF).contains(&weight) {
        return Err("a numeric parameter's scale or weight is out of range".into());
    }
    if raw.len() != 8 + 2 * count {
        return Err("a numeric parameter in binary has bytes past its digits".into());
    }
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        0x0000 | 0x4000 => {}
        other => {
            return Err(format!(
                "a numeric parameter has an unknown sign {other:#x}"
            ));
        }
    }
    let digits = (0..count)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<Vec<u16>, String>>()?;
    if digits.iter().any(|d| *d > 9999) {
        return Err("a numeric parameter has a digit above 9999".into());
    }
    // The base-10000 digit at weight `w` (0 past those sent).
    let digit_at = |w: i32| {
        usize::try_from(weight - w)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    // The integer part: weights weight..=0.
    let mut whole = String::new();
    for w in (0..=weight.max(0)).rev() {
        let digit = digit_at(w);
        if whole.is_empty() {
            if digit != 0 || w == 0 {
                whole.push_str(&digit.to_string());
            }
        } else {
            whole.push_str(&format!("{digit:04}"));
        }
    }
    if whole.is_empty() {
        whole.push('0');
    }
    let mut fraction = String::new();
    let mut w = -1;
    while fraction.len() < scale {
        fraction.push_str(&format!("{:04}", digit_at(w)));
        w -= 1;
    }
    fraction.truncate(scale);
    let nonzero = whole.bytes().chain(fraction.bytes()).any(|b| b != b'0');
    let sign = if sign == 0x4000 && nonzero { "-" } else { "" };
    Ok(if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(ty: Type, raw: &[u8]) -> String {
        text_of(&ty, true, &Bytes::copy_from_slice(raw))
            .unwrap()
            .unwrap()
    }

    /// psycopg 3 named these types in its Parse and asyncpg sends them in binary: each was
    /// refused ("has type date, which Cairn does not take").
    #[test]
    fn date_time_uuid_json_and_numeric_parameters_were_refused() {
        assert_eq!(binary(Type::DATE, &8767i32.to_be_bytes()), "2024-01-02");
        assert_eq!(binary(Type::DATE, &(-1i32).to_be_bytes()), "1999-12-31");
        let at = (8767i64 * 86_400 + 3 * 3600 + 4 * 60 + 5) * 1_000_000 + 500_000;
        assert_eq!(
            binary(Type::TIMESTAMP, &at.to_be_bytes()),
            "2024-01-02 03:04:05.5"
        );
        assert_eq!(
            binary(Type::TIMESTAMPTZ, &(at - 500_000).to_be_bytes()),
            "2024-01-02 03:04:05+00"
        );
        assert_eq!(
            binary(Type::TIME, &3_723_000_001i64.to_be_bytes()),
            "01:02:03.000001"
        );
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(binary(Type::UUID, id.as_bytes()), id.to_string());
        assert_eq!(binary(Type::JSONB, b"\x01{\"a\":1}"), "{\"a\":1}");
        // 12.50: digits [12, 5000], weight 0, scale 2; -0.0012: [12], weight -1, scale 4.
        let numeric = |digits: &[u16], weight: i16, negative: bool, scale: u16| {
            let mut raw = Vec::new();
            raw.extend_from_slice(&(digits.len() as u16).to_be_bytes());
            raw.extend_from_slice(&weight.to_be_bytes());
            raw.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
            raw.extend_from_slice(&scale.to_be_bytes());
            for d in digits {
                raw.extend_from_slice(&d.to_be_bytes());
            }
            binary(Type::NUMERIC, &raw)
        };
        assert_eq!(numeric(&[12, 5000], 0, false, 2), "12.50");
        assert_eq!(numeric(&[12], -1, true, 4), "-0.0012");
        assert_eq!(numeric(&[1, 0], 1, false, 0), "10000");
        assert_eq!(numeric(&[], 0, false, 0), "0");
        assert_eq!(numeric(&[12], -1, true, 2), "0.00", "no negative zero");
        // PostgreSQL's infinities and eras; out-of-range values refused.
        assert_eq!(binary(Type::DATE, &i32::MAX.to_be_bytes()), "infinity");
        assert_eq!(
            binary(Type::TIMESTAMPTZ, &i64::MIN.to_be_bytes()),
            "-infinity"
        );
        let bc: i32 = -(730_120 + 44 * 365);
        assert!(binary(Type::DATE, &bc.to_be_bytes()).ends_with(" BC"));
        assert!(
            text_of(
                &Type::TIME,
                true,
                &Bytes::copy_from_slice(&(-1i64).to_be_bytes())
            )
            .unwrap()
            .is_err()
        );
        let huge = [0u8, 1, 0x7f, 0xff, 0, 0, 0xff, 0xff, 0, 1];
        assert!(
            text_of(&Type::NUMERIC, true, &Bytes::copy_from_slice(&huge))
                .unwrap()
                .is_err()
        );
        // Text forms are kept as sent; broken ones are refused, saying what.
        assert_eq!(
            text_of(&Type::DATE, false, &Bytes::from_static(b"2024-01-02")),
            Some(Ok("2024-01-02".into()))
        );
        assert!(
            text_of(&Type::UUID, true, &Bytes::from_static(b"short"))
                .unwrap()
                .is_err()
        );
        assert!(
            text_of(&Type::NUMERIC, true, &Bytes::from_static(b"\0"))
                .unwrap()
                .is_err()
        );
        assert_eq!(text_of(&Type::INT4, false, &Bytes::new()), None);
    }
}
