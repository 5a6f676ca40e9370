//! Results on their way to the wire while SQLite steps them: the session's thread encodes
//! rows into `DataRow`s and sends them in small batches through a bounded channel; the
//! connection's task writes them to the socket. Memory for one result stays at a few batches
//! whatever its row count, and a client that stops reading stops the statement.

use std::sync::Arc;

use bytes::BufMut;
use bytes::BytesMut;
use futures::{Sink, SinkExt, Stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{DataRow, RowDescription};
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::copy::Incoming;
use super::encode;
use crate::pgcompat::copy::CopyFormat;
use crate::session::output::{CopyData, CopyInput, Output, RowValues, Stopped};
use crate::session::{Column, Executed};
use crate::sqlstate::SqlError;

/// Batches in flight between the session's thread and the socket.
const BATCHES_IN_FLIGHT: usize = 4;
/// A batch is sent once it holds this many bytes of encoded rows (or at the end).
const BATCH_BYTES: usize = 64 * 1024;
/// What a result's first batch starts with (it grows as rows come): most results are a row
/// or a few, and a whole batch's buffer for each cost a point select more than its row.
const FIRST_BATCH_BYTES: usize = 2 * 1024;

/// Slots a brief run keeps free before its end: one for its last rows, one for its outcome.
const ROOM_FOR_THE_END: usize = 2;

/// What the session's thread sends the connection.
pub(super) enum Reply {
    /// A statement returns rows: its command word and described fields.
    Columns {
        command: String,
        fields: Arc<Vec<FieldInfo>>,
    },
    Rows(RowBatch),
    /// The statement's outcome, after its last row.
    Finished(Result<Executed, SqlError>),
    /// A `COPY … TO STDOUT`: its rows follow, encoded as text, to be written in `format`.
    CopyOut {
        format: CopyFormat,
        fields: Arc<Vec<FieldInfo>>,
    },
    /// A `COPY … FROM STDIN` waits for the client's data, to be sent to `data`.
    CopyIn {
        binary: bool,
        columns: usize,
        data: mpsc::Sender<CopyInput>,
    },
}

/// Rows of one result, encoded: their `DataRow` bodies back to back in one buffer, so that a
/// row costs no allocation of its own on either side of the channel.
pub(super) struct RowBatch {
    data: BytesMut,
    lengths: Vec<u32>,
    field_count: i16,
    capacity: usize,
}

impl RowBatch {
    /// A batch whose buffer is `capacity` bytes once its first row comes.
    fn new(capacity: usize) -> RowBatch {
        RowBatch {
            data: BytesMut::new(),
            lengths: Vec::new(),
            field_count: 0,
            capacity,
        }
    }

    /// A writer of one more row's fields, at the end of the buffer.
    fn row<'a>(&'a mut self, fields: &'a [FieldInfo]) -> RowWriter<'a> {
        if self.data.capacity() == 0 {
            self.data.reserve(self.capacity);
        }
        RowWriter {
            start: self.data.len(),
            batch: self,
            fields,
            index: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    fn bytes(&self) -> usize {
        self.data.len() + 8 * self.lengths.len()
    }

    /// The batch's rows, each a slice of the one buffer.
    pub(super) fn into_rows(self) -> impl Iterator<Item = DataRow> {
        let RowBatch {
            mut data,
            lengths,
            field_count,
            ..
        } = self;
        lengths
            .into_iter()
            .map(move |length| DataRow::new(data.split_to(length as usize), field_count))
    }
}

/// Encodes one row's fields straight into its batch's buffer, as pgwire's `DataRowEncoder`
/// does into a buffer of its own (which would then be copied and freed for every row).
pub(super) struct RowWriter<'a> {
    batch: &'a mut RowBatch,
    fields: &'a [FieldInfo],
    start: usize,
    index: usize,
}

impl RowWriter<'_> {
    /// Encodes the next field, in its described type and format.
    pub(super) fn encode_field<T: ToSql + ToSqlText>(&mut self, value: &T) -> PgWireResult<()> {
        let field = self.fields.get(self.index).ok_or_else(|| {
            PgWireError::ApiError("a row has more values than its result has columns".into())
        })?;
        let out = &mut self.batch.data;
        let at = out.len();
        // The length, -1 (NULL) until the value says otherwise.
        out.put_i32(-1);
        let is_null = match field.format() {
            FieldFormat::Text => {
                value.to_sql_text(field.datatype(), out, field.format_options())?
            }
            FieldFormat::Binary => value.to_sql(field.datatype(), out)?,
        };
        if let IsNull::No = is_null {
            let length = i32::try_from(out.len() - at - 4).map_err(|_| {
                PgWireError::ApiError("a value is longer than the protocol allows".into())
            })?;
            out[at..at + 4].copy_from_slice(&length.to_be_bytes());
        }
        self.index += 1;
        Ok(())
    }

    /// Encodes the next field, an integer: as [`RowWriter::encode_field`] would, without
    /// going through `Display` for the text format.
    pub(super) fn encode_integer(&mut self, value: i64) -> PgWireResult<()> {
        match self.fields.get(self.index) {
            Some(field) if field.format() == FieldFormat::Text => {
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(value).as_bytes();
                let out = &mut self.batch.data;
                out.put_i32(digits.len() as i32);
                out.put_slice(digits);
                self.index += 1;
                Ok(())
            }
            _ => self.encode_field(&value),
        }
    }

    /// The row is whole: it joins the batch.
    fn finish(self) {
        let length = self.batch.data.len() - self.start;
        self.batch.lengths.push(length as u32);
        self.batch.field_count = self.index as i16;
    }

    /// The row is dropped: what was written of it goes.
    fn abandon(self) {
        self.batch.data.truncate(self.start);
    }
}

/// The channel both ends share.
pub(super) fn channel() -> (mpsc::Sender<Reply>, mpsc::Receiver<Reply>) {
    mpsc::channel(BATCHES_IN_FLIGHT)
}

/// A portal's end of the channel, shared with the connection so that closing the result
/// (the next statement needs the session) also frees the rows still in flight.
pub(super) type PortalEnd = Arc<tokio::sync::Mutex<Option<mpsc::Receiver<Reply>>>>;

/// A result suspended in a portal.
#[derive(Debug)]
pub(super) struct OpenResult {
    pub stop: CancellationToken,
    pub rows: PortalEnd,
}

impl OpenResult {
    /// Stops the statement and drops the rows in flight; the portal's next fetch is an error.
    pub fn close(self) {
        self.stop.cancel();
        if let Ok(mut rows) = self.rows.try_lock() {
            *rows = None;
        }
    }
}

/// The session's end: an [`Output`] that encodes and sends.
pub(super) struct Pipe {
    tx: mpsc::Sender<Reply>,
    /// Where the session's thread waits for room in the channel; `None` for a brief run on
    /// the connection's own task, which never waits: a full channel stops the result.
    runtime: Option<tokio::runtime::Handle>,
    /// Stops the delivery: a cancel, the timeout, termination, or the next statement while
    /// this result is suspended in a portal.
    stop: CancellationToken,
    format: Format,
    columns: Vec<Column>,
    fields: Option<Arc<Vec<FieldInfo>>>,
    batch: RowBatch,
    /// A row could not be encoded: its error went out, the rest is dropped.
    failed: bool,
    /// The reader went away or the result was preempted: nothing more is sent, so the
    /// reader's end says how the result ended.
    stopped: bool,
    /// The client's data for the `COPY … FROM STDIN` running.
    incoming: Option<Incoming>,
}

impl Pipe {
    pub(super) fn new(
        tx: mpsc::Sender<Reply>,
        runtime: tokio::runtime::Handle,
        stop: CancellationToken,
        format: Format,
    ) -> Pipe {
        Pipe::with(tx, Some(runtime), stop, format)
    }

    /// A pipe for a brief run: what does not fit the channel stops the result.
    pub(super) fn holding(
        tx: mpsc::Sender<Reply>,
        stop: CancellationToken,
        format: Format,
    ) -> Pipe {
        Pipe::with(tx, None, stop, format)
    }

    fn with(
        tx: mpsc::Sender<Reply>,
        runtime: Option<tokio::runtime::Handle>,
        stop: CancellationToken,
        format: Format,
    ) -> Pipe {
        Pipe {
            tx,
            runtime,
            stop,
            format,
            columns: Vec::new(),
            fields: None,
            batch: RowBatch::new(FIRST_BATCH_BYTES),
            failed: false,
            stopped: false,
            incoming: None,
        }
    }

    /// Sends `reply`. A brief run's pipe sends it only if `keep` slots stay free after it:
    /// the last rows and the outcome always find room, so that a run either is given up
    /// before its end or ends with its outcome sent.
    fn send(&mut self, reply: Reply, keep: usize) -> Result<(), Stopped> {
        if self.runtime.is_none() && self.tx.capacity() <= keep {
            self.stopped = true;
            return Err(Stopped);
        }
        // A statement's outcome goes out whenever there is room, even once it was stopped
        // (a canceled statement's error is what its client reads next).
        let reply = if matches!(reply, Reply::Finished(_)) || self.runtime.is_none() {
            match self.tx.try_send(reply) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Stopped),
                Err(mpsc::error::TrySendError::Full(reply)) => reply,
            }
        } else {
            reply
        };
        if self.stopped {
            return Err(Stopped);
        }
        let Some(runtime) = &self.runtime else {
            self.stopped = true;
            return Err(Stopped);
        };
        let tx = self.tx.clone();
        let stop = self.stop.clone();
        // The session's thread is a blocking one: it waits here while the socket is slow,
        // until the statement is stopped.
        let sent = runtime.block_on(async move {
            tokio::select! {
                biased;
                () = stop.cancelled() => Err(Stopped),
                sent = tx.send(reply) => sent.map_err(|_| Stopped),
            }
        });
        self.stopped = sent.is_err();
        sent
    }

    /// A new result of `columns`, described as `fields`, begins: the last one's rows go.
    fn begin_result(
        &mut self,
        columns: &[Column],
        fields: &Arc<Vec<FieldInfo>>,
    ) -> Result<(), Stopped> {
        self.flush(ROOM_FOR_THE_END)?;
        self.fields = Some(Arc::clone(fields));
        self.columns = columns.to_vec();
        self.failed = false;
        Ok(())
    }

    /// Sends the rows batched so far, keeping `keep` slots free (see [`Pipe::send`]).
    fn flush(&mut self, keep: usize) -> Result<(), Stopped> {
        if self.batch.is_empty() {
            return Ok(());
        }
        // A result that filled one batch is likely to fill the next ones too.
        let batch = std::mem::replace(
            &mut self.batch,
            RowBatch::new(BATCH_BYTES + BATCH_BYTES / 4),
        );
        self.send(Reply::Rows(batch), keep)
    }
}

