//! Lifecycle: close releases everything (the same path opens again in the same
//! process), a start that fails midway leaves nothing behind, and IPv6 members work.

mod common;

use common::{free_ports, wait_until};
use floyd::ffi::*;
use floyd::{Error, Floyd, Options};
use std::ffi::{c_char, CStr, CString};
use std::net::TcpListener;
use std::path::Path;
use std::ptr::null_mut;
use std::time::Duration;

fn fast(mut o: Options) -> Options {
    o.heartbeat_us = 30_000;
    o.check_leader_us = 300_000;
    o.request_timeout = Duration::from_secs(10);
    o.leader_wait = Duration::from_secs(5);
    o
}

fn single(port: u16, path: &Path) -> Options {
    fast(Options::new(
        &format!("127.0.0.1:{port}"),
        "127.0.0.1",
        port,
        path,
    ))
}

fn wait_leader(f: &Floyd) {
    wait_until("the single node to lead", || f.is_leader());
}

#[test]
fn close_then_reopen_the_same_path_while_the_first_handle_lives() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let first = Floyd::open(single(port, dir.path())).unwrap();
    wait_leader(&first);
    first.write(b"k", b"before close").unwrap();
    first.close();
    // Not dropped: it still holds the node, but no longer its databases.
    assert!(matches!(first.write(b"k", b"x"), Err(Error::Stopped(_))));
    assert!(matches!(first.dirty_read(b"k"), Err(Error::Stopped(_))));

    let second = Floyd::open(single(port, dir.path())).expect("reopen after close");
    wait_leader(&second);
    assert_eq!(second.read(b"k").unwrap(), b"before close");
    second.write(b"k", b"after reopen").unwrap();
    second.close();
    first.close();
    drop(first);
    drop(second);
    let third = Floyd::open(single(port, dir.path())).unwrap();
    wait_leader(&third);
    assert_eq!(third.read(b"k").unwrap(), b"after reopen");
}

/// Opens through the C API, panicking with the library's message on failure.
unsafe fn c_open(o: *const floyd_options_t) -> *mut floyd_t {
    let mut f: *mut floyd_t = null_mut();
    let mut msg: *mut c_char = null_mut();
    let code = floyd_open(o, &mut f, &mut msg);
    if code != FLOYD_OK {
        panic!("floyd_open: {code}: {}", CStr::from_ptr(msg).to_string_lossy());
    }
    f
}

#[test]
fn c_api_close_then_open_the_same_path_with_the_same_options() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let member = CString::new(format!("127.0.0.1:{port}")).unwrap();
    let path = CString::new(dir.path().to_str().unwrap()).unwrap();
    unsafe {
        let o = floyd_options_new(member.as_ptr(), c"127.0.0.1".as_ptr(), port.into(), path.as_ptr());
        assert_eq!(floyd_options_set_heartbeat_us(o, 30_000), FLOYD_OK);
        assert_eq!(floyd_options_set_check_leader_us(o, 300_000), FLOYD_OK);
        assert_eq!(floyd_options_set_request_timeout_ms(o, 10_000), FLOYD_OK);
        let f = c_open(o);
        wait_until("the C node to lead", || floyd_is_leader(f));
        let v = b"through C";
        let code = floyd_write(f, c"k".as_ptr(), 1, v.as_ptr().cast(), v.len(), null_mut());
        assert_eq!(code, FLOYD_OK);
        floyd_close(f);

        let f = c_open(o);
        wait_until("the reopened C node to lead", || floyd_is_leader(f));
        let (mut value, mut len): (*mut c_char, usize) = (null_mut(), 0);
        assert_eq!(
            floyd_read(f, c"k".as_ptr(), 1, &mut value, &mut len, null_mut()),
            FLOYD_OK
        );
        assert_eq!(std::slice::from_raw_parts(value.cast::<u8>(), len), v);
        floyd_free(value.cast());
        floyd_close(f);
        floyd_options_free(o);
    }
}

#[test]
fn a_start_failing_midway_stops_what_it_started_and_the_path_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let members = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let opts = |i: usize| {
        let path = dir.path().join(format!("node{i}"));
        fast(Options::new(&members, "127.0.0.1", ports[i], path))
    };
    // By then the peers, the server and the primary thread are running, and
    // both databases are open.
    for thread in ["floyd-log-", "floyd-apply-", "floyd-primary-"] {
        let mut failing = opts(0);
        failing.fail_spawn_of = Some(thread.to_string());
        match Floyd::open(failing) {
            Err(Error::Io(m)) => assert!(m.contains(thread), "{m}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("the injected failure did not fail the start"),
        }
    }
    let log = std::fs::read_to_string(dir.path().join("node0/LOG")).unwrap();
    assert!(log.contains("node failed to start"), "{log}");

    // The database locks and the port are free again.
    let nodes: Vec<Floyd> = (0..3)
        .map(|i| Floyd::open(opts(i)).unwrap_or_else(|e| panic!("node {i}: {e}")))
        .collect();
    wait_until("a leader", || nodes.iter().any(Floyd::is_leader));
    nodes[0].write(b"k", b"v").unwrap();
    for n in &nodes {
        assert_eq!(n.read(b"k").unwrap(), b"v");
    }
}

/// `n` ports that were free a moment ago on `[::1]`.
fn free_ipv6_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| {
            TcpListener::bind("[::1]:0")
                .unwrap_or_else(|e| panic!("this test needs IPv6 loopback, but [::1]:0 cannot be bound: {e}"))
        })
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

#[test]
fn three_nodes_on_ipv6_loopback_elect_a_leader_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ipv6_ports(3);
    // Spelled differently on purpose: validation makes them one canonical form.
    let members = format!(
        "[::1]:{},[0::1]:{},[0:0:0:0:0:0:0:1]:{}",
        ports[0], ports[1], ports[2]
    );
    let nodes: Vec<Floyd> = (0..3)
        .map(|i| {
            let ip = if i == 0 { "::1" } else { "[::1]" };
            let path = dir.path().join(format!("node{i}"));
            Floyd::open(fast(Options::new(&members, ip, ports[i], path)))
                .unwrap_or_else(|e| panic!("node {i}: {e}"))
        })
        .collect();
    let ids: Vec<String> = ports.iter().map(|p| format!("[::1]:{p}")).collect();
    let mut leader = 0;
    wait_until("one agreed leader on [::1]", || {
        let Some(l) = nodes.iter().position(Floyd::is_leader) else {
            return false;
        };
        leader = l;
        nodes
            .iter()
            .all(|n| n.get_leader().as_deref() == Some(ids[l].as_str()))
    });
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(nodes[leader].get_all_servers(), sorted);
    let follower = (leader + 1) % 3;
    nodes[follower].write(b"v6", b"works").unwrap();
    for n in &nodes {
        assert_eq!(n.read(b"v6").unwrap(), b"works");
    }
}
