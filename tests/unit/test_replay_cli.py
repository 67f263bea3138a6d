"""replay's argument handling: offset ranges, times, id files, and the README's examples."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from deepfake_stream import cli
from deepfake_stream.commands import replay as command
from deepfake_stream.producers.replay import ReplaySummary, _Pacer
from deepfake_stream.producers.scan import Selection, parse_offsets, parse_time_ms, read_ids

README = Path(__file__).resolve().parents[2] / "README.md"


def _args(argv: list[str]):  # type: ignore[no-untyped-def]
    parser, _ = cli.build_parser()
    return parser.parse_args(["replay", *argv])


def test_parse_offsets() -> None:
    assert parse_offsets("0:10-20, 3:5-") == {0: (10, 20), 3: (5, None)}
    for bad in ("0:20-10", "x:1-2", "0:-5", "0"):
        with pytest.raises(ValueError, match="bad offset range"):
            parse_offsets(bad)


def test_parse_time_ms() -> None:
    assert parse_time_ms("1764000000000") == 1_764_000_000_000
    assert parse_time_ms("2026-11-22T10:00:00Z") == parse_time_ms("2026-11-22T10:00:00+00:00")
    assert parse_time_ms("2026-11-22T10:00:00") == parse_time_ms("2026-11-22T10:00:00Z")
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time_ms("yesterday")


def test_read_ids_skips_blanks_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "ids"
    path.write_text("# header\na-1\n\n  b-2  \n#c\n")
    assert read_ids(path) == {"a-1", "b-2"}


def _record(key: bytes | None, value: bytes, ts: int, headers=()) -> ConsumerRecord:  # type: ignore[no-untyped-def]
    return ConsumerRecord("t", 0, 0, ts, 0, key, value, None, 0, len(value), list(headers))


def test_selection_filters_combine() -> None:
    sel = Selection(since_ms=100, until_ms=200, ids={"a"})
    assert sel.matches(_record(b"a", b"{}", 100))
    assert not sel.matches(_record(b"a", b"{}", 200))  # until is exclusive
    assert not sel.matches(_record(b"b", b"{}", 150))
    assert sel.matches(_record(None, b'{"id": "a"}', 150))  # no key: the JSON id
    dlq = Selection(reasons={"unknown_model"})
    assert dlq.matches(_record(b"x", b"", 0, [("dlq.reason", b"unknown_model")]))
    assert not dlq.matches(_record(b"x", b"", 0, [("dlq.reason", b"invalid_json")]))


def test_pacer_never_runs_ahead_of_the_rate() -> None:
    pacer = _Pacer(10.0)
    assert pacer.wait_for(0) == 0.0
    assert 0.45 < pacer.wait_for(5) <= 0.5
    assert _Pacer(None).wait_for(1000) == 0.0


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        ([], "choose what to replay"),
        (["--all", "--reason", "unknown_model"], "--reason applies to --dlq only"),
        (["--dlq", "--only-changed"], "do not apply"),
        (["--all", "--rate", "0"], "--rate must be positive"),
    ],
)
def test_bad_combinations_are_refused(argv: list[str], problem: str) -> None:
    assert problem in (command._check(_args(argv)) or "")


def test_partition_flags_and_offsets_merge() -> None:
    args = _args(["--offsets", "1:0-9", "--partition", "2", "--from-offset", "5"])
    assert command._check(args) is None
    assert command.selection_from(args).offsets == {1: (0, 9), 2: (5, None)}


def test_readme_replay_examples_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ids.txt").write_text("a\n")
    lines = [
        line.split("#")[0].strip()
        for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
        for line in block.splitlines()
        if line.startswith("deepfake-stream replay ")
    ]
    assert len(lines) >= 5
    for line in lines:
        args = _args(shlex.split(line)[2:])
        assert command._check(args) is None, line
        command.selection_from(args)


def test_summary_lines_and_json() -> None:
    s = ReplaySummary(in_range=10, read=4, rescored=3, published=3, dead_lettered=1, seconds=2)
    assert s.lines()[0].startswith("replay summary (rescore): items read 4 of 10 in range")
    assert s.as_dict()["items_per_s"] == 2.0
