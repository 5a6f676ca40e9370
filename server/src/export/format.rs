//! The export format (docs/FORMATS.md, "Export format"): gzip-compressed JSON lines. The
//! first line is the [`Header`], then one [`Entry`] per schema object; a table's entry is
//! followed by its rows, one JSON array per line; the last line is the [`Entry::End`].
//!
//! Values keep their SQLite storage class exactly: integers are JSON integers, finite reals
//! are JSON numbers written with a fraction or exponent (shortest round-trip form, so the
//! bits come back), text is a JSON string, and what JSON cannot say plainly is an object
//! with one key: `{"real": "Infinity" | "-Infinity" | "NaN"}`, `{"blob": base64}`, and
//! `{"text_base64": base64}` for text that is not valid UTF-8.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rusqlite::types::{Value, ValueRef};
use serde::{Deserialize, Serialize};

/// `format` of every header.
pub const FORMAT_NAME: &str = "cairn-export";
/// The version this server writes; it reads this one only (see the version log).
pub const FORMAT_VERSION: u32 = 1;
/// The longest line (a row's encoded values) a writer writes and a reader accepts: an
/// import holds one line in memory at a time, so this bounds its memory whatever the file.
pub const MAX_LINE_BYTES: usize = 256 << 20;

/// The first line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub server_version: String,
    pub sqlite_version: String,
    pub database: String,
    /// When the read transaction began (RFC 3339, UTC).
    pub created_at: String,
    /// Database settings that must be chosen before the first table exists.
    pub encoding: String,
    pub page_size: i64,
    pub auto_vacuum: i64,
    pub user_version: i64,
    pub application_id: i64,
    /// How many table entries and rows follow, for progress and for the final check.
    pub tables: u64,
    pub rows: u64,
}

/// One line after the header that is not a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Entry {
    /// A table and how its `rows` rows that follow are laid out. `sql` is `None` for a
    /// table SQLite makes itself (`sqlite_sequence`, `sqlite_stat1`, a virtual table's
    /// shadow tables): the import replaces its rows instead of creating it.
    Table {
        name: String,
        sql: Option<String>,
        /// The name the rowid is written under (first in each row), or `None` when the table
        /// has no rowid of its own (WITHOUT ROWID, virtual, or an INTEGER PRIMARY KEY alias).
        rowid: Option<String>,
        /// The stored columns in row order (generated and hidden columns are left out).
        columns: Vec<String>,
        rows: u64,
    },
    Index {
        name: String,
        table: String,
        sql: String,
    },
    View {
        name: String,
        sql: String,
    },
    Trigger {
        name: String,
        table: String,
        sql: String,
    },
    /// The last line: what came before it, so a file cut at a line boundary is detected.
    End {
        tables: u64,
        rows: u64,
    },
}

