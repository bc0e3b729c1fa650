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
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
RUN ln -s /app/bin/kube-relay.js /usr/local/bin/kube-relay
# The chart runs it as 10001 with a read-only root filesystem; data goes to a mounted volume (--data).
USER 10001:10001
ENTRYPOINT ["kube-relay"]
