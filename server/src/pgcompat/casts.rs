//! PostgreSQL's cast operator `expr::type`, rewritten to SQLite's `CAST(expr AS type)`.
//!
//! Without it SQLite reads `$1::INTEGER` as one TCL-style parameter named `$1::INTEGER`,
//! which nobody binds: the statement stores NULL without an error. Drivers write casts on
//! parameters (asyncpg, node-postgres, SQLAlchemy's asyncpg dialect) and on literals
//! (psycopg2 sends bytes as `'\x00ff'::bytea`).
//!
//! Types are mapped to SQLite's storage classes. Literals are checked and converted here, so
//! `'abc'::integer` is an error as in PostgreSQL rather than SQLite's silent 0: integers,
//! reals, booleans, byteas (hex and escape formats), dates and timestamps (normalized to
//! `YYYY-MM-DD HH:MM:SS`). A cast of anything else is SQLite's CAST, with its conversions.

use std::borrow::Cow;

use crate::sql::lexer::{self, Spanned, Token};
use crate::sql::types::SqlType;

/// Why a cast could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CastError {
    #[error(
        "type \"{0}\" does not exist (Cairn casts to integer, bigint, smallint, real, double precision, numeric, text, varchar, boolean, bytea, date, time, timestamp, timestamptz, interval, json, jsonb, uuid)"
    )]
    UnknownType(String),
    #[error("array types (\"{0}[]\") are not supported; store arrays as json text")]
    Array(String),
    #[error(
        "syntax error at or near \"::\" (byte {0}): a cast needs a value before it and a type after it"
    )]
    Syntax(usize),
    #[error("invalid input syntax for type {ty}: \"{value}\"")]
    InvalidInput { ty: &'static str, value: String },
    #[error("value \"{0}\" is out of range for type integer")]
    OutOfRange(String),
    #[error(transparent)]
    Lex(#[from] lexer::LexError),
}

impl CastError {
    /// The SQLSTATE PostgreSQL gives the same mistake.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            CastError::UnknownType(_) => crate::sqlstate::UNDEFINED_OBJECT,
            CastError::Array(_) => crate::sqlstate::FEATURE_NOT_SUPPORTED,
            CastError::Syntax(_) | CastError::Lex(_) => crate::sqlstate::SYNTAX_ERROR,
            CastError::InvalidInput { .. } => crate::sqlstate::INVALID_TEXT_REPRESENTATION,
            CastError::OutOfRange(_) => crate::sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        }
    }
}

/// What a PostgreSQL type becomes in SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Integer,
    Real,
    Numeric,
    Text,
    Boolean,
    Bytea,
    Date,
    Timestamp,
    /// An object identifier type: its value names a row of a catalog (`catalogs`).
    Oid(OidType),
}

/// PostgreSQL's types whose values are oids shown as names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OidType {
    /// A table, view or index: `'t'::regclass` is its oid, `oid::regclass` its name.
    Class,
    /// A type: `'int4'::regtype` is 23, `23::regtype` is `integer`.
    Type,
    Namespace,
    /// A function: kept as its text (the catalogs list none).
    Proc,
}

impl Target {
    fn of(name: &str) -> Option<Target> {
        Some(match name {
            "int" | "int2" | "int4" | "int8" | "integer" | "smallint" | "bigint" | "oid" => {
                Target::Integer
            }
            "real" | "float" | "float4" | "float8" | "double precision" => Target::Real,
            "numeric" | "decimal" => Target::Numeric,
            "text"
            | "varchar"
            | "char"
            | "character"
            | "character varying"
            | "bpchar"
            | "name"
            | "json"
            | "jsonb"
            | "uuid"
            | "time"
            | "timetz"
            | "time with time zone"
            | "time without time zone"
            | "timestamptz"
            | "timestamp with time zone"
            | "interval"
            | "citext"
            | "xml"
            | "inet"
            | "cidr"
            | "macaddr" => Target::Text,
            "bool" | "boolean" => Target::Boolean,
            "bytea" => Target::Bytea,
            "date" => Target::Date,
            "timestamp" | "timestamp without time zone" => Target::Timestamp,
            "regclass" => Target::Oid(OidType::Class),
            "regtype" => Target::Oid(OidType::Type),
            "regnamespace" => Target::Oid(OidType::Namespace),
            "regproc" | "regprocedure" => Target::Oid(OidType::Proc),
            _ => return None,
        })
    }

