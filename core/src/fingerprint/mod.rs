//! Token fingerprint commitments: canonical encodings, RFC 6962-shaped BLAKE3 Merkle trees,
//! proofs, the CoIn-compatible mode and SimHash.
//!
//! A provider generates `n` hidden tokens, bills for `n` and reveals only the answer. This
//! module lets it **commit** to one sequence of token fingerprints and one count before an
//! audit, and lets an auditor open sampled positions and check each against the commitment.
//! Whether an opened fingerprint belongs to a genuine reasoning token is a separate,
//! statistical check (SimHash, semantic matching), not a cryptographic one.
//!
//! # Pipeline
//!
//! ```text
//! embedding x ──encoding──▶ fp bytes ──LeafRecord──▶ record ──H(0x00‖·)──▶ leaf hash
//! leaf hashes ──tree / builder──▶ root;   (n, root, ctx) ──signed_head──▶ bytes to sign
//! auditor nonce ──sampling::audit_indices──▶ indices ──proof::inclusion_proof──▶ openings
//! ```
//!
//! | module | concept |
//! |---|---|
//! | [`encoding`] | canonical `f32`, `i8`-unit, `bf16` encodings; CoIn layout; the leaf record; salts |
//! | [`hash`] | [`Hash32`](hash::Hash32), BLAKE3 (plain and keyed), leaf/node prefixes |
//! | [`tree`] | `MTH` of RFC 6962 §2.1 (split at the largest power of two below `n`) |
//! | [`builder`] | streaming builder (`O(log n)` memory) and mergeable compact ranges |
//! | [`proof`] | inclusion and consistency proofs, exact lengths, byte format |
//! | [`signed_head`] | the bytes committing to `(n, root)` that the provider signs |
//! | [`coin_compat`] | CoIn's padded tree, **insecure**, for reproduction only |
//! | [`simhash`] | seeded hyperplane LSH with guard bands |
//! | [`sampling`] | audit-index sampling and detection-probability math |
//!
//! # The tree
//!
//! ```text
//! leaf_hash(record) = H(0x00 ‖ record)          NODE(l, r) = H(0x01 ‖ l ‖ r)
//! MTH({}) = H("")     MTH({d}) = leaf_hash(d)
//! MTH(D[0:n]) = NODE(MTH(D[0:k]), MTH(D[k:n]))  k = largest power of two < n
//! ```
//!
//! `H` is BLAKE3 (32-byte output), optionally keyed with
//! `derive_key("tokenmath v1 token-tree key", context)`; the code is generic over
//! [`Hash32`](hash::Hash32) so SHA-256 reproduces the RFC 6962 vectors. The streaming builder keeps the
//! perfect subtrees of the binary decomposition of `n`; compact ranges of adjacent shards
//! merge to the same root bit for bit, whatever the split.
//!
//! Proof lengths are exact functions of the sizes: inclusion
//! `inner + border` with `inner = bitlen(i ⊕ (n−1))`, `border = popcount(i >> inner)`;
//! consistency `inner − tz(n1) + border + [n1 not a power of two]` with
//! `(inner, border)` of `(n1 − 1, n2)`. Any other length is rejected before hashing.
//!
//! # Security properties given
//!
//! Under the collision resistance of `H`:
//! * **The root binds the count and every position.** No padding or duplication: trees of
//!   different sizes have different shapes, and with the size taken from the signed head
//!   the proof length is fixed, so a proof cannot be "stretched" to a larger count.
//! * **Leaves and nodes are domain-separated** (`0x00` / `0x01` prefixes): a node can never
//!   be presented as a leaf, and a 64-byte fingerprint cannot impersonate a subtree.
//! * **Position binding inside the leaf**: the record carries its index, so repeated tokens
//!   hash differently and a leaf opened at the wrong position is rejected.
//! * **Hiding of unopened leaves** when salts are secret and random (or derived from a
//!   secret key): sibling hashes in proofs cannot be matched against all `V` token ids.
//! * **Append-only growth**: consistency proofs show that a later head extends an earlier one.
//! * **Deterministic, mergeable construction**: streaming, batch and sharded builds give the
//!   same root bitwise.
//! * **Total verification**: every malformed proof or head byte string is a typed
//!   rejection, never a panic.
//!
//! # Security properties not given
//!
//! * **An inclusion proof alone does not bind the tree size**: e.g. a valid proof for
//!   `(index 0, size 3)` also verifies as `(index 0, size 4)` against the same root. The size
//!   must come from a *signed head*, and the billed count must equal the head's `n`.
//! * **Signatures** are out of scope: the library defines the bytes to sign
//!   ([`signed_head::SignedHead`]); authenticity of a head is the caller's signature check.
//! * **Genuineness of the committed tokens**: a provider can commit to filler or duplicated
//!   reasoning. Hash checks only catch *inconsistency* with the commitment; catching fabricated
//!   content needs a semantic check with its own miss rate `1 − q` ([`sampling`]).
//! * **Sampling is probabilistic**: with a forged fraction `f` and `s` samples, detection
//!   happens with probability about `1 − (1 − q·f)^s`, not certainty.
//! * **Index unpredictability** requires a fresh auditor nonce after the head is received;
//!   indices derived from the head alone can be ground by re-salting.
//! * **Approximate recomputation**: the hash is only ever checked on the committed bytes.
//!   A verifier that recomputes embeddings on other hardware must compare outside the hash
//!   with a tolerance (`i8` codes within 1, SimHash with guard bands).
//! * **Salt disclosure**: salts of opened leaves are revealed; a salt key shared with the
//!   auditor reveals all leaves' salts.
//! * The [`coin_compat`] mode gives none of the above (count ambiguity, no domain
//!   separation); it exists only to reproduce CoIn.

