//! Backup destinations in object storage, against a real S3-compatible server (`moto_server`,
//! started per test on a free loopback port). What Cairn wrote is read back with an
//! independent client (boto3, `tests/clients/s3.py`) and judged with `unzip` and Python's
//! `zipfile`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Site, TestServer, run, standard_config};

/// A running `moto_server`.
pub(crate) struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    /// Starts one and waits until it accepts connections.
    pub(crate) fn start() -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run moto_server ({e}); install it: pip install 'moto[server]' boto3")
            });
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Runs the independent client: `mkbucket`, `get`, `put`, `list`.
    pub(crate) fn client(&self, args: &[&str]) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/clients/s3.py");
        let (ok, out) = run(Command::new("python3")
            .arg(script)
            .arg(&self.endpoint)
            .args(args));
        assert!(ok, "s3.py {args:?}: {out}");
        out
    }

    /// `key size` lines and the count of unfinished uploads in `bucket`.
    pub(crate) fn objects(&self, bucket: &str) -> (Vec<(String, u64)>, usize) {
        let out = self.client(&["list", bucket]);
        let mut objects = Vec::new();
        let mut uploads = 0;
        for line in out.lines() {
            let (key, n) = line.rsplit_once(' ').unwrap();
            if key == "uploads" {
                uploads = n.parse().unwrap();
            } else {
                objects.push((key.to_owned(), n.parse().unwrap()));
            }
        }
        (objects, uploads)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The standard config with destination `offsite` at `s3://cairn-backups/prod` on `s3`.
fn offsite_config(endpoint: &str, bucket: &str) -> String {
    format!(
        "{}\n[backup.destinations.offsite]\nurl = \"s3://{bucket}/prod\"\nendpoint = \"{endpoint}\"\naccess_key_id_env = \"CAIRN_TEST_S3_ID\"\nsecret_access_key_env = \"CAIRN_TEST_S3_SECRET\"\n",
        standard_config()
    )
}

fn start_with_keys(site: &Site) -> TestServer {
    TestServer::start_with_env(
        &site.config_path(),
        &[],
        &[
            ("CAIRN_TEST_S3_ID", "testing"),
            ("CAIRN_TEST_S3_SECRET", "testing"),
        ],
    )
}

fn downloaded(s3: &S3Server, key: &str, dir: &Path) -> PathBuf {
    let file = dir.join(key.replace('/', "_"));
    s3.client(&["get", "cairn-backups", key, file.to_str().unwrap()]);
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_to_a_destination_is_a_standard_archive_in_the_bucket_and_restores() {
    let s3 = S3Server::start();
    s3.client(&["mkbucket", "cairn-backups"]);
    let site = Site::new(&offsite_config(&s3.endpoint, "cairn-backups"));
    let server = start_with_keys(&site);
    let admin = server.admin("default").await;
    admin
        .batch_execute(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, note TEXT);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000)
             INSERT INTO t SELECT x, hex(randomblob(100)) FROM c",
        )
        .await
        .unwrap();

    let row = admin
        .query_one("BACKUP DATABASE default TO 'offsite:daily/d.zip'", &[])
        .await
        .unwrap();
    let path: String = row.get("path");
    assert_eq!(path, "offsite:daily/d.zip");

    // Exactly the archive under its final key: no temporary object, no unfinished upload.
    let (objects, uploads) = s3.objects("cairn-backups");
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0].0, "prod/daily/d.zip");
    assert_eq!(uploads, 0);
    let bytes: i64 = row.get("bytes");
    assert_eq!(objects[0].1, bytes as u64);

    // Judged by tools that are not Cairn.
    let dir = tempfile::tempdir().unwrap();
    let archive = downloaded(&s3, "prod/daily/d.zip", dir.path());
    let (ok, out) = run(Command::new("unzip").arg("-t").arg(&archive));
    assert!(ok && out.contains("No errors detected"), "{out}");
    let (ok, out) = run(Command::new("python3").args([
        "-c",
        "import json, sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(json.loads(z.read('manifest.json'))['database'])",
    ]).arg(&archive));
    assert!(ok && out.trim() == "default", "{out}");

    // An existing key is never replaced.
    let err = admin
        .batch_execute("BACKUP DATABASE default TO 'offsite:daily/d.zip'")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("58P02"), "{err}");
    assert_eq!(s3.objects("cairn-backups").0.len(), 1);

    // Restored from the bucket, row for row.
    admin
        .batch_execute("RESTORE DATABASE copy FROM 'offsite:daily/d.zip'")
        .await
        .unwrap();
    let copy = server.admin("copy").await;
    let n: i64 = copy
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5000);
    let rows = "SELECT group_concat(id || ':' || note, ',') FROM (SELECT * FROM t ORDER BY id)";
    let original: String = admin.query_one(rows, &[]).await.unwrap().get(0);
    let restored: String = copy.query_one(rows, &[]).await.unwrap().get(0);
    assert!(original == restored, "the restored rows differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_failures_name_the_destination_and_what_to_check() {
    let s3 = S3Server::start();
    // No bucket made: the bucket does not exist.
    let site = Site::new(&offsite_config(&s3.endpoint, "cairn-backups"));
    let server = start_with_keys(&site);
    let admin = server.admin("default").await;
    let err = admin
        .batch_execute("BACKUP DATABASE default TO 'offsite:d.zip'")
        .await
        .unwrap_err();
    let message = crate::harness::message(&err);
    assert!(
        message.contains("\"offsite\"") && message.contains("s3://cairn-backups/prod"),
        "{message}"
    );
    assert!(message.contains("bucket does not exist"), "{message}");

    // A destination nobody configured lists the ones there are.
    let err = admin
        .batch_execute("BACKUP DATABASE default TO 'nowhere:d.zip'")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42704"), "{err}");
    let message = crate::harness::message(&err);
    assert!(message.contains("local, offsite"), "{message}");

    // Keys that are not plain names are refused before anything is sent.
    let err = admin
        .batch_execute("BACKUP DATABASE default TO 'offsite:../d.zip'")
        .await
        .unwrap_err();
    assert!(crate::harness::message(&err).contains("'..'"), "{err}");

    // A missing archive names the key and the bucket.
    s3.client(&["mkbucket", "cairn-backups"]);
    let err = admin
        .batch_execute("RESTORE DATABASE x FROM 'offsite:missing.zip'")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("58P01"), "{err}");
    server.assert_still_serving().await;
}

