//! A fresh PostgreSQL database per test.

/// The comment that marks a database as a test's: `scripts/test.sh` drops
/// the databases of earlier runs that carry it.
pub const TEST_DATABASE_MARK: &str = "vitalwatch test database";

/// Creates the database `name` on the server of `server_url`, marks it as a
/// test database, and returns its URL. Panics if the server refuses.
pub async fn fresh_database(server_url: &str, name: &str) -> String {
    let (client, conn) =
        tokio_postgres::connect(server_url, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    client
        .batch_execute(&format!("COMMENT ON DATABASE {name} IS '{TEST_DATABASE_MARK}'"))
        .await
        .expect("comment on test database");
    let base = server_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(server_url);
    format!("{base}/{name}")
}
