//! The backup statements of a session: BACKUP DATABASE, BACKUP ABORT, CANCEL BACKUP,
//! RESTORE DATABASE, EXPORT DATABASE, IMPORT DATABASE and SHOW BACKUPS, the job control
//! over them (SHOW JOBS, SHOW JOB, PAUSE JOB, RESUME JOB, CANCEL JOB), plus the `backups()`
//! table function.

use std::borrow::Cow;

use rusqlite::types::Value;

use super::{Column, Executed, Session, catalog_error, columns};
use crate::backup::jobs::{Kind, Product, Restoring};
use crate::backup::{BackupError, BackupOptions, Stopped, history};
use crate::sql::lexer::{Spanned, Token};
use crate::sql::server_statement::{Backup, Restore, RestoreFrom, ServerStatement};
use crate::sql::types::SqlType;
use crate::sqlstate::{self, SqlError};

const HISTORY_COLUMNS: &[(&str, SqlType)] = &[
    ("id", SqlType::Int8),
    ("database", SqlType::Text),
    ("kind", SqlType::Text),
    ("status", SqlType::Text),
    ("progress_percent", SqlType::Float8),
    ("start_ts", SqlType::Text),
    ("end_ts", SqlType::Text),
    ("path", SqlType::Text),
    ("bytes", SqlType::Int8),
    ("backup_error", SqlType::Text),
    ("requested_by", SqlType::Text),
];

/// What `SHOW ARCHIVES` and `archives()` return, one row per archive or export.
pub(super) const ARCHIVE_COLUMNS: &[(&str, SqlType)] = &[
    ("location", SqlType::Text),
    ("database", SqlType::Text),
    ("kind", SqlType::Text),
    ("created_at", SqlType::Text),
    ("bytes", SqlType::Int8),
    ("compression_level", SqlType::Int8),
    ("server_version", SqlType::Text),
    // NULL unless asked for (WITH (verify)), then 'passed' or 'failed'.
    ("verification", SqlType::Text),
    ("problem", SqlType::Text),
    // Of an increment: the archive beside it that it applies to.
    ("parent", SqlType::Text),
    // Of a continuous archive's stream and of its bases: what AS OF SYSTEM TIME can restore.
    ("restorable_from", SqlType::Text),
    ("restorable_until", SqlType::Text),
    // Of a table-level archive: the tables it holds, comma-separated (NULL: all of them).
    ("tables", SqlType::Text),
    // Of an encrypted archive: the name of its key (never the key).
    ("encryption_key", SqlType::Text),
];

/// The rows of `SHOW ARCHIVES`.
pub(super) fn archive_rows(archives: Vec<crate::backup::archives::Archive>) -> Vec<Vec<Value>> {
    let text = |t: Option<String>| t.map_or(Value::Null, Value::Text);
    archives
        .into_iter()
        .map(|a| {
            vec![
                Value::Text(a.location),
                text(a.database),
                text(a.kind),
                text(a.created_at),
                Value::Integer(a.bytes as i64),
                a.compression_level
                    .map_or(Value::Null, |l| Value::Integer(i64::from(l))),
                text(a.server_version),
                a.verified.map_or(Value::Null, |ok| {
                    Value::Text(if ok { "passed" } else { "failed" }.into())
                }),
                text(a.problem),
                text(a.parent),
                text(a.restorable_from),
                text(a.restorable_until),
                text(a.tables.map(|t| t.join(", "))),
                text(a.encryption_key),
            ]
        })
        .collect()
}

