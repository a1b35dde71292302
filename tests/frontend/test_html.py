"""The interactive page: self-contained, small for long unrolls, clicked in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile

import pytest

import graphrnn as gr
from graphrnn.cli.main import main
from graphrnn.compiler.ir import Fused
from graphrnn.frontend.html import page_data, to_html
from tests.helpers import ROOT, SPEC_FILES

IDS = [p.stem for p in SPEC_FILES]
SHOTS = ROOT / "out" / "test_html"  # screenshots kept for a person to look at (git-ignored)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def spec(name: str):
    return gr.load_spec(SPEC_FILES[IDS.index(name)])


def embedded_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', page,
                      re.S)
    return json.loads(found.group(1).replace("<\\/", "</"))


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_page_is_self_contained_and_holds_the_whole_unroll(path):
    net = gr.load_spec(path)
    dag = gr.unroll(net, steps=3)
    page = to_html(net, dag)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "default-src 'none'" in page  # the browser may fetch nothing
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace, never fetched
    assert not re.search(r"<script[^>]*\ssrc=|<link\b|@import|url\(", page)
    data = embedded_data(page)
    assert sorted(v[0] for v in data["V"]) == sorted(dag.nodes)
    ids = [v[0] for v in data["V"]]
    assert sorted((ids[u], ids[v]) for u, v, _, _ in data["E"]) == sorted(dag.edges)
    for u, v, k, _ in data["E"]:
        assert data["folded"][k]["param"] == dag.edges[ids[u], ids[v]]["param"]
    assert set(data["params"]) == set(net.params)


def test_schedule_view_is_the_compiled_program():
    net = spec("lstm")
    program = gr.compile(net).program
    data = page_data(net, gr.unroll(net, steps=2))
    assert [s["kind"] for s in data["schedule"]] == [str(s.kind) for s in program.stages]
    for stage, shown in zip(program.stages, data["schedule"], strict=True):
        assert [op["uid"] for op in shown["ops"]] == [op.uid for op in stage.ops]
        for op, row in zip(stage.ops, shown["ops"], strict=True):
            assert row["fused"] == isinstance(op, Fused)
            if isinstance(op, Fused):
                assert [m["uid"] for m in row["members"]] == [m.uid for m in op.ops]
    loop = next(s for s in data["schedule"] if s["kind"] == "loop")
    assert "h->i@1" in {p for op in loop["ops"] for p in op["params"]}
    assert data["rows"] == ["x", "i", "f", "g", "o", "fc", "ig", "c", "tc", "h", "y"]


def test_long_unrolls_stay_small():
    net = spec("lstm")
    page = to_html(net, gr.unroll(net, steps=200))
    assert len(page.encode()) < 250_000, len(page.encode())  # 2,202 vertices, 3,600 edges
    short = to_html(net, gr.unroll(net, steps=20))
    assert len(page) < 5 * len(short)  # per step, a few dozen bytes a vertex or edge


def test_cli_writes_the_page(tmp_path, capsys):
    out = tmp_path / "net.html"
    assert main(["inspect", str(SPEC_FILES[IDS.index("gru")]), "-T", "4", "-o", str(out)]) == 0
    assert embedded_data(out.read_text())["steps"] == 4
    assert main(["inspect", str(SPEC_FILES[IDS.index("gru")]), "-f", "html"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    reason = ("no Chromium on this machine (Debian: apt-get install -y chromium): the "
              "browser test of the html page did not run")
    print(f"SKIPPED: {reason}")
    pytest.skip(reason)


def browse(url: str, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               *extra, url], capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode()


@pytest.mark.parametrize("name,steps,vertex", [("lstm", 6, "i@2"), ("modern_hopfield", 3, "xi@1"),
                                               ("elman", 30, "h@25")])
def test_click_in_headless_chromium(tmp_path, name, steps, vertex):
    net = spec(name)
    dag = gr.unroll(net, steps=steps)
    page = tmp_path / f"{name}.html"
    page.write_text(to_html(net, dag))
    url = f"{page.as_uri()}#test-click={vertex}"
    dom = browse(url, "--dump-dom")
    found = re.search(r'<pre id="test-result">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), "the page's script did not run"
    result = json.loads(html.unescape(found.group(1)))
    a = dag.nodes[vertex]
    assert result["found"] and result["selected"] == [vertex]
    assert (result["step"], result["size"]) == (str(a["t"]), str(a["size"]))
    assert result["activation"] == a["op"]
    params = {e["param"] for _, _, e in dag.in_edges(vertex, data=True) if e["param"]}
    assert set(result["highlighted_params"]) == params
    shown = set(result["columns"])
    twins = {v for v in dag.nodes if v != vertex and dag.nodes[v]["t"] in shown and any(
        e["param"] in params for _, _, e in dag.in_edges(v, data=True))}
    assert set(result["twins"]) == twins  # every use of the parameter, at every step shown
    assert result["vertices_drawn"] == sum(dag.nodes[v]["t"] in shown for v in dag.nodes)
    assert result["folded_selected"] == [a["node"]]
    assert result["schedule_highlighted"]
    for p in params:
        assert p in result["info"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{name}.png"
    browse(url, f"--screenshot={shot}", "--window-size=1400,900", "--hide-scrollbars")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
