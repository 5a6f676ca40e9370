/*
 * cairn_plugin.h — the Cairn plugin ABI, major version 1, for C.
 *
 * The same ABI as the Rust module `cairn_plugin_api::abi`; a test in plugin-api/tests
 * compiles this header and compares every size and offset with the Rust types, so the two
 * cannot drift apart.
 *
 * A plugin is a shared library exporting one data symbol, `cairn_plugin_v1`, of type
 * CairnPluginDescriptor. Rules:
 *  - Every table starts with its own size; fields are only appended, in a new minor version.
 *    Whoever reads a table treats fields beyond its size as absent.
 *  - Strings (CairnStr) and values passed into a call are borrowed for that call only.
 *  - Specs and columns passed to the host (register_procedure, schedule) are copied during
 *    the call: they may be freed or reused when it returns. Their `ctx` becomes the host's,
 *    released with `drop_ctx` when the procedure or job is unregistered (or refused).
 *  - A `const CairnOutput *output` parameter of a host function may be NULL: the result is
 *    then discarded. Outputs the host passes to the plugin are never NULL.
 *  - Memory is freed by the side that allocated it.
 *  - Futures may be polled from any thread, never concurrently; `drop` is called once.
 *  - A plugin runs inside the server process: it is trusted code.
 */
#ifndef CAIRN_PLUGIN_H
#define CAIRN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_ABI_MAJOR 1u
#define CAIRN_ABI_MINOR 10u
/* "CAIRNPLG" read as a little-endian 64-bit integer. */
#define CAIRN_PLUGIN_MAGIC 0x474C504E52494143ull
#define CAIRN_PLUGIN_SYMBOL "cairn_plugin_v1"
#define CAIRN_DESCRIPTOR_HEADER_SIZE 24u

typedef uint32_t CairnStatus;
#define CAIRN_OK 0u
#define CAIRN_ERROR 1u

typedef uint32_t CairnPoll;
#define CAIRN_PENDING 0u
#define CAIRN_READY 1u

typedef uint32_t CairnErrorCode;
#define CAIRN_ERROR_FAILED 1u
#define CAIRN_ERROR_PANICKED 2u
#define CAIRN_ERROR_INVALID_ARGUMENT 3u
#define CAIRN_ERROR_UNSUPPORTED 4u
#define CAIRN_ERROR_REFUSED 5u

typedef uint32_t CairnValueKind;
#define CAIRN_VALUE_NULL 0u
#define CAIRN_VALUE_INTEGER 1u
#define CAIRN_VALUE_REAL 2u
#define CAIRN_VALUE_TEXT 3u
#define CAIRN_VALUE_BLOB 4u

typedef uint32_t CairnLogLevel;
#define CAIRN_LOG_ERROR 1u
#define CAIRN_LOG_WARN 2u
#define CAIRN_LOG_INFO 3u
#define CAIRN_LOG_DEBUG 4u
#define CAIRN_LOG_TRACE 5u

typedef uint32_t CairnEventKind;
#define CAIRN_EVENT_STARTUP 1u
#define CAIRN_EVENT_SHUTDOWN 2u
#define CAIRN_EVENT_DATABASE_CREATED 3u
#define CAIRN_EVENT_DATABASE_DROPPED 4u
#define CAIRN_EVENT_BACKUP_STARTED 5u
#define CAIRN_EVENT_BACKUP_FINISHED 6u
#define CAIRN_EVENT_BACKUP_FAILED 7u
/* Since 1.2. */
#define CAIRN_EVENT_ALERT 8u

/* A borrowed run of bytes; not NUL-terminated. */
typedef struct CairnStr {
    const uint8_t *ptr;
    size_t len;
} CairnStr;

/* One SQL value; `kind` says which field holds it. */
typedef struct CairnValue {
    CairnValueKind kind;
    uint32_t reserved;
    int64_t integer;
    double real;
    CairnStr bytes; /* text (UTF-8) or blob */
} CairnValue;

/* A procedure argument; `name` is empty for a positional one. CALL p.f(1, 'x', k => 2)
 * passes literals only: positional arguments first, in order, then named ones. Both the
 * array and its strings are borrowed for the `call` function: copy what the future needs. */
typedef struct CairnArg {
    CairnStr name;
    CairnValue value;
} CairnArg;

