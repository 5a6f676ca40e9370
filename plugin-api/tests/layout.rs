//! The C header and the Rust ABI types describe the same memory: every type's size and
//! alignment and every field's offset are computed on the Rust side, then a C program
//! generated from the same list is compiled against `include/cairn_plugin.h` and prints what
//! the C compiler computes. Any drift (a field missing, moved or resized on either side)
//! fails here, and CI runs this test.

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use cairn_plugin_api::abi::*;

/// (type, size, align, [(field, offset)])
type Layout = (&'static str, usize, usize, Vec<(&'static str, usize)>);

macro_rules! layout {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        (
            stringify!($ty),
            size_of::<$ty>(),
            align_of::<$ty>(),
            vec![$((stringify!($field), offset_of!($ty, $field))),*],
        )
    };
}

fn rust_layouts() -> Vec<Layout> {
    vec![
        layout!(CairnStr { ptr, len }),
        layout!(CairnValue {
            kind,
            reserved,
            integer,
            real,
            bytes
        }),
        layout!(CairnArg { name, value }),
        layout!(CairnColumn {
            name,
            kind,
            reserved
        }),
        layout!(CairnOutput {
            size,
            reserved,
            ctx,
            set_error,
            set_columns,
            push_row,
            set_message
        }),
        layout!(CairnWaker { data, vtable }),
        layout!(CairnWakerVTable {
            clone,
            wake,
            wake_by_ref,
            drop
        }),
        layout!(CairnFuture { state, poll, drop }),
        layout!(CairnEvent {
            size,
            kind,
            database,
            detail
        }),
        layout!(CairnProcedureSpec {
            size,
            reserved,
            name,
            description,
            columns,
            column_count,
            ctx,
            call,
            drop_ctx
        }),
        layout!(CairnFunctionSpec {
            size,
            flags,
            name,
            description,
            arg_count,
            reserved,
            ctx,
            call,
            drop_ctx
        }),
        layout!(CairnAggregateSpec {
            size,
            flags,
            name,
            description,
            arg_count,
            reserved,
            ctx,
            start,
            step,
            finish,
            drop_state,
            drop_ctx,
            value,
            inverse
        }),
        layout!(CairnTableFunctionSpec {
            size,
            flags,
            name,
            description,
            columns,
            column_count,
            arguments,
            argument_count,
            ctx,
            open,
            next,
            close,
            drop_ctx
        }),
        layout!(CairnChange {
            table,
            op,
            reserved,
            rowid
        }),
        layout!(CairnCommit {
            size,
            reserved,
            database,
            sequence,
            changes,
            change_count,
            missed,
            truncated
        }),
        layout!(CairnStatement {
            size,
            failed,
            database,
            user,
            text,
            sqlstate,
            started_at_micros,
            duration_micros,
            rows,
            missed
        }),
        layout!(CairnJobSpec {
            size,
            reserved,
            name,
            cron,
            ctx,
            run,
            drop_ctx
        }),
        layout!(CairnHost {
            size,
            abi_minor,
            ctx,
            max_log_level,
            reserved,
            log,
            list_databases,
            execute_sql,
            register_procedure,
            subscribe,
            schedule,
            sleep,
            backup_database,
            verify_archive,
            list_backups,
            state_directory,
            archive_directory,
            raise_alert,
            list_archives,
            delete_archive,
            set_gauge,
            drill_archive,
            register_function,
            register_aggregate,
            register_table_function,
            subscribe_changes,
            subscribe_statements
        }),
        layout!(CairnPluginVTable {
            size,
            reserved,
            create,
            start,
            stop,
            on_event,
            destroy,
            on_commit,
            on_statement
        }),
        layout!(CairnPluginDescriptor {
            magic,
            abi_major,
            abi_minor,
            min_host_minor,
            size,
            name,
            version,
            description,
            vtable
        }),
    ]
}

