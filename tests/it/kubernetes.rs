//! The Kubernetes manifests under deploy/ (a Kustomize base and overlays beside StackStorm's
//! stackstorm-ha chart, and the statsd exporter) render, are valid, and hold together.
//!
//! No cluster is needed: every kustomization is rendered with `kubectl kustomize`, as
//! `kubectl apply -k` renders it; every object is validated against Kubernetes' own schemas
//! (kubernetes-validate, strict) and the ServiceMonitors against the Prometheus Operator's
//! (scripts/lib/validate_servicemonitors.py); the adapter's ConfigMap passes `config check` with
//! exactly the Deployment's environment; and what a production install relies on is asserted.
//! scripts/kubernetes-tools.sh installs the tools. Without them these tests skip with a notice
//! on stderr, unless `KUBERNETES_TOOLS_REQUIRED=1` (CI sets it): then a missing tool fails them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::support::deploy::{ini, read, repo, summary_field};

const BIN: &str = env!("CARGO_BIN_EXE_portarium-st2");
const REQUIRED_VAR: &str = "KUBERNETES_TOOLS_REQUIRED";

/// Every kustomization under deploy/, each rendered and checked.
const KUSTOMIZATIONS: [&str; 4] = [
    "deploy/kubernetes/base",
    "deploy/kubernetes/overlays/servicemonitor",
    "deploy/kubernetes/overlays/stackstorm-ha",
    "deploy/statsd-exporter",
];

/// The overlay docs/kubernetes.md installs beside the chart.
const BESIDE_THE_CHART: &str = "deploy/kubernetes/overlays/stackstorm-ha";
const WITH_SERVICEMONITORS: &str = "deploy/kubernetes/overlays/servicemonitor";

/// Oldest Kubernetes release the manifests are for, and the newest whose schemas the pinned
/// kubernetes-validate bundles.
const SCHEMA_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// The chart's release and namespace the manifests assume (docs/kubernetes.md).
const RELEASE: &str = "stackstorm";
const NAMESPACE: &str = "stackstorm";

/// The chart's st2 HTTP Services (StackStorm/stackstorm-k8s, templates/services.yaml): named
/// `<release>-<name>`, one port each, selecting pods labelled app.kubernetes.io/name=<name> and
/// app.kubernetes.io/instance=<release>. With the `config check` line that shows each URL.
const CHART_SERVICES: [(&str, u16, &str); 3] = [
    ("st2api", 9101, "st2 api:"),
    ("st2auth", 9100, "st2 auth:"),
    ("st2stream", 9102, "st2 stream:"),
];

const ADAPTER: &str = "portarium-st2";
const EXPORTER: &str = "st2-statsd-exporter";

// ---- tools ----------------------------------------------------------------------------------

/// Reports a missing tool before the calling test returns early; panics instead when
/// `KUBERNETES_TOOLS_REQUIRED=1`. The notice goes straight to stderr, past libtest's capture.
fn skip(what: &str) {
    assert!(
        std::env::var(REQUIRED_VAR).as_deref() != Ok("1"),
        "{what} not found and {REQUIRED_VAR}=1: run scripts/kubernetes-tools.sh (it prints the \
         virtualenv to put in KUBERNETES_VENV)"
    );
    static NOTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    if NOTED.lock().unwrap().insert(what.to_string()) {
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: {what} not found: the Kubernetes manifest tests that need it skip; \
             scripts/kubernetes-tools.sh installs it"
        );
    }
}

/// The virtualenv scripts/kubernetes-tools.sh fills.
fn venv() -> PathBuf {
    std::env::var_os("KUBERNETES_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/kubernetes-venv"))
}

/// kubectl on PATH, else the one the virtualenv got.
fn kubectl() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("kubectl"))
        .chain([venv().join("bin/kubectl")])
        .find(|p| p.is_file())
}

/// The virtualenv's bin folder when it holds both validators.
fn validators() -> Option<PathBuf> {
    let bin = venv().join("bin");
    (bin.join("kubernetes-validate").is_file() && bin.join("python").is_file()).then_some(bin)
}

