"""`lookout models check|patch` on checkpoint folders written here with both known defects.

The modeling file is a small stand-in with the same shape as MiniCPM-o's `chat()` (generate,
then TTS post-processing on `outputs.sequences`); running it before and after the patch shows
the fall-through and its fix. Configs and safetensors headers are real files.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings
from worker import models_cli

MODELING = """
class MiniCPMO:
    def generate(self, stream=False, **kwargs):
        if stream:
            return "STREAMER", {}
        return ["answer"], Outputs()

    def chat(
        self,
        msgs=None,
        stream=False,
        **kwargs,
    ):
        with_ctx = None
        if True:
            res, outputs = self.generate(
                stream=stream,
                max_new_tokens=3,
            )

        # spk bound and tts bound
        tts_bos_token = 1
        generated_ids = outputs.sequences[0]
        return res[0]

    def other(self):
        return None


class Outputs:
    sequences = [[1, 2, 3]]
"""


def write_checkpoint(folder: Path, listed: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    quant = {"quant_method": "awq", "bits": 4, "modules_to_not_convert": listed}
    (folder / "config.json").write_text(
        json.dumps({"model_type": "minicpmo", "quantization_config": quant})
    )
    (folder / "modeling_minicpmo.py").write_text(MODELING)
    tensors = {
        "llm.model.layers.0.self_attn.q_proj.qweight": [64, 8],
        "llm.model.layers.0.self_attn.q_proj.scales": [1, 64],
        "llm.lm_head.weight": [100, 64],
        "vpm.encoder.layers.0.mlp.fc1.weight": [32, 16],
        "resampler.kv_proj.weight": [64, 16],
        "tts.emb_text.weight": [10, 8],
        "vpm.post_layernorm.weight": [16],
    }
    header, offset = {}, 0
    for name, shape in tensors.items():
        header[name] = {"dtype": "U8", "shape": shape, "data_offsets": [offset, offset + 4]}
        offset += 4
    raw = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return folder


def run_cli(action: str, path: Path | None, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    models_cli.add_arguments(parser)
    args = parser.parse_args([action] + ([str(path)] if path else []))
    code = models_cli.run(args, Settings(model_path=str(path or "models/absent-awq")))
    return code, capsys.readouterr().out


def load_chat_class(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("standin_modeling", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MiniCPMO


def test_check_reports_both_defects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_checkpoint(tmp_path / "ck", ["vpm", "llm"])
    code, out = run_cli("check", folder, capsys)
    assert code == 1
    assert "DEFECT stream-fallthrough" in out
    assert "unquantised modules not listed: resampler, tts" in out
    assert "listed but quantised: llm" in out
    with pytest.raises(AttributeError):  # the fall-through, as downloaded
        load_chat_class(folder / "modeling_minicpmo.py")().chat(stream=True)


def test_patch_fixes_idempotently_with_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_checkpoint(tmp_path / "ck", ["vpm", "llm"])
    original = (folder / "config.json").read_bytes()
    code, out = run_cli("patch", folder, capsys)
    assert code == 0, out
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization_config"]["modules_to_not_convert"] == ["vpm", "resampler", "tts"]
    assert (folder / "config.json.lookout-backup").read_bytes() == original
    model = load_chat_class(folder / "modeling_minicpmo.py")()
    assert model.chat(stream=True) == "STREAMER"
    assert model.chat(stream=False) == "answer"
    patched = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, out = run_cli("patch", folder, capsys)
    assert code == 0 and "0 known defect(s)" in out
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == patched
    assert run_cli("check", folder, capsys)[0] == 0


def test_clean_checkpoint_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_checkpoint(tmp_path / "ck", ["vpm", "resampler", "tts", "apm"])
    (folder / "modeling_minicpmo.py").unlink()
    code, out = run_cli("check", folder, capsys)
    assert code == 0 and "0 known defect(s)" in out


def test_missing_folder_prints_download(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli("check", tmp_path / "MiniCPM-o-4_5-awq", capsys)
    assert code == 2
    assert "hf download openbmb/MiniCPM-o-4_5-awq --local-dir models/MiniCPM-o-4_5-awq" in out
    code, out = run_cli("check", None, capsys)  # default: MODEL_PATH
    assert code == 2 and "models/absent-awq" in out
