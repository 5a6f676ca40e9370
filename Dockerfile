# Cairn in a container: `docker build -t cairn .` then
#   docker run -d --name cairn --stop-timeout 60 -p 5480:5480 -p 127.0.0.1:9187:9187 \
#     -v cairn-data:/var/lib/cairn -e CAIRN_ADMIN_PASSWORD=… cairn
# Data and local backups live in the volume /var/lib/cairn; the config is
# /etc/cairn/cairn.toml (contrib/cairn.toml; mount your own over it).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin cairn

FROM debian:bookworm-slim
# The system's CA certificates: object storage over HTTPS is verified against them. Debian's
# current package, not a pinned version, so that security updates land on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 999 --home-dir /var/lib/cairn --shell /usr/sbin/nologin cairn \
    && install -d -o cairn -g cairn -m 0700 /var/lib/cairn \
    && install -d -m 0755 /etc/cairn/plugins
COPY --from=build /src/target/release/cairn /usr/local/bin/cairn
COPY contrib/cairn.toml config/automatic-backup.toml /etc/cairn/
# Inside the container the server must answer on every interface of its own network.
RUN sed -i 's/"127.0.0.1:/"0.0.0.0:/' /etc/cairn/cairn.toml
USER 999:999
VOLUME ["/var/lib/cairn"]
EXPOSE 5480 9187
# Running, and its /status endpoint answering (exit status 0), as `cairn status` checks.
HEALTHCHECK --interval=30s --timeout=10s CMD ["cairn", "status", "--config", "/etc/cairn/cairn.toml"]
STOPSIGNAL SIGTERM
CMD ["cairn", "serve", "--config", "/etc/cairn/cairn.toml"]