impl Output for Pipe {
    fn columns(&mut self, command: &str, columns: &[Column]) -> Result<(), Stopped> {
        let fields = Arc::new(encode::fields(columns, &self.format));
        self.begin_result(columns, &fields)?;
        self.send(
            Reply::Columns {
                command: command.to_owned(),
                fields,
            },
            ROOM_FOR_THE_END,
        )
    }

    fn copy_out(&mut self, format: &CopyFormat, columns: &[Column]) -> Result<(), Stopped> {
        // Rows as text whatever the portal asked: COPY writes their text.
        let fields = Arc::new(encode::fields(columns, &Format::UnifiedText));
        self.begin_result(columns, &fields)?;
        self.send(
            Reply::CopyOut {
                format: format.clone(),
                fields,
            },
            ROOM_FOR_THE_END,
        )
    }

    fn copy_in(&mut self, format: &CopyFormat, columns: usize) -> Option<&mut dyn CopyData> {
        // A brief run never copies: it has no thread to wait for the client on.
        let runtime = self.runtime.clone()?;
        let (data, incoming) = Incoming::channel(runtime, self.stop.clone());
        let reply = Reply::CopyIn {
            binary: format.is_binary(),
            columns,
            data,
        };
        self.send(reply, ROOM_FOR_THE_END).ok()?;
        Some(self.incoming.insert(incoming))
    }

