//! The C ABI between the server and a plugin: `#[repr(C)]` data and `extern "C"` function
//! pointers, nothing else. `include/cairn_plugin.h` declares the same types for C, and a
//! test compares the two layouts field by field.
//!
//! # Compatibility rules
//! - Every table (a struct of function pointers or of fields another release may extend)
//!   starts with its own `size`. New fields are only ever appended, in a new minor version;
//!   the reader treats a field that lies beyond the table's `size` as absent.
//! - A change to an existing field, or a removal, is a new major version, and the exported
//!   symbol's name changes with it (`cairn_plugin_v1`, `cairn_plugin_v2`, …).
//! - Memory is freed by the side that allocated it. Strings and values passed into a call are
//!   borrowed for the duration of that call only; the receiver copies what it keeps.
//! - Function pointers a table may lack are `Option`s: a C `NULL` is a valid `None`.

use std::ffi::c_void;

/// The ABI major version. A plugin built for another major is refused.
pub const CAIRN_ABI_MAJOR: u32 = 1;
/// The ABI minor version: what this build of the crate knows. Minor versions only append.
pub const CAIRN_ABI_MINOR: u32 = 10;
/// The first eight bytes of every descriptor: `CAIRNPLG` in ASCII, little-endian.
pub const CAIRN_PLUGIN_MAGIC: u64 = u64::from_le_bytes(*b"CAIRNPLG");
/// The name of the one data symbol a plugin exports: its descriptor, for ABI major 1.
pub const CAIRN_PLUGIN_SYMBOL: &str = "cairn_plugin_v1";

/// A status returned by the synchronous functions of the ABI.
pub type CairnStatus = u32;
/// Success.
pub const CAIRN_OK: CairnStatus = 0;
/// Failure; the details were written to the call's [`CairnOutput`] with `set_error`.
pub const CAIRN_ERROR: CairnStatus = 1;

/// What a [`CairnFuture`]'s `poll` returns.
pub type CairnPoll = u32;
/// Not finished: the poller will be woken through the waker it passed.
pub const CAIRN_PENDING: CairnPoll = 0;
/// Finished: the result (rows or an error) was written to the output during this poll.
pub const CAIRN_READY: CairnPoll = 1;

/// Error codes passed to [`CairnOutput::set_error`].
pub type CairnErrorCode = u32;
/// The operation failed; the message says why.
pub const CAIRN_ERROR_FAILED: CairnErrorCode = 1;
/// The plugin panicked (or crashed in a way it caught). The host marks the plugin failed.
pub const CAIRN_ERROR_PANICKED: CairnErrorCode = 2;
/// The arguments were not what the callee accepts.
pub const CAIRN_ERROR_INVALID_ARGUMENT: CairnErrorCode = 3;
/// The other side does not offer this function (its table is too old).
pub const CAIRN_ERROR_UNSUPPORTED: CairnErrorCode = 4;
/// The caller may not do this (for example a procedure name that is taken).
pub const CAIRN_ERROR_REFUSED: CairnErrorCode = 5;

/// The type tag of a [`CairnValue`] and of a [`CairnColumn`].
pub type CairnValueKind = u32;
/// SQL NULL.
pub const CAIRN_VALUE_NULL: CairnValueKind = 0;
/// A 64-bit signed integer in `integer`.
pub const CAIRN_VALUE_INTEGER: CairnValueKind = 1;
/// A 64-bit float in `real`.
pub const CAIRN_VALUE_REAL: CairnValueKind = 2;
/// UTF-8 text in `bytes`.
pub const CAIRN_VALUE_TEXT: CairnValueKind = 3;
/// Bytes in `bytes`.
pub const CAIRN_VALUE_BLOB: CairnValueKind = 4;

/// Log levels of [`CairnHost::log`], most severe first.
pub type CairnLogLevel = u32;
/// An error.
pub const CAIRN_LOG_ERROR: CairnLogLevel = 1;
/// A warning.
pub const CAIRN_LOG_WARN: CairnLogLevel = 2;
/// Information an operator wants by default.
pub const CAIRN_LOG_INFO: CairnLogLevel = 3;
/// Detail for debugging.
pub const CAIRN_LOG_DEBUG: CairnLogLevel = 4;
/// Everything.
pub const CAIRN_LOG_TRACE: CairnLogLevel = 5;

