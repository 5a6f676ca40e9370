//! The operators' HTTP endpoint (`[server.http] listen`): `/metrics` in the Prometheus text
//! format, `/status` as JSON (for `cairn status`), and `/health/live`, `/health/ready` (and
//! `/health`, the same as ready) for orchestration. Read-only, no authentication: bind it to
//! an address only monitoring reaches.

mod metrics;
pub mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backup::Backups;
use crate::catalog::Catalog;
use crate::plugin::Plugins;
use crate::session::registry::Registry;

/// What the endpoint reports on.
#[derive(Debug, Clone)]
pub struct Observed {
    pub catalog: Arc<Catalog>,
    pub plugins: Arc<Plugins>,
    pub backups: Arc<Backups>,
    pub registry: Arc<Registry>,
    /// Cancelled when shutdown begins: the server is no longer ready.
    pub stopping: CancellationToken,
}

/// Binds `addr`; returns the listener and the address it got.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Answers requests on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, observed: Observed, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let observed = observed.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let observed = observed.clone();
                async move { Ok::<_, Infallible>(answer(&request, &observed).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(request: &Request<Incoming>, observed: &Observed) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    let plain = "text/plain; charset=utf-8";
    match request.uri().path() {
        "/metrics" => {
            // Reading the history and the catalog blocks: not on the async workers.
            let observed = observed.clone();
            match tokio::task::spawn_blocking(move || metrics::render(&observed)).await {
                Ok(body) => text(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    plain,
                    format!("metrics failed: {e}\n"),
                ),
            }
        }
        "/status" => {
            let observed = observed.clone();
            let collected = tokio::task::spawn_blocking(move || status::collect(&observed)).await;
            let body = collected
                .map_err(|e| e.to_string())
                .and_then(|status| serde_json::to_string(&status).map_err(|e| e.to_string()));
            match body {
                Ok(body) => text(StatusCode::OK, "application/json", body),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    plain,
                    format!("status failed: {e}\n"),
                ),
            }
        }
        "/health/live" => text(StatusCode::OK, plain, "alive\n".into()),
        "/health" | "/health/ready" => {
            if observed.stopping.is_cancelled() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    plain,
                    "shutting down\n".into(),
                )
            } else {
                text(StatusCode::OK, plain, "ready\n".into())
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            plain,
            "not found; the endpoints are /metrics, /status, /health/live and /health/ready\n"
                .into(),
        ),
    }
}
