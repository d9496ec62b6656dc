//! TLS: `ring` as the process's one rustls crypto provider, and the reqwest
//! clients built on it.
//!
//! reqwest is built without a provider of its own (its `rustls` feature
//! would link aws-lc-rs, over 2 MB of C code and tables, beside `ring`,
//! which the AWS SDK's client in `aws.rs` and the webhook signatures use),
//! so a provider must be installed before a client is built:
//! [`http_client_builder`] does that first.

/// Installs `ring` as the process's default rustls crypto provider, unless
/// one is installed already (then that one stays: a process has one).
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing the same is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// `reqwest::Client::builder()`, after [`install_crypto_provider`]: every
/// HTTP client batchq builds (providers, webhooks, the CLI) starts here.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_builds_with_ring_installed_as_the_process_provider() {
        http_client_builder().build().expect("the client builds");
        let installed = rustls::crypto::CryptoProvider::get_default().expect("a provider is installed");
        let ring = rustls::crypto::ring::default_provider();
        // aws-lc-rs's provider (which test builds also link, through
        // reqwest's own `rustls` feature) offers a post-quantum key exchange
        // first; ring's does not.
        let groups = |p: &rustls::crypto::CryptoProvider| p.kx_groups.iter().map(|g| g.name()).collect::<Vec<_>>();
        assert_eq!(groups(installed), groups(&ring), "the provider installed is ring's");
    }
}
