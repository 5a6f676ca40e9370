/*
 * `adder`: an example Cairn plugin in plain C, against cairn_plugin.h alone.
 *
 *   CALL adder.add(2, 40)   -> one row, sum = 42
 *   SELECT adder_add(2, 40)  -> 42, a scalar SQL function (since ABI 1.6), in any statement
 *   SELECT n FROM adder_range(3) -> 1, 2, 3: a table function (since ABI 1.7), in batches
 *
 * Build (any C compiler; the server loads it from its plugin directory):
 *   cc -shared -fPIC -O2 -I ../../plugin-api/include adder.c -o libadder.so
 */
#include <stddef.h>
#include <stdlib.h>

#include "cairn_plugin.h"

/* The tests build two versions of this plugin to upgrade one into the other. */
#ifndef ADDER_VERSION
#define ADDER_VERSION "1.0.0"
#endif

typedef struct Instance {
    const CairnHost *host;
} Instance;

/* One call of `add`: the arguments are copied here, because they are only borrowed. */
typedef struct AddCall {
    int valid;
    int64_t a, b;
} AddCall;

static CairnPoll add_poll(void *state, const CairnWaker *waker, const CairnOutput *out) {
    (void)waker;
    AddCall *call = state;
    if (!call->valid) {
        out->set_error(out->ctx, CAIRN_ERROR_INVALID_ARGUMENT,
                       CAIRN_STR("add takes two integers, as in CALL adder.add(2, 40)"));
        return CAIRN_READY;
    }
    CairnValue sum = {0};
    sum.kind = CAIRN_VALUE_INTEGER;
    if (__builtin_add_overflow(call->a, call->b, &sum.integer)) {
        out->set_error(out->ctx, CAIRN_ERROR_INVALID_ARGUMENT, CAIRN_STR("add: integer overflow"));
        return CAIRN_READY;
    }
    out->push_row(out->ctx, &sum, 1);
    return CAIRN_READY;
}

static void free_state(void *state) { free(state); }

static CairnFuture add_call(void *ctx, const CairnArg *args, size_t count) {
    (void)ctx;
    AddCall *call = calloc(1, sizeof *call);
    if (call && count == 2 && args[0].value.kind == CAIRN_VALUE_INTEGER &&
        args[1].value.kind == CAIRN_VALUE_INTEGER) {
        call->valid = 1;
        call->a = args[0].value.integer;
        call->b = args[1].value.integer;
    }
    CairnFuture future = {call, add_poll, free_state};
    return future;
}

/* The scalar function `adder_add(a, b)`: called once per row, on the statement's thread. */
static CairnStatus adder_add(void *ctx, const CairnValue *args, size_t count,
                             const CairnOutput *out) {
    (void)ctx;
    CairnValue sum = {0};
    if (count != 2) {
        out->set_error(out->ctx, CAIRN_ERROR_INVALID_ARGUMENT, CAIRN_STR("adder_add takes two integers"));
        return CAIRN_ERROR;
    }
    if (args[0].kind == CAIRN_VALUE_NULL || args[1].kind == CAIRN_VALUE_NULL) {
        sum.kind = CAIRN_VALUE_NULL; /* as SQL's own + does */
    } else if (args[0].kind == CAIRN_VALUE_INTEGER && args[1].kind == CAIRN_VALUE_INTEGER) {
        sum.kind = CAIRN_VALUE_INTEGER;
        if (__builtin_add_overflow(args[0].integer, args[1].integer, &sum.integer)) {
            out->set_error(out->ctx, CAIRN_ERROR_INVALID_ARGUMENT, CAIRN_STR("adder_add: integer overflow"));
            return CAIRN_ERROR;
        }
    } else {
        out->set_error(out->ctx, CAIRN_ERROR_INVALID_ARGUMENT,
                       CAIRN_STR("adder_add takes two integers, as in SELECT adder_add(2, 40)"));
        return CAIRN_ERROR;
    }
    out->push_row(out->ctx, &sum, 1);
    return CAIRN_OK;
}

/* The table function `adder_range(count)`: one scan's state is the next number and the last. */
typedef struct Range {
    int64_t next;
    int64_t last;
} Range;

static CairnStatus range_open(void *ctx, const CairnValue *args, size_t count, void **rows,
                              const CairnOutput *out) {
    (void)ctx;
    if (count != 1 || args[0].kind != CAIRN_VALUE_INTEGER) {
        out->set_error(out->ctx, CAIRN_ERROR_INVALID_ARGUMENT,
                       CAIRN_STR("adder_range takes one integer, as in SELECT * FROM adder_range(3)"));
        return CAIRN_ERROR;
    }
    Range *range = malloc(sizeof *range);
    if (!range) {
        out->set_error(out->ctx, CAIRN_ERROR_FAILED, CAIRN_STR("adder_range: out of memory"));
        return CAIRN_ERROR;
    }
    range->next = 1;
    range->last = args[0].integer;
    *rows = range;
    return CAIRN_OK;
}

