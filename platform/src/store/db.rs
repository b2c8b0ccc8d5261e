//! The one database abstraction every store is written against: a [`Db`]
//! (a PostgreSQL pool or the embedded SQLite connection) hands out a [`Conn`],
//! inside a transaction or not, that runs [`Sql`] statements with typed
//! [`Value`] arguments and returns [`Row`]s of [`Value`]s.
//!
//! Statements are written once with `$1`-style placeholders (SQLite reads them
//! as `?1`); where the two engines need different SQL, a statement has a
//! PostgreSQL and a SQLite text (see [`sql!`](crate::sql)), kept in `.sql` files
//! next to the store. Values are converted at the edge: times are
//! `timestamptz` in PostgreSQL and unix microseconds in SQLite, JSON documents
//! are `jsonb` in PostgreSQL and text in SQLite, lists are arrays in PostgreSQL
//! (`= ANY($1)`) and JSON arrays in SQLite (`IN (SELECT value FROM json_each($1))`).
//! SQLite connections know `now()` and `clock_timestamp()` (unix microseconds),
//! so statements that take the time from the database are shared too.
//!
//! Errors are classified once per engine ([`super::postgres::classify`],
//! [`super::sqlite::err`]). Every PostgreSQL call is bounded on the client side
//! by the statement timeout (a hung server cannot cancel anything itself): a
//! call that times out discards its connection and fails with
//! [`StoreError::Transient`] ("timed out").

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::StoreError;
use super::postgres::PgPool;

/// The SQL engine behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL / TimescaleDB.
    Postgres,
    /// SQLite (embedded mode).
    Sqlite,
}

/// One statement, as each engine spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sql {
    /// PostgreSQL text.
    pub postgres: &'static str,
    /// SQLite text (`$N` placeholders are read as `?N`).
    pub sqlite: &'static str,
}

impl Sql {
    /// A statement both engines run as written.
    pub const fn shared(text: &'static str) -> Sql {
        Sql { postgres: text, sqlite: text }
    }

    /// A statement each engine spells its own way.
    pub const fn split(postgres: &'static str, sqlite: &'static str) -> Sql {
        Sql { postgres, sqlite }
    }

    /// The text for `dialect`.
    pub fn text(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Postgres => self.postgres,
            Dialect::Sqlite => self.sqlite,
        }
    }
}

/// A statement from the `sql/` folder next to the calling file:
/// `sql!("name")` is `sql/name.sql` for both engines; `sql!("name", split)` is
/// `sql/postgres/name.sql` and `sql/sqlite/name.sql`.
#[macro_export]
macro_rules! sql {
    ($name:literal) => {
        $crate::store::db::Sql::shared(include_str!(concat!("sql/", $name, ".sql")))
    };
    ($name:literal, split) => {
        $crate::store::db::Sql::split(
            include_str!(concat!("sql/postgres/", $name, ".sql")),
            include_str!(concat!("sql/sqlite/", $name, ".sql")),
        )
    };
}

/// A statement argument or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// A boolean (SQLite: 0 or 1).
    Bool(bool),
    /// An integer (PostgreSQL: int2, int4 or int8 as the parameter needs).
    Int(i64),
    /// A float.
    Float(f64),
    /// Text; also a JSON document (PostgreSQL `json`/`jsonb`).
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A time (PostgreSQL `timestamptz`, SQLite unix microseconds).
    Time(DateTime<Utc>),
    /// A list (PostgreSQL array, SQLite JSON array).
    Array(Vec<Value>),
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Self {
        Value::Time(v)
    }
}
impl From<&DateTime<Utc>> for Value {
    fn from(v: &DateTime<Utc>) -> Self {
        Value::Time(*v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
impl From<&[String]> for Value {
    fn from(v: &[String]) -> Self {
        Value::Array(v.iter().map(Value::from).collect())
    }
}
impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::Array(v.into_iter().map(Value::Text).collect())
    }
}
impl From<&Vec<String>> for Value {
    fn from(v: &Vec<String>) -> Self {
        Value::from(v.as_slice())
    }
}

/// Statement arguments: `args![a, b, c]` is `[Value::from(a), ...]`.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        [$($crate::store::db::Value::from($v)),*]
    };
}

