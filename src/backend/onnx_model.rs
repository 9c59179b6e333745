//! The model an ONNX Runtime job runs: serialized graphs and the parameter data they share.

use crate::graph;

/// The model of an ONNX Runtime job: the serialized graphs (in
/// [`crate::job::graphs_for`] order) and, unless they came from a self-contained file, the
/// parameter data they reference ([`graph::ExternalFiles`], shared by the graphs).
pub struct OrtModel {
    /// Serialized ONNX graphs.
    pub graphs: Vec<Vec<u8>>,
    /// In-memory external data of their initializers (empty for a self-contained file).
    pub files: graph::ExternalFiles,
}

impl OrtModel {
    /// Bytes of the model: graphs plus parameter data (counted once).
    pub fn bytes(&self) -> u64 {
        let graphs: usize = self.graphs.iter().map(Vec::len).sum();
        let data: usize = self.files.iter().map(|(_, d)| d.len()).sum();
        (graphs + data) as u64
    }
}
