//! payground-bench: the load driver of payground's benchmarks.
//!
//! Sends Stripe-shaped requests (form bodies, Bearer key) over N keep-alive
//! HTTP/1.1 connections to a server on this machine, closed-loop (each connection
//! sends its next request when the last one answered: maximum throughput) or
//! open-loop at a fixed rate (request i is due at start + i/rate; its latency is
//! measured from that due time, so a stalled server is charged for the requests it
//! delayed: no coordinated omission). Prints one JSON line per run.
//!
//! Every run is bounded in time and in count, and only loopback addresses are
//! accepted as targets.
//!
//! A workload's unit of work is one request, except `token-confirm`: a
//! ConfirmationToken from Stripe's test helper, then a PaymentIntent confirmed
//! with it, on the same connection. Counts, rates, latencies and `--requests`
//! are in units (confirmed objects); the JSON line says `requests_per_unit`, and
//! gives server CPU both per unit and per HTTP request.
//!
//! ```text
//! payground-bench run  --url http://127.0.0.1:12111 --key sk_test_... --workload confirm
//!                      (confirm|create|get|list|list-first|setup-confirm|token-confirm|
//!                       confirmation-token)
//!                      [--connections 32] [--duration 10] [--warmup 2] [--requests 2000000]
//!                      [--rate 5000] [--ids FILE] [--save-ids FILE --save-every 1000]
//!                      [--pid PID] [--system NAME] [--tag k=v]... [--threads 1] [--idempotency]
//!                      [--db-comm postgres]
//!                      [--watch NAME=PID]...
//! payground-bench wait --url ... --key ... --since-ns EPOCH_NS [--timeout 10] [--path P] [--pid PID]
//! payground-bench balance --listen 127.0.0.1:PORT --backend 127.0.0.1:A --backend 127.0.0.1:B
//! ```
//!
//! `--url` may be given more than once: connection i then goes to the i-th URL in
//! turn (spreading the load over several nodes without a balancer). `--pid` may be
//! given more than once (several nodes): `server_cpu_pct` and
//! `server_cpu_us_per_req` are then their sum, RSS is the first one's. `--watch
//! NAME=PID` reports one more process's CPU as `cpu_pct.NAME` (e.g. each node, the
//! balancer). `balance` is a round-robin TCP balancer (see `balance.rs`).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;

mod balance;
mod webhook;

/// Hard limits whatever the arguments say.
const MAX_DURATION_S: f64 = 3600.0;
const MAX_CONNECTIONS: usize = 1024;
const MAX_REQUESTS: u64 = 50_000_000;
/// How long an open-loop run may run past its end draining a backlog.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Confirm,
    Create,
    Get,
    List,
    ListFirst,
    /// A SetupIntent created with `confirm=true`: one request, a succeeded setup.
    SetupConfirm,
    /// A ConfirmationToken from Stripe's test helper, then a PaymentIntent
    /// confirmed with it: two requests on one connection per confirmed payment.
    TokenConfirm,
    /// The ConfirmationToken alone: with `token-confirm`, what each of its two
    /// requests costs; with `--save-ids`, the tokens `confirm-with-token` uses.
    ConfirmationToken,
    /// A PaymentIntent confirmed with a ConfirmationToken made beforehand (the
    /// `--ids` file, each token used once): the merchant server's half of seed
    /// 004, whose other half (the token) the browser makes.
    ConfirmWithToken,
}

impl Workload {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "confirm" => Workload::Confirm,
            "create" => Workload::Create,
            "get" => Workload::Get,
            "list" => Workload::List,
            "list-first" => Workload::ListFirst,
            "setup-confirm" => Workload::SetupConfirm,
            "token-confirm" => Workload::TokenConfirm,
            "confirmation-token" => Workload::ConfirmationToken,
            "confirm-with-token" => Workload::ConfirmWithToken,
            _ => {
                return Err(format!(
                    "unknown workload {s:?} (confirm, create, get, list, list-first, \
                     setup-confirm, token-confirm, confirmation-token, confirm-with-token)"
                ))
            }
        })
    }
    fn name(self) -> &'static str {
        match self {
            Workload::Confirm => "confirm",
            Workload::Create => "create",
            Workload::Get => "get",
            Workload::List => "list",
            Workload::ListFirst => "list-first",
            Workload::SetupConfirm => "setup-confirm",
            Workload::TokenConfirm => "token-confirm",
            Workload::ConfirmationToken => "confirmation-token",
            Workload::ConfirmWithToken => "confirm-with-token",
        }
    }
    fn needs_ids(self) -> bool {
        matches!(
            self,
            Workload::Get | Workload::List | Workload::ConfirmWithToken
        )
    }
    /// The prefix of the ids a successful unit answers that `--save-ids` keeps.
    fn saved_prefix(self) -> Option<&'static str> {
        match self {
            Workload::Confirm
            | Workload::Create
            | Workload::TokenConfirm
            | Workload::ConfirmWithToken => Some("pi_"),
            Workload::ConfirmationToken => Some("ctoken_"),
            _ => None,
        }
    }
    /// HTTP requests per unit of work: rates, `--requests` and latencies count
    /// units (a confirmed object), so a two-request workload compares with a
    /// one-request one by what it achieves, not by how many calls it made.
    fn requests_per_unit(self) -> u64 {
        match self {
            Workload::TokenConfirm => 2,
            _ => 1,
        }
    }
}

