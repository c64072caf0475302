//! Authentication: Channels' `AuthMiddleware` and `AuthMiddlewareStack`, token authentication
//! for non-browser clients, and `login` / `logout` for views.

use std::future::Future;
use std::sync::Arc;

use http::header::AUTHORIZATION;

use super::cookies::CookieMiddleware;
use super::session::{self, SessionConfig, SessionMiddleware};
use crate::application::{Application, Connection, HttpResponse};
use crate::error::{Error, Result};
use crate::scope::{Scope, User};

/// The session key holding the logged-in user's id (Django's `_auth_user_id`).
pub const SESSION_USER_KEY: &str = "_auth_user_id";

/// How the application knows its users: implemented by the application, called by
/// [`AuthMiddleware`] once per connection.
///
/// ```
/// use switchboard::middleware::AuthBackend;
/// use switchboard::prelude::*;
///
/// /// Users are whoever logged in; one fixed API token is the "robot" user.
/// struct Backend {
///     robot_token: String,
/// }
///
/// impl AuthBackend for Backend {
///     async fn get_user(&self, user_id: &str) -> Result<Option<User>> {
///         Ok(Some(User::authenticated(user_id, user_id)))
///     }
///
///     async fn authenticate_token(&self, token: &str) -> Result<Option<User>> {
///         Ok((token == self.robot_token).then(|| User::authenticated("robot", "robot")))
///     }
/// }
/// ```
pub trait AuthBackend: Send + Sync + 'static {
    /// The user whose id a session holds (Django's `get_user(user_id)`); `None` when there is
    /// no such user any more, which makes the connection anonymous.
    fn get_user(&self, user_id: &str) -> impl Future<Output = Result<Option<User>>> + Send;

    /// The user a token (from `Authorization: Token …` / `Bearer …` or `?token=`) stands for;
    /// `None` for an unknown token. By default no token is valid.
    fn authenticate_token(&self, token: &str) -> impl Future<Output = Result<Option<User>>> + Send {
        let _ = token;
        async { Ok(None) }
    }
}

impl<B: AuthBackend> AuthBackend for Arc<B> {
    fn get_user(&self, user_id: &str) -> impl Future<Output = Result<Option<User>>> + Send {
        B::get_user(self, user_id)
    }

    fn authenticate_token(&self, token: &str) -> impl Future<Output = Result<Option<User>>> + Send {
        B::authenticate_token(self, token)
    }
}

/// Sets [`Scope::user`] from the session, or from a token (Channels' `AuthMiddleware`).
///
/// In order: a user already set by an outer middleware (or a test) stays; else the session's
/// logged-in user (needs [`SessionMiddleware`] outside, as [`AuthMiddlewareStack`] arranges);
/// else a token, from an `Authorization: Token <t>` or `Authorization: Bearer <t>` header or a
/// `?token=<t>` query parameter (the header wins); else [`User::Anonymous`]. The session comes
/// first so a link carrying someone else's token cannot switch a logged-in browser to another
/// identity. Nothing here refuses a connection: an unknown user, a bad token or a failing
/// backend (logged) all mean anonymous, and the consumer decides what anonymous may do.
#[derive(Debug)]
pub struct AuthMiddleware<A, B> {
    backend: B,
    inner: A,
}

impl<A, B> AuthMiddleware<A, B> {
    /// Wraps `inner`, asking `backend` who users are. Share one backend between several
    /// middleware by passing an `Arc`.
    pub fn new(backend: B, inner: A) -> AuthMiddleware<A, B> {
        AuthMiddleware { backend, inner }
    }
}

impl<A: Application, B: AuthBackend> Application for AuthMiddleware<A, B> {
    async fn call(&self, mut scope: Scope, conn: Connection) {
        if !scope.user.is_authenticated() {
            scope.user = resolve(&self.backend, &scope).await;
        }
        self.inner.call(scope, conn).await
    }
}

