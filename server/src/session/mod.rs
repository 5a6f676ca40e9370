//! One client's session: a user with a role, connected to one database through its own
//! SQLite connection. Executes the server's statements itself and hands every other
//! statement to SQLite. Knows nothing about the wire protocol, so it is tested directly.
//!
//! Transactions follow PostgreSQL, because that is what PostgreSQL clients and drivers
//! expect: a multi-statement query runs as one implicit transaction, and after an error inside
//! an explicit transaction every statement is refused until `ROLLBACK` (a `COMMIT` then rolls
//! back).

use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode};

mod advisory;
mod backup;
mod brief;
mod catalogs;
mod column_names;
mod column_types;
mod copy;
mod cursors;
mod facts;
mod functions;
mod lock_wait;
pub mod outcomes;
pub mod output;
mod parameters;
mod plugin_catalog;
pub mod registry;
mod users;

use crate::backup::Backups;
use crate::catalog::{Access, Catalog, CatalogError, Lease};
use crate::group_commit::PendingSync;
use crate::plugin::Plugins;
use crate::roles::Role;
use crate::sql::cursor_statement::CursorStatement;
use crate::sql::lexer::{self, Spanned, Token};
use crate::sql::params::{self, Schema};
use crate::sql::server_statement::{self, Literal, ServerStatement};
use crate::sql::settings::{self, Setting, Timeouts};
use crate::sql::types::{self, SqlType};
use crate::sqlstate::{self, SqlError};
pub use brief::Brief;
use facts::{Control, Facts, is_transaction_control};
use output::{Collect, Output, Stopped};
use registry::{Activity, Interruption, Registry, Seat};
use std::time::{Duration, SystemTime};

/// A result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
}

/// The command tag a client sees (`INSERT 0 3`, `SELECT 2`, `CREATE TABLE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTag {
    pub command: String,
    /// Row count, for the commands that report one.
    pub rows: Option<usize>,
}

/// How a statement changed the session's transaction state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionChange {
    Unchanged,
    Started,
    Ended,
}

/// What one statement produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// `Some` for statements that return rows (even zero rows).
    pub columns: Option<Vec<Column>>,
    pub rows: Vec<Vec<Value>>,
    pub tag: CommandTag,
    pub transaction: TransactionChange,
    /// Run-time parameters PostgreSQL reports to its clients (`TimeZone`, `DateStyle`,
    /// `application_name`…) that the statement changed: name and new value, for a
    /// ParameterStatus message each.
    pub reported: Vec<(String, String)>,
}

impl Executed {
    /// What an empty query string produces.
    pub fn empty() -> Executed {
        Executed::command("", None)
    }

    /// A server statement that returns rows (no transaction change).
    fn rows(command: &str, columns: Option<Vec<Column>>, rows: Vec<Vec<Value>>) -> Executed {
        Executed {
            columns,
            tag: CommandTag {
                command: command.to_owned(),
                rows: Some(rows.len()),
            },
            rows,
            transaction: TransactionChange::Unchanged,
            reported: Vec::new(),
        }
    }

    /// A statement that returns no rows.
    fn command(command: &str, rows: Option<usize>) -> Executed {
        Executed {
            columns: None,
            rows: Vec::new(),
            tag: CommandTag {
                command: command.to_owned(),
                rows,
            },
            transaction: TransactionChange::Unchanged,
            reported: Vec::new(),
        }
    }
}

/// A statement prepared by the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub sql: String,
    kind: PreparedKind,
    /// One entry per `$n`: the inferred type, or `None` if it could not be inferred.
    pub param_types: Vec<Option<SqlType>>,
    /// `Some` if the statement returns rows.
    pub columns: Option<Vec<Column>>,
    /// Whether it may be run briefly (see [`Session::execute_prepared_briefly`]).
    brief: brief::Briefly,
}

impl Prepared {
    /// Whether [`Session::execute_prepared_briefly`] may run it: a read-only query without
    /// side effects, or a single write that returns no rows (outside a transaction only).
    pub fn runs_briefly(&self) -> bool {
        self.brief != brief::Briefly::Never
    }
}

#[derive(Debug, Clone)]
enum PreparedKind {
    Server(ServerStatement),
    /// No statement at all (an empty query string).
    Empty,
    Sqlite(Box<SqlitePlan>),
}

/// What a statement SQLite runs keeps from its preparation.
#[derive(Debug, Clone)]
struct SqlitePlan {
    facts: Facts,
    /// The text SQLite prepares, when it is the same at every run; `None` when it holds
    /// values of the moment (`sessions()`, `backups()`…) and is rewritten at each.
    fixed: Option<String>,
}

/// A connected session.
#[derive(Debug)]
pub struct Session {
    /// The advisory locks it holds (let go when it ends).
    _advisory: advisory::AdvisoryOwner,
    user: String,
    role: Role,
    database: String,
    /// This session's commits not yet known to be on disk (group commit; none if read-only).
    /// Declared before `conn`, so dropped before it: it lets go of the log first.
    unsynced: Option<PendingSync>,
    /// The rows its transactions change, for plugins that subscribed (none if read-only).
    changes: Option<Arc<crate::changes::Capture>>,
    conn: Connection,
    catalog: Arc<Catalog>,
    plugins: Arc<Plugins>,
    backups: Arc<Backups>,
    /// PostgreSQL's "current transaction is aborted" state.
    failed_transaction: bool,
    /// The timeouts from the config and the startup packet: what RESET goes back to.
    configured: Timeouts,
    /// The session's place among the server's sessions (none in unit tests).
    seat: Option<(Arc<Registry>, Seat)>,
    /// The deadline of a brief run, looked at while SQLite steps.
    deadline: Arc<brief::Deadline>,
    /// The lock timeout its connection's busy handler keeps to.
    lock_wait: Arc<lock_wait::LockWait>,
    /// The plugins' SQL functions its connection has.
    functions: crate::plugin::functions::ConnectionFunctions,
    /// PostgreSQL's run-time parameters it set, shared with its connection's functions.
    parameters: Arc<parameters::Shared>,
    /// What the catalog functions read of its catalogs' last filling.
    definitions: Arc<catalogs::Definitions>,
    /// The server's users, for the statements on users and the catalogs that list them
    /// (none for a plugin's session).
    users: Option<Arc<crate::credentials::UserDirectory>>,
    /// Its open SQL cursors, by name, and how many it has made (each names its table).
    cursors: std::collections::HashMap<String, cursors::Cursor>,
    cursors_made: u64,
    /// Tables of closed cursors, dropped once no transaction is open.
    closed_cursors: Vec<String>,
    _lease: Lease,
}

/// How many statements a session keeps prepared (least recently used go first).
const STATEMENT_CACHE: usize = 256;

/// A session that ends inside a transaction (its client gone) rolls it back while its
/// connection's hooks are alive. Closed with the transaction open, SQLite would free the
/// connection's client data (where rusqlite keeps the hooks) and then roll back, calling the
/// rollback hook it had freed.
impl Drop for Session {
    fn drop(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        // Should the rollback have failed, the close must find no hook to call.
        let _ = self.conn.rollback_hook(None::<fn()>);
    }
}

