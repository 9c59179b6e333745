//! `lts agent`, the board side: accepts hosts, authenticates them ([`super::auth`]), and runs
//! the jobs they send one at a time (measurements never overlap on a board), answering with
//! heartbeats while a job runs and its [`crate::job::JobResult`] at the end.
//!
//! Every connection has its own thread, so a peer that never finishes its handshake (or sends
//! garbage, or a frame above the cap) costs one thread until its deadline and never blocks
//! the others; it gets one error frame and is dropped. At most `--max-startups` connections
//! wait unauthenticated at once ([`super::startups`]), a failed accept backs off, and a thread
//! that cannot be started drops its connection: a flood never ends the agent. A job keeps running when its host
//! disconnects: the result stays in a small cache ([`RESULTS_KEPT`] results) for the host to
//! `Collect` after it reconnects, instead of measuring again.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::auth::{self, Key};
use super::frame::{Channel, Deadline, FrameError};
use super::message::{Done, Limits, Message, Work};
use super::serial::SerialLink;
use super::startups::{Slot, Startups};

/// Results an agent keeps for `Collect` (of its latest jobs; a variants job counts one per
/// variant), so the cache's memory is bounded whatever the hosts send.
pub const RESULTS_KEPT: usize = 256;
/// Time a peer has to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a host may stay silent between jobs before the agent closes the connection.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest a write to a peer may block (a host that stopped reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Heartbeat period while a job runs.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Time a new TCP peer has to send its first bytes (a host sends its hello as soon as it
/// connects); a silent one is closed then, well before [`HANDSHAKE_TIMEOUT`].
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(3);
/// First and longest pause after a failed `accept` (out of file descriptors...).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// Connections the kernel may queue before the agent accepts them (capped by
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 1024;
/// Stack of a connection's threads (the handshake and the messages; a job runs on a thread of
/// its own with the default stack).
const CONNECTION_STACK: usize = 1 << 20;

/// How an agent serves.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The shared key.
    pub key: Key,
    /// What it accepts.
    pub limits: Limits,
    /// Exit after the first job's result has been sent (`--once`).
    pub once: bool,
    /// Print one line per connection and job on stderr.
    pub verbose: bool,
    /// At most this many TCP connections wait unauthenticated at once (`--max-startups`).
    pub max_startups: usize,
}

/// A finished job: its result(s), or why it failed.
type Outcome = std::result::Result<Done, String>;

/// State shared by the connections of one agent.
#[derive(Default)]
struct Shared {
    /// Held while a job runs: measurements never overlap.
    /// Jobs accepted and not finished (waiting for the board, or running), with when they
    /// were accepted.
    running: Mutex<HashMap<String, Instant>>,
    /// Finished jobs, oldest first.
    done: Mutex<(HashMap<String, Outcome>, VecDeque<String>)>,
    /// Set with `--once` after the first result went out.
    finished: AtomicBool,
}

impl Shared {
    /// Keeps job `id`'s outcome, forgetting the oldest jobs while more than [`RESULTS_KEPT`]
    /// results are held (a variants job holds one per variant; the newest job always stays).
    fn keep(&self, id: &str, outcome: Outcome) {
        let held = |o: &Outcome| o.as_ref().map_or(1, Done::results);
        let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if d.0.insert(id.to_string(), outcome).is_none() {
            d.1.push_back(id.to_string());
        }
        let mut total: usize = d.0.values().map(held).sum();
        while total > RESULTS_KEPT && d.1.len() > 1 {
            if let Some(old) = d.1.pop_front() {
                total -= d.0.remove(&old).as_ref().map_or(0, held);
            }
        }
    }

    fn finished_job(&self, id: &str) -> Option<Outcome> {
        let d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        d.0.get(id).cloned()
    }
}

