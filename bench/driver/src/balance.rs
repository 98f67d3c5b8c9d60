//! `payground-bench balance`: a small TCP balancer for trying several payground
//! nodes behind one address (`bench/multinode`).
//!
//! It listens on a loopback port and hands each incoming connection to the next
//! backend in turn (round robin per connection, not per request: a keep-alive
//! client stays on one node), copying bytes both ways until either side closes. A
//! backend whose connect fails (or takes over a second) is skipped for that
//! connection and the next one is tried; when none answers, the client's connection
//! is closed. There are no health checks, retries of requests or HTTP parsing.
//!
//! ```text
//! payground-bench balance --listen 127.0.0.1:12111 --backend 127.0.0.1:12112 --backend 127.0.0.1:12113
//!                         [--duration S] [--max-connections 4096]
//! ```
//!
//! Only loopback addresses are accepted, for the listener and for every backend. It
//! prints one line (`balancing http://ADDR over B1, B2`) once it listens and runs
//! until it is killed, or for `--duration` seconds when given.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_BACKENDS: usize = 64;
const MAX_CONNECTIONS: usize = 65_536;

pub struct BalanceOpts {
    listen: SocketAddr,
    backends: Vec<SocketAddr>,
    duration: Option<Duration>,
    max_connections: usize,
}

/// A `host:port` that resolves to a loopback address.
fn loopback(addr: &str) -> Result<SocketAddr, String> {
    let addr = addr
        .strip_prefix("http://")
        .unwrap_or(addr)
        .trim_end_matches('/');
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    let first = resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
        .ok_or_else(|| format!("{addr} resolves to nothing"))?;
    if !first.ip().is_loopback() {
        return Err(format!(
            "refusing {first}: only loopback addresses (127.0.0.0/8, ::1) are allowed"
        ));
    }
    Ok(first)
}

pub fn parse(args: impl Iterator<Item = String>) -> Result<BalanceOpts, String> {
    let mut args = args;
    let mut listen = None;
    let mut backends = Vec::new();
    let mut duration = None;
    let mut max_connections = 4096;
    while let Some(flag) = args.next() {
        let v = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(loopback(&v)?),
            "--backend" => backends.push(loopback(&v)?),
            "--duration" => {
                let s: f64 = v.parse().map_err(|_| format!("bad --duration {v}"))?;
                if !(s > 0.0 && s <= 30.0 * 86_400.0) {
                    return Err("--duration must be between 0 and 30 days".into());
                }
                duration = Some(Duration::from_secs_f64(s));
            }
            "--max-connections" => {
                max_connections = v
                    .parse()
                    .map_err(|_| format!("bad --max-connections {v}"))?;
                if max_connections == 0 || max_connections > MAX_CONNECTIONS {
                    return Err(format!("--max-connections must be 1..={MAX_CONNECTIONS}"));
                }
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let listen = listen.ok_or("--listen 127.0.0.1:PORT is required")?;
    if backends.is_empty() || backends.len() > MAX_BACKENDS {
        return Err(format!("give 1..={MAX_BACKENDS} --backend addresses"));
    }
    Ok(BalanceOpts {
        listen,
        backends,
        duration,
        max_connections,
    })
}

/// Connects to the first backend that answers, starting at `first`.
async fn connect_any(backends: &[SocketAddr], first: usize) -> Option<TcpStream> {
    for i in 0..backends.len() {
        let addr = backends[(first + i) % backends.len()];
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        {
            return Some(stream);
        }
    }
    None
}

pub async fn balance(o: BalanceOpts) -> Result<(), String> {
    let listener = TcpListener::bind(o.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", o.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let names: Vec<String> = o.backends.iter().map(|b| b.to_string()).collect();
    println!("balancing http://{local} over {}", names.join(", "));
    let backends = Arc::new(o.backends);
    let next = Arc::new(AtomicUsize::new(0));
    // Bounds the connections held open at once; more wait in the accept queue.
    let slots = Arc::new(Semaphore::new(o.max_connections));
    let accept = async {
        loop {
            let permit = slots.clone().acquire_owned().await.expect("semaphore");
            let (mut client, _) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    // Out of file descriptors or similar: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let first = next.fetch_add(1, Ordering::Relaxed);
            let backends = backends.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let Some(mut upstream) = connect_any(&backends, first).await else {
                    return; // dropping the client closes it
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    };
    match o.duration {
        Some(d) => {
            let _ = tokio::time::timeout(d, accept).await;
        }
        None => accept.await,
    }
    Ok(())
}
