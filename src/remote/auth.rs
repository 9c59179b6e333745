//! The shared key and the mutual challenge-response handshake of the
//! `lts agent` link (its key files: [`super::keyfile`]); on
//! success both sides get a [`Channel`] (see [`super::frame`]) keyed with a
//! fresh per-session key.
//!
//! The 32-byte secret never crosses the link. Each message is one plain frame
//! (cap [`HANDSHAKE_MAX_FRAME`]) laid out as
//! `[magic "LTS1"][u16 BE version][u8 kind][fields]`:
//!
//! | kind | message      | fields                                                    |
//! |------|--------------|-----------------------------------------------------------|
//! | 1    | `HostHello`  | `nonce_h` (32)                                            |
//! | 2    | `AgentHello` | `nonce_a` (32), `mac_a = HMAC(key, "lts-agent"‖nonce_h‖nonce_a)` (32) |
//! | 3    | `HostProof`  | `mac_h = HMAC(key, "lts-host"‖nonce_a‖nonce_h)` (32)      |
//! | 4    | `Accepted`   | none                                                      |
//! | 5    | `Reject`     | UTF-8 reason (rest of the frame)                          |
//!
//! The host sends `HostHello`, checks `mac_a` and sends `HostProof`; the agent
//! checks `mac_h` and sends `Accepted`. Both then use
//! `session_key = HMAC(key, "lts-session"‖nonce_h‖nonce_a)`. HMAC is
//! HMAC-SHA256 (RFC 2104); the three labels differ in length, so the MAC
//! inputs of different roles can never coincide. Nonces are 32 bytes from
//! `rand`'s OS-seeded CSPRNG, so a recorded proof is useless in a new session.
//!
//! `Reject`'s layout is frozen across versions and accepted with any version
//! number, so a peer can always tell why it was refused. Whoever detects a
//! protocol-level failure (bad magic, version, MAC, malformed message) sends
//! exactly one `Reject` (best effort) and returns its error; a transport
//! failure (timeout, closed link) sends nothing.

use std::fmt;
use std::io::{Read, Write};
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::frame::{
    read_frame, write_frame, Channel, Deadline, FrameError, Side, HANDSHAKE_MAX_FRAME,
};

/// Version of the handshake and framing protocol; both sides must match.
pub const PROTOCOL_VERSION: u16 = 1;
/// First bytes of every handshake message.
pub const MAGIC: &[u8; 4] = b"LTS1";
/// Length of the shared key and of the session key, in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a handshake nonce, in bytes.
pub const NONCE_LEN: usize = 32;
/// Reason sent in the `Reject` that answers a failed MAC check.
pub const AUTH_FAILED_REASON: &str = "authentication failed: the host and agent keys differ; \
     copy the key file made by `lts agent --init`";

const HEADER_LEN: usize = 7;
const MAX_REASON_CHARS: usize = 300;
const KIND_HOST_HELLO: u8 = 1;
const KIND_AGENT_HELLO: u8 = 2;
const KIND_HOST_PROOF: u8 = 3;
const KIND_ACCEPTED: u8 = 4;
const KIND_REJECT: u8 = 5;

type Nonce = [u8; NONCE_LEN];
type Tag = [u8; 32];

/// The shared secret of a host and an agent (32 random bytes). Its `Debug`
/// output is redacted and it has no `Display`.
#[derive(Clone)]
pub struct Key(pub(super) [u8; KEY_LEN]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// A new random key from `rand`'s OS-seeded CSPRNG.
    pub fn generate() -> Key {
        Key(rand::random())
    }

    /// Wrap raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    fn mac(&self, label: &[u8], first: &Nonce, second: &Nonce) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(label);
        m.update(first);
        m.update(second);
        m
    }

    fn tag(&self, label: &[u8], first: &Nonce, second: &Nonce) -> Tag {
        let out = self.mac(label, first, second).finalize();
        out.into_bytes().into()
    }

    /// Constant-time check of `tag` (`verify_slice` uses `subtle`).
    fn verify(&self, label: &[u8], first: &Nonce, second: &Nonce, tag: &Tag) -> bool {
        self.mac(label, first, second).verify_slice(tag).is_ok()
    }
}

