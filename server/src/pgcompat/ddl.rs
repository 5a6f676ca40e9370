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
    let maybe = (create && (has("serial") || has("identity") || has("using")))
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
    Ok(apply(text, edits))
}

/// (start, end, replacement) of each change, in order.
type Edits = Vec<(usize, usize, &'static str)>;

fn apply(text: &str, edits: Edits) -> Cow<'_, str> {
    if edits.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, replacement) in edits {
        out.push_str(&text[at..start]);
        out.push_str(replacement);
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

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

fn create_table(tokens: &[Spanned<'_>], table_at: usize) -> Result<Edits, DdlError> {
    let Some(open) = (table_at..tokens.len()).find(|&i| tokens[i].token == Token::Punct("("))
    else {
        return Ok(Vec::new());
    };
    let elements = elements(tokens, open);
    // The columns a table-level PRIMARY KEY (…) names.
    let mut table_key: Vec<String> = Vec::new();
    for range in &elements {
        let element = &tokens[range.clone()];
        if let Some(p) = element.iter().position(|t| t.token.is_keyword("primary"))
            && element
                .first()
                .is_some_and(|t| TABLE_CONSTRAINTS.iter().any(|k| t.token.is_keyword(k)))
        {
            table_key = element[p..]
                .iter()
                .filter_map(|t| t.token.identifier())
                .filter(|n| n != "primary" && n != "key")
                .collect();
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
        let is_key = element.iter().any(|t| t.token.is_keyword("primary"))
            || (table_key.len() == 1 && table_key[0] == column);
        let serial = element
            .get(1)
            .filter(|t| SERIALS.iter().any(|s| t.token.is_keyword(s)));
        let identity = element
            .iter()
            .position(|t| t.token.is_keyword("generated"))
            .filter(|&g| {
                element[g..]
                    .iter()
                    .take(5)
                    .any(|t| t.token.is_keyword("identity"))
            });
        if serial.is_none() && identity.is_none() {
            continue;
        }
        let construct = if serial.is_some() {
            "SERIAL"
        } else {
            "GENERATED … AS IDENTITY"
        };
        if !is_key {
            return Err(DdlError::Numbered { construct, column });
        }
        if let Some(serial) = serial {
            edits.push((serial.start, serial.end, "INTEGER"));
        }
        if let Some(g) = identity {
            // The type: the words between the name and GENERATED, as one INTEGER.
            if g > 1 {
                edits.push((element[1].start, element[g - 1].end, "INTEGER"));
            } else {
                edits.push((first.end, first.end, " INTEGER"));
            }
            // GENERATED … IDENTITY, and its sequence options in parentheses if any.
            let identity_at = g + element[g..]
                .iter()
                .position(|t| t.token.is_keyword("identity"))
                .unwrap_or(0);
            let mut end = element[identity_at].end;
            if element.get(identity_at + 1).map(|t| &t.token) == Some(&Token::Punct("(")) {
                let mut depth = 0;
                for t in &element[identity_at + 1..] {
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
            edits.push((element[g].start, end, ""));
        }
    }
    edits.sort_by_key(|e| e.0);
    Ok(edits)
}

fn create_index(tokens: &[Spanned<'_>]) -> Result<Edits, DdlError> {
    let Some(using) = tokens.iter().position(|t| t.token.is_keyword("using")) else {
        return Ok(Vec::new());
    };
    let Some(method) = tokens.get(using + 1) else {
        return Ok(Vec::new());
    };
    if method.token.is_keyword("btree") || method.token.is_keyword("hash") {
        Ok(vec![(tokens[using].start, method.end, "")])
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
    let (Some(name), Some(table)) = (name, tokens.get(table_at).filter(|_| add > table_at)) else {
        return Err(DdlError::AddConstraint("UNIQUE without a name".into()));
    };
    let columns_from = tokens
        .iter()
        .skip(add)
        .position(|t| t.token == Token::Punct("("))
        .map(|p| tokens[add + p].start);
    let Some(columns_from) = columns_from else {
        return Err(DdlError::AddConstraint("UNIQUE without columns".into()));
    };
    let span = |t: &Spanned<'_>| &text[t.start..t.end];
    Ok(Cow::Owned(format!(
        "CREATE UNIQUE INDEX {} ON {} {}",
        span(name),
        &text[table.start..tokens[add - 1].end],
        &text[columns_from..tokens.last().map_or(text.len(), |t| t.end)]
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
            "CREATE UNIQUE INDEX t_name_key ON public.t (name, other)"
        );
        assert_eq!(
            sqlite("ALTER TABLE ONLY t ADD CONSTRAINT k UNIQUE (a)"),
            "CREATE UNIQUE INDEX k ON t (a)"
        );
        for same in [
            "CREATE TABLE serials(serial TEXT, identity INT)",
            "SELECT 'serial' FROM t",
            "ALTER TABLE t ADD COLUMN c INTEGER",
            "CREATE TABLE t(a INTEGER PRIMARY KEY)",
        ] {
            assert_eq!(sqlite(same), same);
        }
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
        assert_eq!(fk.sqlstate(), "0A000");
    }
}
