//! The crypto provider of coserve's TLS, the server's (`tls`) and the
//! outbound client's (`client`): aws-lc-rs with coserve's key exchange
//! order, X25519 (with ML-KEM first) before the slower NIST curve.

use rustls::crypto::aws_lc_rs as provider;

/// aws-lc-rs with coserve's key exchange order.
pub(crate) fn provider() -> rustls::crypto::CryptoProvider {
    let mut p = provider::default_provider();
    p.kx_groups = vec![
        provider::kx_group::X25519MLKEM768,
        provider::kx_group::X25519,
        provider::kx_group::SECP256R1,
    ];
    p
}
