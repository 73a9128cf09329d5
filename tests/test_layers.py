"""The package layering: no two parts of mmfer import each other (directly or through others), the
import-linter contracts in pyproject.toml hold, and ``import mmfer.pipeline`` stays light."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")
importlinter_cli = pytest.importorskip("importlinter.cli")

REPO = Path(__file__).resolve().parents[1]
#: Third-party libraries a CLI call pays seconds for: only the commands that use them may import them.
HEAVY = ("sklearn", "pandas", "matplotlib", "transformers", "open_clip")


def package_cycles(graph, root: str = "mmfer") -> list[str]:  # noqa: ANN001 - grimp.ImportGraph
    """Every pair of top-level parts of ``root`` (subpackages and modules) that import each other,
    directly or indirectly, with the shortest chain each way."""
    parts = sorted(graph.find_children(root))
    found = []
    for a, b in itertools.combinations(parts, 2):
        if graph.chain_exists(a, b, as_packages=True) and graph.chain_exists(b, a, as_packages=True):
            there = graph.find_shortest_chain(a, b, as_packages=True)
            back = graph.find_shortest_chain(b, a, as_packages=True)
            found.append(f"{a} <-> {b}: {' -> '.join(there)}; {' -> '.join(back)}")
    return found


@pytest.fixture(scope="module")
def graph():  # noqa: ANN201 - grimp.ImportGraph
    return grimp.build_graph("mmfer", include_external_packages=False)


def test_no_import_cycle_between_packages(graph) -> None:  # noqa: ANN001
    cycles = package_cycles(graph)
    assert not cycles, "package-level import cycles:\n" + "\n".join(cycles)


def test_the_cycle_check_sees_indirect_cycles() -> None:
    g = grimp.ImportGraph()
    for m in ("pkg", "pkg.low", "pkg.low.a", "pkg.mid", "pkg.top", "pkg.top.b"):
        g.add_module(m)
    g.add_import(importer="pkg.top.b", imported="pkg.low.a")
    assert package_cycles(g, "pkg") == []
    g.add_import(importer="pkg.low.a", imported="pkg.mid")  # low -> mid -> top -> low
    g.add_import(importer="pkg.mid", imported="pkg.top.b")
    cycles = package_cycles(g, "pkg")
    assert any(c.startswith("pkg.low <-> pkg.top: pkg.low.a -> pkg.mid -> pkg.top.b") for c in cycles), cycles


def test_import_linter_contracts_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    # import-linter's CLI configures logging with dictConfig, which disables every logger that exists
    # already (mmfer's included) for the rest of the process: put them back as they were
    loggers = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    enabled = [lg for lg in loggers if not lg.disabled]
    try:
        code = importlinter_cli.lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True,
                                             no_logo=True)
    finally:
        for lg in enabled:
            lg.disabled = False
    out = capsys.readouterr().out
    assert code == importlinter_cli.EXIT_STATUS_SUCCESS, out
    assert "0 broken" in out, out


def test_importing_the_pipeline_stays_light() -> None:
    code = ("import sys, mmfer.pipeline; "
            f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "", f"import mmfer.pipeline pulls in {run.stdout.strip()}"
