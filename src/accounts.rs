//! Accounts: each one an isolated sandbox with its own keys.

use serde_json::{json, Value};

use crate::clock;
use crate::ids;
use crate::store::{Account, DynStore};

const DEFAULT_ACCOUNT: &str = "default_account";

fn check_key(key: &str, prefix: &str, what: &str) -> anyhow::Result<()> {
    if !key.starts_with(prefix)
        || key.len() < prefix.len() + 8
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        anyhow::bail!("the {what} must start with {prefix} and have at least 8 more characters");
    }
    Ok(())
}

/// A new account; keys are generated unless given.
pub async fn create(
    store: &DynStore,
    secret_key: Option<&str>,
    publishable_key: Option<&str>,
) -> anyhow::Result<Account> {
    if let Some(k) = secret_key {
        check_key(k, "sk_test_", "secret key")?;
    }
    if let Some(k) = publishable_key {
        check_key(k, "pk_test_", "publishable key")?;
    }
    let account = Account {
        id: ids::new_id("acct"),
        secret_key: secret_key
            .map(str::to_string)
            .unwrap_or_else(|| format!("sk_test_{}", ids::random_string(32))),
        publishable_key: publishable_key
            .map(str::to_string)
            .unwrap_or_else(|| format!("pk_test_{}", ids::random_string(32))),
        clock_offset: 0,
        created: clock::system_now(),
    };
    store.create_account(&account).await?;
    Ok(account)
}

/// The account `payground serve` prints and uses by default. Keys given on the
/// command line select (or create) the account they belong to; without them the
/// first start generates keys and every later start reuses them.
pub async fn ensure_default(
    store: &DynStore,
    secret_key: Option<&str>,
    publishable_key: Option<&str>,
) -> anyhow::Result<Account> {
    if let Some(secret) = secret_key {
        if let Some(existing) = store.account_by_key(secret).await? {
            return use_existing(store, existing, secret, publishable_key).await;
        }
        let account = match create(store, Some(secret), publishable_key).await {
            Ok(account) => account,
            // Another node booting on the same database with the same keys created
            // the account between the look-up and the insert: use that one.
            Err(e) => match store.account_by_key(secret).await? {
                Some(existing) => {
                    return use_existing(store, existing, secret, publishable_key).await
                }
                None => return Err(e),
            },
        };
        store.meta_set(DEFAULT_ACCOUNT, &account.id).await?;
        return Ok(account);
    }
    if let Some(id) = store.meta_get(DEFAULT_ACCOUNT).await? {
        if let Some(account) = store.account(&id).await? {
            if publishable_key.is_some_and(|pk| pk != account.publishable_key) {
                anyhow::bail!("--publishable-key needs --secret-key when the database already has a default account");
            }
            return Ok(account);
        }
    }
    let account = create(store, None, publishable_key).await?;
    store.meta_set(DEFAULT_ACCOUNT, &account.id).await?;
    Ok(account)
}

/// The account that already holds `secret`, checked against the keys given.
async fn use_existing(
    store: &DynStore,
    existing: Account,
    secret: &str,
    publishable_key: Option<&str>,
) -> anyhow::Result<Account> {
    if existing.secret_key != secret {
        anyhow::bail!("the secret key given is another account's publishable key");
    }
    if publishable_key.is_some_and(|pk| pk != existing.publishable_key) {
        anyhow::bail!(
            "account {} already has secret key {secret} with another publishable key ({})",
            existing.id,
            existing.publishable_key
        );
    }
    store.meta_set(DEFAULT_ACCOUNT, &existing.id).await?;
    Ok(existing)
}

pub fn describe(account: &Account) -> Value {
    json!({
        "id": account.id,
        "object": "payground.account",
        "secret_key": account.secret_key,
        "publishable_key": account.publishable_key,
        "created": account.created,
    })
}
