#!/usr/bin/env bash
# Writes a CycloneDX SBOM (JSON) of every workspace crate and its dependencies into target/sbom/,
# one file per crate (portarium-st2.cdx.json is the adapter's). Installs cargo-cyclonedx
# when missing. Reads Cargo.lock only; nothing is built.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-cyclonedx >/dev/null; then
    cargo install --locked cargo-cyclonedx
fi
cargo cyclonedx --format json
mkdir -p target/sbom
# cargo-cyclonedx writes each crate's SBOM beside its Cargo.toml.
find . -path ./target -prune -o -name '*.cdx.json' -print | while read -r file; do
    mv "$file" target/sbom/
done
ls target/sbom
