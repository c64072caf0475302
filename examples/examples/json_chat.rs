//! Serves [`examples::json_chat`]: `cargo run -p examples --example json_chat [-- --bind ADDR]`.

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    examples::run(
        examples::json_chat::application(),
        examples::json_chat::PATHS,
    )
    .await
}
