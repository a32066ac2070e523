//! Telemetry, laid out as a pipeline: [`scrape`] polls st2's metrics (Prometheus text from a
//! statsd exporter), [`parse`] reads the page, [`normalize`] turns it into the OpenTelemetry
//! metric model with st2's keys as attributes ([`st2`] knows the keys), and [`export`] sends
//! it over OTLP. [`own`] is the adapter's own telemetry: a span per dispatch, Portarium's
//! action metrics, and `GET /metrics`.

pub mod config;
pub mod export;
pub mod normalize;
pub mod parse;
pub mod st2;

pub use config::{OtlpConfig, OtlpSettings, Protocol, TelemetryConfig};
