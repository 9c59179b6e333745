//! Benchmark: the agent link's overhead (issue 15), on loopback, with an agent served in this
//! process:
//!
//! 1. connect + handshake + hello: what a host pays once per board;
//! 2. the round trip of the smallest exchange (`Client::ping`: a `Collect` of an unknown job,
//!    sealed, framed, parsed and answered);
//! 3. the smallest real job (gpt2-tiny, 8-token prefill, 5 timed runs) measured through the
//!    agent and directly, interleaved: the difference of the medians is what the link adds per
//!    job (the job's own graph emission and session creation are in both).
//!
//! Run: `cargo bench --bench agent` (about a minute). `LTS_BENCH_AGENT_ROUNDS` sets the job
//! rounds (default 20).

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

fn main() -> Result<()> {
    let key = Key::generate();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = AgentAddr::parse(&listener.local_addr()?.to_string())?;
    let cfg = AgentConfig {
        key: key.clone(),
        limits: Limits {
            max_params: lts::arch::DEFAULT_MAX_PARAMS,
            max_seq_len: 4096,
            max_memory: None,
        },
        once: false,
        verbose: false,
    };
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
    let cfg = AgentConfig {
        key: key.clone(),
        limits: Limits {
            max_params: lts::arch::DEFAULT_MAX_PARAMS,
            max_seq_len: 4096,
            max_memory: None,
        },
        once: false,
        verbose: false,
    };
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
