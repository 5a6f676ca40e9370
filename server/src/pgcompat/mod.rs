//! The PostgreSQL compatibility layer: what PostgreSQL clients write that SQLite reads
//! differently, rewritten to SQLite's spelling before a statement is prepared. Pure text
//! work on one statement's tokens; it never decides what SQL means.

pub mod casts;
pub mod ddl;
pub mod parameters;
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
