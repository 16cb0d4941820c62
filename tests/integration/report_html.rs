//! The HTML report (issue 18): one self-contained page per run that renders in headless
//! Chromium (Debian's `chromium`, installed by scripts/setup.sh) without a console message or a
//! network fetch, shows every finding of the run, and draws each access graph with one node per
//! finding. A screenshot is kept under the target directory. `serve` serves the same page at
//! `/runs/{id}/report`.

use crate::common;

use common::serve::API_TOKEN;
use common::{journal_runs, json, stderr, stdout, World, REPO};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Headless Chromium on `page`: (the DOM after scripts ran, every console message). Network is
/// unreachable (every host maps to nothing), so a fetch would show as a console error.
fn chromium(page: &Path, extra: &[String]) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1400,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is installed (scripts/setup.sh installs Debian's chromium package)");
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    let console = stderr(&out)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (stdout(&out), console)
}

/// The part of `dom` from `<svg ... id="graph-NAME"` to its `</svg>`.
fn svg_of<'a>(dom: &'a str, name: &str) -> &'a str {
    let marker = format!("id=\"graph-{name}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in the page"));
    let start = dom[..at].rfind("<svg").unwrap();
    let end = at + dom[at..].find("</svg>").unwrap();
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_chromium_with_every_finding_and_graph_node() {
    let world = World::new();
    world.seed_demo();
    world.write_config(
        &format!("{REPO}/playbooks"),
        "\n[report]\ncontainment_target = \"1h\"\nclosure_target = \"24h\"\n",
    );
    let out = world.closeout(&["apply", "leaver", "--identity", "E1001", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = journal_runs(&world)[0].id.clone();
    let report = json(&world.closeout(&["report", &run, "--format", "json"]));
    let ids: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() >= 5, "{ids:?}");

    let page = world.dir.path().join("report.html");
    let out = world.closeout(&[
        "report",
        &run,
        "--format",
        "html",
        "-o",
        page.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: the only URL is the SVG namespace name, which is never fetched.
    let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for needle in ["http://", "https://", "<link", " src=", "@import"] {
        assert!(!without_ns.contains(needle), "the page references {needle}");
    }
    // `url(...)` only for the SVG's own markers and clips (`url(#id)`).
    assert!(
        html.match_indices("url(")
            .all(|(at, _)| html[at + 4..].starts_with('#')),
        "the page has a url() to something outside it"
    );
    assert!(
        html.contains("<td class=\"met\" id=\"containment\">")
            && html.contains("within the target of 60.0 min"),
        "containment against its target"
    );
    assert!(
        html.contains("<td class=\"met\" id=\"closure\">"),
        "closure against its target"
    );

    let (dom, console) = chromium(&page, &["--dump-dom".to_string()]);
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(
        dom.contains("data-ready=\"true\""),
        "the page's script did not finish"
    );
    for id in &ids {
        let row = format!(
            "data-finding=\"{}\"",
            closeout::pipeline::report_html::escape(id)
        );
        assert!(
            dom.contains(&format!("<tr class=\"finding state-closed\" {row}"))
                || dom.contains(&format!("<tr class=\"finding state-open\" {row}")),
            "finding {id} has no row"
        );
    }
    assert!(dom.contains(&format!("<span id=\"shown-count\">{}</span>", ids.len())));
    for side in ["before", "after"] {
        let svg = svg_of(&dom, side);
        assert_eq!(
            svg.matches("class=\"node finding\"").count(),
            ids.len(),
            "graph {side}: one node per finding"
        );
        assert_eq!(svg.matches("class=\"node identity\"").count(), 1);
        for id in &ids {
            assert!(svg.contains(&format!(
                "data-finding=\"{}\"",
                closeout::pipeline::report_html::escape(id)
            )));
        }
    }

    // The filters (preselected through the page's #fragment): only the open findings, then
    // one provider; rows and graph nodes outside the filter are hidden or dimmed.
    let open: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| matches!(f["final_state"].as_str(), Some("active" | "unknown")))
        .collect();
    assert!(!open.is_empty() && open.len() < ids.len(), "{open:?}");
    let filtered = world.dir.path().join("filtered.html");
    std::fs::copy(&page, &filtered).unwrap();
    let (dom, console) = chromium(
        Path::new(&format!("{}#state=open", filtered.display())),
        &["--dump-dom".to_string()],
    );
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(dom.contains(&format!("<span id=\"shown-count\">{}</span>", open.len())));
    assert_eq!(
        dom.matches("<tr class=\"finding state-closed hidden\"")
            .count(),
        ids.len() - open.len()
    );
    assert_eq!(
        svg_of(&dom, "before")
            .matches("class=\"node finding dimmed\"")
            .count(),
        ids.len() - open.len()
    );
    let (dom, _) = chromium(
        Path::new(&format!("{}#provider=none-such", filtered.display())),
        &["--dump-dom".to_string()],
    );
    assert!(dom.contains(&format!("<span id=\"shown-count\">{}</span>", ids.len())));

    // The screenshot, kept as a test artifact.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-html");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(format!("{run}.png"));
    let (_, console) = chromium(&page, &[format!("--screenshot={}", shot.display())]);
    assert!(console.is_empty(), "console messages: {console:#?}");
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    println!("HTML report screenshot: {}", shot.display());

    // `serve` serves the same page at /runs/{id}/report, behind the API token.
    let mut config = std::fs::read_to_string(world.config_path()).unwrap();
    config.push_str("\n[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n");
    std::fs::write(world.config_path(), config).unwrap();
    let mut cmd = world.command(&["serve"]);
    cmd.env("CLOSEOUT_API_TOKEN", API_TOKEN);
    let service = common::start_serve(cmd, &world.dir.path().join("serve.log"));
    let url = format!("{}/runs/{run}/report", service.base);
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 401);
    let served = reqwest::Client::new()
        .get(&url)
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert!(served.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // The same page (layout-rs orders the SVG's font classes by a hash map, so not byte for byte).
    let served = served.text().await.unwrap();
    assert!(served.contains(&format!("<body data-run=\"{run}\">")));
    assert_eq!(
        served.matches("class=\"node finding\"").count(),
        2 * ids.len()
    );
    assert_eq!(served.matches("<tr class=\"finding ").count(), ids.len());
    let missing = reqwest::Client::new()
        .get(format!("{}/runs/r-none/report", service.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
