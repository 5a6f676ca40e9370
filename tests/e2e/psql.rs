//! The real `psql` client against the real server.

use std::process::Command;

use crate::harness::{ADMIN_PASSWORD, Site, TestServer};

pub(crate) fn psql(server: &TestServer, database: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["-X", "-v", "ON_ERROR_STOP=1"];
    all.extend_from_slice(args);
    postgresql_client("psql", server, database, &all)
}

/// pg_dump of the database `default`, as psql's `psql` is run.
fn pg_dump(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    postgresql_client("pg_dump", server, "default", args)
}

/// Runs one of PostgreSQL's client programs against `database` as the admin: whether it
/// succeeded, its output and its errors.
fn postgresql_client(
    program: &str,
    server: &TestServer,
    database: &str,
    args: &[&str],
) -> (bool, String, String) {
    let mut command = Command::new(program);
    command.args(args);
    client_as(
        &mut command,
        server,
        ("admin", ADMIN_PASSWORD),
        database,
        b"",
    )
}

/// psql as `user` (name and password) with `input` on its standard input, in a session of
/// its own: without a terminal to ask on, psql's prompts (`\password`) read that input.
pub(crate) fn psql_as(
    server: &TestServer,
    user: (&str, &str),
    database: &str,
    args: &[&str],
    input: &[u8],
) -> (bool, String, String) {
    let mut command = Command::new("setsid");
    command.args(["--wait", "psql", "-X", "-v", "ON_ERROR_STOP=1"]);
    command.args(args);
    client_as(&mut command, server, user, database, input)
}

