//! The messages a host and a board agent exchange once the handshake ([`super::auth`]) has
//! authenticated both ends: JSON documents, one per sealed frame ([`super::frame`]).
//!
//! The host never ships model files: a job is the serde [`Job`] (arch, seeded weights, workload,
//! protocol, backend, thermal settings); the board emits the graph itself, measures with its own
//! clock and thermal sampling and sends back the [`JobResult`] with the raw samples. Every job
//! carries an id the host chooses, so a host that lost the connection mid-job can `Collect` the
//! result later instead of measuring again.
//!
//! Conversation (agent = board, host = the machine running the search):
//! ```text
//! agent -> host  Hello { device, limits }          once, right after the handshake
//! host  -> agent Job { id, job }                   the agent answers Error or, after
//! agent -> host  Progress { id, elapsed_s }        ... a heartbeat every second while it runs,
//! agent -> host  Result { id, result }             the measurement
//! host  -> agent Cancel { id }                     stop a running job (answered by Error)
//! host  -> agent Collect { id }                    a finished job's result again: Result, or
//! agent -> host  Unknown { id }                    when the agent does not have it
//! either         Bye                               the sender closes the connection
//! ```

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::device::DeviceInfo;
use crate::job::{Job, JobResult, WeightsSpec};
use crate::workload::{estimate_memory, MemoryLimit, Mode};

/// Longest job id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// What an agent accepts, checked by [`Limits::admit`] before anything is allocated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Limits {
    /// Most total parameters of a job's arch (`lts agent --max-params`).
    pub max_params: u64,
    /// Most positions one run may hold: prompt + new tokens, or the decode cache + 1
    /// (`--max-seq-len`).
    pub max_seq_len: usize,
    /// Most memory a job's workload may need, in bytes (`--max-memory`; `None`: 80% of the
    /// board's memory).
    pub max_memory: Option<u64>,
}

/// One message.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Message {
    /// Agent, after the handshake: the board and what it accepts.
    Hello {
        /// `lts` version on the board.
        tool_version: String,
        /// `lts device --json` of the board.
        device: Box<DeviceInfo>,
        /// Its limits.
        limits: Limits,
    },
    /// Host: measure `job`.
    Job {
        /// Chosen by the host; a later `Collect` names it.
        id: String,
        /// What to measure.
        job: Box<Job>,
    },
    /// Host: measure `jobs`, variants of one model that differ only in their graphs (fp32 and
    /// its quantized schemes), together in one interleaved loop
    /// ([`crate::job::execute_interleaved`]); answered by `Results`.
    Variants {
        /// Chosen by the host; a later `Collect` names it.
        id: String,
        /// The variants, 1 to [`MAX_VARIANTS`].
        jobs: Vec<Job>,
    },
    /// Agent: job `id` is running (a heartbeat, every second).
    Progress {
        /// The job.
        id: String,
        /// Seconds since it started.
        elapsed_s: f64,
    },
    /// Agent: the measurement of job `id`.
    Result {
        /// The job.
        id: String,
        /// Its result, raw samples included.
        result: Box<JobResult>,
    },
    /// Agent: the measurements of variants job `id`, in the order of its jobs.
    Results {
        /// The job.
        id: String,
        /// One result per variant, raw samples included.
        results: Vec<JobResult>,
    },
    /// Either side: something went wrong (with the job it concerns, when one does).
    Error {
        /// The job, if the error concerns one.
        id: Option<String>,
        /// What went wrong and what to do about it.
        message: String,
    },
    /// Host: stop job `id`.
    Cancel {
        /// The job.
        id: String,
    },
    /// Host: send the result of finished job `id` again.
    Collect {
        /// The job.
        id: String,
    },
    /// Agent: no result of job `id` is kept here (never run, failed, or forgotten).
    Unknown {
        /// The job.
        id: String,
    },
    /// Either side: closing the connection.
    Bye,
}

