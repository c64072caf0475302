//! Sessions: Channels' `SessionMiddleware`, with the session id in a signed cookie.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cookie::{Cookie, CookieJar, Key, SameSite};
use rand::Rng;
use rand::distr::Alphanumeric;

use super::cookies::{delete_cookie, set_cookie};
use super::store::{DynSessionStore, MemorySessionStore, SessionStore};
use crate::application::{Application, Connection, HttpResponse};
use crate::error::{Error, Result};
use crate::scope::{Protocol, Scope, Session};

/// Shortest secret [`SessionKey::from_secret`] accepts, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The key that signs session cookies.
///
/// Every process that should accept a session must use the same key, and it must stay secret:
/// whoever has it can forge a cookie for any session id (they still need a live id to be
/// anyone). Never hard-code it; read it from configuration or the environment.
///
/// ```
/// use switchboard::middleware::SessionKey;
///
/// let key = SessionKey::from_secret("at least thirty-two bytes of random secret").unwrap();
/// assert!(SessionKey::from_secret("too short").is_err());
/// let random = SessionKey::generate(); // for one process whose sessions may die with it
/// ```
#[derive(Clone)]
pub struct SessionKey(Key);

impl SessionKey {
    /// Derives the signing key (HKDF-SHA256) from a secret of at least 32 bytes, such as the
    /// 64 hex characters of `openssl rand -hex 32`.
    pub fn from_secret(secret: impl AsRef<[u8]>) -> Result<SessionKey> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::Config(format!(
                "the session secret is {} bytes long; use at least {MIN_SECRET_LEN} random bytes \
                 (for example the output of `openssl rand -hex 32`)",
                secret.len()
            )));
        }
        Ok(SessionKey(Key::derive_from(secret)))
    }

    /// A random key: sessions signed with it are valid only in this process, until it stops.
    pub fn generate() -> SessionKey {
        SessionKey(Key::generate())
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// How sessions are kept and how their cookie looks; cheap to clone, and shared by everything
/// that reads or writes sessions (the middleware on WebSockets and on HTTP views).
///
/// The cookie is always `HttpOnly` (page scripts cannot read it) and `SameSite=Lax` (other
/// sites' forms and scripts do not send it); add `Secure` when the site is served over HTTPS.
///
/// ```
/// use std::time::Duration;
/// use switchboard::middleware::{MemorySessionStore, SessionConfig, SessionKey};
///
/// let secret = std::env::var("SESSION_SECRET").unwrap_or_else(|_| "x".repeat(32));
/// let sessions = SessionConfig::new(SessionKey::from_secret(&secret).unwrap())
///     .store(MemorySessionStore::with_capacity(50_000))
///     .max_age(Duration::from_secs(8 * 3600))
///     .secure(true);
/// assert_eq!(sessions.cookie_name(), "sessionid");
/// ```
#[derive(Clone)]
pub struct SessionConfig {
    key: SessionKey,
    store: Arc<dyn DynSessionStore>,
    cookie_name: String,
    max_age: Duration,
    secure: bool,
    domain: Option<String>,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("cookie_name", &self.cookie_name)
            .field("max_age", &self.max_age)
            .field("secure", &self.secure)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    /// Sessions signed with `key`, in a [`MemorySessionStore`], in a cookie named `sessionid`
    /// that lasts two weeks (Django's defaults), not `Secure`.
    pub fn new(key: SessionKey) -> SessionConfig {
        SessionConfig {
            key,
            store: Arc::new(MemorySessionStore::new()),
            cookie_name: "sessionid".to_owned(),
            max_age: Duration::from_secs(14 * 24 * 3600),
            secure: false,
            domain: None,
        }
    }

    /// Keeps sessions in `store`.
    pub fn store(mut self, store: impl SessionStore) -> SessionConfig {
        self.store = Arc::new(store);
        self
    }

    /// Names the cookie (Django's `SESSION_COOKIE_NAME`).
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Sets the cookie's name.
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> SessionConfig {
        self.cookie_name = name.into();
        self
    }

    /// How long a session lives after it is saved: the cookie's `Max-Age` and the store's
    /// expiry (Django's `SESSION_COOKIE_AGE`).
    pub fn max_age(mut self, max_age: Duration) -> SessionConfig {
        self.max_age = max_age;
        self
    }

    /// Marks the cookie `Secure`, so browsers send it over HTTPS only. Turn it on whenever the
    /// site is served over HTTPS (directly or behind a TLS-terminating proxy).
    pub fn secure(mut self, secure: bool) -> SessionConfig {
        self.secure = secure;
        self
    }

    /// Shares the cookie with subdomains of `domain` (Django's `SESSION_COOKIE_DOMAIN`).
    pub fn domain(mut self, domain: impl Into<String>) -> SessionConfig {
        self.domain = Some(domain.into());
        self
    }

    /// The session id carried by the scope's session cookie, if its signature holds.
    fn verified_id(&self, scope: &Scope) -> Option<String> {
        let cookie = scope.cookies.get(&self.cookie_name)?.clone().into_owned();
        let verified = CookieJar::new().signed(&self.key.0).verify(cookie)?;
        let id = verified.value();
        is_session_id(id).then(|| id.to_owned())
    }

    /// The session the scope's cookie names: empty and new when there is no cookie, it does
    /// not verify, the store does not know it (expired, deleted) or the store fails.
    pub(crate) async fn load(&self, scope: &Scope) -> Session {
        let Some(id) = self.verified_id(scope) else {
            if scope.cookies.get(&self.cookie_name).is_some() {
                tracing::debug!(path = %scope.path, "session cookie does not verify: anonymous");
            }
            return Session::new();
        };
        match self.store.load_boxed(&id).await {
            Ok(Some(data)) => Session::stored(id, data),
            Ok(None) => Session::new(),
            Err(err) => {
                tracing::warn!(error = %err, "session store unavailable: treating the visitor as anonymous");
                Session::new()
            }
        }
    }

    /// The `Set-Cookie` for a session id: signed, HttpOnly, SameSite=Lax, Path=/.
    fn cookie_for(&self, id: &str) -> Result<Cookie<'static>> {
        let mut cookie = Cookie::build((self.cookie_name.clone(), id.to_owned()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .max_age(
                cookie::time::Duration::try_from(self.max_age)
                    .unwrap_or(cookie::time::Duration::MAX),
            );
        if let Some(domain) = &self.domain {
            cookie = cookie.domain(domain.clone());
        }
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key.0).add(cookie);
        jar.get(&self.cookie_name)
            .cloned()
            .ok_or_else(|| Error::Session("the signed session cookie went missing".into()))
    }

    /// Stores `session` (under a fresh id when it has none, or when `rotate`), and puts its
    /// cookie on `response`.
    pub(crate) async fn save(
        &self,
        session: &mut Session,
        response: &mut HttpResponse,
        rotate: bool,
    ) -> Result<()> {
        if rotate && let Some(old) = session.id().map(str::to_owned) {
            self.store.delete_boxed(&old).await?;
            session.set_id(None);
        }
        let id = match session.id() {
            Some(id) => id.to_owned(),
            None => new_session_id(),
        };
        self.store
            .save_boxed(&id, session.data(), self.max_age)
            .await?;
        session.set_id(Some(id.clone()));
        set_cookie(response, self.cookie_for(&id)?)
    }

    /// Empties `session`, tells the browser to drop the cookie, and deletes the session from
    /// the store. The cookie goes even when the store fails (the error is still returned: the
    /// session stays valid in the store for whoever holds a copy of the cookie).
    pub(crate) async fn flush(
        &self,
        session: &mut Session,
        response: &mut HttpResponse,
    ) -> Result<()> {
        let id = session.id().map(str::to_owned);
        *session = Session::new();
        let mut removal = Cookie::build(self.cookie_name.clone()).path("/");
        if let Some(domain) = &self.domain {
            removal = removal.domain(domain.clone());
        }
        delete_cookie(response, removal)?;
        match id {
            Some(id) => self.store.delete_boxed(&id).await,
            None => Ok(()),
        }
    }
}

/// 32 characters from `[A-Za-z0-9]` (about 190 bits) from the thread's CSPRNG.
fn new_session_id() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

fn is_session_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// What views need to write sessions, left in [`Scope::extensions`] of HTTP requests by the
/// middleware: one pointer.
#[derive(Clone)]
struct SessionContext(Arc<SessionConfig>);

/// The configuration the enclosing [`SessionMiddleware`] left in an HTTP request's scope.
pub(crate) fn context(scope: &Scope) -> Result<Arc<SessionConfig>> {
    scope
        .extensions
        .get::<SessionContext>()
        .map(|context| Arc::clone(&context.0))
        .ok_or_else(|| {
            Error::Session(
                "no session here: wrap this application in SessionMiddleware or AuthMiddlewareStack"
                    .into(),
            )
        })
}

/// Loads the session named by the signed session cookie into [`Scope::session`] (Channels'
/// `SessionMiddleware`).
///
/// A visitor without a valid session gets a new, empty session; a missing, tampered, expired
/// or unknown cookie is never an error, and a store that fails is logged and treated the same.
/// Views write sessions with [`save_session`], [`login`](super::login) and
/// [`logout`](super::logout).
///
/// ```
/// use switchboard::middleware::{SessionConfig, SessionKey, SessionMiddleware, save_session};
/// use switchboard::prelude::*;
///
/// let sessions = SessionConfig::new(SessionKey::generate());
/// let views = SessionMiddleware::new(sessions, URLRouter::new().route(
///     "/visit",
///     handler(|mut req: HttpRequest| async move {
///         let session = req.scope.session.get_or_insert_default();
///         let visits = session.get::<u64>("visits").unwrap_or(0) + 1;
///         let mut response = response::text(format!("visit {visits}"));
///         if session.insert("visits", visits).is_err()
///             || save_session(&mut req.scope, &mut response).await.is_err()
///         {
///             return response::status(StatusCode::SERVICE_UNAVAILABLE);
///         }
///         response
///     }),
/// ));
/// ```
#[derive(Debug, Clone)]
pub struct SessionMiddleware<A> {
    config: Arc<SessionConfig>,
    inner: A,
}

impl<A> SessionMiddleware<A> {
    /// Wraps `inner`, keeping sessions as `config` says.
    pub fn new(config: SessionConfig, inner: A) -> SessionMiddleware<A> {
        SessionMiddleware {
            config: Arc::new(config),
            inner,
        }
    }
}

impl<A: Application> Application for SessionMiddleware<A> {
    async fn call(&self, mut scope: Scope, conn: Connection) {
        scope.session = Some(self.config.load(&scope).await);
        // Only views write sessions (a WebSocket cannot set cookies once accepted), and a
        // WebSocket's scope lives as long as the connection: keep it lean.
        if scope.protocol == Protocol::Http {
            scope
                .extensions
                .insert(SessionContext(Arc::clone(&self.config)));
        }
        self.inner.call(scope, conn).await
    }
}

/// Saves the scope's session and puts its cookie on `response` (Django saves a modified
/// session at the end of a request; here a view says when).
///
/// A new session gets its id here. Fails when the scope did not pass through
/// [`SessionMiddleware`] or the store cannot save.
pub async fn save_session(scope: &mut Scope, response: &mut HttpResponse) -> Result<()> {
    let config = context(scope)?;
    let session = scope.session.get_or_insert_default();
    config.save(session, response, false).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::{HttpConnection, plain_response};
    use crate::layer::InMemoryChannelLayer;
    use crate::scope::SessionData;
    use bytes::Bytes;
    use http::header::{COOKIE, SET_COOKIE};
    use http::{HeaderMap, HeaderValue, StatusCode};
    use std::sync::Mutex;
    use tokio::sync::oneshot;

    /// Records the session the inner application saw.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Option<Session>>>);

    impl Application for Seen {
        async fn call(&self, scope: Scope, conn: Connection) {
            *self.0.lock().unwrap() = scope.session;
            conn.refuse(StatusCode::OK);
        }
    }

    fn config() -> SessionConfig {
        SessionConfig::new(SessionKey::from_secret([7u8; 32]).unwrap())
    }

    fn scope_with_cookie(cookie: Option<&str>) -> Scope {
        let mut headers = HeaderMap::new();
        if let Some(cookie) = cookie {
            headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        }
        Scope::new(Protocol::Http, "/").with_headers(headers)
    }

    async fn seen_with(config: &SessionConfig, cookie: Option<&str>) -> Session {
        let seen = Seen::default();
        let app = SessionMiddleware::new(config.clone(), seen.clone());
        let (tx, rx) = oneshot::channel();
        let conn = HttpConnection::new(Bytes::new(), Arc::new(InMemoryChannelLayer::new()), tx);
        app.call(scope_with_cookie(cookie), Connection::Http(conn))
            .await;
        rx.await.unwrap();
        seen.0.lock().unwrap().take().expect("a session")
    }

    /// Saves a session holding `user=ann` and returns the `name=value` of its cookie.
    async fn saved(config: &SessionConfig) -> (String, String) {
        let mut session = Session::new();
        session.insert("user", "ann").unwrap();
        let mut response = plain_response(StatusCode::OK);
        config
            .save(&mut session, &mut response, false)
            .await
            .unwrap();
        let header = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        let pair = header.split(';').next().unwrap().to_owned();
        (header, pair)
    }

    #[test]
    fn short_secrets_are_refused_and_keys_do_not_show() {
        let err = SessionKey::from_secret("short").unwrap_err().to_string();
        assert!(err.contains("at least 32"), "{err}");
        assert!(SessionKey::from_secret("x".repeat(32)).is_ok());
        assert_eq!(
            format!("{:?}", SessionKey::generate()),
            "SessionKey(<redacted>)"
        );
    }

    #[tokio::test]
    async fn a_saved_session_comes_back_through_its_cookie() {
        let config = config();
        let (header, pair) = saved(&config).await;
        for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=1209600"] {
            assert!(header.contains(part), "{part} missing: {header}");
        }
        assert!(!header.contains("Secure"), "{header}");
        let session = seen_with(&config, Some(&pair)).await;
        assert_eq!(session.get::<String>("user").as_deref(), Some("ann"));
        assert!(session.id().is_some());
    }

    #[tokio::test]
    async fn secure_and_domain_when_configured() {
        let config = config().secure(true).domain("example.com");
        let (header, _) = saved(&config).await;
        assert!(header.contains("Secure"), "{header}");
        assert!(header.contains("Domain=example.com"), "{header}");
    }

    #[tokio::test]
    async fn bad_cookies_are_anonymous_never_errors() {
        let config = config();
        let (_, pair) = saved(&config).await;
        let (name, value) = pair.split_once('=').unwrap();
        // The id is the last 32 characters of the signed value; change one of them.
        let mut tampered = value.to_owned();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'a' { 'b' } else { 'a' });
        let other_key = SessionConfig::new(SessionKey::generate());
        for cookie in [
            format!("{name}={tampered}"),
            format!("{name}=plainvalue"),
            format!("{name}="),
            format!("{name}={}", "A".repeat(4000)),
            format!("{name}=%FF%FE"),
        ] {
            let session = seen_with(&config, Some(&cookie)).await;
            assert_eq!(session, Session::new(), "{cookie}");
        }
        // Signed by another key: does not verify here.
        assert_eq!(seen_with(&other_key, Some(&pair)).await, Session::new());
        assert_eq!(seen_with(&config, None).await, Session::new());
    }

    #[tokio::test]
    async fn a_deleted_or_expired_session_is_anonymous() {
        let store = Arc::new(MemorySessionStore::new());
        let config = config().store(store.clone());
        let (_, pair) = saved(&config).await;
        let id = seen_with(&config, Some(&pair))
            .await
            .id()
            .unwrap()
            .to_owned();
        store.delete(&id).await.unwrap();
        assert_eq!(seen_with(&config, Some(&pair)).await, Session::new());
    }

    /// A store that is down.
    struct Down;

    impl SessionStore for Down {
        async fn load(&self, _id: &str) -> Result<Option<SessionData>> {
            Err(Error::custom("down"))
        }
        async fn save(&self, _: &str, _: &SessionData, _: Duration) -> Result<()> {
            Err(Error::custom("down"))
        }
        async fn delete(&self, _id: &str) -> Result<()> {
            Err(Error::custom("down"))
        }
    }

    #[tokio::test]
    async fn a_failing_store_reads_as_anonymous_and_fails_saves() {
        let config = config();
        let (_, pair) = saved(&config).await;
        let down = config.clone().store(Down);
        assert_eq!(seen_with(&down, Some(&pair)).await, Session::new());
        let mut response = plain_response(StatusCode::OK);
        assert!(
            down.save(&mut Session::new(), &mut response, false)
                .await
                .is_err()
        );
        assert!(response.headers().get(SET_COOKIE).is_none());
    }

    #[tokio::test]
    async fn rotation_gives_a_new_id_and_forgets_the_old_one() {
        let store = Arc::new(MemorySessionStore::new());
        let config = config().store(store.clone());
        let mut session = Session::new();
        session.insert("k", 1).unwrap();
        let mut response = plain_response(StatusCode::OK);
        config
            .save(&mut session, &mut response, false)
            .await
            .unwrap();
        let first = session.id().unwrap().to_owned();
        config
            .save(&mut session, &mut response, true)
            .await
            .unwrap();
        let second = session.id().unwrap().to_owned();
        assert_ne!(first, second);
        assert!(store.load(&first).await.unwrap().is_none());
        assert_eq!(
            store.load(&second).await.unwrap().unwrap().get("k"),
            Some(&serde_json::json!(1))
        );
    }

    #[tokio::test]
    async fn flush_deletes_and_expires_the_cookie() {
        let store = Arc::new(MemorySessionStore::new());
        let config = config().store(store.clone());
        let mut session = Session::new();
        let mut response = plain_response(StatusCode::OK);
        config
            .save(&mut session, &mut response, false)
            .await
            .unwrap();
        assert_eq!(store.len(), 1);
        let mut response = plain_response(StatusCode::OK);
        config.flush(&mut session, &mut response).await.unwrap();
        assert_eq!(store.len(), 0);
        assert_eq!(session, Session::new());
        let header = response.headers()[SET_COOKIE].to_str().unwrap();
        assert!(
            header.starts_with("sessionid=; Path=/; Max-Age=0"),
            "{header}"
        );
    }

    #[tokio::test]
    async fn save_session_needs_the_middleware() {
        let mut scope = Scope::new(Protocol::Http, "/");
        let mut response = plain_response(StatusCode::OK);
        let err = save_session(&mut scope, &mut response).await.unwrap_err();
        assert!(err.to_string().contains("SessionMiddleware"), "{err}");
    }

    #[test]
    fn session_ids_are_random_and_well_formed() {
        let a = new_session_id();
        assert!(is_session_id(&a), "{a}");
        assert_ne!(a, new_session_id());
        assert!(!is_session_id("short"));
    }
}
