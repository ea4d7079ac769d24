# Versions of the tools the scripts and tests build (from Go modules; mdbook with cargo). Sourced, not run.
# Bumping one of these rebuilds only that tool: cached binaries are keyed by version.
# Supported Kubernetes: 1.34 through 1.37. ARCADIA_KUBE_VERSION picks the
# control plane the scripts and tests run (e.g. v1.34.4, the oldest supported).
KUBE_VERSION=${ARCADIA_KUBE_VERSION:-v1.37.2}     # kube-apiserver and kubectl (stay below 1.38: it needs Go 1.27)
KUBE_VERSION_OLDEST=v1.34.4
ETCD_VERSION=v3.7.3      # Kubernetes v1.37 pins etcd 3.7.0 in build/dependencies.yaml
HELM_VERSION=v3.22.0
HELM_K8S_VERSION=1.37       # the Kubernetes version of helm's client-go (v0.37): what `helm template` assumes
PROMETHEUS_VERSION=v0.316.0   # the Prometheus Go module (its v0.x tags): promtool, for the alert rule tests
MOTO_VERSION=5.2.5       # moto[server] from PyPI, the AWS tests' EC2; tests/common/moto.rs installs it into a venv under the cache
MDBOOK_VERSION=0.4.52    # the book (book.toml, docs/): built from its crate with cargo install, not Go

ARCADIA_CACHE_DIR=${ARCADIA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/arcadia-drift}
ARCADIA_BIN_DIR=$ARCADIA_CACHE_DIR/bin
