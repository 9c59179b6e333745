//! Benchmark: the agent link's overhead (issue 15), on loopback:
//!
//! 1. connect + handshake + hello: what a host pays once per board;
//! 2. the round trip of the smallest exchange (`Client::ping`: a `Collect` of an unknown job,
//!    sealed, framed, parsed and answered);
//! 3. the smallest real job (gpt2-tiny, 8-token prefill, 5 timed runs) measured through the
//!    agent and directly, interleaved: the difference of the medians is what the link adds per
//!    job (the job's own graph emission and session creation are in both);
//! 4. the same ping over a pty pair from socat (serial);
//! 5. a fleet search's scheduling overhead: one `lts search --backend cost-model` on 1 and
//!    then on 3 agent processes. Cost-model jobs sleep their modelled time on the board, so
//!    agents on one machine do not compete for its cores: the boards' busy time is known
//!    (the journal's protocol phases), and the rest of the wall time is the search's own work
//!    plus what the link and the scheduler add.
//!
//! Parts 1-3 use an agent served in this process; part 5 runs the `lts` binary.
//!
//! Run: `cargo bench --bench agent` (about 3 minutes). `LTS_BENCH_AGENT_PART` = `link` or
//! `fleet` runs one half; `LTS_BENCH_AGENT_ROUNDS` sets the job rounds of part 3 (default 20);
//! `LTS_BENCH_FLEET_GFLOPS` the cost model's throughput of part 5 (default 5: jobs of 10 to
//! 150 ms per run, about 100 jobs, a minute on one board).

use std::time::{Duration, Instant};

use anyhow::Result;

use lts::arch::Arch;
use lts::job::{self, BackendSpec, Job, WeightsSpec};
use lts::measure::Protocol;
use lts::remote::agent::{serve_tcp, AgentConfig};
use lts::remote::auth::Key;
use lts::remote::host::{run_job, AgentAddr, Client};
use lts::remote::message::Limits;
use lts::workload::Workload;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// An in-process agent's settings: the default limits, serving until the bench ends.
fn agent_config(key: &Key) -> AgentConfig {
    AgentConfig {
        key: key.clone(),
        limits: Limits {
            max_params: lts::arch::DEFAULT_MAX_PARAMS,
            max_seq_len: 4096,
            max_memory: None,
        },
        once: false,
        verbose: false,
        max_startups: lts::remote::startups::DEFAULT_MAX_STARTUPS,
    }
}

#[path = "../tests/common/agents.rs"]
mod agents;

fn main() -> Result<()> {
    let part = std::env::var("LTS_BENCH_AGENT_PART").unwrap_or_default();
    if part.is_empty() || part == "link" {
        link()?;
    }
    if part.is_empty() || part == "fleet" {
        fleet()?;
    }
    Ok(())
}

