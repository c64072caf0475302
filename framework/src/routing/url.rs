//! Dispatch by path, on matchit.

use std::collections::HashMap;
use std::sync::Arc;

use http::StatusCode;

use super::Converter;
use crate::application::{Application, BoxApplication, Connection};
use crate::scope::Scope;

/// The catch-all parameter a nested router's prefix route captures the rest of the path in.
const REST: &str = "__switchboard_rest";

/// A matched route with what it captured.
pub(crate) struct Resolved<'a> {
    route: &'a Route,
    kwargs: Vec<(String, String)>,
    /// For a nested router: the path left for it.
    rest: Option<String>,
}

struct Route {
    app: BoxApplication,
    params: Vec<(String, Converter)>,
    nested: bool,
}

/// Dispatches by path (Channels' `URLRouter`), capturing parameters into
/// [`scope.url_route.kwargs`](crate::scope::UrlRoute).
///
/// Patterns are matchit paths with Django-style converters: `{name}` (a `str`), `{name:int}`,
/// `{name:slug}`, `{name:uuid}`, `{name:path}` (the rest of the path, `/` included; last only),
/// or a converter registered with [`URLRouter::converter`]. A path that matches no route, or
/// whose parameters fail their converter, is refused with 404 before any consumer runs.
///
/// ```
/// use switchboard::prelude::*;
///
/// #[derive(Default)]
/// struct Chat;
///
/// impl WebsocketConsumer for Chat {
///     type Event = NoEvent;
/// }
///
/// let router = URLRouter::new()
///     .converter("room", |s| s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
///     .route("/ws/chat/{room_name:room}/", Chat::as_app())
///     .route("/ws/user/{id:int}/", Chat::as_app())
///     .nest("/api", URLRouter::new().route("/rooms/{room:slug}/", Chat::as_app()));
/// ```
///
/// # Panics
///
/// Adding a route panics when its pattern is invalid or conflicts with another, as axum does:
/// routes are program text, fixed at start-up.
pub struct URLRouter {
    router: matchit::Router<usize>,
    routes: Vec<Route>,
    converters: HashMap<String, Converter>,
}

impl Default for URLRouter {
    fn default() -> Self {
        URLRouter::new()
    }
}

impl std::fmt::Debug for URLRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("URLRouter")
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl URLRouter {
    /// An empty router.
    pub fn new() -> URLRouter {
        URLRouter {
            router: matchit::Router::new(),
            routes: Vec::new(),
            converters: HashMap::new(),
        }
    }

    /// Registers a named converter for use as `{param:name}` in routes added after it.
    pub fn converter(
        mut self,
        name: &str,
        check: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> URLRouter {
        self.converters
            .insert(name.to_owned(), Converter::Custom(Arc::new(check)));
        self
    }

    /// Routes a path pattern to an application.
    pub fn route(mut self, pattern: &str, app: impl Application) -> URLRouter {
        let (path, params) = self.translate(pattern);
        self.insert(pattern, &path, params, false, BoxApplication::new(app));
        self
    }

    /// Routes every path under `prefix` to `app` (typically another `URLRouter`), which sees the
    /// rest of the path as its own, starting with `/`. Kwargs captured in the prefix are kept.
    pub fn nest(mut self, prefix: &str, app: impl Application) -> URLRouter {
        let prefix = prefix.trim_end_matches('/');
        let (path, params) = self.translate(prefix);
        let app = BoxApplication::new(app);
        self.insert(
            prefix,
            &format!("{path}/{{*{REST}}}"),
            params.clone(),
            true,
            app.clone(),
        );
        let exact = if path.is_empty() {
            "/".to_owned()
        } else {
            path.clone()
        };
        self.insert(prefix, &exact, params.clone(), true, app.clone());
        if !path.is_empty() {
            self.insert(prefix, &format!("{path}/"), params, true, app);
        }
        self
    }

    /// Turns `{name:conv}` into matchit's `{name}` (or `{*name}` for `path`) and collects the
    /// converters.
    fn translate(&self, pattern: &str) -> (String, Vec<(String, Converter)>) {
        let mut path = String::with_capacity(pattern.len());
        let mut params = Vec::new();
        let mut rest = pattern;
        while let Some(start) = rest.find('{') {
            path.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                panic!("invalid route {pattern:?}: unclosed '{{'");
            };
            let inner = &rest[start + 1..start + len];
            let (name, conv_name) = inner.split_once(':').unwrap_or((inner, "str"));
            if name.is_empty() || name.starts_with('*') {
                panic!("invalid route {pattern:?}: write {{name:path}} for a catch-all parameter");
            }
            let converter = self
                .converters
                .get(conv_name)
                .cloned()
                .or_else(|| Converter::builtin(conv_name))
                .unwrap_or_else(|| {
                    panic!("invalid route {pattern:?}: unknown converter {conv_name:?}; register it with URLRouter::converter first")
                });
            if matches!(converter, Converter::Path) {
                path.push_str(&format!("{{*{name}}}"));
            } else {
                path.push_str(&format!("{{{name}}}"));
            }
            params.push((name.to_owned(), converter));
            rest = &rest[start + len + 1..];
        }
        path.push_str(rest);
        (path, params)
    }

    fn insert(
        &mut self,
        pattern: &str,
        path: &str,
        params: Vec<(String, Converter)>,
        nested: bool,
        app: BoxApplication,
    ) {
        if let Err(err) = self.router.insert(path, self.routes.len()) {
            panic!("invalid route {pattern:?}: {err}");
        }
        self.routes.push(Route {
            app,
            params,
            nested,
        });
    }

    /// Finds the route for `path`, checks its converters and returns it with its captures.
    pub(crate) fn resolve(&self, path: &str) -> Option<Resolved<'_>> {
        let matched = self.router.at(path).ok()?;
        let route = &self.routes[*matched.value];
        let mut kwargs = Vec::with_capacity(route.params.len());
        let mut rest = None;
        for (key, value) in matched.params.iter() {
            if key == REST {
                rest = Some(format!("/{value}"));
                continue;
            }
            let converter = route
                .params
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, c)| c);
            if !converter.is_some_and(|c| c.accepts(value)) {
                return None;
            }
            kwargs.push((key.to_owned(), value.to_owned()));
        }
        if route.nested && rest.is_none() {
            rest = Some("/".to_owned());
        }
        Some(Resolved {
            route,
            kwargs,
            rest,
        })
    }
}