/// Server events a plugin can subscribe to; bit `1 << kind` in a subscription mask.
pub type CairnEventKind = u32;
/// All plugins have started and the server is serving.
pub const CAIRN_EVENT_STARTUP: CairnEventKind = 1;
/// The server is shutting down; plugins are stopped next.
pub const CAIRN_EVENT_SHUTDOWN: CairnEventKind = 2;
/// A database was created; `database` names it.
pub const CAIRN_EVENT_DATABASE_CREATED: CairnEventKind = 3;
/// A database was dropped; `database` names it.
pub const CAIRN_EVENT_DATABASE_DROPPED: CairnEventKind = 4;
/// A backup started; `detail` holds the backup id.
pub const CAIRN_EVENT_BACKUP_STARTED: CairnEventKind = 5;
/// A backup finished; `detail` holds the archive path.
pub const CAIRN_EVENT_BACKUP_FINISHED: CairnEventKind = 6;
/// A backup failed; `detail` holds the error.
pub const CAIRN_EVENT_BACKUP_FAILED: CairnEventKind = 7;
/// Since 1.2. A plugin raised an alert ([`CairnHost::raise_alert`]): `database` names the
/// database concerned (may be empty), `detail` is `plugin: message`.
pub const CAIRN_EVENT_ALERT: CairnEventKind = 8;

/// A borrowed run of bytes (UTF-8 where the field says text). Not NUL-terminated.
/// `ptr` may be null only when `len` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CairnStr {
    /// First byte.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

/// One SQL value. `kind` says which field holds it; the others are zero.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CairnValue {
    /// One of the `CAIRN_VALUE_*` constants.
    pub kind: CairnValueKind,
    /// Zero; keeps the layout explicit.
    pub reserved: u32,
    /// The value of an integer.
    pub integer: i64,
    /// The value of a real.
    pub real: f64,
    /// The bytes of a text or a blob.
    pub bytes: CairnStr,
}

/// An argument of a procedure call: `name` is empty for a positional argument and holds the
/// name for `name => value`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CairnArg {
    /// The argument's name, or empty.
    pub name: CairnStr,
    /// The argument's value.
    pub value: CairnValue,
}

/// A result column a procedure declares.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CairnColumn {
    /// The column's name.
    pub name: CairnStr,
    /// The column's type, a `CAIRN_VALUE_*` constant other than NULL. Every value in the
    /// column has this type or is NULL.
    pub kind: CairnValueKind,
    /// Zero.
    pub reserved: u32,
}

/// Where a call or a future writes its result. It belongs to the caller and is valid for the
/// duration of the call (for a future: of the `poll` that returns [`CAIRN_READY`]).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CairnOutput {
    /// `size_of::<CairnOutput>()` as the caller built it.
    pub size: u32,
    /// Zero.
    pub reserved: u32,
    /// The caller's context, passed back to every function below.
    pub ctx: *mut c_void,
    /// Reports failure. The message is copied.
    pub set_error:
        Option<unsafe extern "C" fn(ctx: *mut c_void, code: CairnErrorCode, message: CairnStr)>,
    /// Declares the result's columns (for results whose columns are not known in advance).
    pub set_columns:
        Option<unsafe extern "C" fn(ctx: *mut c_void, columns: *const CairnColumn, count: usize)>,
    /// Appends one row. The values are copied.
    pub push_row:
        Option<unsafe extern "C" fn(ctx: *mut c_void, values: *const CairnValue, count: usize)>,
    /// Sets a one-line summary (a command tag such as `INSERT 0 3`).
    pub set_message: Option<unsafe extern "C" fn(ctx: *mut c_void, message: CairnStr)>,
}

/// A waker, as in Rust's `std::task::RawWaker`: how a future tells its poller to poll again.
/// The waker passed to `poll` is borrowed for that call; `clone` it to keep it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CairnWaker {
    /// The waker's data, passed to its functions.
    pub data: *const c_void,
    /// The waker's functions.
    pub vtable: *const CairnWakerVTable,
}