/// Why a handshake failed. Each side returns one of these; see the module
/// docs for which failures also send a `Reject` to the peer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The peer's message does not start with the `LTS1` magic.
    #[error("the peer does not speak the lts agent protocol")]
    NotLts,
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: this side speaks version {ours}, the peer speaks version \
         {theirs}; update lts on the side with the older version"
    )]
    VersionMismatch {
        /// [`PROTOCOL_VERSION`].
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// (Host) the agent could not prove it holds the key: wrong key or an impostor.
    #[error(
        "authentication failed: the agent did not prove it holds this host's key (the host and \
         agent keys differ, or it is not our agent); copy the key file made by `lts agent --init`"
    )]
    AgentNotAuthenticated,
    /// (Agent) the host could not prove it holds the key: wrong key, an
    /// impostor, or a replayed proof.
    #[error(
        "authentication failed: the host did not prove it holds the agent's key (the host and \
         agent keys differ, or the handshake was replayed)"
    )]
    HostNotAuthenticated,
    /// The peer refused us with a `Reject` (reason sanitised for display).
    #[error("the peer refused the handshake: {reason}")]
    Rejected {
        /// The peer's reason, control characters replaced, length capped.
        reason: String,
    },
    /// A well-framed message of the wrong kind or length.
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    /// Framing or transport failure (timeout, closed link, oversized frame...).
    #[error("handshake: {0}")]
    Frame(FrameError),
}

impl From<FrameError> for AuthError {
    fn from(e: FrameError) -> Self {
        AuthError::Frame(e)
    }
}

/// A decoded handshake message (see the table in the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Msg {
    HostHello { nonce_h: Nonce },
    AgentHello { nonce_a: Nonce, mac_a: Tag },
    HostProof { mac_h: Tag },
    Accepted,
    Reject { version: u16, reason: String },
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let version = match self {
            Msg::Reject { version, .. } => *version,
            _ => PROTOCOL_VERSION,
        };
        out.extend_from_slice(&version.to_be_bytes());
        let (kind, fields): (u8, &[&[u8]]) = match self {
            Msg::HostHello { nonce_h } => (KIND_HOST_HELLO, &[nonce_h]),
            Msg::AgentHello { nonce_a, mac_a } => (KIND_AGENT_HELLO, &[nonce_a, mac_a]),
            Msg::HostProof { mac_h } => (KIND_HOST_PROOF, &[mac_h]),
            Msg::Accepted => (KIND_ACCEPTED, &[]),
            Msg::Reject { reason, .. } => (KIND_REJECT, &[reason.as_bytes()]),
        };
        out.push(kind);
        fields.iter().for_each(|f| out.extend_from_slice(f));
        out.truncate(HANDSHAKE_MAX_FRAME);
        out
    }

    /// Parse one message body. Never panics; a `Reject` is accepted with any
    /// version, any other kind only with [`PROTOCOL_VERSION`].
    fn decode(buf: &[u8]) -> Result<Msg, AuthError> {
        if buf.get(..MAGIC.len()) != Some(MAGIC) {
            return Err(AuthError::NotLts);
        }
        let version = match buf.get(4..6) {
            Some(v) => u16::from_be_bytes([v[0], v[1]]),
            None => return Err(AuthError::Malformed("truncated header")),
        };
        let kind = buf.get(6).copied();
        let fields = buf.get(HEADER_LEN..).unwrap_or_default();
        if kind == Some(KIND_REJECT) {
            let text = String::from_utf8_lossy(fields);
            let clean = text.chars().map(|c| if c.is_control() { '?' } else { c });
            let reason = clean.take(MAX_REASON_CHARS).collect();
            return Ok(Msg::Reject { version, reason });
        }
        if version != PROTOCOL_VERSION {
            return Err(mismatch(version));
        }
        let arr = |at: usize| -> Nonce { fields[at..at + 32].try_into().expect("length checked") };
        Ok(match (kind, fields.len()) {
            (Some(KIND_HOST_HELLO), 32) => Msg::HostHello { nonce_h: arr(0) },
            (Some(KIND_AGENT_HELLO), 64) => Msg::AgentHello {
                nonce_a: arr(0),
                mac_a: arr(32),
            },
            (Some(KIND_HOST_PROOF), 32) => Msg::HostProof { mac_h: arr(0) },
            (Some(KIND_ACCEPTED), 0) => Msg::Accepted,
            _ => return Err(AuthError::Malformed("unknown kind or wrong length")),
        })
    }
}

