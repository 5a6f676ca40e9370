//! The simple and the extended query protocol over a session. Results stream: rows go to
//! the socket as the session's thread steps them (see `stream`).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::PortalExecutionState;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::Tag;
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::Entry;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::extendedquery::{PortalSuspended, Sync as SyncMessage};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;

use super::copy;
use super::encode::{self, error_response, pg_type};
use super::stream::{self, Pipe, Reply};
use super::{Shared, Slots};
use crate::session::{Brief, Executed, Prepared, TransactionChange};
use crate::sqlstate::SqlError;

/// A statement parsed by the extended protocol, with the parameter types it is bound with.
#[derive(Debug, Clone)]
pub struct ParsedStatement {
    /// Shared with each execution's thread: an Execute clones no text or columns.
    prepared: Arc<Prepared>,
    /// The client's type where it gave one, else the inferred type, else text.
    param_types: Vec<Type>,
}

#[derive(Debug)]
pub(super) struct QueryHandler {
    shared: Arc<Shared>,
    pub(super) slots: Slots,
    parser: Arc<Parser>,
}

impl QueryHandler {
    pub(super) fn new(shared: Arc<Shared>, slots: Slots) -> QueryHandler {
        let parser = Arc::new(Parser {
            shared: Arc::clone(&shared),
            slots: slots.clone(),
        });
        QueryHandler {
            shared,
            slots,
            parser,
        }
    }

    /// A simple query: every statement's rows, tag or error as the session produces them,
    /// then ReadyForQuery.
    async fn simple<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut status = client.transaction_status();
        let (tx, rx) = stream::channel();
        let runtime = self.shared.runtime.clone();
        let sql = query.query;
        let started = self.shared.start(&self.slots, move |session, stop| {
            let mut pipe = Pipe::new(tx, runtime, stop, Format::UnifiedText);
            session.execute_query_into(&sql, &mut pipe);
            Ok(())
        });
        match started {
            Err(e) => {
                send_error(client, e).await?;
                status = status.to_error_state();
            }
            Ok(task) => {
                if let Some(paused) = self.answer(client, rx, task, &mut status, false).await? {
                    // The rest of the answer comes once the client's COPY data has (see
                    // `copy`): no ReadyForQuery yet.
                    copy::pause(&self.slots.copy_in, paused);
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                    client.set_transaction_status(status);
                    return Ok(());
                }
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        client
            .feed(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        Ok(())
    }
}

impl QueryHandler {
    /// Writes each statement's rows, tag or error from `rx` as the session produces them,
    /// until the session's work ends, keeping `status` up to date; or until a `COPY … FROM
    /// STDIN` waits for the client's data: then the answer pauses, and is returned to be
    /// resumed. `answered`: something of this query's answer went out already.
    pub(super) async fn answer<C>(
        &self,
        client: &mut C,
        mut rx: tokio::sync::mpsc::Receiver<Reply>,
        task: tokio::task::JoinHandle<Result<(), SqlError>>,
        status: &mut TransactionStatus,
        mut answered: bool,
    ) -> PgWireResult<Option<copy::Paused>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        while let Some(reply) = rx.recv().await {
            answered = true;
            let outcome = match reply {
                Reply::Columns { fields, .. } => {
                    client.feed(stream::row_description(&fields)).await?;
                    stream::forward_rows(client, &mut rx).await?.1
                }
                Reply::CopyOut { format, fields } => {
                    copy::send_copy_out(client, &format, &fields, &mut rx).await?
                }
                Reply::CopyIn {
                    binary,
                    columns,
                    data,
                } => {
                    client.feed(copy::copy_in_response(binary, columns)).await?;
                    client.flush().await?;
                    return Ok(Some(copy::Paused {
                        data,
                        replies: rx,
                        task,
                    }));
                }
                Reply::Finished(outcome) => Some(outcome),
                Reply::Rows(_) => None,
            };
            match outcome {
                Some(Ok(executed)) => {
                    *status = transaction_status(*status, &executed);
                    report_parameters(client, &executed).await?;
                    let tag = encode::wire_tag(&executed.tag);
                    client
                        .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                        .await?;
                }
                Some(Err(e)) => {
                    send_error(client, e).await?;
                    *status = status.to_error_state();
                }
                None => {
                    // The statement stopped without its outcome reaching us.
                    let lost = SqlError::new(
                        crate::sqlstate::QUERY_CANCELED,
                        "canceling statement: its result could not be delivered".into(),
                    );
                    send_error(client, lost).await?;
                    *status = status.to_error_state();
                    break;
                }
            }
        }
        if !answered {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        }
        if let Err(e) = task.await {
            send_error(
                client,
                SqlError::new(
                    crate::sqlstate::INTERNAL_ERROR,
                    format!("statement failed unexpectedly: {e}"),
                ),
            )
            .await?;
        }
        Ok(None)
    }
}

impl QueryHandler {
    /// Execute: runs the portal's statement on its first Execute, then sends up to
    /// `max_rows` rows straight from the session's stream (pgwire's own Execute gathers the
    /// rows of a fetch in memory first), suspending the portal if more remain.
    async fn execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = ParsedStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let mut status = client.transaction_status();
        client.set_state(PgWireConnectionState::QueryInProgress);
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let max_rows = usize::try_from(message.max_rows).unwrap_or(0);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => portal,
            Some(Entry::Empty) => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                client.set_state(PgWireConnectionState::ReadyForQuery);
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(name.to_owned())),
        };
        let state = portal.state();
        let mut state = state.lock().await;
        if matches!(*state, PortalExecutionState::Finished) {
            // PostgreSQL answers an exhausted portal with an empty completion.
            let tag = Tag::new("SELECT").with_rows(0);
            client
                .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                .await?;
        }
        if matches!(*state, PortalExecutionState::Initial) {
            match ExtendedQueryHandler::do_query(self, client, portal.as_ref(), max_rows).await? {
                Response::Query(response) => *state = PortalExecutionState::Suspended(response),
                Response::EmptyQuery => {
                    client
                        .feed(PgWireBackendMessage::EmptyQueryResponse(
                            EmptyQueryResponse::new(),
                        ))
                        .await?;
                }
                Response::Execution(tag) => {
                    client
                        .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                        .await?;
                }
                Response::TransactionStart(tag) => {
                    client
                        .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                        .await?;
                    status = status.to_in_transaction_state();
                }
                Response::TransactionEnd(tag) => {
                    client
                        .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                        .await?;
                    status = status.to_idle_state();
                    client.portal_store().rm_portal(DEFAULT_NAME);
                }
                Response::Error(e) => {
                    client
                        .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                        .await?;
                    status = status.to_error_state();
                }
                // Cairn answers no statement with COPY.
                Response::CopyIn(_) | Response::CopyOut(_) | Response::CopyBoth(_) => {}
            }
        }
        if let PortalExecutionState::Suspended(response) = &mut *state {
            let command = response.command_tag().to_owned();
            let rows = response.data_rows();
            let mut sent = 0;
            let mut more = true;
            while max_rows == 0 || sent < max_rows {
                match rows.next().await {
                    Some(Ok(row)) => {
                        client.feed(PgWireBackendMessage::DataRow(row)).await?;
                        sent += 1;
                    }
                    Some(Err(e)) => {
                        *state = PortalExecutionState::Finished;
                        return Err(e);
                    }
                    None => {
                        more = false;
                        break;
                    }
                }
            }
            if more {
                client
                    .feed(PgWireBackendMessage::PortalSuspended(PortalSuspended::new()))
                    .await?;
            } else {
                *state = PortalExecutionState::Finished;
                let tag = Tag::new(&command).with_rows(sent);
                client
                    .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                    .await?;
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        Ok(())
    }
}