fn client_as(
    command: &mut Command,
    server: &TestServer,
    (user, password): (&str, &str),
    database: &str,
    input: &[u8],
) -> (bool, String, String) {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .arg(format!(
            "postgresql://{user}@127.0.0.1:{}/{database}",
            server.port
        ))
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "30");
    let out = crate::harness::try_output_with_input(command, input).unwrap_or_else(|e| {
        panic!("{program} did not run ({e}): .ci/run installs postgresql-client")
    });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn psql_runs_a_script_and_shows_rows_and_tags() {
    let site = Site::standard();
    let server = site.start();
    let script = site.dir.path().join("script.sql");
    std::fs::write(
        &script,
        "CREATE DATABASE inventory;\n\\connect inventory\nCREATE TABLE parts (id INTEGER PRIMARY KEY, name TEXT);\nINSERT INTO parts (name) VALUES ('bolt'), ('nut');\nSELECT id, name FROM parts ORDER BY id;\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = psql(&server, "default", &["-f", script.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("CREATE DATABASE"), "{stdout}");
    assert!(stdout.contains("INSERT 0 2"), "{stdout}");
    assert!(stdout.contains("  1 | bolt"), "{stdout}");
    assert!(stdout.contains("(2 rows)"), "{stdout}");

    let (ok, stdout, _) = psql(
        &server,
        "inventory",
        &["-A", "-t", "-c", "SELECT count(*) FROM parts"],
    );
    assert!(ok);
    assert_eq!(stdout.trim(), "2");
}

#[test]
fn psql_reports_errors_with_sqlite_messages_and_keeps_going() {
    let site = Site::standard();
    let server = site.start();
    let (ok, _, stderr) = psql(&server, "default", &["-c", "SELECT * FROM nowhere"]);
    assert!(!ok);
    assert!(
        stderr.contains("ERROR:  no such table: nowhere"),
        "{stderr}"
    );
    let (ok, _, stderr) = psql(&server, "missing", &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(
        stderr.contains("FATAL:  database \"missing\" does not exist"),
        "{stderr}"
    );
    let (ok, stdout, _) = psql(&server, "default", &["-A", "-t", "-c", "SELECT 40 + 2"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "42");
}

/// psql's describe commands (`\dt`, `\d t`, `\di`, `\dn`, `\du`…) read PostgreSQL's
/// catalogs with PostgreSQL's SQL (`pg_catalog.pg_class`, `OPERATOR(pg_catalog.~)`,
/// `ARRAY(SELECT …)`, `::regclass`): every one failed with a raw SQLite syntax error. Each
/// prints what psql prints against PostgreSQL 15 for the same tables (recorded from a
/// PostgreSQL 15 server with the same statements, owner `admin`), sizes aside.
#[test]
fn psqls_describe_commands_were_sqlite_syntax_errors() {
    let site = Site::standard();
    let server = site.start();
    let (ok, _, stderr) = psql(
        &server,
        "default",
        &[
            "-q",
            "-c",
            "CREATE TABLE t(id integer primary key, name text not null, score real default 1.5);
             CREATE INDEX t_name ON t(name);
             CREATE TABLE u(code varchar(10) PRIMARY KEY, t_id integer REFERENCES t(id), label text UNIQUE, flag boolean DEFAULT false);
             CREATE INDEX u_part ON u(label, flag) WHERE flag;
             CREATE VIEW v AS SELECT id, name FROM t;",
        ],
    );
    assert!(ok, "{stderr}");
    let expected = [
        (
            "\\dt",
            "       List of relations
 Schema | Name | Type  | Owner
--------+------+-------+-------
 public | t    | table | admin
 public | u    | table | admin
(2 rows)",
        ),
        (
            "\\di",
            "              List of relations
 Schema |    Name     | Type  | Owner | Table
--------+-------------+-------+-------+-------
 public | t_name      | index | admin | t
 public | t_pkey      | index | admin | t
 public | u_label_key | index | admin | u
 public | u_part      | index | admin | u
 public | u_pkey      | index | admin | u
(5 rows)",
        ),
        (
            "\\dv",
            "      List of relations
 Schema | Name | Type | Owner
--------+------+------+-------
 public | v    | view | admin
(1 row)",
        ),
        (
            "\\dn",
            "      List of schemas
  Name  |       Owner
--------+-------------------
 public | pg_database_owner
(1 row)",
        ),
        (
            "\\d t",
            "                 Table \"public.t\"
 Column |  Type   | Collation | Nullable | Default
--------+---------+-----------+----------+---------
 id     | integer |           | not null |
 name   | text    |           | not null |
 score  | real    |           |          | 1.5
Indexes:
    \"t_pkey\" PRIMARY KEY, btree (id)
    \"t_name\" btree (name)
Referenced by:
    TABLE \"u\" CONSTRAINT \"u_t_id_fkey\" FOREIGN KEY (t_id) REFERENCES t(id)",
        ),
        (
            "\\d u",
            "                        Table \"public.u\"
 Column |         Type          | Collation | Nullable | Default
--------+-----------------------+-----------+----------+---------
 code   | character varying(10) |           | not null |
 t_id   | integer               |           |          |
 label  | text                  |           |          |
 flag   | boolean               |           |          | false
Indexes:
    \"u_pkey\" PRIMARY KEY, btree (code)
    \"u_label_key\" UNIQUE CONSTRAINT, btree (label)
    \"u_part\" btree (label, flag) WHERE flag
Foreign-key constraints:
    \"u_t_id_fkey\" FOREIGN KEY (t_id) REFERENCES t(id)",
        ),
        (
            "\\d v",
            "                  View \"public.v\"
 Column |  Type   | Collation | Nullable | Default
--------+---------+-----------+----------+---------
 id     | integer |           |          |
 name   | text    |           |          |",
        ),
        (
            "\\d u_part",
            "        Index \"public.u_part\"
 Column |  Type   | Key? | Definition
--------+---------+------+------------
 label  | text    | yes  | label
 flag   | boolean | yes  | flag
btree, for table \"public.u\", predicate (flag)",
        ),
        (
            "\\du",
            "                                          List of roles
 Role name |                  Attributes                   |              Member of
-----------+-----------------------------------------------+--------------------------------------
 admin     | Superuser, Create role, Create DB, Bypass RLS | {}
 reader    |                                               | {pg_read_all_data}
 writer    |                                               | {pg_read_all_data,pg_write_all_data}",
        ),
    ];
    let trimmed = |text: &str| {
        text.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            .trim_end()
            .to_owned()
    };
    for (command, printed) in expected {
        let (ok, stdout, stderr) = psql(&server, "default", &["-c", command]);
        assert!(ok, "{command}: {stderr}");
        assert_eq!(trimmed(&stdout), printed, "{command}");
    }
    // \l lists the server's databases, and a new table shows at once.
    let (ok, stdout, stderr) = psql(&server, "default", &["-c", "\\l"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(" default | admin | UTF8     | C.UTF-8 | C.UTF-8 |"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = psql(
        &server,
        "default",
        &["-c", "CREATE TABLE w(x INTEGER)", "-c", "\\dt w"],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(" public | w    | table | admin"),
        "{stdout}"
    );
}

/// `pg_dump --schema-only` failed at its first SET (`synchronize_seqscans`), then at the
/// catalogs it reads (`tableoid`, `pg_depend`, `LOCK TABLE … IN ACCESS SHARE MODE`,
/// `pg_options_to_table`, `current_schemas`…). It dumps the tables, keys, indexes, foreign
/// keys and views in PostgreSQL's words.
#[test]
fn pg_dump_schema_only_stopped_at_its_first_set() {
    let site = Site::standard();
    let server = site.start();
    let (ok, _, stderr) = psql(
        &server,
        "default",
        &[
            "-q",
            "-c",
            "CREATE TABLE t(id integer primary key, name text not null, score real default 1.5);
             CREATE INDEX t_name ON t(name);
             CREATE TABLE u(code varchar(10) PRIMARY KEY, t_id integer REFERENCES t(id), label text UNIQUE);
             CREATE VIEW v AS SELECT id, name FROM t;",
        ],
    );
    assert!(ok, "{stderr}");
    let (ok, dump, stderr) = pg_dump(&server, &["--schema-only"]);
    assert!(ok, "{stderr}");
    for expected in [
        "CREATE TABLE public.t (\n    id integer NOT NULL,\n    name text NOT NULL,\n    score real DEFAULT 1.5\n);",
        "CREATE TABLE public.u (\n    code character varying(10) NOT NULL,\n    t_id integer,\n    label text\n);",
        "ADD CONSTRAINT t_pkey PRIMARY KEY (id);",
        "ADD CONSTRAINT u_label_key UNIQUE (label);",
        "CREATE INDEX t_name ON public.t USING btree (name);",
        "ADD CONSTRAINT u_t_id_fkey FOREIGN KEY (t_id) REFERENCES t(id);",
        "CREATE VIEW public.v AS\nSELECT id, name FROM t;",
    ] {
        assert!(dump.contains(expected), "{expected:?} not in:\n{dump}");
    }
}

/// COPY was a SQLite syntax error: psql's `\copy` in and out failed, and so did pg_dump's
/// data. `\copy` reads a CSV file with a header into a table and writes the table back out
/// byte for byte; text format keeps tabs, newlines and NULLs; a bad row leaves none of the
/// COPY's rows behind and says which line; a file on the server is refused.
#[test]
fn psqls_copy_was_a_sqlite_syntax_error() {
    let site = Site::standard();
    let server = site.start();
    let (ok, _, stderr) = psql(
        &server,
        "default",
        &[
            "-q",
            "-c",
            "CREATE TABLE t(id integer primary key, name text, ok boolean, score real)",
        ],
    );
    assert!(ok, "{stderr}");
    let csv =
        "id,name,ok,score\n1,plain,t,1.5\n2,\"with, comma\",f,\n3,\"two\nlines\",,-2\n4,\"\",t,0\n";
    let input = site.dir.path().join("in.csv");
    std::fs::write(&input, csv).unwrap();
    let copy_in = format!(
        "\\copy t from '{}' with (format csv, header)",
        input.display()
    );
    let (ok, stdout, stderr) = psql(&server, "default", &["-c", &copy_in]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "COPY 4");
    let output = site.dir.path().join("out.csv");
    let copy_out = format!("\\copy t to '{}' csv header", output.display());
    let (ok, stdout, stderr) = psql(&server, "default", &["-c", &copy_out]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "COPY 4");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), csv);
    // Text format: PostgreSQL's escapes and \N.
    let (ok, stdout, stderr) = psql(
        &server,
        "default",
        &[
            "-c",
            "COPY (SELECT id, name, ok FROM t WHERE id > 1 ORDER BY id) TO STDOUT",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "2\twith, comma\tf\n3\ttwo\\nlines\t\\N\n4\t\tt\n");
    // A bad row: the COPY's rows before it are gone too, and the error names the line.
    let bad = site.dir.path().join("bad.csv");
    std::fs::write(&bad, "10,fine,t,1\n11,bad,maybe,1\n").unwrap();
    let copy_bad = format!("\\copy t from '{}' csv", bad.display());
    let (ok, _, stderr) = psql(&server, "default", &["-c", &copy_bad]);
    assert!(!ok);
    assert!(
        stderr.contains("invalid input syntax for type boolean: \"maybe\"")
            && stderr.contains("line 2"),
        "{stderr}"
    );
    let (ok, stdout, _) = psql(
        &server,
        "default",
        &["-A", "-t", "-c", "SELECT count(*) FROM t"],
    );
    assert!(ok);
    assert_eq!(stdout.trim(), "4");
    let (ok, _, stderr) = psql(&server, "default", &["-c", "COPY t FROM '/etc/passwd'"]);
    assert!(!ok);
    assert!(stderr.contains("\\copy"), "{stderr}");
    // pg_dump's data is COPY … TO stdout.
    let (ok, dump, stderr) = pg_dump(&server, &["--data-only", "--table", "t"]);
    assert!(ok, "{stderr}");
    assert!(
        dump.contains("COPY public.t (id, name, ok, score) FROM stdin;\n1\tplain\tt\t1.5\n"),
        "{dump}"
    );
}
