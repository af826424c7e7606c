#!/bin/sh
# Smoke test of the container image, for real: the migration, a throwaway PKI, the three
# roles as containers (mutual TLS between them, libvirt's test driver in compute), a token,
# CreateServer through grpcurl, both servers ACTIVE, and the conductor's metrics moved.
#
#   deploy/smoke_test_image.sh [IMAGE]            (default nova-grpc:dev; `make image-smoke`)
#
# Needs a Docker engine, grpcurl (GRPCURL, default .venv/bin/grpcurl) and a Python with grpcio
# (PYTHON, default .venv/bin/python). Containers use the
# host network on ports 18774-19790; state lives in WORKDIR (default /tmp/nova-grpc-smoke).
set -eu
IMAGE="${1:-nova-grpc:dev}"
DOCKER="${DOCKER:-docker}"
GRPCURL="${GRPCURL:-.venv/bin/grpcurl}"
PYTHON="${PYTHON:-.venv/bin/python}"
DATA="${WORKDIR:-/tmp/nova-grpc-smoke}"
NAMES="nova-smoke-api nova-smoke-conductor nova-smoke-compute"

cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    for name in $NAMES; do echo "--- logs of $name"; $DOCKER logs "$name" 2>&1 | tail -20; done
  fi
  for name in $NAMES; do $DOCKER rm -f "$name" >/dev/null 2>&1 || true; done
  exit "$status"
}
trap cleanup EXIT

rm -rf "$DATA" && mkdir -p "$DATA" && chown 10001:10001 "$DATA"  # the image's user
run() {
  $DOCKER run --network host -v "$DATA:/data" \
    -e NOVA_GRPC_DATABASE_URL=sqlite:////data/nova.sqlite "$@"
}
tls() {
  echo "-e NOVA_GRPC_INTERNAL_TLS_CA=/data/pki/ca.pem" \
       "-e NOVA_GRPC_INTERNAL_TLS_CERT=/data/pki/$1.pem" \
       "-e NOVA_GRPC_INTERNAL_TLS_KEY=/data/pki/$1-key.pem"
}

run --rm "$IMAGE" migrate
run --rm "$IMAGE" manage pki create --dir /data/pki --compute-host smoke-compute
# shellcheck disable=SC2046  # tls prints several arguments on purpose
run -d --name nova-smoke-conductor $(tls conductor) -e NOVA_GRPC_LISTEN=127.0.0.1:18780 \
  -e NOVA_GRPC_HEALTH_LISTEN=127.0.0.1:18781 -e NOVA_GRPC_METRICS_LISTEN=127.0.0.1:19780 \
  "$IMAGE" conductor >/dev/null
# shellcheck disable=SC2046
run -d --name nova-smoke-compute --user 0 $(tls compute) -e NOVA_GRPC_LISTEN=127.0.0.1:18790 \
  -e NOVA_GRPC_HEALTH_LISTEN=127.0.0.1:18791 -e NOVA_GRPC_METRICS_LISTEN=127.0.0.1:19790 \
  -e NOVA_GRPC_CONDUCTOR_ADDRESSES=127.0.0.1:18780 -e NOVA_GRPC_HOST=smoke-compute \
  -e NOVA_GRPC_LIBVIRT_URI=test:///default "$IMAGE" compute >/dev/null
# shellcheck disable=SC2046
run -d --name nova-smoke-api $(tls api) -e NOVA_GRPC_LISTEN=127.0.0.1:18774 \
  -e NOVA_GRPC_METRICS_LISTEN=127.0.0.1:19774 -e NOVA_GRPC_CONDUCTOR_ADDRESSES=127.0.0.1:18780 \
  "$IMAGE" api >/dev/null
TOKEN=$(run --rm "$IMAGE" manage token create --project smoke 2>/dev/null | tail -1)
AUTH="authorization: Bearer $TOKEN"

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  limit=$1; what=$2; shift 2
  waited=0
  until "$@" >/dev/null 2>&1; do
    waited=$((waited + 1))
    if [ "$waited" -ge "$limit" ]; then echo "FAIL: $what" >&2; return 1; fi
    sleep 1
  done
}
# The health ports serve only grpc.health.v1 (no reflection for grpcurl): ask with Python.
serving() {
  "$PYTHON" -c "import grpc, sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g
reply = g.HealthStub(grpc.insecure_channel(sys.argv[1])).Check(h.HealthCheckRequest(), timeout=2)
sys.exit(reply.status != h.HealthCheckResponse.SERVING)" "$1"
}
wait_for 60 "api serving" serving 127.0.0.1:18774
wait_for 60 "conductor serving" serving 127.0.0.1:18781
wait_for 60 "compute serving" serving 127.0.0.1:18791
compute_registered() {
  "$GRPCURL" -plaintext -H "$AUTH" -d '{"name": "probe", "flavor_ref": "m1.tiny",
    "image_ref": "nova-tiny"}' 127.0.0.1:18774 novagrpc.v1.Servers/CreateServer
}
wait_for 30 "first create accepted" compute_registered

"$GRPCURL" -plaintext -H "$AUTH" -d '{"name": "smoke", "flavor_ref": "m1.tiny",
  "image_ref": "nova-tiny", "max_count": 2}' 127.0.0.1:18774 novagrpc.v1.Servers/CreateServer
active() {
  test "$("$GRPCURL" -plaintext -H "$AUTH" -d '{"name": "^smoke"}' 127.0.0.1:18774 \
    novagrpc.v1.Servers/ListServers | grep -c '"status": "SERVER_STATUS_ACTIVE"')" = 2
}
wait_for 60 "both servers ACTIVE" active
"$GRPCURL" -plaintext -H "$AUTH" -d '{"name": "^smoke"}' 127.0.0.1:18774 \
  novagrpc.v1.Servers/ListServers | grep -E '"(name|status|host)"'
placed() { "$PYTHON" -c "import urllib.request as u; t = u.urlopen('http://127.0.0.1:19780/metrics').read().decode(); assert any(l.startswith('nova_grpc_instances_placed_total ') and float(l.split()[1]) >= 3 for l in t.splitlines())"; }
wait_for 10 "conductor metrics count the placements" placed
echo "image smoke test passed: $IMAGE"
