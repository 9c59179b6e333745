//! The host side of the agent link: connect to a board's `lts agent`, authenticate, send a job
//! and wait for its result, reconnecting with backoff when the link drops mid-job and
//! collecting the result the board kept instead of measuring again.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::auth::{self, Key};
use std::io::{Read, Write};

use super::frame::{Channel, Deadline, FrameError};
use super::message::{Done, Limits, Message, Work};
use crate::device::DeviceInfo;
use crate::job::{Job, JobResult};

/// The agent's port unless the address says otherwise.
pub const DEFAULT_PORT: u16 = 7207;
/// Time to connect and complete the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence after which a running job's link counts as lost (the agent sends a heartbeat every
/// second).
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(15);
/// Waits between reconnection attempts after a lost link: 1, 2, 4, 8, 16 s, then give up.
pub const BACKOFF_S: [u64; 5] = [1, 2, 4, 8, 16];
/// Pauses before trying again a handshake the agent cut short: 6.3 s in all.
pub const HANDSHAKE_RETRY_MS: [u64; 6] = [100, 200, 400, 800, 1600, 3200];

/// Where an agent listens: `tcp://HOST:PORT` (or `HOST:PORT`, or `HOST` for port 7207), or
/// `serial:///dev/ttyACM0` (`?baud=115200` by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentAddr {
    /// A TCP address, `HOST:PORT`.
    Tcp {
        /// `HOST:PORT` as given.
        host_port: String,
    },
    /// A serial device.
    Serial {
        /// The device path.
        path: String,
        /// Its baud rate.
        baud: u32,
    },
}

impl AgentAddr {
    /// Parses an agent address; errors say what is accepted.
    pub fn parse(s: &str) -> Result<AgentAddr> {
        let usage = || {
            anyhow::anyhow!(
                "agent address `{s}`: give tcp://HOST:PORT (USB networking, an SSH tunnel or `adb forward` are TCP too) or serial:///dev/ttyACM0[?baud=115200]"
            )
        };
        if let Some(rest) = s.strip_prefix("serial://") {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !path.starts_with('/') {
                return Err(usage());
            }
            let baud = match query {
                "" => super::serial::DEFAULT_BAUD,
                q => q
                    .strip_prefix("baud=")
                    .and_then(|b| b.parse().ok())
                    .filter(|&b| b > 0)
                    .ok_or_else(usage)?,
            };
            return Ok(AgentAddr::Serial {
                path: path.to_string(),
                baud,
            });
        }
        let rest = s.strip_prefix("tcp://").unwrap_or(s);
        if rest.is_empty() || rest.contains('/') || s.contains("://") && !s.starts_with("tcp://") {
            return Err(usage());
        }
        let host_port = if rest
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            rest.to_string()
        } else {
            format!("{rest}:{DEFAULT_PORT}")
        };
        Ok(AgentAddr::Tcp { host_port })
    }

    fn resolve(host_port: &str) -> Result<SocketAddr> {
        host_port
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve agent address {host_port}"))?
            .next()
            .with_context(|| format!("agent address {host_port} resolves to nothing"))
    }

    /// Opens the byte stream to the agent.
    fn open(&self) -> Result<Box<dyn Link>> {
        Ok(match self {
            AgentAddr::Tcp { host_port } => {
                let sock = AgentAddr::resolve(host_port)?;
                let stream =
                    TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT).with_context(|| {
                        format!(
                            "cannot connect to the agent at {self}: is `lts agent` running there?"
                        )
                    })?;
                stream.set_nodelay(true).ok();
                stream.set_write_timeout(Some(SILENCE_TIMEOUT)).ok();
                Box::new(stream)
            }
            AgentAddr::Serial { path, baud } => {
                let link = super::serial::SerialLink::open(path, *baud)?;
                // Whatever an earlier session left in the line.
                link.clear_input();
                Box::new(link)
            }
        })
    }
}

impl std::fmt::Display for AgentAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentAddr::Tcp { host_port } => write!(f, "tcp://{host_port}"),
            AgentAddr::Serial { path, baud } => write!(f, "serial://{path}?baud={baud}"),
        }
    }
}

/// A byte stream to an agent: TCP or serial.
pub trait Link: Read + Write + Deadline + Send {}
impl<T: Read + Write + Deadline + Send> Link for T {}

/// An authenticated connection to one agent.
pub struct Client {
    addr: AgentAddr,
    stream: Box<dyn Link>,
    chan: Channel,
    /// The board, as the agent described it on connect.
    pub device: DeviceInfo,
    /// What the agent accepts.
    pub limits: Limits,
    /// `lts` version on the board.
    pub tool_version: String,
}

