//! An external sort of links by code, for `import` of a file that is not in code order.
//!
//! Links inserted in code order fill each index page once; in random order, once the table
//! outgrows the page cache, nearly every link rewrites a page of its own (10 million links
//! took 7.5 minutes so). Links are sorted in runs that fit in memory, each run spilled to an
//! anonymous temporary file (in `TMPDIR`; about the size of the input in all), and the runs
//! merged. The sort is stable: links with the same code come out in input order, so an
//! import reports the same conflicts whatever the order of the file.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};

use crate::link::Link;

/// Links sorted by code, gathered one at a time.
pub struct Runs {
    /// Links of the run being gathered.
    current: Vec<Link>,
    /// Most links held in memory.
    run_len: usize,
    /// Runs spilled so far, each sorted, rewound when merged.
    spilled: Vec<File>,
    /// Links pushed in all.
    len: u64,
}

impl Runs {
    /// Runs of at most `run_len` links in memory.
    pub fn new(run_len: usize) -> Self {
        Self {
            current: Vec::new(),
            run_len: run_len.max(1),
            spilled: Vec::new(),
            len: 0,
        }
    }

    /// Adds a link, spilling a full run to disk.
    pub fn push(&mut self, link: Link) -> io::Result<()> {
        self.current.push(link);
        self.len += 1;
        if self.current.len() >= self.run_len {
            self.spill()?;
        }
        Ok(())
    }

    /// How many links were pushed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when no link was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn spill(&mut self) -> io::Result<()> {
        self.current.sort_by(|a, b| a.code.cmp(&b.code));
        let mut out = BufWriter::new(tempfile::tempfile()?);
        for link in self.current.drain(..) {
            serde_json::to_writer(&mut out, &link)?;
            out.write_all(b"\n")?;
        }
        let mut file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.rewind()?;
        self.spilled.push(file);
        Ok(())
    }

    /// Every link pushed, in code order.
    pub fn into_sorted(mut self) -> io::Result<Sorted> {
        if self.spilled.is_empty() {
            // Everything fit in memory: no file at all.
            self.current.sort_by(|a, b| a.code.cmp(&b.code));
            return Ok(Sorted::InMemory(self.current.into_iter()));
        }
        if !self.current.is_empty() {
            self.spill()?;
        }
        let mut readers: Vec<_> = self
            .spilled
            .into_iter()
            .map(|file| BufReader::new(file).lines())
            .collect();
        let mut heads = BinaryHeap::with_capacity(readers.len());
        for (run, reader) in readers.iter_mut().enumerate() {
            if let Some(link) = next_link(reader)? {
                heads.push(Head { link, run });
            }
        }
        Ok(Sorted::Merged { readers, heads })
    }
}

/// The links of [`Runs`] in code order.
pub enum Sorted {
    /// One run, never spilled.
    InMemory(std::vec::IntoIter<Link>),
    /// Spilled runs, merged.
    Merged {
        /// The lines of each run.
        readers: Vec<io::Lines<BufReader<File>>>,
        /// The next link of each run not yet exhausted, least first.
        heads: BinaryHeap<Head>,
    },
}

impl Iterator for Sorted {
    type Item = io::Result<Link>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::InMemory(links) => links.next().map(Ok),
            Self::Merged { readers, heads } => {
                let Head { link, run } = heads.pop()?;
                match next_link(&mut readers[run]) {
                    Ok(Some(next)) => heads.push(Head { link: next, run }),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
                Some(Ok(link))
            }
        }
    }
}

fn next_link(lines: &mut io::Lines<BufReader<File>>) -> io::Result<Option<Link>> {
    match lines.next() {
        None => Ok(None),
        Some(line) => Ok(Some(serde_json::from_str(&line?)?)),
    }
}

/// The next link of one run, ordered for a min-heap by code, then by run (the earlier run
/// holds what came earlier in the input: the merge is stable).
pub struct Head {
    link: Link,
    run: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.link.code.as_str(), other.run).cmp(&(self.link.code.as_str(), self.run))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(run_len: usize, codes: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut runs = Runs::new(run_len);
        for (code, url) in codes {
            runs.push(Link::unchecked(code, url)).unwrap();
        }
        assert_eq!(runs.len(), codes.len() as u64);
        runs.into_sorted()
            .unwrap()
            .map(|l| l.map(|l| (l.code, l.url)).unwrap())
            .collect()
    }

    #[test]
    fn runs_merge_into_code_order_keeping_input_order_for_equal_codes() {
        let input = [
            ("m", "1"),
            ("b", "2"),
            ("z", "3"),
            ("b", "4"),
            ("a", "5"),
            ("m", "6"),
            ("Z", "7"),
            ("b", "8"),
        ];
        let expected: Vec<(String, String)> = [
            ("Z", "7"),
            ("a", "5"),
            ("b", "2"),
            ("b", "4"),
            ("b", "8"),
            ("m", "1"),
            ("m", "6"),
            ("z", "3"),
        ]
        .iter()
        .map(|(c, u)| ((*c).to_owned(), (*u).to_owned()))
        .collect();
        // In memory, with runs of every size, and one link per run.
        for run_len in [100, 3, 2, 1] {
            assert_eq!(sorted(run_len, &input), expected, "runs of {run_len}");
        }
        assert!(sorted(2, &[]).is_empty());
    }
}
