//! Guessing the types of `$n` parameters from where they stand, as PostgreSQL infers them,
//! so that typed clients (tokio-postgres, JDBC) can send an `i64` for an INTEGER column.
//!
//! Covered: `INSERT INTO t (cols) VALUES ($1, …)` (and without a column list), comparisons
//! `col <op> $n` / `$n <op> col` (which includes `SET col = $n`), `CAST($n AS type)`, and
//! `LIMIT`/`OFFSET $n`.
//! Anything else is described as text, which SQLite's type affinity converts on storage.

use super::lexer::{Spanned, Token};
use super::types::SqlType;

/// The highest `$n` in the statement (PostgreSQL's parameter count).
pub fn max_param(tokens: &[Spanned<'_>]) -> usize {
    tokens
        .iter()
        .filter_map(|t| match t.token {
            Token::Param(n) => Some(n),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// What the inference needs to know about the schema.
pub trait Schema {
    /// The columns of `table` in order, each with its declared type.
    fn columns(&self, table: &str) -> Vec<(String, Option<SqlType>)>;
}

/// Infers a type for each of `$1..=$count`; `None` where nothing could be inferred.
pub fn infer(tokens: &[Spanned<'_>], count: usize, schema: &dyn Schema) -> Vec<Option<SqlType>> {
    let mut types = vec![None; count];
    let words: Vec<&Token<'_>> = tokens.iter().map(|t| &t.token).collect();
    let tables = referenced_tables(&words);
    let column_type = |name: &str| -> Option<SqlType> {
        tables.iter().find_map(|table| {
            schema
                .columns(table)
                .into_iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(name))
                .and_then(|(_, ty)| ty)
        })
    };
    let mut set = |n: usize, ty: Option<SqlType>| {
        if let (Some(slot), Some(ty)) = (n.checked_sub(1).and_then(|i| types.get_mut(i)), ty) {
            slot.get_or_insert(ty);
        }
    };

    infer_insert_values(&words, schema, &mut set);

    for (i, token) in words.iter().enumerate() {
        let Token::Param(n) = token else { continue };
        let before = i.checked_sub(1).map(|j| words[j]);
        if before.is_some_and(|t| t.is_keyword("limit") || t.is_keyword("offset")) {
            set(*n, Some(SqlType::Int8));
            continue;
        }
        if before == Some(&Token::Punct("("))
            && i.checked_sub(2)
                .is_some_and(|j| words[j].is_keyword("cast"))
            && words.get(i + 1).is_some_and(|t| t.is_keyword("as"))
            && let Some(declared) = words.get(i + 2).and_then(|t| t.identifier())
        {
            set(*n, super::types::from_declared(&declared));
            continue;
        }
        if before.is_some_and(is_comparison)
            && let Some(col) = i.checked_sub(2).and_then(|j| words[j].identifier())
        {
            set(*n, column_type(&col));
            continue;
        }
        if words.get(i + 1).is_some_and(|t| is_comparison(t))
            && let Some(col) = words.get(i + 2).and_then(|t| t.identifier())
        {
            // `$1 = t.col`: take the column after the dot.
            let col = match (words.get(i + 3), words.get(i + 4)) {
                (Some(Token::Punct(".")), Some(next)) => next.identifier().unwrap_or(col),
                _ => col,
            };
            set(*n, column_type(&col));
        }
    }
    types
}

fn is_comparison(token: &Token<'_>) -> bool {
    matches!(
        token,
        Token::Punct("=" | "==" | "<" | ">" | "<=" | ">=" | "<>" | "!=")
    )
}

/// Tables named after FROM, JOIN, UPDATE and INTO (the last part of `schema.table`).
fn referenced_tables(words: &[&Token<'_>]) -> Vec<String> {
    let mut tables = Vec::new();
    for (i, token) in words.iter().enumerate() {
        if ["from", "join", "update", "into"]
            .iter()
            .any(|kw| token.is_keyword(kw))
        {
            let mut j = i + 1;
            if words.get(j).is_some_and(|t| t.is_keyword("or")) {
                j += 2; // UPDATE OR REPLACE t
            }
            if let Some(mut name) = words.get(j).and_then(|t| t.identifier()) {
                if words.get(j + 1) == Some(&&Token::Punct("."))
                    && let Some(last) = words.get(j + 2).and_then(|t| t.identifier())
                {
                    name = last;
                }
                tables.push(name);
            }
        }
    }
    tables
}

fn infer_insert_values(
    words: &[&Token<'_>],
    schema: &dyn Schema,
    set: &mut dyn FnMut(usize, Option<SqlType>),
) {
    let Some(into) = words.iter().position(|t| t.is_keyword("into")) else {
        return;
    };
    if !words
        .first()
        .is_some_and(|t| t.is_keyword("insert") || t.is_keyword("replace"))
    {
        return;
    }
    let mut i = into + 1;
    let Some(mut table) = words.get(i).and_then(|t| t.identifier()) else {
        return;
    };
    i += 1;
    if words.get(i) == Some(&&Token::Punct(".")) {
        let Some(last) = words.get(i + 1).and_then(|t| t.identifier()) else {
            return;
        };
        table = last;
        i += 2;
    }
    let declared = schema.columns(&table);
    let mut columns: Vec<Option<SqlType>> = declared.iter().map(|(_, ty)| *ty).collect();
    if words.get(i) == Some(&&Token::Punct("(")) {
        let (names, next) = group(words, i);
        columns = names
            .iter()
            .map(|item| match item.as_slice() {
                [name] => name.identifier().and_then(|name| {
                    declared
                        .iter()
                        .find(|(c, _)| c.eq_ignore_ascii_case(&name))
                        .and_then(|(_, ty)| *ty)
                }),
                _ => None,
            })
            .collect();
        i = next;
    }
    if !words.get(i).is_some_and(|t| t.is_keyword("values")) {
        return;
    }
    i += 1;
    while words.get(i) == Some(&&Token::Punct("(")) {
        let (items, next) = group(words, i);
        for (item, ty) in items.iter().zip(&columns) {
            if let [Token::Param(n)] = item.as_slice() {
                set(*n, *ty);
            }
        }
        i = next;
        if words.get(i) == Some(&&Token::Punct(",")) {
            i += 1;
        }
    }
}

/// The comma-separated items of the parenthesised group opening at `open`, and the index
/// after its closing parenthesis.
fn group<'t, 'a>(words: &[&'t Token<'a>], open: usize) -> (Vec<Vec<&'t Token<'a>>>, usize) {
    let mut items = vec![Vec::new()];
    let mut depth = 0usize;
    let mut i = open;
    while let Some(token) = words.get(i) {
        match token {
            Token::Punct("(") => {
                depth += 1;
                if depth == 1 {
                    i += 1;
                    continue;
                }
            }
            Token::Punct(")") => {
                depth -= 1;
                if depth == 0 {
                    return (items, i + 1);
                }
            }
            Token::Punct(",") if depth == 1 => {
                items.push(Vec::new());
                i += 1;
                continue;
            }
            _ => {}
        }
        if let Some(item) = items.last_mut() {
            item.push(*token);
        }
        i += 1;
    }
    (items, i)
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    struct Accounts;
    impl Schema for Accounts {
        fn columns(&self, table: &str) -> Vec<(String, Option<SqlType>)> {
            match table {
                "accounts" => vec![
                    ("id".into(), Some(SqlType::Int8)),
                    ("name".into(), Some(SqlType::Text)),
                    ("balance".into(), Some(SqlType::Float8)),
                    ("photo".into(), Some(SqlType::Bytea)),
                ],
                _ => vec![],
            }
        }
    }

    fn infer_sql(sql: &str) -> Vec<Option<SqlType>> {
        let tokens = tokenize(sql).unwrap();
        infer(&tokens, max_param(&tokens), &Accounts)
    }

    use SqlType::*;

    #[test]
    fn insert_with_and_without_column_list() {
        assert_eq!(
            infer_sql("INSERT INTO accounts (name, id) VALUES ($1, $2), ($3, $4)"),
            vec![Some(Text), Some(Int8), Some(Text), Some(Int8)]
        );
        assert_eq!(
            infer_sql("insert into main.accounts values ($1, $2, $3, $4)"),
            vec![Some(Int8), Some(Text), Some(Float8), Some(Bytea)]
        );
    }

    #[test]
    fn comparisons_limit_and_set() {
        assert_eq!(
            infer_sql("UPDATE accounts SET balance = $1 WHERE id = $2"),
            vec![Some(Float8), Some(Int8)]
        );
        assert_eq!(
            infer_sql(
                "SELECT * FROM accounts a WHERE $1 < a.balance AND name <> $2 LIMIT $3 OFFSET $4"
            ),
            vec![Some(Float8), Some(Text), Some(Int8), Some(Int8)]
        );
    }

    #[test]
    fn a_cast_says_the_type() {
        assert_eq!(
            infer_sql(
                "SELECT * FROM f(CAST($1 AS INTEGER), cast($2 as text)) WHERE x = CAST($3 AS REAL)"
            ),
            vec![Some(Int8), Some(Text), Some(Float8)]
        );
    }

    #[test]
    fn unknown_positions_stay_open() {
        assert_eq!(infer_sql("SELECT $1 || $2"), vec![None, None]);
        assert_eq!(infer_sql("SELECT * FROM nowhere WHERE x = $1"), vec![None]);
    }
}
