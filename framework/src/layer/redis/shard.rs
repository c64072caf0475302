//! Which Redis server holds a name: a stable hash, the same in every process and every release.

/// FNV-1a (64 bit): tiny, stable across platforms and versions, and well spread on short names.
/// `std`'s hasher is randomly seeded per process, so it cannot be used here.
pub(crate) fn shard_of(name: &str, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_spread() {
        assert_eq!(shard_of("chat_lobby", 1), 0);
        assert_eq!(shard_of("chat_lobby", 2), shard_of("chat_lobby", 2));
        let ones = (0..1000)
            .filter(|n| shard_of(&format!("chat_{n}"), 2) == 1)
            .count();
        assert!((400..600).contains(&ones), "{ones}");
    }
}
