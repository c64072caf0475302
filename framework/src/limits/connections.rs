//! Counting open connections, in all and per client address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::{ClientLimits, Rate, TokenBucket};

/// The connections of one server: how many are open, against its limit, and per client when
/// [`ClientLimits`] are on.
///
/// Counting costs one atomic add at accept and one subtract when the connection's [`Permit`]
/// is dropped; the per-client table (a lock per connection, never per frame) exists only when
/// per-client limits are set.
#[derive(Debug)]
pub(crate) struct ConnectionCounts {
    open: AtomicUsize,
    /// Connections served; one more is answered 503.
    max: usize,
    /// Connections over `max` still answered 503; one more is closed without an answer, so a
    /// flood cannot take the descriptors kept for Redis and logs.
    refusing: usize,
    clients: Option<ClientTable>,
}

/// What to do with a connection just accepted.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Under the limit: serve it.
    Serve(Permit),
    /// Over the limit: answer 503 with `Retry-After` and close.
    Refuse(Permit),
    /// Far over the limit: close at once.
    Drop,
}

impl ConnectionCounts {
    /// Counts for a server serving at most `max` connections at once.
    pub(crate) fn new(max: usize, clients: ClientLimits) -> Arc<ConnectionCounts> {
        Arc::new(ConnectionCounts {
            open: AtomicUsize::new(0),
            max,
            refusing: (max / 32).max(16),
            clients: clients.is_limited().then(|| ClientTable {
                limits: clients,
                entries: Mutex::new(HashMap::new()),
                sweep_at: AtomicUsize::new(SWEEP_MIN),
            }),
        })
    }

    /// Counts a connection just accepted.
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        let permit = Permit {
            counts: Arc::clone(self),
            client: None,
        };
        if open <= self.max {
            Admission::Serve(permit)
        } else if open <= self.max.saturating_add(self.refusing) {
            Admission::Refuse(permit)
        } else {
            // The permit goes here, and the count with it.
            Admission::Drop
        }
    }

    /// Connections open right now, refused ones still being answered included.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// A connection's place under its server's limits, given back when it is dropped: it travels
/// with the socket (into the WebSocket's transport after an upgrade).
#[derive(Debug)]
pub(crate) struct Permit {
    counts: Arc<ConnectionCounts>,
    client: Option<Arc<ClientEntry>>,
}

/// Why a client is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientRefusal {
    /// It holds as many connections as it may.
    Connections,
    /// It opened WebSockets faster than it may.
    Handshakes,
}

