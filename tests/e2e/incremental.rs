//! Incremental archives with the real binary: `BACKUP … INTO` a collection, increments that
//! hold only the changed pages, chains restored to each snapshot, and a broken link refused
//! by name.

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::Client;

use crate::harness::{Site, message, run, texts};

/// Table `t` with `rows` rows of about 110 bytes.
async fn table_t(client: &Client, rows: u32) {
    client
        .batch_execute(&format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, pad TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO t SELECT i, i, printf('%0100d', i) FROM n;"
        ))
        .await
        .unwrap();
}

/// What the rows of `t` add up to: changes anywhere move it.
async fn fingerprint(client: &Client) -> String {
    texts(
        client,
        "SELECT count(*) || ':' || total(k) || ':' || total(length(pad)) || ':' || group_concat(k % 7, '') FROM t",
    )
    .await[0][0]
        .clone()
}

/// `RESTORE … FROM LATEST IN location` as `copy` holds the rows `admin`'s database has now.
async fn latest_restores_as_now(
    server: &crate::harness::TestServer,
    admin: &Client,
    location: &str,
) {
    latest_restores_as_now_in(server, admin, location, "copy").await;
}

/// As [`latest_restores_as_now`], into database `copy`.
async fn latest_restores_as_now_in(
    server: &crate::harness::TestServer,
    admin: &Client,
    location: &str,
    copy: &str,
) {
    let expected = fingerprint(admin).await;
    admin
        .batch_execute(&format!(
            "RESTORE DATABASE default FROM LATEST IN '{location}' WITH (new_db_name = '{copy}')"
        ))
        .await
        .unwrap();
    assert_eq!(fingerprint(&server.admin(copy).await).await, expected);
}

/// `BACKUP … INTO 'coll'`: the archive's path and size.
async fn backup_into(client: &Client, incremental: bool) -> (PathBuf, u64) {
    let with = if incremental {
        " WITH (incremental)"
    } else {
        ""
    };
    let row = &texts(
        client,
        &format!("BACKUP DATABASE default INTO 'coll'{with}"),
    )
    .await[0];
    (PathBuf::from(&row[2]), row[3].parse().unwrap())
}