/// Every kustomization rendered once: path → its objects.
fn rendered() -> Option<&'static BTreeMap<&'static str, Vec<Value>>> {
    static RENDERED: OnceLock<Option<BTreeMap<&'static str, Vec<Value>>>> = OnceLock::new();
    let all = RENDERED.get_or_init(|| {
        let kubectl = kubectl()?;
        Some(
            KUSTOMIZATIONS
                .iter()
                .map(|dir| (*dir, render(&kubectl, dir)))
                .collect(),
        )
    });
    if all.is_none() {
        skip("kubectl");
    }
    all.as_ref()
}

fn render(kubectl: &Path, dir: &str) -> Vec<Value> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(repo().join(dir))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", kubectl.display()));
    let text = crate::support::succeeded(&out, &format!("kubectl kustomize {dir}"));
    documents(&text)
}

/// The documents of a multi-document YAML text, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn to_yaml(objects: &[&Value]) -> String {
    objects
        .iter()
        .map(|o| serde_norway::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

// ---- reading objects ------------------------------------------------------------------------

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn all_of<'a>(objects: &'a [Value], k: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| kind(o) == k).collect()
}

fn find<'a>(objects: &'a [Value], k: &str, n: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind(o) == k && name(o) == n)
        .unwrap_or_else(|| panic!("no {k} {n}"))
}

fn has(objects: &[Value], k: &str, n: &str) -> bool {
    objects.iter().any(|o| kind(o) == k && name(o) == n)
}

/// The renders that hold the adapter's Deployment (none when kubectl is missing).
fn with_adapter() -> Vec<(&'static str, &'static [Value])> {
    let found: Vec<(&'static str, &'static [Value])> = rendered()
        .into_iter()
        .flatten()
        .filter(|(_, objs)| has(objs, "Deployment", ADAPTER))
        .map(|(dir, objs)| (*dir, objs.as_slice()))
        .collect();
    if !found.is_empty() {
        let dirs: BTreeSet<&str> = found.iter().map(|(d, _)| *d).collect();
        let want = BTreeSet::from([
            "deploy/kubernetes/base",
            BESIDE_THE_CHART,
            WITH_SERVICEMONITORS,
        ]);
        assert_eq!(dirs, want);
    }
    found
}

fn container<'a>(deployment: &'a Value, n: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == n)
        .unwrap_or_else(|| panic!("no container {n} in {}", name(deployment)))
}

fn labels(o: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(o.clone()).unwrap_or_default()
}

/// Whether a label selector (matchLabels and matchExpressions with In) selects `pod_labels`.
fn selects(selector: &Value, pod_labels: &BTreeMap<String, String>) -> bool {
    let by_label = labels(&selector["matchLabels"])
        .iter()
        .all(|(k, v)| pod_labels.get(k) == Some(v));
    let by_expression = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            assert_eq!(e["operator"], "In", "only In expressions are read here");
            let values: BTreeSet<&str> = e["values"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            pod_labels
                .get(e["key"].as_str().unwrap())
                .is_some_and(|v| values.contains(v.as_str()))
        });
    by_label && by_expression
}

/// Whether a Service's selector (a plain label map) picks pods labelled `pod_labels`.
fn service_selects(svc: &Value, pod_labels: &BTreeMap<String, String>) -> bool {
    let selector = labels(&svc["spec"]["selector"]);
    !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
}

fn pod_labels(deployment: &Value) -> BTreeMap<String, String> {
    labels(&deployment["spec"]["template"]["metadata"]["labels"])
}

/// Where a container environment variable comes from.
#[derive(Debug, PartialEq)]
enum EnvSource {
    Literal(String),
    Secret { name: String, key: String },
}

fn env_of(c: &Value) -> BTreeMap<String, EnvSource> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let n = e["name"].as_str().unwrap().to_string();
            let source = match (&e["value"], &e["valueFrom"]["secretKeyRef"]) {
                (Value::String(v), Value::Null) => EnvSource::Literal(v.clone()),
                (Value::Null, Value::Object(r)) => EnvSource::Secret {
                    name: r["name"].as_str().unwrap().to_string(),
                    key: r["key"].as_str().unwrap().to_string(),
                },
                other => {
                    panic!("env {n}: only literals and Secret keys are expected, got {other:?}")
                }
            };
            (n, source)
        })
        .collect()
}

