//! Plugins' SQL functions (scalar and aggregate, ABI 1.6; table functions, 1.7) with the real
//! binary: the example plugin's functions called from plain SELECTs, in both protocols, on
//! several databases and sessions (those opened before the plugin loaded too), with a new
//! config after a RELOAD, and refused cleanly after an UNLOAD; a plugin's error and panic come
//! back as SQL errors; table functions streamed in bounded memory, joined, limited and
//! cancelled.

use tokio_postgres::Client;

use crate::harness::{Site, message, standard_config};
use crate::plugins::install_rust_plugin;

async fn text(client: &Client, sql: &str) -> String {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", message(&e)))
        .get(0)
}

fn site(greeting: &str) -> Site {
    let site = Site::new(&format!(
        "{}\n[plugins.hello]\nlibrary = \"libhello_plugin.so\"\nenabled = false\n[plugins.hello.config]\ngreeting = \"{greeting}\"\n",
        standard_config()
    ));
    install_rust_plugin(&site, "hello_plugin", "libhello_plugin.so");
    site
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_functions_answer_plain_selects_everywhere_and_go_with_the_plugin() {
    let site = site("Howdy");
    let server = site.start();
    // Sessions opened before the plugin loads, on two databases.
    let first = server.admin("default").await;
    first.batch_execute("CREATE DATABASE second").await.unwrap();
    let second = server.admin("second").await;
    let missing = first
        .simple_query("SELECT hello_greeting('Ann')")
        .await
        .unwrap_err();
    assert!(
        message(&missing).contains("hello_greeting"),
        "{}",
        message(&missing)
    );

    first
        .batch_execute("LOAD PLUGIN 'libhello_plugin.so'")
        .await
        .unwrap_or_else(|e| panic!("{}", message(&e)));
    assert_eq!(
        text(&first, "SELECT hello_greeting('Ann')").await,
        "Howdy, Ann!"
    );
    assert_eq!(
        text(&second, "SELECT hello_greeting('Bo')").await,
        "Howdy, Bo!"
    );
    // The simple protocol too, over a table's rows.
    second
        .batch_execute(
            "CREATE TABLE cities(name TEXT, lat REAL, lon REAL);
             INSERT INTO cities VALUES ('Berlin', 52.52, 13.405), ('Paris', 48.8566, 2.3522)",
        )
        .await
        .unwrap();
    let rows = second
        .simple_query(
            "SELECT b.name, CAST(round(geo_distance(a.lat, a.lon, b.lat, b.lon)) AS INTEGER) FROM cities a JOIN cities b ON a.name = 'Berlin' ORDER BY b.name",
        )
        .await
        .unwrap();
    let distances: Vec<(String, String)> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0).unwrap().to_owned(), r.get(1).unwrap().to_owned()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        distances,
        [
            ("Berlin".to_owned(), "0".to_owned()),
            ("Paris".to_owned(), "877".to_owned())
        ]
    );
    // What the plugin registered, for any role.
    let listed = crate::harness::texts(
        &second,
        "SELECT plugin, name, kind, arg_count, deterministic FROM plugin_functions() ORDER BY name",
    )
    .await;
    assert_eq!(
        listed,
        [
            ["hello", "geo_distance", "scalar", "4", "1"],
            ["hello", "hello_check", "scalar", "1", "0"],
            ["hello", "hello_greeting", "scalar", "1", "0"],
            ["hello", "hello_series", "table", "3", "0"],
            ["hello", "hello_stddev", "window", "1", "1"],
            ["hello", "hello_words", "table", "1", "0"],
        ]
    );
    let greet = crate::harness::texts(
        &second,
        "SELECT columns FROM plugin_procedures() WHERE plugin = 'hello' AND name = 'greet'",
    )
    .await;
    assert_eq!(greet, [["greeting text"]]);
    // For direct calls only: an index (or a view, a trigger…) would outlive the plugin.
    let indexed = second
        .batch_execute("CREATE INDEX far ON cities(geo_distance(lat, lon, 0, 0))")
        .await
        .unwrap_err();
    assert!(
        message(&indexed).contains("unsafe use"),
        "{}",
        message(&indexed)
    );
    // A session opened after the plugin loaded has them too.
    let later = server.admin("default").await;
    assert_eq!(
        text(&later, "SELECT hello_greeting(42)").await,
        "Howdy, 42!"
    );

    // The plugin's error, and its panic, are SQL errors naming it; the sessions go on.
    let failed = first
        .query_one("SELECT hello_check(-1)", &[])
        .await
        .unwrap_err();
    assert!(
        message(&failed).contains("plugin hello: function hello_check")
            && message(&failed).contains("non-negative"),
        "{}",
        message(&failed)
    );
    let panicked = first
        .query_one("SELECT hello_check('panic')", &[])
        .await
        .unwrap_err();
    assert!(
        message(&panicked).contains("panic"),
        "{}",
        message(&panicked)
    );
    assert_eq!(text(&first, "SELECT hello_check('fine')").await, "fine");

    // A reload: the new instance's config answers in the same sessions.
    let config = std::fs::read_to_string(site.config_path()).unwrap();
    std::fs::write(
        site.config_path(),
        config.replace("greeting = \"Howdy\"", "greeting = \"Hi\""),
    )
    .unwrap();
    first.batch_execute("RELOAD PLUGIN hello").await.unwrap();
    assert_eq!(
        text(&first, "SELECT hello_greeting('Ann')").await,
        "Hi, Ann!"
    );
    assert_eq!(
        text(&second, "SELECT hello_greeting('Bo')").await,
        "Hi, Bo!"
    );

    // Unloaded: a clear refusal in every session, never a call into the plugin.
    let prepared = second.prepare("SELECT hello_greeting($1)").await.unwrap();
    first.batch_execute("UNLOAD PLUGIN hello").await.unwrap();
    for (client, sql) in [
        (&first, "SELECT hello_greeting('Ann')"),
        (&second, "SELECT geo_distance(0, 0, 1, 1)"),
    ] {
        let err = client.simple_query(sql).await.unwrap_err();
        assert!(
            message(&err).contains("no such function")
                || message(&err).contains("no longer registered"),
            "{sql}: {}",
            message(&err)
        );
    }
    let err = second.query(&prepared, &[&"Cy"]).await.unwrap_err();
    assert!(
        message(&err).contains("hello_greeting"),
        "{}",
        message(&err)
    );
    assert_eq!(
        text(&later, "SELECT 'still serving'").await,
        "still serving"
    );
    let none = crate::harness::texts(&later, "SELECT count(*) FROM plugin_functions()").await;
    assert_eq!(none, [["0"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_aggregate_sums_up_groups_and_a_million_rows_in_bounded_memory() {
    let site = Site::new(&format!(
        "{}\n[plugins.hello]\nlibrary = \"libhello_plugin.so\"\n",
        standard_config()
    ));
    install_rust_plugin(&site, "hello_plugin", "libhello_plugin.so");
    let server = site.start();
    let client = server.admin("default").await;
    client
        .batch_execute(
            "CREATE TABLE m(g TEXT, x REAL);
             INSERT INTO m VALUES ('a', 2), ('a', 4), ('a', 4), ('a', 4), ('a', 5), ('a', 5), ('a', 7), ('a', 9),
                                  ('b', 1), ('c', NULL)",
        )
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT g, hello_stddev(x) FROM m GROUP BY g ORDER BY g",
            &[],
        )
        .await
        .unwrap();
    let groups: Vec<(String, Option<f64>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(groups[0].0, "a");
    assert!(
        (groups[0].1.unwrap() - 2.138_089_935).abs() < 1e-6,
        "{groups:?}"
    );
    assert_eq!(groups[1], ("b".to_owned(), None));
    assert_eq!(groups[2], ("c".to_owned(), None));
    // No rows at all: the plugin's empty group.
    let empty =
        crate::harness::texts(&client, "SELECT hello_stddev(x) IS NULL FROM m WHERE 0").await;
    assert_eq!(empty, [["1"]]);
    // A bad row is an SQL error naming the plugin.
    let err = client
        .query_one("SELECT hello_stddev(g) FROM m", &[])
        .await
        .unwrap_err();
    assert!(
        message(&err).contains("plugin hello: function hello_stddev"),
        "{}",
        message(&err)
    );

    // As a window function over a moving frame (value and inverse), next to SQL's formula
    // over the same frame.
    let frame = "OVER (ORDER BY rowid ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)";
    let rows = client
        .query(
            &format!(
                "SELECT coalesce(hello_stddev(x) {frame}, -1.0),
                        coalesce((sum(x * x) {frame} - sum(x) {frame} * sum(x) {frame} / count(x) {frame}) / (count(x) {frame} - 1), -1.0)
                 FROM m WHERE g = 'a'"
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{}", message(&e)));
    assert_eq!(rows.len(), 8);
    // The first row's frame has one row: no deviation (-1 here), from either.
    for row in &rows {
        let (ours, variance): (f64, f64) = (row.get(0), row.get(1));
        let expected = if variance < 0.0 {
            -1.0
        } else {
            variance.sqrt()
        };
        assert!((ours - expected).abs() < 1e-9, "{ours} vs {expected}");
    }
    assert_eq!(rows[0].get::<_, f64>(0), -1.0);

    // A million rows: the same as SQL's own formula, and the server's memory stays flat.
    client
        .batch_execute(
            "CREATE TABLE big(x INTEGER);
             WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000)
             INSERT INTO big SELECT n % 1000 FROM c",
        )
        .await
        .unwrap();
    let before = crate::plugins::peak_resident_kib(&server);
    let row = client
        .query_one(
            "SELECT hello_stddev(x), (sum(x * x) - sum(x) * 1.0 * sum(x) / count(*)) / (count(*) - 1) FROM big",
            &[],
        )
        .await
        .unwrap();
    let (ours, variance): (f64, f64) = (row.get(0), row.get(1));
    assert!(
        (ours - variance.sqrt()).abs() < 1e-6,
        "{ours} vs {}",
        variance.sqrt()
    );
    // VmHWM may read lower later (the kernel folds in memory given back by madvise lazily).
    let grown = crate::plugins::peak_resident_kib(&server).saturating_sub(before) as f64 / 1024.0;
    assert!(
        grown < 32.0,
        "the server's peak memory grew {grown:.1} MiB over a million rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_table_functions_stream_join_and_go_with_the_plugin() {
    let site = Site::new(&format!(
        "{}\n[plugins.hello]\nlibrary = \"libhello_plugin.so\"\n",
        standard_config()
    ));
    install_rust_plugin(&site, "hello_plugin", "libhello_plugin.so");
    let server = site.start();
    let first = server.admin("default").await;
    first.batch_execute("CREATE DATABASE second").await.unwrap();
    let second = server.admin("second").await;
    let texts = crate::harness::texts;

    // Both protocols, both databases; the arguments are hidden columns a query may read.
    assert_eq!(
        texts(&first, "SELECT value FROM hello_series(1, 3)").await,
        [["1"], ["2"], ["3"]]
    );
    let rows = second
        .query(
            "SELECT value, start, stop FROM hello_series(CAST($1 AS INTEGER), 12, 5)",
            &[&2i64],
        )
        .await
        .unwrap_or_else(|e| panic!("{}", message(&e)));
    let values: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(values, [(2, 2, 12), (7, 2, 12), (12, 2, 12)]);
    let listed = texts(
        &second,
        "SELECT kind, arg_count, arguments, columns FROM plugin_functions() WHERE name = 'hello_series'",
    )
    .await;
    assert_eq!(
        listed,
        [[
            "table",
            "3",
            "start integer, stop integer, step integer",
            "value integer"
        ]]
    );

    // SHOW PLUGIN says what one plugin registered, with types.
    let shown = texts(&first, "SHOW PLUGIN hello").await;
    for expected in [
        [
            "procedure",
            "hello.greet",
            "returns (greeting text)",
            "Greets its argument",
        ],
        [
            "scalar function",
            "geo_distance",
            "(4 values)",
            "Great-circle distance in km between two latitude/longitude points",
        ],
        [
            "window function",
            "hello_stddev",
            "(1 value)",
            "Sample standard deviation of the group's numbers",
        ],
        [
            "table function",
            "hello_series",
            "(start integer, stop integer, step integer) returns rows (value integer)",
            "The integers from start to stop, step apart (default 1)",
        ],
        ["job", "tick", "0 * * * *", ""],
        ["events", "shutdown, database_created, alert", "", ""],
    ] {
        assert!(
            shown.iter().any(|row| *row == expected),
            "{expected:?} not in {shown:?}"
        );
    }
    let unknown = first.simple_query("SHOW PLUGIN nobody").await.unwrap_err();
    assert_eq!(
        unknown.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT),
        "{}",
        message(&unknown)
    );

    // Joined with a table, its arguments taken from each row.
    second
        .batch_execute(
            "CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO docs VALUES (1, 'to be or'), (2, 'not'), (3, '');
             CREATE TABLE sizes(n INTEGER); INSERT INTO sizes VALUES (2), (4)",
        )
        .await
        .unwrap();
    assert_eq!(
        texts(
            &second,
            "SELECT d.id, w.position, w.word FROM docs d, hello_words(d.body) w ORDER BY d.id, w.position",
        )
        .await,
        [
            ["1", "1", "to"],
            ["1", "2", "be"],
            ["1", "3", "or"],
            ["2", "1", "not"]
        ]
    );
    assert_eq!(
        texts(
            &second,
            "SELECT s.n, count(*), sum(v.value) FROM sizes s JOIN hello_series(1, s.n) v GROUP BY s.n ORDER BY s.n",
        )
        .await,
        [["2", "2", "3"], ["4", "4", "10"]]
    );

    // A million rows, pulled as the statement steps: the server's memory stays flat.
    let before = crate::plugins::peak_resident_kib(&server);
    assert_eq!(
        texts(
            &first,
            "SELECT count(*), sum(value) FROM hello_series(1, 1000000)"
        )
        .await,
        [["1000000", "500000500000"]]
    );
    let grown = crate::plugins::peak_resident_kib(&server).saturating_sub(before) as f64 / 1024.0;
    assert!(
        grown < 32.0,
        "the server's peak memory grew {grown:.1} MiB over a million rows"
    );
    // A LIMIT stops an endless scan; a statement timeout cancels one.
    assert_eq!(
        texts(
            &first,
            "SELECT value FROM hello_series(5, 9223372036854775807) LIMIT 2"
        )
        .await,
        [["5"], ["6"]]
    );
    first
        .batch_execute("SET statement_timeout = 300")
        .await
        .unwrap();
    let endless = first
        .simple_query("SELECT count(*) FROM hello_series(1, 9223372036854775807)")
        .await
        .unwrap_err();
    assert_eq!(
        endless.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{}",
        message(&endless)
    );
    first
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();

    // The plugin's error is an SQL error naming it; a view would outlive the plugin.
    let failed = first
        .query("SELECT * FROM hello_series(1, 10, 0)", &[])
        .await
        .unwrap_err();
    assert!(
        message(&failed).contains("plugin hello: table function hello_series")
            && message(&failed).contains("step must not be 0"),
        "{}",
        message(&failed)
    );
    let in_view = first
        .batch_execute("CREATE VIEW three AS SELECT * FROM hello_series(1, 3); SELECT * FROM three")
        .await
        .unwrap_err();
    assert!(
        message(&in_view).contains("unsafe use"),
        "{}",
        message(&in_view)
    );

    // A reload: the same sessions scan the new instance.
    first.batch_execute("RELOAD PLUGIN hello").await.unwrap();
    assert_eq!(
        texts(
            &second,
            "SELECT group_concat(word, ' ') FROM hello_words('still here')"
        )
        .await,
        [["still here"]]
    );

    // Unloaded: a clear refusal, prepared statements included, and the server goes on.
    let prepared = second
        .prepare("SELECT value FROM hello_series(1, 3)")
        .await
        .unwrap();
    first.batch_execute("UNLOAD PLUGIN hello").await.unwrap();
    let err = second.query(&prepared, &[]).await.unwrap_err();
    assert!(
        message(&err).contains("hello_series") && message(&err).contains("no longer registered"),
        "{}",
        message(&err)
    );
    let later = server.admin("second").await;
    let err = later
        .simple_query("SELECT * FROM hello_words('x')")
        .await
        .unwrap_err();
    assert!(message(&err).contains("hello_words"), "{}", message(&err));
    assert_eq!(texts(&later, "SELECT count(*) FROM docs").await, [["3"]]);
}

/// The same functions through the real `psql`, as a user would call them: on two
/// databases, after a RELOAD, and refused after an UNLOAD with the server still serving.
#[test]
fn psql_calls_a_plugins_functions_on_every_database() {
    let site = site("Howdy");
    let server = site.start();
    let psql =
        |database: &str, sql: &str| crate::psql::psql(&server, database, &["-A", "-t", "-c", sql]);
    let (ok, _, stderr) = psql("default", "LOAD PLUGIN 'libhello_plugin.so'");
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = psql("default", "CREATE DATABASE other");
    assert!(ok, "{stderr}");
    for database in ["default", "other"] {
        let (ok, stdout, stderr) = psql(
            database,
            "SELECT hello_greeting('Ann'), (SELECT sum(value) FROM hello_series(1, 100)), (SELECT hello_stddev(value) IS NOT NULL FROM hello_series(1, 10))",
        );
        assert!(ok, "{database}: {stderr}");
        assert_eq!(stdout.trim(), "Howdy, Ann!|5050|1", "{database}");
    }
    let config = std::fs::read_to_string(site.config_path()).unwrap();
    std::fs::write(
        site.config_path(),
        config.replace("greeting = \"Howdy\"", "greeting = \"Hej\""),
    )
    .unwrap();
    let (ok, _, stderr) = psql("other", "RELOAD PLUGIN hello");
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = psql("other", "SELECT hello_greeting('Bo')");
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "Hej, Bo!");
    let (ok, _, stderr) = psql("default", "UNLOAD PLUGIN hello");
    assert!(ok, "{stderr}");
    for sql in [
        "SELECT hello_greeting('Ann')",
        "SELECT * FROM hello_series(1, 3)",
    ] {
        let (ok, _, stderr) = psql("other", sql);
        assert!(!ok, "{sql} still answered after the unload");
        assert!(
            stderr.contains("hello_greeting") || stderr.contains("hello_series"),
            "{sql}: {stderr}"
        );
    }
    let (ok, stdout, _) = psql("other", "SELECT 'still serving'");
    assert!(ok);
    assert_eq!(stdout.trim(), "still serving");
}
