//! Between session results and wire messages: rows to `DataRow`s with the described types,
//! wire parameters to SQLite values, and errors to `ErrorResponse`s.

use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use rusqlite::types::{Value, ValueRef};

use super::array_values::{self, ArrayValue};
use super::typed_parameters;
use crate::session::{Column, CommandTag, Executed, TransactionChange};
use crate::sql::types::SqlType;
use crate::sqlstate::{self, SqlError};

/// The PostgreSQL type a column or parameter is described with.
pub fn pg_type(ty: SqlType) -> Type {
    match ty {
        SqlType::Int8 => Type::INT8,
        SqlType::Float8 => Type::FLOAT8,
        SqlType::Text => Type::TEXT,
        SqlType::Bytea => Type::BYTEA,
        SqlType::Bool => Type::BOOL,
        SqlType::TextArray => Type::TEXT_ARRAY,
        SqlType::BoolArray => Type::BOOL_ARRAY,
        SqlType::Int8Array => Type::INT8_ARRAY,
        SqlType::Float8Array => Type::FLOAT8_ARRAY,
        SqlType::OidArray => Type::OID_ARRAY,
        SqlType::Int2Vector => Type::INT2_VECTOR,
        SqlType::OidVector => Type::OID_VECTOR,
    }
}

pub fn error_response(error: SqlError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        error.code.into(),
        error.message,
    )))
}

pub fn fields(columns: &[Column], format: &Format) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            FieldInfo::new(
                c.name.clone(),
                None,
                None,
                pg_type(c.ty),
                format.format_for(i),
            )
        })
        .collect()
}

/// The wire response of a statement that returned no rows (rows stream through `stream`).
pub fn command_response(executed: &Executed) -> Response {
    let tag = wire_tag(&executed.tag);
    match executed.transaction {
        TransactionChange::Started => Response::TransactionStart(tag),
        TransactionChange::Ended => Response::TransactionEnd(tag),
        TransactionChange::Unchanged => Response::Execution(tag),
    }
}

pub(super) fn wire_tag(tag: &CommandTag) -> Tag {
    let wire = Tag::new(&tag.command);
    match (tag.command.as_str(), tag.rows) {
        ("INSERT", Some(rows)) => wire.with_oid(0).with_rows(rows),
        (_, Some(rows)) => wire.with_rows(rows),
        (_, None) => wire,
    }
}

