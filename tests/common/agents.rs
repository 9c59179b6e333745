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
    let mut child = Command::new(bin)
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
