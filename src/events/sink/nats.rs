//! NATS JetStream sink: each event on `<prefix>.<type without com.portarium.>` (Portarium's
//! own subject scheme), with `Nats-Msg-Id` = the event id so JetStream drops a republished
//! duplicate within its duplicate window; an event counts as delivered only once JetStream
//! acknowledged storing it.
//!
//! The connection authenticates with a credentials file, an NKey seed or user and password,
//! over TLS (with a client certificate for mutual TLS) when configured; a stream the sink
//! creates gets `stream_limits` (max age, max bytes, duplicate window).
//!
//! Client: `async-nats` without its `server_2_10`+ features, so stream configs carry nothing
//! a 2.9 server (Debian's `nats-server`) rejects. It reconnects on its own; this sink re-sends
//! the event at the head of the queue until an ack arrives.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::{ConnectOptions, HeaderMap};
use bytes::Bytes;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use super::{Attempt, SinkHandle, spawn};
use crate::events::EventsError;
use crate::events::cloudevent::CloudEvent;
use crate::events::config::NatsSinkConfig;

/// Starts the NATS sink's worker. The server need not be up yet: the client keeps
/// connecting in the background and events wait in the queue.
pub async fn start(config: &NatsSinkConfig) -> Result<(SinkHandle, JoinHandle<()>), EventsError> {
    let backoff = config.delivery.backoff.clone();
    let options = connect_options(config)
        .await?
        .retry_on_initial_connect()
        .event_callback(|event| async move { log_connection_event(&event) })
        .reconnect_delay_callback(move |attempts| {
            backoff.delay(u32::try_from(attempts).unwrap_or(u32::MAX))
        });
    let client = options
        .connect(config.url.expose())
        .await
        .map_err(|e| EventsError::Config {
            field: "events.nats.url".into(),
            reason: format!("{e}; write it as nats://host:port (or tls://host:port)"),
        })?;
    let js = jetstream::new(client);
    let limits = &config.stream_limits;
    let stream = Arc::new(jetstream::stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        max_age: limits.max_age,
        max_bytes: i64::try_from(limits.max_bytes).unwrap_or(i64::MAX),
        duplicate_window: limits.duplicate_window,
        ..Default::default()
    });
    let ensured = Arc::new(OnceCell::new());
    let prefix = config.subject_prefix.clone();
    let ack_timeout = Duration::from_millis(config.ack_timeout_ms);
    let deliver = move |event: Arc<CloudEvent>| {
        let (js, stream, ensured) = (js.clone(), stream.clone(), ensured.clone());
        let subject = event.nats_subject(&prefix);
        async move {
            let retry = |reason: String| Attempt::Retry {
                reason,
                after: None,
            };
            ensured
                .get_or_try_init(|| async {
                    tokio::time::timeout(ack_timeout, js.get_or_create_stream((*stream).clone()))
                        .await
                        .map_err(|_| "JetStream did not answer".to_string())?
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| retry(format!("stream {}: {e}", stream.name)))?;
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.id.as_str());
            let payload = Bytes::from(serde_json::to_vec(&*event).unwrap_or_default());
            let ack = async {
                js.publish_with_headers(subject.clone(), headers, payload)
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(ack_timeout, ack).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(retry(format!("publish to {subject}: {e}"))),
                Err(_) => Err(retry(format!("no JetStream ack for {subject} in time"))),
            }
        }
    };
    Ok(spawn("nats", &config.delivery, deliver))
}

/// Logs what the NATS client reports; a refused login says which settings to check, since
/// the server tells the client no more than "authorization violation".
fn log_connection_event(event: &async_nats::Event) {
    use async_nats::{ClientError, Event};
    match event {
        Event::ClientError(ClientError::Other(e)) if e.contains("authorization violation") => {
            tracing::warn!(
                %event,
                "NATS refused this adapter's credentials; lifecycle events wait in the queue. \
                 Check events.nats: a credentials_file's user JWT must be signed by an account \
                 the server trusts and be neither expired nor revoked (the server's log names \
                 which); nkey, user and password must match the server's authorization block"
            );
        }
        Event::ClientError(_) | Event::ServerError(_) => {
            tracing::warn!(%event, "NATS connection problem; lifecycle events wait in the queue");
        }
        _ => tracing::info!(%event, "NATS connection event"),
    }
}

/// The credentials and TLS settings of `config` as client options.
async fn connect_options(config: &NatsSinkConfig) -> Result<ConnectOptions, EventsError> {
    let bad = |field: &str, reason: String| EventsError::Config {
        field: format!("events.nats.{field}"),
        reason,
    };
    let mut options = match &config.credentials_file {
        Some(path) => ConnectOptions::with_credentials_file(path.clone())
            .await
            .map_err(|e| {
                bad(
                    "credentials_file",
                    format!(
                        "cannot use {}: {e}; give the .creds file the NATS operator issued",
                        path.display()
                    ),
                )
            })?,
        None => ConnectOptions::new(),
    };
    if let Some(seed) = &config.nkey {
        if !seed.expose().starts_with("SU") {
            return Err(bad(
                "nkey",
                "is not a user NKey seed (it starts with SU); give the seed, not the public key"
                    .into(),
            ));
        }
        options = options.nkey(seed.expose().to_string());
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.expose().to_string());
    }
    if let Some(tls) = &config.tls {
        options = options.require_tls(true);
        for path in [&tls.ca_file, &tls.cert_file, &tls.key_file]
            .into_iter()
            .flatten()
        {
            if let Err(e) = std::fs::metadata(path) {
                return Err(bad(
                    "tls",
                    format!(
                        "cannot read {}: {e}; check the path and its permissions",
                        path.display()
                    ),
                ));
            }
        }
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    Ok(options)
}
