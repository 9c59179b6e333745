//! Framing and per-frame authentication for the `lts agent` link (the two
//! lowest protocol layers; [`super::auth`] runs the handshake on top of them).
//!
//! Everything works over any `Read + Write` byte stream (a `TcpStream`, a
//! serial port, an in-memory pipe); reads are bounded in size *and* time.
//!
//! * Plain frame (used by the handshake): `[u32 BE length L][L bytes body]`,
//!   `1 <= L <= cap <= MAX_FRAME`. The length is checked before anything is
//!   allocated, and the body buffer only grows as bytes actually arrive.
//! * Sealed frame (after the handshake), the body of a plain frame:
//!   `[u64 BE seq][32-byte tag][payload]` with
//!   `tag = HMAC-SHA256(session_key, label || seq_be || payload)`
//!   (HMAC per RFC 2104, SHA-256 per FIPS 180-4), `label` being
//!   [`LABEL_H2A`] or [`LABEL_A2H`] for the sending direction. Sequence numbers
//!   start at 0 per direction and must arrive strictly consecutively.
//!
//! Payloads are integrity-protected, not encrypted. On any error the caller
//! should drop the connection: the stream position or the channel state may
//! no longer be usable.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Hard upper bound on a frame body (8 MiB); no cap passed to [`read_frame`]
/// can raise it.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;
/// Cap used for handshake frames (4 KiB): an unauthenticated peer can never
/// make us buffer more than this.
pub const HANDSHAKE_MAX_FRAME: usize = 4 * 1024;
/// Size of the big-endian `u32` length prefix of every frame.
pub const LEN_PREFIX: usize = 4;
/// Size of the big-endian `u64` sequence number of a sealed frame.
pub const SEQ_LEN: usize = 8;
/// Size of the HMAC-SHA256 tag of a sealed frame.
pub const TAG_LEN: usize = 32;
/// Bytes a sealed body adds to its payload (`seq` + `tag`).
pub const SEALED_OVERHEAD: usize = SEQ_LEN + TAG_LEN;
/// Largest payload [`Channel::seal`] accepts (so the sealed body fits [`MAX_FRAME`]).
pub const MAX_SEALED_PAYLOAD: usize = MAX_FRAME - SEALED_OVERHEAD;
/// MAC label of frames sent by the host to the agent.
pub const LABEL_H2A: &[u8; 7] = b"lts-h2a";
/// MAC label of frames sent by the agent to the host.
pub const LABEL_A2H: &[u8; 7] = b"lts-a2h";

/// Bodies are read (and the buffer grown) in chunks of at most this size.
const READ_CHUNK: usize = 64 * 1024;
/// Pause after an early `WouldBlock`, so a non-blocking transport is not spun on.
const POLL_PAUSE: Duration = Duration::from_millis(1);

/// Why reading, writing, sealing or opening a frame failed. The variants are
/// distinct so the agent can answer with one error frame and drop the peer.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced (or requested) body length exceeds the cap in force.
    #[error("frame of {len} bytes exceeds the limit of {cap} bytes")]
    TooLarge {
        /// Announced or requested body length.
        len: usize,
        /// Cap in force.
        cap: usize,
    },
    /// A frame announced a body of length 0, which is never valid.
    #[error("empty frame (length 0)")]
    Empty,
    /// The peer closed the stream in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The peer closed the stream cleanly between frames.
    #[error("connection closed by the peer")]
    Closed,
    /// The deadline passed before a whole frame arrived.
    #[error("timed out waiting for a frame")]
    Timeout,
    /// A sealed frame does not verify: corrupted, forged, truncated below
    /// its 40-byte header, wrong key or wrong direction.
    #[error("frame authentication failed (bad MAC)")]
    BadMac,
    /// An authentic sealed frame arrived out of sequence (replayed,
    /// duplicated, reordered or after a lost frame).
    #[error(
        "frame out of sequence: got seq {got}, expected {expected} (replayed, reordered or lost)"
    )]
    Replayed {
        /// Sequence number carried by the frame.
        got: u64,
        /// Sequence number that was due.
        expected: u64,
    },
    /// The 64-bit sequence space of a direction is used up; reconnect.
    #[error("sequence numbers exhausted; reconnect to start a new session")]
    SeqExhausted,
    /// The transport failed.
    #[error("link I/O error: {0}")]
    Io(io::Error),
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// A transport that can bound how long one `read` blocks, so [`read_frame`]
/// can enforce an overall deadline against a peer that trickles or stalls.
///
/// A serial port implements it with its own read-timeout setting. A read that
/// runs out of time must fail with `WouldBlock` or `TimedOut`, never return
/// `Ok(0)`: that means end of stream ([`FrameError::Closed`]/`Truncated`).
pub trait Deadline {
    /// Limit the next reads to block at most `remaining` (`None`: no limit).
    fn set_read_deadline(&mut self, remaining: Option<Duration>) -> io::Result<()>;
}

