# ringkv image: one node per container. See docs/docker.md.
#
#   docker build -t ringkv:local .
#   docker compose up -d            # the three-node demo (docker-compose.yml)
#
# Two stages on the same base: `build` compiles TypeScript with the dev dependencies,
# `runtime` gets only dist/ and the production node_modules. Debian (glibc) rather than
# Alpine, because lmdb and msgpackr-extract ship prebuilt glibc binaries for linux-x64 and
# linux-arm64 in their optional dependencies, so nothing is compiled and the slim image
# needs no C toolchain.

############################ build ############################
FROM node:22-bookworm-slim AS build
WORKDIR /app

# Dependencies first, so this layer is cached until package.json or the lockfile changes.
# --ignore-scripts: `npm ci` would run our own `prepare` script (tsc), but src/ and
# tsconfig.json are deliberately not copied yet (copying them first would reinstall every
# dependency on every source change). It also skips the dependencies' install scripts,
# so the two packages that have one are rebuilt explicitly just below. Optional
# dependencies are kept (no --omit=optional): they hold the prebuilt native binaries
# (lmdb, msgpackr-extract, and the TypeScript 7 compiler itself).
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# lmdb and msgpackr-extract: their install script only checks that the prebuilt binary
# for this platform is present (and would try to compile it otherwise, which fails here
# for want of a compiler: a loud failure at build time instead of a crash at run time).
RUN npm rebuild lmdb msgpackr-extract

COPY tsconfig.json ./
COPY src ./src
# Compile, then drop the dev dependencies (typescript, vitest, ...). --ignore-scripts on
# prune so that no lifecycle script can run once typescript is gone.
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

############################ runtime ############################
FROM node:22-bookworm-slim AS runtime

# tini as PID 1: forwards SIGTERM/SIGINT to node (which then drains and exits) and reaps
# zombies, so the image behaves correctly with plain `docker run`, without `--init`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

ENV NODE_ENV=production
WORKDIR /app

# Code and configs are owned by root and only readable by the `node` user that runs them.
# package.json is needed at run time too: its "type": "module" makes dist/*.js ES modules.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The sample configs (config/n1.yaml ... n5.yaml, single.yaml). docker-compose.yml also
# mounts ./config over this directory read-only, so edits need no rebuild. The dev
# secret is excluded by .dockerignore: secrets come in at run time (/run/secrets/ringkv).
COPY config ./config

# The data directory. Created and chowned before VOLUME, so a new named volume mounted
# here starts out owned by `node` (Docker copies the directory's ownership into it).
RUN mkdir -p /data && chown node:node /data
VOLUME /data

# The `node` user (uid 1000, gid 1000) comes with the base image.
USER node

# 7379: client API (kv, cluster, /healthz, /readyz, /metrics). 7380: peer API.
EXPOSE 7379 7380

# Healthy = ready to take traffic (member of the cluster, caught up, serving). There is no
# curl in the slim image; node's fetch does the GET. The check assumes the client API is
# on port 7379 inside the container, as in every config in config/.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:7379/readyz',{signal:AbortSignal.timeout(2500)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cli/main.js"]
CMD ["serve", "--config", "/app/config/n1.yaml"]
