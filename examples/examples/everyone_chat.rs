//! Serves [`examples::everyone_chat`]: `cargo run -p examples --example everyone_chat [-- --bind ADDR]`.

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    examples::run(
        examples::everyone_chat::application(),
        examples::everyone_chat::PATHS,
    )
    .await
}