/// The environment the kubelet gives the adapter's container, a Secret key standing for its
/// value (`secret:<name>/<key>`).
fn container_env(deployment: &Value) -> BTreeMap<String, String> {
    env_of(container(deployment, ADAPTER))
        .into_iter()
        .map(|(n, source)| {
            let v = match source {
                EnvSource::Literal(v) => v,
                EnvSource::Secret { name, key } => format!("secret:{name}/{key}"),
            };
            (n, v)
        })
        .collect()
}

/// The adapter's config file as the pod sees it: PORTARIUM_ST2_CONFIG, found in the ConfigMap
/// mounted at its folder. Returns the file's text.
fn mounted_config(objects: &[Value], deployment: &Value) -> String {
    let c = container(deployment, ADAPTER);
    let path = match &env_of(c)["PORTARIUM_ST2_CONFIG"] {
        EnvSource::Literal(p) => PathBuf::from(p),
        other => panic!("PORTARIUM_ST2_CONFIG from {other:?}"),
    };
    let (dir, file) = (path.parent().unwrap(), path.file_name().unwrap());
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == dir)
        .unwrap_or_else(|| panic!("nothing is mounted at {}", dir.display()));
    assert_eq!(mount["readOnly"], true, "the config is mounted read-only");
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume exists");
    let map = volume["configMap"]["name"]
        .as_str()
        .expect("the config folder is a ConfigMap");
    find(objects, "ConfigMap", map)["data"][file.to_str().unwrap()]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {map} has no {}", file.to_string_lossy()))
        .to_string()
}

/// The variables named by `env:NAME` secret references among the values of `v`.
fn env_references(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => out.extend(s.strip_prefix("env:").map(String::from)),
        Value::Array(a) => a.iter().for_each(|i| env_references(i, out)),
        Value::Object(m) => m.values().for_each(|i| env_references(i, out)),
        _ => {}
    }
}

/// Runs `config check` on `config` with exactly `env`; its output. The file is laid out as the
/// kubelet mounts a ConfigMap key (its atomic writer): `config.yaml` → `..data/config.yaml`,
/// `..data` → a timestamped folder holding the real file, so the adapter must follow symlinks.
fn config_check(config: &str, env: &BTreeMap<String, String>) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("..2026_12_06_02_00_00.000000001");
    std::fs::create_dir(&version).unwrap();
    std::fs::write(version.join("config.yaml"), config).unwrap();
    std::os::unix::fs::symlink(version.file_name().unwrap(), dir.path().join("..data")).unwrap();
    let file = dir.path().join("config.yaml");
    std::os::unix::fs::symlink("..data/config.yaml", &file).unwrap();
    Command::new(BIN)
        .args(["config", "check"])
        .arg(&file)
        .env_clear()
        .envs(env)
        .output()
        .unwrap()
}

/// The variables the kubelet exports for each Service of the pod's namespace when
/// `enableServiceLinks` is on (Docker-links style: `<NAME>_SERVICE_HOST`, `<NAME>_PORT`, ...).
fn service_link_env(objects: &[Value]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (i, svc) in all_of(objects, "Service").into_iter().enumerate() {
        let prefix = name(svc).to_uppercase().replace('-', "_");
        let ip = format!("10.96.0.{}", i + 10);
        let ports = svc["spec"]["ports"].as_array().unwrap();
        for (j, p) in ports.iter().enumerate() {
            let port = p["port"].as_u64().unwrap();
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            let base = format!("{prefix}_PORT_{port}_{proto}");
            let url = format!("{}://{ip}:{port}", proto.to_lowercase());
            if j == 0 {
                env.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
                env.insert(format!("{prefix}_SERVICE_PORT"), port.to_string());
                env.insert(format!("{prefix}_PORT"), url.clone());
            }
            if let Some(pn) = p["name"].as_str() {
                let pn = pn.to_uppercase().replace('-', "_");
                env.insert(format!("{prefix}_SERVICE_PORT_{pn}"), port.to_string());
            }
            env.insert(format!("{base}_PROTO"), proto.to_lowercase());
            env.insert(format!("{base}_PORT"), port.to_string());
            env.insert(format!("{base}_ADDR"), ip.clone());
            env.insert(base, url);
        }
    }
    env
}

/// The container port a Service or probe port (a number or a port name) lands on.
fn container_port(c: &Value, port: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(s) => c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == s.as_str())
            .unwrap_or_else(|| panic!("no container port named {s}"))["containerPort"]
            .as_u64()
            .unwrap(),
        other => panic!("bad port {other}"),
    }
}

