//! Property tests of the token fingerprint commitments: random trees up to a few thousand
//! leaves (every proof for every index verifies; mutations fail), streaming = batch =
//! merged shards, and hostile bytes fed to every parser and verifier (typed errors, no
//! panics).

use proptest::prelude::*;
use tokenmath_core::fingerprint::builder::{CompactRange, StreamingTree};
use tokenmath_core::fingerprint::encoding::LeafRecord;
use tokenmath_core::fingerprint::hash::{leaf_hash, Blake3, Digest};
use tokenmath_core::fingerprint::proof::{
    consistency_proof, inclusion_proof, parse_proof, verify_consistency, verify_inclusion, MAX_PROOF_HASHES,
};
use tokenmath_core::fingerprint::signed_head::SignedHead;
use tokenmath_core::fingerprint::tree::root;

fn synth(n: usize, salt: u64) -> Vec<Digest> {
    (0..n as u64).map(|i| leaf_hash(&Blake3, &[salt.to_le_bytes(), i.to_le_bytes()].concat())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Every index of a random tree of up to 3000 leaves: the proof verifies, and a random
    /// single-bit flip of a proof hash, the leaf or the root fails, as do index ± 1.
    #[test]
    fn every_inclusion_proof_of_large_random_trees(n in 1usize..3000, salt in any::<u64>(), flips in proptest::collection::vec(any::<u32>(), 64)) {
        let l = synth(n, salt);
        let r = root(&Blake3, &l);
        let mut buf = [[0u8; 32]; MAX_PROOF_HASHES];
        for i in 0..n {
            let len = inclusion_proof(&Blake3, &l, i as u64, &mut buf).unwrap();
            let p = &buf[..len];
            prop_assert!(verify_inclusion(&Blake3, i as u64, n as u64, &l[i], p, &r).is_ok());
            let f = flips[i % flips.len()] as usize;
            let bit = f % 256;
            let mut leaf = l[i];
            leaf[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(&Blake3, i as u64, n as u64, &leaf, p, &r).is_err());
            let mut rr = r;
            rr[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(&Blake3, i as u64, n as u64, &l[i], p, &rr).is_err());
            if len > 0 {
                let mut q = p.to_vec();
                q[(f / 256) % len][bit / 8] ^= 1 << (bit % 8);
                prop_assert!(verify_inclusion(&Blake3, i as u64, n as u64, &l[i], &q, &r).is_err());
            }
            if i + 1 < n {
                prop_assert!(verify_inclusion(&Blake3, i as u64 + 1, n as u64, &l[i], p, &r).is_err());
            }
        }
    }

    /// Consistency proofs between random sizes verify; flipped bits fail.
    #[test]
    fn consistency_of_random_sizes(n2 in 1usize..3000, salt in any::<u64>(), picks in proptest::collection::vec((any::<u64>(), any::<u16>()), 40)) {
        let l = synth(n2, salt);
        let r2 = root(&Blake3, &l);
        let mut buf = [[0u8; 32]; MAX_PROOF_HASHES];
        for (a, bit) in picks {
            let n1 = 1 + (a % n2 as u64) as usize;
            let r1 = root(&Blake3, &l[..n1]);
            let len = consistency_proof(&Blake3, &l, n1 as u64, &mut buf).unwrap();
            prop_assert!(verify_consistency(&Blake3, n1 as u64, n2 as u64, &buf[..len], &r1, &r2).is_ok());
            let bit = bit as usize % 256;
            if len > 0 {
                let mut q = buf[..len].to_vec();
                q[(a as usize >> 8) % len][bit / 8] ^= 1 << (bit % 8);
                prop_assert!(verify_consistency(&Blake3, n1 as u64, n2 as u64, &q, &r1, &r2).is_err());
            }
            let mut bad = r1;
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(&Blake3, n1 as u64, n2 as u64, &buf[..len], &bad, &r2).is_err());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Streaming, batch and merged shards (any number of shards at any boundaries) give the
    /// same root.
    #[test]
    fn streaming_batch_and_shards_agree(n in 0usize..2500, cuts in proptest::collection::vec(any::<u16>(), 0..8), salt in any::<u64>()) {
        let l = synth(n, salt);
        let batch = root(&Blake3, &l);
        let mut st = StreamingTree::new(Blake3);
        for h in &l {
            st.append(*h).unwrap();
        }
        prop_assert_eq!(st.root(), batch);
        let mut bounds: Vec<usize> = cuts.iter().map(|c| if n == 0 { 0 } else { *c as usize % (n + 1) }).collect();
        bounds.push(0);
        bounds.push(n);
        bounds.sort_unstable();
        let shards: Vec<CompactRange<Blake3>> = bounds
            .windows(2)
            .map(|w| CompactRange::from_leaves(Blake3, w[0] as u64, &l[w[0]..w[1]]).unwrap())
            .collect();
        let mut acc = CompactRange::new(Blake3, 0);
        for s in &shards {
            acc = acc.merge(s).unwrap();
        }
        prop_assert_eq!(acc.root().unwrap(), batch);
    }

    /// Random bytes never panic the proof parser or the verifiers, and are rejected.
    #[test]
    fn random_bytes_are_rejected_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..400), leaf in any::<[u8; 32]>(), r in any::<[u8; 32]>()) {
        if let Ok(view) = parse_proof(&bytes) {
            let a = view.a;
            let b = view.b;
            prop_assert!(view.verify_inclusion(&Blake3, a, b, &leaf, &r).is_err());
            prop_assert!(view.verify_consistency(&Blake3, a, b, &r, &leaf).is_err() || leaf == r);
        }
        let _ = LeafRecord::parse(&bytes);
        let _ = SignedHead::parse(&bytes);
    }

    /// Random well-framed proofs (valid magic and length) with random sizes and hashes are
    /// rejected without panicking, including sizes near u64::MAX.
    #[test]
    fn random_framed_proofs_are_rejected(kind in 1u8..=2, a in any::<u64>(), b in any::<u64>(), count in 0usize..70, fill in any::<u8>(), leaf in any::<[u8; 32]>(), r in any::<[u8; 32]>()) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"TMPF");
        bytes.extend_from_slice(&[1, kind, 1, 0]);
        bytes.extend_from_slice(&a.to_le_bytes());
        bytes.extend_from_slice(&b.to_le_bytes());
        bytes.extend_from_slice(&(count as u32).to_le_bytes());
        bytes.extend(std::iter::repeat_n(fill, 32 * count));
        match parse_proof(&bytes) {
            Ok(view) => {
                prop_assert!(count <= MAX_PROOF_HASHES);
                prop_assert!(view.verify_inclusion(&Blake3, a, b, &leaf, &r).is_err());
                prop_assert!(view.verify_consistency(&Blake3, a, b, &leaf, &r).is_err() || (a == b && leaf == r && count == 0 && a > 0));
                prop_assert!(verify_inclusion(&Blake3, a, b, &leaf, view.hashes, &r).is_err());
            }
            Err(_) => prop_assert!(count > MAX_PROOF_HASHES),
        }
    }
}
