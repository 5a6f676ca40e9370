//! `[server.tls]`: libpq (psql, psycopg), asyncpg and node-postgres over TLS, the server's
//! certificate verified, SCRAM bound to it, plain connections refused when TLS is required.

use std::io::{Read, Write};

use crate::harness::{ADMIN_PASSWORD, Site, TestServer, standard_config};

/// A certificate authority and a server certificate it signed for `localhost` and
/// 127.0.0.1, written as PEM files into `dir`: (CA, certificate, key) paths.
fn certificates(dir: &std::path::Path, ca_name: &str) -> [std::path::PathBuf; 3] {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &issuer).unwrap();
    let paths = [
        dir.join(format!("{ca_name}.crt")),
        dir.join("server.crt"),
        dir.join("server.key"),
    ];
    std::fs::write(&paths[0], ca_cert.pem()).unwrap();
    std::fs::write(&paths[1], cert.pem()).unwrap();
    std::fs::write(&paths[2], key.serialize_pem()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&paths[2], std::fs::Permissions::from_mode(0o600)).unwrap();
    paths
}

/// A site whose server takes TLS with a certificate of its own CA (returned).
fn tls_site(required: bool) -> (Site, std::path::PathBuf) {
    let site = Site::new(&standard_config());
    let [ca, cert, key] = certificates(site.dir.path(), "test-ca");
    let mut config = std::fs::read_to_string(site.config_path()).unwrap();
    config.push_str(&format!(
        "\n[server.tls]\ncertificate = {:?}\nprivate_key = {:?}\nrequired = {required}\n",
        cert.file_name().unwrap(),
        key.file_name().unwrap(),
    ));
    std::fs::write(site.config_path(), config).unwrap();
    (site, ca)
}

/// psql with a libpq connection string's `options`: whether it succeeded, its output and
/// its errors.
fn psql(server: &TestServer, options: &str, sql: &str) -> (bool, String, String) {
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
            "-c",
            "\\conninfo",
        ])
        .arg(format!(
            "port={} user=admin dbname=default {options}",
            server.port
        ))
        .env("PGPASSWORD", ADMIN_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "30")
        .output()
        .expect("psql runs (.ci/run installs postgresql-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Cairn refused every SSLRequest: passwords' proofs and every row crossed the network in
/// plain text, and libpq's `sslmode=require` could not connect at all. Now the server
/// takes TLS with the configured certificate, `verify-full` checks it (by name and by
/// address), SCRAM binds to it (`channel_binding=require`: SCRAM-SHA-256-PLUS), a client
/// that does not trust the CA cannot connect, and plain connections still work when TLS is
/// not required.
#[tokio::test]
async fn sslmode_require_could_not_connect() {
    let (site, ca) = tls_site(false);
    let server = site.start();
    let ca = ca.display();
    for host in ["localhost", "127.0.0.1"] {
        let (ok, stdout, stderr) = psql(
            &server,
            &format!("host={host} sslmode=verify-full sslrootcert={ca} channel_binding=require"),
            "SELECT 40 + 2",
        );
        assert!(ok, "{host}: {stderr}");
        assert!(stdout.starts_with("42\n"), "{stdout}");
        assert!(
            stdout.contains("SSL connection (protocol: TLSv1.3"),
            "{stdout}"
        );
    }
    // A large result and a COPY go through the TLS stream as through a plain one.
    let (ok, stdout, stderr) = psql(
        &server,
        &format!("host=127.0.0.1 sslmode=verify-full sslrootcert={ca}"),
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) SELECT count(*), sum(length(p)) FROM (SELECT x, hex(randomblob(50)) AS p FROM c)",
    );
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("200000|20000000\n"), "{stdout}");

    // Another CA's client does not trust the server's certificate.
    let other = site.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let [other_ca, _, _] = certificates(&other, "other-ca");
    let (ok, _, stderr) = psql(
        &server,
        &format!(
            "host=localhost sslmode=verify-full sslrootcert={}",
            other_ca.display()
        ),
        "SELECT 1",
    );
    assert!(!ok);
    assert!(stderr.contains("certificate verify failed"), "{stderr}");

    // TLS is not required here: a plain connection still logs in.
    let (ok, stdout, stderr) = psql(&server, "host=127.0.0.1 sslmode=disable", "SELECT 1");
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("SSL connection"), "{stdout}");

    // The drivers with TLS implementations of their own.
    crate::hostile::run_client_script_with_env(
        &server,
        "tls.py",
        &[("CAIRN_TEST_CA", &ca.to_string())],
    );
    crate::hostile::run_client_script_with_env(
        &server,
        "node_tls.js",
        &[("CAIRN_TEST_CA", &ca.to_string())],
    );
    server.assert_still_serving().await;
}

