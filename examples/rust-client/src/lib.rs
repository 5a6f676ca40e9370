//! A Cairn client in a few lines of tokio-postgres: connect, create a table, write rows with
//! parameters inside a transaction, read them back. Run against a server with:
//!
//! ```sh
//! cargo run -p rust-client -- "host=127.0.0.1 port=5480 user=admin password=… dbname=default"
//! ```

use tokio_postgres::{Client, NoTls};

/// Connects and drives the connection on a background task.
pub async fn connect(conninfo: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection error: {e}");
        }
    });
    Ok(client)
}

/// Writes three greetings and returns every greeting in the table, oldest first.
pub async fn tour(conninfo: &str) -> Result<Vec<(i64, String)>, tokio_postgres::Error> {
    let mut client = connect(conninfo).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS greetings (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
        )
        .await?;
    let tx = client.transaction().await?;
    let insert = tx
        .prepare("INSERT INTO greetings (text) VALUES ($1)")
        .await?;
    for text in ["hello", "hallo", "bonjour"] {
        tx.execute(&insert, &[&text]).await?;
    }
    tx.commit().await?;
    let rows = client
        .query("SELECT id, text FROM greetings ORDER BY id", &[])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