/* A declared result column. */
typedef struct CairnColumn {
    CairnStr name;
    CairnValueKind kind;
    uint32_t reserved;
} CairnColumn;

/* Where a call or a future writes its result; owned by the caller. */
typedef struct CairnOutput {
    uint32_t size;
    uint32_t reserved;
    void *ctx;
    void (*set_error)(void *ctx, CairnErrorCode code, CairnStr message);
    void (*set_columns)(void *ctx, const CairnColumn *columns, size_t count);
    void (*push_row)(void *ctx, const CairnValue *values, size_t count);
    void (*set_message)(void *ctx, CairnStr message);
} CairnOutput;

typedef struct CairnWakerVTable CairnWakerVTable;

/* How a future asks to be polled again; borrowed for a poll, clone it to keep it. */
typedef struct CairnWaker {
    const void *data;
    const CairnWakerVTable *vtable;
} CairnWaker;

struct CairnWakerVTable {
    CairnWaker (*clone)(const void *data);
    void (*wake)(const void *data);
    void (*wake_by_ref)(const void *data);
    void (*drop)(const void *data);
};

/* An asynchronous operation. A C plugin that finishes at once returns a future whose
 * `poll` writes the result and returns CAIRN_READY on the first call. */
typedef struct CairnFuture {
    void *state;
    CairnPoll (*poll)(void *state, const CairnWaker *waker, const CairnOutput *output);
    void (*drop)(void *state);
} CairnFuture;

/* A server event, borrowed for the call. */
typedef struct CairnEvent {
    uint32_t size;
    CairnEventKind kind;
    CairnStr database;
    CairnStr detail;
} CairnEvent;

/* A procedure, callable as CALL <plugin>.<name>(args...). */
typedef struct CairnProcedureSpec {
    uint32_t size;
    uint32_t reserved;
    CairnStr name;
    CairnStr description;
    const CairnColumn *columns;
    size_t column_count;
    void *ctx;
    CairnFuture (*call)(void *ctx, const CairnArg *args, size_t count);
    void (*drop_ctx)(void *ctx);
} CairnProcedureSpec;

/* Since 1.6: CairnFunctionSpec.flags. The same arguments always give the same result. */
#define CAIRN_FUNCTION_DETERMINISTIC 1u

/* Since 1.6. A scalar SQL function, callable from any statement as name(args...). `call` gets
 * `count` values borrowed for the call, writes one row of one value (or an error) to `output`
 * and returns CAIRN_OK or CAIRN_ERROR; it runs on statement threads, concurrently, and must not
 * block for long. arg_count: 0 to 127, or -1 for any. The host owns `ctx` once registered; a
 * call begun before an unload may end after `destroy`, so keep what `call` needs in `ctx`.
 * Plugin functions are for direct calls only (not in indexes, generated columns, CHECK
 * constraints, triggers or views). */
typedef struct CairnFunctionSpec {
    uint32_t size;
    uint32_t flags;
    CairnStr name;
    CairnStr description;
    int32_t arg_count;
    uint32_t reserved;
    void *ctx;
    CairnStatus (*call)(void *ctx, const CairnValue *args, size_t count,
                        const CairnOutput *output);
    void (*drop_ctx)(void *ctx);
} CairnFunctionSpec;

/* Since 1.6. An aggregate SQL function: per group `start` makes a state (any pointer),
 * `step` adds one row's values to it, `finish` writes one row of one value (or an error) and
 * releases it, also when it fails; `drop_state` releases a state that will not be finished
 * (never one that was). */
typedef struct CairnAggregateSpec {
    uint32_t size;
    uint32_t flags;
    CairnStr name;
    CairnStr description;
    int32_t arg_count;
    uint32_t reserved;
    void *ctx;
    CairnStatus (*start)(void *ctx, void **state, const CairnOutput *output);
    CairnStatus (*step)(void *ctx, void *state, const CairnValue *args, size_t count,
                        const CairnOutput *output);
    CairnStatus (*finish)(void *ctx, void *state, const CairnOutput *output);
    void (*drop_state)(void *ctx, void *state);
    void (*drop_ctx)(void *ctx);
    /* Since 1.9, optional, both or neither: a window function too (name(x) OVER (...)).
     * `value` writes the current value (one row of one value) and keeps the state; `inverse`
     * takes one row's values, which `step` added earlier, back out of it. A 1.6 to 1.8 host
     * reads the spec up to drop_ctx and registers a plain aggregate. */
    CairnStatus (*value)(void *ctx, void *state, const CairnOutput *output);
    CairnStatus (*inverse)(void *ctx, void *state, const CairnValue *args, size_t count,
                           const CairnOutput *output);
} CairnAggregateSpec;

