//! Ed25519 verification with a trusted key's multiples computed once. A verifier checks every
//! narinfo against the same few keys: ed25519-dalek's `verify` computes `[s]B − [k]A` with ~253
//! point doublings each time. Here both products are sums of table entries: each scalar is
//! written in 32 signed base-256 digits, and a table holds `j·256^i·P` for every position `i` and
//! digit `j` (1..=128) of the point `P` (the base point `B`, made once per process, and the key's
//! `−A`, made once per key): at most 64 point additions and no doubling. Nothing here is secret
//! (the key, the message and the signature are public), so entries are picked directly, not by
//! the constant-time scan of the library's own base-point tables (which costs as much again).
//!
//! The verdict is ed25519-dalek's (non-strict) `verify`, bit for bit: `s` must be canonical
//! (`< ℓ`), `k = SHA-512(R ‖ A ‖ M) mod ℓ`, and `[s]B − [k]A` must compress to the bytes of `R`
//! (which is not decompressed: any 32 bytes compare). The tests check it against the library on
//! valid, altered and hostile signatures.

use std::sync::OnceLock;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

/// Digit positions: a reduced scalar (`< ℓ < 2^253`) has 32 bytes, and its top byte is at most
/// `0x10`, so the signed recoding never carries past the last one.
const POSITIONS: usize = 32;
/// Multiples per position: digits run from −127 to 128.
const DIGITS: usize = 128;

/// `j·256^i·P` for `i < 32`, `1 ≤ j ≤ 128` (4 096 points, 640 KiB).
struct Multiples(Box<[EdwardsPoint]>);

impl Multiples {
    fn of(point: &EdwardsPoint) -> Multiples {
        let mut all = Vec::with_capacity(POSITIONS * DIGITS);
        let mut base = *point;
        for _ in 0..POSITIONS {
            let mut multiple = base;
            all.push(multiple);
            for _ in 1..DIGITS {
                multiple += &base;
                all.push(multiple);
            }
            // 256^(i+1)·P = 2·(128·256^i·P).
            base = multiple + multiple;
        }
        Multiples(all.into_boxed_slice())
    }

    /// `scalar·P`, in variable time (the scalar is public).
    fn times(&self, scalar: &Scalar) -> EdwardsPoint {
        let mut sum = EdwardsPoint::identity();
        let mut carry = 0i16;
        for (i, &byte) in scalar.as_bytes().iter().enumerate() {
            let mut digit = i16::from(byte) + carry;
            carry = 0;
            if digit > DIGITS as i16 {
                digit -= 256;
                carry = 1;
            }
            let entry = &self.0[i * DIGITS..][..DIGITS];
            match digit {
                0 => {}
                d if d > 0 => sum += &entry[d as usize - 1],
                d => sum -= &entry[(-d) as usize - 1],
            }
        }
        debug_assert_eq!(carry, 0, "a reduced scalar's top byte is at most 0x10");
        sum
    }
}

/// The base point's multiples, made when the first signature is checked.
fn base_multiples() -> &'static Multiples {
    static BASE: OnceLock<Multiples> = OnceLock::new();
    BASE.get_or_init(|| Multiples::of(&ED25519_BASEPOINT_POINT))
}

/// The multiples of a public key's negated point `−A`, for [`KeyTable::verify`].
pub(super) struct KeyTable(Multiples);

impl KeyTable {
    /// Computes the table (a few milliseconds in wasm: made once per key, when first needed).
    pub(super) fn new(key: &VerifyingKey) -> KeyTable {
        KeyTable(Multiples::of(&-key.to_edwards()))
    }

