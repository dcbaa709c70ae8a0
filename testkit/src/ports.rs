//! Loopback ports for services that tests start, stop and start again.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::net::{Ipv4Addr, TcpListener};

use crate::Error;

/// A port free on 127.0.0.1, picked below Linux's default ephemeral range
/// (32768-60999) so that outgoing connections cannot take it while its
/// service is down between a kill and a restart. (Binding port 0 would hand
/// out an ephemeral port: exactly the range those connections draw from.)
/// Whoever binds it next may still lose a race for it; a caller that can
/// should retry with another port.
///
/// # Errors
///
/// [`Error::Io`] when 200 random ports in 20000-31999 are all taken.
pub fn free_port() -> Result<u16, Error> {
    let random = RandomState::new();
    let mut last = None;
    for attempt in 0u64..200 {
        let offset = random.hash_one((std::process::id(), attempt)) % 12_000;
        let port = 20_000 + u16::try_from(offset).unwrap_or(0);
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(_) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Io {
        what: "finding a free port on 127.0.0.1 in 20000-31999 (200 tries)".to_owned(),
        source: last.unwrap_or_else(|| std::io::Error::other("no port tried")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable_and_below_the_ephemeral_range() {
        let port = free_port().expect("some port is free");
        assert!((20_000..32_000).contains(&port), "{port}");
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is still free");
    }
}
