//! A `tansu` broker (Kafka-compatible, memory storage) on a loopback port,
//! for the fleet tests and the end-to-end bench.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The broker process; killed when dropped.
pub struct Tansu {
    child: Child,
    pub brokers: String,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The installed broker, if any (`scripts/ensure-tansu`).
pub fn tansu_binary() -> Option<String> {
    let home = std::env::var("HOME").unwrap_or_default();
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("tansu"))
        .chain([std::path::PathBuf::from(format!("{home}/.cargo/bin/tansu"))])
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
}

impl Tansu {
    pub fn start() -> Tansu {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let bin = tansu_binary().expect("tansu is installed (scripts/ensure-tansu)");
        let child = Command::new(bin)
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu runs (scripts/ensure-tansu installs it)");
        let brokers = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&brokers).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Tansu { child, brokers }
    }

    /// The broker stops answering (SIGSTOP) until `resume`: a hung broker
    /// or a network partition, with its data intact.
    pub fn pause(&self) {
        signal(&self.child, "STOP");
    }

    pub fn resume(&self) {
        signal(&self.child, "CONT");
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args(["-s", sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -s {sig}");
}