/// The result columns of a backup statement.
pub(super) fn result_columns(statement: &ServerStatement) -> Vec<Column> {
    match statement {
        ServerStatement::Backup(Backup { detached: true, .. })
        | ServerStatement::Export(Backup { detached: true, .. })
        | ServerStatement::BackupAbort
        | ServerStatement::CancelBackup { .. }
        | ServerStatement::PauseJob { .. }
        | ServerStatement::ResumeJob { .. } => {
            columns(&[("id", SqlType::Int8), ("status", SqlType::Text)])
        }
        ServerStatement::Backup(_) => columns(&[
            ("id", SqlType::Int8),
            ("database", SqlType::Text),
            ("path", SqlType::Text),
            ("bytes", SqlType::Int8),
            ("duration", SqlType::Float8),
            // The snapshot instant, as the archive's manifest has it (QuestDB returns it).
            ("created_at", SqlType::Text),
        ]),
        ServerStatement::Export(_) => columns(&[
            ("id", SqlType::Int8),
            ("database", SqlType::Text),
            ("path", SqlType::Text),
            ("bytes", SqlType::Int8),
            ("tables", SqlType::Int8),
            ("rows", SqlType::Int8),
            ("duration", SqlType::Float8),
        ]),
        ServerStatement::Import(_)
        | ServerStatement::Restore(Restore {
            tables: Some(_), ..
        }) => columns(&[
            ("database", SqlType::Text),
            ("table_name", SqlType::Text),
            ("rows", SqlType::Int8),
        ]),
        ServerStatement::Restore(_) => columns(&[
            ("database", SqlType::Text),
            ("path", SqlType::Text),
            ("bytes", SqlType::Int8),
            ("created_at", SqlType::Text),
        ]),
        ServerStatement::ShowArchives { .. } => columns(ARCHIVE_COLUMNS),
        _ => columns(HISTORY_COLUMNS),
    }
}

/// Maps a backup failure to the SQLSTATE a PostgreSQL client would expect.
pub(crate) fn backup_error(e: BackupError) -> SqlError {
    let e = match e {
        BackupError::Catalog(e) => return catalog_error(e),
        other => other,
    };
    let code = match &e {
        BackupError::PathRefused(_) => sqlstate::INSUFFICIENT_PRIVILEGE,
        BackupError::TargetExists { .. } => sqlstate::DUPLICATE_FILE,
        BackupError::ImportTargetExists { .. }
        | BackupError::CliTargetExists { .. }
        | BackupError::ReplaceNeeded { .. } => sqlstate::DUPLICATE_DATABASE,
        BackupError::InvalidOption(_) => sqlstate::INVALID_PARAMETER_VALUE,
        BackupError::AlreadyRunning { .. } | BackupError::ServerRunning(_) => {
            sqlstate::OBJECT_IN_USE
        }
        BackupError::NoDataDir { .. } => sqlstate::UNDEFINED_FILE,
        BackupError::UnknownDestination { .. }
        | BackupError::UnknownKey { .. }
        | BackupError::KeyMissing { .. }
        | BackupError::NoDefaultDestination
        | BackupError::NoJob { .. } => sqlstate::UNDEFINED_OBJECT,
        BackupError::JobEnded { .. } => sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
        BackupError::NoSuchTable { .. } => sqlstate::UNDEFINED_TABLE,
        BackupError::ObjectExists { kind: "table", .. } => sqlstate::DUPLICATE_TABLE,
        BackupError::ObjectExists { .. } => sqlstate::DUPLICATE_OBJECT,
        // A restored table's keys, checked at its commit; a database another writer holds.
        BackupError::Sqlite { source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) =>
        {
            sqlstate::INTEGRITY_CONSTRAINT_VIOLATION
        }
        BackupError::Sqlite { source, .. }
            if matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            sqlstate::LOCK_NOT_AVAILABLE
        }
        BackupError::TableDependency(_) => sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
        BackupError::WrongKey { .. } => sqlstate::WRONG_KEY,
        BackupError::NoArchive { .. } | BackupError::OutsideWindow(_) => sqlstate::UNDEFINED_FILE,
        BackupError::NoSpace { .. } => sqlstate::DISK_FULL,
        BackupError::LineTooLong { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
        BackupError::Aborted
        | BackupError::JobAborted { .. }
        | BackupError::TimedOut { .. }
        | BackupError::PausedTooLong { .. }
        | BackupError::JobTimedOut { .. } => sqlstate::QUERY_CANCELED,
        BackupError::Busy { .. } => sqlstate::LOCK_NOT_AVAILABLE,
        BackupError::NotAnArchive { .. }
        | BackupError::Damaged { .. }
        | BackupError::Unsupported { .. }
        | BackupError::BadSegment { .. }
        | BackupError::BadExport { .. } => sqlstate::DATA_CORRUPTED,
        BackupError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            sqlstate::UNDEFINED_FILE
        }
        BackupError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            sqlstate::DISK_FULL
        }
        BackupError::Catalog(_)
        | BackupError::JobFailed { .. }
        | BackupError::Io { .. }
        | BackupError::Sqlite { .. }
        | BackupError::PipeClosed
        | BackupError::Destination { .. }
        | BackupError::History { .. } => sqlstate::IO_ERROR,
    };
    SqlError::new(code, e.to_string())
}

