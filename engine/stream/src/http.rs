//! A minimal HTTP/1.1 endpoint: `/metrics`, `/healthz`, `/readyz`. One
//! thread, one request per connection; nothing else is served.

use crate::error::StreamError;
use crate::metrics::Metrics;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Binds `addr` (port 0 picks a free port) and serves until `stop`.
pub fn serve(addr: &str, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) -> Result<(SocketAddr, std::thread::JoinHandle<()>), StreamError> {
    let err = |e: std::io::Error| StreamError::Http { addr: addr.to_string(), reason: e.to_string() };
    let l = TcpListener::bind(addr).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    let local = l.local_addr().map_err(err)?;
    let h = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => handle(s, &metrics),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
        .map_err(err)?;
    Ok((local, h))
}

fn handle(mut s: TcpStream, m: &Metrics) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while n < buf.len() {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                n += k;
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let req = String::from_utf8_lossy(&buf[..n]);
    let path = req.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, body) = match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", m.render()),
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
        "/readyz" if m.ready.load(Ordering::Relaxed) => ("200 OK", "text/plain", "ready\n".to_string()),
        "/readyz" => ("503 Service Unavailable", "text/plain", "not ready: restoring partitions\n".to_string()),
        _ => ("404 Not Found", "text/plain", "not found: try /metrics, /healthz or /readyz\n".to_string()),
    };
    let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}
