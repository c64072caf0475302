//! Serves [`examples::welcome`]: `cargo run -p examples --example welcome [-- --bind ADDR]`.

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    examples::run(examples::welcome::application(), examples::welcome::PATHS).await
}
