//! Usage: rust-client "host=127.0.0.1 port=5480 user=admin password=… dbname=default"

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conninfo = std::env::args().nth(1).ok_or(
        "usage: rust-client \"host=127.0.0.1 port=5480 user=admin password=… dbname=default\"",
    )?;
    for (id, text) in rust_client::tour(&conninfo).await? {
        println!("{id}\t{text}");
    }
    Ok(())
}
