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
        S3Server::start_with(&[])
    }

    /// As [`Self::start`], with `env` for the server (moto's own settings).
    pub(crate) fn start_with(env: &[(&str, &str)]) -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
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

/// A server whose destination `offsite` is in bucket `cairn-backups` of its own S3 server.
/// Bind its fields in this order (`let Offsite { s3, site, server }`): the server, bound
/// last, stops first.
pub(crate) struct Offsite {
    pub(crate) s3: S3Server,
    pub(crate) site: Site,
    pub(crate) server: TestServer,
}

/// Starts an S3 server with the bucket, then Cairn, after `prepare` has seen the site.
pub(crate) fn offsite(prepare: impl FnOnce(&Site)) -> Offsite {
    let s3 = S3Server::start();
    s3.client(&["mkbucket", "cairn-backups"]);
    let site = Site::new(&offsite_config(&s3.endpoint, "cairn-backups"));
    prepare(&site);
    let server = start_with_keys(&site);
    Offsite { server, site, s3 }
}

/// Table `t` with `rows` rows of 100 kB that do not compress.
async fn incompressible(client: &tokio_postgres::Client, rows: u32) {
    client
        .batch_execute(&format!(
            "CREATE TABLE t(b BLOB);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
             INSERT INTO t SELECT randomblob(100000) FROM c"
        ))
        .await
        .unwrap();
}

/// Adds the builtin automatic-backup plugin to `site`'s config, with `settings` as its
/// config file.
pub(crate) fn with_automatic_backup(site: &Site, settings: &str) {
    let config = std::fs::read_to_string(site.config_path()).unwrap();
    std::fs::write(
        site.config_path(),
        format!("{config}[plugins.automatic_backup]\nlibrary = \"builtin\"\nconfig_file = \"automatic-backup.toml\"\n"),
    )
    .unwrap();
    crate::automatic_backup::write_settings(site, settings);
}

