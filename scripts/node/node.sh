# One node for the local control plane (`scripts/control-plane up --node`):
# containerd (Debian's, with runc) and a kubelet built from the API server's
# module, kube-scheduler, and the controllers a Deployment needs. Sourced by
# scripts/control-plane, which defines $state, log, die, alive, wait_for.
#
# What this machine needs, and why:
# - cgroup v1 with a cgroup2 mount beside it: the kubelet runs with
#   failCgroupV1: false, the cgroupfs driver;
# - no CAP_SYS_RESOURCE: containerd may not lower oom_score_adj
#   (restrict_oom_score_adj);
# - a disk more than 85% full: eviction and image GC thresholds lowered, or the
#   node reports DiskPressure and deletes the images it cannot pull back;
# - no image can be pulled: the pod sandbox ("pause", scripts/node/pause.c) and
#   the project's image are built here and imported into containerd.
#
# Pods reach the API server, which listens on 127.0.0.1 only, through the
# `kubernetes` Service's address: a DNAT rule on the pod bridge sends
# 10.0.0.1:443 to 127.0.0.1:<port> (route_localnet on that bridge), and the
# serving certificate names 10.0.0.1. No kube-proxy, no Service routing
# beyond that one address.

node=$state/node
kubelet_bin=$ARCADIA_BIN_DIR/kubelet-$KUBE_VERSION
scheduler_bin=$ARCADIA_BIN_DIR/kube-scheduler-$KUBE_VERSION
kubectl_bin=$ARCADIA_BIN_DIR/kubectl-$KUBE_VERSION
NODE_NAME=arcadia-node
NODE_BRIDGE=arcadia0
NODE_SUBNET=10.89.0
PAUSE_IMAGE=localhost/arcadia-pause:1

# One node per machine: the bridge, the DNAT rule and the kubelet's ports are the host's.
NODE_OWNER=${TMPDIR:-/tmp}/arcadia-drift-node.owner

node_enabled() { [[ -d $node ]]; }

node_claim() {
  local owner
  owner=$(cat "$NODE_OWNER" 2>/dev/null || true)
  if [[ -n $owner && $owner != "$state" && -f $owner/kubelet.pid ]] && kill -0 "$(cat "$owner/kubelet.pid")" 2>/dev/null; then
    die "a node already runs for the control plane in $owner; one node per machine (stop it with ARCADIA_CONTROL_PLANE_DIR=$owner scripts/control-plane down)"
  fi
  echo "$state" >"$NODE_OWNER"
}

