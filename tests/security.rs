//! Security of the database path: TLS as libpq's URL parameters ask for it (against
//! the test cluster's self-signed certificate for 127.0.0.1), and no password in an
//! error or a log line.

#[macro_use]
mod common;

use std::path::PathBuf;

use common::db::server_url;

/// The test server's certificate (scripts/timescaledb.sh makes it in the data directory).
async fn server_cert() -> PathBuf {
    let c = gpu_health::db::connect(&server_url()).await.unwrap();
    let dir: String = c
        .query_one("SELECT current_setting('data_directory')", &[])
        .await
        .unwrap()
        .get(0);
    PathBuf::from(dir).join("server.crt")
}

/// `url` with these query parameters (and a password the server never asks for).
fn with_params(url: &str, params: &str) -> String {
    let with_password = url.replacen("://postgres@", "://postgres:S3cret-pw@", 1);
    format!("{with_password}?{params}")
}

async fn encrypted(url: &str) -> anyhow::Result<bool> {
    let c = gpu_health::db::connect(url).await?;
    Ok(c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await?
    .get(0))
}

#[tokio::test]
async fn tls_follows_the_libpq_parameters() {
    require_services!(tls_follows_the_libpq_parameters: "DATABASE_URL");
    let url = server_url();
    let cert = server_cert().await;
    let cert = cert.display();
    // Verified against the server's own certificate, host name (IP) included.
    assert!(
        encrypted(&with_params(
            &url,
            &format!("sslmode=verify-full&sslrootcert={cert}")
        ))
        .await
        .unwrap()
    );
    assert!(
        encrypted(&with_params(&url, "sslmode=require"))
            .await
            .unwrap(),
        "require encrypts without verifying"
    );
    assert!(
        !encrypted(&with_params(&url, "sslmode=disable"))
            .await
            .unwrap(),
        "disable stays plain"
    );
    // A self-signed certificate is not in the system's trust store.
    let err = encrypted(&with_params(&url, "sslmode=verify-full"))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("certificate"), "{text}");
    assert!(!text.contains("S3cret-pw"), "the password leaked: {text}");
    // The certificate names 127.0.0.1, not localhost: verify-ca passes, verify-full not.
    let by_name = url.replacen("127.0.0.1", "localhost", 1);
    assert!(
        encrypted(&with_params(
            &by_name,
            &format!("sslmode=verify-ca&sslrootcert={cert}")
        ))
        .await
        .unwrap()
    );
    let err = encrypted(&with_params(
        &by_name,
        &format!("sslmode=verify-full&sslrootcert={cert}"),
    ))
    .await
    .unwrap_err();
    assert!(!format!("{err:#}").contains("S3cret-pw"));
    // Another CA in sslrootcert: the server's certificate does not chain to it.
    let other = std::env::temp_dir().join(format!("gpu-health-other-ca-{}", std::process::id()));
    std::fs::create_dir_all(&other).unwrap();
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(other.join("ca.key"))
        .arg("-out")
        .arg(other.join("ca.pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let params = format!(
        "sslmode=verify-ca&sslrootcert={}",
        other.join("ca.pem").display()
    );
    assert!(encrypted(&with_params(&url, &params)).await.is_err());
}

/// A refused connection names the server without the password, in the error and in
/// the processor's log.
#[test]
fn a_failing_connection_never_shows_the_password() {
    // A port nothing listens on.
    let port = common::free_port();
    let url = format!("postgres://writer:S3cret-pw@127.0.0.1:{port}/gpu_health");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-health"))
        .args(["schema", "status"])
        .env("GPU_HEALTH_DATABASE_URL", &url)
        .env("GPU_HEALTH_LOG", "debug")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("writer:***@"), "{text}");
    assert!(!text.contains("S3cret-pw"), "the password leaked: {text}");
}
