//! A redis-server of the test's own (from `REDIS_SERVER_BIN`), on a free loopback port,
//! that the test can kill, stop, continue and restart by PID. Readiness is read from the
//! server's log ("Ready to accept connections"), not polled.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a starting redis-server may take to say it is ready (it takes milliseconds).
const READY: Duration = Duration::from_secs(20);

pub struct RedisServer {
    bin: String,
    port: u16,
    password: Option<String>,
    tls: Option<TlsFiles>,
    extra: Vec<String>,
    child: Option<Child>,
}

/// The PEM files of a TLS-only server: its certificate chain, its key, and the CA it would
/// check client certificates against (clients are not asked for one).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
    pub ca: String,
}

impl RedisServer {
    /// Starts `bin` on a free port, waiting until it accepts connections; with
    /// `requirepass` when `password` is given.
    pub async fn start(bin: &str, password: Option<&str>) -> Self {
        Self::start_with(bin, password, None, Vec::new()).await
    }

    /// As [`start`](Self::start), but speaking only TLS on its port (`--port 0
    /// --tls-port PORT`): a client in clear gets no answer.
    pub async fn start_tls(bin: &str, password: Option<&str>, files: TlsFiles) -> Self {
        Self::start_with(bin, password, Some(files), Vec::new()).await
    }

    /// As [`start`](Self::start) or [`start_tls`](Self::start_tls), with more
    /// `redis-server` arguments (paths in them must be absolute: `--dir` moves the server).
    pub async fn start_with(
        bin: &str,
        password: Option<&str>,
        tls: Option<TlsFiles>,
        extra: Vec<String>,
    ) -> Self {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let mut server = RedisServer {
            bin: bin.to_owned(),
            port,
            password: password.map(str::to_owned),
            tls,
            extra,
            child: None,
        };
        server.restart().await;
        server
    }

    /// `redis://[:password@]127.0.0.1:PORT/` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}/", self.port),
            None => format!("{scheme}://127.0.0.1:{}/", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)). No
    /// persistence: it starts empty.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut command = Command::new(&self.bin);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        match &self.tls {
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-cert-file", &tls.cert, "--tls-key-file", &tls.key])
                .args(["--tls-ca-cert-file", &tls.ca, "--tls-auth-clients", "no"]),
            None => command.args(["--port", &self.port.to_string()]),
        };
        let mut child = command
            .args(&self.extra)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "notice", "--logfile", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin));
        let stdout = child.stdout.take().expect("stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        // Reads the log until the server exits, so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut log = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("Ready to accept connections") {
                    let _ = ready_tx.send(Ok(()));
                }
                if log.len() < 200 {
                    log.push(line);
                }
            }
            let _ = ready_tx.send(Err(log.join("\n")));
        });
        let pid = child.id();
        self.child = Some(child);
        let ready = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(READY))
            .await
            .expect("join");
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("redis-server (pid {pid}) exited before it was ready:\n{log}"),
            Err(_) => panic!("redis-server (pid {pid}) not ready within {READY:?}"),
        }
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill redis-server");
        child.wait().expect("reap redis-server");
    }

    /// SIGSTOP: the server keeps its sockets (the kernel still accepts connections) but
    /// answers nothing.
    pub fn stop(&self) {
        signal("-STOP", self.pid());
    }

    /// SIGCONT after [`stop`](Self::stop).
    pub fn resume(&self) {
        signal("-CONT", self.pid());
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}
