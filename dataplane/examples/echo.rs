//! `echo`: a UDP server on synergy that answers every request with its own body.
//!
//! ```sh
//! cargo run --release -p synergy-net --example echo -- 127.0.0.1:7000
//! synergy load --target 127.0.0.1:7000 --rps 10000 --body-bytes 64
//! ```
//! Safe Rust, public API only: the handler is a plain closure (never preempted: it opens no
//! preemptible region), the reply's body is the request's own buffer, moved, not copied.

use std::net::SocketAddrV4;
use synergy::{send, Config, Reply, Request, StartError};
use synergy_net::server::UdpServer;

/// Serves echo on `bind` (port 0: the kernel picks one; `UdpServer::local_addr` says which).
pub fn start(bind: SocketAddrV4, config: &Config) -> Result<UdpServer, StartError> {
    UdpServer::serve(config, bind, |req: Request| {
        let reply = Reply::to(&req).with_value(req.body().len() as u64);
        // An error means the transport closed under the reply (shutdown): no one to answer.
        let _ = send(reply.with_body_buf(req.body));
    })
}

#[allow(dead_code)] // the tests include this file for `start`
fn main() {
    let bind = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7000".into());
    let Ok(bind) = bind.parse::<SocketAddrV4>() else {
        eprintln!("echo: {bind:?} is not an IPv4 address:port");
        std::process::exit(2);
    };
    match start(bind, &Config::default()) {
        Ok(server) => {
            println!("echo: serving on {}; Ctrl-C stops it", server.local_addr());
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("echo: {e}");
            std::process::exit(1);
        }
    }
}