impl Message {
    /// The JSON bytes of a frame's payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("messages serialize")
    }

    /// Parses a frame's payload: well-formed JSON of one known message, with valid job ids.
    /// The frame layer has already bounded its size.
    pub fn decode(bytes: &[u8]) -> Result<Message> {
        let m: Message =
            serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("malformed message: {e}"))?;
        match &m {
            Message::Job { id, .. }
            | Message::Variants { id, .. }
            | Message::Progress { id, .. }
            | Message::Result { id, .. }
            | Message::Results { id, .. }
            | Message::Cancel { id }
            | Message::Collect { id }
            | Message::Unknown { id } => check_id(id)?,
            Message::Error { id: Some(id), .. } => check_id(id)?,
            Message::Hello { .. } | Message::Error { id: None, .. } | Message::Bye => {}
        }
        Ok(m)
    }

    /// Its kind, for error messages (`job`, `result`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Job { .. } => "job",
            Message::Variants { .. } => "variants",
            Message::Progress { .. } => "progress",
            Message::Result { .. } => "result",
            Message::Results { .. } => "results",
            Message::Error { .. } => "error",
            Message::Cancel { .. } => "cancel",
            Message::Collect { .. } => "collect",
            Message::Unknown { .. } => "unknown",
            Message::Bye => "bye",
        }
    }
}

/// Most variants one `Variants` job may time together (their models are all in memory).
pub const MAX_VARIANTS: usize = 16;

/// What a host asks a board to measure: one job, or variants timed together.
#[derive(Clone, Debug)]
pub enum Work {
    /// One job ([`Message::Job`]).
    One(Box<Job>),
    /// Variants of one model in one interleaved loop ([`Message::Variants`]).
    Variants(Vec<Job>),
}

/// What a board measured: one result, or one per variant.
#[derive(Clone, Debug)]
pub enum Done {
    /// The result of a [`Work::One`].
    One(Box<JobResult>),
    /// The results of a [`Work::Variants`], in its order.
    Many(Vec<JobResult>),
}

impl Work {
    /// The message that sends it as job `id`.
    pub fn message(&self, id: &str) -> Message {
        match self {
            Work::One(job) => Message::Job {
                id: id.to_string(),
                job: job.clone(),
            },
            Work::Variants(jobs) => Message::Variants {
                id: id.to_string(),
                jobs: jobs.clone(),
            },
        }
    }

    /// The arch it measures, for logs.
    pub fn arch_id(&self) -> String {
        match self {
            Work::One(job) => job.arch.id(),
            Work::Variants(jobs) => jobs.first().map_or_else(String::new, |j| {
                format!("{} ({} variants)", j.arch.id(), jobs.len())
            }),
        }
    }

    /// Measures it on this machine ([`crate::job::execute`] or
    /// [`crate::job::execute_interleaved`]).
    pub fn execute(&self) -> Result<Done> {
        Ok(match self {
            Work::One(job) => Done::One(Box::new(crate::job::execute(job)?)),
            Work::Variants(jobs) => Done::Many(crate::job::execute_interleaved(jobs)?),
        })
    }
}

impl Done {
    /// How many results it holds (an empty variants answer counts as one).
    pub fn results(&self) -> usize {
        match self {
            Done::One(_) => 1,
            Done::Many(r) => r.len().max(1),
        }
    }

    /// The message that answers job `id` with it.
    pub fn message(self, id: &str) -> Message {
        match self {
            Done::One(result) => Message::Result {
                id: id.to_string(),
                result,
            },
            Done::Many(results) => Message::Results {
                id: id.to_string(),
                results,
            },
        }
    }
}

/// A job id: 1 to [`MAX_ID_LEN`] bytes of letters, digits and `._:-`.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        bail!(
            "job id `{}` must be 1 to {MAX_ID_LEN} letters, digits or `._:-`",
            id.chars()
                .take(MAX_ID_LEN)
                .collect::<String>()
                .escape_default()
        );
    }
    Ok(())
}

