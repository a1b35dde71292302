"""Seeded mutations of every bundled spec through load_spec and `graphrnn check`: SpecError only."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

import graphrnn as gr
from graphrnn.cli.main import main as cli_main
from tests.helpers import ROOT, SPEC_FILES

#: mutated specs per run (each through the API and the in-process CLI) and real subprocesses
CASES = 2000
SUBPROCESSES = 30
#: guards on one case: seconds, and bytes of memory the fuzzing child may grow by
CASE_SECONDS = 5
CASE_MEMORY = 2**30

TAGS = ("!!bool", "!!int", "!!float", "!!timestamp", "!!binary", "!!set", "!!omap", "!!pairs",
        "!!str", "!!null", "!!map", "!!seq", "!!merge", "!!value", "!!python/object:os.system",
        "!!python/name:os.system", "!foo", "!<tag:x>")
VALUES = ("[1, 2]", "{a: 1}", "null", "~", "true", "no", "-3", "0", "1.5", "'x'", '""', ".inf",
          "-.inf", ".nan", "2001-12-14", "0x1F", "0o17", "1_000", "1e400", "@", "*x", "&x 1",
          "|\n  text", "[[[]]]", "{}", "[]", "- 1")
HUGE = ("9" * 25, "9" * 400, "9" * 5000, "-" + "9" * 4400, "1" + "0" * 12, "1e999", "0." + "0" * 500
        + "1", "1" * 31)


def _alias_bomb(depth: int = 12, width: int = 10) -> tuple[str, str]:
    """Billion laughs: the anchors (to put in a section read last) and the alias to use."""
    rows = ["[" + ", ".join(["lol"] * width) + "]"]
    for k in range(1, depth):
        rows.append("[" + ", ".join([f"*b{k - 1}"] * width) + "]")
    anchors = "[" + ", ".join(f"&b{k} {row}" for k, row in enumerate(rows)) + "]"
    return anchors, f"*b{depth - 1}"


def _value_spans(text: str) -> list[tuple[int, int]]:
    """Where the values after ``key:`` and ``- `` are, to swap, tag or enlarge them."""
    return [m.span(1) for m in re.finditer(r"(?:: |- )([^\n,\]}#]+)", text)]


def mutate(text: str, rng: random.Random) -> str:
    """One to three seeded mutations of a spec's text."""
    for _ in range(rng.randint(1, 3)):
        spans = _value_spans(text) or [(0, 0)]
        lo, hi = rng.choice(spans)
        kind = rng.randrange(9)
        if kind == 0 and text:  # byte flip
            i = rng.randrange(len(text))
            text = text[:i] + chr(rng.choice([0, 7, 9, 10, 32, 34, 35, 38, 39, 42, 45, 58, 62,
                                               91, 93, 123, 124, 125, 0xFEFF, 0xE9,
                                               rng.randrange(32, 127)])) + text[i + 1:]
        elif kind == 1 and text:  # deletion
            i = rng.randrange(len(text))
            text = text[:i] + text[i + rng.randint(1, 40):]
        elif kind == 2:  # type swap
            text = text[:lo] + rng.choice(VALUES) + text[hi:]
        elif kind == 3:  # tag
            text = text[:lo] + rng.choice(TAGS) + " " + text[lo:]
        elif kind == 4:  # huge number
            text = text[:lo] + rng.choice(HUGE) + text[hi:]
        elif kind == 5:  # deep nesting
            n = rng.choice([50, 1000, 20000])
            text = text[:lo] + rng.choice(["[" * n + "]" * n, "{a: " * n + "1" + "}" * n,
                                           "[" * n]) + text[hi:]
        elif kind == 6:  # alias bomb: anchors under `name` (read last), the alias in a value
            anchors, alias = _alias_bomb()
            text = text[:lo] + alias + text[hi:]
            named = re.search(r"^name:.*$", text, re.M)
            text = (text[:named.start()] + f"name: {anchors}" + text[named.end():] if named
                    else f"name: {anchors}\n{text}")
        elif kind == 7:  # a delay or size far too big
            text = re.sub(r"@\d+", "@" + rng.choice(["1000000000000", "4000000000", "99999"]),
                          text, count=1) if "@" in text else text[:lo] + "100000000000" + text[hi:]
        else:  # duplicate a random line (duplicate keys, stray indentation)
            lines = text.split("\n")
            i = rng.randrange(len(lines))
            lines.insert(rng.randrange(len(lines) + 1), " " * rng.randint(0, 3) + lines[i])
            text = "\n".join(lines)
    return text