/// The functions of a [`CairnWaker`]. All four are required.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CairnWakerVTable {
    /// Returns a new waker that wakes the same task.
    pub clone: unsafe extern "C" fn(data: *const c_void) -> CairnWaker,
    /// Wakes the task and releases this waker.
    pub wake: unsafe extern "C" fn(data: *const c_void),
    /// Wakes the task; the waker stays valid.
    pub wake_by_ref: unsafe extern "C" fn(data: *const c_void),
    /// Releases this waker.
    pub drop: unsafe extern "C" fn(data: *const c_void),
}

/// An asynchronous operation, polled by the other side's executor (the server's runtime for
/// plugin futures). `poll` may be called from any thread but never concurrently; after it
/// returns [`CAIRN_READY`] it is not called again. `drop` is called exactly once, finished or
/// not, and releases `state`.
#[repr(C)]
#[derive(Debug)]
pub struct CairnFuture {
    /// The future's state, owned by the side that made the future.
    pub state: *mut c_void,
    /// Advances the future. On [`CAIRN_READY`] the result has been written to `output`.
    pub poll: Option<
        unsafe extern "C" fn(
            state: *mut c_void,
            waker: *const CairnWaker,
            output: *const CairnOutput,
        ) -> CairnPoll,
    >,
    /// Releases the state.
    pub drop: Option<unsafe extern "C" fn(state: *mut c_void)>,
}

/// A server event delivered to a subscribed plugin. Borrowed for the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CairnEvent {
    /// `size_of::<CairnEvent>()` as the host built it.
    pub size: u32,
    /// One of the `CAIRN_EVENT_*` constants.
    pub kind: CairnEventKind,
    /// The database concerned, or empty.
    pub database: CairnStr,
    /// Further detail (a backup id, a path, an error), or empty.
    pub detail: CairnStr,
}

/// A procedure a plugin registers, callable as `CALL <plugin>.<name>(args…)`.
#[repr(C)]
#[derive(Debug)]
pub struct CairnProcedureSpec {
    /// `size_of::<CairnProcedureSpec>()` as the plugin built it.
    pub size: u32,
    /// Zero.
    pub reserved: u32,
    /// The procedure's name: `[a-z_][a-z0-9_]*`.
    pub name: CairnStr,
    /// One line for `SHOW PLUGINS`-style listings.
    pub description: CairnStr,
    /// The columns of the rows the procedure returns (may be empty).
    pub columns: *const CairnColumn,
    /// Number of columns.
    pub column_count: usize,
    /// The plugin's context for this procedure. The host owns it once registered and releases
    /// it with `drop_ctx` when the procedure is unregistered.
    pub ctx: *mut c_void,
    /// Starts a call. The arguments are borrowed for this call only. The future writes the
    /// rows (matching `columns`) or an error to its output.
    pub call: Option<
        unsafe extern "C" fn(ctx: *mut c_void, args: *const CairnArg, count: usize) -> CairnFuture,
    >,
    /// Releases `ctx`.
    pub drop_ctx: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
}

/// `CairnFunctionSpec::flags`: the same arguments always give the same result (SQLite may
/// then use the function in indexes and fold calls).
pub const CAIRN_FUNCTION_DETERMINISTIC: u32 = 1;

/// A scalar SQL function a plugin registers (since 1.6), callable from any statement on any
/// database as `name(args…)`.
#[repr(C)]
#[derive(Debug)]
pub struct CairnFunctionSpec {
    /// `size_of::<CairnFunctionSpec>()` as the plugin built it.
    pub size: u32,
    /// `CAIRN_FUNCTION_*` bits.
    pub flags: u32,
    /// The function's name: `[a-z_][a-z0-9_]*`, not one of SQLite's own.
    pub name: CairnStr,
    /// One line for listings.
    pub description: CairnStr,
    /// How many arguments it takes (0 to 127), or -1 for any number.
    pub arg_count: i32,
    /// Zero.
    pub reserved: u32,
    /// The plugin's context for this function. The host owns it once registered and releases
    /// it with `drop_ctx` when the function is unregistered and no call is running. A call
    /// that began before an unload may end after the instance's `destroy`: keep what `call`
    /// needs in `ctx` itself, not only in the instance.
    pub ctx: *mut c_void,
    /// Computes one value: `count` arguments, borrowed for the call; writes one row of one
    /// value (or an error) to `output`, and returns `CAIRN_OK` or `CAIRN_ERROR`. Called on
    /// the statement's thread, from any thread and concurrently: it must not block for long.
    pub call: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            args: *const CairnValue,
            count: usize,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Releases `ctx`.
    pub drop_ctx: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
}