/// The link to an agent failed (as opposed to the job failing on the board): the job may
/// still be running there. [`run_job`] reconnects and collects; a fleet gives the job to
/// another board.
#[derive(Debug, thiserror::Error)]
#[error("lost the link to the agent at {addr}: {cause}")]
pub struct LinkLost {
    /// The agent.
    pub addr: String,
    /// What failed.
    pub cause: String,
}

/// Whether an error is a lost link ([`LinkLost`]) rather than a job error.
pub fn is_link_lost(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<LinkLost>().is_some())
}

/// One answer of the agent about a job.
enum Answer {
    /// A heartbeat: it still runs.
    Progress,
    /// Its result(s).
    Done(Done),
    /// The agent does not have it.
    Unknown,
    /// The link failed.
    Lost(anyhow::Error),
}

/// How a job on an agent ended.
enum Ended {
    Done(Done),
    /// The link failed (the job may still be running on the board).
    Lost(anyhow::Error),
}

/// Whether `e` is a handshake the agent cut short (closed or reset before it finished, as an
/// agent at its `--max-startups` bound does under a flood), as opposed to a refusal.
fn handshake_cut(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let frame = match c.downcast_ref::<auth::AuthError>() {
            Some(auth::AuthError::Frame(f)) => f,
            _ => return false,
        };
        match frame {
            FrameError::Closed | FrameError::Truncated => true,
            FrameError::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    })
}

impl Client {
    /// Connects, authenticates both ends and reads the agent's hello. A handshake the agent
    /// cuts short (flooded with connections, it closes pending ones: `lts agent
    /// --max-startups`) is tried again after each pause of [`HANDSHAKE_RETRY_MS`].
    pub fn connect(addr: &AgentAddr, key: &Key) -> Result<Client> {
        let mut pauses = HANDSHAKE_RETRY_MS.iter();
        loop {
            let e = match Client::connect_once(addr, key) {
                Err(e) if handshake_cut(&e) => e,
                r => return r,
            };
            let Some(&ms) = pauses.next() else {
                return Err(e.context(format!(
                    "the agent at {addr} closed {} handshakes in a row: it may be flooded with connections (see `lts agent --max-startups`); try again later",
                    HANDSHAKE_RETRY_MS.len() + 1
                )));
            };
            crate::signals::check()?;
            std::thread::sleep(Duration::from_millis(ms));
        }
    }

    /// One try of [`Client::connect`].
    fn connect_once(addr: &AgentAddr, key: &Key) -> Result<Client> {
        let mut stream = addr.open()?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut chan = auth::host_handshake(&mut stream, key, deadline)
            .with_context(|| format!("handshake with the agent at {addr}"))?;
        let hello = chan
            .recv(&mut stream, deadline)
            .map_err(anyhow::Error::from)
            .and_then(|b| Message::decode(&b))
            .with_context(|| format!("reading the hello of the agent at {addr}"))?;
        let Message::Hello {
            tool_version,
            device,
            limits,
        } = hello
        else {
            bail!(
                "the agent at {addr} sent `{}` instead of its hello",
                hello.kind()
            );
        };
        Ok(Client {
            addr: addr.clone(),
            stream,
            chan,
            device: *device,
            limits,
            tool_version,
        })
    }

    /// One round trip of the smallest exchange (a `Collect` of a job the agent does not
    /// have, answered `Unknown`): the protocol's own cost, for `cargo bench --bench agent`.
    pub fn ping(&mut self) -> Result<Duration> {
        let t = Instant::now();
        match self.collect("ping", &mut |_| {})? {
            None => Ok(t.elapsed()),
            Some(_) => bail!("the agent answered a ping with a result"),
        }
    }

    /// The address it is connected to.
    pub fn addr(&self) -> &AgentAddr {
        &self.addr
    }

    fn finish(&self, ended: Ended) -> Result<Done> {
        match ended {
            Ended::Done(d) => Ok(d),
            Ended::Lost(e) => Err(LinkLost {
                addr: self.addr.to_string(),
                cause: format!("{e:#}"),
            }
            .into()),
        }
    }

    /// Runs job `id` on the agent and waits for its result; a failed link is a [`LinkLost`]
    /// error.
    pub fn run(&mut self, id: &str, job: &Job, progress: &mut dyn FnMut(f64)) -> Result<JobResult> {
        let done = self.run_work(id, &Work::One(Box::new(job.clone())), progress)?;
        one_result(done, &self.addr, id)
    }

