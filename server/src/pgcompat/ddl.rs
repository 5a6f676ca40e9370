//! The DDL ORMs emit for PostgreSQL, in SQLite's words where SQLite can say the same thing,
//! and refused with what is not supported where it cannot:
//!
//! - `SERIAL`, `BIGSERIAL`, `SMALLSERIAL` (and `serial4`, `serial8`, `serial2`) and
//!   `GENERATED { ALWAYS | BY DEFAULT } AS IDENTITY` on the table's single-column primary
//!   key become SQLite's `INTEGER PRIMARY KEY`, which numbers new rows the same way. SQLite
//!   accepts `SERIAL` as a type name of its own, and then numbers nothing: the inserted row's
//!   `id` was NULL. On any other column there is nothing SQLite numbers: refused. (`ALWAYS`
//!   is not enforced: an explicit value is taken, as `BY DEFAULT` takes it.)
//! - `CREATE INDEX … USING btree` (or `hash`) loses the method: SQLite's indexes are b-trees.
//!   Other methods (GIN, GiST, BRIN…) are refused.
//! - `ALTER TABLE t ADD CONSTRAINT name UNIQUE (cols)` becomes `CREATE UNIQUE INDEX name ON
//!   t (cols)`; the other constraints SQLite cannot add to an existing table are refused.

use std::borrow::Cow;

use crate::sql::lexer::{self, Spanned, Token};

/// A PostgreSQL construct SQLite cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DdlError {
    #[error(
        "{construct} on column \"{column}\" is not supported: SQLite numbers only a table's INTEGER PRIMARY KEY; make \"{column}\" the table's single-column PRIMARY KEY, or give its values yourself"
    )]
    Numbered {
        construct: &'static str,
        column: String,
    },
    #[error(
        "index method \"{0}\" is not supported: SQLite's indexes are b-trees (leave out USING, or say USING btree)"
    )]
    IndexMethod(String),
    #[error(
        "ALTER TABLE … ADD CONSTRAINT … {0} is not supported: SQLite cannot add it to an existing table; declare it in CREATE TABLE (or, for UNIQUE, ADD CONSTRAINT name UNIQUE (columns) works)"
    )]
    AddConstraint(String),
}

impl DdlError {
    pub fn sqlstate(&self) -> &'static str {
        crate::sqlstate::FEATURE_NOT_SUPPORTED
    }
}

const SERIALS: &[&str] = &[
    "serial",
    "serial4",
    "bigserial",
    "serial8",
    "smallserial",
    "serial2",
];

/// `text` in SQLite's words; borrowed when it has none of these constructs.
pub fn rewrite(text: &str) -> Result<Cow<'_, str>, DdlError> {
    let has = |word| super::mentions(text, word);
    let create = has("create");
    let maybe = (create && (has("serial") || has("identity") || has("using") || has("_ops")))
        || (has("alter") && has("add"));
    if !maybe {
        return Ok(Cow::Borrowed(text));
    }
    let Ok(tokens) = lexer::tokenize(text) else {
        return Ok(Cow::Borrowed(text));
    };
    let word = |i: usize, kw: &str| tokens.get(i).is_some_and(|t| t.token.is_keyword(kw));
    let edits = if word(0, "create") {
        let table = (1..=2).find(|&i| word(i, "table"));
        let index = (1..=2).find(|&i| word(i, "index"));
        match (table, index) {
            (Some(at), _) => create_table(&tokens, at)?,
            (None, Some(_)) => create_index(&tokens)?,
            _ => Vec::new(),
        }
    } else if word(0, "alter") && word(1, "table") {
        return alter_table(text, &tokens);
    } else {
        Vec::new()
    };
    Ok(super::edited(text, edits))
}

/// (start, end, replacement) of each change, in order.
type Edits = Vec<(usize, usize, String)>;

