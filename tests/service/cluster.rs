//! Several instances of the real binary on one Postgres, behind a real nginx balancer.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::keys::keys_cli;
use crate::support::{Binary, Nginx, TestDb, client, get_json, wait_for_status};

/// The log tails of every instance, for failure messages.
fn logs(instances: &[Binary]) -> String {
    instances
        .iter()
        .enumerate()
        .map(|(i, b)| format!("--- instance {i}:\n{}", b.log_tail()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn three_instances_behind_nginx_behave_as_one_service() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    db.store().await; // migrate once, before the instances race for it
    let instances: Vec<Binary> = (0..3).map(|_| Binary::start(&db.url, &[])).collect();
    let nginx = Nginx::start(&instances.iter().map(|b| b.addr).collect::<Vec<_>>());
    let client = client();

    // Links created through the balancer all resolve through it.
    let mut creates = JoinSet::new();
    for i in 0..300 {
        let (client, url) = (client.clone(), nginx.url("/api/v1/links"));
        creates.spawn(async move {
            let target = format!("https://example.com/cluster/{i}");
            let r = client
                .post(url)
                .json(&json!({ "url": target }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let body: Value = r.json().await.unwrap();
            (body["code"].as_str().unwrap().to_owned(), target)
        });
    }
    let links = creates.join_all().await;
    let mut lookups = JoinSet::new();
    for chunk in links.chunks(25) {
        let (client, chunk, nginx_url) = (client.clone(), chunk.to_vec(), nginx.url(""));
        lookups.spawn(async move {
            let mut misses = 0;
            for _ in 0..10 {
                for (code, target) in &chunk {
                    let r = client
                        .get(format!("{nginx_url}/{code}"))
                        .send()
                        .await
                        .unwrap();
                    if r.status() != 302 || r.headers()["location"] != target.as_str() {
                        misses += 1;
                    }
                }
            }
            misses
        });
    }
    let misses: usize = lookups.join_all().await.into_iter().sum();
    assert_eq!(
        misses,
        0,
        "3000 lookups through the balancer\n{}",
        logs(&instances)
    );

    // The same alias through different instances at once: the database decides, one wins.
    let mut racers = JoinSet::new();
    for i in 0..30 {
        let url = instances[i % 3].url("/api/v1/links");
        let client = client.clone();
        racers.spawn(async move {
            let body =
                json!({ "url": format!("https://example.com/race/{i}"), "slug": "contested" });
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let statuses = racers.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}\n{}",
        logs(&instances)
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        29,
        "{statuses:?}\n{}",
        logs(&instances)
    );

    // Clicks through every instance add up.
    let (code, _) = &links[0];
    for i in 0..30 {
        let r = client
            .get(instances[i % 3].url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
    }
    let mut clicks = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shown: Value = get_json(&client, &nginx.url(&format!("/api/v1/links/{code}"))).await;
        clicks = shown["clicks"].clone();
        if clicks == 30 + 10 {
            break;
        }
    }
    assert_eq!(
        clicks,
        40,
        "10 lookups above plus 30 clicks\n{}",
        logs(&instances)
    );

    // A deleted link stops resolving on every instance (all have it cached) at once.
    let (status, key) = keys_cli(&db, &["create", "--name", "cluster"]);
    assert_eq!(status, 0);
    let (victim, _) = &links[1];
    for b in &instances {
        assert_eq!(
            client
                .get(b.url(&format!("/{victim}")))
                .send()
                .await
                .unwrap()
                .status(),
            302
        );
    }
    let r = client
        .delete(instances[0].url(&format!("/api/v1/links/{victim}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", logs(&instances));
    let deleted = Instant::now();
    for b in &instances {
        let path = format!("/{victim}");
        wait_for_status(&client, b, &path, 410, Duration::from_secs(2)).await;
    }
    eprintln!(
        "deletion seen by all 3 instances after {:?}",
        deleted.elapsed()
    );
    // An alias looked up (404, remembered as missing) on every instance, then created through
    // one: every instance resolves it at once, not after the negative-cache TTL.
    for b in &instances {
        let r = client.get(b.url("/later-alias")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{}", logs(&instances));
    }
    let r = client
        .post(instances[2].url("/api/v1/links"))
        .json(&json!({ "url": "https://example.com/later", "slug": "later-alias" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", logs(&instances));
    let created = Instant::now();
    for b in &instances {
        wait_for_status(&client, b, "/later-alias", 302, Duration::from_secs(1)).await;
    }
    eprintln!(
        "new alias resolved by all 3 instances after {:?}",
        created.elapsed()
    );

    drop(nginx);
    for (i, mut b) in instances.into_iter().enumerate() {
        b.sigterm();
        let status = b.wait_exit(Duration::from_secs(30));
        assert!(
            status.success(),
            "instance {i} exited with {status}; log tail:\n{}",
            b.log_tail()
        );
    }
}