/// Appends one value, as JSON, to `out`.
pub fn write_value(out: &mut Vec<u8>, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::Integer(i) => {
            let mut buffer = itoa::Buffer::new();
            out.extend_from_slice(buffer.format(i).as_bytes());
        }
        ValueRef::Real(r) if r.is_finite() => {
            let mut buffer = ryu::Buffer::new();
            // ryu writes "1.0" and "1e300": always a fraction or an exponent, so a reader
            // tells it from an integer.
            out.extend_from_slice(buffer.format_finite(r).as_bytes());
        }
        ValueRef::Real(r) => {
            let name = if r.is_nan() {
                "NaN"
            } else if r > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            out.extend_from_slice(br#"{"real":""#);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(br#""}"#);
        }
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => write_string(out, text),
            Err(_) => {
                out.extend_from_slice(br#"{"text_base64":""#);
                out.extend_from_slice(BASE64.encode(bytes).as_bytes());
                out.extend_from_slice(br#""}"#);
            }
        },
        ValueRef::Blob(bytes) => {
            out.extend_from_slice(br#"{"blob":""#);
            out.extend_from_slice(BASE64.encode(bytes).as_bytes());
            out.extend_from_slice(br#""}"#);
        }
    }
}

/// Appends `text` as a JSON string.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// A value read back: what to bind. Text that is not UTF-8 comes back as raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Value(Value),
    RawText(Vec<u8>),
}

/// Reads one value written by [`write_value`].
pub fn read_value(json: serde_json::Value) -> Result<Decoded, String> {
    use serde_json::Value as Json;
    Ok(Decoded::Value(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => return Err(format!("{b} is not a value this format writes")),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Integer(i)
            } else if n.is_u64() {
                return Err(format!("integer {n} is out of SQLite's 64-bit range"));
            } else {
                Value::Real(n.as_f64().ok_or_else(|| format!("bad number {n}"))?)
            }
        }
        Json::String(s) => Value::Text(s),
        Json::Array(_) => return Err("a nested array is not a value this format writes".into()),
        Json::Object(map) => {
            let mut entries = map.into_iter();
            let (Some((key, Json::String(text))), None) = (entries.next(), entries.next()) else {
                return Err(
                    "an object value must be one of {\"blob\": …}, {\"real\": …}, {\"text_base64\": …}"
                        .into(),
                );
            };
            let base64 = |text: &str| {
                BASE64
                    .decode(text)
                    .map_err(|e| format!("bad base64 in \"{key}\": {e}"))
            };
            match key.as_str() {
                "blob" => Value::Blob(base64(&text)?),
                "text_base64" => return Ok(Decoded::RawText(base64(&text)?)),
                "real" => Value::Real(match text.as_str() {
                    "Infinity" => f64::INFINITY,
                    "-Infinity" => f64::NEG_INFINITY,
                    "NaN" => f64::NAN,
                    other => {
                        return Err(format!(
                            "{{\"real\": {other:?}}}: expected Infinity, -Infinity or NaN"
                        ));
                    }
                }),
                other => {
                    return Err(format!(
                        "unknown value object key \"{other}\" (expected blob, real or text_base64)"
                    ));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: Value) -> Decoded {
        let mut out = Vec::new();
        write_value(&mut out, ValueRef::from(&value));
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        read_value(json).unwrap()
    }

    #[test]
    fn every_storage_class_comes_back_exactly() {
        let values = [
            Value::Null,
            Value::Integer(0),
            Value::Integer(i64::MIN),
            Value::Integer(i64::MAX),
            Value::Real(1.0),
            Value::Real(0.1),
            Value::Real(f64::MIN_POSITIVE),
            Value::Real(5e-324),
            Value::Real(f64::MAX),
            Value::Real(f64::INFINITY),
            Value::Real(f64::NEG_INFINITY),
            Value::Text(String::new()),
            Value::Text("nul\0inside, emoji 🦀, quote \" and \\".into()),
            Value::Blob(Vec::new()),
            Value::Blob(vec![0, 255, 10, 13]),
        ];
        for value in values {
            assert_eq!(round_trip(value.clone()), Decoded::Value(value));
        }
        for bits in [
            (-0.0f64).to_bits(),
            0x3fb9_9999_9999_999a,
            0x0000_0000_0000_0001,
        ] {
            let Decoded::Value(Value::Real(back)) = round_trip(Value::Real(f64::from_bits(bits)))
            else {
                panic!("not a real");
            };
            assert_eq!(back.to_bits(), bits);
        }
        let Decoded::Value(Value::Real(nan)) = round_trip(Value::Real(f64::NAN)) else {
            panic!("not a real");
        };
        assert!(nan.is_nan());
    }

    #[test]
    fn text_that_is_not_utf8_keeps_its_bytes() {
        let mut out = Vec::new();
        write_value(&mut out, ValueRef::Text(b"\xff\xfe ok"));
        let json = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            read_value(json).unwrap(),
            Decoded::RawText(b"\xff\xfe ok".to_vec())
        );
    }

    #[test]
    fn values_this_format_never_writes_are_refused() {
        for text in [
            "true",
            "[1]",
            r#"{"blob":"!!"}"#,
            r#"{"real":"big"}"#,
            r#"{"x":"1"}"#,
            "18446744073709551615",
        ] {
            let json = serde_json::from_str(text).unwrap();
            assert!(read_value(json).is_err(), "{text} was accepted");
        }
    }
}