const CONFIRM_BODY: &str = "amount=2000&currency=usd&payment_method=pm_card_visa&confirm=true";
const CREATE_BODY: &str = "amount=2000&currency=usd";
const SETUP_CONFIRM_BODY: &str =
    "payment_method=pm_card_visa&confirm=true&payment_method_types[]=card";
const CONFIRMATION_TOKEN_BODY: &str = "payment_method=pm_card_visa";

struct Opts {
    host_header: String,
    addr: SocketAddr,
    /// Every `--url`: connection i goes to `addrs[i % len]` (client-side balancing).
    addrs: Vec<SocketAddr>,
    key: String,
    workload: Workload,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    requests: u64,
    rate: f64,
    threads: usize,
    ids_file: Option<String>,
    save_ids: Option<String>,
    save_every: u64,
    pid: Option<u32>,
    /// Every `--pid`: their CPU is summed as the server's.
    pids: Vec<u32>,
    /// `--watch NAME=PID`: processes whose CPU is reported one by one.
    watch: Vec<(String, u32)>,
    /// Processes whose command name is this (e.g. `postgres`) are summed as `db_cpu_pct`.
    db_comm: Option<String>,
    system: String,
    tags: Vec<(String, String)>,
    idempotency: bool,
    timeout: Duration,
    // wait
    since_ns: Option<u128>,
    path: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: payground-bench run --url http://127.0.0.1:PORT --key KEY \
         --workload confirm|create|get|list|list-first|setup-confirm|token-confirm|confirmation-token \
         [--connections N] [--duration S] [--warmup S] [--requests N] [--rate R] [--ids FILE] \
         [--save-ids FILE --save-every N] [--pid PID]... [--watch NAME=PID]... [--db-comm NAME] [--system NAME] [--tag k=v] \
         [--threads N] [--idempotency]\n\
         \x20      payground-bench wait --url URL --key KEY --since-ns NS [--timeout S] [--path P] [--pid PID]\n\
         \x20      payground-bench balance --listen 127.0.0.1:PORT --backend 127.0.0.1:PORT... [--duration S] [--max-connections N]"
    );
    std::process::exit(2)
}

/// `http://host:port` with a loopback host, resolved.
fn parse_url(url: &str) -> Result<(String, SocketAddr), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported: {url}"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{authority} resolves to nothing"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to send load to {addr}: only loopback addresses (127.0.0.0/8, ::1) are allowed"
        ));
    }
    Ok((authority.to_string(), addr))
}

