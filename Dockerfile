# syntax=docker/dockerfile:1
# portarium-st2, built without the st2 emulator (--no-default-features), as the default image;
# st2-emulator, for the compose file's emulator profile, as a separate image:
#   docker build -t portarium-st2:dev .
#   docker build --target emulator -t portarium-st2-emulator:dev .
# Identify the build (the OCI labels and `portarium-st2 --version`; .git is not in the context):
#   docker build --build-arg REVISION="$(git rev-parse --short HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t portarium-st2:dev .
# Runs `portarium-st2 serve`; mount a config and point PORTARIUM_ST2_CONFIG at it
# (docker-compose.st2.yml does both). The config must set `listen: 0.0.0.0:8787`: the
# default, 127.0.0.1, is unreachable from outside the container, and the HEALTHCHECK
# asks port 8787.

FROM rust:1.95-bookworm AS build
ARG REVISION=unknown
WORKDIR /src
COPY . .
# The registry, git checkouts and target/ live in BuildKit caches, so a rebuild after a
# source change recompiles only this workspace. target/ is a cache mount, which is not
# part of the image, so the binaries are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    PORTARIUM_BUILD_COMMIT="$REVISION" cargo build --locked --release \
        -p portarium-st2 --no-default-features --bin portarium-st2 \
    && cargo build --locked --release -p st2-emulator --bin st2-emulator \
    && mkdir -p /out \
    && cp target/release/portarium-st2 target/release/st2-emulator /out/

# The emulator's own image (a build target; the default image below has no emulator).
FROM debian:bookworm-slim AS emulator
RUN groupadd --system --gid 10001 portarium \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin portarium
COPY --from=build /out/st2-emulator /usr/local/bin/
USER 10001:10001
EXPOSE 9101
CMD ["st2-emulator", "--listen=0.0.0.0:9101"]

FROM debian:bookworm-slim
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="portarium-st2" \
      org.opencontainers.image.description="Runs Portarium action dispatches on a StackStorm (st2) cluster" \
      org.opencontainers.image.source="https://github.com/portarium/portarium-st2" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.created="$CREATED"
# ca-certificates: the st2 client verifies TLS against the system roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 portarium \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin portarium
COPY --from=build /out/portarium-st2 /usr/local/bin/
USER 10001:10001
EXPOSE 8787
# No curl in the image: bash opens the socket itself and asks /healthz (the process
# answers; /readyz is for load balancers, since it also depends on st2).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8787 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
CMD ["portarium-st2", "serve"]
