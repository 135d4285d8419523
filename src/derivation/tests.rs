//! Derivations Nix 2.8 wrote (`tests/fixtures/drv/`, from `drv.nix` by `nix-instantiate`):
//! read and written back byte for byte, their output paths and Nix's check, and malformed or
//! tampered ones refused without a panic.

use std::collections::BTreeMap;

use super::*;

const FIXED: (&str, &[u8]) = (
    "09qll6i5xdh2cif15mdy9izpldxynn1k-fixed-src.drv",
    include_bytes!("../../tests/fixtures/drv/09qll6i5xdh2cif15mdy9izpldxynn1k-fixed-src.drv"),
);
const FLAT: (&str, &[u8]) = (
    "pmqldm88gjssyn33slp5amwanh0g7w3m-flat-src.drv",
    include_bytes!("../../tests/fixtures/drv/pmqldm88gjssyn33slp5amwanh0g7w3m-flat-src.drv"),
);
const LIB: (&str, &[u8]) = (
    "dd2qlnnmfvw4fkqd5mkf05d4lsdyaqfp-lib-1.0.drv",
    include_bytes!("../../tests/fixtures/drv/dd2qlnnmfvw4fkqd5mkf05d4lsdyaqfp-lib-1.0.drv"),
);
const APP: (&str, &[u8]) = (
    "lq93hbzd15q5lw24mh4x3dnv3wdcqrfn-app.drv",
    include_bytes!("../../tests/fixtures/drv/lq93hbzd15q5lw24mh4x3dnv3wdcqrfn-app.drv"),
);

fn sp(base: &str) -> StorePath {
    StorePath::from_base_name(base).unwrap()
}

fn store() -> BTreeMap<StorePath, Vec<u8>> {
    [FIXED, FLAT, LIB, APP]
        .into_iter()
        .map(|(b, t)| (sp(b), t.to_vec()))
        .collect()
}

fn read(base: &str, text: &[u8]) -> Result<Derivation, DerivationError> {
    Derivation::read(text, &sp(base), &StoreDir::default())
}

/// Checks `text` as `base`, input derivations from `files`.
fn check(
    files: &BTreeMap<StorePath, Vec<u8>>,
    base: &str,
    text: &[u8],
) -> Result<Vec<(String, StorePath)>, DerivationError> {
    let dir = StoreDir::default();
    let mut load = |p: &StorePath| {
        let t = files
            .get(p)
            .ok_or_else(|| DerivationError::Invalid(format!("{p} missing")))?;
        Derivation::read(t, p, &dir)
    };
    let mut modulo = Modulo::new(&dir, &mut load);
    let drv = read(base, text)?;
    check_outputs(&sp(base), &drv, &mut modulo)?;
    drv.output_paths(&dir)
}

#[test]
fn nix_derivations_are_written_back_byte_for_byte() {
    for (base, text) in [FIXED, FLAT, LIB, APP] {
        let drv = read(base, text).unwrap();
        assert_eq!(
            unparse(&drv, &StoreDir::default(), false, None).unwrap(),
            text,
            "{base}"
        );
    }
    let lib = read(LIB.0, LIB.1).unwrap();
    assert_eq!(lib.args[1], b"echo \"quoted\"\n\ttab\\back");
    assert_eq!(lib.env[&b"weird"[..]], b"line\r\nbreaks");
}

#[test]
fn output_paths_and_nix_check_match_nix() {
    let files = store();
    // What Nix 2.8 put in DerivationOutputs for these derivations.
    let expected: [(&str, &[(&str, &str)]); 4] = [
        (
            FIXED.0,
            &[("out", "9lqysibp0ail253zby2yil40lnsfp8q8-fixed-src")],
        ),
        (
            FLAT.0,
            &[("out", "i89c7bvfpwai497anzq6fw86rdg0pvn4-flat-src")],
        ),
        (
            LIB.0,
            &[
                ("dev", "vplpldf7nqj097595iy1dpp2c1xrjgmy-lib-1.0-dev"),
                ("doc", "ffsmqn0xkcva3i72zirlyqs0jzsxs9ms-lib-1.0-doc"),
                ("out", "lw2j1d03m7vpg7vi1rvk5l90j34fizas-lib-1.0"),
            ],
        ),
        (APP.0, &[("out", "pa2dbi5lajrdqza4gdpcr7178v3wva85-app")]),
    ];
    for (base, rows) in expected {
        let got = check(&files, base, &files[&sp(base)]).unwrap();
        let want: Vec<(String, StorePath)> =
            rows.iter().map(|(o, p)| (o.to_string(), sp(p))).collect();
        assert_eq!(got, want, "{base}");
    }
}