/* Since 1.7: the most rows a table function's `next` may write in one call. */
#define CAIRN_TABLE_BATCH_MAX 1024u

/* Since 1.7. A table function: SELECT * FROM name(args...) on any database, in joins too.
 * The arguments are hidden columns after the result columns (a call may leave out trailing
 * ones: `open` then gets fewer). Per scan `open` stores a state (any pointer) in `*rows`;
 * `next` writes the next 1 to CAIRN_TABLE_BATCH_MAX rows (each matching `columns`), or none
 * at the end, and returns CAIRN_OK (or an error); `close` releases the state, once per
 * successful `open`, finished or not. A scan is used by one thread at a time. `flags`: 0;
 * at least one column; at most 64 arguments. */
typedef struct CairnTableFunctionSpec {
    uint32_t size;
    uint32_t flags;
    CairnStr name;
    CairnStr description;
    const CairnColumn *columns;
    size_t column_count;
    const CairnColumn *arguments;
    size_t argument_count;
    void *ctx;
    CairnStatus (*open)(void *ctx, const CairnValue *args, size_t count, void **rows,
                        const CairnOutput *output);
    CairnStatus (*next)(void *ctx, void *rows, const CairnOutput *output);
    void (*close)(void *ctx, void *rows);
    void (*drop_ctx)(void *ctx);
} CairnTableFunctionSpec;

/* Since 1.8: what a CairnChange did to its row. */
typedef uint32_t CairnChangeOp;
#define CAIRN_CHANGE_INSERT 1u
#define CAIRN_CHANGE_UPDATE 2u
#define CAIRN_CHANGE_DELETE 3u

/* Since 1.8. One row a committed transaction changed: its table, op and rowid (before a
 * delete, after an insert or update). */
typedef struct CairnChange {
    CairnStr table;
    CairnChangeOp op;
    uint32_t reserved;
    int64_t rowid;
} CairnChange;

/* Since 1.8. One committed transaction of a database, delivered to on_commit once durable,
 * in the database's commit order, one at a time; borrowed for the call. `sequence` numbers the
 * database's commits since the server started (numbers of commits not delivered are skipped).
 * `missed`: commits dropped just before this one because the plugin's queue was full (a
 * report with no commit after it has no changes, an empty database and sequence 0).
 * `truncated`: changes of this commit not listed (more than one commit carries). */
typedef struct CairnCommit {
    uint32_t size;
    uint32_t reserved;
    CairnStr database;
    uint64_t sequence;
    const CairnChange *changes;
    size_t change_count;
    uint64_t missed;
    uint64_t truncated;
} CairnCommit;

/* Since 1.10. One statement a session ran, delivered to on_statement after it ended, one at
 * a time, in the order they ended; borrowed for the call. `failed`: 0, or 1 with `sqlstate`.
 * `text`: as sent, never parameter values, at most 4096 bytes. `missed`: statements dropped
 * just before this one (a full queue); a report with none after them has an empty text. */
typedef struct CairnStatement {
    uint32_t size;
    uint32_t failed;
    CairnStr database;
    CairnStr user;
    CairnStr text;
    CairnStr sqlstate;
    int64_t started_at_micros;
    uint64_t duration_micros;
    uint64_t rows;
    uint64_t missed;
} CairnStatement;

/* A job run on a cron schedule (UTC; 5 fields, or 6 with seconds first). */
typedef struct CairnJobSpec {
    uint32_t size;
    uint32_t reserved;
    CairnStr name;
    CairnStr cron;
    void *ctx;
    CairnFuture (*run)(void *ctx);
    void (*drop_ctx)(void *ctx);
} CairnJobSpec;

