//! A fleet of board agents measuring one search's candidates in parallel: the fleet file
//! (`devices/fleet.toml`) and the scheduler.
//!
//! Boards of one class share the candidates: each board's worker takes the next job from a
//! common queue, so a fast board measures more of them, and each candidate is measured on one
//! board. The queue holds the longest jobs first (longest-processing-time scheduling), so that
//! the boards finish a batch close together. A board whose link fails puts its job back at the
//! head of the queue (another board of the class takes it at once) and reconnects with backoff
//! ([`BACKOFF_S`]); a job it had finished before the link dropped is not measured again when it
//! comes back to it (the agent answers a known job id from its result cache). The batch fails
//! only when a job fails on a board (refused by its limits, or an error in the measurement) or
//! when every board is lost. Each board has a line in the search's progress display
//! ([`Board::show_in`]).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Deserialize;

use super::auth::Key;
use super::host::{self, is_link_lost, AgentAddr, Client, BACKOFF_S};
use super::message::{Done, Work};
use crate::job::{Job, JobResult};

/// One `[[agent]]` of a fleet file.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FleetEntry {
    /// `tcp://HOST:PORT`.
    pub addr: String,
    /// Boards of one class share a search; each class gets its own frontier.
    #[serde(default = "default_class")]
    pub class: String,
    /// Its key file (default: the host's `--key`).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

fn default_class() -> String {
    "default".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    agent: Vec<FleetEntry>,
}

/// Most agents a fleet file may list.
pub const MAX_AGENTS: usize = 256;

/// Reads a fleet file: `[[agent]]` tables with `addr`, optional `class` and `key`. Errors name
/// the file and the fix; a class name must be usable as a folder name.
pub fn load(path: &Path) -> Result<Vec<FleetEntry>> {
    let text = crate::util::read_regular_text(
        path,
        crate::util::MAX_CONFIG_BYTES,
        "fleet file",
        crate::util::CONFIG_HINT,
    )?;
    let f: FleetFile = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}\nexpected [[agent]] tables with addr = \"tcp://HOST:PORT\" and optionally class = \"pi5\", key = \"FILE\"",
            path.display()
        )
    })?;
    if f.agent.is_empty() || f.agent.len() > MAX_AGENTS {
        bail!(
            "{}: list 1 to {MAX_AGENTS} [[agent]] tables",
            path.display()
        );
    }
    for (i, a) in f.agent.iter().enumerate() {
        AgentAddr::parse(&a.addr)
            .with_context(|| format!("{}: agent {}", path.display(), i + 1))?;
        if a.class.is_empty()
            || a.class.len() > 64
            || !a
                .class
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            || a.class.starts_with('.')
        {
            bail!(
                "{}: agent {}: class `{}` must be 1 to 64 letters, digits or `._-` (it names a results folder)",
                path.display(),
                i + 1,
                a.class.escape_default()
            );
        }
        if f.agent[..i].iter().any(|b| b.addr == a.addr) {
            bail!("{}: agent {} is listed twice", path.display(), a.addr);
        }
    }
    Ok(f.agent)
}

/// The fleet's agents grouped by class, in file order.
pub fn classes(entries: &[FleetEntry]) -> BTreeMap<String, Vec<FleetEntry>> {
    let mut out: BTreeMap<String, Vec<FleetEntry>> = BTreeMap::new();
    for e in entries {
        out.entry(e.class.clone()).or_default().push(e.clone());
    }
    out
}

/// One board of a fleet.
pub struct Board {
    /// Where its agent listens.
    pub addr: AgentAddr,
    key: Key,
    client: Option<Client>,
    /// Jobs it finished.
    pub jobs_done: usize,
    /// Gave up on it (every reconnection attempt failed).
    pub lost: bool,
    /// Its line in the search's progress display (hidden until [`Board::show_in`]).
    bar: ProgressBar,
}

impl Board {
    /// A board not yet connected.
    pub fn new(addr: AgentAddr, key: Key) -> Board {
        Board {
            addr,
            key,
            client: None,
            jobs_done: 0,
            lost: false,
            bar: ProgressBar::hidden(),
        }
    }

