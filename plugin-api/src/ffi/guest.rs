//! The plugin side of the ABI: the function table `export_plugin!` exports for a
//! [`Plugin`], and [`HostRef`], the plugin's way to call the host's functions.

use std::ffi::c_void;
use std::future::Future;
use std::mem::offset_of;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use tracing::instrument::WithSubscriber;

use super::{ImportedFuture, catch, export_future};
use crate::abi::{
    self, CairnAggregateSpec, CairnArg, CairnEvent, CairnFunctionSpec, CairnFuture, CairnHost,
    CairnJobSpec, CairnOutput, CairnPluginDescriptor, CairnPluginVTable, CairnProcedureSpec,
    CairnStatus, CairnStr, CairnTableFunctionSpec, CairnValue, has_pointer_field,
};
use crate::{
    Args, Event, Host, Outcome, Plugin, PluginConfig, PluginError, Procedure, Reply, Value,
};

/// Boxed future as the SDK passes them around.
pub(crate) type BoxOutcome = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// The descriptor `export_plugin!` exports.
#[doc(hidden)]
pub const fn descriptor(
    name: &'static str,
    version: &'static str,
    description: &'static str,
    vtable: &'static CairnPluginVTable,
) -> CairnPluginDescriptor {
    CairnPluginDescriptor {
        magic: abi::CAIRN_PLUGIN_MAGIC,
        abi_major: abi::CAIRN_ABI_MAJOR,
        abi_minor: abi::CAIRN_ABI_MINOR,
        // The SDK degrades gracefully (`PluginError::Unsupported`) when a host lacks a
        // function, so an SDK-built plugin loads on any host of this major.
        min_host_minor: 0,
        size: size_of::<CairnPluginDescriptor>() as u32,
        name: CairnStr::new(name),
        version: CairnStr::new(version),
        description: CairnStr::new(description),
        vtable,
    }
}

/// The function table `export_plugin!` exports for `P`.
#[doc(hidden)]
pub const fn vtable<P: Plugin>() -> CairnPluginVTable {
    CairnPluginVTable {
        size: size_of::<CairnPluginVTable>() as u32,
        reserved: 0,
        create: Some(create::<P>),
        start: Some(start::<P>),
        stop: Some(stop::<P>),
        on_event: Some(on_event::<P>),
        destroy: Some(destroy::<P>),
        on_commit: Some(on_commit::<P>),
        on_statement: Some(on_statement::<P>),
    }
}

/// What the SDK needs of an instance without knowing its type.
pub(crate) trait ErasedInstance: Send + Sync {
    fn call(self: Arc<Self>, procedure: String, args: Args) -> BoxOutcome;
    fn run_job(self: Arc<Self>, job: String) -> BoxOutcome;
    fn call_function(&self, function: &str, args: &[Value]) -> Result<Value, PluginError>;
    fn start_aggregate(&self, aggregate: &str) -> Result<Box<dyn crate::Accumulator>, PluginError>;
    fn open_table(&self, function: &str, args: &[Value]) -> Result<crate::Rows, PluginError>;
    fn dispatch(&self) -> &tracing::Dispatch;
}

struct Instance<P> {
    plugin: P,
    host: Host,
}

impl<P: Plugin> ErasedInstance for Instance<P> {
    fn call(self: Arc<Self>, procedure: String, args: Args) -> BoxOutcome {
        let dispatch = self.host.dispatch().clone();
        Box::pin(
            async move {
                self.plugin
                    .call(&self.host, &procedure, args)
                    .await
                    .map(Reply::rows)
            }
            .with_subscriber(dispatch),
        )
    }

    fn call_function(&self, function: &str, args: &[Value]) -> Result<Value, PluginError> {
        tracing::dispatcher::with_default(self.host.dispatch(), || {
            self.plugin.call_function(function, args)
        })
    }

    fn start_aggregate(&self, aggregate: &str) -> Result<Box<dyn crate::Accumulator>, PluginError> {
        tracing::dispatcher::with_default(self.host.dispatch(), || {
            self.plugin.start_aggregate(aggregate)
        })
    }

    fn open_table(&self, function: &str, args: &[Value]) -> Result<crate::Rows, PluginError> {
        tracing::dispatcher::with_default(self.host.dispatch(), || {
            self.plugin.open_table(function, args)
        })
    }

    fn dispatch(&self) -> &tracing::Dispatch {
        self.host.dispatch()
    }

    fn run_job(self: Arc<Self>, job: String) -> BoxOutcome {
        let dispatch = self.host.dispatch().clone();
        Box::pin(
            async move {
                self.plugin
                    .run_job(&self.host, &job)
                    .await
                    .map(|()| Reply::default())
            }
            .with_subscriber(dispatch),
        )
    }
}

