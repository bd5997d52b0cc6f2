//! `include/floyd.h` must be exactly what cbindgen (pinned in Cargo.toml)
//! generates from `src/ffi`. Regenerate with `FLOYD_BLESS=1 cargo test --test header`.

use std::path::Path;

#[test]
fn include_floyd_h_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    // cbindgen follows the `mod` declarations of the FFI module itself.
    let builder = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"));
    let mut generated = Vec::new();
    builder.generate().expect("cbindgen").write(&mut generated);
    let path = root.join("include/floyd.h");
    if std::env::var_os("FLOYD_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/floyd.h is stale; regenerate it with `FLOYD_BLESS=1 cargo test --test header` and commit it"
    );
}