fn zip_tools_accept(archive: &Path) {
    let (ok, out) = run(Command::new("unzip").arg("-t").arg(archive));
    assert!(ok, "unzip -t: {out}");
    let (ok, out) = run(Command::new("python3")
        .arg("-c")
        .arg("import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(sorted(z.namelist()))")
        .arg(archive));
    assert!(ok, "zipfile: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_archive_and_three_increments_restore_to_each_snapshot() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, pad TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
             INSERT INTO t SELECT i, i, printf('%0100d', i * 7919) FROM n;",
        )
        .await
        .unwrap();
    let (full, full_bytes) = backup_into(&admin, false).await;
    assert!(
        full.file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("-full.zip"),
        "{full:?}"
    );
    let mut snapshots = vec![(full.clone(), fingerprint(&admin).await)];
    for round in 1..=3 {
        // 1 % of the rows scattered, and a few appended.
        admin
            .batch_execute(&format!(
                "UPDATE t SET k = k + {round} WHERE id % 100 = {round};
                 INSERT INTO t SELECT id + 20000 * {round}, 0, 'new' FROM t WHERE id <= 50;"
            ))
            .await
            .unwrap();
        let (archive, bytes) = backup_into(&admin, true).await;
        assert!(
            archive
                .file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with("-incr.zip"),
            "{archive:?}"
        );
        // About 36 rows fit a page, so one row in a hundred touches about a third of them.
        assert!(
            bytes * 2 < full_bytes,
            "increment {round} is {bytes} bytes, the full archive {full_bytes}"
        );
        zip_tools_accept(&archive);
        snapshots.push((archive, fingerprint(&admin).await));
    }

    // The collection lists one full archive and three increments, oldest first.
    let listed = texts(
        &admin,
        "SELECT location, kind, created_at FROM archives('coll') ORDER BY created_at",
    )
    .await;
    let kinds: Vec<&str> = listed.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(kinds, ["full", "incremental", "incremental", "incremental"]);

    // Each snapshot, restored through its chain, holds exactly its rows.
    for (i, ((archive, expected), row)) in snapshots.iter().zip(&listed).enumerate() {
        assert_eq!(Path::new(&row[0]), archive.as_path());
        admin
            .batch_execute(&format!(
                "RESTORE DATABASE default FROM LATEST IN 'coll' AS OF SYSTEM TIME '{}' WITH (new_db_name = 'r{i}')",
                row[2]
            ))
            .await
            .unwrap();
        let restored = server.admin(&format!("r{i}")).await;
        assert_eq!(&fingerprint(&restored).await, expected, "snapshot {i}");
        let check = texts(&restored, "PRAGMA integrity_check").await;
        assert_eq!(check, [["ok"]]);
    }
    // Each file's own entries check out.
    let verified = texts(&admin, "SHOW ARCHIVES IN 'coll' WITH (verify)").await;
    assert!(
        verified.iter().all(|r| r.contains(&"passed".to_owned())),
        "{verified:?}"
    );

    // `cairn verify` of the newest increment checks the whole chain.
    let newest = snapshots[3].0.clone();
    let out = crate::harness::cairn()
        .arg("verify")
        .arg(&newest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // A corrupted middle link is refused, by name, and nothing is restored.
    let middle = &snapshots[2].0;
    let mut bytes = std::fs::read(middle).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(middle, &bytes).unwrap();
    let err = admin
        .batch_execute(
            "RESTORE DATABASE default FROM LATEST IN 'coll' WITH (new_db_name = 'broken')",
        )
        .await
        .unwrap_err();
    let said = message(&err);
    let middle_name = middle.file_name().unwrap().to_string_lossy().into_owned();
    assert!(said.contains(&middle_name), "{said}");
    assert!(
        !texts(&admin, "SHOW DATABASES")
            .await
            .iter()
            .any(|r| r[0] == "broken")
    );
    let out = crate::harness::cairn()
        .arg("verify")
        .arg(&newest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&middle_name),
        "{out:?}"
    );
    // A missing link breaks the chain there, and says so.
    std::fs::remove_file(middle).unwrap();
    let err = admin
        .batch_execute(
            "RESTORE DATABASE default FROM LATEST IN 'coll' WITH (new_db_name = 'broken')",
        )
        .await
        .unwrap_err();
    let said = message(&err);
    assert!(
        said.contains(&middle_name) && said.contains("the chain is broken there"),
        "{said}"
    );
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}

