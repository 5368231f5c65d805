//! The dashboards and alerts in `deploy/observability/`, tried with the real things:
//! `promtool check rules` and `promtool test rules`, every metric they name and every
//! series the rule tests feed checked against a real trustgate's `/metrics`, and a real
//! Prometheus server scraping a real trustgate on loopback, loading the rules and
//! answering the dashboard's queries and one rule's expression through its HTTP API.
//!
//! Needs Debian's `prometheus` package (prometheus and promtool). Without it the test
//! skips loudly, unless `TRUSTGATE_REQUIRE_INTEROP=1` (CI), which makes it fail.
use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

fn observability(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/observability")
        .join(file)
}

/// `true` if the Prometheus tools are here; otherwise skips (or fails under CI).
fn have_prometheus() -> bool {
    ["promtool", "prometheus"]
        .iter()
        .all(|tool| have_tool(tool, &["--version"], "apt-get install prometheus"))
}

/// One exposed series: name and labels.
type Series = (String, BTreeMap<String, String>);

/// The series of a Prometheus text exposition (values and comments left out).
fn parse_exposition(text: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => continue,
        };
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let body = &body[..body.find('}').expect("closing brace")];
            for pair in split_labels(body) {
                let (k, v) = pair.split_once('=').expect("label=value");
                labels.insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
            }
        }
        out.push((name.to_owned(), labels));
    }
    out
}

/// `a="x",b="y, z"` → [`a="x"`, `b="y, z"`] (commas inside quotes kept).
fn split_labels(body: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in body.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < body.len() {
        parts.push(&body[start..]);
    }
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Every `trustgate_*` metric name an expression mentions, with histogram suffixes
/// reduced to the family's name.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("trustgate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// The expressions of the alert rules (`expr:` scalars, folded `|` blocks included).
fn rule_expressions(yaml: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value == "|" {
            let mut block = String::new();
            while let Some(next) = lines.peek() {
                if next.trim().is_empty() || next.starts_with("          ") {
                    block.push_str(next.trim());
                    block.push('\n');
                    lines.next();
                } else {
                    break;
                }
            }
            exprs.push(block);
        } else {
            exprs.push(value.to_owned());
        }
    }
    exprs
}

/// Every outcome trustgate counts is named where a reader of the dashboard looks for it:
/// the panel's description, the observability README and the main README's metric table
/// (`Outcome::ALL` is the declaration the series are made from).
#[test]
fn every_outcome_is_documented_where_it_is_shown() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard = std::fs::read_to_string(observability("trustgate-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let description = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["description"].as_str())
        .find(|d| d.contains("outcome ("))
        .expect("a panel by outcome")
        .to_owned();
    let readme = std::fs::read_to_string(observability("README.md")).unwrap();
    let main = std::fs::read_to_string(root.join("README.md")).unwrap();
    let table = main
        .lines()
        .find(|l| l.starts_with("| `trustgate_requests_total`"))
        .expect("the metric table's row")
        .to_owned();
    let words = |text: &str| -> std::collections::BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .map(str::to_owned)
            .collect()
    };
    for (place, text) in [
        ("dashboard", description),
        ("deploy/observability/README.md", readme),
        ("README.md", table),
    ] {
        let said = words(&text);
        for outcome in trustgate::metrics::Outcome::ALL {
            assert!(
                said.contains(outcome.as_str()),
                "{place} does not name outcome {outcome}"
            );
        }
    }
    // And every reloadable material, where reloads are shown.
    let readme = std::fs::read_to_string(observability("README.md")).unwrap();
    let panel = readme
        .lines()
        .find(|l| l.contains("*Reloads by material"))
        .expect("the reloads panel")
        .to_owned();
    let row = main
        .lines()
        .find(|l| l.starts_with("| `trustgate_reloads_total`"))
        .expect("the reloads row")
        .to_owned();
    for (place, text) in [("dashboard README", panel), ("README.md", row)] {
        for material in trustgate::metrics::Material::ALL {
            assert!(
                words(&text).contains(material.label()),
                "{place} does not name {material}"
            );
        }
    }
}

