# kiln as a SageMaker training and inference container (the SageMaker container contract: docs/container.md).
#   docker run IMAGE train   -> kiln train: the training-container contract on /opt/ml
#   docker run IMAGE serve   -> kiln serve: /ping and /invocations on port 8080, model in /opt/ml/model
# Multi-stage on Debian 12: the build stage compiles a generic x86-64 binary (kernels for AVX2 and
# AVX-512 are chosen at run time, never -march=native); the runtime stage holds only the binary and
# the shared libraries it links. Nothing is put under /opt/ml: SageMaker mounts it.
# Build and push: docs/container.md (a Docker v2 schema-2, linux/amd64 manifest; SageMaker rejects OCI).

FROM debian:12 AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      meson ninja-build pkg-config g++ \
      libdnnl-dev libcpp-httplib-dev libssl-dev zlib1g-dev nlohmann-json3-dev libstb-dev \
      libjpeg62-turbo-dev libspng-dev libonnx-dev libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup /build --buildtype=release -Db_ndebug=false -Dtests=disabled \
 && ninja -C /build tools/kiln \
 && strip /build/tools/kiln \
 && /build/tools/kiln version

FROM debian:12-slim
# Runtime libraries of the kiln binary (ldd: oneDNN 2.6, OpenMP, OpenSSL, cpp-httplib, stb,
# libjpeg-turbo and libspng for kiln serve's images, libonnx/protobuf for kiln export --output *.onnx) and
# CA certificates for verified HTTPS (kiln download, S3).
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libdnnl2 libgomp1 libssl3 libcpp-httplib0.11 libstb0 zlib1g libjpeg62-turbo libspng0 libonnx1 libprotobuf32 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/tools/kiln /usr/local/bin/kiln
EXPOSE 8080
# Exec form, no shell and no init wrapper: kiln is PID 1 and receives SageMaker's SIGTERM itself
# (training checkpoints and exits; serving drains). `train` / `serve` arrive as its arguments.
ENTRYPOINT ["/usr/local/bin/kiln"]
