//! The server's own statements. Everything that is not one of these goes to SQLite unchanged.

use super::lexer::{Spanned, Token};
use super::session_statements;

/// A statement the server executes itself.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerStatement {
    CreateDatabase {
        name: String,
    },
    DropDatabase {
        name: String,
        if_exists: bool,
    },
    ShowDatabases,
    ShowPlugins,
    /// `RESET ALL`: every setting back to what the config and the startup packet said.
    ResetAll,
    /// `CLOSE ALL`: closes every cursor.
    CloseAll,
    /// `UNLISTEN *`: stops listening to every channel (nothing listens).
    UnlistenAll,
    /// `SHOW PLUGIN name`: what one plugin registered.
    ShowPlugin {
        name: String,
    },
    LoadPlugin {
        file: String,
    },
    UnloadPlugin {
        name: String,
    },
    ReloadPlugin {
        name: String,
    },
    Call(Call),
    Backup(Backup),
    BackupAbort,
    /// `CANCEL BACKUP id`, or CockroachDB's `CANCEL JOB id`: any job, paused or not.
    CancelBackup {
        id: i64,
    },
    /// `PAUSE JOB id` (CockroachDB's): the job waits at its next step.
    PauseJob {
        id: i64,
    },
    /// `RESUME JOB id`.
    ResumeJob {
        id: i64,
    },
    Restore(Restore),
    /// `SHOW BACKUPS`, Doris's `SHOW BACKUP`, CockroachDB's `SHOW JOBS`: the job history.
    ShowBackups,
    /// `SHOW JOB id`: one row of it.
    ShowJob {
        id: i64,
    },
    /// `SHOW ARCHIVES [IN 'location'] [WITH (verify)]`.
    ShowArchives {
        location: String,
        verify: bool,
    },
    /// `EXPORT DATABASE [name] TO 'file.json.gz' [WITH (…)]`, or the console form
    /// `EXPORT DATABASE file.json.gz [-compressionLevel=N]`.
    Export(Backup),
    Import(Import),
    /// `SHOW SESSIONS`: every logged-in session (admin only).
    ShowSessions,
    /// `SET [SESSION] name {TO | =} value | DEFAULT`, for the settings Cairn honours.
    Set {
        setting: super::settings::Setting,
        /// `None`: DEFAULT (as RESET).
        value: Option<String>,
    },
    /// `SHOW name`.
    ShowSetting(super::settings::Setting),
    /// `SET [LOCAL] name = value` of another of PostgreSQL's run-time parameters, or a
    /// custom one (`a.b`); `None`: DEFAULT, or `RESET name`.
    SetParameter {
        name: String,
        value: Option<String>,
        local: bool,
    },
    /// `SET TRANSACTION …`, `SET SESSION CHARACTERISTICS AS TRANSACTION …`: answered, as
    /// SQLite's transactions are serializable whatever is asked.
    SetTransaction,
    /// `SHOW name` of a run-time parameter.
    ShowParameter {
        name: String,
    },
    /// `SHOW ALL`.
    ShowAll,
    /// `DEALLOCATE [PREPARE] name | ALL`.
    Deallocate {
        all: bool,
    },
    /// `DISCARD ALL | PLANS | SEQUENCES | TEMP`.
    Discard(Discard),
    /// `LOCK [TABLE] name, … IN ACCESS SHARE | ROW SHARE MODE`: what pg_dump takes.
    LockTable,
    /// `CREATE USER`, `ALTER USER … PASSWORD`, `DROP USER`.
    User(super::user_statement::UserStatement),
    /// `DECLARE … CURSOR`, `FETCH`, `MOVE`, `CLOSE name`.
    Cursor(super::cursor_statement::CursorStatement),
}

/// What `DISCARD` lets go of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// Everything below, the parameters set, advisory locks and prepared statements.
    All,
    Plans,
    Sequences,
    /// The session's temporary tables.
    Temp,
}

/// `IMPORT DATABASE name FROM 'file.json.gz' [WITH (replace)]`, or OrientDB's console form
/// `IMPORT DATABASE file.json.gz`, which imports into the database the file names.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    /// `None`: the database named in the file's header.
    pub database: Option<String>,
    pub path: String,
    pub replace: bool,
}

/// `BACKUP DATABASE [name] TO 'file' [WITH (…)]`, or OrientDB's console form
/// `BACKUP DATABASE file.zip [-compressionLevel=N] [-bufferSize=N]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// `None`: the session's database.
    pub database: Option<String>,
    pub path: String,
    /// Options as written (`compression_level`, `buffer_size`, `max_rate`); checked when run.
    pub options: Vec<(String, Literal)>,
    pub detached: bool,
    /// `INTO 'location'` (then `path` is the location): a new archive named by its time in a
    /// collection, with `incremental` only the pages changed since the newest one there.
    pub into: Option<Collection>,
    /// QuestDB's `BACKUP DATABASE [name];` with no `TO`: a full archive named by its time in
    /// `[backup] default_destination` (`path` is empty).
    pub default_store: bool,
}

impl Backup {
    fn to_default_store(database: Option<String>) -> Backup {
        Backup {
            database,
            path: String::new(),
            options: Vec::new(),
            detached: false,
            into: None,
            default_store: true,
        }
    }
}

/// How `BACKUP … INTO` adds to a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collection {
    pub incremental: bool,
    /// OrientDB's `-incremental`: into a collection with no archive of the database yet, a
    /// full one is written (SQL's `WITH (incremental)` refuses instead).
    pub full_when_empty: bool,
}

/// `RESTORE DATABASE name FROM 'file' [WITH (replace)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    /// The database restored (for LATEST, also the one whose archive is looked for).
    pub database: String,
    pub from: RestoreFrom,
    pub replace: bool,
    /// LATEST's `new_db_name`: the name to restore under instead; of a table restore,
    /// `into_db`, the database the tables go into.
    pub new_name: Option<String>,
    /// `RESTORE TABLE d.t, …` (Doris's `RESTORE SNAPSHOT … ON (…)`): these tables of the
    /// archive (every one when empty) into an existing database; `database` is the
    /// archive's (empty: the session's).
    pub tables: Option<Vec<String>>,
}

/// What a RESTORE reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreFrom {
    /// `FROM 'file.zip'` (or `'NAME:key'`).
    File(String),
    /// `FROM LATEST IN 'location' [AS OF SYSTEM TIME 'instant'] [WITH (new_db_name = 'x')]`:
    /// the newest archive of the database there (created at or before the instant); with
    /// `new_db_name` it is restored under that name (CockroachDB's option).
    Latest {
        location: String,
        as_of: Option<String>,
    },
}

/// `CALL plugin.procedure(args…)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub plugin: String,
    pub procedure: String,
    /// Positional arguments have no name; `name => value` ones do.
    pub args: Vec<(Option<String>, Literal)>,
}

/// A literal argument of `CALL`.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    /// A list in a `WITH (…)` option, `['a', 'b']` or `(a, b)`; bare names are texts.
    List(Vec<Literal>),
}

impl std::fmt::Display for Literal {
    /// As it would be written in SQL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Literal::Null => f.write_str("NULL"),
            Literal::Integer(i) => write!(f, "{i}"),
            Literal::Real(r) => write!(f, "{r}"),
            Literal::List(items) => {
                let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
                write!(f, "[{}]", items.join(", "))
            }
            Literal::Text(t) => write!(f, "'{}'", t.replace('\'', "''")),
        }
    }
}

