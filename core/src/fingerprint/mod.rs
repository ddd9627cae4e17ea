//! Token fingerprint commitments: canonical encodings, RFC 6962-shaped BLAKE3 Merkle trees,
//! proofs, the CoIn-compatible mode and SimHash.