impl Session {
    pub(super) fn run_backup_statement(
        &mut self,
        statement: &ServerStatement,
    ) -> Result<Executed, SqlError> {
        let what = match statement {
            ServerStatement::Backup(_) => "BACKUP DATABASE",
            ServerStatement::BackupAbort => "BACKUP ABORT",
            ServerStatement::CancelBackup { .. } => "CANCEL BACKUP",
            ServerStatement::PauseJob { .. } => "PAUSE JOB",
            ServerStatement::ResumeJob { .. } => "RESUME JOB",
            ServerStatement::Restore(_) => "RESTORE DATABASE",
            ServerStatement::Export(_) => "EXPORT DATABASE",
            ServerStatement::Import(_) => "IMPORT DATABASE",
            ServerStatement::ShowArchives { .. } => "SHOW ARCHIVES",
            _ => "SHOW BACKUPS",
        };
        self.require_backup_role(what)?;
        let columns = Some(result_columns(statement));
        match statement {
            ServerStatement::Backup(backup) => {
                self.refuse_in_transaction(what)?;
                let database = backup.database.as_deref().unwrap_or(&self.database);
                let options = BackupOptions::from_sql(&backup.options).map_err(backup_error)?;
                let job = match backup.into {
                    // QuestDB's form: a full archive named by its time in the default store.
                    None if backup.default_store => {
                        let location = self
                            .backups
                            .default_destination()
                            .map_err(backup_error)?
                            .to_owned();
                        self.backups
                            .start_into(database, &location, false, false, options, &self.user)
                    }
                    Some(collection) => self.backups.start_into(
                        database,
                        &backup.path,
                        collection.incremental,
                        collection.full_when_empty,
                        options,
                        &self.user,
                    ),
                    None => self
                        .backups
                        .start(database, &backup.path, options, &self.user),
                }
                .map_err(backup_error)?;
                if backup.detached {
                    let row = vec![Value::Integer(job.id), Value::Text("running".into())];
                    return Ok(Executed::rows("BACKUP", columns, vec![row]));
                }
                let (written, took) = job.finished().map_err(backup_error)?;
                let row = vec![
                    Value::Integer(job.id),
                    Value::Text(job.database.clone()),
                    Value::Text(written.path().display().to_string()),
                    Value::Integer(written.bytes() as i64),
                    Value::Real(took.as_secs_f64()),
                    written
                        .created_at()
                        .map_or(Value::Null, |t| Value::Text(t.to_owned())),
                ];
                Ok(Executed::rows("BACKUP", columns, vec![row]))
            }
            ServerStatement::Export(export) if export.into.is_some() => Err(SqlError::new(
                crate::sqlstate::SYNTAX_ERROR,
                "EXPORT DATABASE writes one file: EXPORT DATABASE name TO 'file.json.gz' (INTO a collection is for BACKUP)".into(),
            )),
            ServerStatement::Export(export) => {
                self.refuse_in_transaction(what)?;
                let database = export.database.as_deref().unwrap_or(&self.database);
                let options = BackupOptions::from_sql(&export.options).map_err(backup_error)?;
                let job = self
                    .backups
                    .start_kind(Kind::Export, database, &export.path, options, &self.user)
                    .map_err(backup_error)?;
                if export.detached {
                    let row = vec![Value::Integer(job.id), Value::Text("running".into())];
                    return Ok(Executed::rows("EXPORT", columns, vec![row]));
                }
                let (product, took) = job.finished().map_err(backup_error)?;
                let (tables, rows) = match &product {
                    Product::Export(e) => (e.header.tables, e.header.rows),
                    _ => (0, 0),
                };
                let row = vec![
                    Value::Integer(job.id),
                    Value::Text(job.database.clone()),
                    Value::Text(product.path().display().to_string()),
                    Value::Integer(product.bytes() as i64),
                    Value::Integer(tables as i64),
                    Value::Integer(rows as i64),
                    Value::Real(took.as_secs_f64()),
                ];
                Ok(Executed::rows("EXPORT", columns, vec![row]))
            }
            ServerStatement::Import(import) => {
                self.refuse_in_transaction(what)?;
                let imported = self
                    .backups
                    .import(
                        import.database.as_deref(),
                        &import.path,
                        import.replace,
                        &self.user,
                    )
                    .map_err(backup_error)?;
                let database = import
                    .database
                    .clone()
                    .unwrap_or_else(|| imported.header.database.clone());
                if !import.replace {
                    self.plugins
                        .emit(cairn_plugin_api::EventKind::DatabaseCreated, &database, "");
                }
                let rows = table_rows(&database, imported.tables);
                Ok(Executed::rows("IMPORT", columns, rows))
            }
            ServerStatement::BackupAbort => {
                let row = stopped_row(self.backups.abort_database(&self.database));
                Ok(Executed::rows("BACKUP ABORT", columns, vec![row]))
            }
            ServerStatement::CancelBackup { id } => {
                match self.backups.cancel(*id).map_err(backup_error)? {
                    Some(stopped) => Ok(Executed::rows(
                        "CANCEL BACKUP",
                        columns,
                        vec![stopped_row(stopped)],
                    )),
                    None => Err(backup_error(BackupError::NoJob { id: *id })),
                }
            }
            ServerStatement::PauseJob { id } => {
                // A step is short (a buffer, a page batch); a job inside a long one (taking
                // its snapshot's copy) pauses when it ends, and the history then says so.
                let status = if self
                    .backups
                    .pause(*id, PAUSE_WAIT)
                    .map_err(backup_error)?
                {
                    "paused"
                } else {
                    "pause requested"
                };
                let row = vec![Value::Integer(*id), Value::Text(status.into())];
                Ok(Executed::rows("PAUSE JOB", columns, vec![row]))
            }
            ServerStatement::ResumeJob { id } => {
                self.backups.resume(*id).map_err(backup_error)?;
                let row = vec![Value::Integer(*id), Value::Text("running".into())];
                Ok(Executed::rows("RESUME JOB", columns, vec![row]))
            }
            ServerStatement::ShowArchives { location, verify } => {
                let archives = self
                    .backups
                    .archives(location, *verify)
                    .map_err(backup_error)?;
                Ok(Executed::rows("SHOW", columns, archive_rows(archives)))
            }
            ServerStatement::Restore(restore) => {
                self.refuse_in_transaction(what)?;
                // A table restore with no database named is the session's.
                let database = match restore.database.as_str() {
                    "" => self.database.clone(),
                    named => named.to_owned(),
                };
                let target = restore.new_name.as_deref().unwrap_or(&database);
                let what = match &restore.tables {
                    Some(tables) => Restoring::Tables(tables),
                    None => Restoring::Database {
                        replace: restore.replace,
                    },
                };
                let (restored, path) = match &restore.from {
                    RestoreFrom::File(path) => (
                        self.backups
                            .restore(target, path, what, &self.user)
                            .map_err(backup_error)?,
                        path.clone(),
                    ),
                    RestoreFrom::Latest { location, as_of } => {
                        let as_of = as_of
                            .as_deref()
                            .map(crate::backup::continuous::replay::parse_instant)
                            .transpose()
                            .map_err(|m| SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, m))?;
                        self.backups
                            .restore_latest(
                                target,
                                location,
                                &database,
                                as_of,
                                what,
                                &self.user,
                            )
                            .map_err(backup_error)?
                    }
                };
                if restore.tables.is_some() {
                    // One row per table, as IMPORT answers.
                    let rows = table_rows(target, restored.tables);
                    return Ok(Executed::rows("RESTORE", columns, rows));
                }
                let verified = restored.verified;
                let row = vec![
                    Value::Text(target.to_owned()),
                    Value::Text(path),
                    Value::Integer(verified.database_bytes as i64),
                    Value::Text(verified.manifest.created_at),
                ];
                if !restore.replace {
                    self.plugins
                        .emit(cairn_plugin_api::EventKind::DatabaseCreated, target, "");
                }
                Ok(Executed::rows("RESTORE", columns, vec![row]))
            }
            _ => {
                let names: Vec<&str> = HISTORY_COLUMNS.iter().map(|(n, _)| *n).collect();
                let only = match statement {
                    ServerStatement::ShowJob { id } => {
                        if self.backups.history().get(*id).map_err(backup_error)?.is_none() {
                            return Err(backup_error(BackupError::NoJob { id: *id }));
                        }
                        format!(" WHERE id = {id}")
                    }
                    _ => String::new(),
                };
                let sql = format!(
                    "SELECT {} FROM {}.{}{only} ORDER BY id",
                    names.join(", "),
                    history::SCHEMA,
                    history::TABLE
                );
                // The history is the server's own and small: collected, then handed on.
                let mut collect = super::output::Collect::default();
                let executed =
                    self.step_sqlite(&sql, &super::facts::Facts::of(&[]), &[], columns.as_deref(), &mut collect)?;
                let _ = super::output::Output::finished(&mut collect, Ok(executed));
                let mut executed = collect
                    .results
                    .pop()
                    .unwrap_or_else(|| Ok(Executed::empty()))?;
                executed.tag.command = "SHOW".into();
                Ok(executed)
            }
        }
    }

    fn require_backup_role(&self, what: &str) -> Result<(), SqlError> {
        if self.role.may_back_up() {
            Ok(())
        } else {
            Err(SqlError::new(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied: {what} needs the admin or backup role; user \"{}\" has role {}",
                    self.user,
                    self.role.name()
                ),
            ))
        }
    }

    /// Rewrites the `backups()` table function into the attached history table, and
    /// `archives(['location'])` into the rows of SHOW ARCHIVES there.
    pub(super) fn rewrite_table_functions<'a>(
        &self,
        text: &'a str,
        offset: usize,
        tokens: &[Spanned<'_>],
    ) -> Result<Cow<'a, str>, SqlError> {
        let mut calls: Vec<(usize, usize, String)> = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            let after_dot = i > 0 && tokens[i - 1].token == Token::Punct(".");
            let next = |n: usize| tokens.get(i + n).map(|t| &t.token);
            if after_dot || next(1) != Some(&Token::Punct("(")) {
                continue;
            }
            if t.token.is_keyword("backups") && next(2) == Some(&Token::Punct(")")) {
                self.require_backup_role("backups()")?;
                let table = format!("{}.{}", history::SCHEMA, history::TABLE);
                calls.push((t.start - offset, tokens[i + 2].end - offset, table));
            } else if t.token.is_keyword("archives") {
                // Anything else (`INSERT INTO archives(a, b)`) is a table of that name.
                let (location, close) = match (next(2), next(3)) {
                    (Some(Token::Punct(")")), _) => (String::new(), i + 2),
                    (Some(Token::Str(location)), Some(Token::Punct(")"))) => {
                        (location.clone(), i + 3)
                    }
                    _ => continue,
                };
                self.require_backup_role("archives()")?;
                let archives = self
                    .backups
                    .archives(&location, false)
                    .map_err(backup_error)?;
                let names: Vec<String> = ARCHIVE_COLUMNS
                    .iter()
                    .map(|(n, _)| (*n).to_owned())
                    .collect();
                let table = super::values_table(&names, &archive_rows(archives));
                calls.push((t.start - offset, tokens[close].end - offset, table));
            }
        }
        if calls.is_empty() {
            return Ok(Cow::Borrowed(text));
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut at = 0;
        for (start, end, table) in calls {
            out.push_str(&text[at..start]);
            out.push_str(&table);
            at = end;
        }
        out.push_str(&text[at..]);
        Ok(Cow::Owned(out))
    }
}

/// The rows of an IMPORT or a table RESTORE: `database, table_name, rows`.
fn table_rows(database: &str, tables: Vec<(String, u64)>) -> Vec<Vec<Value>> {
    tables
        .into_iter()
        .map(|(table, rows)| {
            vec![
                Value::Text(database.to_owned()),
                Value::Text(table),
                Value::Integer(rows as i64),
            ]
        })
        .collect()
}

/// How long PAUSE JOB waits for the job to reach its next step.
const PAUSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn stopped_row(stopped: Stopped) -> Vec<Value> {
    match stopped {
        Stopped::Aborted(id) => vec![Value::Integer(id), Value::Text("aborted".into())],
        Stopped::NotRunning(id) => vec![
            id.map_or(Value::Null, Value::Integer),
            Value::Text("not running".into()),
        ],
    }
}