/* The server's services, valid for as long as the plugin is loaded. */
typedef struct CairnHost CairnHost;
struct CairnHost {
    uint32_t size;
    uint32_t abi_minor;
    void *ctx;
    CairnLogLevel max_log_level;
    uint32_t reserved;
    void (*log)(const CairnHost *host, CairnLogLevel level, CairnStr target, CairnStr message);
    CairnStatus (*list_databases)(const CairnHost *host, const CairnOutput *output);
    CairnFuture (*execute_sql)(const CairnHost *host, CairnStr database, CairnStr sql,
                               const CairnValue *params, size_t param_count);
    CairnStatus (*register_procedure)(const CairnHost *host, const CairnProcedureSpec *spec,
                                      const CairnOutput *output);
    /* `mask` has bit (1 << kind) set for each CairnEventKind to deliver (bit 0 is unused);
     * it replaces any earlier subscription. */
    CairnStatus (*subscribe)(const CairnHost *host, uint64_t mask);
    CairnStatus (*schedule)(const CairnHost *host, const CairnJobSpec *spec,
                            const CairnOutput *output);
    CairnFuture (*sleep)(const CairnHost *host, uint64_t millis);
    /* Since 1.1: check `size` before calling (a 1.0 host's table ends above). */
    CairnFuture (*backup_database)(const CairnHost *host, CairnStr database, CairnStr path,
                                   const CairnArg *options, size_t option_count);
    CairnFuture (*verify_archive)(const CairnHost *host, CairnStr path);
    CairnStatus (*list_backups)(const CairnHost *host, CairnStr database, uint64_t limit,
                                const CairnOutput *output);
    /* Since 1.2. */
    CairnStatus (*state_directory)(const CairnHost *host, const CairnOutput *output);
    CairnStatus (*archive_directory)(const CairnHost *host, CairnStr path,
                                     const CairnOutput *output);
    CairnStatus (*raise_alert)(const CairnHost *host, CairnStr database, CairnStr message,
                               const CairnOutput *output);
    /* Since 1.3. `location` is a directory by the backup path rules or `NAME:prefix` in a
     * destination; one row per archive or export there: location, database, kind,
     * created_at, bytes, problem (NULL when readable). */
    CairnFuture (*list_archives)(const CairnHost *host, CairnStr location);
    /* Since 1.3. Deletes the `.zip` or `.json.gz` at `location`; one row: deleted (1 or 0). */
    CairnFuture (*delete_archive)(const CairnHost *host, CairnStr location);
    /* Since 1.4. Sets the plugin's gauge `name` (an identifier) for `labels` (at most 8;
     * name: an identifier, not "plugin" nor starting "__"; value: text) to `value`; NAN
     * removes the series. Help and label values: at most 256 bytes, no control characters,
     * quotes or backslashes. At most 1000 series per plugin. Served at /metrics as
     * cairn_plugin_<plugin>_<name> until the plugin is unloaded or reloaded. */
    CairnStatus (*set_gauge)(const CairnHost *host, CairnStr name, CairnStr help,
                             const CairnArg *labels, size_t label_count, double value,
                             const CairnOutput *output);
    /* Since 1.5. A restore drill of the archive at `location`, which must be of `database`:
     * restored into a scratch file outside the catalog, integrity-checked, every table's rows
     * compared with the counts its manifest recorded, the scratch file removed; recorded in
     * the backup history as kind "drill". One row: database, location, created_at, tables,
     * rows, counted (1 when the manifest recorded row counts). */
    CairnFuture (*drill_archive)(const CairnHost *host, CairnStr database, CairnStr location);
    /* Since 1.6. Registers a scalar SQL function for every session's connection until the
     * plugin is unloaded or replaced (later calls are an error naming it). On failure
     * spec->ctx is released with spec->drop_ctx and the reason written to `output`. */
    CairnStatus (*register_function)(const CairnHost *host, const CairnFunctionSpec *spec,
                                     const CairnOutput *output);
    /* Since 1.6. Registers an aggregate SQL function, as register_function a scalar one. */
    CairnStatus (*register_aggregate)(const CairnHost *host, const CairnAggregateSpec *spec,
                                      const CairnOutput *output);
    /* Since 1.7. Registers a table function, as register_function a scalar one. */
    CairnStatus (*register_table_function)(const CairnHost *host,
                                           const CairnTableFunctionSpec *spec,
                                           const CairnOutput *output);
    /* Since 1.8. Delivers the row changes of committed transactions of the databases named
     * (none: every database) and the tables named (none: every table) to on_commit,
     * replacing any earlier subscription. The names are copied. */
    CairnStatus (*subscribe_changes)(const CairnHost *host, const CairnStr *databases,
                                     size_t database_count, const CairnStr *tables,
                                     size_t table_count, const CairnOutput *output);
    /* Since 1.10. Delivers every session's statements that ran for at least
     * `min_duration_micros` (0: all) to on_statement, except the plugin's own SQL; replaces
     * an earlier subscription; UINT64_MAX ends it. */
    CairnStatus (*subscribe_statements)(const CairnHost *host, uint64_t min_duration_micros,
                                        const CairnOutput *output);
};