impl Deadline for TcpStream {
    /// Uses `set_read_timeout`; the timeout stays armed after [`read_frame`]
    /// returns. A zero duration is raised to 1 ms (zero is rejected by std).
    fn set_read_deadline(&mut self, remaining: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(remaining.map(|d| d.max(Duration::from_millis(1))))
    }
}

impl Deadline for &[u8] {
    /// In-memory input never blocks; nothing to do.
    fn set_read_deadline(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

impl<T: Deadline + ?Sized> Deadline for Box<T> {
    /// Forwards to the boxed transport.
    fn set_read_deadline(&mut self, remaining: Option<Duration>) -> io::Result<()> {
        (**self).set_read_deadline(remaining)
    }
}

impl<T: Deadline + ?Sized> Deadline for &mut T {
    /// Forwards to the referenced transport.
    fn set_read_deadline(&mut self, remaining: Option<Duration>) -> io::Result<()> {
        (**self).set_read_deadline(remaining)
    }
}

/// The only place that reads from the transport: fills `buf`, re-arming the
/// remaining time before every read. Returns the bytes read: fewer than
/// `buf.len()` only at end of stream.
fn fill<R: Read + Deadline + ?Sized>(
    r: &mut R,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<usize, FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(FrameError::Timeout);
        }
        r.set_read_deadline(Some(remaining))?;
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n.min(buf.len() - filled),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // Past the deadline: the loop head reports Timeout. Woken early
                // (coarse timer, non-blocking transport): pause, then retry.
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(left.min(POLL_PAUSE));
            }
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(filled)
}