fn send<S: Write + ?Sized>(s: &mut S, msg: &Msg) -> Result<(), AuthError> {
    Ok(write_frame(s, &msg.encode())?)
}

/// Send the one `Reject` a protocol-level failure `e` earns (best effort:
/// write errors are ignored), then hand `e` back.
fn refuse<S: Write + ?Sized>(s: &mut S, side: Side, e: AuthError) -> AuthError {
    let (we, they) = match side {
        Side::Host => ("host", "agent"),
        Side::Agent => ("agent", "host"),
    };
    let reason = match &e {
        AuthError::NotLts => "not an lts handshake".to_string(),
        AuthError::VersionMismatch { ours, theirs } => format!(
            "protocol version mismatch: {we} speaks version {ours}, {they} speaks version \
             {theirs}; update lts on the side with the older version"
        ),
        AuthError::AgentNotAuthenticated | AuthError::HostNotAuthenticated => {
            AUTH_FAILED_REASON.to_string()
        }
        AuthError::Malformed(_)
        | AuthError::Frame(FrameError::TooLarge { .. } | FrameError::Empty) => {
            "malformed or unexpected handshake message".to_string()
        }
        _ => return e,
    };
    let version = PROTOCOL_VERSION;
    let _ = send(s, &Msg::Reject { version, reason });
    e
}

fn mismatch(theirs: u16) -> AuthError {
    AuthError::VersionMismatch {
        ours: PROTOCOL_VERSION,
        theirs,
    }
}

/// Receive one message; a `Reject` becomes the matching error, any other
/// failure is answered with [`refuse`].
fn recv<S>(s: &mut S, side: Side, deadline: Instant) -> Result<Msg, AuthError>
where
    S: Read + Write + Deadline + ?Sized,
{
    let msg = read_frame(s, HANDSHAKE_MAX_FRAME, deadline).map_err(AuthError::from);
    match msg.and_then(|body| Msg::decode(&body)) {
        Ok(Msg::Reject { version, .. }) if version != PROTOCOL_VERSION => Err(mismatch(version)),
        Ok(Msg::Reject { reason, .. }) => Err(AuthError::Rejected { reason }),
        Ok(msg) => Ok(msg),
        Err(e) => Err(refuse(s, side, e)),
    }
}

fn session(key: &Key, nonce_h: &Nonce, nonce_a: &Nonce, side: Side) -> Channel {
    Channel::new(&key.tag(b"lts-session", nonce_h, nonce_a), side)
}

/// Run the host side of the handshake on a fresh connection and return the
/// host's [`Channel`]. Refuses (and sends one `Reject` to) an agent that
/// cannot prove it holds `key`. The whole exchange must finish by `deadline`.
pub fn host_handshake<S>(s: &mut S, key: &Key, deadline: Instant) -> Result<Channel, AuthError>
where
    S: Read + Write + Deadline + ?Sized,
{
    let side = Side::Host;
    let nonce_h: Nonce = rand::random();
    send(s, &Msg::HostHello { nonce_h })?;
    let Msg::AgentHello { nonce_a, mac_a } = recv(s, side, deadline)? else {
        return Err(refuse(s, side, AuthError::Malformed("expected AgentHello")));
    };
    if !key.verify(b"lts-agent", &nonce_h, &nonce_a, &mac_a) {
        return Err(refuse(s, side, AuthError::AgentNotAuthenticated));
    }
    let mac_h = key.tag(b"lts-host", &nonce_a, &nonce_h);
    send(s, &Msg::HostProof { mac_h })?;
    match recv(s, side, deadline)? {
        Msg::Accepted => Ok(session(key, &nonce_h, &nonce_a, side)),
        _ => Err(refuse(s, side, AuthError::Malformed("expected Accepted"))),
    }
}

