//! What a statement's words tell the session that runs it: whether it begins or ends a
//! transaction, its command tag, its parameters, whether it is a pragma the server refuses.
//! Read once from the tokens, when a statement is prepared (or, for the simple protocol, when
//! it is run), so that executing a prepared statement again does not read its text again.

use crate::changes::Capture;
use crate::sql::lexer::{Spanned, Token};
use crate::sql::params;

/// A statement that begins, ends or marks a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Control {
    Begin,
    Commit,
    Rollback,
    Savepoint,
}

/// A savepoint statement, as the capture of row changes follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SavepointStep {
    Savepoint(String),
    Release(String),
    RollbackTo(String),
}

/// What running a statement needs to know of its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Facts {
    pub control: Option<Control>,
    /// Why the server refuses it (a pragma it manages itself), if it does.
    pub refused_pragma: Option<String>,
    /// `VACUUM` or `VACUUM schema`, which runs outside the client's authorizer.
    pub plain_vacuum: bool,
    /// The highest `$n`: PostgreSQL counts parameters by it (0 for none, or SQLite's `?`).
    pub max_param: usize,
    /// The command word(s) of its tag: `INSERT`, `CREATE TABLE`, `BEGIN`.
    pub command: String,
    /// The savepoint it names, for the capture of row changes.
    pub savepoint: Option<SavepointStep>,
    /// For a SELECT, PostgreSQL's name of each result column SQLite names differently: an
    /// expression without an alias is named by SQLite after its text (`count(*)`), by
    /// PostgreSQL after its function or type (`count`) or `?column?`. `None` at a column
    /// SQLite names as PostgreSQL does (an alias, a column); no list where the columns
    /// cannot be matched to the select list (a `*`).
    pub column_names: Option<Vec<Option<String>>>,
    /// A compound SELECT (UNION, INTERSECT, EXCEPT at the top level): its arms' columns may
    /// differ in type, so none is typed by the name of the first arm's call.
    pub compound: bool,
    /// It reads PostgreSQL's catalogs, which the session makes and fills before it runs.
    pub reads_catalogs: bool,
    /// It reads `pg_settings`, which is written from the session's parameters before it runs.
    pub reads_settings: bool,
    /// Why it may not run against the catalogs (SQLSTATE and message), if it may not.
    pub catalog_refusal: Option<(&'static str, String)>,
    /// For a SELECT, the array type of each column that is an array (kept as its text).
    pub array_columns: Option<Vec<Option<crate::sql::types::SqlType>>>,
}

