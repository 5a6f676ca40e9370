//! `cairn status`: finds the server of a config through its data directory's lock file (as
//! `pg_ctl status` reads `postmaster.pid`), and asks it for details over its `/status`
//! endpoint when it has one.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use cairn_server::Config;
use cairn_server::data_dir_lock::{self, Holder};
use cairn_server::disk_space::describe;
use cairn_server::http::status::ServerStatus;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::json;

use crate::exit::{Failure, failure};
use crate::output::Outcome;

/// How long the server's endpoint may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

pub fn status(config_path: &Path) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let data_dir = config.data_dir.display().to_string();
    let Some(holder) = data_dir_lock::holder(&config.data_dir)? else {
        let text = format!("server:      not running (data directory {data_dir})\n");
        let json = json!({ "running": false, "data_dir": data_dir });
        return Ok(Outcome::done(text, json).failing(failure(
            Failure::NotFound,
            format!(
                "no server is running on {data_dir} (the data_dir of {}); start it with `cairn serve --config {}`",
                config_path.display(),
                config_path.display()
            ),
        )));
    };
    let pid = holder.pid.map_or("unknown".into(), |p| p.to_string());
    let ready = holder.state.as_deref() == Some("ready");
    // Details only from a server that says it is ready: one starting has no endpoint yet.
    let details = if ready {
        holder.http.as_deref().map(fetch)
    } else {
        None
    };
    let mut text = header(&holder, &data_dir);
    let server = match &details {
        None if ready => {
            text.push_str(
                "details:     add [server.http] listen to the config for databases, backups and plugins\n",
            );
            None
        }
        None => None,
        Some(Ok(server)) => {
            describe_server(server, &mut text);
            Some(server)
        }
        Some(Err(e)) => {
            let _ = writeln!(text, "details:     the endpoint did not answer ({e:#})");
            None
        }
    };
    let json = json!({
        "running": true,
        "data_dir": data_dir,
        "pid": holder.pid,
        "state": holder.state,
        "started_at": holder.started_at.and_then(rfc3339),
        "listen": holder.listen,
        "http": holder.http,
        "server": server,
    });
    let outcome = Outcome::done(text, json);
    let failure = match (&holder.state, &details) {
        (_, Some(Err(e))) => Some(failure(
            Failure::Io,
            format!(
                "the server runs (pid {pid}) but its endpoint http://{} did not answer: {e:#}",
                holder.http.as_deref().unwrap_or_default()
            ),
        )),
        (Some(state), _) if state != "ready" => Some(failure(
            Failure::NotReady,
            format!("the server (pid {pid}) is {state}, not ready"),
        )),
        (None, _) => Some(failure(
            Failure::NotReady,
            format!(
                "{data_dir} is held by pid {pid}, which is not a ready server (a `cairn restore` or `cairn import`, or a server that has just started)"
            ),
        )),
        _ => match server {
            Some(server) if !server.ready => Some(failure(
                Failure::NotReady,
                format!("the server (pid {pid}) is shutting down"),
            )),
            _ => None,
        },
    };
    Ok(match failure {
        Some(f) => outcome.failing(f),
        None => outcome,
    })
}

fn rfc3339(unix: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(unix, 0).map(|t| t.to_rfc3339())
}

fn header(holder: &Holder, data_dir: &str) -> String {
    let mut text = match &holder.state {
        Some(state) => format!(
            "server:      running, {state} (pid {})",
            holder.pid.map_or("unknown".into(), |p| p.to_string())
        ),
        None => format!(
            "server:      the data directory is held by pid {} (a restore or import, or a server just starting)",
            holder.pid.map_or("unknown".into(), |p| p.to_string())
        ),
    };
    if let Some(since) = holder.started_at.and_then(rfc3339) {
        let _ = write!(text, " since {since}");
    }
    text.push('\n');
    let _ = writeln!(text, "data:        {data_dir}");
    if let Some(listen) = &holder.listen {
        let _ = writeln!(text, "listening:   {listen} (PostgreSQL)");
    }
    if let Some(http) = &holder.http {
        let _ = writeln!(text, "endpoint:    http://{http}");
    }
    text
}

fn describe_server(server: &ServerStatus, text: &mut String) {
    let _ = writeln!(text, "version:     {}", server.version);
    let _ = writeln!(text, "connections: {}", server.connections);
    text.push_str("databases:\n");
    for db in &server.databases {
        let last = match &db.last_backup {
            Some(b) => format!(
                "last backup {} ({}{})",
                b.ended_at,
                describe(b.bytes),
                b.seconds.map(|s| format!(", {s:.1} s")).unwrap_or_default()
            ),
            None => "no backup yet".into(),
        };
        let _ = writeln!(
            text,
            "  {:<20} {:>12} (WAL {})  {last}",
            db.name,
            describe(db.size_bytes),
            describe(db.wal_bytes)
        );
    }
    if !server.plugins.is_empty() {
        text.push_str("plugins:\n");
        for p in &server.plugins {
            let _ = write!(text, "  {:<20} {:<10} {}", p.name, p.version, p.state);
            if let Some(e) = &p.last_error {
                let _ = write!(text, " ({e})");
            }
            text.push('\n');
        }
    }
    for job in &server.running_jobs {
        let _ = writeln!(
            text,
            "running:     {} of \"{}\", {:.0}%",
            job.kind, job.database, job.percent
        );
    }
}

/// `GET /status` from the server's endpoint at `addr`.
fn fetch(addr: &str) -> anyhow::Result<ServerStatus> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let body = runtime.block_on(async {
        tokio::time::timeout(ANSWER_TIMEOUT, get(addr, "/status"))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {} s", ANSWER_TIMEOUT.as_secs()))?
    })?;
    serde_json::from_slice(&body).context("reading the server's /status")
}

async fn get(addr: &str, path: &str) -> anyhow::Result<Bytes> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr)
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        anyhow::bail!(
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(body)
}
