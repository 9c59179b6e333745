//! The model an ONNX Runtime job runs: serialized graphs and the parameter data they share.

use std::sync::Arc;

use crate::graph::{self, OnnxFile};

/// The model of an ONNX Runtime job: the serialized graphs (in
/// [`crate::job::graphs_for`] order) and, unless they came from a self-contained file, the
/// parameter data they reference ([`graph::ExternalFiles`], shared by the graphs).
pub struct OrtModel {
    /// Serialized ONNX graphs.
    pub graphs: Vec<GraphBytes>,
    /// In-memory external data of their initializers (empty for a self-contained file).
    pub files: graph::ExternalFiles,
}

impl OrtModel {
    /// Bytes of the model: graphs plus parameter data (counted once).
    pub fn bytes(&self) -> u64 {
        let graphs: usize = self.graphs.iter().map(|g| g.len()).sum();
        let data: usize = self.files.iter().map(|(_, d)| d.len()).sum();
        (graphs + data) as u64
    }
}

/// One serialized graph: emitted for this job, or an exported file as it was read (shared with
/// [`OnnxFile::open`]'s cache, never copied).
pub enum GraphBytes {
    /// Bytes serialized for this job.
    Emitted(Vec<u8>),
    /// The bytes of an exported file.
    File(Arc<OnnxFile>),
}

impl std::ops::Deref for GraphBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            GraphBytes::Emitted(b) => b,
            GraphBytes::File(f) => &f.bytes,
        }
    }
}
