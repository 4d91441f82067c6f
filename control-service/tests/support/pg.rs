//! A real PostgreSQL for the ledger's contract tests: Debian's server
//! (installed by `make setup`), started once per test binary on a free
//! port in a fresh data directory, one database per test. The server is
//! started from a thread that lives as long as the process, with
//! PR_SET_PDEATHSIG, so it stops when the tests end, whatever way they end.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub struct Server {
    pub port: u16,
    pub rt: tokio::runtime::Runtime,
}

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run `make setup` (Debian's postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("no /usr/lib/postgresql/<version>/bin/postgres")
}

/// The uid/gid to run the server as: initdb and postgres refuse root.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn command(bin: &Path, user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(bin);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Data directories of earlier runs whose process is gone.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("tollgate-pg-contract-").map(|p| p.trim_end_matches(".log")) else { continue };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
        }
    }
}

fn start() -> Server {
    remove_stale();
    let bin = bin_dir();
    let user = server_user();
    let dir = std::env::temp_dir().join(format!("tollgate-pg-contract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some((uid, gid)) = user {
        chown(&dir, Some(uid), Some(gid)).unwrap();
    }
    let data = dir.join("data");
    let out = command(&bin.join("initdb"), user)
        .args(["-D", data.to_str().unwrap(), "-A", "trust", "-U", "tollgate", "--no-sync", "-E", "UTF8"])
        .output()
        .expect("initdb runs");
    assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    let (postgres, sock) = (bin.join("postgres"), dir.clone());
    // The spawning thread must outlive every test: PDEATHSIG fires when it ends.
    std::thread::spawn(move || {
        let mut c = command(&postgres, user);
        c.args(["-D", data.to_str().unwrap(), "-p", &port.to_string(), "-k", sock.to_str().unwrap()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(std::env::temp_dir().join(format!("tollgate-pg-contract-{}.log", std::process::id()))).unwrap());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
                Ok(())
            });
        }
        let mut child = c.spawn().expect("postgres starts");
        tx.send(child.id()).unwrap();
        // Waits as long as the server runs (the process's lifetime).
        let _ = child.wait();
    });
    rx.recv().unwrap();
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // accepting TCP is not yet accepting logins
    rt.block_on(async {
        for _ in 0..200 {
            if tokio_postgres::connect(&format!("host=127.0.0.1 port={port} user=tollgate dbname=postgres"), tokio_postgres::NoTls).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("PostgreSQL did not accept connections on port {port}");
    });
    Server { port, rt }
}

pub fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(start)
}

/// A fresh, empty database on the shared server; its connection string.
pub fn fresh_database() -> String {
    fresh_database_with("")
}

/// The same, created with `options` (`CREATE DATABASE … {options}`).
pub fn fresh_database_with(options: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let s = server();
    let name = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
    let admin = format!("host=127.0.0.1 port={} user=tollgate dbname=postgres", s.port);
    s.rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name} {options}")).await.unwrap();
    });
    format!("host=127.0.0.1 port={} user=tollgate dbname={name}", s.port)
}

/// The ledger on a fresh PostgreSQL database.
pub fn store() -> tollgate_control::postgres::PgStore {
    let url = fresh_database();
    let s = server();
    s.rt.block_on(tollgate_control::postgres::PgStore::connect(&url)).unwrap()
}