/// Serves hosts on `listener` until killed (or, with `--once`, until one job's result has been
/// sent). At most `cfg.max_startups` connections wait unauthenticated at once ([`Startups`]);
/// a failed accept (out of file descriptors, a connection aborted before it was accepted...)
/// is retried after a backoff and never ends the agent, and a connection whose thread cannot
/// be started is dropped.
pub fn serve_tcp(listener: TcpListener, cfg: AgentConfig) -> Result<()> {
    let shared = Arc::new(Shared::default());
    let startups = Startups::new(cfg.max_startups);
    // Blocking accept: no polling thread wakes up while a job is being timed. Ctrl-C ends the
    // process (the agent keeps nothing that must be written); `--once` wakes the accept with a
    // connection of its own once the result is out.
    let own = listener
        .local_addr()
        .context("the listening socket has no address")?;
    deepen_backlog(&listener);
    let mut backoff = AcceptBackoff::default();
    let (mut told_evictions, mut told_no_thread) = (false, false);
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                backoff.failed(e)?;
                continue;
            }
        };
        backoff.reset();
        if shared.finished.load(Ordering::SeqCst) {
            return Ok(());
        }
        let slot = match startups.admit(&stream) {
            Ok(slot) => slot,
            Err(e) => {
                // Out of file descriptors: this connection closes, the next accept waits.
                backoff.failed(e)?;
                continue;
            }
        };
        if !told_evictions && startups.evictions() > 0 {
            told_evictions = true;
            eprintln!(
                "lts agent: more than {} connections waiting unauthenticated: the oldest idle ones (else the oldest) are closed for newer ones (--max-startups; this is logged once)",
                startups.max()
            );
        }
        stream.set_nodelay(true).ok();
        // A host that stops reading must not block this connection's thread forever.
        stream.set_write_timeout(Some(WRITE_TIMEOUT)).ok();
        let (cfg, shared) = (cfg.clone(), Arc::clone(&shared));
        // On failure (no thread left: `ulimit -u`, a cgroup's pids.max) the closure, and with
        // it the stream and its slot, is dropped: the connection closes.
        let spawned = connection_thread("lts-conn").spawn(move || {
            let r = serve_pending(stream, slot, &cfg, &shared);
            if cfg.verbose {
                match &r {
                    Ok(true) => eprintln!("lts agent: {peer}: closed"),
                    Ok(false) => {}
                    Err(e) => eprintln!("lts agent: {peer}: {e:#}"),
                }
            }
            if shared.finished.load(Ordering::SeqCst) {
                let _ = TcpStream::connect(own);
            }
        });
        if let (Err(e), false) = (spawned, told_no_thread) {
            told_no_thread = true;
            eprintln!(
                "lts agent: cannot start a thread for a connection ({e}): such connections are closed until threads are free (raise `ulimit -u` or the service's TasksMax; this is logged once)"
            );
        }
    }
}

/// Raises the listening socket's queue of connections not yet accepted to [`LISTEN_BACKLOG`]
/// (std's is 128): a burst of connections then waits in the queue instead of losing its SYNs,
/// which would hold an honest host back a second or more (its retransmission).
fn deepen_backlog(listener: &TcpListener) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `listen` again on a listening socket only changes its backlog.
        unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) };
    }
    #[cfg(not(unix))]
    let _ = listener;
}

/// A thread for a connection (or its reader): named, with a stack of [`CONNECTION_STACK`].
fn connection_thread(name: &str) -> std::thread::Builder {
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(CONNECTION_STACK)
}

/// A pending TCP connection: waits [`FIRST_BYTES_TIMEOUT`] for the peer's first bytes, then
/// serves it, its [`Slot`] freed once the handshake is over. Returns whether there is
/// something to log (false: a peer that never spoke, or one closed to make room).
fn serve_pending(
    stream: TcpStream,
    slot: Slot,
    cfg: &AgentConfig,
    shared: &Arc<Shared>,
) -> Result<bool> {
    stream.set_read_timeout(Some(FIRST_BYTES_TIMEOUT)).ok();
    let spoke = loop {
        match stream.peek(&mut [0u8; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => break matches!(r, Ok(n) if n > 0),
        }
    };
    if !spoke || slot.evicted() {
        return Ok(false);
    }
    slot.spoke();
    match serve_connection(stream, cfg, shared, Some(slot)) {
        Err(e) if e.downcast_ref::<Evicted>().is_some() => Ok(false),
        r => r.map(|()| true),
    }
}

/// The error of a handshake cut short to make room for a newer connection.
#[derive(Debug, thiserror::Error)]
#[error("closed to make room (--max-startups)")]
struct Evicted;

/// Retries of a failed `accept`: 10 ms doubling to 1 s, each kind of error logged once.
#[derive(Default)]
struct AcceptBackoff {
    wait: Option<Duration>,
    /// The errors logged so far (their OS error code, else their kind).
    logged: Vec<(Option<i32>, std::io::ErrorKind)>,
}

impl AcceptBackoff {
    /// After a failed accept (or a failed `dup` of an accepted socket): an error when the
    /// listening socket itself is broken, else a pause before the next try.
    fn failed(&mut self, e: std::io::Error) -> Result<()> {
        if matches!(
            e.raw_os_error(),
            Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK)
        ) {
            return Err(e).context("accepting a connection");
        }
        let kind = (e.raw_os_error(), e.kind());
        if !self.logged.contains(&kind) {
            self.logged.push(kind);
            eprintln!(
                "lts agent: cannot accept a connection: {e}; retrying with a backoff (if it is \"Too many open files\", raise the open-file limit, `ulimit -n`; errors of this kind are logged once)"
            );
        }
        let wait = self
            .wait
            .map_or(ACCEPT_BACKOFF.0, |w| (w * 2).min(ACCEPT_BACKOFF.1));
        self.wait = Some(wait);
        std::thread::sleep(wait);
        Ok(())
    }

    /// After an accept that worked.
    fn reset(&mut self) {
        self.wait = None;
    }
}