impl Application for URLRouter {
    async fn call(&self, mut scope: Scope, conn: Connection) {
        let Some(Resolved {
            route,
            kwargs,
            rest,
        }) = self.resolve(scope.path_remaining())
        else {
            tracing::debug!(path = %scope.path, "no route matches");
            return conn.refuse(StatusCode::NOT_FOUND);
        };
        scope.url_route.kwargs.extend(kwargs);
        if let Some(rest) = rest {
            scope.set_path_remaining(rest);
        }
        route.app.call(scope, conn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    impl Application for Nothing {
        async fn call(&self, _scope: Scope, _conn: Connection) {}
    }

    fn kwargs_of(router: &URLRouter, path: &str) -> Option<Vec<(String, String)>> {
        router.resolve(path).map(|resolved| {
            let mut kwargs = resolved.kwargs;
            kwargs.sort();
            kwargs
        })
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matches_and_converts() {
        let router = URLRouter::new()
            .route("/ws/chat/{room:slug}/", Nothing)
            .route("/user/{id:int}/", Nothing)
            .route("/obj/{key:uuid}/", Nothing)
            .route("/files/{rest:path}", Nothing)
            .route("/plain/{name}/", Nothing);
        assert_eq!(
            kwargs_of(&router, "/ws/chat/lobby-1/"),
            Some(kv(&[("room", "lobby-1")]))
        );
        assert_eq!(kwargs_of(&router, "/ws/chat/lob by/"), None);
        assert_eq!(kwargs_of(&router, "/ws/chat/lobby"), None);
        assert_eq!(kwargs_of(&router, "/user/42/"), Some(kv(&[("id", "42")])));
        assert_eq!(kwargs_of(&router, "/user/x/"), None);
        assert!(kwargs_of(&router, "/obj/0b8e5a4c-6f0e-4c8e-9a57-2a3c1f2b9d10/").is_some());
        assert_eq!(kwargs_of(&router, "/obj/nope/"), None);
        assert_eq!(
            kwargs_of(&router, "/files/a/b.txt"),
            Some(kv(&[("rest", "a/b.txt")]))
        );
        assert_eq!(
            kwargs_of(&router, "/plain/héllo/"),
            Some(kv(&[("name", "héllo")]))
        );
        assert_eq!(kwargs_of(&router, "/nowhere"), None);
    }

    #[test]
    fn custom_converter() {
        let router = URLRouter::new()
            .converter("short", |s| s.len() <= 3)
            .route("/r/{name:short}/", Nothing);
        assert!(kwargs_of(&router, "/r/abc/").is_some());
        assert!(kwargs_of(&router, "/r/abcd/").is_none());
    }

    #[test]
    fn nesting_passes_the_rest_and_keeps_prefix_kwargs() {
        let router = URLRouter::new().nest("/org/{org:slug}", URLRouter::new());
        let resolved = router.resolve("/org/acme/rooms/1/").unwrap();
        assert_eq!(resolved.kwargs, kv(&[("org", "acme")]));
        assert_eq!(resolved.rest.as_deref(), Some("/rooms/1/"));
        let resolved = router.resolve("/org/acme").unwrap();
        assert_eq!(resolved.rest.as_deref(), Some("/"));
        assert!(router.resolve("/org/a b/x").is_none());
    }

    #[test]
    #[should_panic(expected = "unknown converter")]
    fn unknown_converter_panics_at_startup() {
        let _ = URLRouter::new().route("/x/{a:nope}/", Nothing);
    }
}