fn seconds(duration: &str) -> u64 {
    duration
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{duration} is not a whole number of seconds"))
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn every_kustomization_under_deploy_is_checked_here() {
    let mut found = BTreeSet::new();
    let mut dirs = vec![repo().join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
                let rel = path.parent().unwrap().strip_prefix(repo()).unwrap();
                found.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let listed: BTreeSet<String> = KUSTOMIZATIONS.iter().map(|s| s.to_string()).collect();
    assert_eq!(found, listed, "add a new kustomization to KUSTOMIZATIONS");
}

#[test]
fn every_rendered_object_passes_kubernetes_schemas_strictly() {
    let Some(all) = rendered() else { return };
    let Some(bin) = validators() else {
        skip(&format!("kubernetes-validate in {}", venv().display()));
        return;
    };
    // One file per kustomization, one validator run per Kubernetes release (each run loads
    // that release's schemas once).
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut monitors = Vec::new();
    for (i, (kustomization, objects)) in all.iter().enumerate() {
        let (found, core): (Vec<&Value>, Vec<&Value>) =
            objects.iter().partition(|o| kind(o) == "ServiceMonitor");
        if !found.is_empty() {
            assert_eq!(*kustomization, WITH_SERVICEMONITORS);
            monitors.extend(found);
        }
        let file = dir.path().join(format!("{i}.yaml"));
        std::fs::write(&file, to_yaml(&core)).unwrap();
        files.push((*kustomization, file, core.len()));
    }
    for version in SCHEMA_VERSIONS {
        let out = Command::new(bin.join("kubernetes-validate"))
            .args(["--strict", "-k", version])
            .args(files.iter().map(|(_, f, _)| f))
            .output()
            .unwrap();
        let report =
            crate::support::succeeded(&out, &format!("kubernetes-validate --strict -k {version}"));
        // It only warns about a kind it has no schema for: every object must have passed.
        for (kustomization, file, objects) in &files {
            let passed = format!("{} passed for resource ", file.display());
            assert_eq!(
                report.matches(&passed).count(),
                *objects,
                "{kustomization} against {version}: not every object was validated:\n{report}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert_eq!(monitors.len(), 2, "the servicemonitor overlay's");
    let file = dir.path().join("monitors.yaml");
    std::fs::write(&file, to_yaml(&monitors)).unwrap();
    let out = Command::new(bin.join("python"))
        .arg(repo().join("scripts/lib/validate_servicemonitors.py"))
        .arg(&file)
        .output()
        .unwrap();
    let report = crate::support::succeeded(&out, "validate_servicemonitors.py");
    assert_eq!(
        report.matches(" passed").count(),
        monitors.len(),
        "{report}"
    );

    // Both validators reject what they should, so a pass above means something: an unknown
    // securityContext field, a PDB count of the wrong type, a ServiceMonitor endpoint field
    // the Operator does not have.
    let stack = &all[BESIDE_THE_CHART];
    let mut deployment = find(stack, "Deployment", ADAPTER).clone();
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] =
        true.into();
    let mut pdb = find(stack, "PodDisruptionBudget", ADAPTER).clone();
    pdb["spec"]["minAvailable"] = serde_json::json!([1]);
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, to_yaml(&[&deployment, &pdb])).unwrap();
    let out = Command::new(bin.join("kubernetes-validate"))
        .args(["--strict", "-k", SCHEMA_VERSIONS[0]])
        .arg(&file)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("'readOnlyRootFS' was unexpected"),
        "{report}"
    );
    assert!(report.contains("spec.minAvailable"), "{report}");

    let mut monitor = find(&all[WITH_SERVICEMONITORS], "ServiceMonitor", ADAPTER).clone();
    monitor["spec"]["endpoints"][0]["portt"] = "http".into();
    std::fs::write(&file, to_yaml(&[&monitor])).unwrap();
    let out = Command::new(bin.join("python"))
        .arg(repo().join("scripts/lib/validate_servicemonitors.py"))
        .arg(&file)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains(".spec.endpoints[0].portt"), "{report}");
}

#[test]
fn the_configmap_config_passes_config_check_with_exactly_the_deployments_environment() {
    for (dir, objects) in with_adapter() {
        let deployment = find(objects, "Deployment", ADAPTER);
        let config = mounted_config(objects, deployment);
        let env = container_env(deployment);
        let out = config_check(&config, &env);
        let summary = crate::support::succeeded(&out, &format!("{dir}: config check"));

        let c = container(deployment, ADAPTER);
        let port = container_port(c, &"http".into());
        assert_eq!(
            summary_field(&summary, "listen:"),
            format!("0.0.0.0:{port}"),
            "{dir}: the adapter listens on the container port, on every interface"
        );
        for (service, service_port, line) in CHART_SERVICES {
            assert_eq!(
                summary_field(&summary, line),
                format!("http://{RELEASE}-{service}:{service_port}/v1"),
                "{dir}: the chart's Service for {service}"
            );
        }
        // Secrets come from the Secret, and every one the config names is given: the file
        // holds no credential, and no Secret key goes unused.
        let mut referenced = BTreeSet::new();
        env_references(&serde_norway::from_str(&config).unwrap(), &mut referenced);
        let from_secrets: BTreeSet<String> = env_of(c)
            .into_iter()
            .filter(|(_, s)| matches!(s, EnvSource::Secret { .. }))
            .map(|(n, _)| n)
            .collect();
        assert_eq!(referenced, from_secrets, "{dir}");
        assert!(
            summary_field(&summary, "credential:").contains("(env ST2_API_KEY)"),
            "{summary}"
        );
        // Without one of them the adapter refuses to start, naming it.
        for missing in &from_secrets {
            let mut short = env.clone();
            short.remove(missing);
            let out = config_check(&config, &short);
            assert!(!out.status.success(), "{dir}: starts without {missing}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains(missing.as_str()),
                "{dir}: the error names {missing}"
            );
        }
    }
}

#[test]
fn service_links_would_break_config_loading_so_every_pod_turns_them_off() {
    let Some(all) = rendered() else { return };
    for (dir, objects) in with_adapter() {
        let deployment = find(objects, "Deployment", ADAPTER);
        let mut env = container_env(deployment);
        let links = service_link_env(objects);
        assert!(links.contains_key("PORTARIUM_ST2_PORT"), "{links:?}");
        env.extend(links);
        let out = config_check(&mounted_config(objects, deployment), &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{dir}: config check passed with links"
        );
        assert!(err.contains("unknown field `port`"), "{dir}: {err}");
    }
    for objects in all.values() {
        for d in all_of(objects, "Deployment") {
            assert_eq!(
                d["spec"]["template"]["spec"]["enableServiceLinks"],
                false,
                "{}",
                name(d)
            );
        }
    }
}

#[test]
fn the_adapter_deployment_holds_what_production_relies_on() {
    for (dir, objects) in with_adapter() {
        let d = find(objects, "Deployment", ADAPTER);
        let spec = &d["spec"];
        let pod = &spec["template"]["spec"];
        let c = container(d, ADAPTER);
        assert_eq!(spec["replicas"], 2, "{dir}");
        assert_eq!(
            spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
            "{dir}"
        );
        assert!(selects(&spec["selector"], &pod_labels(d)), "{dir}");

        // Probes: readiness on /readyz (flips at SIGTERM), liveness on /healthz (never on st2),
        // both on the port the adapter listens on.
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = &c[probe]["httpGet"];
            assert_eq!(get["path"], path, "{dir}: {probe}");
            assert_eq!(container_port(c, &get["port"]), 8787, "{dir}: {probe}");
        }

        // Shutdown: the preStop pause, then the drain, both inside the kill timeout.
        let pause = c["lifecycle"]["preStop"]["exec"]["command"]
            .as_array()
            .expect("an exec preStop");
        assert_eq!(pause[0], "sleep", "{dir}");
        let pause: u64 = pause[1].as_str().unwrap().parse().unwrap();
        assert!(pause >= 1, "{dir}");
        let config = mounted_config(objects, d);
        let config: Value = serde_norway::from_str(&config).unwrap();
        let grace = seconds(config["server"]["shutdown_grace"].as_str().unwrap());
        // Audit outcomes, queued events, then the last checkpoint and lease writes: up to
        // events.shutdown_grace each (10 s when unset).
        let events_grace = config["events"]["shutdown_grace"]
            .as_str()
            .map_or(10, seconds);
        let kill = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            pause + grace + 3 * events_grace < kill,
            "{dir}: preStop {pause}s + server.shutdown_grace {grace}s + 3 x events.shutdown_grace {events_grace}s must end before the kill at {kill}s"
        );

        // Non-root, read-only, nothing extra: as the image's own user.
        let dockerfile = read("Dockerfile");
        let image_user = dockerfile
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .expect("the image sets a USER");
        let (uid, gid) = image_user.trim().split_once(':').unwrap();
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{dir}");
        assert_eq!(psc["runAsUser"].to_string(), uid, "{dir}");
        assert_eq!(psc["runAsGroup"].to_string(), gid, "{dir}");
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{dir}");
        let csc = &c["securityContext"];
        assert_eq!(csc["runAsNonRoot"], true, "{dir}");
        assert_eq!(csc["readOnlyRootFilesystem"], true, "{dir}");
        assert_eq!(csc["allowPrivilegeEscalation"], false, "{dir}");
        assert_eq!(
            csc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{dir}"
        );
        assert_eq!(pod["automountServiceAccountToken"], false, "{dir}");

        for key in ["cpu", "memory"] {
            assert!(c["resources"]["requests"][key].is_string(), "{dir}: {key}");
        }
        assert!(c["resources"]["limits"]["memory"].is_string(), "{dir}");
        // Releases bump the manifests with the crate: the image is this version's.
        assert_eq!(
            c["image"],
            format!("portarium-st2:{}", env!("CARGO_PKG_VERSION")),
            "{dir}"
        );

        // The PodDisruptionBudget covers these pods and lets one go at a time.
        let pdb = find(objects, "PodDisruptionBudget", ADAPTER);
        assert!(selects(&pdb["spec"]["selector"], &pod_labels(d)), "{dir}");
        let min = pdb["spec"]["minAvailable"].as_u64().unwrap();
        let replicas = spec["replicas"].as_u64().unwrap();
        assert!(
            (1..replicas).contains(&min),
            "{dir}: minAvailable {min} of {replicas} must keep one and let one go"
        );

        // The Service reaches the adapter's port.
        let svc = find(objects, "Service", ADAPTER);
        assert!(service_selects(svc, &pod_labels(d)), "{dir}");
        let sp = &svc["spec"]["ports"][0];
        assert_eq!(container_port(c, &sp["targetPort"]), 8787, "{dir}");
        assert_eq!(sp["port"], 8787, "{dir}");
    }
}

