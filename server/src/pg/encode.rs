//! Between session results and wire messages: rows to `DataRow`s with the described types,
//! wire parameters to SQLite values, and errors to `ErrorResponse`s.

use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use rusqlite::types::{Value, ValueRef};

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
        (SqlType::Float8, ValueRef::Real(f)) => encoder.encode_field(&f),
        (SqlType::Float8, ValueRef::Integer(i)) => encoder.encode_field(&(i as f64)),
        (SqlType::Float8, ValueRef::Text(t)) => match text(t)?.trim().parse::<f64>() {
            Ok(f) => encoder.encode_field(&f),
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
        (SqlType::TextArray, ValueRef::Text(t)) => {
            encoder.encode_field(&TextArray(crate::pgcompat::arrays::elements(text(t)?)))
        }
        (SqlType::TextArray, ValueRef::Integer(i)) => {
            encoder.encode_field(&TextArray(vec![Some(i.to_string())]))
        }
        (SqlType::TextArray, ValueRef::Real(f)) => {
            encoder.encode_field(&TextArray(vec![Some(f.to_string())]))
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
                Some(bools) => encoder.encode_field(&BoolArray(bools)),
                None => Err(mismatch("text")),
            }
        }
        (SqlType::BoolArray, _) => Err(mismatch("a value that is not an array")),
        // Only parameters are typed so; a value read back is its array's text.
        (SqlType::Int8Array | SqlType::Float8Array | SqlType::OidArray, ValueRef::Text(t)) => {
            encoder.encode_field(&TextArray(crate::pgcompat::arrays::elements(text(t)?)))
        }
        (SqlType::Int2Vector | SqlType::OidVector, ValueRef::Text(t)) => {
            let numbers: Option<Vec<i64>> = text(t)?
                .split_whitespace()
                .map(|n| n.parse().ok())
                .collect();
            match numbers {
                Some(numbers) => encoder.encode_field(&Vector(column.ty, numbers)),
                None => Err(mismatch("text")),
            }
        }
        (SqlType::Int2Vector | SqlType::OidVector, ValueRef::Integer(i)) => {
            encoder.encode_field(&Vector(column.ty, vec![i]))
        }
        (SqlType::Int2Vector | SqlType::OidVector, _) => {
            Err(mismatch("a value that is not a vector"))
        }
        (SqlType::Int8Array | SqlType::Float8Array | SqlType::OidArray, _) => {
            Err(mismatch("a value that is not an array"))
        }
    }
}

/// An array's elements, sent as PostgreSQL's text[]: `{a,"b c"}` in the text format, the
/// array's binary form otherwise.
#[derive(Debug)]
struct TextArray(Vec<Option<String>>);

