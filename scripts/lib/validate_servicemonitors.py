"""Validates the ServiceMonitor objects in rendered manifests (YAML files given as arguments)
against the Prometheus Operator's schema, offline.

kubernetes-validate bundles Kubernetes' own schemas only; ServiceMonitor is a CRD. The models of
cloudcoil-models-prometheus-operator (PyPI) are generated from the Operator's CRDs: validating
with them checks types, enums and patterns, and a round trip that must give back the input
finds every field the schema does not know (the models drop those silently).
Prints one line per object; exits 1 if any fails, 2 if a file holds no ServiceMonitor.
"""

import sys

import yaml
from cloudcoil.models.prometheus_operator import v1


def differences(given, known, path=""):
    """Paths present in `given` but not in `known`, or holding other values."""
    if isinstance(given, dict) and isinstance(known, dict):
        for key, value in given.items():
            if key not in known:
                yield f"{path}.{key}: not in the ServiceMonitor schema"
            else:
                yield from differences(value, known[key], f"{path}.{key}")
    elif isinstance(given, list) and isinstance(known, list) and len(given) == len(known):
        for i, (a, b) in enumerate(zip(given, known)):
            yield from differences(a, b, f"{path}[{i}]")
    elif given != known:
        yield f"{path}: {given!r} read back as {known!r}"


def main(paths):
    failed = 0
    seen = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            if doc.get("kind") != "ServiceMonitor":
                continue
            seen += 1
            name = f"{path}: servicemonitor/{doc.get('metadata', {}).get('name')}"
            try:
                model = v1.ServiceMonitor.model_validate(doc)
            except Exception as e:  # pydantic's ValidationError lists every problem
                print(f"ERROR {name}: {e}")
                failed += 1
                continue
            back = model.model_dump(by_alias=True, exclude_none=True, mode="json")
            problems = list(differences(doc, back))
            if problems:
                print(f"ERROR {name}: " + "; ".join(problems))
                failed += 1
            else:
                print(f"INFO {name} passed")
    if seen == 0:
        print("ERROR no ServiceMonitor found in " + ", ".join(paths))
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
