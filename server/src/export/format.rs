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
/// The longest row line (a row's encoded values, without its newline) a writer writes and a
/// reader accepts: an import holds one line in memory at a time, so this bounds its memory
/// whatever the file.
pub const MAX_LINE_BYTES: usize = 256 << 20;
/// The longest other line (the header, a schema entry): they are read whole into their
/// fields, so they are bounded much lower than rows.
pub const MAX_ENTRY_BYTES: usize = 4 << 20;

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

/// Reads one row line written by the writer: a JSON array of exactly `width` values. It is
/// read straight into the values, refusing the first one too many and anything that is not
/// a value (an array, an object of more than one key), so a crafted line never costs more
/// memory than the values a row of its table can hold.
pub fn read_row(line: &[u8], width: usize) -> Result<Vec<Decoded>, RowError> {
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let values = serde::de::DeserializeSeed::deserialize(Row { width }, &mut deserializer)
        .map_err(RowError::Malformed)?;
    deserializer.end().map_err(RowError::Malformed)?;
    if values.len() != width {
        return Err(RowError::Width(values.len()));
    }
    Ok(values)
}

/// Why a row line was refused.
#[derive(Debug)]
pub enum RowError {
    /// Not JSON, not a value this format writes, or more values than the table has.
    Malformed(serde_json::Error),
    /// Fewer values than the table has: this many.
    Width(usize),
}

/// A row of `width` values, as a `serde` seed.
struct Row {
    width: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Row {
    type Value = Vec<Decoded>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Decoded>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Row {
    type Value = Vec<Decoded>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a row: an array of {} values", self.width)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Decoded>, A::Error> {
        use serde::de::Error;
        let mut values = Vec::with_capacity(self.width.min(4096));
        while let Some(cell) = seq.next_element::<Cell>()? {
            if values.len() == self.width {
                return Err(A::Error::custom(format!(
                    "more values than the {} its table's entry declares",
                    self.width
                )));
            }
            values.push(cell.decode().map_err(A::Error::custom)?);
        }
        Ok(values)
    }
}

/// One value as JSON writes it, before it is decoded.
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    /// `{"blob": …}`, `{"real": …}`, `{"text_base64": …}`.
    Tagged(String, String),
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cell, D::Error> {
        d.deserialize_any(CellVisitor)
    }
}

struct CellVisitor;

impl<'de> serde::de::Visitor<'de> for CellVisitor {
    type Value = Cell;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "a value: null, a number, a string, or {\"blob\"|\"real\"|\"text_base64\": string}",
        )
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Cell, E> {
        Ok(Cell::Null)
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Cell, E> {
        Err(E::custom(format!("{b} is not a value this format writes")))
    }

    fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<Cell, E> {
        Ok(Cell::Integer(i))
    }

    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<Cell, E> {
        i64::try_from(u)
            .map(Cell::Integer)
            .map_err(|_| E::custom(format!("integer {u} is out of SQLite's 64-bit range")))
    }

    fn visit_f64<E: serde::de::Error>(self, r: f64) -> Result<Cell, E> {
        Ok(Cell::Real(r))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Cell, E> {
        Ok(Cell::Text(text.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Cell, E> {
        Ok(Cell::Text(text))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Cell, A::Error> {
        Err(serde::de::Error::custom(
            "a nested array is not a value this format writes",
        ))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
        use serde::de::Error;
        let one_key = || {
            A::Error::custom(
                "an object value must be one of {\"blob\": …}, {\"real\": …}, {\"text_base64\": …}",
            )
        };
        let key: String = map.next_key()?.ok_or_else(one_key)?;
        let text: String = map.next_value()?;
        if map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            return Err(one_key());
        }
        Ok(Cell::Tagged(key, text))
    }
}

impl Cell {
    fn decode(self) -> Result<Decoded, String> {
        Ok(Decoded::Value(match self {
            Cell::Null => Value::Null,
            Cell::Integer(i) => Value::Integer(i),
            Cell::Real(r) => Value::Real(r),
            Cell::Text(text) => Value::Text(text),
            Cell::Tagged(key, text) => {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-value row as the writer writes it, read back.
    fn read_one(value: &[u8]) -> Result<Decoded, RowError> {
        let line = [b"[", value, b"]"].concat();
        read_row(&line, 1).map(|mut row| row.remove(0))
    }

    fn round_trip(value: Value) -> Decoded {
        let mut out = Vec::new();
        write_value(&mut out, ValueRef::from(&value));
        read_one(&out).unwrap()
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
        assert_eq!(
            read_one(&out).unwrap(),
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
            r#"{"blob":"AA==","real":"NaN"}"#,
            r#"{"blob":[0,0,0]}"#,
            "18446744073709551615",
        ] {
            assert!(read_one(text.as_bytes()).is_err(), "{text} was accepted");
        }
    }

    #[test]
    fn crafted_export_a_row_holds_no_more_values_than_its_table() {
        // A hundred million zeros would cost gigabytes as JSON values: refused at the first
        // value too many.
        let mut line = b"[0".to_vec();
        for _ in 0..1_000_000 {
            line.extend_from_slice(b",0");
        }
        line.push(b']');
        let Err(RowError::Malformed(e)) = read_row(&line, 3) else {
            panic!("a row of a million values was accepted for a table of 3");
        };
        assert!(e.to_string().contains("more values than the 3"), "{e}");
        assert!(matches!(read_row(b"[1,2]", 3), Err(RowError::Width(2))));
        assert!(matches!(
            read_row(b"[1,2,3] x", 3),
            Err(RowError::Malformed(_))
        ));
        assert_eq!(read_row(b"[1,2,3]", 3).unwrap().len(), 3);
    }
}
