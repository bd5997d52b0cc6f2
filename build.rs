//! Compiles `proto/floyd.proto` with prost; protox parses it, so no system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/floyd.proto");
    // Versioned shared library: libfloyd.so.MAJOR as SONAME (Linux/ELF only).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR")?;
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libfloyd.so.{major}");
    }
    let descriptors = protox::compile(["proto/floyd.proto"], ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        // Rare and large: kept out of line so every queued frame stays small.
        .boxed(".floyd.wire.Frame.body.snapshot_chunk")
        // Absent from most commands: a queued frame stays within 128 bytes.
        .boxed(".floyd.wire.Command.session")
        .compile_fds(descriptors)?;
    Ok(())
}