    /// Runs `work` as job `id` on the agent and waits for its result(s); a failed link is a
    /// [`LinkLost`] error.
    pub fn run_work(
        &mut self,
        id: &str,
        work: &Work,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Done> {
        let ended = self.run_once(id, work, progress)?;
        self.finish(ended)
    }

    /// After a reconnect: the result of job `id` if the agent kept it (waiting while it still
    /// runs), else runs it.
    pub fn resume(&mut self, id: &str, work: &Work, progress: &mut dyn FnMut(f64)) -> Result<Done> {
        let ended = match self.collect(id, progress)? {
            Some(e) => e,
            None => self.run_once(id, work, progress)?,
        };
        self.finish(ended)
    }

    fn send(&mut self, m: &Message) -> Result<(), FrameError> {
        self.chan.send(&mut self.stream, &m.encode())
    }

    /// Reads the agent's next answer about job `id` (a heartbeat is handed to `progress`, after
    /// a check for Ctrl-C on the host: the board finishes and keeps the result). Job errors and
    /// refusals are errors; `during` says what the host was doing, for an unexpected message.
    fn next_answer(
        &mut self,
        id: &str,
        progress: &mut dyn FnMut(f64),
        during: &str,
    ) -> Result<Answer> {
        let bytes = match self
            .chan
            .recv(&mut self.stream, Instant::now() + SILENCE_TIMEOUT)
        {
            Ok(b) => b,
            Err(e) => return Ok(Answer::Lost(e.into())),
        };
        match Message::decode(&bytes)? {
            Message::Progress { id: p, elapsed_s } if p == id => {
                crate::signals::check()?;
                progress(elapsed_s);
                Ok(Answer::Progress)
            }
            Message::Result { id: r, result } if r == id => Ok(Answer::Done(Done::One(result))),
            Message::Results { id: r, results } if r == id => Ok(Answer::Done(Done::Many(results))),
            Message::Unknown { id: u } if u == id => Ok(Answer::Unknown),
            Message::Error {
                id: Some(e),
                message,
            } if e == id => bail!(
                "the agent at {} could not run job {id}: {message}",
                self.addr
            ),
            Message::Error { id: None, message } => {
                bail!("the agent at {} refused: {message}", self.addr)
            }
            other => bail!(
                "the agent at {} sent an unexpected `{}` message {during}",
                self.addr,
                other.kind()
            ),
        }
    }

    /// Waits for the end of job `id`, calling `progress` with each heartbeat.
    fn wait(&mut self, id: &str, progress: &mut dyn FnMut(f64)) -> Result<Ended> {
        loop {
            match self.next_answer(id, progress, &format!("while job {id} ran"))? {
                Answer::Progress => {}
                Answer::Done(r) => return Ok(Ended::Done(r)),
                Answer::Lost(e) => return Ok(Ended::Lost(e)),
                Answer::Unknown => {
                    bail!("the agent at {} no longer has job {id}", self.addr)
                }
            }
        }
    }

    /// Sends `work` as job `id` and waits for its result.
    fn run_once(&mut self, id: &str, work: &Work, progress: &mut dyn FnMut(f64)) -> Result<Ended> {
        if let Err(e) = self.send(&work.message(id)) {
            return Ok(Ended::Lost(e.into()));
        }
        self.wait(id, progress)
    }

    /// Asks for the result of job `id` after a reconnect: the result, `None` when the agent
    /// does not have it, or it waits (asking again every second) while the job still runs.
    fn collect(&mut self, id: &str, progress: &mut dyn FnMut(f64)) -> Result<Option<Ended>> {
        loop {
            if let Err(e) = self.send(&Message::Collect { id: id.to_string() }) {
                return Ok(Some(Ended::Lost(e.into())));
            }
            match self.next_answer(id, progress, "to a collect")? {
                Answer::Done(r) => return Ok(Some(Ended::Done(r))),
                Answer::Lost(e) => return Ok(Some(Ended::Lost(e))),
                Answer::Unknown => return Ok(None),
                Answer::Progress => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }
}

/// Runs job `id` on the agent at `addr` (connecting through `client`, which is replaced after a
/// reconnect). A lost link is retried after [`BACKOFF_S`]: reconnect, `Collect` the result the
/// board kept (or wait while it still runs), and send the job again only when the board does
/// not have it. Job errors (refused by the agent's limits, failed on the board) are not
/// retried.
pub fn run_job(
    client: &mut Option<Client>,
    addr: &AgentAddr,
    key: &Key,
    id: &str,
    job: &Job,
    progress: &mut dyn FnMut(f64),
) -> Result<JobResult> {
    let done = run_work(
        client,
        addr,
        key,
        id,
        &Work::One(Box::new(job.clone())),
        progress,
    )?;
    one_result(done, addr, id)
}

/// The one result of a single job.
fn one_result(done: Done, addr: &AgentAddr, id: &str) -> Result<JobResult> {
    match done {
        Done::One(r) => Ok(*r),
        Done::Many(rs) => bail!(
            "the agent at {addr} answered job {id} with {} results instead of one",
            rs.len()
        ),
    }
}

/// [`run_job`] for any [`Work`]: one job or variants timed together.
pub fn run_work(
    client: &mut Option<Client>,
    addr: &AgentAddr,
    key: &Key,
    id: &str,
    work: &Work,
    progress: &mut dyn FnMut(f64),
) -> Result<Done> {
    let mut lost: Option<anyhow::Error> = None;
    let mut sent = false;
    for attempt in 0..=BACKOFF_S.len() {
        if attempt > 0 {
            crate::signals::check()?;
            std::thread::sleep(Duration::from_secs(BACKOFF_S[attempt - 1]));
        }
        let c = match client.take() {
            Some(c) => c,
            None => match Client::connect(addr, key) {
                Ok(c) => c,
                Err(e) => {
                    lost = Some(e);
                    continue;
                }
            },
        };
        let c = client.insert(c);
        let r = if sent {
            c.resume(id, work, progress)
        } else {
            sent = true;
            c.run_work(id, work, progress)
        };
        match r {
            Err(e) if is_link_lost(&e) => {
                *client = None;
                lost = Some(e);
            }
            r => return r,
        }
    }
    let e = lost.unwrap_or_else(|| anyhow::anyhow!("no attempt was made"));
    Err(anyhow::Error::new(LinkLost {
        addr: addr.to_string(),
        cause: format!("{e:#}"),
    })
    .context(format!(
        "job {id}: {} reconnection attempts over {} s failed",
        BACKOFF_S.len(),
        BACKOFF_S.iter().sum::<u64>()
    )))
}

impl Drop for Client {
    /// Says goodbye, so the agent ends the session at once (over a serial line, the next host
    /// can then start its handshake).
    fn drop(&mut self) {
        let _ = self.send(&Message::Bye);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: an agent at its `--max-startups` bound closes pending handshakes; the host
    /// tries again instead of failing at once.
    #[test]
    fn a_handshake_the_agent_cuts_short_is_tried_again() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let key = Key::from_bytes([7; 32]);
        let k = key.clone();
        let agent = std::thread::spawn(move || {
            // The first two connections are closed once the host has spoken.
            for _ in 0..2 {
                let (mut s, _) = l.accept().unwrap();
                let _ = s.read(&mut [0u8; 8]);
            }
            let (mut s, _) = l.accept().unwrap();
            let soon = || Instant::now() + Duration::from_secs(10);
            let mut chan = auth::agent_handshake(&mut s, &k, soon()).unwrap();
            let hello = Message::Hello {
                tool_version: "t".into(),
                device: Box::new(DeviceInfo::collect()),
                limits: Limits {
                    max_params: 1,
                    max_seq_len: 1,
                    max_memory: None,
                },
            };
            chan.send(&mut s, &hello.encode()).unwrap();
            // Until the host's goodbye.
            let _ = chan.recv(&mut s, soon());
        });
        let addr = AgentAddr::parse(&format!("127.0.0.1:{port}")).unwrap();
        let t = Instant::now();
        let c = Client::connect(&addr, &key).unwrap();
        assert_eq!(c.tool_version, "t");
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "paused 0.1 + 0.2 s"
        );
        drop(c);
        agent.join().unwrap();
    }

    #[test]
    fn addresses() {
        let p = |s: &str| AgentAddr::parse(s).map(|a| a.to_string());
        assert_eq!(p("tcp://pi.local:7300").unwrap(), "tcp://pi.local:7300");
        assert_eq!(p("pi.local").unwrap(), "tcp://pi.local:7207");
        assert_eq!(p("127.0.0.1:9").unwrap(), "tcp://127.0.0.1:9");
        assert_eq!(
            p("serial:///dev/ttyACM0").unwrap(),
            "serial:///dev/ttyACM0?baud=115200"
        );
        assert_eq!(
            p("serial:///dev/ttyUSB1?baud=921600").unwrap(),
            "serial:///dev/ttyUSB1?baud=921600"
        );
        for bad in [
            "",
            "tcp://a/b",
            "udp://x:1",
            "serial://ttyACM0",
            "serial:///dev/x?baud=0",
            "serial:///dev/x?speed=1",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}
