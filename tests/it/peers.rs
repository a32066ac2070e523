//! Defects found against real peers (issue 18): each test drives the real peer (the binary, a
//! nats-server, the emulator over HTTP, TLS clients, an OTLP receiver) the way it was found.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portarium-st2");

/// Runs the binary under a 256 MB address-space cap and a 10 s deadline, so a runaway loop
/// fails the test instead of the machine.
fn run_bounded(args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -v 262144; exec "$@""#)
        .arg("sh")
        .arg(BIN)
        .args(args)
        .env_remove("PORTARIUM_ST2_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("portarium-st2 {args:?} still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

#[test]
fn manifest_check_stops_at_a_yaml_syntax_error_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "schemaVersion: [1\n").unwrap();
    let (code, stderr) = run_bounded(&["manifest", "check", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.matches("not valid YAML").count(), 1, "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
}

/// A file named where a config, manifest or policy belongs that is a device or a directory is
/// refused at once, never read without end.
#[test]
fn commands_refuse_a_device_or_directory_given_as_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("adapter-manifest.yaml");
    std::fs::write(
        &manifest,
        "schemaVersion: 1\nx-st2: {packsPolicy: /dev/zero}\n",
    )
    .unwrap();
    for args in [
        vec!["config", "check", "/dev/zero"],
        vec!["config", "check", dir.path().to_str().unwrap()],
        vec!["manifest", "check", "/dev/zero"],
        vec!["manifest", "check", manifest.to_str().unwrap()],
    ] {
        let (code, stderr) = run_bounded(&args);
        assert!(matches!(code, Some(1 | 2)), "{args:?}: {code:?} {stderr}");
        assert!(stderr.contains("not a regular file"), "{args:?}: {stderr}");
    }
}

mod loops {
    use std::time::Duration;

    use portarium_st2::app::App;
    use portarium_st2::config::Config;
    use serde_json::{Value, json};
    use st2_emulator::{Emulator, EmulatorOptions};

    use crate::support::free_port;
    use crate::support::nats::NatsServer;

    const KEY: &str = "loop-key";

    /// The sink and the inbound consumer on one stream and one subject space, with a class
    /// that fires a rule whose execution (pack `core`, governed) emits that class again.
    fn yaml(st2: &str, nats: &str, class: &str) -> String {
        format!(
            "st2: {{base_url: '{st2}', api_key: {KEY}}}\n\
             tenants:\n  - {{id: tenant-a, api_token: token-a}}\n\
             events:\n  lifecycle: {{governed_packs: [core], governed_tenant: tenant-a}}\n\
             \x20 nats: {{url: '{nats}', stream: PORTARIUM_EVENTS, subject_prefix: portarium.events}}\n\
             \x20 inbound:\n    classes:\n      - {{type: {class}, trigger: portarium.event}}\n\
             \x20   nats: {{url: '{nats}', backoff: {{initial: 20ms, max: 200ms}}}}\n"
        )
    }

    async fn st2_get(emu: &Emulator, path: &str) -> Vec<Value> {
        reqwest::Client::new()
            .get(format!("{}/api/v1/{path}", emu.base_url()))
            .header("St2-Api-Key", KEY)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    #[test]
    fn config_check_refuses_an_inbound_class_the_adapter_emits() {
        let err = Config::from_yaml(
            &yaml(
                "http://127.0.0.1:1",
                "nats://127.0.0.1:1",
                "com.portarium.run.ActionCompleted",
            ),
            "test",
            std::iter::empty(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("events.inbound.classes[0].type: com.portarium.run.ActionCompleted is a lifecycle event this adapter emits, and here it fires trigger portarium.event"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn own_lifecycle_events_on_a_shared_stream_start_nothing() {
        let mut server = NatsServer::on_port(free_port());
        server.start();
        let js = server.portarium_stream().await;
        let emu = Emulator::start(EmulatorOptions {
            api_key: KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        // A config the check refuses (above) but that an older adapter accepted: the runtime
        // defence must hold on its own.
        let mut config = Config::from_yaml(
            &yaml(
                &emu.base_url(),
                &server.url(),
                "com.portarium.run.RunStarted",
            ),
            "test",
            std::iter::empty(),
        )
        .unwrap();
        config.events.inbound.classes[0].event_type = "com.portarium.run.ActionCompleted".into();
        let app = App::build(&config, Duration::ZERO).await.unwrap();

        let created = reqwest::Client::new()
            .post(format!("{}/api/v1/executions", emu.base_url()))
            .header("St2-Api-Key", KEY)
            .json(&json!({"action": "core.echo", "parameters": {"message": "once"}}))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());

        // The lifecycle events land on the stream the consumer reads...
        let mut stream = js.get_stream("PORTARIUM_EVENTS").await.unwrap();
        let mut published = 0;
        for _ in 0..250 {
            published = stream.info().await.unwrap().state.messages;
            if published >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            published >= 2,
            "ActionDispatched and ActionCompleted published"
        );
        // ...and the consumer has taken all of them.
        let mut consumer = js
            .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                "portarium-st2-inbound",
                "PORTARIUM_EVENTS",
            )
            .await
            .unwrap();
        for _ in 0..250 {
            let info = consumer.info().await.unwrap();
            if info.num_pending == 0
                && info.num_ack_pending == 0
                && info.delivered.stream_sequence >= published
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A loop would have fired a trigger and started more executions by now.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(st2_get(&emu, "triggerinstances").await.len(), 0);
        assert_eq!(st2_get(&emu, "executions").await.len(), 1);
        assert_eq!(stream.info().await.unwrap().state.messages, published);
        app.shutdown(Duration::from_millis(500)).await;
    }
}

mod counter_reset {
    use std::time::{Duration, Instant};

    use portarium_st2::config::Config;
    use portarium_st2::telemetry::Telemetry;
    use serde_json::json;
    use st2_emulator::{Emulator, EmulatorOptions};

    use crate::telemetry::{Receiver, st2_metrics, sum_point};

    /// Runs `examples.fail` on the emulator directly, as an operator would in st2.
    async fn fail_once(emu: &Emulator) {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/executions", emu.base_url()))
            .header("St2-Api-Key", "emulator-api-key")
            .json(&json!({"action": "examples.fail"}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }

    /// The newest exported `st2.action.executions{examples.fail}`: value and start time.
    async fn exported(receiver: &Receiver, at_least: f64) -> (f64, u64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some((p, _)) = sum_point(
                &st2_metrics(receiver),
                "st2.action.executions",
                "st2.action.ref",
                "examples.fail",
            ) {
                let v = crate::telemetry::number(&p);
                if v >= at_least {
                    return (v, p.start_time_unix_nano);
                }
            }
            assert!(Instant::now() < deadline, "no export reached {at_least}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exporter_restart_moves_the_start_time_even_when_the_total_climbs_back() {
        let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
        let addr = emu.addr();
        let (receiver, collector) = Receiver::start().await;
        let yaml = format!(
            "st2: {{base_url: '{base}', api_key: emulator-api-key}}\n\
             telemetry:\n  targets: ['{base}/metrics']\n  interval_ms: 1000\n  timeout_ms: 1000\n  \
             otlp: {{endpoint: '{collector}', protocol: http/protobuf}}\n",
            base = emu.base_url()
        );
        let config = Config::from_yaml(&yaml, "test", std::iter::empty()).unwrap();
        let telemetry = Telemetry::start(&config.telemetry).unwrap();

        fail_once(&emu).await;
        let (_, first_start) = exported(&receiver, 1.0).await;
        // Killed and started again on the same port: a new process, counting from zero...
        emu.shutdown().await;
        let emu = Emulator::start(EmulatorOptions {
            listen: addr,
            ..Default::default()
        })
        .await
        .unwrap();
        // ...and past the old total before the next scrape sees it.
        fail_once(&emu).await;
        fail_once(&emu).await;
        let (value, start) = exported(&receiver, 2.0).await;
        assert_eq!(value, 2.0);
        assert!(
            start > first_start,
            "the series still starts at {first_start}: consumers take 2 as 1 more"
        );
        telemetry.shutdown().await;
    }
}

mod tls_early_answers {
    use crate::support::stack::Stack;
    use crate::support::tls_file;

    async fn stack() -> Stack {
        Stack::builder()
            .tenant("t1", "right-token")
            .yaml(&format!(
                "server: {{tls: {{cert_file: '{}', key_file: '{}'}}}}\n",
                tls_file("server.pem").display(),
                tls_file("server.key").display()
            ))
            .start()
            .await
    }

    fn client(http2: bool) -> reqwest::Client {
        let ca = std::fs::read(tls_file("ca.pem")).unwrap();
        // A new connection per request, as the defect was seen: an early answer closes the
        // HTTP/1.1 connection, and a pooled one may be reused as it closes.
        let builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .pool_max_idle_per_host(0);
        let builder = if http2 {
            // h2 chosen by ALPN, as a browser or curl would.
            builder
        } else {
            builder.http1_only()
        };
        builder.build().unwrap()
    }

    /// Every answer arrives whole: none lost to a connection torn down under the client.
    async fn answers(
        client: &reqwest::Client,
        url: &str,
        token: Option<&str>,
        size: usize,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..10 {
            let mut req = client
                .post(url)
                .header("content-type", "application/json")
                .body(vec![b' '; size]);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            out.push(match req.send().await {
                Ok(r) => format!("{:?} {}", r.version(), r.status().as_u16()),
                Err(e) => format!("{e:?}"),
            });
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_401_before_the_body_reaches_an_http1_client() {
        let s = stack().await;
        let url = format!("{}/v1/dispatch", s.base);
        let got = answers(&client(false), &url, None, 200 * 1024).await;
        assert!(got.iter().all(|a| a == "HTTP/1.1 401"), "{got:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_413_before_the_body_reaches_an_http2_client() {
        let s = stack().await;
        let url = format!("{}/v1/dispatch", s.base);
        let got = answers(&client(true), &url, Some("right-token"), 2 * 1024 * 1024).await;
        assert!(got.iter().all(|a| a == "HTTP/2.0 413"), "{got:?}");
    }
}
