"""Hostile and odd inputs through the CLI, in a few batch runs: no traceback, no hang, bounded memory.

The inputs come from :mod:`fuzz_inputs` (seeded: the same files every run). Each batch is one
``mmfer`` process over many files, so the suite costs a few model loads, not hundreds. For every
input the documented outcome is checked: a one-line error naming the file (exit code 1 for the
batch), or a result; files that are read but give no prediction are named on stderr with the
reason. The peak resident memory of each process (its VmHWM, written at exit) must stay under 2 GB.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuzz_inputs import CANARY, Case, generate

from conftest import YUNET_640

PEAK_LIMIT_MB = 2048
BATCH_TIMEOUT_S = 900


@dataclasses.dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    peak_mb: float
    seconds: float


# Runs ``-m module args`` or ``-c code args`` and writes the process's peak resident memory (VmHWM) at exit.
# The kernel's rusage of a child is no use here: a forked child inherits pytest's own high-water mark.
PEAK_WRAPPER = r"""
import atexit, os, runpy, sys

def _report():
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(os.environ["MMFER_TEST_PEAK_FILE"], "w") as f:
        f.write(str(kb))

atexit.register(_report)
flag, target, *rest = sys.argv[1:]
sys.argv = [target, *rest]
if flag == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(compile(target, "<driver>", "exec"), {"__name__": "__main__"})
"""


def run_child(args: list[str], cwd: Path, timeout: float = BATCH_TIMEOUT_S) -> Run:
    """Run ``python args...`` (``-m module ...`` or ``-c code ...``): exit code, output, peak memory."""
    out, err, peak = cwd / "stdout.txt", cwd / "stderr.txt", cwd / "peak_kb.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MMFER_TEST_PEAK_FILE": str(peak)}
    env.pop("MMFER_DEBUG", None)
    t0 = time.monotonic()
    with out.open("w") as fo, err.open("w") as fe:
        p = subprocess.Popen([sys.executable, "-c", PEAK_WRAPPER, *args], stdout=fo, stderr=fe, cwd=cwd, env=env)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            pytest.fail(f"{args[:3]}: still running after {timeout} s (a hang?); killed")
    seconds = time.monotonic() - t0
    assert peak.is_file(), f"{args[:3]}: exit {p.returncode} before reporting its memory: {err.read_text()[-2000:]}"
    return Run(p.returncode, out.read_text(), err.read_text(), int(peak.read_text()) / 1024, seconds)


def detector_args() -> list[str]:
    return ["--yunet-model", str(YUNET_640)] if YUNET_640.is_file() else ["--detector", "haar"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return generate(tmp_path_factory.mktemp("fuzz"))


def media(cases: list[Case]) -> list[Case]:
    return [c for c in cases if c.kind in ("image", "audio", "video")]


def _check_clean(run: Run) -> None:
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "internal error" not in run.stderr, [ln for ln in run.stderr.splitlines() if "internal error" in ln]
    assert run.peak_mb < PEAK_LIMIT_MB, f"peak memory {run.peak_mb:.0f} MB"


def _error_lines(stderr: str) -> dict[str, str]:
    """``mmfer: <file>: <problem>`` lines, by file."""
    out = {}
    for line in stderr.splitlines():
        if line.startswith("mmfer: ") and ": " in line[7:]:
            name, problem = line[7:].split(": ", 1)
            out.setdefault(name, problem)
    return out


def _check_outcomes(cases: list[Case], results: dict[str, dict], run: Run, read_notes) -> None:  # noqa: ANN001
    """Each case's outcome against what it expects; the exit code against the errors."""
    named = _error_lines(run.stderr)
    wrong = []
    for c in cases:
        r = results.get(str(c.path))
        if r is None:
            wrong.append(f"{c.path.name} ({c.what}): no result and no error")
            continue
        if "error" in r:
            if c.expect == "ok":
                wrong.append(f"{c.path.name} ({c.what}): expected a result, got error {r['error']!r}")
            elif named.get(str(c.path)) is None or not r["error"].startswith(f"{c.path}: "):
                wrong.append(f"{c.path.name}: error not named on stderr ({r['error']!r})")
            elif "\n" in r["error"]:
                wrong.append(f"{c.path.name}: error is not one line")
            continue
        if c.expect == "error":
            wrong.append(f"{c.path.name} ({c.what}): expected an error, got a result")
            continue
        notes = read_notes(r)
        if c.note and not any(c.note in n for n in notes):
            wrong.append(f"{c.path.name} ({c.what}): read, but no note says {c.note!r} (notes: {notes})")
    assert not wrong, "\n".join(wrong)
    any_error = any("error" in r for r in results.values())
    assert run.rc == (1 if any_error else 0), f"exit code {run.rc}"


def test_suite_covers_every_kind(cases: list[Case]) -> None:
    kinds = {k: [c for c in cases if c.kind == k] for k in ("image", "audio", "video", "config")}
    assert len(cases) >= 200 and all(len(v) >= 20 for v in kinds.values()), {k: len(v) for k, v in kinds.items()}
    for kind, group in kinds.items():
        assert {"error", "ok"} <= {c.expect for c in group} or kind == "config", kind


