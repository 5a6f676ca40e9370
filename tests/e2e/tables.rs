//! Table-level backups and restores with the real binary: Doris's `BACKUP SNAPSHOT … ON` /
//! `EXCLUDE`, CockroachDB's `BACKUP TABLE` and `RESTORE TABLE`, and `WITH (tables = […])`;
//! what the archives hold is judged by `unzip` and `sqlite3`.

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::Client;

use crate::harness::{Site, backups_dir, column, refused, run, texts};

/// Customers and their orders (a foreign key, an index, a generated column, AUTOINCREMENT),
/// logs an order trigger writes, items with a trigger of their own (its ON clause spelt in
/// capitals), two views (one of orders alone, one that needs logs), and notes whose rowids
/// are no column of theirs (2 and 3: the first was deleted).
const SHOP: &str = "
CREATE TABLE customers(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL);
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER NOT NULL REFERENCES customers(id),
                    total REAL, doubled REAL GENERATED ALWAYS AS (total * 2) VIRTUAL);
CREATE INDEX orders_by_customer ON orders(customer);
CREATE TABLE logs(id INTEGER PRIMARY KEY, line TEXT);
CREATE TABLE items(id INTEGER PRIMARY KEY, sku TEXT);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 50;
CREATE VIEW order_lines AS SELECT orders.id, line FROM orders JOIN logs USING (id);
CREATE TRIGGER order_logged AFTER INSERT ON orders BEGIN INSERT INTO logs(line) VALUES ('order ' || new.id); END;
CREATE TRIGGER sku_upper AFTER INSERT ON ITEMS BEGIN UPDATE items SET sku = upper(sku) WHERE id = new.id; END;
INSERT INTO customers(name) VALUES ('ada'), ('bob'), ('cy');
DELETE FROM customers WHERE name = 'cy';
INSERT INTO orders(customer, total) VALUES (1, 10), (2, 60), (1, 99);
INSERT INTO items(sku) VALUES ('a1'), ('b2');
CREATE TABLE notes(body TEXT);
INSERT INTO notes VALUES ('first'), ('second'), ('third');
DELETE FROM notes WHERE body = 'first';
";

fn database_file(site: &Site, name: &str) -> PathBuf {
    site.data_dir()
        .join("databases")
        .join(format!("{name}.sqlite"))
}

/// What `sqlite3` says to `sql` on the file at `path`.
fn sqlite3(path: &Path, sql: &str) -> String {
    let (ok, out) = run(Command::new("sqlite3").arg(path).arg(sql));
    assert!(ok, "sqlite3 {sql}: {out}");
    out
}

fn manifest(archive: &Path) -> serde_json::Value {
    let (ok, out) = run(Command::new("unzip")
        .arg("-p")
        .arg(archive)
        .arg("manifest.json"));
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap()
}