impl Limits {
    /// Refuses a job this agent must not run, before anything is built: weights the board
    /// does not have (the host never ships files: only seeded weights travel), an arch outside
    /// the hard bounds or above `max_params`, a run longer than `max_seq_len` positions, or a
    /// workload whose memory estimate exceeds `max_memory`. Every size is checked with bounded
    /// arithmetic ([`crate::arch::Arch::validate`] first).
    pub fn admit(&self, job: &Job) -> Result<()> {
        if !matches!(job.weights, WeightsSpec::Random { .. }) {
            bail!(
                "the job names weights in a file on the host; an agent measures seeded weights only (the host never ships model files)"
            );
        }
        job.arch.validate()?;
        job.arch.check_size(self.max_params.min(job.max_params))?;
        job.workload.check(&job.arch)?;
        let w = &job.workload;
        let positions = match w.mode {
            Mode::Prefill => w.seq_len,
            Mode::Decode => w.seq_len.saturating_add(1),
            Mode::Generate => w.seq_len.saturating_add(w.new_tokens),
        };
        if positions > self.max_seq_len {
            bail!(
                "the job needs {positions} positions per run, above this agent's --max-seq-len {}",
                self.max_seq_len
            );
        }
        MemoryLimit::resolve(self.memory_limit(job.max_memory))
            .check(estimate_memory(&job.arch, w), "the job's workload")?;
        job.protocol.validate()?;
        job.thermal.validate()?;
        Ok(())
    }

