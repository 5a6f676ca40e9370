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
pub mod ddl;
pub mod operators;
pub mod parameters;
pub mod set_returning;
pub mod spellings;

/// Whether `text` contains `word` (ASCII, any case), without a lowercase copy of the text:
/// the rewrites look for their words in every statement before tokenizing one.
pub(crate) fn mentions(text: &str, word: &str) -> bool {
    let (text, word) = (text.as_bytes(), word.as_bytes());
    word.is_empty()
        || text
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word))
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