fn rust_constants() -> Vec<(&'static str, u64)> {
    macro_rules! constants {
        ($($name:ident),* $(,)?) => { vec![$((stringify!($name), $name as u64)),*] };
    }
    constants![
        CAIRN_ABI_MAJOR,
        CAIRN_ABI_MINOR,
        CAIRN_PLUGIN_MAGIC,
        CAIRN_DESCRIPTOR_HEADER_SIZE,
        CAIRN_OK,
        CAIRN_ERROR,
        CAIRN_PENDING,
        CAIRN_READY,
        CAIRN_ERROR_FAILED,
        CAIRN_ERROR_PANICKED,
        CAIRN_ERROR_INVALID_ARGUMENT,
        CAIRN_ERROR_UNSUPPORTED,
        CAIRN_ERROR_REFUSED,
        CAIRN_FUNCTION_DETERMINISTIC,
        CAIRN_TABLE_BATCH_MAX,
        CAIRN_CHANGE_INSERT,
        CAIRN_CHANGE_UPDATE,
        CAIRN_CHANGE_DELETE,
        CAIRN_VALUE_NULL,
        CAIRN_VALUE_INTEGER,
        CAIRN_VALUE_REAL,
        CAIRN_VALUE_TEXT,
        CAIRN_VALUE_BLOB,
        CAIRN_LOG_ERROR,
        CAIRN_LOG_WARN,
        CAIRN_LOG_INFO,
        CAIRN_LOG_DEBUG,
        CAIRN_LOG_TRACE,
        CAIRN_EVENT_STARTUP,
        CAIRN_EVENT_SHUTDOWN,
        CAIRN_EVENT_DATABASE_CREATED,
        CAIRN_EVENT_DATABASE_DROPPED,
        CAIRN_EVENT_BACKUP_STARTED,
        CAIRN_EVENT_BACKUP_FINISHED,
        CAIRN_EVENT_BACKUP_FAILED,
        CAIRN_EVENT_ALERT,
    ]
}

fn render(layouts: &[Layout], constants: &[(&str, u64)]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (ty, size, align, fields) in layouts {
        out.insert(format!("{ty} size"), *size as u64);
        out.insert(format!("{ty} align"), *align as u64);
        for (field, offset) in fields {
            out.insert(format!("{ty}.{field} offset"), *offset as u64);
        }
    }
    for (name, value) in constants {
        out.insert(name.to_string(), *value);
    }
    out
}

fn c_program(layouts: &[Layout], constants: &[(&str, u64)]) -> String {
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"cairn_plugin.h\"\nint main(void) {\n",
    );
    for (ty, _, _, fields) in layouts {
        c += &format!(
            "  printf(\"{ty} size %llu\\n\", (unsigned long long)sizeof({ty}));\n  printf(\"{ty} align %llu\\n\", (unsigned long long)_Alignof({ty}));\n"
        );
        for (field, _) in fields {
            c += &format!(
                "  printf(\"{ty}.{field} offset %llu\\n\", (unsigned long long)offsetof({ty}, {field}));\n"
            );
        }
    }
    for (name, _) in constants {
        c += &format!("  printf(\"{name} %llu\\n\", (unsigned long long)({name}));\n");
    }
    c += "  return 0;\n}\n";
    c
}

#[test]
fn rust_layout_is_the_documented_one() {
    // The numbers the header's _Static_asserts also check.
    assert_eq!(size_of::<CairnStr>(), 16);
    assert_eq!(size_of::<CairnValue>(), 40);
    assert_eq!(size_of::<CairnOutput>(), 48);
    assert_eq!(size_of::<CairnHost>(), 200);
    assert_eq!(size_of::<CairnStatement>(), 104);
    assert_eq!(size_of::<CairnCommit>(), 64);
    assert_eq!(size_of::<CairnChange>(), 32);
    assert_eq!(size_of::<CairnTableFunctionSpec>(), 112);
    assert_eq!(size_of::<CairnAggregateSpec>(), 112);
    assert_eq!(size_of::<CairnFunctionSpec>(), 72);
    assert_eq!(size_of::<CairnPluginVTable>(), 64);
    assert_eq!(size_of::<CairnPluginDescriptor>(), 80);
    assert_eq!(
        offset_of!(CairnPluginDescriptor, name),
        CAIRN_DESCRIPTOR_HEADER_SIZE
    );
    assert_eq!(CAIRN_PLUGIN_MAGIC.to_le_bytes(), *b"CAIRNPLG");
    assert_eq!(
        CAIRN_PLUGIN_SYMBOL,
        format!("cairn_plugin_v{CAIRN_ABI_MAJOR}")
    );
}

#[test]
fn c_header_matches_rust_types() {
    let layouts = rust_layouts();
    let constants = rust_constants();
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("layout.c");
    let binary = dir.path().join("layout");
    std::fs::write(&source, c_program(&layouts, &constants)).expect("write C source");
    let include = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let compiled = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&include)
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .unwrap_or_else(|e| panic!("running the C compiler `{cc}` failed ({e}); install gcc"));
    assert!(
        compiled.status.success(),
        "the header does not compile with the Rust field list:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let run = Command::new(&binary).output().expect("run layout program");
    let c: BTreeMap<String, u64> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect();
    let rust = render(&layouts, &constants);
    let drift: Vec<String> = rust
        .iter()
        .filter(|(k, v)| c.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: Rust {v}, C {:?}", c.get(k)))
        .collect();
    assert!(
        drift.is_empty(),
        "cairn_plugin.h drifted from abi.rs:\n{}",
        drift.join("\n")
    );
}
