#!/usr/bin/env bash
# ferry demo: two simulated hosts, two containers on each, one overlay network.
#
#   sudo make demo                       (builds bin/ferry, then runs this)
#   sudo FERRY_BIN=bin/ferry scripts/demo.sh
#
# Everything lives in network namespaces this script creates, named
# fdemo-<run id>-<role>; the machine's own namespace is never touched:
#
#   fdemo-ID-sw    the underlay "switch": a Linux bridge, br0
#   fdemo-ID-h1    host h1, underlay ul0 192.168.77.1/24 (a veth into sw)
#   fdemo-ID-h2    host h2, underlay ul0 192.168.77.2/24 (a veth into sw)
#   fdemo-ID-c1a   container on h1, eth0 10.42.0.2/24 (a TAP served by ferry on h1)
#   fdemo-ID-c1b   container on h1, eth0 10.42.0.3/24
#   fdemo-ID-c2a   container on h2, eth0 10.42.0.4/24 (a TAP served by ferry on h2)
#   fdemo-ID-c2b   container on h2, eth0 10.42.0.5/24
#
# One ferry runs inside each host namespace:
#
#   ip netns exec fdemo-ID-h1 bin/ferry run --config h1.yaml
#
# and, from its config, creates one TAP device per container, moves it into
# the container's namespace, renames it eth0, and gives it its MAC and
# address. Frames between containers on one host go through ferry's learning
# bridge; frames to the other host go inside VXLAN (VNI 42, UDP 4789) over
# the underlay. The ferry CLI talks to each daemon over its control socket:
#
#   bin/ferry --socket /tmp/ferry-demo-XXXXXX/h1.sock fdb
#
# The demo pings across hosts, moves 200 MB over TCP (iperf3, or a small
# python3 sender/receiver when iperf3 is missing; DEMO_TCP=iperf3|python3
# chooses), prints each host's FDB and counters, stops both daemons, and
# removes exactly what it created, also on failure or Ctrl-C. Every step has
# a timeout. It prints "demo OK" and exits 0, or prints the failure with the
# ferry logs and exits 1.
set -euo pipefail

readonly STEP_TIMEOUT=30     # seconds, for any single command
readonly READY_TIMEOUT=15    # seconds, for a daemon to answer on its socket
readonly TRANSFER_TIMEOUT=60 # seconds, for the 200 MB transfer
readonly STOP_TIMEOUT=10     # seconds, for a daemon to exit after SIGTERM
readonly TCP_BYTES=$((200 * 1000 * 1000))
readonly TCP_PORT=5201

die() {
	echo "demo.sh: $*" >&2
	exit 1
}

header() {
	printf '\n== %s\n' "$*"
}

# ---------------------------------------------------------------------------
# Preconditions: root, the ferry binary, the tools.

[[ $EUID -eq 0 ]] || die "needs root to create network namespaces; run: sudo make demo"

repo=$(cd "$(dirname "$0")/.." && pwd)
FERRY=${FERRY_BIN:-$repo/bin/ferry}
[[ -x $FERRY ]] || die "no ferry binary at $FERRY; run: make build (or set FERRY_BIN)"

# need CMD PACKAGE: fail naming the Debian package that provides CMD.
need() {
	command -v "$1" >/dev/null 2>&1 ||
		die "'$1' is not installed; install it with: apt-get install -y $2"
}
need ip iproute2
need ss iproute2
need ping iputils-ping
need timeout coreutils

tcp_tool=${DEMO_TCP:-}
if [[ -z $tcp_tool ]]; then
	if command -v iperf3 >/dev/null 2>&1; then
		tcp_tool=iperf3
	elif command -v python3 >/dev/null 2>&1; then
		tcp_tool=python3
	else
		die "the TCP transfer needs iperf3 or python3; install one with: apt-get install -y iperf3"
	fi
fi
case $tcp_tool in
iperf3) need iperf3 iperf3 ;;
python3) need python3 python3 ;;
*) die "DEMO_TCP=$tcp_tool: expected iperf3 or python3" ;;
esac

# t CMD...: run one step with a time limit. --foreground keeps the command in
# our process group, so Ctrl-C reaches it at once.
t() {
	timeout --foreground --kill-after=5 "$STEP_TIMEOUT" "$@"
}

# ---------------------------------------------------------------------------
# Names. The run id (our PID and a random number, in hex) makes every name
# unique to this run; TAP names stay within the 15-byte interface name limit.