/// Run the agent side of the handshake on a freshly accepted connection and
/// return the agent's [`Channel`]. Refuses (and sends one `Reject` to) a host
/// of another version, a non-lts peer, or a host that cannot prove it holds
/// `key`. The whole exchange must finish by `deadline`.
pub fn agent_handshake<S>(s: &mut S, key: &Key, deadline: Instant) -> Result<Channel, AuthError>
where
    S: Read + Write + Deadline + ?Sized,
{
    let side = Side::Agent;
    let Msg::HostHello { nonce_h } = recv(s, side, deadline)? else {
        return Err(refuse(s, side, AuthError::Malformed("expected HostHello")));
    };
    let nonce_a: Nonce = rand::random();
    let mac_a = key.tag(b"lts-agent", &nonce_h, &nonce_a);
    send(s, &Msg::AgentHello { nonce_a, mac_a })?;
    let Msg::HostProof { mac_h } = recv(s, side, deadline)? else {
        return Err(refuse(s, side, AuthError::Malformed("expected HostProof")));
    };
    if !key.verify(b"lts-host", &nonce_a, &nonce_h, &mac_h) {
        return Err(refuse(s, side, AuthError::HostNotAuthenticated));
    }
    send(s, &Msg::Accepted)?;
    Ok(session(key, &nonce_h, &nonce_a, side))
}

#[cfg(test)]
mod tests {
    use super::super::frame::testutil::*;
    use super::*;
    use proptest::prelude::*;
    use std::io::{self, Cursor};
    use std::net::TcpStream;

    /// A stream that records everything written to it (`out`); it reads
    /// scripted bytes, or a socket, to which writes are then forwarded.
    struct Tap {
        input: Box<dyn Read + Send>,
        out: Vec<u8>,
        sock: Option<TcpStream>,
    }

    fn mem(input: Vec<u8>) -> Tap {
        let input = Box::new(Cursor::new(input));
        Tap {
            input,
            out: Vec::new(),
            sock: None,
        }
    }

    fn tap(sock: TcpStream) -> Tap {
        let input = Box::new(sock.try_clone().unwrap());
        Tap {
            input,
            out: Vec::new(),
            sock: Some(sock),
        }
    }

    impl Read for Tap {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Tap {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.out.extend_from_slice(buf);
            self.sock.as_mut().map_or(Ok(()), |s| s.write_all(buf))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Deadline for Tap {
        fn set_read_deadline(&mut self, d: Option<std::time::Duration>) -> io::Result<()> {
            self.sock
                .as_mut()
                .map_or(Ok(()), |s| s.set_read_deadline(d))
        }
    }

    /// A scripted peer: `msgs` (encoded), each as one frame.
    fn script(msgs: &[Vec<u8>]) -> Tap {
        let mut input = Vec::new();
        msgs.iter()
            .for_each(|m| write_frame(&mut input, m).unwrap());
        mem(input)
    }

    /// Decode every frame in `wire` (what a side sent).
    fn msgs(wire: &[u8]) -> Vec<Msg> {
        let mut r = wire;
        let mut out = Vec::new();
        while let Ok(body) = read_frame(&mut r, HANDSHAKE_MAX_FRAME, later()) {
            out.push(Msg::decode(&body).unwrap());
        }
        assert!(r.is_empty(), "undecodable tail");
        out
    }

    /// Kinds of the messages in `wire`, and the reason of its last `Reject`.
    fn sent(wire: &[u8]) -> (Vec<u8>, String) {
        let msgs = msgs(wire);
        let reason = match msgs.last() {
            Some(Msg::Reject { reason, .. }) => reason.clone(),
            _ => String::new(),
        };
        (msgs.iter().map(|m| m.encode()[6]).collect(), reason)
    }

    fn hello(nonce_h: Nonce) -> Vec<u8> {
        Msg::HostHello { nonce_h }.encode()
    }

    type Outcome = (Result<Channel, AuthError>, Tap);

    /// Host (key `kh`) and agent (key `ka`) over loopback TCP, each recording
    /// what it sent.
    fn run_pair(kh: [u8; 32], ka: [u8; 32]) -> (Outcome, Outcome) {
        let (h, a) = tcp_pair();
        let agent = std::thread::spawn(move || {
            let mut a = tap(a);
            (agent_handshake(&mut a, &Key(ka), later()), a)
        });
        let mut h = tap(h);
        let host = host_handshake(&mut h, &Key(kh), later());
        ((host, h), agent.join().unwrap())
    }

    const HH: u8 = KIND_HOST_HELLO;
    const AH: u8 = KIND_AGENT_HELLO;
    const REJ: u8 = KIND_REJECT;

