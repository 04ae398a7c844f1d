//! The outage: a TCP proxy between the DynamoDB client and moto that stops listening.

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_circuit_breaker::BoxError;

/// A TCP proxy on `127.0.0.1` in front of moto. Switched off, it closes its listening
/// socket (new connections are refused) and cuts the open ones; switched on, it
/// listens on the same address again.
pub(super) struct OutageProxy {
    pub(super) addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl OutageProxy {
    pub(super) async fn start(upstream: SocketAddr) -> Result<Self, BoxError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (up, rx) = watch::channel(true);
        tokio::spawn(serve(Some(listener), addr, upstream, rx));
        Ok(OutageProxy { addr, up })
    }

    pub(super) fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

async fn serve(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut up: watch::Receiver<bool>,
) {
    loop {
        match &listener {
            Some(l) => tokio::select! {
                accepted = l.accept() => {
                    if let Ok((client, _)) = accepted {
                        tokio::spawn(pipe(client, upstream, up.clone()));
                    }
                }
                changed = up.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !*up.borrow_and_update() {
                        listener = None; // closed: connection refused
                    }
                }
            },
            None => {
                if up.changed().await.is_err() {
                    return;
                }
                if *up.borrow_and_update() {
                    match TcpListener::bind(addr).await {
                        Ok(l) => listener = Some(l),
                        Err(e) => {
                            eprintln!("outage proxy: cannot listen on {addr} again: {e}");
                            return;
                        }
                    }
                }
            }
        }
    }
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        // The outage cuts open (pooled keep-alive) connections too.
        _ = up.wait_for(|up| !*up) => {}
    }
}
