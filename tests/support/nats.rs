//! NATS for the tests: the shared server at `NATS_URL` (default `nats://127.0.0.1:4222`), or a
//! private `nats-server` a test starts (and stops) on its own port.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchboard::layer::{NatsChannelLayer, NatsConfig};

/// A NATS to test against: the shared one when it answers, else a private one this test
/// started (held here, stopped on drop). `None` (said loudly) when neither can be had outside
/// CI; with `CI` set that fails the test instead.
pub struct Nats {
    pub url: String,
    _private: Option<NatsProcess>,
}

pub async fn nats() -> Option<Nats> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let mut config = NatsConfig::new(url.clone());
    config.connect_timeout = Duration::from_secs(2);
    if NatsChannelLayer::connect(config).await.is_ok() {
        return Some(Nats {
            url,
            _private: None,
        });
    }
    let private = NatsProcess::start()?;
    Some(Nats {
        url: private.url(),
        _private: Some(private),
    })
}

/// A `nats-server` this test started on a free port; stopped on drop.
pub struct NatsProcess {
    pub port: u16,
    child: Option<Child>,
}

impl NatsProcess {
    /// Starts one on a free port, or `None` (loudly; a failure in CI) without `nats-server`.
    pub fn start() -> Option<NatsProcess> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut nats = NatsProcess { port, child: None };
        if let Err(err) = nats.spawn() {
            if std::env::var_os("CI").is_some() {
                panic!("nats-server is required in CI: {err}");
            }
            eprintln!("SKIPPED: cannot start nats-server ({err}); install nats-server");
            return None;
        }
        Some(nats)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(std::io::Error::other(
            "nats-server did not listen within 5 s",
        ))
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("restart nats-server");
    }
}

impl Drop for NatsProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
