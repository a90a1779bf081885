//! Operator commands: `keys create|list|revoke` and `links disable`.

use crate::config::{KeysAction, LinksAction};
use crate::keys;
use crate::store::{AnyStore, Store, StoreError};

/// Runs a `keys` action. The new key goes to standard output, everything else to stderr, so
/// `KEY=$(shortener keys create --name ci)` captures just the key.
pub async fn keys(action: &KeysAction, store: &AnyStore) -> Result<bool, StoreError> {
    match action {
        KeysAction::Create { name } => {
            let new = keys::generate(name);
            store.insert_key(&new.record).await?;
            eprintln!(
                "created key {} ({name}); it is shown once, store it now:",
                new.record.id
            );
            println!("{}", new.key);
            Ok(true)
        }
        KeysAction::List => {
            println!("{:<12} {:<26} {:<26} name", "id", "created", "revoked");
            for key in store.list_keys().await? {
                let revoked = key
                    .revoked_at
                    .map_or_else(|| "-".into(), |t| t.to_rfc3339());
                println!(
                    "{:<12} {:<26} {:<26} {}",
                    key.id,
                    key.created_at.to_rfc3339(),
                    revoked,
                    key.name
                );
            }
            Ok(true)
        }
        KeysAction::Revoke { id } => {
            let done = store.revoke_key(id).await?;
            if done {
                eprintln!("revoked key {id}");
            } else {
                eprintln!("no active key with id {id}");
            }
            Ok(done)
        }
    }
}

/// Runs a `links` action.
pub async fn links(action: &LinksAction, store: &AnyStore) -> Result<bool, StoreError> {
    match action {
        LinksAction::Disable { code, reason } => {
            let done = store.disable(code, reason.as_str()).await?;
            if done {
                tracing::info!(%code, %reason, "link disabled by the operator");
                eprintln!(
                    "disabled {code}: it now answers 410 (caches drop it within the cache TTL)"
                );
            } else {
                eprintln!("no enabled link with code {code}");
            }
            Ok(done)
        }
    }
}