/// The page digests an increment compares against are a cache: without them, the parent's
/// image is rebuilt from its chain, and the increment is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_without_cached_digests_rebuilds_its_parent() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    table_t(&admin, 5000).await;
    let err = admin
        .batch_execute("BACKUP DATABASE default INTO 'coll' WITH (incremental)")
        .await
        .unwrap_err();
    assert!(
        message(&err).contains("takes the full one first"),
        "{}",
        message(&err)
    );
    // OrientDB's console form: into an empty directory a full archive, then increments.
    for kind in ["-full.zip", "-incr.zip"] {
        let row = &texts(&admin, "BACKUP DATABASE console -incremental").await[0];
        assert!(row[2].ends_with(kind), "{row:?}");
    }
    let (_, full_bytes) = backup_into(&admin, false).await;
    admin
        .batch_execute("UPDATE t SET k = -k WHERE id % 50 = 0")
        .await
        .unwrap();
    backup_into(&admin, true).await;
    std::fs::remove_dir_all(site.data_dir().join("system/page-digests")).unwrap();
    admin
        .batch_execute("UPDATE t SET k = 0 WHERE id BETWEEN 100 AND 200")
        .await
        .unwrap();
    // A few pages changed: the increment holds those, not the database.
    let (_, bytes) = backup_into(&admin, true).await;
    assert!(bytes * 5 < full_bytes, "{bytes} of {full_bytes}");
    // However the collection is written, an increment lands beside its parent.
    let row = &texts(
        &admin,
        "BACKUP DATABASE default INTO 'coll ' WITH (incremental)",
    )
    .await[0];
    let written = PathBuf::from(&row[2]);
    assert!(written.parent().unwrap().ends_with("coll"), "{row:?}");
    latest_restores_as_now(&server, &admin, "coll").await;
    drop(admin);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");

    // The command line adds to the same collection (its option names are SQL's).
    let coll = site.dir.path().join("backups/coll");
    let out = crate::harness::cairn()
        .args([
            "--json",
            "backup",
            "--database",
            "default",
            "--incremental",
            "--into",
        ])
        .arg(&coll)
        .arg("--data-dir")
        .arg(site.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let written: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(written["kind"], "incremental", "{written}");
    // At the increments' default level, as the server's own (the CLI gave its default of 6
    // as if asked for).
    assert_eq!(
        recorded_level(Path::new(written["archive"].as_str().unwrap())),
        "3"
    );
    let out = crate::harness::cairn()
        .arg("verify")
        .arg(written["archive"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The same chain in object storage: a full archive and an increment in `offsite:coll`,
/// restored from the store, and the increment read back by boto3 as a ZIP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_in_a_destination_restores_from_the_store() {
    let crate::destinations::Offsite {
        s3,
        site: _site,
        server,
    } = crate::destinations::offsite(|_| {});
    let admin = server.admin("default").await;
    table_t(&admin, 5000).await;
    admin
        .batch_execute("BACKUP DATABASE default INTO 'offsite:coll'")
        .await
        .unwrap();
    admin
        .batch_execute("UPDATE t SET k = -k WHERE id % 500 = 0")
        .await
        .unwrap();
    let row = &texts(
        &admin,
        "BACKUP DATABASE default INTO 'offsite:coll' WITH (incremental)",
    )
    .await[0];
    let key = row[2].rsplit('/').next().unwrap().to_owned();
    assert!(key.ends_with("-incr.zip"), "{row:?}");
    let listed = s3.client(&["list", "cairn-backups", "prod/coll/"]);
    assert!(listed.contains(&key), "{listed}");
    let copy = tempfile::tempdir().unwrap();
    let downloaded = copy.path().join(&key);
    s3.client(&[
        "get",
        "cairn-backups",
        &format!("prod/coll/{key}"),
        downloaded.to_str().unwrap(),
    ]);
    zip_tools_accept(&downloaded);
    latest_restores_as_now(&server, &admin, "offsite:coll").await;
}

/// A database that shrank (VACUUM) rebuilds to its new size, and an increment builds on the
/// newest archive directly in its collection, not on a newer one in a subdirectory (which
/// it could never find beside itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vacuumed_database_and_an_archive_in_a_subdirectory() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    table_t(&admin, 8000).await;
    backup_into(&admin, false).await;
    admin
        .batch_execute("BACKUP DATABASE default TO 'coll/sub/newer.zip'")
        .await
        .unwrap();
    admin
        .batch_execute("DELETE FROM t WHERE id > 1000")
        .await
        .unwrap();
    admin.batch_execute("VACUUM").await.unwrap();
    let (increment, _) = backup_into(&admin, true).await;
    let expected = fingerprint(&admin).await;
    let out = crate::harness::cairn()
        .arg("verify")
        .arg(&increment)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    admin
        .batch_execute(&format!(
            "RESTORE DATABASE copy FROM '{}'",
            increment.display()
        ))
        .await
        .unwrap();
    let copy = server.admin("copy").await;
    assert_eq!(fingerprint(&copy).await, expected);
    let pages = texts(&copy, "PRAGMA page_count").await;
    let source_pages = texts(&admin, "PRAGMA page_count").await;
    assert_eq!(pages, source_pages);
}

/// A plugin backs up into a collection through the host table (ABI 1.4 `into` and
/// `incremental`), and the chain restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_adds_increments_to_a_collection() {
    let site = Site::new(&format!(
        "{}\n[plugins.panicky]\nlibrary = \"libpanicky_plugin.so\"\nrole = \"backup\"\n",
        crate::harness::standard_config()
    ));
    let plugins = site.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        crate::plugins::cdylib("panicky_plugin"),
        plugins.join("libpanicky_plugin.so"),
    )
    .unwrap();
    let server = site.start();
    let admin = server.admin("default").await;
    table_t(&admin, 3000).await;
    let full = texts(&admin, "CALL panicky.backup_into('default', 'plugcoll', 0)").await;
    assert!(full[0][0].ends_with("-full.zip"), "{full:?}");
    admin
        .batch_execute("UPDATE t SET k = -k WHERE id < 50")
        .await
        .unwrap();
    let incr = texts(&admin, "CALL panicky.backup_into('default', 'plugcoll', 1)").await;
    assert!(incr[0][0].ends_with("-incr.zip"), "{incr:?}");
    let err = admin
        .batch_execute("CALL panicky.backup_into('nope', 'plugcoll', 1)")
        .await
        .unwrap_err();
    assert!(message(&err).contains("nope"), "{}", message(&err));
    latest_restores_as_now(&server, &admin, "plugcoll").await;
}

