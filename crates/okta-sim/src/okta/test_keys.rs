//! TEST-ONLY keypairs for OAuth `private_key_jwt` tests (here and in other crates' tests).
//!
//! The private halves are committed in `crates/okta-sim/tests/fixtures/`: they protect nothing
//! and must never be used outside tests.

/// RSA 2048 private key (PKCS#8 PEM) of the test service app.
pub const RSA_PRIVATE_PEM: &str = include_str!("../../tests/fixtures/test_rsa_private.pem");
/// Its public key (SPKI PEM), for `OktaSim::register_oauth_client`.
pub const RSA_PUBLIC_PEM: &str = include_str!("../../tests/fixtures/test_rsa_public.pem");
/// An unrelated RSA private key, to sign assertions the simulator must reject.
pub const RSA_OTHER_PRIVATE_PEM: &str =
    include_str!("../../tests/fixtures/test_rsa_other_private.pem");
/// P-256 private key (PKCS#8 PEM), for ES256.
pub const EC_PRIVATE_PEM: &str = include_str!("../../tests/fixtures/test_ec_private.pem");
/// Its public key (SPKI PEM).
pub const EC_PUBLIC_PEM: &str = include_str!("../../tests/fixtures/test_ec_public.pem");

/// Absolute path of the fixtures directory (for configs that take key file paths).
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Path of the RSA private key file.
pub fn rsa_private_key_path() -> std::path::PathBuf {
    fixtures_dir().join("test_rsa_private.pem")
}

/// Path of the RSA public key file.
pub fn rsa_public_key_path() -> std::path::PathBuf {
    fixtures_dir().join("test_rsa_public.pem")
}