unsafe extern "C" fn create<P: Plugin>(
    host: *const CairnHost,
    config: CairnStr,
    instance: *mut *mut c_void,
    output: *const CairnOutput,
) -> CairnStatus {
    let raw = HostRef(host);
    let dispatch = crate::logging::dispatch(raw.clone());
    let created = tracing::dispatcher::with_default(&dispatch, || {
        catch(|| {
            // SAFETY: the ABI: `config` is borrowed for this call.
            let config = unsafe { super::text(config, "the plugin config") }?;
            let plugin = P::new(PluginConfig::new(config))?;
            let erased = |weak: &Weak<Instance<P>>| -> Weak<dyn ErasedInstance> { weak.clone() };
            let created = Arc::new_cyclic(|weak| Instance {
                plugin,
                host: Host::new(raw.clone(), erased(weak), dispatch.clone()),
            });
            // Refused here, the instance never existed for the host: on a reload, the
            // running one goes on.
            created.plugin.prepare(&created.host)?;
            Ok(created)
        })
    });
    match created {
        Ok(created) if !instance.is_null() => {
            // SAFETY: the ABI: `instance` points to writable storage for one pointer.
            unsafe { *instance = Arc::into_raw(created).cast_mut().cast() };
            abi::CAIRN_OK
        }
        Ok(_) => abi::CAIRN_ERROR,
        Err(e) => {
            // SAFETY: the ABI: `output` is valid for this call.
            unsafe { super::output::write(output, Err(e)) };
            abi::CAIRN_ERROR
        }
    }
}

/// A new strong reference to the instance behind `instance`.
///
/// # Safety
/// `instance` was made by `create::<P>` and not yet destroyed.
unsafe fn instance<P: Plugin>(instance: *mut c_void) -> Arc<Instance<P>> {
    let ptr = instance.cast_const().cast::<Instance<P>>();
    // SAFETY: the pointer came from `Arc::into_raw` in `create` and that reference is alive
    // until `destroy`, so taking one more is sound.
    unsafe {
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    }
}

unsafe extern "C" fn start<P: Plugin>(handle: *mut c_void) -> CairnFuture {
    // SAFETY: the ABI: the host passes the instance it got from `create`.
    let this = unsafe { instance::<P>(handle) };
    let dispatch = this.host.dispatch().clone();
    export_future(
        async move {
            this.plugin
                .start(&this.host)
                .await
                .map(|()| Reply::default())
        }
        .with_subscriber(dispatch),
    )
}

unsafe extern "C" fn stop<P: Plugin>(handle: *mut c_void) -> CairnFuture {
    // SAFETY: as in `start`.
    let this = unsafe { instance::<P>(handle) };
    let dispatch = this.host.dispatch().clone();
    export_future(
        async move {
            this.plugin
                .stop(&this.host)
                .await
                .map(|()| Reply::default())
        }
        .with_subscriber(dispatch),
    )
}

unsafe extern "C" fn on_event<P: Plugin>(
    handle: *mut c_void,
    event: *const CairnEvent,
) -> CairnFuture {
    // SAFETY: as in `start`.
    let this = unsafe { instance::<P>(handle) };
    // SAFETY: the ABI: `event` is borrowed for this call.
    let event = match catch(|| unsafe { read_event(event) }) {
        Ok(Some(event)) => event,
        // An event kind this plugin's SDK does not know: nothing to do.
        Ok(None) => return super::future::ready(Ok(Reply::default())),
        Err(e) => return super::future::ready(Err(e)),
    };
    let dispatch = this.host.dispatch().clone();
    export_future(
        async move {
            this.plugin
                .on_event(&this.host, event)
                .await
                .map(|()| Reply::default())
        }
        .with_subscriber(dispatch),
    )
}

unsafe extern "C" fn on_commit<P: Plugin>(
    handle: *mut c_void,
    commit: *const abi::CairnCommit,
) -> CairnFuture {
    // SAFETY: as in `start`.
    let this = unsafe { instance::<P>(handle) };
    // SAFETY: the ABI: `commit` and its changes are borrowed for this call.
    let commit = match catch(|| unsafe { read_commit(commit) }) {
        Ok(commit) => commit,
        Err(e) => return super::future::ready(Err(e)),
    };
    let dispatch = this.host.dispatch().clone();
    export_future(
        async move {
            this.plugin
                .on_commit(&this.host, commit)
                .await
                .map(|()| Reply::default())
        }
        .with_subscriber(dispatch),
    )
}

unsafe extern "C" fn on_statement<P: Plugin>(
    handle: *mut c_void,
    statement: *const abi::CairnStatement,
) -> CairnFuture {
    // SAFETY: as in `start`.
    let this = unsafe { instance::<P>(handle) };
    // SAFETY: the ABI: `statement` and its strings are borrowed for this call.
    let statement = match catch(|| unsafe { read_statement(statement) }) {
        Ok(statement) => statement,
        Err(e) => return super::future::ready(Err(e)),
    };
    let dispatch = this.host.dispatch().clone();
    export_future(
        async move {
            this.plugin
                .on_statement(&this.host, statement)
                .await
                .map(|()| Reply::default())
        }
        .with_subscriber(dispatch),
    )
}