/// Encodes a value as its column's described type. SQLite lets any column hold any class;
/// values convert where nothing is lost, and otherwise the client gets an error naming the
/// column rather than a value it would misread.
pub(super) fn encode_value(
    encoder: &mut super::stream::RowWriter<'_>,
    value: ValueRef<'_>,
    column: &Column,
) -> PgWireResult<()> {
    // An unnamed expression's column is `?column?`: the hint names no column then.
    let operand = if column.name == "?column?" {
        "the expression"
    } else {
        column.name.as_str()
    };
    let mismatch = |class: &str| {
        error_response(SqlError::new(
            sqlstate::DATATYPE_MISMATCH,
            format!(
                "column \"{}\" is described as {} but holds a {class} value that does not convert; CAST it in the query (for example CAST({operand} AS TEXT))",
                column.name,
                pg_type(column.ty).name(),
            ),
        ))
    };
    // SQLite stores whatever bytes it was given as text; the wire carries UTF-8 only.
    let text = |bytes| {
        std::str::from_utf8(bytes).map_err(|_| {
            error_response(SqlError::new(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "column \"{}\" holds text that is not valid UTF-8; read it as bytes with CAST({} AS BLOB)",
                    column.name, column.name
                ),
            ))
        })
    };
    match (column.ty, value) {
        (_, ValueRef::Null) => encoder.encode_field(&None::<i64>),
        (SqlType::Int8, ValueRef::Integer(i)) => encoder.encode_integer(i),
        (SqlType::Int8, ValueRef::Real(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
            encoder.encode_integer(f as i64)
        }
        (SqlType::Int8, ValueRef::Text(t)) => match text(t)?.trim().parse::<i64>() {
            Ok(i) => encoder.encode_integer(i),
            Err(_) => Err(mismatch("text")),
        },
        (SqlType::Int8, ValueRef::Real(_)) => Err(mismatch("real")),
        (SqlType::Int8, ValueRef::Blob(_)) => Err(mismatch("blob")),
        (SqlType::Float8, ValueRef::Real(f)) => encoder.encode_field(&Float8(f)),
        (SqlType::Float8, ValueRef::Integer(i)) => encoder.encode_field(&Float8(i as f64)),
        (SqlType::Float8, ValueRef::Text(t)) => match text(t)?.trim().parse::<f64>() {
            Ok(f) => encoder.encode_field(&Float8(f)),
            Err(_) => Err(mismatch("text")),
        },
        (SqlType::Float8, ValueRef::Blob(_)) => Err(mismatch("blob")),
        (SqlType::Text, ValueRef::Text(t)) => encoder.encode_field(&text(t)?),
        (SqlType::Text, ValueRef::Integer(i)) => encoder.encode_field(&i.to_string()),
        (SqlType::Text, ValueRef::Real(f)) => encoder.encode_field(&f.to_string()),
        (SqlType::Text, ValueRef::Blob(b)) => encoder.encode_field(&hex_escape(b)),
        (SqlType::Bytea, ValueRef::Blob(b)) => encoder.encode_field(&b),
        (SqlType::Bytea, ValueRef::Text(t)) => encoder.encode_field(&t),
        (SqlType::Bytea, ValueRef::Integer(i)) => encoder.encode_field(&i.to_string().into_bytes()),
        (SqlType::Bytea, ValueRef::Real(f)) => encoder.encode_field(&f.to_string().into_bytes()),
        // SQLite keeps a boolean as 0 or 1 (TRUE and FALSE are those integers).
        (SqlType::Bool, ValueRef::Integer(i)) => encoder.encode_field(&(i != 0)),
        (SqlType::Bool, ValueRef::Real(f)) => encoder.encode_field(&(f != 0.0)),
        (SqlType::Bool, ValueRef::Text(t)) => match bool_literal(text(t)?) {
            Some(b) => encoder.encode_field(&b),
            None => Err(mismatch("text")),
        },
        (SqlType::Bool, ValueRef::Blob(_)) => Err(mismatch("blob")),
        (SqlType::TextArray, ValueRef::Text(t)) => encoder.encode_field(&ArrayValue::Text(
            crate::pgcompat::arrays::elements(text(t)?),
        )),
        (SqlType::TextArray, ValueRef::Integer(i)) => {
            encoder.encode_field(&ArrayValue::Text(vec![Some(i.to_string())]))
        }
        (SqlType::TextArray, ValueRef::Real(f)) => {
            encoder.encode_field(&ArrayValue::Text(vec![Some(f.to_string())]))
        }
        (SqlType::TextArray, ValueRef::Blob(_)) => Err(mismatch("blob")),
        (SqlType::BoolArray, ValueRef::Text(t)) => {
            let elements = crate::pgcompat::arrays::elements(text(t)?);
            let bools: Option<Vec<Option<bool>>> = elements
                .iter()
                .map(|e| match e {
                    None => Some(None),
                    Some(e) => bool_literal(e).map(Some),
                })
                .collect();
            match bools {
                Some(bools) => encoder.encode_field(&ArrayValue::Bool(bools)),
                None => Err(mismatch("text")),
            }
        }
        (SqlType::BoolArray, _) => Err(mismatch("a value that is not an array")),
        // Only parameters are typed so; a value read back is its array's text.
        (SqlType::Int8Array | SqlType::Float8Array | SqlType::OidArray, ValueRef::Text(t)) => {
            encoder.encode_field(&ArrayValue::Text(crate::pgcompat::arrays::elements(text(
                t,
            )?)))
        }
        (SqlType::Int2Vector | SqlType::OidVector, ValueRef::Text(t)) => {
            let numbers: Option<Vec<i64>> = text(t)?
                .split_whitespace()
                .map(|n| n.parse().ok())
                .collect();
            match numbers {
                Some(numbers) => encoder.encode_field(&ArrayValue::Vector(column.ty, numbers)),
                None => Err(mismatch("text")),
            }
        }
        (SqlType::Int2Vector | SqlType::OidVector, ValueRef::Integer(i)) => {
            encoder.encode_field(&ArrayValue::Vector(column.ty, vec![i]))
        }
        (SqlType::Int2Vector | SqlType::OidVector, _) => {
            Err(mismatch("a value that is not a vector"))
        }
        (SqlType::Int8Array | SqlType::Float8Array | SqlType::OidArray, _) => {
            Err(mismatch("a value that is not an array"))
        }
    }
}