/// A transport the agent can serve: a byte stream with read deadlines whose read half can be
/// handed to another thread.
pub trait Transport: Read + Write + Deadline + Send + Sized + 'static {
    /// A second handle on the same stream (for the reader thread).
    fn try_clone(&self) -> std::io::Result<Self>;
}

impl Transport for TcpStream {
    fn try_clone(&self) -> std::io::Result<Self> {
        TcpStream::try_clone(self)
    }
}

impl Transport for SerialLink {
    fn try_clone(&self) -> std::io::Result<Self> {
        SerialLink::try_clone(self)
    }
}

/// Serves hosts over a serial line, one session after the other, until killed (or, with
/// `--once`, until one job's result has been sent). After a failed session the buffered input
/// is dropped so the next handshake starts clean.
pub fn serve_serial(link: SerialLink, cfg: AgentConfig) -> Result<()> {
    let shared = Arc::new(Shared::default());
    loop {
        crate::signals::check()?;
        let r = serve_connection(link.try_clone()?, &cfg, &shared, None);
        if let Err(e) = r {
            let idle = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<auth::AuthError>(),
                    Some(auth::AuthError::Frame(FrameError::Timeout))
                )
            });
            if cfg.verbose && !idle {
                eprintln!("lts agent: {}: {e:#}", link.path());
            }
            link.clear_input();
        } else if cfg.verbose {
            eprintln!("lts agent: {}: session closed", link.path());
        }
        if shared.finished.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
}

/// One host: handshake, hello, then messages until it leaves. `slot`, a pending TCP
/// connection's place, is freed once the handshake is over.
fn serve_connection<S: Transport>(
    mut stream: S,
    cfg: &AgentConfig,
    shared: &Arc<Shared>,
    slot: Option<Slot>,
) -> Result<()> {
    let hs = auth::agent_handshake(&mut stream, &cfg.key, Instant::now() + HANDSHAKE_TIMEOUT);
    if hs.is_err() && slot.as_ref().is_some_and(Slot::evicted) {
        return Err(Evicted.into());
    }
    drop(slot);
    let mut chan = hs.context("handshake")?;
    let hello = Message::Hello {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        device: Box::new(crate::device::DeviceInfo::collect()),
        limits: cfg.limits.clone(),
    };
    chan.send(&mut stream, &hello.encode())?;
    // The reader thread owns the read half and the receive state; this thread writes.
    let (tx, rx) = mpsc::channel::<std::result::Result<Message, String>>();
    let mut reader = stream.try_clone()?;
    let mut rchan = chan.clone();
    let spawned = connection_thread("lts-conn-reader").spawn(move || loop {
        let got = rchan
            .recv(&mut reader, Instant::now() + IDLE_TIMEOUT)
            .map_err(|e| match e {
                FrameError::Closed => "closed".to_string(),
                e => e.to_string(),
            })
            .and_then(|b| Message::decode(&b).map_err(|e| format!("{e:#}")));
        // A session ends with an error or the host's goodbye; over a serial line the next
        // host's bytes must not be read by this thread.
        let stop = !matches!(&got, Ok(m) if !matches!(m, Message::Bye));
        if tx.send(got).is_err() || stop {
            return;
        }
    });
    if let Err(e) = spawned {
        let m =
            format!("the board cannot start a thread for this connection ({e}); try again later");
        let _ = send(&mut chan, &mut stream, error(None, &m));
        anyhow::bail!("{m}");
    }
    loop {
        let msg = match rx.recv() {
            Ok(Ok(m)) => m,
            Ok(Err(e)) if e == "closed" => return Ok(()),
            Ok(Err(e)) => {
                let _ = send(&mut chan, &mut stream, error(None, &e));
                anyhow::bail!("{e}");
            }
            Err(_) => return Ok(()),
        };
        let (id, mut work) = match msg {
            Message::Job { id, job } => (id, Work::One(job)),
            Message::Variants { id, jobs } => (id, Work::Variants(jobs)),
            other => {
                if handle_other(other, shared, &mut chan, &mut stream)? {
                    return Ok(());
                }
                continue;
            }
        };
        if let Some(done) = shared.finished_job(&id) {
            send(&mut chan, &mut stream, outcome_message(&id, done))?;
            continue;
        }
        if running_since(shared, &id).is_some() {
            // The same job sent again (a host that reconnected): wait for the copy already
            // accepted instead of measuring twice.
            await_job(&id, shared, &mut chan, &mut stream)?;
            continue;
        }
        if let Err(e) = cfg.limits.admit_work(&mut work) {
            send(&mut chan, &mut stream, error(Some(&id), &format!("{e:#}")))?;
            continue;
        }
        run_job(&id, work, cfg, shared, &mut chan, &mut stream, &rx)?;
        if cfg.once {
            shared.finished.store(true, Ordering::SeqCst);
            return Ok(());
        }
    }
}