/// `CALL automatic_backup.run('default')`: the archive's file name, and how many were pruned.
async fn plugin_run(client: &Client) -> (String, usize) {
    let row =
        &crate::automatic_backup::rows(client, "CALL automatic_backup.run('default')").await[0];
    let archive = &row["archive"];
    let file = archive.rsplit(['/', ':']).next().unwrap().to_owned();
    (file, row["pruned"].parse().unwrap())
}

/// What `prune(dry_run => true)` says of each archive: (file, action, reason, kind).
async fn prune_plan(client: &Client) -> Vec<(String, String, String, String)> {
    crate::automatic_backup::rows(client, "CALL automatic_backup.prune(dry_run => true)")
        .await
        .into_iter()
        .map(|r| {
            (
                r["archive"].clone(),
                r["action"].clone(),
                r["reason"].clone(),
                r["kind"].clone(),
            )
        })
        .collect()
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// The automatic-backup plugin's `mode = "incremental"`: a full archive every `full_every`
/// archives with increments between, retention that removes only whole chains (a kept
/// increment keeps everything it needs), and a chain whose full archive an operator deleted:
/// left alone, counted for nothing, while the next run starts a new chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_keeps_and_removes_whole_chains() {
    let site = crate::automatic_backup::site(
        "schedule = \"0 0 1 1 *\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\nmode = \"incremental\"\nfull_every = 3\n[retention]\nkeep_last = 2\n",
    );
    let server = site.start();
    let admin = server.admin("default").await;
    table_t(&admin, 20_000).await;
    let dir = crate::automatic_backup::archive_dir(&site);
    let mut written = Vec::new();
    for run in 0..5 {
        if run > 0 {
            admin
                .batch_execute(&format!("UPDATE t SET k = k + 1 WHERE id % 97 = {run}"))
                .await
                .unwrap();
        }
        let (file, pruned) = plugin_run(&admin).await;
        // Nothing goes while the oldest chain holds up a kept increment.
        assert_eq!(pruned, if run == 4 { 3 } else { 0 }, "run {run}");
        written.push(file);
        if run == 3 {
            let plan = prune_plan(&admin).await;
            let reason_of = |file: &str| {
                plan.iter()
                    .find(|p| p.0 == file)
                    .map(|p| p.2.clone())
                    .unwrap()
            };
            assert_eq!(reason_of(&written[3]), "kept: last");
            assert_eq!(reason_of(&written[2]), "kept: last");
            assert_eq!(
                reason_of(&written[1]),
                format!("kept: parent of {}", written[2])
            );
            assert_eq!(
                reason_of(&written[0]),
                format!("kept: parent of {}", written[1])
            );
            assert!(plan.iter().all(|p| p.1 == "keep"), "{plan:?}");
        }
    }
    let kinds: Vec<&str> = written
        .iter()
        .map(|f| f.rsplit('-').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["full.zip", "incr.zip", "incr.zip", "full.zip", "incr.zip"],
        "{written:?}"
    );
    assert_eq!(
        crate::automatic_backup::files(&dir),
        sorted(written[3..].to_vec()),
        "the first chain went whole, the second stays whole"
    );
    let plan = prune_plan(&admin).await;
    assert_eq!(
        plan.iter().map(|p| p.3.as_str()).collect::<Vec<_>>(),
        ["incremental", "full"]
    );
    latest_restores_as_now(&server, &admin, "auto").await;

    // An operator deletes the newest chain's full archive: its increment restores nothing,
    // and the next run is a full one (not a failure, not an increment on a lost parent).
    std::fs::remove_file(dir.join(&written[3])).unwrap();
    admin
        .batch_execute("UPDATE t SET k = -k WHERE id % 50 = 0")
        .await
        .unwrap();
    let (file, pruned) = plugin_run(&admin).await;
    assert!(file.ends_with("-full.zip"), "{file}");
    assert_eq!(pruned, 0);
    let plan = prune_plan(&admin).await;
    let orphan = plan.iter().find(|p| p.0 == written[4]).unwrap();
    assert_eq!(orphan.1, "keep");
    assert!(
        orphan.2.contains("its chain lacks") && orphan.2.contains(&written[3]),
        "{orphan:?}"
    );
    assert_eq!(
        crate::automatic_backup::files(&dir),
        sorted(vec![written[4].clone(), file])
    );
    latest_restores_as_now_in(&server, &admin, "auto", "copy2").await;
}

