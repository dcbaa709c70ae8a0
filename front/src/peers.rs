//! How many connections each peer address holds open, and the cap on it.
//!
//! Key decision: the cap is per IP address, not per socket address, because
//! one host opening many ports is exactly the pattern to bound. Behind a
//! proxy or a mesh every client shares the proxy's address, so there the cap
//! must be set above what the proxy opens (docs/ingest.md says so).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Open connections per peer address, with the cap.
#[derive(Debug)]
pub struct Peers {
    max_per_peer: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; its count is given back when it is dropped.
#[derive(Debug)]
pub struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    /// A table that lets each peer hold `max_per_peer` connections.
    pub fn new(max_per_peer: usize) -> Arc<Self> {
        Arc::new(Self { max_per_peer, open: Mutex::new(HashMap::new()) })
    }

    /// Counts a new connection from `ip`; `None` when that peer already holds
    /// its cap (the caller closes the connection).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        // The map is only ever updated whole under the lock, so a poisoned
        // lock still holds consistent counts.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max_per_peer {
            return None;
        }
        *count += 1;
        Some(PeerSlot { peers: self.clone(), ip })
    }

    #[cfg(test)]
    fn open_from(&self, ip: IpAddr) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            // Peers that left take no memory: the map holds only peers with
            // connections open, however many addresses ever connected.
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_at_most_its_cap_and_others_are_not_affected() {
        let peers = Peers::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("an address");
        let b: IpAddr = "10.0.0.2".parse().expect("an address");
        let first = peers.admit(a).expect("first");
        let _second = peers.admit(a).expect("second");
        assert!(peers.admit(a).is_none(), "a third connection from the same peer");
        let _other = peers.admit(b).expect("another peer is not affected");
        drop(first);
        assert_eq!(peers.open_from(a), 1);
        let _again = peers.admit(a).expect("a closed connection frees its slot");
    }

    #[test]
    fn peers_without_connections_leave_the_table() {
        let peers = Peers::new(1);
        let a: IpAddr = "::1".parse().expect("an address");
        drop(peers.admit(a));
        assert!(peers.open.lock().expect("not poisoned").is_empty());
    }
}