/// The top-level elements between `(` at `open` and its `)`: each a range of token indices.
fn elements(tokens: &[Spanned<'_>], open: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = open + 1;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::Punct("(") => depth += 1,
            Token::Punct(")") => {
                depth -= 1;
                if depth == 0 {
                    out.push(start..i);
                    return out;
                }
            }
            Token::Punct(",") if depth == 1 => {
                out.push(start..i);
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

const TABLE_CONSTRAINTS: &[&str] = &["constraint", "primary", "unique", "check", "foreign"];

/// Words that end a column's type and begin its constraints.
const COLUMN_CONSTRAINTS: &[&str] = &[
    "constraint",
    "not",
    "null",
    "primary",
    "unique",
    "check",
    "default",
    "references",
    "collate",
    "generated",
    "as",
];

/// `GENERATED { ALWAYS | BY DEFAULT } AS IDENTITY` at `g`: the index of IDENTITY.
fn identity_at(element: &[Spanned<'_>], g: usize) -> Option<usize> {
    let word = |i: usize, kw: &str| element.get(i).is_some_and(|t| t.token.is_keyword(kw));
    if !word(g, "generated") {
        return None;
    }
    let after = if word(g + 1, "always") {
        g + 2
    } else if word(g + 1, "by") && word(g + 2, "default") {
        g + 3
    } else {
        return None;
    };
    (word(after, "as") && word(after + 1, "identity")).then_some(after + 1)
}

/// The columns of the first `( … )` at or after `from`, without ASC/DESC or a collation.
fn key_columns(tokens: &[Spanned<'_>], from: usize) -> Vec<String> {
    let Some(open) = (from..tokens.len()).find(|&i| tokens[i].token == Token::Punct("(")) else {
        return Vec::new();
    };
    let mut columns = Vec::new();
    let mut expect_name = true;
    for t in &tokens[open + 1..] {
        match &t.token {
            Token::Punct(")") => break,
            Token::Punct(",") => expect_name = true,
            token if expect_name => {
                if let Some(name) = token.identifier() {
                    columns.push(name);
                }
                expect_name = false;
            }
            _ => {}
        }
    }
    columns
}

fn create_table(tokens: &[Spanned<'_>], table_at: usize) -> Result<Edits, DdlError> {
    let Some(open) = (table_at..tokens.len()).find(|&i| tokens[i].token == Token::Punct("("))
    else {
        return Ok(Vec::new());
    };
    // CREATE TABLE … AS SELECT: no column definitions.
    if tokens[table_at..open]
        .iter()
        .any(|t| t.token.is_keyword("as"))
    {
        return Ok(Vec::new());
    }
    let elements = elements(tokens, open);
    let close = elements.last().map_or(open, |r| r.end);
    let without_rowid = tokens[close..].iter().any(|t| t.token.is_keyword("rowid"));
    // The columns a table-level PRIMARY KEY (…) names.
    let mut table_key: Vec<String> = Vec::new();
    for range in &elements {
        let element = &tokens[range.clone()];
        if element
            .first()
            .is_some_and(|t| TABLE_CONSTRAINTS.iter().any(|k| t.token.is_keyword(k)))
            && let Some(p) = element.iter().position(|t| t.token.is_keyword("primary"))
        {
            table_key = key_columns(element, p);
        }
    }
    let mut edits = Edits::new();
    for range in elements {
        let element = &tokens[range.clone()];
        let Some(first) = element.first() else {
            continue;
        };
        if TABLE_CONSTRAINTS.iter().any(|k| first.token.is_keyword(k)) {
            continue;
        }
        let Some(column) = first.token.identifier() else {
            continue;
        };
        let serial = element
            .get(1)
            .filter(|t| SERIALS.iter().any(|s| t.token.is_keyword(s)));
        let identity = (1..element.len()).find_map(|g| identity_at(element, g).map(|i| (g, i)));
        if serial.is_none() && identity.is_none() {
            continue;
        }
        let construct = if serial.is_some() {
            "SERIAL"
        } else {
            "GENERATED … AS IDENTITY"
        };
        let is_key = element.iter().any(|t| t.token.is_keyword("primary"))
            || (table_key.len() == 1 && table_key[0] == column);
        if !is_key || without_rowid {
            return Err(DdlError::Numbered { construct, column });
        }
        // The type: the words after the name up to its first constraint, as one INTEGER.
        let type_end = (1..element.len())
            .find(|&i| {
                COLUMN_CONSTRAINTS
                    .iter()
                    .any(|k| element[i].token.is_keyword(k))
            })
            .unwrap_or(element.len());
        if type_end > 1 {
            edits.push((
                element[1].start,
                element[type_end - 1].end,
                "INTEGER".into(),
            ));
        } else {
            edits.push((first.end, first.end, " INTEGER".into()));
        }
        if let Some((g, identity)) = identity {
            // GENERATED … IDENTITY, and its sequence options in parentheses if any.
            let mut end = element[identity].end;
            if element.get(identity + 1).map(|t| &t.token) == Some(&Token::Punct("(")) {
                let mut depth = 0;
                for t in &element[identity + 1..] {
                    match t.token {
                        Token::Punct("(") => depth += 1,
                        Token::Punct(")") => depth -= 1,
                        _ => {}
                    }
                    end = t.end;
                    if depth == 0 {
                        break;
                    }
                }
            }
            edits.push((element[g].start, end, String::new()));
        }
    }
    edits.sort_by_key(|e| e.0);
    Ok(edits)
}

fn create_index(tokens: &[Spanned<'_>]) -> Result<Edits, DdlError> {
    // An operator class after a column (Django's `varchar_pattern_ops` for LIKE 'x%'):
    // SQLite has none, so it goes. The index still serves equality and ranges; SQLite's
    // case-insensitive LIKE does not use it.
    let mut edits: Edits = tokens
        .windows(2)
        .filter(|w| {
            matches!(&w[1].token, Token::Word(class) if class.to_ascii_lowercase().ends_with("_ops"))
                && matches!(w[0].token, Token::Word(_) | Token::QuotedIdent(_) | Token::Punct(")"))
        })
        .map(|w| (w[1].start, w[1].end, String::new()))
        .collect();
    let Some(using) = tokens.iter().position(|t| t.token.is_keyword("using")) else {
        return Ok(edits);
    };
    let Some(method) = tokens.get(using + 1) else {
        return Ok(edits);
    };
    if method.token.is_keyword("btree") || method.token.is_keyword("hash") {
        edits.push((tokens[using].start, method.end, String::new()));
        edits.sort_by_key(|e| e.0);
        Ok(edits)
    } else {
        Err(DdlError::IndexMethod(
            method.token.identifier().unwrap_or_default(),
        ))
    }
}

/// `ALTER TABLE t ADD CONSTRAINT name UNIQUE (cols)` → `CREATE UNIQUE INDEX name ON t (cols)`.
fn alter_table<'a>(text: &'a str, tokens: &[Spanned<'_>]) -> Result<Cow<'a, str>, DdlError> {
    let Some(add) = tokens.iter().position(|t| t.token.is_keyword("add")) else {
        return Ok(Cow::Borrowed(text));
    };
    let rest = &tokens[add + 1..];
    let (name, kind) = match rest {
        [c, name, kind, ..] if c.token.is_keyword("constraint") => (Some(name), kind),
        [kind, ..] => (None, kind),
        [] => return Ok(Cow::Borrowed(text)),
    };
    let constraint = ["unique", "primary", "foreign", "check", "exclude"]
        .into_iter()
        .find(|k| kind.token.is_keyword(k));
    let Some(constraint) = constraint else {
        // ADD [COLUMN] …: SQLite's own.
        return Ok(Cow::Borrowed(text));
    };
    if constraint != "unique" {
        return Err(DdlError::AddConstraint(constraint.to_ascii_uppercase()));
    }
    // ALTER TABLE [IF EXISTS] [ONLY] table ADD …
    let word = |i: usize, kw: &str| tokens.get(i).is_some_and(|t| t.token.is_keyword(kw));
    let mut table_at = 2;
    if word(table_at, "if") && word(table_at + 1, "exists") {
        table_at += 2;
    }
    if word(table_at, "only") {
        table_at += 1;
    }
    let Some(name) = name else {
        return Err(DdlError::AddConstraint("UNIQUE without a name".into()));
    };
    let span = |t: &Spanned<'_>| &text[t.start..t.end];
    // The table, and its schema if named: SQLite puts the schema on the index's name, and
    // has no schema `public` (PostgreSQL's default one is the database itself here).
    let (schema, table) = match &tokens[table_at..add] {
        [table] => (None, table),
        [schema, dot, table] if dot.token == Token::Punct(".") => {
            let public = schema.token.identifier().as_deref() == Some("public");
            ((!public).then(|| span(schema)), table)
        }
        _ => return Err(DdlError::AddConstraint("UNIQUE on that table name".into())),
    };
    // UNIQUE (columns) and nothing else: NULLS NOT DISTINCT, INCLUDE, DEFERRABLE… would be
    // lost, or weaken the constraint.
    let unique_at = tokens
        .iter()
        .position(|t| t.token.is_keyword("unique"))
        .unwrap_or(add);
    let open = unique_at + 1;
    let close = (open..tokens.len()).find(|&i| tokens[i].token == Token::Punct(")"));
    let (true, Some(close)) = (
        tokens.get(open).map(|t| &t.token) == Some(&Token::Punct("(")),
        close,
    ) else {
        return Err(DdlError::AddConstraint(
            "UNIQUE with options before its columns".into(),
        ));
    };
    if close + 1 != tokens.len() {
        return Err(DdlError::AddConstraint(format!(
            "UNIQUE (…) {}",
            span(&tokens[close + 1])
        )));
    }
    let index = match schema {
        Some(schema) => format!("{schema}.{}", span(name)),
        None => span(name).to_owned(),
    };
    Ok(Cow::Owned(format!(
        "CREATE UNIQUE INDEX {index} ON {} {}",
        span(table),
        &text[tokens[open].start..tokens[close].end]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(sql: &str) -> String {
        rewrite(sql).unwrap().into_owned()
    }

    #[test]
    fn numbered_keys_indexes_and_unique_constraints_are_said_in_sqlite_s_words() {
        assert_eq!(
            sqlite("CREATE TABLE t (id SERIAL PRIMARY KEY, name varchar(20))"),
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name varchar(20))"
        );
        assert_eq!(
            sqlite("create table t (id bigserial not null, v text, primary key (id))"),
            "create table t (id INTEGER not null, v text, primary key (id))"
        );
        assert_eq!(
            sqlite(
                "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY (START WITH 1) PRIMARY KEY, v TEXT)"
            ),
            "CREATE TABLE t (id INTEGER  PRIMARY KEY, v TEXT)"
        );
        assert_eq!(
            sqlite(
                "CREATE TABLE t (id integer GENERATED ALWAYS AS IDENTITY, CONSTRAINT pk PRIMARY KEY (id))"
            ),
            "CREATE TABLE t (id INTEGER , CONSTRAINT pk PRIMARY KEY (id))"
        );
        assert_eq!(
            sqlite("CREATE INDEX ix ON t USING btree (name)"),
            "CREATE INDEX ix ON t  (name)"
        );
        assert_eq!(
            sqlite("ALTER TABLE public.t ADD CONSTRAINT t_name_key UNIQUE (name, other)"),
            "CREATE UNIQUE INDEX t_name_key ON t (name, other)"
        );
        assert_eq!(
            sqlite("ALTER TABLE ONLY other.t ADD CONSTRAINT k UNIQUE (a)"),
            "CREATE UNIQUE INDEX other.k ON t (a)"
        );
        // Django's and pg_dump's spellings.
        assert_eq!(
            sqlite(
                "CREATE TABLE \"t\" (\"id\" bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, \"v\" text)"
            ),
            "CREATE TABLE \"t\" (\"id\" INTEGER NOT NULL PRIMARY KEY , \"v\" text)"
        );
        assert_eq!(
            sqlite("CREATE TABLE t (id SERIAL GENERATED ALWAYS AS IDENTITY PRIMARY KEY)"),
            "CREATE TABLE t (id INTEGER  PRIMARY KEY)"
        );
        assert_eq!(
            sqlite("CREATE TABLE t (id serial, PRIMARY KEY (id ASC))"),
            "CREATE TABLE t (id INTEGER, PRIMARY KEY (id ASC))"
        );
        assert_eq!(
            sqlite("ALTER TABLE ONLY t ADD CONSTRAINT k UNIQUE (a)"),
            "CREATE UNIQUE INDEX k ON t (a)"
        );
        for same in [
            "CREATE TABLE serials(serial TEXT, identity INT)",
            "CREATE TABLE g (a INT, b INT GENERATED ALWAYS AS (identity * 2))",
            "CREATE TABLE c AS SELECT count(DISTINCT serial) FROM t",
            "SELECT 'serial' FROM t",
            "ALTER TABLE t ADD COLUMN c INTEGER",
            "CREATE TABLE t(a INTEGER PRIMARY KEY)",
        ] {
            assert_eq!(sqlite(same), same);
        }
    }

    /// Django's index for `LIKE 'x%'` names an operator class: a syntax error for SQLite.
    #[test]
    fn an_operator_class_in_an_index_was_a_syntax_error() {
        assert_eq!(
            sqlite("CREATE INDEX \"c_like\" ON \"c\" (\"name\" varchar_pattern_ops)"),
            "CREATE INDEX \"c_like\" ON \"c\" (\"name\" )"
        );
        assert_eq!(
            sqlite("CREATE INDEX ix ON t USING btree (a text_pattern_ops, b)"),
            "CREATE INDEX ix ON t  (a , b)"
        );
    }

    #[test]
    fn what_sqlite_cannot_say_is_refused_with_the_construct_named() {
        let serial = rewrite("CREATE TABLE t (id INTEGER PRIMARY KEY, n SERIAL)").unwrap_err();
        assert!(
            serial.to_string().contains("SERIAL on column \"n\""),
            "{serial}"
        );
        let gin = rewrite("CREATE INDEX ix ON t USING gin (doc)").unwrap_err();
        assert_eq!(gin, DdlError::IndexMethod("gin".into()));
        let fk =
            rewrite("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u(id)").unwrap_err();
        assert!(fk.to_string().contains("FOREIGN"), "{fk}");
        let rowid = rewrite("CREATE TABLE w (id SERIAL PRIMARY KEY) WITHOUT ROWID").unwrap_err();
        assert!(matches!(rowid, DdlError::Numbered { .. }), "{rowid}");
        for weaker in [
            "ALTER TABLE t ADD CONSTRAINT k UNIQUE NULLS NOT DISTINCT (a)",
            "ALTER TABLE t ADD CONSTRAINT k UNIQUE (a) DEFERRABLE",
        ] {
            assert!(rewrite(weaker).is_err(), "{weaker}");
        }
        assert_eq!(fk.sqlstate(), "0A000");
    }
}