    /// PostgreSQL's name for the type, in error messages.
    fn pg_name(self) -> &'static str {
        match self {
            Target::Integer => "integer",
            Target::Real => "double precision",
            Target::Numeric => "numeric",
            Target::Text => "text",
            Target::Boolean => "boolean",
            Target::Bytea => "bytea",
            Target::Date => "date",
            Target::Timestamp => "timestamp",
            Target::Oid(OidType::Class) => "regclass",
            Target::Oid(OidType::Type) => "regtype",
            Target::Oid(OidType::Namespace) => "regnamespace",
            Target::Oid(OidType::Proc) => "regproc",
        }
    }

    fn sqlite_name(self) -> &'static str {
        match self {
            Target::Integer | Target::Boolean => "INTEGER",
            Target::Real => "REAL",
            Target::Numeric => "NUMERIC",
            Target::Text | Target::Date | Target::Timestamp | Target::Oid(_) => "TEXT",
            Target::Bytea => "BLOB",
        }
    }
}

/// The SQLite spelling of one statement, with every `::` cast rewritten. Borrowed when the
/// statement has none. Byte offsets in errors are the statement's.
///
/// One pass over the tokens: the output is kept as pieces, each the SQLite text of a run of
/// input tokens. A cast replaces the pieces of its operand with one piece, so in `x::a::b`
/// the second cast's operand is the first cast's piece: `CAST(CAST(x AS A) AS B)`.
pub fn rewrite(text: &str) -> Result<Cow<'_, str>, CastError> {
    if !text.contains("::") {
        return Ok(Cow::Borrowed(text));
    }
    let tokens = lexer::tokenize(text)?;
    if !tokens.iter().any(|t| t.token == Token::Punct("::")) {
        return Ok(Cow::Borrowed(text));
    }
    let gap = |i: usize| {
        let from = i.checked_sub(1).map_or(0, |j| tokens[j].end);
        &text[from..tokens[i].start]
    };
    let mut pieces: Vec<Piece> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].token != Token::Punct("::") {
            pieces.push(Piece {
                first: i,
                last: i,
                sql: text[tokens[i].start..tokens[i].end].to_owned(),
                cast: false,
            });
            i += 1;
            continue;
        }
        let syntax = || CastError::Syntax(tokens[i].start);
        // The operand: the previous cast if it ends right here, else the expression the
        // tokens before `::` make, widened to whole pieces.
        let mut first = match pieces.last() {
            Some(piece) if piece.cast && piece.last + 1 == i => piece.first,
            _ => operand_start(&tokens, i).ok_or_else(syntax)?,
        };
        // The pieces the operand covers, found from the end (they are in order).
        let keep = pieces.len() - pieces.iter().rev().take_while(|p| p.last >= first).count();
        if let Some(piece) = pieces.get(keep) {
            first = first.min(piece.first);
        }
        let (mut type_name, mut last) = type_after(&tokens, i + 1).ok_or_else(syntax)?;
        if let Some(Spanned {
            token: Token::QuotedIdent(_),
            start,
            ..
        }) = tokens.get(last + 1)
            && text[*start..].starts_with('[')
        {
            // Arrays are text in Cairn (`{1,2}`): a value cast to one stays that text, and a
            // parameter of one is taken as an array and kept as its text.
            if Target::of(&type_name).is_none() {
                return Err(CastError::Array(type_name));
            }
            type_name = "text".into();
            last += 1;
        }
        let target = Target::of(&type_name).ok_or(CastError::UnknownType(type_name))?;
        let operand_pieces = pieces.split_off(keep);
        let literal_value = match (operand_pieces.as_slice(), &tokens[first..i]) {
            ([piece], [t]) if !piece.cast => match &t.token {
                Token::Str(value) => Some(Literal::Str(value.clone())),
                Token::Number(n) => Some(Literal::Number((*n).to_owned())),
                _ => None,
            },
            // E'…': PostgreSQL's escape string.
            ([_, _], [e, t]) if e.end == t.start => match (&e.token, &t.token) {
                (Token::Word(w), Token::Str(value)) if w.eq_ignore_ascii_case("e") => {
                    Some(Literal::Str(unescape(value).ok_or_else(|| {
                        CastError::InvalidInput {
                            ty: "escape string",
                            value: value.clone(),
                        }
                    })?))
                }
                _ => None,
            },
            _ => None,
        };
        let sql = match literal_value {
            Some(Literal::Str(value)) => literal(&value, target)?,
            Some(Literal::Number(number)) => number_literal(&number, target)?,
            // A parameter cast to an integer is described as one, so it arrives as one.
            None if target == Target::Integer
                && matches!(&tokens[first..i], [t] if matches!(t.token, Token::Param(_))) =>
            {
                format!("CAST({} AS INTEGER)", operand_pieces[0].sql)
            }
            None => {
                let mut operand = String::new();
                for (n, piece) in operand_pieces.iter().enumerate() {
                    if n > 0 {
                        operand.push_str(gap(piece.first));
                    }
                    operand.push_str(&piece.sql);
                }
                let simple = operand_pieces.iter().all(|p| !p.cast)
                    && tokens[first..i].iter().all(|t| {
                        matches!(
                            t.token,
                            Token::Word(_)
                                | Token::QuotedIdent(_)
                                | Token::Param(_)
                                | Token::SqliteParam(_)
                                | Token::Punct(".")
                        )
                    });
                expression(&operand, target, simple)
            }
        };
        pieces.push(Piece {
            first,
            last,
            sql,
            cast: true,
        });
        i = last + 1;
    }
    let mut out = String::with_capacity(text.len() + 32);
    for piece in &pieces {
        out.push_str(gap(piece.first));
        out.push_str(&piece.sql);
    }
    if let Some(last) = tokens.last() {
        out.push_str(&text[last.end..]);
    }
    Ok(Cow::Owned(out))
}

