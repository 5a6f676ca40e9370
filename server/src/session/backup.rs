//! The backup statements of a session: BACKUP DATABASE, BACKUP ABORT, CANCEL BACKUP,
//! RESTORE DATABASE, EXPORT DATABASE, IMPORT DATABASE and SHOW BACKUPS, plus the
//! `backups()` table function.

use std::borrow::Cow;

use rusqlite::types::Value;

use super::{Column, Executed, Session, catalog_error, columns};
use crate::backup::jobs::{Kind, Product};
use crate::backup::{BackupError, BackupOptions, Stopped, history};
use crate::sql::lexer::{Spanned, Token};
use crate::sql::server_statement::{Backup, ServerStatement};
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

/// The result columns of a backup statement.
pub(super) fn result_columns(statement: &ServerStatement) -> Vec<Column> {
    match statement {
        ServerStatement::Backup(Backup { detached: true, .. })
        | ServerStatement::Export(Backup { detached: true, .. })
        | ServerStatement::BackupAbort
        | ServerStatement::CancelBackup { .. } => {
            columns(&[("id", SqlType::Int8), ("status", SqlType::Text)])
        }
        ServerStatement::Backup(_) => columns(&[
            ("id", SqlType::Int8),
            ("database", SqlType::Text),
            ("path", SqlType::Text),
            ("bytes", SqlType::Int8),
            ("duration", SqlType::Float8),
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
        ServerStatement::Import(_) => columns(&[
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
        BackupError::ImportTargetExists { .. } | BackupError::CliTargetExists { .. } => {
            sqlstate::DUPLICATE_DATABASE
        }
        BackupError::InvalidOption(_) => sqlstate::INVALID_PARAMETER_VALUE,
        BackupError::AlreadyRunning { .. } | BackupError::ServerRunning(_) => {
            sqlstate::OBJECT_IN_USE
        }
        BackupError::NoDataDir { .. } => sqlstate::UNDEFINED_FILE,
        BackupError::UnknownDestination { .. } => sqlstate::UNDEFINED_OBJECT,
        BackupError::NoSpace { .. } => sqlstate::DISK_FULL,
        BackupError::LineTooLong { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
        BackupError::Aborted | BackupError::JobAborted { .. } => sqlstate::QUERY_CANCELED,
        BackupError::Busy { .. } => sqlstate::LOCK_NOT_AVAILABLE,
        BackupError::NotAnArchive { .. }
        | BackupError::Damaged { .. }
        | BackupError::Unsupported { .. }
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
            ServerStatement::Restore(_) => "RESTORE DATABASE",
            ServerStatement::Export(_) => "EXPORT DATABASE",
            ServerStatement::Import(_) => "IMPORT DATABASE",
            _ => "SHOW BACKUPS",
        };
        self.require_backup_role(what)?;
        let columns = Some(result_columns(statement));
        match statement {
            ServerStatement::Backup(backup) => {
                self.refuse_in_transaction(what)?;
                let database = backup.database.as_deref().unwrap_or(&self.database);
                let options = BackupOptions::from_written(&backup.options).map_err(backup_error)?;
                let job = self
                    .backups
                    .start(database, &backup.path, options, &self.user)
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
                ];
                Ok(Executed::rows("BACKUP", columns, vec![row]))
            }
            ServerStatement::Export(export) => {
                self.refuse_in_transaction(what)?;
                let database = export.database.as_deref().unwrap_or(&self.database);
                let options = BackupOptions::from_written(&export.options).map_err(backup_error)?;
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
                let rows = imported
                    .tables
                    .into_iter()
                    .map(|(table, rows)| {
                        vec![
                            Value::Text(database.clone()),
                            Value::Text(table),
                            Value::Integer(rows as i64),
                        ]
                    })
                    .collect();
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
                    None => Err(SqlError::new(
                        sqlstate::UNDEFINED_OBJECT,
                        format!("there is no backup with id {id}; SHOW BACKUPS lists them"),
                    )),
                }
            }
            ServerStatement::Restore(restore) => {
                self.refuse_in_transaction(what)?;
                let verified = self
                    .backups
                    .restore(
                        &restore.database,
                        &restore.path,
                        restore.replace,
                        &self.user,
                    )
                    .map_err(backup_error)?;
                let row = vec![
                    Value::Text(restore.database.clone()),
                    Value::Text(restore.path.clone()),
                    Value::Integer(verified.database_bytes as i64),
                    Value::Text(verified.manifest.created_at),
                ];
                if !restore.replace {
                    self.plugins.emit(
                        cairn_plugin_api::EventKind::DatabaseCreated,
                        &restore.database,
                        "",
                    );
                }
                Ok(Executed::rows("RESTORE", columns, vec![row]))
            }
            _ => {
                let names: Vec<&str> = HISTORY_COLUMNS.iter().map(|(n, _)| *n).collect();
                let sql = format!(
                    "SELECT {} FROM {}.{} ORDER BY id",
                    names.join(", "),
                    history::SCHEMA,
                    history::TABLE
                );
                // The history is the server's own and small: collected, then handed on.
                let mut collect = super::output::Collect::default();
                let executed =
                    self.step_sqlite(&sql, &[], &[], columns.as_deref(), &mut collect)?;
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

    /// Rewrites the `backups()` table function into the attached history table.
    pub(super) fn rewrite_table_functions<'a>(
        &self,
        text: &'a str,
        offset: usize,
        tokens: &[Spanned<'_>],
    ) -> Result<Cow<'a, str>, SqlError> {
        let mut calls = Vec::new();
        for (i, window) in tokens.windows(3).enumerate() {
            let after_dot = i > 0 && tokens[i - 1].token == Token::Punct(".");
            if window[0].token.is_keyword("backups")
                && window[1].token == Token::Punct("(")
                && window[2].token == Token::Punct(")")
                && !after_dot
            {
                calls.push((window[0].start - offset, window[2].end - offset));
            }
        }
        if calls.is_empty() {
            return Ok(Cow::Borrowed(text));
        }
        self.require_backup_role("backups()")?;
        let mut out = String::with_capacity(text.len() + 16);
        let mut at = 0;
        for (start, end) in calls {
            out.push_str(&text[at..start]);
            out.push_str(history::SCHEMA);
            out.push('.');
            out.push_str(history::TABLE);
            at = end;
        }
        out.push_str(&text[at..]);
        Ok(Cow::Owned(out))
    }
}

fn stopped_row(stopped: Stopped) -> Vec<Value> {
    match stopped {
        Stopped::Aborted(id) => vec![Value::Integer(id), Value::Text("aborted".into())],
        Stopped::NotRunning(id) => vec![
            id.map_or(Value::Null, Value::Integer),
            Value::Text("not running".into()),
        ],
    }
}
