#!/usr/bin/env bash
# Re-fetches the JavaScript libraries that `otids report` inlines into its HTML (ids/report/vendor/) from the
# npm registry with npm itself, with their licences, and records name, version and sha256 in VERSIONS.
# Usage: tools/vendor_report_js.sh [chart.js@X.Y.Z cytoscape@X.Y.Z]   (default: the versions pinned below)
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(chart.js@4.6.2 cytoscape@3.35.0)
[ $# -eq 0 ] || PKGS=("$@")
OUT=ids/report/vendor
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# file inside the npm package -> file in $OUT
declare -A BUILD=([chart.js]=dist/chart.umd.min.js [cytoscape]=dist/cytoscape.min.js)
: > "$TMP/VERSIONS"
for spec in "${PKGS[@]}"; do
  name=${spec%@*}
  (cd "$TMP" && npm pack --silent "$spec" > "$TMP/$name.tgzname")
  tgz="$TMP/$(cat "$TMP/$name.tgzname")"
  mkdir -p "$TMP/$name" && tar xzf "$tgz" -C "$TMP/$name"
  build="${BUILD[$name]}"
  [ -f "$TMP/$name/package/$build" ] || build=${build/.min.js/.js}
  cp "$TMP/$name/package/$build" "$OUT/$name.min.js"
  lic=$(ls "$TMP/$name/package" | grep -iE '^licen[cs]e' | head -1)
  cp "$TMP/$name/package/$lic" "$OUT/$name.LICENSE"
  version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$TMP/$name/package/package.json")
  sum=$(sha256sum "$OUT/$name.min.js" | cut -d' ' -f1)
  echo "$name $version $build sha256:$sum" >> "$TMP/VERSIONS"
done
cp "$TMP/VERSIONS" "$OUT/VERSIONS"
cat "$OUT/VERSIONS"