/* The plugin's functions; only `create` is required. */
typedef struct CairnPluginVTable {
    uint32_t size;
    uint32_t reserved;
    CairnStatus (*create)(const CairnHost *host, CairnStr config, void **instance,
                          const CairnOutput *output);
    CairnFuture (*start)(void *instance);
    CairnFuture (*stop)(void *instance);
    CairnFuture (*on_event)(void *instance, const CairnEvent *event);
    void (*destroy)(void *instance);
    /* Since 1.8. One committed transaction the instance subscribed to (subscribe_changes). */
    CairnFuture (*on_commit)(void *instance, const CairnCommit *commit);
    /* Since 1.10. One statement the instance subscribed to (subscribe_statements). */
    CairnFuture (*on_statement)(void *instance, const CairnStatement *statement);
} CairnPluginVTable;

/* What a plugin exports as `cairn_plugin_v1`. The first five fields are the header. */
typedef struct CairnPluginDescriptor {
    uint64_t magic;
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t min_host_minor;
    uint32_t size;
    CairnStr name;
    CairnStr version;
    CairnStr description;
    const CairnPluginVTable *vtable;
} CairnPluginDescriptor;

/* A string literal as a CairnStr. */
#define CAIRN_STR(literal) ((CairnStr){(const uint8_t *)(literal), sizeof(literal) - 1})

#if defined(__GNUC__) || defined(__clang__)
#define CAIRN_EXPORT __attribute__((visibility("default")))
#else
#define CAIRN_EXPORT
#endif

/* Layout on the 64-bit targets Cairn supports; the Rust side asserts the same numbers. */
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
_Static_assert(sizeof(CairnStr) == 16, "CairnStr layout");
_Static_assert(sizeof(CairnValue) == 40, "CairnValue layout");
_Static_assert(offsetof(CairnValue, bytes) == 24, "CairnValue layout");
_Static_assert(sizeof(CairnArg) == 56, "CairnArg layout");
_Static_assert(sizeof(CairnColumn) == 24, "CairnColumn layout");
_Static_assert(sizeof(CairnOutput) == 48, "CairnOutput layout");
_Static_assert(sizeof(CairnWaker) == 16, "CairnWaker layout");
_Static_assert(sizeof(CairnWakerVTable) == 32, "CairnWakerVTable layout");
_Static_assert(sizeof(CairnFuture) == 24, "CairnFuture layout");
_Static_assert(sizeof(CairnEvent) == 40, "CairnEvent layout");
_Static_assert(sizeof(CairnProcedureSpec) == 80, "CairnProcedureSpec layout");
_Static_assert(sizeof(CairnJobSpec) == 64, "CairnJobSpec layout");
_Static_assert(sizeof(CairnFunctionSpec) == 72, "CairnFunctionSpec layout");
_Static_assert(sizeof(CairnAggregateSpec) == 112, "CairnAggregateSpec layout");
_Static_assert(sizeof(CairnTableFunctionSpec) == 112, "CairnTableFunctionSpec layout");
_Static_assert(sizeof(CairnChange) == 32, "CairnChange layout");
_Static_assert(sizeof(CairnCommit) == 64, "CairnCommit layout");
_Static_assert(sizeof(CairnStatement) == 104, "CairnStatement layout");
_Static_assert(sizeof(CairnHost) == 200, "CairnHost layout");
_Static_assert(offsetof(CairnHost, log) == 24, "CairnHost layout");
_Static_assert(sizeof(CairnPluginVTable) == 64, "CairnPluginVTable layout");
_Static_assert(offsetof(CairnPluginDescriptor, name) == 24, "CairnPluginDescriptor layout");
_Static_assert(sizeof(CairnPluginDescriptor) == 80, "CairnPluginDescriptor layout");
#endif

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_PLUGIN_H */
