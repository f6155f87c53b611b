#!/bin/bash
# One-shot setup of the demo stack, run in the Elasticsearch image by deploy/docker-compose.yml:
# a CA and a certificate for es01, the kibana_system password, and a least-privilege API key for the
# sensor (write documents into logs-otids.*, nothing else), stored in the `secrets` volume.
set -euo pipefail
: "${ELASTIC_PASSWORD:?set ELASTIC_PASSWORD in deploy/.env}"
: "${KIBANA_PASSWORD:?set KIBANA_PASSWORD in deploy/.env}"
cd /usr/share/elasticsearch
if [ ! -f config/certs/ca/ca.crt ]; then
  bin/elasticsearch-certutil ca --silent --pem -out config/certs/ca.zip
  unzip -q -o config/certs/ca.zip -d config/certs
fi
if [ ! -f config/certs/es01/es01.crt ]; then
  printf 'instances:\n  - name: es01\n    dns: [es01, localhost]\n    ip: [127.0.0.1]\n' > config/certs/instances.yml
  bin/elasticsearch-certutil cert --silent --pem -out config/certs/certs.zip --in config/certs/instances.yml \
    --ca-cert config/certs/ca/ca.crt --ca-key config/certs/ca/ca.key
  unzip -q -o config/certs/certs.zip -d config/certs
fi
chown -R root:root config/certs
find config/certs -type d -exec chmod 755 {} \;
find config/certs -type f -exec chmod 640 {} \;
chmod 644 config/certs/ca/ca.crt   # the CA certificate is public; the keys stay 640

ES=https://es01:9200
CA=config/certs/ca/ca.crt
echo "waiting for Elasticsearch"
until curl -s --cacert "$CA" "$ES" | grep -q "missing authentication credentials"; do sleep 5; done
echo "setting the kibana_system password"
until curl -s -X POST --cacert "$CA" -u "elastic:${ELASTIC_PASSWORD}" -H "Content-Type: application/json" \
    "$ES/_security/user/kibana_system/_password" -d "{\"password\":\"${KIBANA_PASSWORD}\"}" | grep -q "^{}"; do
  sleep 5
done
if [ ! -s /secrets/otids-api-key ]; then
  echo "creating the sensor's API key"
  curl -s -X POST --cacert "$CA" -u "elastic:${ELASTIC_PASSWORD}" -H "Content-Type: application/json" \
      "$ES/_security/api_key" -d '{"name": "otids-sensor", "role_descriptors": {"otids_sensor": {
        "cluster": ["monitor"],
        "indices": [{"names": ["logs-otids.*"], "privileges": ["create_doc", "auto_configure"]}]}}}' \
    | sed -n 's/.*"encoded":"\([^"]*\)".*/\1/p' > /secrets/otids-api-key.tmp
  test -s /secrets/otids-api-key.tmp
  mv /secrets/otids-api-key.tmp /secrets/otids-api-key
fi
chown 10001 /secrets/otids-api-key   # the sensor image's user
chmod 400 /secrets/otids-api-key
echo "done"
