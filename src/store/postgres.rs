//! PostgreSQL store (being written).
use super::*;

pub struct PostgresStore;

impl PostgresStore {
    pub async fn open(_url: &str) -> anyhow::Result<Self> {
        anyhow::bail!("the PostgreSQL store is not built yet")
    }
}
