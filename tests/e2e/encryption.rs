//! Encrypted archives with the real binary: `BACKUP … WITH (encryption = 'aes-256', key =
//! 'NAME')`, keys from `[backup.keys.NAME]`, what the file shows without the key (nothing of
//! a row), an independent reader of WinZip AES entries (`pyzipper`) opening it with the
//! passphrase, restores refused before anything is written without the key or with a wrong
//! one, a rotated key, and an encrypted archive in an S3-compatible server.

use std::path::Path;
use std::process::Command;

use crate::destinations::offsite;
use crate::harness::{
    Site, TestServer, backups_dir, cairn, column, message, refused, run, standard_config,
    temporaries, texts,
};

/// A row whose text the archive must not show.
const SECRET_ROW: &str = "the-launch-code-is-0451-and-nobody-may-read-it";
const NEW_PASSPHRASE: &str = "correct horse battery staple, 2026";
const OLD_PASSPHRASE: &str = "tr0ub4dor&3 of 2025";

/// The standard config with keys `new` (from a key file) and `old` (from an environment
/// variable), as `keys` says: `Some(passphrase)` writes the file, `None` leaves the key out.
fn config_with_keys(site_dir: &Path, new: Option<&str>, old: bool) -> String {
    let mut config = standard_config();
    if let Some(passphrase) = new {
        std::fs::write(site_dir.join("new.key"), format!("{passphrase}\n")).unwrap();
        config.push_str("\n[backup.keys.new]\nkey_file = \"new.key\"\n");
    }
    if old {
        config.push_str("\n[backup.keys.old]\npassphrase_env = \"CAIRN_TEST_OLD_KEY\"\n");
    }
    config
}

/// Rewrites `site`'s config with the keys [`config_with_keys`] makes.
fn set_keys(site: &Site, new: Option<&str>, old: bool) {
    std::fs::write(
        site.config_path(),
        config_with_keys(site.dir.path(), new, old),
    )
    .unwrap();
}

