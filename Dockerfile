# The executor image for the Cloud Run backend: the job's container runs
# cloudrun-sandbox-executor, which reads its request from Cloud Storage.
#
#   gcloud builds submit --tag REGION-docker.pkg.dev/PROJECT/sandbox/executor .
#
# Stage 1 builds the executor (plain C, no PostgreSQL); stage 2 is a small
# runtime with a shell and common tools for the commands users run, and
# bubblewrap: the executor runs every user command in a sandbox of its own
# inside the container (no network, none of the executor's environment or
# credentials; see src/executor/isolate.c and the README's "Isolation inside
# the container").

FROM debian:12-slim AS build
RUN apt-get update \
	&& apt-get install -y --no-install-recommends gcc libc6-dev libjansson-dev \
		libcurl4-openssl-dev libssl-dev \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY src/common src/common
COPY src/executor src/executor
RUN cc -std=gnu11 -O2 -g0 -Wall -Wextra -Werror -Wno-unused-parameter -Isrc \
		-DSB_EXECUTOR_CLOUD -o cloudrun-sandbox-executor src/executor/*.c \
		src/common/sbutil.c src/common/protocol.c src/common/frame.c src/common/http.c \
		src/common/gcs.c src/common/oauth.c \
		-ljansson -lcurl -lcrypto \
	&& ./cloudrun-sandbox-executor --version

FROM debian:12-slim
RUN apt-get update \
	&& apt-get install -y --no-install-recommends bash bubblewrap ca-certificates coreutils curl \
		findutils git grep gzip libcurl4 libjansson4 procps python3 sed tar xz-utils \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --create-home --uid 1000 sandbox \
	&& mkdir /workspace && chown sandbox: /workspace
COPY --from=build /build/cloudrun-sandbox-executor /usr/local/bin/cloudrun-sandbox-executor
USER sandbox
WORKDIR /workspace
ENV CLOUDRUN_SANDBOX_CREDENTIALS=metadata
ENTRYPOINT ["/usr/local/bin/cloudrun-sandbox-executor"]