#[test]
fn the_network_policy_lets_the_adapter_reach_the_charts_st2_pods_and_dns_only() {
    for (dir, objects) in with_adapter() {
        let d = find(objects, "Deployment", ADAPTER);
        let policies: Vec<&Value> = all_of(objects, "NetworkPolicy")
            .into_iter()
            .filter(|p| selects(&p["spec"]["podSelector"], &pod_labels(d)))
            .collect();
        let main = find(objects, "NetworkPolicy", ADAPTER);
        assert!(policies.contains(&main), "{dir}");
        let types = &main["spec"]["policyTypes"];
        assert_eq!(types, &serde_json::json!(["Ingress", "Egress"]), "{dir}");

        // Egress, over every policy selecting the adapter: each chart Service's pods on its port.
        let egress: Vec<&Value> = policies
            .iter()
            .flat_map(|p| p["spec"]["egress"].as_array().into_iter().flatten())
            .collect();
        let allows = |pod: &BTreeMap<String, String>, port: u64, proto: &str| {
            egress.iter().any(|rule| {
                let to_pod = rule["to"].as_array().unwrap().iter().any(|peer| {
                    peer["namespaceSelector"].is_null() && selects(&peer["podSelector"], pod)
                });
                let on_port = rule["ports"].as_array().unwrap().iter().any(|p| {
                    p["port"].as_u64() == Some(port) && p["protocol"].as_str() == Some(proto)
                });
                to_pod && on_port
            })
        };
        for (service, port, _) in CHART_SERVICES {
            let st2_pod = BTreeMap::from([
                ("app.kubernetes.io/name".to_string(), service.to_string()),
                (
                    "app.kubernetes.io/instance".to_string(),
                    RELEASE.to_string(),
                ),
                (
                    "app.kubernetes.io/part-of".to_string(),
                    "stackstorm".to_string(),
                ),
            ]);
            assert!(allows(&st2_pod, u64::from(port), "TCP"), "{dir}: {service}");
            let other_release = BTreeMap::from([
                ("app.kubernetes.io/name".to_string(), service.to_string()),
                (
                    "app.kubernetes.io/instance".to_string(),
                    "other".to_string(),
                ),
            ]);
            assert!(!allows(&other_release, u64::from(port), "TCP"), "{dir}");
        }
        let dns = main["spec"]["egress"].as_array().unwrap().iter().any(|r| {
            r["to"][0]["podSelector"]["matchLabels"]["k8s-app"] == "kube-dns"
                && r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"] == 53 && p["protocol"] == "UDP")
        });
        assert!(dns, "{dir}: DNS");
        if has(objects, "Service", EXPORTER) {
            let exporter = find(objects, "Deployment", EXPORTER);
            assert!(allows(&pod_labels(exporter), 9108, "TCP"), "{dir}: scrape");
        }

        // Ingress only to the adapter's port.
        let c = container(d, ADAPTER);
        for rule in main["spec"]["ingress"].as_array().unwrap() {
            for p in rule["ports"].as_array().unwrap() {
                assert_eq!(container_port(c, &p["port"]), 8787, "{dir}");
            }
        }
    }
}

