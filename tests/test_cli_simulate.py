"""What ``fednet simulate`` shows a person: one progress display, no framework
noise, and closing lines that say where the results are and what to run next."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from rich.console import Console

from fednet.cli._display import RunDisplay, format_progress, next_steps
from fednet.config import PROJECT_ROOT

NOISE = (
    re.compile(r"\((ClientAppActor|raylet|pid=)"),  # Ray actors' forwarded output
    re.compile(r"DEPRECATED", re.IGNORECASE),
    re.compile(r"Loading weights"),
    re.compile(r"\w*Warning:"),  # a Python warning: "FutureWarning: ...", "UserWarning: ..."
    re.compile(r"Traceback"),
)


def _plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200), out


def test_progress_line_names_round_clients_loss_accuracy_epsilon_and_time_left():
    progress = {
        "stage": "training",
        "round": 1,
        "rounds": 3,
        "clients": 5,
        "clients_total": 6,
        "loss": 0.41234,
        "accuracy": 0.8125,
        "epsilon": 1.4567,
        "elapsed_s": 30.0,
    }
    # 30 s for one round: two rounds left take about 60 s
    assert format_progress(progress) == (
        "clients 5/6  loss 0.4123  accuracy 0.8125  ε 1.46  left 1m00s"
    )
    no_privacy = {**progress, "epsilon": None, "round": 0, "loss": float("nan")}
    assert format_progress(no_privacy) == ("clients 5/6  loss -  accuracy 0.8125  ε -  left ?")


def test_display_off_a_terminal_prints_one_line_per_change():
    console, out = _plain_console()
    state = {"stage": "training", "round": 1, "rounds": 2, "clients": 3, "clients_total": 3}
    with RunDisplay(rounds=2, clients=3, console=console) as display:
        display.update({**state, "elapsed_s": 10.0})
        display.update({**state, "elapsed_s": 10.0})  # unchanged: no new line
        display.update({**state, "round": 2, "stage": "finished", "accuracy": 0.5})
    lines = out.getvalue().splitlines()
    assert [ln.split()[0] for ln in lines] == ["starting", "training", "finished"]
    assert "round 1/2" in lines[1] and "left 10s" in lines[1]
    assert "round 2/2" in lines[2] and "accuracy 0.5000" in lines[2] and "left 0s" in lines[2]


def test_display_echoes_framework_lines_with_their_colours_removed():
    console, out = _plain_console()
    display = RunDisplay(rounds=1, clients=1, console=console)
    display.echo("\x1b[36m(ClientAppActor pid=1)\x1b[0m hello")
    assert out.getvalue() == "(ClientAppActor pid=1) hello\n"


def test_closing_lines_say_where_and_what_next(tmp_path):
    run = tmp_path / "runs" / "20260101-000000"
    lines = next_steps(run, log_path=run / "run.log", owner_keys={"a": tmp_path / "a.pub"})
    text = "\n".join(lines)
    assert lines[0].startswith(f"results: {run}")
    assert f"tensorboard --logdir {run / 'tb'}" in text
    assert f"fednet hub push {run} --hub hub" in text
    assert f"fednet trust add a {tmp_path / 'a.pub'}" in text
    assert lines[-1].startswith('  fednet ask "') and "--hub hub --local" in lines[-1]


@pytest.fixture
def restore_logging():
    import flwr.common  # noqa: F401 - Flower sets up its logger on import

    loggers = [logging.getLogger(n) for n in ("fednet", "flwr", "py.warnings")]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    levels = {h: h.level for lg in loggers for h in lg.handlers}
    yield
    for lg, handlers, level, propagate in saved:
        for h in lg.handlers:
            if h not in handlers:
                h.close()
        lg.handlers, lg.level, lg.propagate = handlers, level, propagate
    for h, level in levels.items():
        h.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.parametrize("verbose", [False, True])
def test_library_and_framework_output_goes_to_the_log_file(
    tmp_path, capsys, restore_logging, verbose
):
    from flwr.common import log as flwr_log

    from fednet.logs import log_to_file, setup_logging

    setup_logging(verbose)
    log = tmp_path / "run.log"
    with log_to_file(log, verbose):
        logging.getLogger("fednet.strategies").info("round 1: the library speaks")
        flwr_log(logging.INFO, "Flower speaks")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a library is deprecating something", UserWarning, stacklevel=1)
        logging.getLogger("fednet.cli").warning("a warning of ours")
    logging.getLogger("fednet.strategies").info("after the block")
    text = log.read_text()
    assert "after the block" not in text
    assert "the library speaks" in text and "Flower speaks" in text
    assert "UserWarning: a library is deprecating something" in text
    err = capsys.readouterr().err
    assert "a warning of ours" in err  # our own warnings stay on the terminal
    assert "Warning:" not in err  # Python warnings never reach it
    # -v brings the library's log back to the terminal; after the block it is back anyway
    assert ("the library speaks" in err) is verbose
    assert "after the block" in err


def test_flwr_run_of_the_project_packs_only_the_thin_apps():
    """``flwr run .`` installs the FAB under ``FLWR_HOME/apps/<hash>``: with fednet
    left out of it, the app imports the installed fednet, whose project root holds
    ``runs/``, instead of a copy whose ``runs/`` is deep inside FLWR_HOME."""
    import zipfile

    from flwr.cli.build import build_fab_from_disk

    fab = zipfile.ZipFile(io.BytesIO(build_fab_from_disk(PROJECT_ROOT)))
    names = [n for n in fab.namelist() if not n.startswith(".info/")]
    assert sorted(names) == [
        "clients/__init__.py",
        "clients/app.py",
        "pyproject.toml",
        "server/__init__.py",
        "server/app.py",
    ]


def test_run_dir_of_a_flwr_run_is_under_the_project():
    from fednet.federation.apps import run_dir_of

    default = run_dir_of({"run-dir": ""})
    assert default.parent == PROJECT_ROOT / "runs" and not default.exists()
    assert run_dir_of({"run-dir": "runs/mine"}) == PROJECT_ROOT / "runs" / "mine"
    assert run_dir_of({"run-dir": "/tmp/elsewhere"}) == Path("/tmp/elsewhere")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(PROJECT_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        HF_HUB_OFFLINE="1",
    )
    env.pop("PYTHONWARNINGS", None)
    return env


def _simulate(run_dir: Path, *flags: str) -> tuple[int, str]:
    """``fednet [flags] simulate`` of the tiny preset for one round: its status and
    everything it wrote to the terminal (stdout and stderr, in order)."""
    proc = subprocess.run(
        [sys.executable, "-m", "fednet.cli", *flags, "simulate", "--config", "configs/tiny.toml"]
        + ["--rounds", "1", "--run-dir", str(run_dir)],
        cwd=PROJECT_ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    return proc.returncode, proc.stdout


@pytest.mark.integration
def test_simulate_terminal_shows_progress_and_summary_and_no_noise(tmp_path):
    run_dir = tmp_path / "run"
    code, out = _simulate(run_dir)
    assert code == 0, out
    lines = out.splitlines()
    for line in lines:
        for pattern in NOISE:
            assert not pattern.search(line), f"framework noise on the terminal: {line!r}"
    # the one progress display: a line per step, with every figure
    progress = [ln for ln in lines if re.match(r"(starting|training|personalising|finished) ", ln)]
    assert progress[0].startswith("starting") and progress[-1].startswith("finished")
    assert "round 1/1" in progress[-1] and "clients 3/3" in progress[-1]
    for figure in ("loss ", "accuracy ", "ε ", "left "):
        assert figure in progress[-1]
    # the closing lines name the run directory and what to run next
    assert f"results: {run_dir}" in out
    assert lines[-1].startswith('  fednet ask "')
    assert any(ln.strip().startswith(f"fednet hub push {run_dir}") for ln in lines)
    assert any(ln.strip().startswith("tensorboard --logdir") for ln in lines)
    # what the run always wrote, on the supported path too
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] and summary["clients_finished"] == ["news-0", "spam-0", "spam-1"]
    # the display shows the run's own figures: its last round's loss and accuracy
    last = summary["history"][-1]
    assert f"loss {last['train']['train-loss']:.4f}" in progress[-1]
    assert f"accuracy {last['evaluate']['accuracy']:.4f}" in progress[-1]
    eps = max(v for k, v in last["train"].items() if k.endswith("/epsilon"))
    assert f"ε {eps:.2f}" in progress[-1]
    assert (run_dir / "checkpoint").is_dir()
    assert sorted(p.name for p in (run_dir / "signed").glob("*.json"))
    # the noise is in the run's log file instead
    log = (run_dir / "run.log").read_text()
    assert "(ClientAppActor pid=" in log
    assert "Starting Flower SuperLink" in log


@pytest.mark.integration
@pytest.mark.slow
def test_verbose_simulate_brings_the_framework_log_back(tmp_path):
    code, out = _simulate(tmp_path / "run", "-v")
    assert code == 0, out
    assert "(ClientAppActor pid=" in out  # Ray actors' output, as Flower streams it
    assert re.search(r"INFO round 1: accuracy", out)  # the ServerApp's own log lines
    assert any(ln.startswith("finished ") for ln in out.splitlines())  # and still the display


@pytest.mark.integration
def test_simulate_exits_1_and_names_the_log_when_the_run_fails(tmp_path, capsys):
    """Every client refuses to join (its budget cannot pay the run's central DP):
    the ServerApp fails, and the command says so, with the log, and exits 1."""
    from fednet.cli import main

    preset = tmp_path / "preset.toml"
    preset.write_text(
        (PROJECT_ROOT / "configs" / "tiny.toml").read_text()
        + "\n[privacy]\nenabled = true\nepsilon-budget = 0.01\nsketch-epsilon = 0.005\n"
        'update-mode = "central"\nupdate-clip = 1.0\nupdate-noise-multiplier = 1.0\n'
    )
    run_dir = tmp_path / "run"
    code = main(["simulate", "--config", str(preset), "--rounds", "1", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "finished:failed" in err and str(run_dir / "run.log") in err
    assert not (run_dir / "summary.json").exists()
    assert "no client sent a valid profile" in (run_dir / "run.log").read_text()


def test_strategy_override_is_a_preset_file_the_apps_read(tmp_path):
    """``--strategy`` reaches the ServerApp and ClientApps (which read a preset
    file) as a copy of the preset with only ``strategy.name`` replaced."""
    import dataclasses

    from fednet.cli.simulate import _write_preset
    from fednet.config import load_preset

    source = PROJECT_ROOT / "configs" / "tiny.toml"
    written = load_preset(_write_preset(source, tmp_path / "preset.toml", strategy="local"))
    original = load_preset(source)
    assert written.strategy.name == "local" and original.strategy.name != "local"
    same = dataclasses.replace(written, strategy=original.strategy, source=original.source)
    assert same == original
