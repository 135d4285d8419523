//! Runtime roots from a made-up `/proc`: what each kind of entry contributes, and hostile
//! entries (symlinks where files are, a FIFO, a file past the read limit) read safely.

use std::os::unix::fs::symlink;

use super::*;
use crate::store_path::StoreDir;

const A: &str = "/nix/store/0c5lx7gf8x5ij3bmrbcn05ygyc4gn4pq-a";
const B: &str = "/nix/store/1c5lx7gf8x5ij3bmrbcn05ygyc4gn4pq-b-1.0";
const C: &str = "/nix/store/2c5lx7gf8x5ij3bmrbcn05ygyc4gn4pq-c";
const D: &str = "/nix/store/3c5lx7gf8x5ij3bmrbcn05ygyc4gn4pq-d";
const E: &str = "/nix/store/4c5lx7gf8x5ij3bmrbcn05ygyc4gn4pq-e";
const F: &str = "/nix/store/5c5lx7gf8x5ij3bmrbcn05ygyc4gn4pq-f";
const G: &str = "/nix/store/6c5lx7gf8x5ij3bmrbcn05ygyc4gn4pq-g";

fn names(roots: &Roots) -> Vec<String> {
    roots
        .keys()
        .map(|p| p.base_name()[33..].to_string())
        .collect()
}

#[test]
fn environment_scan_is_nix_regex() {
    let found = |t: &str| -> Vec<String> {
        store_paths_in(t.as_bytes(), "/nix/store")
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap())
            .collect()
    };
    assert_eq!(
        found(&format!(
            "PATH={A}/bin:{B}/bin\0X=/nix/store/\0Y=/nix/store/Upper\0Z={C}=x?y"
        )),
        vec![A.to_string(), format!("{B}"), format!("{C}=x?y")]
    );
    assert_eq!(found("/nix/store//nix/store/a"), vec!["/nix/store/a"]);
    assert!(found("").is_empty());
}

#[test]
fn processes_links_maps_environment_and_kernel_files() {
    let tmp = tempfile::tempdir().unwrap();
    let proc_dir = tmp.path().join("proc");
    let root = StoreRoot::new(&tmp.path().join("root"), StoreDir::default());
    let p = proc_dir.join("123");
    fs::create_dir_all(p.join("fd")).unwrap();
    symlink(format!("{A}/bin/sleep"), p.join("exe")).unwrap();
    symlink("relative/not/counted", p.join("cwd")).unwrap();
    symlink(
        format!("{}/nix/store/{}/share", root.root.display(), &B[11..]),
        p.join("fd/3"),
    )
    .unwrap();
    symlink("socket:[1234]", p.join("fd/4")).unwrap();
    fs::write(
        p.join("maps"),
        format!(
            "7f00-7f01 r-xp 00000000 08:01 42 {C}/lib/libc.so\n\
             7f01-7f02 r-xp 00000000 08:01 43 {G}/lib/gone.so (deleted)\n\
             7f02-7f03 rw-p 00000000 00:00 0\n"
        ),
    )
    .unwrap();
    fs::write(p.join("environ"), format!("HOME=/root\0LIB={D}/lib\0")).unwrap();
    // Not a process: not looked at.
    fs::create_dir_all(proc_dir.join("self")).unwrap();
    fs::write(proc_dir.join("self/environ"), format!("X={F}")).unwrap();
    fs::create_dir_all(proc_dir.join("sys/kernel")).unwrap();
    fs::write(
        proc_dir.join("sys/kernel/modprobe"),
        format!("{E}/bin/modprobe\n"),
    )
    .unwrap();
    fs::write(proc_dir.join("sys/kernel/poweroff_cmd"), "/sbin/poweroff\n").unwrap();
    let roots = find_runtime_roots(&root, &proc_dir);
    assert_eq!(names(&roots), ["a", "b-1.0", "c", "d", "e"]);
    let a = StorePath::from_base_name(&A[11..]).unwrap();
    assert_eq!(roots[&a], vec![p.join("exe").display().to_string()]);
}

#[test]
fn hostile_proc_entries_are_read_safely() {
    let tmp = tempfile::tempdir().unwrap();
    let proc_dir = tmp.path().join("proc");
    let root = StoreRoot::new(&tmp.path().join("root"), StoreDir::default());
    let outside = tmp.path().join("outside");
    fs::create_dir_all(outside.join("fd")).unwrap();
    fs::write(outside.join("environ"), format!("X={A}")).unwrap();
    symlink(B, outside.join("fd/0")).unwrap();
    // 1: environ and maps are symlinks, fd a symlink to a directory: none followed.
    let p = proc_dir.join("1");
    fs::create_dir_all(&p).unwrap();
    symlink(outside.join("environ"), p.join("environ")).unwrap();
    symlink(outside.join("environ"), p.join("maps")).unwrap();
    symlink(outside.join("fd"), p.join("fd")).unwrap();
    // 2: an environ past the read limit: what lies beyond is not read.
    let p = proc_dir.join("2");
    fs::create_dir_all(&p).unwrap();
    let mut big = vec![b'x'; MAX_PROC_FILE as usize - 4];
    big.extend_from_slice(format!("\0Y={C}").as_bytes());
    fs::write(p.join("environ"), &big).unwrap();
    // 3: a FIFO nobody writes to, as environ: not waited on.
    let p = proc_dir.join("3");
    fs::create_dir_all(&p).unwrap();
    let fifo = std::ffi::CString::new(p.join("environ").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    // 4: a plain file where the process directory should be.
    fs::write(proc_dir.join("4"), D).unwrap();
    // 5: environ a directory.
    fs::create_dir_all(proc_dir.join("5/environ")).unwrap();
    let roots = find_runtime_roots(&root, &proc_dir);
    assert!(roots.is_empty(), "{:?}", names(&roots));
    // No /proc at all: no roots, no error.
    assert!(find_runtime_roots(&root, &tmp.path().join("none")).is_empty());
}
