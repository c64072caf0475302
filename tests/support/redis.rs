//! Redis for the tests: the shared server from `REDIS_URL`, or private `redis-server`
//! processes the tests start (and stop) on their own ports.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchboard::layer::{RedisChannelLayer, RedisConfig};

use super::free_port;

/// The Redis URL to test against, or `None` (said loudly) when no Redis answers outside CI.
/// With `CI` set, a missing Redis fails the test instead.
pub async fn redis_url() -> Option<String> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    match RedisChannelLayer::connect(RedisConfig::new([url.clone()])).await {
        Ok(_) => Some(url),
        Err(err) if std::env::var_os("CI").is_some() => {
            panic!("Redis at {url} is required in CI: {err}")
        }
        Err(err) => {
            eprintln!("SKIPPED: no Redis at {url} ({err}); start one or set REDIS_URL");
            None
        }
    }
}

/// A prefix no other test run uses, so tests sharing one Redis never hear each other.
pub fn unique_prefix(test: &str) -> String {
    format!("sbtest-{test}-{}", std::process::id())
}

/// A `redis-server` this test started on a free port; stopped on drop.
pub struct RedisProcess {
    pub port: u16,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts one on a free port, or `None` (loudly; a failure in CI) without `redis-server`.
    pub fn start() -> Option<RedisProcess> {
        let mut redis = RedisProcess {
            port: free_port(),
            child: None,
        };
        if let Err(err) = redis.spawn() {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server is required in CI: {err}");
            }
            eprintln!("SKIPPED: cannot start redis-server ({err}); install redis-server");
            return None;
        }
        Some(redis)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
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
            "redis-server did not listen within 5 s",
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
        self.spawn().expect("restart redis-server");
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
