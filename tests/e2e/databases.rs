//! CREATE DATABASE, DROP DATABASE, SHOW DATABASES.

use tokio_postgres::error::SqlState;

use crate::harness::Site;

async fn database_names(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query("SHOW DATABASES", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>("name"))
        .collect()
}

#[tokio::test]
async fn databases_are_created_listed_and_dropped_from_any_connection() {
    let site = Site::standard();
    let server = site.start();
    let a = server.admin("default").await;
    a.batch_execute("CREATE DATABASE sales").await.unwrap();
    assert!(site.data_dir().join("databases/sales.sqlite").is_file());
    let err = a.batch_execute("CREATE DATABASE sales").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DUPLICATE_DATABASE), "{err:?}");

    let b = server.admin("default").await;
    assert_eq!(database_names(&b).await, vec!["default", "sales"]);

    // In use by a session: refused; once it disconnects: dropped.
    let user = server.admin("sales").await;
    let err = b.batch_execute("DROP DATABASE sales").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::OBJECT_IN_USE), "{err:?}");
    drop(user);
    // The server sees the disconnect asynchronously: poll the observable state, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match b.batch_execute("DROP DATABASE sales").await {
            Ok(()) => break,
            Err(e)
                if e.code() == Some(&SqlState::OBJECT_IN_USE)
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(database_names(&b).await, vec!["default"]);
    b.batch_execute("DROP DATABASE IF EXISTS sales")
        .await
        .unwrap();
    let err = b.batch_execute("DROP DATABASE sales").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_CATALOG_NAME), "{err:?}");
}

#[tokio::test]
async fn database_names_with_path_tricks_are_refused() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    let long = format!("CREATE DATABASE {}", "x".repeat(64));
    for statement in [
        "CREATE DATABASE \"../escape\"",
        "CREATE DATABASE \"/\"",
        "CREATE DATABASE \"\"",
        "CREATE DATABASE \"a/b\"",
        long.as_str(),
    ] {
        let err = client.batch_execute(statement).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_NAME),
            "{statement}: {err}"
        );
    }
    assert!(!site.dir.path().join("escape.sqlite").exists());
    assert!(!site.data_dir().join("escape.sqlite").exists());
    assert_eq!(database_names(&client).await, vec!["default"]);
}
