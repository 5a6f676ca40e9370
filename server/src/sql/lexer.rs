//! A small SQL lexer: just enough of SQLite's lexical rules to split a query string into
//! statements, recognise the server's own statements and find parameters. It never decides
//! what SQL means; SQLite does that.

/// One token of SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token<'a> {
    /// A bare word: keyword or identifier, as written.
    Word(&'a str),
    /// `"x"`, `` `x` `` or `[x]`, with the quotes removed and doubled quotes undone.
    QuotedIdent(String),
    /// `'text'`, with the quotes removed and doubled quotes undone.
    Str(String),
    /// A numeric literal.
    Number(&'a str),
    /// `$1`: a PostgreSQL positional parameter, with its number.
    Param(usize),
    /// `?`, `?NNN`, `:name`, `@name`: SQLite's own parameter forms.
    SqliteParam(&'a str),
    /// One punctuation or operator character (`;`, `(`, `=`, …) or a two-character operator
    /// (`<=`, `||`, and PostgreSQL's cast `::`).
    Punct(&'a str),
}

impl Token<'_> {
    /// Whether this is the keyword `kw` (case-insensitive).
    pub fn is_keyword(&self, kw: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// The identifier this token names, if it can name one: bare words fold to lowercase
    /// (as PostgreSQL does), quoted identifiers keep their case.
    pub fn identifier(&self) -> Option<String> {
        match self {
            Token::Word(w) => Some(w.to_ascii_lowercase()),
            Token::QuotedIdent(s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// A token and where it starts and ends in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<'a> {
    pub token: Token<'a>,
    pub start: usize,
    pub end: usize,
}

/// An unterminated string, identifier or comment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unterminated {what} starting at byte {offset}")]
pub struct LexError {
    pub what: &'static str,
    pub offset: usize,
}

/// Splits `text` into tokens, skipping white space and comments.
pub fn tokenize(text: &str) -> Result<Vec<Spanned<'_>>, LexError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let token = match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = text[i..]
                    .find('\n')
                    .map(|n| i + n + 1)
                    .unwrap_or(bytes.len());
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // SQLite accepts a comment left open at the end of the input; so do we.
                i = text[i + 2..]
                    .find("*/")
                    .map(|n| i + 2 + n + 2)
                    .unwrap_or(bytes.len());
                continue;
            }
            b'\'' => {
                let (s, next) = quoted(text, i, '\'', '\'', "string")?;
                i = next;
                Token::Str(s)
            }
            b'"' | b'`' => {
                let q = c as char;
                let (s, next) = quoted(text, i, q, q, "quoted identifier")?;
                i = next;
                Token::QuotedIdent(s)
            }
            // PostgreSQL's array constructor ARRAY[…]: its brackets hold expressions (casts,
            // parameters), not a quoted name as SQLite's `[x]`.
            b'[' if out
                .last()
                .is_some_and(|t: &Spanned<'_>| t.token.is_keyword("array")) =>
            {
                i += 1;
                Token::Punct("[")
            }
            b'[' => {
                let end = text[i..].find(']').ok_or(LexError {
                    what: "[identifier]",
                    offset: i,
                })?;
                let s = text[i + 1..i + end].to_owned();
                i += end + 1;
                Token::QuotedIdent(s)
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                match text[start + 1..i].parse() {
                    Ok(n) => Token::Param(n),
                    Err(_) => Token::Punct(&text[start..i]),
                }
            }
            // PostgreSQL's cast operator, before `:name`: SQLite would read `$1::int` as one
            // TCL-style parameter name.
            b':' if bytes.get(i + 1) == Some(&b':') => {
                i += 2;
                Token::Punct("::")
            }
            b'?' | b':' | b'@'
                if bytes.get(i + 1).is_some_and(|b| is_word_byte(*b)) || c == b'?' =>
            {
                i += 1;
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                Token::SqliteParam(&text[start..i])
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    // An exponent's sign: `1e-5` is one number (`0x1e-5` is not).
                    if exponent_sign_follows(bytes, i)
                        && !text[start..i].starts_with("0x")
                        && !text[start..i].starts_with("0X")
                    {
                        i += 2;
                    }
                    i += 1;
                }
                Token::Number(&text[start..i])
            }
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    if exponent_sign_follows(bytes, i) {
                        i += 2;
                    }
                    i += 1;
                }
                Token::Number(&text[start..i])
            }
            _ if is_word_byte(c) => {
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                Token::Word(&text[start..i])
            }
            _ => {
                let two = text.get(i..i + 2);
                let len = match two {
                    Some("<=" | ">=" | "<>" | "!=" | "==" | "||" | "<<" | ">>" | "->" | "=>") => 2,
                    _ => text[i..].chars().next().map(char::len_utf8).unwrap_or(1),
                };
                i += len;
                Token::Punct(&text[start..i])
            }
        };
        out.push(Spanned {
            token,
            start,
            end: i,
        });
    }
    Ok(out)
}

