//! COPY's sub-protocol on the wire. `COPY … TO STDOUT`: CopyOutResponse, a CopyData per row
//! (the row's text fields written in the COPY's format), CopyDone. `COPY … FROM STDIN`: the
//! simple query's answer pauses at CopyInResponse; each CopyData the client sends goes to
//! the session's thread through a bounded channel (a client faster than the inserts waits
//! on its socket), and CopyDone or CopyFail resumes the answer where it paused.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::FieldInfo;
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyInResponse, CopyOutResponse};
use pgwire::messages::data::DataRow;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::encode::error_response;
use super::query::QueryHandler;
use super::stream::Reply;
use crate::pgcompat::copy::{CopyFormat, write_field};
use crate::session::output::{self, CopyInput};
use crate::sqlstate::SqlError;

/// Pieces of a client's COPY data in flight to the session's thread.
const PIECES_IN_FLIGHT: usize = 8;

/// A simple query's answer paused at its `COPY … FROM STDIN`, until the client's data ends.
#[derive(Debug)]
pub(super) struct Paused {
    /// To the session's thread: the client's data.
    pub data: mpsc::Sender<CopyInput>,
    /// From it: the rest of the answer.
    pub replies: mpsc::Receiver<Reply>,
    pub task: tokio::task::JoinHandle<Result<(), SqlError>>,
}

/// Where a connection keeps its paused answer between the client's COPY messages.
pub(super) type PausedSlot = Arc<Mutex<Option<Paused>>>;

/// The session's end of the client's data.
pub(super) struct Incoming {
    rx: mpsc::Receiver<CopyInput>,
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
}

impl Incoming {
    /// The channel for one COPY's data: the sender for the connection, the receiver for the
    /// session's thread.
    pub(super) fn channel(
        runtime: tokio::runtime::Handle,
        stop: CancellationToken,
    ) -> (mpsc::Sender<CopyInput>, Incoming) {
        let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
        (tx, Incoming { rx, runtime, stop })
    }
}

impl output::CopyData for Incoming {
    fn next(&mut self) -> CopyInput {
        let (rx, stop) = (&mut self.rx, &self.stop);
        // The session's thread is a blocking one: it waits here for the client.
        self.runtime.block_on(async move {
            tokio::select! {
                biased;
                () = stop.cancelled() => CopyInput::Stopped,
                next = rx.recv() => next.unwrap_or_else(|| {
                    CopyInput::Failed(
                        "the client left its data unfinished (it went away, or sent another message)"
                            .into(),
                    )
                }),
            }
        })
    }
}

/// CopyInResponse for a COPY of `columns` columns.
pub(super) fn copy_in_response(binary: bool, columns: usize) -> PgWireBackendMessage {
    let code = i16::from(binary);
    let width = i16::try_from(columns).unwrap_or(i16::MAX);
    PgWireBackendMessage::CopyInResponse(CopyInResponse::new(
        code as i8,
        width,
        vec![code; columns],
    ))
}

/// Writes a `COPY … TO STDOUT` whose rows come from `rx` (after its CopyOut reply), up to
/// its outcome, which is returned (`None`: the session's thread ended without one).
pub(super) async fn send_copy_out<C>(
    client: &mut C,
    format: &CopyFormat,
    fields: &[FieldInfo],
    rx: &mut mpsc::Receiver<Reply>,
) -> PgWireResult<Option<Result<crate::session::Executed, SqlError>>>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client
        .feed(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            0,
            i16::try_from(fields.len()).unwrap_or(i16::MAX),
            vec![0; fields.len()],
        )))
        .await?;
    if format.header {
        let mut line = Vec::new();
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                line.push(format.delimiter);
            }
            write_field(format, &mut line, Some(field.name().as_bytes()), false);
        }
        line.push(b'\n');
        send_data(client, line).await?;
    }
    let forced: Vec<bool> = fields
        .iter()
        .map(|f| format.forces_quote(f.name()))
        .collect();
    while let Some(reply) = rx.recv().await {
        match reply {
            Reply::Rows(rows) => {
                for row in rows.into_rows() {
                    send_data(client, copy_line(&row, format, &forced)?).await?;
                }
            }
            Reply::Finished(result) => {
                if result.is_ok() {
                    client
                        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
                        .await?;
                }
                return Ok(Some(result));
            }
            Reply::Columns { .. } | Reply::CopyOut { .. } | Reply::CopyIn { .. } => {
                return Ok(None);
            }
        }
    }
    Ok(None)
}