/// The SQLite text of `tokens[first..=last]`.
#[derive(Debug)]
struct Piece {
    first: usize,
    last: usize,
    sql: String,
    /// The result of a cast.
    cast: bool,
}

/// A literal operand, converted when the statement is rewritten.
enum Literal {
    Str(String),
    Number(String),
}

/// Words before `(` that are not function names: the operand is the parenthesized group.
const NOT_FUNCTIONS: &[&str] = &[
    "in",
    "values",
    "as",
    "on",
    "using",
    "and",
    "or",
    "not",
    "where",
    "select",
    "from",
    "join",
    "when",
    "then",
    "else",
    "by",
    "into",
    "set",
    "returning",
    "is",
    "like",
    "between",
    "with",
    "having",
    "limit",
    "offset",
    "distinct",
    "all",
    "any",
    "some",
    "case",
    "glob",
    "match",
    "regexp",
    "escape",
    "union",
    "except",
    "intersect",
    "table",
    "exists",
];

/// The index of the first token of the operand that ends just before `tokens[at]`.
fn operand_start(tokens: &[Spanned<'_>], at: usize) -> Option<usize> {
    let mut i = at.checked_sub(1)?;
    let is = |j: usize, kw: &str| tokens[j].token.is_keyword(kw);
    match &tokens[i].token {
        Token::Word(w) if w.eq_ignore_ascii_case("end") => matching_case(tokens, i),
        // `f(x) OVER w::int`: a named window.
        Token::Word(_) if i > 0 && is(i - 1, "over") => call_before(tokens, i - 1),
        Token::Punct(")") => {
            let open = matching_open(tokens, i)?;
            match open.checked_sub(1) {
                // A window call `f(x) OVER (…)`, or an aggregate `f(x) FILTER (…)`.
                Some(j) if is(j, "over") || is(j, "filter") => call_before(tokens, j),
                _ => Some(function_name_before(tokens, open)),
            }
        }
        Token::Str(_) => {
            // E'…' escape strings: the prefix is part of the literal.
            if let Some(j) = i.checked_sub(1)
                && tokens[j].end == tokens[i].start
                && matches!(tokens[j].token, Token::Word(w) if w.eq_ignore_ascii_case("e"))
            {
                return Some(j);
            }
            Some(i)
        }
        Token::Number(_) | Token::Param(_) | Token::SqliteParam(_) => Some(i),
        // ARRAY[…]::text[]
        Token::Punct("]") => {
            let mut depth = 0usize;
            let open = (0..=i).rev().find(|&j| {
                match tokens[j].token {
                    Token::Punct("]") => depth += 1,
                    Token::Punct("[") => depth -= 1,
                    _ => {}
                }
                depth == 0
            })?;
            open.checked_sub(1).filter(|&a| is(a, "array"))
        }
        Token::Word(w) if NOT_FUNCTIONS.iter().any(|k| w.eq_ignore_ascii_case(k)) => None,
        Token::Word(_) | Token::QuotedIdent(_) => {
            // A qualified name: `t.col`, `s.t.col`.
            while i >= 2
                && tokens[i - 1].token == Token::Punct(".")
                && matches!(tokens[i - 2].token, Token::Word(_) | Token::QuotedIdent(_))
            {
                i -= 2;
            }
            Some(i)
        }
        _ => None,
    }
}

/// The start of `name(…)` whose `(` is `tokens[open]` (just the group if no name).
fn function_name_before(tokens: &[Spanned<'_>], open: usize) -> usize {
    match open.checked_sub(1).map(|j| &tokens[j].token) {
        Some(Token::Word(w)) if !NOT_FUNCTIONS.iter().any(|k| w.eq_ignore_ascii_case(k)) => {
            open - 1
        }
        Some(Token::QuotedIdent(_)) => open - 1,
        _ => open,
    }
}

/// The start of the call `f(…)` (itself perhaps with FILTER) before the keyword at `keyword`.
fn call_before(tokens: &[Spanned<'_>], keyword: usize) -> Option<usize> {
    let close = keyword.checked_sub(1)?;
    if tokens[close].token != Token::Punct(")") {
        return None;
    }
    let open = matching_open(tokens, close)?;
    match open.checked_sub(1) {
        Some(j) if tokens[j].token.is_keyword("filter") => call_before(tokens, j),
        _ => Some(function_name_before(tokens, open)),
    }
}

/// The CASE that the END at `end` closes.
fn matching_case(tokens: &[Spanned<'_>], end: usize) -> Option<usize> {
    let mut depth = 0usize;
    for i in (0..=end).rev() {
        if tokens[i].token.is_keyword("end") {
            depth += 1;
        } else if tokens[i].token.is_keyword("case") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

fn matching_open(tokens: &[Spanned<'_>], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    for i in (0..=close).rev() {
        match tokens[i].token {
            Token::Punct(")") => depth += 1,
            Token::Punct("(") => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The type name starting at `tokens[i]` (lowercase, words joined by one space, schema and
/// modifiers dropped) and the index of its last token.
fn type_after(tokens: &[Spanned<'_>], mut i: usize) -> Option<(String, usize)> {
    let word = |i: usize| tokens.get(i).and_then(|t| t.token.identifier());
    if word(i).as_deref() == Some("pg_catalog") && tokens.get(i + 1)?.token == Token::Punct(".") {
        i += 2;
    }
    let mut name = word(i)?;
    let mut last = i;
    let continues = |name: &str, next: &str| -> bool {
        matches!(
            (name, next),
            ("double", "precision")
                | ("character" | "char" | "bit", "varying")
                | ("timestamp" | "time", "with" | "without")
                | (
                    "timestamp with" | "timestamp without" | "time with" | "time without",
                    "time"
                )
                | (
                    "timestamp with time"
                        | "timestamp without time"
                        | "time with time"
                        | "time without time",
                    "zone"
                )
        )
    };
    while let Some(next) = word(last + 1)
        && matches!(tokens[last + 1].token, Token::Word(_))
        && continues(&name, &next)
    {
        name = format!("{name} {next}");
        last += 1;
    }
    // Modifiers: varchar(10), numeric(10, 2).
    if tokens
        .get(last + 1)
        .is_some_and(|t| t.token == Token::Punct("("))
    {
        let mut depth = 0usize;
        for (j, t) in tokens.iter().enumerate().skip(last + 1) {
            match t.token {
                Token::Punct("(") => depth += 1,
                Token::Punct(")") => {
                    depth -= 1;
                    if depth == 0 {
                        last = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        if depth != 0 {
            return None;
        }
    }
    Some((name, last))
}

/// The types that casts give parameters: `$1::int` is an integer parameter, as PostgreSQL
/// infers it.
pub fn parameter_types(tokens: &[Spanned<'_>]) -> Vec<(usize, SqlType)> {
    tokens
        .windows(2)
        .enumerate()
        .filter_map(|(i, pair)| match (&pair[0].token, &pair[1].token) {
            (Token::Param(n), Token::Punct("::")) => {
                let (name, last) = type_after(tokens, i + 2)?;
                let array = tokens
                    .get(last + 1)
                    .is_some_and(|t| matches!(t.token, Token::QuotedIdent(ref q) if q.is_empty()));
                let element = Target::of(&name)?;
                if array {
                    return Some((
                        *n,
                        match element {
                            _ if name == "oid" => SqlType::OidArray,
                            Target::Integer | Target::Oid(_) => SqlType::Int8Array,
                            Target::Real => SqlType::Float8Array,
                            Target::Boolean => SqlType::BoolArray,
                            _ => SqlType::TextArray,
                        },
                    ));
                }
                let ty = match element {
                    Target::Integer => SqlType::Int8,
                    // Sent as PostgreSQL's bool, stored as SQLite's 0 or 1.
                    Target::Boolean => SqlType::Bool,
                    Target::Real => SqlType::Float8,
                    Target::Bytea => SqlType::Bytea,
                    Target::Numeric
                    | Target::Text
                    | Target::Date
                    | Target::Timestamp
                    | Target::Oid(_) => SqlType::Text,
                };
                Some((*n, ty))
            }
            _ => None,
        })
        .collect()
}

/// A cast of a non-literal operand.
///
/// An integer cast rounds a real value (PostgreSQL rounds, SQLite's CAST truncates), and a
/// boolean cast reads a number as PostgreSQL does (zero is false). For a `simple` operand
/// (a column, a parameter) that means looking at its type, which names it more than once;
/// any other operand is named once, so that nested casts stay as long as they were written
/// and an expression runs once: an integer cast then rounds through a real (exact below
/// 2^53), and a boolean cast reads only the words and 0/1.
fn expression(operand: &str, target: Target, simple: bool) -> String {
    const WORDS: &str = "WHEN 't' THEN 1 WHEN 'true' THEN 1 WHEN 'y' THEN 1 WHEN 'yes' THEN 1 WHEN 'on' THEN 1 WHEN '1' THEN 1 WHEN 'f' THEN 0 WHEN 'false' THEN 0 WHEN 'n' THEN 0 WHEN 'no' THEN 0 WHEN 'off' THEN 0 WHEN '0' THEN 0 END";
    match (target, simple) {
        (Target::Integer, true) => format!(
            "(CASE WHEN typeof({operand}) = 'real' THEN CAST(round({operand}) AS INTEGER) ELSE CAST({operand} AS INTEGER) END)"
        ),
        (Target::Integer, false) => format!("CAST(round({operand}) AS INTEGER)"),
        (Target::Boolean, true) => format!(
            "(CASE WHEN typeof({operand}) IN ('integer', 'real') THEN ({operand}) <> 0 ELSE (CASE lower(trim(CAST({operand} AS TEXT))) {WORDS}) END)"
        ),
        (Target::Boolean, false) => {
            format!("(CASE lower(trim(CAST({operand} AS TEXT))) {WORDS})")
        }
        // An oid shown as the name of what it identifies. The catalog has an alias of its
        // own, so the operand's names are the statement's (even `pg_class.oid`).
        (Target::Oid(OidType::Class), _) => format!(
            "(SELECT cairn_r.relname FROM pg_class AS cairn_r WHERE cairn_r.oid = ({operand}))"
        ),
        (Target::Oid(OidType::Namespace), _) => format!(
            "(SELECT cairn_n.nspname FROM pg_namespace AS cairn_n WHERE cairn_n.oid = ({operand}))"
        ),
        (Target::Oid(OidType::Type), _) => format!("format_type({operand}, NULL)"),
        _ => format!("CAST({operand} AS {})", target.sqlite_name()),
    }
}

/// A cast of a number literal, converted now: `2.7::int` is 3, as in PostgreSQL.
fn number_literal(number: &str, target: Target) -> Result<String, CastError> {
    let invalid = || CastError::InvalidInput {
        ty: target.pg_name(),
        value: number.to_owned(),
    };
    Ok(match target {
        Target::Integer => match integer(number) {
            Some(i) => i.to_string(),
            None => {
                let value: f64 = number.parse().map_err(|_| invalid())?;
                let rounded = value.round();
                if !(i64::MIN as f64..=i64::MAX as f64).contains(&rounded) {
                    return Err(CastError::OutOfRange(number.to_owned()));
                }
                (rounded as i64).to_string()
            }
        },
        // PostgreSQL casts integers to booleans, not numerics.
        Target::Boolean => match integer(number) {
            Some(i) => if i != 0 { "1" } else { "0" }.to_owned(),
            None => return Err(invalid()),
        },
        Target::Text => quote(number),
        _ => expression(number, target, true),
    })
}

/// An integer literal: decimal, or SQLite's hexadecimal `0x…`.
fn integer(number: &str) -> Option<i64> {
    match number
        .strip_prefix("0x")
        .or_else(|| number.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok().map(|u| u as i64),
        None => number.parse().ok(),
    }
}

/// The value of an `E'…'` string: `\b \f \n \r \t`, `\\`, `\'`, octal `\ooo` and hex
/// `\xHH`.
pub(crate) fn unescape(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let raw = text.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            bytes.push(raw[i]);
            i += 1;
            continue;
        }
        let next = *raw.get(i + 1)?;
        i += 2;
        match next {
            b'b' => bytes.push(8),
            b'f' => bytes.push(12),
            b'n' => bytes.push(b'\n'),
            b'r' => bytes.push(b'\r'),
            b't' => bytes.push(b'\t'),
            b'x' => {
                let digits: String = raw[i..]
                    .iter()
                    .take(2)
                    .take_while(|b| b.is_ascii_hexdigit())
                    .map(|b| *b as char)
                    .collect();
                bytes.push(u8::from_str_radix(&digits, 16).ok()?);
                i += digits.len();
            }
            b'u' | b'U' => {
                let width = if next == b'u' { 4 } else { 8 };
                let digits = std::str::from_utf8(raw.get(i..i + width)?).ok()?;
                let c = char::from_u32(u32::from_str_radix(digits, 16).ok()?)?;
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += width;
            }
            b'0'..=b'7' => {
                let digits: String = raw[i - 1..]
                    .iter()
                    .take(3)
                    .take_while(|b| (b'0'..=b'7').contains(b))
                    .map(|b| *b as char)
                    .collect();
                bytes.push(u8::from_str_radix(&digits, 8).ok()?);
                i += digits.len() - 1;
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

/// A cast of a string literal, checked and converted now.
fn literal(value: &str, target: Target) -> Result<String, CastError> {
    let invalid = || CastError::InvalidInput {
        ty: target.pg_name(),
        value: value.to_owned(),
    };
    let trimmed = value.trim();
    Ok(match target {
        Target::Integer => trimmed.parse::<i64>().map_err(|_| invalid())?.to_string(),
        Target::Real => {
            let number: f64 = trimmed.parse().map_err(|_| invalid())?;
            if number.is_finite() {
                format!("{number:?}")
            } else {
                // SQLite has no literal for infinities; 1e999 overflows to one.
                let sign = if number.is_sign_negative() { "-" } else { "" };
                if number.is_nan() {
                    return Err(invalid());
                }
                format!("{sign}1e999")
            }
        }
        Target::Numeric => {
            trimmed.parse::<f64>().map_err(|_| invalid())?;
            format!("CAST({} AS NUMERIC)", quote(trimmed))
        }
        Target::Boolean => match parse_bool(trimmed) {
            Some(true) => "1".into(),
            Some(false) => "0".into(),
            None => return Err(invalid()),
        },
        Target::Bytea => format!("X'{}'", hex(&bytea(value).ok_or_else(invalid)?)),
        Target::Date => {
            let date =
                chrono::NaiveDate::parse_from_str(trimmed, "%Y-%m-%d").map_err(|_| invalid())?;
            quote(&date.format("%Y-%m-%d").to_string())
        }
        Target::Timestamp => quote(&timestamp(trimmed).ok_or_else(invalid)?),
        Target::Text | Target::Oid(OidType::Proc) => quote(value),
        // A name, to the oid of what it names (NULL if nothing: PostgreSQL's error).
        // A number written as text is already an oid, as PostgreSQL reads it.
        Target::Oid(OidType::Class) if trimmed.parse::<i64>().is_ok() => trimmed.to_owned(),
        Target::Oid(OidType::Class) => format!(
            "(SELECT cairn_r.oid FROM pg_class AS cairn_r WHERE cairn_r.relname = {})",
            quote(object_name(trimmed))
        ),
        Target::Oid(OidType::Namespace) => format!(
            "(SELECT cairn_n.oid FROM pg_namespace AS cairn_n WHERE cairn_n.nspname = {})",
            quote(object_name(trimmed))
        ),
        Target::Oid(OidType::Type) => match trimmed.parse::<i64>() {
            Ok(oid) => oid.to_string(),
            Err(_) => super::catalogs::declared_type(object_name(trimmed))
                .0
                .to_string(),
        },
    })
}

/// The object a name written as text names: `public.t`, `"t"` and `t` are all `t`.
fn object_name(text: &str) -> &str {
    let name = text
        .strip_prefix("public.")
        .or_else(|| text.strip_prefix("pg_catalog."))
        .unwrap_or(text);
    name.strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(name)
}

pub(crate) fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// PostgreSQL's boolean input: unique prefixes of true/false/yes/no, on/off, 1/0.
fn parse_bool(text: &str) -> Option<bool> {
    let lower = text.to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| lower.len() >= min && word.starts_with(&lower);
    match lower.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        _ if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) => Some(true),
        _ if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) => Some(false),
        _ => None,
    }
}

/// bytea input: `\x` followed by hex digit pairs, or the escape format (`\\`, `\ooo`).
pub(crate) fn bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(digits) = text
        .strip_prefix("\\x")
        .or_else(|| text.strip_prefix("\\X"))
    {
        let digits: Vec<u8> = digits
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = std::str::from_utf8(bytes.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(octal, 8).ok()?);
            i += 4;
        }
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A timestamp literal in one of the forms PostgreSQL reads, as `YYYY-MM-DD HH:MM:SS[.f]`.
fn timestamp(text: &str) -> Option<String> {
    const FORMATS: &[&str] = &[
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ];
    if let Some(moment) = FORMATS
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
    {
        return Some(moment.format("%Y-%m-%d %H:%M:%S%.f").to_string());
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.format("%Y-%m-%d 00:00:00").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(sql: &str) -> Result<String, CastError> {
        rewrite(sql).map(Cow::into_owned)
    }

    #[test]
    fn parameters_keep_their_number_and_gain_a_cast() {
        assert_eq!(
            sqlite("INSERT INTO t(i, s) VALUES ($1::INTEGER, $2::text)").unwrap(),
            "INSERT INTO t(i, s) VALUES (CAST($1 AS INTEGER), CAST($2 AS TEXT))"
        );
        assert_eq!(
            sqlite("SELECT $1::varchar(10), $2::double precision, $3::pg_catalog.int8").unwrap(),
            "SELECT CAST($1 AS TEXT), CAST($2 AS REAL), CAST($3 AS INTEGER)"
        );
        assert_eq!(
            sqlite("SELECT $1::timestamp with time zone FROM t").unwrap(),
            "SELECT CAST($1 AS TEXT) FROM t"
        );
    }

    #[test]
    fn literals_are_checked_and_converted() {
        assert_eq!(sqlite("SELECT '5'::integer").unwrap(), "SELECT 5");
        assert_eq!(sqlite("SELECT '\\x00ff'::bytea").unwrap(), "SELECT X'00ff'");
        assert_eq!(
            sqlite("SELECT 'a\\\\b\\001'::bytea").unwrap(),
            "SELECT X'615c6201'"
        );
        assert_eq!(
            sqlite("SELECT '2024-01-02T03:04:05'::timestamp").unwrap(),
            "SELECT '2024-01-02 03:04:05'"
        );
        assert_eq!(
            sqlite("SELECT 'yes'::bool, 'f'::boolean").unwrap(),
            "SELECT 1, 0"
        );
        assert_eq!(sqlite("SELECT 'it''s'::text").unwrap(), "SELECT 'it''s'");
        let err = sqlite("SELECT 'abc'::integer").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid input syntax for type integer: \"abc\""
        );
        assert!(sqlite("SELECT '\\x0'::bytea").is_err());
        assert!(sqlite("SELECT '2024-13-01'::date").is_err());
    }

    #[test]
    fn operands_are_whole_expressions() {
        assert_eq!(
            sqlite("SELECT t.a::text, lower(b)::text, (a + 1)::real FROM t").unwrap(),
            "SELECT CAST(t.a AS TEXT), CAST(lower(b) AS TEXT), CAST((a + 1) AS REAL) FROM t"
        );
        assert_eq!(
            sqlite("SELECT count(*) OVER (PARTITION BY a)::text FROM t").unwrap(),
            "SELECT CAST(count(*) OVER (PARTITION BY a) AS TEXT) FROM t"
        );
        assert_eq!(
            sqlite("SELECT x::text::real FROM t WHERE y IN (1)::text IS NULL").unwrap(),
            "SELECT CAST(CAST(x AS TEXT) AS REAL) FROM t WHERE y IN CAST((1) AS TEXT) IS NULL"
        );
        assert_eq!(
            sqlite("SELECT CASE WHEN a THEN 'x' ELSE 'y' END::text, count(*) FILTER (WHERE a)::text, sum(a) OVER w::text FROM t WINDOW w AS ()").unwrap(),
            "SELECT CAST(CASE WHEN a THEN 'x' ELSE 'y' END AS TEXT), CAST(count(*) FILTER (WHERE a) AS TEXT), CAST(sum(a) OVER w AS TEXT) FROM t WINDOW w AS ()"
        );
    }

    #[test]
    fn numbers_round_and_escape_strings_unescape_as_in_postgresql() {
        assert_eq!(
            sqlite("SELECT 2.7::int, -2.5::int, 1e3::int, 5::boolean, 0::bool").unwrap(),
            "SELECT 3, -3, 1000, 1, 0"
        );
        assert_eq!(sqlite("SELECT E'a\\tb'::text").unwrap(), "SELECT 'a\tb'");
        assert_eq!(
            sqlite("SELECT 1e-5::float8").unwrap(),
            "SELECT CAST(1e-5 AS REAL)"
        );
        assert!(sqlite("SELECT x::int FROM t").unwrap().contains("round(x)"));
        assert!(sqlite("SELECT 1e30::int").is_err());
        assert_eq!(
            sqlite("SELECT 0xff::int, 0x10::bool").unwrap(),
            "SELECT 255, 1"
        );
        assert!(sqlite("SELECT 2.5::bool").is_err());
        assert_eq!(
            sqlite("SELECT E'caf\\u00e9'::text").unwrap(),
            "SELECT 'café'"
        );
        assert_eq!(
            sqlite("SELECT .5e-3::float8").unwrap(),
            "SELECT CAST(.5e-3 AS REAL)"
        );
    }

    /// Integer and boolean casts named their operand several times, so nested casts grew
    /// exponentially: twenty of them made gigabytes of SQL (found in review).
    #[test]
    fn nested_casts_stay_as_long_as_written() {
        let sql = format!("SELECT x{} FROM t", "::int".repeat(30));
        assert!(sqlite(&sql).unwrap().len() < 30 * 40 + 200);
        let sql = format!("SELECT x{} FROM t", "::bool".repeat(30));
        assert!(sqlite(&sql).unwrap().len() < 30 * 400 + 400);
        assert_eq!(
            sqlite("SELECT avg(x)::int FROM t").unwrap(),
            "SELECT CAST(round(avg(x)) AS INTEGER) FROM t"
        );
    }

    /// Each cast re-read the whole statement: a long statement full of casts took minutes
    /// on the session's thread, out of reach of cancel and timeouts (found in review).
    #[test]
    fn a_statement_with_many_casts_is_rewritten_in_one_pass() {
        let sql = format!("SELECT {}0", "7::int, ".repeat(100_000));
        let out = sqlite(&sql).unwrap();
        assert_eq!(out, format!("SELECT {}0", "7, ".repeat(100_000)));
    }

    #[test]
    fn strings_and_comments_are_left_alone() {
        let sql = "SELECT 'a::int' -- b::int\n, \"c::d\"";
        assert_eq!(sqlite(sql).unwrap(), sql);
    }

    #[test]
    fn unknown_and_array_types_are_errors() {
        assert_eq!(
            sqlite("SELECT 1::frobnicate").unwrap_err(),
            CastError::UnknownType("frobnicate".into())
        );
        assert_eq!(
            sqlite("SELECT $1::frob[]").unwrap_err(),
            CastError::Array("frob".into())
        );
        assert_eq!(
            sqlite("SELECT $1::int[]").unwrap(),
            "SELECT CAST($1 AS TEXT)"
        );
        assert_eq!(
            sqlite("SELECT pr.prattrs::pg_catalog.int2[] FROM pr").unwrap(),
            "SELECT CAST(pr.prattrs AS TEXT) FROM pr"
        );
        assert!(matches!(
            sqlite("SELECT ::int").unwrap_err(),
            CastError::Syntax(7)
        ));
        assert!(matches!(
            sqlite("SELECT 1::").unwrap_err(),
            CastError::Syntax(8)
        ));
    }
}