id=$(printf '%x%04x' "$$" "$RANDOM")
ns_sw=fdemo-$id-sw
ns_h1=fdemo-$id-h1
ns_h2=fdemo-$id-h2
ns_c1a=fdemo-$id-c1a
ns_c1b=fdemo-$id-c1b
ns_c2a=fdemo-$id-c2a
ns_c2b=fdemo-$id-c2b
tap_c1a=f${id}1a
tap_c1b=f${id}1b
tap_c2a=f${id}2a
tap_c2b=f${id}2b

# What this run created, for cleanup: namespaces in creation order, and the
# PIDs of the processes it started.
created_ns=()
declare -A ferry_pid=()  # host -> PID of `ferry run`
declare -A ferry_log=()  # host -> log file
declare -A ferry_sock=() # host -> control socket
helper_pids=()           # TCP server processes
workdir=""
failed_step=""

# ---------------------------------------------------------------------------
# Cleanup: runs on every exit, normal or not, and undoes exactly what was
# created, by name and by PID.

# stop_ferry HOST: SIGTERM the daemon we started on HOST, wait up to
# STOP_TIMEOUT for it, SIGKILL it after that. Prints its exit status and
# returns it.
stop_ferry() {
	local host=$1 pid=${ferry_pid[$1]:-} rc=0 i
	[[ -n $pid ]] || return 0
	unset "ferry_pid[$host]"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "ferry on $host (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || rc=$?
	echo "ferry on $host (pid $pid) exited with status $rc"
	return "$rc"
}

