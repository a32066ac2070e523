//! docker-compose.st2.yml, the Dockerfile and the files under deploy/ hold together.
//!
//! Docker is not needed: the compose file is parsed as compose reads it (YAML merge keys,
//! `${VAR:-default}` interpolation), every cross-reference is checked against the file it
//! points to, and the adapter's part is run for real — `config check` on the mounted config
//! with the environment compose gives it, and the emulator profile's adapter serving a
//! dispatch against a real st2 emulator, health-checked with the image's own HEALTHCHECK.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::deploy::{ini, read, repo, summary_field};
use crate::support::{SendJson, free_port};
use serde_json::{Map, Value, json};
use url::Url;

const BIN: &str = env!("CARGO_BIN_EXE_portarium-st2");
const COMPOSE: &str = "docker-compose.st2.yml";
const ADAPTER_IMAGE: &str = "portarium-st2:dev";
/// The host folder of the user's own packs (`ST2_PACKS_DEV`'s default), as in st2-docker.
const PACKS_DEV: &str = "./packs.dev";

/// The st2 services of StackStorm's own compose setup, each running `stackstorm/<name>`.
const ST2_SERVICES: [&str; 12] = [
    "st2api",
    "st2auth",
    "st2stream",
    "st2web",
    "st2actionrunner",
    "st2scheduler",
    "st2workflowengine",
    "st2rulesengine",
    "st2notifier",
    "st2sensorcontainer",
    "st2timersengine",
    "st2garbagecollector",
];

/// Every other required service and the official image repository it must run.
const SUPPORT_SERVICES: [(&str, &str); 6] = [
    ("mongo", "mongo"),
    ("rabbitmq", "rabbitmq"),
    ("redis", "redis"),
    ("statsd-exporter", "prom/statsd-exporter"),
    ("otel-collector", "otel/opentelemetry-collector-contrib"),
    ("nats", "nats"),
];

/// Parses YAML the way compose does (anchors, aliases and `<<` merge keys) into JSON values.
fn yaml(text: &str, name: &str) -> Value {
    let mut v: serde_norway::Value =
        serde_norway::from_str(text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
    // One apply_merge pass copies a merged mapping's own `<<` in unresolved; compose
    // resolves merges inside merges, so repeat until none is left.
    for _ in 0..8 {
        if !has_merge_key(&v) {
            return serde_json::to_value(v).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        v.apply_merge()
            .unwrap_or_else(|e| panic!("{name}: bad merge key: {e}"));
    }
    panic!("{name}: merge keys nested deeper than 8 levels")
}

fn has_merge_key(v: &serde_norway::Value) -> bool {
    match v {
        serde_norway::Value::Mapping(m) => m.contains_key("<<") || m.values().any(has_merge_key),
        serde_norway::Value::Sequence(s) => s.iter().any(has_merge_key),
        _ => false,
    }
}

fn compose() -> Value {
    yaml(&read(COMPOSE), COMPOSE)
}

fn services(c: &Value) -> &Map<String, Value> {
    c["services"].as_object().expect("services is a mapping")
}

/// One `${NAME...}` reference in the compose file.
#[derive(Debug)]
struct VarRef {
    name: String,
    default: Option<String>,
}

/// Expands `${NAME:-default}` / `${NAME-default}` to the default and `$$` to `$`, as compose
/// does with an empty environment; returns the text and every reference met. A reference
/// without a default expands to nothing; forms compose reads differently are errors.
fn interpolate(text: &str) -> Result<(String, Vec<VarRef>), String> {
    let mut out = String::new();
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            return Err(format!(
                "unbraced or stray `$` before {after:.20?}; write ${{NAME}} or $$"
            ));
        };
        let end = body_start
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
        let body = &body_start[..end];
        let name_len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let (name, modifier) = body.split_at(name_len);
        if name.is_empty() {
            return Err(format!("${{{body}}} has no variable name"));
        }
        let default = match modifier {
            "" => None,
            m if m.starts_with(":-") => Some(m[2..].to_string()),
            m if m.starts_with('-') => Some(m[1..].to_string()),
            m => return Err(format!("${{{body}}}: modifier {m:?} is not a default")),
        };
        if default.as_deref().is_some_and(|d| d.contains('$')) {
            return Err(format!(
                "${{{body}}}: nested references are not checked here"
            ));
        }
        out.push_str(default.as_deref().unwrap_or(""));
        refs.push(VarRef {
            name: name.to_string(),
            default,
        });
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok((out, refs))
}

fn expand(text: &str) -> String {
    interpolate(text).unwrap_or_else(|e| panic!("{e}")).0
}

/// A service's `environment` (mapping or `KEY=VALUE` list), interpolated.
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Null => BTreeMap::new(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => expand(s),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                let s = expand(i.as_str().expect("environment entries are strings"));
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        other => panic!("environment must be a mapping or a list, got {other}"),
    }
}

/// A service's `command` as compose passes it (a list, interpolated).
fn command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Array(a) => a
            .iter()
            .map(|v| expand(v.as_str().expect("command items are strings")))
            .collect(),
        Value::String(s) => expand(s).split_whitespace().map(String::from).collect(),
        Value::Null => Vec::new(),
        other => panic!("command must be a list or string, got {other}"),
    }
}

