"""What the output layer costs a causal LM used for embeddings (Gemma 3 270M: 262,144 rows).

In llama.cpp's embedding contexts every token is an output (``output_all`` in
``llama_context::decode``) and the Gemma graph always ends in the lm_head matmul, so the
262k-wide logits are computed for every input token, then thrown away. This times one
``llama_decode`` of the same packed batch (``--inputs`` short texts) three ways, in-process:

- ``embeddings``: an embedding context (``embeddings=true``, mean pooling), as Hugind serves it;
- ``last-logits``: a generation context, outputs only on each input's last token: the same
  layers, the lm_head on ``--inputs`` rows instead of every token (what an embedding context
  could cost if llama.cpp skipped the output layer);
- ``all-logits``: a generation context with every token an output (the lm_head on every row).

    .venv/bin/python -m bench.output_layer [--model-path GGUF] [--inputs 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import llama_cpp

from bench.peers import default_model_path
from bench.scenarios import make_text


def _context(model: Any, n_tokens: int, n_seq: int, *, embeddings: bool, threads: int) -> Any:
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = max(512, n_tokens)
    cp.n_seq_max = n_seq
    cp.n_threads = cp.n_threads_batch = threads
    cp.kv_unified = True
    cp.embeddings = embeddings
    if embeddings:
        cp.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
    ctx = llama_cpp.llama_init_from_model(model, cp)
    if not ctx:
        raise RuntimeError("llama.cpp could not create the context")
    return ctx


def _decode_s(ctx: Any, inputs: list[list[int]], outputs: str, repeats: int) -> float:
    """Median seconds of one llama_decode of all ``inputs`` packed as separate sequences."""
    n = sum(len(t) for t in inputs)
    batch = llama_cpp.llama_batch_init(n, 0, 1)
    times = []
    try:
        for _ in range(repeats + 1):  # the first is a warm-up
            i = 0
            for s, toks in enumerate(inputs):
                for p, t in enumerate(toks):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = t, p, 1
                    batch.seq_id[i][0] = s
                    batch.logits[i] = outputs == "all" or p == len(toks) - 1
                    i += 1
            batch.n_tokens = n
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            t0 = time.perf_counter()
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            times.append(time.perf_counter() - t0)
    finally:
        llama_cpp.llama_batch_free(batch)
    return sorted(times[1:])[len(times[1:]) // 2]


def measure(model_path: str, n_inputs: int, repeats: int, threads: int) -> dict[str, Any]:
    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(model_path.encode(), mp)
    vocab = llama_cpp.llama_model_get_vocab(model)
    inputs = []
    for i in range(n_inputs):
        text = make_text(8, seed=f"output-layer-{i}").encode()
        buf = (llama_cpp.llama_token * 256)()
        k = llama_cpp.llama_tokenize(vocab, text, len(text), buf, 256, True, False)
        inputs.append(list(buf[:k]))
    n_tokens = sum(len(t) for t in inputs)
    out: dict[str, Any] = {"model": model_path, "inputs": n_inputs, "tokens": n_tokens,
                           "n_vocab": llama_cpp.llama_vocab_n_tokens(vocab),
                           "threads": threads, "repeats": repeats}
    for name, embeddings, outputs in [("embeddings", True, "all"),
                                      ("last-logits", False, "last"),
                                      ("all-logits", False, "all")]:
        ctx = _context(model, n_tokens, n_inputs, embeddings=embeddings, threads=threads)
        try:
            seconds = _decode_s(ctx, inputs, outputs, repeats)
        finally:
            llama_cpp.llama_free(ctx)
        out[name] = {"decode_ms": round(seconds * 1000, 2),
                     "inputs_per_s": round(n_inputs / seconds, 1)}
    llama_cpp.llama_model_free(model)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.output_layer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None, help="default: the Gemma 3 270M GGUF")
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.model_path or default_model_path(), args.inputs, args.repeats,
                     args.threads)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:  # noqa: PTH123 - a plain output file
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