/// An aggregate SQL function a plugin registers (since 1.6), callable as `name(args…)` over
/// the rows of a group (`SELECT median(x) FROM t GROUP BY g`). Each group gets its own state:
/// `start`, then `step` once per row, then `finish` (or `drop_state` when the statement
/// stops early).
#[repr(C)]
#[derive(Debug)]
pub struct CairnAggregateSpec {
    /// `size_of::<CairnAggregateSpec>()` as the plugin built it.
    pub size: u32,
    /// `CAIRN_FUNCTION_*` bits.
    pub flags: u32,
    /// The function's name: `[a-z_][a-z0-9_]*`, not one of SQLite's own.
    pub name: CairnStr,
    /// One line for listings.
    pub description: CairnStr,
    /// How many arguments it takes per row (0 to 127), or -1 for any number.
    pub arg_count: i32,
    /// Zero.
    pub reserved: u32,
    /// The plugin's context, owned by the host once registered (see `CairnFunctionSpec`).
    pub ctx: *mut c_void,
    /// A new group's state (any pointer, NULL included); on failure writes an error to
    /// `output` and returns `CAIRN_ERROR`.
    pub start: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            state: *mut *mut c_void,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Adds one row's `count` arguments (borrowed for the call) to `state`.
    pub step: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            state: *mut c_void,
            args: *const CairnValue,
            count: usize,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Writes the group's value (one row of one value, or an error) and releases `state`,
    /// also when it fails; `drop_state` never follows it.
    pub finish: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            state: *mut c_void,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Releases a `state` that will not be finished.
    pub drop_state: Option<unsafe extern "C" fn(ctx: *mut c_void, state: *mut c_void)>,
    /// Releases `ctx`.
    pub drop_ctx: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
    /// Since 1.9, optional, with `inverse`: makes the aggregate a window function too
    /// (`name(x) OVER (…)`). Writes the group's current value (one row of one value) without
    /// releasing `state`.
    pub value: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            state: *mut c_void,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Since 1.9, optional, with `value`: takes one row's `count` arguments (as `step`
    /// added them earlier) back out of `state`, as the window's frame moves past it.
    pub inverse: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            state: *mut c_void,
            args: *const CairnValue,
            count: usize,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
}

/// The most rows a table function's `next` may write in one call (since 1.7): the host keeps
/// one batch per open scan, so this bounds the memory a scan holds.
pub const CAIRN_TABLE_BATCH_MAX: usize = 1024;

/// A table function a plugin registers (since 1.7): `SELECT * FROM name(args…)` on any
/// database, in joins too (`FROM t, name(t.x)`), its rows pulled in batches as the statement
/// steps. The arguments are hidden columns after the result columns: the query sees them
/// with the values passed, and a call may leave out trailing ones (the plugin then gets
/// fewer).
#[repr(C)]
#[derive(Debug)]
pub struct CairnTableFunctionSpec {
    /// `size_of::<CairnTableFunctionSpec>()` as the plugin built it.
    pub size: u32,
    /// Zero (no flags yet).
    pub flags: u32,
    /// The function's name: `[a-z_][a-z0-9_]*`, not a table function or module of SQLite's.
    pub name: CairnStr,
    /// One line for listings.
    pub description: CairnStr,
    /// The result columns (at least one).
    pub columns: *const CairnColumn,
    /// Number of result columns.
    pub column_count: usize,
    /// The arguments, in order (a name and the type the function expects; the host passes
    /// what the statement gives, as SQL values).
    pub arguments: *const CairnColumn,
    /// Number of arguments (at most 64).
    pub argument_count: usize,
    /// The plugin's context, owned by the host once registered (see `CairnFunctionSpec`).
    pub ctx: *mut c_void,
    /// Starts a scan for `count` arguments (borrowed for the call): stores its state (any
    /// pointer, NULL included) in `*rows`; on failure writes an error to `output` and returns
    /// `CAIRN_ERROR`.
    pub open: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            args: *const CairnValue,
            count: usize,
            rows: *mut *mut c_void,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Writes the scan's next rows to `output` (1 to [`CAIRN_TABLE_BATCH_MAX`], each matching
    /// `columns`), or none when there are no more, and returns `CAIRN_OK`; or an error.
    /// Called by one thread at a time for a scan, from any thread.
    pub next: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            rows: *mut c_void,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Releases a scan's state, finished or not (a `LIMIT` stops a scan early). Called once
    /// per successful `open`.
    pub close: Option<unsafe extern "C" fn(ctx: *mut c_void, rows: *mut c_void)>,
    /// Releases `ctx`.
    pub drop_ctx: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
}

