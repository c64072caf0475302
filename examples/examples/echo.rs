//! Serves [`examples::echo`]: `cargo run -p examples --example echo [-- --bind ADDR]`.

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    examples::run(examples::echo::application(), examples::echo::PATHS).await
}