/// The queries of the dashboard's panels and template variables, with Grafana's
/// variables given values Prometheus accepts.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(observability("trustgate-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 15, "the dashboard has its panels");
    exprs
        .into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$job", ".*")
                .replace("$instance", ".*")
        })
        .collect()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real trustgate with something to show: a trusted caller, a key file that does not
/// parse, a key URL that cannot be fetched, one good call, refusals and an outbound
/// call to a closed port.
async fn busy_trustgate(keys: &Keys, redis: &support::redis::Redis) -> (Running, String) {
    let orders = keys.make("orders");
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("trusted", &[&orders]);
    std::fs::write(trusted.join("broken.pub"), "not a key\n").unwrap();
    std::fs::write(trusted.join("search.url"), "http://127.0.0.1:1/jwks.json\n").unwrap();
    let password = keys.path().join("redis-password");
    std::fs::write(&password, &redis.password).unwrap();
    let app = spawn_app().await;
    // A fleet (a real Redis), people's tokens and transaction tokens: every series the
    // dashboard's fleet and people panels read is on /metrics.
    let text = Conf::new("billing", &billing.private)
        .inbound(&trusted, app)
        .set("trust", "allow_http_fetch = true")
        .set("trust", "fetch_timeout = \"1s\"")
        .set("trust", "transaction_token_issuers = [\"orders\"]")
        .route("elsewhere", "http://127.0.0.1:1")
        .extra(&format!(
            "[inbound.users]\n[fleet]\nredis = \"{}\"\npassword_file = \"{}\"\n\
             [callers.orders]\nrate_limit = \"1000/s\"\nrate_limit_scope = \"fleet\"\n",
            redis.url,
            password.display()
        ))
        .toml();
    let running = run_binary(&text, keys.path());
    let token = format!("Bearer {}", sign_as(&orders, "orders", "billing"));
    let ok = get(
        format!("http://{}/x", running.inbound),
        &[("authorization", &token)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let missing = get(format!("http://{}/x", running.inbound), &[]).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let wrong = format!("Bearer {}", sign_as(&orders, "orders", "someone-else"));
    let refused = get(
        format!("http://{}/x", running.inbound),
        &[("authorization", &wrong)],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    for (name, value) in [
        ("x-user-token", "not-a-token"),
        ("txn-token", "not.a.token"),
    ] {
        let refused = get(
            format!("http://{}/x", running.inbound),
            &[("authorization", &token), (name, value)],
        )
        .await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    }
    let out = get(
        format!("http://{}/x", running.outbound),
        &[("host", "elsewhere")],
    )
    .await;
    assert_eq!(out.status, StatusCode::BAD_GATEWAY);
    // The key URL's first attempt has been made once the sidecar is ready.
    let admin = running.admin.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = get(format!("http://{admin}/metrics"), &[]).await.body;
        if m.contains("trustgate_trust_fetch_errors_total{") && m.contains("trustgate_fleet_up 1") {
            break m;
        }
        assert!(Instant::now() < deadline, "no fetch attempt counted:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (running, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_work_with_promtool_and_a_live_prometheus() {
    if !have_prometheus() || !support::redis::available() {
        return;
    }
    let rules = observability("trustgate-alerts.yaml");
    let dir = observability("");

    // promtool: the rules parse, and their unit tests pass.
    assert_runs(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(&rules),
    );
    assert_runs(
        Command::new("promtool")
            .args(["test", "rules", "trustgate-alerts.test.yaml"])
            .current_dir(&dir),
    );

    // A real trustgate's metrics.
    let keys = Keys::new();
    let redis = support::redis::Redis::start("observed");
    let (running, metrics) = busy_trustgate(&keys, &redis).await;
    let exposed = parse_exposition(&metrics);
    let families: BTreeSet<&str> = exposed.iter().map(|(n, _)| family(n)).collect();

    // Every metric the rules and the dashboard name is one trustgate exposes.
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let rule_exprs = rule_expressions(&rules_text);
    assert_eq!(rule_exprs.len(), 10, "{rule_exprs:?}");
    let queries = dashboard_queries();
    for expr in rule_exprs.iter().chain(&queries) {
        for name in metric_names(expr) {
            assert!(
                families.contains(family(&name)),
                "{name} (in `{expr}`) is not on a real trustgate's /metrics"
            );
        }
    }

    // Every series the rule tests feed has a name and label names a real trustgate
    // exposes (job and instance are Prometheus's).
    let test_text = std::fs::read_to_string(observability("trustgate-alerts.test.yaml")).unwrap();
    let mut fed = 0;
    for line in test_text.lines() {
        let Some(series) = line.trim().strip_prefix("- series: ") else {
            continue;
        };
        let series = series.trim_matches('\'');
        let (name, mut labels) = parse_exposition(&format!("{series} 1")).remove(0);
        labels.remove("job");
        labels.remove("instance");
        let names: BTreeSet<&String> = labels.keys().collect();
        assert!(
            exposed
                .iter()
                .any(|(n, l)| *n == name && l.keys().collect::<BTreeSet<_>>() == names),
            "the rule test feeds {series}, but trustgate exposes no {name} with labels {names:?}"
        );
        fed += 1;
    }
    assert!(fed >= 15, "the rule tests feed series ({fed})");

    // A live Prometheus scraping that trustgate and evaluating the rules every second.
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n\
             \x20 - job_name: trustgate\n\
             \x20   static_configs: [{{targets: [\"{}\"]}}]\n",
            rules.display(),
            running.admin
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            data.path().join("tsdb").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = prometheus.stderr.take().unwrap();
    let _kill = Process { child: prometheus };
    // Its address, from the "Listening on" line (port 0 is resolved there).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(i) = line.find("msg=\"Listening on\" address=") {
                let addr = line[i + "msg=\"Listening on\" address=".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let prom = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("prometheus says where it listens");
    let api = |path: String| {
        let url = format!("http://{prom}{path}");
        async move {
            let a = get(url, &[]).await;
            // 503 while Prometheus is starting (a plain-text body).
            let json = serde_json::from_str(&a.body).unwrap_or(serde_json::Value::Null);
            (a.status, json)
        }
    };

    // Poll (deadline 60 s) until the target is up and every rule has been evaluated.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, targets) = api("/api/v1/targets".into()).await;
        let up = targets["data"]["activeTargets"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["health"] == "up"));
        let (_, groups) = api("/api/v1/rules".into()).await;
        let rules: Vec<&serde_json::Value> = groups["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = rules.len() == rule_exprs.len()
            && rules.iter().all(|r| {
                assert_ne!(r["health"], "err", "rule failed in Prometheus: {r}");
                r["health"] == "ok"
            });
        if up && evaluated {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets {targets}\nrules {groups}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every dashboard query is valid PromQL for this Prometheus and, for the metrics
    // this trustgate has, returns data.
    for q in &queries {
        let (status, body) = api(format!("/api/v1/query?query={}", percent_encode(q))).await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
        assert_eq!(body["status"], "success", "{q}: {body}");
    }

    // One rule's expression through the API: the unparsable key file is seen, and the
    // alert is pending (it fires after its `for:`).
    let skipped = rule_exprs
        .iter()
        .find(|e| e.contains("trustgate_trust_problems"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = api(format!("/api/v1/query?query={}", percent_encode(skipped))).await;
        let result = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(r) = result.first() {
            assert_eq!(r["metric"]["instance"], running.admin.as_str(), "{body}");
            assert_eq!(r["value"][1], "1", "one key file skipped: {body}");
            break;
        }
        assert!(Instant::now() < deadline, "{skipped}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, alerts) = api("/api/v1/alerts".into()).await;
        let pending = alerts["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter().any(|a| {
                a["labels"]["alertname"] == "TrustgateKeyFilesSkipped" && a["state"] == "pending"
            })
        });
        if pending {
            break;
        }
        assert!(Instant::now() < deadline, "{alerts}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the rejections are in Prometheus by reason, as the rejection alert reads them.
    let (_, body) = api(format!(
        "/api/v1/query?query={}",
        percent_encode("sum by (reason) (trustgate_inbound_rejections_total)")
    ))
    .await;
    let reasons: BTreeSet<String> = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"]["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        reasons.contains("missing") && reasons.contains("wrong_audience"),
        "{body}"
    );
}