#[test]
fn st2_metrics_reach_the_exporter_the_chart_values_name_and_the_adapter_scrapes_it() {
    let Some(all) = rendered() else { return };
    let objects = &all[BESIDE_THE_CHART];
    for o in objects {
        assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{}", name(o));
    }
    let svc = find(objects, "Service", EXPORTER);
    let exporter = find(objects, "Deployment", EXPORTER);
    let c = container(exporter, "statsd-exporter");
    let svc_port = |proto: &str, n: &str| {
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["protocol"] == proto && p["name"] == n)
            .unwrap_or_else(|| panic!("the exporter Service has no {n}"))
    };
    assert!(service_selects(svc, &pod_labels(exporter)));
    // A single replica: statsd sums live in the exporter, two would split every series.
    assert_eq!(exporter["spec"]["replicas"], 1);

    // The chart's values point every st2 pod's [metrics] at this Service's UDP port.
    let values: Value =
        serde_norway::from_str(&read("deploy/kubernetes/stackstorm-ha-values.yaml")).unwrap();
    // Only keys the chart has (its values.yaml, StackStorm/stackstorm-k8s at f0f21e5): a
    // misspelt key would be ignored by Helm without a word.
    let mut keys = BTreeSet::new();
    for (top, inner) in values.as_object().unwrap() {
        for key in inner.as_object().unwrap().keys() {
            keys.insert(format!("{top}.{key}"));
        }
    }
    assert_eq!(
        keys,
        BTreeSet::from(["image.tag".into(), "st2.config".into()])
    );
    let st2_conf = ini(values["st2"]["config"].as_str().expect("st2.config"));
    let metrics = &st2_conf["metrics"];
    assert_eq!(metrics["driver"], "statsd");
    assert_eq!(metrics["host"], name(svc));
    let udp = svc_port("UDP", "statsd-udp");
    assert_eq!(metrics["port"], udp["port"].to_string());
    assert!(
        !metrics.contains_key("prefix"),
        "the mapping matches st2.<key>"
    );
    // The chart's default st2.config, which setting it replaces, is kept.
    assert_eq!(st2_conf["api"]["allow_origin"], "'*'");
    assert_eq!(st2_conf["database"]["connection_timeout"], "5000");
    // The same st2 release as docker-compose.st2.yml.
    let compose = read("docker-compose.st2.yml");
    let st2_version = regex::Regex::new(r"stackstorm/st2api:\$\{ST2_VERSION:-([^}]+)\}")
        .unwrap()
        .captures(&compose)
        .expect("compose pins st2api through ST2_VERSION")[1]
        .to_string();
    assert_eq!(values["image"]["tag"], st2_version.as_str());

    // The exporter listens where the Service sends, with the mapping compose mounts too.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let arg = |flag: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(flag).and_then(|v| v.strip_prefix('=')))
            .unwrap_or_else(|| panic!("no {flag}"))
    };
    let port_of = |listen: &str| listen.rsplit(':').next().unwrap().parse::<u64>().unwrap();
    assert_eq!(
        port_of(arg("--statsd.listen-udp")),
        container_port(c, &udp["targetPort"])
    );
    let metrics_port = svc_port("TCP", "metrics");
    assert_eq!(
        port_of(arg("--web.listen-address")),
        container_port(c, &metrics_port["targetPort"])
    );
    let mapping = Path::new(arg("--statsd.mapping-config"));
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == mapping.parent().unwrap())
        .expect("the mapping folder is mounted");
    let volume = exporter["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let map = find(
        objects,
        "ConfigMap",
        volume["configMap"]["name"].as_str().unwrap(),
    );
    assert_eq!(
        map["data"][mapping.file_name().unwrap().to_str().unwrap()],
        read("deploy/statsd-exporter/statsd-mapping.yml").as_str()
    );
    let compose_exporter = regex::Regex::new(r"image: (prom/statsd-exporter:\S+)")
        .unwrap()
        .captures(&compose)
        .unwrap()[1]
        .to_string();
    assert_eq!(c["image"], compose_exporter.as_str());

    // The adapter scrapes the Service's metrics port.
    let adapter = find(objects, "Deployment", ADAPTER);
    let targets = &container_env(adapter)["PORTARIUM_ST2_TELEMETRY__TARGETS"];
    let target = Url::parse(targets).unwrap();
    assert_eq!(target.host_str(), Some(name(svc)));
    assert_eq!(target.port().map(u64::from), metrics_port["port"].as_u64());
    assert_eq!(target.path(), "/metrics");
}

