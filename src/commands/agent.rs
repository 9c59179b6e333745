//! `lts agent` and the host's side of `--agent`: key files, and jobs measured on a board.

use super::*;

/// The key file of `lts agent` and `--agent`: the flag or `LTS_AGENT_KEY_FILE`, else
/// `~/.config/lts/agent.key`.
pub(super) fn agent_key_path(given: Option<&PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("no --key given and $HOME is not set: pass --key FILE")?;
    Ok(PathBuf::from(home).join(".config/lts/agent.key"))
}

/// Loads the agent key, with the fix in the error (how to create it only when it is missing:
/// every other error names its own fix).
fn load_agent_key(given: Option<&PathBuf>) -> Result<crate::remote::auth::Key> {
    use crate::remote::keyfile::{load_key, KeyFileError};
    let path = agent_key_path(given)?;
    load_key(&path).map_err(|e| match e {
        KeyFileError::NotFound(_) => anyhow::Error::new(e).context(format!(
            "agent key {}: create it on the board with `lts agent --init --key {}` and copy it here (or pass --key / LTS_AGENT_KEY_FILE)",
            path.display(),
            path.display()
        )),
        e => e.into(),
    })
}

/// `lts measure --agent`: each job on the board, one after the other.
pub(super) fn measure_on_agent(
    addr: &str,
    key: Option<&PathBuf>,
    jobs: &[Job],
    json: bool,
) -> Result<Vec<JobResult>> {
    use crate::remote::host::{self, AgentAddr, Client};
    let addr = AgentAddr::parse(addr)?;
    let key = load_agent_key(key)?;
    crate::signals::install()?;
    let mut client = Some(Client::connect(&addr, &key)?);
    if let (Some(c), false) = (&client, json) {
        eprintln!(
            "agent {addr}: {} ({}, lts {})",
            c.device.hostname.as_deref().unwrap_or("?"),
            c.device.cpu_brand.as_deref().unwrap_or("?"),
            c.tool_version
        );
    }
    let stamp = crate::util::now_rfc3339().replace([':', '-'], "");
    let mut results = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let id = format!("measure-{stamp}-{}-{i}", std::process::id());
        let r = host::run_job(&mut client, &addr, &key, &id, job, &mut |_| {})
            .with_context(|| format!("measuring {} on the agent at {addr}", job.arch.id()))?;
        if !json {
            if !results.is_empty() {
                println!();
            }
            print!("{}", report::terminal::measurement_table(&r));
        }
        results.push(r);
    }
    Ok(results)
}

/// `lts agent`.
pub fn agent(args: &crate::cli::AgentArgs) -> Result<()> {
    use crate::remote::agent::{self, AgentConfig};
    let path = agent_key_path(args.key.as_ref())?;
    if args.init {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::remote::keyfile::init_key_file(&path)?;
        println!(
            "wrote a new agent key to {} (mode 0600): copy it to the host, e.g. `scp {} host:~/.config/lts/agent.key`",
            path.display(),
            path.display()
        );
        return Ok(());
    }
    let key = load_agent_key(Some(&path))?;
    let limits = crate::remote::message::Limits {
        max_params: args.max_params,
        max_seq_len: args.max_seq_len,
        max_memory: args.max_memory,
    };
    // No Ctrl-C handler: the first Ctrl-C ends the agent (it holds nothing to write).
    let cfg = AgentConfig {
        key,
        limits,
        once: args.once,
        verbose: !args.quiet,
        max_startups: args.max_startups as usize,
    };
    if let Some(dev) = &args.serial {
        let link = crate::remote::serial::SerialLink::open(dev, args.baud)?;
        eprintln!(
            "lts agent listening on serial {dev} at {} baud (key {}; Ctrl-C stops)",
            args.baud,
            path.display()
        );
        return agent::serve_serial(link, cfg);
    }
    let listener = std::net::TcpListener::bind(&args.listen).with_context(|| {
        format!(
            "cannot listen on {}: is another agent running there? choose another --listen",
            args.listen
        )
    })?;
    eprintln!(
        "lts agent listening on {} (key {}; Ctrl-C stops)",
        listener.local_addr()?,
        path.display()
    );
    agent::serve_tcp(listener, cfg)
}
