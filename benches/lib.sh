# Shared by benches/load.sh and benches/compare.sh (sourced): a work directory, the
# processes to stop on exit, and the helpers both use.

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

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