#[test]
fn servicemonitors_select_one_service_each_by_its_port_name() {
    let Some(all) = rendered() else { return };
    let objects = &all[WITH_SERVICEMONITORS];
    let monitors = all_of(objects, "ServiceMonitor");
    let names: BTreeSet<&str> = monitors.iter().map(|m| name(m)).collect();
    assert_eq!(names, BTreeSet::from([ADAPTER, EXPORTER]));
    for m in monitors {
        assert_eq!(m["metadata"]["namespace"], NAMESPACE, "{}", name(m));
        let matched: Vec<&Value> = all_of(objects, "Service")
            .into_iter()
            .filter(|s| selects(&m["spec"]["selector"], &labels(&s["metadata"]["labels"])))
            .collect();
        assert_eq!(matched.len(), 1, "{}", name(m));
        let port_names: BTreeSet<&str> = matched[0]["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for e in m["spec"]["endpoints"].as_array().unwrap() {
            assert!(
                port_names.contains(e["port"].as_str().unwrap()),
                "{}",
                name(m)
            );
            assert_eq!(e["path"], "/metrics");
        }
    }
    // Everything else is the stackstorm-ha overlay's.
    let rest: Vec<&Value> = objects
        .iter()
        .filter(|o| kind(o) != "ServiceMonitor")
        .collect();
    let beside: Vec<&Value> = all[BESIDE_THE_CHART].iter().collect();
    assert_eq!(rest, beside);
}