def _cases(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    sources = [p.read_text() for p in SPEC_FILES]
    return [mutate(sources[i % len(sources)], rng) for i in range(count)]


class _Slow(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Slow


def _check_case(text: str, path: Path) -> str | None:
    """The problem with one mutated spec, or None when it behaved."""
    try:
        gr.load_spec(text)
    except gr.SpecError as e:
        if "\n" in str(e).strip():
            return f"load_spec: a SpecError of several lines: {str(e)[:200]!r}"
    except _Slow:
        raise
    except BaseException as e:  # noqa: BLE001 - any other error is the finding
        return f"load_spec raised {type(e).__name__}: {str(e)[:200]}"
    try:
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
    except ValueError:
        return None
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["check", str(path)])
    return _cli_problem(code, err.getvalue())


def _cli_problem(code: int, stderr: str) -> str | None:
    lines = stderr.strip().splitlines()
    if code not in (0, 2):
        return f"graphrnn check exited {code}: {stderr[-300:]!r}"
    if any(not line.startswith("graphrnn: ") for line in lines):
        return f"graphrnn check wrote more than its lines: {stderr[-300:]!r}"
    errors = [line for line in lines if not line.startswith("graphrnn: warning:")]
    if len(errors) != (code == 2):
        return f"graphrnn check (exit {code}) wrote {len(errors)} error lines: {stderr[-300:]!r}"
    return None


def _fuzz_in_child(cases: list[str]) -> list[str]:
    """Run the cases in a forked child whose memory may grow by :data:`CASE_MEMORY` and whose
    cases each get :data:`CASE_SECONDS`; the problems found come back through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery beyond this point
        problems = []
        try:
            with open("/proc/self/statm") as f:
                virtual = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (virtual + CASE_MEMORY, resource.RLIM_INFINITY))
            signal.signal(signal.SIGALRM, _on_alarm)
            warnings.simplefilter("ignore")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "mutant.yaml"
                for i, text in enumerate(cases):
                    signal.alarm(CASE_SECONDS)
                    try:
                        problem = _check_case(text, path)
                    except _Slow:
                        problem = f"slower than {CASE_SECONDS} s"
                    finally:
                        signal.alarm(0)
                    if problem:
                        problems.append(f"case {i}: {problem}\n--- spec ---\n{text[:600]}")
        except BaseException as e:  # noqa: BLE001
            problems.append(f"the fuzzing child failed: {type(e).__name__}: {e}")
        with os.fdopen(write, "w") as f:
            json.dump(problems, f)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        problems = json.loads(f.read() or '["the fuzzing child died"]')
    os.waitpid(pid, 0)
    return problems


def test_mutated_specs_are_spec_errors_only():
    cases = _cases(CASES)
    assert len(set(cases)) > CASES * 0.9  # the mutations really differ
    problems = _fuzz_in_child(cases)
    assert not problems, f"{len(problems)} of {CASES} mutated specs misbehaved:\n" + \
        "\n\n".join(problems[:5])


@pytest.mark.parametrize("text", [
    "inputs: {x: 2}\nnodes: {h: {size: 3, activation: !!bool tanh}}\nedges: [x -> h]\n"
    "outputs: [h]\n",
    "inputs: {x: 2}\nnodes: {h: !!timestamp 3}\nedges: [x -> h]\noutputs: [h]\n",
    "inputs: {x: 2}\nnodes: {h: {size: 3, activation: !!int tanh}}\nedges: [x -> h]\n"
    "outputs: [h]\n",
    "inputs: {x: 2}\nnodes: {h: " + "9" * 5000 + "}\nedges: [x -> h]\noutputs: [h]\n",
    "inputs: {x: 2}\nnodes: {h: 3}\nedges: [!!int x -> h]\noutputs: [h]\n",
    "inputs: {x: 2}\nnodes: {h: 3}\nedges: [{from: !!bool x, to: h}]\noutputs: [h]\n",
    "inputs: {x: 2}\nnodes: {h: 3}\nedges: [x -> h, h -> h @" + "9" * 5000 + "]\n"
    "outputs: [h]\n",
], ids=["bool-tag", "timestamp-tag", "int-tag", "5000-digits", "tagged-edge", "tagged-from",
        "5000-digit-delay"])
def test_tagged_and_huge_values_name_file_line_and_key(text, tmp_path):
    with pytest.raises(gr.SpecError) as info:
        gr.load_spec(text)
    assert info.value.line in (2, 3) and info.value.key
    path = tmp_path / "tagged.yaml"
    path.write_text(text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["check", str(path)]) == 2
    line = err.getvalue().strip()
    assert "\n" not in line and line.startswith(f"graphrnn: {path}:{info.value.line}: ")


def test_alias_bomb_stays_small():
    anchors, alias = _alias_bomb(depth=12, width=10)  # 10**12 strings if expanded
    text = f"name: {anchors}\ninputs: {{x: 2}}\nnodes: {{h: {alias}}}\nedges: [x -> h]\n" \
           f"outputs: [h]\n"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(gr.SpecError, match=r"nodes\.h"):
        gr.load_spec(text)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB


def test_mutated_specs_in_real_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = []
    for i, text in enumerate(_cases(SUBPROCESSES, seed=1)):
        path = tmp_path / f"mutant{i}.yaml"
        path.write_text(text, errors="surrogatepass")
        procs.append((path, subprocess.Popen(
            [sys.executable, "-m", "graphrnn", "check", str(path)], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
        while sum(p.poll() is None for _, p in procs) >= 4:
            time.sleep(0.01)
    problems = []
    for path, proc in procs:
        _, err = proc.communicate(timeout=60)
        problem = _cli_problem(proc.returncode, err)
        if problem:
            problems.append(f"{path.name}: {problem}")
    assert not problems, "\n".join(problems)
