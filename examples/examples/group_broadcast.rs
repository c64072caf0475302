//! Serves [`examples::group_broadcast`]: `cargo run -p examples --example group_broadcast [-- --bind ADDR]`.

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    examples::run(
        examples::group_broadcast::application(),
        examples::group_broadcast::PATHS,
    )
    .await
}
