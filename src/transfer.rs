//! Moving links between databases and files: `copy`, `export`, `import`.
//!
//! Everything streams in batches (a page of links read, one transaction written), so no
//! command needs the data to fit in memory, and every write is an idempotent "insert if
//! absent": an interrupted run is completed by running it again.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};

use thiserror::Error;

use crate::config::{CopyArgs, ExportArgs, ImportArgs};
use crate::link::{Link, ShortCode};
use crate::progress::Progress;
use crate::store::{self, AnyStore, ImportOutcome, PoolOptions, Store, StoreError};

/// Why a transfer did not complete.
#[derive(Debug, Error)]
pub enum TransferError {
    /// A database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Some links were not written; the message says which and why.
    #[error("{0}")]
    Incomplete(String),
}

/// Most problem codes or lines listed in a message; the rest are counted.
const LIST_AT_MOST: usize = 20;

fn listing(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(LIST_AT_MOST)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > LIST_AT_MOST {
        text.push_str(&format!(" and {} more", items.len() - LIST_AT_MOST));
    }
    text
}

/// `shortener copy`: every link of `--from` into `--to`, then a check that it all arrived.
pub async fn copy(args: &CopyArgs) -> Result<(), TransferError> {
    let options = PoolOptions::default().for_bulk();
    let source = crate::open_store(&args.from, &options, options.acquire_timeout).await?;
    let target = crate::open_store(&args.to, &options, options.acquire_timeout).await?;
    let total = source.count().await?;
    let before = target.count().await?;
    eprintln!(
        "copying {total} links from {} ({}) to {} ({}, {before} links already)",
        store::redact_url(&args.from),
        source.backend(),
        store::redact_url(&args.to),
        target.backend(),
    );

    let mut progress = Progress::new("links", Some(total));
    let mut outcome = ImportOutcome::default();
    let mut read = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = source.page(after.as_deref(), args.batch_size).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.code.clone());
        read += page.len() as u64;
        outcome.absorb(target.import(&page).await?);
        progress.advance(page.len() as u64);
    }
    progress.finish();

    let after_count = target.count().await?;
    source.close().await;
    target.close().await;
    report(&outcome)?;
    if after_count != before + outcome.inserted {
        return Err(TransferError::Incomplete(format!(
            "verification failed: the target holds {after_count} links, expected {} \
             ({before} before + {} copied); was it written to during the copy?",
            before + outcome.inserted,
            outcome.inserted
        )));
    }
    if read != total {
        eprintln!(
            "note: the source changed during the copy ({total} links counted, {read} read); \
             run the copy again once writes have stopped"
        );
    }
    eprintln!("verified: every link of the source is in the target with the same content");
    Ok(())
}

fn report(outcome: &ImportOutcome) -> Result<(), TransferError> {
    eprintln!(
        "{} links written, {} already present and identical, {} conflicts",
        outcome.inserted,
        outcome.unchanged,
        outcome.conflicts.len()
    );
    if outcome.conflicts.is_empty() {
        return Ok(());
    }
    Err(TransferError::Incomplete(format!(
        "{} links were not written because the target already has a different link under the \
         same code (left unchanged): {}",
        outcome.conflicts.len(),
        listing(&outcome.conflicts)
    )))
}

/// `shortener export`: JSON Lines, in code order.
pub async fn export(args: &ExportArgs, store: &AnyStore) -> Result<(), TransferError> {
    let total = store.count().await?;
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(File::create(path)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    let mut progress = Progress::new("links exported", Some(total));
    let mut after: Option<String> = None;
    loop {
        let page = store.page(after.as_deref(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.code.clone());
        for link in &page {
            serde_json::to_writer(&mut out, link).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
        }
        progress.advance(page.len() as u64);
    }
    out.flush()?;
    progress.finish();
    Ok(())
}

/// `shortener import`: JSON Lines as written by `export`. Bad lines are reported with their
/// line numbers and skipped; the command then exits non-zero.
pub async fn import(args: &ImportArgs, store: &AnyStore) -> Result<(), TransferError> {
    let input: Box<dyn BufRead> = match &args.input {
        Some(path) => Box::new(BufReader::new(File::open(path)?)),
        None => Box::new(BufReader::new(std::io::stdin().lock())),
    };
    let mut progress = Progress::new("lines imported", None);
    let mut outcome = ImportOutcome::default();
    let mut invalid = Vec::new();
    let mut batch = Vec::with_capacity(args.batch_size as usize);
    for (number, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line) {
            Ok(link) => batch.push(link),
            Err(why) => invalid.push(format!("line {}: {why}", number + 1)),
        }
        if batch.len() == args.batch_size as usize {
            outcome.absorb(store.import(&batch).await?);
            progress.advance(batch.len() as u64);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        outcome.absorb(store.import(&batch).await?);
        progress.advance(batch.len() as u64);
    }
    progress.finish();
    let conflicts = report(&outcome);
    if !invalid.is_empty() {
        return Err(TransferError::Incomplete(format!(
            "{} lines could not be imported: {}",
            invalid.len(),
            listing(&invalid)
        )));
    }
    conflicts
}

/// One exported link, checked: a valid code, an http(s) URL, a non-negative click count.
fn parse_line(line: &str) -> Result<Link, String> {
    let link: Link = serde_json::from_str(line).map_err(|e| format!("not a link: {e}"))?;
    if ShortCode::parse(&link.code).is_none() {
        return Err(format!("invalid code {:?}", link.code));
    }
    match url::Url::parse(&link.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
        _ => return Err(format!("invalid URL for code {}", link.code)),
    }
    if link.clicks < 0 {
        return Err(format!("negative click count for code {}", link.code));
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked() {
        let good = r#"{"code":"abc","url":"https://example.com/","created_at":"2024-01-02T03:04:05.678Z","clicks":3}"#;
        assert_eq!(parse_line(good).unwrap().clicks, 3);
        assert!(parse_line("{").is_err());
        assert!(parse_line(&good.replace("https://example.com/", "javascript:alert(1)")).is_err());
        assert!(parse_line(&good.replace("\"abc\"", "\"a b\"")).is_err());
        assert!(parse_line(&good.replace("3}", "-3}")).is_err());
    }
}
