//! What the admin crate's integration tests share: the databases of a case,
//! migrated (SQLite in a temporary file always; PostgreSQL, a fresh database
//! on `VW_TEST_PG` marked for `scripts/test.sh` to drop later, when the
//! server answers: under `CI=true` a missing PostgreSQL fails the test,
//! elsewhere only SQLite runs), and SQL run outside the stores for set-up.
#![allow(dead_code)] // each test crate uses its own part

/// One database of a case.
pub struct Database {
    /// `sqlite` or `postgres`.
    pub name: &'static str,
    /// Its URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// The databases of a case, migrated; `prefix` names the PostgreSQL
/// database (`{prefix}_{case}_...`).
pub async fn databases(prefix: &str, case: &str) -> Vec<Database> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/vitalwatch.db", dir.path().display());
    let mut out = vec![Database { name: "sqlite", url, _dir: Some(dir) }];
    let server = vitalwatch_testkit::pg_url();
    if vitalwatch_testkit::require("PostgreSQL", &server) {
        let name = vitalwatch_testkit::unique(&format!("{prefix}_{case}"));
        let url = vitalwatch_testkit::fresh_database(&server, &name).await;
        out.push(Database { name: "postgres", url, _dir: None });
    }
    for db in &out {
        vitalwatch_platform::store::open(&db.url, 100).await.expect("open").migrate().await.expect("migrate");
    }
    out
}

impl Database {
    /// Runs SQL on the database, outside the stores (test set-up).
    pub async fn exec(&self, sql: &str) {
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            rusqlite::Connection::open(path).and_then(|c| c.execute_batch(sql)).expect("sqlite set-up");
        } else {
            let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            client.batch_execute(sql).await.expect("postgres set-up");
        }
    }

    /// From now on, every insert into `table` fails (a trigger).
    pub async fn refuse_inserts(&self, table: &str) {
        if self.name == "sqlite" {
            self.exec(&format!(
                "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
                 BEGIN SELECT RAISE(ABORT, '{table} refused (test)'); END;"
            ))
            .await;
        } else {
            self.exec(&format!(
                "CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION '{table} refused (test)'; END $$; \
                 CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION refuse_{table}();"
            ))
            .await;
        }
    }
}
