//! Routers: dispatch a connection by protocol ([`ProtocolTypeRouter`]) or by path ([`URLRouter`]).

mod converter;
mod protocol;
mod url;

pub use converter::Converter;
pub use protocol::ProtocolTypeRouter;
pub use url::URLRouter;