    /// Gives the board a line of `display`: its address, what it does now (connecting, the job
    /// it measures and for how long, reconnecting, lost) and the jobs it finished.
    pub fn show_in(&mut self, display: &MultiProgress) {
        let bar = display.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {prefix}  {msg}").expect("valid template"),
        );
        bar.set_prefix(self.addr.to_string());
        bar.enable_steady_tick(Duration::from_millis(250));
        self.bar = bar;
        self.status("idle");
    }

    /// Sets the board's line: `what`, then its count of finished jobs.
    fn status(&self, what: &str) {
        self.bar
            .set_message(format!("{what}  ({} jobs done)", self.jobs_done));
    }

    /// Prints `line` above the progress display, or plainly when there is none.
    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// The board's description, once connected.
    pub fn device(&self) -> Option<&crate::device::DeviceInfo> {
        self.client.as_ref().map(|c| &c.device)
    }

    /// Connects, with [`BACKOFF_S`] between attempts; `stop` ends the waiting early.
    fn connect(&mut self, stop: &dyn Fn() -> bool) -> Result<()> {
        let mut last = None;
        for attempt in 0..=BACKOFF_S.len() {
            if attempt > 0 {
                self.status(&format!(
                    "cannot connect, trying again in {} s",
                    BACKOFF_S[attempt - 1]
                ));
                let until = std::time::Instant::now() + Duration::from_secs(BACKOFF_S[attempt - 1]);
                while std::time::Instant::now() < until {
                    if stop() {
                        bail!("stopped");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            self.status("connecting");
            match Client::connect(&self.addr, &self.key) {
                Ok(c) => {
                    self.client = Some(c);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
    }
}

enum Event {
    Done(usize, Box<JobResult>, String),
    Failed(usize, anyhow::Error),
    Lost(String, anyhow::Error),
}

/// Measures `jobs` (id, job) on `boards` in parallel, handing each result to `done` (its index,
/// the result, its start time) as it arrives. See the module documentation for what happens
/// when a link or a board fails.
pub fn run_batch(
    boards: &mut [Board],
    jobs: &[(String, Job)],
    done: &mut dyn FnMut(usize, JobResult, String) -> Result<()>,
) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    // Longest first (by FLOPs of a run; a batch shares its protocol): the batch ends when its
    // last job does, and short jobs at the end fill the boards that finish early.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].1.workload.flops(&jobs[i].1.arch)));
    let queue = Mutex::new(order.into_iter().collect::<VecDeque<usize>>());
    let finished = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let total = jobs.len();
    let (tx, rx) = mpsc::channel::<Event>();
    let mut failure: Option<anyhow::Error> = None;
    std::thread::scope(|sc| {
        let mut workers = 0;
        for board in boards.iter_mut().filter(|b| !b.lost) {
            workers += 1;
            let (tx, queue, finished, abort) = (tx.clone(), &queue, &finished, &abort);
            sc.spawn(move || worker(board, jobs, queue, finished, abort, total, &tx));
        }
        drop(tx);
        if workers == 0 {
            failure = Some(anyhow::anyhow!("every board of the fleet is lost"));
            return;
        }
        let mut lost = 0;
        for ev in rx {
            match ev {
                Event::Done(i, r, started) => {
                    finished.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = done(i, *r, started) {
                        failure = Some(e);
                        abort.store(true, Ordering::SeqCst);
                    }
                }
                Event::Failed(i, e) => {
                    failure = Some(e.context(format!("job {}", jobs[i].0)));
                    abort.store(true, Ordering::SeqCst);
                }
                Event::Lost(addr, e) => {
                    lost += 1;
                    if lost == workers && failure.is_none() {
                        failure = Some(anyhow::anyhow!(
                            "every board of the fleet is lost (last: {addr}: {e:#}); what was measured is kept: resume when the boards are back"
                        ));
                        abort.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    crate::signals::check()?;
    if finished.load(Ordering::SeqCst) < total {
        bail!("the fleet stopped with jobs left");
    }
    Ok(())
}

fn worker(
    board: &mut Board,
    jobs: &[(String, Job)],
    queue: &Mutex<VecDeque<usize>>,
    finished: &AtomicUsize,
    abort: &AtomicBool,
    total: usize,
    tx: &mpsc::Sender<Event>,
) {
    let stop = || {
        abort.load(Ordering::SeqCst)
            || finished.load(Ordering::SeqCst) >= total
            || crate::signals::pending().is_some()
    };
    loop {
        if stop() {
            return;
        }
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        let Some(i) = next else {
            // Jobs are in flight on other boards; one may come back if its board is lost.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if board.client.is_none() {
            if let Err(e) = board.connect(&stop) {
                queue
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_front(i);
                board.lost = true;
                board.status(&format!("lost: {e:#}"));
                board.say(format!(
                    "lts: giving up on the agent at {}: {e:#}",
                    board.addr
                ));
                let _ = tx.send(Event::Lost(board.addr.to_string(), e));
                return;
            }
        }
        let (id, job) = &jobs[i];
        let started = crate::util::now_rfc3339();
        // Ids are `RUN:ARCH:STAGE`: the run is the same for every line.
        let what = format!(
            "measuring {}",
            id.split_once(':').map_or(id.as_str(), |(_, r)| r)
        );
        board.status(&what);
        let bar = board.bar.clone();
        let done_before = board.jobs_done;
        let client = board.client.as_mut().expect("connected above");
        let outcome = client.run(id, job, &mut |s| {
            bar.set_message(format!("{what}, {s:.0} s  ({done_before} jobs done)"))
        });
        match outcome {
            Ok(r) => {
                board.jobs_done += 1;
                board.status("idle");
                let _ = tx.send(Event::Done(i, Box::new(r), started));
            }
            Err(e) if is_link_lost(&e) => {
                board.client = None;
                queue
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_front(i);
                board.status("link lost, reconnecting");
                board.say(format!(
                    "lts: lost the link to {}; job {id} goes to another board",
                    board.addr
                ));
            }
            Err(e) => {
                board.status("failed");
                let _ = tx.send(Event::Failed(i, e));
                return;
            }
        }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Times `jobs`, variants of one model that differ only in their graphs, together on one
/// board (`lts search --quantize`: fp32 and its quantized schemes in one interleaved loop), as
/// job `id`. The first board not lost takes it; a board whose link cannot be restored (after
/// [`BACKOFF_S`]) is given up and the next one tries.
pub fn run_variants(boards: &mut [Board], id: &str, jobs: Vec<Job>) -> Result<Vec<JobResult>> {
    let work = Work::Variants(jobs);
    let mut last = None;
    let what = format!(
        "timing variants {}",
        id.split_once(':').map_or(id, |(_, r)| r)
    );
    for board in boards.iter_mut().filter(|b| !b.lost) {
        board.status(&what);
        let (bar, done_before) = (board.bar.clone(), board.jobs_done);
        let r = host::run_work(
            &mut board.client,
            &board.addr,
            &board.key,
            id,
            &work,
            &mut |s| bar.set_message(format!("{what}, {s:.0} s  ({done_before} jobs done)")),
        );
        match r {
            Ok(Done::Many(results)) => {
                board.jobs_done += 1;
                board.status("idle");
                return Ok(results);
            }
            Ok(Done::One(_)) => bail!(
                "the agent at {} answered variants job {id} with one result",
                board.addr
            ),
            Err(e) if is_link_lost(&e) => {
                board.client = None;
                board.lost = true;
                board.status("lost");
                board.say(format!(
                    "lts: giving up on the agent at {}: {e:#}",
                    board.addr
                ));
                last = Some(e);
            }
            Err(e) => {
                board.status("failed");
                return Err(e);
            }
        }
    }
    Err(last
        .unwrap_or_else(|| anyhow::anyhow!("no board is left"))
        .context(format!(
            "every board of the fleet is lost while timing {id}; what was measured is kept: resume when the boards are back"
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("devices/fleet.toml");
        let f = load(&p).unwrap();
        assert_eq!(f[0].class, "pi5");
    }

    #[test]
    fn fleet_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fleet.toml");
        let write = |t: &str| std::fs::write(&p, t).unwrap();
        write("[[agent]]\naddr = \"tcp://127.0.0.1:7207\"\nclass = \"pi5\"\n[[agent]]\naddr = \"10.0.0.2\"\n");
        let f = load(&p).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].class, "default");
        assert_eq!(classes(&f).len(), 2);
        for (bad, want) in [
            ("", "agent"),
            ("[[agent]]\naddr = \"udp://x:1\"\n", "tcp://"),
            ("[[agent]]\naddr = \"a\"\nclass = \"../x\"\n", "class"),
            (
                "[[agent]]\naddr = \"a\"\n[[agent]]\naddr = \"a\"\n",
                "twice",
            ),
            ("[[agent]]\naddr = \"a\"\ncolor = 1\n", "unknown field"),
        ] {
            write(bad);
            let e = format!("{:#}", load(&p).unwrap_err());
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }
}
