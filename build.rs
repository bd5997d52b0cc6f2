//! Compiles `proto/floyd.proto` with prost; protox parses it, so no system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/floyd.proto");
    let descriptors = protox::compile(["proto/floyd.proto"], ["proto"])?;
    prost_build::Config::new().bytes(["."]).compile_fds(descriptors)?;
    Ok(())
}