//! # Example
//!
//! ```
//! use tokenmath_core::fingerprint::encoding::{encode_f32_canonical, FpKind, LeafRecord};
//! use tokenmath_core::fingerprint::builder::StreamingTree;
//! use tokenmath_core::fingerprint::hash::Blake3;
//! use tokenmath_core::fingerprint::proof::{inclusion_proof, max_proof_len, verify_inclusion};
//! use tokenmath_core::fingerprint::signed_head::SignedHead;
//!
//! let embeddings = [[0.5f32, -1.0, 2.0], [0.25, 0.0, -0.0], [1.0, 1.0, 1.0]];
//! let mut leaves = Vec::new();
//! let mut tree = StreamingTree::new(Blake3);
//! for (i, x) in embeddings.iter().enumerate() {
//!     let mut fp = [0u8; 12];
//!     encode_f32_canonical(x, &mut fp)?;
//!     let rec = LeafRecord { index: i as u64, salt: [0; 16], token_id: 7, kind: FpKind::F32Canonical, fp: &fp };
//!     let leaf = rec.leaf_hash(&Blake3)?;
//!     tree.append(leaf)?;
//!     leaves.push(leaf);
//! }
//! let (n, root) = (tree.len(), tree.root());
//! let head = SignedHead { hash_id: 1, n, root, ctx: b"request-1" };
//! let mut head_bytes = vec![0u8; head.encoded_len()];
//! head.encode(&mut head_bytes)?; // the provider signs these bytes
//!
//! // Open leaf 2 and check it against the head's size and root.
//! let mut buf = vec![[0u8; 32]; max_proof_len(n)];
//! let len = inclusion_proof(&Blake3, &leaves, 2, &mut buf)?;
//! assert!(verify_inclusion(&Blake3, 2, head.n, &leaves[2], &buf[..len], &head.root).is_ok());
//! assert!(verify_inclusion(&Blake3, 1, head.n, &leaves[2], &buf[..len], &head.root).is_err());
//! # Ok::<(), tokenmath_core::TmError>(())
//! ```

pub mod builder;
pub mod coin_compat;
pub mod encoding;
pub mod hash;
pub mod proof;
pub mod sampling;
pub mod signed_head;
pub mod simhash;
pub mod tree;
