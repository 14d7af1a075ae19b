//! A real broker (tansu) and engine processes for the streaming tests.
//!
//! The broker binary is `$IDGRAPH_TANSU`, else `~/.cache/idgraph/tools/bin/tansu`;
//! when missing it is installed there (`make test` installs it first, so
//! this is the slow path of a lone `cargo test`). Tests never skip.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static INSTALL: Mutex<()> = Mutex::new(());

fn cache() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/idgraph")
}

/// The tansu binary, installed if missing.
pub fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("IDGRAPH_TANSU") {
        return PathBuf::from(p);
    }
    let p = cache().join("tools/bin/tansu");
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !p.exists() {
        let root = cache().join("tools");
        let st = Command::new("cargo")
            .env_remove("CARGO_TARGET_DIR")
            .args(["install", "tansu", "--version", "0.6.0", "--features", "dynostore", "--locked", "--root"])
            .arg(&root)
            .status()
            .expect("run cargo install tansu");
        assert!(st.success(), "installing tansu failed");
    }
    p
}

/// A binary built next to `idgraph` (idgraph-produce, idgraph-consume, ...).
pub fn tool(name: &str) -> PathBuf {
    let p = crate::bin().parent().unwrap().join(name);
    assert!(p.exists(), "{} not found; build the workspace binaries first", p.display());
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tansu broker on a free loopback port, in memory; killed on drop.
/// With [`Tansu::start_tls`], clients reach it only through TLS.
#[derive(Debug)]
pub struct Tansu {
    pub port: u16,
    child: Child,
    tls: Option<TlsFront>,
}

/// A TLS front (socat) for a plaintext server on a loopback port, with a
/// fresh self-signed certificate for 127.0.0.1; killed on drop. tansu
/// speaks plaintext only, and so does the test registry.
#[derive(Debug)]
pub struct TlsFront {
    pub port: u16,
    /// The certificate clients verify the front with (its own CA).
    pub ca: PathBuf,
    proxy: Child,
}

impl TlsFront {
    /// Fronts `127.0.0.1:target` on `port`; the certificate files are
    /// written to `dir` under `name`.
    pub fn start(dir: &Path, name: &str, port: u16, target: u16) -> Self {
        let (ca, key, both) = (dir.join(format!("{name}-ca.pem")), dir.join(format!("{name}-key.pem")), dir.join(format!("{name}.pem")));
        let o = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&ca)
            .output()
            .expect("run openssl (make deps installs it)");
        assert!(o.status.success(), "openssl req: {}", String::from_utf8_lossy(&o.stderr));
        let pem = [std::fs::read(&ca).unwrap(), std::fs::read(&key).unwrap()].concat();
        std::fs::write(&both, pem).unwrap();
        let proxy = Command::new(socat_bin())
            .arg(format!("OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={}", both.display()))
            .arg(format!("TCP:127.0.0.1:{target}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start socat");
        wait_listening(port, "the TLS front (socat)");
        Self { port, ca, proxy }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
    }
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Tansu {
    pub fn start() -> Self {
        let port = free_port();
        Self { port, child: Self::spawn(port, port), tls: None }
    }

    fn spawn(port: u16, advertised: u16) -> Child {
        let child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{port}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{advertised}"), "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        wait_listening(port, "tansu");
        child
    }

    /// tansu behind a [`TlsFront`] (certificate files in `dir`): it
    /// advertises the front's port, so every client connection after the
    /// bootstrap goes through TLS too. [`Tansu::brokers`] is the front,
    /// and the helpers below connect with TLS.
    pub fn start_tls(dir: &Path) -> Self {
        let (port, front) = (free_port(), free_port());
        let child = Self::spawn(port, front);
        Self { port, child, tls: Some(TlsFront::start(dir, "kafka", front, port)) }
    }

    /// Where clients connect: the broker, or its TLS front.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.tls.as_ref().map_or(self.port, |t| t.port))
    }

    /// The librdkafka properties a client needs here (`KEY=VALUE`).
    pub fn client_properties(&self) -> Vec<String> {
        match &self.tls {
            Some(t) => vec!["security.protocol=ssl".into(), format!("ssl.ca.location={}", t.ca.display())],
            None => Vec::new(),
        }
    }

    /// [`Tansu::client_properties`] as `-X` options of the load tools.
    fn tool_properties(&self) -> Vec<String> {
        self.client_properties().into_iter().flat_map(|p| ["-X".to_string(), p]).collect()
    }

    /// [`Tansu::client_properties`] as an engine config's `[kafka.client]`.
    pub fn client_section(&self) -> String {
        let mut s = String::new();
        for p in self.client_properties() {
            let (k, v) = p.split_once('=').unwrap();
            s += &format!("\"{k}\" = \"{v}\"\n");
        }
        if s.is_empty() {
            s
        } else {
            format!("[kafka.client]\n{s}")
        }
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let o = Command::new(tansu_bin())
            .args(["topic", "create", "--broker", &format!("tcp://127.0.0.1:{}", self.port), name, "--partitions", &partitions.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "create topic {name}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// Produces the lines of `file` to `topic` (lz4, as production
    /// producers do).
    pub fn produce(&self, topic: &str, file: &Path, rate: u64) {
        self.produce_with(topic, file, rate, &[]);
    }

    /// [`Tansu::produce`] with more `idgraph-produce` options (`--avro-schema`).
    pub fn produce_with(&self, topic: &str, file: &Path, rate: u64, extra: &[&str]) {
        let o = Command::new(tool("idgraph-produce"))
            .args(["--brokers", &self.brokers(), "--topic", topic, "--rate", &rate.to_string()])
            .args(self.tool_properties())
            .args(extra)
            .arg(file)
            .output()
            .unwrap();
        assert!(o.status.success(), "produce: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// Every record of `topic` (or the last per key with `compact`).
    pub fn consume(&self, topic: &str, compact: bool) -> Vec<serde_json::Value> {
        self.consume_with(topic, compact, &[])
    }

    /// [`Tansu::consume`] with more `idgraph-consume` options (`--hex`).
    pub fn consume_with(&self, topic: &str, compact: bool, extra: &[&str]) -> Vec<serde_json::Value> {
        let mut c = Command::new(tool("idgraph-consume"));
        c.args(["--brokers", &self.brokers(), "--topic", topic]).args(self.tool_properties()).args(extra);
        if compact {
            c.arg("--compact");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "consume {topic}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Tansu {
    /// The current golden profiles: the compacted view of `idgraph.profiles`.
    pub fn profiles(&self) -> Vec<serde_json::Value> {
        self.consume("idgraph.profiles", true).iter().map(|r| serde_json::from_str(r["value"].as_str().unwrap()).unwrap()).collect()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.tls = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// socat, for the TLS front; installed from Debian's packages when
/// missing (`make deps` installs it first, so this is a lone `cargo
/// test`'s slow path).
fn socat_bin() -> PathBuf {
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let found = |p: &str| Command::new("sh").args(["-c", &format!("command -v {p}")]).output().is_ok_and(|o| o.status.success());
    if !found("socat") {
        let st = Command::new("sh")
            .args(["-c", "s=; [ \"$(id -u)\" = 0 ] || s=sudo; $s apt-get install -y -qq socat >/dev/null 2>&1 || ($s apt-get update -qq && $s apt-get install -y -qq socat)"])
            .status()
            .expect("run apt-get");
        assert!(st.success() && found("socat"), "installing socat failed: run `make deps`");
    }
    PathBuf::from("socat")
}

/// Writes an engine config for `brokers` with state in `state`.
pub fn engine_config(dir: &Path, name: &str, brokers: &str, state: &Path, extra: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    let text = format!(
        "[kafka]\nbrokers = \"{brokers}\"\n[[inputs]]\ntopic = \"touchpoints\"\nformat = \"segment\"\n[state]\ndir = \"{}\"\npartitions = 4\n[http]\nlisten = \"127.0.0.1:0\"\n{extra}",
        state.display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// A running `idgraph run`; killed (SIGKILL) on drop unless stopped.
#[derive(Debug)]
pub struct Engine {
    pub child: Child,
    pub http: String,
    pub stderr_path: PathBuf,
}

impl Engine {
    pub fn start(config: &Path, log: &Path) -> Self {
        Self::start_env(config, log, &[])
    }

    pub fn start_env(config: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        let err = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut child = Command::new(crate::bin())
            .args(["run", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("start idgraph run");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut http = None;
        let mut line = String::new();
        while http.is_none() {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                let st = child.wait();
                panic!("idgraph run exited during start-up ({st:?}); log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
            }
            if let Some(rest) = line.strip_prefix("http: http://") {
                http = rest.split('/').next().map(str::to_string);
            }
        }
        // Keep draining stdout so the engine never blocks on it.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        Self { child, http: http.unwrap(), stderr_path: log.to_path_buf() }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.http, path)
    }

    /// Metric samples by full name with labels, e.g.
    /// `idgraph_core_cmd_lag_records{partition="0"}`.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let (_, body) = self.get("/metrics");
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    /// Waits until the engine has read `events` input records, its command
    /// topic is fully consumed and nothing moved for a while.
    pub fn wait_quiescent(&self, events: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        let mut stable_since = Instant::now();
        loop {
            let m = self.metrics();
            let read: f64 = m.iter().filter(|(k, _)| k.starts_with("idgraph_ingest_events_total")).map(|(_, v)| v).sum();
            let lag: f64 = m.iter().filter(|(k, _)| k.starts_with("idgraph_core_cmd_lag_records")).map(|(_, v)| v).sum();
            let has_lag = m.keys().any(|k| k.starts_with("idgraph_core_cmd_lag_records"));
            let cmds = m.get("idgraph_core_commands_total").copied().unwrap_or(0.0);
            let snapshot = (read as u64, cmds as u64);
            if last != Some(snapshot) {
                last = Some(snapshot);
                stable_since = Instant::now();
            }
            if read as u64 >= events && has_lag && lag == 0.0 && stable_since.elapsed() > Duration::from_millis(2500) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "engine not quiescent after {timeout:?}: read {read} of {events}, lag {lag}, commands {cmds}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.success();
            }
            assert!(Instant::now() < deadline, "engine did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the profiles topic counts exactly `n` events (failing if
/// `alive` says an engine died). While merges are in flight the count can
/// read high: a merge's survivor (with the absorbed profile's events) and
/// the absorbed profile's tombstone are records on different partitions of
/// the topic, produced by different batches, and a read can see the first
/// without the second. So only a count that stays off at the timeout
/// fails; the callers then compare every profile with replay or the truth.
pub fn wait_for_event_total(broker: &Tansu, n: u64, timeout: Duration, mut alive: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    let mut highest = 0;
    loop {
        if let Err(e) = alive() {
            panic!("{e}");
        }
        let total: u64 = broker.profiles().iter().map(|p| p["metrics"]["event_count"].as_u64().unwrap()).sum();
        if total == n {
            if highest > n {
                eprintln!("the profiles topic read {highest} events for {n} while merges were in flight");
            }
            return;
        }
        highest = highest.max(total);
        assert!(Instant::now() < deadline, "{total} of {n} events counted after {timeout:?} (at most {highest} on the way)");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Reads the whole profiles topic and checks each `(profile_id, version)`
/// was published with one content only; returns (versions, repeats).
pub fn assert_versions_consistent(broker: &Tansu) -> (usize, usize) {
    let mut seen: std::collections::HashMap<(String, u64), String> = std::collections::HashMap::new();
    let mut repeats = 0;
    for r in broker.consume("idgraph.profiles", false) {
        let Some(v) = r["value"].as_str() else { continue };
        let p: serde_json::Value = serde_json::from_str(v).unwrap();
        let key = (p["profile_id"].as_str().unwrap().to_string(), p["version"].as_u64().unwrap());
        if let Some(prev) = seen.insert(key.clone(), v.to_string()) {
            assert_eq!(prev, v, "{key:?} published with two contents");
            repeats += 1;
        }
    }
    (seen.len(), repeats)
}

/// The last lines of a log file (for failure messages).
pub fn log_tail(log: &Path, lines: usize) -> String {
    let l = std::fs::read_to_string(log).unwrap_or_default();
    let mut v: Vec<&str> = l.lines().rev().take(lines).collect();
    v.reverse();
    v.join("\n")
}

/// An HTTP GET; status 0 when nothing answers (the engine has exited), so
/// a waiting test times out with the engines' log tails instead of
/// panicking without them.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else { return (0, String::new()) };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let status = body.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = body.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A record read back from an Avro output topic.
#[derive(Debug)]
pub struct AvroRecord {
    /// The record's headers, as `idgraph-consume` prints them.
    pub headers: serde_json::Value,
    pub schema_id: u32,
    /// The decoded datum (strict: nothing left over, matches the schema).
    pub value: apache_avro::types::Value,
}

impl Tansu {
    /// Every value of an Avro output topic (`None`: a tombstone), decoded
    /// from the Confluent wire format with `schema(ID)`; panics on a value
    /// that is not in the wire format or does not decode.
    pub fn avro_records(
        &self,
        topic: &str,
        compact: bool,
        schema: impl Fn(u32) -> apache_avro::Schema,
    ) -> Vec<Option<(AvroRecord, apache_avro::Schema)>> {
        self.consume_with(topic, compact, &["--hex"])
            .iter()
            .map(|r| {
                let bytes = crate::unhex(r["value"].as_str()?);
                let (id, datum) =
                    idgraph_stream::avro::split_wire(&bytes).unwrap_or_else(|| panic!("{topic}: a value not in the wire format"));
                let s = schema(id);
                let value = idgraph_stream::avro::decode_datum(&s, datum).unwrap_or_else(|e| panic!("{topic}: schema ID {id}: {e}"));
                Some((AvroRecord { headers: r["headers"].clone(), schema_id: id, value }, s))
            })
            .collect()
    }
}
