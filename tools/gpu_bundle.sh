#!/usr/bin/env bash
# Build a site-packages bundle of vLLM (+ extra packages) for an offline GPU host, split into parts.
#
#   tools/gpu_bundle.sh [--vllm 0.26.0] [--python 3.12] [--part-mib 31] [--out .xfer] [--dense-only]
#                       [--extra "kaldi-native-fbank==1.23.0 ..."] [--host-pins "torch==2.11.0 ..."]
#                       [--host-have "numpy torch ..."] [--skip "modelscope ..."]
#
# Resolves vllm==VERSION (+ --extra) for CPython VERSION on manylinux x86-64 against the host's pinned
# packages, keeps only what the host lacks, drops optional CUDA/video stacks a dense bf16 model on
# Hopper never imports (flashinfer, tilelang, cutlass-dsl, torchcodec, ...) and the FlashAttention-2
# and Rust front-end binaries, installs everything into one folder, then writes
#   OUT/p0/payload.part.00, OUT/p1/payload.part.01, ...   (xz-compressed tar, each <= PART_MIB MiB)
#   OUT/p*/payload.sha256                                   (checksums of all parts, in every folder)
# Carry one OUT/pN per device call and unpack with tools/gpu_run.sh. Needs pip and network here.
set -euo pipefail

VLLM=0.26.0
PY=3.12
PART_MIB=31  # + the working tree (~20 MiB) must stay under the 64 MiB a device call carries
OUT=.xfer
DENSE_ONLY=0
# What the GPU image (KINDS.md, 'cuda' image, 2026-11) already has, and the versions it pins.
# (numpy 2.5 is not pinned: vLLM's numba pin caps numpy below 2.4, and numba is only imported for n-gram
# speculative decoding.)
HOST_PINS="torch==2.11.0 torchaudio==2.11.0 torchvision==0.26.0 transformers==5.17.0 tokenizers==0.23.2
huggingface-hub==1.33.0"
HOST_HAVE="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs certifi
charset-normalizer click cloudpickle cmake colorama contourpy cuda-bindings cuda-core cuda-pathfinder cuda-toolkit
cycler cython einops filelock flatbuffers fonttools frozenlist fsspec grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub idna imageio jinja2 joblib kiwisolver llvmlite lxml markdown markdown-it-py markupsafe matplotlib
mdurl ml-dtypes mpmath msgpack multidict networkx ninja numba numpy nvidia-cublas nvidia-cuda-cupti
nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver
nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
nvidia-nvtx opencv-python-headless packaging pandas peft pillow pip pluggy prometheus-client propcache protobuf
psutil pyarrow py-cpuinfo pygments pyparsing python-dateutil pyyaml regex requests rich safetensors scipy
sentencepiece setuptools shellingham six sympy tiktoken tokenizers torch torchaudio torchvision tqdm transformers
triton typer typing-extensions typing-inspect urllib3 uvloop werkzeug wheel wrapt xxhash yarl zipp"
# Optional stacks not imported for a dense bf16 model on Hopper (and what only they pull in).
SKIP="flashinfer-python flashinfer-cubin flashinfer-jit-cache tilelang pynvvideocodec torchcodec mistral-common
pycountry nvidia-cudnn-frontend fastsafetensors nvtx quack-kernels tokenspeed-mla tokenspeed-triton humming-kernels
nvidia-cutlass-dsl nvidia-cutlass-dsl-libs-base nvidia-cutlass-dsl-libs-cu12 nvidia-cutlass-dsl-libs-cu13
nvidia-nvvm nvidia-cuda-nvcc z3-solver"
EXTRA=""

while [ $# -gt 0 ]; do
  case "$1" in
    --vllm) VLLM=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --part-mib) PART_MIB=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --dense-only) DENSE_ONLY=1; shift ;;
    --extra) EXTRA=$2; shift 2 ;;
    --host-pins) HOST_PINS=$2; shift 2 ;;
    --host-have) HOST_HAVE=$2; shift 2 ;;
    --skip) SKIP="$SKIP $2"; shift 2 ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

PYTAG=cp${PY/./}
PLAT="--only-binary=:all: --python-version $PY --implementation cp --abi $PYTAG --abi abi3 --abi none
 --platform manylinux1_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64"
for n in $(seq 17 39); do PLAT="$PLAT --platform manylinux_2_${n}_x86_64"; done
WORK=${BUNDLE_WORK:-$(mktemp -d)}  # reusing a BUNDLE_WORK folder reuses its resolution
mkdir -p "$WORK/whl" "$WORK/pins"
echo "[bundle] vllm==$VLLM python $PY -> $OUT (parts <= $PART_MIB MiB), work dir $WORK"