/// PostgreSQL's spellings of a boolean (`t`, `true`, `yes`, `on`, `1`, and their opposites),
/// as text a BOOLEAN column may hold.
fn bool_literal(text: &str) -> Option<bool> {
    let t = text.trim();
    let is = |words: &[&str]| words.iter().any(|w| t.eq_ignore_ascii_case(w));
    if is(&["t", "true", "y", "yes", "on", "1"]) {
        Some(true)
    } else if is(&["f", "false", "n", "no", "off", "0"]) {
        Some(false)
    } else {
        None
    }
}

/// A float8 as PostgreSQL writes it: with `extra_float_digits` at 1 or more (its default
/// since PostgreSQL 12), the shortest digits that read back the same value, in `%g`'s
/// layout (`1`, `-2.5`, `1e+21`, `1e-05`, `Infinity`); below that, as pgwire rounds it.
#[derive(Debug, Clone, Copy)]
struct Float8(f64);

impl postgres_types::ToSql for Float8 {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <f64 as postgres_types::ToSql>::accepts(ty)
    }

    postgres_types::to_sql_checked!();
}

impl pgwire::types::ToSqlText for Float8 {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
        format_options: &pgwire::types::format::FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if format_options.extra_float_digits < 1 {
            return self.0.to_sql_text(ty, out, format_options);
        }
        out.extend_from_slice(float8_text(self.0).as_bytes());
        Ok(postgres_types::IsNull::No)
    }
}

/// PostgreSQL's shortest text of a float8 (float8out with extra_float_digits ≥ 1).
pub(super) fn float8_text(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest digits that read back the same value.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    // PostgreSQL's layout is %g's with 15 digits: exponential below 1e-4 and from 1e15.
    if !(-4..15).contains(&exponent) {
        let (esign, magnitude) = if exponent < 0 {
            ('-', -exponent)
        } else {
            ('+', exponent)
        };
        return format!("{sign}{mantissa}e{esign}{magnitude:02}");
    }
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let point = exponent + 1;
    let fixed = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if digits.len() <= point as usize {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        format!("{whole}.{fraction}")
    };
    format!("{sign}{fixed}")
}

