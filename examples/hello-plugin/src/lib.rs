//! `hello`: an example Cairn plugin.
//!
//! - `CALL hello.greet('Ann')` returns one row, `Hello, Ann!` (the greeting comes from the
//!   plugin's config);
//! - `CALL hello.databases()` lists the server's databases with their table counts, through
//!   the host's SQL service;
//! - when a database is created, and when the server shuts down, it logs a line (event hooks);
//! - a scheduled job logs `tick` and counts its runs (`CALL hello.ticks()`);
//! - `CALL hello.snapshot('default', 'hello.zip')` backs a database up through the host's
//!   backup service, verifies the archive, and returns its path and size;
//!   `CALL hello.history()` lists the newest backups (both need `role = "backup"`);
//! - `CALL hello.remember('default', 'a note')` writes a row through the host's SQL service
//!   (it needs `role = "readwrite"`: a plugin's SQL runs with its declared role, `readonly`
//!   unless it says otherwise);
//! - scalar SQL functions (ABI 1.6), callable from any statement:
//!   `SELECT hello_greeting(name) FROM people`, `geo_distance(lat1, lon1, lat2, lon2)` (km,
//!   deterministic), and `hello_check(x)`, which fails for a negative `x` and panics for
//!   `'panic'` (both come back as SQL errors; the server goes on);
//! - an aggregate SQL function: `SELECT hello_stddev(x) FROM t GROUP BY g`, the sample standard
//!   deviation in one pass (Welford's), in constant memory whatever the group's size, and a
//!   window function (ABI 1.9): `hello_stddev(x) OVER (ORDER BY t ROWS 9 PRECEDING)`;
//! - table functions (ABI 1.7): `SELECT value FROM hello_series(1, 1000000)` (and a `step`),
//!   made lazily, so a million rows take no memory; `SELECT d.id, w.position, w.word FROM docs
//!   d, hello_words(d.body) w`, the words of each row's text, a join.
//!
//! Build it with `cargo build -p hello-plugin`, copy `target/debug/libhello_plugin.so` into
//! the server's plugin directory, and declare it in the server config:
//!
//! ```toml
//! [plugins.hello]
//! library = "libhello_plugin.so"
//! [plugins.hello.config]
//! greeting = "Hello"
//! tick = "*/10 * * * * *"
//! ```

use std::sync::atomic::{AtomicI64, Ordering};

use cairn_plugin_api::serde::Deserialize;
use cairn_plugin_api::tracing::info;
use cairn_plugin_api::{
    Accumulator, Args, ColumnType, Event, EventKind, Function, Host, Plugin, PluginConfig,
    PluginError, Procedure, Rows, TableFunction, Value, async_trait, export_plugin,
};

/// The plugin's config table.
#[derive(Debug, Deserialize)]
#[serde(crate = "cairn_plugin_api::serde", deny_unknown_fields)]
struct Settings {
    /// The first word of every greeting.
    #[serde(default = "default_greeting")]
    greeting: String,
    /// When the `tick` job runs (cron, UTC).
    #[serde(default = "default_tick")]
    tick: String,
}

fn default_greeting() -> String {
    "Hello".into()
}

fn default_tick() -> String {
    "0 * * * *".into()
}

/// The plugin's state.
#[derive(Debug)]
pub struct Hello {
    settings: Settings,
    ticks: AtomicI64,
}

#[async_trait]
impl Plugin for Hello {
    fn new(config: PluginConfig) -> Result<Self, PluginError> {
        Ok(Hello {
            settings: config.parse()?,
            ticks: AtomicI64::new(0),
        })
    }

