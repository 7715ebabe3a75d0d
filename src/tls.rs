//! The process's TLS crypto provider, for the HTTP clients that are not the AWS SDK's
//! (forwarding, Twenty's REST API): aws-lc, the one the AWS SDK's rustls brings with it.

/// Installs aws-lc as the process's TLS crypto provider, once.
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: a provider is installed already (by the SDK), which is as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}