    fn row(&mut self, row: &dyn RowValues) -> Result<(), Stopped> {
        let Some(fields) = self.fields.as_ref() else {
            return Err(Stopped);
        };
        if row.width() != self.columns.len() {
            // SQLite prepared the statement again after a schema change, and its rows no
            // longer have the columns described to the client.
            self.failed = true;
            let _ = self.flush(1);
            let error = SqlError::new(
                crate::sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "cached plan must not change result type: the statement was described with {} columns and now returns {} (a table it reads was altered); prepare it again",
                    self.columns.len(),
                    row.width()
                ),
            );
            let _ = self.send(Reply::Finished(Err(error)), 0);
            return Err(Stopped);
        }
        let mut writer = self.batch.row(fields);
        let mut failure = None;
        for (i, column) in self.columns.iter().enumerate() {
            if let Err(e) = encode::encode_value(&mut writer, row.value(i), column) {
                failure = Some(e);
                break;
            }
        }
        match failure {
            None => writer.finish(),
            Some(e) => {
                writer.abandon();
                // The client gets the reason; the statement stops here.
                self.failed = true;
                let _ = self.flush(1);
                let error = match e {
                    PgWireError::UserError(info) => {
                        SqlError::new(crate::sqlstate::DATATYPE_MISMATCH, info.message.clone())
                    }
                    other => SqlError::new(crate::sqlstate::INTERNAL_ERROR, other.to_string()),
                };
                let _ = self.send(Reply::Finished(Err(error)), 0);
                return Err(Stopped);
            }
        }
        if self.batch.bytes() >= BATCH_BYTES {
            self.flush(ROOM_FOR_THE_END)?;
        }
        Ok(())
    }

    fn failed(&self) -> bool {
        self.failed
    }

    fn finished(&mut self, result: Result<Executed, SqlError>) -> Result<(), Stopped> {
        if std::mem::take(&mut self.failed) {
            // Its error was sent in place of the rest of its rows.
            return Ok(());
        }
        // Rows still batched are dropped if the delivery was stopped; then the outcome may
        // not say success, since the client did not get every row.
        let result = match (self.flush(1), result) {
            (Err(Stopped), Ok(_)) => Err(SqlError::new(
                crate::sqlstate::QUERY_CANCELED,
                "canceling statement: its result was stopped before its last rows were sent".into(),
            )),
            (_, result) => result,
        };
        self.send(Reply::Finished(result), 0)
    }
}

