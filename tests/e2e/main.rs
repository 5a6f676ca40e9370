//! End-to-end tests: the real `cairn` binary on a real socket, driven by real clients
//! (tokio-postgres and psql). Each test starts its own server on a free loopback port with its
//! own temporary data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod auth;
mod automatic_backup;
mod backups;
mod changes;
mod cli;
mod config_errors;
mod continuous;
mod databases;
mod destinations;
mod drills;
mod encryption;
mod examples;
mod exports;
mod functions;
mod hostile;
mod incremental;
mod lifecycle;
mod metrics;
mod plugins;
mod protocol;
mod psql;
mod query_path;
mod service;
mod tables;
mod tls;
mod unattended;
