//! The `payground` command.

use clap::{Parser, Subcommand};

/// A quarter of a request's CPU went to malloc/free with the system allocator; mimalloc
/// cut CPU per request by 10–12% in an A/B of the benchmarks (bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use payground::jobs::webhooks::{RetrySchedule, WebhookSettings, DEFAULT_RETRY_SCHEDULE};
use payground::server::{serve, ServeConfig};
use payground::{accounts, store};

#[derive(Parser)]
#[command(
    name = "payground",
    version,
    about = "A self-hosted, offline Stripe API sandbox"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct DatabaseArg {
    /// sqlite:PATH (embedded, the default) or postgres://user@host/db
    #[arg(
        long,
        env = "PAYGROUND_DATABASE_URL",
        default_value = "sqlite:payground.db"
    )]
    database: String,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Stripe's API.
    Serve {
        /// Address to listen on (stripe-mock's port by default).
        #[arg(long, env = "PAYGROUND_LISTEN", default_value = "127.0.0.1:12111")]
        listen: String,
        #[command(flatten)]
        database: DatabaseArg,
        /// The default account's secret key (generated on first start if not given).
        #[arg(long, env = "PAYGROUND_SECRET_KEY")]
        secret_key: Option<String>,
        /// The default account's publishable key.
        #[arg(long, env = "PAYGROUND_PUBLISHABLE_KEY")]
        publishable_key: Option<String>,
        /// Base of URLs payground hands out (hosted pages); default http://<listen>.
        #[arg(long, env = "PAYGROUND_PUBLIC_URL")]
        public_url: Option<String>,
        /// Enables the admin API (POST /admin/accounts) guarded by this token.
        #[arg(long, env = "PAYGROUND_ADMIN_TOKEN")]
        admin_token: Option<String>,
        /// Seconds a bank debit stays processing before it settles (the test helper
        /// POST /v1/test_helpers/payment_intents/{id}/settle settles at once).
        #[arg(long, env = "PAYGROUND_SETTLEMENT_DELAY", default_value_t = 5.0)]
        settlement_delay: f64,
        /// Requests per second each account may make; more are refused with 429 as
        /// Stripe does (off by default).
        #[arg(long, env = "PAYGROUND_RATE_LIMIT")]
        rate_limit: Option<f64>,
        /// Seconds to wait before retrying a failed webhook delivery, after the 1st,
        /// 2nd, ... failure (comma-separated, fractions allowed); after the last the
        /// delivery fails for good. The default is close to Stripe test mode.
        #[arg(long, env = "PAYGROUND_WEBHOOK_RETRY_SCHEDULE", default_value = DEFAULT_RETRY_SCHEDULE)]
        webhook_retry_schedule: RetrySchedule,
        /// Seconds one webhook attempt may take before it counts as failed.
        #[arg(long, env = "PAYGROUND_WEBHOOK_TIMEOUT", default_value_t = 10.0)]
        webhook_timeout: f64,
    },
    /// Forward events to a local URL, signed, like `stripe listen`.
    Listen {
        /// Where to POST each event (e.g. http://localhost:4242/webhook).
        #[arg(long)]
        forward_to: String,
        /// Comma-separated event types to forward (all of them by default).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Make the API calls that cause an event, like `stripe trigger`.
    Trigger {
        /// The event to cause, e.g. customer.created.
        event: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Manage accounts (isolated sandboxes, one per CI job if you like).
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
}

/// How `listen` and `trigger` reach a running payground.
#[derive(clap::Args, Clone)]
struct ApiArgs {
    /// The account's secret key (sk_test_...).
    #[arg(long, env = "PAYGROUND_API_KEY")]
    api_key: String,
    /// The server's base URL.
    #[arg(
        long,
        env = "PAYGROUND_API_BASE",
        default_value = "http://127.0.0.1:12111"
    )]
    api_base: String,
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Create an account and print its keys as JSON.
    Create {
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// List accounts and their keys as JSON.
    List {
        #[command(flatten)]
        database: DatabaseArg,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYGROUND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            database,
            secret_key,
            publishable_key,
            public_url,
            admin_token,
            settlement_delay,
            rate_limit,
            webhook_retry_schedule,
            webhook_timeout,
        } => {
            if !(webhook_timeout > 0.0 && webhook_timeout <= 600.0) {
                anyhow::bail!("--webhook-timeout must be between 0 and 600 seconds");
            }
            if rate_limit.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                anyhow::bail!("--rate-limit must be a positive number of requests per second");
            }
            if !(0.0..=86_400.0).contains(&settlement_delay) {
                anyhow::bail!("--settlement-delay must be between 0 and 86400 seconds");
            }
            serve(ServeConfig {
                listen,
                database: database.database,
                secret_key,
                publishable_key,
                public_url,
                admin_token,
                settlement_delay: std::time::Duration::from_secs_f64(settlement_delay),
                rate_limit,
                webhooks: WebhookSettings {
                    retry_schedule: webhook_retry_schedule,
                    timeout: std::time::Duration::from_secs_f64(webhook_timeout),
                },
            })
            .await
        }
        Command::Listen {
            forward_to,
            events,
            api,
        } => {
            payground::cli::listen(payground::cli::ListenOptions {
                forward_to,
                events: events
                    .into_iter()
                    .filter(|e| !e.trim().is_empty())
                    .collect(),
                api_key: api.api_key,
                api_base: api.api_base,
            })
            .await
        }
        Command::Trigger { event, api } => {
            payground::cli::trigger(&event, &api.api_key, &api.api_base).await
        }
        Command::Accounts { command } => match command {
            AccountsCommand::Create { database } => {
                let store = store::open(&database.database).await?;
                let account = accounts::create(&store, None, None).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&accounts::describe(&account))?
                );
                Ok(())
            }
            AccountsCommand::List { database } => {
                let store = store::open(&database.database).await?;
                let all: Vec<_> = store
                    .list_accounts()
                    .await?
                    .iter()
                    .map(accounts::describe)
                    .collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
                Ok(())
            }
        },
    }
}