fn parse_args() -> (String, Opts) {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| usage());
    let mut o = Opts {
        host_header: String::new(),
        addr: "127.0.0.1:12111".parse().unwrap(),
        addrs: Vec::new(),
        key: String::new(),
        workload: Workload::Confirm,
        connections: 32,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(0),
        requests: 1_000_000,
        rate: 0.0,
        threads: 1,
        ids_file: None,
        save_ids: None,
        save_every: 1000,
        pid: None,
        pids: Vec::new(),
        watch: Vec::new(),
        db_comm: None,
        system: String::new(),
        tags: Vec::new(),
        idempotency: false,
        timeout: Duration::from_secs(30),
        since_ns: None,
        path: None,
    };
    let mut urls = Vec::new();
    let secs = |v: &str| -> Duration {
        let s: f64 = v.parse().unwrap_or_else(|_| usage());
        if !(0.0..=MAX_DURATION_S).contains(&s) {
            eprintln!("durations must be between 0 and {MAX_DURATION_S} s");
            std::process::exit(2)
        }
        Duration::from_secs_f64(s)
    };
    while let Some(flag) = args.next() {
        if flag == "--idempotency" {
            o.idempotency = true;
            continue;
        }
        let v = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--url" => urls.push(v),
            "--key" => o.key = v,
            "--workload" => {
                o.workload = Workload::parse(&v).unwrap_or_else(|e| {
                    eprintln!("{e}");
                    usage()
                })
            }
            "--connections" => o.connections = v.parse().unwrap_or_else(|_| usage()),
            "--duration" => o.duration = secs(&v),
            "--warmup" => o.warmup = secs(&v),
            "--timeout" => o.timeout = secs(&v),
            "--requests" => o.requests = v.parse().unwrap_or_else(|_| usage()),
            "--rate" => o.rate = v.parse().unwrap_or_else(|_| usage()),
            "--threads" => o.threads = v.parse().unwrap_or_else(|_| usage()),
            "--ids" => o.ids_file = Some(v),
            "--save-ids" => o.save_ids = Some(v),
            "--save-every" => o.save_every = v.parse().unwrap_or_else(|_| usage()),
            "--pid" => {
                let pid = v.parse().unwrap_or_else(|_| usage());
                o.pid.get_or_insert(pid);
                o.pids.push(pid);
            }
            "--watch" => {
                let (name, pid) = v.split_once('=').unwrap_or_else(|| usage());
                o.watch
                    .push((name.to_string(), pid.parse().unwrap_or_else(|_| usage())));
            }
            "--system" => o.system = v,
            "--db-comm" => o.db_comm = Some(v),
            "--tag" => {
                let (k, val) = v.split_once('=').unwrap_or_else(|| usage());
                o.tags.push((k.to_string(), val.to_string()));
            }
            "--since-ns" => o.since_ns = Some(v.parse().unwrap_or_else(|_| usage())),
            "--path" => o.path = Some(v),
            _ => usage(),
        }
    }
    if urls.is_empty() {
        usage()
    }
    for url in &urls {
        let (host, addr) = parse_url(url).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
        if o.addrs.is_empty() {
            o.host_header = host;
            o.addr = addr;
        }
        o.addrs.push(addr);
    }
    if o.connections == 0 || o.connections > MAX_CONNECTIONS {
        eprintln!("--connections must be 1..={MAX_CONNECTIONS}");
        std::process::exit(2)
    }
    if o.requests == 0 || o.requests > MAX_REQUESTS {
        eprintln!("--requests must be 1..={MAX_REQUESTS}");
        std::process::exit(2)
    }
    if o.rate < 0.0 || o.rate > 1_000_000.0 {
        eprintln!("--rate must be between 0 (closed loop) and 1000000");
        std::process::exit(2)
    }
    o.threads = o.threads.clamp(1, 16);
    o.save_every = o.save_every.max(1);
    (command, o)
}

// ---- /proc ---------------------------------------------------------------------

/// utime + stime of a process in clock ticks (USER_HZ, 100 on Linux).
fn proc_cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total) jiffies of the whole machine, from /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn ncpu() -> f64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0)
}

/// utime + stime of every process whose command name is `comm`.
fn comm_cpu_ticks(comm: &str) -> Option<u64> {
    let mut sum = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        if c.trim_end() == comm {
            sum += proc_cpu_ticks(pid).unwrap_or(0);
        }
    }
    Some(sum)
}

struct CpuSample {
    db: Option<u64>,
    server: Option<u64>,
    watched: Vec<Option<u64>>,
    driver: Option<u64>,
    machine: Option<(u64, u64)>,
    at: Instant,
}

/// CPU ticks now: the sum over `pids` (None if any is gone), each watched process,
/// the `db_comm` processes, the driver itself and the machine.
fn sample(pids: &[u32], watch: &[(String, u32)], db_comm: Option<&str>) -> CpuSample {
    let server = if pids.is_empty() {
        None
    } else {
        pids.iter()
            .map(|p| proc_cpu_ticks(&p.to_string()))
            .sum::<Option<u64>>()
    };
    CpuSample {
        db: db_comm.and_then(comm_cpu_ticks),
        server,
        watched: watch
            .iter()
            .map(|(_, p)| proc_cpu_ticks(&p.to_string()))
            .collect(),
        driver: proc_cpu_ticks("self"),
        machine: machine_ticks(),
        at: Instant::now(),
    }
}

// ---- HTTP ------------------------------------------------------------------------

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

struct Shared {
    opts: Opts,
    auth: String,
    ids: Vec<String>,
    /// Open loop: the next slot to take. Closed loop: requests issued.
    next: AtomicU64,
    /// Requests issued inside the measurement window (bounded by --requests).
    measured: AtomicU64,
    /// Successful creations, for --save-every.
    created: AtomicU64,
    start: Instant,
    measure_start: Instant,
    end: Instant,
    idem_seq: AtomicU64,
    idem_prefix: String,
    /// `confirm-with-token`: tokens of `ids` taken so far.
    tokens_used: AtomicU64,
}

