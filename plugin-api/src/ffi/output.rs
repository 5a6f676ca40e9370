//! Results across the ABI: [`Collector`] receives what the other side writes to a
//! [`CairnOutput`]; [`write`] writes an [`Outcome`] to the other side's [`CairnOutput`].

use std::ffi::c_void;
use std::mem::offset_of;

use crate::abi::{self, CairnColumn, CairnOutput, CairnStr, CairnValue, has_pointer_field};
use crate::{Column, ColumnType, Outcome, PluginError, Reply};

/// Gathers a result written through a [`CairnOutput`].
#[derive(Debug, Default)]
pub struct Collector {
    error: Option<PluginError>,
    reply: Reply,
    /// Rows beyond this many are an error, not kept (`None`: no limit).
    row_limit: Option<usize>,
}

impl Collector {
    /// A collector that keeps at most `limit` rows: a row beyond them is an error, and memory
    /// stays bounded whatever the other side writes.
    pub fn with_row_limit(limit: usize) -> Collector {
        Collector {
            row_limit: Some(limit),
            ..Collector::default()
        }
    }

    /// An output whose functions write into this collector. It must not outlive the
    /// collector or be used while the collector is otherwise borrowed.
    pub fn output(&mut self) -> CairnOutput {
        CairnOutput {
            size: size_of::<CairnOutput>() as u32,
            reserved: 0,
            ctx: std::ptr::from_mut(self).cast(),
            set_error: Some(collect_error),
            set_columns: Some(collect_columns),
            push_row: Some(collect_row),
            set_message: Some(collect_message),
        }
    }

    /// The result: the first error written, else the reply.
    pub fn into_outcome(self) -> Outcome {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.reply),
        }
    }

    fn fail(&mut self, e: PluginError) {
        self.error.get_or_insert(e);
    }
}

/// # Safety
/// `ctx` is the collector an output made by [`Collector::output`] points to, and no other
/// reference to it is in use during the call.
unsafe fn collector<'a>(ctx: *mut c_void) -> &'a mut Collector {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *ctx.cast::<Collector>() }
}

unsafe extern "C" fn collect_error(ctx: *mut c_void, code: abi::CairnErrorCode, message: CairnStr) {
    // SAFETY: the ABI passes back the `ctx` of the output we built, during the call we lent it.
    let collector = unsafe { collector(ctx) };
    // SAFETY: the message is a `CairnStr` borrowed for this call.
    let bytes = unsafe { super::bytes(message) };
    let message = String::from_utf8_lossy(bytes).into_owned();
    collector.fail(PluginError::from_code(code, message));
}

unsafe extern "C" fn collect_columns(ctx: *mut c_void, columns: *const CairnColumn, count: usize) {
    // SAFETY: as in `collect_error`.
    let collector = unsafe { collector(ctx) };
    let columns: &[CairnColumn] = if count == 0 || columns.is_null() {
        &[]
    } else {
        // SAFETY: the ABI: `columns` points to `count` columns borrowed for this call.
        unsafe { std::slice::from_raw_parts(columns, count) }
    };
    let mut out = Vec::with_capacity(columns.len());
    for (i, c) in columns.iter().enumerate() {
        // SAFETY: the column's name is a `CairnStr` borrowed for this call.
        let name = match unsafe { super::text(c.name, "a column name") } {
            Ok(name) => name,
            Err(e) => return collector.fail(e),
        };
        let Some(ty) = ColumnType::from_abi(c.kind) else {
            return collector.fail(PluginError::InvalidArgument(format!(
                "column {} ({name}) has unknown type {}",
                i + 1,
                c.kind
            )));
        };
        out.push(Column { name, ty });
    }
    collector.reply.columns = Some(out);
}

unsafe extern "C" fn collect_row(ctx: *mut c_void, values: *const CairnValue, count: usize) {
    // SAFETY: as in `collect_error`.
    let collector = unsafe { collector(ctx) };
    if let Some(limit) = collector.row_limit
        && collector.reply.rows.len() >= limit
    {
        return collector.fail(PluginError::InvalidArgument(format!(
            "more than {limit} rows in one call"
        )));
    }
    // SAFETY: the ABI: `values` points to `count` values borrowed for this call.
    match unsafe { super::values(values, count) } {
        Ok(row) => collector.reply.rows.push(row),
        Err(e) => collector.fail(PluginError::InvalidArgument(format!(
            "row {}: {}",
            collector.reply.rows.len() + 1,
            e.message()
        ))),
    }
}

unsafe extern "C" fn collect_message(ctx: *mut c_void, message: CairnStr) {
    // SAFETY: as in `collect_error`.
    let collector = unsafe { collector(ctx) };
    // SAFETY: the message is a `CairnStr` borrowed for this call.
    let bytes = unsafe { super::bytes(message) };
    collector.reply.message = Some(String::from_utf8_lossy(bytes).into_owned());
}

/// Writes `outcome` to the other side's output, using only the functions its table has.
///
/// # Safety
/// `output` is null or points to a valid [`CairnOutput`] for the duration of the call.
pub(super) unsafe fn write(output: *const CairnOutput, outcome: Outcome) {
    // SAFETY: guaranteed by the caller.
    let Some(out) = (unsafe { output.as_ref() }) else {
        return;
    };
    let has = |offset| has_pointer_field(out.size, offset);
    match outcome {
        Err(e) => {
            if let (true, Some(set_error)) =
                (has(offset_of!(CairnOutput, set_error)), out.set_error)
            {
                // SAFETY: a function of a valid output, called with its own ctx and a string
                // that lives across the call.
                unsafe { set_error(out.ctx, e.code(), CairnStr::new(e.message())) }
            }
        }
        Ok(reply) => {
            if let (Some(columns), true, Some(set_columns)) = (
                &reply.columns,
                has(offset_of!(CairnOutput, set_columns)),
                out.set_columns,
            ) {
                let abi_columns = super::borrow_columns(columns);
                // SAFETY: as above; the columns outlive the call.
                unsafe { set_columns(out.ctx, abi_columns.as_ptr(), abi_columns.len()) }
            }
            if let (true, Some(push_row)) = (has(offset_of!(CairnOutput, push_row)), out.push_row) {
                for row in &reply.rows {
                    let values: Vec<CairnValue> = row.iter().map(super::borrow_value).collect();
                    // SAFETY: as above; the values borrow `row`, which outlives the call.
                    unsafe { push_row(out.ctx, values.as_ptr(), values.len()) }
                }
            }
            if let (Some(message), true, Some(set_message)) = (
                &reply.message,
                has(offset_of!(CairnOutput, set_message)),
                out.set_message,
            ) {
                // SAFETY: as above.
                unsafe { set_message(out.ctx, CairnStr::new(message)) }
            }
        }
    }
}

/// Writes a synchronous call's outcome to `output` and returns the status that goes with it.
///
/// # Safety
/// `output` is null or valid for the call.
pub(super) unsafe fn answer(output: *const CairnOutput, outcome: Outcome) -> abi::CairnStatus {
    let status = if outcome.is_ok() {
        abi::CAIRN_OK
    } else {
        abi::CAIRN_ERROR
    };
    // SAFETY: guaranteed by the caller.
    unsafe { write(output, outcome) };
    status
}
