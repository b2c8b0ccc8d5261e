//! The PostgreSQL / TimescaleDB side of [`super::db`]: connection settings
//! (TLS, timeouts), error classification, and a pool of connections
//! (deadpool-postgres) with an acquire timeout, a connect timeout and a
//! statement timeout (server-side `statement_timeout`, and a client-side
//! bound on every call).

use std::future::Future;
use std::pin::Pin;

use bytes::BufMut as _;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType};
use tokio_postgres::Client;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::db::{Conn, Row, Value};
use super::pg_tls::{self, PgTls};
use super::{DbTimeouts, StoreError};

/// The PostgreSQL store (the one store implementation, on a PostgreSQL pool).
pub type PgStore = super::registry::SqlStore;

/// The connection settings of every PostgreSQL client of every role: the URL
/// with the connect timeout and, as a startup parameter, the server-side
/// `statement_timeout`; and its TLS settings (libpq's `sslmode`,
/// `sslrootcert`, `sslcert`, `sslkey`, see [`super::pg_tls`]). The one place
/// that builds them (platform, alerting and admin stores).
///
/// # Errors
///
/// [`StoreError::Invalid`] for a URL tokio-postgres cannot parse or TLS
/// parameters that cannot work.
pub fn connection_config(url: &str, timeouts: DbTimeouts) -> Result<(tokio_postgres::Config, PgTls), StoreError> {
    let (plain, tls) = pg_tls::split_url(url)
        .map_err(|e| StoreError::Invalid(format!("database URL {}: {e}", crate::config::redact_url(url))))?;
    let mut config: tokio_postgres::Config = plain
        .parse()
        .map_err(|e| StoreError::Invalid(format!("bad database URL {}: {e}", crate::config::redact_url(url))))?;
    config.ssl_mode(tls.postgres_mode());
    config.connect_timeout(timeouts.connect);
    // Detects a peer that vanished (not one that hangs: see `run`).
    config.keepalives(true).keepalives_idle(std::time::Duration::from_secs(30));
    Ok((config, tls))
}

/// One plain client of `url` with its TLS settings (for tools: the load
/// simulator), its connection driven by a spawned task.
///
/// # Errors
///
/// [`StoreError::Invalid`] for bad settings, [`StoreError::Transient`] when
/// connecting fails.
pub async fn connect_client(url: &str, timeouts: DbTimeouts) -> Result<Client, StoreError> {
    let (config, tls) = connection_config(url, timeouts)?;
    let connector = tls.connector().map_err(|e| StoreError::Invalid(format!("database TLS settings: {e}")))?;
    let (client, connection) = config.connect(connector).await.map_err(|e| {
        StoreError::Transient(format!(
            "connecting to {} (sslmode={}): {}",
            crate::config::redact_url(url),
            tls.mode.as_str(),
            error_chain(&e)
        ))
    })?;
    tokio::spawn(connection);
    Ok(client)
}

/// An error and its causes, `: `-separated (tokio-postgres keeps the reason of
/// a failed TLS handshake, e.g. `invalid peer certificate: UnknownIssuer`, in
/// the source chain, not in its message).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Logs once, at startup, a connection to a remote server whose certificate is
/// not checked (`sslmode` `disable`, `prefer`, or `require` without a CA): it
/// does not stop an attacker in the middle.
fn warn_if_unverified(url: &str) {
    let Ok((config, tls)) = connection_config(url, DbTimeouts::default()) else { return };
    let remote = config.get_hosts().iter().any(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => {
            !(name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
        }
        #[allow(unreachable_patterns)]
        _ => false,
    });
    if remote && !tls.mode.verifies(tls.root_cert.is_some()) {
        tracing::warn!(
            message = "The database server's certificate is not verified: set database.sslmode = \"verify-full\" and database.sslrootcert.",
            sslmode = tls.mode.as_str(),
        );
    }
}