#[derive(Default)]
struct WorkerStats {
    hist: Option<Histogram<u64>>,
    ok: u64,
    bad_status: BTreeMap<u16, u64>,
    transport_errors: u64,
    first_error: Option<String>,
    saved_ids: Vec<String>,
    sample_body: Option<String>,
    dropped: u64,
    warmup_requests: u64,
    /// `confirm-with-token`: the run ended because every token was used.
    tokens_ran_out: bool,
}

fn new_hist() -> Histogram<u64> {
    // Microseconds, 1 µs .. 120 s, 3 significant figures.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// The value of the first `"id": "<prefix>..."` in a JSON text.
fn find_id(body: &[u8], prefix: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let mut rest = text;
    while let Some(pos) = rest.find("\"id\"") {
        let after = rest[pos + 4..].trim_start();
        if let Some(after) = after.strip_prefix(':') {
            let after = after.trim_start();
            if let Some(val) = after.strip_prefix('"') {
                if val.starts_with(prefix) {
                    let end = val.find('"')?;
                    return Some(val[..end].to_string());
                }
            }
        }
        rest = &rest[pos + 4..];
    }
    None
}

/// Whether a JSON answer's `object` is `name`.
fn is_object(body: &str, name: &str) -> bool {
    body.contains(&format!("\"object\":\"{name}\""))
        || body.contains(&format!("\"object\": \"{name}\""))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The request a unit of work starts with (the only one but for `token-confirm`).
fn build_request(sh: &Shared, rng: &mut Rng) -> Request<Full<Bytes>> {
    let (method, path, body) = match sh.opts.workload {
        Workload::Confirm => (
            Method::POST,
            "/v1/payment_intents".to_string(),
            CONFIRM_BODY,
        ),
        Workload::Create => (Method::POST, "/v1/payment_intents".to_string(), CREATE_BODY),
        Workload::Get => {
            let id = &sh.ids[(rng.next() % sh.ids.len() as u64) as usize];
            (Method::GET, format!("/v1/payment_intents/{id}"), "")
        }
        Workload::List => {
            let id = &sh.ids[(rng.next() % sh.ids.len() as u64) as usize];
            (
                Method::GET,
                format!("/v1/payment_intents?limit=10&starting_after={id}"),
                "",
            )
        }
        Workload::ListFirst => (Method::GET, "/v1/payment_intents?limit=10".to_string(), ""),
        Workload::SetupConfirm => (
            Method::POST,
            "/v1/setup_intents".to_string(),
            SETUP_CONFIRM_BODY,
        ),
        Workload::TokenConfirm | Workload::ConfirmationToken => (
            Method::POST,
            "/v1/test_helpers/confirmation_tokens".to_string(),
            CONFIRMATION_TOKEN_BODY,
        ),
        Workload::ConfirmWithToken => {
            // Each token confirms once: the workers take them in turn, and a run
            // that used them all ends (see closed_worker).
            let i = sh.tokens_used.fetch_add(1, Ordering::Relaxed) as usize;
            let token = sh
                .ids
                .get(i)
                .map(String::as_str)
                .unwrap_or("ctoken_exhausted");
            let body = format!("amount=2000&currency=usd&confirm=true&confirmation_token={token}");
            return request(
                sh,
                rng,
                Method::POST,
                "/v1/payment_intents".to_string(),
                Bytes::from(body),
            );
        }
    };
    request(sh, rng, method, path, Bytes::from_static(body.as_bytes()))
}

fn request(
    sh: &Shared,
    rng: &mut Rng,
    method: Method,
    path: String,
    body: Bytes,
) -> Request<Full<Bytes>> {
    let o = &sh.opts;
    let mut b = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(hyper::header::HOST, &o.host_header)
        .header(hyper::header::AUTHORIZATION, &sh.auth)
        .header(hyper::header::USER_AGENT, "payground-bench/0.1");
    if method == Method::POST {
        b = b.header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
        if o.idempotency {
            // Random first, as the SDKs' UUIDv4 keys are, so the server's key index
            // sees inserts all over it; the run's prefix and a counter keep each
            // key unique.
            let n = sh.idem_seq.fetch_add(1, Ordering::Relaxed);
            b = b.header(
                "idempotency-key",
                format!("{:016x}-{}-{n}", rng.next(), sh.idem_prefix),
            );
        }
    }
    b.body(Full::new(body)).expect("request")
}

/// How a unit of work ended: the answer that ended it (the last one, or the first
/// that failed) and which of its requests gave it.
struct Outcome {
    result: Result<(u16, Bytes), String>,
    step: &'static str,
}

/// One unit of work on `conn`: one request, or for `token-confirm` the
/// ConfirmationToken and then the PaymentIntent confirmed with it. A unit whose
/// first request fails ends there, counted once.
async fn unit(sh: &Shared, conn: &mut Option<Sender>, addr: SocketAddr, rng: &mut Rng) -> Outcome {
    let timeout = sh.opts.timeout;
    let first = call(conn, addr, timeout, build_request(sh, rng)).await;
    if sh.opts.workload != Workload::TokenConfirm {
        return Outcome {
            result: first,
            step: sh.opts.workload.name(),
        };
    }
    let token = match &first {
        Ok((status, body)) if (200..300).contains(status) => find_id(body, "ctoken_"),
        _ => {
            return Outcome {
                result: first,
                step: "confirmation_token",
            }
        }
    };
    let Some(token) = token else {
        let excerpt = match &first {
            Ok((status, body)) => error_excerpt(*status, body),
            Err(e) => e.clone(),
        };
        return Outcome {
            result: Err(format!("no ctoken_ id in the answer: {excerpt}")),
            step: "confirmation_token",
        };
    };
    let body = format!("amount=2000&currency=usd&confirm=true&confirmation_token={token}");
    let req = request(
        sh,
        rng,
        Method::POST,
        "/v1/payment_intents".to_string(),
        Bytes::from(body),
    );
    Outcome {
        result: call(conn, addr, timeout, req).await,
        step: "payment_intent",
    }
}

/// One request on a fresh or kept connection: (status, body). A failed or timed-out
/// request drops the connection, so the next one opens a new one.
async fn call(
    conn: &mut Option<Sender>,
    addr: SocketAddr,
    timeout: Duration,
    req: Request<Full<Bytes>>,
) -> Result<(u16, Bytes), String> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn = Some(connect(addr).await?);
    }
    let c = conn.as_mut().expect("connection");
    let fut = async {
        c.ready().await.map_err(|e| format!("ready: {e}"))?;
        let resp = c
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => {
            *conn = None;
            Err(e)
        }
        Err(_) => {
            *conn = None;
            Err("timeout".into())
        }
    }
}