    async fn start(&self, host: &Host) -> Result<(), PluginError> {
        host.register_procedure(
            Procedure::new("greet")
                .description("Greets its argument")
                .column("greeting", ColumnType::Text),
        )?;
        host.register_procedure(
            Procedure::new("databases")
                .description("Each database and how many tables it has")
                .column("name", ColumnType::Text)
                .column("tables", ColumnType::Integer),
        )?;
        host.register_procedure(
            Procedure::new("ticks")
                .description("How many times the tick job ran")
                .column("ticks", ColumnType::Integer),
        )?;
        host.register_procedure(
            Procedure::new("snapshot")
                .description("Backs up a database to an archive and verifies it")
                .column("path", ColumnType::Text)
                .column("bytes", ColumnType::Integer)
                .column("verified_database", ColumnType::Text),
        )?;
        host.register_procedure(
            Procedure::new("remember")
                .description("Stores a note in a database (needs role = \"readwrite\")")
                .column("notes", ColumnType::Integer),
        )?;
        host.register_procedure(
            Procedure::new("history")
                .description("The ten newest backups and restores")
                .column("id", ColumnType::Integer)
                .column("status", ColumnType::Text),
        )?;
        // Alerts (ABI 1.2) are what an alerting plugin would forward to a pager; an older
        // server never sends them.
        host.subscribe(&[
            EventKind::DatabaseCreated,
            EventKind::Shutdown,
            EventKind::Alert,
        ])?;
        host.schedule("tick", &self.settings.tick)?;
        // On a server before ABI 1.6 the plugin works without its functions.
        let functions = [
            Function::new("hello_greeting", 1).description("The plugin's greeting for a name"),
            Function::new("geo_distance", 4)
                .description("Great-circle distance in km between two latitude/longitude points")
                .deterministic(),
            Function::new("hello_check", 1).description("Its argument, or an error"),
        ];
        for function in functions {
            match host.register_function(function) {
                Ok(()) | Err(PluginError::Unsupported(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // A window function too (ABI 1.9): `hello_stddev(x) OVER (ORDER BY t ROWS 9
        // PRECEDING)`; an older server registers it as a plain aggregate.
        let stddev = Function::new("hello_stddev", 1)
            .description("Sample standard deviation of the group's numbers")
            .deterministic()
            .window();
        match host.register_aggregate(stddev) {
            Ok(()) | Err(PluginError::Unsupported(_)) => {}
            Err(e) => return Err(e),
        }
        // And before ABI 1.7 without its table functions.
        let tables = [
            TableFunction::new("hello_series")
                .description("The integers from start to stop, step apart (default 1)")
                .argument("start", ColumnType::Integer)
                .argument("stop", ColumnType::Integer)
                .argument("step", ColumnType::Integer)
                .column("value", ColumnType::Integer),
            TableFunction::new("hello_words")
                .description("The words of a text, numbered from 1")
                .argument("body", ColumnType::Text)
                .column("position", ColumnType::Integer)
                .column("word", ColumnType::Text),
        ];
        for table in tables {
            match host.register_table_function(table) {
                Ok(()) | Err(PluginError::Unsupported(_)) => {}
                Err(e) => return Err(e),
            }
        }
        info!(greeting = %self.settings.greeting, tick = %self.settings.tick, "hello plugin started");
        Ok(())
    }

    fn call_function(&self, function: &str, args: &[Value]) -> Result<Value, PluginError> {
        match (function, args) {
            ("hello_greeting", [Value::Null]) => Ok(Value::Null),
            ("hello_greeting", [who]) => Ok(Value::Text(format!(
                "{}, {}!",
                self.settings.greeting,
                text_of(who)
            ))),
            ("geo_distance", [lat1, lon1, lat2, lon2]) => {
                let (Some(lat1), Some(lon1), Some(lat2), Some(lon2)) =
                    (real(lat1), real(lon1), real(lat2), real(lon2))
                else {
                    return Ok(Value::Null);
                };
                Ok(Value::Real(haversine_km(lat1, lon1, lat2, lon2)))
            }
            ("hello_check", [Value::Text(t)]) if t == "panic" => {
                panic!("hello_check was asked to panic")
            }
            ("hello_check", [Value::Integer(n)]) if *n < 0 => Err(PluginError::InvalidArgument(
                format!("hello_check takes a non-negative number, got {n}"),
            )),
            ("hello_check", [value]) => Ok(value.clone()),
            (other, _) => Err(PluginError::failed(format!("no function {other}"))),
        }
    }

    fn start_aggregate(&self, aggregate: &str) -> Result<Box<dyn Accumulator>, PluginError> {
        match aggregate {
            "hello_stddev" => Ok(Box::new(Welford::default())),
            other => Err(PluginError::failed(format!("no aggregate {other}"))),
        }
    }

    fn open_table(&self, function: &str, args: &[Value]) -> Result<Rows, PluginError> {
        match function {
            "hello_series" => {
                let integer = |i: usize, default: i64| match args.get(i) {
                    None | Some(Value::Null) => Ok(default),
                    Some(Value::Integer(n)) => Ok(*n),
                    Some(other) => Err(PluginError::InvalidArgument(format!(
                        "hello_series takes integers, got {other:?}"
                    ))),
                };
                let (start, stop, step) = (integer(0, 1)?, integer(1, 0)?, integer(2, 1)?);
                if step == 0 {
                    return Err(PluginError::InvalidArgument(
                        "hello_series: step must not be 0".into(),
                    ));
                }
                // Made one at a time as the statement steps: no row is kept.
                let values = std::iter::successors(Some(start), move |v| v.checked_add(step))
                    .take_while(move |v| if step > 0 { *v <= stop } else { *v >= stop })
                    .map(|v| Ok(vec![Value::Integer(v)]));
                Ok(Box::new(values))
            }
            "hello_words" => {
                let body = args.first().map(text_of).unwrap_or_default();
                let words: Vec<String> = body.split_whitespace().map(str::to_owned).collect();
                Ok(Box::new(words.into_iter().zip(1i64..).map(
                    |(word, position)| Ok(vec![Value::Integer(position), Value::Text(word)]),
                )))
            }
            other => Err(PluginError::failed(format!("no table function {other}"))),
        }
    }

    async fn stop(&self, _host: &Host) -> Result<(), PluginError> {
        info!("hello plugin stopped");
        Ok(())
    }

    async fn call(
        &self,
        host: &Host,
        procedure: &str,
        args: Args,
    ) -> Result<Vec<Vec<Value>>, PluginError> {
        match procedure {
            "greet" => {
                let who = match args.get(0) {
                    None => "world".to_owned(),
                    Some(Value::Text(t)) => t.clone(),
                    Some(other) => {
                        return Err(PluginError::InvalidArgument(format!(
                            "greet takes a text argument, got {other:?}"
                        )));
                    }
                };
                Ok(vec![vec![
                    format!("{}, {who}!", self.settings.greeting).into(),
                ]])
            }
            "databases" => {
                let mut rows = Vec::new();
                for name in host.databases()? {
                    let reply = host
                        .execute(
                            &name,
                            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                            &[],
                        )
                        .await?;
                    let tables = reply
                        .rows
                        .first()
                        .and_then(|row| row.first())
                        .cloned()
                        .unwrap_or(Value::Null);
                    rows.push(vec![Value::Text(name), tables]);
                }
                Ok(rows)
            }
            "ticks" => Ok(vec![vec![self.ticks.load(Ordering::Relaxed).into()]]),
            "remember" => {
                let (Some(Value::Text(database)), Some(Value::Text(note))) =
                    (args.get(0), args.get(1))
                else {
                    return Err(PluginError::InvalidArgument(
                        "remember takes a database and a note: CALL hello.remember('default', 'hi')"
                            .into(),
                    ));
                };
                host.execute(
                    database,
                    "CREATE TABLE IF NOT EXISTS hello_notes(note TEXT)",
                    &[],
                )
                .await?;
                host.execute(
                    database,
                    "INSERT INTO hello_notes VALUES ($1)",
                    &[Value::Text(note.clone())],
                )
                .await?;
                let reply = host
                    .execute(database, "SELECT count(*) FROM hello_notes", &[])
                    .await?;
                Ok(reply.rows)
            }
            "snapshot" => {
                let (Some(Value::Text(database)), Some(Value::Text(file))) =
                    (args.get(0), args.get(1))
                else {
                    return Err(PluginError::InvalidArgument(
                        "snapshot takes a database name and an archive file name".into(),
                    ));
                };
                let level = args
                    .named("compression_level")
                    .cloned()
                    .unwrap_or(Value::Integer(6));
                let backup = host
                    .backup(database, file, &[("compression_level", level)])
                    .await?;
                let row = backup.rows.into_iter().next().unwrap_or_default();
                let (Some(Value::Text(path)), Some(bytes)) = (row.get(2), row.get(3)) else {
                    return Err(PluginError::failed("the backup reply had no path"));
                };
                let verified = host.verify_archive(path).await?;
                let database = verified
                    .rows
                    .first()
                    .and_then(|row| row.first())
                    .cloned()
                    .unwrap_or(Value::Null);
                Ok(vec![vec![
                    Value::Text(path.clone()),
                    bytes.clone(),
                    database,
                ]])
            }
            // The history's columns are id, database, kind, status, …: keep id and status.
            "history" => Ok(host
                .backups(None, 10)?
                .rows
                .into_iter()
                .map(|row| {
                    let column = |i: usize| row.get(i).cloned().unwrap_or(Value::Null);
                    vec![column(0), column(3)]
                })
                .collect()),
            other => Err(PluginError::failed(format!("no procedure {other}"))),
        }
    }

    async fn on_event(&self, _host: &Host, event: Event) -> Result<(), PluginError> {
        match event.kind {
            EventKind::DatabaseCreated => info!(
                database = event.database.as_deref().unwrap_or(""),
                "hello noticed a new database"
            ),
            EventKind::Shutdown => info!("hello saw the server shutting down"),
            EventKind::Alert => info!(
                database = event.database.as_deref().unwrap_or(""),
                alert = event.detail.as_deref().unwrap_or(""),
                "hello heard an alert"
            ),
            _ => {}
        }
        Ok(())
    }

    async fn run_job(&self, _host: &Host, job: &str) -> Result<(), PluginError> {
        let n = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        info!(job, n, "tick");
        Ok(())
    }
}

export_plugin!(
    Hello,
    name: "hello",
    version: env!("CARGO_PKG_VERSION"),
    description: "Example plugin: greets, lists databases, ticks"
);

/// A value as text, as SQL would concatenate it.
fn text_of(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Integer(n) => n.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

fn real(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(n) => Some(*n as f64),
        Value::Real(r) => Some(*r),
        _ => None,
    }
}

/// The great-circle distance between two points on a sphere of the Earth's mean radius.
fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0088;
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let d_phi = (lat2 - lat1).to_radians();
    let d_lambda = (lon2 - lon1).to_radians();
    let a = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

/// A running mean and sum of squared differences: the variance in one pass, in constant
/// memory.
#[derive(Debug, Default)]
struct Welford {
    count: u64,
    mean: f64,
    squares: f64,
}

impl Accumulator for Welford {
    fn step(&mut self, args: &[Value]) -> Result<(), PluginError> {
        match args {
            // NULLs are left out, as SQL's own aggregates do.
            [Value::Null] => Ok(()),
            [value] => {
                let x = real(value).ok_or_else(|| {
                    PluginError::InvalidArgument(format!(
                        "hello_stddev takes numbers, got {value:?}"
                    ))
                })?;
                self.count += 1;
                let delta = x - self.mean;
                self.mean += delta / self.count as f64;
                self.squares += delta * (x - self.mean);
                Ok(())
            }
            _ => Err(PluginError::InvalidArgument(
                "hello_stddev takes one argument".into(),
            )),
        }
    }

    fn finish(self: Box<Self>) -> Result<Value, PluginError> {
        self.value()
    }

    fn value(&self) -> Result<Value, PluginError> {
        Ok(if self.count < 2 {
            Value::Null
        } else {
            Value::Real((self.squares / (self.count - 1) as f64).max(0.0).sqrt())
        })
    }

    /// Welford's update run backwards: the row leaves the window.
    fn inverse(&mut self, args: &[Value]) -> Result<(), PluginError> {
        let [value] = args else {
            return Err(PluginError::InvalidArgument(
                "hello_stddev takes one argument".into(),
            ));
        };
        let Some(x) = real(value) else {
            // A NULL was left out when it came in.
            return Ok(());
        };
        if self.count <= 1 {
            *self = Welford::default();
            return Ok(());
        }
        let delta = x - self.mean;
        self.count -= 1;
        self.mean -= delta / self.count as f64;
        self.squares -= delta * (x - self.mean);
        Ok(())
    }
}