impl Session {
    /// Connects `user` to `database`; the database must exist.
    pub fn open(
        catalog: Arc<Catalog>,
        plugins: Arc<Plugins>,
        backups: Arc<Backups>,
        user: &str,
        role: Role,
        database: &str,
    ) -> Result<Session, CatalogError> {
        let access = if role.may_write() {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        // Roles that may back up also read the backup history, as schema `cairn`.
        let history = role
            .may_back_up()
            .then(|| (crate::backup::history::SCHEMA, backups.history().path()));
        let crate::catalog::SessionConnection {
            mut conn,
            lease,
            unsynced,
            changes,
        } = catalog.connect_session(database, access, history)?;
        // Statements are kept prepared by their text, for both protocols: a client's
        // working set of statements is rarely larger.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let committed = unsynced.as_ref().map(PendingSync::commit_flag);
        let deadline = brief::Deadline::install(&mut conn, committed).map_err(|source| {
            CatalogError::Sqlite {
                path: catalog.path_of(database),
                source,
            }
        })?;
        let lock_wait =
            lock_wait::LockWait::install(&mut conn, catalog.busy_timeout(), Arc::clone(&deadline))
                .map_err(|source| CatalogError::Sqlite {
                    path: catalog.path_of(database),
                    source,
                })?;
        let advisory =
            advisory::install(&conn, database, Arc::clone(&lock_wait)).map_err(|source| {
                CatalogError::Sqlite {
                    path: catalog.path_of(database),
                    source,
                }
            })?;
        let shared = Arc::new(parameters::Shared::default());
        parameters::register(&conn, &shared, user, database).map_err(|source| {
            CatalogError::Sqlite {
                path: catalog.path_of(database),
                source,
            }
        })?;
        let definitions = Arc::new(catalogs::Definitions::default());
        catalogs::register(&conn, user, &definitions).map_err(|source| CatalogError::Sqlite {
            path: catalog.path_of(database),
            source,
        })?;
        Ok(Session {
            _advisory: advisory,
            parameters: shared,
            definitions,
            user: user.to_owned(),
            role,
            database: database.to_owned(),
            conn,
            catalog,
            plugins,
            backups,
            failed_transaction: false,
            configured: Timeouts::default(),
            seat: None,
            deadline,
            lock_wait,
            functions: Default::default(),
            unsynced,
            changes,
            users: None,
            cursors: Default::default(),
            cursors_made: 0,
            closed_cursors: Vec::new(),
            _lease: lease,
        })
    }

    /// Lets the session run the statements on users, against `users`.
    pub fn manage_users(&mut self, users: Arc<crate::credentials::UserDirectory>) {
        self.users = Some(users);
    }

    /// Joins the server's sessions: cancel requests, timeouts and the admin's functions
    /// reach this session through its seat from now on.
    pub fn take_seat(&mut self, registry: Arc<Registry>, seat: Seat) -> Result<(), SqlError> {
        self.configured = seat.activity.timeouts();
        seat.activity
            .set_interrupt(self.conn.get_interrupt_handle());
        self.lock_wait.watch(Arc::clone(&seat.activity));
        let _ = self.parameters.activity.set(Arc::clone(&seat.activity));
        self.apply_lock_timeout(seat.activity.timeouts().lock)?;
        functions::register(&self.conn, &registry, &seat.activity)
            .map_err(|e| SqlError::from_sqlite(&e))?;
        self.seat = Some((registry, seat));
        Ok(())
    }

    fn activity(&self) -> Option<&Arc<Activity>> {
        self.seat.as_ref().map(|(_, seat)| &seat.activity)
    }

    /// `lock_timeout` is how long SQLite waits for a lock: the busy timeout.
    fn apply_lock_timeout(&mut self, timeout: Option<Duration>) -> Result<(), SqlError> {
        self.lock_wait
            .set(timeout.unwrap_or(self.catalog.busy_timeout()));
        Ok(())
    }

    /// Brings the connection's plugin functions up to date (one load when nothing changed).
    /// Brings the connection up to date with what plugins registered: their SQL functions,
    /// and whether its row changes are wanted.
    fn sync_functions(&mut self) {
        self.functions.sync(self.plugins.functions(), &self.conn);
        if let Some(changes) = &self.changes {
            changes.sync(&mut self.conn);
        }
    }

    /// Marks the session active with `sql` (for SHOW SESSIONS).
    fn statement_starts(&self, sql: &str) {
        if let Some(activity) = self.activity() {
            let now = SystemTime::now();
            let in_transaction = !self.conn.is_autocommit();
            let sql = users::shown_text(sql);
            activity.set(|doing| {
                doing.state = "active";
                // The first 1024 characters, into the text it already has room for.
                let end = sql.char_indices().nth(1024).map_or(sql.len(), |(i, _)| i);
                doing.query.clear();
                doing.query.push_str(&sql[..end]);
                doing.query_start = Some(now);
                if !in_transaction {
                    doing.xact_start = Some(now);
                }
            });
        }
    }

    fn statement_ends(&self) {
        if let Some(activity) = self.activity() {
            let state = match (self.conn.is_autocommit(), self.failed_transaction) {
                (true, _) => "idle",
                (false, false) => "idle in transaction",
                (false, true) => "idle in transaction (aborted)",
            };
            let open = state != "idle";
            activity.set(|doing| {
                doing.state = state;
                if !open {
                    doing.xact_start = None;
                }
            });
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Runs a simple-protocol query string: every statement in order, stopping at the first
    /// error, which is the last element.
    pub fn execute_query(&mut self, sql: &str) -> Vec<Result<Executed, SqlError>> {
        let mut collect = Collect::default();
        self.execute_query_into(sql, &mut collect);
        collect.results
    }

    /// As [`Session::execute_query`], handing each statement's rows to `out` as they are
    /// stepped. Stops early if `out` stops taking them.
    pub fn execute_query_into(&mut self, sql: &str, out: &mut dyn Output) {
        self.sync_functions();
        self.statement_starts(sql);
        self.execute_query_inner(sql, out);
        self.statement_ends();
    }

    fn execute_query_inner(&mut self, sql: &str, out: &mut dyn Output) {
        let statements = match lexer::split(sql) {
            Ok(s) => s,
            Err(e) => {
                let _ = out.finished(Err(SqlError::new(sqlstate::SYNTAX_ERROR, e.to_string())));
                return;
            }
        };
        // PostgreSQL runs a multi-statement query as one transaction unless it manages
        // transactions itself or contains statements that cannot run inside one.
        let implicit = statements.len() > 1
            && self.conn.is_autocommit()
            && !self.failed_transaction
            && statements.iter().all(|s| {
                // Cursors are a transaction's own (`DECLARE …; FETCH …` in one query).
                !is_transaction_control(&s.tokens)
                    && matches!(
                        server_statement::parse(&s.tokens),
                        None | Some(Ok(ServerStatement::Cursor(_) | ServerStatement::CloseAll))
                    )
            });
        let begin = if self.role.may_write() {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        if implicit && let Err(e) = self.conn.execute_batch(begin) {
            let _ = out.finished(Err(self.sql_error(e)));
            return;
        }
        let mut failed = false;
        let mut stopped = false;
        for (i, statement) in statements.iter().enumerate() {
            let started = Started::now();
            let last = i + 1 == statements.len();
            let mut result = self.execute_statement(statement, last, out);
            result = self.once_durable(result);
            outcomes::record(&result);
            self.report_statement(statement.text, started, &result);
            failed = result.is_err();
            if implicit && let Ok(executed) = &mut result {
                // The client saw no BEGIN, so it must see no transaction state change either.
                executed.transaction = TransactionChange::Unchanged;
            }
            stopped = out.finished(result).is_err();
            if failed || stopped {
                break;
            }
        }
        if implicit {
            let end = if failed || stopped {
                "ROLLBACK"
            } else {
                "COMMIT"
            };
            // The implicit transaction is gone either way, so is its aborted state.
            self.failed_transaction = false;
            let ended = self.conn.execute_batch(end).map_err(|e| self.sql_error(e));
            if ended.is_err() && !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            if let Err(e) = self.once_durable(ended.map(|()| Executed::empty()))
                && !failed
                && !stopped
            {
                let _ = out.finished(Err(e));
            }
            // Its cursors end with it.
            self.cursors_after_statement();
        }
    }

    fn execute_statement(
        &mut self,
        statement: &lexer::Statement<'_>,
        last: bool,
        out: &mut dyn Output,
    ) -> Result<Executed, SqlError> {
        if let Some(copy) = crate::pgcompat::copy::parse(statement.text, &statement.tokens) {
            return self.copy(copy, last, out);
        }
        match server_statement::parse(&statement.tokens) {
            Some(Ok(ServerStatement::Cursor(cursor))) => {
                self.run_cursor(&cursor, statement.text, &[], out)
            }
            Some(Ok(server)) => {
                let executed = self.run_server(&server)?;
                emit_rows(executed, out)
            }
            Some(Err(message)) => Err(SqlError::new(sqlstate::SYNTAX_ERROR, message)),
            None => {
                let sql = self.sqlite_text(statement.text, &statement.tokens)?;
                self.run_sqlite(&sql, &Facts::of(&statement.tokens), &[], None, out)
            }
        }
    }

    /// Prepares one statement for the extended protocol.
    pub fn prepare(&mut self, sql: &str) -> Result<Prepared, SqlError> {
        self.sync_functions();
        let mut statements =
            lexer::split(sql).map_err(|e| SqlError::new(sqlstate::SYNTAX_ERROR, e.to_string()))?;
        if statements.len() > 1 {
            return Err(SqlError::new(
                sqlstate::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(Prepared {
                sql: String::new(),
                kind: PreparedKind::Empty,
                param_types: Vec::new(),
                columns: None,
                brief: brief::Briefly::Never,
            });
        };
        if crate::pgcompat::copy::parse(statement.text, &statement.tokens).is_some() {
            // Its data (or its rows) go in CopyData messages, which Cairn reads only after a
            // simple query, as psql, psycopg, asyncpg and node-postgres send COPY.
            return Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "COPY in the extended query protocol is not supported: send it as a simple query (without parameters)".into(),
            ));
        }
        match server_statement::parse(&statement.tokens) {
            Some(Ok(server)) => {
                // A DECLARE takes its query's parameters (psycopg's server-side cursors).
                let param_types = match &server {
                    ServerStatement::Cursor(CursorStatement::Declare { query_at, .. }) => {
                        let query = cursors::declared_query(statement.text, *query_at)?;
                        self.prepare(query)?.param_types
                    }
                    _ => Vec::new(),
                };
                Ok(Prepared {
                    sql: sql.to_owned(),
                    columns: self.server_columns(&server),
                    kind: PreparedKind::Server(server),
                    param_types,
                    brief: brief::Briefly::Never,
                })
            }
            Some(Err(message)) => Err(SqlError::new(sqlstate::SYNTAX_ERROR, message)),
            None => {
                let facts = Facts::of(&statement.tokens);
                let (sql, of_the_moment) =
                    self.sqlite_text_and_moment(statement.text, &statement.tokens)?;
                let fixed = (!of_the_moment).then(|| sql.clone().into_owned());
                if facts.reads_catalogs {
                    self.prepare_catalogs(facts.reads_settings)?;
                }
                let mut stmt = self
                    .conn
                    .prepare_cached(&sql)
                    .map_err(|e| self.sql_error(e))?;
                let count = facts.param_count(stmt.parameter_count());
                let mut param_types =
                    params::infer(&statement.tokens, count, &SqliteSchema(&self.conn));
                for (n, ty) in crate::pgcompat::casts::parameter_types(&statement.tokens) {
                    if let Some(slot) = n.checked_sub(1).and_then(|i| param_types.get_mut(i)) {
                        *slot = Some(ty);
                    }
                }
                let columns = if stmt.column_count() == 0 {
                    None
                } else {
                    let mut declared = declared_columns(&stmt);
                    // Without parameters the first row types them (below).
                    if count > 0 {
                        column_types::through_aggregates(&self.conn, &sql, &mut declared);
                    }
                    // Columns without a declared type (expressions, NUMERIC) take the type of
                    // the first row's value, when the statement can be run without parameters
                    // and without side effects; otherwise they are text.
                    // Not a statement that acts (a lock taken, a backend cancelled):
                    // stepped here, it would act twice. (A plugin's functions compute, and
                    // are stepped: their first values type the columns.)
                    let peeked = if count == 0
                        && stmt.readonly()
                        && declared.iter().any(|(_, ty)| ty.is_none())
                        && !brief::acts(&statement.tokens)
                    {
                        first_row(&mut stmt)
                    } else {
                        None
                    };
                    let peeked: Vec<Vec<Value>> = peeked.into_iter().collect();
                    let mut columns = resolve_columns(declared, &peeked, !facts.compound);
                    facts.postgres_columns(&mut columns);
                    Some(columns)
                };
                let mut brief =
                    brief::briefly(&statement.tokens, stmt.readonly(), stmt.column_count());
                // A plugin's function is one SQLite step the deadline cannot stop, and a run
                // given up would call it twice: the usual way only.
                if self.functions.named_in(&statement.tokens) {
                    brief = brief::Briefly::Never;
                }
                // The catalogs may be filled before it runs: a write of their own.
                if facts.reads_catalogs {
                    brief = brief::Briefly::Never;
                }
                drop(stmt);
                Ok(Prepared {
                    sql: statement.text.to_owned(),
                    kind: PreparedKind::Sqlite(Box::new(SqlitePlan { facts, fixed })),
                    param_types,
                    columns,
                    brief,
                })
            }
        }
    }

    /// Executes a prepared statement with its parameters (`params[i]` is `$i+1`).
    pub fn execute_prepared(
        &mut self,
        prepared: &Prepared,
        params: &[Value],
    ) -> Result<Executed, SqlError> {
        let mut collect = Collect::default();
        self.execute_prepared_into(prepared, params, &mut collect);
        collect
            .results
            .pop()
            .unwrap_or_else(|| Ok(Executed::empty()))
    }

    /// As [`Session::execute_prepared`], handing the rows to `out` as they are stepped.
    pub fn execute_prepared_into(
        &mut self,
        prepared: &Prepared,
        params: &[Value],
        out: &mut dyn Output,
    ) {
        self.sync_functions();
        self.statement_starts(&prepared.sql);
        let started = Started::now();
        let result = self.execute_prepared_inner(prepared, params, out);
        let result = self.once_durable(result);
        outcomes::record(&result);
        self.report_statement(&prepared.sql, started, &result);
        self.statement_ends();
        let _ = out.finished(result);
    }

    fn execute_prepared_inner(
        &mut self,
        prepared: &Prepared,
        params: &[Value],
        out: &mut dyn Output,
    ) -> Result<Executed, SqlError> {
        match &prepared.kind {
            PreparedKind::Server(ServerStatement::Cursor(cursor)) => {
                let statements = lexer::split(&prepared.sql)
                    .map_err(|e| SqlError::new(sqlstate::SYNTAX_ERROR, e.to_string()))?;
                let text = statements.first().map_or("", |s| s.text);
                self.run_cursor(cursor, text, params, out)
            }
            PreparedKind::Server(server) => {
                let executed = self.run_server(server)?;
                emit_rows(executed, out)
            }
            PreparedKind::Empty => Ok(Executed::empty()),
            PreparedKind::Sqlite(plan) => {
                let described = prepared.columns.as_deref();
                if let Some(sql) = &plan.fixed {
                    return self.run_sqlite(sql, &plan.facts, params, described, out);
                }
                let tokens = lexer::tokenize(&prepared.sql)
                    .map_err(|e| SqlError::new(sqlstate::SYNTAX_ERROR, e.to_string()))?;
                let sql = self.sqlite_text(&prepared.sql, &tokens)?;
                self.run_sqlite(&sql, &plan.facts, params, described, out)
            }
        }
    }

    fn run_server(&mut self, statement: &ServerStatement) -> Result<Executed, SqlError> {
        if self.failed_transaction {
            return Err(aborted_transaction());
        }
        match statement {
            ServerStatement::User(statement) => self.run_user_statement(statement),
            // Run with the statement's text and parameters (`run_cursor`), not here.
            ServerStatement::Cursor(_) => Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "cursors are declared and fetched by a client's session".into(),
            )),
            ServerStatement::ShowDatabases => {
                let list = self.catalog.list().map_err(catalog_error)?;
                let rows: Vec<Vec<Value>> = list
                    .into_iter()
                    .map(|db| vec![Value::Text(db.name), Value::Integer(db.size_bytes as i64)])
                    .collect();
                Ok(Executed::rows("SHOW", self.server_columns(statement), rows))
            }
            ServerStatement::CreateDatabase { name } => {
                self.require_database_management("CREATE DATABASE")?;
                self.refuse_in_transaction("CREATE DATABASE")?;
                self.catalog.create(name).map_err(catalog_error)?;
                tracing::info!(database = %name, user = %self.user, "database created");
                self.plugins
                    .emit(cairn_plugin_api::EventKind::DatabaseCreated, name, "");
                Ok(Executed::command("CREATE DATABASE", None))
            }
            ServerStatement::DropDatabase { name, if_exists } => {
                self.require_database_management("DROP DATABASE")?;
                self.refuse_in_transaction("DROP DATABASE")?;
                if *name == self.database {
                    return Err(SqlError::new(
                        sqlstate::OBJECT_IN_USE,
                        format!(
                            "cannot drop the currently open database \"{name}\"; connect to another database first"
                        ),
                    ));
                }
                if let Some((id, kind)) = self.backups.running_job(name) {
                    return Err(SqlError::new(
                        sqlstate::OBJECT_IN_USE,
                        format!(
                            "database \"{name}\" is in use by a {kind} (job {id}); wait for it to finish or stop it with CANCEL JOB {id}, then retry"
                        ),
                    ));
                }
                if self
                    .catalog
                    .drop_database(name, *if_exists)
                    .map_err(catalog_error)?
                {
                    tracing::info!(database = %name, user = %self.user, "database dropped");
                    self.plugins
                        .emit(cairn_plugin_api::EventKind::DatabaseDropped, name, "");
                }
                Ok(Executed::command("DROP DATABASE", None))
            }
            ServerStatement::ShowSessions => {
                self.require_database_management("SHOW SESSIONS")?;
                let registry = self.seat.as_ref().map(|(r, _)| Arc::clone(r));
                let rows = registry.map(|r| sessions_rows(&r)).unwrap_or_default();
                Ok(Executed::rows("SHOW", self.server_columns(statement), rows))
            }
            ServerStatement::Set { setting, value } => {
                let value = match value {
                    None => self.configured.get(*setting),
                    Some(text) => settings::parse_duration(text).map_err(|m| {
                        SqlError::new(
                            sqlstate::INVALID_PARAMETER_VALUE,
                            format!("SET {}: {m}", setting.name()),
                        )
                    })?,
                };
                if *setting == Setting::LockTimeout {
                    self.apply_lock_timeout(value)?;
                }
                if let Some(activity) = self.activity() {
                    let mut timeouts = activity.timeouts();
                    timeouts.set(*setting, value);
                    activity.set_timeouts(timeouts);
                }
                Ok(Executed::command("SET", None))
            }
            ServerStatement::ResetAll => {
                let reported = self.reset_parameters();
                let configured = self.configured;
                self.apply_lock_timeout(configured.get(Setting::LockTimeout))?;
                if let Some(activity) = self.activity() {
                    activity.set_timeouts(configured);
                }
                Ok(Executed {
                    reported,
                    ..Executed::command("RESET", None)
                })
            }
            // What pools send when a connection comes back (asyncpg: `SELECT
            // pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`): no cursor is
            // open and nothing listens, so there is nothing to do but answer.
            ServerStatement::CloseAll => {
                self.close_all_cursors();
                Ok(Executed::command("CLOSE CURSOR ALL", None))
            }
            ServerStatement::SetParameter { name, value, local } => {
                self.set_parameter(name, value.as_deref(), *local)
            }
            ServerStatement::SetTransaction => Ok(Executed::command("SET", None)),
            ServerStatement::ShowParameter { name } => self.show_parameter(name),
            ServerStatement::ShowAll => Ok(self.show_all()),
            // Prepared statements are the protocol's, kept by the connection: each is
            // replaced when the client parses one of the same name again.
            ServerStatement::Deallocate { all } => Ok(Executed::command(
                if *all { "DEALLOCATE ALL" } else { "DEALLOCATE" },
                None,
            )),
            ServerStatement::Discard(what) => self.discard(*what),
            ServerStatement::UnlistenAll => Ok(Executed::command("UNLISTEN", None)),
            ServerStatement::LockTable if self.conn.is_autocommit() => Err(SqlError::new(
                sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                "LOCK TABLE can only be used in transaction blocks".into(),
            )),
            ServerStatement::LockTable => Ok(Executed::command("LOCK TABLE", None)),
            ServerStatement::ShowSetting(setting) => {
                let value = self
                    .activity()
                    .map_or(self.configured, |a| a.timeouts())
                    .get(*setting);
                let rows = vec![vec![Value::Text(settings::show(value))]];
                Ok(Executed::rows("SHOW", self.server_columns(statement), rows))
            }
            ServerStatement::ShowPlugins => {
                let rows: Vec<Vec<Value>> = self
                    .plugins
                    .list()
                    .into_iter()
                    .map(|p| {
                        vec![
                            Value::Text(p.name),
                            Value::Text(p.version),
                            Value::Text(p.abi),
                            Value::Text(p.state.into()),
                            Value::Text(p.library),
                            p.last_error.map_or(Value::Null, Value::Text),
                            Value::Text(p.description),
                            p.role.map_or(Value::Null, |r| Value::Text(r.into())),
                        ]
                    })
                    .collect();
                Ok(Executed::rows("SHOW", self.server_columns(statement), rows))
            }
            ServerStatement::ShowPlugin { name } => {
                let rows = self.plugins.registered_by(name).ok_or_else(|| {
                    SqlError::new(
                        sqlstate::UNDEFINED_OBJECT,
                        format!("plugin {name} is not known; SHOW PLUGINS lists the plugins"),
                    )
                })?;
                let rows = rows
                    .into_iter()
                    .map(|row| row.into_iter().map(Value::Text).collect())
                    .collect();
                Ok(Executed::rows("SHOW", self.server_columns(statement), rows))
            }
            ServerStatement::LoadPlugin { file } => {
                self.require_admin("LOAD PLUGIN")?;
                // Logged either way, with who asked (a plugin's SQL runs as its own user).
                let name = block_on(self.plugins.load_file(file)).map_err(|e| {
                    tracing::error!(%file, user = %self.user, error = %e, "LOAD PLUGIN refused");
                    plugin_error(e)
                })?;
                tracing::info!(plugin = %name, user = %self.user, "plugin loaded by LOAD PLUGIN");
                Ok(Executed::command("LOAD PLUGIN", None))
            }
            ServerStatement::UnloadPlugin { name } => {
                self.require_admin("UNLOAD PLUGIN")?;
                block_on(self.plugins.unload(name)).map_err(|e| {
                    tracing::error!(plugin = %name, user = %self.user, error = %e, "UNLOAD PLUGIN refused");
                    plugin_error(e)
                })?;
                tracing::info!(plugin = %name, user = %self.user, "plugin unloaded by UNLOAD PLUGIN");
                Ok(Executed::command("UNLOAD PLUGIN", None))
            }
            ServerStatement::ReloadPlugin { name } => {
                self.require_admin("RELOAD PLUGIN")?;
                block_on(self.plugins.reload(name)).map_err(plugin_error)?;
                Ok(Executed::command("RELOAD PLUGIN", None))
            }
            ServerStatement::Backup(_)
            | ServerStatement::BackupAbort
            | ServerStatement::CancelBackup { .. }
            | ServerStatement::PauseJob { .. }
            | ServerStatement::ResumeJob { .. }
            | ServerStatement::ShowJob { .. }
            | ServerStatement::Restore(_)
            | ServerStatement::Export(_)
            | ServerStatement::Import(_)
            | ServerStatement::ShowBackups
            | ServerStatement::ShowArchives { .. } => self.run_backup_statement(statement),
            ServerStatement::Call(call) => {
                if !self.role.may_call_plugins() {
                    return Err(SqlError::new(
                        sqlstate::INSUFFICIENT_PRIVILEGE,
                        format!(
                            "permission denied: CALL needs the admin or backup role (plugins run with the server's privileges); user \"{}\" has role {}",
                            self.user,
                            self.role.name()
                        ),
                    ));
                }
                let args: Vec<(Option<String>, cairn_plugin_api::Value)> = call
                    .args
                    .iter()
                    .map(|(name, literal)| {
                        let value = match literal {
                            Literal::Null => cairn_plugin_api::Value::Null,
                            Literal::Integer(i) => cairn_plugin_api::Value::Integer(*i),
                            Literal::Real(r) => cairn_plugin_api::Value::Real(*r),
                            Literal::Text(t) => cairn_plugin_api::Value::Text(t.clone()),
                            // CALL's arguments are single literals; the parser makes no list.
                            list @ Literal::List(_) => {
                                cairn_plugin_api::Value::Text(list.to_string())
                            }
                        };
                        (name.clone(), value)
                    })
                    .collect();
                // A cancel request, the statement timeout or the client going away drops the
                // plugin's future (the SDK allows a drop at any await point).
                let stop = self.activity().and_then(|a| a.statement_stop());
                let call_future = self.plugins.call(&call.plugin, &call.procedure, &args);
                let called = block_on(async {
                    match stop {
                        Some(stop) => tokio::select! {
                            called = call_future => Some(called),
                            () = stop.cancelled() => None,
                        },
                        None => Some(call_future.await),
                    }
                });
                let Some(called) = called else {
                    return Err(self.stopped_error());
                };
                let (columns, rows) = called.map_err(plugin_error)?;
                let rows: Vec<Vec<Value>> = rows
                    .into_iter()
                    .map(|row| row.into_iter().map(plugin_value).collect())
                    .collect();
                let columns = Some(columns.into_iter().map(plugin_column).collect());
                let mut executed = Executed::rows("CALL", columns, rows);
                // PostgreSQL's tag for CALL carries no count.
                executed.tag.rows = None;
                Ok(executed)
            }
        }
    }

    /// What SQLite is given for a statement that is not ours: transaction starts spelled the
    /// way the role needs, table functions resolved.
    fn sqlite_text<'a>(
        &self,
        text: &'a str,
        tokens: &[Spanned<'_>],
    ) -> Result<std::borrow::Cow<'a, str>, SqlError> {
        Ok(self.sqlite_text_and_moment(text, tokens)?.0)
    }

    /// The text SQLite prepares for a statement, and whether it holds values of the moment
    /// (`sessions()`, `backups()`, `archives()`, `plugin_functions()` are rewritten to the
    /// rows they have when the statement runs), so that a prepared statement must be
    /// rewritten again at each run. Whether a rewrite applies depends on the text alone.
    fn sqlite_text_and_moment<'a>(
        &self,
        text: &'a str,
        tokens: &[Spanned<'_>],
    ) -> Result<(std::borrow::Cow<'a, str>, bool), SqlError> {
        use crate::pgcompat;
        use std::borrow::Cow;
        if let Some(spelling) = sqlite_spelling(tokens, self.role) {
            return Ok((Cow::Borrowed(spelling), false));
        }
        let offset = tokens.first().map_or(0, |t| t.start);
        let text = self.rewrite_table_functions(text, offset, tokens)?;
        let mut of_the_moment = matches!(text, Cow::Owned(_));
        let text = match self.rewrite_sessions_function(&text)? {
            Some(rewritten) => Cow::Owned(rewritten),
            None => text,
        };
        let text = match plugin_catalog::rewrite(&self.plugins, &text)? {
            Some(rewritten) => Cow::Owned(rewritten),
            None => text,
        };
        of_the_moment |= matches!(text, Cow::Owned(_));
        // Each rewrite below borrows the text it was given when it changed nothing. Casts
        // before arrays and set-returning calls, which would read `x::int2[]` as a subscript.
        let text = then(text, |t| Ok(pgcompat::operators::rewrite(t)))?;
        let text = then(text, |t| Ok(pgcompat::spellings::rewrite(t)))?;
        let text = then(text, |t| {
            pgcompat::ddl::rewrite(t).map_err(|e| SqlError::new(e.sqlstate(), e.to_string()))
        })?;
        let text = then(text, |t| {
            pgcompat::casts::rewrite(t).map_err(|e| SqlError::new(e.sqlstate(), e.to_string()))
        })?;
        let text = then(text, |t| Ok(pgcompat::set_returning::rewrite(t)))?;
        let text = then(text, |t| Ok(pgcompat::arrays::rewrite(t)))?;
        Ok((text, of_the_moment))
    }

    /// `sessions()`: the rows of SHOW SESSIONS as a table, for the admin, rewritten to a
    /// subquery over their values at the moment the statement is prepared.
    fn rewrite_sessions_function(&self, text: &str) -> Result<Option<String>, SqlError> {
        rewrite_call(text, "sessions", || {
            self.require_database_management("sessions()")?;
            let registry = self.seat.as_ref().map(|(r, _)| Arc::clone(r));
            let rows = registry.map(|r| sessions_rows(&r)).unwrap_or_default();
            let names: Vec<String> = server_columns(&ServerStatement::ShowSessions)
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.name)
                .collect();
            Ok(values_table(&names, &rows))
        })
    }