async fn send_error<C>(client: &mut C, error: SqlError) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let info = match error_response(error) {
        PgWireError::UserError(info) => *info,
        other => other.into(),
    };
    client
        .feed(PgWireBackendMessage::ErrorResponse(info.into()))
        .await?;
    Ok(())
}

fn transaction_status(status: TransactionStatus, executed: &Executed) -> TransactionStatus {
    match executed.transaction {
        TransactionChange::Started => status.to_in_transaction_state(),
        TransactionChange::Ended => status.to_idle_state(),
        TransactionChange::Unchanged => status,
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    /// Streams each statement's results (see `simple`); the connection's loop holds a
    /// shutdown token until they are on the wire.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = self.simple(client, query).await;
        client.flush().await?;
        result
    }

    /// Not used: `on_query` streams each statement's results itself.
    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(PgWireError::ApiError(
            "simple queries are answered by on_query".into(),
        ))
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = ParsedStatement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    /// Our Execute (see `execute`); as for simple queries, the connection's loop holds a
    /// shutdown token until the answer is on the wire.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = self.execute(client, message).await;
        client.flush().await?;
        result
    }

    /// Outside a transaction block, Sync ends the implicit transaction, and with it every
    /// portal, as in PostgreSQL (pgwire's own Sync keeps named ones, whose statement thread
    /// would hold the session).
    async fn on_sync<C>(&self, client: &mut C, _message: SyncMessage) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let status = client.transaction_status();
        if matches!(status, TransactionStatus::Idle) {
            if let Some(open) = self.slots.take_open_result() {
                open.close();
            }
            client.portal_store().clear_portals();
        } else {
            client.portal_store().rm_portal(DEFAULT_NAME);
        }
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    /// A SQL cursor is a portal too, as in PostgreSQL: a Describe of a portal by its name
    /// describes it (psycopg 3's server-side cursors ask so after their DECLARE).
    async fn on_describe<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::extendedquery::Describe,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.clone().unwrap_or_default();
        let a_cursor = message.target_type
            == pgwire::messages::extendedquery::TARGET_TYPE_BYTE_PORTAL
            && !name.is_empty()
            && client.portal_store().get_portal(&name).is_none();
        if !a_cursor {
            return self._on_describe(client, message).await;
        }
        let looked_up = name.clone();
        let columns = self
            .shared
            .run(&self.slots, move |session| {
                Ok(session.cursor_columns(&looked_up))
            })
            .await
            .map_err(error_response)?;
        let Some(columns) = columns else {
            return Err(PgWireError::PortalNotFound(name));
        };
        let fields = encode::fields(&columns, &Format::UnifiedText);
        pgwire::api::query::send_describe_response(client, &DescribePortalResponse::new(fields))
            .await
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &target.statement;
        let fields = result_fields(&statement.prepared, &encode::statement_format());
        Ok(DescribeStatementResponse::new(
            statement.param_types.clone(),
            fields,
        ))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = result_fields(
            &portal.statement.statement.prepared,
            &portal.result_column_format,
        );
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &portal.statement.statement;
        let params = encode::parameters(portal, &statement.param_types)?;
        let prepared = Arc::clone(&statement.prepared);
        let pipe_format = portal.result_column_format.clone();
        // A read-only query, or a single write outside a transaction, is tried on this
        // connection's thread first; one that takes longer, waits for a lock or whose result
        // does not fit the channel runs on a statement thread. (Other statements go there
        // at once: no session lock, token or pipe for nothing.)
        let (tx, rx) = stream::channel();
        let brief = if prepared.runs_briefly() {
            self.shared
                .run_briefly(&self.slots, |session, stop, within| {
                    let mut pipe = Pipe::holding(tx, stop, pipe_format.clone());
                    session.execute_prepared_briefly(&prepared, &params, &mut pipe, within)
                })
        } else {
            None
        };
        let (mut rx, stop_rx) = if brief == Some(Brief::Done) {
            (rx, None)
        } else {
            drop(rx);
            let (tx, rx) = stream::channel();
            let runtime = self.shared.runtime.clone();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            // The thread goes on stepping rows after this returns: pgwire reads them from the
            // portal at each Execute, and shutdown's tracker waits for it.
            self.shared
                .start(&self.slots, move |session, stop| {
                    let _ = stop_tx.send(stop.clone());
                    let mut pipe = Pipe::new(tx, runtime, stop, pipe_format);
                    session.execute_prepared_into(&prepared, &params, &mut pipe);
                    Ok(())
                })
                .map_err(error_response)?;
            (rx, Some(stop_rx))
        };
        match rx.recv().await {
            Some(Reply::Columns { command, fields }) => {
                let rows: stream::PortalEnd = Arc::new(tokio::sync::Mutex::new(Some(rx)));
                // A brief run's rows are all in the channel already: no thread holds the
                // session for them.
                if let Some(stop_rx) = stop_rx
                    && let Ok(stop) = stop_rx.await
                {
                    self.slots.set_open_result(stream::OpenResult {
                        stop,
                        rows: Arc::clone(&rows),
                    });
                }
                let mut response = QueryResponse::new(fields, stream::portal_rows(rows));
                // "INSERT 0 n", as PostgreSQL reports inserts (the 0 is the obsolete OID).
                response.set_command_tag(if command == "INSERT" {
                    "INSERT 0"
                } else {
                    &command
                });
                Ok(Response::Query(response))
            }
            Some(Reply::Finished(Ok(executed))) => {
                report_parameters(client, &executed).await?;
                Ok(encode::command_response(&executed))
            }
            Some(Reply::Finished(Err(e))) => Err(error_response(e)),
            Some(Reply::Rows(_) | Reply::CopyOut { .. } | Reply::CopyIn { .. }) | None => {
                Err(error_response(SqlError::new(
                    crate::sqlstate::INTERNAL_ERROR,
                    "the statement ended without an answer".into(),
                )))
            }
        }
    }
}

