# Magpie as a sidecar: one static binary, nothing else. Build with `make image` (podman) or
#   make static && docker build -t magpie .
FROM scratch
COPY build/magpie-static /magpie
# Not root: nobody's uid and gid. The image has no /etc/passwd, so it is given by number.
USER 65534:65534
EXPOSE 11211
# No shell in the image: the binary is its own probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=2s --retries=3 CMD ["/magpie", "--health", "127.0.0.1:11211"]
ENTRYPOINT ["/magpie"]
# A sidecar shares its application's network namespace, so loopback is where it is reached.
# Standalone: podman run -p 11211:11211 magpie -l 0.0.0.0
CMD ["-l", "127.0.0.1", "-p", "11211"]
