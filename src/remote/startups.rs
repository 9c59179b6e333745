//! The agent's bound on unauthenticated connections (`lts agent --max-startups`, after
//! OpenSSH's `MaxStartups`): a connection counts from its accept until its handshake ends, so a
//! flood of peers without the key holds at most that many sockets and threads.
//!
//! When the bound is reached, a new connection is not refused (a flood would then lock out the
//! honest hosts): room is made by shutting down a pending one, the oldest *idle* one first (it
//! has sent no byte yet: honest hosts send their hello as soon as they connect), else the
//! oldest. An honest host evicted mid-handshake reconnects ([`super::host::Client::connect`]).

use std::collections::BTreeMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Default of `lts agent --max-startups`.
pub const DEFAULT_MAX_STARTUPS: usize = 16;

/// What a pending connection and its [`Slot`] share.
#[derive(Default)]
struct Flags {
    /// Its peer sent its first bytes.
    spoke: AtomicBool,
    /// It was shut down to make room.
    evicted: AtomicBool,
}

/// One pending connection: a second handle on its socket (to shut it down) and its flags.
struct Pending {
    sock: TcpStream,
    flags: Arc<Flags>,
}

/// The pending (unauthenticated) connections of one agent, oldest first.
pub struct Startups {
    max: usize,
    pending: Mutex<(u64, BTreeMap<u64, Pending>)>,
    evictions: AtomicU64,
}

/// A pending connection's place; dropping it (handshake done, failed, or its thread gone)
/// frees the place, so every exit path counts.
pub struct Slot {
    startups: Arc<Startups>,
    id: u64,
    flags: Arc<Flags>,
}

impl Slot {
    /// Records that the peer sent its first bytes: from now on it is evicted only after
    /// every idle connection.
    pub fn spoke(&self) {
        self.flags.spoke.store(true, Ordering::Relaxed);
    }

    /// Whether it was shut down to make room for a newer connection (its handshake then
    /// fails; nothing to log).
    pub fn evicted(&self) -> bool {
        self.flags.evicted.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.startups.lock().1.remove(&self.id);
    }
}

impl Startups {
    /// At most `max` (at least 1) connections pending at once.
    pub fn new(max: usize) -> Arc<Startups> {
        Arc::new(Startups {
            max: max.max(1),
            pending: Mutex::new((0, BTreeMap::new())),
            evictions: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, Pending>)> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections pending now.
    pub fn len(&self) -> usize {
        self.lock().1.len()
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections shut down to make room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admits `stream` as pending, first shutting down one pending connection when the bound
    /// is reached (see the module docs). Fails (drop the connection) when no second handle on
    /// the socket can be had (out of file descriptors).
    pub fn admit(self: &Arc<Self>, stream: &TcpStream) -> std::io::Result<Slot> {
        let sock = stream.try_clone()?;
        let mut p = self.lock();
        while p.1.len() >= self.max {
            let victim =
                p.1.iter()
                    .find(|(_, e)| is_idle(e))
                    .or_else(|| p.1.iter().next())
                    .map(|(&id, _)| id);
            if let Some(e) = victim.and_then(|id| p.1.remove(&id)) {
                e.flags.evicted.store(true, Ordering::Relaxed);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                // Its thread's next read returns end of file; its handshake fails and ends.
                let _ = e.sock.shutdown(Shutdown::Both);
            }
        }
        p.0 += 1;
        let id = p.0;
        let flags = Arc::new(Flags::default());
        let shared = Arc::clone(&flags);
        p.1.insert(id, Pending { sock, flags });
        Ok(Slot {
            startups: Arc::clone(self),
            id,
            flags: shared,
        })
    }
}

/// Whether a pending connection's peer has sent nothing yet (none read, none waiting), or
/// has already closed it.
fn is_idle(e: &Pending) -> bool {
    !e.flags.spoke.load(Ordering::Relaxed) && !bytes_waiting(&e.sock)
}

/// Whether bytes wait to be read on `sock` (false at end of file), without blocking and
/// without consuming them (the connection's own thread still reads them).
#[cfg(unix)]
fn bytes_waiting(sock: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    // SAFETY: a valid socket (owned by `sock`) and a 1-byte buffer that outlives the call.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
}

#[cfg(not(unix))]
fn bytes_waiting(_: &TcpStream) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A connected pair: (client side, the agent's side).
    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    /// Whether the agent's side of a connection was shut down (reads end of file).
    fn was_shut(s: &mut TcpStream) -> bool {
        s.set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        matches!(s.read(&mut [0u8; 1]), Ok(0))
    }

    #[test]
    fn the_bound_evicts_the_oldest_idle_connection_and_slots_free_their_place() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let st = Startups::new(3);
        // An honest host: it speaks at once (its hello waits, not yet read).
        let (mut honest_c, mut honest) = pair(&l);
        honest_c.write_all(b"hello").unwrap();
        let honest_slot = st.admit(&honest).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Then idle peers, more than the bound.
        let mut idle = Vec::new();
        for _ in 0..4 {
            let (c, s) = pair(&l);
            let slot = st.admit(&s).unwrap();
            idle.push((c, s, slot));
        }
        assert_eq!(st.len(), 3);
        // The two oldest idle ones were shut down, the honest host was kept.
        assert!(was_shut(&mut idle[0].1) && idle[0].2.evicted());
        assert!(was_shut(&mut idle[1].1));
        assert_eq!(st.evictions(), 2);
        assert!(!was_shut(&mut idle[3].1));
        let mut got = [0u8; 5];
        honest.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // Its hello is read now: it still counts as having spoken.
        honest_slot.spoke();
        for _ in 0..2 {
            let (c, s) = pair(&l);
            let slot = st.admit(&s).unwrap();
            idle.push((c, s, slot));
        }
        assert!(!was_shut(&mut honest));
        // When every pending peer has spoken, the oldest goes.
        idle.drain(..4);
        idle.iter().for_each(|(_, _, slot)| slot.spoke());
        let (_c, s) = pair(&l);
        let last = st.admit(&s).unwrap();
        assert!(was_shut(&mut honest));
        assert!(!was_shut(&mut idle[0].1));
        drop(idle);
        drop(last);
        assert!(st.is_empty(), "dropped slots free their place");
        drop(honest_slot);
        assert!(st.is_empty());
    }
}
