//! Replays every committed input — the seed corpus and each crash a fuzzer
//! found (`fuzz/artifacts/<target>/`) — through the fuzz targets' checks,
//! on stable Rust, as part of `cargo test` in `fuzz/`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).expect("read an input");
            check(&data);
            n += 1;
        }
    }
    assert!(n > 0, "no inputs for {target}");
}

#[test]
fn request_head() {
    replay("request_head", strangler_fuzz::request_head);
}

#[test]
fn chunked() {
    replay("chunked", strangler_fuzz::chunked);
}

#[test]
fn response_head() {
    replay("response_head", strangler_fuzz::response_head);
}

#[test]
fn path() {
    replay("path", strangler_fuzz::path);
}
