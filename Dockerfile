# nsguard on distroless (glibc, no shell), running as non-root (UID 65532).
# Build: docker build -t ghcr.io/nsguard/nsguard:0.1.0 .
#
# The binary is the same glibc release build that `make bench` measures, so the figures in
# docs/benchmarks.md are those of the allocator the image runs (glibc's malloc; a static musl
# build would run musl's, which is slower under threads and holds freed memory).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin nsguard && cp target/release/nsguard /nsguard

# Debian 12, as the build stage: the binary needs only the glibc it was linked against.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /nsguard /nsguard
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/nsguard"]
CMD ["serve"]
