//! Which host holds a name: channels_redis' `_consistent_hash`, bit for bit.

/// `int((binascii.crc32(name) & 0xFFF) / (4096 / ring_size))`: the CRC-32 of the UTF-8 name,
/// its low 12 bits, scaled down to the number of hosts. One host is always host 0.
///
/// The division is done in `f64` as Python does it, so a name lands on the same host in a Django
/// process and in this one whatever the number of hosts.
pub(crate) fn consistent_hash(name: &str, ring_size: usize) -> usize {
    if ring_size <= 1 {
        return 0;
    }
    let bigval = crc32fast::hash(name.as_bytes()) & 0xFFF;
    let ring_divisor = 4096.0 / ring_size as f64;
    // Truncation towards zero, as Python's int(); below ring_size since bigval < 4096.
    ((f64::from(bigval) / ring_divisor) as usize).min(ring_size - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from channels_redis 4.3.0's `_consistent_hash` (Python 3.11).
    #[test]
    fn matches_channels_redis() {
        let cases = [
            ("chat_lobby", 2, 1),
            ("chat_lobby", 3, 1),
            ("asgi:group:chat_lobby", 2, 0),
            ("specific.0123456789abcdef!", 2, 0),
            ("specific.0123456789abcdef!", 5, 0),
            ("asgi__group__chat_lobby", 4, 0),
            ("thumbnails", 7, 6),
            ("", 3, 0),
            ("é", 2, 1),
        ];
        for (name, ring, host) in cases {
            assert_eq!(consistent_hash(name, ring), host, "{name:?} over {ring}");
        }
        let spread: Vec<usize> = (0..12)
            .map(|n| consistent_hash(&format!("specific.{n:032x}!"), 3))
            .collect();
        assert_eq!(spread, [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2]);
        let spread: Vec<usize> = (0..10)
            .map(|n| consistent_hash(&format!("chat_{n}"), 2))
            .collect();
        assert_eq!(spread, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(consistent_hash("anything", 1), 0);
        assert_eq!(consistent_hash("anything", 0), 0);
    }
}