/// What a [`CairnChange`] did to its row (since 1.8).
pub type CairnChangeOp = u32;
/// The row was inserted.
pub const CAIRN_CHANGE_INSERT: CairnChangeOp = 1;
/// The row was updated (a change of its rowid is a delete and an insert).
pub const CAIRN_CHANGE_UPDATE: CairnChangeOp = 2;
/// The row was deleted.
pub const CAIRN_CHANGE_DELETE: CairnChangeOp = 3;

/// One row changed by a committed transaction (since 1.8).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CairnChange {
    /// The table's name.
    pub table: CairnStr,
    /// One of the `CAIRN_CHANGE_*` constants.
    pub op: CairnChangeOp,
    /// Zero.
    pub reserved: u32,
    /// The row's rowid (after the change; before it, for a delete).
    pub rowid: i64,
}

/// One committed transaction of a database, as delivered to a plugin's `on_commit` (since
/// 1.8): its row changes in the order they were made, borrowed for the call. Commits reach
/// a plugin one at a time, in the database's commit order, once durable.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CairnCommit {
    /// `size_of::<CairnCommit>()` as the host built it.
    pub size: u32,
    /// Zero.
    pub reserved: u32,
    /// The database.
    pub database: CairnStr,
    /// The commit's number among the database's commits since the server started, from 1;
    /// increasing in commit order (a commit with no change the plugin subscribed to takes a
    /// number too, and is not delivered).
    pub sequence: u64,
    /// The changes (of the subscribed tables).
    pub changes: *const CairnChange,
    /// Number of changes.
    pub change_count: usize,
    /// How many commits were dropped just before this one because the plugin's queue was
    /// full (0 normally). A report of drops with no commit after them comes with no changes.
    pub missed: u64,
    /// How many changes of this commit are not listed because it changed more rows than one
    /// commit may carry.
    pub truncated: u64,
}

/// One statement a session ran (since 1.10), as delivered to a plugin's `on_statement`,
/// borrowed for the call: for a query log or a slow-query report.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CairnStatement {
    /// `size_of::<CairnStatement>()` as the host built it.
    pub size: u32,
    /// 0 when it succeeded, 1 when it failed (`sqlstate` says how).
    pub failed: u32,
    /// The session's database.
    pub database: CairnStr,
    /// The session's user (`plugin:NAME` for a plugin's own SQL).
    pub user: CairnStr,
    /// The statement's text as the client sent it (never its parameters' values), its first
    /// 4096 bytes at most, cut at a character boundary.
    pub text: CairnStr,
    /// The SQLSTATE of its error; empty when it succeeded.
    pub sqlstate: CairnStr,
    /// When it started, in microseconds since the Unix epoch.
    pub started_at_micros: i64,
    /// How long it ran, until its last row was handed over and its commit was durable.
    pub duration_micros: u64,
    /// The rows it returned or changed (0 for commands that report none).
    pub rows: u64,
    /// How many statements were dropped just before this one because the plugin's queue was
    /// full. A report of drops with none after them has an empty text.
    pub missed: u64,
}

/// A job a plugin schedules. The host runs it on its cron schedule and never starts a run
/// while the previous one is still running.
#[repr(C)]
#[derive(Debug)]
pub struct CairnJobSpec {
    /// `size_of::<CairnJobSpec>()` as the plugin built it.
    pub size: u32,
    /// Zero.
    pub reserved: u32,
    /// The job's name, unique within the plugin.
    pub name: CairnStr,
    /// A cron expression in UTC: 5 fields (minute precision) or 6 (with seconds first).
    pub cron: CairnStr,
    /// The plugin's context for this job, owned by the host once scheduled.
    pub ctx: *mut c_void,
    /// Starts one run.
    pub run: Option<unsafe extern "C" fn(ctx: *mut c_void) -> CairnFuture>,
    /// Releases `ctx`.
    pub drop_ctx: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
}