# 1. Resolve everything once for the target interpreter/platform, host versions pinned.
echo "$HOST_PINS" | tr ' ' '\n' | grep . > "$WORK/pins/host.txt"
export PIP_CONSTRAINT=
# shellcheck disable=SC2086
[ -s "$WORK/report.json" ] || python3 -m pip install -q --dry-run --ignore-installed --target "$WORK/resolve" $PLAT \
  -c "$WORK/pins/host.txt" --report "$WORK/report.json" "vllm==$VLLM" $EXTRA

# 2. Walk the dependency graph from the requested packages; stop at host or skipped packages.
python3 - "$WORK/report.json" "$PY" "$HOST_HAVE" "$SKIP" > "$WORK/needed.txt" <<'EOF'
import json, re, sys
from packaging.markers import default_environment
from packaging.requirements import Requirement

report, py, have, skip = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
have, skip = {norm(n) for n in have}, {norm(n) for n in skip}
env = default_environment() | {"python_version": py, "python_full_version": py + ".3",
                               "sys_platform": "linux", "platform_system": "Linux",
                               "platform_machine": "x86_64", "implementation_name": "cpython"}
items = {norm(i["metadata"]["name"]): i for i in json.load(open(report))["install"]}
todo = [(n, frozenset()) for n, i in items.items() if i.get("requested")]
seen, needed = set(), {}
while todo:
    name, extras = todo.pop()
    if (name, extras) in seen or name not in items or name in skip:
        continue
    seen.add((name, extras))
    meta = items[name]["metadata"]
    if name not in have or items[name].get("requested"):
        needed[name] = meta["version"]
    for spec in meta.get("requires_dist") or []:
        req = Requirement(spec)
        if req.marker and not any(req.marker.evaluate(env | {"extra": e}) for e in (extras or {""})):
            continue
        dep = norm(req.name)
        if dep not in have:
            todo.append((dep, frozenset(req.extras)))
for name, version in sorted(needed.items()):
    print(f"{name}=={version}")
EOF
echo "[bundle] $(wc -l < "$WORK/needed.txt") packages to carry (host has the rest, optional stacks skipped)"

# 3. Download the wheels and install them into one site folder (vllm unpacked and pruned).
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps $PLAT -d "$WORK/whl" -r "$WORK/needed.txt"
rm -rf "$WORK/site" && mkdir -p "$WORK/site"
(cd "$WORK/site" && unzip -q "$WORK"/whl/vllm-"$VLLM"-*.whl)
(cd "$WORK/site" && rm -rf vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so vllm/vllm-rs \
  $(ls vllm/third_party/deep_gemm/_C.cpython-3*-x86_64-linux-gnu.so 2>/dev/null | grep -v "cpython-${PY/./}-" || true))
[ "$DENSE_ONLY" = 1 ] && rm -f "$WORK/site/vllm/_moe_C_stable_libtorch.abi3.so"
# shellcheck disable=SC2086
python3 -m pip install -q --no-deps --no-compile --no-index $PLAT --target "$WORK/site" \
  $(ls "$WORK"/whl/*.whl | grep -v "/vllm-$VLLM-")
cp "$WORK/needed.txt" "$WORK/site/BUNDLE_PACKAGES.txt"

# 4. Compress, split, checksum; one folder per part so each device call carries one.
echo "[bundle] compressing $(du -sh "$WORK/site" | cut -f1) with xz -9e"
tar -C "$WORK/site" -cf - . | xz -9e -T0 > "$WORK/payload.tar.xz"
rm -rf "$WORK/parts" && mkdir -p "$WORK/parts"
(cd "$WORK/parts" && split -b "${PART_MIB}M" -d ../payload.tar.xz payload.part. && sha256sum payload.part.* > payload.sha256)
rm -rf "$OUT" && mkdir -p "$OUT"
i=0
for part in "$WORK"/parts/payload.part.*; do
  mkdir -p "$OUT/p$i" && mv "$part" "$OUT/p$i/" && cp "$WORK/parts/payload.sha256" "$OUT/p$i/"
  i=$((i + 1))
done
ls -l "$OUT"/p*/payload.part.* | awk '{printf "[bundle] %s %.1f MiB\n", $NF, $5 / 1048576}'
echo "[bundle] $i parts; carry $OUT/p0 .. $OUT/p$((i - 1)), one per call, then run tools/gpu_run.sh"
