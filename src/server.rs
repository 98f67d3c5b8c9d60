//! `payground serve`: open the store, make sure the default account exists, serve
//! until Ctrl-C or SIGTERM, then finish in-flight requests and close the store.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::accounts;
use crate::ctx::Settings;
use crate::engine::Engine;
use crate::http::app::App;
use crate::http::router::router;
use crate::store;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: String,
    pub database: String,
    pub secret_key: Option<String>,
    pub publishable_key: Option<String>,
    pub public_url: Option<String>,
    pub admin_token: Option<String>,
    /// How long bank debits stay `processing` before they settle.
    pub settlement_delay: std::time::Duration,
    /// API requests per second per account; more get 429 (`None`: unlimited).
    pub rate_limit: Option<f64>,
    /// Webhook retry schedule and attempt timeout.
    pub webhooks: crate::jobs::webhooks::WebhookSettings,
}

pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let store = store::open(&config.database).await?;
    let account = accounts::ensure_default(
        &store,
        config.secret_key.as_deref(),
        config.publishable_key.as_deref(),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr: SocketAddr = listener.local_addr()?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();
    let settings = Arc::new(Settings {
        settlement_delay: config.settlement_delay,
    });
    let engine = Arc::new(Engine::new(store.clone(), public_url.clone(), settings));
    let app =
        App::new(engine.clone(), config.admin_token.clone()).with_rate_limit(config.rate_limit);
    // A database written before settlement was scheduled work: its processing
    // debits get their jobs, once.
    crate::jobs::settlement::schedule_earlier_debits(&engine)
        .await
        .map_err(|e| anyhow::anyhow!("scheduling the settlement of processing debits: {e}"))?;
    // Scheduled work runs on a task of its own; commits wake it through the engine.
    let scheduler = crate::jobs::scheduler::start(engine);
    // Webhook delivery runs on tasks of its own; commits wake it through the hub.
    let webhooks =
        crate::jobs::webhooks::start(store.clone(), app.webhooks.clone(), config.webhooks.clone())?;
    let hub = app.webhooks.clone();
    let router = router(app);

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "payground {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(
        out,
        "database:        {} ({})",
        config.database,
        store.backend()
    )?;
    writeln!(out, "public url:      {public_url}")?;
    writeln!(out, "account:         {}", account.id)?;
    writeln!(out, "secret key:      {}", account.secret_key)?;
    writeln!(out, "publishable key: {}", account.publishable_key)?;
    if config.admin_token.is_some() {
        writeln!(out, "admin api:       enabled (POST /admin/accounts)")?;
    }
    writeln!(out, "ready in {} ms", started.elapsed().as_millis())?;
    out.flush()?;
    drop(out);

    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Long polls of `payground listen` answer now instead of holding the shutdown.
            hub.close();
        })
        .await?;
    tracing::info!("stopped serving; stopping webhook delivery");
    webhooks.shutdown().await;
    tracing::info!("stopping scheduled work");
    scheduler.shutdown().await;
    tracing::info!("stopped serving; closing the store");
    drop(store);
    Ok(())
}

/// Ctrl-C or SIGTERM: what `serve` and `listen` stop on.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