/// A message other than a job: `Collect` (the result, a heartbeat while it runs, or
/// `Unknown`), `Cancel` of a job not running here, `Bye` (returns true: the session ends), or
/// a message hosts never send (an error frame, then an error).
fn handle_other<S: Write>(
    msg: Message,
    shared: &Shared,
    chan: &mut Channel,
    stream: &mut S,
) -> Result<bool> {
    match msg {
        Message::Collect { id } => {
            let reply = match shared.finished_job(&id) {
                Some(done) => outcome_message(&id, done),
                None => match running_since(shared, &id) {
                    Some(since) => Message::Progress {
                        id,
                        elapsed_s: since.elapsed().as_secs_f64(),
                    },
                    None => Message::Unknown { id },
                },
            };
            send(chan, stream, reply)?;
        }
        Message::Cancel { id } => {
            send(chan, stream, error(Some(&id), "no such job is running"))?;
        }
        Message::Bye => return Ok(true),
        other => {
            let m = format!("a host does not send `{}` messages", other.kind());
            send(chan, stream, error(None, &m))?;
            anyhow::bail!("{m}");
        }
    }
    Ok(false)
}

fn running_since(shared: &Shared, id: &str) -> Option<Instant> {
    shared
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .copied()
}

/// Waits for job `id`, accepted on another connection, with heartbeats, then sends its
/// outcome.
fn await_job<S: Write>(
    id: &str,
    shared: &Shared,
    chan: &mut Channel,
    stream: &mut S,
) -> Result<()> {
    loop {
        if let Some(done) = shared.finished_job(id) {
            return send(chan, stream, outcome_message(id, done));
        }
        let Some(since) = running_since(shared, id) else {
            return send(chan, stream, Message::Unknown { id: id.to_string() });
        };
        let beat = Message::Progress {
            id: id.to_string(),
            elapsed_s: since.elapsed().as_secs_f64(),
        };
        send(chan, stream, beat)?;
        std::thread::sleep(HEARTBEAT);
    }
}

fn error(id: Option<&str>, message: &str) -> Message {
    Message::Error {
        id: id.map(str::to_string),
        message: message.to_string(),
    }
}

fn outcome_message(id: &str, o: Outcome) -> Message {
    match o {
        Ok(done) => done.message(id),
        Err(e) => error(Some(id), &e),
    }
}

fn send<S: Write>(chan: &mut Channel, stream: &mut S, m: Message) -> Result<()> {
    chan.send(stream, &m.encode())
        .with_context(|| format!("sending a `{}` message", m.kind()))
}

