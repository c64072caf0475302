//! Serves [`examples::with_axum::switchboard_in_axum`]: an axum server with the room chat
//! mounted as a tower service. `cargo run -p examples --example switchboard_in_axum [-- --bind
//! ADDR]`.

use examples::with_axum::{self, RequestIds};

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    let (router, websockets) = with_axum::switchboard_in_axum(RequestIds::default());
    with_axum::run(router, websockets, with_axum::PATHS).await
}
