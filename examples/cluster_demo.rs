//! A local floyd cluster in one process: it elects a leader, takes writes
//! through leader and followers, loses its leader, elects another, brings
//! the old one back and shows a lock. Then (with `-i`) you can talk to it:
//! data, locks, and membership (`add` starts a new node that joins).
//!
//! ```text
//! cargo run --example cluster_demo            # the scripted tour
//! cargo run --example cluster_demo -- -i      # the tour, then a prompt
//! cargo run --example cluster_demo -- --nodes 5 --dir /tmp/floyd-demo
//! ```

use floyd::{Error, Floyd, Options, STATUS_HEADER};
use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Demo {
    members: String,
    ports: Vec<u16>,
    dir: PathBuf,
    nodes: Vec<Option<Floyd>>,
    /// Nodes started by `add`: they join (start empty, wait to be added).
    joined: Vec<bool>,
}

impl Demo {
    fn start(n: usize, dir: PathBuf) -> Demo {
        let holds: Vec<_> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let ports: Vec<u16> = holds.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(holds);
        let members = ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut d = Demo {
            members,
            ports,
            dir,
            nodes: (0..n).map(|_| None).collect(),
            joined: vec![false; n],
        };
        for i in 0..n {
            d.open(i);
        }
        d
    }

    fn open(&mut self, i: usize) {
        let mut opts = Options::new(
            &self.members,
            "127.0.0.1",
            self.ports[i],
            self.dir.join(format!("node{i}")),
        );
        opts.join = self.joined[i];
        match Floyd::open(opts) {
            Ok(f) => self.nodes[i] = Some(f),
            Err(e) => println!("node {i} failed to start: {e}"),
        }
    }

    /// Starts one more node on a free port in join mode (it knows the first
    /// members, not itself) and asks the cluster to add it.
    fn add_new(&mut self) {
        let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => a.port(),
            Err(e) => return println!("  no free port: {e}"),
        };
        let i = self.nodes.len();
        self.ports.push(port);
        self.nodes.push(None);
        self.joined.push(true);
        self.open(i);
        let addr = format!("127.0.0.1:{port}");
        println!("  node {i} ({addr}) started, joining");
        done(self.any().add_server(&addr));
    }

    fn kill(&mut self, i: usize) {
        if let Some(f) = self.nodes[i].take() {
            f.close();
        }
    }

    fn any(&self) -> &Floyd {
        self.nodes.iter().flatten().next().expect("a running node")
    }

    fn wait_for_leader(&self) -> Option<usize> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let leaders: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].as_ref().is_some_and(|n| n.is_leader()))
                .collect();
            if leaders.len() == 1 {
                return Some(leaders[0]);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn print_status(&self) {
        println!("{STATUS_HEADER}");
        for (i, n) in self.nodes.iter().enumerate() {
            match n {
                Some(n) => println!("{}", n.server_status().row()),
                None => println!(
                    "{:>20} | {:>10} |",
                    format!("127.0.0.1:{}", self.ports[i]),
                    "down"
                ),
            }
        }
    }
}

fn show(what: &str, r: Result<Vec<u8>, Error>) {
    match r {
        Ok(v) => println!("  {what} = {:?}", String::from_utf8_lossy(&v)),
        Err(e) => println!("  {what}: {e}"),
    }
}

fn done(r: Result<(), Error>) {
    match r {
        Ok(()) => println!("  OK"),
        Err(e) => println!("  {e}"),
    }
}

fn token(r: Result<u64, Error>) {
    match r {
        Ok(t) => println!("  OK, fencing token {t}"),
        Err(e) => println!("  {e}"),
    }
}

