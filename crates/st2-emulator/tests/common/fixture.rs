//! The setup both emulator test binaries share: an in-process emulator on 127.0.0.1:0 and an HTTP
//! client whose requests are bounded in time, so a hung answer fails a test instead of stalling it.

use std::time::Duration;

use st2_emulator::{Emulator, EmulatorOptions};

/// A started emulator and a client that gives up on any request after `timeout`.
pub async fn started(options: EmulatorOptions, timeout: Duration) -> (Emulator, reqwest::Client) {
    let emulator = Emulator::start(options)
        .await
        .expect("emulator starts on 127.0.0.1:0");
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("reqwest client");
    (emulator, http)
}
