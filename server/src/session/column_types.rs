//! PostgreSQL types of result columns SQLite cannot tell: arrays. Cairn keeps an array as its
//! text (`{a,b}`), so SQLite types `array_agg(x)` as text; a driver parses a column into a
//! list only when it is described as an array (SQLAlchemy's reflection reads index and key
//! columns that way). Read from the statement's own words, before Cairn rewrites them: a
//! select item that is `array_agg(…)`, `ARRAY(…)` or `ARRAY[…]`, or that names the alias of
//! one in a subquery; its elements are booleans when `array_agg` takes a column whose alias
//! is a comparison.

use std::collections::HashSet;

use rusqlite::Connection;

use crate::sql::lexer::{Spanned, Token};
use crate::sql::types::SqlType;

/// For a SELECT with an array column, the array type of each of its columns (`None` for the
/// others); `None` when it has none.
pub(super) fn arrays_of_select(tokens: &[Spanned<'_>]) -> Option<Vec<Option<SqlType>>> {
    if !tokens
        .iter()
        .any(|t| t.token.is_keyword("array_agg") || t.token.is_keyword("array"))
    {
        return None;
    }
    let top = super::column_names::items(tokens)?;
    // Every select list's aliased items, with the alias of the subquery they are in, to
    // follow a column through subqueries.
    let mut named: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    let mut in_subquery: Vec<Option<String>> = Vec::new();
    for (at, t) in tokens.iter().enumerate() {
        if t.token.is_keyword("select") {
            let subquery = subquery_alias(tokens, at);
            for item in super::column_names::items_of(tokens, at) {
                if let Some((alias, expression)) = aliased(tokens, item) {
                    named.push((alias, expression));
                    in_subquery.push(subquery.clone());
                }
            }
        }
    }
    let booleans: HashSet<&str> = named
        .iter()
        .filter(|(_, e)| is_comparison(&tokens[e.clone()]))
        .map(|(a, _)| a.as_str())
        .collect();
    let array_of = |expression: &[Spanned<'_>]| array_type(expression, &booleans);
    let arrays: Vec<(&str, Option<&str>, SqlType)> = named
        .iter()
        .zip(&in_subquery)
        .filter_map(|((a, e), sub)| {
            Some((a.as_str(), sub.as_deref(), array_of(&tokens[e.clone()])?))
        })
        .collect();
    let types: Vec<Option<SqlType>> = top
        .into_iter()
        .map(|item| {
            let expression = aliased(tokens, item.clone()).map_or(item, |(_, e)| e);
            let expression = &tokens[expression];
            array_of(expression).or_else(|| {
                // `s.col` names the column `col` of the subquery aliased `s` only.
                let column = last_identifier(expression)?;
                let qualifier = (expression.len() >= 3)
                    .then(|| expression[expression.len() - 3].token.identifier())
                    .flatten();
                arrays
                    .iter()
                    .find(|(a, sub, _)| {
                        // Unqualified, any subquery's (or CTE's) column of that name.
                        *a == column && (qualifier.is_none() || qualifier.as_deref() == *sub)
                    })
                    .map(|(_, _, t)| *t)
            })
        })
        .collect();
    types.iter().any(Option::is_some).then_some(types)
}

/// Types the columns SQLite declares no type for that are `min(x)` or `max(x)` of one column
/// (as SQLAlchemy's reflection reads a key's attributes): as that column, which SQLite
/// declares when the same statement names it bare. Without it, such a column in a statement
/// with parameters (which is not run to type its columns) would be text.
pub(super) fn through_aggregates(
    conn: &Connection,
    sql: &str,
    declared: &mut [(String, Option<SqlType>)],
) {
    if !declared.iter().any(|(_, ty)| ty.is_none())
        || !(super::super::pgcompat::mentions(sql, "min(")
            || super::super::pgcompat::mentions(sql, "max("))
    {
        return;
    }
    let Ok(tokens) = crate::sql::lexer::tokenize(sql) else {
        return;
    };
    let Some(items) = super::column_names::items(&tokens) else {
        return;
    };
    if items.len() != declared.len() {
        return;
    }
    for (i, item) in items.into_iter().enumerate() {
        if declared[i].1.is_some() {
            continue;
        }
        let item = &tokens[item];
        let is_aggregate = item
            .first()
            .is_some_and(|t| t.token.is_keyword("min") || t.token.is_keyword("max"))
            && item.get(1).is_some_and(|t| t.token == Token::Punct("("));
        let Some(close) = item.iter().position(|t| t.token == Token::Punct(")")) else {
            continue;
        };
        if !is_aggregate || close < 3 || last_identifier(&item[2..close]).is_none() {
            continue;
        }
        let probe = format!(
            "{}{}{}",
            &sql[..item[0].start],
            &sql[item[2].start..item[close - 1].end],
            &sql[item[close].end..]
        );
        if let Ok(stmt) = conn.prepare(&probe)
            && let Some(column) = stmt.columns().nth(i)
        {
            declared[i].1 = column
                .decl_type()
                .and_then(crate::sql::types::from_declared);
        }
    }
}

/// The alias of the subquery whose SELECT is at `select` (`(SELECT …) AS s`), if it is one.
fn subquery_alias(tokens: &[Spanned<'_>], select: usize) -> Option<String> {
    let open = select.checked_sub(1)?;
    if tokens[open].token != Token::Punct("(") {
        return None;
    }
    let close = crate::pgcompat::closing(tokens, open)?;
    let mut at = close + 1;
    if tokens.get(at).is_some_and(|t| t.token.is_keyword("as")) {
        at += 1;
    }
    match &tokens.get(at)?.token {
        Token::Word(w) if !crate::pgcompat::is_sql_keyword(w) => tokens[at].token.identifier(),
        Token::QuotedIdent(_) => tokens[at].token.identifier(),
        _ => None,
    }
}

/// An item written `expression AS alias`: the alias and the expression's tokens.
fn aliased(
    tokens: &[Spanned<'_>],
    item: std::ops::Range<usize>,
) -> Option<(String, std::ops::Range<usize>)> {
    let (start, end) = (item.start, item.end);
    if end < start + 3 || !tokens[end - 2].token.is_keyword("as") {
        return None;
    }
    Some((tokens[end - 1].token.identifier()?, start..end - 2))
}

/// The array type an expression has: `array_agg(x)` (bool[] when `x` is a comparison's
/// alias), `ARRAY(…)`, `ARRAY[…]`.
fn array_type(expression: &[Spanned<'_>], booleans: &HashSet<&str>) -> Option<SqlType> {
    let first = expression.first()?;
    if first.token.is_keyword("array") && expression.len() >= 2 {
        return Some(SqlType::TextArray);
    }
    if !first.token.is_keyword("array_agg")
        || expression.get(1).map(|t| &t.token) != Some(&Token::Punct("("))
        || expression.last().map(|t| &t.token) != Some(&Token::Punct(")"))
    {
        return None;
    }
    // The argument, up to its ORDER BY.
    let inner = &expression[2..expression.len() - 1];
    let argument = inner
        .iter()
        .position(|t| t.token.is_keyword("order"))
        .map_or(inner, |at| &inner[..at]);
    let is_bool = last_identifier(argument).is_some_and(|c| booleans.contains(c.as_str()))
        && argument.iter().all(|t| {
            matches!(
                t.token,
                Token::Word(_) | Token::QuotedIdent(_) | Token::Punct(".")
            )
        });
    Some(if is_bool {
        SqlType::BoolArray
    } else {
        SqlType::TextArray
    })
}

/// The column a `t.col` (or `col`) reference names.
fn last_identifier(expression: &[Spanned<'_>]) -> Option<String> {
    let plain = expression.iter().all(|t| {
        matches!(
            t.token,
            Token::Word(_) | Token::QuotedIdent(_) | Token::Punct(".")
        )
    });
    if !plain {
        return None;
    }
    expression.last()?.token.identifier()
}

/// Whether an expression is a comparison at its top level (outside parentheses and CASE).
fn is_comparison(expression: &[Spanned<'_>]) -> bool {
    let mut depth = 0i32;
    let mut cases = 0i32;
    for t in expression {
        match &t.token {
            Token::Punct("(") => depth += 1,
            Token::Punct(")") => depth -= 1,
            Token::Word(_) if t.token.is_keyword("case") => cases += 1,
            Token::Word(_) if t.token.is_keyword("end") => cases -= 1,
            Token::Punct("=" | "<>" | "!=" | "<" | ">" | "<=" | ">=")
                if depth == 0 && cases == 0 =>
            {
                return true;
            }
            Token::Word(w)
                if depth == 0
                    && cases == 0
                    && ["is", "in", "like", "between", "exists", "not"]
                        .iter()
                        .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer::tokenize;

    fn arrays(sql: &str) -> Option<Vec<Option<SqlType>>> {
        arrays_of_select(&tokenize(sql).unwrap())
    }

    #[test]
    fn array_columns_are_told_through_subqueries() {
        assert_eq!(arrays("SELECT 1, count(*) FROM t"), None);
        assert_eq!(
            arrays("SELECT ARRAY['x', 'y z'] AS b, 2"),
            Some(vec![Some(SqlType::TextArray), None])
        );
        assert_eq!(
            arrays("SELECT id, array_agg(name ORDER BY name) AS names FROM t GROUP BY id"),
            Some(vec![None, Some(SqlType::TextArray)])
        );
        assert_eq!(
            arrays(
                "SELECT i.relname, c.elements, c.is_expr FROM i LEFT JOIN (SELECT x.id, array_agg(x.element ORDER BY x.ord) AS elements, array_agg(x.is_expr) AS is_expr FROM (SELECT a.id, a.n AS element, a.num = 0 AS is_expr FROM a) AS x GROUP BY x.id) AS c ON c.id = i.id"
            ),
            Some(vec![
                None,
                Some(SqlType::TextArray),
                Some(SqlType::BoolArray)
            ])
        );
        // A table's own column named like a subquery's array is not an array.
        assert_eq!(
            arrays(
                "SELECT t.ok, a.ok FROM t JOIN (SELECT id, array_agg(ok) AS ok FROM (SELECT id, v > 0 AS ok FROM m) s GROUP BY id) a USING (id)"
            ),
            Some(vec![None, Some(SqlType::BoolArray)])
        );
        assert_eq!(
            arrays("SELECT ARRAY(SELECT b.rolname FROM r b) as memberof, r.x FROM r"),
            Some(vec![Some(SqlType::TextArray), None])
        );
    }
}