impl postgres_types::ToSql for TextArray {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(&Type::TEXT_ARRAY, out)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

/// An int2vector or oidvector: `1 2` in the text format, a one-dimensional array of int2
/// or oid (its binary form) otherwise.
#[derive(Debug)]
struct Vector(SqlType, Vec<i64>);

impl postgres_types::ToSql for Vector {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if self.0 == SqlType::Int2Vector {
            let values: Vec<i16> = self
                .1
                .iter()
                .map(|&n| i16::try_from(n))
                .collect::<Result<_, _>>()?;
            values.to_sql(&Type::INT2_ARRAY, out)
        } else {
            let values: Vec<u32> = self
                .1
                .iter()
                .map(|&n| u32::try_from(n))
                .collect::<Result<_, _>>()?;
            values.to_sql(&Type::OID_ARRAY, out)
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

impl pgwire::types::ToSqlText for Vector {
    fn to_sql_text(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
        _: &pgwire::types::format::FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let words: Vec<String> = self.1.iter().map(i64::to_string).collect();
        out.extend_from_slice(words.join(" ").as_bytes());
        Ok(postgres_types::IsNull::No)
    }
}

/// An array's booleans, sent as PostgreSQL's bool[] (`{t,f}` in the text format).
#[derive(Debug)]
struct BoolArray(Vec<Option<bool>>);

impl postgres_types::ToSql for BoolArray {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(&Type::BOOL_ARRAY, out)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

impl pgwire::types::ToSqlText for BoolArray {
    fn to_sql_text(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
        _: &pgwire::types::format::FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let elements: Vec<&str> = self
            .0
            .iter()
            .map(|b| match b {
                Some(true) => "t",
                Some(false) => "f",
                None => "NULL",
            })
            .collect();
        out.extend_from_slice(format!("{{{}}}", elements.join(",")).as_bytes());
        Ok(postgres_types::IsNull::No)
    }
}

impl pgwire::types::ToSqlText for TextArray {
    fn to_sql_text(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
        _: &pgwire::types::format::FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(crate::pgcompat::arrays::text(&self.0).as_bytes());
        Ok(postgres_types::IsNull::No)
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
                | Type::FLOAT4_ARRAY => array_parameter(portal, i, ty)?.map(Value::Text),
                _ => {
                    return Err(error_response(SqlError::new(
                        sqlstate::DATATYPE_MISMATCH,
                        format!(
                            "parameter ${} has type {}, which Cairn does not take; send it as int8, float8, text, bytea or bool",
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

/// An array parameter as PostgreSQL's text of it: the text sent, or the binary form read.
fn array_parameter<S: Clone>(
    portal: &Portal<S>,
    i: usize,
    ty: &Type,
) -> PgWireResult<Option<String>> {
    let Some(Some(bytes)) = portal.parameters.get(i) else {
        return Ok(None);
    };
    let invalid = |e: Box<dyn std::error::Error + Sync + Send>| {
        error_response(SqlError::new(
            sqlstate::INVALID_BINARY_REPRESENTATION,
            format!("parameter ${} is not a valid {}: {e}", i + 1, ty.name()),
        ))
    };
    if !portal.parameter_format.is_binary(i) {
        return std::str::from_utf8(bytes)
            .map(|t| Some(t.to_owned()))
            .map_err(|e| invalid(e.into()));
    }
    // The header's dimensions say how many elements follow: each takes at least its 4-byte
    // length, so a count the bytes cannot hold is refused before anything is sized by it.
    let claimed =
        claimed_elements(bytes).ok_or_else(|| invalid("its header is malformed".into()))?;
    if claimed.saturating_mul(4) > bytes.len() as u64 {
        return Err(invalid(
            format!(
                "its header claims {claimed} elements in {} bytes",
                bytes.len()
            )
            .into(),
        ));
    }
    use postgres_types::FromSql;
    let texts: Vec<Option<String>> = match *ty {
        Type::INT8_ARRAY => Vec::<Option<i64>>::from_sql(ty, bytes)
            .map_err(invalid)?
            .into_iter()
            .map(|v| v.map(|v| v.to_string()))
            .collect(),
        Type::INT4_ARRAY => Vec::<Option<i32>>::from_sql(ty, bytes)
            .map_err(invalid)?
            .into_iter()
            .map(|v| v.map(|v| v.to_string()))
            .collect(),
        Type::INT2_ARRAY => Vec::<Option<i16>>::from_sql(ty, bytes)
            .map_err(invalid)?
            .into_iter()
            .map(|v| v.map(|v| v.to_string()))
            .collect(),
        Type::OID_ARRAY => Vec::<Option<u32>>::from_sql(ty, bytes)
            .map_err(invalid)?
            .into_iter()
            .map(|v| v.map(|v| v.to_string()))
            .collect(),
        Type::BOOL_ARRAY => Vec::<Option<bool>>::from_sql(ty, bytes)
            .map_err(invalid)?
            .into_iter()
            // Booleans are SQLite's 1 and 0, so that `flag = ANY($1::bool[])` compares.
            .map(|v| v.map(|v| if v { "1" } else { "0" }.to_owned()))
            .collect(),
        Type::FLOAT8_ARRAY => Vec::<Option<f64>>::from_sql(ty, bytes)
            .map_err(invalid)?
            .into_iter()
            .map(|v| v.map(|v| v.to_string()))
            .collect(),
        Type::FLOAT4_ARRAY => Vec::<Option<f32>>::from_sql(ty, bytes)
            .map_err(invalid)?
            .into_iter()
            .map(|v| v.map(|v| v.to_string()))
            .collect(),
        _ => Vec::<Option<String>>::from_sql(ty, bytes).map_err(invalid)?,
    };
    Ok(Some(crate::pgcompat::arrays::text(&texts)))
}

/// The number of elements a binary array's header claims (the product of its dimensions),
/// if the header is whole.
fn claimed_elements(bytes: &[u8]) -> Option<u64> {
    let int = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let dimensions = u64::try_from(int(0)?).ok()?;
    if dimensions > 6 {
        return None;
    }
    let mut count = if dimensions == 0 { 0 } else { 1u64 };
    for d in 0..dimensions as usize {
        let length = u64::try_from(int(12 + 8 * d)?).ok()?;
        count = count.checked_mul(length)?;
    }
    Some(count)
}

/// The format a statement's result columns are described with before a portal exists.
pub fn statement_format() -> Format {
    Format::UnifiedText
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_array_header_claiming_more_elements_than_sent_is_read_as_such() {
        // One dimension of 0x7fffffff int8s (lower bound 1), and no elements.
        let mut header = Vec::new();
        for n in [1i32, 0, 20, 0x7fff_ffff, 1] {
            header.extend_from_slice(&n.to_be_bytes());
        }
        assert_eq!(claimed_elements(&header), Some(0x7fff_ffff));
        assert_eq!(claimed_elements(&header[..10]), None);
        let empty: Vec<u8> = [0i32, 0, 20].iter().flat_map(|n| n.to_be_bytes()).collect();
        assert_eq!(claimed_elements(&empty), Some(0));
    }

    #[test]
    fn bytea_text_form_is_backslash_x_hex() {
        assert_eq!(hex_escape(&[0, 0xab, 0x10]), "\\x00ab10");
    }
}
