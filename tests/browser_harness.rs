//! Self-test of the headless-Chromium helper (`tests/common/browser.rs`): console errors, network
//! requests, evaluation after a click, and full-page screenshots. Skips when there is no Chromium.

#[path = "common/browser.rs"]
mod browser;

use std::path::Path;
use std::time::{Duration, Instant};

use browser::Page;

/// A page whose inline script sorts its 3-row table when the header is clicked.
const SORTABLE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sortable</title>
<style>body { font-family: sans-serif; } th { cursor: pointer; }</style>
</head><body>
<table><thead><tr><th>Name</th></tr></thead>
<tbody><tr><td>c</td></tr><tr><td>a</td></tr><tr><td>b</td></tr></tbody></table>
<script>
document.querySelector('th').addEventListener('click', () => {
  const body = document.querySelector('tbody');
  [...body.rows]
    .sort((x, y) => x.textContent.localeCompare(y.textContent))
    .forEach(row => body.appendChild(row));
});
</script>
</body></html>
"#;

/// A page that logs an error and fetches from a closed local port.
const NOISY: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>noisy</title></head><body>
<script>
console.error('x');
fetch('http://127.0.0.1:9/').finally(() => { window.fetchSettled = true; });
</script>
</body></html>
"#;

/// Writes `html` as `name` in `dir`, returning its path.
fn write(dir: &Path, name: &str, html: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, html).unwrap();
    path
}

/// The cells of the table, top to bottom.
fn order(page: &mut Page) -> serde_json::Value {
    page.eval("[...document.querySelectorAll('tbody td')].map(td => td.textContent)")
}

/// A clean page reports nothing, reacts to a click, and screenshots whole at a phone width.
#[test]
fn clean_page_sorts_on_click_and_screenshots() {
    let dir = tempfile::tempdir().unwrap();
    let html = write(dir.path(), "sortable page.html", SORTABLE);
    let started = Instant::now();
    let Some(mut page) = Page::open(&html, 1280) else {
        eprintln!("skipped: no Chromium at /usr/bin/chromium (and it could not be installed)");
        return;
    };
    eprintln!("opened in {:?}", started.elapsed());
    assert_eq!(page.console_errors(), Vec::<String>::new());
    assert_eq!(page.requests(), vec![page.url().to_string()]);
    assert!(
        page.url().ends_with("/sortable%20page.html"),
        "{}",
        page.url()
    );
    assert_eq!(page.eval("window.innerWidth"), 1280);

    assert_eq!(order(&mut page), serde_json::json!(["c", "a", "b"]));
    page.eval("document.querySelector('th').click()");
    assert_eq!(order(&mut page), serde_json::json!(["a", "b", "c"]));
    assert_eq!(page.console_errors(), Vec::<String>::new());

    // A click whose handler throws is reported by the next console_errors().
    page.eval(
        "document.querySelector('th').addEventListener('click', () => { throw new Error('boom') })",
    );
    page.eval("document.querySelector('th').click()");
    let errors = page.console_errors();
    assert!(
        errors.len() == 1 && errors[0].contains("Error: boom"),
        "{errors:?}"
    );

    page.set_width(400);
    assert_eq!(page.eval("window.innerWidth"), 400);
    let shot = dir.path().join("shots/sortable-400.png");
    page.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(width, 400);
    assert!(height >= 900, "{height}");
    // A page taller than the viewport is captured whole.
    page.eval(
        "document.body.insertAdjacentHTML('beforeend', '<div style=\"height: 2000px\"></div>')",
    );
    page.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(width, 400);
    assert!(height > 2000, "{height}");
    // The viewport is back to 900 px high afterwards.
    assert_eq!(page.eval("window.innerHeight"), 900);
    assert_eq!(page.requests(), vec![page.url().to_string()]);
    eprintln!("done in {:?}; screenshot 400x{height}", started.elapsed());
}

/// What the report pages must never do (log errors, fetch) is what the helper catches.
#[test]
fn console_error_and_fetch_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let html = write(dir.path(), "noisy.html", NOISY);
    let started = Instant::now();
    let Some(mut page) = Page::open(&html, 1280) else {
        eprintln!("skipped: no Chromium at /usr/bin/chromium (and it could not be installed)");
        return;
    };
    page.eval(
        "new Promise(done => { const poll = () => window.fetchSettled ? done() : setTimeout(poll, 10); poll(); })",
    );
    // The failed fetch's own reports (rejection, network log) may trail the promise a little.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut errors = page.console_errors();
    while errors.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        errors = page.console_errors();
    }
    eprintln!("console errors: {errors:#?}");
    eprintln!("requests: {:#?}", page.requests());
    assert!(errors.iter().any(|e| e == "console.error: x"), "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("127.0.0.1:9") || e.contains("Failed to fetch")),
        "{errors:?}"
    );
    let requests = page.requests();
    assert!(requests.contains(&page.url().to_string()), "{requests:?}");
    assert!(
        requests.iter().any(|u| u == "http://127.0.0.1:9/"),
        "{requests:?}"
    );
    eprintln!("done in {:?}", started.elapsed());
}