/// Whether `bytes[i]` is an exponent's `e` followed by a sign and a digit.
fn exponent_sign_follows(bytes: &[u8], i: usize) -> bool {
    matches!(bytes[i], b'e' | b'E')
        && matches!(bytes.get(i + 1), Some(b'+' | b'-'))
        && bytes.get(i + 2).is_some_and(u8::is_ascii_digit)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Reads a quoted run starting at `start` (the opening quote); a doubled closing quote stands
/// for one quote character.
fn quoted(
    text: &str,
    start: usize,
    open: char,
    close: char,
    what: &'static str,
) -> Result<(String, usize), LexError> {
    let mut out = String::new();
    let mut chars = text[start + open.len_utf8()..].char_indices().peekable();
    while let Some((offset, ch)) = chars.next() {
        if ch == close {
            if chars.peek().map(|(_, c)| *c) == Some(close) {
                out.push(close);
                chars.next();
                continue;
            }
            return Ok((out, start + open.len_utf8() + offset + close.len_utf8()));
        }
        out.push(ch);
    }
    Err(LexError {
        what,
        offset: start,
    })
}

/// One statement of a query string, without its terminating semicolon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    pub text: &'a str,
    pub tokens: Vec<Spanned<'a>>,
}

/// Splits a query string into statements the way SQLite's `sqlite3_complete` does: at `;`
/// outside strings and comments, except inside a `CREATE TRIGGER … BEGIN … END` body, which
/// ends only at `; END ;`. Empty statements are dropped.
pub fn split(text: &str) -> Result<Vec<Statement<'_>>, LexError> {
    let tokens = tokenize(text)?;
    let mut statements = Vec::new();
    let mut current: Vec<Spanned<'_>> = Vec::new();
    for token in tokens {
        let is_semicolon = token.token == Token::Punct(";");
        if is_semicolon && (!is_trigger(&current) || ends_trigger_body(&current)) {
            push_statement(text, &mut statements, std::mem::take(&mut current));
            continue;
        }
        current.push(token);
    }
    push_statement(text, &mut statements, current);
    Ok(statements)
}

fn push_statement<'a>(text: &'a str, out: &mut Vec<Statement<'a>>, tokens: Vec<Spanned<'a>>) {
    if let (Some(first), Some(last)) = (tokens.first(), tokens.last()) {
        let span = first.start..last.end;
        out.push(Statement {
            text: &text[span],
            tokens,
        });
    }
}

fn is_trigger(tokens: &[Spanned<'_>]) -> bool {
    let mut words = tokens.iter().map(|t| &t.token);
    if !words.next().is_some_and(|t| t.is_keyword("create")) {
        return false;
    }
    match words.next() {
        Some(t) if t.is_keyword("temp") || t.is_keyword("temporary") => {
            words.next().is_some_and(|t| t.is_keyword("trigger"))
        }
        Some(t) => t.is_keyword("trigger"),
        None => false,
    }
}

fn ends_trigger_body(tokens: &[Spanned<'_>]) -> bool {
    match tokens {
        [.., before, last] => last.token.is_keyword("end") && before.token == Token::Punct(";"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split(sql).unwrap().into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn splits_at_semicolons_outside_strings_and_comments() {
        assert_eq!(
            texts("SELECT ';'; -- a ; comment\nSELECT \"a;b\" /* ; */ ; ;SELECT 3"),
            vec!["SELECT ';'", "SELECT \"a;b\"", "SELECT 3"]
        );
    }

    #[test]
    fn trigger_bodies_stay_whole() {
        let sql = "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (CASE WHEN 1 THEN 2 END); UPDATE c SET x = 1; END; SELECT 1";
        let parts = texts(sql);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[0].ends_with("END"));
        assert_eq!(parts[1], "SELECT 1");
    }

    #[test]
    fn parameters_and_quoted_identifiers_are_recognised() {
        let tokens =
            tokenize("SELECT \"Col\"\"x\", $12, ?, :name FROM [t] WHERE a <= 'it''s'").unwrap();
        let kinds: Vec<_> = tokens.into_iter().map(|t| t.token).collect();
        assert!(kinds.contains(&Token::QuotedIdent("Col\"x".into())));
        assert!(kinds.contains(&Token::Param(12)));
        assert!(kinds.contains(&Token::SqliteParam("?")));
        assert!(kinds.contains(&Token::SqliteParam(":name")));
        assert!(kinds.contains(&Token::QuotedIdent("t".into())));
        assert!(kinds.contains(&Token::Punct("<=")));
        assert!(kinds.contains(&Token::Str("it's".into())));
    }

    #[test]
    fn a_cast_is_an_operator_not_part_of_a_parameter_name() {
        let kinds: Vec<_> = tokenize("$1::INTEGER, :a::text")
            .unwrap()
            .into_iter()
            .map(|t| t.token)
            .collect();
        assert_eq!(
            kinds,
            vec![
                Token::Param(1),
                Token::Punct("::"),
                Token::Word("INTEGER"),
                Token::Punct(","),
                Token::SqliteParam(":a"),
                Token::Punct("::"),
                Token::Word("text"),
            ]
        );
    }

    #[test]
    fn unterminated_string_is_an_error() {
        assert_eq!(
            split("SELECT 'abc").unwrap_err(),
            LexError {
                what: "string",
                offset: 7
            }
        );
    }

    #[test]
    fn whitespace_and_comments_only_give_no_statement() {
        assert!(split("  ; -- nothing\n ;").unwrap().is_empty());
    }
}
