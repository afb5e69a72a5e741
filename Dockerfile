# portico container image.
#
#   docker build -t portico .
#   docker run --rm -p 4180:4180 \
#     -v "$PWD/config/portico.compose.toml:/etc/portico/portico.toml:ro" \
#     -e PORTICO_SESSION__COOKIE_SECRET -e PORTICO_OIDC__CLIENT_SECRET portico
#
# The HTML templates are compiled into the binary (askama), and so is the
# demo config, so the runtime image holds the binary and CA certificates only.

# Build stage.
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked

# Runtime stage.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 portico \
 && useradd --system --uid 10001 --gid portico --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin portico \
 && mkdir -p /etc/portico
COPY --from=builder /src/target/release/portico /usr/local/bin/portico
USER portico:portico
EXPOSE 4180
ENTRYPOINT ["portico"]
CMD ["--config", "/etc/portico/portico.toml"]
