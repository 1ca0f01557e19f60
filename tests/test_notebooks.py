"""The notebooks as committed: thin, parameterized, without outputs."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "meetinglib" / "notebooks").glob("*.ipynb"))


def test_the_package_ships_the_notebooks():
    names = {p.stem for p in NOTEBOOKS}
    assert {"data_report", "issue_triage", "minutes", "bottleneck_explorer"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert dirty == [], f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_first_among_code_cells(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [0], f"{path.name}: the first code cell must be the only 'parameters' cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_definitions_in_notebooks(path):
    """Computation lives in the library; a notebook cell only calls it and displays."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        defined = [
            n.name
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        assert defined == [], f"{path.name}: move {defined} into meetinglib"


def test_the_data_report_writes_its_findings_before_its_flow_charts():
    # The run finishes the explorer's tables from bottlenecks.csv beside the rest of the
    # report: the sooner the file, the less of that work is left after the notebook.
    nb = nbformat.read(NOTEBOOKS[0].with_name("data_report.ipynb"), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    findings = next(i for i, s in enumerate(code) if "flow.export_findings(out_dir)" in s)
    summary = next(i for i, s in enumerate(code) if "report.summary(flow=flow" in s)
    charts = next(i for i, s in enumerate(code) if "flow.graph_chart()" in s)
    assert summary < findings < charts, "right after page one, which computes the findings"