    /// Whether `sig` (`R ‖ s`) is `key`'s signature of `message`, as ed25519-dalek's
    /// `VerifyingKey::verify` decides; `self` must be `key`'s table.
    pub(super) fn verify(&self, key: &VerifyingKey, message: &[u8], sig: &[u8; 64]) -> bool {
        let (r, s) = sig.split_at(32);
        let s: [u8; 32] = s.try_into().expect("32 bytes");
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return false;
        };
        let mut h = Sha512::new();
        h.update(r);
        h.update(key.as_bytes());
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let expected = base_multiples().times(&s) + self.0.times(&k);
        expected.compress().as_bytes() == r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};

    fn dalek(key: &VerifyingKey, message: &[u8], sig: &[u8; 64]) -> bool {
        key.verify(message, &Signature::from_bytes(sig)).is_ok()
    }

    /// A small deterministic generator (xorshift), for varied inputs without a dependency.
    fn bytes(state: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                (*state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn multiples_give_the_product() {
        // Digits at the recoding's edges (127, 128, 129 carry, 255), and random scalars.
        let mut state = 0x2545_f491_4f6c_dd1d;
        let point = EdwardsPoint::mul_base(&Scalar::from(7u64));
        let table = Multiples::of(&point);
        let mut scalars: Vec<Scalar> = [0u64, 1, 127, 128, 129, 255, 256, 0x8080, 0xffff_ffff]
            .into_iter()
            .map(Scalar::from)
            .collect();
        scalars.push(-Scalar::ONE);
        for _ in 0..30 {
            scalars.push(Scalar::from_bytes_mod_order_wide(
                &bytes(&mut state, 64).try_into().unwrap(),
            ));
        }
        for s in &scalars {
            assert_eq!(table.times(s), point * s, "{:?}", s.as_bytes());
            assert_eq!(base_multiples().times(s), EdwardsPoint::mul_base(s));
        }
    }

    #[test]
    fn agrees_with_ed25519_dalek() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for round in 0..40 {
            let seed: [u8; 32] = bytes(&mut state, 32).try_into().unwrap();
            let sk = SigningKey::from_bytes(&seed);
            let key = sk.verifying_key();
            let table = KeyTable::new(&key);
            let message = bytes(&mut state, round * 7);
            let good = sk.sign(&message).to_bytes();
            assert!(table.verify(&key, &message, &good));
            assert!(dalek(&key, &message, &good));
            // Each byte of the signature altered, and the message: both refuse alike.
            let mut cases = vec![];
            for i in [0, 5, 31, 32, 40, 63] {
                let mut bad = good;
                bad[i] ^= 1 << (round % 8);
                cases.push((message.clone(), bad));
            }
            let mut other = message.clone();
            other.push(b'x');
            cases.push((other, good));
            // Hostile: s not canonical (s + ℓ), random R and s, R of a small-order point.
            let mut s_plus_l = good;
            // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
            let mut l = [0u8; 32];
            l[..16].copy_from_slice(&0x14def9dea2f79cd65812631a5cf5d3ed_u128.to_le_bytes());
            l[31] = 0x10;
            let mut carry = 0u16;
            for i in 0..32 {
                let v = u16::from(s_plus_l[32 + i]) + u16::from(l[i]) + carry;
                s_plus_l[32 + i] = v as u8;
                carry = v >> 8;
            }
            cases.push((message.clone(), s_plus_l));
            cases.push((message.clone(), bytes(&mut state, 64).try_into().unwrap()));
            let mut small_r = good;
            small_r[..32].copy_from_slice(&[0; 32]);
            small_r[0] = 1; // the identity's encoding
            cases.push((message.clone(), small_r));
            for (m, sig) in &cases {
                assert_eq!(
                    table.verify(&key, m, sig),
                    dalek(&key, m, sig),
                    "round {round}"
                );
                assert!(!table.verify(&key, m, sig));
            }
            // Another key's table refuses this key's signature.
            let other_key = SigningKey::from_bytes(&[round as u8; 32]).verifying_key();
            assert!(!KeyTable::new(&other_key).verify(&other_key, &message, &good));
        }
    }

    #[test]
    fn a_signature_made_for_a_small_order_key_is_judged_alike() {
        // A public key of small order (the identity, y = 1): every signature with R = identity
        // and s = 0 verifies against it in dalek's non-strict verify; the table agrees.
        let key = VerifyingKey::from_bytes(&{
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        })
        .unwrap();
        let table = KeyTable::new(&key);
        let mut sig = [0u8; 64];
        sig[0] = 1;
        for m in [&b""[..], b"a", b"narinfo"] {
            assert_eq!(table.verify(&key, m, &sig), dalek(&key, m, &sig));
        }
    }
}