/// The services the server offers a plugin instance. The host passes it to `create`; it stays
/// valid until the host calls `destroy`. Every function may be called from any thread.
#[repr(C)]
#[derive(Debug)]
pub struct CairnHost {
    /// `size_of::<CairnHost>()` as the host built it: functions beyond it are absent.
    pub size: u32,
    /// The host's ABI minor version.
    pub abi_minor: u32,
    /// The host's context, private to the host.
    pub ctx: *mut c_void,
    /// The most verbose level the server currently logs (a `CAIRN_LOG_*` constant): events
    /// above it would be discarded, so a plugin need not format them.
    pub max_log_level: CairnLogLevel,
    /// Zero.
    pub reserved: u32,
    /// Writes a line to the server's log, tagged with the plugin's name.
    pub log: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            level: CairnLogLevel,
            target: CairnStr,
            message: CairnStr,
        ),
    >,
    /// Writes one row per database (a text column `name`) to `output`.
    pub list_databases: Option<
        unsafe extern "C" fn(host: *const CairnHost, output: *const CairnOutput) -> CairnStatus,
    >,
    /// Runs SQL (one or more statements; `$1`… bound to `params`) against a database with the
    /// admin role. The future writes the last statement's columns and rows, and its command
    /// tag as the message.
    pub execute_sql: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            database: CairnStr,
            sql: CairnStr,
            params: *const CairnValue,
            param_count: usize,
        ) -> CairnFuture,
    >,
    /// Registers a procedure. On failure, `spec.ctx` is released with `spec.drop_ctx`.
    pub register_procedure: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            spec: *const CairnProcedureSpec,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Sets which events (`1 << CAIRN_EVENT_*`) are delivered to the plugin's `on_event`.
    pub subscribe: Option<unsafe extern "C" fn(host: *const CairnHost, mask: u64) -> CairnStatus>,
    /// Schedules a job. On failure, `spec.ctx` is released with `spec.drop_ctx`.
    pub schedule: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            spec: *const CairnJobSpec,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// A future that completes after `millis` milliseconds, on the host's timer.
    pub sleep: Option<unsafe extern "C" fn(host: *const CairnHost, millis: u64) -> CairnFuture>,
    /// Since 1.1. Backs up `database` (a consistent snapshot, as `BACKUP DATABASE`) to the
    /// archive `path`: relative paths resolve under the server's backup directory, absolute
    /// ones must lie under an allowed directory. `options` are named arguments
    /// (`compression_level`, `buffer_size`, `max_rate`). The future writes one row: `id`,
    /// `database`, `path`, `bytes`, `duration` (seconds).
    pub backup_database: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            database: CairnStr,
            path: CairnStr,
            options: *const CairnArg,
            option_count: usize,
        ) -> CairnFuture,
    >,
    /// Since 1.1. Verifies the archive `path` (same path rules) as `cairn verify` does. The
    /// future writes one row: `database`, `created_at`, `page_size`, `page_count`, `bytes`.
    pub verify_archive:
        Option<unsafe extern "C" fn(host: *const CairnHost, path: CairnStr) -> CairnFuture>,
    /// Since 1.1. Writes the newest `limit` rows of the backup history of `database` (empty:
    /// every database) to `output`: `id`, `database`, `kind`, `status`, `path`, `bytes`,
    /// `backup_error`.
    pub list_backups: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            database: CairnStr,
            limit: u64,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Since 1.2. Writes one row, `path`: a directory private to this plugin under the
    /// server's data directory (created if missing), kept across restarts and reloads.
    pub state_directory: Option<
        unsafe extern "C" fn(host: *const CairnHost, output: *const CairnOutput) -> CairnStatus,
    >,
    /// Since 1.2. Resolves the directory `path` by the backup path rules (relative: under the
    /// server's backup directory; absolute: under an allowed directory), creates it if
    /// missing, and writes one row, `path`: the absolute directory.
    pub archive_directory: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            path: CairnStr,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Since 1.2. Logs `message` at error level and delivers a [`CAIRN_EVENT_ALERT`] to every
    /// plugin subscribed to it, for alerting. `database` may be empty. On failure the reason
    /// is written to `output`.
    pub raise_alert: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            database: CairnStr,
            message: CairnStr,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Since 1.3. Lists every archive and export at `location`: a directory by the backup
    /// path rules (empty: the backup directory), or `NAME:prefix` in a destination of the
    /// server config, read from the files' own manifests (as `SHOW ARCHIVES`). The future
    /// writes one row per file, oldest first: `location` (what the other host functions
    /// take), `database`, `kind` (`full` or `export`), `created_at`, `bytes`, `problem`
    /// (NULL when the file reads as an archive or export).
    pub list_archives:
        Option<unsafe extern "C" fn(host: *const CairnHost, location: CairnStr) -> CairnFuture>,
    /// Since 1.3. Deletes the archive or export at `location` (same rules as
    /// `list_archives`; only files named `.zip` or `.json.gz`). The future writes one row,
    /// `deleted`: 1, or 0 when there was nothing there.
    pub delete_archive:
        Option<unsafe extern "C" fn(host: *const CairnHost, location: CairnStr) -> CairnFuture>,
    /// Since 1.4. Sets the plugin's gauge `name` (an identifier) for the label set `labels`
    /// (`label_count` pairs, at most 8: `name` an identifier, not `plugin` nor starting
    /// `__`; `value` text) to `value`; NaN removes that series. Help and label values are at
    /// most 256 bytes without control characters, quotes or backslashes; a plugin keeps at
    /// most 1,000 series. The server serves it at `/metrics` as
    /// `cairn_plugin_<plugin>_<name>`, with `help` as its description, until the plugin
    /// is unloaded or reloaded. On refusal (a bad name, too many series) the reason is
    /// written to `output`.
    pub set_gauge: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            name: CairnStr,
            help: CairnStr,
            labels: *const CairnArg,
            label_count: usize,
            value: f64,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Since 1.5. A restore drill of the archive at `location` (same rules as
    /// `list_archives`), which must be of `database`: restored (an increment with its chain)
    /// into a scratch file outside the catalog, checked by SQLite's `integrity_check`, every
    /// table's rows counted and compared with those its manifest recorded at snapshot time,
    /// and the scratch file removed; recorded in the backup history as kind `drill`. The
    /// future writes one row: `database`, `location`, `created_at`, `tables`, `rows`,
    /// `counted` (1 when the manifest recorded row counts to compare with, 0 for archives
    /// written before they were recorded).
    pub drill_archive: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            database: CairnStr,
            location: CairnStr,
        ) -> CairnFuture,
    >,
    /// Since 1.6. Registers a scalar SQL function for every session's connection, present
    /// and future, until the plugin is unloaded or replaced (calls after that are an error
    /// naming it, never a call into the plugin). On failure, `spec.ctx` is released with
    /// `spec.drop_ctx` and the reason is written to `output`.
    pub register_function: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            spec: *const CairnFunctionSpec,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Since 1.6. Registers an aggregate SQL function, as `register_function` does a scalar
    /// one.
    pub register_aggregate: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            spec: *const CairnAggregateSpec,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Since 1.7. Registers a table function, as `register_function` does a scalar one.
    pub register_table_function: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            spec: *const CairnTableFunctionSpec,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Since 1.8. Delivers the row changes of committed transactions to the plugin's
    /// `on_commit`: of the `database_count` databases named (none: every database), and of
    /// the `table_count` tables named (none: every table), replacing any earlier
    /// subscription (both counts 0 and NULLs: every change). The names are copied.
    pub subscribe_changes: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            databases: *const CairnStr,
            database_count: usize,
            tables: *const CairnStr,
            table_count: usize,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Since 1.10. Delivers every statement of every session that ran for at least
    /// `min_duration_micros` (0: all of them) to the plugin's `on_statement`, except the
    /// plugin's own SQL, replacing any earlier subscription; `u64::MAX` ends it.
    pub subscribe_statements: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            min_duration_micros: u64,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
}

