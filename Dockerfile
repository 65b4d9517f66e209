# Atlas gateway image: Node 24, non-root, data in a volume.
FROM node:24-bookworm-slim

ENV NODE_ENV=production \
    ATLAS_HOST=0.0.0.0 \
    ATLAS_PORT=8080 \
    ATLAS_DATA_DIR=/data

WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# the image's own Node is 24 already: skip the devDependency that brings one
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY bin ./bin
COPY src ./src
COPY openapi.yaml README.md ./

RUN groupadd --system atlas && useradd --system --gid atlas --home /data atlas \
    && mkdir -p /data && chown atlas:atlas /data
USER atlas
VOLUME ["/data"]

# HTTP (REST, S3, gateway) and libp2p TCP
EXPOSE 8080 4001
HEALTHCHECK --interval=30s --timeout=5s CMD node -e "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "--max-semi-space-size=2", "bin/atlas.js"]
CMD ["serve"]
