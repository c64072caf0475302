//! HTTP views: the pages (static files compiled into the binary), and logging in and out.

use std::collections::HashMap;

use switchboard::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST, REFERER};
use switchboard::http::{HeaderValue, Method, Uri};
use switchboard::prelude::*;

use crate::rooms::is_room_name;

const LOBBY: &str = include_str!("pages/lobby.html");
const ROOM: &str = include_str!("pages/room.html");
/// The login box both pages share.
const ACCOUNT_JS: &str = include_str!("pages/account.js");

/// Longest user name, in characters.
pub const MAX_USERNAME_CHARS: usize = 32;

/// The user name in `raw` (trimmed), or why it is not one: 1 to 32 characters after trimming,
/// no control characters (nor the invisible ones that reorder text, so a name cannot disguise
/// what follows it).
pub fn clean_username(raw: &str) -> Result<&str, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("enter a user name");
    }
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err("a user name has at most 32 characters");
    }
    if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err("a user name cannot contain control characters");
    }
    Ok(name)
}

/// Unicode's bidirectional formatting characters (category Cf, not `char::is_control`).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The chat-app's users: a name someone logged in with is that user (no passwords: the chat
/// trusts names, like a chat room at a party), and API tokens stand for users too.
#[derive(Default)]
pub struct ChatBackend {
    /// Token → user name.
    tokens: HashMap<String, String>,
}

impl ChatBackend {
    /// A backend accepting `tokens` (token → user name).
    pub fn new(tokens: HashMap<String, String>) -> ChatBackend {
        ChatBackend { tokens }
    }
}

fn user_named(name: &str) -> User {
    User::authenticated(name, name)
}

impl AuthBackend for ChatBackend {
    async fn get_user(&self, user_id: &str) -> Result<Option<User>> {
        // Sessions only ever hold names that passed `clean_username`; checked again anyway.
        Ok(clean_username(user_id).ok().map(user_named))
    }

    async fn authenticate_token(&self, token: &str) -> Result<Option<User>> {
        Ok(self.tokens.get(token).map(|name| user_named(name)))
    }
}

/// HTTP routes (Django's `urlpatterns`). `origins` are the sites whose pages may post the
/// login and logout forms (the ones allowed to open WebSockets).
pub fn urlpatterns(origins: AllowedOrigins) -> URLRouter {
    let logout_origins = origins.clone();
    URLRouter::new()
        .converter("room", is_room_name)
        .route("/", handler(|_req| async { response::html(LOBBY) }))
        .route(
            "/chat/{room_name:room}/",
            handler(|_req| async { response::html(ROOM) }),
        )
        // The seeds' entry point: the room comes from `?num=`, read by the page's script.
        .route("/index/", handler(|_req| async { response::html(ROOM) }))
        .route("/healthz", handler(|_req| async { response::text("ok") }))
        .route(
            "/account.js",
            handler(|_req| async { javascript(ACCOUNT_JS) }),
        )
        .route("/whoami", handler(whoami))
        .route(
            "/login",
            handler(move |req| login_view(req, origins.clone())),
        )
        .route(
            "/logout",
            handler(move |req| logout_view(req, logout_origins.clone())),
        )
}

fn javascript(source: &'static str) -> HttpResponse {
    let mut response = response::text(source);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    response
}

/// `GET /whoami`: `{"authenticated": true, "user": "ann"}`, or `false` and `null` for a guest.
async fn whoami(req: HttpRequest) -> HttpResponse {
    let user = req.scope.user.username();
    let mut response = response::json(&serde_json::json!({
        "authenticated": user.is_some(),
        "user": user,
    }));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn plain(status: StatusCode, body: String) -> HttpResponse {
    let mut response = response::text(body);
    *response.status_mut() = status;
    response
}

/// Why a form post is refused before it is read: not a POST, or posted from another site.
fn refuse_post(req: &HttpRequest, origins: &AllowedOrigins) -> Option<HttpResponse> {
    if req.scope.method != Method::POST {
        let mut response = response::status(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return Some(response);
    }
    // A form on another site could log a visitor in under a name of its choosing.
    if !origins.allows(&req.scope.headers) {
        return Some(plain(
            StatusCode::FORBIDDEN,
            "forms posted from another site are refused\n".to_owned(),
        ));
    }
    None
}

/// `POST /login` with the form field `username`: logs in and sends the browser back (303),
/// or answers 400 with the reason the name was refused.
async fn login_view(mut req: HttpRequest, origins: AllowedOrigins) -> HttpResponse {
    if let Some(refusal) = refuse_post(&req, &origins) {
        return refusal;
    }
    let form = req.form();
    let name = match clean_username(form.get("username").unwrap_or_default()) {
        Ok(name) => name.to_owned(),
        Err(reason) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("invalid username: {reason}\n"),
            );
        }
    };
    let mut response = response::redirect(&back(&req, form.get("next")));
    match login(&mut req.scope, &mut response, user_named(&name)).await {
        Ok(()) => response,
        Err(err) => {
            tracing::warn!(error = %err, "login failed");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot log in right now (the session store is unavailable); try again\n"
                    .to_owned(),
            )
        }
    }
}

/// `POST /logout`: forgets the session and sends the browser back (303).
async fn logout_view(mut req: HttpRequest, origins: AllowedOrigins) -> HttpResponse {
    if let Some(refusal) = refuse_post(&req, &origins) {
        return refusal;
    }
    let mut response = response::redirect(&back(&req, req.form().get("next")));
    // The cookie removal is on the response even when the store failed: the browser forgets.
    if let Err(err) = logout(&mut req.scope, &mut response).await {
        tracing::warn!(error = %err, "logout could not delete the session from the store");
    }
    response
}

/// Where to send the browser after a form post: the form's `next`, else the page it came
/// from (the `Referer`, when on this host), else `/` — only ever a path on this site.
fn back(req: &HttpRequest, next: Option<&str>) -> String {
    let referer = || {
        let referer: Uri = req.scope.header(REFERER.as_str())?.parse().ok()?;
        let host = req.scope.header(HOST.as_str())?;
        if !referer.authority()?.as_str().eq_ignore_ascii_case(host) {
            return None;
        }
        Some(referer.path_and_query()?.as_str().to_owned())
    };
    next.map(str::to_owned)
        .filter(|path| is_local_path(path))
        .or_else(|| referer().filter(|path| is_local_path(path)))
        .unwrap_or_else(|| "/".to_owned())
}

/// A path on this site: `/…`, but not `//host` or `/\host` (which browsers read as another
/// site), and not the form endpoints themselves.
fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(|c| c.is_control())
        && !["/login", "/logout"].contains(&path.split('?').next().unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(clean_username("  ann  "), Ok("ann"));
        assert_eq!(clean_username("Ünïcødé name"), Ok("Ünïcødé name"));
        assert_eq!(clean_username(&"é".repeat(32)).map(str::len), Ok(64));
        for bad in [
            "",
            "   ",
            "a\u{0}b",
            "a\nb",
            "tab\there",
            "x\u{202E}y",
            &"x".repeat(33),
        ] {
            assert!(clean_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_paths_only() {
        for ok in ["/", "/chat/lobby/", "/index/?num=1"] {
            assert!(is_local_path(ok), "{ok}");
        }
        for bad in [
            "",
            "chat/",
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "/login",
            "/logout?x=1",
            "/a\r\nSet-Cookie: x=1",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}
