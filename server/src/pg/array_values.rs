//! Arrays on the wire. Cairn keeps an array as its text (`{a,"b c"}`, or `1 2` for the
//! vectors of `pg_index`); a column described as an array is sent from that text in the
//! client's format, and an array parameter is read, from either format, into that text.

use bytes::BytesMut;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::PgWireResult;
use postgres_types::{IsNull, ToSql};

use crate::sql::types::SqlType;
use crate::sqlstate::{self, SqlError};

type BoxedError = Box<dyn std::error::Error + Sync + Send>;

/// An array value to send: its elements, in the described array type.
#[derive(Debug)]
pub(super) enum ArrayValue {
    /// text[]: `{a,"b c"}` in the text format.
    Text(Vec<Option<String>>),
    /// bool[]: `{t,f}`.
    Bool(Vec<Option<bool>>),
    /// int2vector or oidvector: `1 2` in the text format, a one-dimensional int2 or oid array
    /// in binary.
    Vector(SqlType, Vec<i64>),
}

impl ToSql for ArrayValue {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxedError> {
        match self {
            ArrayValue::Text(elements) => elements.to_sql(&Type::TEXT_ARRAY, out),
            ArrayValue::Bool(elements) => elements.to_sql(&Type::BOOL_ARRAY, out),
            ArrayValue::Vector(SqlType::Int2Vector, numbers) => {
                let values: Vec<i16> = numbers
                    .iter()
                    .map(|&n| i16::try_from(n))
                    .collect::<Result<_, _>>()?;
                values.to_sql(&Type::INT2_ARRAY, out)
            }
            ArrayValue::Vector(_, numbers) => {
                let values: Vec<u32> = numbers
                    .iter()
                    .map(|&n| u32::try_from(n))
                    .collect::<Result<_, _>>()?;
                values.to_sql(&Type::OID_ARRAY, out)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

impl pgwire::types::ToSqlText for ArrayValue {
    fn to_sql_text(
        &self,
        _: &Type,
        out: &mut BytesMut,
        _: &pgwire::types::format::FormatOptions,
    ) -> Result<IsNull, BoxedError> {
        let text = match self {
            ArrayValue::Text(elements) => crate::pgcompat::arrays::text(elements),
            ArrayValue::Bool(elements) => {
                let words: Vec<&str> = elements
                    .iter()
                    .map(|b| match b {
                        Some(true) => "t",
                        Some(false) => "f",
                        None => "NULL",
                    })
                    .collect();
                format!("{{{}}}", words.join(","))
            }
            ArrayValue::Vector(_, numbers) => {
                let words: Vec<String> = numbers.iter().map(i64::to_string).collect();
                words.join(" ")
            }
        };
        out.extend_from_slice(text.as_bytes());
        Ok(IsNull::No)
    }
}

/// An array parameter as PostgreSQL's text of it: the text sent, or the binary form read.
pub(super) fn parameter<S: Clone>(
    portal: &Portal<S>,
    i: usize,
    ty: &Type,
) -> PgWireResult<Option<String>> {
    let Some(Some(bytes)) = portal.parameters.get(i) else {
        return Ok(None);
    };
    let invalid = |e: Box<dyn std::error::Error + Sync + Send>| {
        super::encode::error_response(SqlError::new(
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
}