/// The RowDescription of `fields`.
pub(super) fn row_description(fields: &[FieldInfo]) -> PgWireBackendMessage {
    PgWireBackendMessage::RowDescription(RowDescription::new(
        fields.iter().map(Into::into).collect(),
    ))
}

/// Writes the rows of one statement from `rx` to `client` until its outcome arrives, which
/// is returned (`None`: the session's thread ended without one).
pub(super) async fn forward_rows<C>(
    client: &mut C,
    rx: &mut mpsc::Receiver<Reply>,
) -> PgWireResult<(usize, Option<Result<Executed, SqlError>>)>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut sent = 0;
    while let Some(reply) = rx.recv().await {
        match reply {
            Reply::Rows(rows) => {
                for row in rows.into_rows() {
                    client.feed(PgWireBackendMessage::DataRow(row)).await?;
                    sent += 1;
                }
            }
            Reply::Finished(result) => return Ok((sent, Some(result))),
            // A new statement's columns before the last one finished cannot happen: the
            // session finishes each statement before the next.
            Reply::Columns { .. } | Reply::CopyOut { .. } | Reply::CopyIn { .. } => {
                return Ok((sent, None));
            }
        }
    }
    Ok((sent, None))
}

/// The rows of a portal as the stream pgwire reads at each Execute: rows until the
/// statement's outcome; an error outcome, or a session that stopped without one, becomes
/// an error rather than a silently short result.
pub(super) fn portal_rows(
    rx: PortalEnd,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + Unpin + 'static {
    let state = (rx, std::collections::VecDeque::<DataRow>::new(), false);
    Box::pin(futures::stream::unfold(
        state,
        |(rx, mut pending, done)| async move {
            loop {
                if let Some(row) = pending.pop_front() {
                    return Some((Ok(row), (rx, pending, done)));
                }
                if done {
                    return None;
                }
                let next = match rx.lock().await.as_mut() {
                    Some(receiver) => receiver.recv().await,
                    None => None,
                };
                match next {
                    Some(Reply::Rows(rows)) => pending.extend(rows.into_rows()),
                    Some(Reply::Finished(Ok(_))) => return None,
                    Some(Reply::Finished(Err(e))) => {
                        return Some((Err(encode::error_response(e)), (rx, pending, true)));
                    }
                    Some(Reply::Columns { .. } | Reply::CopyOut { .. } | Reply::CopyIn { .. })
                    | None => {
                        let lost = SqlError::new(
                            crate::sqlstate::OBJECT_IN_USE,
                            "portal closed before its last row: another statement ran on this connection while it was suspended, or the statement was canceled; fetch a portal to its end (or use a second connection) before running the next statement".into(),
                        );
                        return Some((Err(encode::error_response(lost)), (rx, pending, true)));
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::CommandTag;
    use crate::sql::types::SqlType;
    use rusqlite::types::Value;

    /// A brief run whose rows filled the channel to its last slot had no room left for its
    /// outcome: its client got the rows, then "portal closed before its last row".
    #[test]
    fn a_brief_result_that_fills_the_pipe_lost_its_outcome() {
        // The receiving end stays open (a closed one stops the pipe at once) and unread.
        let (tx, _unread) = channel();
        let mut pipe = Pipe::holding(tx, CancellationToken::new(), Format::UnifiedText);
        let columns = [Column {
            name: "v".into(),
            ty: SqlType::Text,
        }];
        pipe.columns("SELECT", &columns).unwrap();
        let wide = "x".repeat(1024);
        let mut taken = 0;
        let row = vec![Value::Text(wide.clone())];
        while pipe.row(&row).is_ok() {
            taken += 1;
            assert!(taken < 10_000, "a holding pipe took rows without bound");
        }
        // The rows did not fit: the run is given up, and nothing more goes in, but a run
        // that ends just before that point must still be able to say how it ended.
        let (tx, mut fitting) = channel();
        let mut pipe = Pipe::holding(tx, CancellationToken::new(), Format::UnifiedText);
        pipe.columns("SELECT", &columns).unwrap();
        for _ in 0..taken {
            pipe.row(&row).unwrap();
        }
        let done = Executed {
            reported: Vec::new(),
            columns: Some(columns.to_vec()),
            rows: Vec::new(),
            tag: CommandTag {
                command: "SELECT".into(),
                rows: Some(taken),
            },
            transaction: crate::session::TransactionChange::Unchanged,
        };
        pipe.finished(Ok(done)).expect("the outcome found no room");
        drop(pipe);
        let mut last = None;
        while let Ok(reply) = fitting.try_recv() {
            last = Some(reply);
        }
        assert!(matches!(last, Some(Reply::Finished(Ok(_)))));
    }

    /// Rows are encoded in place into one buffer per batch: each arrives whole, with its
    /// own fields, and a row that cannot be encoded leaves nothing of itself behind.
    #[test]
    fn rows_encoded_into_one_batch_come_out_whole_and_a_bad_row_leaves_no_trace() {
        let (tx, mut rx) = channel();
        let mut pipe = Pipe::holding(tx, CancellationToken::new(), Format::UnifiedText);
        let columns = [
            Column {
                name: "n".into(),
                ty: SqlType::Int8,
            },
            Column {
                name: "t".into(),
                ty: SqlType::Text,
            },
        ];
        pipe.columns("SELECT", &columns).unwrap();
        pipe.row(&vec![Value::Integer(-42), Value::Text("é".into())])
            .unwrap();
        pipe.row(&vec![Value::Null, Value::Text("x".into())])
            .unwrap();
        pipe.row(&vec![Value::Integer(7), Value::Blob(vec![0xff])])
            .unwrap();
        // Text that is not UTF-8, after a field of its row was already written.
        struct NotUtf8;
        impl RowValues for NotUtf8 {
            fn width(&self) -> usize {
                2
            }
            fn value(&self, i: usize) -> rusqlite::types::ValueRef<'_> {
                match i {
                    0 => rusqlite::types::ValueRef::Integer(7),
                    _ => rusqlite::types::ValueRef::Text(&[0xff, 0x41]),
                }
            }
        }
        assert_eq!(pipe.row(&NotUtf8), Err(Stopped));
        drop(pipe);
        assert!(matches!(rx.try_recv(), Ok(Reply::Columns { .. })));
        let Ok(Reply::Rows(batch)) = rx.try_recv() else {
            panic!("the rows before the bad one were not sent");
        };
        let rows: Vec<DataRow> = batch.into_rows().collect();
        let bodies: Vec<(&[u8], i16)> = rows.iter().map(|r| (&r.data[..], r.field_count)).collect();
        assert_eq!(
            bodies,
            vec![
                (&b"\x00\x00\x00\x03-42\x00\x00\x00\x02\xc3\xa9"[..], 2),
                (&b"\xff\xff\xff\xff\x00\x00\x00\x01x"[..], 2),
                (&b"\x00\x00\x00\x017\x00\x00\x00\x04\\xff"[..], 2),
            ]
        );
        let Ok(Reply::Finished(Err(error))) = rx.try_recv() else {
            panic!("the bad row did not end the result with an error");
        };
        assert!(
            error.message.contains("not valid UTF-8"),
            "{}",
            error.message
        );
    }

    /// A statement SQLite prepared again after its table was altered returns rows of another
    /// width than was described: they were sent short or padded, as rows of the old columns.
    #[test]
    fn a_row_of_another_width_than_its_description_ends_the_result() {
        let (tx, mut rx) = channel();
        let mut pipe = Pipe::holding(tx, CancellationToken::new(), Format::UnifiedText);
        let columns = [
            Column {
                name: "a".into(),
                ty: SqlType::Int8,
            },
            Column {
                name: "b".into(),
                ty: SqlType::Int8,
            },
        ];
        pipe.columns("SELECT", &columns).unwrap();
        assert_eq!(pipe.row(&vec![Value::Integer(1)]), Err(Stopped));
        assert!(pipe.failed());
        drop(pipe);
        assert!(matches!(rx.try_recv(), Ok(Reply::Columns { .. })));
        let Ok(Reply::Finished(Err(error))) = rx.try_recv() else {
            panic!("the short row did not end the result with an error");
        };
        assert_eq!(error.code, crate::sqlstate::FEATURE_NOT_SUPPORTED);
        assert!(
            error.message.contains("prepare it again"),
            "{}",
            error.message
        );
    }
}