/// A type a column converts to (see [`Row::get`]).
pub trait FromValue: Sized {
    /// Converts `v`; `None` if it is of another kind.
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
}
impl FromValue for i32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| i32::try_from(i).ok())
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| u32::try_from(i).unwrap_or(if i < 0 { 0 } else { u32::MAX }))
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Bytes(b) => Some(b.clone()),
            Value::Text(s) => Some(s.clone().into_bytes()),
            _ => None,
        }
    }
}
impl FromValue for DateTime<Utc> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Time(t) => Some(*t),
            Value::Int(us) => Some(DateTime::from_timestamp_micros(*us).unwrap_or_default()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as a `T`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Permanent`] for a missing column or a value of another kind.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let v = self.0.get(i).ok_or_else(|| StoreError::Permanent(format!("no column {i} in the result")))?;
        T::from_value(v).ok_or_else(|| {
            StoreError::Permanent(format!("column {i} holds {v:?}, not a {}", std::any::type_name::<T>()))
        })
    }

    /// The raw value of column `i` (`Null` if absent).
    pub fn value(&self, i: usize) -> &Value {
        self.0.get(i).unwrap_or(&Value::Null)
    }
}

/// A database: a PostgreSQL pool or the embedded SQLite connection. Cheap to clone.
#[derive(Clone)]
pub enum Db {
    /// PostgreSQL pool.
    Postgres(Arc<PgPool>),
    /// The embedded SQLite connection.
    Sqlite(super::sqlite::SqliteDb),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Db").field(&self.dialect()).finish()
    }
}

impl Db {
    /// Opens the database of a `postgres://` or `sqlite://` URL. A PostgreSQL
    /// pool holds up to `pool_size` connections and checks one now (fails fast
    /// when the server is unreachable).
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] for another scheme or bad settings,
    /// [`StoreError::Transient`] when the server cannot be reached.
    pub async fn open(url: &str, timeouts: super::DbTimeouts, pool_size: usize) -> Result<Db, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            Ok(Db::Sqlite(super::sqlite::SqliteDb::open(path)?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPool::new(url, timeouts, pool_size)?;
            pool.check().await?;
            Ok(Db::Postgres(Arc::new(pool)))
        } else {
            Err(StoreError::Invalid(format!("unsupported database URL scheme in {}", crate::config::redact_url(url))))
        }
    }

    /// The engine.
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs `f` on a connection, outside a transaction (each statement
    /// commits on its own). PostgreSQL: bounded by the statement timeout.
    ///
    /// # Errors
    ///
    /// Acquiring a connection, a timeout, and what `f` returns.
    pub async fn run<T, E: From<StoreError>>(&self, f: impl AsyncFnOnce(&mut Conn) -> Result<T, E>) -> Result<T, E> {
        self.call(false, None, f).await
    }

    /// Runs `f` in one transaction: committed if `f` returns `Ok`, rolled
    /// back otherwise (SQLite: `BEGIN IMMEDIATE`, so the writer lock is taken
    /// first and no transaction fails on upgrading it). PostgreSQL: bounded by
    /// the statement timeout.
    ///
    /// # Errors
    ///
    /// As [`Db::run`], and the commit's.
    pub async fn transaction<T, E: From<StoreError>>(
        &self,
        f: impl AsyncFnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        self.call(true, None, f).await
    }

    /// [`Db::run`] with another client-side bound (migrations).
    ///
    /// # Errors
    ///
    /// As [`Db::run`].
    pub async fn run_bounded<T, E: From<StoreError>>(
        &self,
        bound: std::time::Duration,
        f: impl AsyncFnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        self.call(false, Some(bound), f).await
    }

    async fn call<T, E: From<StoreError>>(
        &self,
        tx: bool,
        bound: Option<std::time::Duration>,
        f: impl AsyncFnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Db::Postgres(pool) => pool.call(tx, bound, f).await,
            Db::Sqlite(db) => {
                let mut conn = Conn::Sqlite(db.acquire().await?);
                if tx {
                    conn.batch("BEGIN IMMEDIATE").await?;
                }
                let r = f(&mut conn).await;
                if tx {
                    let end = conn.finish(r.is_ok()).await;
                    if r.is_ok() {
                        end?;
                    }
                }
                r
            }
        }
    }
}

/// A connection handed to the closure of [`Db::run`] / [`Db::transaction`].
// One per call, on its stack: the size of a pooled PostgreSQL client does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    /// A pooled PostgreSQL client.
    Postgres(super::postgres::PgConn),
    /// The SQLite connection (locked for this call).
    Sqlite(super::sqlite::SqliteConn),
}

impl Conn {
    /// The engine.
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs a statement; returns the rows it changed.
    ///
    /// # Errors
    ///
    /// The engine's error, classified.
    pub async fn execute(&mut self, sql: &Sql, args: &[Value]) -> Result<u64, StoreError> {
        match self {
            Conn::Postgres(c) => c.execute(sql.postgres, args).await,
            Conn::Sqlite(c) => c.execute(sql.sqlite, args.to_vec()).await,
        }
    }