#[test]
fn a_derivation_whose_outputs_are_not_what_it_implies_is_refused() {
    let files = store();
    let lib = String::from_utf8(LIB.1.to_vec()).unwrap();
    // An output path changed (in the output and its variable alike).
    let wrong = lib.replace(
        "lw2j1d03m7vpg7vi1rvk5l90j34fizas",
        "aw2j1d03m7vpg7vi1rvk5l90j34fizas",
    );
    let e = check(&files, LIB.0, wrong.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("has incorrect output"), "{e}");
    // The variable alone changed.
    let wrong = lib.replace(
        "(\"out\",\"/nix/store/lw2j1d03m7vpg7vi1rvk5l90j34fizas-lib-1.0\")",
        "(\"out\",\"/nix/store/aw2j1d03m7vpg7vi1rvk5l90j34fizas-lib-1.0\")",
    );
    assert_ne!(wrong, lib);
    let e = check(&files, LIB.0, wrong.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("incorrect environment variable 'out'"), "{e}");
    // Anything else changed changes the hash, so the outputs no longer match.
    let wrong = lib.replace("breaks", "breakz");
    let e = check(&files, LIB.0, wrong.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("has incorrect output"), "{e}");
    // An input derivation that is missing, or lacks the output wanted.
    let mut without = files.clone();
    without.remove(&sp(LIB.0));
    assert!(check(&without, APP.0, APP.1).is_err());
    let app = String::from_utf8(APP.1.to_vec())
        .unwrap()
        .replace("[\"dev\",\"out\"]", "[\"bin\",\"out\"]");
    let e = check(&files, APP.0, app.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no output \"bin\""), "{e}");
    // Mixed output kinds, two fixed outputs.
    let mixed = br#"Derive([("a","/a","sha256","0000000000000000000000000000000000000000000000000000000000000000"),("out","/nix/store/lw2j1d03m7vpg7vi1rvk5l90j34fizas-x","","")],[],[],"s","b",[],[])"#;
    let e = check(&files, "lw2j1d03m7vpg7vi1rvk5l90j34fizas-x.drv", mixed).unwrap_err();
    assert!(e.to_string().contains("mix"), "{e}");
}

#[test]
fn malformed_derivations_are_refused_without_panic() {
    let files = store();
    for (base, text) in [FIXED, LIB, APP] {
        // Every truncation.
        for n in 0..text.len() {
            assert!(read(base, &text[..n]).is_err(), "{base} cut at {n}");
        }
        // Every byte replaced by a few others: an error or a derivation, never a panic.
        for i in 0..text.len() {
            for b in [b'"', b'\\', b',', b']', b'(', b'x', 0xff] {
                let mut t = text.to_vec();
                t[i] = b;
                let _ = check(&files, base, &t);
            }
        }
    }
    for (text, what) in [
        (&b""[..], "expected \"Derive([\""),
        (
            b"Derive([(\"out\",\"relative\",\"\",\"\")],[],[],\"\",\"\",[],[])",
            "bad path",
        ),
        (
            b"Derive([(\"out\",\"/nix/store/x\",\"\",\"\")],[],[],\"\",\"\",[],[])",
            "x",
        ),
        (
            b"Derive([(\"out\",\"\",\"md7\",\"00\")],[],[],\"\",\"\",[],[])",
            "algorithm",
        ),
        (
            b"Derive([(\"out\",\"/a\",\"sha256\",\"00\")],[],[],\"\",\"\",[],[])",
            "hash",
        ),
        (
            b"Derive([(\"out\",\"\",\"\",\"\")],[(\"rel\",[])],[],\"\",\"\",[],[])",
            "bad path",
        ),
        (
            b"Derive([],[],[],\"\",\"\",[],[(\"a\",\"unterminated)])",
            "ends inside",
        ),
    ] {
        let e = read("lw2j1d03m7vpg7vi1rvk5l90j34fizas-x.drv", text)
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{:?}: {e}", String::from_utf8_lossy(text));
    }
    // No outputs at all: parsed, refused by the check.
    let e = check(
        &files,
        "lw2j1d03m7vpg7vi1rvk5l90j34fizas-x.drv",
        b"Derive([],[],[],\"\",\"\",[],[])",
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least one output"), "{e}");
}
