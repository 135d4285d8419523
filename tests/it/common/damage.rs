//! The damage table, `tests/fixtures/damage-table.json`: the one list of damaged caches that
//! `tests/it/verify.rs` and `pkg/test/differential.test.js` (with `pkg/tools/damage.js`, this
//! interpreter's twin) both check. A row names a corpus cache, the damage to apply to a fresh copy
//! (ops, in order) and what `verify` must report (see the file's `about`).
//!
//! Ops (`file` and `from`/`to`: relative to the cache root, `.` the root itself, or absolute):
//! `remove`, `remove-tree`, `truncate-half`, `flip-middle-byte`, `mkdir`, `mkfifo` (`file`);
//! `write` (`file`, `content`); `rename` (`from`, `to`; parents created); `symlink` (`file`,
//! `target`); `set-field`/`remove-field` (`path` label, `key`, `value`); `drop-reference`
//! (`path`, `reference`); `sign` (`path`, `secret-key`: its only signature, by that key);
//! `rewrite-narinfo` (`path`, `reverse`, `append`: `[key, value]` lines); `replace-nar` (`path`,
//! `content`: the NAR file's new bytes, with FileHash and FileSize made to match; neither is
//! signed, so only the layers below the file can notice).
//!
//! Content: a string (its UTF-8 bytes), an array (concatenated), or one of `{"hex"}`,
//! `{"random": n, "seed"}` (xorshift64, the same bytes in both interpreters), `{"repeat", "times"}`,
//! `{"zeros": n}`, `{"file"}` (a cache file's bytes now), `{"nar": label}` (the corpus NAR),
//! `{"nar-other-contents": label}` (its first file's first byte changed: same size, other hash),
//! `{"compress": method, "of"}`, `{"first-half"}`, `{"head": n, "of"}`, `{"corrupt-midway"}` (64
//! bytes inverted at the middle), `{"zstd-bomb": n}` (n zeros), `{"zstd-nar-bomb": n}` (a NAR of
//! one file of n zeros), `{"zstd-directory-bomb": {"files", "each"}}`.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{corpus, fixtures};
use nar_tool::cache::verify::ProblemKind;
use nar_tool::compression::Compression;
use nar_tool::hash::{Hash, HashAlgo};
use nar_tool::host::codec::Encoder;
use nar_tool::narinfo::NarInfo;
use nar_tool::signing::SecretKey;

/// One row of the table.
pub struct Row {
    pub name: String,
    /// The corpus cache a fresh copy of which is damaged.
    pub cache: String,
    damage: Vec<Value>,
    expect: Option<Vec<(String, String)>>,
    /// The exit status, when the row says.
    pub exit: Option<i32>,
    /// Verify with the corpus key as trusted.
    pub key: bool,
    /// More `verify` arguments.
    pub args: Vec<String>,
    /// A file-system damage (symlink, FIFO, directory) that only the directory backend sees.
    pub storage: bool,
    /// False when `verify` refuses the cache before any report.
    pub report: bool,
    /// False when Nix is not to be run on it.
    pub nix: bool,
}

/// Every row, in file order.
pub fn rows() -> Vec<Row> {
    let text = fs::read_to_string(fixtures().join("damage-table.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap().to_string();
            let flag =
                |key: &str, default: bool| r.get(key).and_then(Value::as_bool).unwrap_or(default);
            Row {
                cache: r["cache"].as_str().unwrap().to_string(),
                damage: r["damage"].as_array().cloned().unwrap_or_default(),
                expect: r["expect"]
                    .as_array()
                    .map(|e| e.iter().map(|p| (str_at(p, 0), str_at(p, 1))).collect()),
                exit: r["exit"].as_i64().map(|e| e as i32),
                key: flag("key", true),
                args: r
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default(),
                storage: flag("storage", false),
                report: flag("report", true),
                nix: flag("nix", true),
                name,
            }
        })
        .collect()
}

/// The row named `name`.
pub fn row(name: &str) -> Row {
    rows()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row {name} in the damage table"))
}

fn str_at(v: &Value, i: usize) -> String {
    v[i].as_str().unwrap().to_string()
}

impl Row {
    /// The problems expected, in report order, as (kind, path); `None` when the row does not say.
    pub fn expected(&self) -> Option<Vec<(ProblemKind, String)>> {
        let ctx = Ctx {
            cache: &self.cache,
            dir: None,
        };
        self.expect.as_ref().map(|e| {
            e.iter()
                .map(|(kind, path)| {
                    let kind = serde_json::from_value(Value::String(kind.clone()))
                        .unwrap_or_else(|e| panic!("{}: kind {kind}: {e}", self.name));
                    (kind, ctx.resolve(path))
                })
                .collect()
        })
    }

