//! `lts agent` processes on loopback for the agent tests (`tests/agent.rs`) and the agent
//! benchmark (`benches/agent.rs`, which includes this file by path): key files, agents on
//! ephemeral ports, fleet files and the arguments of a small measurement.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A running agent process, killed (SIGKILL) on drop.
pub struct Agent {
    /// The process.
    pub child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    /// The lines it logged on stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    /// Its address as the host writes it.
    pub fn addr(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lts agent --init --key DIR/NAME` with the binary `bin`; panics when it fails.
pub fn init_key(bin: &Path, dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let out = Command::new(bin)
        .args(["agent", "--init", "--key"])
        .arg(&key)
        .output()
        .expect("lts runs");
    assert!(
        out.status.success(),
        "lts agent --init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    key
}

/// Starts `bin agent --key KEY --listen 127.0.0.1:PORT EXTRA...` (port 0: an ephemeral one)
/// and reads the port it listens on from its first log line; its later lines are kept in
/// [`Agent::log`] (so it never blocks on a full pipe).
pub fn spawn_agent(bin: &Path, key: &Path, port: u16, extra: &[&str]) -> Agent {
    spawn_agent_via(&[], bin, key, port, extra)
}

/// [`spawn_agent`] through `wrapper`, a command that runs the agent in its own place (exec),
/// such as `prlimit --nofile=1024 --`: the child's id stays the agent's.
pub fn spawn_agent_via(
    wrapper: &[&str],
    bin: &Path,
    key: &Path,
    port: u16,
    extra: &[&str],
) -> Agent {
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(["agent", "--key"])
        .arg(key)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("lts runs");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    let port = first
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in the agent's first line {first:?}"));
    let log = Arc::new(Mutex::new(vec![first]));
    let keep = Arc::clone(&log);
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            keep.lock().unwrap_or_else(|e| e.into_inner()).push(l);
        }
    });
    Agent { child, port, log }
}

/// Writes a fleet file listing `agents`, each with its board class.
pub fn fleet_file(path: &Path, agents: &[(&Agent, &str)]) {
    let mut toml = String::new();
    for (a, class) in agents {
        toml.push_str(&format!(
            "[[agent]]\naddr = \"{}\"\nclass = \"{class}\"\n",
            a.addr()
        ));
    }
    std::fs::write(path, toml).expect("fleet file written");
}

/// `lts measure` arguments of a small job (8-token prefill, 3 runs and `min_duration_s` at
/// least) on `preset`, as JSON, through the agent at `addr` with `key`.
pub fn measure_args(preset: &str, min_duration_s: &str, addr: &str, key: &Path) -> Vec<String> {
    let mut a: Vec<String> = [
        "measure",
        "--preset",
        preset,
        "--seq-len",
        "8",
        "--min-runs",
        "3",
        "--min-duration-s",
        min_duration_s,
        "--json",
        "--agent",
        addr,
        "--key",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(key.to_string_lossy().into_owned());
    a
}

/// Whether `prlimit` (util-linux) runs here. Without it the limit tests skip, saying why,
/// except in CI (`CI=true`), where they must run.
pub fn have_prlimit() -> bool {
    let ok = Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "prlimit (util-linux) is missing: .ci/run installs it"
        );
        eprintln!("skipped: prlimit (util-linux) is not installed");
    }
    ok
}

/// Raises this process's soft limit of open files to `want` (at most its hard limit) and
/// returns the limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Resident memory of process `pid` now and at its peak (`VmRSS`, `VmHWM`), in bytes.
pub fn rss_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
}

/// Opens `bursts` x `per_burst` plain TCP connections to loopback `port`, each burst held
/// open `hold` and then closed, and returns how many connected (each connect waits 2 s at
/// most).
pub fn flood(port: u16, bursts: usize, per_burst: usize, hold: std::time::Duration) -> usize {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut connected = 0;
    for _ in 0..bursts {
        let conns: Vec<_> = (0..per_burst)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()
            })
            .collect();
        connected += conns.len();
        std::thread::sleep(hold);
    }
    connected
}