/// With `required = true`, a client that does not ask for TLS is refused before its
/// password is asked for, saying how to connect.
#[tokio::test]
async fn tls_required_refuses_plain_connections() {
    let (site, _) = tls_site(true);
    let server = site.start();
    let (ok, _, stderr) = psql(&server, "host=127.0.0.1 sslmode=disable", "SELECT 1");
    assert!(!ok);
    assert!(
        stderr.contains("without encryption refused")
            && stderr.contains("[server.tls] required = true")
            && stderr.contains("sslmode=require"),
        "{stderr}"
    );
    // libpq's default (prefer) asks for TLS first.
    let (ok, stdout, stderr) = psql(&server, "host=127.0.0.1", "SELECT 1");
    assert!(ok, "{stderr}");
    assert!(stdout.contains("SSL connection"), "{stdout}");
}

/// Bytes sent after the SSLRequest in the same packet, before the handshake, would be read
/// as if they had come encrypted (CVE-2021-23214 in PostgreSQL): such a client is refused.
#[tokio::test]
async fn bytes_before_the_tls_handshake_were_taken_as_encrypted() {
    let (site, _) = tls_site(false);
    let server = site.start();
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let ssl_request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut sent = ssl_request.to_vec();
    // A startup packet smuggled behind it.
    let startup = b"\0\x03\0\0user\0admin\0\0";
    sent.extend_from_slice(&((startup.len() + 4) as u32).to_be_bytes());
    sent.extend_from_slice(startup);
    socket.write_all(&sent).unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(answer.first() != Some(&b'S'), "TLS was accepted: {text}");
    assert!(
        text.contains("unencrypted data after SSL request"),
        "{text}"
    );
    server.assert_still_serving().await;
}

/// A certificate that cannot be read, or a key others may read, stops the start with the
/// key and the path (and, for the key, the chmod that fixes it).
#[test]
fn a_missing_certificate_or_an_open_key_stops_the_start_naming_it() {
    let (site, _) = tls_site(false);
    let config = std::fs::read_to_string(site.config_path()).unwrap();
    std::fs::write(
        site.config_path(),
        config.replace("\"server.crt\"", "\"nowhere.crt\""),
    )
    .unwrap();
    let (status, logs) = crate::harness::serve_until_exit(&site.config_path());
    assert_eq!(status.code(), Some(2), "{logs}");
    assert!(
        logs.contains("[server.tls] certificate") && logs.contains("nowhere.crt"),
        "{logs}"
    );
    std::fs::write(site.config_path(), config).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let key = site.dir.path().join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, logs) = crate::harness::serve_until_exit(&site.config_path());
    assert_eq!(status.code(), Some(2), "{logs}");
    assert!(
        logs.contains("mode 644") && logs.contains("chmod 600"),
        "{logs}"
    );
}

/// A client could choose SCRAM-SHA-256-PLUS on a plain connection, or claim channel binding
/// (`p=`) under plain SCRAM-SHA-256: pgwire took either. PostgreSQL refuses both; so does
/// Cairn, before any password is checked.
#[tokio::test]
async fn a_scram_mechanism_and_its_binding_flag_could_disagree() {
    let (site, _) = tls_site(false);
    let server = site.start();
    for (mechanism, first) in [
        (
            "SCRAM-SHA-256-PLUS",
            "p=tls-server-end-point,,n=,r=abcdefgh",
        ),
        ("SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abcdefgh"),
    ] {
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let startup = b"\0\x03\0\0user\0admin\0database\0default\0\0";
        let mut sent = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
        sent.extend_from_slice(startup);
        socket.write_all(&sent).unwrap();
        // AuthenticationSASL: 'R', its length, then the mechanisms.
        let mut header = [0u8; 5];
        socket.read_exact(&mut header).unwrap();
        assert_eq!(header[0], b'R');
        let mut body =
            vec![
                0u8;
                u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize - 4
            ];
        socket.read_exact(&mut body).unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains("PLUS"),
            "PLUS offered in plain"
        );
        let mut payload = mechanism.as_bytes().to_vec();
        payload.push(0);
        payload.extend_from_slice(&(first.len() as u32).to_be_bytes());
        payload.extend_from_slice(first.as_bytes());
        let mut message = vec![b'p'];
        message.extend_from_slice(&((payload.len() + 4) as u32).to_be_bytes());
        message.extend_from_slice(&payload);
        socket.write_all(&message).unwrap();
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer);
        let expected = if mechanism.ends_with("PLUS") {
            "SCRAM-SHA-256-PLUS needs TLS"
        } else {
            "channel binding flag does not match"
        };
        assert!(text.contains(expected), "{mechanism}: {text}");
    }
    server.assert_still_serving().await;
}
