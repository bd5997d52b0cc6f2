//! The RESP listener: one thread per connection, with a small stack.
//!
//! Every floyd call blocks until the cluster answers, so a connection needs a
//! thread while a command runs anyway; an idle one costs a parked thread
//! (its stack is reserved, only the touched pages are resident). Measured on
//! 2 cores: 2,000 idle connections add ~37 MiB RSS (~19 KiB each) and a PING
//! on every one of them is answered in ~45 ms; 5,000 add ~107 MiB. See
//! README.md, "raftis". Requests a client pipelines are run together where
//! they can be (plain SET and GET, see `pipeline.rs`), otherwise in order,
//! and their replies written together.
//!
//! Bounds: a large request reserves its bytes from the process-wide budget
//! (`limits.rs`) and the connection stops reading while it waits for room.
//! Replies are written with blocking writes, so a client that does not read
//! stops its own connection; what is pending besides (the replies of one
//! pipelined run, one command's reply) may not pass
//! `--client-output-buffer-limit`: past it the client is disconnected and
//! the closing logged, as Redis does with its client-output-buffer-limit.

use crate::commands::{execute, Context, Outcome, Session};
use crate::pipeline::Pipeline;
use crate::resp::{Parsed, Parser, Reply};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Stack of a connection thread: commands are shallow, values live on the heap.
const STACK_BYTES: usize = 256 << 10;
/// Replies are written once this many bytes are waiting, even mid-pipeline.
const FLUSH_BYTES: usize = 64 << 10;

/// Accepts connections until the process exits. More than `max_clients` at
/// once are told so and closed.
pub fn serve(listener: TcpListener, ctx: Arc<Context>, max_clients: usize) {
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("raftis: accept: {e}");
                // EMFILE and the like: give the system a moment instead of spinning.
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        if ctx.clients.load(Ordering::Relaxed) >= max_clients {
            let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
            continue;
        }
        ctx.clients.fetch_add(1, Ordering::Relaxed);
        let c = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("raftis-conn".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                connection(stream, &c);
                c.clients.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            eprintln!("raftis: cannot start a connection thread: {e}");
            ctx.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Serves one client until it quits, disconnects or breaks the protocol.
fn connection(mut stream: TcpStream, ctx: &Context) {
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(ctx);
    session.socket = Some(std::os::fd::AsRawFd::as_raw_fd(&stream));
    let addr =
        |a: std::io::Result<std::net::SocketAddr>| a.map_or_else(|_| "?".to_string(), |a| a.to_string());
    session.id = ctx
        .registry
        .register(addr(stream.peer_addr()), addr(stream.local_addr()));
    struct Gone<'a>(&'a Context, u64);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            self.0.registry.unregister(self.1);
        }
    }
    let _gone = Gone(ctx, session.id);
    let mut parser = Parser::with_budget(ctx.budget.clone());
    parser.set_unauthenticated(!session.authenticated);
    let mut input = vec![0u8; 16 << 10];
    let mut out = Vec::new();
    let mut pipeline = Pipeline::default();
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let overflow = |pending: usize| {
        ctx.output_disconnections.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "raftis: closing client {peer}: {pending} bytes of replies pending is over \
             --client-output-buffer-limit ({})",
            ctx.output_limit
        );
    };
    loop {
        // Every complete request buffered, then the replies, then more input.
        loop {
            let request = match parser.next() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    if let Err(n) = pipeline.finish(&mut out, ctx.output_limit) {
                        return overflow(n);
                    }
                    Reply::err(format!("ERR Protocol error: {}", e.0)).encode(&mut out);
                    let _ = stream.write_all(&out);
                    return;
                }
            };
            // Held while the request (or floyd's copy of it) lives.
            let reservation = parser.take_reservation();
            if let Parsed::Command(args) = &request {
                if session.authenticated
                    && session.queued.is_none()
                    && pipeline.try_start(ctx, session.redirect, args)
                {
                    pipeline.keep(reservation);
                    continue;
                }
            }
            if let Err(n) = pipeline.finish(&mut out, ctx.output_limit) {
                return overflow(n);
            }
            let close = match request {
                Parsed::Refused(msg) => {
                    Reply::Error(msg).encode(&mut out);
                    false
                }
                Parsed::Command(args) => match execute(ctx, &mut session, &args) {
                    Outcome::Reply(r) => {
                        r.encode(&mut out);
                        false
                    }
                    Outcome::Close(r) => {
                        r.encode(&mut out);
                        true
                    }
                    Outcome::Overflow(n) => return overflow(out.len() + n),
                    Outcome::Watch(w) => return w.serve(&mut stream, out),
                    Outcome::Subscribe(first) => {
                        match crate::pubsub::serve(&mut stream, ctx, &session, &mut parser, &mut out, &first)
                        {
                            crate::pubsub::After::Close => return,
                            crate::pubsub::After::Commands => false,
                        }
                    }
                },
            };
            drop(reservation);
            parser.set_unauthenticated(!session.authenticated);
            if close {
                let _ = stream.write_all(&out);
                return;
            }
            if ctx.output_limit > 0 && out.len() > ctx.output_limit {
                return overflow(out.len());
            }
            if out.len() >= FLUSH_BYTES {
                if stream.write_all(&out).is_err() {
                    return;
                }
                out.clear();
            }
        }
        if let Err(n) = pipeline.finish(&mut out, ctx.output_limit) {
            return overflow(n);
        }
        if !out.is_empty() {
            if stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        if let Some(n) = parser.wants_budget() {
            // The budget is full: this connection reads nothing more (TCP
            // slows the client) until its turn comes and room is free.
            parser.grant(ctx.budget.reserve(n));
            continue;
        }
        let n = match stream.read(&mut input) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        parser.feed(&input[..n]);
    }
}
