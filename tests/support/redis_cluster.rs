//! A real Redis Cluster for the tests: 3 masters and 3 replicas (`redis-server
//! --cluster-enabled yes` on free local ports, joined with `redis-cli --cluster create`),
//! stopped by pid when the last test holding it lets it go.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a master may be unreachable before its replica is promoted: short, so the
/// failover test is quick.
const NODE_TIMEOUT_MS: &str = "1000";

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    child: Option<Child>,
}

/// A running cluster; every node stopped on drop.
pub struct RedisCluster {
    nodes: Mutex<Vec<Node>>,
    dir: PathBuf,
}

/// The cluster shared by the tests of one binary that run at the same time.
static SHARED: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());

impl RedisCluster {
    /// The cluster the tests running now share, started if none runs; `None` (loudly; a
    /// failure in CI) without `redis-server`/`redis-cli`. Tests that stop nodes start their
    /// own with [`RedisCluster::start`].
    pub fn shared() -> Option<Arc<RedisCluster>> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return Some(cluster);
        }
        let cluster = Arc::new(RedisCluster::start()?);
        *shared = Arc::downgrade(&cluster);
        Some(cluster)
    }

    /// Starts a cluster of its own.
    pub fn start() -> Option<RedisCluster> {
        match RedisCluster::try_start() {
            Ok(cluster) => Some(cluster),
            Err(err) if std::env::var_os("CI").is_some() => {
                panic!("a Redis Cluster is required in CI: {err}")
            }
            Err(err) => {
                eprintln!(
                    "SKIPPED: cannot start a Redis Cluster ({err}); install redis-server and redis-tools"
                );
                None
            }
        }
    }

    fn try_start() -> Result<RedisCluster, String> {
        let ports = free_port_pairs(6)?;
        let dir = std::env::temp_dir().join(format!(
            "switchboard-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cluster = RedisCluster {
            nodes: Mutex::new(Vec::new()),
            dir,
        };
        for port in ports {
            let mut node = Node { port, child: None };
            cluster.spawn(&mut node)?;
            cluster.lock().push(node);
        }
        let addresses: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&created.stdout)
            ));
        }
        cluster.wait_until_healthy()?;
        Ok(cluster)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ports(&self) -> Vec<u16> {
        self.lock().iter().map(|n| n.port).collect()
    }

    fn spawn(&self, node: &mut Node) -> Result<(), String> {
        let port = node.port.to_string();
        let config = self.dir.join(format!("nodes-{port}.conf"));
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                NODE_TIMEOUT_MS,
            ])
            .arg("--cluster-config-file")
            .arg(&config)
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        node.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", node.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!("redis-server on {port} did not listen within 5 s"))
    }

    /// The seed nodes, `127.0.0.1:PORT`, as `--layer redis+cluster://` takes them.
    pub fn nodes(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The port of the master that holds `key`'s slot now.
    pub fn master_of(&self, key: &str) -> u16 {
        let port = self.ports()[0];
        let answer = cli(port, &["CLUSTER", "KEYSLOT", key]);
        let slot: u16 = answer.trim().parse().expect("a slot");
        let shards = cli(port, &["CLUSTER", "SLOTS"]);
        // `redis-cli` prints CLUSTER SLOTS flat: start, end, then the master's ip, port, id...
        let lines: Vec<&str> = shards.lines().map(str::trim).collect();
        let mut n = 0;
        while n + 3 < lines.len() {
            if let (Ok(start), Ok(end)) = (lines[n].parse::<u16>(), lines[n + 1].parse::<u16>())
                && lines[n + 2].parse::<std::net::IpAddr>().is_ok()
                && (start..=end).contains(&slot)
            {
                return lines[n + 3].parse().expect("a port");
            }
            n += 1;
        }
        panic!("no master for slot {slot} in {shards}");
    }

    /// Kills the node on `port` (a crash).
    pub fn stop(&self, port: u16) {
        let mut nodes = self.lock();
        if let Some(node) = nodes.iter_mut().find(|n| n.port == port)
            && let Some(mut child) = node.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node on `port` again (it rejoins the cluster from its config file).
    pub fn restart(&self, port: u16) {
        let mut nodes = self.lock();
        let node = nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        if node.child.is_none() {
            self.spawn(node).expect("restart redis-server");
        }
    }

    /// Waits until every running node says the cluster is ok and every slot is served, and
    /// every running replica is in sync with its master.
    pub fn wait_until_healthy(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let running: Vec<u16> = self
                .lock()
                .iter()
                .filter(|n| n.child.is_some())
                .map(|n| n.port)
                .collect();
            let healthy = running.iter().all(|port| {
                let info = cli(*port, &["CLUSTER", "INFO"]);
                let replication = cli(*port, &["INFO", "replication"]);
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && (replication.contains("role:master")
                        || replication.contains("master_link_status:up"))
            });
            if healthy {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the cluster did not become healthy within 20 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in self.lock().iter_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-cli -p PORT ARGS...`'s output ("" when it cannot run).
fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// `count` ports that are free, each with its cluster bus port (`port + 10000`) free too.
fn free_port_pairs(count: usize) -> Result<Vec<u16>, String> {
    let mut ports = Vec::with_capacity(count);
    // Held until all are found, so no two are the same.
    let mut held = Vec::new();
    for _ in 0..1000 {
        if ports.len() == count {
            return Ok(ports);
        }
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = listener.local_addr().map(|a| a.port()) else {
            continue;
        };
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if let Ok(bus_listener) = TcpListener::bind(("127.0.0.1", bus)) {
            ports.push(port);
            held.push((listener, bus_listener));
        }
    }
    Err("no free port pairs for a cluster".to_owned())
}
