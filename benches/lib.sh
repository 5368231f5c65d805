# Shared by benches/load.sh, benches/compare.sh and benches/instructions.sh (sourced): a
# work directory, the processes to stop on exit, and the helpers they use.

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The CPU time (utime + stime, in clock ticks of TICK per second) a process has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on $1" >&2
    exit 1
}

# The upstream: nginx answering "ok" on 127.0.0.1:$1, pinned to CPU 1.
start_upstream() {
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log crit;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$1;
        location / { return 200 "ok"; }
    }
}
EOF
    taskset -c 1 nginx -c "$WORK/nginx/nginx.conf" &
    PIDS+=($!)
    wait_port "$1"
}

# billing's inbound configuration: FILE INBOUND-PORT UPSTREAM-PORT ADMIN-PORT [extra inbound lines]
billing_config() {
    cat >"$1" <<EOF
[identity]
name = "billing"
private_key = "$WORK/keys/billing.key"
[trust]
authorized_keys = "$WORK/trusted"
[inbound]
listen = "127.0.0.1:$2"
upstream = "http://127.0.0.1:$3"
${5:-}
[admin]
listen = "127.0.0.1:$4"
[log]
level = "warn"
EOF
}

# orders' outbound configuration, one route (host "up", audience billing):
orders_config() { # file outbound-port admin-port upstream
    cat >"$1" <<EOF
[identity]
name = "orders"
private_key = "$WORK/keys/orders.key"
[outbound]
listen = "127.0.0.1:$2"
[[outbound.routes]]
host = "up"
upstream = "$4"
audience = "billing"
[admin]
listen = "127.0.0.1:$3"
[log]
level = "warn"
EOF
}

# HAProxy forwarding to 127.0.0.1:UPSTREAM-PORT; with jwt, verifying an ES256 token from orders
# for billing (alg, iss, aud, exp and the signature) on every request, as jwt_verify does.
haproxy_config() { # file port upstream-port [jwt]
    cat >"$1" <<EOF
global
    nbthread 1
    log stderr local0 emerg
defaults
    mode http
    timeout client 30s
    timeout server 30s
    timeout connect 5s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:$2
EOF
    if [ "${4:-}" = jwt ]; then
        cat >>"$1" <<EOF
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
    http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 unless { var(txn.alg) -m str ES256 }
    http-request deny deny_status 401 unless { var(txn.iss) -m str orders }
    http-request deny deny_status 401 unless { var(txn.aud) -m str billing }
    http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$WORK/keys/orders.pub") -m int 1 }
EOF
    fi
    cat >>"$1" <<EOF
    default_backend be
backend be
    http-reuse always
    server up 127.0.0.1:$3
EOF
}
