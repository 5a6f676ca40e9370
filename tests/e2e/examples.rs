//! The examples in `examples/` run against the real server.

use crate::harness::{ADMIN_PASSWORD, Site};

#[tokio::test]
async fn rust_client_example_writes_and_reads_greetings() {
    let site = Site::standard();
    let server = site.start();
    let url = server.url("admin", ADMIN_PASSWORD, "default");
    let first = rust_client::tour(&url).await.unwrap();
    let texts: Vec<&str> = first.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, vec!["hello", "hallo", "bonjour"]);
    assert_eq!(rust_client::tour(&url).await.unwrap().len(), 6);
}
