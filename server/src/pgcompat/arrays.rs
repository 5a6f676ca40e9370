//! PostgreSQL's array expressions as catalog queries write them, in SQLite's terms. Cairn
//! has no array type: an array is text in PostgreSQL's output form (`{a,b}`).
//!
//! - `ARRAY(SELECT …)`: the subquery's values as one such text (`{}` when it has none).
//! - `x = ANY(ARRAY[a, b])` is `x IN (a, b)`, and `x <> ALL(ARRAY[a, b])` is `x NOT IN (a, b)`;
//!   over any other array value (a column, a parameter holding `{a,b}`), the same over its
//!   elements (`cairn_array_json` reads either form).
//! - `ARRAY[a, b]` elsewhere is the text `{a,b}`.
//! - `x[i]` (no space before the bracket) is element `i` of `x`, counted from 1, as
//!   `cairn_array_element` reads it; SQLite would read `x AS i`.

use std::borrow::Cow;

use crate::sql::lexer::{self, Spanned, Token};

/// `text` with its array expressions rewritten; borrowed when it has none (or does not
/// tokenize, which SQLite then reports).
pub fn rewrite(text: &str) -> Cow<'_, str> {
    if !super::mentions_word(text, "array")
        && !super::mentions_word(text, "any")
        && !super::mentions_word(text, "all")
        && !has_subscript(text)
    {
        return Cow::Borrowed(text);
    }
    let Ok(tokens) = lexer::tokenize(text) else {
        return Cow::Borrowed(text);
    };
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        // `= ANY (…)`, `<> ALL (…)`: the comparison and its array together.
        if let Token::Punct(op @ ("=" | "<>" | "!=")) = t.token
            && let Some(quantifier) = tokens.get(i + 1)
            && (quantifier.token.is_keyword("any") && op == "="
                || quantifier.token.is_keyword("all") && op != "=")
            && tokens
                .get(i + 2)
                .is_some_and(|p| p.token == Token::Punct("("))
            && let Some(close) = super::closing(&tokens, i + 2)
        {
            let negated = op != "=";
            let inner = &tokens[i + 3..close];
            let list = match inner {
                [array, open, .., close]
                    if array.token.is_keyword("array")
                        && open.token == Token::Punct("[")
                        && close.token == Token::Punct("]") =>
                {
                    let elements = &text[open.end..close.start];
                    format!("({})", rewrite(elements))
                }
                _ if !inner.is_empty() => {
                    let value = &text[inner[0].start..inner[inner.len() - 1].end];
                    format!(
                        "(SELECT value FROM json_each(cairn_array_json({})))",
                        rewrite(value)
                    )
                }
                _ => {
                    i += 1;
                    continue;
                }
            };
            let keyword = if negated { "NOT IN" } else { "IN" };
            edits.push((t.start, tokens[close].end, format!("{keyword} {list}")));
            i = close + 1;
            continue;
        }
        // x[i]: a subscript written against its value.
        if is_bracket(text, t)
            && let Some(before) = i.checked_sub(1).map(|j| &tokens[j])
            && before.end == t.start
            && !(i >= 2 && tokens[i - 2].token == Token::Punct("::"))
            && (matches!(before.token, Token::QuotedIdent(_) | Token::Punct(")"))
                || matches!(before.token, Token::Word(w) if !w.eq_ignore_ascii_case("array") && !super::is_sql_keyword(w)))
        {
            let value_start = subscripted_start(&tokens, i - 1);
            let value = &text[tokens[value_start].start..before.end];
            let index = &text[t.start + 1..t.end - 1];
            edits.push((
                tokens[value_start].start,
                t.end,
                format!("cairn_array_element({value}, {})", rewrite(index)),
            ));
            i += 1;
            continue;
        }
        if t.token.is_keyword("array") {
            // ARRAY(SELECT …)
            if tokens
                .get(i + 1)
                .is_some_and(|p| p.token == Token::Punct("("))
                && tokens
                    .get(i + 2)
                    .is_some_and(|s| s.token.is_keyword("select") || s.token.is_keyword("with"))
                && let Some(close) = super::closing(&tokens, i + 1)
            {
                let query = &text[tokens[i + 2].start..tokens[close - 1].end];
                edits.push((
                    t.start,
                    tokens[close].end,
                    format!(
                        "(WITH cairn_array(v) AS ({}) SELECT coalesce(array_agg(v), '{{}}') FROM cairn_array)",
                        rewrite(query)
                    ),
                ));
                i = close + 1;
                continue;
            }
            // ARRAY[a, b]
            if tokens
                .get(i + 1)
                .is_some_and(|b| b.token == Token::Punct("["))
                && let Some(close) = super::closing(&tokens, i + 1)
            {
                let elements = rewrite(&text[tokens[i + 1].end..tokens[close].start]).into_owned();
                let sql = if elements.trim().is_empty() {
                    "'{}'".to_owned()
                } else {
                    format!("cairn_array({elements})")
                };
                edits.push((t.start, tokens[close].end, sql));
                i = close + 1;
                continue;
            }
        }
        i += 1;
    }
    super::edited(text, edits)
}