    /// Runs a PostgreSQL statement with typed parameters (arrays of borrowed
    /// text, no [`Value`] per cell): the hot bulk inserts only.
    ///
    /// # Errors
    ///
    /// The engine's error, classified; [`StoreError::Permanent`] on SQLite.
    pub(crate) async fn execute_postgres(
        &mut self,
        sql: &Sql,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        match self {
            Conn::Postgres(c) => c.execute_params(sql.postgres, params).await,
            Conn::Sqlite(_) => Err(StoreError::Permanent("a PostgreSQL statement was run on SQLite".into())),
        }
    }

    /// Runs a statement once per argument list (SQLite: in one call to the
    /// blocking pool); returns the rows changed in all.
    ///
    /// # Errors
    ///
    /// The engine's error, classified.
    pub async fn execute_many(&mut self, sql: &Sql, rows: Vec<Vec<Value>>) -> Result<u64, StoreError> {
        match self {
            Conn::Postgres(c) => {
                let mut n = 0;
                for args in &rows {
                    n += c.execute(sql.postgres, args).await?;
                }
                Ok(n)
            }
            Conn::Sqlite(c) => c.execute_many(sql.sqlite, rows).await,
        }
    }

    /// Runs a query; returns its rows.
    ///
    /// # Errors
    ///
    /// The engine's error, classified.
    pub async fn query(&mut self, sql: &Sql, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Postgres(c) => c.query(sql.postgres, args).await,
            Conn::Sqlite(c) => c.query(sql.sqlite, args.to_vec()).await,
        }
    }

    /// Runs several queries (PostgreSQL: pipelined, one round trip); returns
    /// their rows in order.
    ///
    /// # Errors
    ///
    /// The engine's error, classified.
    pub async fn query_all(&mut self, queries: &[(&Sql, &[Value])]) -> Result<Vec<Vec<Row>>, StoreError> {
        match self {
            Conn::Postgres(c) => c.query_all(queries).await,
            Conn::Sqlite(c) => {
                let mut out = Vec::with_capacity(queries.len());
                for (sql, args) in queries {
                    out.push(c.query(sql.sqlite, args.to_vec()).await?);
                }
                Ok(out)
            }
        }
    }

    /// The first row of a query, if any.
    ///
    /// # Errors
    ///
    /// The engine's error, classified.
    pub async fn query_opt(&mut self, sql: &Sql, args: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args).await?.into_iter().next())
    }

    /// The first row of a query.
    ///
    /// # Errors
    ///
    /// The engine's error, classified; [`StoreError::Permanent`] if there is no row.
    pub async fn query_one(&mut self, sql: &Sql, args: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, args).await?.ok_or_else(|| StoreError::Permanent("the query returned no row".into()))
    }

    /// Runs statements without arguments, `;`-separated (migrations, settings).
    ///
    /// # Errors
    ///
    /// The engine's error, classified.
    pub async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Postgres(c) => c.batch(sql).await,
            Conn::Sqlite(c) => c.batch(sql.to_owned()).await,
        }
    }

    /// Ends the transaction: COMMIT if `commit`, else ROLLBACK.
    async fn finish(&mut self, commit: bool) -> Result<(), StoreError> {
        match self {
            Conn::Postgres(c) => c.finish(commit).await,
            Conn::Sqlite(c) => c.batch(if commit { "COMMIT".into() } else { "ROLLBACK".into() }).await,
        }
    }
}

/// `$N` placeholders as SQLite's `?N` (outside quoted text and `--` comments).
pub(crate) fn sqlite_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('$') {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let (mut quoted, mut comment) = (false, false);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if comment {
            comment = c != '\n';
        } else if c == '\'' {
            quoted = !quoted;
        } else if !quoted && c == '-' && chars.peek() == Some(&'-') {
            comment = true;
        }
        if c == '$' && !quoted && !comment && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_sqlite_numbered_parameters_outside_quotes() {
        assert_eq!(sqlite_placeholders("SELECT $1, '$2', $10"), "SELECT ?1, '$2', ?10");
        assert_eq!(sqlite_placeholders("json_each(doc, '$.deputies')"), "json_each(doc, '$.deputies')");
        // An apostrophe in a comment opens no quote.
        assert_eq!(sqlite_placeholders("-- the device's $2\nSELECT $2"), "-- the device's $2\nSELECT ?2");
    }

    #[test]
    fn rows_convert_between_engine_representations() {
        let t = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let r = Row(vec![Value::Int(t.timestamp_micros()), Value::Time(t), Value::Int(1), Value::Null]);
        assert_eq!(r.get::<DateTime<Utc>>(0).unwrap(), t);
        assert_eq!(r.get::<DateTime<Utc>>(1).unwrap(), t);
        assert!(r.get::<bool>(2).unwrap());
        assert_eq!(r.get::<Option<String>>(3).unwrap(), None);
        assert!(r.get::<String>(2).is_err());
        assert!(r.get::<String>(9).is_err());
    }
}
