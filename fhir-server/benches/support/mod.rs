//! What the benchmarks share: Synthea bundles from `scripts/synthea`, the release binary as a
//! child process that dies with the benchmark, and rates.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_fhir-server");

/// Runs `scripts/synthea`, which generates the bundles once and prints their directory.
pub fn synthea_bundles(patients: usize, seed: u64) -> PathBuf {
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(format!("{}/../scripts/synthea", std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")))
        .arg(patients.to_string())
        .arg(seed.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run scripts/synthea");
    assert!(output.status.success(), "scripts/synthea failed: {}", output.status);
    let directory = PathBuf::from(String::from_utf8(output.stdout).expect("utf-8 path").trim());
    if started.elapsed() > Duration::from_secs(5) {
        println!("generated {patients} Synthea patients in {:.0} s", started.elapsed().as_secs_f64());
    }
    directory
}

/// The `.json` files of a directory, sorted.
pub fn bundle_files(directory: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .expect("cannot list the Synthea directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .collect();
    files.sort();
    files
}

/// The value after `--name` on the command line, parsed; `default` without one.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    match args.windows(2).find(|pair| pair[0] == format!("--{name}")) {
        Some(pair) => pair[1].parse().unwrap_or_else(|_| panic!("--{name}: '{}' is not valid", pair[1])),
        None => default,
    }
}

pub fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// CPU seconds (user and system) process `pid` has used so far (Linux only).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    proc_cpu_seconds(&format!("/proc/{pid}/stat"), 11)
}

/// CPU seconds used by the children of this process that have exited and been waited for.
pub fn exited_children_cpu_seconds() -> Option<f64> {
    proc_cpu_seconds("/proc/self/stat", 13)
}

/// The sum of two clock-tick fields of a `/proc/*/stat` file, counted from the state field.
fn proc_cpu_seconds(path: &str, first: usize) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(first)?.parse::<f64>().ok()? + fields.get(first + 1)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux architecture Rust targets.
    Some(ticks / 100.0)
}

/// The server binary, killed when the benchmark ends, however it ends.
pub struct Server(pub Child);

impl Server {
    /// `fhir-server serve` over `data` on `port`, with `env` settings.
    pub fn start(data: &Path, port: u16, env: &[(&str, &str)]) -> Server {
        let child = Command::new(BINARY)
            .args(["--data", data.to_str().expect("utf-8 path"), "serve", "--listen", &format!("127.0.0.1:{port}")])
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the server");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
