#!/bin/bash
# split.sh NAME PORT cmd... : server user/sys µs per request (whole site, pinned)
name=$1; port=$2; shift 2
taskset -c 0 "$@" >/dev/null 2>&1 &
spid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
cd /work/main
WRK_PATHS=/tmp/prof/paths.txt taskset -c 1 wrk -t1 -c64 -d3s -s scripts/bench/site_paths.lua http://127.0.0.1:$port >/dev/null
ut() { local s=0; for p in $spid $(pgrep -P $spid); do s=$((s + $(awk '{print $14}' /proc/$p/stat))); done; echo $s; }
st() { local s=0; for p in $spid $(pgrep -P $spid); do s=$((s + $(awk '{print $15}' /proc/$p/stat))); done; echo $s; }
u0=$(ut); s0=$(st)
WRK_PATHS=/tmp/prof/paths.txt taskset -c 1 wrk -t1 -c64 -d10s -s scripts/bench/site_paths.lua http://127.0.0.1:$port > /tmp/prof/$name.split
u1=$(ut); s1=$(st)
n=$(awk '/requests in/{print $1}' /tmp/prof/$name.split)
echo "$name: $(awk '/Requests\/sec/{print $2}' /tmp/prof/$name.split) req/s; user $(echo "($u1-$u0)*10000/$n" | bc -l | cut -c1-5) us/req, sys $(echo "($s1-$s0)*10000/$n" | bc -l | cut -c1-5) us/req"
kill $spid; wait $spid 2>/dev/null
