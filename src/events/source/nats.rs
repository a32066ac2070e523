//! The JetStream source of Portarium events, beside the NATS sink: a durable pull consumer
//! whose messages go through the same checks as `POST /v1/events`.

use st2_basics::Backoff;

use super::TenantClients;
use crate::events::Inbound;
use crate::events::config::InboundNatsConfig;
use crate::events::inbound::{InboundError, Outcome, Received};

/// Takes Portarium's events from JetStream (`events.inbound.nats`) through a durable pull
/// consumer and runs each through the same checks as `POST /v1/events`, the tenant being the
/// event's `tenantid` (it must be a configured tenant). An event is acknowledged once st2 took
/// its trigger or it was refused for good (logged); when st2 fails it is redelivered after
/// `backoff.max`. Connection failures are retried with the shared backoff, forever:
/// the task ends only when aborted.
pub fn spawn(
    inbound: Inbound,
    tenants: TenantClients,
    config: InboundNatsConfig,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(config.backoff.clone());
        loop {
            match consume(&inbound, &tenants, &config, &mut backoff).await {
                Ok(()) => tracing::warn!("Portarium event stream ended; reconnecting"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot consume Portarium events from NATS; retrying")
                }
            }
            backoff.wait().await;
        }
    })
}

/// One consumer session; `backoff` restarts from `initial` once a message arrives.
async fn consume(
    inbound: &Inbound,
    tenants: &TenantClients,
    config: &InboundNatsConfig,
    backoff: &mut Backoff,
) -> Result<(), String> {
    use async_nats::jetstream::{self, AckKind, consumer};
    use futures_util::StreamExt;
    let client = async_nats::connect(config.url.as_str())
        .await
        .map_err(|e| format!("{}: {e}", config.url))?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| format!("stream {}: {e}", config.stream))?;
    let pull: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.durable,
            consumer::pull::Config {
                durable_name: Some(config.durable.clone()),
                filter_subject: config.filter_subject.clone(),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {}: {e}", config.durable))?;
    let mut messages = pull.messages().await.map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        backoff.reset();
        let ack = match handle(inbound, tenants, &message.payload).await {
            Ok(()) => AckKind::Ack,
            Err(InboundError::St2 { .. }) => AckKind::Nak(Some(config.backoff.max)),
            // Expected when the sink and this consumer share subjects: skipped without noise.
            Err(e @ InboundError::OwnEvent { .. }) => {
                tracing::debug!(subject = %message.subject, error = %e, "own lifecycle event skipped");
                AckKind::Ack
            }
            Err(e) => {
                tracing::warn!(subject = %message.subject, error = %e, "Portarium event refused");
                AckKind::Term
            }
        };
        message.ack_with(ack).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs one message through the inbound checks as its `tenantid`'s event.
async fn handle(
    inbound: &Inbound,
    tenants: &TenantClients,
    payload: &[u8],
) -> Result<(), InboundError> {
    let received = Received::parse(payload)?;
    let tenant_id = received.tenantid().to_string();
    let Some(st2) = tenants(&tenant_id) else {
        return Err(InboundError::WrongTenant {
            event: tenant_id,
            caller: "any configured tenant".into(),
        });
    };
    match inbound.accept(&tenant_id, received, &st2).await {
        Ok((event, Outcome::Fired { target })) => {
            tracing::info!(id = %event.id, %target, "Portarium event fired an st2 trigger");
            Ok(())
        }
        Ok((event, Outcome::Duplicate)) => {
            tracing::debug!(id = %event.id, "Portarium event redelivered; ignored");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
