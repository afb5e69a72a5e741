# portico container image.
#
#   docker build -t portico .
#   docker run --rm -p 127.0.0.1:4180:4180 -p 127.0.0.1:4181:4181 portico \
#     demo --listen 0.0.0.0:4180 --public-url http://127.0.0.1:4180
#
# runs the demo on its own (no account, no files; sessions in memory): open
# http://127.0.0.1:4180. With your own config the image serves it:
#
#   docker run --rm -p 127.0.0.1:4180:4180 \
#     -v "$PWD/portico.toml:/etc/portico/portico.toml:ro" \
#     -e PORTICO_SESSION__COOKIE_SECRET -e PORTICO_OIDC__CLIENT_SECRET portico
#
# (`listen = "0.0.0.0:4180"` in that file, so the published port reaches it.)
# docker-compose.yml runs the demo with Redis, and Descope as a profile.
# The HTML templates are compiled into the binary (askama), and so is the
# demo config, so the runtime image holds the binary and CA certificates only.
# tests/integration/compose.rs runs the demo example above.

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
# portico health asks /readyz on 127.0.0.1:4180 (the image has no curl).
HEALTHCHECK --interval=10s --timeout=7s --start-period=10s --retries=3 \
  CMD ["portico", "health", "--url", "http://127.0.0.1:4180/readyz"]
ENTRYPOINT ["portico"]
CMD ["--config", "/etc/portico/portico.toml"]
