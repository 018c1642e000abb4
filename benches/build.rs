//! Records, for the report header, the compiler that builds this crate and the versions of
//! the peer crates resolved in the workspace's `Cargo.lock`.

use std::path::Path;
use std::process::Command;
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC");

    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BENCHES_RUSTC_VERSION={version}");

    let manifest_dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock_path = Path::new(&manifest_dir).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock_path.display());
    let lock = fs::read_to_string(&lock_path).unwrap_or_default();
    let peers: Vec<String> = [
        "imbl",
        "im",
        "rpds",
        "foldhash",
        "tokio",
        "opentelemetry",
        "crossbeam-channel",
        "rayon",
        "genawaiter",
        "criterion",
    ]
    .iter()
    .map(|name| format!("{name} {}", locked_version(&lock, name).unwrap_or("?")))
    .collect();
    println!("cargo:rustc-env=BENCHES_PEER_VERSIONS={}", peers.join(", "));
}

/// The version of the first `[[package]]` named `name` in a `Cargo.lock`.
fn locked_version<'a>(lock: &'a str, name: &str) -> Option<&'a str> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim();
            return version.strip_prefix("version = \"")?.strip_suffix('"');
        }
    }
    None
}