/// Whether `text` may hold a subscript: a `[` right after a name or `)`.
fn has_subscript(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.windows(2).any(|w| {
        w[1] == b'[' && (w[0].is_ascii_alphanumeric() || matches!(w[0], b'_' | b')' | b'"'))
    })
}

/// The first token of the value subscripted at `last`: a qualified name (`t.col`) or a
/// parenthesized expression.
fn subscripted_start(tokens: &[Spanned<'_>], last: usize) -> usize {
    if tokens[last].token == Token::Punct(")") {
        let mut depth = 0usize;
        for j in (0..=last).rev() {
            match tokens[j].token {
                Token::Punct(")") => depth += 1,
                Token::Punct("(") => {
                    depth -= 1;
                    if depth == 0 {
                        return j;
                    }
                }
                _ => {}
            }
        }
        return last;
    }
    let mut first = last;
    while first >= 2
        && tokens[first - 1].token == Token::Punct(".")
        && matches!(
            tokens[first - 2].token,
            Token::Word(_) | Token::QuotedIdent(_)
        )
    {
        first -= 2;
    }
    first
}

/// Element `index` (from 1) of an array value, as `x[index]` reads it: NULL when out of
/// range or not an array.
pub fn element_at(array: &str, index: i64) -> Option<serde_json::Value> {
    let serde_json::Value::Array(items) = serde_json::from_str(&to_json(array)).ok()? else {
        return None;
    };
    let at = usize::try_from(index.checked_sub(1)?).ok()?;
    items.into_iter().nth(at)
}

/// Whether `token` is `[…]`, which the lexer reads as a quoted name.
fn is_bracket(text: &str, token: &Spanned<'_>) -> bool {
    matches!(token.token, Token::QuotedIdent(_)) && text[token.start..].starts_with('[')
}

/// The elements of an array value as a JSON array (for `json_each`): PostgreSQL's `{a,b}`
/// (elements quoted where they need it), or JSON already.
pub fn to_json(array: &str) -> String {
    let trimmed = array.trim();
    if trimmed.starts_with('[') && serde_json::from_str::<serde_json::Value>(trimmed).is_ok() {
        return trimmed.to_owned();
    }
    let Some(inner) = trimmed.strip_prefix('{').and_then(|a| a.strip_suffix('}')) else {
        // int2vector and oidvector (`pg_index.indkey`): numbers separated by spaces.
        let elements: Vec<serde_json::Value> = trimmed
            .split_whitespace()
            .map(|e| element(e.to_owned(), false))
            .collect();
        return serde_json::Value::Array(elements).to_string();
    };
    let mut elements = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '\\' if quoted => current.extend(chars.next()),
            ',' if !quoted => {
                elements.push(element(std::mem::take(&mut current), was_quoted));
                was_quoted = false;
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() || was_quoted || !elements.is_empty() {
        elements.push(element(current, was_quoted));
    }
    serde_json::Value::Array(elements).to_string()
}

/// The elements of an array value (as [`to_json`] reads it), as text.
pub fn elements(array: &str) -> Vec<Option<String>> {
    match serde_json::from_str(&to_json(array)) {
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s),
                other => Some(other.to_string()),
            })
            .collect(),
        _ => vec![Some(array.to_owned())],
    }
}

