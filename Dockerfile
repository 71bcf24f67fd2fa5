# One image for the whole bench: every simulator, the network layer (mitmproxy in its own virtual environment:
# its pins conflict with the bench's), the HTTPS front door and the reference LGC. The command chooses.
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/segur-bench
COPY pyproject.toml README.md ./
COPY segur_bench ./segur_bench
COPY simulators ./simulators
COPY reference_lgc ./reference_lgc
COPY network_proxy ./network_proxy
COPY scenarios ./scenarios
COPY proofs ./proofs
COPY proofs_video ./proofs_video
COPY console ./console
RUN pip install --no-cache-dir . \
 && python -m venv /opt/mitm && /opt/mitm/bin/pip install --no-cache-dir "mitmproxy>=11.0.2,<12" \
 && useradd --system --create-home bench && mkdir /data && chown bench /data
USER bench
ENV SEGUR_BENCH_INCIDENTS=/opt/segur-bench/scenarios/incidents \
    SEGUR_BENCH_MITMDUMP=/opt/mitm/bin/mitmdump
VOLUME ["/data"]
ENTRYPOINT ["segur-bench"]
