//! `fanout`: each request becomes two sub-requests to a back end (e.g. `echo`), sent at once;
//! the handler waits for both without holding its worker (`spawn_blocking` runs the socket
//! calls, `recv` frees the worker) and answers with their bodies joined. Safe Rust.
//! `cargo run --release -p synergy-net --example fanout -- 127.0.0.1:7000 127.0.0.1:7001`

use std::net::{SocketAddrV4, UdpSocket};
use std::time::Duration;
use synergy::{send, spawn_blocking, Body, Config, Reply, Request, StartError};
use synergy_net::protocol::{decode_reply, encode_request, reply_body};
use synergy_net::server::UdpServer;

/// One sub-request to `backend`: `body` out, the reply's body back (empty on a timeout).
fn ask(backend: SocketAddrV4, id: u64, body: Vec<u8>) -> Vec<u8> {
    let exchange = || -> std::io::Result<Vec<u8>> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.send_to(&encode_request(&Request { id, body: Body::from_slice(&body), ..Request::default() }), backend)?;
        let mut buf = vec![0u8; 65_536];
        let n = s.recv(&mut buf)?;
        Ok(decode_reply(&buf[..n]).map(|_| reply_body(&buf[..n]).to_vec()).unwrap_or_default())
    };
    exchange().unwrap_or_default()
}

/// Serves the front end on `bind`, fanning out to `backend`.
pub fn start(bind: SocketAddrV4, backend: SocketAddrV4, config: &Config) -> Result<UdpServer, StartError> {
    UdpServer::serve(config, bind, move |req: Request| {
        let (left, right) = req.body().split_at(req.body().len() / 2);
        let a = spawn_blocking({
            let l = left.to_vec();
            move || ask(backend, 1, l)
        });
        let b = spawn_blocking({
            let r = right.to_vec();
            move || ask(backend, 2, r)
        });
        let (a, b) = (a.recv().unwrap_or_default(), b.recv().unwrap_or_default());
        let _ = send(Reply::to(&req).with_value(2).with_body(&[a, b].concat()));
    })
}

#[allow(dead_code)] // the tests include this file for `start`
fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<SocketAddrV4>());
    let (Some(Ok(bind)), Some(Ok(backend))) = (args.next(), args.next()) else {
        eprintln!("usage: fanout <bind IPv4:port> <backend IPv4:port>");
        std::process::exit(2);
    };
    let server = start(bind, backend, &Config::default()).unwrap_or_else(|e| {
        eprintln!("fanout: {e}");
        std::process::exit(1)
    });
    println!("fanout: serving on {}, backend {backend}; Ctrl-C stops it", server.local_addr());
    loop {
        std::thread::park();
    }
}
