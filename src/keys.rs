//! API keys: `shk_<id>_<secret>`. The id finds the record; only a SHA-256 of the secret is
//! stored, and it is compared in constant time. The secret carries 190 bits from a CSPRNG, so
//! a fast hash is enough (there is nothing to brute-force as with a password).

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::link::now;

const PREFIX: &str = "shk_";
const ID_LEN: usize = 10;
const SECRET_LEN: usize = 32;
const ALPHABET: [char; 62] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i',
    'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'A', 'B',
    'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U',
    'V', 'W', 'X', 'Y', 'Z',
];

/// An API key as stored: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyRecord {
    /// Public identifier, the middle part of the key.
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// Hex SHA-256 of the secret part.
    pub secret_hash: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A freshly generated key: the full text (shown once) and the record to store.
pub struct NewKey {
    /// `shk_<id>_<secret>`: give it to the client, it cannot be shown again.
    pub key: String,
    /// What goes into the database.
    pub record: ApiKeyRecord,
}

/// Generates a new key called `name`.
pub fn generate(name: &str) -> NewKey {
    let id = nanoid::nanoid!(ID_LEN, &ALPHABET);
    let secret = nanoid::nanoid!(SECRET_LEN, &ALPHABET);
    NewKey {
        key: format!("{PREFIX}{id}_{secret}"),
        record: ApiKeyRecord {
            id,
            name: name.to_owned(),
            secret_hash: hash(&secret),
            created_at: now(),
            revoked_at: None,
        },
    }
}

/// Splits a presented key into id and secret; `None` when it is not shaped like a key.
pub fn split(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.strip_prefix(PREFIX)?.split_once('_')?;
    let ok = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_alphanumeric());
    (ok(id, ID_LEN) && ok(secret, SECRET_LEN)).then_some((id, secret))
}

/// True when `secret` matches the record and the key is not revoked.
pub fn verify(record: &ApiKeyRecord, secret: &str) -> bool {
    let matches = hash(secret).as_bytes().ct_eq(record.secret_hash.as_bytes());
    bool::from(matches) && record.revoked_at.is_none()
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_verifies_and_nothing_else_does() {
        let new = generate("ci");
        let (id, secret) = split(&new.key).expect("well formed");
        assert_eq!(id, new.record.id);
        assert!(verify(&new.record, secret));
        // One character changed, whichever it was (replacing it with a fixed one would leave
        // the secret as it was whenever it already began with that character).
        let other = if secret.starts_with('a') { "b" } else { "a" };
        let tampered = format!("{other}{}", &secret[1..]);
        assert!(!verify(&new.record, &tampered));
        assert!(!new.key.contains(&new.record.secret_hash));
        let mut revoked = new.record.clone();
        revoked.revoked_at = Some(now());
        assert!(!verify(&revoked, secret));
        assert_eq!(split("shk_short_x"), None);
        assert_eq!(split("Bearer something"), None);
    }
}