#[test]
fn the_guide_creates_the_secret_the_deployment_reads_and_the_readme_links_it() {
    let doc = read("docs/kubernetes.md");
    let base = documents(&read("deploy/kubernetes/base/deployment.yaml"));
    let deployment = find(&base, "Deployment", ADAPTER);
    let secrets: BTreeSet<(String, String)> = env_of(container(deployment, ADAPTER))
        .into_values()
        .filter_map(|s| match s {
            EnvSource::Secret { name, key } => Some((name, key)),
            EnvSource::Literal(_) => None,
        })
        .collect();
    assert!(!secrets.is_empty());
    for (secret, key) in &secrets {
        let create = format!("kubectl create secret generic {secret}");
        assert!(doc.contains(&create), "docs/kubernetes.md lacks `{create}`");
        assert!(
            doc.contains(&format!("--from-literal={key}="))
                || doc.contains(&format!("--from-file={key}=")),
            "docs/kubernetes.md never sets {key}"
        );
    }
    for path in KUSTOMIZATIONS {
        assert!(
            doc.contains(path),
            "docs/kubernetes.md does not mention {path}"
        );
    }
    assert!(doc.contains("deploy/kubernetes/stackstorm-ha-values.yaml"));
    assert!(read("README.md").contains("(docs/kubernetes.md)"));
}