    /// Makes and fills the session's catalogs for a statement that reads them (see
    /// `catalogs::prepare`). Outside a transaction their filling commits on its own, with
    /// nothing for the log to sync: the commit flag it set is put back.
    fn prepare_catalogs(&self, with_settings: bool) -> Result<(), SqlError> {
        let databases = self
            .catalog
            .names()
            .unwrap_or_else(|_| vec![self.database.clone()]);
        let filling = catalogs::Filling {
            user: &self.user,
            role: self.role,
            databases,
            users: self.visible_users(),
            users_version: self.users.as_ref().map_or(0, |u| u.version()),
            definitions: &self.definitions,
            settings: with_settings.then(|| self.show_all().rows),
        };
        self.on_temp_only(|conn| catalogs::prepare(conn, &filling))
            .map_err(|e| self.sql_error(e))
    }

    /// Runs `work`, which writes only the temporary database: outside a transaction it
    /// commits on its own with nothing for the log to sync, so the commit flag it set (which
    /// would make the client wait for a sync) is put back.
    fn on_temp_only<T>(&self, work: impl FnOnce(&Connection) -> T) -> T {
        let flag = self.unsynced.as_ref().map(PendingSync::commit_flag);
        let quiet = self.conn.is_autocommit()
            && !flag
                .as_ref()
                .is_some_and(|f| f.load(std::sync::atomic::Ordering::Acquire));
        let done = work(&self.conn);
        if quiet && let Some(flag) = flag {
            flag.store(false, std::sync::atomic::Ordering::Release);
        }
        done
    }

    /// The users the catalogs list: every one for an admin, else only the session's own.
    fn visible_users(&self) -> Vec<(String, Role)> {
        match &self.users {
            Some(users) if self.role == Role::Admin => users.list(),
            _ => vec![(self.user.clone(), self.role)],
        }
    }

    fn require_admin(&self, what: &str) -> Result<(), SqlError> {
        self.require_database_management(what)?;
        self.refuse_in_transaction(what)
    }

    fn server_columns(&self, statement: &ServerStatement) -> Option<Vec<Column>> {
        match statement {
            ServerStatement::Call(call) => self
                .plugins
                .procedure_columns(&call.plugin, &call.procedure)
                .map(|columns| columns.into_iter().map(plugin_column).collect()),
            ServerStatement::Cursor(CursorStatement::Fetch {
                name,
                moving: false,
                ..
            }) => self.cursor_columns(name),
            other => server_columns(other),
        }
    }

