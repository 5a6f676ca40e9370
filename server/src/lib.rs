//! The Cairn server as a library: the `cairn` binary and the tests both start it through
//! [`Server::start`]. See ARCHITECTURE.md for the map.

pub mod backup;
pub mod catalog;
pub mod changes;
pub mod config;
pub mod credentials;
pub mod data_dir_lock;
pub mod disk_space;
pub mod error;
pub mod export;
pub mod feed_queue;
pub mod group_commit;
pub mod http;
pub mod logging;
pub mod new_file;
mod pg;
pub mod pgcompat;
pub mod plugin;
pub mod roles;
pub mod scram;
pub mod server;
pub mod session;
pub mod sql;
pub mod sqlstate;
pub mod statements;
pub mod system_db;
pub mod user_store;
pub mod write_turns;

pub use config::Config;
pub use error::Error;
pub use server::{Server, ServerHandle};
