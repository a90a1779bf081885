//! Destination blocklist: hostnames and domain suffixes that links may not point to, read
//! from a file and reloaded on SIGHUP.
//!
//! File format: one entry a line; `#` starts a comment. `example.com` blocks `example.com` and
//! every subdomain (`www.example.com`), never `badexample.com`. International names may be
//! written in Unicode or punycode.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The blocked domains, swappable at run time.
#[derive(Debug, Default)]
pub struct Blocklist {
    path: Option<PathBuf>,
    domains: RwLock<Arc<HashSet<String>>>,
}

/// Why a blocklist file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BlocklistError {
    /// The file could not be read.
    #[error("cannot read the blocklist {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a host name.
    #[error("blocklist {path}, line {line}: {entry:?} is not a host name")]
    Entry {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was there.
        entry: String,
    },
}

impl Blocklist {
    /// Loads the file at `path`; with `None`, an empty list that blocks nothing.
    pub fn load(path: Option<&Path>) -> Result<Self, BlocklistError> {
        let list = Self {
            path: path.map(Path::to_path_buf),
            domains: RwLock::default(),
        };
        list.reload()?;
        Ok(list)
    }

    /// Reads the file again. On error the previous list stays in force.
    pub fn reload(&self) -> Result<usize, BlocklistError> {
        let Some(path) = &self.path else {
            return Ok(0);
        };
        let text = std::fs::read_to_string(path).map_err(|source| BlocklistError::Read {
            path: path.clone(),
            source,
        })?;
        let mut domains = HashSet::new();
        for (number, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            match url::Host::parse(entry.trim_end_matches('.')) {
                Ok(url::Host::Domain(d)) => domains.insert(d.to_ascii_lowercase()),
                Ok(other) => domains.insert(other.to_string()),
                Err(_) => {
                    return Err(BlocklistError::Entry {
                        path: path.clone(),
                        line: number + 1,
                        entry: entry.to_owned(),
                    });
                }
            };
        }
        let count = domains.len();
        *self.domains.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(domains);
        Ok(count)
    }

    /// The blocklist entry that covers `host`, if any.
    pub fn matching(&self, host: &str) -> Option<String> {
        let domains = Arc::clone(&self.domains.read().unwrap_or_else(|e| e.into_inner()));
        if domains.is_empty() {
            return None;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = host.as_str();
        loop {
            if domains.contains(rest) {
                return Some(rest.to_owned());
            }
            rest = rest.split_once('.')?.1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_block_a_domain_and_its_subdomains_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("blocklist.txt");
        std::fs::write(&file, "# phishing\nevil.example\nbücher.example # idn\n\n").unwrap();
        let list = Blocklist::load(Some(&file)).unwrap();
        assert_eq!(
            list.matching("evil.example").as_deref(),
            Some("evil.example")
        );
        assert_eq!(
            list.matching("Login.EVIL.example.").as_deref(),
            Some("evil.example")
        );
        assert_eq!(list.matching("notevil.example"), None);
        assert_eq!(
            list.matching("xn--bcher-kva.example").as_deref(),
            Some("xn--bcher-kva.example")
        );

        std::fs::write(&file, "other.example\n").unwrap();
        assert_eq!(list.reload().unwrap(), 1);
        assert_eq!(list.matching("evil.example"), None);

        std::fs::write(&file, "not a host!\n").unwrap();
        assert!(list.reload().is_err());
        assert!(
            list.matching("other.example").is_some(),
            "a bad file keeps the old list"
        );
        assert!(
            Blocklist::load(None)
                .unwrap()
                .matching("anything.example")
                .is_none()
        );
    }
}