fn record(st: &mut WorkerStats, sh: &Shared, measured: bool, outcome: Outcome, latency: Duration) {
    // A unit of several requests names the one that failed.
    let label = |e: String| {
        if sh.opts.workload.requests_per_unit() > 1 {
            format!("{}: {e}", outcome.step)
        } else {
            e
        }
    };
    match outcome.result {
        Ok((status, body)) => {
            if (200..300).contains(&status) {
                if measured {
                    st.ok += 1;
                    let us = (latency.as_micros() as u64).clamp(1, 120_000_000);
                    let _ = st.hist.get_or_insert_with(new_hist).record(us);
                }
                if st.sample_body.is_none() {
                    st.sample_body = Some(String::from_utf8_lossy(&body).into_owned());
                }
                if let (Some(_), Some(prefix)) =
                    (&sh.opts.save_ids, sh.opts.workload.saved_prefix())
                {
                    let n = sh.created.fetch_add(1, Ordering::Relaxed);
                    if n.is_multiple_of(sh.opts.save_every) {
                        if let Some(id) = find_id(&body, prefix) {
                            st.saved_ids.push(id);
                        }
                    }
                }
            } else {
                *st.bad_status.entry(status).or_default() += 1;
                if st.first_error.is_none() {
                    st.first_error = Some(label(error_excerpt(status, &body)));
                }
            }
        }
        Err(e) => {
            st.transport_errors += 1;
            if st.first_error.is_none() {
                st.first_error = Some(label(e));
            }
        }
    }
}