/// An array's text as PostgreSQL writes it: elements quoted where they need it.
pub fn text(values: &[Option<String>]) -> String {
    let elements: Vec<String> = values
        .iter()
        .map(|v| match v {
            None => "NULL".to_owned(),
            Some(v)
                if v.is_empty()
                    || v.eq_ignore_ascii_case("null")
                    || v.contains(|c: char| {
                        matches!(c, ',' | '"' | '\\' | '{' | '}') || c.is_whitespace()
                    }) =>
            {
                format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
            }
            Some(v) => v.clone(),
        })
        .collect();
    format!("{{{}}}", elements.join(","))
}

/// One element of a PostgreSQL array's text: NULL, a number, or text.
fn element(text: String, quoted: bool) -> serde_json::Value {
    let trimmed = text.trim();
    if !quoted && trimmed.eq_ignore_ascii_case("null") {
        serde_json::Value::Null
    } else if !quoted && let Ok(n) = trimmed.parse::<i64>() {
        n.into()
    } else if quoted {
        text.into()
    } else {
        trimmed.to_owned().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_expressions_become_lists_and_text() {
        assert_eq!(
            rewrite("WHERE c.relkind = ANY (ARRAY['r', 'p'])"),
            "WHERE c.relkind IN ('r', 'p')"
        );
        assert_eq!(
            rewrite("WHERE c.relkind <> ALL(ARRAY['r'])"),
            "WHERE c.relkind NOT IN ('r')"
        );
        assert_eq!(
            rewrite("WHERE oid = any (pol.polroles)"),
            "WHERE oid IN (SELECT value FROM json_each(cairn_array_json(pol.polroles)))"
        );
        assert_eq!(
            rewrite("SELECT ARRAY(SELECT b.rolname FROM r b) as memberof"),
            "SELECT (WITH cairn_array(v) AS (SELECT b.rolname FROM r b) SELECT coalesce(array_agg(v), '{}') FROM cairn_array) as memberof"
        );
        assert_eq!(rewrite("SELECT ARRAY[1, 2]"), "SELECT cairn_array(1, 2)");
        assert_eq!(
            rewrite("WHERE k = ANY (ARRAY[CAST($1 AS TEXT), t.a[1]])"),
            "WHERE k IN (CAST($1 AS TEXT), cairn_array_element(t.a, 1))"
        );
        assert_eq!(
            rewrite("SELECT 1 = ANY_VALUE(x)"),
            "SELECT 1 = ANY_VALUE(x)"
        );
        assert_eq!(rewrite("SELECT * FROM [array]"), "SELECT * FROM [array]");
        assert_eq!(
            rewrite("WHERE attnum = pr.prattrs[s] AND x = (f(y))[1 + 1]"),
            "WHERE attnum = cairn_array_element(pr.prattrs, s) AND x = cairn_array_element((f(y)), 1 + 1)"
        );
        assert_eq!(rewrite("SELECT a [b] FROM t"), "SELECT a [b] FROM t");
        assert_eq!(
            rewrite("SELECT[x]FROM(SELECT 1 AS x)"),
            "SELECT[x]FROM(SELECT 1 AS x)"
        );
        assert_eq!(rewrite("SELECT x FROM t AS[s]"), "SELECT x FROM t AS[s]");
    }

    #[test]
    fn array_texts_read_as_json() {
        assert_eq!(to_json("{a,b}"), r#"["a","b"]"#);
        assert_eq!(to_json("{1,NULL,\"x,y\"}"), r#"[1,null,"x,y"]"#);
        assert_eq!(to_json("{}"), "[]");
        assert_eq!(to_json("[1,2]"), "[1,2]");
        assert_eq!(to_json("{0}"), "[0]");
        assert_eq!(to_json("1 3"), "[1,3]");
        assert_eq!(
            text(&[
                Some("a".into()),
                None,
                Some("b c".into()),
                Some("x\"y".into())
            ]),
            r#"{a,NULL,"b c","x\"y"}"#
        );
        assert_eq!(
            elements(r#"{a,"b c",NULL}"#),
            [Some("a".into()), Some("b c".into()), None]
        );
        assert_eq!(to_json(""), "[]");
        assert_eq!(element_at("{5,6}", 2), Some(6.into()));
        assert_eq!(element_at("{5,6}", 3), None);
        assert_eq!(element_at("{5,6}", 0), None);
    }
}