/// The same in a destination: chains of two, keep_last = 1, in an S3 bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_keeps_whole_chains_in_a_bucket() {
    let crate::destinations::Offsite { s3, site, server } = crate::destinations::offsite(|site| {
        crate::destinations::with_automatic_backup(
            site,
            "schedule = \"0 0 1 1 *\"\ndb_include = [\"default\"]\ntarget_directory = \"offsite:auto\"\nmode = \"incremental\"\nfull_every = 2\n[retention]\nkeep_last = 1\n",
        )
    });
    let _site = site;
    let admin = server.admin("default").await;
    table_t(&admin, 5000).await;
    let keys = || {
        let (objects, _) = s3.objects("cairn-backups");
        sorted(
            objects
                .into_iter()
                .map(|(k, _)| k.trim_start_matches("prod/auto/").to_owned())
                .collect(),
        )
    };
    let mut written = Vec::new();
    for run in 0..4 {
        admin
            .batch_execute(&format!("UPDATE t SET k = k + 1 WHERE id % 31 = {run}"))
            .await
            .unwrap();
        let (file, pruned) = plugin_run(&admin).await;
        assert_eq!(pruned, if run == 2 { 2 } else { 0 }, "run {run}");
        written.push(file);
    }
    assert!(written[2].ends_with("-full.zip") && written[3].ends_with("-incr.zip"));
    assert_eq!(keys(), sorted(written[2..].to_vec()));
    latest_restores_as_now(&server, &admin, "offsite:auto").await;
}

