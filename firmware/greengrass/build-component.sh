#!/bin/sh
# build-component.sh: the AWS IoT Greengrass v2 component edgecore.Agent -- its recipe and
# its artifact, laid out as greengrass-cli and the Greengrass console take them.
#
#   bash firmware/greengrass/build-component.sh [--wheelhouse DIR] [--bucket BUCKET] [OUT_DIR]
#
# OUT_DIR (default dist/greengrass) receives:
#   recipes/edgecore.Agent-<version>.json
#   artifacts/edgecore.Agent/<version>/edgecore-component.zip
#       edgecore-component/edgecore-<version>-py3-none-any.whl   built from this tree
#       edgecore-component/gg_run.py                             the Run step's launcher
#       edgecore-component/wheels/*.whl                          only with --wheelhouse
# The recipe's artifact URI is s3://BUCKET/edgecore.Agent/<version>/edgecore-component.zip
# (BUCKET: --bucket, default the placeholder "BUCKET"): upload the zip there for a cloud
# deployment; a local one (greengrass-cli deployment create --recipeDir OUT_DIR/recipes
# --artifactDir OUT_DIR/artifacts --merge edgecore.Agent=<version>) reads the zip from
# the artifacts folder. Without --wheelhouse the device's pip fetches the dependency
# (requests) from its index at install time.
#
# The wheel comes from firmware/linux/build-overlay.sh (one wheel build for every image).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ZIP_PYTHON=${PYTHON:-python3}  # zips and writes the recipe; build-overlay.sh picks its own
WHEELHOUSE=
BUCKET=BUCKET
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --wheelhouse) [ $# -ge 2 ] || { echo "build-component.sh: --wheelhouse needs a directory" >&2; exit 2; }
            WHEELHOUSE=$2; shift 2 ;;
        --bucket) [ $# -ge 2 ] || { echo "build-component.sh: --bucket needs a name" >&2; exit 2; }
            BUCKET=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) echo "build-component.sh: unknown option $1" >&2; exit 2 ;;
        *) [ -z "$OUT" ] || { echo "build-component.sh: one output directory only" >&2; exit 2; }
            OUT=$1; shift ;;
    esac
done
case "$BUCKET" in
    *[!a-z0-9.-]*|"") echo "build-component.sh: --bucket: not an S3 bucket name: $BUCKET" >&2; exit 2 ;;
esac

VERSION=$(sed -n 's/^version *= *//p' "$REPO/setup.cfg")
[ -n "$OUT" ] || OUT=$REPO/dist/greengrass
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgecore-gg.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

set --
[ -z "$WHEELHOUSE" ] || set -- --wheelhouse "$WHEELHOUSE"
bash "$REPO/firmware/linux/build-overlay.sh" "$@" "$WORK/overlay.tar.gz" >/dev/null
mkdir -p "$WORK/unpacked" "$WORK/zip/edgecore-component"
tar -xzf "$WORK/overlay.tar.gz" -C "$WORK/unpacked"
cp "$WORK"/unpacked/usr/lib/edgecore/edgecore-*.whl "$HERE/gg_run.py" "$WORK/zip/edgecore-component/"
if [ -d "$WORK/unpacked/usr/lib/edgecore/wheels" ]; then
    cp -r "$WORK/unpacked/usr/lib/edgecore/wheels" "$WORK/zip/edgecore-component/"
fi

A=$OUT/artifacts/edgecore.Agent/$VERSION
mkdir -p "$A" "$OUT/recipes"
rm -f "$A/edgecore-component.zip"
(cd "$WORK/zip" && "$ZIP_PYTHON" -m zipfile -c "$A/edgecore-component.zip" edgecore-component)
"$ZIP_PYTHON" - "$HERE/recipe.json" "$OUT/recipes/edgecore.Agent-$VERSION.json" "$VERSION" "$BUCKET" <<'PY'
import json
import sys

src, dst, version, bucket = sys.argv[1:]
with open(src) as f:
    recipe = json.load(f)
recipe["ComponentVersion"] = version
for manifest in recipe["Manifests"]:
    for artifact in manifest["Artifacts"]:
        artifact["URI"] = "s3://%s/edgecore.Agent/%s/edgecore-component.zip" % (bucket, version)
with open(dst, "w") as f:
    json.dump(recipe, f, indent=2)
    f.write("\n")
PY
echo "$OUT/recipes/edgecore.Agent-$VERSION.json"
echo "$A/edgecore-component.zip"