/// Read one plain frame and return its body.
///
/// `cap` bounds the body length (never above [`MAX_FRAME`]); it is checked
/// before any allocation, and the buffer then grows only as data arrives, so
/// a peer announcing a large frame and stalling costs at most 64 KiB.
/// Fails with [`FrameError::Timeout`] once `deadline` passes, even if bytes
/// keep trickling in; [`FrameError::Closed`] on a clean end of stream before
/// the frame, [`FrameError::Truncated`] inside it.
pub fn read_frame<R: Read + Deadline + ?Sized>(
    r: &mut R,
    cap: usize,
    deadline: Instant,
) -> Result<Vec<u8>, FrameError> {
    let cap = cap.min(MAX_FRAME);
    let mut prefix = [0u8; LEN_PREFIX];
    match fill(r, &mut prefix, deadline)? {
        LEN_PREFIX => {}
        0 => return Err(FrameError::Closed),
        _ => return Err(FrameError::Truncated),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > cap {
        return Err(FrameError::TooLarge { len, cap });
    }
    let mut body: Vec<u8> = Vec::with_capacity(len.min(READ_CHUNK));
    while body.len() < len {
        let start = body.len();
        let end = (start + READ_CHUNK).min(len);
        // Grow geometrically (amortised copies) but never past `len`.
        let target = (body.capacity() * 2).max(end).min(len);
        body.reserve_exact(target - start);
        body.resize(end, 0);
        if fill(r, &mut body[start..end], deadline)? < end - start {
            return Err(FrameError::Truncated);
        }
    }
    Ok(body)
}

/// Encode a body as one plain frame (length prefix + body), as pure bytes.
pub fn encode_frame(body: &[u8]) -> Result<Vec<u8>, FrameError> {
    match body.len() {
        0 => return Err(FrameError::Empty),
        len if len > MAX_FRAME => {
            return Err(FrameError::TooLarge {
                len,
                cap: MAX_FRAME,
            })
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(LEN_PREFIX + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Write one plain frame and flush. Prefix and body go out in a single
/// `write_all`, so TCP does not send a lone 4-byte segment (Nagle + delayed
/// ACK would otherwise stall small request/response exchanges).
pub fn write_frame<W: Write + ?Sized>(w: &mut W, body: &[u8]) -> Result<(), FrameError> {
    let buf = encode_frame(body)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Which end of the link a [`Channel`] belongs to; selects the MAC labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The host (sends with [`LABEL_H2A`], receives [`LABEL_A2H`]).
    Host,
    /// The agent on the board (sends with [`LABEL_A2H`], receives [`LABEL_H2A`]).
    Agent,
}

impl Side {
    /// (label of frames this side sends, label of frames it receives).
    fn labels(self) -> (&'static [u8; 7], &'static [u8; 7]) {
        match self {
            Side::Host => (LABEL_H2A, LABEL_A2H),
            Side::Agent => (LABEL_A2H, LABEL_H2A),
        }
    }
}

/// One side of an authenticated session: the session key plus the send
/// sequence number and the next expected receive sequence number.
///
/// Built by [`super::auth::host_handshake`] / [`super::auth::agent_handshake`].
/// `Clone` gives an independent copy of the state, so a reader thread can own
/// one copy (only `recv`) while the writer keeps the other (only `send`);
/// sending from two copies reuses sequence numbers and the peer refuses it.
#[derive(Clone)]
pub struct Channel {
    mac: HmacSha256,
    side: Side,
    send_seq: u64,
    recv_seq: u64,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("side", &self.side)
            .field("send_seq", &self.send_seq)
            .field("recv_seq", &self.recv_seq)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Channel {
    /// A fresh channel (both sequence numbers at 0) for `side` under `session_key`.
    pub fn new(session_key: &[u8; 32], side: Side) -> Self {
        let mac = HmacSha256::new_from_slice(session_key).expect("HMAC takes keys of any length");
        Channel {
            mac,
            side,
            send_seq: 0,
            recv_seq: 0,
        }
    }

    /// Sequence number the next sealed frame will carry.
    pub fn next_send_seq(&self) -> u64 {
        self.send_seq
    }

    /// Sequence number the next opened frame must carry.
    pub fn next_recv_seq(&self) -> u64 {
        self.recv_seq
    }

    fn tag(&self, label: &[u8], seq: u64, payload: &[u8]) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(label);
        m.update(&seq.to_be_bytes());
        m.update(payload);
        m
    }

    /// Append the sealed body of `payload` to `out`, consuming a sequence number.
    fn seal_into(&mut self, out: &mut Vec<u8>, payload: &[u8]) -> Result<(), FrameError> {
        if payload.len() > MAX_SEALED_PAYLOAD {
            return Err(FrameError::TooLarge {
                len: payload.len(),
                cap: MAX_SEALED_PAYLOAD,
            });
        }
        let seq = self.send_seq;
        if seq == u64::MAX {
            return Err(FrameError::SeqExhausted);
        }
        let tag = self
            .tag(self.side.labels().0, seq, payload)
            .finalize()
            .into_bytes();
        out.reserve(SEALED_OVERHEAD + payload.len());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&tag);
        out.extend_from_slice(payload);
        self.send_seq = seq + 1;
        Ok(())
    }

    /// Seal `payload` into a frame body `[seq][tag][payload]` (pure, no I/O).
    /// Consumes a sequence number: a sealed body that is never delivered makes
    /// the peer reject every later frame as out of sequence.
    pub fn seal(&mut self, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        self.seal_into(&mut out, payload)?;
        Ok(out)
    }

    /// Verify a received frame body and return its payload (pure, no I/O).
    /// The tag is checked first, in constant time ([`FrameError::BadMac`]),
    /// then the sequence number must be exactly the next expected one
    /// ([`FrameError::Replayed`]). State changes only on success.
    pub fn open(&mut self, body: &[u8]) -> Result<Vec<u8>, FrameError> {
        if body.len() < SEALED_OVERHEAD {
            return Err(FrameError::BadMac);
        }
        let (seq_bytes, rest) = body.split_at(SEQ_LEN);
        let (tag, payload) = rest.split_at(TAG_LEN);
        let seq = u64::from_be_bytes(seq_bytes.try_into().expect("split at SEQ_LEN"));
        self.tag(self.side.labels().1, seq, payload)
            .verify_slice(tag)
            .map_err(|_| FrameError::BadMac)?;
        if seq != self.recv_seq {
            return Err(FrameError::Replayed {
                got: seq,
                expected: self.recv_seq,
            });
        }
        self.recv_seq = seq.checked_add(1).ok_or(FrameError::SeqExhausted)?;
        Ok(payload.to_vec())
    }

    /// Seal `payload` and write it as one frame (see [`write_frame`]).
    pub fn send<W: Write + ?Sized>(&mut self, w: &mut W, payload: &[u8]) -> Result<(), FrameError> {
        let mut buf = vec![0u8; LEN_PREFIX];
        self.seal_into(&mut buf, payload)?;
        let len = (buf.len() - LEN_PREFIX) as u32;
        buf[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
        w.write_all(&buf)?;
        w.flush()?;
        Ok(())
    }

    /// Read one frame (cap [`MAX_FRAME`], bounded by `deadline`) and open it.
    pub fn recv<R: Read + Deadline + ?Sized>(
        &mut self,
        r: &mut R,
        deadline: Instant,
    ) -> Result<Vec<u8>, FrameError> {
        let body = read_frame(r, MAX_FRAME, deadline)?;
        self.open(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;
    use FrameError::*;

    fn pair() -> (Channel, Channel) {
        let k = [7u8; 32];
        (Channel::new(&k, Side::Host), Channel::new(&k, Side::Agent))
    }

    fn read_all(bytes: &[u8], cap: usize) -> Result<Vec<u8>, FrameError> {
        read_frame(&mut &bytes[..], cap, later())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Any reader: records the bytes consumed and the largest buffer it was
    /// asked to fill. `trickle: Some(honor)` serves one byte per 50 ms; with
    /// `honor` it also respects the armed deadline like a socket.
    struct Mock<R> {
        inner: R,
        trickle: Option<bool>,
        armed: Option<Duration>,
        consumed: usize,
        max_buf: usize,
    }

    fn mock<R: Read>(inner: R, trickle: Option<bool>) -> Mock<R> {
        let (armed, consumed, max_buf) = (None, 0, 0);
        Mock {
            inner,
            trickle,
            armed,
            consumed,
            max_buf,
        }
    }

    impl<R: Read> Read for Mock<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.max_buf = self.max_buf.max(buf.len());
            let mut want = buf.len();
            if let Some(honor) = self.trickle {
                match self.armed {
                    Some(left) if honor && left < ms(50) => {
                        std::thread::sleep(left);
                        return Err(ErrorKind::WouldBlock.into());
                    }
                    _ => std::thread::sleep(ms(50)),
                }
                want = 1;
            }
            let n = self.inner.read(&mut buf[..want])?;
            self.consumed += n;
            Ok(n)
        }
    }

    impl<R> Deadline for Mock<R> {
        fn set_read_deadline(&mut self, remaining: Option<Duration>) -> io::Result<()> {
            self.armed = remaining;
            Ok(())
        }
    }

    #[test]
    fn plain_round_trips_and_lengths() {
        let mut wire = Vec::new();
        let big: Vec<u8> = (0..(3 * READ_CHUNK + 17)).map(|i| i as u8).collect();
        for body in [&b"x"[..], b"hello", &big] {
            write_frame(&mut wire, body).unwrap();
        }
        let mut r = &wire[..];
        for body in [&b"x"[..], b"hello", &big] {
            assert_eq!(read_frame(&mut r, MAX_FRAME, later()).unwrap(), body);
        }
        assert_err!(read_frame(&mut r, MAX_FRAME, later()) => Closed);
        assert_err!(read_all(&[], MAX_FRAME) => Closed);
        assert_err!(read_all(&[0, 0], MAX_FRAME) => Truncated);
        assert_err!(read_all(&[0, 0, 0, 5, 1, 2], MAX_FRAME) => Truncated);
        assert_err!(read_all(&[0, 0, 0, 0, 1], MAX_FRAME) => Empty);
        assert_err!(write_frame(&mut Vec::new(), b"") => Empty);
        assert_err!(encode_frame(&vec![0; MAX_FRAME + 1]) => TooLarge { .. });
        assert_err!(read_all(&[0, 0, 0, 2, 1, 2], 1) => TooLarge { len: 2, cap: 1 });
        // A cap above MAX_FRAME is clamped to it.
        let announce = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let e = read_all(&announce, usize::MAX);
        assert_err!(e => TooLarge { len, cap: MAX_FRAME } if len == MAX_FRAME + 1);
    }

    #[test]
    fn announced_length_is_checked_before_allocating() {
        // Announce ~4 GiB against a 4 KiB cap, followed by endless bytes.
        let mut r = mock(
            Cursor::new(u32::MAX.to_be_bytes()).chain(io::repeat(0)),
            None,
        );
        let t = Instant::now();
        let e = read_frame(&mut r, HANDSHAKE_MAX_FRAME, later());
        assert_err!(e => TooLarge { len: 0xFFFF_FFFF, cap: HANDSHAKE_MAX_FRAME });
        assert!(t.elapsed() < ms(50));
        // Nothing past the 4-byte prefix was read, so no body buffer existed.
        assert_eq!((r.consumed, r.max_buf), (4, 4));
        // 8 MiB announced, 10 bytes sent: reads never ask for more than a chunk.
        let mut data = (MAX_FRAME as u32).to_be_bytes().to_vec();
        data.extend_from_slice(&[1; 10]);
        let mut r = mock(&data[..], None);
        assert_err!(read_frame(&mut r, MAX_FRAME, later()) => Truncated);
        assert_eq!((r.consumed, r.max_buf), (14, READ_CHUNK));
    }

    #[test]
    fn sealed_round_trip_both_directions() {
        let (mut host, mut agent) = pair();
        for i in 0..5u8 {
            assert_eq!(agent.open(&host.seal(&[i; 3]).unwrap()).unwrap(), [i; 3]);
            assert_eq!(host.open(&agent.seal(&[]).unwrap()).unwrap(), b"");
        }
        assert_eq!((host.next_send_seq(), host.next_recv_seq()), (5, 5));
        let mut wire = Vec::new();
        host.send(&mut wire, b"over a stream").unwrap();
        assert_eq!(
            agent.recv(&mut &wire[..], later()).unwrap(),
            b"over a stream"
        );
        assert!(format!("{host:?}").contains("<redacted>"));
        assert_err!(pair().0.seal(&vec![0; MAX_SEALED_PAYLOAD + 1]) => TooLarge { .. });
        host.send_seq = u64::MAX;
        assert_err!(host.seal(b"x") => SeqExhausted);
    }

    #[test]
    fn any_corrupted_byte_is_bad_mac() {
        let body = pair().0.seal(b"payload bytes").unwrap();
        for i in 0..body.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = body.clone();
                bad[i] ^= bit;
                let mut agent = pair().1;
                assert_err!(agent.open(&bad) => BadMac);
                assert_eq!(agent.next_recv_seq(), 0);
            }
        }
        assert_err!(pair().1.open(&body[..39]) => BadMac);
        assert_err!(pair().1.open(&body[..40]) => BadMac);
    }

    #[test]
    fn replayed_duplicated_reordered_frames_rejected() {
        let (mut host, mut agent) = pair();
        let f: Vec<Vec<u8>> = (0..4u8).map(|i| host.seal(&[i]).unwrap()).collect();
        assert_eq!(agent.open(&f[0]).unwrap(), [0]);
        assert_err!(agent.open(&f[0]) => Replayed { got: 0, expected: 1 });
        assert_err!(agent.open(&f[2]) => Replayed { got: 2, expected: 1 });
        assert_eq!(agent.open(&f[1]).unwrap(), [1]);
        assert_eq!(agent.open(&f[2]).unwrap(), [2]);
        // The due seq from an earlier session (other session key) does not verify.
        let mut old = Channel::new(&[8u8; 32], Side::Host);
        old.send_seq = 3;
        assert_err!(agent.open(&old.seal(b"x").unwrap()) => BadMac);
    }

    #[test]
    fn wrong_direction_label_is_bad_mac() {
        let (mut host, mut agent) = pair();
        assert_err!(pair().1.open(&agent.seal(b"hi").unwrap()) => BadMac);
        assert_err!(pair().0.open(&host.seal(b"hi").unwrap()) => BadMac);
    }

    #[test]
    fn slow_loris_in_memory_times_out() {
        for honor in [true, false] {
            let prefix = Cursor::new([0u8, 0, 0x10, 0]);
            let mut r = mock(prefix.chain(io::repeat(0)), Some(honor));
            let t = Instant::now();
            let e = read_frame(&mut r, HANDSHAKE_MAX_FRAME, t + ms(300));
            let took = t.elapsed();
            assert_err!(e => Timeout);
            assert!(took >= ms(290) && took < ms(500), "{took:?}");
            assert!(r.consumed >= 5, "it did trickle: {}", r.consumed);
        }
    }

    #[test]
    fn slow_loris_over_tcp_times_out() {
        // Peer sends 2 bytes of a length and stops (but keeps the socket open).
        let (mut a, mut b) = tcp_pair();
        a.write_all(&[0, 0]).unwrap();
        let t = Instant::now();
        assert_err!(read_frame(&mut b, HANDSHAKE_MAX_FRAME, t + ms(300)) => Timeout);
        assert!(t.elapsed() < ms(500), "{:?}", t.elapsed());
        // Peer trickles a valid frame one byte per 50 ms.
        let (mut a, mut b) = tcp_pair();
        let trickler = std::thread::spawn(move || {
            for byte in encode_frame(&[5u8; 100]).unwrap() {
                if a.write_all(&[byte]).is_err() {
                    break;
                }
                std::thread::sleep(ms(50));
            }
        });
        let t = Instant::now();
        assert_err!(read_frame(&mut b, HANDSHAKE_MAX_FRAME, t + ms(300)) => Timeout);
        assert!(t.elapsed() < ms(500), "{:?}", t.elapsed());
        drop(b);
        trickler.join().unwrap();
    }

    #[test]
    fn sealed_frames_over_tcp() {
        let (mut a, mut b) = tcp_pair();
        let (mut host, mut agent) = pair();
        host.send(&mut a, b"req").unwrap();
        assert_eq!(agent.recv(&mut b, later()).unwrap(), b"req");
        agent.send(&mut b, &vec![3u8; 200_000]).unwrap();
        assert_eq!(host.recv(&mut a, later()).unwrap(), vec![3u8; 200_000]);
        drop(b);
        assert_err!(host.recv(&mut a, later()) => Closed);
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max)
    }

    proptest! {
        #![proptest_config(fuzz_config())]

        #[test]
        fn fuzz_read_frame_random_bytes(input in bytes(300)) {
            for cap in [HANDSHAKE_MAX_FRAME, 64] {
                match read_all(&input, cap) {
                    Ok(b) => prop_assert!(b.len() <= cap && b[..] == input[4..4 + b.len()]),
                    Err(Closed | Truncated | Empty | TooLarge { .. }) => {}
                    Err(e) => prop_assert!(false, "{:?}", e),
                }
            }
        }

        #[test]
        fn fuzz_read_frame_mutated(body in bytes(300), muts in mutations()) {
            let orig = (body.len() as u32).to_be_bytes().iter().chain(&body).copied().collect();
            let mut wire: Vec<u8> = orig;
            apply(&mut wire, &muts, 0, 4);
            match read_all(&wire, HANDSHAKE_MAX_FRAME) {
                Ok(b) if muts.is_empty() => prop_assert_eq!(b, body),
                Ok(b) => prop_assert_eq!(&b[..], &wire[4..4 + b.len()]),
                Err(Empty) => prop_assert!(body.is_empty() || !muts.is_empty()),
                Err(e) => prop_assert!(!muts.is_empty(), "{:?}", e),
            }
        }

        #[test]
        fn fuzz_open_random_and_mutated(payload in bytes(300), muts in mutations(), junk in bytes(120)) {
            let (mut host, mut agent) = pair();
            let got = agent.open(&junk);
            prop_assert!(matches!(got, Err(BadMac)), "{:?}", got);
            let sealed = host.seal(&payload).unwrap();
            let mut body = sealed.clone();
            apply(&mut body, &muts, 0, 0);
            match agent.open(&body) {
                Ok(p) => prop_assert!(body == sealed && p == payload),
                Err(BadMac) => prop_assert!(body != sealed),
                Err(e) => prop_assert!(false, "{:?}", e),
            }
        }

        #[test]
        fn fuzz_open_delivery_order(order in prop::collection::vec(0u64..6, 0..12)) {
            // Authentic frames in any order: exactly the in-sequence ones are
            // accepted, every other one is Replayed.
            let (mut host, mut agent) = pair();
            let frames: Vec<Vec<u8>> = (0..6u8).map(|i| host.seal(&[i]).unwrap()).collect();
            let mut due = 0u64;
            for &i in &order {
                match agent.open(&frames[i as usize]) {
                    Ok(p) if i == due => { prop_assert_eq!(p, vec![i as u8]); due += 1; }
                    Err(Replayed { got, expected }) if (got, expected) == (i, due) && i != due => {}
                    other => prop_assert!(false, "seq {} due {}: {:?}", i, due, other),
                }
            }
        }
    }
}

/// Helpers shared with the `auth` tests (after `tests`, so layering checks skip it too).
#[cfg(test)]
pub(super) mod testutil {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// `assert_err!(expr => Pattern)`: `expr` is `Err(Pattern)`.
    macro_rules! assert_err {
        ($e:expr => $p:pat $(if $g:expr)?) => {
            match $e {
                Err($p) $(if $g)? => {}
                other => panic!("expected Err({}), got {other:?}", stringify!($p)),
            }
        };
    }
    pub(crate) use assert_err;

    /// A connected loopback TCP pair.
    pub fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (a, l.accept().unwrap().0)
    }

    /// A deadline far enough away for in-memory tests.
    pub fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// Proptest config; `LTS_FUZZ_CASES` sets the cases per property.
    pub fn fuzz_config() -> ProptestConfig {
        let env = std::env::var("LTS_FUZZ_CASES").ok();
        let cases = env.and_then(|v| v.parse().ok()).unwrap_or(20_000);
        let failure_persistence = None;
        ProptestConfig {
            cases,
            failure_persistence,
            ..ProptestConfig::default()
        }
    }

    /// One random edit `(op, position, byte, wide value)`; see [`apply`].
    pub type Mutation = (u8, Index, u8, u64);

    /// Up to 3 random edits.
    pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
        let wide = prop_oneof![0u64..300, Just(u64::MAX), any::<u64>()];
        prop::collection::vec((0u8..8, any::<Index>(), any::<u8>(), wide), 0..4)
    }

    /// Apply edits to `buf`: flip a bit, set, truncate, insert, remove,
    /// overwrite the BE u32 at `u32_at` (a length) or the BE u64 at `u64_at`
    /// (a seq), append.
    pub fn apply(buf: &mut Vec<u8>, muts: &[Mutation], u32_at: usize, u64_at: usize) {
        for &(op, i, v, wide) in muts {
            let n = buf.len();
            match op {
                0 if n > 0 => buf[i.index(n)] ^= 1 << (v % 8),
                1 if n > 0 => buf[i.index(n)] = v,
                2 if n > 0 => buf.truncate(i.index(n)),
                3 => buf.insert(i.index(n + 1), v),
                4 if n > 0 => drop(buf.remove(i.index(n))),
                5 if n >= u32_at + 4 => {
                    buf[u32_at..u32_at + 4].copy_from_slice(&(wide as u32).to_be_bytes())
                }
                6 if n >= u64_at + 8 => {
                    buf[u64_at..u64_at + 8].copy_from_slice(&wide.to_be_bytes())
                }
                7 => buf.extend(std::iter::repeat_n(v, 1 + wide as usize % 8)),
                _ => {}
            }
        }
    }
}