/// # Safety
/// `statement` is null or points to a valid statement, strings included, borrowed for the
/// call.
unsafe fn read_statement(
    statement: *const abi::CairnStatement,
) -> Result<crate::Statement, PluginError> {
    // SAFETY: guaranteed by the caller.
    let Some(s) = (unsafe { statement.as_ref() }) else {
        return Err(PluginError::InvalidArgument("no statement".into()));
    };
    // SAFETY: as above.
    let (database, user, text, sqlstate) = unsafe {
        (
            super::text(s.database, "the database name")?,
            super::text(s.user, "the user name")?,
            super::text(s.text, "the statement's text")?,
            super::text(s.sqlstate, "the SQLSTATE")?,
        )
    };
    let started_at = std::time::UNIX_EPOCH
        + std::time::Duration::from_micros(u64::try_from(s.started_at_micros).unwrap_or(0));
    Ok(crate::Statement {
        database,
        user,
        text,
        failed: (s.failed != 0).then_some(sqlstate),
        started_at,
        duration: std::time::Duration::from_micros(s.duration_micros),
        rows: s.rows,
        missed: s.missed,
    })
}

/// # Safety
/// `commit` is null or points to a valid commit, changes included, borrowed for the call.
unsafe fn read_commit(commit: *const abi::CairnCommit) -> Result<crate::Commit, PluginError> {
    // SAFETY: guaranteed by the caller.
    let Some(commit) = (unsafe { commit.as_ref() }) else {
        return Err(PluginError::InvalidArgument("no commit".into()));
    };
    let changes: &[abi::CairnChange] = if commit.change_count == 0 || commit.changes.is_null() {
        &[]
    } else {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(commit.changes, commit.change_count) }
    };
    let changes = changes
        .iter()
        .filter_map(|c| {
            // An op this SDK does not know is left out.
            let op = crate::ChangeOp::from_abi(c.op)?;
            // SAFETY: as above.
            let table = unsafe { super::text(c.table, "a table name") };
            Some(table.map(|table| crate::Change {
                table,
                op,
                rowid: c.rowid,
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::Commit {
        // SAFETY: as above.
        database: unsafe { super::text(commit.database, "the database name") }?,
        sequence: commit.sequence,
        changes,
        missed: commit.missed,
        truncated: commit.truncated,
    })
}

/// # Safety
/// `event` is null or points to a valid event borrowed for the call.
unsafe fn read_event(event: *const CairnEvent) -> Result<Option<Event>, PluginError> {
    // SAFETY: guaranteed by the caller.
    let Some(event) = (unsafe { event.as_ref() }) else {
        return Err(PluginError::InvalidArgument("no event".into()));
    };
    let Some(kind) = crate::EventKind::from_abi(event.kind) else {
        return Ok(None);
    };
    // SAFETY: the event's strings are borrowed for the call.
    let database = unsafe { super::text(event.database, "the event's database") }?;
    // SAFETY: as above.
    let detail = unsafe { super::text(event.detail, "the event's detail") }?;
    Ok(Some(Event {
        kind,
        database: (!database.is_empty()).then_some(database),
        detail: (!detail.is_empty()).then_some(detail),
    }))
}

unsafe extern "C" fn destroy<P: Plugin>(handle: *mut c_void) {
    let ptr = handle.cast_const().cast::<Instance<P>>();
    // SAFETY: the ABI: `destroy` is called once, with the pointer `create` made; this
    // releases the reference `create` handed out.
    let this = unsafe { Arc::from_raw(ptr) };
    let _ = catch(|| {
        drop(this);
        Ok(())
    });
}

/// The context of a registered procedure.
struct ProcedureCtx {
    instance: Arc<dyn ErasedInstance>,
    name: String,
}

unsafe extern "C" fn call_procedure(
    ctx: *mut c_void,
    args: *const CairnArg,
    count: usize,
) -> CairnFuture {
    // SAFETY: the ABI: `ctx` is the `ProcedureCtx` we registered, alive until `drop_ctx`.
    let ctx = unsafe { &*ctx.cast_const().cast::<ProcedureCtx>() };
    // SAFETY: the ABI: `args` points to `count` arguments borrowed for this call.
    match catch(|| unsafe { super::args(args, count) }) {
        Ok(args) => export_future(Arc::clone(&ctx.instance).call(ctx.name.clone(), args)),
        Err(e) => super::future::ready(Err(e)),
    }
}

unsafe extern "C" fn drop_procedure(ctx: *mut c_void) {
    // SAFETY: the ABI: called once, with the box `register_procedure` made.
    let ctx = unsafe { Box::from_raw(ctx.cast::<ProcedureCtx>()) };
    let _ = catch(|| {
        drop(ctx);
        Ok(())
    });
}

/// The context of a registered function.
struct FunctionCtx {
    instance: Arc<dyn ErasedInstance>,
    name: String,
}

unsafe extern "C" fn call_function(
    ctx: *mut c_void,
    args: *const CairnValue,
    count: usize,
    output: *const CairnOutput,
) -> CairnStatus {
    // SAFETY: the ABI: `ctx` is the `FunctionCtx` we registered, alive until `drop_ctx`.
    let ctx = unsafe { &*ctx.cast_const().cast::<FunctionCtx>() };
    let outcome = catch(|| {
        // SAFETY: the ABI: `args` points to `count` values borrowed for this call.
        let args = unsafe { super::values(args, count) }?;
        ctx.instance
            .call_function(&ctx.name, &args)
            .map(|value| Reply::rows(vec![vec![value]]))
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { super::output::answer(output, outcome) }
}

/// A group's state as it crosses the ABI: the accumulator, boxed once more for a thin pointer.
type Group = Box<dyn crate::Accumulator>;

unsafe extern "C" fn start_group(
    ctx: *mut c_void,
    state: *mut *mut c_void,
    output: *const CairnOutput,
) -> CairnStatus {
    // SAFETY: the ABI: `ctx` is the `FunctionCtx` we registered, alive until `drop_ctx`.
    let ctx = unsafe { &*ctx.cast_const().cast::<FunctionCtx>() };
    let outcome = catch(|| {
        let group: Group = ctx.instance.start_aggregate(&ctx.name)?;
        let raw = Box::into_raw(Box::new(group));
        // SAFETY: the ABI: `state` points to where the host keeps this group's state.
        unsafe { *state = raw.cast() };
        Ok(Reply::default())
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { super::output::answer(output, outcome) }
}

unsafe extern "C" fn step_group(
    _ctx: *mut c_void,
    state: *mut c_void,
    args: *const CairnValue,
    count: usize,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: the ABI: `state` is a group `start_group` made, not yet finished or
        // dropped, used by one thread at a time.
        let group = unsafe { &mut *state.cast::<Group>() };
        // SAFETY: the ABI: `args` points to `count` values borrowed for this call.
        let args = unsafe { super::values(args, count) }?;
        group.step(&args).map(|()| Reply::default())
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { super::output::answer(output, outcome) }
}

unsafe extern "C" fn finish_group(
    _ctx: *mut c_void,
    state: *mut c_void,
    output: *const CairnOutput,
) -> CairnStatus {
    // SAFETY: the ABI: `state` is a group `start_group` made, finished once; it is ours now.
    let group = unsafe { Box::from_raw(state.cast::<Group>()) };
    let outcome = catch(move || {
        (*group)
            .finish()
            .map(|value| Reply::rows(vec![vec![value]]))
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { super::output::answer(output, outcome) }
}

unsafe extern "C" fn value_of_group(
    _ctx: *mut c_void,
    state: *mut c_void,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: the ABI: `state` is a group `start_group` made, not yet finished or
        // dropped, used by one thread at a time.
        let group = unsafe { &*state.cast_const().cast::<Group>() };
        group.value().map(|value| Reply::rows(vec![vec![value]]))
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { super::output::answer(output, outcome) }
}

unsafe extern "C" fn inverse_group(
    _ctx: *mut c_void,
    state: *mut c_void,
    args: *const CairnValue,
    count: usize,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: as in `step_group`.
        let group = unsafe { &mut *state.cast::<Group>() };
        // SAFETY: the ABI: `args` points to `count` values borrowed for this call.
        let args = unsafe { super::values(args, count) }?;
        group.inverse(&args).map(|()| Reply::default())
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { super::output::answer(output, outcome) }
}

unsafe extern "C" fn drop_group(_ctx: *mut c_void, state: *mut c_void) {
    // SAFETY: the ABI: `state` is a group `start_group` made that will not be finished.
    let group = unsafe { Box::from_raw(state.cast::<Group>()) };
    let _ = catch(move || {
        drop(group);
        Ok(())
    });
}

/// One scan of a table function as it crosses the ABI: the plugin's rows, and the instance
/// whose log their code writes to.
struct Scan {
    rows: std::iter::Fuse<crate::Rows>,
    instance: Arc<dyn ErasedInstance>,
}

/// How many rows `next_rows` hands over per call: enough to make the call's cost vanish per
/// row, few enough that a batch stays small.
const SCAN_BATCH: usize = 256;

unsafe extern "C" fn open_scan(
    ctx: *mut c_void,
    args: *const CairnValue,
    count: usize,
    rows: *mut *mut c_void,
    output: *const CairnOutput,
) -> CairnStatus {
    // SAFETY: the ABI: `ctx` is the `FunctionCtx` we registered, alive until `drop_ctx`.
    let ctx = unsafe { &*ctx.cast_const().cast::<FunctionCtx>() };
    let outcome = catch(|| {
        // SAFETY: the ABI: `args` points to `count` values borrowed for this call.
        let args = unsafe { super::values(args, count) }?;
        let scan = Scan {
            rows: ctx.instance.open_table(&ctx.name, &args)?.fuse(),
            instance: Arc::clone(&ctx.instance),
        };
        let raw = Box::into_raw(Box::new(scan));
        // SAFETY: the ABI: `rows` points to where the host keeps this scan's state.
        unsafe { *rows = raw.cast() };
        Ok(Reply::default())
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { super::output::answer(output, outcome) }
}

unsafe extern "C" fn next_rows(
    _ctx: *mut c_void,
    rows: *mut c_void,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: the ABI: `rows` is a scan `open_scan` made, not yet closed, used by one
        // thread at a time.
        let scan = unsafe { &mut *rows.cast::<Scan>() };
        let dispatch = scan.instance.dispatch().clone();
        tracing::dispatcher::with_default(&dispatch, || {
            let batch = scan
                .rows
                .by_ref()
                .take(SCAN_BATCH)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Reply::rows(batch))
        })
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { super::output::answer(output, outcome) }
}

unsafe extern "C" fn close_scan(_ctx: *mut c_void, rows: *mut c_void) {
    // SAFETY: the ABI: `rows` is a scan `open_scan` made, closed once; it is ours now.
    let scan = unsafe { Box::from_raw(rows.cast::<Scan>()) };
    let _ = catch(move || {
        drop(scan);
        Ok(())
    });
}

unsafe extern "C" fn drop_function(ctx: *mut c_void) {
    // SAFETY: the ABI: called once, with the box `register_function` made.
    let ctx = unsafe { Box::from_raw(ctx.cast::<FunctionCtx>()) };
    let _ = catch(|| {
        drop(ctx);
        Ok(())
    });
}

/// The context of a scheduled job.
struct JobCtx {
    instance: Arc<dyn ErasedInstance>,
    name: String,
}

unsafe extern "C" fn run_job(ctx: *mut c_void) -> CairnFuture {
    // SAFETY: the ABI: `ctx` is the `JobCtx` we scheduled, alive until `drop_ctx`.
    let ctx = unsafe { &*ctx.cast_const().cast::<JobCtx>() };
    export_future(Arc::clone(&ctx.instance).run_job(ctx.name.clone()))
}

unsafe extern "C" fn drop_job(ctx: *mut c_void) {
    // SAFETY: the ABI: called once, with the box `schedule` made.
    let ctx = unsafe { Box::from_raw(ctx.cast::<JobCtx>()) };
    let _ = catch(|| {
        drop(ctx);
        Ok(())
    });
}

/// The host's function table, as a plugin holds it.
#[derive(Debug, Clone)]
pub(crate) struct HostRef(*const CairnHost);

// SAFETY: the ABI: the host table stays valid for as long as the plugin is loaded (the host
// never frees it) and its functions may be called from any thread.
unsafe impl Send for HostRef {}
// SAFETY: as above; the table itself is never written after `create`.
unsafe impl Sync for HostRef {}

impl HostRef {
    fn table(&self) -> Option<&CairnHost> {
        // SAFETY: the ABI: the pointer the host passed to `create` stays valid (see `Send`).
        unsafe { self.0.as_ref() }
    }

    /// A host function, if the host's table has it.
    fn function<F: Copy>(
        &self,
        offset: usize,
        get: impl FnOnce(&CairnHost) -> Option<F>,
        name: &str,
    ) -> Result<F, PluginError> {
        self.table()
            .filter(|t| has_pointer_field(t.size, offset))
            .and_then(get)
            .ok_or_else(|| PluginError::Unsupported(format!("the host function `{name}`")))
    }

    pub(crate) fn abi_minor(&self) -> u32 {
        self.table().map_or(0, |t| t.abi_minor)
    }

    pub(crate) fn max_log_level(&self) -> abi::CairnLogLevel {
        self.table()
            .map_or(abi::CAIRN_LOG_INFO, |t| t.max_log_level)
    }

    pub(crate) fn log(&self, level: abi::CairnLogLevel, target: &str, message: &str) {
        if let Ok(log) = self.function(offset_of!(CairnHost, log), |t| t.log, "log") {
            // SAFETY: a host function called with its own table and strings that outlive it.
            unsafe { log(self.0, level, CairnStr::new(target), CairnStr::new(message)) }
        }
    }

    pub(crate) fn list_databases(&self) -> Outcome {
        let list = self.function(
            offset_of!(CairnHost, list_databases),
            |t| t.list_databases,
            "list_databases",
        )?;
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `log`; the output lives across the call.
        unsafe { list(self.0, &output) };
        collector.into_outcome()
    }

    pub(crate) fn execute_sql(
        &self,
        database: &str,
        sql: &str,
        params: &[Value],
    ) -> Result<ImportedFuture, PluginError> {
        let execute = self.function(
            offset_of!(CairnHost, execute_sql),
            |t| t.execute_sql,
            "execute_sql",
        )?;
        let params: Vec<_> = params.iter().map(super::borrow_value).collect();
        // SAFETY: as in `log`; the host copies the strings and parameters before returning.
        let raw = unsafe {
            execute(
                self.0,
                CairnStr::new(database),
                CairnStr::new(sql),
                params.as_ptr(),
                params.len(),
            )
        };
        // SAFETY: a fresh future returned by the host.
        Ok(unsafe { ImportedFuture::new(raw) })
    }

    pub(crate) fn backup_database(
        &self,
        database: &str,
        path: &str,
        options: &[(&str, Value)],
    ) -> Result<ImportedFuture, PluginError> {
        let backup = self.function(
            offset_of!(CairnHost, backup_database),
            |t| t.backup_database,
            "backup_database",
        )?;
        let options: Vec<CairnArg> = options
            .iter()
            .map(|(name, value)| CairnArg {
                name: CairnStr::new(name),
                value: super::borrow_value(value),
            })
            .collect();
        // SAFETY: as in `log`; the host copies the strings and options before returning.
        let raw = unsafe {
            backup(
                self.0,
                CairnStr::new(database),
                CairnStr::new(path),
                options.as_ptr(),
                options.len(),
            )
        };
        // SAFETY: a fresh future returned by the host.
        Ok(unsafe { ImportedFuture::new(raw) })
    }

    pub(crate) fn verify_archive(&self, path: &str) -> Result<ImportedFuture, PluginError> {
        let verify = self.function(
            offset_of!(CairnHost, verify_archive),
            |t| t.verify_archive,
            "verify_archive",
        )?;
        // SAFETY: as in `log`; the host copies the path before returning.
        let raw = unsafe { verify(self.0, CairnStr::new(path)) };
        // SAFETY: a fresh future returned by the host.
        Ok(unsafe { ImportedFuture::new(raw) })
    }

    pub(crate) fn drill_archive(
        &self,
        database: &str,
        location: &str,
    ) -> Result<ImportedFuture, PluginError> {
        let drill = self.function(
            offset_of!(CairnHost, drill_archive),
            |t| t.drill_archive,
            "drill_archive",
        )?;
        // SAFETY: as in `log`; the host copies the strings before returning.
        let raw = unsafe { drill(self.0, CairnStr::new(database), CairnStr::new(location)) };
        // SAFETY: a fresh future returned by the host.
        Ok(unsafe { ImportedFuture::new(raw) })
    }

    pub(crate) fn list_archives(&self, location: &str) -> Result<ImportedFuture, PluginError> {
        let list = self.function(
            offset_of!(CairnHost, list_archives),
            |t| t.list_archives,
            "list_archives",
        )?;
        // SAFETY: as in `log`; the host copies the location before returning.
        let raw = unsafe { list(self.0, CairnStr::new(location)) };
        // SAFETY: a fresh future returned by the host.
        Ok(unsafe { ImportedFuture::new(raw) })
    }

    pub(crate) fn delete_archive(&self, location: &str) -> Result<ImportedFuture, PluginError> {
        let delete = self.function(
            offset_of!(CairnHost, delete_archive),
            |t| t.delete_archive,
            "delete_archive",
        )?;
        // SAFETY: as in `log`; the host copies the location before returning.
        let raw = unsafe { delete(self.0, CairnStr::new(location)) };
        // SAFETY: a fresh future returned by the host.
        Ok(unsafe { ImportedFuture::new(raw) })
    }

    pub(crate) fn state_directory(&self) -> Outcome {
        let directory = self.function(
            offset_of!(CairnHost, state_directory),
            |t| t.state_directory,
            "state_directory",
        )?;
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `log`; the output lives across the call.
        unsafe { directory(self.0, &output) };
        collector.into_outcome()
    }

    pub(crate) fn archive_directory(&self, path: &str) -> Outcome {
        let directory = self.function(
            offset_of!(CairnHost, archive_directory),
            |t| t.archive_directory,
            "archive_directory",
        )?;
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `log`; the path and the output live across the call.
        unsafe { directory(self.0, CairnStr::new(path), &output) };
        collector.into_outcome()
    }

    pub(crate) fn raise_alert(&self, database: &str, message: &str) -> Result<(), PluginError> {
        let raise = self.function(
            offset_of!(CairnHost, raise_alert),
            |t| t.raise_alert,
            "raise_alert",
        )?;
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `log`; the strings and the output live across the call.
        unsafe {
            raise(
                self.0,
                CairnStr::new(database),
                CairnStr::new(message),
                &output,
            )
        };
        collector.into_outcome().map(drop)
    }

    pub(crate) fn set_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), PluginError> {
        let set = self.function(
            offset_of!(CairnHost, set_gauge),
            |t| t.set_gauge,
            "set_gauge",
        )?;
        let labels: Vec<CairnArg> = labels
            .iter()
            .map(|(label, text)| CairnArg {
                name: CairnStr::new(label),
                // Borrowed from `labels`, which outlives the call.
                value: CairnValue {
                    kind: abi::CAIRN_VALUE_TEXT,
                    reserved: 0,
                    integer: 0,
                    real: 0.0,
                    bytes: CairnStr::new(text),
                },
            })
            .collect();
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `log`; the strings, labels and output live across the call.
        unsafe {
            set(
                self.0,
                CairnStr::new(name),
                CairnStr::new(help),
                labels.as_ptr(),
                labels.len(),
                value,
                &output,
            )
        };
        collector.into_outcome().map(drop)
    }

    pub(crate) fn list_backups(&self, database: &str, limit: u64) -> Outcome {
        let list = self.function(
            offset_of!(CairnHost, list_backups),
            |t| t.list_backups,
            "list_backups",
        )?;
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `log`; the output lives across the call.
        unsafe { list(self.0, CairnStr::new(database), limit, &output) };
        collector.into_outcome()
    }

    pub(crate) fn register_procedure(
        &self,
        procedure: &Procedure,
        instance: Arc<dyn ErasedInstance>,
    ) -> Result<(), PluginError> {
        let register = self.function(
            offset_of!(CairnHost, register_procedure),
            |t| t.register_procedure,
            "register_procedure",
        )?;
        let columns = super::borrow_columns(&procedure.columns);
        let ctx = Box::new(ProcedureCtx {
            instance,
            name: procedure.name.clone(),
        });
        let spec = CairnProcedureSpec {
            size: size_of::<CairnProcedureSpec>() as u32,
            reserved: 0,
            name: CairnStr::new(&procedure.name),
            description: CairnStr::new(&procedure.description),
            columns: columns.as_ptr(),
            column_count: columns.len(),
            ctx: Box::into_raw(ctx).cast(),
            call: Some(call_procedure),
            drop_ctx: Some(drop_procedure),
        };
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `log`; the host takes ownership of `ctx` (releasing it on failure).
        let status = unsafe { register(self.0, &spec, &output) };
        status_outcome(status, collector)
    }

    pub(crate) fn register_function(
        &self,
        function: &crate::Function,
        instance: Arc<dyn ErasedInstance>,
    ) -> Result<(), PluginError> {
        let register = self.function(
            offset_of!(CairnHost, register_function),
            |t| t.register_function,
            "register_function",
        )?;
        let ctx = Box::new(FunctionCtx {
            instance,
            name: function.name.clone(),
        });
        let spec = CairnFunctionSpec {
            size: size_of::<CairnFunctionSpec>() as u32,
            flags: if function.deterministic {
                abi::CAIRN_FUNCTION_DETERMINISTIC
            } else {
                0
            },
            name: CairnStr::new(&function.name),
            description: CairnStr::new(&function.description),
            arg_count: function.arg_count,
            reserved: 0,
            ctx: Box::into_raw(ctx).cast(),
            call: Some(call_function),
            drop_ctx: Some(drop_function),
        };
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `register_procedure`.
        let status = unsafe { register(self.0, &spec, &output) };
        status_outcome(status, collector)
    }

    pub(crate) fn register_aggregate(
        &self,
        aggregate: &crate::Function,
        instance: Arc<dyn ErasedInstance>,
    ) -> Result<(), PluginError> {
        let register = self.function(
            offset_of!(CairnHost, register_aggregate),
            |t| t.register_aggregate,
            "register_aggregate",
        )?;
        let ctx = Box::new(FunctionCtx {
            instance,
            name: aggregate.name.clone(),
        });
        let spec = CairnAggregateSpec {
            size: size_of::<CairnAggregateSpec>() as u32,
            flags: if aggregate.deterministic {
                abi::CAIRN_FUNCTION_DETERMINISTIC
            } else {
                0
            },
            name: CairnStr::new(&aggregate.name),
            description: CairnStr::new(&aggregate.description),
            arg_count: aggregate.arg_count,
            reserved: 0,
            ctx: Box::into_raw(ctx).cast(),
            start: Some(start_group),
            step: Some(step_group),
            finish: Some(finish_group),
            drop_state: Some(drop_group),
            drop_ctx: Some(drop_function),
            value: aggregate.window.then_some(value_of_group as _),
            inverse: aggregate.window.then_some(inverse_group as _),
        };
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `register_procedure`.
        let status = unsafe { register(self.0, &spec, &output) };
        status_outcome(status, collector)
    }

    pub(crate) fn register_table_function(
        &self,
        function: &crate::TableFunction,
        instance: Arc<dyn ErasedInstance>,
    ) -> Result<(), PluginError> {
        let register = self.function(
            offset_of!(CairnHost, register_table_function),
            |t| t.register_table_function,
            "register_table_function",
        )?;
        let ctx = Box::new(FunctionCtx {
            instance,
            name: function.name.clone(),
        });
        let columns = super::borrow_columns(&function.columns);
        let arguments = super::borrow_columns(&function.arguments);
        let spec = CairnTableFunctionSpec {
            size: size_of::<CairnTableFunctionSpec>() as u32,
            flags: 0,
            name: CairnStr::new(&function.name),
            description: CairnStr::new(&function.description),
            columns: columns.as_ptr(),
            column_count: columns.len(),
            arguments: arguments.as_ptr(),
            argument_count: arguments.len(),
            ctx: Box::into_raw(ctx).cast(),
            open: Some(open_scan),
            next: Some(next_rows),
            close: Some(close_scan),
            drop_ctx: Some(drop_function),
        };
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `register_procedure`; the columns outlive the call.
        let status = unsafe { register(self.0, &spec, &output) };
        status_outcome(status, collector)
    }

    pub(crate) fn subscribe_changes(
        &self,
        databases: &[&str],
        tables: &[&str],
    ) -> Result<(), PluginError> {
        let subscribe = self.function(
            offset_of!(CairnHost, subscribe_changes),
            |t| t.subscribe_changes,
            "subscribe_changes",
        )?;
        let databases: Vec<CairnStr> = databases.iter().map(|d| CairnStr::new(d)).collect();
        let tables: Vec<CairnStr> = tables.iter().map(|t| CairnStr::new(t)).collect();
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `log`; the names outlive the call.
        let status = unsafe {
            subscribe(
                self.0,
                databases.as_ptr(),
                databases.len(),
                tables.as_ptr(),
                tables.len(),
                &output,
            )
        };
        status_outcome(status, collector)
    }

    pub(crate) fn subscribe_statements(&self, min_duration_micros: u64) -> Result<(), PluginError> {
        let subscribe = self.function(
            offset_of!(CairnHost, subscribe_statements),
            |t| t.subscribe_statements,
            "subscribe_statements",
        )?;
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `log`.
        let status = unsafe { subscribe(self.0, min_duration_micros, &output) };
        status_outcome(status, collector)
    }

    pub(crate) fn subscribe(&self, mask: u64) -> Result<(), PluginError> {
        let subscribe = self.function(
            offset_of!(CairnHost, subscribe),
            |t| t.subscribe,
            "subscribe",
        )?;
        // SAFETY: as in `log`.
        match unsafe { subscribe(self.0, mask) } {
            abi::CAIRN_OK => Ok(()),
            _ => Err(PluginError::Refused(
                "the host refused the subscription".into(),
            )),
        }
    }

    pub(crate) fn schedule(
        &self,
        name: &str,
        cron: &str,
        instance: Arc<dyn ErasedInstance>,
    ) -> Result<(), PluginError> {
        let schedule =
            self.function(offset_of!(CairnHost, schedule), |t| t.schedule, "schedule")?;
        let ctx = Box::new(JobCtx {
            instance,
            name: name.to_owned(),
        });
        let spec = CairnJobSpec {
            size: size_of::<CairnJobSpec>() as u32,
            reserved: 0,
            name: CairnStr::new(name),
            cron: CairnStr::new(cron),
            ctx: Box::into_raw(ctx).cast(),
            run: Some(run_job),
            drop_ctx: Some(drop_job),
        };
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `register_procedure`.
        let status = unsafe { schedule(self.0, &spec, &output) };
        status_outcome(status, collector)
    }

    pub(crate) fn sleep(&self, millis: u64) -> Result<ImportedFuture, PluginError> {
        let sleep = self.function(offset_of!(CairnHost, sleep), |t| t.sleep, "sleep")?;
        // SAFETY: as in `log`.
        let raw = unsafe { sleep(self.0, millis) };
        // SAFETY: a fresh future returned by the host.
        Ok(unsafe { ImportedFuture::new(raw) })
    }
}

fn status_outcome(status: CairnStatus, collector: super::Collector) -> Result<(), PluginError> {
    match (status, collector.into_outcome()) {
        (abi::CAIRN_OK, _) => Ok(()),
        (_, Err(e)) => Err(e),
        (_, Ok(_)) => Err(PluginError::Refused(
            "the host refused without a reason".into(),
        )),
    }
}