/// An increment someone else wrote (`BACKUP … INTO` the plugin's directory) on one of the
/// plugin's archives: retention keeps that parent, though no rule of its own would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_never_orphans_an_increment_it_did_not_write() {
    let site = crate::automatic_backup::site(
        "schedule = \"0 0 1 1 *\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\nmode = \"incremental\"\nfull_every = 2\n[retention]\nkeep_last = 1\n",
    );
    let server = site.start();
    let admin = server.admin("default").await;
    table_t(&admin, 5000).await;
    let (first, _) = plugin_run(&admin).await;
    admin
        .batch_execute("UPDATE t SET k = 0 WHERE id % 10 = 0")
        .await
        .unwrap();
    let manual = &texts(
        &admin,
        "BACKUP DATABASE default INTO 'auto' WITH (incremental)",
    )
    .await[0][2];
    let manual = manual.rsplit('/').next().unwrap().to_owned();
    let (increment, _) = plugin_run(&admin).await;
    let (second_full, pruned) = plugin_run(&admin).await;
    assert!(second_full.ends_with("-full.zip"), "{second_full}");
    assert_eq!(pruned, 1, "only the plugin's own increment went");
    let dir = crate::automatic_backup::archive_dir(&site);
    assert_eq!(
        crate::automatic_backup::files(&dir),
        sorted(vec![first.clone(), manual.clone(), second_full])
    );
    assert!(!dir.join(increment).exists());
    let plan = prune_plan(&admin).await;
    let kept = plan.iter().find(|p| p.0 == first).unwrap();
    assert_eq!(kept.2, format!("kept: parent of {manual}"));
}

/// The level an archive's manifest records, read with Python's zipfile.
fn recorded_level(archive: &Path) -> String {
    let (ok, out) = run(Command::new("python3").arg("-c").arg(
        "import sys, json, zipfile; print(json.loads(zipfile.ZipFile(sys.argv[1]).read('manifest.json'))['compression_level'])",
    ).arg(archive));
    assert!(ok, "{out}");
    out.trim().to_owned()
}

/// Increments are deflated at level 3 unless a level is asked for (their time is deflate's:
/// level 6 took a quarter of a full backup's time after a scattered 1 % update), full
/// archives at 6; the manifest records the level used.
#[tokio::test]
async fn an_increment_is_deflated_at_level_3_unless_a_level_is_asked_for() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    table_t(&admin, 2_000).await;
    let (full, _) = backup_into(&admin, false).await;
    assert_eq!(recorded_level(&full), "6");
    admin
        .batch_execute("UPDATE t SET k = k + 1 WHERE id % 10 = 0")
        .await
        .unwrap();
    let (increment, _) = backup_into(&admin, true).await;
    assert_eq!(recorded_level(&increment), "3");
    admin
        .batch_execute("UPDATE t SET k = k + 1 WHERE id % 10 = 1")
        .await
        .unwrap();
    let row = &texts(
        &admin,
        "BACKUP DATABASE default INTO 'coll' WITH (incremental, compression_level = 9)",
    )
    .await[0];
    assert_eq!(recorded_level(Path::new(&row[2])), "9");
    zip_tools_accept(Path::new(&row[2]));
    latest_restores_as_now(&server, &admin, "coll").await;
}