    /// Applies the damage to the cache at `dir` (a copy of the row's corpus cache).
    pub fn apply(&self, dir: &Path) {
        let ctx = Ctx {
            cache: &self.cache,
            dir: Some(dir),
        };
        for op in &self.damage {
            ctx.apply(op)
                .unwrap_or_else(|e| panic!("{}: {op}: {e}", self.name));
        }
    }
}

/// The corpus store path labelled `label` (`libdemo-1.0` for `/nix/store/…-libdemo-1.0-public`).
pub fn store_path(label: &str) -> String {
    super::store_paths()
        .into_iter()
        .find(|p| p.ends_with(&format!("-{label}-public")))
        .unwrap_or_else(|| panic!("no corpus store path {label}"))
}

fn base_name(store_path: &str) -> &str {
    store_path.rsplit('/').next().unwrap()
}

pub fn narinfo_name(store_path: &str) -> String {
    format!("{}.narinfo", &base_name(store_path)[..32])
}

// ---------------------------------------------------------------------------------------------
// Editing a cache's narinfos, line by line (every other line kept byte for byte)

/// A narinfo as its lines `(key, value)`, in file order.
pub fn narinfo_lines(dir: &Path, store_path: &str) -> Vec<(String, String)> {
    fs::read_to_string(dir.join(narinfo_name(store_path)))
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn write_narinfo_lines(dir: &Path, store_path: &str, lines: &[(String, String)]) {
    let text: String = lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    fs::write(dir.join(narinfo_name(store_path)), text).unwrap();
}

pub fn field(dir: &Path, store_path: &str, key: &str) -> String {
    narinfo_lines(dir, store_path)
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("{store_path} has no {key}"))
        .1
}

/// Sets a field (every line with that key), or appends it.
pub fn set_field(dir: &Path, store_path: &str, key: &str, value: &str) {
    let mut lines = narinfo_lines(dir, store_path);
    let mut found = false;
    for (_, v) in lines.iter_mut().filter(|(k, _)| k == key) {
        *v = value.to_string();
        found = true;
    }
    if !found {
        lines.push((key.to_string(), value.to_string()));
    }
    write_narinfo_lines(dir, store_path, &lines);
}

pub fn remove_field(dir: &Path, store_path: &str, key: &str) {
    let mut lines = narinfo_lines(dir, store_path);
    lines.retain(|(k, _)| k != key);
    write_narinfo_lines(dir, store_path, &lines);
}

/// The NAR file a narinfo's URL names.
pub fn nar_file(dir: &Path, store_path: &str) -> PathBuf {
    dir.join(field(dir, store_path, "URL"))
}

/// Puts `bytes` in place of a path's NAR file and makes FileHash and FileSize match.
pub fn replace_nar_file(dir: &Path, store_path: &str, bytes: &[u8]) {
    fs::write(nar_file(dir, store_path), bytes).unwrap();
    let hash = Hash::of(HashAlgo::Sha256, bytes).to_string();
    set_field(dir, store_path, "FileHash", &hash);
    set_field(dir, store_path, "FileSize", &bytes.len().to_string());
}

// ---------------------------------------------------------------------------------------------
// The interpreter

struct Ctx<'a> {
    cache: &'a str,
    /// The damaged copy (none when resolving expectations).
    dir: Option<&'a Path>,
}

