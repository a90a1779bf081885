//! The HTTP/1.1 accept loop: hyper's connection builder with a header-read timeout (which
//! `axum::serve` does not expose), each connection's peer address for [`ConnectInfo`], and a
//! graceful stop that lets in-flight requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use crate::header_timer::ConnectionTimer;

/// Serves `app` on `listener` until `stop` resolves, then closes the listener and waits for
/// open connections to finish their current request (the caller bounds that wait).
pub async fn run<S>(
    listener: TcpListener,
    app: S,
    header_read_timeout: Duration,
    stop: impl Future<Output = ()>,
) where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Redirects are tiny responses: send them at once rather than waiting for more data.
        let _ = stream.set_nodelay(true);
        let service = PerConnection {
            app: app.clone(),
            peer,
        };
        // A timer of its own: the header-read timeout's deadlines share it (see `ConnectionTimer`).
        let connection = builder
            .clone()
            .timer(ConnectionTimer::default())
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                trace_connection_error(&e, peer);
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Connection errors are the client's business (reset, timed out, malformed): debug level.
fn trace_connection_error(e: &hyper::Error, peer: SocketAddr) {
    if e.is_timeout() {
        tracing::debug!(%peer, "closed a connection that sent no complete request in time");
    } else {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The service of one connection: the app, with the peer's address put into every request.
///
/// Rather than hyper-util's adapter from tower (`TowerToHyperService`), which for every request
/// cloned the closure that held the app, and then the app again: each clone is a few reference
/// counts, atomics that a redirect measurably pays for.
struct PerConnection<S> {
    app: S,
    peer: SocketAddr,
}

impl<S> hyper::service::Service<Request<Incoming>> for PerConnection<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Oneshot<S, Request>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.app.clone().oneshot(request)
    }
}