/// Recognises a server statement. `None`: not ours, hand it to SQLite. `Some(Err)`: it starts
/// like one of ours but is malformed; the message says what was expected.
pub fn parse(tokens: &[Spanned<'_>]) -> Option<Result<ServerStatement, String>> {
    let words: Vec<&Token<'_>> = tokens.iter().map(|t| &t.token).collect();
    if let Some(user) = super::user_statement::parse(&words) {
        return Some(user.map(ServerStatement::User));
    }
    if let Some(cursor) = super::cursor_statement::parse(tokens) {
        return Some(cursor.map(ServerStatement::Cursor));
    }
    match words.as_slice() {
        [first, second, rest @ ..]
            if first.is_keyword("create") && second.is_keyword("database") =>
        {
            Some(
                only_name(rest, "database", "CREATE DATABASE name")
                    .map(|name| ServerStatement::CreateDatabase { name }),
            )
        }
        [first, second, rest @ ..] if first.is_keyword("drop") && second.is_keyword("database") => {
            let (if_exists, rest) = match rest {
                [a, b, rest @ ..] if a.is_keyword("if") && b.is_keyword("exists") => (true, rest),
                _ => (false, rest),
            };
            Some(
                only_name(rest, "database", "DROP DATABASE [IF EXISTS] name")
                    .map(|name| ServerStatement::DropDatabase { name, if_exists }),
            )
        }
        [first, second, rest @ ..]
            if first.is_keyword("show") && second.is_keyword("databases") =>
        {
            Some(match rest {
                [] => Ok(ServerStatement::ShowDatabases),
                [extra, ..] => Err(format!(
                    "unexpected {} after SHOW DATABASES",
                    describe(extra)
                )),
            })
        }
        [first, second, rest @ ..] if first.is_keyword("show") && second.is_keyword("sessions") => {
            Some(match rest {
                [] => Ok(ServerStatement::ShowSessions),
                [extra, ..] => Err(format!(
                    "unexpected {} after SHOW SESSIONS",
                    describe(extra)
                )),
            })
        }
        [first, name] if first.is_keyword("show") && setting_of(name).is_some() => {
            setting_of(name).map(|setting| Ok(ServerStatement::ShowSetting(setting)))
        }
        [first, all] if first.is_keyword("reset") && all.is_keyword("all") => {
            Some(Ok(ServerStatement::ResetAll))
        }
        [first, all] if first.is_keyword("close") && all.is_keyword("all") => {
            Some(Ok(ServerStatement::CloseAll))
        }
        [first, Token::Punct("*")] if first.is_keyword("unlisten") => {
            Some(Ok(ServerStatement::UnlistenAll))
        }
        [first, name] if first.is_keyword("reset") && setting_of(name).is_some() => {
            setting_of(name).map(|setting| {
                Ok(ServerStatement::Set {
                    setting,
                    value: None,
                })
            })
        }
        [first, rest @ ..] if first.is_keyword("set") && set_target(rest).is_some() => {
            let (setting, op, value) = set_target(rest)?;
            if !(op.is_keyword("to") || *op == Token::Punct("=")) {
                return Some(Err(format!(
                    "expected TO or = after SET {}",
                    setting.name()
                )));
            }
            Some(match value {
                [v] if v.is_keyword("default") => Ok(ServerStatement::Set {
                    setting,
                    value: None,
                }),
                [Token::Str(v)] => Ok(ServerStatement::Set {
                    setting,
                    value: Some(v.clone()),
                }),
                [Token::Number(v)] => Ok(ServerStatement::Set {
                    setting,
                    value: Some((*v).to_owned()),
                }),
                _ => Err(format!(
                    "SET {0} takes one value: SET {0} = 5000, = '5s' or = DEFAULT",
                    setting.name()
                )),
            })
        }
        [first, second, rest @ ..] if first.is_keyword("show") && second.is_keyword("plugins") => {
            Some(match rest {
                [] => Ok(ServerStatement::ShowPlugins),
                [extra, ..] => Err(format!("unexpected {} after SHOW PLUGINS", describe(extra))),
            })
        }
        [first, second, rest @ ..] if first.is_keyword("show") && second.is_keyword("plugin") => {
            Some(
                only_name(rest, "plugin", "SHOW PLUGIN name")
                    .map(|name| ServerStatement::ShowPlugin { name }),
            )
        }
        [first, second, rest @ ..] if first.is_keyword("load") && second.is_keyword("plugin") => {
            Some(match rest {
                [Token::Str(file)] => Ok(ServerStatement::LoadPlugin { file: file.clone() }),
                _ => Err("syntax: LOAD PLUGIN 'library file name in the plugin directory'".into()),
            })
        }
        [first, second, rest @ ..] if first.is_keyword("unload") && second.is_keyword("plugin") => {
            Some(
                only_name(rest, "plugin", "UNLOAD PLUGIN name")
                    .map(|name| ServerStatement::UnloadPlugin { name }),
            )
        }
        [first, second, rest @ ..] if first.is_keyword("reload") && second.is_keyword("plugin") => {
            Some(
                only_name(rest, "plugin", "RELOAD PLUGIN name")
                    .map(|name| ServerStatement::ReloadPlugin { name }),
            )
        }
        [first, rest @ ..] if first.is_keyword("call") => {
            Some(call(rest).map(ServerStatement::Call))
        }
        [first, second, rest @ ..] if first.is_keyword("backup") && second.is_keyword("abort") => {
            Some(match rest {
                [] => Ok(ServerStatement::BackupAbort),
                [extra, ..] => Err(format!(
                    "unexpected {} after BACKUP ABORT (it stops the backup of the current database; CANCEL BACKUP id stops any)",
                    describe(extra)
                )),
            })
        }
        [first, second, ..] if first.is_keyword("backup") && second.is_keyword("database") => {
            Some(backup(&tokens[2..], &BACKUP).map(ServerStatement::Backup))
        }
        [first, second, ..] if first.is_keyword("backup") && second.is_keyword("table") => {
            Some(backup_table(&tokens[2..]).map(ServerStatement::Backup))
        }
        // CockroachDB's TABLE is optional: `BACKUP bank.customers TO …`.
        [first, _, Token::Punct("."), ..] if first.is_keyword("backup") => {
            Some(backup_table(&tokens[1..]).map(ServerStatement::Backup))
        }
        [first, second, rest @ ..] if first.is_keyword("restore") && second.is_keyword("table") => {
            Some(restore_table(rest).map(ServerStatement::Restore))
        }
        [first, second, rest @ ..]
            if (first.is_keyword("backup") || first.is_keyword("restore"))
                && second.is_keyword("snapshot") =>
        {
            Some(snapshot(first.is_keyword("backup"), rest))
        }
        [first, second, ..] if first.is_keyword("export") && second.is_keyword("database") => {
            Some(backup(&tokens[2..], &EXPORT).map(ServerStatement::Export))
        }
        [first, second, rest @ ..]
            if first.is_keyword("import") && second.is_keyword("database") =>
        {
            Some(import(&tokens[2..], rest).map(ServerStatement::Import))
        }
        [first, second, rest @ ..] if first.is_keyword("cancel") && second.is_keyword("backup") => {
            Some(match rest {
                [Token::Number(n)] => n
                    .parse()
                    .map(|id| ServerStatement::CancelBackup { id })
                    .map_err(|_| format!("backup id must be an integer, got {n}")),
                _ => Err("syntax: CANCEL BACKUP id (the id column of SHOW BACKUPS)".into()),
            })
        }
        // CockroachDB's job control, over the same jobs.
        [first, second, rest @ ..]
            if second.is_keyword("job")
                && ["pause", "resume", "cancel", "show"]
                    .iter()
                    .any(|verb| first.is_keyword(verb)) =>
        {
            let (verb, statement): (_, fn(i64) -> ServerStatement) = if first.is_keyword("pause") {
                ("PAUSE", |id| ServerStatement::PauseJob { id })
            } else if first.is_keyword("resume") {
                ("RESUME", |id| ServerStatement::ResumeJob { id })
            } else if first.is_keyword("cancel") {
                ("CANCEL", |id| ServerStatement::CancelBackup { id })
            } else {
                ("SHOW", |id| ServerStatement::ShowJob { id })
            };
            Some(match rest {
                [Token::Number(n)] => n
                    .parse()
                    .map(statement)
                    .map_err(|_| format!("a job id is an integer, got {n}")),
                _ => Err(format!(
                    "syntax: {verb} JOB id (the id column of SHOW JOBS)"
                )),
            })
        }
        [first, second, rest @ ..]
            if first.is_keyword("restore") && second.is_keyword("database") =>
        {
            Some(restore(rest, RESTORE_SYNTAX).map(ServerStatement::Restore))
        }
        [first, second, rest @ ..] if first.is_keyword("show") && second.is_keyword("archives") => {
            Some(show_archives(rest))
        }
        // `SHOW BACKUP` is Doris's spelling, `SHOW JOBS` CockroachDB's.
        [first, second, rest @ ..]
            if first.is_keyword("show")
                && (second.is_keyword("backups")
                    || second.is_keyword("backup")
                    || second.is_keyword("jobs")) =>
        {
            Some(match rest {
                [] => Ok(ServerStatement::ShowBackups),
                [extra, ..] => Err(format!(
                    "unexpected {} after SHOW BACKUPS; to filter or sort, use SELECT … FROM backups() (WHERE database = 'name' for Doris's SHOW BACKUP FROM name)",
                    describe(extra)
                )),
            })
        }
        // No SQLite statement starts with these words: every one is the server's.
        [first, rest @ ..] if first.is_keyword("set") => Some(session_statements::set(rest)),
        [first, rest @ ..] if first.is_keyword("show") => Some(session_statements::show(rest)),
        [first, rest @ ..] if first.is_keyword("reset") => Some(session_statements::reset(rest)),
        [first, rest @ ..] if first.is_keyword("deallocate") => {
            Some(session_statements::deallocate(rest))
        }
        [first, rest @ ..] if first.is_keyword("discard") => {
            Some(session_statements::discard(rest))
        }
        [first, rest @ ..] if first.is_keyword("lock") => Some(session_statements::lock(rest)),
        [first, _, ..] => unknown_backup_statement(first).map(Err),
        _ => None,
    }
}

/// Any other BACKUP or RESTORE (no SQLite statement starts with either): refused with the
/// forms there are, rather than passed on to SQLite as a syntax error near the first word.
fn unknown_backup_statement(first: &Token) -> Option<String> {
    if first.is_keyword("backup") {
        return Some(format!(
            "syntax: {}, or {BACKUP_TABLE_SYNTAX}, or BACKUP ABORT",
            BACKUP.syntax
        ));
    }
    first
        .is_keyword("restore")
        .then(|| format!("syntax: {RESTORE_SYNTAX}, or {RESTORE_TABLE_SYNTAX}"))
}

/// How a statement that writes a file (BACKUP, EXPORT) is spelt, for its error messages.
struct FileStatement {
    syntax: &'static str,
    console: &'static str,
    /// Whether the statement without a file goes to `[backup] default_destination`.
    default_store: bool,
}

const BACKUP: FileStatement = FileStatement {
    syntax: "BACKUP DATABASE [name] TO 'file.zip' [WITH (compression_level = 0..9, buffer_size = '1MiB', max_rate = '50MiB', detached)], or BACKUP DATABASE [name] INTO 'location' [WITH (incremental, …)], or BACKUP DATABASE [name] (into [backup] default_destination)",
    console: "BACKUP DATABASE file.zip [-compressionLevel=N] [-bufferSize=N], or BACKUP DATABASE directory -incremental (an increment on the newest archive there; a full one into an empty directory)",
    default_store: true,
};
const EXPORT: FileStatement = FileStatement {
    syntax: "EXPORT DATABASE [name] TO 'file.json.gz' [WITH (compression_level = 1..9, buffer_size = '1MiB', max_rate = '50MiB', detached)]",
    console: "EXPORT DATABASE file.json.gz [-compressionLevel=N] [-bufferSize=N] (OrientDB's -includeClass and similar filters are not supported: an export is the whole database)",
    default_store: false,
};
const RESTORE_SYNTAX: &str = "RESTORE DATABASE name FROM 'file.zip' [WITH (replace)], or RESTORE DATABASE name FROM LATEST IN 'offsite:prefix' [AS OF SYSTEM TIME '2026-12-01 10:00:00+00'] [WITH (replace, new_db_name = 'other')]";
const SHOW_ARCHIVES_SYNTAX: &str =
    "SHOW ARCHIVES [IN 'offsite:prefix' or IN 'directory'] [WITH (verify)]";
const IMPORT_SYNTAX: &str = "IMPORT DATABASE name FROM 'file.json.gz' [WITH (replace)], or IMPORT DATABASE file.json.gz (into the database the file names)";

fn backup(tokens: &[Spanned<'_>], statement: &FileStatement) -> Result<Backup, String> {
    let syntax = statement.syntax;
    let words: Vec<&Token<'_>> = tokens.iter().map(|t| &t.token).collect();
    let Some(to) = words
        .iter()
        .position(|t| t.is_keyword("to") || t.is_keyword("into"))
    else {
        // QuestDB's `BACKUP DATABASE;` and `BACKUP DATABASE name;`: to the configured
        // default store. A file or directory (OrientDB's console form) is never one word.
        if statement.default_store {
            match words[..] {
                [] => return Ok(Backup::to_default_store(None)),
                [name] if name.identifier().is_some() => {
                    return Ok(Backup::to_default_store(name.identifier()));
                }
                _ => {}
            }
        }
        return console_backup(tokens, statement);
    };
    let into = words[to].is_keyword("into");
    let database = match &words[..to] {
        [] => None,
        [name] => Some(name.identifier().ok_or_else(|| {
            format!(
                "expected a database name, found {}; syntax: {syntax}",
                describe(name)
            )
        })?),
        [_, extra, ..] => {
            return Err(format!(
                "unexpected {} before TO; syntax: {syntax}",
                describe(extra)
            ));
        }
    };
    let (path, rest) = match &words[to + 1..] {
        [Token::Str(path), rest @ ..] => (path.clone(), rest),
        _ => {
            return Err(format!(
                "expected a quoted file name after TO; syntax: {syntax}"
            ));
        }
    };
    let mut options = with_options(rest, syntax)?;
    let detached = take_flag(&mut options, "detached")?;
    let incremental = take_flag(&mut options, "incremental")?;
    if incremental && !into {
        return Err(format!(
            "an incremental backup goes INTO a collection, which holds its parent: BACKUP DATABASE name INTO 'location' WITH (incremental); syntax: {syntax}"
        ));
    }
    Ok(Backup {
        database,
        path,
        options,
        detached,
        into: into.then_some(Collection {
            incremental,
            full_when_empty: false,
        }),
        default_store: false,
    })
}

/// OrientDB's console form: the path is written bare, options as `-name=value`.
fn console_backup(tokens: &[Spanned<'_>], statement: &FileStatement) -> Result<Backup, String> {
    let mut groups = adjacent_groups(tokens).into_iter();
    let Some(path) = groups.next() else {
        return Err(format!("missing file name; syntax: {}", statement.syntax));
    };
    let mut options = Vec::new();
    let mut into = None;
    for group in groups {
        if group == "-incremental" {
            into = Some(Collection {
                incremental: true,
                full_when_empty: true,
            });
            continue;
        }
        let Some((name, value)) = group.strip_prefix('-').and_then(|g| g.split_once('=')) else {
            return Err(format!(
                "unexpected `{group}`; the console form is {}",
                statement.console
            ));
        };
        let name = match name {
            "compressionLevel" => "compression_level",
            "bufferSize" => "buffer_size",
            other => {
                return Err(format!(
                    "unknown option -{other}; the console form is {}",
                    statement.console
                ));
            }
        };
        let value = value
            .parse::<i64>()
            .map(Literal::Integer)
            .unwrap_or_else(|_| Literal::Text(value.to_owned()));
        options.push((name.to_owned(), value));
    }
    if into.is_some() && path.ends_with(".zip") {
        return Err(format!(
            "-incremental names a directory (its archives are named by their time), not {path}; the console form is {}",
            statement.console
        ));
    }
    Ok(Backup {
        database: None,
        path,
        options,
        detached: false,
        into,
        default_store: false,
    })
}

/// Joins tokens written without white space between them (`/tmp/a-b.zip` lexes as several).
fn adjacent_groups(tokens: &[Spanned<'_>]) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    let mut last_end = None;
    for t in tokens {
        let text = match &t.token {
            Token::Word(w) | Token::Number(w) | Token::Punct(w) | Token::SqliteParam(w) => {
                (*w).to_owned()
            }
            Token::Str(s) | Token::QuotedIdent(s) => s.clone(),
            Token::Param(n) => format!("${n}"),
        };
        match groups.last_mut() {
            Some(group) if last_end == Some(t.start) => group.push_str(&text),
            _ => groups.push(text),
        }
        last_end = Some(t.end);
    }
    groups
}

fn import(tokens: &[Spanned<'_>], rest: &[&Token<'_>]) -> Result<Import, String> {
    if rest.iter().any(|t| t.is_keyword("from")) {
        let full = restore(rest, IMPORT_SYNTAX)?;
        let RestoreFrom::File(path) = full.from else {
            return Err(format!(
                "IMPORT reads a named file, not LATEST; syntax: {IMPORT_SYNTAX}"
            ));
        };
        return Ok(Import {
            database: Some(full.database),
            path,
            replace: full.replace,
        });
    }
    let mut groups = adjacent_groups(tokens).into_iter();
    let Some(path) = groups.next() else {
        return Err(format!("missing file name; syntax: {IMPORT_SYNTAX}"));
    };
    if let Some(extra) = groups.next() {
        return Err(format!(
            "unexpected `{extra}`: OrientDB's import options (-merge, -preserveClusterIDs, …) do not apply here; syntax: {IMPORT_SYNTAX}"
        ));
    }
    Ok(Import {
        database: None,
        path,
        replace: false,
    })
}

/// What a RESTORE reads, after its FROM: `'file'`, or `LATEST IN 'location' [AS OF SYSTEM
/// TIME 'instant']`; and the tokens after it.
fn restore_source<'t, 'a>(
    rest: &'t [&'t Token<'a>],
    syntax: &str,
) -> Result<(RestoreFrom, &'t [&'t Token<'a>]), String> {
    Ok(match rest {
        [Token::Str(path), rest @ ..] => (RestoreFrom::File(path.clone()), rest),
        [latest, in_, Token::Str(location), rest @ ..]
            if latest.is_keyword("latest") && in_.is_keyword("in") =>
        {
            let (as_of, rest) = match rest {
                [as_, of, system, time, Token::Str(instant), rest @ ..]
                    if as_.is_keyword("as")
                        && of.is_keyword("of")
                        && system.is_keyword("system")
                        && time.is_keyword("time") =>
                {
                    (Some(instant.clone()), rest)
                }
                _ => (None, rest),
            };
            (
                RestoreFrom::Latest {
                    location: location.clone(),
                    as_of,
                },
                rest,
            )
        }
        _ => return Err(format!("syntax: {syntax}")),
    })
}

fn restore(rest: &[&Token<'_>], syntax: &str) -> Result<Restore, String> {
    let (name, rest) = match rest {
        [name, from, rest @ ..] if from.is_keyword("from") => (name, rest),
        _ => return Err(format!("syntax: {syntax}")),
    };
    let database = name.identifier().ok_or_else(|| {
        format!(
            "expected a database name, found {}; syntax: {syntax}",
            describe(name)
        )
    })?;
    let (from, rest) = restore_source(rest, syntax)?;
    let mut options = with_options(rest, syntax)?;
    let replace = take_flag(&mut options, "replace")?;
    let new_name = match options.iter().position(|(name, _)| name == "new_db_name") {
        None => None,
        Some(at) => match (options.remove(at).1, &from) {
            (Literal::Text(name), RestoreFrom::Latest { .. }) => Some(name),
            (Literal::Text(_), RestoreFrom::File(_)) => {
                return Err(format!(
                    "new_db_name goes with FROM LATEST; with a file, the name after RESTORE DATABASE is the new one; syntax: {syntax}"
                ));
            }
            (other, _) => return Err(format!("new_db_name is a quoted name, got {other}")),
        },
    };
    if let Some((name, _)) = options.first() {
        return Err(format!("unknown option {name}; syntax: {syntax}"));
    }
    Ok(Restore {
        database,
        from,
        replace,
        new_name,
        tables: None,
    })
}

const BACKUP_TABLE_SYNTAX: &str = "BACKUP TABLE [db.]orders[, [db.]items] TO 'file.zip' [WITH (…)], or BACKUP DATABASE d TO 'file.zip' WITH (tables = ['orders', 'items'] | exclude_tables = ['logs'])";
const RESTORE_TABLE_SYNTAX: &str = "RESTORE TABLE [db.]orders[, …] FROM 'file.zip' | FROM LATEST IN 'location' [AS OF SYSTEM TIME '…'] [WITH (into_db = 'name')]";
const SNAPSHOT_SYNTAX: &str = "BACKUP SNAPSHOT db.label TO repository [ON (t1, t2) | EXCLUDE (t3)] [PROPERTIES (\"timeout\" = \"3600\")], or RESTORE SNAPSHOT db.label FROM repository [ON (t1, t2)]; the repository is a destination name or a quoted directory";

/// The database named (if any), the tables, and the tokens after them.
type TableList<'t, 'a> = (Option<String>, Vec<String>, &'t [&'t Token<'a>]);

/// `[db.]name, [db.]name …` up to the word `until`: the database (when named; all the same)
/// and the names, and what follows `until`.
fn table_list<'t, 'a>(
    tokens: &'t [&'t Token<'a>],
    until: &str,
    syntax: &str,
) -> Result<TableList<'t, 'a>, String> {
    let Some(end) = tokens.iter().position(|t| t.is_keyword(until)) else {
        return Err(format!("syntax: {syntax}"));
    };
    let mut database: Option<String> = None;
    let mut names = Vec::new();
    for item in tokens[..end].split(|t| **t == Token::Punct(",")) {
        let (db, name) = match item {
            [db, Token::Punct("."), name] => (db.identifier(), name.identifier()),
            [name] => (None, name.identifier()),
            _ => (None, None),
        };
        let Some(name) = name else {
            return Err(format!(
                "expected [db.]table before {until}; syntax: {syntax}"
            ));
        };
        if let Some(db) = db {
            match &database {
                Some(other) if *other != db => {
                    return Err(format!(
                        "the tables are of one database: {other} and {db} are two; syntax: {syntax}"
                    ));
                }
                _ => database = Some(db),
            }
        }
        names.push(name);
    }
    Ok((database, names, &tokens[end + 1..]))
}

/// CockroachDB's `BACKUP TABLE [db.]t, … TO 'file' [WITH (…)]`: a table-level backup.
fn backup_table(tokens: &[Spanned<'_>]) -> Result<Backup, String> {
    let words: Vec<&Token<'_>> = tokens.iter().map(|t| &t.token).collect();
    let Some(to) = words
        .iter()
        .position(|t| t.is_keyword("to") || t.is_keyword("into"))
    else {
        return Err(format!(
            "a table-level backup is written to a file of its own; syntax: {BACKUP_TABLE_SYNTAX}"
        ));
    };
    let until = if words[to].is_keyword("to") {
        "to"
    } else {
        "into"
    };
    let (database, names, _) = table_list(&words, until, BACKUP_TABLE_SYNTAX)?;
    let mut backup = backup(&tokens[to..], &BACKUP)?;
    if backup
        .options
        .iter()
        .any(|(n, _)| n == "tables" || n == "exclude_tables")
    {
        return Err(format!(
            "BACKUP TABLE names its tables; syntax: {BACKUP_TABLE_SYNTAX}"
        ));
    }
    backup.database = database;
    backup.options.push((
        "tables".into(),
        Literal::List(names.into_iter().map(Literal::Text).collect()),
    ));
    Ok(backup)
}

/// CockroachDB's `RESTORE TABLE [db.]t, … FROM … [WITH (into_db = 'x')]`.
fn restore_table(rest: &[&Token<'_>]) -> Result<Restore, String> {
    let (database, names, after) = table_list(rest, "from", RESTORE_TABLE_SYNTAX)?;
    let (into_db, after) = take_into_db(after)?;
    let (from, after) = restore_source(after, RESTORE_TABLE_SYNTAX)?;
    if let [extra, ..] = after {
        return Err(format!(
            "unexpected {}; syntax: {RESTORE_TABLE_SYNTAX}",
            describe(extra)
        ));
    }
    Ok(Restore {
        database: database.unwrap_or_default(),
        from,
        replace: false,
        new_name: into_db,
        tables: Some(names),
    })
}

/// Removes `into_db = 'x'` from a `WITH (…)` at the end of `rest`.
fn take_into_db<'t, 'a>(
    rest: &'t [&'t Token<'a>],
) -> Result<(Option<String>, &'t [&'t Token<'a>]), String> {
    let Some(with) = rest.iter().position(|t| t.is_keyword("with")) else {
        return Ok((None, rest));
    };
    let mut options = with_options(&rest[with..], RESTORE_TABLE_SYNTAX)?;
    let into = match options.iter().position(|(n, _)| n == "into_db") {
        None => None,
        Some(at) => match options.remove(at).1 {
            Literal::Text(name) => Some(name),
            other => return Err(format!("into_db is a quoted database name, got {other}")),
        },
    };
    if let Some((name, _)) = options.first() {
        return Err(format!(
            "unknown option {name}; syntax: {RESTORE_TABLE_SYNTAX}"
        ));
    }
    Ok((into, &rest[..with]))
}

/// Doris's `BACKUP SNAPSHOT db.label TO repo [ON (…) | EXCLUDE (…)] [PROPERTIES (…)]` and
/// `RESTORE SNAPSHOT db.label FROM repo [ON (…)] [PROPERTIES (…)]`: the archive is
/// `label.zip` in the repository (a destination name, or a quoted directory).
fn snapshot(backing_up: bool, rest: &[&Token<'_>]) -> Result<ServerStatement, String> {
    let syntax = SNAPSHOT_SYNTAX;
    let direction = if backing_up { "to" } else { "from" };
    let (database, label, rest) = match rest {
        [db, Token::Punct("."), label, word, rest @ ..] if word.is_keyword(direction) => {
            (db.identifier(), label.identifier(), rest)
        }
        _ => return Err(format!("syntax: {syntax}")),
    };
    let (Some(database), Some(label)) = (database, label) else {
        return Err(format!("syntax: {syntax}"));
    };
    let (path, mut rest) = match rest {
        [Token::Str(dir), rest @ ..] => {
            let path = if dir.ends_with(':') || dir.ends_with('/') {
                format!("{dir}{label}.zip")
            } else {
                format!("{dir}/{label}.zip")
            };
            (path, rest)
        }
        [repo, rest @ ..] if repo.identifier().is_some() => (
            format!("{}:{label}.zip", repo.identifier().unwrap_or_default()),
            rest,
        ),
        _ => {
            return Err(format!(
                "expected a repository after {}; syntax: {syntax}",
                direction.to_uppercase()
            ));
        }
    };
    let mut filter: Option<(bool, Vec<String>)> = None;
    if let [word, Token::Punct("("), ..] = rest
        && (word.is_keyword("on") || word.is_keyword("exclude"))
    {
        let close = rest
            .iter()
            .position(|t| **t == Token::Punct(")"))
            .ok_or_else(|| format!("unclosed ( after {}; syntax: {syntax}", describe(word)))?;
        let names = rest[2..close]
            .split(|t| **t == Token::Punct(","))
            .map(|item| match item {
                [name] => name.identifier(),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                format!(
                    "expected table names in {} (…); syntax: {syntax}",
                    describe(word)
                )
            })?;
        if word.is_keyword("exclude") && !backing_up {
            return Err(format!(
                "RESTORE SNAPSHOT takes ON (…), not EXCLUDE; syntax: {syntax}"
            ));
        }
        filter = Some((word.is_keyword("on"), names));
        rest = &rest[close + 1..];
    }
    let mut options = Vec::new();
    match rest {
        [] => {}
        [word, Token::Punct("("), inner @ .., Token::Punct(")")]
            if word.is_keyword("properties") =>
        {
            for property in inner.split(|t| **t == Token::Punct(",")) {
                let text = |t: &Token<'_>| match t {
                    Token::QuotedIdent(s) | Token::Str(s) => Some(s.clone()),
                    Token::Number(n) => Some((*n).to_owned()),
                    _ => None,
                };
                let (Some(key), Some(value)) = (match property {
                    [key, Token::Punct("="), value] => (text(key), text(value)),
                    _ => (None, None),
                }) else {
                    return Err(format!(
                        "expected \"key\" = \"value\" in PROPERTIES; syntax: {syntax}"
                    ));
                };
                match key.as_str() {
                    "timeout" if backing_up => {
                        let seconds = value
                            .parse::<i64>()
                            .map_err(|_| format!("timeout is seconds, got {value:?}"))?;
                        options.push(("timeout".to_owned(), Literal::Integer(seconds)));
                    }
                    // Every archive here is a full one; Doris's label names the file.
                    "type" if backing_up && value.eq_ignore_ascii_case("full") => {}
                    "backup_timestamp" if !backing_up => {}
                    other => {
                        return Err(format!(
                            "PROPERTIES ({other:?}) is not taken here; BACKUP SNAPSHOT takes \"timeout\" (and \"type\" = \"full\"), RESTORE SNAPSHOT \"backup_timestamp\" (the label names the archive)"
                        ));
                    }
                }
            }
        }
        [extra, ..] => {
            return Err(format!("unexpected {}; syntax: {syntax}", describe(extra)));
        }
    }
    if backing_up {
        if let Some((only, names)) = filter {
            let name = if only { "tables" } else { "exclude_tables" };
            options.push((
                name.to_owned(),
                Literal::List(names.into_iter().map(Literal::Text).collect()),
            ));
        }
        Ok(ServerStatement::Backup(Backup {
            database: Some(database),
            path,
            options,
            detached: false,
            into: None,
            default_store: false,
        }))
    } else {
        Ok(ServerStatement::Restore(Restore {
            database,
            from: RestoreFrom::File(path),
            replace: false,
            new_name: None,
            tables: Some(filter.map(|(_, names)| names).unwrap_or_default()),
        }))
    }
}

fn show_archives(rest: &[&Token<'_>]) -> Result<ServerStatement, String> {
    let (location, rest) = match rest {
        [in_, Token::Str(location), rest @ ..] if in_.is_keyword("in") => (location.clone(), rest),
        [in_, ..] if in_.is_keyword("in") => {
            return Err(format!(
                "expected a quoted location after IN; syntax: {SHOW_ARCHIVES_SYNTAX}"
            ));
        }
        _ => (String::new(), rest),
    };
    let mut options = with_options(rest, SHOW_ARCHIVES_SYNTAX)?;
    let verify = take_flag(&mut options, "verify")?;
    if let Some((name, _)) = options.first() {
        return Err(format!(
            "unknown option {name}; syntax: {SHOW_ARCHIVES_SYNTAX}"
        ));
    }
    Ok(ServerStatement::ShowArchives { location, verify })
}

/// `WITH (name = literal, flag, …)`; nothing at all is no options.
fn with_options(rest: &[&Token<'_>], syntax: &str) -> Result<Vec<(String, Literal)>, String> {
    let inner = match rest {
        [] => return Ok(Vec::new()),
        [with, Token::Punct("("), inner @ .., Token::Punct(")")] if with.is_keyword("with") => {
            inner
        }
        [extra, ..] => {
            return Err(format!(
                "unexpected {}; options go in WITH (…); syntax: {syntax}",
                describe(extra)
            ));
        }
    };
    let mut options = Vec::new();
    for option in top_level(inner) {
        let (name, value) = match option {
            [name] => (name, Literal::Integer(1)),
            [
                name,
                Token::Punct("="),
                Token::Punct(open @ ("[" | "(")),
                items @ ..,
                Token::Punct(close),
            ] if (*open == "[") == (*close == "]") && (*open == "(") == (*close == ")") => {
                (name, list(items)?)
            }
            // `[a, b]` lexes as one bracket-quoted identifier (SQLite's `[name]`): for the
            // options that take a list of tables, a list.
            [name, Token::Punct("="), Token::QuotedIdent(inner)]
                if name.is_keyword("tables") || name.is_keyword("exclude_tables") =>
            {
                let tokens = super::lexer::tokenize(inner)
                    .map_err(|e| format!("in the list of {}: {e}", describe(name)))?;
                let items: Vec<&Token<'_>> = tokens.iter().map(|t| &t.token).collect();
                (name, list(&items)?)
            }
            [name, Token::Punct("="), value @ ..] => (name, literal(value)?),
            _ => {
                return Err(format!(
                    "expected name = value in WITH (…); syntax: {syntax}"
                ));
            }
        };
        let name = name
            .identifier()
            .ok_or_else(|| format!("expected an option name, found {}", describe(name)))?;
        options.push((name, value));
    }
    Ok(options)
}

/// `tokens` split at the commas outside brackets.
fn top_level<'t, 'a>(tokens: &'t [&'t Token<'a>]) -> Vec<&'t [&'t Token<'a>]> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct("(" | "[") => depth += 1,
            Token::Punct(")" | "]") => depth = depth.saturating_sub(1),
            Token::Punct(",") if depth == 0 => {
                parts.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[start..]);
    parts
}

/// The items of a list option: literals, or bare names (as texts).
fn list(items: &[&Token<'_>]) -> Result<Literal, String> {
    if items.is_empty() {
        return Ok(Literal::List(Vec::new()));
    }
    items
        .split(|t| **t == Token::Punct(","))
        .map(|item| match item {
            [name] => name
                .identifier()
                .map_or_else(|| literal(item), |name| Ok(Literal::Text(name))),
            value => literal(value),
        })
        .collect::<Result<_, _>>()
        .map(Literal::List)
}

/// Removes a boolean option (`detached`, `detached = true`) and says whether it was set.
fn take_flag(options: &mut Vec<(String, Literal)>, flag: &str) -> Result<bool, String> {
    let Some(at) = options.iter().position(|(name, _)| name == flag) else {
        return Ok(false);
    };
    match options.remove(at).1 {
        Literal::Integer(0) => Ok(false),
        Literal::Integer(1) => Ok(true),
        other => Err(format!(
            "{flag} is a flag: write {flag}, or {flag} = true/false (got {other})"
        )),
    }
}

const CALL_SYNTAX: &str = "CALL plugin.procedure(arg, …, name => arg); arguments are literals";

fn call(rest: &[&Token<'_>]) -> Result<Call, String> {
    let (plugin, procedure, rest) = match rest {
        [plugin, Token::Punct("."), procedure, rest @ ..] => {
            (plugin.identifier(), procedure.identifier(), rest)
        }
        _ => {
            return Err(format!(
                "expected plugin.procedure after CALL; syntax: {CALL_SYNTAX}"
            ));
        }
    };
    let (Some(plugin), Some(procedure)) = (plugin, procedure) else {
        return Err(format!(
            "expected plugin.procedure after CALL; syntax: {CALL_SYNTAX}"
        ));
    };
    let inner = match rest {
        [Token::Punct("("), inner @ .., Token::Punct(")")] => inner,
        [] => &[][..],
        _ => {
            return Err(format!(
                "expected (arguments) after {plugin}.{procedure}; syntax: {CALL_SYNTAX}"
            ));
        }
    };
    let mut args = Vec::new();
    for arg in inner.split(|t| **t == Token::Punct(",")) {
        if arg.is_empty() && inner.is_empty() {
            break;
        }
        let (name, value) = match arg {
            [name, Token::Punct("=>"), value @ ..] => {
                let name = name.identifier().ok_or_else(|| {
                    format!(
                        "expected an argument name before =>, found {}",
                        describe(name)
                    )
                })?;
                (Some(name), value)
            }
            value => (None, value),
        };
        args.push((name, literal(value)?));
    }
    Ok(Call {
        plugin,
        procedure,
        args,
    })
}

fn literal(tokens: &[&Token<'_>]) -> Result<Literal, String> {
    let (negative, tokens) = match tokens {
        [Token::Punct("-"), rest @ ..] => (true, rest),
        _ => (false, tokens),
    };
    let value = match tokens {
        [Token::Str(s)] if !negative => Literal::Text(s.clone()),
        [w] if !negative && w.is_keyword("null") => Literal::Null,
        [w] if !negative && w.is_keyword("true") => Literal::Integer(1),
        [w] if !negative && w.is_keyword("false") => Literal::Integer(0),
        [Token::Number(n)] => {
            let text = if negative {
                format!("-{n}")
            } else {
                (*n).to_owned()
            };
            match text.parse::<i64>() {
                Ok(i) => Literal::Integer(i),
                Err(_) => Literal::Real(
                    text.parse::<f64>()
                        .map_err(|_| format!("`{text}` is not a number"))?,
                ),
            }
        }
        [] => return Err(format!("missing argument; syntax: {CALL_SYNTAX}")),
        [first, ..] => {
            return Err(format!(
                "arguments of CALL must be literals (numbers, 'text', NULL, TRUE, FALSE), found {}",
                describe(first)
            ));
        }
    };
    Ok(value)
}

/// The statement's last word: one `kind` name (`database`, `plugin`) and nothing after it.
fn only_name(rest: &[&Token<'_>], kind: &str, syntax: &str) -> Result<String, String> {
    match rest {
        [name] => name.identifier().ok_or_else(|| {
            format!(
                "expected a {kind} name, found {}; syntax: {syntax}",
                describe(name)
            )
        }),
        [] => Err(format!("missing {kind} name; syntax: {syntax}")),
        [_, extra, ..] => Err(format!(
            "unexpected {} after the {kind} name; syntax: {syntax}",
            describe(extra)
        )),
    }
}

fn setting_of(token: &Token<'_>) -> Option<super::settings::Setting> {
    token
        .identifier()
        .and_then(|name| super::settings::Setting::named(&name))
}

/// `[SESSION] name op value…` of a SET for a setting Cairn honours.
fn set_target<'t, 'a>(
    rest: &'t [&'t Token<'a>],
) -> Option<(super::settings::Setting, &'t Token<'a>, &'t [&'t Token<'a>])> {
    let rest = match rest {
        [scope, rest @ ..] if scope.is_keyword("session") => rest,
        _ => rest,
    };
    match rest {
        [name, op, value @ ..] => Some((setting_of(name)?, *op, value)),
        _ => None,
    }
}

pub(super) fn describe(token: &Token<'_>) -> String {
    match token {
        Token::Word(w) | Token::Number(w) | Token::Punct(w) | Token::SqliteParam(w) => {
            format!("`{w}`")
        }
        Token::QuotedIdent(s) => format!("\"{s}\""),
        Token::Str(s) => format!("'{s}'"),
        Token::Param(n) => format!("${n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn parse_text(sql: &str) -> Option<Result<ServerStatement, String>> {
        parse(&tokenize(sql).unwrap())
    }

    #[test]
    fn recognises_the_database_statements() {
        assert_eq!(
            parse_text("create database Sales"),
            Some(Ok(ServerStatement::CreateDatabase {
                name: "sales".into()
            }))
        );
        assert_eq!(
            parse_text("DROP DATABASE IF EXISTS \"x\""),
            Some(Ok(ServerStatement::DropDatabase {
                name: "x".into(),
                if_exists: true
            }))
        );
        assert_eq!(
            parse_text("SHOW DATABASES"),
            Some(Ok(ServerStatement::ShowDatabases))
        );
    }

    #[test]
    fn recognises_the_plugin_statements() {
        assert_eq!(
            parse_text("show plugins"),
            Some(Ok(ServerStatement::ShowPlugins))
        );
        assert_eq!(
            parse_text("LOAD PLUGIN 'libx.so'"),
            Some(Ok(ServerStatement::LoadPlugin {
                file: "libx.so".into()
            }))
        );
        assert_eq!(
            parse_text("reload plugin Hello"),
            Some(Ok(ServerStatement::ReloadPlugin {
                name: "hello".into()
            }))
        );
        assert_eq!(
            parse_text("CALL hello.greet('ann', -3, 2.5, null, dry_run => true)"),
            Some(Ok(ServerStatement::Call(Call {
                plugin: "hello".into(),
                procedure: "greet".into(),
                args: vec![
                    (None, Literal::Text("ann".into())),
                    (None, Literal::Integer(-3)),
                    (None, Literal::Real(2.5)),
                    (None, Literal::Null),
                    (Some("dry_run".into()), Literal::Integer(1)),
                ],
            })))
        );
        assert_eq!(
            parse_text("call a.b()"),
            Some(Ok(ServerStatement::Call(Call {
                plugin: "a".into(),
                procedure: "b".into(),
                args: vec![],
            })))
        );
        let err = parse_text("CALL a.b(x + 1)").unwrap().unwrap_err();
        assert!(err.contains("must be literals"), "{err}");
        let err = parse_text("CALL greet()").unwrap().unwrap_err();
        assert!(err.contains("plugin.procedure"), "{err}");
    }

    #[test]
    fn leaves_sqlite_statements_alone() {
        assert_eq!(parse_text("CREATE TABLE database(x)"), None);
        assert_eq!(parse_text("SELECT 1"), None);
    }

    #[test]
    fn malformed_statements_say_what_was_expected() {
        let err = parse_text("CREATE DATABASE").unwrap().unwrap_err();
        assert!(err.contains("missing database name"), "{err}");
        let err = parse_text("DROP DATABASE a b").unwrap().unwrap_err();
        assert!(err.contains("unexpected `b`"), "{err}");
        let err = parse_text("CREATE DATABASE 'x'").unwrap().unwrap_err();
        assert!(err.contains("expected a database name"), "{err}");
    }

    #[test]
    fn recognises_the_export_and_import_statements() {
        assert_eq!(
            parse_text("EXPORT DATABASE sales TO 's.json.gz' WITH (compression_level = 9)"),
            Some(Ok(ServerStatement::Export(Backup {
                database: Some("sales".into()),
                path: "s.json.gz".into(),
                options: vec![("compression_level".into(), Literal::Integer(9))],
                detached: false,
                into: None,
                default_store: false,
            })))
        );
        assert_eq!(
            parse_text("export database /tmp/my-db.json.gz -compressionLevel=1"),
            Some(Ok(ServerStatement::Export(Backup {
                database: None,
                path: "/tmp/my-db.json.gz".into(),
                options: vec![("compression_level".into(), Literal::Integer(1))],
                detached: false,
                into: None,
                default_store: false,
            })))
        );
        assert_eq!(
            parse_text("IMPORT DATABASE copy FROM 's.json.gz' WITH (replace)"),
            Some(Ok(ServerStatement::Import(Import {
                database: Some("copy".into()),
                path: "s.json.gz".into(),
                replace: true,
            })))
        );
        assert_eq!(
            parse_text("IMPORT DATABASE /tmp/my-db.json.gz"),
            Some(Ok(ServerStatement::Import(Import {
                database: None,
                path: "/tmp/my-db.json.gz".into(),
                replace: false,
            })))
        );
        for (bad, expected) in [
            (
                "BACKUP SNAPSHOT d.label TO repo ON (orders) PROPERTIES (\"replication_num\" = \"3\")",
                "is not taken here",
            ),
            (
                "BACKUP SNAPSHOT label TO repo",
                "syntax: BACKUP SNAPSHOT db.label",
            ),
            (
                "RESTORE SNAPSHOT d.l FROM r EXCLUDE (x)",
                "takes ON (…), not EXCLUDE",
            ),
            ("backup table d.orders, e.items TO 'x'", "of one database"),
            ("BACKUP TABLE orders", "written to a file of its own"),
            (
                "RESTORE TABLE d.orders FROM 'x' WITH (replace)",
                "unknown option replace",
            ),
            ("RESTORE TABLE d.orders", "syntax: RESTORE TABLE"),
            ("BACKUP d.orders", "written to a file of its own"),
            ("BACKUP db TO 'x'", "syntax: BACKUP DATABASE"),
            ("RESTORE db FROM 'x'", "syntax: RESTORE DATABASE"),
            ("PAUSE JOB", "syntax: PAUSE JOB id"),
            ("resume job 'x'", "syntax: RESUME JOB id"),
            ("SHOW JOB 1.5", "a job id is an integer"),
            (
                "EXPORT DATABASE x.json.gz -includeClass=a",
                "unknown option -includeClass",
            ),
            (
                "IMPORT DATABASE x.json.gz -merge=true",
                "-merge, -preserveClusterIDs",
            ),
            (
                "IMPORT DATABASE copy FROM 'x' WITH (merge)",
                "unknown option merge",
            ),
            ("IMPORT DATABASE", "missing file name"),
        ] {
            let Some(Err(message)) = parse_text(bad) else {
                panic!("{bad} was accepted");
            };
            assert!(message.contains(expected), "{bad}: {message}");
        }
    }

    #[test]
    fn recognises_the_backup_statements() {
        assert_eq!(
            parse_text(
                "BACKUP DATABASE sales TO 'a.zip' WITH (compression_level = 9, buffer_size = '2MiB', detached)"
            ),
            Some(Ok(ServerStatement::Backup(Backup {
                database: Some("sales".into()),
                path: "a.zip".into(),
                options: vec![
                    ("compression_level".into(), Literal::Integer(9)),
                    ("buffer_size".into(), Literal::Text("2MiB".into())),
                ],
                detached: true,
                into: None,
                default_store: false,
            })))
        );
        assert_eq!(
            parse_text("backup database to 'b.zip'"),
            Some(Ok(ServerStatement::Backup(Backup {
                database: None,
                path: "b.zip".into(),
                options: vec![],
                detached: false,
                into: None,
                default_store: false,
            })))
        );
        assert_eq!(
            parse_text("BACKUP DATABASE /tmp/my-db.zip -compressionLevel=1 -bufferSize=65536"),
            Some(Ok(ServerStatement::Backup(Backup {
                database: None,
                path: "/tmp/my-db.zip".into(),
                options: vec![
                    ("compression_level".into(), Literal::Integer(1)),
                    ("buffer_size".into(), Literal::Integer(65536)),
                ],
                detached: false,
                into: None,
                default_store: false,
            })))
        );
        assert_eq!(
            parse_text("BACKUP DATABASE sales INTO 'offsite:coll' WITH (incremental, detached)"),
            Some(Ok(ServerStatement::Backup(Backup {
                database: Some("sales".into()),
                path: "offsite:coll".into(),
                options: vec![],
                detached: true,
                into: Some(Collection {
                    incremental: true,
                    full_when_empty: false,
                }),
                default_store: false,
            })))
        );
        assert!(matches!(
            parse_text("BACKUP DATABASE sales TO 'a.zip' WITH (incremental)"),
            Some(Err(m)) if m.contains("goes INTO a collection")
        ));
        assert!(matches!(
            parse_text("BACKUP DATABASE x.zip -incremental"),
            Some(Err(m)) if m.contains("names a directory")
        ));
        assert_eq!(
            parse_text("BACKUP DATABASE /backups/sales -incremental -compressionLevel=1"),
            Some(Ok(ServerStatement::Backup(Backup {
                database: None,
                path: "/backups/sales".into(),
                options: vec![("compression_level".into(), Literal::Integer(1))],
                detached: false,
                into: Some(Collection {
                    incremental: true,
                    full_when_empty: true,
                }),
                default_store: false,
            })))
        );
        assert_eq!(
            parse_text("BACKUP ABORT"),
            Some(Ok(ServerStatement::BackupAbort))
        );
        assert_eq!(
            parse_text("show backup"),
            Some(Ok(ServerStatement::ShowBackups))
        );
        // QuestDB: to the configured default store.
        assert_eq!(
            parse_text("BACKUP DATABASE"),
            Some(Ok(ServerStatement::Backup(Backup::to_default_store(None))))
        );
        assert_eq!(
            parse_text("backup database Sales"),
            Some(Ok(ServerStatement::Backup(Backup::to_default_store(Some(
                "sales".into()
            )))))
        );
        assert!(matches!(
            parse_text("EXPORT DATABASE"),
            Some(Err(m)) if m.contains("missing file name")
        ));
        assert_eq!(
            parse_text("cancel backup 12"),
            Some(Ok(ServerStatement::CancelBackup { id: 12 }))
        );
        let tables = |names: &[&str]| {
            Literal::List(names.iter().map(|n| Literal::Text((*n).into())).collect())
        };
        let to_file = |database: Option<&str>, path: &str, options: Vec<(String, Literal)>| {
            ServerStatement::Backup(Backup {
                database: database.map(Into::into),
                path: path.into(),
                options,
                detached: false,
                into: None,
                default_store: false,
            })
        };
        let table_restore = |database: &str, path: &str, into: Option<&str>, names: &[&str]| {
            ServerStatement::Restore(Restore {
                database: database.into(),
                from: RestoreFrom::File(path.into()),
                replace: false,
                new_name: into.map(Into::into),
                tables: Some(names.iter().map(|n| (*n).into()).collect()),
            })
        };
        for (text, statement) in [
            // `[…]` lexes as a bracket-quoted identifier; it is a list here.
            (
                "BACKUP DATABASE d TO 'a.zip' WITH (tables = ['orders', 'Items'])",
                to_file(
                    Some("d"),
                    "a.zip",
                    vec![("tables".into(), tables(&["orders", "Items"]))],
                ),
            ),
            (
                "BACKUP DATABASE TO 'a.zip' WITH (exclude_tables = (logs), compression_level = 1)",
                to_file(
                    None,
                    "a.zip",
                    vec![
                        ("exclude_tables".into(), tables(&["logs"])),
                        ("compression_level".into(), Literal::Integer(1)),
                    ],
                ),
            ),
            (
                "BACKUP TABLE shop.orders, shop.customers TO 'b.zip'",
                to_file(
                    Some("shop"),
                    "b.zip",
                    vec![("tables".into(), tables(&["orders", "customers"]))],
                ),
            ),
            (
                "BACKUP SNAPSHOT shop.nightly TO offsite ON (orders) PROPERTIES (\"timeout\" = \"3600\", \"type\" = \"full\")",
                to_file(
                    Some("shop"),
                    "offsite:nightly.zip",
                    vec![
                        ("timeout".into(), Literal::Integer(3600)),
                        ("tables".into(), tables(&["orders"])),
                    ],
                ),
            ),
            (
                "BACKUP SNAPSHOT shop.nightly TO '/b/repo' EXCLUDE (logs)",
                to_file(
                    Some("shop"),
                    "/b/repo/nightly.zip",
                    vec![("exclude_tables".into(), tables(&["logs"]))],
                ),
            ),
            (
                "BACKUP shop.orders TO 'b.zip'",
                to_file(
                    Some("shop"),
                    "b.zip",
                    vec![("tables".into(), tables(&["orders"]))],
                ),
            ),
            (
                "RESTORE TABLE shop.orders FROM 'b.zip' WITH (into_db = 'other')",
                table_restore("shop", "b.zip", Some("other"), &["orders"]),
            ),
            (
                "RESTORE TABLE orders FROM 'b.zip'",
                table_restore("", "b.zip", None, &["orders"]),
            ),
            (
                "RESTORE SNAPSHOT shop.nightly FROM offsite",
                table_restore("shop", "offsite:nightly.zip", None, &[]),
            ),
            ("CANCEL JOB 12", ServerStatement::CancelBackup { id: 12 }),
            ("pause job 3", ServerStatement::PauseJob { id: 3 }),
            ("RESUME JOB 3", ServerStatement::ResumeJob { id: 3 }),
            ("SHOW JOB 4", ServerStatement::ShowJob { id: 4 }),
            ("SHOW JOBS", ServerStatement::ShowBackups),
        ] {
            assert_eq!(parse_text(text), Some(Ok(statement)), "{text}");
        }
        // A table named job is SQLite's.
        assert_eq!(parse_text("SELECT * FROM job"), None);
        assert_eq!(
            parse_text("RESTORE DATABASE copy FROM 'a.zip' WITH (replace)"),
            Some(Ok(ServerStatement::Restore(Restore {
                database: "copy".into(),
                from: RestoreFrom::File("a.zip".into()),
                replace: true,
                new_name: None,
                tables: None,
            })))
        );
        assert_eq!(
            parse_text(
                "RESTORE DATABASE d FROM LATEST IN 'offsite:auto' AS OF SYSTEM TIME '2026-12-01 10:00:00+00'"
            ),
            Some(Ok(ServerStatement::Restore(Restore {
                database: "d".into(),
                from: RestoreFrom::Latest {
                    location: "offsite:auto".into(),
                    as_of: Some("2026-12-01 10:00:00+00".into()),
                },
                replace: false,
                new_name: None,
                tables: None,
            })))
        );
        assert_eq!(
            parse_text("SHOW ARCHIVES IN 'offsite:' WITH (verify)"),
            Some(Ok(ServerStatement::ShowArchives {
                location: "offsite:".into(),
                verify: true,
            }))
        );
        assert_eq!(
            parse_text("show archives"),
            Some(Ok(ServerStatement::ShowArchives {
                location: String::new(),
                verify: false,
            }))
        );
        assert!(matches!(
            parse_text("RESTORE DATABASE copy FROM 'a.zip' WITH (overwrite)"),
            Some(Err(_))
        ));
        assert_eq!(
            parse_text("show backups"),
            Some(Ok(ServerStatement::ShowBackups))
        );
        assert!(matches!(
            parse_text("BACKUP DATABASE TO a.zip"),
            Some(Err(m)) if m.contains("quoted")
        ));
    }
}
