#!/usr/bin/env bash
# Build llama-server (CPU, Release) from the llama.cpp vendored in the llama-cpp-python sdist
# that Hugind pins, so the peer runs the very same llama.cpp as Hugind and llama-cpp-python.
#
#   bench/build_llama_server.sh            # -> bench/out/llama.cpp-build/bin/llama-server
#
# Environment: LLAMA_CPP_PYTHON_VERSION (default 0.3.36), JOBS (default 2), PYTHON (default
# .venv/bin/python, else python3). Idempotent: reuses the sdist and the build directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
jobs="${JOBS:-2}"
out="$here/out"
sdist_dir="$out/sdist"
src="$sdist_dir/llama_cpp_python-$version/vendor/llama.cpp"
build="$out/llama.cpp-build"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python="python3"

mkdir -p "$sdist_dir"
if [ ! -d "$src" ]; then
    tarball="$sdist_dir/llama_cpp_python-$version.tar.gz"
    if [ ! -f "$tarball" ]; then
        echo "== downloading llama-cpp-python==$version sdist"
        "$python" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" \
            -d "$sdist_dir"
    fi
    echo "== unpacking $tarball"
    tar -xzf "$tarball" -C "$sdist_dir"
fi

echo "== configuring $build"
# Same CPU flags as the README's install of llama-cpp-python: no AMX tile kernels (they crash
# on Xeon VMs with AMX, see CMakeLists-notes.md), so both sides run the same kernels.
nice -n 10 cmake -S "$src" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS=-U__AMX_INT8__ -DCMAKE_CXX_FLAGS=-U__AMX_INT8__ \
    -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON \
    -DGGML_METAL=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF

echo "== building llama-server (-j$jobs)"
nice -n 10 cmake --build "$build" --config Release --target llama-server -j "$jobs"

bin="$build/bin/llama-server"
"$bin" --version 2>&1 | head -n 3 || true
echo "$bin"