/// Classifies a PostgreSQL error: connection (08), transaction rollback
/// (40: serialization failure, deadlock), insufficient resources (53),
/// operator intervention (57: statement timeout, shutdown), system errors
/// (58) and lock-not-available (55P03) are transient; data exceptions (22,
/// e.g. 22021 for a NUL byte in text) and integrity violations (23) refuse
/// this data ([`StoreError::Rejected`]); the rest is permanent. An error
/// without a SQLSTATE (I/O, a closed connection) is transient.
pub fn classify(e: tokio_postgres::Error) -> StoreError {
    if e.is_closed() {
        return StoreError::Transient(e.to_string());
    }
    match e.code() {
        None => StoreError::Transient(e.to_string()),
        Some(c) => {
            let class = &c.code()[..2];
            let msg = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string());
            if matches!(class, "08" | "40" | "53" | "57" | "58") || c.code() == "55P03" {
                StoreError::Transient(msg)
            } else if matches!(class, "22" | "23") {
                StoreError::Rejected(format!("{msg} (SQLSTATE {})", c.code()))
            } else {
                StoreError::Permanent(format!("{msg} (SQLSTATE {})", c.code()))
            }
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens connections with the TLS settings and sets the server-side
/// `statement_timeout` on each (a startup parameter would be simpler, but
/// poolers and the TimescaleDB test server ignore or refuse `options`).
struct Connector {
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    statement_ms: u128,
}

impl deadpool_postgres::Connect for Connector {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> BoxFuture<'_, Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>> {
        let (config, tls, ms) = (config.clone(), self.tls.clone(), self.statement_ms);
        Box::pin(async move {
            let (client, connection) = config.connect(tls).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(message = "PostgreSQL connection closed.", error = %e);
                }
            });
            client.batch_execute(&format!("SET statement_timeout = {ms}")).await?;
            Ok((client, task))
        })
    }
}

/// A pool of PostgreSQL connections, opened as they are needed, shared by
/// the stores of a process (see [`super::db::Db`]). Waiting for a free
/// connection is bounded by the statement timeout, opening one by the connect
/// timeout, and every call by the statement timeout: a call that times out
/// discards its connection (its state is unknown) and fails with
/// [`StoreError::Transient`].
pub struct PgPool {
    pool: Pool,
    url: String,
    sslmode: &'static str,
    timeouts: DbTimeouts,
}

impl PgPool {
    /// A pool of up to `size` connections (at least one); none is opened yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] for bad settings.
    pub fn new(url: &str, timeouts: DbTimeouts, size: usize) -> Result<PgPool, StoreError> {
        warn_if_unverified(url);
        let (config, tls) = connection_config(url, timeouts)?;
        let connector = tls.connector().map_err(|e| StoreError::Invalid(format!("database TLS settings: {e}")))?;
        let manager = Manager::from_connect(
            config,
            Connector { tls: connector, statement_ms: timeouts.statement.as_millis() },
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeouts.statement))
            .create_timeout(Some(timeouts.connect))
            .recycle_timeout(Some(timeouts.connect))
            .build()
            .map_err(|e| StoreError::Invalid(format!("database pool: {e}")))?;
        Ok(PgPool { pool, url: url.to_owned(), sslmode: tls.mode.as_str(), timeouts })
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> DbTimeouts {
        self.timeouts
    }

    fn timed_out(&self, what: &str, after: std::time::Duration) -> StoreError {
        StoreError::Transient(format!(
            "{what} {} timed out after {} ms",
            crate::config::redact_url(&self.url),
            after.as_millis()
        ))
    }

    /// A connection from the pool (opened if none is idle).
    async fn get(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(TimeoutType::Wait) => {
                self.timed_out("waiting for a connection to", self.timeouts.statement)
            }
            PoolError::Timeout(_) => self.timed_out("connecting to", self.timeouts.connect),
            PoolError::Backend(e) => StoreError::Transient(format!(
                "connecting to {} (sslmode={}): {}",
                crate::config::redact_url(&self.url),
                self.sslmode,
                error_chain(&e)
            )),
            e => StoreError::Permanent(format!("database pool: {e}")),
        })
    }

    /// Checks that a connection can be had (fails fast when the server is unreachable).
    ///
    /// # Errors
    ///
    /// [`StoreError::Transient`] when the server cannot be reached or does not answer in time.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.get().await.map(drop)
    }

    pub(crate) async fn call<T, E: From<StoreError>>(
        &self,
        tx: bool,
        bound: Option<std::time::Duration>,
        f: impl AsyncFnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let bound = bound.unwrap_or(self.timeouts.statement);
        let mut conn = Conn::Postgres(PgConn { obj: Some(self.get().await?), in_tx: false });
        let work = async {
            if tx {
                conn.batch("BEGIN").await?;
            }
            let r = f(&mut conn).await;
            if tx && let Conn::Postgres(c) = &mut conn {
                // After a failure the rollback's own error does not matter
                // (the connection is discarded if it fails).
                let end = c.finish(r.is_ok()).await;
                if r.is_ok() {
                    end?;
                }
            }
            r
        };
        let done = tokio::time::timeout(bound, work).await;
        match done {
            Ok(r) => r,
            Err(_) => {
                if let Conn::Postgres(c) = &mut conn {
                    c.discard();
                }
                metrics::counter!("vitalwatch_db_timeouts_total").increment(1);
                Err(self.timed_out("a call to", bound).into())
            }
        }
    }
}

