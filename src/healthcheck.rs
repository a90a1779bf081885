//! `shortener healthcheck`: a tiny HTTP/1.1 client for container health checks, so the
//! runtime image needs no curl or shell.

use std::process::ExitCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::HealthcheckArgs;

/// Probes the URL and reports: exit 0 on HTTP 200, 1 on anything else.
pub async fn run(args: &HealthcheckArgs) -> ExitCode {
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}/readyz", args.listen.port()));
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

/// GETs `url` (plain http only) and returns the status code.
async fn probe(url: &str) -> Result<u16, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    if parsed.scheme() != "http" {
        return Err("only http:// URLs can be probed".into());
    }
    let host = parsed.host_str().ok_or("the URL has no host")?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: shortener-healthcheck\r\nConnection: close\r\n\r\n",
        &parsed[url::Position::BeforePath..url::Position::AfterQuery]
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
}
