//! Generates prost types for onnx.proto: `gen-onnx-proto <onnx.proto> <out_dir>`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let proto = std::path::PathBuf::from(&args[1]);
    let include = proto.parent().unwrap().to_path_buf();
    let fds = protox::compile([&proto], [&include]).expect("compile onnx.proto");
    prost_build::Config::new()
        .out_dir(&args[2])
        .compile_fds(fds)
        .expect("generate rust");
}