cleanup() {
	local rc=$? pid host i log
	set +e
	# Cleanup runs once, to the end: a second Ctrl-C does not cut it short
	# (every step in it is bounded).
	trap - EXIT
	trap '' INT TERM
	if ((rc != 0)); then
		echo >&2
		echo "demo FAILED (exit $rc)${failed_step:+ during: $failed_step}" >&2
		for host in h1 h2; do
			[[ -n ${ferry_log[$host]:-} ]] || continue
			echo "--- last lines of the ferry log on $host (${ferry_log[$host]}):" >&2
			tail -n 40 "${ferry_log[$host]}" >&2
		done
		for log in "$workdir"/*-server.log; do
			[[ -s $log ]] || continue
			echo "--- TCP server log ($log):" >&2
			tail -n 20 "$log" >&2
		done
	fi
	header "cleanup"
	for pid in "${helper_pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	for host in h1 h2; do
		stop_ferry "$host"
	done
	for ((i = ${#created_ns[@]} - 1; i >= 0; i--)); do
		timeout 10 ip netns delete "${created_ns[i]}" ||
			echo "could not delete namespace ${created_ns[i]}" >&2
	done
	echo "deleted namespaces: ${created_ns[*]:-none}"
	if [[ -n $workdir ]]; then
		rm -rf -- "$workdir"
	fi
	if ((rc == 0)); then
		echo
		echo "demo OK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

step() {
	failed_step=$*
}

workdir=$(mktemp -d /tmp/ferry-demo-XXXXXX)

# ---------------------------------------------------------------------------
# Topology.

header "creating namespaces (run id $id)"
step "creating namespaces"
for ns in "$ns_sw" "$ns_h1" "$ns_h2" "$ns_c1a" "$ns_c1b" "$ns_c2a" "$ns_c2b"; do
	# `ip netns add` fails if the name exists, so we never adopt (and later
	# delete) a namespace that is not ours.
	t ip netns add "$ns"
	created_ns+=("$ns")
	t ip -n "$ns" link set lo up
done
echo "${created_ns[*]}"

header "underlay: bridge br0 in $ns_sw, hosts at 192.168.77.1 and .2"
step "building the underlay"
t ip -n "$ns_sw" link add br0 type bridge
t ip -n "$ns_sw" link set br0 up
# Each veth is created inside the switch namespace with its other end going
# straight into the host namespace as ul0, so no name ever appears in the
# machine's own namespace.
underlay_ip=([1]=192.168.77.1 [2]=192.168.77.2)
for n in 1 2; do
	host_ns=fdemo-$id-h$n
	t ip -n "$ns_sw" link add "h$n" type veth peer name ul0 netns "$host_ns"
	t ip -n "$ns_sw" link set "h$n" master br0 up
	t ip -n "$host_ns" addr add "${underlay_ip[n]}/24" dev ul0
	t ip -n "$host_ns" link set ul0 up
done
t ip netns exec "$ns_h1" ping -c 1 -W 2 192.168.77.2 >/dev/null ||
	die "the underlay does not work: h1 cannot ping 192.168.77.2"
echo "h1 reaches h2 over the underlay"

# ---------------------------------------------------------------------------
# ferry, one per host.

# write_config HOST UNDERLAY PEER METRICS_PORT TAP1 NS1 IP1 TAP2 NS2 IP2
write_config() {
	local host=$1 underlay=$2 peer=$3 mport=$4
	local tap1=$5 netns1=$6 ip1=$7 tap2=$8 netns2=$9 ip2=${10}
	local last1=${ip1##*.} last2=${ip2##*.}
	cat >"$workdir/$host.yaml" <<EOF
node:
  name: $host
  underlay: $underlay
  workers: 2
control:
  socket: $workdir/$host.sock
metrics:
  # Inside the host's namespace, so this is that namespace's loopback.
  listen: 127.0.0.1:$mport
networks:
  - name: blue
    vni: 42
    subnet: 10.42.0.0/24
    peers: [$peer]
    ports:
      - {name: $tap1, netns: $netns1, ifname: eth0, address: $ip1/24, mac: "$(printf '02:42:0a:2a:00:%02x' "$last1")"}
      - {name: $tap2, netns: $netns2, ifname: eth0, address: $ip2/24, mac: "$(printf '02:42:0a:2a:00:%02x' "$last2")"}
EOF
}

# start_ferry HOST NAMESPACE: run `ferry run` inside NAMESPACE in the
# background and wait until it answers on its control socket.
start_ferry() {
	local host=$1 ns=$2 i
	ferry_log[$host]=$workdir/$host.log
	ferry_sock[$host]=$workdir/$host.sock
	echo "ip netns exec $ns $FERRY run --config $workdir/$host.yaml"
	# `ip netns exec` execs ferry, so $! is ferry's own PID.
	ip netns exec "$ns" "$FERRY" run --config "$workdir/$host.yaml" >"${ferry_log[$host]}" 2>&1 &
	ferry_pid[$host]=$!
	for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
		if timeout 5 "$FERRY" --socket "${ferry_sock[$host]}" status >/dev/null 2>&1; then
			timeout 5 "$FERRY" --socket "${ferry_sock[$host]}" status
			return 0
		fi
		kill -0 "${ferry_pid[$host]}" 2>/dev/null || die "ferry on $host exited during start"
		sleep 0.1
	done
	die "ferry on $host did not answer on ${ferry_sock[$host]} within ${READY_TIMEOUT}s"
}

header "h1: ferry config ($workdir/h1.yaml)"
write_config h1 192.168.77.1 192.168.77.2 9469 "$tap_c1a" "$ns_c1a" 10.42.0.2 "$tap_c1b" "$ns_c1b" 10.42.0.3
cat "$workdir/h1.yaml"
echo "(h2.yaml differs in name, underlay, peer, metrics port and ports)"
write_config h2 192.168.77.2 192.168.77.1 9470 "$tap_c2a" "$ns_c2a" 10.42.0.4 "$tap_c2b" "$ns_c2b" 10.42.0.5

header "starting ferry on h1 and h2"
step "starting ferry on h1"
start_ferry h1 "$ns_h1"
step "starting ferry on h2"
start_ferry h2 "$ns_h2"

header "c1a (h1): ip addr show eth0 (a TAP created by ferry)"
step "checking c1a's eth0"
t ip -n "$ns_c1a" addr show dev eth0

# ---------------------------------------------------------------------------
# Traffic.

# ping_test FROM_NAME FROM_NS TO_NAME TO_IP
ping_test() {
	step "ping $1 -> $3 ($4)"
	header "ping $1 -> $3"
	t ip netns exec "$2" ping -c 4 -i 0.2 -W 2 "$4"
}
ping_test "c1a (h1)" "$ns_c1a" "c2a (h2)" 10.42.0.4
ping_test "c2b (h2)" "$ns_c2b" "c1b (h1)" 10.42.0.3
ping_test "c1a (h1)" "$ns_c1a" "c1b (h1), same host" 10.42.0.3

# wait_listening NS PORT: wait until a TCP socket listens on PORT in NS.
wait_listening() {
	local i
	for ((i = 0; i < 50; i++)); do
		if [[ -n $(t ip netns exec "$1" ss -Hltn "sport = :$2") ]]; then
			return 0
		fi
		sleep 0.1
	done
	die "nothing listens on TCP port $2 in $1 after 5s"
}

# The python3 fallback: a receiver that counts bytes and reports the count
# back, and a sender that times TCP_BYTES to the receiver's acknowledgement.
read -r -d '' py_server <<'EOF' || true
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((addr, port))
ls.listen(1)
ls.settimeout(30)
conn, _ = ls.accept()
conn.settimeout(30)
total = 0
while True:
    chunk = conn.recv(1 << 20)
    if not chunk:
        break
    total += len(chunk)
conn.sendall(str(total).encode())
conn.close()
EOF
read -r -d '' py_client <<'EOF' || true
import socket, sys, time
addr, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = b"\0" * (1 << 20)
s = socket.create_connection((addr, port), timeout=30)
start = time.monotonic()
sent = 0
while sent < size:
    n = min(len(block), size - sent)
    s.sendall(block[:n])
    sent += n
s.shutdown(socket.SHUT_WR)
got = int(s.recv(64).decode() or "0")
secs = time.monotonic() - start
print(f"sent {sent} bytes in {secs:.2f} s: {sent * 8 / secs / 1e6:.0f} Mbit/s; receiver counted {got} bytes")
sys.exit(0 if got == sent else 1)
EOF

# 200 MB is 200,000,000 bytes, which iperf3 reports as 191 MBytes (MiB).
header "TCP 200 MB c1a -> c2a ($tcp_tool)"
step "TCP transfer c1a -> c2a"
case $tcp_tool in
iperf3)
	# -1: the server exits after one test.
	timeout --kill-after=5 "$TRANSFER_TIMEOUT" ip netns exec "$ns_c2a" \
		iperf3 -s -1 -B 10.42.0.4 -p "$TCP_PORT" >"$workdir/iperf3-server.log" 2>&1 &
	helper_pids+=("$!")
	wait_listening "$ns_c2a" "$TCP_PORT"
	timeout --foreground --kill-after=5 "$TRANSFER_TIMEOUT" ip netns exec "$ns_c1a" \
		iperf3 -c 10.42.0.4 -p "$TCP_PORT" -n "$TCP_BYTES" -f m --connect-timeout 5000
	;;
python3)
	timeout --kill-after=5 "$TRANSFER_TIMEOUT" ip netns exec "$ns_c2a" \
		python3 -c "$py_server" 10.42.0.4 "$TCP_PORT" >"$workdir/python-server.log" 2>&1 &
	helper_pids+=("$!")
	wait_listening "$ns_c2a" "$TCP_PORT"
	timeout --foreground --kill-after=5 "$TRANSFER_TIMEOUT" ip netns exec "$ns_c1a" \
		python3 -c "$py_client" 10.42.0.4 "$TCP_PORT" "$TCP_BYTES"
	;;
esac

# ---------------------------------------------------------------------------
# What ferry saw: the learned MACs and the counters of each host.

declare -A host_ns=([h1]=$ns_h1 [h2]=$ns_h2)
declare -A metrics_port=([h1]=9469 [h2]=9470)
for host in h1 h2; do
	for cmd in fdb ports peers runtime errors; do
		step "$host: ferry $cmd"
		header "$host: ferry $cmd"
		t "$FERRY" --socket "${ferry_sock[$host]}" "$cmd"
	done
	# The same counters as Prometheus metrics. The listener is on the
	# host namespace's loopback, so curl runs inside that namespace.
	url=http://127.0.0.1:${metrics_port[$host]}/metrics
	header "$host: metrics, ferry_port_* (curl $url)"
	if command -v curl >/dev/null 2>&1; then
		step "$host: metrics"
		t ip netns exec "${host_ns[$host]}" curl -sS --max-time 5 "$url" |
			grep -E '^ferry_port_(rx|tx)_(packets|bytes)_total'
	else
		echo "(skipped: curl is not installed; apt-get install -y curl)"
	fi
done

# ---------------------------------------------------------------------------
# Stop both daemons: each must exit 0 and take its TAP devices with it.

header "stopping ferry"
for host in h1 h2; do
	step "stopping ferry on $host"
	stop_ferry "$host"
done
step "checking that the TAP devices are gone"
for ns in "$ns_c1a" "$ns_c1b" "$ns_c2a" "$ns_c2b"; do
	if t ip -n "$ns" link show dev eth0 >/dev/null 2>&1; then
		die "eth0 still exists in $ns after ferry stopped"
	fi
done
echo "every container's eth0 went away with its ferry"
failed_step=""