    /// The smaller of this agent's `--max-memory` and a job's own limit.
    pub fn memory_limit(&self, job: Option<u64>) -> Option<u64> {
        match (self.max_memory, job) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Refuses work this agent must not run ([`Limits::admit`] for each job; 1 to
    /// [`MAX_VARIANTS`] variants) and applies this agent's memory limit to every job (the
    /// variants' models, held together, are checked against it when they are built).
    pub fn admit_work(&self, work: &mut Work) -> Result<()> {
        let jobs: &mut [Job] = match work {
            Work::One(job) => std::slice::from_mut(&mut **job),
            Work::Variants(jobs) => {
                if jobs.is_empty() || jobs.len() > MAX_VARIANTS {
                    bail!(
                        "a variants job holds {} jobs: send 1 to {MAX_VARIANTS}",
                        jobs.len()
                    );
                }
                jobs
            }
        };
        for job in jobs {
            self.admit(job)?;
            job.max_memory = self.memory_limit(job.max_memory);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::job::BackendSpec;
    use crate::measure::Protocol;
    use crate::workload::Workload;

    fn job(arch: &str) -> Job {
        Job {
            arch: Arch::preset(arch).unwrap(),
            weights: WeightsSpec::Random { seed: 0 },
            workload: Workload {
                seq_len: 16,
                ..Workload::default()
            },
            protocol: Protocol::default(),
            backend: BackendSpec::Ort(Default::default()),
            max_params: crate::arch::DEFAULT_MAX_PARAMS,
            max_memory: None,
            thermal: Default::default(),
            device_profile: None,
            quant: None,
        }
    }

    fn limits() -> Limits {
        Limits {
            max_params: 10_000_000,
            max_seq_len: 64,
            max_memory: Some(1 << 30),
        }
    }

    #[test]
    fn messages_round_trip() {
        for m in [
            Message::Job {
                id: "run-1:gpt2-abc:short".into(),
                job: Box::new(job("gpt2-tiny")),
            },
            Message::Variants {
                id: "run-1:gpt2-abc:quant".into(),
                jobs: vec![job("gpt2-tiny"), job("gpt2-tiny")],
            },
            Message::Results {
                id: "a".into(),
                results: Vec::new(),
            },
            Message::Progress {
                id: "a".into(),
                elapsed_s: 1.5,
            },
            Message::Error {
                id: None,
                message: "no".into(),
            },
            Message::Cancel { id: "a".into() },
            Message::Collect { id: "a".into() },
            Message::Unknown { id: "a".into() },
            Message::Bye,
        ] {
            let back = Message::decode(&m.encode()).unwrap();
            assert_eq!(back.encode(), m.encode());
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bad in [
            &b""[..],
            b"{",
            b"null",
            b"{\"type\":\"nope\"}",
            b"{\"type\":\"cancel\",\"id\":\"a\",\"extra\":1}",
            b"{\"type\":\"cancel\"}",
            b"{\"type\":\"cancel\",\"id\":\"\"}",
            b"{\"type\":\"cancel\",\"id\":\"a/../b\"}",
            b"{\"type\":\"progress\",\"id\":\"a\",\"elapsed_s\":\"x\"}",
        ] {
            assert!(
                Message::decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("{{\"type\":\"cancel\",\"id\":\"{}\"}}", "a".repeat(129));
        assert!(Message::decode(long.as_bytes()).is_err());
    }

    #[test]
    fn limits_refuse_before_anything_is_built() {
        let l = limits();
        l.admit(&job("gpt2-tiny")).unwrap();
        let e = |j: &Job| format!("{:#}", l.admit(j).unwrap_err());
        assert!(e(&job("gpt2-small")).contains("parameters"));
        let mut long = job("gpt2-tiny");
        long.workload.seq_len = 33;
        let short = Limits {
            max_seq_len: 32,
            ..limits()
        };
        assert!(format!("{:#}", short.admit(&long).unwrap_err()).contains("--max-seq-len 32"));
        let mut file = job("gpt2-tiny");
        file.weights = WeightsSpec::Onnx {
            path: "/etc/passwd".into(),
        };
        assert!(e(&file).contains("never ships model files"));
        let mut huge = job("gpt2-tiny");
        huge.arch.n_layer = usize::MAX;
        assert!(l.admit(&huge).is_err());
        let tight = Limits {
            max_memory: Some(1 << 20),
            ..limits()
        };
        assert!(format!("{:#}", tight.admit(&job("gpt2-tiny")).unwrap_err()).contains("memory"));
    }

    #[test]
    fn variants_are_bounded_and_get_the_agents_memory_limit() {
        let l = limits();
        let mut w = Work::Variants(vec![job("gpt2-tiny"); 2]);
        l.admit_work(&mut w).unwrap();
        let Work::Variants(jobs) = &w else {
            unreachable!()
        };
        assert!(jobs.iter().all(|j| j.max_memory == Some(1 << 30)));
        for n in [0, MAX_VARIANTS + 1] {
            let e = l
                .admit_work(&mut Work::Variants(vec![job("gpt2-tiny"); n]))
                .unwrap_err();
            assert!(e.to_string().contains("variants job holds"), "{e}");
        }
        // One variant above the limits refuses the whole job.
        let mut w = Work::Variants(vec![job("gpt2-tiny"), job("gpt2-small")]);
        assert!(format!("{:#}", l.admit_work(&mut w).unwrap_err()).contains("parameters"));
    }

    mod fuzz {
        use super::super::super::frame::testutil::{apply, fuzz_config, mutations};
        use super::*;
        use proptest::prelude::*;

        fn valid() -> Vec<Vec<u8>> {
            vec![
                Message::Job {
                    id: "r:gpt2-1:short".into(),
                    job: Box::new(job("gpt2-tiny")),
                }
                .encode(),
                Message::Progress {
                    id: "a".into(),
                    elapsed_s: 2.0,
                }
                .encode(),
                Message::Collect { id: "a".into() }.encode(),
                Message::Variants {
                    id: "r:gpt2-1:quant".into(),
                    jobs: vec![job("gpt2-tiny")],
                }
                .encode(),
                Message::Error {
                    id: Some("a".into()),
                    message: "x".into(),
                }
                .encode(),
            ]
        }

        proptest! {
            #![proptest_config(fuzz_config())]

            /// Random bytes and mutated valid messages: the parser, and the limits check of
            /// any job that still parses, return Ok or an error, never panic.
            #[test]
            fn fuzz_message_decode(which in 0usize..4, muts in mutations(),
                                   junk in prop::collection::vec(any::<u8>(), 0..200)) {
                let _ = Message::decode(&junk);
                let mut bytes = valid()[which].clone();
                apply(&mut bytes, &muts, 0, 0);
                if let Ok(Message::Job { job, .. }) = Message::decode(&bytes) {
                    let _ = limits().admit(&job);
                }
            }
        }
    }
}
