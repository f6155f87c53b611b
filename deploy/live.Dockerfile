# Image for `otids live` (deploy/docker-compose.live.yml). Build from the repository root:
#   docker build -f deploy/live.Dockerfile -t otids:live .
FROM python:3.11-slim-bookworm
# libpcap compiles --bpf filters (through scapy); ethtool lets an operator check GRO/LRO on the span port
RUN apt-get update && apt-get install -y --no-install-recommends libpcap0.8 ethtool \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin --uid 990 otids \
    && mkdir -p /var/lib/otids/evidence /var/log/otids /etc/otids \
    && chown -R otids:otids /var/lib/otids /var/log/otids
WORKDIR /src
COPY pyproject.toml ./
COPY ids ./ids
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /var/lib/otids
# Starts as root only to open the capture sockets, then drops to `otids` with CAP_NET_RAW alone
# (--user below; see docs/LIVE.md). The compose file grants no other capability.
ENTRYPOINT ["otids", "live", "--user", "otids"]
CMD ["-c", "/etc/otids/otids.yaml"]
