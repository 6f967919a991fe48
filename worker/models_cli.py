"""`lookout models check|patch [PATH]`: known defects of downloaded MiniCPM-o checkpoints
(`lookout models synth` builds a random-weights one: `worker/models_synth.py`).

Two are known (docs/models.md):
- stream fall-through: the remote code's `chat(stream=True)` gets the streamer back from
  `generate()` but goes on into TTS post-processing (`outputs.sequences` of an empty dict),
  so streaming through `chat()` raises. The engine never calls `chat()`; the patch adds the
  missing early return for anyone who does.
- AWQ modules_to_not_convert: the AWQ config must name exactly the modules left unquantised
  (vision, resampler, audio, TTS). A module missing from the list gets its float weights
  replaced by empty AWQ layers; a listed module that is quantised loses its weights.
  Checked against the tensors actually in the safetensors files.

`check` reports (exit 1 if anything is wrong); `patch` fixes in place, idempotently, keeping a
`.lookout-backup` copy of each file it changes the first time.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.settings import Settings

MODELING_FILE = "modeling_minicpmo.py"
PATCH_MARK = "# lookout patch: stream=True returns the streamer"
BACKUP_SUFFIX = ".lookout-backup"
PINNED_TRANSFORMERS = "4.51.0"


@dataclass
class Defect:
    """One problem found in a checkpoint folder."""

    name: str
    file: Path
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`check` and `patch`, each taking the checkpoint folder (default MODEL_PATH)."""
    actions = parser.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    for name, text in (
        ("check", "report known defects of a MiniCPM-o checkpoint (exit 1 if any)"),
        ("patch", "fix them in place, idempotently, with a .lookout-backup of each file"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument(
            "path", nargs="?", default=None, help="checkpoint folder (default MODEL_PATH)"
        )
    from worker.models_synth import add_synth_arguments

    add_synth_arguments(actions)


def _chat_body(source: str) -> tuple[int, int] | None:
    """Start and end offsets of the `def chat(` method in the modeling source."""
    start = source.find("    def chat(")
    if start < 0:
        return None
    following = re.search(r"\n    (?:def |@)", source[start + 10 :])
    return start, (start + 10 + following.start()) if following else len(source)


def _stream_defect(path: Path) -> Defect | None:
    source = path.read_text()
    span = _chat_body(source)
    if span is None:
        return None
    body = source[span[0] : span[1]]
    call = body.find("self.generate(")
    uses = body.find("outputs.sequences", call)
    if call < 0 or uses < 0:
        return None
    if PATCH_MARK in body or re.search(r"\n\s+if stream:\s*\n\s+return\b", body[call:uses]):
        return None
    return Defect(
        "stream-fallthrough",
        path,
        "chat(stream=True) falls through into TTS post-processing (outputs.sequences of an "
        "empty dict) instead of returning the streamer",
    )


def _patch_stream(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    call = next(
        i for i, line in enumerate(lines) if "= self.generate(" in line and "outputs" in line
    )
    names = re.search(r"(\w+),\s*\w+\s*=\s*self\.generate\(", lines[call])
    if names is None:
        raise ValueError(f"{path}: unexpected generate() call: {lines[call].strip()}")
    chat = max(i for i in range(call) if lines[i].startswith("    def chat("))
    body_indent = " " * 8
    end = call + 1
    while end < len(lines):  # the first statement back at the method's own indentation
        line = lines[end]
        if (
            line.strip()
            and line.startswith(body_indent)
            and not line[8].isspace()
            and line.strip() != ")"
        ):
            break
        end += 1
    assert chat < call < end
    guard = f"{body_indent}if stream:  {PATCH_MARK}\n{body_indent}    return {names.group(1)}\n\n"
    lines.insert(end, guard)
    path.write_text("".join(lines))


def _tensor_names(folder: Path) -> list[tuple[str, list[int]]]:
    names: list[tuple[str, list[int]]] = []
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        names += [(k, list(v["shape"])) for k, v in header.items() if k != "__metadata__"]
    return names


def _awq_modules(folder: Path) -> tuple[set[str], set[str]]:
    """(module paths holding AWQ qweights, top-level modules with float 2-D weights only)."""
    quantised: set[str] = set()
    float_tops: dict[str, bool] = {}
    for name, shape in _tensor_names(folder):
        module, _, leaf = name.rpartition(".")
        top = name.split(".", 1)[0]
        if leaf == "qweight":
            quantised.add(module)
            float_tops[top] = False
        elif leaf == "weight" and len(shape) == 2:
            float_tops.setdefault(top, True)
    return quantised, {top for top, only_float in float_tops.items() if only_float}


def _awq_defect(folder: Path) -> tuple[Defect, list[str]] | None:
    config_path = folder / "config.json"
    config: dict[str, Any] = json.loads(config_path.read_text())
    quant = config.get("quantization_config") or {}
    if not isinstance(quant, dict) or quant.get("quant_method") != "awq":
        return None
    listed = [str(m) for m in quant.get("modules_to_not_convert") or []]
    quantised, unquantised = _awq_modules(folder)
    # transformers skips a module when any listed name is a substring of its path.
    wrong = [m for m in listed if any(m in path for path in quantised)]
    missing = sorted(top for top in unquantised if not any(m in top for m in listed))
    if not wrong and not missing:
        return None
    fixed = [m for m in listed if m not in wrong] + missing
    parts = []
    if missing:
        parts.append(f"unquantised modules not listed: {', '.join(missing)}")
    if wrong:
        parts.append(f"listed but quantised: {', '.join(wrong)}")
    detail = "quantization_config.modules_to_not_convert is wrong (" + "; ".join(parts) + ")"
    return Defect("awq-modules-to-not-convert", config_path, detail), fixed


def find_defects(folder: Path) -> list[tuple[Defect, Any]]:
    """Every known defect in `folder`, each with what `patch` needs to fix it."""
    found: list[tuple[Defect, Any]] = []
    modeling = folder / MODELING_FILE
    if modeling.is_file():
        defect = _stream_defect(modeling)
        if defect:
            found.append((defect, None))
    if (folder / "config.json").is_file():
        awq = _awq_defect(folder)
        if awq:
            found.append(awq)
    return found


def _backup(path: Path) -> None:
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    if not backup.exists():  # the first backup is the download as it came
        shutil.copy2(path, backup)


def apply_fix(defect: Defect, data: Any) -> None:
    """Fix one defect in place (after a backup)."""
    _backup(defect.file)
    if defect.name == "stream-fallthrough":
        _patch_stream(defect.file)
    elif defect.name == "awq-modules-to-not-convert":
        config = json.loads(defect.file.read_text())
        config["quantization_config"]["modules_to_not_convert"] = data
        defect.file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _transformers_note() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("transformers")
    except PackageNotFoundError:
        return "transformers is not installed: pip install 'lookout[gpu]'"
    if installed != PINNED_TRANSFORMERS:
        return f"note: transformers {installed} installed; MiniCPM-o 4.5's code wants {PINNED_TRANSFORMERS}"
    return None


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Check or patch; 0 when the checkpoint is (now) clean, 1 when defects remain, 2 on bad input."""
    from worker.engines.minicpmo_preflight import download_hint

    if args.models_action == "synth":
        from worker.models_synth import run_synth

        return run_synth(args, settings)
    folder = Path(args.path or settings.model_path)
    if not (folder / "config.json").is_file():
        print(f"{folder}: not a downloaded checkpoint (no config.json). Download with:")
        print(f"  {download_hint(str(folder))}")
        return 2
    found = find_defects(folder)
    note = _transformers_note()
    if note:
        print(note)
    if args.models_action == "check" or not found:
        for defect, _ in found:
            print(f"DEFECT {defect.name}: {defect.file.name}: {defect.detail}")
        print(
            f"{folder}: {len(found)} known defect(s)"
            + (" — run `lookout models patch`" if found else "")
        )
        return 1 if found else 0
    for defect, data in found:
        apply_fix(defect, data)
        print(f"patched {defect.name} in {defect.file} (backup {defect.file.name}{BACKUP_SUFFIX})")
    left = find_defects(folder)
    for defect, _ in left:
        print(f"STILL {defect.name}: {defect.detail}")
    return 1 if left else 0