/// The value of `--flag=value` (or `--flag value`) in `args`.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix(name)
            .and_then(|rest| match rest.strip_prefix('=') {
                Some(v) => Some(v.to_string()),
                None if rest.is_empty() => args.get(i + 1).cloned(),
                None => None,
            })
    })
}

/// A volume mount: host path (`./...`) or named volume, and where it lands.
#[derive(Debug)]
struct Mount {
    source: String,
    target: String,
}

impl Mount {
    fn is_host_path(&self) -> bool {
        self.source.starts_with('.') || self.source.starts_with('/')
    }
}

fn mounts(service: &Value) -> Vec<Mount> {
    let Some(items) = service["volumes"].as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => {
                let s = expand(s);
                let mut parts = s.split(':');
                let source = parts.next().unwrap_or_default().to_string();
                let target = parts
                    .next()
                    .unwrap_or_else(|| panic!("volume {s:?} has no target"))
                    .to_string();
                Mount { source, target }
            }
            Value::Object(m) => Mount {
                source: expand(m["source"].as_str().expect("long volume syntax has source")),
                target: expand(m["target"].as_str().expect("long volume syntax has target")),
            },
            other => panic!("bad volume entry {other}"),
        })
        .collect()
}

/// The host file mounted at `target` in `service`.
fn host_file(service: &Value, target: &str) -> PathBuf {
    let m = mounts(service)
        .into_iter()
        .find(|m| m.target == target && m.is_host_path())
        .unwrap_or_else(|| panic!("nothing from the repository is mounted at {target}"));
    repo().join(&m.source)
}

/// `depends_on` as name → condition (the list form means `service_started`).
fn depends_on(service: &Value) -> BTreeMap<String, String> {
    match &service["depends_on"] {
        Value::Null => BTreeMap::new(),
        Value::Array(a) => a
            .iter()
            .map(|v| {
                let name = v.as_str().expect("depends_on items are names");
                (name.to_string(), "service_started".to_string())
            })
            .collect(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let cond = v["condition"].as_str().unwrap_or("service_started");
                (k.clone(), cond.to_string())
            })
            .collect(),
        other => panic!("bad depends_on {other}"),
    }
}

fn profiles(service: &Value) -> BTreeSet<String> {
    service["profiles"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `image` split into repository and tag, before and after interpolation.
fn image(service: &Value) -> (String, String, String) {
    let raw = service["image"].as_str().expect("service has an image");
    // The tag starts at the last `:` outside `${...}` (a default holds `:-`).
    let mut depth = 0;
    let mut split = None;
    for (i, ch) in raw.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ':' if depth == 0 => split = Some(i),
            _ => {}
        }
    }
    let at = split.unwrap_or_else(|| panic!("image {raw} has no tag"));
    let (repo, raw_tag) = (&raw[..at], &raw[at + 1..]);
    (repo.to_string(), raw_tag.to_string(), expand(raw_tag))
}

