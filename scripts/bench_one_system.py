"""The previous release's ``mmfer analyze`` beside the current tree, measured in one run.

The previous release (``--baseline``, default the last commit before the "one system" refactor) is
checked out into a temporary git worktree and run with the same venv python, with ``PYTHONPATH``
pointing at it (each child asserts that ``mmfer.__file__`` is under the tree it is meant to test).
Inputs are built from the real shared data: a 10 s 640x480 H.264 + AAC talking-face clip made of the
CREMA-D clips, and a folder of 50 JPEG photos of faces taken from the CK+ videos. Both versions get
identical arguments, including ``--yunet-model`` (the YuNet 640x640 ONNX from the shared models).

For each version, interleaved (old, new, old, new, ...) and each in a fresh process:

- cold CLI: wall time of ``python -m mmfer analyze INPUT... --json --yunet-model Y [--no-scene]``;
- warm per-file: ``EmotionPipeline(...)`` built, the input analysed once untimed, then the median of
  ``--warm-repeats`` timed analyses (the folder: all photos per analysis).

The outputs of both versions are compared (fused and per-branch probabilities, per photo as well).
Targets: the clip at least 2x faster, the photo folder not slower, probabilities equal within --tol.

    python scripts/bench_one_system.py            # full run (minutes)
    python scripts/bench_one_system.py --quick    # smoke test: 1 repeat, 5 photos, 1 warm repeat

Writes reports/speed/one_system.{json,md}. Exits 0 when every run worked (whether or not a target
was met), 1 when a run failed (the report still says which and why), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "7b71164"  # the last commit before the "one system" refactor
CLIP_SECONDS, CLIP_FPS, CLIP_SIZE, AUDIO_RATE = 10.0, 30, (640, 480), 16000
TARGETS = {"clip": 2.0, "photos": 1.0}  # minimum speed-up (old median / new median)

# Run in a fresh process by each version's python; sys.argv[1] is a JSON config.
WARM_DRIVER = '''
import inspect, json, statistics, sys, time
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["root"])
import mmfer
from mmfer.pipeline import EmotionPipeline
accepted = inspect.signature(EmotionPipeline).parameters
kwargs = {k: v for k, v in cfg["kwargs"].items() if k in accepted}
t0 = time.perf_counter()
pipe = EmotionPipeline(**kwargs)
construct_s = time.perf_counter() - t0
t0 = time.perf_counter()
results = [pipe.analyze(f).to_dict() for f in cfg["files"]]
warmup_s = time.perf_counter() - t0
times, cpu, stages = [], [], {}
for _ in range(cfg["repeats"]):
    t0, c0 = time.perf_counter(), time.process_time()
    last = [pipe.analyze(f) for f in cfg["files"]]
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
for a in last:  # where the last timed pass spent its time (the pipeline's own timers), summed over files
    for k, v in a.timings_ms.items():
        stages[k] = stages.get(k, 0.0) + v
print(json.dumps({"mmfer_file": mmfer.__file__, "kwargs": kwargs, "ignored": sorted(set(cfg["kwargs"]) - set(kwargs)),
                  "construct_s": construct_s, "warmup_s": warmup_s, "times_s": times, "cpu_times_s": cpu,
                  "median_s": statistics.median(times), "cpu_s": statistics.median(cpu), "stages_ms": stages,
                  "results": results}))
'''


class BenchError(RuntimeError):
    """A setup step failed (missing data, git worktree, inputs): the benchmark cannot start."""


@dataclass
class Side:
    """One version of mmfer: the tree whose ``mmfer/`` is imported and how to launch python on it."""

    name: str
    root: Path
    rev: str
    dirty: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    launcher: list[str] = field(default_factory=list)  # python [-c ...] before "analyze ..."
    mmfer_file: str | None = None
    analyze_flags: set[str] = field(default_factory=set)
    error: str | None = None  # why this side cannot run at all


# -- inputs ----------------------------------------------------------------------------------------


def make_talking_clip(src: list[Path], out: Path, seconds: float = CLIP_SECONDS) -> dict[str, Any]:
    """Concatenate the CREMA-D clips (looped) into one H.264 + AAC mp4 of ``seconds`` at 640x480, 30 fps.

    Every source frame becomes one output frame (the sources are 29.97 fps), upscaled; each clip's audio is
    resampled to 16 kHz mono and cut or padded to its own frames' duration, so voice and lips stay together.
    """
    import av

    n_frames, n_samples = int(round(seconds * CLIP_FPS)), int(round(seconds * AUDIO_RATE))
    audio: list[np.ndarray] = []
    frames = 0
    with av.open(str(out), "w") as dst:
        vs = dst.add_stream("libx264", rate=CLIP_FPS)
        vs.width, vs.height, vs.pix_fmt = *CLIP_SIZE, "yuv420p"
        aus = dst.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        while frames < n_frames:
            for path in src:
                with av.open(str(path)) as c:
                    clip_frames = 0
                    for fr in c.decode(video=0):
                        if frames >= n_frames:
                            break
                        nf = fr.reformat(width=CLIP_SIZE[0], height=CLIP_SIZE[1], format="yuv420p")
                        nf.pts, nf.time_base = frames, Fraction(1, CLIP_FPS)
                        dst.mux(vs.encode(nf))
                        frames += 1
                        clip_frames += 1
                wav = _decode_audio(path)
                want = int(round(clip_frames / CLIP_FPS * AUDIO_RATE))
                audio.append(np.pad(wav[:want], (0, max(0, want - len(wav)))))
                if frames >= n_frames:
                    break
        dst.mux(vs.encode(None))
        wav = np.concatenate(audio)[:n_samples].astype(np.float32)
        wav = np.pad(wav, (0, n_samples - len(wav)))
        for s in range(0, n_samples, 1024):
            af = av.AudioFrame.from_ndarray(wav[None, s : s + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = AUDIO_RATE, s, Fraction(1, AUDIO_RATE)
            dst.mux(aus.encode(af))
        dst.mux(aus.encode(None))
    return {"path": str(out), "seconds": seconds, "size": list(CLIP_SIZE), "fps": CLIP_FPS, "video": "h264",
            "audio": f"aac {AUDIO_RATE} Hz mono", "sources": [p.name for p in src]}


def _decode_audio(path: Path) -> np.ndarray:
    """A file's first audio track as float32 mono at 16 kHz."""
    import av

    res = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE)
    chunks = []
    with av.open(str(path)) as c:
        for fr in c.decode(audio=0):
            chunks += [r.to_ndarray()[0] for r in res.resample(fr)]
    chunks += [r.to_ndarray()[0] for r in res.resample(None)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def make_photo_folder(videos: list[Path], out: Path, n: int) -> dict[str, Any]:
    """``n`` JPEG photos (quality 95) taken at evenly spread positions over all frames of the CK+ videos."""
    import av

    counts = []
    for v in videos:
        with av.open(str(v)) as c:
            counts.append(sum(1 for _ in c.decode(video=0)))
    picks = set(np.linspace(0, sum(counts) - 1, n).round().astype(int).tolist())
    out.mkdir(parents=True, exist_ok=True)
    files, offset = [], 0
    for v, count in zip(videos, counts, strict=True):
        wanted = {i - offset for i in picks if offset <= i < offset + count}
        offset += count
        if not wanted:
            continue
        with av.open(str(v)) as c:
            for i, fr in enumerate(c.decode(video=0)):
                if i in wanted:
                    f = out / f"{v.stem}_f{i:03d}.jpg"
                    fr.to_image().save(f, quality=95)
                    files.append(f)
    return {"folder": str(out), "count": len(files), "files": [f.name for f in files],
            "sources": "frames spread evenly over the CK+ videos (640x490), JPEG quality 95"}


# -- the two versions ------------------------------------------------------------------------------


def _run(cmd: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _timed(cmd: list[str], timeout: float, **kw: Any) -> tuple[subprocess.CompletedProcess | None, dict[str, float]]:
    """Run one child; its wall and CPU seconds (user + sys) and the 1-minute load average before it.

    The CPU time is less sensitive than the wall time to other work on a shared machine. None on a timeout.
    """
    load = os.getloadavg()[0]
    ru0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    try:
        r = _run(cmd, timeout, **kw)
    except subprocess.TimeoutExpired:
        r = None
    ru1, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - t0
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return r, {"seconds": wall, "cpu_s": cpu, "load_avg_before": load}


def _git(*args: str, cwd: Path | None = None) -> str:
    r = _run(["git", "-C", str(cwd or REPO), *args], 120)
    if r.returncode:
        raise BenchError(f"git {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


def tree_fingerprint(root: Path) -> str:
    """A hash of the package's Python sources: tells whether the tree under test changed during the run."""
    h = hashlib.sha256()
    for f in sorted((root / "mmfer").rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        try:
            h.update(f.read_bytes())
        except OSError:
            h.update(b"<unreadable>")
    return h.hexdigest()[:16]


def _under(path: str | None, root: Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(root.resolve())


def prepare_side(side: Side, workdir: Path, timeout: float, threads: int | None = None) -> None:
    """Make ``import mmfer`` resolve to ``side.root`` (PYTHONPATH, else a sys.path launcher); read its analyze flags."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if threads:
        env.update({v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    side.env = {**env, "PYTHONPATH": str(side.root)}
    try:
        _prepare_side(side, workdir, timeout)
    except subprocess.TimeoutExpired as exc:
        side.error = f"{exc.cmd[-2:]} timed out after {timeout:.0f} s"


def _prepare_side(side: Side, workdir: Path, timeout: float) -> None:
    probe = "import mmfer; print(mmfer.__file__)"
    r = _run([sys.executable, "-c", probe], timeout, cwd=workdir, env=side.env)
    side.mmfer_file = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else None
    side.launcher = [sys.executable, "-m", "mmfer"]
    if not _under(side.mmfer_file, side.root):  # the editable finder won: put the tree first by hand
        boot = f"import runpy, sys; sys.path.insert(0, {str(side.root)!r}); "
        r = _run([sys.executable, "-c", boot + probe], timeout, cwd=workdir, env=side.env)
        side.mmfer_file = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else None
        side.launcher = [sys.executable, "-c", boot + "sys.argv[0] = 'mmfer'; runpy.run_module('mmfer', "
                         "run_name='__main__', alter_sys=True)"]
    if not _under(side.mmfer_file, side.root):
        side.error = f"import mmfer resolves to {side.mmfer_file}, not under {side.root}: {r.stderr.strip()[-800:]}"
        return
    r = _run([*side.launcher, "analyze", "--help"], timeout, cwd=workdir, env=side.env)
    if r.returncode:
        side.error = f"mmfer analyze --help failed (rc {r.returncode}): {r.stderr.strip()[-1500:]}"
        return
    side.analyze_flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", r.stdout))


def common_args(sides: list[Side], detector: str, yunet: Path) -> tuple[list[str], dict[str, Any], list[str]]:
    """The CLI flags (identical for both sides), the matching EmotionPipeline kwargs, and notes."""
    usable = [s for s in sides if s.error is None]
    have = set.intersection(*(s.analyze_flags for s in usable)) if usable else set()
    notes = []
    flags, kwargs = ["--json"], {}
    if detector == "yunet":
        flags += ["--yunet-model", str(yunet)]
        kwargs["yunet_model"] = str(yunet)
    elif "--detector" in have:
        flags += ["--detector", "haar"]
        kwargs["detector"] = "haar"
    else:
        notes.append("--detector is not accepted by both versions: Haar comes from the default fallback")
    if "--no-scene" in have:
        flags.append("--no-scene")
        kwargs["scene"] = False
    else:
        notes.append("--no-scene is not accepted by both versions: the scene branch is left at its default")
    return flags, kwargs, notes


# -- measurements ----------------------------------------------------------------------------------


def _tail(text: str, n: int = 1500) -> str:
    return text.strip()[-n:]


def cold_cli(side: Side, files: list[Path], flags: list[str], workdir: Path, timeout: float) -> dict[str, Any]:
    """Wall time of one ``mmfer analyze`` command, and its JSON results."""
    cmd = [*side.launcher, "analyze", *map(str, files), *flags]
    r, took = _timed(cmd, timeout, cwd=workdir, env=side.env)
    if r is None:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s", **took}
    out: dict[str, Any] = {"ok": False, "rc": r.returncode, **took}
    try:
        doc = json.loads(r.stdout)
    except json.JSONDecodeError:
        out["error"] = f"rc {r.returncode}, no JSON on stdout; stderr: {_tail(r.stderr)}"
        return out
    failed = [x for x in doc.get("results", []) if "error" in x]
    out["results"] = doc.get("results", [])
    if r.returncode or failed:
        out["error"] = f"rc {r.returncode}; {len(failed)} file(s) failed: " + "; ".join(x["error"] for x in failed[:3])
        out["stderr"] = _tail(r.stderr)
        return out
    out["ok"] = True
    return out


def warm_driver(side: Side, files: list[Path], kwargs: dict[str, Any], repeats: int, driver: Path,
                workdir: Path, timeout: float) -> dict[str, Any]:
    """One fresh process: pipeline built, one untimed pass, then ``repeats`` timed passes over ``files``."""
    cfg = {"root": str(side.root), "kwargs": kwargs, "files": list(map(str, files)), "repeats": repeats}
    r, took = _timed([sys.executable, str(driver), json.dumps(cfg)], timeout, cwd=workdir, env=side.env)
    process = {"process_s": took["seconds"], "process_cpu_s": took["cpu_s"], "load_avg_before": took["load_avg_before"]}
    if r is None:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s", **process}
    if r.returncode:
        return {"ok": False, "error": f"rc {r.returncode}: {_tail(r.stderr)}", **process}
    try:
        doc = json.loads(r.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"ok": False, "error": f"no JSON from the driver; stderr: {_tail(r.stderr)}", **process}
    if not _under(doc["mmfer_file"], side.root):
        return {"ok": False, "error": f"imported {doc['mmfer_file']}, not the {side.name} tree {side.root}", **process}
    return {"ok": True, **process, **doc}


def run_all(sides: list[Side], inputs: dict[str, list[Path]], flags: list[str], kwargs: dict[str, Any],
            args: argparse.Namespace, driver: Path, workdir: Path) -> dict[str, Any]:
    """runs[input][mode][side] = list of per-repeat records, interleaved old/new within each repeat."""
    runs: dict[str, Any] = {k: {"cold": {s.name: [] for s in sides}, "warm": {s.name: [] for s in sides}}
                            for k in inputs}
    for rep in range(args.repeats):
        for key, files in inputs.items():
            for mode in ("cold", "warm"):
                for side in sides:
                    if side.error:
                        continue
                    if mode == "cold":
                        rec = cold_cli(side, files, flags, workdir, args.timeout)
                        took = rec["seconds"]
                    else:
                        rec = warm_driver(side, files, kwargs, args.warm_repeats, driver, workdir, args.timeout)
                        took = rec.get("median_s", float("nan"))
                    runs[key][mode][side.name].append(rec)
                    status = f"{took:7.2f} s" if rec["ok"] else "FAILED: " + rec["error"][:300]
                    print(f"[{rep + 1}/{args.repeats}] {key:6s} {mode:4s} {side.name}: {status}", flush=True)
    return runs


def summarise(runs: dict[str, Any], sides: list[Side]) -> dict[str, Any]:
    """Medians per side and speed-ups (old / new) for each input and mode."""
    out: dict[str, Any] = {}
    for key, modes in runs.items():
        for mode, per_side in modes.items():
            row: dict[str, Any] = {"target_speedup": TARGETS[key]}
            for s in sides:
                done = [r for r in per_side[s.name] if r["ok"]]
                vals = [r["seconds"] if mode == "cold" else r["median_s"] for r in done]
                cpu = [r["cpu_s"] for r in done]
                row[s.name] = {"median_s": statistics.median(vals) if vals else None, "all_s": vals,
                               "cpu_median_s": statistics.median(cpu) if cpu else None, "cpu_all_s": cpu,
                               "failed": sum(not r["ok"] for r in per_side[s.name])}
            old, new = row["old"]["median_s"], row["new"]["median_s"]
            row["speedup"] = old / new if old and new else None
            old, new = row["old"]["cpu_median_s"], row["new"]["cpu_median_s"]
            row["cpu_speedup"] = old / new if old and new else None
            row["met"] = None if row["speedup"] is None else row["speedup"] >= TARGETS[key]
            out[f"{key}/{mode}"] = row
    return out


# -- output comparison -----------------------------------------------------------------------------


def _prob_tables(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Every probability table in one analysed file: fused, each branch, each face (photos)."""
    t: dict[str, dict[str, float]] = {}
    if result.get("fused"):
        t["fused"] = result["fused"]["probabilities"]
    for m, b in (result.get("branches") or {}).items():
        t[f"branches.{m}"] = b["probabilities"]
    for f in result.get("faces") or []:
        t[f"faces[{f.get('index')}]"] = f.get("probabilities") or {}
        if f.get("fused"):
            t[f"faces[{f.get('index')}].fused"] = f["fused"]["probabilities"]
    return t


def compare_outputs(old: list[dict[str, Any]], new: list[dict[str, Any]], tol: float) -> dict[str, Any]:
    """Max absolute probability difference, per file and overall; fields only one side has are listed."""
    by_name = lambda rs: {Path(r["file"]).name: r for r in rs}  # noqa: E731
    o, n = by_name(old), by_name(new)
    files, only, emotions_differ = {}, [], []
    worst = 0.0
    for name in sorted(set(o) | set(n)):
        if name not in o or name not in n:
            only.append(f"{name}: only in {'old' if name in o else 'new'}")
            continue
        only += [f"{name}: field {k!r} only in {'old' if k in o[name] else 'new'}"
                 for k in sorted(set(o[name]) ^ set(n[name]))]
        to, tn = _prob_tables(o[name]), _prob_tables(n[name])
        diffs = {}
        for table in sorted(set(to) | set(tn)):
            if table not in to or table not in tn:
                only.append(f"{name}: {table} only in {'old' if table in to else 'new'}")
                continue
            common = set(to[table]) & set(tn[table])
            only += [f"{name}: {table}.{e} only in {'old' if e in to[table] else 'new'}"
                     for e in sorted(set(to[table]) ^ set(tn[table]))]
            diffs[table] = max((abs(to[table][e] - tn[table][e]) for e in common), default=0.0)
        if o[name].get("emotion") != n[name].get("emotion"):
            emotions_differ.append(f"{name}: {o[name].get('emotion')} -> {n[name].get('emotion')}")
        files[name] = {"max_abs_diff": max(diffs.values(), default=0.0), "tables": diffs}
        worst = max(worst, files[name]["max_abs_diff"])
    return {"max_abs_diff": worst, "tol": tol, "within_tol": worst <= tol + 1e-12, "files": files,
            "only_in_one": only, "emotion_changed": emotions_differ,
            "note": "the JSON rounds probabilities to 4 decimals, so 1e-4 is the smallest non-zero difference"}


def compare_all(runs: dict[str, Any], tol: float) -> dict[str, Any]:
    out = {}
    for key, modes in runs.items():
        for mode in ("cold", "warm"):
            first = {s: next((r for r in recs if r["ok"]), None) for s, recs in modes[mode].items()}
            if first.get("old") and first.get("new"):
                out[f"{key}/{mode}"] = compare_outputs(first["old"]["results"], first["new"]["results"], tol)
            else:
                out[f"{key}/{mode}"] = {"within_tol": None, "error": "a side has no successful run to compare"}
    return out


# -- report ----------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for pkg in ("torch", "torchvision", "torchaudio", "numpy", "opencv-python-headless", "av", "onnxruntime"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"cpu_model": cpu, "cpu_count": os.cpu_count(), "load_avg_at_start": list(os.getloadavg()),
            "python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _fmt(v: float | None, unit: str = " s") -> str:
    return "n/a" if v is None else f"{v:.2f}{unit}"


def write_markdown(path: Path, doc: dict[str, Any]) -> None:
    lines = ["# One system: the previous release's `mmfer analyze` vs the current tree", "",
             f"{doc['date']}; {doc['machine']['cpu_count']} x {doc['machine']['cpu_model']}; "
             f"torch {doc['machine']['packages'].get('torch', '?')}; load average at start "
             f"{doc['machine']['load_avg_at_start'][0]:.2f}.", "",
             f"- old: `{doc['sides']['old']['rev'][:10]}` (baseline `{doc['baseline']}`), run from a git worktree",
             f"- new: `{doc['sides']['new']['rev'][:10]}`" + (f" + {len(doc['sides']['new']['dirty'])} uncommitted "
                                                             "change(s)" if doc['sides']['new']['dirty'] else "")
             + (" (**its sources changed during the run**)" if doc["sides"]["new"]["changed_during_run"] else ""),
             f"- both: `mmfer analyze INPUT... {' '.join(doc['flags'])}` (cold) and "
             f"`EmotionPipeline(**{doc['pipeline_kwargs']})` (warm); {doc['repeats']} interleaved repeat(s), "
             f"{doc['warm_repeats']} timed warm pass(es) each; YuNet: `{doc['yunet_model']}`; threads: "
             f"{doc['threads'] or 'library default'}", ""]
    for side in ("old", "new"):
        if doc["sides"][side]["error"]:
            lines += [f"**The {side} side could not run:** {doc['sides'][side]['error']}", ""]
    for detector, res in doc["results"].items():
        lines += [f"## Speed ({detector} detector)", "",
                  "| input | mode | old median | new median | speed-up | target | met? | CPU-time speed-up |",
                  "|---|---|---|---|---|---|---|---|"]
        for k, row in res["timings"].items():
            key, mode = k.split("/")
            label = doc["inputs"][key]["label"]
            met = {True: "yes", False: "**no**", None: "n/a (failed)"}[row["met"]]
            fails = "".join(f" ({row[s]['failed']} {s} run(s) failed)" for s in ("old", "new") if row[s]["failed"])
            lines.append(f"| {label} | {'cold CLI' if mode == 'cold' else 'warm per-input'} | "
                         f"{_fmt(row['old']['median_s'])} | {_fmt(row['new']['median_s'])} | "
                         f"{_fmt(row['speedup'], 'x')} | >= {row['target_speedup']:.1f}x | {met}{fails} | "
                         f"{_fmt(row['cpu_speedup'], 'x')} |")
        lines += ["", f"## Output equality ({detector} detector, tolerance {doc['tol']:g})", "",
                  "| input | mode | max abs diff | within tol? | emotion changed | fields in one side only |",
                  "|---|---|---|---|---|---|"]
        for k, c in res["outputs"].items():
            key, mode = k.split("/")
            if c.get("error"):
                lines.append(f"| {doc['inputs'][key]['label']} | {mode} | n/a | n/a | | {c['error']} |")
                continue
            only = "; ".join(c["only_in_one"][:6]) + (" ..." if len(c["only_in_one"]) > 6 else "")
            lines.append(f"| {doc['inputs'][key]['label']} | {mode} | {c['max_abs_diff']:.4g} | "
                         f"{'yes' if c['within_tol'] else '**no**'} | {len(c['emotion_changed'])} | {only or '-'} |")
        loads = [r["load_avg_before"] for modes in res["runs"].values() for per in modes.values()
                 for recs in per.values() for r in recs if "load_avg_before" in r]
        notes = list(res["notes"])
        if loads and max(loads) > doc["machine"]["cpu_count"]:
            notes.append(f"the machine was busy (1-minute load average up to {max(loads):.1f} on "
                         f"{doc['machine']['cpu_count']} CPUs): wall times are noisy; the CPU-time speed-up "
                         "(user + sys of the process, or of the timed passes when warm) is steadier")
        lines += ["", "Speed-up = old median / new median (wall time). Cold: the whole command in a fresh process; "
                  "warm: median of the timed analyses after one untimed pass in the same process."]
        lines += [""] + [f"- {n}" for n in notes] + [""]
        failures = sorted({f"{side} {key}, {mode}: {r['error'][:600]}" for key, modes in res["runs"].items()
                           for mode, per in modes.items() for side, recs in per.items() for r in recs if not r["ok"]})
        if failures:
            lines += [f"### Failed runs ({detector} detector)", ""] + [f"- {f}" for f in failures] + [""]
    lines += ["Probabilities compared: `fused`, every `branches[m]` and, for photos, every face and its fusion, "
              "file by file (the JSON rounds them to 4 decimals). Failures, raw timings and per-file differences "
              "are in `one_system.json`.", "", "## Rerun", "", "```", doc["command"], "```", "",
              "`--quick` (1 repeat, 5 photos, 1 warm pass) is a smoke test; `--detector-haar` adds the Haar-cascade "
              "case; `--baseline REF` compares another commit."]
    path.write_text("\n".join(lines) + "\n")


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help="git ref of the previous release")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="shared data/models root")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved fresh-process runs per version")
    ap.add_argument("--warm-repeats", type=int, default=3, help="timed analyses per warm process")
    ap.add_argument("--photos", type=int, default=50, help="photos in the folder")
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs probability difference counted as equal")
    ap.add_argument("--detector-haar", action="store_true", help="also measure with the Haar cascade (no YuNet)")
    ap.add_argument("--threads", type=int, help="OMP/MKL threads for every child (default: the library default, "
                    "as a user runs it); fewer can steady the timings on a busy machine")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed to any one child process")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "speed", help="report folder")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (inputs, worktree)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 5 photos, 1 warm repeat")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.photos, args.warm_repeats = 1, 5, 1
    if min(args.repeats, args.warm_repeats, args.photos) < 1:
        ap.error("--repeats, --warm-repeats and --photos must be at least 1")
    return args


def shared_paths(shared: Path) -> dict[str, Path]:
    p = {"clips": shared / "data" / "crema_d_samples", "ckplus": shared / "data" / "ckplus_videos",
         "yunet": shared / "models" / "yunet" / "yunet_n_640_640.onnx"}
    missing = [str(v) for v in p.values() if not v.exists()]
    if missing:
        raise BenchError(f"shared data not found: {', '.join(missing)}. Point --shared at the folder holding "
                         "data/crema_d_samples, data/ckplus_videos and models/yunet (default: ../shared)")
    return p


def benchmark(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], bool]:
    """Build the inputs, run both versions, compare; returns the report and whether every run worked."""
    shared = shared_paths(args.shared.resolve())
    old_rev = _git("rev-parse", "--verify", f"{args.baseline}^{{commit}}")
    tree = tmp / "baseline"
    _git("worktree", "add", "--detach", str(tree), old_rev)
    work = tmp / "work"
    work.mkdir()
    driver = tmp / "warm_driver.py"
    driver.write_text(WARM_DRIVER)

    print("building inputs ...", flush=True)
    clip = make_talking_clip(sorted(shared["clips"].glob("*.flv")), work / "talking_face_10s.mp4")
    photos = make_photo_folder(sorted(shared["ckplus"].glob("*.mp4")), work / "photos", args.photos)
    inputs = {"clip": [Path(clip["path"])], "photos": sorted((work / "photos").glob("*.jpg"))}
    labels = {"clip": "10 s 640x480 talking-face clip (H.264 + AAC)", "photos": f"folder of {photos['count']} photos"}

    sides = [Side("old", tree, old_rev), Side("new", REPO, _git("rev-parse", "HEAD"),
                                               dirty=_git("--no-optional-locks", "status", "--porcelain").splitlines())]
    fingerprint = tree_fingerprint(REPO)
    for s in sides:
        prepare_side(s, work, args.timeout, args.threads)
        print(f"{s.name}: {s.rev[:10]} mmfer at {s.mmfer_file}" + (f"  UNUSABLE: {s.error}" if s.error else ""))

    results = {}
    for detector in ["yunet"] + (["haar"] if args.detector_haar else []):
        flags, kwargs, notes = common_args(sides, detector, shared["yunet"])
        print(f"== {detector}: mmfer analyze INPUT... {' '.join(flags)}", flush=True)
        runs = run_all(sides, inputs, flags, kwargs, args, driver, work)
        results[detector] = {"flags": flags, "pipeline_kwargs": kwargs, "notes": notes,
                             "timings": summarise(runs, sides), "outputs": compare_all(runs, args.tol), "runs": runs}
        for modes in runs.values():  # the outputs are compared above; the report keeps timings and errors
            for recs in (r for per in modes.values() for r in per.values()):
                for rec in recs:
                    rec.pop("results", None)
    ok = all(s.error is None for s in sides) and all(
        r["ok"] for res in results.values() for modes in res["runs"].values() for per in modes.values()
        for recs in per.values() for r in recs)
    changed = tree_fingerprint(REPO) != fingerprint
    if changed:
        print("warning: the current tree's mmfer/ sources changed during the run", file=sys.stderr)
    first = next(iter(results.values()))
    doc = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
           "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "scripts/bench_one_system.py",
                                                          *sys.argv[1:]]),
           "baseline": args.baseline, "threads": args.threads, "repeats": args.repeats,
           "warm_repeats": args.warm_repeats, "tol": args.tol,
           "yunet_model": str(shared["yunet"]), "flags": first["flags"], "pipeline_kwargs": first["pipeline_kwargs"],
           "targets": {"clip": "speed-up >= 2x", "photos": "speed-up >= 1x (not slower)",
                       "outputs": f"max abs diff <= {args.tol:g}"},
           "inputs": {"clip": {**clip, "label": labels["clip"]}, "photos": {**photos, "label": labels["photos"]}},
           "sides": {s.name: {"rev": s.rev, "root": str(s.root), "mmfer_file": s.mmfer_file, "dirty": s.dirty,
                              "changed_during_run": changed if s.name == "new" else False,
                              "launcher": s.launcher[:2] + (["<sys.path launcher>"] if len(s.launcher) > 2 else []),
                              "error": s.error} for s in sides},
           "all_runs_ok": ok, "results": results}
    return doc, ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_one_system_"))
    try:
        doc, ok = benchmark(args, tmp)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        tree = tmp / "baseline"
        if tree.exists() and not args.keep:
            r = _run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], 120)
            if r.returncode:
                print(f"warning: could not remove the worktree {tree}: {r.stderr.strip()}", file=sys.stderr)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "one_system.json").write_text(json.dumps(doc, indent=1) + "\n")
    write_markdown(args.out / "one_system.md", doc)
    print((args.out / "one_system.md").read_text())
    if not ok:
        print("error: some runs failed (see the report)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
