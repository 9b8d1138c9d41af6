# The xds-ingress control-plane image. Envoy itself runs from the upstream image
# (envoyproxy/envoy, pinned in deploy/base/envoy.yaml to the version the tests use).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY xds_ingress ./xds_ingress
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
# Non-root, no shell needed at run time; the root filesystem can be read-only.
USER 65532:65532
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 18000 9090
ENTRYPOINT ["xds"]
CMD ["serve", "--help"]
