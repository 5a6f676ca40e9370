//! The PostgreSQL compatibility layer: what PostgreSQL clients write that SQLite reads
//! differently, rewritten to SQLite's spelling before a statement is prepared (`casts`,
//! `spellings`, `operators`, `arrays`, `set_returning`, `ddl`: pure text work on one statement's tokens, which never
//! decides what SQL means), the run-time parameters PostgreSQL clients set and read
//! (`parameters`), and the system catalogs they query, as tables made from the SQLite
//! schema (`catalogs`).

use std::borrow::Cow;

pub mod arrays;
pub mod casts;
pub mod catalogs;
pub mod copy;
pub mod ddl;
pub mod operators;
pub mod parameters;
pub mod set_returning;
pub mod spellings;

/// An SQL identifier in double quotes (its own quotes doubled).
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether `text` contains `word` (ASCII, any case), without a lowercase copy of the text:
/// the rewrites look for their words in every statement before tokenizing one.
pub(crate) fn mentions(text: &str, word: &str) -> bool {
    let (text, word) = (text.as_bytes(), word.as_bytes());
    word.is_empty()
        || text
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word))
}

/// Whether `text` contains `word` as a word of its own (not inside `small` for `all`).
pub(crate) fn mentions_word(text: &str, word: &str) -> bool {
    let (bytes, w) = (text.as_bytes(), word.as_bytes());
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
    !w.is_empty()
        && bytes.windows(w.len()).enumerate().any(|(i, window)| {
            window.eq_ignore_ascii_case(w)
                && (i == 0 || !is_word(bytes[i - 1]))
                && bytes.get(i + w.len()).is_none_or(|b| !is_word(*b))
        })
}

/// The index of the token that closes the `open` punctuation (`(`, `[`) at `tokens[at]`, its
/// nested pairs counted.
pub(crate) fn closing(tokens: &[crate::sql::lexer::Spanned<'_>], at: usize) -> Option<usize> {
    use crate::sql::lexer::Token;
    let (open, close) = match tokens.get(at)?.token {
        Token::Punct("(") => ("(", ")"),
        Token::Punct("[") => ("[", "]"),
        _ => return None,
    };
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(at) {
        match t.token {
            Token::Punct(p) if p == open => depth += 1,
            Token::Punct(p) if p == close => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// SQL's words that cannot end an operand: after one, `~` is SQLite's bitwise NOT and `[x]`
/// a quoted name, not PostgreSQL's match and subscript.
pub(crate) fn is_sql_keyword(word: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "all",
        "and",
        "any",
        "as",
        "between",
        "by",
        "case",
        "check",
        "collate",
        "default",
        "delete",
        "distinct",
        "else",
        "escape",
        "except",
        "exists",
        "from",
        "glob",
        "group",
        "having",
        "if",
        "in",
        "index",
        "insert",
        "intersect",
        "into",
        "is",
        "join",
        "like",
        "limit",
        "match",
        "not",
        "offset",
        "on",
        "or",
        "order",
        "regexp",
        "return",
        "returning",
        "select",
        "set",
        "some",
        "table",
        "then",
        "union",
        "update",
        "using",
        "values",
        "view",
        "when",
        "where",
        "with",
    ];
    KEYWORDS.iter().any(|k| word.eq_ignore_ascii_case(k))
}

/// `text` with each `(start, end, replacement)` edit made, in order of `start`; borrowed when
/// there are none. An edit that would overlap the one before is left out rather than cut the
/// text wrongly.
pub(crate) fn edited<R: AsRef<str>>(text: &str, edits: Vec<(usize, usize, R)>) -> Cow<'_, str> {
    if edits.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8 * edits.len());
    let mut at = 0;
    for (start, end, replacement) in edits {
        if start < at || end < start || end > text.len() {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(replacement.as_ref());
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}