/// Rewrites page `page` (1-based) of increment `archive` with other bytes and recomputes its
/// entry's SHA-256 in the manifest, as someone covering their tracks would: every entry then
/// checks out, and only the link's image digest is wrong. Returns the pages the link holds.
fn tamper_with_page(archive: &Path, pick: &str) -> Vec<u32> {
    let script = r#"
import sys, json, zipfile, hashlib, struct, shutil
path, pick = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(path)
m = json.loads(z.read('manifest.json'))
pages = list(struct.unpack('<%dI' % (len(z.read('pages.map')) // 4), z.read('pages.map')))
body = bytearray(z.read('pages.bin'))
size = m['page_size']
index = pages.index(int(pick))
body[index * size + size // 2] ^= 0xff
for e in m['entries']:
    if e['name'] == 'pages.bin':
        e['sha256'] = hashlib.sha256(body).hexdigest()
out = zipfile.ZipFile(path + '.new', 'w', zipfile.ZIP_DEFLATED)
for name in z.namelist():
    data = {'pages.bin': bytes(body), 'manifest.json': json.dumps(m).encode()}.get(name) or z.read(name)
    out.writestr(name, data)
out.close()
shutil.move(path + '.new', path)
"#;
    let (ok, out) = run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(archive)
        .arg(pick));
    assert!(ok, "{out}");
    pages_of(archive)
}

/// The page numbers an increment holds.
fn pages_of(archive: &Path) -> Vec<u32> {
    let (ok, out) = run(Command::new("python3").arg("-c").arg(
        "import sys, zipfile, struct; m = zipfile.ZipFile(sys.argv[1]).read('pages.map'); print(' '.join(map(str, struct.unpack('<%dI' % (len(m) // 4), m))))",
    ).arg(archive));
    assert!(ok, "{out}");
    out.split_whitespace().map(|p| p.parse().unwrap()).collect()
}

/// A chain's rebuild checked only the newest image (found by a user check): a middle link
/// damaged with its entry hashes recomputed passed `cairn verify` when a later link
/// overwrote the damaged page, and was blamed on the newest, intact link when none did.
/// `cairn verify` proves every link's own image; a restore names the link that is wrong.
#[tokio::test]
async fn a_middle_link_with_a_wrong_image_is_named_by_verify_and_restore() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    table_t(&admin, 20_000).await;
    backup_into(&admin, false).await;
    let mut links = Vec::new();
    for round in 1..=3 {
        admin
            .batch_execute(&format!("UPDATE t SET k = k + 1 WHERE id % 97 = {round}"))
            .await
            .unwrap();
        links.push(backup_into(&admin, true).await.0);
    }
    let (middle, newest) = (&links[1], &links[2]);
    let middle_name = middle.file_name().unwrap().to_string_lossy().into_owned();
    let (in_middle, in_newest) = (pages_of(middle), pages_of(newest));
    let verify = |archive: &Path| {
        crate::harness::cairn()
            .arg("verify")
            .arg(archive)
            .output()
            .unwrap()
    };

    // A page the newest link rewrites: the latest image is right, the middle one is not.
    let shared = in_middle
        .iter()
        .find(|p| in_newest.contains(p))
        .copied()
        .unwrap();
    let original = std::fs::read(middle).unwrap();
    tamper_with_page(middle, &shared.to_string());
    let out = verify(newest);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&middle_name),
        "{out:?}"
    );

    // A page only the middle link holds: the restore is refused, naming the middle link.
    std::fs::write(middle, &original).unwrap();
    let own = in_middle
        .iter()
        .find(|p| !in_newest.contains(p))
        .copied()
        .unwrap();
    tamper_with_page(middle, &own.to_string());
    let err = admin
        .batch_execute(
            "RESTORE DATABASE default FROM LATEST IN 'coll' WITH (new_db_name = 'broken')",
        )
        .await
        .unwrap_err();
    let said = message(&err);
    assert!(said.contains(&middle_name), "{said}");
    assert!(
        !said.contains(&*newest.file_name().unwrap().to_string_lossy()),
        "{said}"
    );
}

/// An instant before every archive of a collection was refused without saying where the
/// archives begin (found by a user check): the refusal names the oldest archive's time.
#[tokio::test]
async fn an_instant_before_every_archive_is_told_where_they_begin() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    table_t(&admin, 100).await;
    backup_into(&admin, false).await;
    let oldest = texts(&admin, "SELECT created_at FROM archives('coll')").await[0][0].clone();
    let err = admin
        .batch_execute(
            "RESTORE DATABASE default FROM LATEST IN 'coll' AS OF SYSTEM TIME '2000-01-01T00:00:00Z' WITH (new_db_name = 'old')",
        )
        .await
        .unwrap_err();
    let said = message(&err);
    assert!(said.contains("the oldest there was taken at"), "{said}");
    let day = &oldest[..10];
    assert!(said.contains(day), "{said} should name {oldest}");
}
