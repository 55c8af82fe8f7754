#!/usr/bin/env bash
# hookbuild machine setup: Debian 12, run as root. Idempotent and fast when
# everything is already in place. Installs the Debian packages hookbuild needs,
# starts dockerd, two local registries (127.0.0.1:5000 for releases, 127.0.0.1:5001
# for promotions; the same htpasswd auth) and an nginx WebDAV cache for Bazel
# (127.0.0.1:8090), mounts tracefs/debugfs, makes the demo signing key, and builds
# the local base images from examples/images/ (nothing is ever pulled).
#
# Under CI=true every component is mandatory: anything that cannot be installed
# or started fails the script. Otherwise only the kernel mounts may be skipped
# (with a warning).
#
# Secrets: the registry password is generated once into
# /etc/hookbuild/registry-password (0600) and only ever travels through stdin. The
# demo signing key (ed25519) is made once into /etc/hookbuild/demo-signing-key.pem
# (0600, outside the repo); its public half sits next to it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGES_DIR="${REPO}/examples/images"
CI="${CI:-false}"

ETC=/etc/hookbuild
STATE=/var/lib/hookbuild
RUN_DIR=/run/hookbuild
REGISTRY_ADDR=127.0.0.1:5000
PROMOTE_REGISTRY_ADDR=127.0.0.1:5001  # `invoke promote`'s target in the demo and the tests
REGISTRY_USER=hookbuild
REGISTRY_HTPASSWD="${ETC}/registry/htpasswd"
REGISTRY_PASSWORD_FILE="${ETC}/registry-password"
DEMO_SIGNING_KEY="${ETC}/demo-signing-key.pem"  # ed25519, 0600; `make demo` signs with it
DEMO_SIGNING_PUBLIC="${ETC}/demo-signing-key.pub.pem"
CACHE_ADDR=127.0.0.1:8090
CACHE_ROOT="${STATE}/bazel-cache"
NGINX_CONF="${ETC}/nginx.conf"
# Debian base for the sample proxyv2 (real istio/proxyv2 is Ubuntu: apt works in it, so the istio-perf
# variant can apt-get install perf FROM it). debootstrap runs once; its rootfs is cached as a tarball.
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SECURITY_MIRROR=http://deb.debian.org/debian-security
DEBIAN_IMAGE="hookbuild/debian:${DEBIAN_SUITE}"
DEBIAN_CACHE="${STATE}/debian"
LABEL=io.hookbuild.inputs

PACKAGES=(
    docker.io docker-registry bazel-bootstrap bpftrace busybox-static lld
    apache2-utils nginx-light libnginx-mod-http-dav-ext linux-perf binutils g++
    git curl zstd make python3 python3-venv debootstrap openssl chromium g++-aarch64-linux-gnu
)

SUMMARY=()
T0=$(date +%s%N)

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
ok() { SUMMARY+=("$(printf '%-34s ok%s' "$1" "${2:+ ($2)}")"); }
# A component that a non-CI machine may lack (e.g. in a restricted container).
soft_fail() {
    if [[ "${CI}" == "true" ]]; then
        die "$1 (CI=true: every component is required)"
    fi
    printf 'setup: warning: %s\n' "$1" >&2
    SUMMARY+=("$(printf '%-34s SKIPPED (%s)' "$2" "$1")")
}

[[ "$(id -u)" -eq 0 ]] || die "run as root (sudo bash scripts/setup.sh)"
install -d -m 0755 "${ETC}" "${ETC}/registry" "${STATE}" "${RUN_DIR}"

# --- packages ---------------------------------------------------------------
installed="$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' 2>/dev/null | awk '$2 == "installed" {print $1}')"
missing=()
for pkg in "${PACKAGES[@]}"; do
    grep -qxF "${pkg}" <<<"${installed}" || missing+=("${pkg}")
