"""``--format ndjson``: the JSON contract a patient a line, then one line with everything else."""

from __future__ import annotations

import json

from adapter.cli import main
from tests.support.clinical import AS_OF
from tests.support.exports import sample_export


def test_ndjson_is_the_json_report_a_patient_a_line_then_the_rest(tmp_path, capsys):
    for source in (["--sample"], ["--source", str(sample_export(tmp_path / "export"))]):
        argv = ["screen", *source, "--as-of", AS_OF.isoformat(), "--quiet"]
        assert main([*argv, "--format", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert main([*argv, "--format", "ndjson"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [json.loads(line) for line in lines[:-1]] == report.pop("patients")
        assert all("patient" in json.loads(line) and "summary" not in json.loads(line) for line in lines[:-1])
        assert json.loads(lines[-1]) == report and len(lines) == report["summary"]["screened"] + 1
