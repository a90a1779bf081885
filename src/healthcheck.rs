//! `shortener healthcheck`: a tiny HTTP/1.1 client for container health checks, so the
//! runtime image needs no curl or shell.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::HealthcheckArgs;

/// Probes the URL and reports: exit 0 on HTTP 200, 1 on anything else.
pub async fn run(args: &HealthcheckArgs) -> ExitCode {
    let url = args.url.clone().unwrap_or_else(|| readyz_url(args.listen));
    match tokio::time::timeout(args.timeout, probe(&url)).await {
        Ok(Ok(200)) => {
            println!("ok: {url} answered 200");
            ExitCode::SUCCESS
        }
        Ok(Ok(status)) => {
            eprintln!("unhealthy: {url} answered {status}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("unhealthy: {url}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("unhealthy: {url} did not answer within {:?}", args.timeout);
            ExitCode::FAILURE
        }
    }
}

/// `/readyz` on the address the service listens on. A wildcard address (`0.0.0.0`, `::`)
/// accepts connections on every interface, so the loopback address of the same family
/// reaches it; a specific address (`10.0.0.5`, `::1`) is probed as it is, since the service
/// answers nowhere else.
fn readyz_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, listen.port()))
}

/// GETs `url` (plain http only) and returns the status code.
async fn probe(url: &str) -> Result<u16, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    if parsed.scheme() != "http" {
        return Err("only http:// URLs can be probed".into());
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    // An IPv6 host is bracketed in the URL ("[::1]") but not in a socket address.
    let connected = match parsed.host().ok_or("the URL has no host")? {
        url::Host::Ipv4(ip) => TcpStream::connect((ip, port)).await,
        url::Host::Ipv6(ip) => TcpStream::connect((ip, port)).await,
        url::Host::Domain(name) => TcpStream::connect((name, port)).await,
    };
    let mut stream = connected.map_err(|e| format!("cannot connect: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: shortener-healthcheck\r\nConnection: close\r\n\r\n",
        &parsed[url::Position::BeforePath..url::Position::AfterQuery],
        &parsed[url::Position::BeforeHost..url::Position::AfterPort],
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut head = vec![0; 64];
    let n = stream
        .read(&mut head)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    parse_status(&head[..n]).ok_or_else(|| "not an HTTP response".into())
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.1 503 Service Unavailable"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
    }

    #[test]
    fn the_probe_goes_where_the_service_listens() {
        let url = |addr: &str| readyz_url(addr.parse().unwrap());
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/readyz");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080/readyz");
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080/readyz");
        assert_eq!(url("10.0.0.5:8080"), "http://10.0.0.5:8080/readyz");
        assert_eq!(url("[::1]:9000"), "http://[::1]:9000/readyz");
    }
}
