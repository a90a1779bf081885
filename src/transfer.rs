//! Moving links between databases and files: `copy`, `export`, `import`.
//!
//! Everything streams in batches (a page of links read, one transaction written), so no
//! command needs the data to fit in memory, and every write is idempotent: a link is inserted
//! if absent, caught up if present (clicks, disables), reported if its code holds another
//! link. An interrupted run is completed by running it again, and a run after the source
//! kept serving brings the target up to date.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};

use thiserror::Error;

use crate::config::{CopyArgs, ExportArgs, ImportArgs};
use crate::link::{Link, ShortCode};
use crate::progress::Progress;
use crate::sorting::Runs;
use crate::store::{self, AnyStore, ImportOutcome, OpenMode, Store, StoreError, Totals};

/// Why a transfer did not complete.
#[derive(Debug, Error)]
pub enum TransferError {
    /// A database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// One of the databases of a copy could not be opened.
    #[error("cannot open the {which} database: {source}")]
    Open {
        /// `source` or `target`.
        which: &'static str,
        /// Why.
        source: StoreError,
    },
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Some links were not written; the message says which and why.
    #[error("{0}")]
    Incomplete(String),
    /// The source was written to while it was copied: what changed after its page was read
    /// may be missing from the target.
    #[error(
        "the source changed during the copy ({0}): changes made after their page was read may \
         be missing from the target; run the copy again (once writes have stopped it completes \
         and verifies)"
    )]
    SourceChanged(String),
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
/// The source is only read; it must exist and have the current schema.
pub async fn copy(args: &CopyArgs) -> Result<(), TransferError> {
    let options = args.pool.pool_options().for_bulk();
    let connect_timeout = args.pool.db_connect_timeout;
    let reading = options.clone().opening(OpenMode::ReadOnly);
    let opened = |which| move |source| TransferError::Open { which, source };
    let source = crate::open_store(&args.from, &reading, connect_timeout)
        .await
        .map_err(opened("source"))?;
    let target = crate::open_store(&args.to, &options, connect_timeout)
        .await
        .map_err(opened("target"))?;
    let at_start = source.totals().await?;
    let before = target.count().await?;
    eprintln!(
        "copying {} links from {} ({}) to {} ({}, {before} links already)",
        at_start.links,
        store::describe_url(&args.from),
        source.backend(),
        store::describe_url(&args.to),
        target.backend(),
    );

    let mut progress = Progress::new("links", Some(at_start.links));
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

    let at_end = source.totals().await?;
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
    if at_end != at_start || read != at_start.links {
        return Err(TransferError::SourceChanged(changes(
            at_start, read, at_end,
        )));
    }
    eprintln!("verified: every link of the source is in the target with its clicks and state");
    Ok(())
}

/// What changed in a source between the start and the end of a copy, for people.
fn changes(start: Totals, read: u64, end: Totals) -> String {
    let mut changed = Vec::new();
    if end.links != start.links || read != start.links {
        changed.push(format!(
            "{} links at the start, {read} read, {} at the end",
            start.links, end.links
        ));
    }
    if end.clicks != start.clicks {
        changed.push(format!("clicks {} -> {}", start.clicks, end.clicks));
    }
    if end.disabled != start.disabled {
        changed.push(format!(
            "disabled links {} -> {}",
            start.disabled, end.disabled
        ));
    }
    changed.join("; ")
}

fn report(outcome: &ImportOutcome) -> Result<(), TransferError> {
    eprintln!(
        "{} links written, {} updated (clicks or disabled state caught up), {} already up to \
         date, {} conflicts",
        outcome.inserted,
        outcome.updated,
        outcome.unchanged,
        outcome.conflicts.len()
    );
    if outcome.conflicts.is_empty() {
        return Ok(());
    }
    Err(TransferError::Incomplete(format!(
        "{} links were not written because the target already has a different link (another \
         URL or creation time) under the same code, left unchanged: {}",
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
    let batch_size = args.batch_size as usize;
    let mut read = Progress::new("lines read", None);
    let mut outcome = ImportOutcome::default();
    let mut invalid = Vec::new();
    let mut batch = Vec::with_capacity(batch_size);
    // Links in code order (as `export` writes them) go straight in. From the first one out
    // of order on, the rest is sorted first ([`crate::sorting`]), then written in order.
    let mut last_code = String::new();
    let mut rest: Option<Runs> = None;
    for (number, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let link = match parse_line(&line) {
            Ok(link) => link,
            Err(why) => {
                invalid.push(format!("line {}: {why}", number + 1));
                continue;
            }
        };
        read.advance(1);
        if rest.is_none() && link.code < last_code {
            rest = Some(Runs::new(RUN_LINKS));
        }
        match &mut rest {
            Some(runs) => runs.push(link)?,
            None => {
                last_code.clone_from(&link.code);
                batch.push(link);
                if batch.len() == batch_size {
                    import_batch(store, &mut batch, &mut outcome).await?;
                }
            }
        }
    }
    read.finish();
    let left = batch.len() as u64 + rest.as_ref().map_or(0, Runs::len);
    let mut written = Progress::new("links imported", Some(left));
    written.advance(import_batch(store, &mut batch, &mut outcome).await?);
    if let Some(runs) = rest {
        for link in runs.into_sorted()? {
            batch.push(link?);
            if batch.len() == batch_size {
                written.advance(import_batch(store, &mut batch, &mut outcome).await?);
            }
        }
        written.advance(import_batch(store, &mut batch, &mut outcome).await?);
    }
    written.finish();
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

/// Links held in memory per sorted run of an import: about 40 MiB.
const RUN_LINKS: usize = 200_000;

/// Imports `batch` (if it holds anything) and empties it, adding the result to `outcome`;
/// the number of links it held.
async fn import_batch(
    store: &AnyStore,
    batch: &mut Vec<Link>,
    outcome: &mut ImportOutcome,
) -> Result<u64, TransferError> {
    if batch.is_empty() {
        return Ok(0);
    }
    outcome.absorb(store.import(batch).await?);
    let n = batch.len() as u64;
    batch.clear();
    Ok(n)
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

    #[test]
    fn changes_of_a_source_are_named() {
        let start = Totals {
            links: 10,
            clicks: 100,
            disabled: 1,
        };
        assert_eq!(changes(start, 10, start), "");
        let end = Totals {
            clicks: 120,
            disabled: 2,
            ..start
        };
        assert_eq!(
            changes(start, 10, end),
            "clicks 100 -> 120; disabled links 1 -> 2"
        );
        let grown = Totals { links: 12, ..start };
        assert_eq!(
            changes(start, 11, grown),
            "10 links at the start, 11 read, 12 at the end"
        );
    }
}
