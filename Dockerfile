# A static nsguard in a distroless image, running as non-root (UID 65532).
# Build: docker build -t ghcr.io/nsguard/nsguard:0.1.0 .
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update \
    && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin nsguard --target x86_64-unknown-linux-musl \
    && cp target/x86_64-unknown-linux-musl/release/nsguard /nsguard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /nsguard /nsguard
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/nsguard"]
CMD ["serve"]
