//! Serves [`examples::with_axum::axum_in_switchboard`]: switchboard's server with axum views as
//! its HTTP side. `cargo run -p examples --example axum_in_switchboard [-- --bind ADDR]`.

use examples::with_axum::{self, RequestIds};

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    let app = with_axum::axum_in_switchboard(RequestIds::default());
    examples::run(app, with_axum::PATHS).await
}
