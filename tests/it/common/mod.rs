//! Helpers shared by the integration tests: fixture paths, running the built CLI, NAR byte
//! builders, a seeded RNG and random trees, and extracting the corpus store.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod s3;

use nar_tool::nar::tree::Node;
use nar_tool::nar::wire::put_str;

pub mod damage;

mod build_options;
pub use build_options::build_options;

/// `tests/fixtures/corpus`.
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

/// `tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The built `nar-tool` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nar-tool")
}

/// Runs `nar-tool ARGS` with `stdin` as its input.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    run_cmd(Command::new(bin()).args(args), stdin)
}

/// Runs a prepared command with `stdin` as its input, collecting stdout and stderr.
pub fn run_cmd(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // Feed stdin from a thread so a child that writes a lot before reading cannot deadlock us.
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// Runs `nar-tool ARGS` and insists on success; returns stdout.
#[track_caller]
pub fn run_ok(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = run(args, stdin);
    assert_ok(&out, format_args!("nar-tool {args:?}"));
    out.stdout
}

/// Runs a prepared command with `stdin` as its input and insists on success.
#[track_caller]
pub fn run_cmd_ok(cmd: &mut Command, stdin: &[u8]) -> Output {
    let out = run_cmd(cmd, stdin);
    assert_ok(&out, &cmd);
    out
}

/// Insists that a command (`what`) succeeded; the message has its exit status and stderr.
#[track_caller]
pub fn assert_ok(out: &Output, what: impl std::fmt::Debug) {
    assert!(
        out.status.success(),
        "{what:?} failed with {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stdout_str(out: &[u8]) -> String {
    String::from_utf8(out.to_vec()).expect("UTF-8 output")
}

/// The corpus NARs: (file stem, bytes), sorted by name. Includes `case-collision`.
pub fn corpus_nars() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(corpus().join("nar"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nar"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert_eq!(
        v.len(),
        10,
        "the corpus has 9 store path NARs and case-collision.nar"
    );
    v
}

/// The corpus's secret signing key: its file's path.
pub fn secret_key() -> String {
    corpus().join("keys/secret").display().to_string()
}

/// The corpus's public key (`NAME:BASE64`).
pub fn public_key() -> String {
    fs::read_to_string(corpus().join("keys/public"))
        .unwrap()
        .trim()
        .to_string()
}

/// The 9 store paths of the corpus (absolute, `/nix/store/…`).
pub fn store_paths() -> Vec<String> {
    let text = fs::read_to_string(corpus().join("store-paths")).unwrap();
    let v: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(v.len(), 9);
    v
}

/// A temporary directory that makes everything below it writable before removing it
/// (the corpus store is read-only, as a real store is).
pub struct TempTree {
    pub dir: tempfile::TempDir,
}

impl TempTree {
    pub fn new() -> TempTree {
        TempTree {
            dir: tempfile::Builder::new()
                .prefix("nar-tool-test-")
                .tempdir()
                .unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TempTree {
    fn default() -> Self {
        Self::new()
    }
}

pub fn make_writable(p: &Path) {
    let Ok(meta) = fs::symlink_metadata(p) else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        make_writable(self.dir.path());
    }
}

/// Extracts `trees/root.tar` (a store: `nix/store/…` and the DB) into a new temporary directory.
pub fn extract_root_tar() -> TempTree {
    let t = TempTree::new();
    let status = Command::new("tar")
        .arg("xf")
        .arg(corpus().join("trees/root.tar"))
        .arg("-C")
        .arg(t.path())
        .status()
        .expect("tar is installed");
    assert!(status.success(), "tar xf root.tar failed");
    assert!(t.path().join("nix/store").is_dir());
    t
}

/// Names in a directory, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// NAR bytes by hand

/// A tiny builder for hand-made (possibly broken) archives.
#[derive(Default, Clone)]
pub struct NarBytes(pub Vec<u8>);

impl NarBytes {
    pub fn new() -> NarBytes {
        NarBytes(Vec::new())
    }
    /// Starts with the magic.
    pub fn magic() -> NarBytes {
        NarBytes::new().s(b"nix-archive-1")
    }
    /// Appends `str(s)`.
    pub fn s(mut self, s: &[u8]) -> NarBytes {
        put_str(&mut self.0, s);
        self
    }
    /// Appends several strings.
    pub fn ss(mut self, ss: &[&[u8]]) -> NarBytes {
        for s in ss {
            put_str(&mut self.0, s);
        }
        self
    }
    /// Appends each whitespace-separated word of `words` as a string: the tokens of an archive
    /// written compactly (`words("( type regular")`); a string that is empty or holds a space
    /// needs `s`.
    pub fn words(mut self, words: &str) -> NarBytes {
        for w in words.split_whitespace() {
            put_str(&mut self.0, w.as_bytes());
        }
        self
    }
    /// Appends a raw little-endian u64.
    pub fn u64(mut self, n: u64) -> NarBytes {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }
    /// Appends raw bytes.
    pub fn raw(mut self, b: &[u8]) -> NarBytes {
        self.0.extend_from_slice(b);
        self
    }
    pub fn len(&self) -> u64 {
        self.0.len() as u64
    }
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

// ---------------------------------------------------------------------------------------------
// Short reads

/// A reader that hands out at most a pseudo-random 1..=max bytes per call.
pub struct ShortReads<R> {
    pub inner: R,
    pub rng: Rng,
    pub max: usize,
}

impl<R: Read> Read for ShortReads<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = 1 + self.rng.below(self.max as u64) as usize;
        let n = n.min(buf.len());
        self.inner.read(&mut buf[..n])
    }
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness and random trees

/// xorshift64*: small, seeded, good enough for test data.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Names that exercise byte-order sorting and unusual characters.
pub const EDGE_NAMES: &[&str] = &[
    "a",
    "a.b",
    "a-b",
    "a+b",
    "a=b",
    "a_b",
    "ab",
    "A",
    "B",
    "Z",
    "b",
    "z",
    "~",
    "~tilde",
    "?q",
    "-",
    "_",
    "0",
    "9",
    "...",
    ".hidden",
    "a b",
    "é",
    "ü-umlaut",
    "日本語",
    "emoji-😀",
    "Makefile",
    "makefile",
    "x~nix~case~hackish",
];

/// A random valid entry name (no `/`, NUL, not `.` or `..`, 1..=255 bytes).
pub fn random_name(rng: &mut Rng, utf8_only: bool) -> Vec<u8> {
    match rng.below(10) {
        0..=5 => rng.pick(EDGE_NAMES).as_bytes().to_vec(),
        6 => vec![b'n'; 255],
        7 => {
            let len = 1 + rng.below(254) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| b'a' + rng.below(26) as u8).collect();
            v[0] = b'L';
            v
        }
        _ => {
            let len = 1 + rng.below(12) as usize;
            let name: Vec<u8> = if utf8_only {
                let alphabet: Vec<char> = "abcXYZ019-_.+=~ éß日😀".chars().collect();
                (0..len)
                    .map(|_| *rng.pick(&alphabet))
                    .collect::<String>()
                    .into_bytes()
            } else {
                (0..len)
                    .map(|_| loop {
                        let b = rng.next_u64() as u8;
                        if b != 0 && b != b'/' {
                            break b;
                        }
                    })
                    .collect()
            };
            if name == b"." || name == b".." {
                b"dots".to_vec()
            } else {
                name
            }
        }
    }
}

/// File sizes that exercise padding: 0..20, around multiples of 8, and some 64 KiB ± 1.
pub fn random_size(rng: &mut Rng, allow_big: bool) -> usize {
    match rng.below(20) {
        0..=9 => rng.below(21) as usize,
        10..=17 => {
            let base = 8 * (1 + rng.below(64) as usize);
            base - 1 + rng.below(3) as usize
        }
        _ if allow_big => 65536 - 1 + rng.below(3) as usize,
        _ => rng.below(4097) as usize,
    }
}

/// A random symlink target: relative, absolute, dangling, to a sibling.
pub fn random_target(rng: &mut Rng) -> Vec<u8> {
    let targets: &[&[u8]] = &[
        b"a",
        b"../a",
        b"./x/y",
        b"/nix/store/does-not-exist",
        b"/etc/passwd",
        b"dangling",
        b"..",
        b".",
        b"/",
        "日本".as_bytes(),
        b"sp ace",
    ];
    if rng.chance(80) {
        rng.pick(targets).to_vec()
    } else {
        let len = 1 + rng.below(300) as usize;
        (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
    }
}

/// A random tree: at most `max_depth` levels, roughly `budget` nodes.
pub fn random_tree(
    rng: &mut Rng,
    max_depth: usize,
    budget: &mut usize,
    allow_big: bool,
    utf8_only: bool,
) -> Node {
    let kind = if max_depth == 0 || *budget == 0 {
        rng.below(2)
    } else {
        rng.below(5)
    };
    *budget = budget.saturating_sub(1);
    match kind {
        0 => {
            let size = random_size(rng, allow_big);
            Node::Regular {
                executable: rng.chance(30),
                contents: rng.bytes(size),
            }
        }
        1 => Node::Symlink {
            target: random_target(rng),
        },
        _ => {
            let n = if rng.chance(15) {
                0
            } else {
                1 + rng.below(6) as usize
            };
            let mut entries = BTreeMap::new();
            for _ in 0..n {
                if *budget == 0 {
                    break;
                }
                let name = random_name(rng, utf8_only);
                let child = random_tree(rng, max_depth - 1, budget, allow_big, utf8_only);
                entries.insert(name, child);
            }
            Node::Directory(entries)
        }
    }
}

/// Writes a tree to disk at `path` (which must not exist), directly, without the library.
pub fn write_tree(node: &Node, path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    match node {
        Node::Regular {
            executable,
            contents,
        } => {
            fs::write(path, contents).unwrap();
            let mode = if *executable { 0o755 } else { 0o644 };
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }
        Node::Symlink { target } => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path).unwrap();
        }
        Node::Directory(entries) => {
            fs::create_dir(path).unwrap();
            for (name, child) in entries {
                write_tree(child, &path.join(std::ffi::OsStr::from_bytes(name)));
            }
        }
    }
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// The real Nix's `nix copy --from FROM --to local?root=ROOT PATHS`, trusting `trusted_key`:
/// how a client substitutes from a cache (a `file://` or `http://` substituter).
pub fn nix_copy_from(from: &str, root: &Path, trusted_key: &str, paths: &[&str]) -> Output {
    // A narinfo cache of its own: Nix remembers "absent" answers of a URL for an hour, and a
    // loopback port serves other caches in other tests.
    let xdg = tempfile::tempdir().expect("a temporary directory");
    Command::new("nix")
        .env("NIX_REMOTE", "local")
        .env("XDG_CACHE_HOME", xdg.path())
        .args([
            "--extra-experimental-features",
            "nix-command",
            "copy",
            "--from",
            from,
        ])
        .arg("--to")
        .arg(format!("local?root={}", root.display()))
        .args(["--option", "trusted-public-keys", trusted_key.trim()])
        .args(paths)
        .stdin(Stdio::null())
        .output()
        .expect("nix runs")
}

/// A child process, killed when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `nar-tool serve` process on a free loopback port, killed when dropped.
pub struct ServeProcess {
    child: std::process::Child,
    pub addr: String,
}

impl ServeProcess {
    /// Serves `cache` with `extra` arguments; returns once the server says where it listens.
    pub fn start(cache: &Path, extra: &[String]) -> ServeProcess {
        ServeProcess::start_cmd(Command::new(bin()), &cache.to_string_lossy(), extra)
    }

    /// Serves `cache` (a directory or URL) with `cmd` (`nar-tool` with its environment set).
    pub fn start_cmd(mut cmd: Command, cache: &str, extra: &[String]) -> ServeProcess {
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--threads", "4"])
            .args(extra)
            .arg(cache);
        ServeProcess::start_args(cmd)
    }

    /// Runs `cmd` (`nar-tool serve …` in full, its address printed); returns once it says where.
    pub fn start_args(mut cmd: Command) -> ServeProcess {
        use std::io::{BufRead, BufReader};
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        // "serving CACHE on http://ADDR …" (CACHE may be a URL too).
        let addr = line
            .split(" on http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        // Keep draining the request log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        ServeProcess { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (kind, path, message) of each problem of a `verify --json` report.
pub fn report_problems(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let f = |k: &str| p[k].as_str().unwrap().to_string();
            (f("kind"), f("path"), f("message"))
        })
        .collect()
}

/// A process's resident memory (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}