done
if ((${#missing[@]})); then
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get install failed for: ${missing[*]}"
    ok "packages" "installed ${#missing[@]}"
else
    ok "packages" "${#PACKAGES[@]} present"
fi
for tool in docker dockerd docker-registry bazel bpftrace busybox htpasswd nginx curl zstd g++ strip nm debootstrap openssl; do
    command -v "${tool}" >/dev/null || die "'${tool}' not on PATH after installing packages"
done

# --- kernel mounts (bpftrace uprobes: clean detach needs tracefs) ----------
mount_fs() { # type dir
    if mountpoint -q "$2"; then
        ok "$1 at $2" "mounted"
    elif mount -t "$1" "$1" "$2" 2>/dev/null; then
        ok "$1 at $2" "mounted now"
    else
        soft_fail "cannot mount $1 at $2" "$1 at $2"
    fi
}
mount_fs debugfs /sys/kernel/debug
mount_fs tracefs /sys/kernel/tracing

# --- dockerd ----------------------------------------------------------------
wait_for() { # seconds description command...
    local deadline=$((SECONDS + $1)) what="$2"
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
    : "${what}"
}
if docker info >/dev/null 2>&1; then
    ok "dockerd" "running"
else
    # A dockerd that was killed (as every session's processes are, before CI) leaves its pid files behind,
    # and a new one refuses to start over them: remove those whose process is gone.
    for pidfile in /var/run/docker.pid /run/docker/containerd/containerd.pid; do
        if [[ -f "${pidfile}" ]]; then
            pid="$(cat "${pidfile}" 2>/dev/null || true)"
            comm="$(cat "/proc/${pid:-0}/comm" 2>/dev/null || true)"
            if [[ "${comm}" != dockerd && "${comm}" != containerd ]]; then
                say "removing stale ${pidfile}"
                rm -f "${pidfile}"
            fi
        fi
    done
    say "starting dockerd (log: /var/log/hookbuild-dockerd.log)"
    nohup setsid dockerd >>/var/log/hookbuild-dockerd.log 2>&1 </dev/null &
    wait_for 30 dockerd docker info || die "dockerd did not answer within 30 s; see /var/log/hookbuild-dockerd.log"
    ok "dockerd" "started"
fi

# --- registries (docker-registry serve, htpasswd auth) ----------------------
# 127.0.0.1:5000 takes releases; 127.0.0.1:5001 is the promotion target (`invoke promote`), same users.
if [[ ! -s "${REGISTRY_PASSWORD_FILE}" ]]; then
    (umask 077 && head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 >"${REGISTRY_PASSWORD_FILE}")
fi
chmod 0600 "${REGISTRY_PASSWORD_FILE}"
htpasswd_changed=false
if [[ ! -s "${REGISTRY_HTPASSWD}" ]] \
    || ! htpasswd -v -i "${REGISTRY_HTPASSWD}" "${REGISTRY_USER}" <"${REGISTRY_PASSWORD_FILE}" >/dev/null 2>&1; then
    (umask 077 && htpasswd -c -i -B "${REGISTRY_HTPASSWD}" "${REGISTRY_USER}" <"${REGISTRY_PASSWORD_FILE}" >/dev/null 2>&1) \
        || die "htpasswd could not write ${REGISTRY_HTPASSWD}"
    htpasswd_changed=true
fi
registry_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$1/v2/" || true; }
registry_up() { [[ "$(registry_code "$1")" == "401" ]]; }
docker_config="${DOCKER_CONFIG:-${HOME}/.docker}/config.json"
start_registry() { # name addr: config, storage, pid file and log are named after `name`
    local name="$1" addr="$2" config="${ETC}/$1/config.yml" storage="${STATE}/$1" pid_file="${RUN_DIR}/$1.pid"
    local log="/var/log/hookbuild-$1.log" changed=false text pid code
    install -d -m 0755 "${ETC}/${name}" "${storage}"
    text="version: 0.1
log:
  level: info
  fields:
    service: hookbuild-${name}
storage:
  filesystem:
    rootdirectory: ${storage}
  delete:
    enabled: true
http:
  addr: ${addr}
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: hookbuild-registry
    path: ${REGISTRY_HTPASSWD}
"
    if [[ "$(cat "${config}" 2>/dev/null)" != "${text%$'\n'}" ]]; then
        printf '%s' "${text}" >"${config}"
        changed=true
    fi
    if registry_up "${addr}" && { "${htpasswd_changed}" || "${changed}"; } && [[ -s "${pid_file}" ]]; then
        # Restart only the registry this script started (by its recorded pid).
        pid="$(cat "${pid_file}")"
        if [[ "$(cat "/proc/${pid}/comm" 2>/dev/null)" == docker-registry* ]]; then
            say "restarting registry ${addr} (pid ${pid}) to pick up new config/credentials"
            kill "${pid}" && wait_for 10 "" bash -c "! kill -0 ${pid}" || true
        fi
    fi
    if registry_up "${addr}"; then
        ok "registry ${addr}" "running"
    else
        code="$(registry_code "${addr}")"
        [[ "${code}" == "000" ]] || die "something else answers on ${addr} (HTTP ${code} on /v2/, expected 401)"
        say "starting registry ${addr} (log: ${log})"
        nohup setsid docker-registry serve "${config}" >>"${log}" 2>&1 </dev/null &
        echo $! >"${pid_file}"
        wait_for 20 registry registry_up "${addr}" || die "registry did not answer 401 on http://${addr}/v2/ within 20 s; see ${log}"
        ok "registry ${addr}" "started"
    fi
    if "${htpasswd_changed}" || ! grep -q "\"${addr}\"" "${docker_config}" 2>/dev/null; then
        docker login "${addr}" -u "${REGISTRY_USER}" --password-stdin <"${REGISTRY_PASSWORD_FILE}" >/dev/null 2>&1 \
            || die "docker login ${addr} failed"
        ok "docker login ${addr}" "logged in (${docker_config})"
    else
        ok "docker login ${addr}" "credentials in ${docker_config}"
    fi
}
start_registry registry "${REGISTRY_ADDR}"
start_registry registry-promote "${PROMOTE_REGISTRY_ADDR}"

# --- demo signing key (`make demo` signs its release with it; never in the repo) ----------
if [[ ! -s "${DEMO_SIGNING_KEY}" ]]; then
    (umask 077 && openssl genpkey -algorithm ed25519 -out "${DEMO_SIGNING_KEY}.tmp" 2>/dev/null) \
        || die "openssl could not make the demo signing key"
    mv -f "${DEMO_SIGNING_KEY}.tmp" "${DEMO_SIGNING_KEY}"
    ok "demo signing key" "made ${DEMO_SIGNING_KEY}"
else
    ok "demo signing key" "${DEMO_SIGNING_KEY}"
fi
chmod 0600 "${DEMO_SIGNING_KEY}"
public="$(openssl pkey -in "${DEMO_SIGNING_KEY}" -pubout 2>/dev/null)" || die "openssl cannot read ${DEMO_SIGNING_KEY}"
if [[ "$(cat "${DEMO_SIGNING_PUBLIC}" 2>/dev/null)" != "${public}" ]]; then
    printf '%s\n' "${public}" >"${DEMO_SIGNING_PUBLIC}"
    chmod 0644 "${DEMO_SIGNING_PUBLIC}"
fi

# --- nginx WebDAV cache for bazel --remote_cache ----------------------------
install -d -m 0755 -o www-data -g www-data "${CACHE_ROOT}" "${STATE}/nginx-tmp"
nginx_config="# hookbuild: HTTP cache for bazel --remote_cache=http://${CACHE_ADDR}
user www-data;
worker_processes 1;
pid ${RUN_DIR}/nginx.pid;
error_log /var/log/hookbuild-nginx-error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path ${STATE}/nginx-tmp;
    server {
        listen ${CACHE_ADDR};
        root ${CACHE_ROOT};
        client_max_body_size 0;
        location / {
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }
    }
}
"
nginx_changed=false
if [[ "$(cat "${NGINX_CONF}" 2>/dev/null)" != "${nginx_config%$'\n'}" ]]; then
    printf '%s' "${nginx_config}" >"${NGINX_CONF}"
    nginx_changed=true
fi
nginx -t -q -c "${NGINX_CONF}" 2>/dev/null || die "nginx rejects ${NGINX_CONF} (nginx -t -c ${NGINX_CONF})"
cache_up() { curl -s -o /dev/null --max-time 2 "http://${CACHE_ADDR}/"; }
if cache_up; then
    if "${nginx_changed}" && [[ -s "${RUN_DIR}/nginx.pid" ]]; then
        nginx -c "${NGINX_CONF}" -s reload
    fi
    ok "bazel cache ${CACHE_ADDR}" "running"
else
    nginx -c "${NGINX_CONF}" || die "nginx -c ${NGINX_CONF} failed; see /var/log/hookbuild-nginx-error.log"
    wait_for 10 nginx cache_up || die "nginx did not answer on ${CACHE_ADDR}"
    ok "bazel cache ${CACHE_ADDR}" "started"
fi
probe="hookbuild-setup-probe-$$"
probe_url="http://${CACHE_ADDR}/ac/${probe}"
put_code="$(printf '%s' "${probe}" | curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @- "${probe_url}")"
got="$(curl -s "${probe_url}")"
rm -f "${CACHE_ROOT}/ac/${probe}"
[[ "${put_code}" =~ ^20[14]$ && "${got}" == "${probe}" ]] \
    || die "bazel cache on ${CACHE_ADDR} failed PUT+GET (PUT HTTP ${put_code})"
ok "bazel cache PUT+GET" "verified"

# --- local base images ------------------------------------------------------
export DOCKER_BUILDKIT=0
image_label() { docker image inspect --format "{{ index .Config.Labels \"${LABEL}\" }}" "$1" 2>/dev/null || true; }
image_id() { docker image inspect --format '{{ .Id }}' "$1" 2>/dev/null || true; }
dir_hash() { # dir [extra strings...]
    local dir="$1"
    shift
    { (cd "${dir}" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); printf '%s\n' "$@"; } \
        | sha256sum | cut -c1-32
}

build_busybox() {
    local name=hookbuild/busybox:1 hash rootfs applet
    hash="$(dir_hash "${IMAGES_DIR}/busybox" "$(sha256sum /bin/busybox)")"
    if [[ "$(image_label "${name}")" == "${hash}" ]]; then
        ok "image ${name}" "up to date"
        return
    fi
    say "building ${name} (docker import of a busybox rootfs)"
    rootfs="$(mktemp -d)"
    install -d "${rootfs}"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,proc,sys,dev,var}
    install -d -m 1777 "${rootfs}/tmp"
    install -m 0755 /bin/busybox "${rootfs}/bin/busybox"
    while read -r applet; do
        [[ "${applet}" == "bin/busybox" || -e "${rootfs}/${applet}" ]] && continue
        install -d "${rootfs}/$(dirname "${applet}")"
        ln -s /bin/busybox "${rootfs}/${applet}"
    done < <(/bin/busybox --list-full)
    install -m 0644 "${IMAGES_DIR}/busybox/passwd" "${IMAGES_DIR}/busybox/group" "${rootfs}/etc/"
    tar --numeric-owner --owner=0 --group=0 -C "${rootfs}" -cf - . \
        | docker import \
            --change "LABEL ${LABEL}=${hash}" \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["/bin/sh"]' \
            - "${name}" >/dev/null \
        || { rm -rf "${rootfs}"; die "docker import of ${name} failed"; }
    rm -rf "${rootfs}"
    [[ "$(image_label "${name}")" == "${hash}" ]] || die "${name}: label ${LABEL} missing after import"
    ok "image ${name}" "built"
}

# The rootfs recipe: changing any of these rebuilds the cached tarball and the image.
debian_recipe() {
    printf '%s\n' "debootstrap --variant=minbase ${DEBIAN_SUITE} ${DEBIAN_MIRROR}" \
        "deb ${DEBIAN_MIRROR} ${DEBIAN_SUITE} main" \
        "deb ${DEBIAN_MIRROR} ${DEBIAN_SUITE}-updates main" \
        "deb ${DEBIAN_SECURITY_MIRROR} ${DEBIAN_SUITE}-security main" \
        "recipe 1: apt lists and caches emptied; dev proc sys empty"
}

build_debian() {
    local name="${DEBIAN_IMAGE}" hash tarball stamp rootfs t0
    hash="$(debian_recipe | sha256sum | cut -c1-32)"
    if [[ "$(image_label "${name}")" == "${hash}" ]]; then
        ok "image ${name}" "up to date"
        return
    fi
    tarball="${DEBIAN_CACHE}/${DEBIAN_SUITE}-minbase.tar"
    stamp="${tarball}.inputs"
    install -d -m 0755 "${DEBIAN_CACHE}"
    if [[ ! -s "${tarball}" || "$(cat "${stamp}" 2>/dev/null)" != "${hash}" ]]; then
        say "debootstrap --variant=minbase ${DEBIAN_SUITE} (once; cached in ${tarball}; log: /var/log/hookbuild-debootstrap.log)"
        t0=${SECONDS}
        rootfs="$(mktemp -d "${DEBIAN_CACHE}/rootfs.XXXXXX")"
        if ! debootstrap --variant=minbase "${DEBIAN_SUITE}" "${rootfs}" "${DEBIAN_MIRROR}" \
            >/var/log/hookbuild-debootstrap.log 2>&1; then
            umount -R "${rootfs}/proc" "${rootfs}/sys" 2>/dev/null || true
            rm -rf --one-file-system "${rootfs}"
            die "debootstrap ${DEBIAN_SUITE} from ${DEBIAN_MIRROR} failed; see /var/log/hookbuild-debootstrap.log"
        fi
        printf '%s\n' "deb ${DEBIAN_MIRROR} ${DEBIAN_SUITE} main" \
            "deb ${DEBIAN_MIRROR} ${DEBIAN_SUITE}-updates main" \
            "deb ${DEBIAN_SECURITY_MIRROR} ${DEBIAN_SUITE}-security main" >"${rootfs}/etc/apt/sources.list"
        # Like Debian's docker images: no package caches or indexes in the image (run apt-get update first).
        printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
            'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
            'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"${rootfs}/etc/apt/apt.conf.d/docker-clean"
        rm -rf --one-file-system "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/cache/apt/*.bin \
            "${rootfs}"/dev/* "${rootfs}"/proc/* "${rootfs}"/sys/* 2>/dev/null || true
        install -d -m 0755 "${rootfs}/var/lib/apt/lists/partial" "${rootfs}/var/cache/apt/archives/partial"
        tar --numeric-owner --xattrs -C "${rootfs}" -cf "${tarball}.tmp" . \
            || { rm -rf --one-file-system "${rootfs}" "${tarball}.tmp"; die "tar of the ${DEBIAN_SUITE} rootfs failed"; }
        rm -rf --one-file-system "${rootfs}"
        mv -f "${tarball}.tmp" "${tarball}"
        printf '%s' "${hash}" >"${stamp}"
        say "debootstrap ${DEBIAN_SUITE} done in $((SECONDS - t0)) s"
    fi
    docker import \
        --change "LABEL ${LABEL}=${hash}" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        "${tarball}" "${name}" >/dev/null \
        || die "docker import of ${name} from ${tarball} failed"
    [[ "$(image_label "${name}")" == "${hash}" ]] || die "${name}: label ${LABEL} missing after import"
    ok "image ${name}" "imported from ${tarball}"
}

build_dockerfile_image() { # name dir [base image, default hookbuild/busybox:1]
    local name="$1" dir="${IMAGES_DIR}/$2" base="${3:-hookbuild/busybox:1}" hash log
    hash="$(dir_hash "${dir}" "base=$(image_id "${base}")")"
    if [[ "$(image_label "${name}")" == "${hash}" ]]; then
        ok "image ${name}" "up to date"
        return
    fi
    say "building ${name} from ${dir}/Dockerfile"
    log="$(mktemp)"
    if ! docker build -q --label "${LABEL}=${hash}" -t "${name}" "${dir}" >"${log}" 2>&1; then
        cat "${log}" >&2
        rm -f "${log}"
        die "docker build of ${name} failed"
    fi
    rm -f "${log}"
    ok "image ${name}" "built"
}

build_busybox
build_dockerfile_image hookbuild-sample/build-tools-proxy:sample build-tools-proxy
build_dockerfile_image hookbuild-sample/envoy-build:sample envoy-build
build_debian
build_dockerfile_image hookbuild-sample/proxyv2:sample proxyv2 "${DEBIAN_IMAGE}"
build_dockerfile_image hookbuild-sample/envoy:sample envoy
build_dockerfile_image hookbuild-sample/cilium-envoy:sample cilium-envoy

# --- summary ------------------------------------------------------------------
printf '%s\n' "${SUMMARY[@]}"
say "done in $((($(date +%s%N) - T0) / 1000000)) ms"
