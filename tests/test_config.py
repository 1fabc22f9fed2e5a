"""One config system: kebab-case keys, every problem at once, a JSON Schema for presets."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

from fednet.config import (
    PROJECT_ROOT,
    ClientConfig,
    FederationConfig,
    PresetFile,
    RunConfig,
    StrategyConfig,
    from_run_config,
    load_preset,
    parse_preset,
    preset_schema,
)
from fednet.errors import ConfigError
from fednet.privacy import PrivacyConfig

PRESETS = sorted((PROJECT_ROOT / "configs").glob("*.toml"))
TINY = (PROJECT_ROOT / "configs" / "tiny.toml").read_text()

THREE_PROBLEMS = (
    TINY.replace("lora-rank = 2", "lora-rank = 0")  # spam-1: out of range
    .replace('rank-aggregation = "rank-wise"', 'rank-aggregation = "mean"')  # not a choice
    .replace("seed = 7", "seed = 7\nsede = 8")  # unknown key
)
THREE_LINES = [
    "`clients[spam-1].lora-rank` must be >= 1, got 0",
    "unknown key `federation.sede` = 8",
    "`strategy.rank-aggregation` must be one of 'rank-wise', 'zero-pad', 'fedit', 'svd' or "
    "'frozen-a', got 'mean'",
]


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


def test_a_bad_preset_reports_all_three_problems_at_once_and_writes_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "home").mkdir()
    bad = tmp_path / "bad.toml"
    bad.write_text(THREE_PROBLEMS)
    runs = PROJECT_ROOT / "runs"
    runs_before = sorted(os.listdir(runs)) if runs.exists() else None
    before = _tree(tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "HOME": str(tmp_path / "home"),
        "FEDNET_STATE_DIR": str(tmp_path / "state"),
        "FLWR_HOME": str(tmp_path / "flwr-home"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "fednet.cli", "simulate", "--config", str(bad)],
        cwd=tmp_path,  # a default run directory would be tmp_path/runs/<time>
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "3 problems" in lines[0] and str(bad) in lines[0], lines
    problems = lines[1:]
    assert len(problems) == 3, lines  # one line each
    for want in THREE_LINES:
        assert sum(want in line for line in problems) == 1, (want, problems)
    assert _tree(tmp_path) == before  # no run dir, no state, no file
    assert (sorted(os.listdir(runs)) if runs.exists() else None) == runs_before


def test_every_problem_of_a_preset_is_collected_one_line_each() -> None:
    data = tomllib.loads(THREE_PROBLEMS)
    data["client-defaults"]["local-steps"] = 0  # reported once, not once per client
    data["privacy"] = {"delta": True, "update-mode": "global"}
    data["clients"].append({"id": "../x", "dataset": "sms-spam", "partition": 3})
    with pytest.raises(ConfigError) as info:
        parse_preset(data, source="p.toml")
    problems = info.value.problems
    assert str(info.value).splitlines() == [f"{len(problems)} problems in p.toml:", *problems]
    assert [p for p in problems if p.startswith("`client-defaults.local-steps`")] == [
        "`client-defaults.local-steps` must be >= 1, got 0"
    ]
    assert "`privacy.delta` must be a number, got True" in problems
    assert (
        "`privacy.update-mode` must be one of 'none', 'central' or 'local', got 'global'"
        in problems
    )
    assert any(p.startswith("`clients[3].id` must be a safe name") for p in problems)
    for want in THREE_LINES:
        assert any(p.startswith(want) for p in problems), (want, problems)
    assert len(problems) == 7, problems


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            {"clients": [{"id": "a", "dataset": "sms-spam", "num-partitions": 2, "partition": 2}]},
            "`clients[a].partition` must be in [0, 2), got 2",
        ),
        (
            {"clients": [{"id": "a", "dataset": "x"}, {"id": "a", "dataset": "y"}]},
            "`clients[a].id` must be unique, got 'a' twice",
        ),
        (
            {
                "federation": {"label-space": "union"},
                "clients": [{"id": "a", "dataset": "sms-spam", "task": "mine"}],
            },
            "`clients[a].task` must be unset with `federation.label-space` 'union', got 'mine'",
        ),
        ({"clients": []}, "`clients` must be at least one [[clients]] table, got []"),
        ({"extras": {}, "clients": [{"id": "a", "dataset": "x"}]}, "unknown key `extras` = {}"),
        (
            {"privacy": {"dpsgd": True}, "clients": [{"id": "a", "dataset": "x"}]},
            "with `privacy.dpsgd` on, set exactly one of `privacy.dpsgd-epsilon` and "
            "`privacy.dpsgd-noise-multiplier`; got None and None",
        ),
    ],
)
def test_cross_field_checks_stay(data: dict, line: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as info:
        parse_preset(data)
    assert any(p.startswith(line) for p in info.value.problems), info.value.problems


def test_keys_are_kebab_case_in_toml_and_either_form_in_python() -> None:
    cfg = parse_preset(
        {"strategy": {"rank-aggregation": "svd"}, "clients": [{"id": "a", "dataset": "x"}]}
    )
    assert cfg.strategy.rank_aggregation == "svd"
    assert StrategyConfig(rank_aggregation="svd") == StrategyConfig(**{"rank-aggregation": "svd"})
    with pytest.raises(
        ConfigError, match="unknown key `strategy.rank-agregation` = 'svd'; valid keys here: "
    ):
        StrategyConfig(rank_agregation="svd")  # type: ignore[call-arg]


def test_configs_are_frozen_and_a_replaced_copy_is_validated_again() -> None:
    cfg = load_preset("configs/tiny.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.rounds = 9  # type: ignore[misc]
    assert cfg.with_overrides(rounds=9).rounds == 9
    with pytest.raises(ConfigError, match="`federation.rounds` must be >= 1, got 0"):
        cfg.with_overrides(rounds=0)
    with pytest.raises(ConfigError, match="`strategy.robust` must be one of"):
        dataclasses.replace(cfg.strategy, robust="mean")
    with pytest.raises(ConfigError, match="`lora-rank` must be an int, got True"):
        dataclasses.replace(cfg.clients[0], lora_rank=True)
    assert isinstance(cfg.clients[0], ClientConfig) and isinstance(cfg, FederationConfig)


def test_types_are_strict() -> None:
    base = {"clients": [{"id": "a", "dataset": "x"}]}
    for section, key, value, want in [
        ("federation", "rounds", 2.0, "must be an int"),
        ("federation", "rounds", True, "must be an int"),
        ("federation", "name", 3, "must be a string"),
        ("privacy", "enabled", 1, "must be true or false"),
        ("privacy", "epsilon-budget", "8", "must be a number"),
        ("lora", "target-modules", "query", "must be a list"),
    ]:
        with pytest.raises(ConfigError, match=f"`{section}.{key}` {want}, got {value!r}"):
            parse_preset({**base, section: {key: value}})
    inf = parse_preset({**base, "privacy": {"epsilon-budget": float("inf")}})
    assert inf.privacy.epsilon_budget == float("inf")
    assert PrivacyConfig(sketch_clip=2).sketch_clip == 2.0


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_the_json_schema_validates_every_preset(preset: Path) -> None:
    schema = preset_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(tomllib.loads(preset.read_text()), schema)
    load_preset(preset)  # and pydantic agrees


def test_the_json_schema_covers_every_key_and_refuses_unknown_ones() -> None:
    schema = preset_schema()
    sections = {f.name.replace("_", "-"): f.type for f in dataclasses.fields(PresetFile)}
    assert set(schema["properties"]) == set(sections)
    defs = schema["$defs"]
    for name in ("FederationSettings", "LoraDefaults", "StrategyConfig", "PrivacyConfig"):
        assert defs[name]["additionalProperties"] is False
    client = defs["ClientConfig"]["properties"]
    for f in dataclasses.fields(ClientConfig):
        assert f.name.replace("_", "-") in client
    for f in dataclasses.fields(PrivacyConfig):
        assert f.name.replace("_", "-") in defs["PrivacyConfig"]["properties"]
    assert defs["StrategyConfig"]["properties"]["rank-aggregation"]["enum"] == [
        "rank-wise",
        "zero-pad",
        "fedit",
        "svd",
        "frozen-a",
    ]
    assert client["lora-rank"]["minimum"] == 1
    for name, table in defs.items():  # what an editor shows beside each key
        assert table["description"], name
        for key, prop in table["properties"].items():
            assert prop.get("description"), (name, key)
    bad = tomllib.loads(THREE_PROBLEMS)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
    assert len(errors) >= 3
    json.dumps(schema)  # plain JSON


def test_the_flower_run_config_keeps_working(tmp_path: Path) -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    table = pyproject["tool"]["flwr"]["app"]["config"]
    assert RunConfig(**table).preset == "configs/default.toml"
    cfg = from_run_config({"preset": "configs/tiny.toml", "num-server-rounds": 1, "run-dir": ""})
    assert cfg.name == "tiny" and cfg.rounds == 1
    assert from_run_config({"preset": "configs/tiny.toml"}).rounds == 2
    with pytest.raises(ConfigError) as info:
        from_run_config({"preset": 3, "num-server-rounds": -1, "bogus": 1})
    assert info.value.problems[:2] == [
        "`run-config.preset` must be a string, got 3",
        "`run-config.num-server-rounds` must be >= 0, got -1",
    ]
    assert info.value.problems[2].startswith("unknown key `run-config.bogus` = 1")
    with pytest.raises(ConfigError, match="preset file not found"):
        from_run_config({"preset": str(tmp_path / "none.toml")})


def test_fednet_config_schema_writes_the_schema_to_stdout_or_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fednet.cli import main

    assert main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == preset_schema()
    out = tmp_path / "sub" / "preset.schema.json"
    assert main(["config", "schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == preset_schema()
    assert sorted(p.name for p in out.parent.iterdir()) == ["preset.schema.json"]


def test_fednet_config_check_names_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fednet.cli import main

    assert main(["config", "check", "configs/tiny.toml"]) == 0
    assert "ok: 3 clients" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(THREE_PROBLEMS)
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"fednet: error: 3 problems in {bad}:"
    assert [any(line.startswith(w) for w in THREE_LINES) for line in err[1:]] == [True] * 3