/// The functions of a plugin. Only `create` is required.
#[repr(C)]
#[derive(Debug)]
pub struct CairnPluginVTable {
    /// `size_of::<CairnPluginVTable>()` as the plugin built it.
    pub size: u32,
    /// Zero.
    pub reserved: u32,
    /// Makes an instance from the plugin's config (TOML text, borrowed for the call). On
    /// success, stores the instance in `*instance` and returns [`CAIRN_OK`]; on failure
    /// writes the error to `output` and returns [`CAIRN_ERROR`].
    pub create: Option<
        unsafe extern "C" fn(
            host: *const CairnHost,
            config: CairnStr,
            instance: *mut *mut c_void,
            output: *const CairnOutput,
        ) -> CairnStatus,
    >,
    /// Starts the instance: register procedures, schedule jobs, subscribe to events.
    pub start: Option<unsafe extern "C" fn(instance: *mut c_void) -> CairnFuture>,
    /// Stops the instance. The host has already unregistered its procedures and jobs.
    pub stop: Option<unsafe extern "C" fn(instance: *mut c_void) -> CairnFuture>,
    /// Delivers one event the instance subscribed to. Events reach an instance one at a
    /// time, in order.
    pub on_event: Option<
        unsafe extern "C" fn(instance: *mut c_void, event: *const CairnEvent) -> CairnFuture,
    >,
    /// Releases the instance. Nothing of it is called afterwards.
    pub destroy: Option<unsafe extern "C" fn(instance: *mut c_void)>,
    /// Since 1.8. Delivers one committed transaction the instance subscribed to
    /// (`subscribe_changes`), borrowed for the call. Commits reach an instance one at a
    /// time, in order; the next is not delivered before this future is done.
    pub on_commit: Option<
        unsafe extern "C" fn(instance: *mut c_void, commit: *const CairnCommit) -> CairnFuture,
    >,
    /// Since 1.10. Delivers one statement the instance subscribed to
    /// (`subscribe_statements`), borrowed for the call; one at a time, in the order they
    /// ended.
    pub on_statement: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            statement: *const CairnStatement,
        ) -> CairnFuture,
    >,
}

