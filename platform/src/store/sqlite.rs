//! The SQLite side of [`super::db`] for embedded mode (`vitalwatch run`): one
//! connection in WAL mode behind an async mutex; every statement runs on the
//! blocking pool, and a transaction keeps the connection until it ends.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::StoreError;
use super::db::{Row, Value, sqlite_placeholders};

/// The SQLite store (the one store implementation, on the embedded database).
pub type SqliteStore = super::registry::SqlStore;

/// Classifies a SQLite error: busy and locked are transient; a constraint
/// (a trigger's `RAISE(ABORT)` included), a too-large value or a type
/// mismatch refuses this data ([`StoreError::Rejected`]).
pub fn err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            StoreError::Transient(e.to_string())
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::ConstraintViolation
                    | rusqlite::ErrorCode::TooBig
                    | rusqlite::ErrorCode::TypeMismatch
            ) =>
        {
            StoreError::Rejected(e.to_string())
        }
        _ => StoreError::Permanent(e.to_string()),
    }
}

/// Opens a connection to the embedded database file (creating its folder),
/// in WAL mode with a busy timeout; `:memory:` for tests.
pub fn open_connection(path: &str) -> Result<Connection, StoreError> {
    if path != ":memory:"
        && let Some(dir) = Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        crate::private_fs::create_dir(dir)
            .map_err(|e| StoreError::Permanent(format!("creating {}: {e}", dir.display())))?;
    }
    if path != ":memory:" && !path.starts_with("file:") {
        private_db_files(Path::new(path))?;
    }
    let conn = Connection::open(path).map_err(err)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
        .map_err(err)?;
    clock_functions(&conn)?;
    Ok(conn)
}

/// `now()` and `clock_timestamp()` as in PostgreSQL, in unix microseconds
/// (the unit of every SQLite time column), so statements that take the time
/// from the database are the same in both engines.
fn clock_functions(conn: &Connection) -> Result<(), StoreError> {
    use rusqlite::functions::FunctionFlags;
    for name in ["now", "clock_timestamp"] {
        conn.create_scalar_function(name, 0, FunctionFlags::SQLITE_UTF8, |_| Ok(Utc::now().timestamp_micros()))
            .map_err(err)?;
    }
    Ok(())
}

/// Patient data: the database file is created 0600 before SQLite opens it (its
/// `-wal` and `-shm` files take the database file's mode), and existing ones
/// with wider permissions are restricted.
///
/// An existing database file is never opened here, only `chmod`ed by path:
/// closing any descriptor of a file drops every POSIX lock this process holds
/// on it, so an open-and-close while another connection of this process is
/// live would silently release SQLite's locks (another process could then
/// checkpoint and delete the WAL under it, and committed rows would be lost).
fn private_db_files(db: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let fail = |p: &Path, e: std::io::Error| StoreError::Permanent(format!("securing {}: {e}", p.display()));
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(db) {
        // A new, empty file: no connection can hold locks on it yet.
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(db, e)),
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let p = std::path::PathBuf::from(p);
        match crate::private_fs::mode(&p) {
            Ok(m) if m & 0o077 != 0 => {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m & 0o700)).map_err(|e| fail(&p, e))?
            }
            _ => {}
        }
    }
    Ok(())
}

/// The embedded database: one connection shared by async code. Cheap to clone.
#[derive(Clone)]
pub struct SqliteDb(Arc<Mutex<Connection>>);

impl SqliteDb {
    /// Opens (creating if needed) the database file; `:memory:` for tests.
    ///
    /// # Errors
    ///
    /// [`StoreError::Permanent`] when the file cannot be created or opened.
    pub fn open(path: &str) -> Result<SqliteDb, StoreError> {
        Ok(SqliteDb(Arc::new(Mutex::new(open_connection(path)?))))
    }

    /// Wraps an open connection (gives it `now()` and `clock_timestamp()`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Permanent`] if the functions cannot be registered.
    pub fn from_connection(conn: Connection) -> Result<SqliteDb, StoreError> {
        clock_functions(&conn)?;
        Ok(SqliteDb(Arc::new(Mutex::new(conn))))
    }

    /// The connection for one call. A transaction left open by a call that
    /// was cancelled is rolled back first.
    pub(crate) async fn acquire(&self) -> Result<SqliteConn, StoreError> {
        let g = self.0.clone().lock_owned().await;
        if !g.is_autocommit() {
            g.execute_batch("ROLLBACK").map_err(err)?;
        }
        Ok(SqliteConn { guard: Some(g) })
    }
}

/// The SQLite connection lent to one call.
pub struct SqliteConn {
    guard: Option<OwnedMutexGuard<Connection>>,
}

impl Drop for SqliteConn {
    fn drop(&mut self) {
        if let Some(g) = &self.guard
            && !g.is_autocommit()
        {
            let _ = g.execute_batch("ROLLBACK");
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value as V;
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(V::Null),
            Value::Bool(b) => ToSqlOutput::Owned(V::Integer(i64::from(*b))),
            Value::Int(i) => ToSqlOutput::Owned(V::Integer(*i)),
            Value::Float(f) => ToSqlOutput::Owned(V::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Time(t) => ToSqlOutput::Owned(V::Integer(t.timestamp_micros())),
            Value::Array(v) => ToSqlOutput::Owned(V::Text(json_array(v))),
        })
    }
}

/// A list as the JSON array `json_each` reads.
fn json_array(v: &[Value]) -> String {
    let items: Vec<serde_json::Value> = v
        .iter()
        .map(|x| match x {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => (*f).into(),
            Value::Text(s) => s.clone().into(),
            Value::Time(t) => t.timestamp_micros().into(),
            Value::Bytes(_) | Value::Array(_) => serde_json::Value::Null,
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

fn query_rows(c: &Connection, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
    let mut st = c.prepare_cached(&sqlite_placeholders(sql)).map_err(err)?;
    let n = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(args.iter())).map_err(err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(err)? {
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            v.push(match r.get_ref(i).map_err(err)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Int(i),
                ValueRef::Real(f) => Value::Float(f),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            });
        }
        out.push(Row(v));
    }
    Ok(out)
}

impl SqliteConn {
    /// Runs `f` on the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let mut g = self.guard.take().ok_or_else(|| StoreError::Transient("the database task failed".into()))?;
        let (g, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut g);
            (g, r)
        })
        .await
        .map_err(|e| StoreError::Transient(format!("database task failed: {e}")))?;
        self.guard = Some(g);
        r
    }

    pub(crate) async fn execute(&mut self, sql: &'static str, args: Vec<Value>) -> Result<u64, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare_cached(&sqlite_placeholders(sql)).map_err(err)?;
            st.execute(rusqlite::params_from_iter(args.iter())).map(|n| n as u64).map_err(err)
        })
        .await
    }

    pub(crate) async fn execute_many(&mut self, sql: &'static str, rows: Vec<Vec<Value>>) -> Result<u64, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare_cached(&sqlite_placeholders(sql)).map_err(err)?;
            let mut n = 0;
            for args in &rows {
                n += st.execute(rusqlite::params_from_iter(args.iter())).map_err(err)? as u64;
            }
            Ok(n)
        })
        .await
    }

    pub(crate) async fn query(&mut self, sql: &'static str, args: Vec<Value>) -> Result<Vec<Row>, StoreError> {
        self.with(move |c| query_rows(c, sql, &args)).await
    }

    pub(crate) async fn batch(&mut self, sql: String) -> Result<(), StoreError> {
        self.with(move |c| c.execute_batch(&sql).map_err(err)).await
    }
}
