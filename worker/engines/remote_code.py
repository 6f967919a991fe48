"""Loading MiniCPM-o's remote code (`trust_remote_code`) without demanding packages it never
imports on the way Lookout uses it.

transformers refuses to import a checkpoint's code unless every module named by an `import`
anywhere in its files is installed, except inside `try` blocks. MiniCPM-o 4.5's code imports
`flag_gems` only under `USE_FLAGOS=1`, and `librosa` and `soundfile` only inside the
functions that read audio files: none of them runs when the module loads. Within
`relaxed_import_check()` the check asks only for the imports that run at module load (top
level, outside any `if`, `try`, function or class); a function that later needs a missing
package still raises ImportError, naming it, when it is called.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def load_time_imports(filename: str | os.PathLike[str]) -> list[str]:
    """Top-level packages that the module at `filename` imports unconditionally when loaded."""
    tree = ast.parse(Path(filename).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(name for name in names if name)


@contextmanager
def relaxed_import_check() -> Iterator[None]:
    """Within: transformers' import check of remote code looks at load-time imports only."""
    from transformers import dynamic_module_utils

    original = dynamic_module_utils.get_imports
    dynamic_module_utils.get_imports = load_time_imports
    try:
        yield
    finally:
        dynamic_module_utils.get_imports = original