    #[test]
    fn handshake_over_tcp_and_channels_interoperate() {
        let ((host, mut h), (agent, mut a)) = run_pair([1; 32], [1; 32]);
        let (mut host, mut agent) = (host.unwrap(), agent.unwrap());
        let (to_agent, to_host) = (host.seal(b"hi a").unwrap(), agent.seal(b"hi h").unwrap());
        assert_eq!(agent.open(&to_agent).unwrap(), b"hi a");
        assert_eq!(host.open(&to_host).unwrap(), b"hi h");
        host.send(&mut h, b"run").unwrap();
        assert_eq!(agent.recv(&mut a, later()).unwrap(), b"run");
        agent.send(&mut a, b"done").unwrap();
        assert_eq!(host.recv(&mut h, later()).unwrap(), b"done");
        let kinds = [HH, KIND_HOST_PROOF];
        assert_eq!(
            sent(&h.out[..h.out.len() - 47]).0,
            kinds,
            "then one sealed frame"
        );
        // A second session has a different session key.
        let ((host2, _), _) = run_pair([1; 32], [1; 32]);
        let e = host2.unwrap().open(&agent.seal(b"x").unwrap());
        assert_err!(e => FrameError::BadMac);
    }

    #[test]
    fn wrong_key_fails_on_both_sides_with_one_reject() {
        let ((host, h), (agent, a)) = run_pair([1; 32], [2; 32]);
        let shown = format!("{:#}", host.as_ref().unwrap_err());
        assert!(shown.contains("keys differ") && shown.contains("lts agent --init"));
        assert_err!(host => AuthError::AgentNotAuthenticated);
        assert_err!(agent => AuthError::Rejected { reason } if reason == AUTH_FAILED_REASON);
        // The refused agent was sent exactly one Reject; the host got none.
        assert_eq!(sent(&h.out), (vec![HH, REJ], AUTH_FAILED_REASON.into()));
        assert_eq!(sent(&a.out).0, [AH]);
        // Impostor agent (scripted, no key) against a real host.
        let junk = Msg::AgentHello {
            nonce_a: [3; 32],
            mac_a: [4; 32],
        }
        .encode();
        let mut s = script(&[junk]);
        let e = host_handshake(&mut s, &Key([1; 32]), later());
        assert_err!(e => AuthError::AgentNotAuthenticated);
        assert_eq!(sent(&s.out), (vec![HH, REJ], AUTH_FAILED_REASON.into()));
        // Rogue host (wrong key, skips checks) against a real agent.
        let proof = Msg::HostProof { mac_h: [5; 32] }.encode();
        let mut s = script(&[hello([6; 32]), proof]);
        let e = agent_handshake(&mut s, &Key([1; 32]), later());
        assert_err!(e => AuthError::HostNotAuthenticated);
        assert_eq!(sent(&s.out), (vec![AH, REJ], AUTH_FAILED_REASON.into()));
    }

    #[test]
    fn version_mismatch_and_bad_magic() {
        let key = Key([1; 32]);
        let mut v2 = hello([0; 32]);
        v2[4..6].copy_from_slice(&2u16.to_be_bytes());
        let mut s = script(&[v2]);
        let e = agent_handshake(&mut s, &key, later());
        assert_err!(e => AuthError::VersionMismatch { ours: 1, theirs: 2 });
        let (kinds, reason) = sent(&s.out);
        assert_eq!(kinds, [REJ]);
        assert!(reason.contains("agent speaks version 1, host speaks version 2"));
        assert!(reason.contains("update lts"), "{reason}");
        // The host turns a Reject from a v2 agent into VersionMismatch too.
        let reject = Msg::Reject {
            version: 2,
            reason: "v2 here".into(),
        };
        let mut s = script(&[reject.encode()]);
        let e = host_handshake(&mut s, &key, later());
        assert_err!(e => AuthError::VersionMismatch { ours: 1, theirs: 2 });
        assert_eq!(sent(&s.out).0, [HH], "no Reject back");
        // Bad magic, and a non-lts client (HTTP) whose "length" is huge.
        let mut s = script(&[b"XXXX\x00\x01\x01".to_vec()]);
        assert_err!(agent_handshake(&mut s, &key, later()) => AuthError::NotLts);
        assert_eq!(sent(&s.out), (vec![REJ], "not an lts handshake".into()));
        let mut s = mem(b"GET / HTTP/1.1\r\n\r\n".to_vec());
        let e = agent_handshake(&mut s, &key, later());
        assert_err!(e => AuthError::Frame(FrameError::TooLarge { .. }));
        // Wrong message kind: one Reject. Peer gone: nothing sent.
        let mut s = script(&[Msg::Accepted.encode()]);
        assert_err!(agent_handshake(&mut s, &key, later()) => AuthError::Malformed(_));
        assert_eq!(sent(&s.out).0, [REJ]);
        let mut s = script(&[]);
        let e = agent_handshake(&mut s, &key, later());
        assert_err!(e => AuthError::Frame(FrameError::Closed));
        assert!(s.out.is_empty());
    }