def test_predict_batch(cases: list[Case], tmp_path: Path) -> None:
    """Every image, audio file and video (its audio track) through one ``mmfer predict --json``."""
    files = media(cases)
    run = run_child(["-m", "mmfer", "predict", "--json", *detector_args(), *[str(c.path) for c in files]], tmp_path)
    _check_clean(run)
    doc = json.loads(run.stdout)
    results = {r["file"]: r for r in doc["results"]}
    named = _error_lines(run.stderr)
    for r in doc["results"]:  # read but no prediction: said on stderr with the reason
        if "audio" in r and r["audio"]["emotion"] is None or r.get("faces") == []:
            assert r["file"] in named, f"{r['file']}: no prediction, and stderr does not say so"
    # predict reads a video's audio track only: a silent video is an error there, named as such.
    _check_outcomes([dataclasses.replace(c, expect="error") if c.no_audio else c for c in files], results, run,
                    lambda r: r.get("audio", {}).get("notes", []))
    for c in files:
        if c.no_audio:
            assert "has no audio track" in results[str(c.path)]["error"]
    print(f"predict: {len(files)} files in {run.seconds:.0f} s, peak {run.peak_mb:.0f} MB")


def test_analyze_batch(cases: list[Case], tmp_path: Path) -> None:
    """The same files through ``mmfer analyze --json`` (every branch, fused)."""
    files = media(cases)
    run = run_child(["-m", "mmfer", "analyze", "--json", "--fps", "5", *detector_args(),
                     *[str(c.path) for c in files]], tmp_path)
    _check_clean(run)
    doc = json.loads(run.stdout)
    results = {r["file"]: r for r in doc["results"]}
    named = _error_lines(run.stderr)
    for r in doc["results"]:
        if "error" not in r and r["fused"] is None:
            assert r["file"] in named, f"{r['file']}: no prediction, and stderr does not say so"
    _check_outcomes(files, results, run, lambda r: r["notes"] + r.get("audio", {}).get("notes", []))
    print(f"analyze: {len(files)} files in {run.seconds:.0f} s, peak {run.peak_mb:.0f} MB")


def test_timeline_batch(cases: list[Case], tmp_path: Path) -> None:
    """Every video-named input through one ``mmfer timeline`` run."""
    files = [c for c in cases if c.kind == "video"]
    run = run_child(["-m", "mmfer", "timeline", "--fps", "5", "--out", str(tmp_path / "out"), *detector_args(),
                     *[str(c.path) for c in files]], tmp_path)
    _check_clean(run)
    named = _error_lines(run.stderr)
    lines = run.stdout.splitlines()
    results = {}
    for c in files:
        head = next((i for i, ln in enumerate(lines) if ln.startswith(f"{c.path}: ")), None)
        if head is not None:
            block = []
            for ln in lines[head + 1 :]:
                if not ln.startswith("  "):
                    break
                block.append(ln)
            results[str(c.path)] = {"notes": [ln.split("note: ", 1)[1] for ln in block if "note: " in ln]}
        elif str(c.path) in named:
            results[str(c.path)] = {"error": f"{c.path}: {named[str(c.path)]}"}
    # Audio-only inputs have no frames: for the timeline that is an error, named like any other.
    audio_only = {"audio_only.m4a", "wav_as.mp4"}
    _check_outcomes([dataclasses.replace(c, expect="error") if c.path.name in audio_only else c for c in files],
                    results, run, lambda r: r.get("notes", []))
    for c in files:
        if c.path.name in audio_only:
            assert "no video track" in results[str(c.path)]["error"], c.path.name
    print(f"timeline: {len(files)} videos in {run.seconds:.0f} s, peak {run.peak_mb:.0f} MB")


CONFIG_DRIVER = r"""
import contextlib, io, json, sys
from mmfer.cli.main import main

out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
    out.append({"argv": argv, "rc": rc, "stderr": err.getvalue()})
print(json.dumps(out))
"""


def test_configs_batch(cases: list[Case], tmp_path: Path) -> None:
    """Hostile YAML through ``mmfer train`` (every modality) and ``mmfer eval audio --config``, in one process.
    Nothing runs code, nothing expands an alias bomb, every failure is one line naming the file (exit code 2)."""
    configs = [c for c in cases if c.kind == "config"]
    empty_root = tmp_path / "no-data"
    empty_root.mkdir()
    calls = []
    for c in configs:
        for modality in ("face", "audio", "video", "scene"):
            calls.append(["train", modality, "--config", str(c.path), "--data-root", str(empty_root),
                          "--out", str(tmp_path / "runs")])
        calls.append(["eval", "audio", "--config", str(c.path), "--run-dir", str(tmp_path / "cv")])
    good = str(Path(__file__).resolve().parents[1] / "configs" / "face_lite0_cpu.yaml")
    for override in ("name.x=1", "trainer.epochs=[[", "trainer=3", "=1", "optim.lr", "data.image_size.x=2"):
        calls.append(["train", "face", "--config", good, "--set", override, "--data-root", str(empty_root)])
    run = run_child(["-c", CONFIG_DRIVER, json.dumps(calls)], tmp_path, timeout=300)
    _check_clean(run)
    canary = configs[0].path.parents[1] / CANARY
    assert not canary.exists(), "a !!python tag ran code"
    wrong = []
    for call in json.loads(run.stdout):
        argv, rc, err = call["argv"], call["rc"], call["stderr"].strip()
        lines = [ln for ln in err.splitlines() if ln.startswith("mmfer: ")]
        if rc != 2 or len(lines) != 1 or "Traceback" in err:
            wrong.append(f"{argv}: exit {rc}, stderr {err[-300:]!r}")
            continue
        names = [argv[argv.index("--config") + 1]] + ([argv[argv.index("--set") + 1]] if "--set" in argv else [])
        if not any(n in lines[0] for n in names):
            wrong.append(f"{argv}: the error does not name {' or '.join(names)}: {lines[0]!r}")
    assert not wrong, "\n".join(wrong)
    print(f"configs: {len(calls)} calls in {run.seconds:.0f} s, peak {run.peak_mb:.0f} MB")
