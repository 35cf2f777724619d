//! The admin listener: separate from the proxy's listeners, answering health
//! checks; what it does not serve yet is a clear 404.

mod support;

use support::*;

#[tokio::test]
async fn healthz_answers_on_the_admin_listener_only() {
    let b = backend("legacy").await;
    let proxy = start(&format!(
        "[server]\nadmin = \"127.0.0.1:0\"\n{}",
        default_to(&b.url())
    ))
    .await;
    let admin = proxy.admin.expect("admin listener");
    let a = get(&format!("http://{admin}/healthz")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "ok\n");
    let a = get(&format!("http://{admin}/admin/nothing")).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    // The proxy's own listener forwards /healthz like any other path.
    let a = get(&proxy.url("/healthz")).await;
    assert_eq!(a.header("x-served-by"), Some("legacy"));
}
