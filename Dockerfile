# One image for every simulator (and, later, the reference LGC): the service is chosen by the command.
FROM python:3.11-slim
WORKDIR /opt/segur-bench
COPY pyproject.toml README.md ./
COPY segur_bench ./segur_bench
COPY simulators ./simulators
COPY scenarios/incidents ./scenarios/incidents
RUN pip install --no-cache-dir . && useradd --system --create-home bench && mkdir /data && chown bench /data
USER bench
ENV SEGUR_BENCH_INCIDENTS=/opt/segur-bench/scenarios/incidents
VOLUME ["/data"]
ENTRYPOINT ["segur-bench"]