async fn send_data<C>(client: &mut C, data: Vec<u8>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client
        .feed(PgWireBackendMessage::CopyData(CopyData::new(data.into())))
        .await?;
    Ok(())
}

/// A row's line: its text fields (each a length and its bytes, -1 for NULL) in the format.
fn copy_line(row: &DataRow, format: &CopyFormat, forced: &[bool]) -> PgWireResult<Vec<u8>> {
    let body = &row.data[..];
    let mut line = Vec::with_capacity(body.len() + 8);
    let mut at = 0;
    let mut index = 0;
    while at + 4 <= body.len() {
        let length = i32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        at += 4;
        if index > 0 {
            line.push(format.delimiter);
        }
        let value = match usize::try_from(length) {
            Ok(length) => {
                let value = body.get(at..at + length).ok_or_else(|| {
                    PgWireError::ApiError("a row's field is longer than its row".into())
                })?;
                at += length;
                Some(value)
            }
            Err(_) => None,
        };
        write_field(
            format,
            &mut line,
            value,
            forced.get(index).copied().unwrap_or(false),
        );
        index += 1;
    }
    line.push(b'\n');
    Ok(line)
}

/// Keeps a simple query's answer paused at its COPY until the client's next COPY message.
pub(super) fn pause(slot: &PausedSlot, paused: Paused) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(paused);
}

fn take(slot: &PausedSlot) -> Option<Paused> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Gives up the paused COPY (the client sent something else than its data, which pgwire
/// refuses): the session's thread, its data channel closed, rolls the COPY back and lets go
/// of the session.
pub(super) fn abandon(slot: &PausedSlot) {
    drop(take(slot));
}

/// Tells the session's thread the data failed, and waits for the rest of its answer: the
/// session's error, if it said one.
async fn give_up(paused: Paused, why: String) -> Option<SqlError> {
    let _ = paused.data.send(CopyInput::Failed(why)).await;
    let mut replies = paused.replies;
    let mut error = None;
    while let Some(reply) = replies.recv().await {
        if let Reply::Finished(Err(e)) = reply {
            error = Some(e);
        }
    }
    let _ = paused.task.await;
    error
}

#[async_trait]
impl CopyHandler for QueryHandler {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let data = self
            .slots
            .copy_in
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|paused| paused.data.clone());
        // A COPY that already failed (a bad row) reads no more: its data is dropped until
        // CopyDone, where its error is answered (PostgreSQL answers it at once).
        if let Some(data) = data {
            let _ = data.send(CopyInput::Data(copy_data.data)).await;
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(paused) = take(&self.slots.copy_in) else {
            return Ok(());
        };
        let _ = paused.data.send(CopyInput::Done).await;
        let mut status = client.transaction_status();
        // Nothing can pause the answer again: a COPY FROM STDIN ends its query string.
        let _ = self
            .answer(client, paused.replies, paused.task, &mut status, true)
            .await?;
        // pgwire sends ReadyForQuery with this status once this returns.
        client.set_transaction_status(status);
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let failed = || {
            SqlError::new(
                crate::sqlstate::QUERY_CANCELED,
                format!("COPY from stdin failed: {}", fail.message),
            )
        };
        // The session's own words for the failure (it rolled back) are the answer; pgwire
        // sends it, then ReadyForQuery (in a transaction, its failed state).
        let error = match take(&self.slots.copy_in) {
            Some(paused) => give_up(paused, fail.message.clone()).await,
            None => None,
        };
        error_response(error.unwrap_or_else(failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcompat::copy::Decoder;
    use crate::sql::lexer;

    /// A row's DataRow body becomes its COPY line, NULLs and escapes as PostgreSQL writes them.
    #[test]
    fn a_data_row_becomes_its_copy_line() {
        let sql = "COPY t FROM STDIN (FORMAT csv)";
        let tokens = lexer::tokenize(sql).unwrap();
        let csv = crate::pgcompat::copy::parse(sql, &tokens)
            .unwrap()
            .unwrap()
            .format;
        let body = b"\x00\x00\x00\x01a\xff\xff\xff\xff\x00\x00\x00\x03x,y";
        let row = DataRow::new(bytes::BytesMut::from(&body[..]), 3);
        let line = copy_line(&row, &csv, &[]).unwrap();
        assert_eq!(line, b"a,,\"x,y\"\n");
        let mut decoder = Decoder::new(csv);
        decoder.feed(&line);
        assert_eq!(
            decoder.next_row(true).unwrap().unwrap(),
            vec![Some(b"a".to_vec()), None, Some(b"x,y".to_vec())]
        );
    }
}