/// Parts 1 to 4.
fn link() -> Result<()> {
    let key = Key::generate();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = AgentAddr::parse(&listener.local_addr()?.to_string())?;
    let cfg = agent_config(&key);
    std::thread::spawn(move || serve_tcp(listener, cfg));

    let connects: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let c = Client::connect(&addr, &key).expect("connect");
            drop(c);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let mut client = Client::connect(&addr, &key)?;
    let pings: Vec<f64> = (0..2000)
        .map(|_| client.ping().expect("ping").as_secs_f64() * 1e6)
        .collect();
    println!(
        "connect + handshake + hello: median {:.2} ms (20 connections)",
        median(connects)
    );
    println!(
        "round trip of the smallest exchange: median {:.1} us, p90 {:.1} us (2000 pings)",
        median(pings.clone()),
        {
            let mut p = pings;
            p.sort_by(f64::total_cmp);
            p[p.len() * 9 / 10]
        }
    );

    let job = Job {
        arch: Arch::preset("gpt2-tiny")?,
        weights: WeightsSpec::Random { seed: 0 },
        workload: Workload {
            seq_len: 8,
            ..Workload::default()
        },
        protocol: Protocol {
            warmup_s: 0.0,
            min_runs: 5,
            min_duration_s: 0.0,
            ..Protocol::default()
        },
        backend: BackendSpec::Ort(Default::default()),
        max_params: lts::arch::DEFAULT_MAX_PARAMS,
        max_memory: None,
        thermal: Default::default(),
        device_profile: None,
        quant: None,
    };
    let rounds: usize = std::env::var("LTS_BENCH_AGENT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    let mut slot = Some(client);
    for i in 0..rounds {
        let t = Instant::now();
        job::execute(&job)?;
        local.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        run_job(
            &mut slot,
            &addr,
            &key,
            &format!("bench-{i}"),
            &job,
            &mut |_| {},
        )?;
        remote.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (l, r) = (median(local), median(remote));
    println!(
        "smallest real job (gpt2-tiny, 8 tokens, 5 runs), {rounds} rounds interleaved: direct {l:.2} ms, through the agent {r:.2} ms: the link adds {:.2} ms per job",
        r - l
    );
    serial_pings(&key)?;
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}

/// The same ping over a pty pair from socat at 115200 baud (a pty does not pace bytes at the
/// baud rate: this is the protocol's cost over a serial device, not the line's speed; at 115200
/// baud a real line adds about 87 us per byte, some 10 ms for a ping's ~120 bytes each way).
fn serial_pings(key: &Key) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = (dir.path().join("board"), dir.path().join("host"));
    let Ok(mut socat) = std::process::Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .spawn()
    else {
        println!("serial: skipped (socat is not installed)");
        return Ok(());
    };
    while !(a.exists() && b.exists()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let link = lts::remote::serial::SerialLink::open(a.to_str().unwrap(), 115_200)?;
    let cfg = agent_config(key);
    std::thread::spawn(move || lts::remote::agent::serve_serial(link, cfg));
    let addr = AgentAddr::parse(&format!("serial://{}?baud=115200", b.display()))?;
    let t = Instant::now();
    let mut c = Client::connect(&addr, key)?;
    let connect = t.elapsed().as_secs_f64() * 1e3;
    let pings: Vec<f64> = (0..500)
        .map(|_| c.ping().expect("ping").as_secs_f64() * 1e6)
        .collect();
    println!(
        "serial (pty, 115200 baud): connect + handshake + hello {connect:.1} ms; ping median {:.1} us (500 pings)",
        median(pings)
    );
    drop(c);
    let _ = socat.kill();
    let _ = socat.wait();
    Ok(())
}

/// Part 5: the same fleet search on 1 and on 3 agents, cost-model jobs.
fn fleet() -> Result<()> {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_lts"));
    let gflops = std::env::var("LTS_BENCH_FLEET_GFLOPS").unwrap_or_else(|_| "5".into());
    let dir = tempfile::tempdir()?;
    let key = agents::init_key(bin, dir.path(), "k");
    let boards: Vec<agents::Agent> = (0..3)
        .map(|_| agents::spawn_agent(bin, &key, 0, &[]))
        .collect();
    let search = |n: usize, with_agents: bool| -> Result<(f64, String)> {
        let id = format!("n{n}{}", if with_agents { "" } else { "-local" });
        let fleet = dir.path().join(format!("{id}.toml"));
        let entries: Vec<_> = boards.iter().take(n).map(|b| (b, "loop")).collect();
        agents::fleet_file(&fleet, &entries);
        let mut c = std::process::Command::new(bin);
        c.args([
            "search",
            "--backend",
            "cost-model",
            "--cost-gflops",
            &gflops,
        ])
        .args(["--population", "12", "--iterations", "2", "--seq-len", "64"])
        .args(["--quiet", "--run-id", &id, "--out"])
        .arg(dir.path())
        .arg("--key")
        .arg(&key);
        if with_agents {
            c.arg("--agents").arg(&fleet);
        }
        let t = Instant::now();
        let out = c.output()?;
        let wall = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            out.status.success(),
            "lts search failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((wall, id))
    };
    // The boards' busy time of a run: each job's protocol phases, from its journal.
    let busy = |id: &str| -> Result<(usize, f64)> {
        let text = std::fs::read_to_string(dir.path().join(id).join("measurements.jsonl"))?;
        let mut total = 0.0;
        let mut n = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let m = &v["eval"]["measurement"];
            total += [
                "session_creation_ms",
                "first_run_ms",
                "warmup_ms",
                "timed_loop_ms",
            ]
            .iter()
            .map(|k| m[*k].as_f64().unwrap_or(0.0))
            .sum::<f64>()
                / 1e3;
            n += 1;
        }
        Ok((n, total))
    };
    let frontier = |id: &str| -> Result<Vec<String>> {
        let text = std::fs::read_to_string(dir.path().join(id).join("frontier.csv"))?;
        Ok(text
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap_or("").to_string())
            .collect())
    };
    let (local, _) = search(0, false)?;
    let (w1, id1) = search(1, true)?;
    let (w3, id3) = search(3, true)?;
    let (n1, b1) = busy(&id1)?;
    let (n3, b3) = busy(&id3)?;
    println!(
        "fleet search, cost model at {gflops} GFLOP/s (jobs sleep their modelled time), 12 + 2 x 20 candidates:"
    );
    println!("  on this machine, no agent (the search's own work, nothing slept): {local:.2} s");
    println!(
        "  1 agent:  {n1} jobs, boards busy {b1:.2} s, wall {w1:.2} s: link + scheduling {:.1} ms per job beyond the search's own work; {:.2} boards busy on average",
        (w1 - b1 - local) / n1 as f64 * 1e3,
        b1 / w1
    );
    // The two searches measure different candidates after the first iterations (see the
    // frontier line), so compare each with its own ideal: busy time / boards.
    println!(
        "  3 agents: {n3} jobs, boards busy {b3:.2} s, wall {w3:.2} s against an ideal {:.2} s: {:.2} boards busy on average ({:.0}% of 3); {:.2}x the 1-agent run's wall",
        b3 / 3.0 + local,
        b3 / w3,
        b3 / w3 / 3.0 * 100.0,
        w1 / w3
    );
    let (f1, f3) = (frontier(&id1)?, frontier(&id3)?);
    let common = f1.iter().filter(|a| f3.contains(a)).count();
    println!(
        "  frontiers: {} and {} members, {common} in common (slept latencies jitter by ~0.1 ms, which can reorder near-ties and so the later iterations' parents)",
        f1.len(),
        f3.len()
    );
    Ok(())
}
