//! Building HTTP responses for handlers: `response::text(..)`, `html`, `json`, `redirect`,
//! `status`.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Response, StatusCode};

use crate::application::HttpResponse;

fn with_type(body: impl Into<Bytes>, content_type: &'static str) -> HttpResponse {
    let mut response = Response::new(body.into());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// 200 with a `text/plain` body.
pub fn text(body: impl Into<Bytes>) -> HttpResponse {
    with_type(body, "text/plain; charset=utf-8")
}

/// 200 with a `text/html` body.
pub fn html(body: impl Into<Bytes>) -> HttpResponse {
    with_type(body, "text/html; charset=utf-8")
}

/// 200 with a JSON body.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => with_type(body, "application/json"),
        Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// 303 See Other to `location` (the answer to a form post). A location that is not a
/// valid header value becomes `/`.
pub fn redirect(location: &str) -> HttpResponse {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let location =
        HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    response.headers_mut().insert(LOCATION, location);
    response
}

/// A status with its reason phrase as a plain-text body.
pub fn status(status: StatusCode) -> HttpResponse {
    crate::application::plain_response(status)
}
