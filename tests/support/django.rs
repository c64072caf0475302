//! Django Channels for the tests: the virtual environment `.ci/run` makes (`DJANGO_VENV`,
//! default `target/django-venv`) and daphne processes serving `tests/django/`, started and
//! stopped by pid.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Python environment with Django, channels, channels_redis and daphne, or `None` (said
/// loudly) when it is missing outside CI; with `CI` set, a missing one fails the test.
pub fn venv() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os("DJANGO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/django-venv"));
    if venv.join("bin/daphne").is_file() && venv.join("bin/python").is_file() {
        return Some(venv);
    }
    let why = format!(
        "no Django environment at {} (make it with: python3 -m venv {0} && {0}/bin/pip install -r tests/django/requirements.txt)",
        venv.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("the Django environment is required in CI: {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// The Django project's folder.
pub fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/django")
}

/// How the Django side reaches its channel layer.
#[derive(Debug, Clone)]
pub struct DjangoLayer {
    /// `redis://HOST:PORT/DB`.
    pub url: String,
    /// `core` or `pubsub`.
    pub flavour: &'static str,
    pub prefix: String,
}

impl DjangoLayer {
    fn apply(&self, command: &mut Command) {
        command
            .env("CHANNELS_REDIS_URL", &self.url)
            .env("CHANNELS_REDIS_FLAVOUR", self.flavour)
            .env("CHANNELS_REDIS_PREFIX", &self.prefix)
            .env("DJANGO_SETTINGS_MODULE", "chatsite.settings")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(project());
    }

    /// Runs `inject.py ARGS...` (plain Python using Django's channel layer) to completion.
    pub fn inject(&self, venv: &std::path::Path, args: &[&str]) {
        let mut command = Command::new(venv.join("bin/python"));
        command.arg("inject.py").args(args);
        self.apply(&mut command);
        let out = command.output().expect("run inject.py");
        assert!(
            out.status.success(),
            "inject.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A daphne serving the Channels tutorial's chat on 127.0.0.1; killed (by its pid) on drop.
pub struct Daphne {
    pub port: u16,
    child: Child,
}

impl Daphne {
    /// Starts daphne on a free port and waits (bounded) until it accepts connections.
    pub fn start(venv: &std::path::Path, layer: &DjangoLayer) -> Daphne {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut command = Command::new(venv.join("bin/daphne"));
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("chatsite.asgi:application")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        layer.apply(&mut command);
        let child = command.spawn().expect("start daphne");
        let mut daphne = Daphne { port, child };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return daphne;
            }
            if let Ok(Some(status)) = daphne.child.try_wait() {
                panic!("daphne exited at start-up: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daphne did not listen on 127.0.0.1:{port} within 15 s");
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Daphne {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