/// PostgreSQL's text form of bytea: `\x` and lowercase hex.
fn hex_escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Reads the bound parameters as SQLite values, decoding each by its type.
pub fn parameters<S: Clone>(portal: &Portal<S>, types: &[Type]) -> PgWireResult<Vec<Value>> {
    // What the typed parameters' texts may add up to in one Bind: a numeric's text can be
    // far longer than its binary form (its weight stands for zeros).
    let mut typed_text_left: usize = 64 * 1024 * 1024;
    (0..portal.parameter_len())
        .map(|i| {
            let ty = types.get(i).unwrap_or(&Type::TEXT);
            let value = match *ty {
                Type::INT2 => portal.parameter::<i16>(i, ty)?.map(|v| Value::Integer(v.into())),
                Type::INT4 => portal.parameter::<i32>(i, ty)?.map(|v| Value::Integer(v.into())),
                Type::INT8 => portal.parameter::<i64>(i, ty)?.map(Value::Integer),
                Type::FLOAT4 => portal.parameter::<f32>(i, ty)?.map(|v| Value::Real(v.into())),
                Type::FLOAT8 => portal.parameter::<f64>(i, ty)?.map(Value::Real),
                Type::BOOL => portal.parameter::<bool>(i, ty)?.map(|v| Value::Integer(v.into())),
                Type::BYTEA => portal.parameter::<Vec<u8>>(i, ty)?.map(Value::Blob),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    portal.parameter::<String>(i, ty)?.map(Value::Text)
                }
                // An array is kept as its text, `{1,2}`, however it was sent.
                Type::INT8_ARRAY
                | Type::INT4_ARRAY
                | Type::INT2_ARRAY
                | Type::OID_ARRAY
                | Type::TEXT_ARRAY
                | Type::VARCHAR_ARRAY
                | Type::BOOL_ARRAY
                | Type::FLOAT8_ARRAY
                | Type::FLOAT4_ARRAY => array_values::parameter(portal, i, ty)?.map(Value::Text),
                _ if let Some(Some(raw)) = portal.parameters.get(i)
                    && let Some(text) =
                        typed_parameters::text_of(ty, sent_binary(&portal.parameter_format, i), raw) =>
                {
                    let text = text.map_err(|why| {
                        error_response(SqlError::new(
                            sqlstate::INVALID_BINARY_REPRESENTATION,
                            format!("parameter ${}: {why}", i + 1),
                        ))
                    })?;
                    typed_text_left = typed_text_left.checked_sub(text.len()).ok_or_else(|| {
                        error_response(SqlError::new(
                            sqlstate::PROGRAM_LIMIT_EXCEEDED,
                            format!("parameter ${}: the numeric, date and json parameters of one statement may make at most 64 MiB of text", i + 1),
                        ))
                    })?;
                    Some(Value::Text(text))
                }
                // NULL of one of those types.
                _ if matches!(portal.parameters.get(i), Some(None))
                    && typed_parameters::text_of(ty, false, &bytes::Bytes::new()).is_some() =>
                {
                    None
                }
                _ => {
                    return Err(error_response(SqlError::new(
                        sqlstate::DATATYPE_MISMATCH,
                        format!(
                            "parameter ${} has type {}, which Cairn does not take; send it as int8, float8, numeric, text, bytea, bool, date, time, timestamp, timestamptz, uuid or json",
                            i + 1,
                            ty.name()
                        ),
                    )));
                }
            };
            Ok(value.unwrap_or(Value::Null))
        })
        .collect()
}

/// Whether parameter `i` came in binary (without pgwire's indexing, which a Bind with fewer
/// format codes than parameters would make panic).
fn sent_binary(format: &Format, i: usize) -> bool {
    match format {
        Format::UnifiedBinary => true,
        Format::UnifiedText => false,
        Format::Individual(codes) => codes.get(i) == Some(&1),
    }
}

/// The format a statement's result columns are described with before a portal exists.
pub fn statement_format() -> Format {
    Format::UnifiedText
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float8_text_was_not_what_postgresql_writes() {
        for (value, text) in [
            (1.0, "1"),
            (-2.0, "-2"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (1e15, "1e+15"),
            (123456789012345.0, "123456789012345"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.25e-300, "-1.25e-300"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
            (0.0, "0"),
        ] {
            assert_eq!(float8_text(value), text, "{value:?}");
        }
    }

    #[test]
    fn bytea_text_form_is_backslash_x_hex() {
        assert_eq!(hex_escape(&[0, 0xab, 0x10]), "\\x00ab10");
    }
}