impl Facts {
    pub fn of(tokens: &[Spanned<'_>]) -> Facts {
        let control = transaction_control(tokens);
        Facts {
            control,
            refused_pragma: crate::sql::pragmas::check(tokens).err(),
            plain_vacuum: is_plain_vacuum(tokens),
            max_param: params::max_param(tokens),
            command: command_name(tokens),
            savepoint: match control {
                Some(Control::Savepoint) => savepoint_step(tokens),
                _ => None,
            },
            column_names: super::column_names::of_select(tokens),
            compound: is_compound(tokens),
            reads_catalogs: crate::pgcompat::catalogs::reads_catalogs(tokens),
            catalog_refusal: crate::pgcompat::catalogs::refusal(tokens),
            reads_settings: tokens.iter().any(|t| t.token.is_keyword("pg_settings")),
            array_columns: super::column_types::arrays_of_select(tokens),
        }
    }

    /// Names and types `columns` (as SQLite described them) as PostgreSQL does, where it
    /// differs: the names of unaliased expressions, and arrays as `text[]`.
    pub fn postgres_columns(&self, columns: &mut [super::Column]) {
        self.rename_columns(columns);
        if let Some(arrays) = &self.array_columns
            && arrays.len() == columns.len()
        {
            for (column, array) in columns.iter_mut().zip(arrays) {
                if let Some(ty) = array {
                    column.ty = *ty;
                }
            }
        }
    }

    /// Renames `columns` (as SQLite named them) as PostgreSQL names them, where it differs.
    fn rename_columns(&self, columns: &mut [super::Column]) {
        if let Some(names) = &self.column_names
            && names.len() == columns.len()
        {
            for (column, name) in columns.iter_mut().zip(names) {
                if let Some(name) = name {
                    column.name.clone_from(name);
                }
            }
        }
    }

    /// How many parameters a Bind must give: by the highest `$n`, else as SQLite counts
    /// its `?`.
    pub fn param_count(&self, sqlite_count: usize) -> usize {
        match self.max_param {
            0 => sqlite_count,
            n => n,
        }
    }

    /// Tells `changes` of this savepoint statement, which succeeded.
    pub fn follow_savepoint(&self, changes: &Capture) {
        match &self.savepoint {
            Some(SavepointStep::Savepoint(name)) => changes.savepoint(name),
            Some(SavepointStep::Release(name)) => changes.release(name),
            Some(SavepointStep::RollbackTo(name)) => changes.rollback_to(name),
            None => {}
        }
    }
}

fn is_compound(tokens: &[Spanned<'_>]) -> bool {
    let mut depth = 0i32;
    tokens.iter().any(|t| {
        match t.token {
            Token::Punct("(") => depth += 1,
            Token::Punct(")") => depth -= 1,
            _ => {}
        }
        depth == 0
            && ["union", "intersect", "except"]
                .iter()
                .any(|k| t.token.is_keyword(k))
    })
}

pub(super) fn transaction_control(tokens: &[Spanned<'_>]) -> Option<Control> {
    let first = tokens.first()?;
    let second = tokens.get(1).map(|t| &t.token);
    let to_savepoint = second.is_some_and(|t| t.is_keyword("to"))
        || tokens.get(2).is_some_and(|t| t.token.is_keyword("to"));
    match &first.token {
        t if t.is_keyword("begin") || t.is_keyword("start") => Some(Control::Begin),
        t if t.is_keyword("commit") || t.is_keyword("end") => Some(Control::Commit),
        t if t.is_keyword("rollback") && !to_savepoint => Some(Control::Rollback),
        t if t.is_keyword("rollback") || t.is_keyword("savepoint") || t.is_keyword("release") => {
            Some(Control::Savepoint)
        }
        _ => None,
    }
}

pub(super) fn is_transaction_control(tokens: &[Spanned<'_>]) -> bool {
    transaction_control(tokens).is_some()
}

/// `SAVEPOINT name`, `RELEASE [SAVEPOINT] name`, `ROLLBACK [TRANSACTION] TO [SAVEPOINT] name`.
fn savepoint_step(tokens: &[Spanned<'_>]) -> Option<SavepointStep> {
    let words: Vec<&Token<'_>> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !t.is_keyword("savepoint") && !t.is_keyword("transaction"))
        .collect();
    let name = |t: Option<&&Token<'_>>| t.and_then(|t| t.identifier());
    match tokens.first().map(|t| &t.token) {
        Some(t) if t.is_keyword("savepoint") => name(words.first()).map(SavepointStep::Savepoint),
        Some(t) if t.is_keyword("release") => name(words.get(1)).map(SavepointStep::Release),
        Some(t) if t.is_keyword("rollback") && words.get(1).is_some_and(|t| t.is_keyword("to")) => {
            name(words.get(2)).map(SavepointStep::RollbackTo)
        }
        _ => None,
    }
}

/// `VACUUM` or `VACUUM schema`, not `VACUUM INTO 'file'` (which stays refused).
fn is_plain_vacuum(tokens: &[Spanned<'_>]) -> bool {
    tokens.first().is_some_and(|t| t.token.is_keyword("vacuum"))
        && !tokens.iter().any(|t| t.token.is_keyword("into"))
}

/// The command word(s) of a tag: `INSERT`, `CREATE TABLE`, `BEGIN`.
fn command_name(tokens: &[Spanned<'_>]) -> String {
    let mut words = tokens.iter().filter_map(|t| match t.token {
        Token::Word(w) => Some(w),
        _ => None,
    });
    let first = words.next().unwrap_or_default().to_ascii_uppercase();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" => {
            let object = words.find(|w| {
                !["TEMP", "TEMPORARY", "UNIQUE", "VIRTUAL"]
                    .iter()
                    .any(|skipped| w.eq_ignore_ascii_case(skipped))
            });
            match object {
                Some(o) => format!("{first} {}", o.to_ascii_uppercase()),
                None => first,
            }
        }
        "REPLACE" => "INSERT".into(),
        "END" => "COMMIT".into(),
        "START" => "BEGIN".into(),
        "WITH" => {
            // WITH … INSERT/UPDATE/DELETE: the first of those at the top level names it.
            let mut depth = 0i32;
            for t in tokens {
                match &t.token {
                    Token::Punct("(") => depth += 1,
                    Token::Punct(")") => depth -= 1,
                    Token::Word(w) if depth == 0 => {
                        let w = w.to_ascii_uppercase();
                        if matches!(w.as_str(), "INSERT" | "UPDATE" | "DELETE" | "SELECT") {
                            return w;
                        }
                    }
                    _ => {}
                }
            }
            "SELECT".into()
        }
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer;

    fn facts(sql: &str) -> Facts {
        Facts::of(&lexer::tokenize(sql).unwrap())
    }

    #[test]
    fn a_statement_s_words_give_its_tag_its_control_and_its_savepoint() {
        assert_eq!(facts("insert into t values ($2, $1)").command, "INSERT");
        assert_eq!(facts("insert into t values ($2, $1)").max_param, 2);
        assert_eq!(
            facts("create unique index i on t(a)").command,
            "CREATE INDEX"
        );
        assert_eq!(facts("Create Temp Table x(a)").command, "CREATE TABLE");
        assert_eq!(
            facts("with x as (select 1) delete from t").command,
            "DELETE"
        );
        assert_eq!(facts("replace into t values (1)").command, "INSERT");
        assert_eq!(facts("end").control, Some(Control::Commit));
        assert_eq!(
            facts("rollback to savepoint a").control,
            Some(Control::Savepoint)
        );
        assert_eq!(
            facts("ROLLBACK TRANSACTION TO SAVEPOINT Sp1").savepoint,
            Some(SavepointStep::RollbackTo("sp1".into()))
        );
        assert_eq!(
            facts("release savepoint \"B\"").savepoint,
            Some(SavepointStep::Release("B".into()))
        );
        assert_eq!(facts("select 1").savepoint, None);
        assert!(facts("vacuum").plain_vacuum);
        assert!(!facts("vacuum into '/tmp/x'").plain_vacuum);
        assert!(facts("pragma wal_checkpoint").refused_pragma.is_some());
        assert!(facts("pragma table_info(t)").refused_pragma.is_none());
    }
}
