//! `trustgate inject`, the real binary: golden files for every workload kind
//! (`tests/fixtures/inject/<name>.yaml` → `<name>.injected.yaml`), idempotence, documents
//! copied byte for byte, refusals, and the output validated strictly against the
//! Kubernetes schema by kubernetes-validate (skips loudly without it, unless
//! `TRUSTGATE_REQUIRE_INTEROP=1`). `TRUSTGATE_BLESS=1` rewrites the golden files.
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inject")
}

fn inject(args: &[&str], stdin: &str) -> Output {
    let mut all = vec!["inject"];
    all.extend_from_slice(args);
    support::trustgate_with_stdin(&all, stdin)
}

fn out(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const KINDS: [&str; 9] = [
    "deployment",
    "statefulset",
    "daemonset",
    "replicaset",
    "job",
    "cronjob",
    "pod",
    "list",
    "untouched",
];

#[test]
fn every_workload_kind_matches_its_golden_file_and_injecting_twice_is_injecting_once() {
    let bless = std::env::var("TRUSTGATE_BLESS").as_deref() == Ok("1");
    for name in KINDS {
        let input = fixtures().join(format!("{name}.yaml"));
        let golden = fixtures().join(format!("{name}.injected.yaml"));
        // From a file.
        let o = inject(&[input.to_str().unwrap()], "");
        assert_eq!(o.status.code(), Some(0), "{name}: {}", err(&o));
        let injected = out(&o);
        if bless {
            std::fs::write(&golden, &injected).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (TRUSTGATE_BLESS=1 writes it)", golden.display()));
        assert_eq!(
            injected,
            want,
            "{name}: output differs from {}",
            golden.display()
        );
        // From stdin, the same.
        let text = std::fs::read_to_string(&input).unwrap();
        assert_eq!(out(&inject(&["-"], &text)), want, "{name} from stdin");
        assert_eq!(out(&inject(&[], &text)), want, "{name} from stdin");
        // Twice = once, and the second run says so.
        let again = inject(&["-"], &want);
        assert_eq!(again.status.code(), Some(0), "{name}: {}", err(&again));
        assert_eq!(
            out(&again),
            want,
            "{name}: injecting twice changed the output"
        );
        assert!(
            !err(&again).contains(": injected"),
            "{name}: {}",
            err(&again)
        );
    }
    // The stream with nothing to inject is copied byte for byte.
    let untouched = std::fs::read_to_string(fixtures().join("untouched.yaml")).unwrap();
    assert_eq!(out(&inject(&["-"], &untouched)), untouched);
}

#[test]
fn what_inject_writes_and_what_it_leaves() {
    // What the binary writes now (the golden files are compared in the test above).
    let injected = |name: &str| {
        let o = inject(
            &[fixtures().join(format!("{name}.yaml")).to_str().unwrap()],
            "",
        );
        assert_eq!(o.status.code(), Some(0), "{name}: {}", err(&o));
        out(&o)
    };
    let text = injected("deployment");
    // The native sidecar, its startup probe on /readyz, whole-directory mounts.
    assert!(text.contains("initContainers:\n        - name: trustgate\n"));
    assert!(text.contains("restartPolicy: Always"));
    assert!(text.contains("startupProbe:\n            httpGet:\n              path: /readyz"));
    assert!(!text.contains("subPath"));
    // The app's own volume keeps its octal mode exactly as written.
    assert!(text.contains("defaultMode: 0400\n"));
    // The Service's named target moved to the sidecar.
    assert!(text.contains("targetPort: trustgate-in"));
    // The leading comment of the rewritten document is kept; the ConfigMap is unchanged.
    assert!(text.starts_with("# The app, before trustgate.\n"));
    assert!(text.ends_with("    [inbound]\n    public_paths = [\"/healthz\"]\n"));

    let sts = injected("statefulset");
    // The Service in another namespace is not this workload's.
    let other = sts.split("namespace: other").nth(1).unwrap();
    assert!(other.contains("- port: 5000\n"), "{other}");
    assert!(!other.contains("trustgate-in"));
    // The app's own HTTP_PROXY is kept, and the report says so.
    assert!(sts.contains("http://corporate-proxy:3128"));
    let o = inject(&[fixtures().join("statefulset.yaml").to_str().unwrap()], "");
    assert!(
        err(&o).contains("sets HTTP_PROXY=http://corporate-proxy:3128 itself"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("StatefulSet/ledger: injected (identity ledger-db, app port 5000"));

    // Without an fsGroup the identity Secret is 0444 (only the sidecar mounts it).
    let pod = injected("pod");
    assert!(pod.contains("defaultMode: 292"), "{pod}");
    assert!(pod.contains("TRUSTGATE_INBOUND_TLS_CERT"));
}

fn refused(input: &str, words: &str) {
    let o = inject(&["-"], input);
    assert_eq!(o.status.code(), Some(1), "{input}\n{}", err(&o));
    assert!(out(&o).is_empty(), "nothing on stdout when refused");
    assert!(err(&o).contains(words), "want {words:?} in: {}", err(&o));
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n";

#[test]
fn what_cannot_be_injected_safely_is_refused_with_the_reason() {
    refused(
        &format!("{POD}spec:\n  hostNetwork: true\n  containers: [{{name: a, image: x, ports: [{{containerPort: 80}}]}}]\n"),
        "document 1 (Pod p): uses hostNetwork",
    );
    refused(
        &format!("{POD}spec:\n  containers: [{{name: a, image: x, ports: [{{containerPort: 80}}, {{containerPort: 15000}}]}}]\n"),
        "container a already uses port 15000",
    );
    refused(
        &format!("---\nkind: ConfigMap\n---\n{POD}spec:\n  containers: [{{name: a, image: x}}]\n"),
        "document 2 (Pod p): the app's port cannot be told",
    );
    refused(
        &format!("{POD}  annotations: {{trustgate.dev/app-port: \"15001\"}}\nspec:\n  containers: [{{name: a, image: x}}]\n"),
        "the app port 15001 is one of the sidecar's ports",
    );
    refused(
        &format!("{POD}  annotations: {{trustgate.dev/app-port: \"http\"}}\nspec:\n  containers: [{{name: a, image: x}}]\n"),
        "trustgate.dev/app-port is \"http\", not a port number",
    );
    refused(
        &format!("{POD}  annotations: {{trustgate.dev/inject: maybe}}\nspec:\n  containers: [{{name: a, image: x}}]\n"),
        "use enabled or disabled",
    );
    refused(
        &format!("{POD}  annotations: {{trustgate.dev/identity: Not_A_Name}}\nspec:\n  containers: [{{name: a, image: x, ports: [{{containerPort: 80}}]}}]\n"),
        "not a valid identity name",
    );
    refused(
        &format!("{POD}spec:\n  containers: [{{name: a, image: x, ports: [{{containerPort: 80}}]}}]\n  volumes: [{{name: trustgate-config, emptyDir: {{}}}}]\n"),
        "a volume named trustgate-config already exists",
    );
    refused(
        &format!("{POD}spec:\n  containers: [{{name: a, image: !custom x, ports: [{{containerPort: 80}}]}}]\n"),
        "tag",
    );
    refused("a: [1\n", "document 1: not valid YAML");
    // A file that does not exist.
    let o = inject(&["/nonexistent/app.yaml"], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("/nonexistent/app.yaml"), "{}", err(&o));
}

/// What inject did not mean to change reads the same to a YAML 1.1 reader (PyYAML, as
/// Kubernetes' own reader is): quoting, octal modes, booleans and block scalars survive.
#[test]
fn a_yaml_1_1_reader_sees_every_input_value_unchanged() {
    if !support::have_tool("python3", &["-c", "import yaml"], "pip install pyyaml") {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/yaml_subset.py");
    for name in KINDS {
        let o = Command::new("python3")
            .arg(&script)
            .arg(fixtures().join(format!("{name}.yaml")))
            .arg(fixtures().join(format!("{name}.injected.yaml")))
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: {}", err(&o));
    }
    // And the check itself notices a changed meaning.
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.yaml"), tmp.path().join("b.yaml"));
    std::fs::write(&a, "v: {defaultMode: 0400}\n").unwrap();
    std::fs::write(&b, "v: {defaultMode: 400}\n").unwrap();
    let o = Command::new("python3")
        .arg(&script)
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert!(!o.status.success());
}

/// Every golden output, strictly against the Kubernetes schema.
#[test]
fn the_output_is_valid_kubernetes_strictly() {
    if !support::have_tool(
        "kubernetes-validate",
        &["--version"],
        "pip install kubernetes-validate",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in KINDS {
        let input = fixtures().join(format!("{name}.yaml"));
        let o = inject(&[input.to_str().unwrap()], "");
        assert_eq!(o.status.code(), Some(0), "{name}: {}", err(&o));
        let mut text = out(&o);
        if name == "list" {
            // kubernetes-validate has no schema for the client-side List wrapper: its
            // items are validated as documents.
            text = text.replace("apiVersion: v1\nkind: List\nitems:\n", "");
            text = text.replace("\n  - apiVersion", "\n---\n  - apiVersion");
            text = text
                .lines()
                .map(|l| {
                    l.strip_prefix("  - ")
                        .or(l.strip_prefix("    "))
                        .unwrap_or(l)
                })
                .collect::<Vec<_>>()
                .join("\n");
        }
        let path = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    support::assert_runs(
        Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "-k", "1.33"])
            .args(&files),
    );
}
