//! Serves [`examples::room_chat`]: `cargo run -p examples --example room_chat [-- --bind ADDR]`.

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    examples::run(
        examples::room_chat::application(),
        examples::room_chat::PATHS,
    )
    .await
}
