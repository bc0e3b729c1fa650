# kube-relay image: docker build -t kube-relay:0.1.0 .
# Three stages: build (TypeScript), deps (production node_modules with the native addons compiled),
# and the final image on the current Node LTS slim base, with no compiler, npm cache or sources.

FROM node:24-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
RUN npm ci && npm run build

FROM node:24-bookworm AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts skips `prepare` (it needs the dev dependencies); the native addons are then built on purpose.
RUN npm ci --omit=dev --ignore-scripts && npm rebuild better-sqlite3 bufferutil && npm cache clean --force

FROM node:24-bookworm-slim
# jemalloc gives back to the kernel the native memory freed when TLS connections close; glibc's malloc
# keeps it, so after rounds of thousands of watches a relay's RSS stayed ~75 % above its first round
# (npm run bench -- --phases watch-rounds: +76 % with glibc, +3 % with jemalloc).
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 && rm -rf /var/lib/apt/lists/* \
 && ln -s "/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2" /usr/local/lib/libjemalloc.so.2
ENV LD_PRELOAD=/usr/local/lib/libjemalloc.so.2 \
    MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
# kube-relay rbac reads the chart's ClusterRole rules.
COPY deploy/helm/kube-relay/files ./deploy/helm/kube-relay/files
RUN ln -s /app/bin/kube-relay.js /usr/local/bin/kube-relay
# The chart runs it as 10001 with a read-only root filesystem; data goes to a mounted volume (--data).
USER 10001:10001
ENTRYPOINT ["kube-relay"]