    fn require_database_management(&self, what: &str) -> Result<(), SqlError> {
        if self.role.may_manage_databases() {
            Ok(())
        } else {
            Err(SqlError::new(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied: {what} needs the admin role; user \"{}\" has role {}",
                    self.user,
                    self.role.name()
                ),
            ))
        }
    }

    fn refuse_in_transaction(&self, what: &str) -> Result<(), SqlError> {
        if self.conn.is_autocommit() {
            Ok(())
        } else {
            Err(SqlError::new(
                sqlstate::ACTIVE_SQL_TRANSACTION,
                format!("{what} cannot run inside a transaction block"),
            ))
        }
    }

    fn run_sqlite(
        &mut self,
        sql: &str,
        facts: &Facts,
        params: &[Value],
        described: Option<&[Column]>,
        out: &mut dyn Output,
    ) -> Result<Executed, SqlError> {
        let result = self.run_sqlite_statement(sql, facts, params, described, out);
        // Transactions begin and end only in SQLite's statements: what SET LOCAL set ends
        // here, and so do the cursors of the transaction.
        self.parameters_after_statement();
        self.cursors_after_statement();
        result
    }

    fn run_sqlite_statement(
        &mut self,
        sql: &str,
        facts: &Facts,
        params: &[Value],
        described: Option<&[Column]>,
        out: &mut dyn Output,
    ) -> Result<Executed, SqlError> {
        let control = facts.control;
        if self.failed_transaction {
            // PostgreSQL's way out of an error inside a savepoint: the transaction goes on
            // from it (SQLite undid the failed statement and kept the transaction). A
            // rollback to a savepoint there is not fails, and the transaction stays failed.
            let to_savepoint = matches!(facts.savepoint, Some(facts::SavepointStep::RollbackTo(_)));
            // (An error SQLite answered by rolling the whole transaction back left no
            // savepoint to go back to: only ROLLBACK gets out then.)
            if !to_savepoint || self.conn.is_autocommit() {
                return self.in_failed_transaction(control);
            }
            self.failed_transaction = false;
        }
        let was_autocommit = self.conn.is_autocommit();
        // With no transaction open PostgreSQL answers COMMIT and ROLLBACK (warning "there is
        // no transaction in progress"); SQLite refuses them, and pools and ORMs that roll
        // back whenever a connection is returned would see an error every time.
        if was_autocommit {
            match control {
                Some(Control::Commit) => return Ok(Executed::command("COMMIT", None)),
                Some(Control::Rollback) => return Ok(Executed::command("ROLLBACK", None)),
                _ => {}
            }
        }
        let mark = self.changes.as_ref().map(|c| c.mark(&self.conn));
        let result = self.step_sqlite(sql, facts, params, described, out);
        let now_autocommit = self.conn.is_autocommit();
        if let (Some(changes), Some(mark)) = (&self.changes, mark) {
            match (&result, control) {
                (Err(_), _) => changes.failed(mark, &self.conn),
                (Ok(_), Some(Control::Savepoint)) => facts.follow_savepoint(changes),
                _ => {}
            }
        }
        match result {
            Ok(mut executed) => {
                executed.transaction = match (was_autocommit, now_autocommit) {
                    (true, false) => TransactionChange::Started,
                    (false, true) => TransactionChange::Ended,
                    _ => TransactionChange::Unchanged,
                };
                Ok(executed)
            }
            // A result whose reader stopped (a portal closed early) is not a failure of the
            // transaction, as closing a portal in PostgreSQL is not; a value the output could
            // not encode is.
            Err(e) if e == stopped(Stopped) && !out.failed() => Err(e),
            Err(e) => {
                if !was_autocommit || !now_autocommit {
                    self.failed_transaction = true;
                }
                Err(e)
            }
        }
    }

    /// PostgreSQL's aborted-transaction state: only ROLLBACK (or COMMIT, which rolls back)
    /// gets out of it.
    fn in_failed_transaction(&mut self, control: Option<Control>) -> Result<Executed, SqlError> {
        match control {
            Some(Control::Commit | Control::Rollback) => {
                if !self.conn.is_autocommit() {
                    self.conn
                        .execute_batch("ROLLBACK")
                        .map_err(|e| self.sql_error(e))?;
                }
                self.failed_transaction = false;
                Ok(Executed {
                    transaction: TransactionChange::Ended,
                    ..Executed::command("ROLLBACK", None)
                })
            }
            _ => Err(aborted_transaction()),
        }
    }

    fn step_sqlite(
        &mut self,
        sql: &str,
        facts: &Facts,
        params: &[Value],
        described: Option<&[Column]>,
        out: &mut dyn Output,
    ) -> Result<Executed, SqlError> {
        if let Some(message) = &facts.refused_pragma {
            return Err(SqlError::new(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                message.clone(),
            ));
        }
        if facts.plain_vacuum {
            return self.vacuum(sql);
        }
        if let Some((code, message)) = &facts.catalog_refusal {
            return Err(SqlError::new(code, message.clone()));
        }
        if facts.reads_catalogs {
            self.prepare_catalogs(facts.reads_settings)?;
        }
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| self.sql_error(e))?;
        // On a full disk the room left is the admin's, to free space with; its last bit is
        // kept even from the admin, so that logging in and DROP DATABASE still work.
        let disk = self.catalog.disk();
        if !stmt.readonly() && disk.is_full() {
            if !self.role.may_write_on_a_full_disk() {
                return Err(SqlError::new(sqlstate::DISK_FULL, disk.refusal()));
            }
            if disk.at_floor(self.catalog.log_bytes()) {
                return Err(SqlError::new(sqlstate::DISK_FULL, disk.floor_refusal()));
            }
        }
        // Once a sync of the log has failed, no commit could be promised durable.
        if !stmt.readonly()
            && let Some(failed) = self.unsynced.as_ref().and_then(PendingSync::failed)
        {
            return Err(SqlError::new(sqlstate::IO_ERROR, failed.refusal()));
        }
        bind(&mut stmt, facts, params)?;
        let command = &facts.command;
        if stmt.column_count() == 0 {
            stmt.raw_execute().map_err(|e| self.sql_error(e))?;
            drop(stmt);
            let rows = match command.as_str() {
                "INSERT" | "UPDATE" | "DELETE" => Some(self.conn.changes() as usize),
                _ => None,
            };
            return Ok(Executed::command(command, rows));
        }
        let width = stmt.column_count();
        let command = match command.as_str() {
            // (FETCH: a cursor's rows, read from its table.)
            "INSERT" | "UPDATE" | "DELETE" | "FETCH" => command.clone(),
            _ => "SELECT".to_owned(),
        };
        // A prepared statement's columns were described when it was prepared.
        let declared = match described {
            Some(_) => Vec::new(),
            None => declared_columns(&stmt),
        };
        // Columns without a declared type are typed by the first rows' values, so those are
        // stepped before the columns are described; every other row goes out as it is stepped.
        let peek = described.is_none() && declared.iter().any(|(_, ty)| ty.is_none());
        let mut first = Vec::new();
        let mut count = 0usize;
        let mut cursor = stmt.raw_query();
        let mut exhausted = false;
        while peek && first.len() < TYPE_PEEK_ROWS {
            match cursor.next().map_err(|e| self.sql_error(e))? {
                Some(row) => first.push(
                    (0..width)
                        .map(|i| row.get::<_, Value>(i))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| self.sql_error(e))?,
                ),
                None => {
                    exhausted = true;
                    break;
                }
            }
        }
        let columns = match described {
            Some(described) => described.to_vec(),
            None => {
                let mut columns = resolve_columns(declared, &first, !facts.compound);
                facts.postgres_columns(&mut columns);
                columns
            }
        };
        let why = |_: Stopped| self.stopped_error();
        out.columns(&command, &columns).map_err(why)?;
        for row in first {
            out.row(&row).map_err(why)?;
            count += 1;
        }
        while !exhausted {
            match cursor.next().map_err(|e| self.sql_error(e))? {
                Some(row) => {
                    out.row(row).map_err(why)?;
                    count += 1;
                }
                None => exhausted = true,
            }
        }
        drop(cursor);
        drop(stmt);
        Ok(Executed {
            columns: Some(columns),
            tag: CommandTag {
                command,
                rows: Some(count),
            },
            rows: Vec::new(),
            transaction: TransactionChange::Unchanged,
            reported: Vec::new(),
        })
    }

    /// A plain VACUUM, which the client authorizer alone would refuse (it attaches a
    /// temporary database while it runs).
    fn vacuum(&mut self, sql: &str) -> Result<Executed, SqlError> {
        if self.catalog.disk().is_full() {
            return Err(SqlError::new(
                sqlstate::DISK_FULL,
                self.catalog.disk().refusal(),
            ));
        }
        let during = |conn: &mut Connection,
                      hook: fn(
            rusqlite::hooks::AuthContext<'_>,
        ) -> rusqlite::hooks::Authorization| {
            conn.authorizer(Some(hook))
                .map_err(|e| SqlError::from_sqlite(&e))
        };
        during(&mut self.conn, crate::catalog::authorize_vacuum)?;
        let result = self.conn.execute_batch(sql);
        during(&mut self.conn, crate::catalog::authorize)?;
        // The capture of row changes may have its own authorizer: it puts it back.
        if let Some(changes) = &self.changes {
            changes.reinstall();
        }
        result.map_err(|e| self.sql_error(e))?;
        Ok(Executed::command("VACUUM", None))
    }

    /// `result`, once the commits it made are on disk: the client hears of a commit only
    /// after the sync of the log it shares with the database's other sessions.
    fn once_durable(&self, result: Result<Executed, SqlError>) -> Result<Executed, SqlError> {
        let synced = self.unsynced.as_ref().map(PendingSync::wait);
        // Committed either way (other sessions see it): its row changes go out now.
        if let Some(changes) = &self.changes {
            changes.settle();
        }
        match synced {
            Some(Err(failed)) => Err(SqlError::new(sqlstate::IO_ERROR, failed.to_string())),
            _ => result,
        }
    }

    /// Hands a statement that ended to the plugins that follow statements (ABI 1.10): one
    /// atomic load when none does.
    fn report_statement(&self, text: &str, started: Started, result: &Result<Executed, SqlError>) {
        let feed = self.plugins.statements();
        if !feed.wanted() {
            return;
        }
        let outcome = match result {
            Ok(executed) => Ok(executed.tag.rows.unwrap_or(0) as u64),
            Err(e) => Err(e.code),
        };
        feed.publish(
            &self.database,
            &self.user,
            users::shown_text(text),
            (started.at, started.clock.elapsed()),
            outcome,
        );
    }

    /// Why a statement's output stopped taking rows: an interruption, if there was one, else
    /// its reader went away or closed the result.
    fn stopped_error(&self) -> SqlError {
        match self.activity().and_then(|a| a.take_interruption()) {
            Some(why) => interruption_error(why),
            None => stopped(Stopped),
        }
    }

    fn sql_error(&self, e: rusqlite::Error) -> SqlError {
        // In a brief run, a value too big or a lock not free gives the run up.
        if self.deadline.armed()
            && matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::TooBig | ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            )
        {
            return brief::out_of_time();
        }
        // A wait for a lock ended by a cancel or a timeout (see `lock_wait`).
        if matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        ) && let Some(why) = self.activity().and_then(|a| a.take_interruption())
        {
            return interruption_error(why);
        }
        if e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) {
            let why = self.activity().and_then(|a| a.take_interruption());
            return match why {
                Some(why) => interruption_error(why),
                // Not a cancel, a timeout or a termination: the brief run's deadline.
                None if self.deadline.armed() => brief::out_of_time(),
                None => SqlError::new(
                    sqlstate::QUERY_CANCELED,
                    "canceling statement due to user request".into(),
                ),
            };
        }
        let mut error = SqlError::from_sqlite(&e);
        if e.sqlite_error_code() == Some(ErrorCode::DiskFull)
            && let Some(limit) = self.catalog.temp_storage_limit()
        {
            // At once, not at the next periodic look: the reserve is released now.
            let _ = self.catalog.disk().check();
            if !self.catalog.disk().is_full() {
                return SqlError::new(
                    sqlstate::CONFIGURATION_LIMIT_EXCEEDED,
                    format!(
                        "temporary storage of this session is full: its temporary tables may hold {} MiB ([server] temp_storage_limit), or the disk of temporary files is full; drop temporary tables (DROP TABLE temp.name), close cursors (CLOSE name: a cursor holds its query's rows) or ask the operator to raise the limit",
                        (limit >> 20).max(1)
                    ),
                );
            }
        }
        if e.sqlite_error_code() == Some(ErrorCode::DiskFull) {
            // At once, not at the next periodic look: the reserve is released now.
            let _ = self.catalog.disk().check();
            error.message = format!("{}: {}", error.message, self.catalog.disk().refusal());
        }
        if e.sqlite_error_code() == Some(ErrorCode::ReadOnly) && !self.role.may_write() {
            error.message = format!(
                "cannot write: user \"{}\" has role {}, which is read-only ({})",
                self.user,
                self.role.name(),
                error.message
            );
        }
        error
    }
}

