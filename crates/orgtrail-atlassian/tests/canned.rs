//! Answers the simulator does not give (403, other 400 codes, redirects, a repeated cursor,
//! `links.next`-only cursors), from a tiny canned-response HTTP server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orgtrail_atlassian::{
    ApiKey, Client, ClientConfig, ErrorKind, NoHooks, PageRequest, RetryPolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ORG: &str = "2d2790c2-d6c8-49dc-a9fe-3b0a11a28927";

/// Serves `responses` in order (one per connection) and records each request head.
async fn serve(responses: Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        for resp in responses {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            seen2
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf).into_owned());
            sock.write_all(resp.as_bytes()).await.unwrap();
            let _ = sock.shutdown().await;
        }
    });
    (base, seen)
}

fn http(status: &str, headers: &[&str], body: &str) -> String {
    let mut s = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.push_str(body);
    s
}

fn client(base: &str) -> Client {
    Client::new(ClientConfig {
        base_url: base.to_string(),
        rate: None,
        retry: RetryPolicy {
            backoff_base: Duration::from_millis(1),
            rate_limit_floor: Duration::from_millis(1),
            max_wait: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    })
    .unwrap()
}

fn key() -> ApiKey {
    ApiKey::new("canned-key")
}

#[tokio::test]
async fn forbidden_names_admin_and_guard() {
    let (base, seen) = serve(vec![http(
        "403 Forbidden",
        &[],
        r#"{"errors":[{"status":"403","code":"ADMIN-403-3","title":"Not allowed to manage the org"}]}"#,
    )])
    .await;
    let err = client(&base).verify(ORG, &key()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    assert!(err.is_fatal_for_source() && !err.is_retryable());
    let msg = err.to_string();
    assert!(
        msg.contains("not an organization admin") && msg.contains("Atlassian Guard"),
        "{msg}"
    );
    assert!(
        msg.contains("ADMIN-403-3") && msg.contains("Not allowed to manage the org"),
        "{msg}"
    );
    let req = seen.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        req.starts_with(&format!(
            "get /admin/v1/orgs/{ORG}/events-stream?limit=1&sortorder=asc http/1.1"
        )),
        "{req}"
    );
    assert!(req.contains("authorization: bearer canned-key"));
    assert!(req.contains("accept: application/json"));
    assert!(req.contains("user-agent: orgtrail/"));
}

#[tokio::test]
async fn bad_time_is_a_bug_and_redirects_are_not_followed() {
    let (base, seen) = serve(vec![
        http(
            "400 Bad Request",
            &[],
            r#"{"errors":[{"status":"400","code":"ADMIN-400-3","title":"Invalid time"}]}"#,
        ),
        http(
            "302 Found",
            &["Location: https://elsewhere.example/steal"],
            "",
        ),
    ])
    .await;
    let c = client(&base);
    let err = c.verify(ORG, &key()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(err.to_string().contains("orgtrail bug"), "{err}");
    assert!(!err.is_retryable() && !err.is_fatal_for_source());
    let err = c.verify(ORG, &key()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert_eq!(err.http_status(), Some(302));
    assert!(err.to_string().contains("redirect"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn same_cursor_with_events_trips_the_loop_guard() {
    let page = r#"{"data":[{"id":"a","attributes":{"processedAt":"2025-06-02T08:15:43Z"}}],"meta":{"next":"CUR"}}"#;
    let (base, _) = serve(vec![http("200 OK", &[], page)]).await;
    let err = client(&base)
        .fetch_page(ORG, &key(), &PageRequest::Cursor("CUR".into()), &NoHooks)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LoopGuard);
    assert!(err.to_string().contains("same cursor"), "{err}");
}

#[tokio::test]
async fn cursor_from_links_next_is_followed_url_encoded() {
    let p1 = format!(
        r#"{{"data":[{{"id":"a"}}],"meta":{{"next":null}},"links":{{"next":"https://api.atlassian.com/admin/v1/orgs/{ORG}/events-stream?cursor=x%2By%3D%3D"}}}}"#
    );
    let p2 = r#"{"data":[],"links":{},"meta":{"next":null}}"#;
    let (base, seen) = serve(vec![http("200 OK", &[], &p1), http("200 OK", &[], p2)]).await;
    let c = client(&base);
    let mut cycle = c.cycle(
        ORG,
        &key(),
        PageRequest::Start {
            from_ms: Some(1_748_852_143_090),
        },
    );
    let mut n = 0;
    while let Some(p) = cycle.next_page(&NoHooks).await.unwrap() {
        n += p.events.len();
    }
    assert_eq!(n, 1);
    assert_eq!(cycle.last_cursor(), Some("x+y=="));
    let seen = seen.lock().unwrap();
    assert!(
        seen[0].contains("?limit=500&sortOrder=asc&from=1748852143090 "),
        "{}",
        seen[0]
    );
    assert!(
        seen[1].contains("?cursor=x%2By%3D%3D&limit=500 "),
        "{}",
        seen[1]
    );
}

#[tokio::test]
async fn retry_after_then_success_and_server_errors_then_success() {
    let ok = r#"{"data":[{"id":"a"}],"meta":{"next":"n"}}"#;
    let (base, seen) = serve(vec![
        http(
            "429 Too Many Requests",
            &["Retry-After: 0"],
            r#"{"errors":[{"code":"ADMIN-429-1"}]}"#,
        ),
        http("503 Service Unavailable", &[], "<html>down</html>"),
        http("200 OK", &[], &ok[..ok.len() - 5]), // truncated
        http("200 OK", &[], ok),
    ])
    .await;
    let page = client(&base)
        .fetch_page(ORG, &key(), &PageRequest::Cursor("c".into()), &NoHooks)
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.next_cursor.as_deref(), Some("n"));
    // The same request four times: the cursor never moved.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|r| r.contains("?cursor=c&limit=500 ")));
}