async fn closed_worker(sh: Arc<Shared>, addr: SocketAddr, seed: u64) -> WorkerStats {
    let mut st = WorkerStats::default();
    let mut rng = Rng(seed | 1);
    let mut conn = None;
    loop {
        let now = Instant::now();
        if now >= sh.end {
            break;
        }
        let measured = now >= sh.measure_start;
        if measured {
            if sh.measured.fetch_add(1, Ordering::Relaxed) >= sh.opts.requests {
                break;
            }
        } else {
            st.warmup_requests += 1;
        }
        if sh.opts.workload == Workload::ConfirmWithToken
            && sh.tokens_used.load(Ordering::Relaxed) as usize >= sh.ids.len()
        {
            st.tokens_ran_out = true;
            break;
        }
        let t0 = Instant::now();
        let outcome = unit(&sh, &mut conn, addr, &mut rng).await;
        let failed = outcome.result.is_err();
        record(&mut st, &sh, measured, outcome, t0.elapsed());
        if failed {
            // Do not spin on a dead server.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    st
}

async fn open_worker(sh: Arc<Shared>, addr: SocketAddr, seed: u64) -> WorkerStats {
    let mut st = WorkerStats::default();
    let mut rng = Rng(seed | 1);
    let mut conn = None;
    let period = 1.0 / sh.opts.rate;
    loop {
        let i = sh.next.fetch_add(1, Ordering::Relaxed);
        let due = sh.start + Duration::from_secs_f64(i as f64 * period);
        if due >= sh.end {
            break;
        }
        let measured = due >= sh.measure_start;
        if measured {
            if sh.measured.fetch_add(1, Ordering::Relaxed) >= sh.opts.requests {
                break;
            }
        } else {
            st.warmup_requests += 1;
        }
        let now = Instant::now();
        if now > sh.end + DRAIN_GRACE {
            // Far behind: count what is left as dropped and stop.
            st.dropped += 1;
            continue;
        }
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        let outcome = unit(&sh, &mut conn, addr, &mut rng).await;
        // From the due time, not the send time: waiting for a connection counts.
        let latency = due.elapsed();
        record(&mut st, &sh, measured, outcome, latency);
    }
    st
}

/// Creates some PaymentIntents to read back when no id file is given.
async fn seed_ids(o: &Opts, auth: &str, n: usize) -> Result<Vec<String>, String> {
    let mut conn = connect(o.addr).await?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/payment_intents")
            .header(hyper::header::HOST, &o.host_header)
            .header(hyper::header::AUTHORIZATION, auth)
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from_static(CONFIRM_BODY.as_bytes())))
            .expect("request");
        conn.ready().await.map_err(|e| e.to_string())?;
        let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status != 200 {
            return Err(format!(
                "seeding failed: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        if let Some(id) = find_id(&body, "pi_") {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

/// The `p` quantile of a microsecond histogram in ms; null when nothing was recorded.
fn quantile_ms(hist: &Histogram<u64>, p: f64) -> Value {
    if hist.is_empty() {
        Value::Null
    } else {
        json!(ms(hist.value_at_quantile(p)))
    }
}

/// The largest value of a microsecond histogram in ms; null when nothing was recorded.
fn max_ms(hist: &Histogram<u64>) -> Value {
    if hist.is_empty() {
        Value::Null
    } else {
        json!(ms(hist.max()))
    }
}

/// A run's first unexpected answer: its status and up to 300 bytes of its body,
/// cut on a character boundary.
fn error_excerpt(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{status}: {}", &text[..end])
}

fn tag_value(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return json!(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        if f.is_finite() {
            return json!(f);
        }
    }
    json!(v)
}

async fn run(o: Opts) -> Result<Value, String> {
    let auth = format!("Bearer {}", o.key);
    let mut ids = Vec::new();
    if o.workload.needs_ids() {
        if let Some(path) = &o.ids_file {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            ids = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
        }
        if ids.is_empty() && o.workload == Workload::ConfirmWithToken {
            return Err(
                "confirm-with-token uses each token of --ids FILE once: make them with \
                 --workload confirmation-token --save-ids FILE --save-every 1"
                    .into(),
            );
        }
        if ids.is_empty() {
            ids = seed_ids(&o, &auth, 200).await?;
        }
        if ids.is_empty() {
            return Err("no ids to read".into());
        }
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .and_then(|v| v.parse::<f64>().ok());
    let start = Instant::now() + Duration::from_millis(20);
    let measure_start = start + o.warmup;
    let end = measure_start + o.duration;
    let idem_prefix = format!(
        "bench-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let sh = Arc::new(Shared {
        opts: o,
        auth,
        ids,
        next: AtomicU64::new(0),
        measured: AtomicU64::new(0),
        created: AtomicU64::new(0),
        start,
        measure_start,
        end,
        idem_seq: AtomicU64::new(0),
        idem_prefix,
        tokens_used: AtomicU64::new(0),
    });
    let pid = sh.opts.pid;
    let pids = sh.opts.pids.clone();
    let watch = sh.opts.watch.clone();
    let db_comm = sh.opts.db_comm.clone();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start.into()).await;
        sample(&pids, &watch, db_comm.as_deref())
    });
    let mut handles = Vec::new();
    for i in 0..sh.opts.connections {
        let sh = sh.clone();
        let addr = sh.opts.addrs[i % sh.opts.addrs.len()];
        let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1)
            ^ (SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7));
        handles.push(tokio::spawn(async move {
            if sh.opts.rate > 0.0 {
                open_worker(sh, addr, seed).await
            } else {
                closed_worker(sh, addr, seed).await
            }
        }));
    }
    let mut total = WorkerStats::default();
    let mut hist = new_hist();
    for h in handles {
        let st = h.await.map_err(|e| e.to_string())?;
        if let Some(hh) = &st.hist {
            hist.add(hh).map_err(|e| e.to_string())?;
        }
        total.ok += st.ok;
        total.transport_errors += st.transport_errors;
        total.dropped += st.dropped;
        total.warmup_requests += st.warmup_requests;
        total.tokens_ran_out |= st.tokens_ran_out;
        for (k, v) in st.bad_status {
            *total.bad_status.entry(k).or_default() += v;
        }
        if total.first_error.is_none() {
            total.first_error = st.first_error;
        }
        if total.sample_body.is_none() {
            total.sample_body = st.sample_body;
        }
        total.saved_ids.extend(st.saved_ids);
    }
    let finished = sample(&sh.opts.pids, &sh.opts.watch, sh.opts.db_comm.as_deref());
    let begun = sampler.await.map_err(|e| e.to_string())?;
    let o = &sh.opts;
    let elapsed = finished
        .at
        .saturating_duration_since(begun.at)
        .as_secs_f64()
        .max(1e-9);
    let hz = 100.0;
    let pct = |a: Option<u64>, b: Option<u64>| -> Value {
        match (a, b) {
            (Some(a), Some(b)) => {
                json!(((b.saturating_sub(a)) as f64 / hz / elapsed * 1000.0).round() / 10.0)
            }
            _ => Value::Null,
        }
    };
    let machine_busy = match (begun.machine, finished.machine) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            json!((((b1 - b0) as f64 / (t1 - t0) as f64) * ncpu() * 1000.0).round() / 10.0)
        }
        _ => Value::Null,
    };
    if let Some(path) = &o.save_ids {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{path}: {e}"))?;
        for id in &total.saved_ids {
            writeln!(f, "{id}").map_err(|e| e.to_string())?;
        }
    }
    let succeeded =
        |b: &str| b.contains("\"status\":\"succeeded\"") || b.contains("\"status\": \"succeeded\"");
    let verified = total.sample_body.as_deref().map(|b| match o.workload {
        Workload::Confirm => succeeded(b),
        // The answer that ends a unit: the setup, or the payment the token confirmed.
        Workload::SetupConfirm => is_object(b, "setup_intent") && succeeded(b),
        Workload::TokenConfirm | Workload::ConfirmWithToken => {
            is_object(b, "payment_intent") && succeeded(b)
        }
        Workload::ConfirmationToken => is_object(b, "confirmation_token"),
        Workload::Create => b.contains("requires_payment_method"),
        Workload::Get => b.contains("\"payment_intent\""),
        Workload::List | Workload::ListFirst => b.contains("\"list\""),
    });
    let mut out = Map::new();
    out.insert("system".into(), json!(o.system));
    out.insert("workload".into(), json!(o.workload.name()));
    out.insert(
        "mode".into(),
        json!(if o.rate > 0.0 { "open" } else { "closed" }),
    );
    out.insert("connections".into(), json!(o.connections));
    let per_unit = o.workload.requests_per_unit();
    out.insert("requests_per_unit".into(), json!(per_unit));
    if o.rate > 0.0 {
        out.insert("target_rate".into(), json!(o.rate));
    }
    out.insert("idempotency_keys".into(), json!(o.idempotency));
    out.insert("seconds".into(), json!((elapsed * 1000.0).round() / 1000.0));
    out.insert("ok".into(), json!(total.ok));
    if o.workload == Workload::ConfirmWithToken {
        // A run that used every token ended early: its rate is over the time it ran.
        out.insert("tokens".into(), json!(sh.ids.len()));
        out.insert("tokens_ran_out".into(), json!(total.tokens_ran_out));
    }
    out.insert(
        "errors".into(),
        json!(total.transport_errors + total.bad_status.values().sum::<u64>()),
    );
    if !total.bad_status.is_empty() {
        let m: Map<String, Value> = total
            .bad_status
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        out.insert("status_counts".into(), Value::Object(m));
    }
    if total.dropped > 0 {
        out.insert("dropped".into(), json!(total.dropped));
    }
    out.insert("rps".into(), json!((total.ok as f64 / elapsed).round()));
    out.insert("p50_ms".into(), quantile_ms(&hist, 0.5));
    out.insert("p90_ms".into(), quantile_ms(&hist, 0.9));
    out.insert("p99_ms".into(), quantile_ms(&hist, 0.99));
    out.insert("p999_ms".into(), quantile_ms(&hist, 0.999));
    out.insert("max_ms".into(), max_ms(&hist));
    out.insert("server_cpu_pct".into(), pct(begun.server, finished.server));
    // CPU time the server spent per completed unit (a confirmed object) and per
    // HTTP request of one: less sensitive than req/s to other work competing for
    // the machine. `ok` and `rps` count units too.
    let cpu_us_per = |requests: u64| match (begun.server, finished.server) {
        (Some(a), Some(b)) if requests > 0 => {
            json!(((b.saturating_sub(a)) as f64 / hz * 1e6 / requests as f64).round())
        }
        _ => Value::Null,
    };
    out.insert(
        "server_cpu_us_per_req".into(),
        cpu_us_per(total.ok * per_unit),
    );
    out.insert("server_cpu_us_per_unit".into(), cpu_us_per(total.ok));
    if let Some(p) = pid {
        out.insert("server_rss_kb".into(), json!(proc_status_kb(p, "VmRSS:")));
        out.insert("server_hwm_kb".into(), json!(proc_status_kb(p, "VmHWM:")));
    }
    if !o.watch.is_empty() {
        let each: Map<String, Value> = o
            .watch
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), pct(begun.watched[i], finished.watched[i])))
            .collect();
        out.insert("cpu_pct".into(), Value::Object(each));
    }
    out.insert("driver_cpu_pct".into(), pct(begun.driver, finished.driver));
    if o.db_comm.is_some() {
        out.insert("db_cpu_pct".into(), pct(begun.db, finished.db));
    }
    out.insert("machine_busy_pct".into(), machine_busy);
    out.insert("loadavg_1m_before".into(), json!(loadavg));
    out.insert("verified".into(), json!(verified));
    if let Some(e) = &total.first_error {
        out.insert("first_error".into(), json!(e));
    }
    if o.save_ids.is_some() {
        out.insert("saved_ids".into(), json!(total.saved_ids.len()));
    }
    for (k, v) in &o.tags {
        out.insert(k.clone(), tag_value(v));
    }
    Ok(Value::Object(out))
}

