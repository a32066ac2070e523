//! Contract tests for `st2-emulator`: its answers must match a real st2's — the OpenAPI spec st2
//! ships (`st2common/st2common/openapi.yaml`) and the responses recorded from a real st2 3.10dev
//! (`captures/`), both in the reference folder `ST2_REFERENCE_DIR` names (see the workspace's
//! `tests/it/support/reference.rs`, shared by every test binary): same fields, types, nesting,
//! status codes and headers, and the same SSE byte framing including keep-alives.
//!
//! `harness` proves the tools on the captures alone; `rest` and `stream` replay each capture's
//! request against an in-process emulator. `cases.rs` maps every capture file to its request or
//! to the reason it is not replayed.

#[path = "contract/capture.rs"]
mod capture;
#[path = "contract/cases.rs"]
mod cases;
#[path = "contract/check.rs"]
mod check;
#[path = "contract/client.rs"]
mod client;
#[path = "common/fixture.rs"]
mod fixture;
#[path = "contract/harness.rs"]
mod harness;
#[path = "contract/openapi.rs"]
mod openapi;
#[path = "../../../tests/it/support/reference.rs"]
mod reference;
#[path = "contract/rest.rs"]
mod rest;
#[path = "contract/shape.rs"]
mod shape;
#[path = "contract/sse.rs"]
mod sse;
#[path = "contract/stream.rs"]
mod stream;