/// Leading `#` lines of the compose file: where its variables are documented.
fn compose_header() -> String {
    read(COMPOSE)
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Dockerfile instructions (continuations joined, comments dropped) as (KEYWORD, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                let (kw, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((kw.to_ascii_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// The instructions of each build stage, in order.
fn stages() -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for (kw, args) in dockerfile() {
        if kw == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Dockerfile starts with FROM")
            .push((kw, args));
    }
    stages
}

/// The exec-form `CMD [...]` of the image's HEALTHCHECK.
fn image_healthcheck() -> Vec<String> {
    let (_, args) = stages()
        .pop()
        .unwrap()
        .into_iter()
        .find(|(kw, _)| kw == "HEALTHCHECK")
        .expect("the runtime stage has a HEALTHCHECK");
    let json = args
        .split_once("CMD ")
        .expect("HEALTHCHECK ... CMD [...]")
        .1;
    serde_json::from_str(json).expect("HEALTHCHECK CMD is an exec-form JSON array")
}

/// Waits up to `secs` for `child`; kills it on overrun.
fn wait_bounded(mut child: Child, secs: u64) -> Option<ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a healthcheck `test` (`["CMD", ...]`) with `from_port` in its arguments replaced by
/// `to_port`; true when it exits 0 within 10 s.
fn healthcheck_passes(test: &[String], from_port: u16, to_port: u16) -> bool {
    let args: Vec<String> = test
        .iter()
        .skip_while(|a| *a == "CMD")
        .map(|a| a.replace(&format!("/{from_port}"), &format!("/{to_port}")))
        .collect();
    let child = Command::new(&args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args[0]));
    wait_bounded(child, 10).is_some_and(|s| s.success())
}

/// Services whose command is `portarium-st2 serve`.
fn adapters(c: &Value) -> Vec<(&String, &Value)> {
    services(c)
        .iter()
        .filter(|(_, s)| {
            let cmd = command(s);
            cmd.len() >= 2 && cmd[0] == "portarium-st2" && cmd[1] == "serve"
        })
        .collect()
}

#[test]
fn every_required_service_runs_its_official_image_at_a_pinned_version() {
    let c = compose();
    let svcs = services(&c);
    let mut st2_versions = BTreeSet::new();
    for name in ST2_SERVICES {
        let s = svcs
            .get(name)
            .unwrap_or_else(|| panic!("service {name} is missing"));
        let (repo, raw_tag, _) = image(s);
        assert_eq!(repo, format!("stackstorm/{name}"), "{name}");
        st2_versions.insert(raw_tag);
    }
    // Jobs that use an st2 image run the same st2 version.
    for (name, s) in svcs {
        if s["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("stackstorm/"))
        {
            st2_versions.insert(image(s).1);
            assert!(
                s.get("build").is_none(),
                "{name} must run StackStorm's image, not a local build"
            );
        }
    }
    assert_eq!(st2_versions.len(), 1, "one st2 version: {st2_versions:?}");
    let tag = st2_versions.pop_first().unwrap();
    let (_, refs) = interpolate(&tag).unwrap();
    assert!(
        refs.len() == 1 && refs[0].name == "ST2_VERSION",
        "the st2 tag is ${{ST2_VERSION:-x.y.z}}, got {tag}"
    );
    let default = refs[0].default.clone().unwrap_or_default();
    assert!(
        default.split('.').count() == 3 && default.split('.').all(|p| p.parse::<u32>().is_ok()),
        "ST2_VERSION defaults to an exact release, got {default:?}"
    );

    for (name, official) in SUPPORT_SERVICES {
        let s = svcs
            .get(name)
            .unwrap_or_else(|| panic!("service {name} is missing"));
        let (repo, _, tag) = image(s);
        assert_eq!(repo, official, "{name}");
        assert!(
            !tag.is_empty() && tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
            "{name}: pin a version, not {tag:?}"
        );
    }

    let adapter = svcs.get("adapter").expect("service adapter is missing");
    assert_eq!(adapter["image"], ADAPTER_IMAGE);
    assert_eq!(adapter["build"]["context"], ".");
    assert_eq!(adapter["build"]["dockerfile"], "Dockerfile");
    assert_eq!(command(adapter), ["portarium-st2", "serve"]);
}

#[test]
fn published_ports_bind_loopback_only_and_never_clash() {
    let c = compose();
    let mut host_ports = BTreeMap::new();
    for (name, s) in services(&c) {
        for p in s["ports"].as_array().into_iter().flatten() {
            let (ip, host, container) = match p {
                Value::String(p) => {
                    let p = expand(p);
                    let parts: Vec<&str> = p.split(':').collect();
                    assert_eq!(
                        parts.len(),
                        3,
                        "{name}: write ports as IP:HOST:CONTAINER, not {p}"
                    );
                    (
                        parts[0].to_string(),
                        parts[1].to_string(),
                        parts[2].to_string(),
                    )
                }
                Value::Object(m) => (
                    m.get("host_ip")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    expand(&m["published"].to_string().replace('"', "")),
                    m["target"].to_string(),
                ),
                other => panic!("{name}: bad port {other}"),
            };
            assert_eq!(ip, "127.0.0.1", "{name} publishes {host} beyond loopback");
            let host: u16 = host
                .parse()
                .unwrap_or_else(|_| panic!("{name}: host port {host:?}"));
            assert!(
                container.parse::<u16>().is_ok(),
                "{name}: container port {container:?}"
            );
            if let Some(other) = host_ports.insert(host, name.clone()) {
                panic!("host port {host} is published by both {other} and {name}");
            }
        }
    }
    for name in [
        "adapter",
        "st2web",
        "statsd-exporter",
        "otel-collector",
        "nats",
    ] {
        assert!(
            host_ports.values().any(|n| n == name),
            "{name} should be reachable from the host"
        );
    }
}

#[test]
fn every_variable_has_a_default_and_is_documented_in_the_header() {
    let text = read(COMPOSE);
    let header = compose_header();
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let (_, refs) = interpolate(&body).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !refs.is_empty(),
        "the compose file reads no variables at all"
    );
    let mut defaults: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in &refs {
        assert!(
            header
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| w == r.name),
            "${{{}}} is not described in the header comment of {COMPOSE}",
            r.name
        );
        let default = r
            .default
            .as_deref()
            .unwrap_or_else(|| panic!("${{{}}} has no default", r.name));
        defaults.entry(&r.name).or_default().insert(default);
    }
    for (name, values) in defaults {
        assert_eq!(values.len(), 1, "{name} has different defaults: {values:?}");
    }
}

#[test]
fn mounted_files_exist_and_named_volumes_are_declared() {
    let c = compose();
    let declared: BTreeSet<String> = c["volumes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut used = BTreeSet::new();
    for (name, s) in services(&c) {
        for m in mounts(s) {
            if !m.is_host_path() {
                assert!(
                    declared.contains(&m.source),
                    "{name}: volume {} is not declared",
                    m.source
                );
                used.insert(m.source.clone());
                continue;
            }
            // Files from ./deploy/, and the one folder users fill: their packs. Both exist in
            // the checkout (a missing bind source is created by Docker, empty and root-owned).
            if m.source == PACKS_DEV {
                assert!(repo().join(PACKS_DEV).is_dir(), "{PACKS_DEV} is missing");
                continue;
            }
            assert!(
                m.source.starts_with("./deploy/"),
                "{name}: {} — mount files from ./deploy/ only",
                m.source
            );
            assert!(
                repo().join(&m.source).is_file(),
                "{name} mounts {}, which does not exist",
                m.source
            );
        }
        if let Some(build) = s.get("build") {
            let context = repo().join(build["context"].as_str().unwrap_or("."));
            let file = build["dockerfile"].as_str().unwrap_or("Dockerfile");
            assert!(context.join(file).is_file(), "{name}: {file} is missing");
        }
    }
    for v in &declared {
        assert!(used.contains(v), "volume {v} is declared but unused");
    }
}

#[test]
fn dependencies_exist_fit_their_condition_and_respect_profiles() {
    let c = compose();
    let svcs = services(&c);
    for (name, s) in svcs {
        for (dep, cond) in depends_on(s) {
            let target = svcs
                .get(&dep)
                .unwrap_or_else(|| panic!("{name} depends on {dep}, which is not a service"));
            match cond.as_str() {
                "service_started" => {}
                "service_healthy" => {
                    let has_check =
                        target.get("healthcheck").is_some() || target["image"] == ADAPTER_IMAGE;
                    assert!(
                        has_check,
                        "{name} waits for {dep} to be healthy, but it has no healthcheck"
                    );
                }
                "service_completed_successfully" => assert!(
                    !command(target).is_empty(),
                    "{name} waits for {dep} to finish, but it has no one-shot command"
                ),
                other => panic!("{name} -> {dep}: unknown condition {other}"),
            }
            // `up` without --profile skips profiled services, so the default stack must not need one.
            let (mine, theirs) = (profiles(s), profiles(target));
            assert!(
                theirs.is_empty() || theirs.iter().any(|p| mine.contains(p)),
                "{name} depends on {dep}, which only runs with --profile {theirs:?}"
            );
        }
    }
    // No cycles: every service can be ordered after its dependencies.
    let mut done: BTreeSet<&str> = BTreeSet::new();
    while done.len() < svcs.len() {
        let before = done.len();
        for (name, s) in svcs {
            if !done.contains(name.as_str())
                && depends_on(s).keys().all(|d| done.contains(d.as_str()))
            {
                done.insert(name);
            }
        }
        assert!(
            done.len() > before,
            "depends_on has a cycle among the remaining services"
        );
    }
    let adapter = depends_on(&svcs["adapter"]);
    assert_eq!(
        adapter.get("st2api").map(String::as_str),
        Some("service_healthy")
    );
}

#[test]
fn every_st2_service_reads_the_deploy_config_and_reaches_the_compose_services() {
    let c = compose();
    let svcs = services(&c);
    let conf = ini(&read("deploy/st2/st2.docker.conf"));
    let host_of = |section: &str, key: &str| -> String {
        let v = conf
            .get(section)
            .and_then(|s| s.get(key))
            .unwrap_or_else(|| panic!("st2.docker.conf: [{section}] {key} is missing"));
        match Url::parse(v) {
            Ok(u) if u.host_str().is_some() => u.host_str().unwrap().to_string(),
            _ => v.clone(),
        }
    };
    for (section, key, service) in [
        ("messaging", "url", "rabbitmq"),
        ("database", "host", "mongo"),
        ("coordination", "url", "redis"),
        ("auth", "api_url", "st2api"),
        ("metrics", "host", "statsd-exporter"),
    ] {
        assert_eq!(host_of(section, key), service, "[{section}] {key}");
        assert!(svcs.contains_key(service));
    }

    // st2's statsd datagrams go where the exporter listens, under the names its mapping expects.
    let metrics = &conf["metrics"];
    assert_eq!(metrics["driver"], "statsd");
    let exporter = command(&svcs["statsd-exporter"]);
    let udp = flag(&exporter, "--statsd.listen-udp").unwrap_or(":9125".into());
    assert_eq!(udp.rsplit(':').next(), Some(metrics["port"].as_str()));
    assert!(
        !metrics.contains_key("prefix"),
        "deploy/statsd-exporter/statsd-mapping.yml matches st2.<key> names; a [metrics] prefix would hide them"
    );
    let mapping =
        flag(&exporter, "--statsd.mapping-config").expect("the exporter gets the mapping file");
    let mapped = mounts(&svcs["statsd-exporter"])
        .into_iter()
        .find(|m| m.target == mapping)
        .expect("the mapping file is mounted where --statsd.mapping-config points");
    assert_eq!(mapped.source, "./deploy/statsd-exporter/statsd-mapping.yml");
    let web = flag(&exporter, "--web.listen-address").expect("the exporter's web port is set");
    let web_port = web.rsplit(':').next().unwrap();
    assert_ne!(web_port, "9102", "9102 is st2stream's port");
    assert!(
        svcs["statsd-exporter"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p
                .as_str()
                .is_some_and(|p| p.ends_with(&format!(":{web_port}")))),
        "the exporter's /metrics port {web_port} is published"
    );

    for (name, s) in svcs {
        let Some(img) = s["image"].as_str() else {
            continue;
        };
        if !img.starts_with("stackstorm/") || name == "st2web" || name == "st2-makesecrets" {
            continue;
        }
        let targets: Vec<String> = mounts(s).into_iter().map(|m| m.target).collect();
        for f in ["/etc/st2/st2.docker.conf", "/etc/st2/st2.user.conf"] {
            assert!(targets.iter().any(|t| t == f), "{name} does not mount {f}");
        }
        assert_eq!(
            host_file(s, "/etc/st2/st2.docker.conf"),
            repo().join("./deploy/st2/st2.docker.conf")
        );
        let deps = depends_on(s);
        for backing in ["mongo", "rabbitmq", "redis", "statsd-exporter"] {
            assert!(deps.contains_key(backing), "{name} starts before {backing}");
        }
    }
    let web = environment(&svcs["st2web"]);
    for var in ["ST2_API_URL", "ST2_AUTH_URL", "ST2_STREAM_URL"] {
        let url = Url::parse(&web[var]).unwrap();
        assert!(
            svcs.contains_key(url.host_str().unwrap()),
            "st2web {var}={url}"
        );
    }

    // st2auth knows the user the adapter logs in as.
    let htpasswd =
        std::fs::read_to_string(host_file(&svcs["st2auth"], "/etc/st2/htpasswd")).unwrap();
    let user = &environment(&svcs["adapter"])["PORTARIUM_ST2_ST2__USERNAME"];
    assert!(
        htpasswd.lines().any(|l| l
            .strip_prefix(&format!("{user}:"))
            .is_some_and(|h| h.starts_with("$apr1$"))),
        "deploy/st2/htpasswd has no apr1 entry for {user}"
    );
}

#[test]
fn otel_collector_receives_otlp_on_4317_and_4318_where_the_adapter_sends() {
    let c = compose();
    let svcs = services(&c);
    let otel = &svcs["otel-collector"];
    let config_path = flag(&command(otel), "--config").expect("the collector is given --config");
    let file = host_file(otel, &config_path);
    let cfg = yaml(
        &std::fs::read_to_string(&file).unwrap(),
        "otel collector config",
    );
    let protocols = &cfg["receivers"]["otlp"]["protocols"];
    for (proto, port) in [("grpc", "4317"), ("http", "4318")] {
        let endpoint = protocols[proto]["endpoint"]
            .as_str()
            .unwrap_or_else(|| panic!("otlp {proto} receiver has no endpoint"));
        assert!(
            endpoint.starts_with("0.0.0.0:") && endpoint.ends_with(&format!(":{port}")),
            "otlp {proto} must listen on 0.0.0.0:{port} to be reachable from other containers, got {endpoint}"
        );
        assert!(
            otel["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == &json!(format!("127.0.0.1:{port}:{port}"))),
            "OTLP {proto} is published on 127.0.0.1:{port}"
        );
    }
    let pipelines = cfg["service"]["pipelines"].as_object().expect("pipelines");
    for signal in ["traces", "metrics"] {
        assert!(pipelines.contains_key(signal), "no {signal} pipeline");
    }
    for (pipeline, p) in pipelines {
        for (kind, section) in [
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ] {
            for id in p[kind].as_array().into_iter().flatten() {
                let id = id.as_str().unwrap();
                assert!(
                    cfg[section].get(id).is_some(),
                    "pipeline {pipeline} uses undefined {kind} {id}"
                );
            }
        }
        assert!(
            p["receivers"].as_array().unwrap().contains(&json!("otlp")),
            "{pipeline} ignores OTLP"
        );
        assert!(
            !p["exporters"].as_array().unwrap().is_empty(),
            "{pipeline} exports nowhere"
        );
    }
    for id in cfg["service"]["extensions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert!(
            cfg["extensions"].get(id.as_str().unwrap()).is_some(),
            "extension {id} undefined"
        );
    }

    for (name, s) in adapters(&c) {
        let env = environment(s);
        let endpoint = Url::parse(&env["OTEL_EXPORTER_OTLP_ENDPOINT"]).unwrap();
        assert_eq!(endpoint.host_str(), Some("otel-collector"), "{name}");
        assert_eq!(endpoint.port(), Some(4318), "{name} speaks OTLP/HTTP");
    }
}

/// `config check` on an adapter service's mounted config with exactly its compose environment.
fn config_check(name: &str, service: &Value) -> String {
    let env = environment(service);
    let config_path = env
        .get("PORTARIUM_ST2_CONFIG")
        .unwrap_or_else(|| panic!("{name}: PORTARIUM_ST2_CONFIG is not set"));
    let file = host_file(service, config_path);
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&file)
        .env_clear()
        .envs(&env)
        .output()
        .unwrap();
    crate::support::succeeded(&out, &format!("{name}: config check"))
}

/// Every http(s) or nats URL among the string values of `v`.
fn urls_in(v: &Value, out: &mut Vec<Url>) {
    match v {
        Value::String(s) => {
            if let Ok(u) = Url::parse(s)
                && matches!(u.scheme(), "http" | "https" | "nats")
                && u.host_str().is_some()
            {
                out.push(u);
            }
        }
        Value::Array(a) => a.iter().for_each(|i| urls_in(i, out)),
        Value::Object(m) => m.values().for_each(|i| urls_in(i, out)),
        _ => {}
    }
}

#[test]
fn adapter_configs_pass_config_check_with_the_compose_environment() {
    let c = compose();
    let svcs = services(&c);
    let found = adapters(&c);
    let names: BTreeSet<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["adapter", "adapter-emulator"]));
    for (name, s) in found {
        let summary = config_check(name, s);
        assert_eq!(summary_field(&summary, "listen:"), "0.0.0.0:8787", "{name}");
        assert!(
            s["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p.as_str().is_some_and(|p| p.ends_with(":8787"))),
            "{name} publishes the port it listens on"
        );
        let user = &environment(s)["PORTARIUM_ST2_ST2__USERNAME"];
        assert_eq!(
            summary_field(&summary, "credential:"),
            format!("user {user}, password from env ST2_PASSWORD"),
            "{name}: secrets come from the environment, not the file"
        );
        let deps = depends_on(s);
        for (key, path) in [
            ("st2 api:", "/v1"),
            ("st2 auth:", "/v1"),
            ("st2 stream:", "/v1"),
        ] {
            let url = Url::parse(summary_field(&summary, key)).unwrap();
            let host = url.host_str().unwrap();
            assert!(
                svcs.contains_key(host),
                "{name}: {key} {url} is not a compose service"
            );
            assert!(deps.contains_key(host), "{name} does not wait for {host}");
            assert!(url.path().ends_with(path), "{name}: {key} {url}");
        }
    }
    // Every address in the mounted config (st2, scrape targets, NATS) is a service the
    // adapter waits for.
    let adapter = &svcs["adapter"];
    let file = host_file(adapter, &environment(adapter)["PORTARIUM_ST2_CONFIG"]);
    let mut urls = Vec::new();
    urls_in(
        &yaml(&std::fs::read_to_string(&file).unwrap(), "adapter config"),
        &mut urls,
    );
    assert!(!urls.is_empty());
    let deps = depends_on(adapter);
    for url in urls {
        let host = url.host_str().unwrap();
        assert!(
            deps.contains_key(host),
            "the adapter config names {url}, but the adapter does not wait for {host}"
        );
    }
    // The real stack reaches each st2 service on its own default port.
    let summary = config_check("adapter", &svcs["adapter"]);
    assert_eq!(summary_field(&summary, "st2 api:"), "http://st2api:9101/v1");
    assert_eq!(
        summary_field(&summary, "st2 auth:"),
        "http://st2auth:9100/v1"
    );
    assert_eq!(
        summary_field(&summary, "st2 stream:"),
        "http://st2stream:9102/v1"
    );
}

#[test]
fn user_packs_are_mounted_where_packs_base_paths_looks_in_every_service_that_reads_packs() {
    let c = compose();
    let conf = ini(&read("deploy/st2/st2.docker.conf"));
    let base_paths: Vec<&str> = conf["content"]["packs_base_paths"].split(':').collect();
    assert_eq!(base_paths, ["/opt/stackstorm/packs.dev"]);
    let mut readers = BTreeSet::new();
    for (name, s) in services(&c) {
        let ms = mounts(s);
        // Whoever reads the image's packs (the st2-packs volume) reads the user's too.
        if !ms.iter().any(|m| m.target == "/opt/stackstorm/packs") {
            continue;
        }
        readers.insert(name.as_str());
        let dev = ms
            .iter()
            .find(|m| m.source == PACKS_DEV)
            .unwrap_or_else(|| panic!("{name} reads packs but not {PACKS_DEV}"));
        assert_eq!(dev.target, base_paths[0], "{name}");
    }
    // st2-docker's set: the API (registration), the runner (actions), the sensor container,
    // and the CLI; plus this file's one-shot registration.
    assert_eq!(
        readers,
        BTreeSet::from([
            "st2api",
            "st2actionrunner",
            "st2sensorcontainer",
            "st2client",
            "st2-register-content",
        ])
    );
    // Only the CLI container, where users edit packs, may write to them.
    for (name, s) in services(&c) {
        let raw: Vec<&str> = s["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|v| v.contains("ST2_PACKS_DEV"))
            .collect();
        for v in raw {
            assert_eq!(v.ends_with(":ro"), name != "st2client", "{name}: {v}");
        }
    }
    let readme = read("packs.dev/README.md");
    assert!(readme.contains("st2 pack register"));
    assert!(compose_header().contains("exec st2client st2 pack register"));
}

#[test]
fn the_st2client_container_writes_the_cli_config_with_the_stack_credentials() {
    let c = compose();
    let svcs = services(&c);
    let client = &svcs["st2client"];
    let (repository, _, tag) = image(client);
    assert_eq!(
        repository, "stackstorm/st2actionrunner",
        "st2-docker's st2client image"
    );
    assert_eq!(tag, image(&svcs["st2api"]).2, "the cluster's st2 version");
    assert_eq!(client["init"], true, "sleep as PID 1 would ignore SIGTERM");
    let env = environment(client);
    let deps = depends_on(client);
    for (var, service, port) in [
        ("ST2_AUTH_URL", "st2auth", 9100),
        ("ST2_API_URL", "st2api", 9101),
        ("ST2_STREAM_URL", "st2stream", 9102),
    ] {
        let url = Url::parse(&env[var]).unwrap();
        assert_eq!(url.host_str(), Some(service), "{var}");
        assert_eq!(url.port(), Some(port), "{var}");
        assert_eq!(
            deps.get(service).map(String::as_str),
            Some("service_healthy")
        );
    }

    // Its command, run for real with the environment compose gives it and a home of its own,
    // leaves a CLI config (st2-docker's files/st2-cli.conf format) only its user can read,
    // holding the same user and password the adapter logs in with.
    let home = tempfile::tempdir().unwrap();
    let mut cmd = command(client);
    let sleep = cmd.pop().unwrap();
    assert!(sleep.ends_with("&& exec sleep infinity"), "{sleep}");
    let script = sleep.trim_end_matches("&& exec sleep infinity").to_string();
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", home.path())
        .envs(&env)
        .output()
        .unwrap();
    crate::support::succeeded(&out, "the st2client command");
    let file = home.path().join(".st2/config");
    let written = ini(&std::fs::read_to_string(&file).unwrap());
    let adapter = environment(&svcs["adapter"]);
    assert_eq!(
        written["credentials"]["username"],
        adapter["PORTARIUM_ST2_ST2__USERNAME"]
    );
    assert_eq!(written["credentials"]["password"], adapter["ST2_PASSWORD"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the CLI config holds a password");
}

#[test]
fn dockerfile_builds_locked_release_binaries_and_runs_them_as_non_root() {
    let stages = stages();
    assert!(stages.len() >= 2, "multi-stage build");
    let (build, runtime) = (&stages[0], stages.last().unwrap());
    let from = &build[0].1;
    assert!(from.starts_with("rust:1.95-bookworm"), "builder is {from}");
    let stage_name = from
        .split_whitespace()
        .skip_while(|w| !w.eq_ignore_ascii_case("AS"))
        .nth(1)
        .expect("the builder stage is named");
    let cargo = build
        .iter()
        .find(|(kw, a)| kw == "RUN" && a.contains("cargo build"))
        .map(|(_, a)| a.clone())
        .expect("the builder runs cargo build");
    for needed in [
        "--locked",
        "--release",
        "type=cache,target=/usr/local/cargo/registry",
    ] {
        assert!(
            cargo.contains(needed),
            "cargo build lacks {needed}: {cargo}"
        );
    }
    // The adapter is built without the emulator; the emulator is a binary (and image) apart.
    let builds: Vec<&str> = cargo
        .split("&&")
        .filter(|c| c.contains("cargo build"))
        .collect();
    let bin_of = |command: &str| -> String {
        let args: Vec<&str> = command.split_whitespace().collect();
        args.windows(2)
            .find(|w| w[0] == "--bin")
            .map(|w| w[1].to_string())
            .expect("each cargo build names its binary")
    };
    let adapter_build = builds
        .iter()
        .find(|c| bin_of(c) == "portarium-st2")
        .expect("the adapter is built");
    assert!(
        adapter_build.contains("--no-default-features"),
        "the adapter image must not link the emulator: {adapter_build}"
    );
    let bins: BTreeSet<String> = BTreeSet::from(["portarium-st2".to_string()]);
    let emulator_stage = stages
        .iter()
        .find(|st| st[0].1.split_whitespace().last() == Some("emulator"))
        .expect("an `emulator` build target");
    assert!(
        emulator_stage
            .iter()
            .any(|(kw, a)| kw == "COPY" && a.contains("/out/st2-emulator")),
        "the emulator target holds st2-emulator"
    );

    let runtime_from = &runtime[0].1;
    assert!(
        runtime_from.starts_with("debian:bookworm-slim")
            || runtime_from.starts_with("gcr.io/distroless/cc"),
        "runtime image is {runtime_from}"
    );
    let users: Vec<&String> = runtime
        .iter()
        .filter(|(kw, _)| kw == "USER")
        .map(|(_, a)| a)
        .collect();
    let user = users.last().expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "runs as root: USER {user}");
    for (kw, a) in runtime.iter().filter(|(kw, _)| kw == "COPY" || kw == "ADD") {
        assert!(
            kw == "COPY" && a.starts_with(&format!("--from={stage_name} ")),
            "the runtime gets only built binaries: {kw} {a}"
        );
        let copied: BTreeSet<String> = a
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .split_last()
            .unwrap()
            .1
            .iter()
            .map(|p| p.rsplit('/').next().unwrap().to_string())
            .collect();
        assert_eq!(copied, bins, "copies exactly the binaries it builds");
    }
    assert!(
        runtime
            .iter()
            .any(|(kw, a)| kw == "EXPOSE" && a.split_whitespace().any(|p| p == "8787")),
        "EXPOSE 8787"
    );
    let check = image_healthcheck();
    assert!(
        !check
            .iter()
            .any(|a| a.contains("curl") || a.contains("wget")),
        "the image has neither"
    );
    assert!(
        read(".dockerignore")
            .lines()
            .any(|l| l.trim().trim_start_matches('/') == "target")
    );

    // Every container running the image starts a binary the image contains.
    let c = compose();
    for (name, s) in services(&c) {
        if s["image"] == ADAPTER_IMAGE {
            let cmd = command(s);
            assert!(
                bins.contains(&cmd[0]),
                "{name} runs {}, not built into the image",
                cmd[0]
            );
        }
    }
}

/// Kills the child on drop so a failed assertion leaves no process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_emulator_profile_serves_a_dispatch_and_passes_both_healthchecks() {
    let c = compose();
    let svcs = services(&c);
    let emu_svc = &svcs["st2-emulator"];
    let emu_cmd = command(emu_svc);
    let (user, password) = flag(&emu_cmd, "--user")
        .expect("the emulator is given the adapter's user")
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .unwrap();
    let listen = flag(&emu_cmd, "--listen").expect("--listen");
    let emu_port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let emulator = rt
        .block_on(st2_emulator::Emulator::start(
            st2_emulator::EmulatorOptions {
                api_key: flag(&emu_cmd, "--api-key").expect("--api-key"),
                users: vec![st2_emulator::User {
                    name: user.clone(),
                    password,
                }],
                ..Default::default()
            },
        ))
        .unwrap();
    let emu_check: Vec<String> = emu_svc["healthcheck"]["test"]
        .as_array()
        .expect("st2-emulator has a healthcheck")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        healthcheck_passes(&emu_check, emu_port, emulator.addr().port()),
        "st2-emulator's healthcheck fails against a running emulator"
    );

    // adapter-emulator exactly as compose starts it, but with the compose host names
    // pointing at this emulator and the adapter on a free loopback port.
    let adapter = &svcs["adapter-emulator"];
    let mut env = environment(adapter);
    let config_file = host_file(adapter, &env["PORTARIUM_ST2_CONFIG"]);
    env.insert(
        "PORTARIUM_ST2_CONFIG".into(),
        config_file.display().to_string(),
    );
    let compose_base = format!("http://st2-emulator:{emu_port}");
    for v in env.values_mut() {
        *v = v.replace(&compose_base, &emulator.base_url());
    }
    let port = free_port();
    env.insert("PORTARIUM_ST2_LISTEN".into(), format!("127.0.0.1:{port}"));
    env.insert("NO_COLOR".into(), "1".into());
    let mut child = Command::new(BIN)
        .args(command(adapter).iter().skip(1))
        .env_clear()
        .envs(&env)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let adapter_proc = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the adapter did not report listening within 30 s"
        );
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the adapter exited early: {:?}", adapter_proc.0.id()))
            .unwrap();
        if line.contains(&format!("listening on http://127.0.0.1:{port}")) {
            break;
        }
    }

    let image_check = image_healthcheck();
    assert!(
        healthcheck_passes(&image_check, 8787, port),
        "the image HEALTHCHECK fails on a live adapter"
    );
    assert!(
        !healthcheck_passes(&image_check, 8787, free_port()),
        "the image HEALTHCHECK passes with nothing listening"
    );

    let cfg = yaml(
        &std::fs::read_to_string(&config_file).unwrap(),
        "adapter config",
    );
    let tenant = &cfg["tenants"][0];
    let token_ref = tenant["api_token"].as_str().unwrap();
    let token = token_ref
        .strip_prefix("env:")
        .map(|var| env[var].clone())
        .unwrap_or_else(|| token_ref.to_string());
    let result: Value = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/dispatch"))
            .bearer_auth(&token)
            .json(&json!({
                "actionId": "compose-1", "tenantId": tenant["id"], "runId": "r1",
                "correlationId": "c1", "flowRef": "core.echo",
                "payload": {"message": "through the compose wiring"}
            }))
            .send_json()
            .await
    });
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(
        result["output"]["result"]["stdout"], "through the compose wiring",
        "{result}"
    );
    let logins = emulator
        .request_log()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/auth/v1/tokens" && r.status == 201)
        .count();
    assert!(
        logins >= 1,
        "the adapter logged in as {user} with the compose password"
    );
    drop(adapter_proc);
    rt.block_on(emulator.shutdown());
}

#[test]
fn interpolation_follows_compose_rules() {
    let (s, refs) = interpolate("a ${X:-1} b ${Y-two} $$HOME ${Z}").unwrap();
    assert_eq!(s, "a 1 b two $HOME ");
    let names: Vec<(&str, Option<&str>)> = refs
        .iter()
        .map(|r| (r.name.as_str(), r.default.as_deref()))
        .collect();
    assert_eq!(names, [("X", Some("1")), ("Y", Some("two")), ("Z", None)]);
    for bad in ["$HOME", "${X:?required}", "${:-x}", "${X"] {
        assert!(interpolate(bad).is_err(), "{bad} should be refused");
    }
}