    #[test]
    fn replayed_handshake_messages_fail() {
        // Record a legitimate session, then replay each side's messages.
        let ((host, h), (agent, a)) = run_pair([9; 32], [9; 32]);
        assert!(host.is_ok() && agent.is_ok());
        let replay: Vec<Vec<u8>> = msgs(&h.out).iter().map(Msg::encode).collect();
        let mut s = script(&replay);
        let e = agent_handshake(&mut s, &Key([9; 32]), later());
        assert_err!(e => AuthError::HostNotAuthenticated);
        assert_eq!(sent(&s.out), (vec![AH, REJ], AUTH_FAILED_REASON.into()));
        let mut s = script(&[msgs(&a.out)[0].encode()]);
        let e = host_handshake(&mut s, &Key([9; 32]), later());
        assert_err!(e => AuthError::AgentNotAuthenticated);
    }

    #[test]
    fn reject_reasons_are_sanitised() {
        let reason = "a\x1b[2Jb\nc".to_string() + &"z".repeat(5000);
        let mut s = script(&[Msg::Reject { version: 1, reason }.encode()]);
        let e = host_handshake(&mut s, &Key([0; 32]), later());
        let ok = |r: &str| r.starts_with("a?[2Jb?c") && r.len() == MAX_REASON_CHARS;
        assert_err!(e => AuthError::Rejected { reason } if ok(&reason));
    }

    fn valid_msg() -> impl Strategy<Value = Msg> {
        let n = any::<[u8; 32]>();
        prop_oneof![
            n.prop_map(|nonce_h| Msg::HostHello { nonce_h }),
            (n, n).prop_map(|(nonce_a, mac_a)| Msg::AgentHello { nonce_a, mac_a }),
            n.prop_map(|mac_h| Msg::HostProof { mac_h }),
            Just(Msg::Accepted),
            ".{0,40}".prop_map(|reason| Msg::Reject { version: 1, reason }),
        ]
    }

    proptest! {
        #![proptest_config(fuzz_config())]

        #[test]
        fn fuzz_handshake_decode(msg in valid_msg(), muts in mutations(),
                                 junk in prop::collection::vec(any::<u8>(), 0..100)) {
            let _ = Msg::decode(&junk);
            let orig = msg.encode();
            if !matches!(msg, Msg::Reject { .. }) {
                prop_assert_eq!(&Msg::decode(&orig).unwrap(), &msg);
            }
            let mut bytes = orig.clone();
            apply(&mut bytes, &muts, 4, 0);
            if let Ok(m) = Msg::decode(&bytes) {
                let changed = bytes != orig && !matches!(m, Msg::Reject { .. });
                prop_assert!(!changed || m != msg, "{:?}", m);
            }
        }

        #[test]
        fn fuzz_handshake_peers(kind in 0u8..2, m1 in valid_msg(), m2 in valid_msg(),
                                muts in mutations()) {
            // Scripted (possibly mutated) transcripts never authenticate anyone.
            let mut input = Vec::new();
            write_frame(&mut input, &m1.encode()).unwrap();
            write_frame(&mut input, &m2.encode()).unwrap();
            apply(&mut input, &muts, 0, 4);
            let mut s = mem(input);
            let key = Key([3; 32]);
            let r = match kind {
                0 => host_handshake(&mut s, &key, later()),
                _ => agent_handshake(&mut s, &key, later()),
            };
            prop_assert!(r.is_err());
            let out = msgs(&s.out);
            let rejects = out.iter().filter(|m| matches!(m, Msg::Reject { .. })).count();
            prop_assert!(rejects <= 1, "{:?}", out);
        }
    }
}