/// The server refuses to start when a destination's secret is not where the config says.
#[test]
fn a_missing_secret_stops_start_up_naming_the_key() {
    let site = Site::new(&offsite_config("http://127.0.0.1:9", "cairn-backups"));
    let (status, stderr) = crate::harness::serve_until_exit(&site.config_path());
    assert!(!status.success());
    assert!(
        stderr.contains("CAIRN_TEST_S3_ID") && stderr.contains("access_key_id"),
        "{stderr}"
    );
}

/// The rows of `sql` as text, by column name.
async fn texts(client: &tokio_postgres::Client, sql: &str, column: &str) -> Vec<Option<String>> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, Option<String>>(column))
        .collect()
}

async fn count(server: &TestServer, database: &str) -> i64 {
    let client = server.admin(database).await;
    client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_are_listed_from_what_exists_and_the_latest_restores() {
    let s3 = S3Server::start();
    s3.client(&["mkbucket", "cairn-backups"]);
    let site = Site::new(&offsite_config(&s3.endpoint, "cairn-backups"));
    let server = start_with_keys(&site);
    let admin = server.admin("default").await;
    admin.batch_execute("CREATE DATABASE sales").await.unwrap();
    {
        let sales = server.admin("sales").await;
        sales
            .batch_execute("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1), (2)")
            .await
            .unwrap();
        admin
            .batch_execute("BACKUP DATABASE sales TO 'offsite:auto/sales-1.zip'")
            .await
            .unwrap();
        sales
            .batch_execute("INSERT INTO t VALUES (3)")
            .await
            .unwrap();
        admin
            .batch_execute("BACKUP DATABASE sales TO 'offsite:auto/sales-2.zip'")
            .await
            .unwrap();
    }
    admin
        .batch_execute("BACKUP DATABASE default TO 'offsite:auto/default.zip'; BACKUP DATABASE default TO 'here.zip'")
        .await
        .unwrap();
    // Something in the prefix that is not an archive at all.
    let junk = site.dir.path().join("junk.zip");
    std::fs::write(&junk, b"not a zip").unwrap();
    s3.client(&[
        "put",
        "cairn-backups",
        "prod/auto/junk.zip",
        junk.to_str().unwrap(),
    ]);

    let listed = texts(&admin, "SHOW ARCHIVES IN 'offsite:auto'", "location").await;
    assert_eq!(listed.len(), 4, "{listed:?}");
    let problems = texts(
        &admin,
        "SELECT problem FROM archives('offsite:auto') WHERE location = 'offsite:auto/junk.zip'",
        "problem",
    )
    .await;
    assert!(
        problems[0]
            .as_deref()
            .is_some_and(|p| p.contains("not a readable ZIP")),
        "{problems:?}"
    );
    let newest = texts(
        &admin,
        "SELECT location FROM archives('offsite:auto') WHERE database = 'sales' ORDER BY created_at DESC LIMIT 1",
        "location",
    )
    .await;
    assert_eq!(newest, [Some("offsite:auto/sales-2.zip".to_owned())]);
    let verified = texts(
        &admin,
        "SHOW ARCHIVES IN 'offsite:auto' WITH (verify)",
        "verification",
    )
    .await;
    assert_eq!(
        verified
            .iter()
            .filter(|v| v.as_deref() == Some("passed"))
            .count(),
        3,
        "{verified:?}"
    );
    // The local directory is listed from its files: one deleted by hand is gone.
    assert_eq!(texts(&admin, "SHOW ARCHIVES", "location").await.len(), 1);
    std::fs::remove_file(site.dir.path().join("backups").join("here.zip")).unwrap();
    assert!(texts(&admin, "SHOW ARCHIVES", "location").await.is_empty());

    // The newest archive of the database, then the newest as of the first one's instant.
    admin.batch_execute("DROP DATABASE sales").await.unwrap();
    let restored = texts(
        &admin,
        "RESTORE DATABASE sales FROM LATEST IN 'offsite:auto'",
        "path",
    )
    .await;
    assert_eq!(restored, [Some("offsite:auto/sales-2.zip".to_owned())]);
    assert_eq!(count(&server, "sales").await, 3);
    let first = texts(
        &admin,
        "SELECT created_at FROM archives('offsite:auto') WHERE location = 'offsite:auto/sales-1.zip'",
        "created_at",
    )
    .await[0]
        .clone()
        .unwrap();
    admin
        .batch_execute(&format!(
            "RESTORE DATABASE sales FROM LATEST IN 'offsite:auto' AS OF SYSTEM TIME '{first}' WITH (replace)"
        ))
        .await
        .unwrap();
    assert_eq!(count(&server, "sales").await, 2);
    let err = admin
        .batch_execute(
            "RESTORE DATABASE sales FROM LATEST IN 'offsite:auto' AS OF SYSTEM TIME '2000-01-01 00:00:00+00' WITH (replace)",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("58P01"), "{err}");
    assert!(
        crate::harness::message(&err).contains("no backup archive of database \"sales\""),
        "{err}"
    );
}