async fn resolve(backend: &impl AuthBackend, scope: &Scope) -> User {
    let session_user = scope
        .session
        .as_ref()
        .and_then(|session| session.get::<String>(SESSION_USER_KEY));
    if let Some(id) = session_user {
        match backend.get_user(&id).await {
            Ok(Some(user)) => return user,
            Ok(None) => tracing::debug!("the session's user is unknown to the backend"),
            Err(err) => {
                tracing::warn!(error = %err, "auth backend failed: treating the session as anonymous")
            }
        }
    }
    if let Some(token) = token(scope) {
        match backend.authenticate_token(&token).await {
            Ok(Some(user)) => return user,
            Ok(None) => tracing::debug!(path = %scope.path, "unknown token: anonymous"),
            Err(err) => tracing::warn!(error = %err, "auth backend failed on a token: anonymous"),
        }
    }
    User::Anonymous
}

/// The token a request carries: `Authorization: Token <t>` or `Bearer <t>` (scheme
/// case-insensitive), else `?token=<t>`. Empty tokens count as none.
fn token(scope: &Scope) -> Option<String> {
    let from_header = scope
        .headers
        .get_all(AUTHORIZATION)
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            let token = token.trim();
            let known =
                scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer");
            (known && !token.is_empty()).then(|| token.to_owned())
        });
    from_header.or_else(|| {
        scope
            .query()
            .get("token")
            .filter(|token| !token.is_empty())
            .map(str::to_owned)
    })
}

/// Cookies, sessions and authentication in one wrapper (Channels' `AuthMiddlewareStack`):
/// [`CookieMiddleware`] around [`SessionMiddleware`] around [`AuthMiddleware`].
///
/// Wrap both the WebSocket routes and the HTTP views that log users in and out with stacks
/// sharing one [`SessionConfig`] (it is cheap to clone), so both see the same sessions.
///
/// ```
/// use std::sync::Arc;
/// use switchboard::middleware::{
///     AllowedHostsOriginValidator, AuthBackend, AuthMiddlewareStack, SessionConfig, SessionKey,
/// };
/// use switchboard::prelude::*;
///
/// struct Backend;
///
/// impl AuthBackend for Backend {
///     async fn get_user(&self, user_id: &str) -> Result<Option<User>> {
///         Ok(Some(User::authenticated(user_id, user_id)))
///     }
/// }
///
/// #[derive(Default)]
/// struct Hello;
///
/// impl WebsocketConsumer for Hello {
///     type Event = NoEvent;
///
///     async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
///         let name = ws.scope().user.username().unwrap_or("stranger").to_owned();
///         ws.accept().await?;
///         ws.send_text(format!("hello {name}")).await
///     }
/// }
///
/// # fn secret() -> String { "x".repeat(32) }
/// let sessions = SessionConfig::new(SessionKey::from_secret(secret()).unwrap());
/// let backend = Arc::new(Backend);
/// let app = ProtocolTypeRouter::new()
///     .http(AuthMiddlewareStack::new(sessions.clone(), backend.clone(), URLRouter::new()))
///     .websocket(AllowedHostsOriginValidator::new(AuthMiddlewareStack::new(
///         sessions,
///         backend,
///         URLRouter::new().route("/ws/hello/", Hello::as_app()),
///     )));
/// ```
#[derive(Debug)]
pub struct AuthMiddlewareStack<A, B> {
    stack: CookieMiddleware<SessionMiddleware<AuthMiddleware<A, B>>>,
}

impl<A, B> AuthMiddlewareStack<A, B> {
    /// Wraps `inner`: sessions as `sessions` says, users from `backend`.
    pub fn new(sessions: SessionConfig, backend: B, inner: A) -> AuthMiddlewareStack<A, B> {
        AuthMiddlewareStack {
            stack: CookieMiddleware::new(SessionMiddleware::new(
                sessions,
                AuthMiddleware::new(backend, inner),
            )),
        }
    }
}

impl<A: Application, B: AuthBackend> Application for AuthMiddlewareStack<A, B> {
    async fn call(&self, scope: Scope, conn: Connection) {
        self.stack.call(scope, conn).await
    }
}

