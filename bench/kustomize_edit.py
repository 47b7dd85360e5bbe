"""Time the image-tag editor and kustomize on the seed's 9-service prod overlay.

Run: ``.venv/bin/python -m bench.kustomize_edit [repeats]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from promotion.config import load_config
from promotion.kustomize import read_image_tags, set_image_tags
from sandbox.kustomize_render import render, validate
from sandbox.seed import overlay_kustomization, seed_files


def timed(label: str, repeats: int, action: Callable[[], object]) -> None:
    action()  # warm up (imports, caches)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    print(
        f"{label:<44} median {statistics.median(samples) * 1000:8.2f} ms"
        f"   min {min(samples) * 1000:8.2f} ms   ({repeats} runs)"
    )


def main(repeats: int = 50) -> None:
    config = load_config()
    images = config.images()
    prod = overlay_kustomization("prod", images, "v1.0.0")
    all_nine = dict.fromkeys(images.values(), "v1.0.1")
    one = {images["frontend"]: "v1.0.1"}
    timed("read_image_tags (9 entries)", repeats, lambda: read_image_tags(prod))
    timed("set_image_tags, 9 of 9 entries", repeats, lambda: set_image_tags(prod, all_nine))
    timed("set_image_tags, 1 of 9 entries", repeats, lambda: set_image_tags(prod, one))
    with tempfile.TemporaryDirectory() as tmp:
        for path, content in seed_files(config, "v1.0.0").items():
            target = Path(tmp, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        overlay = Path(tmp, "kustomize", "prod")
        (overlay / "kustomization.yaml").write_text(set_image_tags(prod, all_nine))
        runs = max(5, repeats // 5)
        timed("render (kubectl kustomize, 18 resources)", runs, lambda: render(overlay))
        rendered = render(overlay)
        timed("validate (kubernetes-validate, 18 resources)", runs, lambda: validate(rendered))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