/// Polls until an authenticated GET answers 200; prints the time since `--since-ns`.
async fn wait(o: Opts) -> Result<Value, String> {
    let since = o.since_ns.unwrap_or_else(now_ns);
    let path = o
        .path
        .clone()
        .unwrap_or_else(|| "/v1/payment_intents?limit=1".into());
    let deadline = Instant::now()
        + if o.timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            o.timeout
        };
    let auth = format!("Bearer {}", o.key);
    let mut tries = 0u64;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        if let Some(pid) = o.pid {
            if !alive(pid) {
                return Err(format!("process {pid} exited before it answered"));
            }
        }
        tries += 1;
        let attempt = async {
            let mut c = connect(o.addr).await?;
            let req = Request::builder()
                .method(Method::GET)
                .uri(&path)
                .header(hyper::header::HOST, &o.host_header)
                .header(hyper::header::AUTHORIZATION, &auth)
                .body(Full::new(Bytes::new()))
                .expect("request");
            c.ready().await.map_err(|e| e.to_string())?;
            let resp = c.send_request(req).await.map_err(|e| e.to_string())?;
            Ok::<u16, String>(resp.status().as_u16())
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(200)) => {
                let ready = now_ns();
                return Ok(json!({
                    "ready_ms": ((ready.saturating_sub(since)) as f64 / 1e4).round() / 100.0,
                    "tries": tries,
                }));
            }
            Ok(Ok(status)) => last_error = format!("status {status}"),
            Ok(Err(e)) => last_error = e,
            Err(_) => last_error = "timeout".into(),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(format!("not ready after {tries} tries: {last_error}"))
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("balance") {
        let opts = balance::parse(std::env::args().skip(2)).unwrap_or_else(|e| {
            eprintln!("payground-bench balance: {e}");
            usage()
        });
        // One thread: copying bytes is cheap, and it leaves the cores to the nodes.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        if let Err(e) = rt.block_on(balance::balance(opts)) {
            eprintln!("payground-bench balance: {e}");
            std::process::exit(1)
        }
        return;
    }
    let (command, opts) = parse_args();
    let rt = if opts.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()
    }
    .expect("runtime");
    let result = rt.block_on(async move {
        match command.as_str() {
            "run" => run(opts).await,
            "wait" => wait(opts).await,
            "webhook" => webhook::run(opts).await,
            _ => usage(),
        }
    });
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("payground-bench: {e}");
            std::process::exit(1)
        }
    }
}
