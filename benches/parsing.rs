//! Micro-benchmarks of the per-request domain work: generating codes (every create) and
//! parsing codes and target URLs (every redirect and every create).
//!
//! `cargo bench --bench parsing` (add `-- --quick` for a short run, or a name filter such as
//! `-- url`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_main};
use shortener::app::Settings;
use shortener::link::{ShortCode, TargetUrl, UrlPolicy};
use url::Url;

/// The policy the service builds from its default settings (see `Settings::url_policy`).
fn default_policy() -> UrlPolicy {
    let settings = Settings::new(Url::parse("http://127.0.0.1:8080/").expect("a valid URL"));
    UrlPolicy {
        max_len: settings.max_url_length,
        own_url: settings.public_url,
    }
}

fn codes(c: &mut Criterion) {
    let mut group = c.benchmark_group("code");
    for len in [7, 12] {
        group.bench_with_input(BenchmarkId::new("generate", len), &len, |b, &len| {
            b.iter(|| ShortCode::generate(black_box(len)));
        });
    }
    group.bench_function("generate_unreserved/7", |b| {
        b.iter(|| ShortCode::generate_unreserved(black_box(7)));
    });
    let inputs = [
        ("generated", "xBZye22"),
        ("alias", "spring-sale_2025"),
        ("invalid", "not a code!"),
        ("longest", &"a".repeat(64)),
    ];
    for (name, input) in inputs {
        group.bench_with_input(BenchmarkId::new("parse", name), input, |b, input| {
            b.iter(|| ShortCode::parse(black_box(input)));
        });
    }
    group.bench_function("parse_alias/valid", |b| {
        b.iter(|| ShortCode::parse_alias(black_box("spring-sale_2025")));
    });
    group.finish();
}

fn urls(c: &mut Criterion) {
    let policy = default_policy();
    let long_path = format!("https://example.com/{}", "segment/".repeat(200));
    let inputs = [
        ("short", "https://example.com/"),
        (
            "typical",
            "https://www.example.com/articles/2024/03/a-long-title-of-an-article?utm_source=news&utm_medium=email",
        ),
        ("idn", "http://bücher.example/straße?q=ä"),
        ("long_path", long_path.as_str()),
        ("rejected_scheme", "javascript:alert(1)"),
        ("rejected_self", "http://127.0.0.1:8080/abc"),
        ("rejected_malformed", "example.com/no-scheme"),
    ];
    let mut group = c.benchmark_group("url");
    for (name, input) in inputs {
        group.bench_with_input(BenchmarkId::new("parse", name), input, |b, input| {
            b.iter(|| TargetUrl::parse(black_box(input), &policy));
        });
    }
    group.finish();
}

mod harness {
    // `criterion_group!` generates an undocumented `pub fn`.
    #![allow(missing_docs)]
    use super::{codes, urls};
    criterion::criterion_group!(benches, codes, urls);
}

criterion_main!(harness::benches);