async fn count(client: &Client, table: &str) -> String {
    column(client, &format!("SELECT count(*) FROM {table}"))
        .await
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_level_backup_restores_only_its_tables() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin.batch_execute(SHOP).await.unwrap();
    let dir = backups_dir(&site);
    let original = database_file(&site, "default");

    // WITH (tables = …): the two tables, their index, the view of them alone; the trigger
    // and the view that need logs are left out, and the manifest says so.
    admin
        .batch_execute(
            "BACKUP DATABASE TO 'shop.zip' WITH (tables = ['orders', 'customers', 'Notes'])",
        )
        .await
        .unwrap();
    let archive = dir.join("shop.zip");
    let (ok, out) = run(Command::new("unzip").arg("-t").arg(&archive));
    assert!(ok, "{out}");
    let listed = manifest(&archive);
    assert_eq!(
        listed["tables"],
        serde_json::json!(["customers", "orders", "notes"])
    );
    assert_eq!(
        listed["left_out"],
        serde_json::json!(["view order_lines", "trigger order_logged"])
    );
    admin
        .batch_execute("RESTORE DATABASE part FROM 'shop.zip'")
        .await
        .unwrap();
    let part = database_file(&site, "part");
    let names = "SELECT type || ' ' || name FROM sqlite_schema ORDER BY rowid";
    assert_eq!(
        sqlite3(&part, names).lines().collect::<Vec<_>>(),
        [
            "table customers",
            "table sqlite_sequence",
            "table orders",
            "index orders_by_customer",
            "view big_orders",
            "table notes"
        ]
    );
    for object in ["customers", "orders", "big_orders"] {
        // All but the trigger left out.
        let kept: String = sqlite3(&original, &format!(".schema {object}"))
            .lines()
            .filter(|line| !line.contains("order_logged"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(
            sqlite3(&part, &format!(".schema {object}")),
            kept,
            "{object}"
        );
    }
    let part_client = server.admin("part").await;
    for table in ["customers", "orders", "big_orders"] {
        assert_eq!(count(&part_client, table).await, count(&admin, table).await);
    }
    assert_eq!(
        sqlite3(
            &part,
            "PRAGMA integrity_check; PRAGMA foreign_key_check; SELECT seq FROM sqlite_sequence"
        ),
        "ok\n3\n",
        "AUTOINCREMENT keeps its counter past the deleted row"
    );
    let rowids = "SELECT rowid || ' ' || body FROM notes ORDER BY rowid";
    assert_eq!(sqlite3(&part, rowids), "2 second\n3 third\n");
    // Not the whole database: FROM LATEST passes it by, and SHOW ARCHIVES says what it holds.
    refused(
        &admin,
        &format!(
            "RESTORE DATABASE default FROM LATEST IN '{}' WITH (new_db_name = 'again')",
            dir.display()
        ),
        "no backup archive of database \"default\"",
    )
    .await;
    assert_eq!(
        column(
            &admin,
            "SELECT tables FROM archives('') WHERE location LIKE '%shop.zip'"
        )
        .await,
        ["customers, orders, notes"]
    );

    // CockroachDB's BACKUP TABLE, then RESTORE TABLE into an existing database.
    admin
        .batch_execute("BACKUP TABLE default.items TO 'items.zip'")
        .await
        .unwrap();
    assert_eq!(
        manifest(&dir.join("items.zip"))["tables"],
        serde_json::json!(["items"])
    );
    assert_eq!(
        texts(
            &admin,
            "RESTORE TABLE default.items FROM 'items.zip' WITH (into_db = 'part')"
        )
        .await,
        [["part", "items", "2"]]
    );
    assert_eq!(
        sqlite3(&part, ".schema items"),
        sqlite3(&original, ".schema items")
    );
    // Its trigger (written ON ITEMS) came with it, after the rows: it fires on new ones.
    part_client
        .batch_execute("INSERT INTO items(sku) VALUES ('c3')")
        .await
        .unwrap();
    assert_eq!(
        column(&part_client, "SELECT sku FROM items ORDER BY id").await,
        ["A1", "B2", "C3"]
    );

    // Doris's spelling: a snapshot named by its label in a repository (here a directory).
    let repository = dir.join("repo");
    std::fs::create_dir(&repository).unwrap();
    admin
        .batch_execute(&format!(
            "BACKUP SNAPSHOT default.nightly TO '{}' EXCLUDE (logs) PROPERTIES (\"timeout\" = \"3600\")",
            repository.display()
        ))
        .await
        .unwrap();
    assert_eq!(
        manifest(&repository.join("nightly.zip"))["tables"],
        serde_json::json!(["customers", "orders", "items", "notes"])
    );
    admin.batch_execute("DROP TABLE items").await.unwrap();
    assert_eq!(
        texts(
            &admin,
            &format!(
                "RESTORE SNAPSHOT default.nightly FROM '{}' ON (items)",
                repository.display()
            )
        )
        .await,
        [["default", "items", "2"]]
    );

    // Refused, each saying why (before any job, but for the foreign key of a table the
    // archive holds, which is known once it is read).
    for (sql, says, code) in [
        (
            "BACKUP TABLE orders TO 'orphan.zip'",
            "foreign key to customers",
            "2BP01",
        ),
        (
            "BACKUP DATABASE TO 'x.zip' WITH (exclude_tables = ['nosuch'])",
            "has no table nosuch",
            "42P01",
        ),
        (
            "RESTORE TABLE default.items FROM 'items.zip'",
            "already has the table items",
            "42P07",
        ),
        (
            "RESTORE TABLE default.orders FROM 'shop.zip' WITH (into_db = 'part2')",
            "does not exist",
            "3D000",
        ),
        (
            "BACKUP DATABASE INTO 'collection' WITH (tables = ['items'])",
            "holds whole databases",
            "22023",
        ),
        (
            "EXPORT DATABASE TO 'x.json.gz' WITH (tables = ['items'])",
            "an export holds the whole database",
            "22023",
        ),
    ] {
        let err = refused(&admin, sql, says).await;
        assert_eq!(err.code().unwrap().code(), code, "{sql}");
    }
    admin.batch_execute("CREATE DATABASE part2").await.unwrap();
    refused(
        &admin,
        "RESTORE TABLE default.orders FROM 'shop.zip' WITH (into_db = 'part2')",
        "foreign key to customers, which database part2 does not have",
    )
    .await;
    let part2 = server.admin("part2").await;
    assert_eq!(
        column(&part2, "SELECT count(*) FROM sqlite_schema").await,
        ["0"],
        "a refused table restore writes nothing"
    );
    // Rowids come with the rows; an index's name already taken is refused by its name.
    admin
        .batch_execute("RESTORE TABLE default.notes FROM 'shop.zip' WITH (into_db = 'part2')")
        .await
        .unwrap();
    assert_eq!(
        sqlite3(&database_file(&site, "part2"), rowids),
        "2 second\n3 third\n"
    );
    part2
        .batch_execute("CREATE TABLE other(x); CREATE INDEX orders_by_customer ON other(x)")
        .await
        .unwrap();
    let err = refused(
        &admin,
        "RESTORE TABLE default.orders, default.customers FROM 'shop.zip' WITH (into_db = 'part2')",
        "already has the index orders_by_customer",
    )
    .await;
    assert_eq!(err.code().unwrap().code(), "42710");
    for name in ["orphan.zip", "x.zip", "x.json.gz"] {
        assert!(!dir.join(name).exists(), "{name}");
    }
    server.assert_still_serving().await;
}