/// How many rows are stepped before a result's columns are described, to type the columns
/// that have no declared type by their values.
const TYPE_PEEK_ROWS: usize = 64;

/// What an interrupted statement ends with, by why it was interrupted.
fn interruption_error(why: Interruption) -> SqlError {
    match why {
        Interruption::Timeout => SqlError::new(
            sqlstate::QUERY_CANCELED,
            "canceling statement due to statement timeout".into(),
        ),
        Interruption::Terminate => SqlError::new(
            sqlstate::ADMIN_SHUTDOWN,
            "terminating connection due to administrator command".into(),
        ),
        Interruption::Cancel => SqlError::new(
            sqlstate::QUERY_CANCELED,
            "canceling statement due to user request".into(),
        ),
    }
}

/// The error a statement ends with when its output stopped taking rows.
fn stopped(_: Stopped) -> SqlError {
    SqlError::new(
        sqlstate::QUERY_CANCELED,
        "canceling statement: the client stopped reading its result".into(),
    )
}

/// Hands a server statement's rows to `out`, as SQLite statements' rows are.
fn emit_rows(mut executed: Executed, out: &mut dyn Output) -> Result<Executed, SqlError> {
    if let Some(columns) = &executed.columns {
        out.columns(&executed.tag.command, columns)
            .map_err(stopped)?;
        for row in std::mem::take(&mut executed.rows) {
            out.row(&row).map_err(stopped)?;
        }
    }
    Ok(executed)
}

/// `text` with every call `name()` (not after a dot) replaced by the subquery `table`
/// makes, when it has one (`None`: it names no such call). A look at the bytes first: most
/// statements name none.
fn rewrite_call(
    text: &str,
    name: &str,
    table: impl FnOnce() -> Result<String, SqlError>,
) -> Result<Option<String>, SqlError> {
    if !text
        .as_bytes()
        .windows(name.len())
        .any(|w| w.eq_ignore_ascii_case(name.as_bytes()))
    {
        return Ok(None);
    }
    let tokens =
        lexer::tokenize(text).map_err(|e| SqlError::new(sqlstate::SYNTAX_ERROR, e.to_string()))?;
    let calls: Vec<(usize, usize)> = tokens
        .windows(3)
        .enumerate()
        .filter(|(i, w)| {
            w[0].token.is_keyword(name)
                && w[1].token == Token::Punct("(")
                && w[2].token == Token::Punct(")")
                && !(*i > 0 && tokens[i - 1].token == Token::Punct("."))
        })
        .map(|(_, w)| (w[0].start, w[2].end))
        .collect();
    if calls.is_empty() {
        return Ok(None);
    }
    let table = table()?;
    let mut out = String::with_capacity(text.len() + table.len());
    let mut at = 0;
    for (start, end) in calls {
        out.push_str(&text[at..start]);
        out.push_str(&table);
        at = end;
    }
    out.push_str(&text[at..]);
    Ok(Some(out))
}

/// A subquery whose rows are `rows` under the column `names` (a table function's result,
/// computed when the statement is prepared).
fn values_table(names: &[String], rows: &[Vec<Value>]) -> String {
    let named: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| format!("column{} AS \"{}\"", i + 1, name.replace('"', "\"\"")))
        .collect();
    if rows.is_empty() {
        let nulls: Vec<String> = (1..=names.len())
            .map(|i| format!("NULL AS column{i}"))
            .collect();
        return format!(
            "(SELECT {} FROM (SELECT {}) WHERE 0)",
            named.join(", "),
            nulls.join(", ")
        );
    }
    let values: Vec<String> = rows
        .iter()
        .map(|row| {
            let cells: Vec<String> = row.iter().map(sql_literal).collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    format!(
        "(SELECT {} FROM (VALUES {}))",
        named.join(", "),
        values.join(", ")
    )
}

/// A value as an SQL literal.
fn sql_literal(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => format!("{r:?}"),
        Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
        Value::Blob(b) => format!(
            "X'{}'",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

/// One row per session, for SHOW SESSIONS.
fn sessions_rows(registry: &Registry) -> Vec<Vec<Value>> {
    let time = |t: Option<SystemTime>| {
        t.map_or(Value::Null, |t| {
            Value::Text(
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
        })
    };
    registry
        .list()
        .into_iter()
        .map(|a| {
            let doing = a.doing();
            vec![
                Value::Integer(i64::from(a.id)),
                Value::Text(a.user.clone()),
                Value::Text(a.database.clone()),
                Value::Text(a.client.to_string()),
                Value::Text(doing.state.into()),
                Value::Text(doing.query),
                time(doing.xact_start),
                time(doing.query_start),
                time(Some(a.backend_start)),
            ]
        })
        .collect()
}

/// Runs a plugin operation to completion from a statement's blocking thread. Only server
/// statements call it, and they never run briefly on a connection's own thread (whose
/// single-threaded runtime could not be blocked on from inside).
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        Ok(handle) => handle.block_on(future),
        // Only unit tests run sessions outside the server's runtime.
        Err(_) => futures::executor::block_on(future),
    }
}

fn plugin_error(e: crate::plugin::PluginError) -> SqlError {
    use crate::plugin::PluginError as E;
    let code = match &e {
        E::Unknown(_) => sqlstate::UNDEFINED_OBJECT,
        E::UnknownProcedure { .. } => sqlstate::UNDEFINED_FUNCTION,
        E::MissingFile { .. } => sqlstate::UNDEFINED_FILE,
        E::OutsideDir { .. } | E::BadFileName(_) => sqlstate::INSUFFICIENT_PRIVILEGE,
        E::Load(_) | E::NoBuiltin(_) | E::NameMismatch { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
        E::AlreadyRunning(_) | E::NotRunning(..) | E::Busy { .. } => sqlstate::OBJECT_IN_USE,
        E::ShuttingDown => sqlstate::ADMIN_SHUTDOWN,
        _ => sqlstate::EXTERNAL_ROUTINE_EXCEPTION,
    };
    SqlError::new(code, e.to_string())
}

fn plugin_value(value: cairn_plugin_api::Value) -> Value {
    match value {
        cairn_plugin_api::Value::Null => Value::Null,
        cairn_plugin_api::Value::Integer(i) => Value::Integer(i),
        cairn_plugin_api::Value::Real(r) => Value::Real(r),
        cairn_plugin_api::Value::Text(t) => Value::Text(t),
        cairn_plugin_api::Value::Blob(b) => Value::Blob(b),
    }
}

fn plugin_column(column: cairn_plugin_api::Column) -> Column {
    use cairn_plugin_api::ColumnType;
    Column {
        name: column.name,
        ty: match column.ty {
            ColumnType::Integer => SqlType::Int8,
            ColumnType::Real => SqlType::Float8,
            ColumnType::Text => SqlType::Text,
            ColumnType::Blob => SqlType::Bytea,
        },
    }
}

fn aborted_transaction() -> SqlError {
    SqlError::new(
        sqlstate::IN_FAILED_SQL_TRANSACTION,
        "current transaction is aborted, commands ignored until end of transaction block (send ROLLBACK)".into(),
    )
}

fn catalog_error(e: CatalogError) -> SqlError {
    let code = match &e {
        CatalogError::InvalidName { .. } => sqlstate::INVALID_NAME,
        CatalogError::NotFound(_) => sqlstate::INVALID_CATALOG_NAME,
        CatalogError::AlreadyExists(_) => sqlstate::DUPLICATE_DATABASE,
        CatalogError::InUse { .. } | CatalogError::DefaultDatabase => sqlstate::OBJECT_IN_USE,
        CatalogError::Busy(_) => sqlstate::LOCK_NOT_AVAILABLE,
        CatalogError::Io { .. } | CatalogError::Sqlite { .. } => sqlstate::IO_ERROR,
    };
    SqlError::new(code, e.to_string())
}

/// Result columns from `(name, type)` pairs.
fn columns(list: &[(&str, SqlType)]) -> Vec<Column> {
    list.iter()
        .map(|(name, ty)| Column {
            name: (*name).into(),
            ty: *ty,
        })
        .collect()
}

fn server_columns(statement: &ServerStatement) -> Option<Vec<Column>> {
    match statement {
        ServerStatement::ShowDatabases => Some(columns(&[
            ("name", SqlType::Text),
            ("size_bytes", SqlType::Int8),
        ])),
        ServerStatement::ShowPlugins => Some(columns(&[
            ("name", SqlType::Text),
            ("version", SqlType::Text),
            ("abi", SqlType::Text),
            ("state", SqlType::Text),
            ("library", SqlType::Text),
            ("last_error", SqlType::Text),
            ("description", SqlType::Text),
            ("role", SqlType::Text),
        ])),
        ServerStatement::ShowPlugin { .. } => Some(columns(&[
            ("kind", SqlType::Text),
            ("name", SqlType::Text),
            ("signature", SqlType::Text),
            ("description", SqlType::Text),
        ])),
        // A procedure that is not registered: the call will fail with the reason.
        ServerStatement::Call(_) => Some(Vec::new()),
        ServerStatement::ShowSessions => Some(columns(&[
            ("id", SqlType::Int8),
            ("user", SqlType::Text),
            ("database", SqlType::Text),
            ("client_addr", SqlType::Text),
            ("state", SqlType::Text),
            ("query", SqlType::Text),
            ("xact_start", SqlType::Text),
            ("query_start", SqlType::Text),
            ("backend_start", SqlType::Text),
        ])),
        ServerStatement::ShowSetting(setting) => Some(columns(&[(setting.name(), SqlType::Text)])),
        ServerStatement::ShowParameter { name } => Some(parameters::show_columns(Some(name))),
        ServerStatement::ShowAll => Some(parameters::show_columns(None)),
        ServerStatement::Set { .. }
        | ServerStatement::SetParameter { .. }
        | ServerStatement::SetTransaction
        | ServerStatement::Deallocate { .. }
        | ServerStatement::Discard(_)
        | ServerStatement::ResetAll
        | ServerStatement::CloseAll
        | ServerStatement::UnlistenAll
        | ServerStatement::LockTable
        | ServerStatement::User(_)
        | ServerStatement::Cursor(_) => None,
        ServerStatement::Backup(_)
        | ServerStatement::BackupAbort
        | ServerStatement::CancelBackup { .. }
        | ServerStatement::PauseJob { .. }
        | ServerStatement::ResumeJob { .. }
        | ServerStatement::ShowJob { .. }
        | ServerStatement::Restore(_)
        | ServerStatement::Export(_)
        | ServerStatement::Import(_)
        | ServerStatement::ShowBackups
        | ServerStatement::ShowArchives { .. } => Some(backup::result_columns(statement)),
        ServerStatement::CreateDatabase { .. }
        | ServerStatement::DropDatabase { .. }
        | ServerStatement::LoadPlugin { .. }
        | ServerStatement::UnloadPlugin { .. }
        | ServerStatement::ReloadPlugin { .. } => None,
    }
}

/// How a transaction-starting statement is spelled for SQLite, when that differs from what
/// the client sent.
///
/// PostgreSQL's `START TRANSACTION …` and `BEGIN ISOLATION LEVEL …` are unknown to SQLite.
/// And SQLite's plain `BEGIN` is deferred: a transaction that reads and then writes fails at
/// once with "database is locked" when another writer got there first, where PostgreSQL
/// clients expect to wait. So for roles that may write, a transaction starts `IMMEDIATE`
/// (taking the write lock, waiting up to the busy timeout), unless the client declared it
/// `READ ONLY`. SQLite transactions are serializable whatever isolation level is asked for.
fn sqlite_spelling(tokens: &[Spanned<'_>], role: Role) -> Option<&'static str> {
    let first = &tokens.first()?.token;
    let second = tokens.get(1).map(|t| &t.token);
    let starts = first.is_keyword("start") && second.is_some_and(|t| t.is_keyword("transaction"));
    let begins = first.is_keyword("begin")
        && second.is_none_or(|t| {
            [
                "transaction",
                "isolation",
                "read",
                "not",
                "deferrable",
                "work",
            ]
            .iter()
            .any(|kw| t.is_keyword(kw))
        });
    if !(starts || begins) {
        return None;
    }
    let read_only = tokens
        .windows(2)
        .any(|w| w[0].token.is_keyword("read") && w[1].token.is_keyword("only"));
    Some(if role.may_write() && !read_only {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN"
    })
}

/// When a statement started: the wall clock for reports, the monotonic one for its length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    at: SystemTime,
    clock: std::time::Instant,
}

impl Started {
    pub(crate) fn now() -> Started {
        Started {
            at: SystemTime::now(),
            clock: std::time::Instant::now(),
        }
    }
}

fn bind(
    stmt: &mut rusqlite::Statement<'_>,
    facts: &Facts,
    values: &[Value],
) -> Result<(), SqlError> {
    let expected = facts.param_count(stmt.parameter_count());
    if values.len() != expected {
        return Err(SqlError::new(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "bind message supplies {} parameters, but the statement requires {expected}",
                values.len()
            ),
        ));
    }
    let dollar = facts.max_param > 0;
    // A parameter nobody binds is NULL to SQLite: say so instead of storing NULL.
    for index in 1..=stmt.parameter_count() {
        let name = stmt.parameter_name(index);
        let bound = match name {
            Some(name) if dollar => name
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n >= 1 && n <= values.len()),
            // `?` and `?NNN` are bound by position.
            Some(name) => !dollar && name.starts_with('?') && index <= values.len(),
            None => !dollar && index <= values.len(),
        };
        if !bound {
            let shown = name.map_or_else(|| format!("?{index}"), str::to_owned);
            return Err(SqlError::new(
                sqlstate::UNDEFINED_PARAMETER,
                format!(
                    "there is no parameter {shown}: only $1, $2, … are bound, from the client's Bind message; a ? or :name parameter, or $n with n above the values sent, would be NULL"
                ),
            ));
        }
    }
    for (i, value) in values.iter().enumerate() {
        // SQLite numbers `$n` parameters by first appearance, so bind them by name.
        let index = if dollar {
            match stmt.parameter_index(&format!("${}", i + 1)) {
                Ok(Some(index)) => index,
                Ok(None) => continue,
                Err(e) => return Err(SqlError::from_sqlite(&e)),
            }
        } else {
            i + 1
        };
        stmt.raw_bind_parameter(index, value)
            .map_err(|e| SqlError::from_sqlite(&e))?;
    }
    Ok(())
}

/// `text` after `rewrite`: its own text again when the rewrite changed nothing.
fn then<'a>(
    text: std::borrow::Cow<'a, str>,
    rewrite: impl for<'t> FnOnce(&'t str) -> Result<std::borrow::Cow<'t, str>, SqlError>,
) -> Result<std::borrow::Cow<'a, str>, SqlError> {
    Ok(match rewrite(&text)? {
        std::borrow::Cow::Owned(rewritten) => std::borrow::Cow::Owned(rewritten),
        std::borrow::Cow::Borrowed(_) => text,
    })
}