/// A pooled connection lent to one call. Dropped inside a transaction (a
/// timeout, a panic) it is discarded, not returned to the pool: the server
/// rolls the transaction back when the connection closes.
pub struct PgConn {
    obj: Option<Object>,
    in_tx: bool,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if self.in_tx {
            self.discard();
        }
    }
}

fn params(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl PgConn {
    fn client(&self) -> Result<&Object, StoreError> {
        self.obj.as_ref().ok_or_else(|| StoreError::Transient("the connection was discarded".into()))
    }

    fn discard(&mut self) {
        if let Some(o) = self.obj.take() {
            drop(Object::take(o));
        }
    }

    pub(crate) async fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        self.execute_params(sql, &params(args)).await
    }

    pub(crate) async fn execute_params(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let c = self.client()?;
        let st = c.prepare_cached(sql).await.map_err(classify)?;
        c.execute(&st, params).await.map_err(classify)
    }

    pub(crate) async fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        let c = self.client()?;
        let st = c.prepare_cached(sql).await.map_err(classify)?;
        c.query(&st, &params(args)).await.map_err(classify)?.iter().map(pg_row).collect()
    }

    pub(crate) async fn query_all(
        &mut self,
        queries: &[(&super::db::Sql, &[Value])],
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let c = self.client()?;
        let all = futures::future::try_join_all(queries.iter().map(|(sql, args)| async move {
            let st = c.prepare_cached(sql.postgres).await?;
            c.query(&st, &params(args)).await
        }))
        .await
        .map_err(classify)?;
        all.iter().map(|rows| rows.iter().map(pg_row).collect()).collect()
    }

    pub(crate) async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        let r = self.client()?.batch_execute(sql).await.map_err(classify);
        match sql {
            "BEGIN" if r.is_ok() => self.in_tx = true,
            "COMMIT" | "ROLLBACK" if r.is_ok() => self.in_tx = false,
            _ => {}
        }
        r
    }

    pub(crate) async fn finish(&mut self, commit: bool) -> Result<(), StoreError> {
        let r = self.client()?.batch_execute(if commit { "COMMIT" } else { "ROLLBACK" }).await.map_err(classify);
        match r {
            Ok(()) => self.in_tx = false,
            // The transaction's state is unknown: the connection goes.
            Err(_) => self.discard(),
        }
        r
    }
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Bool(b) => b.to_sql(ty, out),
            Value::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Value::Float(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_sql(ty, out),
            },
            Value::Text(s) => match *ty {
                // jsonb's binary form: a version byte, then the text.
                Type::JSONB => {
                    out.put_u8(1);
                    out.put_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                Type::JSON => {
                    out.put_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                _ => s.as_str().to_sql(ty, out),
            },
            Value::Bytes(b) => b.to_sql(ty, out),
            Value::Time(t) => t.to_sql(ty, out),
            Value::Array(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A `json`/`jsonb` column as text.
struct JsonText(String);

impl<'a> FromSql<'a> for JsonText {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let raw = if *ty == Type::JSONB { raw.strip_prefix(&[1u8]).ok_or("unknown jsonb version")? } else { raw };
        Ok(JsonText(std::str::from_utf8(raw)?.to_owned()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}

/// A PostgreSQL row as [`Row`] values.
fn pg_row(r: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut out = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v: Result<Option<Value>, tokio_postgres::Error> = match *col.type_() {
            Type::BOOL => r.try_get::<_, Option<bool>>(i).map(|v| v.map(Value::Bool)),
            Type::INT2 => r.try_get::<_, Option<i16>>(i).map(|v| v.map(|v| Value::Int(v.into()))),
            Type::INT4 => r.try_get::<_, Option<i32>>(i).map(|v| v.map(|v| Value::Int(v.into()))),
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
            Type::FLOAT4 => r.try_get::<_, Option<f32>>(i).map(|v| v.map(|v| Value::Float(v.into()))),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i).map(|v| v.map(Value::Float)),
            Type::TIMESTAMPTZ => r.try_get::<_, Option<DateTime<Utc>>>(i).map(|v| v.map(Value::Time)),
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i).map(|v| v.map(Value::Bytes)),
            Type::JSON | Type::JSONB => r.try_get::<_, Option<JsonText>>(i).map(|v| v.map(|j| Value::Text(j.0))),
            _ => r.try_get::<_, Option<String>>(i).map(|v| v.map(Value::Text)),
        };
        let v = v.map_err(|e| StoreError::Permanent(format!("column {}: {e}", col.name())))?;
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}