/// Logs `user` in (Django's `login()`): stores their id in the session under a new session id,
/// puts the session cookie on `response`, and sets [`Scope::user`].
///
/// The id changes at every login, so a session id planted before login (session fixation) is
/// worthless after it. The session's other data carries over, unless another user was logged
/// in, whose data is dropped. Fails when `user` is anonymous, when the scope did not pass
/// through [`SessionMiddleware`], or when the store cannot save; the response is then left
/// without a cookie.
///
/// ```
/// use switchboard::middleware::login;
/// use switchboard::prelude::*;
///
/// // Mounted inside an AuthMiddlewareStack.
/// let view = handler(|mut req: HttpRequest| async move {
///     let name = req.form().get("username").unwrap_or_default().trim().to_owned();
///     if name.is_empty() {
///         return response::status(StatusCode::BAD_REQUEST);
///     }
///     let mut response = response::redirect("/");
///     match login(&mut req.scope, &mut response, User::authenticated(&name, &name)).await {
///         Ok(()) => response,
///         Err(_) => response::status(StatusCode::SERVICE_UNAVAILABLE),
///     }
/// });
/// ```
pub async fn login(scope: &mut Scope, response: &mut HttpResponse, user: User) -> Result<()> {
    let User::Authenticated { id, .. } = &user else {
        return Err(Error::Session(
            "login() needs an authenticated user: build one with User::authenticated(id, name)"
                .into(),
        ));
    };
    let config = session::context(scope)?;
    let session = scope.session.get_or_insert_default();
    if session
        .get::<String>(SESSION_USER_KEY)
        .is_some_and(|current| current != *id)
    {
        session.clear();
    }
    session.insert(SESSION_USER_KEY, id)?;
    config.save(session, response, true).await?;
    scope.user = user;
    Ok(())
}