/// What a plugin exports under the name [`CAIRN_PLUGIN_SYMBOL`]. The host reads the first five
/// fields (the header, which never changes within a major) before anything else, and runs no
/// plugin code unless they are right.
#[repr(C)]
#[derive(Debug)]
pub struct CairnPluginDescriptor {
    /// [`CAIRN_PLUGIN_MAGIC`].
    pub magic: u64,
    /// The ABI major version the plugin was built for.
    pub abi_major: u32,
    /// The ABI minor version the plugin was built for.
    pub abi_minor: u32,
    /// The oldest host minor the plugin works with (it needs what that minor added).
    pub min_host_minor: u32,
    /// `size_of::<CairnPluginDescriptor>()` as the plugin built it.
    pub size: u32,
    /// The plugin's name, `[a-z_][a-z0-9_]*`: the prefix of its procedures.
    pub name: CairnStr,
    /// The plugin's version, free text (semver recommended).
    pub version: CairnStr,
    /// One line saying what the plugin does.
    pub description: CairnStr,
    /// The plugin's functions.
    pub vtable: *const CairnPluginVTable,
}

/// The size of the descriptor header every descriptor of this major starts with.
pub const CAIRN_DESCRIPTOR_HEADER_SIZE: usize = 24;

impl CairnStr {
    /// The empty string.
    pub const EMPTY: CairnStr = CairnStr {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrows a Rust string. The view is valid as long as `s` is.
    pub const fn new(s: &str) -> CairnStr {
        CairnStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// Borrows bytes. The view is valid as long as `b` is.
    pub const fn from_bytes(b: &[u8]) -> CairnStr {
        CairnStr {
            ptr: b.as_ptr(),
            len: b.len(),
        }
    }
}

/// Whether a table whose writer declared `size` bytes contains the pointer-sized field that
/// starts at `offset`: how the reader of an older or newer table tells which functions it has.
pub const fn has_pointer_field(size: u32, offset: usize) -> bool {
    size as usize >= offset + std::mem::size_of::<usize>()
}
