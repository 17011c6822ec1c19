# nginx as the measurement scripts run it (sourced, not run): one config,
# so that every comparison gives nginx the same settings.

# Writes DIR/nginx.conf: WORKERS worker processes serving ROOT on
# 127.0.0.1:PORT, sendfile and tcp_nopush on, no access log, keep-alive
# connections that last, every temporary path inside DIR; EXTRA is added to
# the http block (such as `open_file_cache max=10000;`), and LISTEN to the
# listen directive (`ssl` for HTTPS, with the certificate in EXTRA).
# SERVER, if given, is the server block's content in place of `root ROOT;`
# (a `location` that proxies, say).
#   nginx_conf DIR PORT ROOT WORKERS [EXTRA] [LISTEN] [SERVER]
nginx_conf() {
    local dir=$1 port=$2 root=$3 workers=$4 extra=${5:-} listen=${6:-}
    local server=${7:-"root $root;"}
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<NGX
worker_processes $workers;
worker_rlimit_nofile 20000;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 20000; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 60;
    $extra
    client_body_temp_path $dir;
    proxy_temp_path $dir;
    fastcgi_temp_path $dir;
    uwsgi_temp_path $dir;
    scgi_temp_path $dir;
    server {
        listen 127.0.0.1:$port $listen;
        $server
    }
}
NGX
}