impl Permit {
    /// Charges this connection to the client at `ip` (and a handshake, if it is one); over the
    /// client's limits, the connection is not charged and the reason is returned.
    pub(crate) fn charge_client(
        &mut self,
        ip: IpAddr,
        handshake: bool,
    ) -> Result<(), ClientRefusal> {
        let Some(table) = &self.counts.clients else {
            return Ok(());
        };
        let entry = table.charge(ip, handshake)?;
        self.client = Some(entry);
        Ok(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counts.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(client) = &self.client {
            client.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The table is swept of forgotten clients when it has grown to this many entries, then when
/// it has doubled since: amortised, a sweep costs a constant per connection.
const SWEEP_MIN: usize = 1024;

#[derive(Debug)]
struct ClientTable {
    limits: ClientLimits,
    entries: Mutex<HashMap<ClientKey, Arc<ClientEntry>>>,
    sweep_at: AtomicUsize,
}

/// One client's connections and handshake bucket.
#[derive(Debug)]
struct ClientEntry {
    open: AtomicUsize,
    handshakes: Mutex<(TokenBucket, Instant)>,
}

impl ClientEntry {
    fn bucket(&self) -> MutexGuard<'_, (TokenBucket, Instant)> {
        // Plain numbers: nothing a panic elsewhere could leave half-written.
        self.handshakes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether forgetting this client changes nothing: no connection open, a full bucket.
    fn is_idle(&self, rate: Option<Rate>, now: Instant) -> bool {
        if self.open.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let Some(rate) = rate else { return true };
        let (mut bucket, since) = *self.bucket();
        bucket.refill(rate, now.saturating_duration_since(since));
        bucket.is_full(rate)
    }
}

impl ClientTable {
    fn entries(&self) -> MutexGuard<'_, HashMap<ClientKey, Arc<ClientEntry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn charge(&self, ip: IpAddr, handshake: bool) -> Result<Arc<ClientEntry>, ClientRefusal> {
        let now = Instant::now();
        let entry = {
            let mut entries = self.entries();
            let entry = Arc::clone(entries.entry(ClientKey::of(ip)).or_insert_with(|| {
                let bucket = self
                    .limits
                    .handshakes
                    .map_or(TokenBucket::full(Rate::new(0, 1)), TokenBucket::full);
                Arc::new(ClientEntry {
                    open: AtomicUsize::new(0),
                    handshakes: Mutex::new((bucket, now)),
                })
            }));
            if entries.len() >= self.sweep_at.load(Ordering::Relaxed) {
                let rate = self.limits.handshakes;
                entries.retain(|_, entry| !entry.is_idle(rate, now));
                self.sweep_at
                    .store((entries.len() * 2).max(SWEEP_MIN), Ordering::Relaxed);
            }
            entry
        };
        if let Some(max) = self.limits.max_connections
            && entry.open.load(Ordering::Relaxed) >= max
        {
            return Err(ClientRefusal::Connections);
        }
        if let (true, Some(rate)) = (handshake, self.limits.handshakes) {
            let mut guard = entry.bucket();
            let (bucket, since) = &mut *guard;
            bucket.refill(rate, now.saturating_duration_since(*since));
            *since = now;
            if !bucket.take(rate, 1) {
                return Err(ClientRefusal::Handshakes);
            }
        }
        entry.open.fetch_add(1, Ordering::Relaxed);
        Ok(entry)
    }
}

/// What a client is counted by: its IPv4 address, or its IPv6 /64 network (one subscriber's
/// block; counting single IPv6 addresses would let one client be 2^64 clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey(IpAddr);

impl ClientKey {
    fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(_) => ClientKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let network = u128::from(v6) & !((1u128 << 64) - 1);
                    ClientKey(IpAddr::V6(Ipv6Addr::from(network)))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn over_the_limit_is_refused_then_dropped_and_permits_give_back() {
        let counts = ConnectionCounts::new(2, ClientLimits::default());
        let a = counts.admit();
        let b = counts.admit();
        assert!(matches!(
            (&a, &b),
            (Admission::Serve(_), Admission::Serve(_))
        ));
        let refused: Vec<Admission> = (0..16).map(|_| counts.admit()).collect();
        assert!(refused.iter().all(|r| matches!(r, Admission::Refuse(_))));
        assert!(matches!(counts.admit(), Admission::Drop));
        assert_eq!(counts.open(), 18, "a dropped connection is not counted");
        drop(refused);
        drop(a);
        assert_eq!(counts.open(), 1);
        assert!(matches!(counts.admit(), Admission::Serve(_)));
    }

    #[test]
    fn a_client_is_limited_in_connections_and_handshakes() {
        let limits = ClientLimits::default()
            .max_connections(2)
            .handshakes(Rate::new(1, 3));
        let counts = ConnectionCounts::new(100, limits);
        let permit = |counts: &Arc<ConnectionCounts>| match counts.admit() {
            Admission::Serve(permit) => permit,
            other => panic!("{other:?}"),
        };
        let mut first = permit(&counts);
        let mut second = permit(&counts);
        first.charge_client(ip("10.0.0.1"), true).unwrap();
        second.charge_client(ip("10.0.0.1"), true).unwrap();
        let mut third = permit(&counts);
        assert_eq!(
            third.charge_client(ip("10.0.0.1"), false),
            Err(ClientRefusal::Connections)
        );
        third.charge_client(ip("10.0.0.2"), false).unwrap();
        drop(first);
        let mut again = permit(&counts);
        again.charge_client(ip("10.0.0.1"), true).unwrap();
        drop(again);
        let mut fourth = permit(&counts);
        assert_eq!(
            fourth.charge_client(ip("10.0.0.1"), true),
            Err(ClientRefusal::Handshakes),
            "three handshakes spent the burst"
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2:aaaa::1")),
            ClientKey::of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of(ip("::ffff:10.0.0.1")),
            ClientKey::of(ip("10.0.0.1"))
        );
    }

    #[test]
    fn forgotten_clients_are_swept() {
        let limits = ClientLimits::default().max_connections(10);
        let counts = ConnectionCounts::new(usize::MAX / 2, limits);
        for n in 0..(SWEEP_MIN as u32 * 3) {
            if let Admission::Serve(mut permit) = counts.admit() {
                permit
                    .charge_client(IpAddr::from(n.to_be_bytes()), false)
                    .unwrap();
            }
        }
        let table = counts.clients.as_ref().unwrap();
        assert!(
            table.entries().len() <= SWEEP_MIN,
            "{}",
            table.entries().len()
        );
    }
}