/// Tells the client of the reported parameters the statement changed (ParameterStatus), as
/// PostgreSQL does at the end of a statement that set one.
async fn report_parameters<C>(client: &mut C, executed: &Executed) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for (name, value) in &executed.reported {
        let status = pgwire::messages::startup::ParameterStatus::new(name.clone(), value.clone());
        client
            .feed(PgWireBackendMessage::ParameterStatus(status))
            .await?;
    }
    Ok(())
}

fn result_fields(prepared: &Prepared, format: &Format) -> Vec<FieldInfo> {
    prepared
        .columns
        .as_deref()
        .map(|columns| encode::fields(columns, format))
        .unwrap_or_default()
}

/// Prepares statements against the session's database when the client sends `Parse`.
#[derive(Debug)]
pub struct Parser {
    shared: Arc<Shared>,
    slots: Slots,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = ParsedStatement;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let text = sql.to_owned();
        let prepared = self
            .shared
            .run(&self.slots, move |session| session.prepare(&text))
            .await
            .map_err(error_response)?;
        if prepared.sql.is_empty() {
            return Ok(None);
        }
        let count = prepared.param_types.len().max(types.len());
        let param_types = (0..count)
            .map(|i| {
                types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| prepared.param_types.get(i).copied().flatten().map(pg_type))
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        Ok(Some(ParsedStatement {
            prepared: Arc::new(prepared),
            param_types,
        }))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(result_fields(
            &stmt.prepared,
            format.unwrap_or(&encode::statement_format()),
        ))
    }
}
