//! The crate a Cairn plugin depends on, and the only one.
//!
//! A plugin is a shared library that exports one data symbol, `cairn_plugin_v1`: a
//! descriptor of the versioned C ABI in [`abi`] (and `include/cairn_plugin.h`). This crate
//! builds that descriptor for you. Implement [`Plugin`], export it with [`export_plugin!`],
//! build with `crate-type = ["cdylib"]`, and copy the library into the server's plugin
//! directory. The crate knows nothing about the server; the server knows nothing about your
//! plugin but its descriptor.
//!
//! ```
//! use cairn_plugin_api::{
//!     Args, ColumnType, EventKind, Event, Host, Plugin, PluginConfig, PluginError, Procedure,
//!     Value, export_plugin,
//! };
//!
//! use cairn_plugin_api::serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(crate = "cairn_plugin_api::serde")]
//! struct Settings {
//!     greeting: String,
//! }
//!
//! struct Greeter {
//!     settings: Settings,
//! }
//!
//! #[cairn_plugin_api::async_trait]
//! impl Plugin for Greeter {
//!     fn new(config: PluginConfig) -> Result<Self, PluginError> {
//!         Ok(Greeter { settings: config.parse()? })
//!     }
//!
//!     async fn start(&self, host: &Host) -> Result<(), PluginError> {
//!         host.register_procedure(
//!             Procedure::new("greet").column("greeting", ColumnType::Text),
//!         )?;
//!         host.subscribe(&[EventKind::DatabaseCreated])?;
//!         host.schedule("heartbeat", "0 * * * *")?;
//!         cairn_plugin_api::tracing::info!("greeter started");
//!         Ok(())
//!     }
//!
//!     async fn call(&self, _host: &Host, procedure: &str, args: Args)
//!         -> Result<Vec<Vec<Value>>, PluginError>
//!     {
//!         match procedure {
//!             "greet" => {
//!                 let who = args.get(0).and_then(Value::as_text).unwrap_or("world");
//!                 Ok(vec![vec![format!("{}, {who}!", self.settings.greeting).into()]])
//!             }
//!             other => Err(PluginError::failed(format!("no procedure {other}"))),
//!         }
//!     }
//!
//!     async fn on_event(&self, _host: &Host, event: Event) -> Result<(), PluginError> {
//!         cairn_plugin_api::tracing::info!(database = ?event.database, "a database was created");
//!         Ok(())
//!     }
//!
//!     async fn run_job(&self, host: &Host, _job: &str) -> Result<(), PluginError> {
//!         let databases = host.databases()?;
//!         cairn_plugin_api::tracing::info!(count = databases.len(), "still here");
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(Greeter, name: "greeter", version: "1.0.0", description: "Says hello");
//! ```
//!
//! See `README.md` beside this crate for the walk from `cargo new --lib` to a loaded plugin,
//! and for the compatibility promise.

#![warn(missing_docs)]

pub mod abi;
pub mod backup_options;
mod error;
pub mod ffi;
mod host;
mod logging;
mod plugin;
mod value;

/// Re-exported so that a plugin depends on this crate alone: `#[cairn_plugin_api::async_trait]`.
pub use async_trait::async_trait;
/// Re-exported for typed configs: `#[derive(serde::Deserialize)]` with
/// `#[serde(crate = "cairn_plugin_api::serde")]`.
pub use serde;
/// Re-exported: log with `tracing`'s macros; the events reach the server's log.
pub use tracing;

pub use error::{Outcome, PluginError};
pub use host::{Host, HostCall};
pub use plugin::{
    Accumulator, Change, ChangeOp, Commit, Event, EventKind, Function, Plugin, PluginConfig,
    Procedure, Rows, Statement, TableFunction,
};
pub use value::{Args, Column, ColumnType, Reply, Value};

/// Exports a [`Plugin`] as this library's descriptor (`cairn_plugin_v1`).
///
/// `name` is how the server and its users know the plugin: `[a-z_][a-z0-9_]*`, the prefix of
/// its procedures (`CALL name.procedure()`), and the key of its entry in the server config.
/// Use it once per library.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty, name: $name:expr, version: $version:expr, description: $description:expr $(,)?) => {
        #[doc(hidden)]
        static __CAIRN_PLUGIN_VTABLE: $crate::abi::CairnPluginVTable =
            $crate::ffi::guest::vtable::<$plugin>();

        /// This library's Cairn plugin descriptor.
        #[allow(unsafe_code, non_upper_case_globals)]
        #[unsafe(no_mangle)]
        pub static cairn_plugin_v1: $crate::abi::CairnPluginDescriptor =
            $crate::ffi::guest::descriptor($name, $version, $description, &__CAIRN_PLUGIN_VTABLE);
    };
}
