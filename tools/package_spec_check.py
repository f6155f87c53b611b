#!/usr/bin/env python3
"""Validate an integration package directory against a local checkout of elastic/package-spec.

    git clone https://github.com/elastic/package-spec /tmp/package-spec
    python -m ids.cli es package -o /tmp/otids-pkg
    python tools/package_spec_check.py /tmp/package-spec /tmp/otids-pkg

The spec's files (spec/integration/**.spec.yml) are JSON Schema written in YAML, with `$ref`s between files
and a `versions` list of JSON patches that turn the newest schema into the one of an older format_version.
This script applies the patches for the package's format_version, resolves the references, and checks:
the folder layout (names, patterns, required entries, no undeclared contents where the spec forbids them),
and with the `jsonschema` library the package manifest, changelog, each data stream's manifest, fields
files, ingest pipelines and routing rules. It prints one line per problem and exits 1 when there is any.

What it does not do: the spec's semantic rules, implemented in Go by elastic-package (`elastic-package
lint`, `elastic-package check`): legacy/by-reference visualisations, dashboard filters, field name
conflicts with ECS, processor details. otids' own semantic checks are ids/output/fleet.py check().

The package-spec files are under the Elastic License (the checkout's LICENSE.txt), which does not allow
copying them into this repository: nothing of them is committed here, the checkout is read in place.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jsonpatch
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7


def _semver(v: str) -> tuple:
    core = re.match(r"^(\d+)\.(\d+)\.(\d+)", v)
    if not core:
        raise ValueError(f"not a version: {v}")
    return tuple(int(x) for x in core.groups())


class Spec:
    """The integration spec of one checkout, patched down to one format_version."""

    def __init__(self, checkout: Path, format_version: str):
        self.root = (checkout / "spec").resolve()
        if not (self.root / "integration" / "spec.yml").is_file():
            raise SystemExit(f"{checkout}: not a package-spec checkout (no spec/integration/spec.yml)")
        self.version = _semver(format_version)
        self._cache: dict[str, dict] = {}
        self.registry = Registry(retrieve=self._retrieve)

    def load(self, path: Path) -> dict:
        """The `spec` of a spec file with the patches of every `before` newer than our format applied."""
        key = str(path.resolve())
        if key not in self._cache:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            spec = doc["spec"]
            for entry in doc.get("versions") or []:
                if self.version < _semver(entry["before"]):
                    spec = jsonpatch.apply_patch(spec, entry["patch"])
            spec = dict(spec)
            spec["$id"] = path.resolve().as_uri()
            self._cache[key] = spec
        return self._cache[key]

    def _retrieve(self, uri: str):
        path = Path(uri.removeprefix("file://"))
        return Resource.from_contents(self.load(path), default_specification=DRAFT7)

    def validator(self, rel: str) -> Draft7Validator:
        schema = self.load(self.root / "integration" / rel)
        return Draft7Validator(schema, registry=self.registry)


def _load(path: Path):
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def check_layout(spec: Spec, spec_file: Path, folder: Path, pkg_name: str, rel: str, problems: list) -> None:
    """The folder against the spec's `contents` (names, patterns, required, additionalContents)."""
    node = spec.load(spec_file)
    _check_contents(spec, spec_file, node, folder, pkg_name, rel, problems)


def _matches(item: dict, name: str, pkg_name: str) -> bool:
    if "name" in item:
        return item["name"] == name
    if "pattern" in item:
        pattern = item["pattern"].replace("{PACKAGE_NAME}", re.escape(pkg_name))
        if not re.match(pattern, name):
            return False
        return not any(re.match(p, name) for p in item.get("forbiddenPatterns", []))
    return False


def _check_contents(spec: Spec, spec_file: Path, node: dict, folder: Path, pkg_name: str, rel: str,
                    problems: list) -> None:
    contents = node.get("contents", [])
    for item in contents:
        if item.get("required") and "name" in item and not (folder / item["name"]).exists():
            problems.append(f"{rel}{item['name']}: required by the spec, missing")
        if item.get("required") and "pattern" in item and not any(
                _matches(item, p.name, pkg_name) for p in folder.iterdir()):
            problems.append(f"{rel}: the spec requires an entry matching {item['pattern']}")
    for p in sorted(folder.iterdir()):
        want = "folder" if p.is_dir() else "file"
        item = next((i for i in contents if i.get("type") == want and _matches(i, p.name, pkg_name)), None)
        if item is None:
            if not node.get("additionalContents", False):
                problems.append(f"{rel}{p.name}: not allowed here by the spec")
            continue
        if want == "folder":
            sub_file, sub = spec_file, item
            if "$ref" in item:
                sub_file = (spec_file.parent / item["$ref"]).resolve()
                sub = spec.load(sub_file)
            _check_contents(spec, sub_file, sub, p, pkg_name, f"{rel}{p.name}/", problems)
        elif item.get("contentMediaType", "").startswith(("application/json", "application/x-yaml")):
            try:
                _load(p)
            except (ValueError, yaml.YAMLError) as e:
                problems.append(f"{rel}{p.name}: does not parse: {e}")


# package file (glob, relative to the package root) -> spec file (relative to spec/integration/)
SCHEMAS = (
    ("manifest.yml", "manifest.spec.yml"),
    ("changelog.yml", "changelog.spec.yml"),
    ("data_stream/*/manifest.yml", "data_stream/manifest.spec.yml"),
    ("data_stream/*/fields/*.yml", "data_stream/fields/fields.spec.yml"),
    ("data_stream/*/elasticsearch/ingest_pipeline/*.yml", "elasticsearch/pipeline.spec.yml"),
    ("data_stream/*/routing_rules.yml", "data_stream/routing_rules.spec.yml"),
)


def check_package(checkout: Path, package: Path) -> tuple[list[str], int]:
    """Every problem found, and how many files were validated against a schema."""
    manifest = _load(package / "manifest.yml")
    spec = Spec(checkout, manifest["format_version"])
    problems: list[str] = []
    check_layout(spec, spec.root / "integration" / "spec.yml", package, manifest["name"], "", problems)
    n = 0
    for pattern, rel in SCHEMAS:
        v = spec.validator(rel)
        for p in sorted(package.glob(pattern)):
            n += 1
            for e in sorted(v.iter_errors(_load(p)), key=lambda e: list(e.absolute_path)):
                where = "/".join(str(x) for x in e.absolute_path)
                problems.append(f"{p.relative_to(package)}: {where or '(top)'}: {e.message[:300]}")
    return problems, n


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: package_spec_check.py PACKAGE_SPEC_CHECKOUT PACKAGE_DIR", file=sys.stderr)
        return 2
    checkout, package = Path(argv[0]), Path(argv[1])
    if not (package / "manifest.yml").is_file():
        print(f"{package}: no manifest.yml (not a package directory)", file=sys.stderr)
        return 2
    problems, n = check_package(checkout, package)
    for p in problems:
        print(p)
    print(f"{package}: {n} files validated against {checkout} (format_version "
          f"{_load(package / 'manifest.yml')['format_version']}): {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
