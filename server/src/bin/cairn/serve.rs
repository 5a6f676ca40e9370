//! `cairn serve`: runs the server until SIGTERM or SIGINT, reloading plugins on SIGHUP, and
//! tells systemd (`Type=notify`) when it is ready, reloading and stopping.

use std::path::PathBuf;

use anyhow::Context;
use cairn_server::{Config, Server};
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};

pub fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config_path)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let mut terminate =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut interrupt =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let server = Server::start(config).await?;
        notify(&[NotifyState::Ready]);
        let name = loop {
            tokio::select! {
                _ = terminate.recv() => break "SIGTERM",
                _ = interrupt.recv() => break "SIGINT",
                _ = hangup.recv() => {
                    tracing::info!(signal = "SIGHUP", "reloading plugins and their configs");
                    reloading();
                    server.reload_plugins().await;
                    notify(&[NotifyState::Ready]);
                }
            }
        };
        tracing::info!(signal = name, "stopping");
        notify(&[NotifyState::Stopping]);
        server.shutdown().await;
        anyhow::Ok(())
    })?;
    // Statements abandoned after the grace period may still hold blocking threads; do not
    // wait for them.
    runtime.shutdown_background();
    Ok(())
}

/// Tells systemd, when it started us (`NOTIFY_SOCKET` set); otherwise does nothing.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "telling systemd the service state");
    }
}

/// `RELOADING=1` with the monotonic time (what `Type=notify-reload`, systemd 253 and later,
/// requires; `Type=notify` takes it too).
fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}