/* Up to 100 rows a call; none once the range is done. */
static CairnStatus range_next(void *ctx, void *rows, const CairnOutput *out) {
    (void)ctx;
    Range *range = rows;
    for (int i = 0; i < 100 && range->next <= range->last; i++) {
        CairnValue n = {0};
        n.kind = CAIRN_VALUE_INTEGER;
        n.integer = range->next;
        out->push_row(out->ctx, &n, 1);
        if (range->next == range->last) {
            range->last = range->next - 1; /* done, without overflowing past INT64_MAX */
        } else {
            range->next++;
        }
    }
    return CAIRN_OK;
}

static void range_close(void *ctx, void *rows) {
    (void)ctx;
    free(rows);
}

/* A future that is done at once, with nothing to report. */
static CairnPoll done_poll(void *state, const CairnWaker *waker, const CairnOutput *out) {
    (void)state; (void)waker; (void)out;
    return CAIRN_READY;
}

static void no_state(void *state) { (void)state; }

static CairnStatus create(const CairnHost *host, CairnStr config, void **instance,
                          const CairnOutput *out) {
    (void)config; (void)out;
    Instance *self = calloc(1, sizeof *self);
    if (!self) return CAIRN_ERROR;
    self->host = host;
    *instance = self;
    return CAIRN_OK;
}

static CairnFuture start(void *instance) {
    Instance *self = instance;
    const CairnHost *host = self->host;
    CairnColumn sum = {CAIRN_STR("sum"), CAIRN_VALUE_INTEGER, 0};
    CairnProcedureSpec spec = {0};
    spec.size = sizeof spec;
    spec.name = CAIRN_STR("add");
    spec.description = CAIRN_STR("Adds two integers");
    spec.columns = &sum;
    spec.column_count = 1;
    spec.call = add_call;
    host->register_procedure(host, &spec, NULL);
    host->log(host, CAIRN_LOG_INFO, CAIRN_STR("adder"), CAIRN_STR("C plugin started; try CALL adder.add(2, 40)"));
    /* Since 1.4, on /metrics as cairn_plugin_adder_version_info{version="…"} 1. A host's
     * table ends at its `size`: an older server has no `set_gauge`. */
    if (host->size >= offsetof(CairnHost, set_gauge) + sizeof host->set_gauge && host->set_gauge) {
        CairnArg version = {CAIRN_STR("version"), {0}};
        version.value.kind = CAIRN_VALUE_TEXT;
        version.value.bytes = CAIRN_STR(ADDER_VERSION);
        host->set_gauge(host, CAIRN_STR("version_info"), CAIRN_STR("The running version"),
                        &version, 1, 1.0, NULL);
    }
    /* Since 1.6: a scalar SQL function. An older server's table has no `register_function`. */
    if (host->size >= offsetof(CairnHost, register_function) + sizeof host->register_function &&
        host->register_function) {
        CairnFunctionSpec function = {0};
        function.size = sizeof function;
        function.flags = CAIRN_FUNCTION_DETERMINISTIC;
        function.name = CAIRN_STR("adder_add");
        function.description = CAIRN_STR("Adds two integers");
        function.arg_count = 2;
        function.call = adder_add;
        host->register_function(host, &function, NULL);
    }
    /* Since 1.7: a table function. */
    if (host->size >= offsetof(CairnHost, register_table_function) +
                          sizeof host->register_table_function &&
        host->register_table_function) {
        CairnColumn n = {CAIRN_STR("n"), CAIRN_VALUE_INTEGER, 0};
        CairnColumn count = {CAIRN_STR("count"), CAIRN_VALUE_INTEGER, 0};
        CairnTableFunctionSpec table = {0};
        table.size = sizeof table;
        table.name = CAIRN_STR("adder_range");
        table.description = CAIRN_STR("The integers from 1 to count");
        table.columns = &n;
        table.column_count = 1;
        table.arguments = &count;
        table.argument_count = 1;
        table.open = range_open;
        table.next = range_next;
        table.close = range_close;
        host->register_table_function(host, &table, NULL);
    }
    CairnFuture done = {NULL, done_poll, no_state};
    return done;
}

static void destroy(void *instance) { free(instance); }

static const CairnPluginVTable vtable = {
    .size = sizeof(CairnPluginVTable),
    .create = create,
    .start = start,
    .destroy = destroy,
};

CAIRN_EXPORT const CairnPluginDescriptor cairn_plugin_v1 = {
    .magic = CAIRN_PLUGIN_MAGIC,
    .abi_major = CAIRN_ABI_MAJOR,
    .abi_minor = CAIRN_ABI_MINOR,
    .min_host_minor = 0,
    .size = sizeof(CairnPluginDescriptor),
    .name = {(const uint8_t *)"adder", 5},
    .version = {(const uint8_t *)ADDER_VERSION, sizeof(ADDER_VERSION) - 1},
    .description = {(const uint8_t *)"Example plugin in C: adds two integers", 38},
    .vtable = &vtable,
};