fn downloaded(s3: &S3Server, key: &str, dir: &Path) -> PathBuf {
    let file = dir.join(key.replace('/', "_"));
    s3.client(&["get", "cairn-backups", key, file.to_str().unwrap()]);
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_to_a_destination_is_a_standard_archive_in_the_bucket_and_restores() {
    let Offsite {
        s3,
        site: _site,
        server,
    } = offsite(|_| {});
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
    let Offsite { s3, site, server } = offsite(|_| {});
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
    // Under another name (CockroachDB's option).
    admin
        .batch_execute(
            "RESTORE DATABASE sales FROM LATEST IN 'offsite:auto' WITH (new_db_name = 'sales_copy')",
        )
        .await
        .unwrap();
    assert_eq!(count(&server, "sales_copy").await, 3);
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

/// A TCP proxy in front of the S3 server that can die like it: once `cut_after` bytes went
/// upstream, every connection is dropped and the port stops accepting until [`Self::revive`].
struct FragileLink {
    port: u16,
    upstream: u16,
    dead: tokio_util::sync::CancellationToken,
}

impl FragileLink {
    async fn start(upstream: &str, cut_after: u64) -> FragileLink {
        let upstream: u16 = upstream.rsplit(':').next().unwrap().parse().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let link = FragileLink {
            port,
            upstream,
            dead: tokio_util::sync::CancellationToken::new(),
        };
        link.serve(listener, Some(cut_after));
        link
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Accepts again on the same port, forwarding for good.
    async fn revive(&mut self) {
        self.dead = tokio_util::sync::CancellationToken::new();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener, None);
    }

    fn serve(&self, listener: tokio::net::TcpListener, cut_after: Option<u64>) {
        let dead = self.dead.clone();
        let upstream = self.upstream;
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = dead.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { return };
                let (dead, sent) = (dead.clone(), std::sync::Arc::clone(&sent));
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = async {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buffer = vec![0u8; 64 << 10];
                        loop {
                            let n = client_read.read(&mut buffer).await?;
                            if n == 0 {
                                return std::io::Result::Ok(());
                            }
                            server_write.write_all(&buffer[..n]).await?;
                            let total = sent
                                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed)
                                + n as u64;
                            if cut_after.is_some_and(|limit| total >= limit) {
                                dead.cancel();
                            }
                        }
                    };
                    let down = tokio::io::copy(&mut server_read, &mut client_write);
                    tokio::select! {
                        _ = dead.cancelled() => {}
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
    }
}

/// The S3 server going away in the middle of an upload leaves nothing under the final key,
/// fails the backup naming the destination, and the next backup succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_died_mid_upload_left_no_archive_and_the_next_backup_succeeds() {
    let s3 = S3Server::start();
    s3.client(&["mkbucket", "cairn-backups"]);
    // About 24 MiB that does not compress: three parts of the upload.
    let mut link = FragileLink::start(&s3.endpoint, 10 << 20).await;
    let site = Site::new(&offsite_config(&link.endpoint(), "cairn-backups"));
    let server = start_with_keys(&site);
    let admin = server.admin("default").await;
    incompressible(&admin, 240).await;
    let err = admin
        .batch_execute("BACKUP DATABASE default TO 'offsite:big.zip'")
        .await
        .unwrap_err();
    let message = crate::harness::message(&err);
    assert!(
        message.contains("\"offsite\"") && message.contains("could not be reached"),
        "{message}"
    );
    server.assert_still_serving().await;

    link.revive().await;
    let (objects, _) = s3.objects("cairn-backups");
    assert!(
        !objects.iter().any(|(key, _)| key == "prod/big.zip"),
        "{objects:?}"
    );
    admin
        .batch_execute("BACKUP DATABASE default TO 'offsite:big.zip'")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = downloaded(&s3, "prod/big.zip", dir.path());
    let (ok, out) = run(Command::new("unzip").arg("-t").arg(&archive));
    assert!(ok && out.contains("No errors detected"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_to_a_destination_is_gzip_json_lines_and_imports() {
    let Offsite {
        s3,
        site: _site,
        server,
    } = offsite(|_| {});
    let admin = server.admin("default").await;
    admin
        .batch_execute(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, note TEXT);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000)
             INSERT INTO t SELECT x, 'row ' || x FROM c",
        )
        .await
        .unwrap();
    let row = admin
        .query_one(
            "EXPORT DATABASE default TO 'offsite:exports/d.json.gz'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("path"), "offsite:exports/d.json.gz");
    let (objects, uploads) = s3.objects("cairn-backups");
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(uploads, 0);
    assert_eq!(objects[0].1, row.get::<_, i64>("bytes") as u64);

    let dir = tempfile::tempdir().unwrap();
    let file = downloaded(&s3, "prod/exports/d.json.gz", dir.path());
    let (ok, out) = run(Command::new("gzip").arg("-t").arg(&file));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new("python3").args([
        "-c",
        "import gzip, json, sys; lines = gzip.open(sys.argv[1]).read().splitlines(); print(json.loads(lines[0])['database'], len(lines))",
    ]).arg(&file));
    assert!(ok && out.starts_with("default "), "{out}");

    let kinds = texts(&admin, "SHOW ARCHIVES IN 'offsite:exports'", "kind").await;
    assert_eq!(kinds, [Some("export".to_owned())]);
    admin
        .batch_execute("IMPORT DATABASE copy FROM 'offsite:exports/d.json.gz'")
        .await
        .unwrap();
    assert_eq!(count(&server, "copy").await, 3000);
}

/// `cairn` with the destination's keys in its environment.
fn cli(args: &[&str]) -> (bool, String) {
    run(crate::harness::cairn()
        .args(args)
        .env("CAIRN_TEST_S3_ID", "testing")
        .env("CAIRN_TEST_S3_SECRET", "testing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_backs_up_lists_verifies_and_restores_through_a_destination() {
    let s3 = S3Server::start();
    s3.client(&["mkbucket", "cairn-backups"]);
    let site = Site::new(&offsite_config(&s3.endpoint, "cairn-backups"));
    let config = site.config_path();
    let config = config.to_str().unwrap();
    let data = site.data_dir();
    let data = data.to_str().unwrap();
    let server = start_with_keys(&site);
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1), (2), (3)")
        .await
        .unwrap();
    // Against the live server's data directory, as `cairn backup` allows.
    let (ok, out) = cli(&[
        "backup",
        "--data-dir",
        data,
        "--database",
        "default",
        "--to",
        "offsite:cli/d.zip",
        "--config",
        config,
    ]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&[
        "archives",
        "list",
        "offsite:cli",
        "--config",
        config,
        "--json",
        "--verify",
    ]);
    assert!(ok, "{out}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let line = &listed["archives"][0];
    assert_eq!(line["location"], "offsite:cli/d.zip", "{out}");
    assert_eq!(line["database"], "default", "{out}");
    assert_eq!(line["verified"], true, "{out}");
    let (ok, out) = cli(&["verify", "offsite:cli/d.zip", "--config", config]);
    assert!(ok && out.contains("integrity check passed"), "{out}");
    drop(admin);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");

    let (ok, out) = cli(&[
        "restore",
        "--from-latest",
        "offsite:cli",
        "--database",
        "default",
        "--new-db-name",
        "copy",
        "--config",
        config,
        "--data-dir",
        data,
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new("sqlite3")
        .arg(site.data_dir().join("databases").join("copy.sqlite"))
        .arg("SELECT count(*) FROM t"));
    assert!(ok && out.trim() == "3", "{out}");
    // A destination the config does not declare is refused by name.
    let (ok, out) = cli(&["archives", "list", "nowhere:x", "--config", config]);
    assert!(
        !ok && out.contains("no backup destination \"nowhere\""),
        "{out}"
    );
}

/// Plugins reach destinations through the host table (ABI 1.3): list what is there, verify
/// an object, delete one archive, and nothing that is not an archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_list_verify_and_delete_archives_in_a_destination() {
    let Offsite { s3, site, server } = offsite(|site| {
        let config = std::fs::read_to_string(site.config_path()).unwrap();
        std::fs::write(
            site.config_path(),
            format!(
                "{config}[plugins.panicky]\nlibrary = \"libpanicky_plugin.so\"\nrole = \"backup\"\n"
            ),
        )
        .unwrap();
        crate::plugins::install_rust_plugin(site, "panicky_plugin", "libpanicky_plugin.so");
    });
    let admin = server.admin("default").await;
    admin
        .batch_execute(
            "BACKUP DATABASE default TO 'offsite:p/a.zip'; BACKUP DATABASE default TO 'local.zip'",
        )
        .await
        .unwrap();
    let listed = texts(&admin, "CALL panicky.archives('offsite:p')", "location").await;
    assert_eq!(listed, [Some("offsite:p/a.zip".to_owned())]);
    let verified = texts(&admin, "CALL panicky.verify('offsite:p/a.zip')", "database").await;
    assert_eq!(verified, [Some("default".to_owned())]);

    let err = admin
        .batch_execute("CALL panicky.delete('offsite:p/notes.txt')")
        .await
        .unwrap_err();
    assert!(
        crate::harness::message(&err).contains("only those are deleted"),
        "{err}"
    );
    let deleted: i64 = admin
        .query_one("CALL panicky.delete('offsite:p/a.zip')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(deleted, 1);
    assert!(
        texts(&admin, "CALL panicky.archives('offsite:p')", "location")
            .await
            .is_empty()
    );
    assert!(s3.objects("cairn-backups").0.is_empty());
    let again: i64 = admin
        .query_one("CALL panicky.delete('offsite:p/a.zip')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, 0);
    // The local directory, by the same functions.
    let deleted: i64 = admin
        .query_one("CALL panicky.delete('local.zip')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(deleted, 1);
    assert!(!site.dir.path().join("backups/local.zip").exists());
}

/// An object put under the key while the backup uploads is kept: the publishing copy is
/// conditional, the backup fails saying the name is taken, and nothing of it is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_appeared_during_the_upload_was_not_replaced() {
    let Offsite { s3, site, server } = offsite(|_| {});
    let admin = server.admin("default").await;
    // About 3 MB that does not compress, written at 1 MiB/s: a few seconds of upload.
    incompressible(&admin, 30).await;
    let id: i64 = admin
        .query_one(
            "BACKUP DATABASE default TO 'offsite:race.zip' WITH (max_rate = '1MiB', detached)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    crate::harness::wait_for_progress(&admin, &id.to_string()).await;
    let theirs = site.dir.path().join("theirs.zip");
    std::fs::write(&theirs, b"someone else's object").unwrap();
    s3.client(&[
        "put",
        "cairn-backups",
        "prod/race.zip",
        theirs.to_str().unwrap(),
    ]);

    let deadline = Instant::now() + Duration::from_secs(60);
    let error = loop {
        let rows = admin
            .query(
                &format!("SELECT status, backup_error FROM backups() WHERE id = {id}"),
                &[],
            )
            .await
            .unwrap();
        let status: String = rows[0].get(0);
        if status != "running" {
            assert_eq!(status, "failed");
            break rows[0].get::<_, Option<String>>(1).unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "the backup never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("already exists"), "{error}");
    let (objects, uploads) = s3.objects("cairn-backups");
    assert_eq!(objects, [("prod/race.zip".to_owned(), 21)], "{objects:?}");
    assert_eq!(uploads, 0);
}

/// The automatic-backup plugin with `target_directory` in a destination: each run writes,
/// verifies (read back from the store) and prunes there, and only archives it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_automatic_backup_plugin_writes_verifies_and_prunes_in_a_destination() {
    let Offsite { s3, site, server } = offsite(|site| {
        with_automatic_backup(
            site,
            "schedule = \"0 0 1 1 *\"\ndb_include = [\"default\"]\ntarget_directory = \"offsite:auto\"\n[retention]\nkeep_last = 2\n",
        )
    });
    // Named like the plugin's archives, but not written by it: never touched.
    let foreign = site.dir.path().join("foreign.zip");
    std::fs::write(&foreign, b"someone else's").unwrap();
    s3.client(&[
        "put",
        "cairn-backups",
        "prod/auto/default-20200101000000.zip",
        foreign.to_str().unwrap(),
    ]);
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let mut written = Vec::new();
    for _ in 0..3 {
        let archive = texts(&admin, "CALL automatic_backup.run('default')", "archive").await;
        written.push(archive[0].clone().unwrap());
    }
    assert!(
        written
            .iter()
            .all(|a| a.starts_with("offsite:auto/default-")),
        "{written:?}"
    );

    let (objects, uploads) = s3.objects("cairn-backups");
    let mut keys: Vec<String> = objects.into_iter().map(|(k, _)| k).collect();
    keys.sort();
    let mut expected = vec!["prod/auto/default-20200101000000.zip".to_owned()];
    expected.extend(written[1..].iter().map(|a| a.replace("offsite:", "prod/")));
    expected.sort();
    assert_eq!(
        keys, expected,
        "retention kept the two newest it wrote and nothing else"
    );
    assert_eq!(uploads, 0);

    let plan = admin
        .query("CALL automatic_backup.prune(dry_run => true)", &[])
        .await
        .unwrap();
    assert_eq!(
        plan.len(),
        2,
        "only the archives it wrote are in its ledger"
    );
    let status = texts(&admin, "CALL automatic_backup.status()", "last_archive").await;
    assert_eq!(status, [Some(written[2].clone())]);
    // Restored from what the plugin wrote.
    admin
        .batch_execute(
            "RESTORE DATABASE copy FROM LATEST IN 'offsite:auto' WITH (new_db_name = 'copy')",
        )
        .await
        .unwrap_err();
    admin
        .batch_execute(
            "RESTORE DATABASE default FROM LATEST IN 'offsite:auto' WITH (new_db_name = 'copy')",
        )
        .await
        .unwrap();
    assert_eq!(count(&server, "copy").await, 1);
}

/// Scheduled runs into a destination, with retention there, as an unattended server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_keep_the_newest_archives_in_the_bucket() {
    use chrono::Timelike;
    let settings = |schedule: &str| {
        format!(
            "schedule = \"{schedule}\"\ndb_include = [\"default\"]\ntarget_directory = \"offsite:auto\"\n[retention]\nkeep_last = 2\n"
        )
    };
    let Offsite { s3, site, server } =
        offsite(|site| with_automatic_backup(site, &settings("0 0 1 1 *")));
    // Once the server is up: three firings a few seconds from now, then none for most of a
    // minute, so the runs are over once three have logged their outcome.
    let now = chrono::Utc::now().second();
    let seconds: Vec<String> = [3, 5, 7]
        .iter()
        .map(|d| ((now + d) % 60).to_string())
        .collect();
    crate::automatic_backup::write_settings(
        &site,
        &settings(&format!("{} * * * * *", seconds.join(","))),
    );
    server
        .admin("default")
        .await
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    server.wait_for_logs("automatic backup complete", 3);
    // One line per outcome, with what an operator reads: database, archive, size, duration.
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("automatic backup complete"))
        .unwrap();
    for field in [
        "database=\"default\"",
        "archive=offsite:auto/default-",
        "bytes=",
        "seconds=",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    let admin = server.admin("default").await;
    let (objects, uploads) = s3.objects("cairn-backups");
    assert_eq!(objects.len(), 2, "keep_last = 2 in the bucket: {objects:?}");
    assert!(
        objects
            .iter()
            .all(|(k, _)| k.starts_with("prod/auto/default-")),
        "{objects:?}"
    );
    assert_eq!(uploads, 0);
    let plan =
        crate::automatic_backup::rows(&admin, "CALL automatic_backup.prune(dry_run => true)").await;
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert!(plan.iter().all(|r| r["reason"] == "kept: last"), "{plan:?}");
    let listed = texts(
        &admin,
        "SHOW ARCHIVES IN 'offsite:auto' WITH (verify)",
        "verification",
    )
    .await;
    assert_eq!(
        listed,
        [Some("passed".to_owned()), Some("passed".to_owned())]
    );
}

/// Keys the store does not know: the error says the credentials were refused and what to
/// check, and carries nothing of the store's response body (which echoes the request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_named_as_such() {
    // moto checks keys against its own IAM when this count is 0: "testing" is unknown.
    let s3 = S3Server::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let site = Site::new(&offsite_config(&s3.endpoint, "cairn-backups"));
    let server = start_with_keys(&site);
    let admin = server.admin("default").await;
    let err = admin
        .batch_execute("BACKUP DATABASE default TO 'offsite:d.zip'")
        .await
        .unwrap_err();
    let message = crate::harness::message(&err);
    assert!(
        message.contains("refused the credentials") && message.contains("\"offsite\""),
        "{message}"
    );
    assert!(!message.contains('<'), "a response body leaked: {message}");
    server.assert_still_serving().await;
}

/// A store that does not answer does not keep the plugin from starting: its runs fail,
/// retry with the plugin's back-off and say why; a destination the server does not have is
/// a config error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_retries_a_store_that_does_not_answer_and_refuses_an_unknown_one() {
    // Port 9 (discard) refuses connections on this machine.
    let site = Site::new(&offsite_config("http://127.0.0.1:9", "cairn-backups"));
    let settings = |target: &str| {
        format!(
            "schedule = \"0 0 1 1 *\"\ndb_include = [\"default\"]\ntarget_directory = \"{target}\"\nretries = 1\nretry_delay = \"1s\"\n"
        )
    };
    with_automatic_backup(&site, &settings("offsite:auto"));
    let server = start_with_keys(&site);
    let admin = server.admin("default").await;
    let state = texts(&admin, "SHOW PLUGINS", "state").await;
    assert_eq!(state, [Some("running".to_owned())]);
    let err = admin
        .batch_execute("CALL automatic_backup.run('default')")
        .await
        .unwrap_err();
    let message = crate::harness::message(&err);
    assert!(
        message.contains("\"offsite\"") && message.contains("could not be reached"),
        "{message}"
    );
    // Scheduled, a failed run is retried with the back-off, and says so.
    crate::automatic_backup::write_settings(
        &site,
        &settings("offsite:auto").replace("0 0 1 1 *", "*/2 * * * * *"),
    );
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    server.wait_for_log("automatic backup failed; retrying");
    crate::automatic_backup::wait_until("a retry was attempted", || async {
        texts(
            &admin,
            "SELECT status FROM backups() WHERE database = 'default' AND status = 'failed'",
            "status",
        )
        .await
        .len()
            >= 3
    })
    .await;

    crate::automatic_backup::write_settings(&site, &settings("nowhere:auto"));
    let err = admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap_err();
    assert!(
        crate::harness::message(&err).contains("no backup destination \"nowhere\""),
        "{err}"
    );
}

/// A store that cannot be listed is no evidence that its archives are gone: pruning then
/// forgets nothing, and deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_keeps_the_ledger() {
    let s3 = S3Server::start();
    s3.client(&["mkbucket", "cairn-backups"]);
    let mut link = FragileLink::start(&s3.endpoint, u64::MAX).await;
    let site = Site::new(&offsite_config(&link.endpoint(), "cairn-backups"));
    with_automatic_backup(
        &site,
        "schedule = \"0 0 1 1 *\"\ndb_include = [\"default\"]\ntarget_directory = \"offsite:auto\"\n[retention]\nkeep_last = 1\n",
    );
    let server = start_with_keys(&site);
    let admin = server.admin("default").await;
    admin
        .batch_execute("CALL automatic_backup.run('default')")
        .await
        .unwrap();
    let plan = "CALL automatic_backup.prune(dry_run => true)";
    let before = crate::automatic_backup::rows(&admin, plan).await;
    assert_eq!(before.len(), 1, "{before:?}");

    link.dead.cancel();
    let during = crate::automatic_backup::rows(&admin, "CALL automatic_backup.prune()").await;
    assert!(
        during
            .iter()
            .all(|r| r["action"] == "keep" && r["reason"].contains("could not be listed")),
        "{during:?}"
    );
    link.revive().await;
    let after = crate::automatic_backup::rows(&admin, plan).await;
    assert_eq!(after.len(), 1, "the record was forgotten: {after:?}");
    assert_eq!(after[0]["archive"], before[0]["archive"]);
    assert_eq!(s3.objects("cairn-backups").0.len(), 1);
}

/// QuestDB's `BACKUP DATABASE;` (the session's database) and `BACKUP DATABASE name;` write a
/// full archive named by the database and its time into `[backup] default_destination`, and
/// return its snapshot time; with no default destination the statement says what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_database_with_no_path_lands_in_the_default_destination() {
    let Offsite {
        s3,
        site: _site,
        server,
    } = offsite(|site| {
        let config = std::fs::read_to_string(site.config_path()).unwrap();
        std::fs::write(
            site.config_path(),
            format!("{config}\n[backup]\ndefault_destination = \"offsite:auto\"\n"),
        )
        .unwrap();
    });
    let admin = server.admin("default").await;
    admin
        .batch_execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b'); CREATE DATABASE sales",
        )
        .await
        .unwrap();
    let mine = crate::harness::texts(&admin, "BACKUP DATABASE;").await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    let (database, path, created_at) = (&mine[0][1], &mine[0][2], &mine[0][5]);
    assert_eq!(database, "default");
    assert!(
        path.starts_with("offsite:auto/default-") && path.ends_with("-full.zip"),
        "{mine:?}"
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(created_at).is_ok(),
        "{mine:?}"
    );
    let other = crate::harness::texts(&admin, "BACKUP DATABASE sales;").await;
    assert!(other[0][2].starts_with("offsite:auto/sales-"), "{other:?}");
    let listed = s3.client(&["list", "cairn-backups", "prod/auto/"]);
    let key = path.trim_start_matches("offsite:");
    assert!(listed.contains(key), "{listed}");
    assert!(listed.contains("prod/auto/sales-"), "{listed}");
    // What landed there restores.
    admin
        .batch_execute(
            "RESTORE DATABASE default FROM LATEST IN 'offsite:auto' WITH (new_db_name = 'back')",
        )
        .await
        .unwrap();
    assert_eq!(
        crate::harness::texts(&server.admin("back").await, "SELECT v FROM t ORDER BY id").await,
        [["a"], ["b"]]
    );

    // No default destination: refused, saying what to set.
    let plain_site = Site::new(&standard_config());
    let plain = plain_site.start();
    let refused = plain
        .admin("default")
        .await
        .batch_execute("BACKUP DATABASE;")
        .await
        .unwrap_err();
    let message = crate::harness::message(&refused);
    assert!(
        message.contains("[backup] default_destination, which is not set"),
        "{message}"
    );
    plain.assert_still_serving().await;
}