fn tour(d: &mut Demo) -> Result<(), String> {
    let leader = d.wait_for_leader().ok_or("no leader elected")?;
    println!(
        "\n== leader elected: node {leader} ({})",
        d.any().get_leader().unwrap_or_default()
    );
    let follower = (leader + 1) % d.nodes.len();
    let l = d.nodes[leader].as_ref().unwrap();
    let f = d.nodes[follower].as_ref().unwrap();
    let started = Instant::now();
    l.write(b"greeting", b"hello from the leader")
        .map_err(|e| e.to_string())?;
    f.write(b"forwarded", b"written through a follower")
        .map_err(|e| e.to_string())?;
    for i in 0..100u32 {
        l.write(format!("key{i}").as_bytes(), format!("value{i}").as_bytes())
            .map_err(|e| e.to_string())?;
    }
    println!(
        "== 102 writes acknowledged by a majority in {:?}",
        started.elapsed()
    );
    for (i, n) in d
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    {
        println!("node {i}:");
        show("read(greeting)", n.read(b"greeting"));
        show("read(forwarded)", n.read(b"forwarded"));
        show("read(missing)", n.read(b"missing"));
    }
    d.print_status();

    println!("\n== killing the leader, node {leader}");
    d.kill(leader);
    let new = d.wait_for_leader().ok_or("no new leader")?;
    println!(
        "== new leader: node {new} ({})",
        d.any().get_leader().unwrap_or_default()
    );
    let n = d.nodes[new].as_ref().unwrap();
    show("read(key99) on the new leader", n.read(b"key99"));
    n.write(b"after-failover", b"still here")
        .map_err(|e| e.to_string())?;
    d.print_status();

    println!("\n== restarting node {leader}; it catches up from the new leader");
    d.open(leader);
    let deadline = Instant::now() + Duration::from_secs(15);
    let back = loop {
        let caught = d.nodes[leader]
            .as_ref()
            .and_then(|n| n.dirty_read(b"after-failover").ok());
        if caught.is_some() || Instant::now() > deadline {
            break caught.is_some();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("== node {leader} caught up: {back}");
    d.print_status();

    println!("\n== a lock: node {leader} takes \"demo\" for alice, then bob tries it");
    let n = d.nodes[leader].as_ref().ok_or("node gone")?;
    let t = n.try_lock(b"demo", b"alice", 10_000).map_err(|e| e.to_string())?;
    println!("  alice holds it, fencing token {t}");
    match d.nodes[new]
        .as_ref()
        .ok_or("node gone")?
        .try_lock(b"demo", b"bob", 10_000)
    {
        Err(Error::Locked(m)) => println!("  bob is refused: {m}"),
        other => return Err(format!("bob should be refused, got {other:?}")),
    }
    n.unlock(b"demo", b"alice").map_err(|e| e.to_string())?;
    println!("  alice unlocked it; servers: {}", n.get_all_servers().join(","));
    Ok(())
}

fn repl(d: &mut Demo) {
    println!(
        "\ncommands: put K V | get K | del K | dirty N K | lock NAME HOLDER TTL_MS | unlock NAME HOLDER\n          \
         | add [IP:PORT] (none: start a new node that joins) | remove IP:PORT | servers\n          \
         | status | leader | kill N | start N | quit"
    );
    let stdin = std::io::stdin();
    loop {
        print!("floyd> ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let node = |s: &str| s.parse::<usize>().ok().filter(|i| *i < d.nodes.len());
        match words.as_slice() {
            ["put", k, v] => done(d.any().write(k.as_bytes(), v.as_bytes())),
            ["get", k] => show(k, d.any().read(k.as_bytes())),
            ["del", k] => done(d.any().delete(k.as_bytes())),
            ["dirty", n, k] => match node(n).and_then(|i| d.nodes[i].as_ref()) {
                Some(f) => show(k, f.dirty_read(k.as_bytes())),
                None => println!("no such running node"),
            },
            ["lock", name, holder, ttl] => match ttl.parse::<u64>() {
                Ok(ttl) => token(d.any().try_lock(name.as_bytes(), holder.as_bytes(), ttl)),
                Err(_) => println!("TTL_MS is a number of milliseconds"),
            },
            ["unlock", name, holder] => done(d.any().unlock(name.as_bytes(), holder.as_bytes())),
            ["add"] => d.add_new(),
            ["add", server] => done(d.any().add_server(server)),
            ["remove", server] => done(d.any().remove_server(server)),
            ["servers"] => println!("  {}", d.any().get_all_servers().join(",")),
            ["status"] => d.print_status(),
            ["leader"] => println!("  {}", d.any().get_leader().unwrap_or_else(|| "no leader".into())),
            ["kill", n] => node(n).map_or_else(|| println!("no such node"), |i| d.kill(i)),
            ["start", n] => match node(n) {
                Some(i) if d.nodes[i].is_none() => d.open(i),
                _ => println!("no such stopped node"),
            },
            ["quit"] | ["exit"] => return,
            [] => {}
            _ => println!("?"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let nodes: usize = flag("--nodes").and_then(|n| n.parse().ok()).unwrap_or(3);
    let interactive = args.iter().any(|a| a == "-i" || a == "--interactive");
    let tmp = tempfile_dir();
    let dir = flag("--dir").map(PathBuf::from).unwrap_or_else(|| tmp.clone());
    println!(
        "== starting {nodes} nodes on 127.0.0.1, data under {}",
        dir.display()
    );
    let mut demo = Demo::start(nodes, dir);
    let outcome = tour(&mut demo);
    if let Err(e) = &outcome {
        println!("demo failed: {e}");
    }
    if interactive {
        repl(&mut demo);
    }
    for i in 0..demo.nodes.len() {
        demo.kill(i);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if outcome.is_err() {
        std::process::exit(1);
    }
}

fn tempfile_dir() -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    std::env::temp_dir().join(format!("floyd-demo-{}-{}", std::process::id(), stamp.as_nanos()))
}
