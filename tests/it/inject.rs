//! `trustgate inject`, the real binary: golden files for every workload kind
//! (`tests/fixtures/inject/<name>.yaml` → `<name>.injected.yaml`), idempotence, documents
//! copied byte for byte, refusals, and the output validated strictly against the
//! Kubernetes schema by kubernetes-validate (skips loudly without it, unless
//! `TRUSTGATE_REQUIRE_INTEROP=1`). `TRUSTGATE_BLESS=1` rewrites the golden files.
use crate::support;

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

const KINDS: [&str; 11] = [
    "deployment",
    "outbound-only",
    "socket",
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
        &format!("{POD}  annotations: {{trustgate.dev/app-socket: app.sock}}\nspec:\n  containers: [{{name: a, image: x}}]\n"),
        "trustgate.dev/app-socket is \"app.sock\", not an absolute socket path",
    );
    refused(
        &format!("{POD}  annotations: {{trustgate.dev/network-policy: sometimes}}\nspec:\n  containers: [{{name: a, image: x}}]\n"),
        "trustgate.dev/network-policy is \"sometimes\"; use true or false",
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
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/yaml_subset.py");
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

/// The documents of a YAML stream, parsed (PyYAML-free: the binary's own output is plain).
fn documents(text: &str) -> Vec<String> {
    text.split("\n---\n").map(str::to_owned).collect()
}

#[test]
fn every_workload_gets_a_network_policy_letting_in_only_the_sidecar() {
    let text = out(&inject(
        &[fixtures().join("deployment.yaml").to_str().unwrap()],
        "",
    ));
    let policy = documents(&text)
        .into_iter()
        .find(|d| d.contains("kind: NetworkPolicy"))
        .expect("a NetworkPolicy");
    for want in [
        "name: billing-trustgate",
        "podSelector:\n    matchLabels:\n      app.kubernetes.io/name: billing",
        "policyTypes:\n    - Ingress",
        "- protocol: TCP\n          port: 8443",
        "- protocol: TCP\n          port: 15000",
    ] {
        assert!(policy.contains(want), "{want:?} in:\n{policy}");
    }
    assert!(!policy.contains("8080"), "never the app's port:\n{policy}");
    // Right after its workload, before the Service.
    let at = |w: &str| text.find(w).unwrap();
    assert!(at("kind: Deployment") < at("kind: NetworkPolicy"));
    assert!(at("kind: NetworkPolicy") < at("kind: Service"));
    // The sidecar learns the pod's addresses for its exposure check.
    assert!(
        text.contains("name: TRUSTGATE_INBOUND_POD_IPS\n              valueFrom:\n                fieldRef:\n                  fieldPath: status.podIPs"),
        "{text}"
    );
    let o = inject(&[fixtures().join("deployment.yaml").to_str().unwrap()], "");
    assert!(
        err(&o).contains("NetworkPolicy/billing-trustgate: added"),
        "{}",
        err(&o)
    );

    // Its namespace is the workload's; a List gets it among its items.
    let report = out(&inject(
        &[fixtures().join("outbound-only.yaml").to_str().unwrap()],
        "",
    ));
    assert!(
        report.contains("name: report-trustgate\n  namespace: shop"),
        "{report}"
    );
    let list = out(&inject(
        &[fixtures().join("list.yaml").to_str().unwrap()],
        "",
    ));
    assert_eq!(
        documents(&list).len(),
        documents(&std::fs::read_to_string(fixtures().join("list.yaml")).unwrap()).len()
    );
    assert!(
        list.contains("  - apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy"),
        "{list}"
    );

    // Annotated off: none.
    let off = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {app: p}\n  annotations: {trustgate.dev/network-policy: \"false\"}\nspec:\n  containers: [{name: a, image: x, ports: [{containerPort: 80}]}]\n";
    assert!(!out(&inject(&["-"], off)).contains("NetworkPolicy"));
    // A pod without labels gets one, so that the policy selects it and nothing else.
    let bare = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: [{name: a, image: x, ports: [{containerPort: 80}]}]\n";
    let done = out(&inject(&["-"], bare));
    assert!(
        done.contains("labels:\n    trustgate.dev/workload: p"),
        "{done}"
    );
    assert!(
        done.contains("matchLabels:\n      trustgate.dev/workload: p"),
        "{done}"
    );
    // One already in the stream is kept, not doubled.
    let with = format!("{bare}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p-trustgate}}\nspec: {{podSelector: {{}}}}\n");
    let o = inject(&["-"], &with);
    assert_eq!(out(&o).matches("kind: NetworkPolicy").count(), 1);
    assert!(err(&o).contains("already in the stream"), "{}", err(&o));
}

#[test]
fn a_workload_with_no_port_gets_an_outbound_only_sidecar() {
    let o = inject(
        &[fixtures().join("outbound-only.yaml").to_str().unwrap()],
        "",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(
        err(&o).contains("CronJob/report: injected outbound-only (identity report)"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("denies all ingress"), "{}", err(&o));
    assert!(
        text.contains("name: TRUSTGATE_INBOUND_ENABLED\n                  value: \"false\""),
        "{text}"
    );
    for absent in [
        "TRUSTGATE_INBOUND_LISTEN",
        "TRUSTGATE_INBOUND_UPSTREAM",
        "TRUSTGATE_INBOUND_POD_IPS",
        "trustgate-in\n",
        "trustgate-authorized-keys",
    ] {
        assert!(
            !text.contains(absent),
            "{absent} in an outbound-only sidecar:\n{text}"
        );
    }
    assert!(
        text.contains("HTTP_PROXY"),
        "its calls still go through the sidecar"
    );
    let policy = documents(&text)
        .into_iter()
        .find(|d| d.contains("kind: NetworkPolicy"))
        .unwrap();
    assert!(policy.contains("policyTypes:\n    - Ingress"));
    assert!(
        !policy.contains("ingress:"),
        "no rule: all ingress denied\n{policy}"
    );
}

#[test]
fn an_app_socket_is_wired_through_a_shared_empty_dir() {
    let o = inject(&[fixtures().join("socket.yaml").to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(
        err(&o).contains("app socket /run/app/app.sock behind inbound 8443"),
        "{}",
        err(&o)
    );
    assert!(
        text.contains("value: \"unix:///run/app/app.sock\""),
        "{text}"
    );
    assert!(
        text.contains("- name: trustgate-app-socket\n          emptyDir: {}"),
        "{text}"
    );
    // Mounted in the app and in the sidecar, at the socket's directory.
    assert_eq!(
        text.matches("- name: trustgate-app-socket\n                mountPath: /run/app")
            .count()
            + text
                .matches("- name: trustgate-app-socket\n              mountPath: /run/app")
                .count(),
        2,
        "{text}"
    );
    assert!(
        !text.contains("TRUSTGATE_INBOUND_POD_IPS"),
        "no TCP port to check"
    );
}

/// The shipped example (`deploy/kubernetes/inject/billing.yaml`) with the ConfigMap its
/// annotation names in the same stream (the kustomize example's billing configuration,
/// which needs `fleet.password_file`): inject mounts every file that configuration needs
/// and says nothing; without `trustgate.dev/fleet-secret` it says the sidecar would not
/// start; with the Secret and no `[fleet]`, that the Secret is for nothing.
#[test]
fn inject_says_what_the_configuration_needs_and_no_annotation_mounts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let example = std::fs::read_to_string(root.join("inject/billing.yaml")).unwrap();
    let config = std::fs::read_to_string(root.join("example/billing/trustgate.toml")).unwrap();
    let indented: String = config.lines().map(|l| format!("    {l}\n")).collect();
    let config_map = |toml: &str| {
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: billing-trustgate-config\n\
             data:\n  trustgate.toml: |\n{toml}"
        )
    };
    let o = inject(&[], &format!("{example}{}", config_map(&indented)));
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        !err(&o).contains("will not start") && !err(&o).contains("no [fleet]"),
        "{}",
        err(&o)
    );
    assert!(
        out(&o).contains("TRUSTGATE_FLEET_PASSWORD_FILE"),
        "{}",
        out(&o)
    );

    let bare = example.replace(
        "        trustgate.dev/fleet-secret: billing-fleet-redis\n",
        "",
    );
    assert_ne!(bare, example, "the example names the fleet's Secret");
    let o = inject(&[], &format!("{bare}{}", config_map(&indented)));
    assert!(
        err(&o).contains(
            "ConfigMap billing-trustgate-config sets fleet.password_file, which no \
             trustgate.dev/fleet-secret mounts"
        ),
        "{}",
        err(&o)
    );
    let no_fleet: String = indented
        .split("    [fleet]\n")
        .next()
        .unwrap()
        .replace("rate_limit_scope = \"fleet\"", "");
    let o = inject(&[], &format!("{example}{}", config_map(&no_fleet)));
    assert!(
        err(&o).contains("trustgate.dev/fleet-secret mounts billing-fleet-redis, but ConfigMap"),
        "{}",
        err(&o)
    );
}

/// `--authz`: beside an existing Envoy (Istio's) as its external authorizer — the
/// authorizer's listener on loopback, no inbound listener, the Services and the app's
/// ingress left to the mesh — valid Kubernetes, injecting twice is injecting once; an
/// annotation does the same for one workload.
#[test]
fn beside_envoy_inject_authz_adds_an_authorizer_and_leaves_services_and_ingress_to_the_mesh() {
    let input = fixtures().join("deployment.yaml");
    let o = inject(&["--authz", input.to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    for want in [
        "name: TRUSTGATE_AUTHZ_LISTEN\n              value: \"127.0.0.1:9191\"",
        "name: TRUSTGATE_INBOUND_ENABLED\n              value: \"false\"",
        "name: TRUSTGATE_INBOUND_APP_EXPOSURE\n              value: \"off\"",
        "name: TRUSTGATE_TRUST_AUTHORIZED_KEYS",
        "mountPath: /etc/trustgate/authorized_keys",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    assert!(
        !text.contains("trustgate-in"),
        "no inbound port, no Service moved"
    );
    assert!(!text.contains("kind: NetworkPolicy"), "the mesh's ingress");
    assert!(!text.contains("TRUSTGATE_INBOUND_UPSTREAM"));
    assert!(
        err(&o)
            .contains("injected as Envoy's external authorizer (identity billing, 127.0.0.1:9191)"),
        "{}",
        err(&o)
    );
    assert_eq!(out(&inject(&["--authz", "-"], &text)), text, "twice = once");
    // One workload by annotation, on a port of its own.
    let annotated = std::fs::read_to_string(&input).unwrap().replacen(
        "      annotations:\n",
        "      annotations:\n        trustgate.dev/authz-port: \"9300\"\n",
        1,
    );
    assert!(
        annotated.contains("authz-port"),
        "the fixture's shape changed"
    );
    let text = out(&inject(&["-"], &annotated));
    assert!(text.contains("value: \"127.0.0.1:9300\""), "{text}");
    if !support::have_tool(
        "kubernetes-validate",
        &["--version"],
        "pip install kubernetes-validate",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("authz.yaml");
    std::fs::write(&path, &text).unwrap();
    support::assert_runs(
        Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "-k", "1.33"])
            .arg(&path),
    );
}
