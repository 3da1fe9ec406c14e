"""Every YAML config example in README.md and docs/*.md loads with the real config loader.

A block that is only part of a config says so on its first line, ``# fragment: PATH``,
where PATH is where it goes (``auth.oidc[]``: entries of that list); the test puts it
there, naming any model group it needs, and loads the whole. A block that is YAML but no
Tollway config at all starts ``# not a tollway config`` and only has to parse.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.docs.markdown import PAGES, ROOT, Block, blocks
from tollway.config import ConfigError, Settings, default_settings, load_settings

YAML_BLOCKS = [block for page in PAGES for block in blocks(page) if block.language == "yaml"]
_FRAGMENT = re.compile(r"^# fragment: (\S+)")
_NOT_CONFIG = "# not a tollway config"


def place(fragment: Any, path: str) -> dict[str, Any]:
    """A whole config holding ``fragment`` at ``path``; a model group on the way is named."""
    head, _, rest = path.partition(".")
    name = head.removesuffix("[]")
    if not rest:
        return {name: fragment}
    inner = place(fragment, rest)
    if not head.endswith("[]"):
        return {name: inner}
    return {name: [{"name": "fragment", **inner} if name == "models" else inner]}


def _load(block: Block, tmp_path: Path) -> None:
    first = block.text.split("\n", 1)[0]
    data = yaml.safe_load(block.text)
    if first.startswith(_NOT_CONFIG):
        return
    if fragment := _FRAGMENT.match(first):
        data = place(data, fragment.group(1))
    file = tmp_path / "tollway.yaml"
    file.write_text(yaml.safe_dump(data) if fragment else block.text)
    load_settings(file)


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda block: block.where)
def test_a_yaml_example_in_the_docs_loads(block: Block, tmp_path: Path) -> None:
    try:
        _load(block, tmp_path)
    except ConfigError as exc:
        pytest.fail(f"{block.where}: the example does not load:\n{exc}")


def test_the_docs_have_yaml_examples_to_check() -> None:
    pages = {block.page.name for block in YAML_BLOCKS}
    assert {"README.md", "configuration.md", "routing.md", "oidc.md"} <= pages


def test_the_embedded_default_shown_is_the_one_the_gateway_runs(tmp_path: Path) -> None:
    (shown,) = [
        block
        for block in blocks(ROOT / "docs" / "configuration.md")
        if block.language == "yaml" and "embedded-simulator" in block.text
    ]
    file = tmp_path / "tollway.yaml"
    file.write_text(shown.text)
    assert load_settings(file) == default_settings({})


def _looks_like_config(text: str) -> bool:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and bool(set(data) & set(Settings.model_fields))


def test_a_config_example_is_tagged_yaml_so_it_is_checked() -> None:
    untagged = [
        block.where
        for page in PAGES
        for block in blocks(page)
        if block.language != "yaml" and _looks_like_config(block.text)
    ]
    assert not untagged, f"config examples not fenced as ```yaml: {untagged}"
