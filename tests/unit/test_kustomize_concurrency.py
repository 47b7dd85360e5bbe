"""The editor runs in several threads at once (Prefect's thread pool task runner)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from promotion.kustomize import read_image_tags, set_image_tags

TEXT = "images:\n" + "".join(f"  - name: img{i}\n    newTag: v1\n" for i in range(9))
# Tags that need quoting make the editor ask YAML how it would read them: the racy path.
TAGS = ["1.10", "10", "1.0.1", "2024-01-01", "v2", "1e5", "0x1F", "99", "on"]


def edit(k: int) -> tuple[dict[str, str], dict[str, str]]:
    tags = {f"img{i}": TAGS[(i + k) % len(TAGS)] for i in range(9)}
    return tags, read_image_tags(set_image_tags(TEXT, tags))


def test_concurrent_edits_do_not_interfere() -> None:
    # A shared ruamel YAML instance used to corrupt its parser state here (IndexError,
    # KeyError, wrong results) in about 1 of 300 calls (600 calls: caught ~9 runs in 10).
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(edit, range(600)))
    for asked, read_back in results:
        assert read_back == asked