fn start(site: &Site) -> TestServer {
    TestServer::start_with_env(
        &site.config_path(),
        &[],
        &[("CAIRN_TEST_OLD_KEY", OLD_PASSPHRASE)],
    )
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn manifest(archive: &Path) -> serde_json::Value {
    let (ok, out) = run(Command::new("unzip")
        .arg("-p")
        .arg(archive)
        .arg("manifest.json"));
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap()
}

/// What `pyzipper` (WinZip AES, an implementation not ours) reads from `archive`'s database
/// entry with `passphrase`, then `sqlite3` from the file it wrote.
fn opened_by_pyzipper(archive: &Path, passphrase: &str, out_dir: &Path) -> Result<String, String> {
    extracted_by_pyzipper(archive, "database.sqlite", passphrase, out_dir)?;
    let (ok, rows) = run(Command::new("sqlite3")
        .arg(out_dir.join("database.sqlite"))
        .arg("SELECT body FROM secrets"));
    assert!(ok, "{rows}");
    Ok(rows.trim().to_owned())
}

/// Extracts `entry` of `archive` into `out_dir` with `pyzipper` and `passphrase`.
fn extracted_by_pyzipper(
    archive: &Path,
    entry: &str,
    passphrase: &str,
    out_dir: &Path,
) -> Result<(), String> {
    let script = "import sys, pyzipper\n\
        with pyzipper.AESZipFile(sys.argv[1]) as z:\n\
        \x20   z.setpassword(sys.argv[2].encode())\n\
        \x20   z.extract(sys.argv[4], sys.argv[3])\n";
    let (ok, out) = run(Command::new("python3")
        .args(["-c", script])
        .arg(archive)
        .arg(passphrase)
        .arg(out_dir)
        .arg(entry));
    if ok { Ok(()) } else { Err(out) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_export_is_a_standard_export_inside_and_imports_only_with_its_key() {
    let site = Site::new("");
    set_keys(&site, Some(NEW_PASSPHRASE), true);
    let server = start(&site);
    let admin = server.admin("default").await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE secrets(id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO secrets(body) VALUES ('{SECRET_ROW}');"
        ))
        .await
        .unwrap();
    refused(
        &admin,
        "EXPORT DATABASE default TO 'sealed.json.gz' WITH (key = 'new')",
        ".zip",
    )
    .await;
    admin
        .batch_execute("EXPORT DATABASE default TO 'sealed.export.zip' WITH (encryption = 'aes-256', key = 'new')")
        .await
        .unwrap();
    let backups = backups_dir(&site);
    let file = backups.join("sealed.export.zip");
    let m = manifest(&file);
    assert_eq!(m["kind"], "export", "{m}");
    assert_eq!(m["encryption"]["key"], "new", "{m}");

    // Inside, with the passphrase: the export file itself, which zcat reads.
    let out = tempfile::tempdir().unwrap();
    extracted_by_pyzipper(&file, "export.json.gz", NEW_PASSPHRASE, out.path()).unwrap();
    let (ok, lines) = run(Command::new("zcat").arg(out.path().join("export.json.gz")));
    assert!(ok, "{lines}");
    assert!(lines.contains(SECRET_ROW), "{lines}");

    let listed = texts(&admin, "SHOW ARCHIVES WITH (verify)").await;
    let row = listed
        .iter()
        .find(|r| r[0].ends_with("sealed.export.zip"))
        .unwrap();
    assert_eq!(
        (row[2].as_str(), row[7].as_str()),
        ("export", "passed"),
        "{row:?}"
    );
    assert_eq!(row.last().unwrap(), "new", "{row:?}");
    refused(
        &admin,
        "RESTORE DATABASE nope FROM 'sealed.export.zip'",
        "IMPORT DATABASE",
    )
    .await;
    admin
        .batch_execute("IMPORT DATABASE imported FROM 'sealed.export.zip'")
        .await
        .unwrap_or_else(|e| panic!("{}", message(&e)));
    let imported = server.admin("imported").await;
    assert_eq!(
        column(&imported, "SELECT body FROM secrets").await,
        [SECRET_ROW]
    );
    drop(imported);
    drop(admin);
    server.terminate();

    // Without the key: refused naming it, nothing imported.
    set_keys(&site, None, true);
    let server = start(&site);
    let admin = server.admin("default").await;
    refused(
        &admin,
        "IMPORT DATABASE again FROM 'sealed.export.zip'",
        "encrypted with key \"new\"",
    )
    .await;
    let databases = column(&admin, "SHOW DATABASES").await;
    assert!(!databases.contains(&"again".to_owned()), "{databases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_archive_hides_its_rows_and_opens_only_with_its_key() {
    let site = Site::new("");
    set_keys(&site, Some(NEW_PASSPHRASE), true);
    let server = start(&site);
    let admin = server.admin("default").await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE secrets(id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO secrets(body) VALUES ('{SECRET_ROW}');
             CREATE TABLE other(x); INSERT INTO other VALUES (1), (2), (3);"
        ))
        .await
        .unwrap();
    // Stored, not deflated: a plain archive then shows the row, so its absence means
    // something.
    admin
        .batch_execute("BACKUP DATABASE default TO 'plain.zip' WITH (compression_level = 0)")
        .await
        .unwrap();
    admin
        .batch_execute(
            "BACKUP DATABASE default TO 'sealed.zip' WITH (encryption = 'aes-256', key = 'new', compression_level = 0)",
        )
        .await
        .unwrap();
    let backups = backups_dir(&site);
    assert!(contains(
        &std::fs::read(backups.join("plain.zip")).unwrap(),
        SECRET_ROW
    ));
    let sealed = std::fs::read(backups.join("sealed.zip")).unwrap();
    assert!(!contains(&sealed, SECRET_ROW), "the row is readable");
    assert!(
        !contains(&sealed, NEW_PASSPHRASE),
        "the passphrase is in the file"
    );

    // The manifest is plain: it names the key (not the passphrase) and the rows per table.
    let m = manifest(&backups.join("sealed.zip"));
    assert_eq!(m["encryption"]["key"], "new", "{m}");
    assert_eq!(m["encryption"]["algorithm"], "aes-256", "{m}");
    assert_eq!(m["format_version"], 3, "{m}");
    assert_eq!(m["row_counts"]["secrets"], 1, "{m}");
    assert_eq!(m["row_counts"]["other"], 3, "{m}");
    // `unzip` (no AES) can list it but not read the database.
    let (ok, _) = run(Command::new("unzip")
        .arg("-p")
        .arg(backups.join("sealed.zip"))
        .arg("database.sqlite"));
    assert!(!ok, "unzip read an encrypted entry");

    // An independent reader opens it with the passphrase, and not with another.
    let out = tempfile::tempdir().unwrap();
    assert_eq!(
        opened_by_pyzipper(&backups.join("sealed.zip"), NEW_PASSPHRASE, out.path()).unwrap(),
        SECRET_ROW
    );
    let wrong = tempfile::tempdir().unwrap();
    let refusal =
        opened_by_pyzipper(&backups.join("sealed.zip"), "not it", wrong.path()).unwrap_err();
    assert!(refusal.to_lowercase().contains("password"), "{refusal}");

    // Listed without reading the key; verified and restored with it.
    let listed = column(
        &admin,
        "SELECT encryption_key FROM archives('') WHERE location LIKE '%sealed.zip'",
    )
    .await;
    assert_eq!(listed, ["new"]);
    let verified = column(
        &admin,
        "SELECT verification FROM archives('') WHERE location LIKE '%sealed.zip'",
    )
    .await;
    assert_eq!(verified, [""], "verification only when asked");
    admin
        .batch_execute("RESTORE DATABASE copy FROM 'sealed.zip'")
        .await
        .unwrap();
    let copy = server.admin("copy").await;
    assert_eq!(
        column(&copy, "SELECT body FROM secrets").await,
        [SECRET_ROW]
    );

    // A key name that is not configured is refused, without repeating what was written
    // (it may be a passphrase written by mistake).
    let e = refused(
        &admin,
        "BACKUP DATABASE default TO 'x.zip' WITH (encryption = 'aes-256', key = 'hunter2-secret')",
        "[backup.keys.NAME]",
    )
    .await;
    assert!(!message(&e).contains("hunter2"), "{e}");
    refused(
        &admin,
        "BACKUP DATABASE default TO 'x.zip' WITH (encryption = 'aes-256')",
        "needs key",
    )
    .await;
    refused(
        &admin,
        "BACKUP DATABASE default TO 'x.zip' WITH (encryption = 'rot13', key = 'new')",
        "aes-256",
    )
    .await;
    assert!(!backups.join("x.zip").exists());
    let logs = server.logs();
    assert!(!logs.contains(NEW_PASSPHRASE) && !logs.contains(OLD_PASSPHRASE));
    drop(copy);
    drop(admin);
    server.terminate();

    // Without the key: listed, but neither verified nor restored, and nothing written.
    set_keys(&site, None, true);
    let server = start(&site);
    let admin = server.admin("default").await;
    let e = refused(
        &admin,
        "RESTORE DATABASE nokey FROM 'sealed.zip'",
        "encrypted with key \"new\"",
    )
    .await;
    assert_eq!(e.code().unwrap().code(), "42704", "{e}");
    let verified = texts(&admin, "SHOW ARCHIVES WITH (verify)").await;
    let sealed_row = verified
        .iter()
        .find(|row| row[0].ends_with("sealed.zip"))
        .unwrap();
    assert_eq!(sealed_row[7], "failed", "{sealed_row:?}");
    assert!(
        sealed_row[8].contains("[backup.keys.new]"),
        "{sealed_row:?}"
    );
    let databases = column(&admin, "SHOW DATABASES").await;
    assert!(!databases.contains(&"nokey".to_owned()), "{databases:?}");
    drop(admin);
    server.terminate();

    // With a wrong passphrase under the key's name: refused before anything is written.
    set_keys(&site, Some("a different passphrase"), true);
    let server = start(&site);
    let admin = server.admin("default").await;
    let e = refused(
        &admin,
        "RESTORE DATABASE wrongkey FROM 'sealed.zip'",
        "key \"new\" does not open",
    )
    .await;
    assert_eq!(e.code().unwrap().code(), "39000", "{e}");
    let databases = column(&admin, "SHOW DATABASES").await;
    assert!(!databases.contains(&"wrongkey".to_owned()), "{databases:?}");
    assert_eq!(
        temporaries(&site.data_dir().join("databases")),
        Vec::<String>::new()
    );
    drop(admin);
    server.terminate();

    // The CLI finds the key through --config, and says which key is missing without it.
    set_keys(&site, Some(NEW_PASSPHRASE), true);
    let (ok, out) = run(cairn()
        .arg("verify")
        .arg("--config")
        .arg(site.config_path())
        .arg(backups.join("sealed.zip"))
        .env("CAIRN_TEST_OLD_KEY", OLD_PASSPHRASE));
    assert!(ok, "{out}");
    let (ok, out) = run(cairn().arg("verify").arg(backups.join("sealed.zip")));
    assert!(!ok, "{out}");
    assert!(out.contains("encrypted with key \"new\""), "{out}");
    // `cairn backup --key` encrypts as SQL does; without --config it is refused.
    let cli = backups.join("cli.zip");
    let (ok, out) = run(cairn()
        .args([
            "backup",
            "--database",
            "default",
            "--key",
            "old",
            "--data-dir",
        ])
        .arg(site.data_dir())
        .arg("--to")
        .arg(&cli)
        .arg("--config")
        .arg(site.config_path())
        .env("CAIRN_TEST_OLD_KEY", OLD_PASSPHRASE));
    assert!(ok, "{out}");
    assert_eq!(manifest(&cli)["encryption"]["key"], "old");
    let out = tempfile::tempdir().unwrap();
    assert_eq!(
        opened_by_pyzipper(&cli, OLD_PASSPHRASE, out.path()).unwrap(),
        SECRET_ROW
    );
    let (ok, out) = run(cairn()
        .args([
            "backup",
            "--database",
            "default",
            "--key",
            "old",
            "--data-dir",
        ])
        .arg(site.data_dir())
        .arg("--to")
        .arg(backups.join("nocfg.zip")));
    assert!(!ok && out.contains("--config"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_restores_both_generations() {
    let site = Site::new("");
    set_keys(&site, Some(NEW_PASSPHRASE), true);
    let server = start(&site);
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    admin
        .batch_execute("BACKUP DATABASE default TO 'gen1.zip' WITH (key = 'old')")
        .await
        .unwrap();
    admin
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    admin
        .batch_execute("BACKUP DATABASE default TO 'gen2.zip' WITH (key = 'new')")
        .await
        .unwrap();
    for (archive, database, rows) in [("gen1.zip", "one", "1"), ("gen2.zip", "two", "2")] {
        admin
            .batch_execute(&format!("RESTORE DATABASE {database} FROM '{archive}'"))
            .await
            .unwrap();
        let restored = server.admin(database).await;
        assert_eq!(column(&restored, "SELECT count(*) FROM t").await, [rows]);
    }
    let keys = column(
        &admin,
        "SELECT encryption_key FROM archives('') ORDER BY location",
    )
    .await;
    assert_eq!(keys, ["old", "new"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_archive_in_object_storage_restores_with_its_key() {
    let crate::destinations::Offsite { s3, site, server } = offsite(|site| {
        let mut config = std::fs::read_to_string(site.config_path()).unwrap();
        config.push_str("\n[backup.keys.offsite]\nkey_file = \"offsite.key\"\n");
        std::fs::write(site.dir.path().join("offsite.key"), NEW_PASSPHRASE).unwrap();
        std::fs::write(site.config_path(), config).unwrap();
    });
    let admin = server.admin("default").await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE secrets(id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO secrets(body) VALUES ('{SECRET_ROW}');"
        ))
        .await
        .unwrap();
    admin
        .batch_execute(
            "BACKUP DATABASE default TO 'offsite:sealed.zip' WITH (encryption = 'aes-256', key = 'offsite', compression_level = 0)",
        )
        .await
        .unwrap();
    let fetched = tempfile::tempdir().unwrap();
    let local = fetched.path().join("sealed.zip");
    s3.client(&[
        "get",
        "cairn-backups",
        "prod/sealed.zip",
        local.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&local).unwrap();
    assert!(
        !contains(&bytes, SECRET_ROW),
        "the row is readable in the bucket"
    );
    assert_eq!(manifest(&local)["encryption"]["key"], "offsite");
    admin
        .batch_execute("RESTORE DATABASE back FROM 'offsite:sealed.zip'")
        .await
        .unwrap();
    let back = server.admin("back").await;
    assert_eq!(
        column(&back, "SELECT body FROM secrets").await,
        [SECRET_ROW]
    );

    // An encrypted export, streamed to the store and read back before it is published.
    admin
        .batch_execute(
            "EXPORT DATABASE default TO 'offsite:sealed.export.zip' WITH (key = 'offsite')",
        )
        .await
        .unwrap_or_else(|e| panic!("{}", message(&e)));
    let fetched_export = fetched.path().join("sealed.export.zip");
    s3.client(&[
        "get",
        "cairn-backups",
        "prod/sealed.export.zip",
        fetched_export.to_str().unwrap(),
    ]);
    assert_eq!(manifest(&fetched_export)["kind"], "export");
    admin
        .batch_execute("IMPORT DATABASE imported FROM 'offsite:sealed.export.zip'")
        .await
        .unwrap_or_else(|e| panic!("{}", message(&e)));
    let imported = server.admin("imported").await;
    assert_eq!(
        column(&imported, "SELECT body FROM secrets").await,
        [SECRET_ROW]
    );
    drop(site);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_whose_newest_link_has_no_key_is_refused_and_leaves_nothing() {
    let site = Site::new("");
    set_keys(&site, Some(NEW_PASSPHRASE), true);
    let server = start(&site);
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    // The full archive with the new key, the increment on it with the old one.
    admin
        .batch_execute("BACKUP DATABASE default INTO 'chain' WITH (key = 'new')")
        .await
        .unwrap();
    admin
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    admin
        .batch_execute("BACKUP DATABASE default INTO 'chain' WITH (incremental, key = 'old')")
        .await
        .unwrap();
    admin
        .batch_execute(
            "RESTORE DATABASE default FROM LATEST IN 'chain' WITH (new_db_name = 'both')",
        )
        .await
        .unwrap_or_else(|e| panic!("{}", message(&e)));
    let both = server.admin("both").await;
    assert_eq!(column(&both, "SELECT count(*) FROM t").await, ["2"]);
    drop(both);
    drop(admin);
    server.terminate();

    // The newest link's key gone: the chain is refused naming it (before its base is
    // extracted), and nothing is installed or left behind.
    set_keys(&site, Some(NEW_PASSPHRASE), false);
    let server = start(&site);
    let admin = server.admin("default").await;
    refused(
        &admin,
        "RESTORE DATABASE default FROM LATEST IN 'chain' WITH (new_db_name = 'half')",
        "encrypted with key \"old\"",
    )
    .await;
    assert!(
        !column(&admin, "SHOW DATABASES")
            .await
            .contains(&"half".to_owned())
    );
    assert_eq!(
        temporaries(&site.data_dir().join("databases")),
        Vec::<String>::new()
    );
    assert_eq!(temporaries(&backups_dir(&site)), Vec::<String>::new());
}
