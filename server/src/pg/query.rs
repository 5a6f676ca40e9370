//! The simple and the extended query protocol over a session.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldInfo, Response,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::simplequery::Query;

use super::encode::{self, error_response, pg_type};
use super::{ActivitySlot, SessionSlot, Shared};
use crate::session::Prepared;

/// A statement parsed by the extended protocol, with the parameter types it is bound with.
#[derive(Debug, Clone)]
pub struct ParsedStatement {
    prepared: Prepared,
    /// The client's type where it gave one, else the inferred type, else text.
    param_types: Vec<Type>,
}

#[derive(Debug)]
pub(super) struct QueryHandler {
    shared: Arc<Shared>,
    session: SessionSlot,
    activity: ActivitySlot,
    parser: Arc<Parser>,
}

impl QueryHandler {
    pub(super) fn new(
        shared: Arc<Shared>,
        session: SessionSlot,
        activity: ActivitySlot,
    ) -> QueryHandler {
        let parser = Arc::new(Parser {
            shared: Arc::clone(&shared),
            session: Arc::clone(&session),
            activity: Arc::clone(&activity),
        });
        QueryHandler {
            shared,
            session,
            activity,
            parser,
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    /// Holds a shutdown token until the response is on the wire, so that a statement that was
    /// running when shutdown began also gets its answer delivered.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _in_flight = self.shared.statements.token();
        let result = self._on_query(client, query).await;
        client.flush().await?;
        result
    }

    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sql = query.to_owned();
        let results = self
            .shared
            .run(&self.session, &self.activity, move |session| {
                Ok(session.execute_query(&sql))
            })
            .await
            .map_err(error_response)?;
        if results.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        results
            .into_iter()
            .map(|result| match result {
                Ok(executed) => encode::response(executed, &Format::UnifiedText),
                Err(e) => Ok(Response::Error(Box::new(match error_response(e) {
                    PgWireError::UserError(info) => *info,
                    other => other.into(),
                }))),
            })
            .collect()
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = ParsedStatement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    /// As for simple queries: the answer of an executing portal is delivered before shutdown
    /// closes the connection.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _in_flight = self.shared.statements.token();
        let result = self._on_execute(client, message).await;
        client.flush().await?;
        result
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
        _client: &mut C,
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
        let prepared = statement.prepared.clone();
        let executed = self
            .shared
            .run(&self.session, &self.activity, move |session| {
                session.execute_prepared(&prepared, &params)
            })
            .await
            .map_err(error_response)?;
        encode::response(executed, &portal.result_column_format)
    }
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
    session: SessionSlot,
    activity: ActivitySlot,
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
            .run(&self.session, &self.activity, move |session| {
                session.prepare(&text)
            })
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
            prepared,
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