fn declared_columns(stmt: &rusqlite::Statement<'_>) -> Vec<(String, Option<SqlType>)> {
    stmt.columns()
        .map(|c| {
            (
                c.name().to_owned(),
                c.decl_type().and_then(types::from_declared),
            )
        })
        .collect()
}

/// Gives every column a type: its declared one, else the first non-NULL value's, else (with
/// `by_call`) the type of the call SQLite named it after, else text.
fn resolve_columns(
    declared: Vec<(String, Option<SqlType>)>,
    rows: &[Vec<Value>],
    by_call: bool,
) -> Vec<Column> {
    declared
        .into_iter()
        .enumerate()
        .map(|(i, (name, ty))| Column {
            ty: ty
                .or_else(|| rows.iter().find_map(|r| r.get(i).and_then(types::of_value)))
                .or_else(|| by_call.then(|| types::of_call(&name)).flatten())
                .unwrap_or(SqlType::Text),
            name,
        })
        .collect()
}

fn first_row(stmt: &mut rusqlite::Statement<'_>) -> Option<Vec<Value>> {
    let width = stmt.column_count();
    let mut rows = stmt.raw_query();
    let row = rows.next().ok()??;
    (0..width).map(|i| row.get::<_, Value>(i).ok()).collect()
}

/// Table columns as SQLite declares them, for parameter inference.
struct SqliteSchema<'c>(&'c Connection);

