#!/usr/bin/env bash
# On the offline GPU host: gather the parts made by tools/gpu_bundle.sh, unpack once, run a command.
#
#   bash tools/gpu_run.sh --stage .xfer/p0                           # device call 1 (carry .xfer/p0)
#   bash tools/gpu_run.sh --stage .xfer/p1 -- python3 -m bench...    # last call: verify, unpack, run
#   bash tools/gpu_run.sh --wheels .whl                              # a call carrying wheels (e.g. av, which
#                                                                    # the bundle lacks): installed at once
#
# Parts are kept in /tmp/parts between calls (the machine stays warm for 30 s after each call); the
# command runs only once every part named in payload.sha256 is there and verified. The bundle is
# unpacked into /tmp/site once per machine. The command gets PYTHONPATH=/tmp/site:<repo>, the
# offline/vLLM environment below, and this repository's entry points (its vLLM plugin) registered
# through a .dist-info written into /tmp/site from pyproject.toml.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PARTS=${GPU_RUN_PARTS:-/tmp/parts}
SITE=${GPU_RUN_SITE:-/tmp/site}

EXTRA="$SITE.extra"  # wheels carried separately (--wheels), installed there
stage=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage+=("$2"); shift 2 ;;
    --wheels) python3 -m pip install -q --no-index --no-deps --no-compile --target "$EXTRA" "$2"/*.whl
              echo "[gpu_run] installed $(ls "$2"/*.whl | xargs -n1 basename | tr '\n' ' ')into $EXTRA"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) break ;;
  esac
done
mkdir -p "$PARTS"
for folder in "${stage[@]}"; do cp "$folder"/* "$PARTS"/; done
ls -l "$PARTS"
[ $# -eq 0 ] && exit 0

if [ ! -f "$SITE/.unpacked" ]; then
  (cd "$PARTS" && sha256sum -c payload.sha256)
  started=$(date +%s)
  mkdir -p "$SITE" && cat "$PARTS"/payload.part.* | xz -dc -T0 | tar -C "$SITE" -xf -
  touch "$SITE/.unpacked"
  echo "[gpu_run] unpacked $(du -sh "$SITE" | cut -f1) into $SITE in $(( $(date +%s) - started )) s"
fi

python3 - "$REPO/pyproject.toml" "$SITE" <<'EOF'
import pathlib, sys, tomllib
project = tomllib.loads(pathlib.Path(sys.argv[1]).read_text())["project"]
name = project["name"].replace("-", "_")
info = pathlib.Path(sys.argv[2]) / f"{name}-{project['version']}.dist-info"
info.mkdir(exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
groups = project.get("entry-points", {})
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in entries.items()) for group, entries in groups.items()))
EOF

export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
[ -d "$EXTRA" ] && export PYTHONPATH="$EXTRA:$PYTHONPATH"
export VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
       DO_NOT_TRACK=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
cd "$REPO"
python3 - <<'EOF' || echo "[gpu_run] torch/vllm not importable with this python"
import sys, torch, vllm
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"[gpu_run] python {sys.version.split()[0]} torch {torch.__version__} vllm {vllm.__version__}",
      f"GPUs {torch.cuda.device_count()} ({name})")
EOF
exec "$@"
