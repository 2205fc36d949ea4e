"""`storemon report-csv` and `storemon generate`, run in-process."""
from __future__ import annotations

from pathlib import Path

import pytest

from storemon.cli import main
from storemon.uptime.engine import REPORT_HEADER


@pytest.fixture
def loop_example(tmp_path: Path) -> dict[str, Path]:
    files = {
        "status": "store_id,status,timestamp_utc\n"
                  "s,active,2023-01-23 16:14:00 UTC\n"
                  "s,INACTIVE,2023-01-23T17:15:00Z\n"
                  "0042,active,2023-01-23 19:00:00 UTC\n",
        "hours": "store_id,dayOfWeek,start_time_local,end_time_local\ns,0,09:00:00,12:00:00\n",
        "timezones": "store_id,timezone_str\ns,America/Chicago\n",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text(text)
    return paths


def arguments(paths: dict[str, Path], *extra: str) -> list[str]:
    return ["report-csv", "--status", str(paths["status"]), "--hours", str(paths["hours"]),
            "--timezones", str(paths["timezones"]), *extra]


def test_report_csv_to_standard_output(loop_example, capsysbinary):
    assert main(arguments(loop_example)) == 0
    out = capsysbinary.readouterr().out.decode()
    assert out == f"{REPORT_HEADER}\n0042,60,24,168,0,0,0\ns,0,1.74,1.74,0,1.26,1.26\n"


def test_report_csv_to_a_file_with_as_of(loop_example, tmp_path, capsys):
    out = tmp_path / "report.csv"
    assert main(arguments(loop_example, "--as-of", "2023-01-23T17:00:00Z", "-o", str(out))) == 0
    # 11:00 in Chicago: the 17:15Z poll is ignored; open 2 h today and 1 h a week ago.
    assert out.read_text().splitlines()[1:] == ["s,60,2,3,0,0,0"]
    assert "1 stores, as of 2023-01-23T17:00:00.000000Z" in capsys.readouterr().err


def test_bad_rows_are_reported_and_skipped(loop_example, capsysbinary):
    with loop_example["status"].open("a") as handle:
        handle.write("t,maybe,2023-01-23 19:00:00 UTC\n")
    assert main(arguments(loop_example)) == 0
    captured = capsysbinary.readouterr()
    err = captured.err.decode()
    assert f"{loop_example['status']}, line 5, field status:" in err
    assert "skipped 1 bad rows" in err
    assert b"\nt," not in captured.out


def test_strict_fails_with_one_line(loop_example, capsys):
    with loop_example["status"].open("a") as handle:
        handle.write("t,maybe,2023-01-23 19:00:00 UTC\n")
    assert main(arguments(loop_example, "--strict")) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "line 5, field status" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(("change", "message"), [
    ({"status": "missing.csv"}, "cannot read"),
    ({"as_of": "yesterday"}, "--as-of: not a timestamp"),
    ({"output": "missing-dir/report.csv"}, "cannot write"),
])
def test_errors_are_one_line(loop_example, tmp_path, capsys, change, message):
    paths = dict(loop_example)
    extra = []
    if "status" in change:
        paths["status"] = tmp_path / change["status"]
    if "as_of" in change:
        extra = ["--as-of", change["as_of"]]
    if "output" in change:
        extra = ["-o", str(tmp_path / change["output"])]
    assert main(arguments(paths, *extra)) == 1
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_generate_sample(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path / "sample"), "--sample", "--synthetic"]) == 0
    assert "200 stores" in capsys.readouterr().err
    assert main(arguments({
        "status": tmp_path / "sample" / "store_status.csv",
        "hours": tmp_path / "sample" / "menu_hours.csv",
        "timezones": tmp_path / "sample" / "timezones.csv",
    }, "--strict", "-o", str(tmp_path / "report.csv"))) == 0
    assert len((tmp_path / "report.csv").read_text().splitlines()) == 201