impl Ctx<'_> {
    fn dir(&self) -> &Path {
        self.dir.expect("a template that needs the cache copy")
    }

    /// Replaces every `${kind:arg}` in `s`.
    fn resolve(&self, s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("a closed template") + start;
            out.push_str(&self.template(&rest[start + 2..end]));
            rest = &rest[end + 1..];
        }
        out + rest
    }

    fn template(&self, t: &str) -> String {
        let (kind, arg) = t.split_once(':').unwrap_or((t, ""));
        match kind {
            "path" => store_path(arg),
            "base" => base_name(&store_path(arg)).to_string(),
            "hash" => base_name(&store_path(arg))[..32].to_string(),
            "narinfo" => narinfo_name(&store_path(arg)),
            "url" => field(
                &corpus().join("caches").join(self.cache),
                &store_path(arg),
                "URL",
            ),
            "field" => {
                let (label, key) = arg.split_once(':').expect("${field:label:Key}");
                field(self.dir(), &store_path(label), key)
            }
            "outside" => self.dir().parent().unwrap().to_str().unwrap().to_string(),
            _ => panic!("unknown template ${{{t}}}"),
        }
    }

    fn file(&self, op: &Value, key: &str) -> PathBuf {
        let name = self.resolve(op[key].as_str().unwrap_or_else(|| panic!("no {key}")));
        match name.as_str() {
            "." => self.dir().to_path_buf(),
            n if n.starts_with('/') => PathBuf::from(n),
            n => self.dir().join(n),
        }
    }

    fn label(&self, op: &Value, key: &str) -> String {
        store_path(op[key].as_str().unwrap_or_else(|| panic!("no {key}")))
    }

    fn text(&self, op: &Value, key: &str) -> String {
        self.resolve(op[key].as_str().unwrap_or_else(|| panic!("no {key}")))
    }

    fn apply(&self, op: &Value) -> io::Result<()> {
        let dir = self.dir();
        match op["op"].as_str().unwrap() {
            "remove" => fs::remove_file(self.file(op, "file"))?,
            "remove-tree" => fs::remove_dir_all(self.file(op, "file"))?,
            "truncate-half" => {
                let f = self.file(op, "file");
                let len = fs::metadata(&f)?.len();
                fs::OpenOptions::new()
                    .write(true)
                    .open(&f)?
                    .set_len(len / 2)?;
            }
            "flip-middle-byte" => {
                let f = self.file(op, "file");
                let mut bytes = fs::read(&f)?;
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x20;
                fs::write(f, bytes)?;
            }
            "mkdir" => fs::create_dir(self.file(op, "file"))?,
            "mkfifo" => {
                let f = std::ffi::CString::new(self.file(op, "file").to_str().unwrap()).unwrap();
                // SAFETY: a valid C string.
                if unsafe { libc::mkfifo(f.as_ptr(), 0o644) } != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            "write" => {
                let bytes = self.content(&op["content"]);
                fs::write(self.file(op, "file"), bytes)?;
            }
            "rename" => {
                let to = self.file(op, "to");
                fs::create_dir_all(to.parent().unwrap())?;
                fs::rename(self.file(op, "from"), to)?;
            }
            "symlink" => {
                std::os::unix::fs::symlink(self.text(op, "target"), self.file(op, "file"))?
            }
            "set-field" => set_field(
                dir,
                &self.label(op, "path"),
                &self.text(op, "key"),
                &self.text(op, "value"),
            ),
            "remove-field" => remove_field(dir, &self.label(op, "path"), &self.text(op, "key")),
            "drop-reference" => {
                let path = self.label(op, "path");
                let gone = self.label(op, "reference");
                let refs = field(dir, &path, "References");
                let kept: Vec<&str> = refs.split(' ').filter(|r| *r != base_name(&gone)).collect();
                set_field(dir, &path, "References", &kept.join(" "));
            }
            "sign" => {
                let path = self.label(op, "path");
                let text = fs::read_to_string(dir.join(narinfo_name(&path)))?;
                let mut info = NarInfo::parse(&text).unwrap();
                info.sigs.clear();
                info.sign(&SecretKey::parse(&self.text(op, "secret-key")).unwrap())
                    .unwrap();
                set_field(dir, &path, "Sig", &info.sigs[0].to_string());
            }
            "rewrite-narinfo" => {
                let path = self.label(op, "path");
                let mut lines = narinfo_lines(dir, &path);
                if op["reverse"].as_bool() == Some(true) {
                    lines.reverse();
                }
                for kv in op["append"].as_array().into_iter().flatten() {
                    lines.push((str_at(kv, 0), str_at(kv, 1)));
                }
                write_narinfo_lines(dir, &path, &lines);
            }
            "replace-nar" => {
                let bytes = self.content(&op["content"]);
                replace_nar_file(dir, &self.label(op, "path"), &bytes);
            }
            other => panic!("unknown op {other}"),
        }
        Ok(())
    }

    fn content(&self, c: &Value) -> Vec<u8> {
        let num = |key: &str| c[key].as_u64().unwrap_or_else(|| panic!("{c}: no {key}"));
        if let Some(s) = c.as_str() {
            return s.as_bytes().to_vec();
        }
        if let Some(parts) = c.as_array() {
            return parts.iter().flat_map(|p| self.content(p)).collect();
        }
        let obj = c.as_object().unwrap_or_else(|| panic!("content {c}"));
        let kind = obj
            .keys()
            .find(|k| !["seed", "times", "of"].contains(&k.as_str()))
            .unwrap_or_else(|| panic!("content {c}"));
        let arg = &c[kind.as_str()];
        match kind.as_str() {
            "hex" => {
                let h = arg.as_str().unwrap();
                (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                    .collect()
            }
            "random" => pseudo_random(num("random") as usize, num("seed")),
            "repeat" => self.content(arg).repeat(num("times") as usize),
            "zeros" => vec![0; num("zeros") as usize],
            "file" => fs::read(self.file(c, "file")).unwrap(),
            "nar" => corpus_nar(&store_path(arg.as_str().unwrap())),
            "nar-other-contents" => {
                let mut nar = corpus_nar(&store_path(arg.as_str().unwrap()));
                let at = nar.windows(8).position(|w| w == b"contents").unwrap() + 8 + 8;
                nar[at] ^= 0x01;
                nar
            }
            "compress" => compress(
                arg.as_str().unwrap().parse().unwrap(),
                &self.content(&c["of"]),
            ),
            "first-half" => {
                let mut bytes = self.content(arg);
                bytes.truncate(bytes.len() / 2);
                bytes
            }
            "head" => {
                let mut bytes = self.content(&c["of"]);
                bytes.truncate(num("head") as usize);
                bytes
            }
            "corrupt-midway" => {
                let mut bytes = self.content(arg);
                let mid = bytes.len() / 2;
                for b in &mut bytes[mid..mid + 64] {
                    *b = !*b;
                }
                bytes
            }
            "zstd-bomb" => zstd_bomb(&[], num("zstd-bomb"), &[]),
            "zstd-nar-bomb" => zstd_nar_bomb(num("zstd-nar-bomb")),
            "zstd-directory-bomb" => zstd_directory_bomb(
                arg["files"].as_u64().unwrap() as usize,
                arg["each"].as_u64().unwrap(),
            ),
            other => panic!("unknown content {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Contents

/// The corpus NAR of a store path, as `nix-store --dump` wrote it.
pub fn corpus_nar(store_path: &str) -> Vec<u8> {
    fs::read(
        corpus()
            .join("nar")
            .join(format!("{}.nar", base_name(store_path))),
    )
    .unwrap()
}

pub fn compress(method: Compression, data: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(method, None, data.len() as u64, 1, Vec::new()).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// xorshift64 from `seed | 1`, a byte per step: the bytes `pkg/tools/damage.js` makes too.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn nar_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
    out.resize(out.len().next_multiple_of(8), 0);
}

/// zstd of `len` zero bytes after `head`, then `tail`, streamed (never all in memory).
fn zstd_bomb(head: &[u8], len: u64, tail: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(Compression::Zstd, Some(19), 0, 1, Vec::new()).unwrap();
    e.write_all(head).unwrap();
    io::copy(&mut io::repeat(0).take(len), &mut e).unwrap();
    e.write_all(tail).unwrap();
    e.finish().unwrap()
}

/// A valid NAR (a single regular file of `len` zeros), zstd-compressed: 200 MB in a few KiB.
fn zstd_nar_bomb(len: u64) -> Vec<u8> {
    let mut head = Vec::new();
    for t in [
        &b"nix-archive-1"[..],
        b"(",
        b"type",
        b"regular",
        b"contents",
    ] {
        nar_str(&mut head, t);
    }
    head.extend_from_slice(&len.to_le_bytes());
    let mut tail = vec![0u8; (len.next_multiple_of(8) - len) as usize];
    nar_str(&mut tail, b")");
    zstd_bomb(&head, len, &tail)
}

/// A valid NAR of a directory of `files` files of `each` zeros, zstd-compressed, streamed.
fn zstd_directory_bomb(files: usize, each: u64) -> Vec<u8> {
    let mut e = Encoder::new(Compression::Zstd, Some(19), 0, 1, Vec::new()).unwrap();
    let mut head = Vec::new();
    for t in [&b"nix-archive-1"[..], b"(", b"type", b"directory"] {
        nar_str(&mut head, t);
    }
    e.write_all(&head).unwrap();
    for i in 0..files {
        let mut entry = Vec::new();
        for t in [
            &b"entry"[..],
            b"(",
            b"name",
            format!("f{i:06}").as_bytes(),
            b"node",
        ] {
            nar_str(&mut entry, t);
        }
        for t in [&b"("[..], b"type", b"regular", b"contents"] {
            nar_str(&mut entry, t);
        }
        entry.extend_from_slice(&each.to_le_bytes());
        e.write_all(&entry).unwrap();
        io::copy(&mut io::repeat(0).take(each.next_multiple_of(8)), &mut e).unwrap();
        let mut end = Vec::new();
        nar_str(&mut end, b")");
        nar_str(&mut end, b")");
        e.write_all(&end).unwrap();
    }
    let mut end = Vec::new();
    nar_str(&mut end, b")");
    e.write_all(&end).unwrap();
    e.finish().unwrap()
}