impl Schema for SqliteSchema<'_> {
    fn columns(&self, table: &str) -> Vec<(String, Option<SqlType>)> {
        let Ok(mut stmt) = self
            .0
            .prepare("SELECT name, type FROM pragma_table_info(?1)")
        else {
            return Vec::new();
        };
        stmt.query_map([table], |row| {
            let name: String = row.get(0)?;
            let decl: String = row.get(1)?;
            Ok((name, types::from_declared(&decl)))
        })
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub(super) fn session(role: Role) -> (tempfile::TempDir, Session) {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(crate::disk_space::DataDisk::observing(dir.path()));
        let catalog = Arc::new(Catalog::open(dir.path(), Duration::from_secs(1), disk).unwrap());
        let (plugins, backups) = no_plugins(&catalog, dir.path());
        let session = Session::open(catalog, plugins, backups, "alice", role, "default").unwrap();
        (dir, session)
    }

    /// A plugin system with nothing declared, on a runtime that outlives the test, and
    /// backups going to `<dir>/backups`.
    fn no_plugins(catalog: &Arc<Catalog>, dir: &std::path::Path) -> (Arc<Plugins>, Arc<Backups>) {
        let runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ));
        let config = crate::Config::parse(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n",
            &dir.join("cairn.toml"),
        )
        .unwrap();
        let backups = Arc::new(
            Backups::open(
                Arc::clone(catalog),
                dir,
                config.backup.clone(),
                crate::backup::destination::Destinations::default(),
                Duration::from_secs(1),
            )
            .unwrap(),
        );
        let plugins = runtime.block_on(Plugins::new(
            &config,
            Arc::clone(catalog),
            Arc::clone(&backups),
        ));
        (plugins, backups)
    }

    /// The error that ends running `sql`.
    fn error_of(s: &mut Session, sql: &str) -> SqlError {
        s.execute_query(sql).pop().unwrap().unwrap_err()
    }

    fn ok(results: Vec<Result<Executed, SqlError>>) -> Vec<Executed> {
        results.into_iter().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn tags_and_rows_look_like_postgresql() {
        let (_dir, mut s) = session(Role::Admin);
        let out = ok(s.execute_query(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO t(name) VALUES ('a'), ('b'); SELECT id, name, count(*) OVER () AS n FROM t",
        ));
        assert_eq!(out[0].tag.command, "CREATE TABLE");
        assert_eq!(
            out[1].tag,
            CommandTag {
                command: "INSERT".into(),
                rows: Some(2)
            }
        );
        assert_eq!(
            out[2].tag,
            CommandTag {
                command: "SELECT".into(),
                rows: Some(2)
            }
        );
        let types: Vec<SqlType> = out[2]
            .columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.ty)
            .collect();
        assert_eq!(types, vec![SqlType::Int8, SqlType::Text, SqlType::Int8]);
    }

    #[test]
    fn multi_statement_query_is_one_implicit_transaction() {
        let (_dir, mut s) = session(Role::Admin);
        ok(s.execute_query("CREATE TABLE t(x INTEGER UNIQUE)"));
        let results = s.execute_query("INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)");
        let err = results.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.code, sqlstate::UNIQUE_VIOLATION);
        let count = ok(s.execute_query("SELECT count(*) FROM t"));
        assert_eq!(count[0].rows, vec![vec![Value::Integer(0)]]);
    }

    #[test]
    fn error_in_explicit_transaction_aborts_it_until_rollback() {
        let (_dir, mut s) = session(Role::Admin);
        ok(s.execute_query("CREATE TABLE t(x INTEGER)"));
        let begin = ok(s.execute_query("BEGIN"));
        assert_eq!(begin[0].transaction, TransactionChange::Started);
        ok(s.execute_query("INSERT INTO t VALUES (1)"));
        assert!(s.execute_query("SELEC 1")[0].is_err());
        let refused = s.execute_query("INSERT INTO t VALUES (2)");
        assert_eq!(
            refused[0].as_ref().unwrap_err().code,
            sqlstate::IN_FAILED_SQL_TRANSACTION
        );
        let commit = ok(s.execute_query("COMMIT"));
        assert_eq!(commit[0].tag.command, "ROLLBACK");
        assert_eq!(commit[0].transaction, TransactionChange::Ended);
        let count = ok(s.execute_query("SELECT count(*) FROM t"));
        assert_eq!(count[0].rows, vec![vec![Value::Integer(0)]]);
    }

    #[test]
    fn readonly_role_cannot_write_and_is_told_why() {
        let (_dir, mut s) = session(Role::Readonly);
        let err = error_of(&mut s, "CREATE TABLE t(x)");
        assert_eq!(err.code, sqlstate::READ_ONLY_SQL_TRANSACTION);
        assert!(err.message.contains("role readonly"), "{}", err.message);
        let err = error_of(&mut s, "CREATE DATABASE x");
        assert_eq!(err.code, sqlstate::INSUFFICIENT_PRIVILEGE);
    }

    #[test]
    fn prepared_statements_bind_dollar_parameters_by_number() {
        let (_dir, mut s) = session(Role::Admin);
        ok(s.execute_query("CREATE TABLE t(a INTEGER, b TEXT)"));
        let insert = s.prepare("INSERT INTO t(b, a) VALUES ($2, $1)").unwrap();
        assert_eq!(
            insert.param_types,
            vec![Some(SqlType::Int8), Some(SqlType::Text)]
        );
        s.execute_prepared(&insert, &[Value::Integer(7), Value::Text("seven".into())])
            .unwrap();
        let select = s.prepare("SELECT b, a * 2 FROM t WHERE a = $1").unwrap();
        let out = s.execute_prepared(&select, &[Value::Integer(7)]).unwrap();
        assert_eq!(
            out.rows,
            vec![vec![Value::Text("seven".into()), Value::Integer(14)]]
        );
        let err = s.execute_prepared(&select, &[]).unwrap_err();
        assert_eq!(err.code, sqlstate::PROTOCOL_VIOLATION);
    }

    /// A point select runs briefly; a query that outlasts its brief deadline, or whose
    /// rows do not fit its output, is given up without a trace: no outcome reached the
    /// output, the open transaction is not marked failed, and the same statement then runs
    /// in full with every row (issue 22).
    #[test]
    fn a_brief_run_finishes_a_point_select_and_gives_up_a_long_query_without_a_trace() {
        let (_dir, mut s) = session(Role::Admin);
        ok(s.execute_query(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) INSERT INTO t SELECT x, hex(randomblob(8)) FROM c",
        ));
        let point = s.prepare("SELECT v FROM t WHERE id = $1").unwrap();
        let mut out = Collect::default();
        let ran = s.execute_prepared_briefly(
            &point,
            &[Value::Integer(7)],
            &mut out,
            Duration::from_secs(5),
        );
        assert_eq!(ran, Brief::Done);
        assert_eq!(out.results.pop().unwrap().unwrap().rows.len(), 1);

        ok(s.execute_query("BEGIN"));
        let long = s
            .prepare("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1) SELECT max(x) FROM c")
            .unwrap();
        let mut out = Collect::default();
        let forever = [Value::Integer(i64::MAX)];
        let ran = s.execute_prepared_briefly(&long, &forever, &mut out, Duration::from_millis(1));
        assert_eq!(ran, Brief::TooLong);
        assert!(out.results.is_empty(), "{:?}", out.results);
        assert!(!s.failed_transaction);
        // An output that stops taking rows is one the rows do not fit.
        let all = s.prepare("SELECT id FROM t").unwrap();
        let mut full = Refusing(3);
        let ran = s.execute_prepared_briefly(&all, &[], &mut full, Duration::from_secs(5));
        assert_eq!(ran, Brief::TooLong);
        assert!(!s.failed_transaction);
        let rows = s.execute_prepared(&all, &[]).unwrap().rows;
        assert_eq!(rows.len(), 20_000);
        ok(s.execute_query("COMMIT"));

        // Statements that manage transactions, pragmas, writes that return rows and writes
        // inside a transaction are never run briefly.
        ok(s.execute_query("BEGIN"));
        let write = s.prepare("INSERT INTO t(v) VALUES ('x')").unwrap();
        let mut out = Collect::default();
        let ran = s.execute_prepared_briefly(&write, &[], &mut out, Duration::from_secs(5));
        assert_eq!(ran, Brief::TooLong);
        ok(s.execute_query("COMMIT"));
        for sql in [
            "BEGIN",
            "PRAGMA table_info(t)",
            "INSERT INTO t(v) VALUES ('x') RETURNING id",
            "CREATE TABLE u(a)",
        ] {
            let prepared = s.prepare(sql).unwrap();
            let mut out = Collect::default();
            let ran = s.execute_prepared_briefly(&prepared, &[], &mut out, Duration::from_secs(5));
            assert_eq!(ran, Brief::TooLong, "{sql}");
            assert!(out.results.is_empty(), "{sql}");
        }
        let count = s
            .execute_query("SELECT count(*) FROM t")
            .pop()
            .unwrap()
            .unwrap();
        assert_eq!(count.rows, vec![vec![Value::Integer(20_000)]]);
        // One function call longer than any deadline is given up too, before it allocates.
        let huge = s.prepare("SELECT length(randomblob($1::int))").unwrap();
        let mut out = Collect::default();
        let ran = s.execute_prepared_briefly(
            &huge,
            &[Value::Integer(1 << 28)],
            &mut out,
            Duration::from_secs(5),
        );
        assert_eq!(ran, Brief::TooLong);
        assert!(out.results.is_empty());
    }

    /// A single write outside a transaction runs briefly and commits, synced as a full run
    /// is; one given up (its deadline, a lock another connection holds, the turn at the
    /// write lock another session's brief write has) leaves nothing
    /// behind, so that running it again the usual way writes it once (issue 22).
    #[test]
    fn a_brief_write_commits_once_and_a_given_up_write_leaves_nothing() {
        let (dir, mut s) = session(Role::Admin);
        ok(s.execute_query("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"));
        let count = |s: &mut Session| {
            s.execute_query("SELECT count(*) FROM t")
                .pop()
                .unwrap()
                .unwrap()
                .rows
        };
        let insert = s.prepare("INSERT INTO t(v) VALUES ($1)").unwrap();
        let mut out = Collect::default();
        let syncs = s.unsynced.as_ref().unwrap().syncs();
        let ran = s.execute_prepared_briefly(
            &insert,
            &[Value::Text("a".into())],
            &mut out,
            Duration::from_secs(5),
        );
        assert_eq!(ran, Brief::Done);
        let done = out.results.pop().unwrap().unwrap();
        assert_eq!(done.tag.rows, Some(1));
        assert_eq!(
            s.unsynced.as_ref().unwrap().syncs(),
            syncs + 1,
            "answered before its sync"
        );
        assert_eq!(count(&mut s), vec![vec![Value::Integer(1)]]);

        // Outlasting its deadline: a thousand thousand rows in one statement.
        let many = s
            .prepare("INSERT INTO t(v) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) SELECT hex(x) FROM c")
            .unwrap();
        let mut out = Collect::default();
        let ran = s.execute_prepared_briefly(&many, &[], &mut out, Duration::from_millis(1));
        assert_eq!(ran, Brief::TooLong);
        assert!(out.results.is_empty(), "{:?}", out.results);
        assert!(s.conn.is_autocommit());
        assert_eq!(count(&mut s), vec![vec![Value::Integer(1)]]);

        // The write lock held by another connection: waited for until the deadline only,
        // not for the session's lock timeout (a second here).
        let other =
            rusqlite::Connection::open(dir.path().join("databases/default.sqlite")).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t(v) VALUES ('other')")
            .unwrap();
        let mut out = Collect::default();
        let started = std::time::Instant::now();
        let ran = s.execute_prepared_briefly(
            &insert,
            &[Value::Text("b".into())],
            &mut out,
            Duration::from_millis(20),
        );
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(ran, Brief::TooLong);
        assert!(out.results.is_empty(), "{:?}", out.results);
        other.execute_batch("ROLLBACK").unwrap();
        s.execute_prepared(&insert, &[Value::Text("b".into())])
            .unwrap();
        assert_eq!(count(&mut s), vec![vec![Value::Integer(2)]]);

        // Another session's brief write has the turn at the database's write lock: this one
        // waits for it until its deadline, then is given up untouched; with the turn given
        // back, it writes.
        let turns = s.unsynced.as_ref().unwrap().turns();
        let held = turns.take(std::time::Instant::now()).unwrap();
        let mut out = Collect::default();
        let ran = s.execute_prepared_briefly(
            &insert,
            &[Value::Text("c".into())],
            &mut out,
            Duration::from_millis(20),
        );
        assert_eq!(ran, Brief::TooLong);
        assert!(out.results.is_empty(), "{:?}", out.results);
        drop(held);
        let mut out = Collect::default();
        let ran = s.execute_prepared_briefly(
            &insert,
            &[Value::Text("c".into())],
            &mut out,
            Duration::from_secs(5),
        );
        assert_eq!(ran, Brief::Done);
        assert_eq!(count(&mut s), vec![vec![Value::Integer(3)]]);

        // A value longer than a brief run may make is not run briefly (its bind would fail
        // rather than give up), and is written in full the usual way.
        let long = Value::Text("x".repeat(2 << 20));
        let mut out = Collect::default();
        let ran = s.execute_prepared_briefly(
            &insert,
            std::slice::from_ref(&long),
            &mut out,
            Duration::from_secs(5),
        );
        assert_eq!(ran, Brief::TooLong);
        assert!(out.results.is_empty(), "{:?}", out.results);
        s.execute_prepared(&insert, &[long]).unwrap();
        assert_eq!(count(&mut s), vec![vec![Value::Integer(4)]]);
    }

    /// SQLite looks at the progress handler once more after a statement's last instruction,
    /// which for a write in autocommit is after its commit: a brief write whose deadline had
    /// passed by then was reported given up although it had committed, and ran again (a
    /// duplicate row, or a unique violation for the client; issue 22). With a deadline that
    /// has always passed, every brief run either wrote nothing or is answered as done.
    #[test]
    fn a_brief_write_looked_at_after_its_commit_is_done_not_run_twice() {
        let (_dir, mut s) = session(Role::Admin);
        ok(s.execute_query("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)"));
        let insert = s.prepare("INSERT INTO t(v) VALUES ($1)").unwrap();
        let mut done = 0i64;
        for n in 0..5_000i64 {
            let mut out = Collect::default();
            match s.execute_prepared_briefly(
                &insert,
                &[Value::Integer(n)],
                &mut out,
                Duration::ZERO,
            ) {
                Brief::Done => {
                    let executed = out.results.pop().unwrap().unwrap();
                    assert_eq!(executed.tag.rows, Some(1), "run {n}");
                    done += 1;
                }
                Brief::TooLong => {}
            }
            let rows = s
                .execute_query("SELECT count(*) FROM t")
                .pop()
                .unwrap()
                .unwrap()
                .rows;
            assert_eq!(
                rows,
                vec![vec![Value::Integer(done)]],
                "run {n}: a given-up write left its row"
            );
        }
    }

    /// An output that takes a few rows, then stops.
    struct Refusing(usize);

    impl Output for Refusing {
        fn columns(&mut self, _: &str, _: &[Column]) -> Result<(), Stopped> {
            Ok(())
        }

        fn row(&mut self, _: &dyn output::RowValues) -> Result<(), Stopped> {
            self.0 = self.0.checked_sub(1).ok_or(Stopped)?;
            Ok(())
        }

        fn finished(&mut self, _: Result<Executed, SqlError>) -> Result<(), Stopped> {
            panic!("a given-up brief run reported an outcome")
        }
    }

    /// Every Parse and Execute prepared its statement again on the SQLite side (issue 22):
    /// one statement, reused 10,000 times, is one SQLite statement run 10,000 times.
    #[test]
    fn a_prepared_statement_reused_10000_times_is_prepared_once() {
        let (_dir, mut s) = session(Role::Admin);
        ok(s.execute_query("CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)"));
        let sql = "INSERT INTO t(a, b) VALUES ($1, 'x')";
        let insert = s.prepare(sql).unwrap();
        for n in 0..10_000 {
            s.execute_prepared(&insert, &[Value::Integer(n)]).unwrap();
        }
        let cached = s.conn.prepare_cached(&insert.sql).unwrap();
        assert_eq!(cached.get_status(rusqlite::StatementStatus::Run), 10_000);
        drop(cached);
        // The simple protocol's statements are kept by their text as well.
        for _ in 0..100 {
            ok(s.execute_query("SELECT count(*) FROM t"));
        }
        let cached = s.conn.prepare_cached("SELECT count(*) FROM t").unwrap();
        assert_eq!(cached.get_status(rusqlite::StatementStatus::Run), 100);
    }

    /// A session that ended inside a transaction (its client gone mid-transaction) closed
    /// its connection with the transaction open: SQLite frees the connection's client data,
    /// rusqlite's hooks among them, and then rolls back, calling the rollback hook it had
    /// just freed (a use after free: a crash, or a byte written into freed memory). Found
    /// when a test failed inside a transaction and took the test binary down with SIGSEGV.
    #[test]
    fn a_session_ended_inside_a_transaction_called_a_freed_rollback_hook() {
        for _ in 0..20 {
            let (_dir, mut s) = session(Role::Admin);
            ok(s.execute_query("CREATE TABLE t(a); BEGIN; INSERT INTO t VALUES (1)"));
            drop(s);
        }
    }

    /// An error inside a savepoint left the transaction refusing everything but ROLLBACK,
    /// ROLLBACK TO SAVEPOINT included, which is PostgreSQL's way out of it (Django's nested
    /// `atomic()` rolls back to its savepoint and goes on): the transaction goes on from the
    /// savepoint, and what was written before it is committed.
    /// The review of the catalogs: a view whose table was dropped stopped every catalog
    /// query of the database; an index definition read in a rolled-back transaction stayed;
    /// a client's write went into the session's copy of a catalog; `generate_series` ran
    /// past i64::MAX (a panic with overflow checks) and took a zero step.
    #[test]
    fn a_broken_view_a_rollback_and_writes_confused_the_catalogs() {
        let (_dir, mut s) = session(Role::Admin);
        let one = |s: &mut Session, sql: &str| -> Vec<Vec<Value>> {
            s.execute_query(sql).pop().unwrap().unwrap().rows
        };
        ok(s.execute_query(
            "CREATE TABLE gone(a INTEGER); CREATE VIEW w AS SELECT a FROM gone; DROP TABLE gone; CREATE TABLE t(a INTEGER); CREATE INDEX t_a ON t(a)",
        ));
        assert_eq!(
            one(
                &mut s,
                "SELECT relname FROM pg_catalog.pg_class ORDER BY relname"
            ),
            [
                [Value::Text("t".into())],
                [Value::Text("t_a".into())],
                [Value::Text("w".into())]
            ]
        );
        let definition = "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 't_a'";
        let created = vec![vec![Value::Text(
            "CREATE INDEX t_a ON public.t USING btree (a)".into(),
        )]];
        assert_eq!(one(&mut s, definition), created);
        ok(s.execute_query("BEGIN; DROP INDEX t_a"));
        assert!(one(&mut s, definition).is_empty());
        ok(s.execute_query("ROLLBACK"));
        assert_eq!(one(&mut s, definition), created);
        let written = s
            .execute_query("INSERT INTO pg_enum VALUES (1, 2, 3, 'x')")
            .pop()
            .unwrap();
        assert_eq!(written.unwrap_err().code, sqlstate::INSUFFICIENT_PRIVILEGE);
        let lasting = s
            .execute_query("CREATE VIEW names AS SELECT table_name FROM information_schema.tables")
            .pop()
            .unwrap();
        assert_eq!(lasting.unwrap_err().code, sqlstate::FEATURE_NOT_SUPPORTED);
        assert_eq!(
            one(
                &mut s,
                "SELECT count(*), max(x) FROM generate_series(9223372036854775806, 9223372036854775807) x"
            ),
            [[Value::Integer(2), Value::Integer(i64::MAX)]]
        );
        assert_eq!(
            one(
                &mut s,
                "SELECT group_concat(n) FROM generate_series(5, 1, -2) AS g(n)"
            ),
            [[Value::Text("5,3,1".into())]]
        );
        ok(s.execute_query("SET application_name = 'reporting'"));
        assert_eq!(
            one(
                &mut s,
                "SELECT setting FROM pg_settings WHERE name = 'application_name'"
            ),
            [[Value::Text("reporting".into())]]
        );
        let zero = s
            .execute_query("SELECT * FROM generate_series(1, 5, 0)")
            .pop()
            .unwrap();
        assert!(
            zero.unwrap_err()
                .message
                .contains("step size cannot equal zero")
        );
    }

    /// The second review: `ARRAY['a,b', 'c']` came out as three elements, a series over
    /// parameters (sent as text) was empty or one row, a column list named like the table
    /// its subquery reads was a circular CTE, and `CREATE TABLE every` became `min`.
    #[test]
    fn arrays_lost_their_quoting_and_a_series_of_parameters_was_empty() {
        let (_dir, mut s) = session(Role::Admin);
        let one = |s: &mut Session, sql: &str| -> Vec<Vec<Value>> {
            s.execute_query(sql).pop().unwrap().unwrap().rows
        };
        assert_eq!(
            one(&mut s, "SELECT ARRAY['a,b', 'c', NULL]"),
            [[Value::Text("{\"a,b\",c,NULL}".into())]]
        );
        let series = s
            .prepare("SELECT group_concat(x) FROM generate_series($1, $2) x")
            .unwrap();
        let out = s
            .execute_prepared(&series, &[Value::Text("1".into()), Value::Text("3".into())])
            .unwrap();
        assert_eq!(out.rows, [[Value::Text("1,2,3".into())]]);
        ok(s.execute_query("CREATE TABLE t(a INTEGER); INSERT INTO t VALUES (7)"));
        assert_eq!(
            one(&mut s, "SELECT x FROM (SELECT a FROM t) AS t(x)"),
            [[Value::Integer(7)]]
        );
        ok(s.execute_query("CREATE TABLE every(a INTEGER); INSERT INTO every VALUES (1)"));
        assert_eq!(
            one(&mut s, "SELECT bool_and(a = 1) FROM every"),
            [[Value::Integer(1)]]
        );
    }

    #[test]
    fn rollback_to_a_savepoint_after_an_error_was_refused() {
        let (_dir, mut s) = session(Role::Admin);
        ok(s.execute_query("CREATE TABLE t(id INTEGER PRIMARY KEY)"));
        ok(s.execute_query("BEGIN"));
        ok(s.execute_query("INSERT INTO t VALUES (1)"));
        ok(s.execute_query("SAVEPOINT inner_block"));
        let duplicate = s.execute_query("INSERT INTO t VALUES (1)").pop().unwrap();
        assert!(duplicate.is_err());
        let refused = s.execute_query("INSERT INTO t VALUES (5)").pop().unwrap();
        assert_eq!(
            refused.unwrap_err().code,
            sqlstate::IN_FAILED_SQL_TRANSACTION
        );
        // Not a way out: releasing the savepoint, or one that does not exist.
        let released = s
            .execute_query("RELEASE SAVEPOINT inner_block")
            .pop()
            .unwrap();
        assert_eq!(
            released.unwrap_err().code,
            sqlstate::IN_FAILED_SQL_TRANSACTION
        );
        ok(s.execute_query("ROLLBACK TO SAVEPOINT inner_block"));
        ok(s.execute_query("INSERT INTO t VALUES (2)"));
        ok(s.execute_query("RELEASE SAVEPOINT inner_block"));
        ok(s.execute_query("COMMIT"));
        let rows = s
            .execute_query("SELECT id FROM t ORDER BY id")
            .pop()
            .unwrap()
            .unwrap()
            .rows;
        assert_eq!(rows, vec![vec![Value::Integer(1)], vec![Value::Integer(2)]]);
        // A ROLLBACK TO a savepoint there is not leaves the transaction failed.
        ok(s.execute_query("BEGIN"));
        assert!(s.execute_query("SELECT nothing").pop().unwrap().is_err());
        assert!(
            s.execute_query("ROLLBACK TO nowhere")
                .pop()
                .unwrap()
                .is_err()
        );
        let refused = s.execute_query("SELECT 1").pop().unwrap();
        assert_eq!(
            refused.unwrap_err().code,
            sqlstate::IN_FAILED_SQL_TRANSACTION
        );
        ok(s.execute_query("ROLLBACK"));
    }

    /// A brief write gave up at once when another session's write had the turn until its
    /// deadline, and the usual run that followed forgot a cancel that had come meanwhile,
    /// so the canceled insert was written (found in review): the cancel ends it.
    #[test]
    fn a_cancel_while_a_write_waited_for_its_turn_was_lost() {
        let (_dir, mut s) = session(Role::Admin);
        let registry = Arc::new(Registry::new(5, std::collections::HashMap::new()));
        let seat = registry
            .admit(
                "alice",
                Role::Admin,
                "default",
                "127.0.0.1:5432".parse().unwrap(),
                Timeouts::default(),
            )
            .unwrap();
        let activity = Arc::clone(&seat.activity);
        s.take_seat(registry, seat).unwrap();
        ok(s.execute_query("CREATE TABLE t(v TEXT)"));
        let insert = s.prepare("INSERT INTO t VALUES ($1)").unwrap();
        let turns = s.unsynced.as_ref().unwrap().turns();
        let held = turns.take(std::time::Instant::now()).unwrap();
        activity.set_busy(true);
        activity.interrupt(Interruption::Cancel);
        let mut out = Collect::default();
        let ran = s.execute_prepared_briefly(
            &insert,
            &[Value::Text("canceled".into())],
            &mut out,
            Duration::from_millis(20),
        );
        activity.set_busy(false);
        drop(held);
        assert_eq!(ran, Brief::Done);
        let error = out.results.pop().unwrap().unwrap_err();
        assert_eq!(error.code, sqlstate::QUERY_CANCELED, "{error:?}");
        let count = s
            .execute_query("SELECT count(*) FROM t")
            .pop()
            .unwrap()
            .unwrap();
        assert_eq!(count.rows, vec![vec![Value::Integer(0)]]);
    }

    /// Each Execute read the statement's text again (tokens, rewrites, the tag's words) to
    /// run it (issue 22): what it needs is kept from its preparation, and only a statement
    /// holding values of the moment (`backups()`, `sessions()`…) is rewritten at each run.
    #[test]
    fn a_prepared_statement_is_read_at_its_preparation_unless_it_holds_values_of_the_moment() {
        let (_dir, mut s) = session(Role::Admin);
        ok(s.execute_query("CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)"));
        let plan = |p: &Prepared| match &p.kind {
            PreparedKind::Sqlite(plan) => plan.as_ref().clone(),
            other => panic!("{other:?}"),
        };
        let insert = s
            .prepare("insert into t(a, b) values ($1::int8, $2)")
            .unwrap();
        let kept = plan(&insert);
        assert_eq!(kept.facts.command, "INSERT");
        assert_eq!(kept.facts.max_param, 2);
        let fixed = kept.fixed.expect("a statement of plain SQL is fixed");
        assert!(!fixed.contains("::"), "the cast is rewritten once: {fixed}");
        let done = s
            .execute_prepared(&insert, &[Value::Integer(7), Value::Text("x".into())])
            .unwrap();
        assert_eq!(done.tag.rows, Some(1));

        let history = s.prepare("SELECT count(*) FROM backups()").unwrap();
        assert_eq!(plan(&history).fixed, None);
        for _ in 0..2 {
            let counted = s.execute_prepared(&history, &[]).unwrap();
            assert_eq!(counted.rows, vec![vec![Value::Integer(0)]]);
        }
    }

    #[test]
    fn a_commit_is_answered_only_after_a_sync_of_the_log_and_other_statements_sync_nothing() {
        let (_dir, mut s) = session(Role::Admin);
        let synchronous: i64 = s
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            synchronous, 1,
            "NORMAL: the session syncs the log, not SQLite"
        );
        let syncs = |s: &Session| s.unsynced.as_ref().unwrap().syncs();
        ok(s.execute_query("CREATE TABLE t(a INTEGER PRIMARY KEY)"));
        let before = syncs(&s);
        ok(s.execute_query("INSERT INTO t VALUES (1)"));
        assert_eq!(syncs(&s), before + 1, "an autocommit insert");
        let insert = s.prepare("INSERT INTO t VALUES ($1)").unwrap();
        s.execute_prepared(&insert, &[Value::Integer(2)]).unwrap();
        assert_eq!(syncs(&s), before + 2, "a prepared autocommit insert");
        ok(s.execute_query("SELECT * FROM t"));
        ok(s.execute_query("BEGIN"));
        ok(s.execute_query("INSERT INTO t VALUES (3)"));
        ok(s.execute_query("INSERT INTO t VALUES (4)"));
        assert_eq!(
            syncs(&s),
            before + 2,
            "nothing is committed inside a transaction"
        );
        ok(s.execute_query("COMMIT"));
        assert_eq!(syncs(&s), before + 3, "COMMIT");
        ok(s.execute_query("INSERT INTO t VALUES (5); INSERT INTO t VALUES (6)"));
        assert_eq!(syncs(&s), before + 4, "an implicit transaction's commit");
        ok(s.execute_query("BEGIN; INSERT INTO t VALUES (7); ROLLBACK"));
        assert_eq!(syncs(&s), before + 4, "a rollback");
    }

    /// SQLite's WAL hook runs only when a statement steps to its end; an INSERT … RETURNING
    /// whose result was closed after its first row commits in its reset, and its client was
    /// told of the commit without a sync of the log.
    #[test]
    fn a_returning_insert_closed_after_its_first_row_is_synced_before_its_answer() {
        struct FirstRowOnly;
        impl Output for FirstRowOnly {
            fn columns(&mut self, _: &str, _: &[Column]) -> Result<(), Stopped> {
                Ok(())
            }
            fn row(&mut self, _: &dyn output::RowValues) -> Result<(), Stopped> {
                Err(Stopped)
            }
            fn finished(&mut self, _: Result<Executed, SqlError>) -> Result<(), Stopped> {
                Ok(())
            }
        }
        let (_dir, mut s) = session(Role::Admin);
        ok(s.execute_query("CREATE TABLE t(a INTEGER PRIMARY KEY)"));
        let before = s.unsynced.as_ref().unwrap().syncs();
        let insert = s
            .prepare("INSERT INTO t VALUES (1), (2), (3) RETURNING a")
            .unwrap();
        s.execute_prepared_into(&insert, &[], &mut FirstRowOnly);
        let rows: i64 = s
            .conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3, "the insert committed");
        assert_eq!(s.unsynced.as_ref().unwrap().syncs(), before + 1);
    }

    /// A value the output could not take ended the statement through the output's stop, which
    /// left an explicit transaction open and usable, where PostgreSQL aborts it.
    #[test]
    fn a_value_the_output_cannot_take_aborts_the_transaction() {
        let (_dir, mut s) = session(Role::Admin);
        ok(s.execute_query("CREATE TABLE u(t TEXT)"));
        ok(s.execute_query("INSERT INTO u VALUES (CAST(x'ff41' AS TEXT))"));
        ok(s.execute_query("BEGIN"));
        let error = error_of(&mut s, "SELECT t FROM u");
        assert_eq!(error.code, sqlstate::DATATYPE_MISMATCH, "{}", error.message);
        let next = error_of(&mut s, "SELECT 1");
        assert_eq!(next.code, sqlstate::IN_FAILED_SQL_TRANSACTION);
        ok(s.execute_query("ROLLBACK"));
        ok(s.execute_query("SELECT 1"));
    }

    #[test]
    fn expression_columns_without_parameters_are_typed_by_their_value() {
        let (_dir, mut s) = session(Role::Admin);
        let prepared = s.prepare("SELECT count(*) AS n, 1.5, 'x'").unwrap();
        let types: Vec<SqlType> = prepared.columns.unwrap().iter().map(|c| c.ty).collect();
        assert_eq!(types, vec![SqlType::Int8, SqlType::Float8, SqlType::Text]);
    }

    #[test]
    fn transaction_starts_take_the_write_lock_unless_read_only() {
        let spell = |sql: &str, role| sqlite_spelling(&lexer::tokenize(sql).unwrap(), role);
        assert_eq!(spell("BEGIN", Role::Readwrite), Some("BEGIN IMMEDIATE"));
        assert_eq!(
            spell(
                "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                Role::Admin
            ),
            Some("BEGIN IMMEDIATE")
        );
        assert_eq!(
            spell("START TRANSACTION READ ONLY", Role::Admin),
            Some("BEGIN")
        );
        assert_eq!(spell("BEGIN", Role::Readonly), Some("BEGIN"));
        assert_eq!(spell("BEGIN EXCLUSIVE", Role::Admin), None);
        assert_eq!(spell("SELECT 1", Role::Admin), None);
    }

    #[test]
    fn cannot_drop_the_database_in_use() {
        let (_dir, mut s) = session(Role::Admin);
        ok(s.execute_query("CREATE DATABASE other"));
        let err = error_of(&mut s, "DROP DATABASE default");
        assert_eq!(err.code, sqlstate::OBJECT_IN_USE);
        ok(s.execute_query("DROP DATABASE other"));
        let err = error_of(&mut s, "CREATE DATABASE \"../x\"");
        assert_eq!(err.code, sqlstate::INVALID_NAME);
    }

    #[test]
    fn backup_then_restore_gives_the_same_rows_and_history_records_both() {
        let (dir, mut s) = session(Role::Admin);
        ok(s.execute_query(
            "CREATE TABLE t(x INTEGER, y TEXT); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) INSERT INTO t SELECT x, 'row ' || x FROM c",
        ));
        let backup = ok(s.execute_query("BACKUP DATABASE TO 'a.zip' WITH (compression_level = 1)"));
        assert_eq!(backup[0].rows[0][1], Value::Text("default".into()));
        assert!(dir.path().join("backups/a.zip").is_file());
        ok(s.execute_query("RESTORE DATABASE copy FROM 'a.zip'"));
        let copy = Connection::open(dir.path().join("databases/copy.sqlite")).unwrap();
        let count: i64 = copy
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 1000);
        let history = ok(s.execute_query(
            "SELECT kind, status FROM backups() WHERE status = 'complete' ORDER BY id",
        ));
        assert_eq!(
            history[0].rows,
            vec![
                vec![Value::Text("backup".into()), Value::Text("complete".into())],
                vec![
                    Value::Text("restore".into()),
                    Value::Text("complete".into())
                ],
            ]
        );
        let err = error_of(&mut s, "RESTORE DATABASE copy FROM 'a.zip'");
        assert_eq!(err.code, sqlstate::DUPLICATE_DATABASE);
        let err = error_of(&mut s, "BACKUP DATABASE TO 'a.zip'");
        assert_eq!(err.code, sqlstate::DUPLICATE_FILE);
    }

    #[test]
    fn read_only_users_cannot_back_up_or_read_the_history() {
        let (_dir, mut s) = session(Role::Readonly);
        for sql in [
            "BACKUP DATABASE TO 'a.zip'",
            "SELECT * FROM backups()",
            "SHOW BACKUPS",
        ] {
            let err = error_of(&mut s, sql);
            assert_eq!(err.code, sqlstate::INSUFFICIENT_PRIVILEGE, "{sql}");
        }
    }
}
