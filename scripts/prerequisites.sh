# What the test suite and the demo need besides Rust and Go, in one place for
# scripts/test, scripts/doctor and .ci/run. Sourced, not run.
#
# Each line: what it is for | how to tell it is there | the Debian package(s) that bring it.
ARCADIA_PREREQUISITES=(
  "openssl: the control plane's certificates|command -v openssl|openssl"
  "curl: health checks of the control plane|command -v curl|curl"
  "flock and setsid: the control plane's locking and sessions|command -v flock && command -v setsid|util-linux"
  "python3: the fake DigitalOcean's helpers|command -v python3|python3"
  "python3 venv and pip: moto (the AWS tests' EC2) in a virtual environment|python3 -c 'import venv, ensurepip'|python3-venv"
  "base64|command -v base64|coreutils"
  "git: Git write-back and its real git http-backend server|command -v git|git"
  "ssh and ssh-keygen: SSH write-back|command -v ssh && command -v ssh-keygen|openssh-client"
  "sshd: the SSH write-back test's real server|test -x /usr/sbin/sshd|openssh-server"
  "podman and runc: the image test|command -v podman && command -v runc|podman runc"
  "containerd and the CNI plugins: the node test|command -v containerd && test -x /usr/lib/cni/bridge|containerd containernetworking-plugins"
  "iptables and ip: the node's network|command -v iptables && command -v ip|iptables iproute2"
  "gcc and libc headers: the node's pause image|command -v gcc && test -e /usr/include/stdio.h|gcc libc6-dev"
)

# Prints the Debian packages of every missing prerequisite, one line.
arcadia_missing_packages() {
  local entry check packages missing=()
  for entry in "${ARCADIA_PREREQUISITES[@]}"; do
    check=${entry#*|}; packages=${check#*|}; check=${check%%|*}
    bash -c "$check" >/dev/null 2>&1 || missing+=($packages)
  done
  echo "${missing[*]}"
}

# Installs what is missing when root; otherwise says the exact command and fails (exit 2).
arcadia_install_prerequisites() {
  local missing
  missing=$(arcadia_missing_packages)
  [[ -z $missing ]] && return 0
  if [[ $(id -u) != 0 ]]; then
    echo "missing prerequisites; install them first (scripts/doctor says what each is for):" >&2
    echo "  sudo apt-get install -y $missing" >&2
    exit 2
  fi
  echo "installing missing prerequisites: $missing" >&2
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
}
