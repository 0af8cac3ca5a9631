"""Recipes are validated when they load; errors name the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.recipe import build_recipe, default_recipe, load_recipe
from pipeline.registry import DEFAULT_STAGES, STAGES
from schemas.errors import ConfigError


def test_unknown_top_level_key_lists_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'stagez'.*allowed keys: input, output"):
        build_recipe({"stagez": []}, base_dir=None, source="r.yaml")


def test_unknown_stage_lists_allowed() -> None:
    with pytest.raises(ConfigError, match=r"unknown stage 'dedup_magic'. Allowed stages"):
        build_recipe({"stages": ["dedup_magic"]}, base_dir=None, source="r.yaml")


def test_bad_format_value() -> None:
    with pytest.raises(ConfigError, match="format"):
        build_recipe({"format": "belle"}, base_dir=None, source="r.yaml")


def test_bad_fields_key() -> None:
    with pytest.raises(ConfigError, match="unknown canonical field"):
        build_recipe({"fields": {"question": "q"}}, base_dir=None, source="r.yaml")


@pytest.mark.skipif(not STAGES, reason="no stage registered")
def test_unknown_stage_parameter_lists_allowed_keys() -> None:
    name = next(iter(STAGES))
    with pytest.raises(ConfigError, match=rf"stages\[0\] '{name}': unknown key 'no_such_param' \(allowed keys"):
        build_recipe({"stages": [{name: {"no_such_param": 1}}]}, base_dir=None, source="r.yaml")


def test_paths_resolve_relative_to_recipe_and_yaml_is_safe(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("input: data/*.json\noutput: out/\nstages: []\n", encoding="utf-8")
    r = load_recipe(tmp_path / "r.yaml")
    assert r.inputs == (str(tmp_path / "data" / "*.json"),)
    assert r.output == str(tmp_path / "out")
    (tmp_path / "evil.yaml").write_text("input: !!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(tmp_path / "evil.yaml")


def test_default_recipe_runs_default_stages() -> None:
    assert [s.name for s in default_recipe().stages] == list(DEFAULT_STAGES)


def test_recipe_hash_ignores_paths() -> None:
    a = build_recipe({"input": ["a.json"], "output": "x"}, base_dir=None, source="a")
    b = build_recipe({"input": ["b.json"], "output": "y"}, base_dir=None, source="b")
    assert a.hash() == b.hash()