/// Logs the user out (Django's `logout()`): deletes the session, tells the browser to drop
/// the cookie, and makes [`Scope::user`] anonymous.
///
/// The cookie removal is on `response` even when the store fails to delete the session; the
/// error is still returned. Fails too when the scope did not pass through
/// [`SessionMiddleware`].
pub async fn logout(scope: &mut Scope, response: &mut HttpResponse) -> Result<()> {
    let config = session::context(scope)?;
    scope.user = User::Anonymous;
    let session = scope.session.get_or_insert_default();
    config.flush(session, response).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::{HttpConnection, plain_response};
    use crate::layer::InMemoryChannelLayer;
    use crate::middleware::{MemorySessionStore, SessionKey, SessionStore};
    use crate::scope::{Protocol, Session};
    use bytes::Bytes;
    use http::header::{COOKIE, SET_COOKIE};
    use http::{HeaderMap, HeaderValue, StatusCode};
    use std::sync::Mutex;
    use tokio::sync::oneshot;

    /// Knows "ann" and "bob" by id, and the token "t0ken" as "robot".
    struct Backend;

    impl AuthBackend for Backend {
        async fn get_user(&self, user_id: &str) -> Result<Option<User>> {
            Ok(["ann", "bob"]
                .contains(&user_id)
                .then(|| User::authenticated(user_id, user_id.to_uppercase())))
        }

        async fn authenticate_token(&self, token: &str) -> Result<Option<User>> {
            Ok((token == "t0ken").then(|| User::authenticated("robot", "robot")))
        }
    }

    /// A backend with the default (no tokens) and an outage on user lookups.
    struct Broken;

    impl AuthBackend for Broken {
        async fn get_user(&self, _user_id: &str) -> Result<Option<User>> {
            Err(Error::custom("database down"))
        }
    }

    /// Records the user the inner application saw.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Option<User>>>);

    impl Application for Seen {
        async fn call(&self, scope: Scope, conn: Connection) {
            *self.0.lock().unwrap() = Some(scope.user);
            conn.refuse(StatusCode::OK);
        }
    }

    async fn user_seen(app: &impl Application, seen: &Seen, scope: Scope) -> User {
        let (tx, rx) = oneshot::channel();
        let conn = HttpConnection::new(Bytes::new(), Arc::new(InMemoryChannelLayer::new()), tx);
        app.call(scope, Connection::Http(conn)).await;
        rx.await.unwrap();
        seen.0.lock().unwrap().take().expect("the inner app ran")
    }

    fn scope(path: &str, headers: &[(&'static str, &str)]) -> Scope {
        let mut scope = Scope::new(Protocol::Websocket, path);
        for (name, value) in headers {
            scope.headers.append(
                http::HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        scope
    }

    fn with_session_user(mut scope: Scope, id: &str) -> Scope {
        let mut session = Session::new();
        session.insert(SESSION_USER_KEY, id).unwrap();
        scope.session = Some(session);
        scope
    }

    #[tokio::test]
    async fn the_session_user_is_resolved_through_the_backend() {
        let seen = Seen::default();
        let app = AuthMiddleware::new(Backend, seen.clone());
        let user = user_seen(&app, &seen, with_session_user(scope("/", &[]), "ann")).await;
        assert_eq!(user, User::authenticated("ann", "ANN"));
        let gone = user_seen(&app, &seen, with_session_user(scope("/", &[]), "zed")).await;
        assert_eq!(gone, User::Anonymous);
        assert_eq!(
            user_seen(&app, &seen, scope("/", &[])).await,
            User::Anonymous
        );
    }

    #[tokio::test]
    async fn tokens_from_the_header_or_the_query() {
        let seen = Seen::default();
        let app = AuthMiddleware::new(Backend, seen.clone());
        let robot = User::authenticated("robot", "robot");
        for headers in [
            [("authorization", "Token t0ken")],
            [("authorization", "Bearer t0ken")],
            [("authorization", "bearer   t0ken ")],
        ] {
            assert_eq!(user_seen(&app, &seen, scope("/", &headers)).await, robot);
        }
        assert_eq!(
            user_seen(&app, &seen, scope("/?token=t0ken", &[])).await,
            robot
        );
        for (path, headers) in [
            ("/", &[("authorization", "Token wrong")][..]),
            ("/", &[("authorization", "Basic t0ken")][..]),
            ("/", &[("authorization", "Token ")][..]),
            ("/", &[("authorization", "t0ken")][..]),
            ("/?token=", &[][..]),
            ("/?token=nope", &[][..]),
            // The header wins over the query.
            ("/?token=t0ken", &[("authorization", "Token wrong")][..]),
        ] {
            let user = user_seen(&app, &seen, scope(path, headers)).await;
            assert_eq!(user, User::Anonymous, "{path} {headers:?}");
        }
    }

    #[tokio::test]
    async fn the_session_wins_over_a_token_and_an_outer_user_stays() {
        let seen = Seen::default();
        let app = AuthMiddleware::new(Backend, seen.clone());
        let both = with_session_user(scope("/?token=t0ken", &[]), "bob");
        assert_eq!(
            user_seen(&app, &seen, both).await,
            User::authenticated("bob", "BOB")
        );
        let mut preset = scope("/?token=t0ken", &[]);
        preset.user = User::authenticated("set", "outside");
        assert_eq!(
            user_seen(&app, &seen, preset).await,
            User::authenticated("set", "outside")
        );
    }

    #[tokio::test]
    async fn a_failing_backend_and_the_default_token_check_mean_anonymous() {
        let seen = Seen::default();
        let app = AuthMiddleware::new(Broken, seen.clone());
        let scope = with_session_user(scope("/?token=t0ken", &[]), "ann");
        assert_eq!(user_seen(&app, &seen, scope).await, User::Anonymous);
    }

    /// A scope as it leaves SessionMiddleware, with `cookie` as its Cookie header.
    async fn through_sessions(config: &SessionConfig, cookie: Option<&str>) -> Scope {
        #[derive(Clone, Default)]
        struct Keep(Arc<Mutex<Option<Scope>>>);
        impl Application for Keep {
            async fn call(&self, scope: Scope, conn: Connection) {
                *self.0.lock().unwrap() = Some(scope);
                conn.refuse(StatusCode::OK);
            }
        }
        let keep = Keep::default();
        let app = SessionMiddleware::new(config.clone(), keep.clone());
        let mut headers = HeaderMap::new();
        if let Some(cookie) = cookie {
            headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        }
        let scope = Scope::new(Protocol::Http, "/login").with_headers(headers);
        let (tx, rx) = oneshot::channel();
        let conn = HttpConnection::new(Bytes::new(), Arc::new(InMemoryChannelLayer::new()), tx);
        app.call(scope, Connection::Http(conn)).await;
        rx.await.unwrap();
        keep.0.lock().unwrap().take().unwrap()
    }

    fn cookie_pair(response: &HttpResponse) -> String {
        let header = response.headers()[SET_COOKIE].to_str().unwrap();
        header.split(';').next().unwrap().to_owned()
    }

    #[tokio::test]
    async fn login_rotates_the_session_and_logout_forgets_it() {
        let store = Arc::new(MemorySessionStore::new());
        let config = SessionConfig::new(SessionKey::generate()).store(store.clone());

        let mut scope = through_sessions(&config, None).await;
        let mut response = plain_response(StatusCode::SEE_OTHER);
        login(&mut scope, &mut response, User::authenticated("ann", "ann"))
            .await
            .unwrap();
        assert_eq!(scope.user.username(), Some("ann"));
        let first = cookie_pair(&response);

        // Logged in again from the same browser: a new id, the old one is gone.
        let mut scope = through_sessions(&config, Some(&first)).await;
        let old_id = scope.session.as_ref().unwrap().id().unwrap().to_owned();
        let mut response = plain_response(StatusCode::SEE_OTHER);
        login(&mut scope, &mut response, User::authenticated("ann", "ann"))
            .await
            .unwrap();
        let second = cookie_pair(&response);
        assert_ne!(first, second);
        assert!(store.load(&old_id).await.unwrap().is_none());
        assert_eq!(store.len(), 1);

        // The new cookie carries the user; the first one is worthless now.
        let scope = through_sessions(&config, Some(&second)).await;
        let session = scope.session.as_ref().unwrap();
        assert_eq!(
            session.get::<String>(SESSION_USER_KEY).as_deref(),
            Some("ann")
        );
        let stale = through_sessions(&config, Some(&first)).await;
        assert!(stale.session.unwrap().is_empty());

        let mut scope = through_sessions(&config, Some(&second)).await;
        let mut response = plain_response(StatusCode::SEE_OTHER);
        logout(&mut scope, &mut response).await.unwrap();
        assert_eq!(scope.user, User::Anonymous);
        assert!(store.is_empty());
        let removal = response.headers()[SET_COOKIE].to_str().unwrap();
        assert!(removal.contains("Max-Age=0"), "{removal}");
    }

    #[tokio::test]
    async fn another_users_session_data_does_not_carry_over() {
        let config = SessionConfig::new(SessionKey::generate());
        let mut scope = through_sessions(&config, None).await;
        let session = scope.session.as_mut().unwrap();
        session.insert(SESSION_USER_KEY, "ann").unwrap();
        session.insert("cart", 3).unwrap();
        let mut response = plain_response(StatusCode::OK);
        login(&mut scope, &mut response, User::authenticated("bob", "bob"))
            .await
            .unwrap();
        let session = scope.session.unwrap();
        assert_eq!(session.get::<u32>("cart"), None);
        assert_eq!(
            session.get::<String>(SESSION_USER_KEY).as_deref(),
            Some("bob")
        );
    }

    #[tokio::test]
    async fn login_refuses_anonymous_users_and_scopes_without_sessions() {
        let config = SessionConfig::new(SessionKey::generate());
        let mut scope = through_sessions(&config, None).await;
        let mut response = plain_response(StatusCode::OK);
        assert!(
            login(&mut scope, &mut response, User::Anonymous)
                .await
                .is_err()
        );
        let mut bare = Scope::new(Protocol::Http, "/");
        assert!(
            login(&mut bare, &mut response, User::authenticated("a", "a"))
                .await
                .is_err()
        );
        assert!(logout(&mut bare, &mut response).await.is_err());
        assert!(response.headers().get(SET_COOKIE).is_none());
    }
}