node_ready() {
  alive containerd && alive kubelet && alive kube-scheduler || return 1
  [[ $("$kubectl_bin" --kubeconfig "$state/kubeconfig" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

# The address the kubelet reports: the first non-loopback IPv4 of the host.
node_ip() {
  ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}'
}

node_up() {
  command -v containerd >/dev/null || die "containerd is not installed (apt-get install containerd; .ci/run does)"
  [[ -x /usr/lib/cni/bridge ]] || die "the CNI plugins are not installed (apt-get install containernetworking-plugins)"
  [[ -x $kubelet_bin && -x $scheduler_bin ]] || "$here/build-tools" node
  [[ -n $(node_ip) ]] || die "no non-loopback IPv4 address for the node"
  node_claim
  mkdir -p "$node"/{cni,cni-ipam,kubelet,pod-logs,containerd}
  node_network
  node_configs
  node_start_containerd
  wait_for containerd 30 ctr_ok || die "containerd did not start; see $state/containerd.log"
  node_images
  node_start_scheduler
  node_start_kubelet
  wait_for kubelet 120 node_ready || die "the node did not become Ready; see $state/kubelet.log"
  log "node $NODE_NAME ready ($(node_ip)); pods reach the API server at 10.0.0.1:443"
}

ctr_ok() { ctr --address "$node/containerd.sock" version >/dev/null 2>&1; }

node_network() {
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
    ip addr add "$NODE_SUBNET.1/24" dev "$NODE_BRIDGE"
  fi
  ip link set "$NODE_BRIDGE" up
  sysctl -qw "net.ipv4.conf.$NODE_BRIDGE.route_localnet=1"
  sysctl -qw net.ipv4.ip_forward=1
  local rule=(PREROUTING -i "$NODE_BRIDGE" -d 10.0.0.1 -p tcp --dport 443 -j DNAT
    --to-destination "127.0.0.1:$(cat "$state/apiserver.port")")
  iptables -t nat -C "${rule[@]}" 2>/dev/null || iptables -t nat -A "${rule[@]}"
  echo "${rule[*]}" >"$node/dnat.rule"
}

node_configs() {
  cat >"$node/cni/10-arcadia.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "arcadia", "plugins": [
  {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$NODE_SUBNET.0/24", "gateway": "$NODE_SUBNET.1"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$node/cni-ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
  cat >"$node/containerd.toml" <<EOF
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
[grpc]
  address = "$node/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni"
EOF
  cat >"$node/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$node/containerd.sock
address: $(node_ip)
port: $(cat "$state/kubelet.port")
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(cat "$state/kubelet-healthz.port")
podLogsDir: $node/pod-logs
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
registerNode: true
EOF
}

node_start_containerd() {
  setsid containerd --config "$node/containerd.toml" >>"$state/containerd.log" 2>&1 </dev/null 9>&- &
  echo $! >"$state/containerd.pid"
}

# The pause image from scripts/node/pause.c, built static once per source.
node_images() {
  ctr --address "$node/containerd.sock" -n k8s.io images check "name==$PAUSE_IMAGE" 2>/dev/null | grep -q complete && return 0
  local sum work
  sum=$(sha256sum "$here/node/pause.c" | cut -c1-12)
  local bin=$ARCADIA_BIN_DIR/pause-$sum
  if [[ ! -x $bin ]]; then
    gcc -Os -static -o "$bin.tmp" "$here/node/pause.c" && mv "$bin.tmp" "$bin"
  fi
  work=$(mktemp -d)
  mkdir "$work/rootfs" && cp "$bin" "$work/rootfs/pause"
  tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
  "$here/podman" rmi -f "$PAUSE_IMAGE" >/dev/null 2>&1 || true
  "$here/podman" import -q --change 'USER 65535:65535' --change 'ENTRYPOINT ["/pause"]' \
    "$work/rootfs.tar" "$PAUSE_IMAGE" >/dev/null
  node_load_image "$PAUSE_IMAGE"
  rm -rf "$work"
}

# Copies an image from podman into the node's containerd.
node_load_image() {
  local image=$1 archive
  archive=$(mktemp --suffix .tar)
  rm -f "$archive"
  "$here/podman" save -q --format docker-archive -o "$archive" "$image" >/dev/null
  ctr --address "$node/containerd.sock" -n k8s.io images import --no-unpack=false "$archive" >/dev/null
  rm -f "$archive"
}

node_start_scheduler() {
  setsid "$scheduler_bin" --kubeconfig "$state/kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$(cat "$state/scheduler.port")" \
    >>"$state/kube-scheduler.log" 2>&1 </dev/null 9>&- &
  echo $! >"$state/kube-scheduler.pid"
}

node_start_kubelet() {
  setsid "$kubelet_bin" --config "$node/kubelet.yaml" --kubeconfig "$state/kubeconfig" \
    --root-dir "$node/kubelet" --cert-dir "$node/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$(node_ip)" \
    >>"$state/kubelet.log" 2>&1 </dev/null 9>&- &
  echo $! >"$state/kubelet.pid"
}

# Stops the node and everything it started: pods (their shims and processes),
# mounts under the node's directory, the bridge and the DNAT rule.
node_down() {
  [[ -d $node ]] || return 0
  local name pid
  for name in kubelet kube-scheduler; do
    if alive "$name"; then kill "$(cat "$state/$name.pid")" 2>/dev/null || true; fi
  done
  pkill -9 -f "containerd-shim-runc-v2 .*-address $node/containerd.sock" 2>/dev/null || true
  local cg
  for cg in /sys/fs/cgroup/*/kubepods; do
    [[ -d $cg ]] || continue
    find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  if alive containerd; then
    pid=$(cat "$state/containerd.pid"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  grep -o " $node/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  if [[ -f $node/dnat.rule ]]; then
    read -ra rule <"$node/dnat.rule"
    iptables -t nat -D "${rule[@]}" 2>/dev/null || true
  fi
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  [[ $(cat "$NODE_OWNER" 2>/dev/null) != "$state" ]] || rm -f "$NODE_OWNER"
}