/// Runs one job (waiting for the board if another connection's job is running), sending a
/// heartbeat every [`HEARTBEAT`] and honouring `Cancel`. The outcome is kept for `Collect`
/// whether or not the host is still there to receive it.
fn run_job<S: Write>(
    id: &str,
    work: Work,
    cfg: &AgentConfig,
    shared: &Arc<Shared>,
    chan: &mut Channel,
    stream: &mut S,
    rx: &mpsc::Receiver<std::result::Result<Message, String>>,
) -> Result<()> {
    let (done_tx, done_rx) = mpsc::channel::<Outcome>();
    let (id_owned, shared2, verbose) = (id.to_string(), Arc::clone(shared), cfg.verbose);
    let started = Instant::now();
    shared
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.to_string(), started);
    let spawned = std::thread::Builder::new()
        .name("lts-job".into())
        .spawn(move || {
            // One measurement at a time on this board.
            static BOARD: Mutex<()> = Mutex::new(());
            let _board = BOARD.lock().unwrap_or_else(|e| e.into_inner());
            crate::signals::clear_cancel();
            if verbose {
                eprintln!("lts agent: job {id_owned}: {}", work.arch_id());
            }
            let outcome = work.execute().map_err(|e| format!("{e:#}"));
            // Kept before it leaves the running set, so a Collect never falls in between.
            shared2.keep(&id_owned, outcome.clone());
            shared2
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id_owned);
            let _ = done_tx.send(outcome);
        });
    if let Err(e) = spawned {
        // Not kept: the job can be sent again once the board has threads to spare.
        let running = &shared.running;
        running.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        let m = format!("the board cannot start a thread for the job ({e}); try again later");
        return send(chan, stream, error(Some(id), &m));
    }
    let mut host_gone = false;
    loop {
        match done_rx.recv_timeout(HEARTBEAT) {
            Ok(outcome) => {
                if host_gone {
                    return Ok(());
                }
                return send(chan, stream, outcome_message(id, outcome));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the measurement thread of job {id} died")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        while let Ok(m) = rx.try_recv() {
            match m {
                Ok(Message::Cancel { id: c }) if c == id => crate::signals::request_cancel(),
                Ok(Message::Collect { id: c }) if c == id => {}
                Ok(Message::Bye) | Err(_) => host_gone = true,
                Ok(other) => {
                    let m = format!(
                        "busy with job {id}: `{}` waits for its result",
                        other.kind()
                    );
                    send(chan, stream, error(None, &m))?;
                }
            }
        }
        if !host_gone {
            let beat = Message::Progress {
                id: id.to_string(),
                elapsed_s: started.elapsed().as_secs_f64(),
            };
            if send(chan, stream, beat).is_err() {
                host_gone = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobResult;

    #[test]
    fn accept_errors_back_off_and_only_a_broken_listener_ends_the_agent() {
        let mut b = AcceptBackoff::default();
        let t = Instant::now();
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ECONNABORTED,
        ] {
            b.failed(std::io::Error::from_raw_os_error(code)).unwrap();
        }
        b.failed(std::io::Error::from_raw_os_error(libc::EMFILE))
            .unwrap();
        assert_eq!(b.logged.len(), 4, "each kind logged once");
        // 10 + 20 + 40 + 80 + 160 ms.
        assert!(
            t.elapsed() >= Duration::from_millis(310),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(b.wait, Some(Duration::from_millis(160)));
        b.wait = Some(Duration::from_millis(900));
        b.failed(std::io::Error::from_raw_os_error(libc::EMFILE))
            .unwrap();
        assert_eq!(b.wait, Some(ACCEPT_BACKOFF.1), "1 s at most");
        b.reset();
        assert_eq!(b.wait, None);
        let e = b.failed(std::io::Error::from_raw_os_error(libc::EBADF));
        assert!(format!("{:#}", e.unwrap_err()).contains("accepting a connection"));
    }

    #[test]
    fn the_result_cache_is_bounded_by_results_not_jobs() {
        let shared = Shared::default();
        // 200 failed single jobs, then 5 variants jobs of 16 results each: 280 results.
        for i in 0..200 {
            shared.keep(&format!("one-{i}"), Err("x".into()));
        }
        // One real result (a cost-model job: its runs sleep microseconds), 16 times.
        let job = crate::job::Job {
            arch: crate::arch::Arch::preset("gpt2-tiny").unwrap(),
            weights: crate::job::WeightsSpec::Random { seed: 0 },
            workload: crate::workload::Workload {
                seq_len: 8,
                ..Default::default()
            },
            protocol: crate::measure::Protocol {
                warmup_s: 0.0,
                min_runs: 1,
                min_duration_s: 0.0,
                ..Default::default()
            },
            backend: crate::job::BackendSpec::CostModel(
                crate::backend::simulated::CostModelOptions { gflops: 1e6 },
            ),
            max_params: crate::arch::DEFAULT_MAX_PARAMS,
            max_memory: None,
            thermal: Default::default(),
            device_profile: None,
            quant: None,
        };
        let r: JobResult = crate::job::execute(&job).unwrap();
        let many = || Ok(Done::Many(vec![r.clone(); 16]));
        for i in 0..5 {
            shared.keep(&format!("many-{i}"), many());
        }
        let held: usize = {
            let d = shared.done.lock().unwrap();
            d.0.values()
                .map(|o| o.as_ref().map_or(1, Done::results))
                .sum()
        };
        assert!(held <= RESULTS_KEPT, "{held}");
        assert!(shared.finished_job("many-4").is_some(), "the newest stays");
        assert!(shared.finished_job("one-0").is_none(), "the oldest goes");
    }
}
